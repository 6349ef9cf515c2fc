//! The launch hook's effectful shell: observe the slot's volumes and snapshots, ask the pure machine,
//! and perform one step: claim, restore, snapshot, create, attach, move the Elastic IP, tag the instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::machine::{
    decide_launch_volume, LaunchView, VolumeStep, WaitFor, LAUNCH_KEY_SUFFIX,
};
use ferry_state_machine::observe::{
    HolderState, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::slot::{decide_launch_slot, SlotStep};
use ferry_state_machine::{
    tags, AttachedData, Disposition, Generation, HookEvent, HookWork, LifecycleActions, Progress,
    SlotChoice, StepError, Verdict,
};
use futures_util::future::try_join_all;
use tokio::time::Instant;
use tracing::{error, info};

use crate::ledger;
use crate::ports::{Ec2, NewVolume, SnapshotQuery, VolumeQuery};
use crate::slot_cell::SlotCell;
use crate::spec::{GroupSpec, VolumeSpec};

#[path = "launch_finish.rs"]
mod finish;
#[path = "launch_handover.rs"]
mod handover;
use finish::describe_wait;
#[path = "launch_slot.rs"]
mod slot;
#[path = "launch_source.rs"]
mod source;
pub use source::{SourceEvents, RESTORED_LATEST};

/// The observations of one logical volume: its step, volumes and snapshots.
type Observed = (VolumeStep, Vec<ObservedVolume>, Vec<ObservedSnapshot>);
/// One logical volume's volumes and snapshots, as read.
type Reads = (Vec<ObservedVolume>, Vec<ObservedSnapshot>);

/// Runs launch hooks of one group.
pub struct LaunchWork {
    ec2: Arc<dyn Ec2>,
    asg: Arc<dyn LifecycleActions>,
    group: GroupSpec,
    events: Option<Arc<dyn SourceEvents>>,
    /// What the source policy last reported per hook, so that each is logged once.
    reported: Mutex<HashMap<String, &'static str>>,
    /// The launching instance as last read, and when (see [`LaunchWork::instance`]).
    me: Mutex<Option<(ObservedInstance, Instant)>>,
    /// The slot the launch takes, once claimed (see `launch_slot.rs`).
    slot: SlotCell,
}

/// How long the launching instance's last read serves the steps before its data is attached.
const ME_TTL: Duration = Duration::from_secs(30);

/// How long a launch waits for EC2 to show an instance that Auto Scaling has in the hook. EC2's lag is
/// seconds in practice; an instance EC2 still does not know after this long is not coming.
pub const VISIBILITY_GRACE: Duration = Duration::from_secs(300);

impl LaunchWork {
    /// A launch executor for `group`.
    pub fn new(ec2: Arc<dyn Ec2>, asg: Arc<dyn LifecycleActions>, group: GroupSpec) -> Self {
        Self {
            ec2,
            asg,
            group,
            events: None,
            reported: Mutex::new(HashMap::new()),
            me: Mutex::new(None),
            slot: SlotCell::default(),
        }
    }

    /// The same executor, telling `events` about unreachable sources.
    pub fn with_events(mut self, events: Arc<dyn SourceEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// Reads the launching instance and keeps the read for the next steps; `Err` is the progress to report
    /// instead: the verdict when it is gone, or a wait while EC2 does not show it yet.
    ///
    /// Auto Scaling confirmed the instance before the hook ran (verify.rs), so an EC2 `NotFound` for it
    /// is EC2's eventual consistency (a new instance can be missing from `DescribeInstances` for a while):
    /// "not yet", not "gone". Only past [`VISIBILITY_GRACE`] does it end the launch.
    async fn instance(
        &self,
        hook: &HookEvent,
        elapsed: Duration,
    ) -> Result<Result<ObservedInstance, Progress>, StepError> {
        let me = match self.ec2.describe_instance(&hook.instance_id).await? {
            Some(i) if !i.is_gone() => i,
            Some(i) => {
                return Ok(Err(Progress::Finished(Verdict::abandon(format!(
                    "instance {} is {}",
                    i.id, i.state
                )))))
            }
            None if elapsed < VISIBILITY_GRACE => {
                return Ok(Err(Progress::Waiting(format!(
                    "instance {} to be visible in EC2 (Auto Scaling has it; EC2 is eventually consistent)",
                    hook.instance_id
                ))))
            }
            None => {
                return Ok(Err(Progress::Finished(Verdict::abandon(format!(
                    "instance {} does not exist in EC2 after {}s (Auto Scaling had it in this hook)",
                    hook.instance_id,
                    elapsed.as_secs()
                )))))
            }
        };
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = Some((me.clone(), Instant::now()));
        Ok(Ok(me))
    }

    /// The launching instance's last read, if it is recent: its id and zone do not change, and a step that
    /// acts on a stale state (an instance that just ended) fails and is retried. The finish reads it anew.
    fn cached_instance(&self) -> Option<ObservedInstance> {
        let me = self.me.lock().unwrap_or_else(|p| p.into_inner());
        me.as_ref()
            .filter(|(_, at)| at.elapsed() < ME_TTL)
            .map(|(i, _)| i.clone())
    }

    /// Reads one logical volume's copies: its volumes and its snapshots, both at once (neither depends on
    /// the other, and each joins its own batched round).
    async fn volume_reads(&self, spec: &VolumeSpec) -> Result<Reads, StepError> {
        let volume_query = VolumeQuery {
            group: self.group.name.clone(),
            slot: Some(self.slot.get()),
            logical: Some(spec.name.clone()),
            attached_instance: None,
        };
        let snapshot_query = SnapshotQuery {
            group: self.group.name.clone(),
            slot: Some(self.slot.get()),
            logical: Some(spec.name.clone()),
            ..SnapshotQuery::default()
        };
        tokio::try_join!(
            self.ec2.find_volumes(&volume_query),
            self.ec2.find_snapshots(&snapshot_query)
        )
    }

    /// Decides for one logical volume from its reads, asking after the other instances holding a copy.
    async fn volume_step(
        &self,
        hook: &HookEvent,
        me: &ObservedInstance,
        (volumes, snapshots): Reads,
        elapsed: Duration,
        now: i64,
        holders: &mut HashMap<String, HolderState>,
    ) -> Result<Observed, StepError> {
        for holder in holders_to_check(&volumes, &me.id) {
            if !holders.contains_key(holder) {
                holders.insert(holder.to_string(), self.holder_state(holder).await?);
            }
        }
        let step = decide_launch_volume(&LaunchView {
            instance: me,
            token: &hook.ledger_key(),
            volumes: &volumes,
            snapshots: &snapshots,
            holders,
            elapsed,
            staying_holder_timeout: self.group.staying_holder_timeout,
            now,
        });
        Ok((step, volumes, snapshots))
    }

    /// Performs one mutating volume step. Returns a description of what was done.
    async fn act(
        &self,
        hook: &HookEvent,
        me: &ObservedInstance,
        spec: &VolumeSpec,
        step: VolumeStep,
    ) -> Result<String, StepError> {
        let group = self.group.name.as_str();
        let slot = self.slot.get();
        match step {
            VolumeStep::Claim {
                volume_id,
                generation,
            } => {
                let t = ledger::claim_tags(group, slot, &hook.ledger_key(), &spec.name, generation);
                self.ec2.tag_volume(&volume_id, &t).await?;
                info!(volume.id = %volume_id, generation = generation.0, "claimed detached volume in this AZ (fast path, no restore)");
                Ok(format!("claimed {volume_id}"))
            }
            VolumeStep::Attach { volume_id } => {
                self.ec2
                    .attach_volume(&volume_id, &me.id, &spec.device)
                    .await
                    .map_err(attach_race)?;
                info!(volume.id = %volume_id, device = %spec.device, "attaching volume");
                Ok(format!("attaching {volume_id}"))
            }
            VolumeStep::Restore {
                snapshot_id,
                source_volume,
                generation,
            } => {
                let req = self.restore(hook, me, spec, &snapshot_id, &source_volume, generation);
                let id = self.ec2.create_volume(&req).await?;
                info!(volume.id = %id, snapshot.id = %snapshot_id, source.volume = %source_volume, az = %me.availability_zone, generation = generation.0, "restoring snapshot into a new volume");
                Ok(format!("restoring {snapshot_id} into {id}"))
            }
            VolumeStep::RestorePoint {
                snapshot_id,
                source_volume,
                generation,
                loss_window_secs,
            } => {
                let mut req =
                    self.restore(hook, me, spec, &snapshot_id, &source_volume, generation);
                req.tags
                    .push((tags::LOSS_WINDOW.into(), loss_window_secs.to_string()));
                let id = self.ec2.create_volume(&req).await?;
                error!(volume.id = %id, snapshot.id = %snapshot_id, source.volume = %source_volume, az = %me.availability_zone, generation = generation.0, loss_window_secs, "restore-latest: restoring a recovery point into a new volume; it supersedes the unreachable generation");
                Ok(format!(
                    "restoring recovery point {snapshot_id} into {id} (loss window {loss_window_secs}s)"
                ))
            }
            VolumeStep::SnapshotVolume {
                volume_id,
                generation,
            } => {
                let t = ledger::final_delta_tags(
                    group,
                    slot,
                    &hook.ledger_key(),
                    &spec.name,
                    generation,
                );
                let desc = format!(
                    "ferry {group}: final delta of fenced {} gen {generation} for a launch in {}",
                    spec.name, me.availability_zone
                );
                let id = self.ec2.create_snapshot(&volume_id, &desc, &t).await?;
                info!(snapshot.id = %id, volume.id = %volume_id, generation = generation.0, "final delta: snapshotting the fenced volume from another AZ");
                Ok(format!("final delta of {volume_id} as {id}"))
            }
            VolumeStep::CreateEmpty { generation } => {
                let req = NewVolume {
                    size_gib: Some(spec.size_gib),
                    client_token: ledger::client_token(&hook.ledger_key(), &spec.name, None),
                    tags: ledger::new_volume_tags(
                        group,
                        slot,
                        &hook.ledger_key(),
                        &spec.name,
                        generation,
                        None,
                    ),
                    ..self.new_volume(me, spec)
                };
                let id = self.ec2.create_volume(&req).await?;
                info!(volume.id = %id, az = %me.availability_zone, size_gib = spec.size_gib, "first boot: creating an empty volume");
                Ok(format!("creating empty {id}"))
            }
            VolumeStep::Ready { .. }
            | VolumeStep::Wait(_)
            | VolumeStep::Abandon(_)
            | VolumeStep::FenceHolder { .. } => Ok(String::new()),
        }
    }

    /// The `CreateVolume` of a restore of `snapshot_id` (taken of `source_volume`) at `generation`.
    fn restore(
        &self,
        hook: &HookEvent,
        me: &ObservedInstance,
        spec: &VolumeSpec,
        snapshot_id: &str,
        source_volume: &str,
        generation: Generation,
    ) -> NewVolume {
        let key = hook.ledger_key();
        NewVolume {
            snapshot_id: Some(snapshot_id.to_string()),
            size_gib: None,
            client_token: ledger::client_token(&key, &spec.name, Some(snapshot_id)),
            tags: ledger::new_volume_tags(
                &self.group.name,
                self.slot.get(),
                &key,
                &spec.name,
                generation,
                Some((snapshot_id, source_volume)),
            ),
            ..self.new_volume(me, spec)
        }
    }

    fn new_volume(&self, me: &ObservedInstance, spec: &VolumeSpec) -> NewVolume {
        NewVolume {
            availability_zone: me.availability_zone.clone(),
            volume_type: spec.volume_type.clone(),
            iops: spec.iops,
            throughput: spec.throughput,
            encrypted: spec.encrypted,
            kms_key_id: spec.kms_key_id.clone(),
            ..NewVolume::default()
        }
    }
}

#[async_trait]
impl HookWork for LaunchWork {
    async fn slot(&self, hook: &HookEvent, elapsed: Duration) -> Result<SlotChoice, StepError> {
        self.choose_slot(hook, elapsed).await
    }

    async fn claim(&self, hook: &HookEvent, slot: u32) -> Result<bool, StepError> {
        self.claim_slot(hook, slot).await
    }

    async fn step(&self, hook: &HookEvent, elapsed: Duration) -> Result<Progress, StepError> {
        // Every logical volume's copies, and the instance unless a recent read of it serves, all at once.
        let reads = try_join_all(
            self.group
                .volumes
                .iter()
                .map(|spec| self.volume_reads(spec)),
        );
        let cached = self.cached_instance();
        let from_cache = cached.is_some();
        let (me, reads) = match cached {
            Some(me) => (me, reads.await?),
            None => {
                let (me, reads) = tokio::try_join!(self.instance(hook, elapsed), reads)?;
                match me {
                    Ok(me) => (me, reads),
                    Err(progress) => return Ok(progress),
                }
            }
        };
        let now = self.ec2.now_secs();
        let mut holders = HashMap::new();
        let mut observed = Vec::with_capacity(self.group.volumes.len());
        for read in reads {
            observed.push(
                self.volume_step(hook, &me, read, elapsed, now, &mut holders)
                    .await?,
            );
        }
        let (mut steps, seen) = self.source_policy(hook, &observed, &holders, elapsed, now);
        match decide_launch_slot(&steps) {
            SlotStep::Abandon(i) => {
                let why = match &steps[i] {
                    VolumeStep::Abandon(why) => why.as_str(),
                    _ => "cannot have its data",
                };
                return Ok(Progress::Finished(Verdict::abandon(format!(
                    "{}: {why}",
                    self.group.volumes[i].name
                ))));
            }
            SlotStep::Act(i) => {
                let spec = &self.group.volumes[i];
                let step = steps.swap_remove(i);
                if let VolumeStep::FenceHolder { instance_id, .. } = &step {
                    return self.fence_holder(instance_id).await;
                }
                return Ok(Progress::Acted(self.act(hook, &me, spec, step).await?));
            }
            SlotStep::Wait => {
                // Past the fence, the Elastic IP need not wait for our own volume to be created or attached.
                if let Some(done) = self.early_address(hook, &me, &steps, &observed).await? {
                    return Ok(Progress::Acted(done));
                }
                let waits: Vec<String> = self
                    .group
                    .volumes
                    .iter()
                    .zip(&steps)
                    .filter_map(|(spec, s)| match s {
                        VolumeStep::Wait(w) => Some(describe_wait(&spec.name, w)),
                        _ => None,
                    })
                    .collect();
                let why = waits.join("; ") + &self.unreachable_note(&seen);
                // At the barrier (another instance holds the data), the slot's lease goes to its hooks.
                let barrier = steps.iter().any(|s| {
                    matches!(
                        s,
                        VolumeStep::Wait(WaitFor::Holder { .. } | WaitFor::StayingHolder { .. })
                    )
                });
                return Ok(if barrier {
                    Progress::Blocked(why)
                } else {
                    Progress::Waiting(why)
                });
            }
            SlotStep::Ready => {}
        }
        let attached: Vec<AttachedData> = self
            .group
            .volumes
            .iter()
            .zip(steps)
            .zip(&observed)
            .filter_map(|((spec, s), (_, vols, _))| match s {
                VolumeStep::Ready {
                    volume_id,
                    generation,
                } => Some(AttachedData {
                    logical: spec.name.clone(),
                    loss_window_secs: vols
                        .iter()
                        .find(|v| v.id == volume_id)
                        .and_then(|v| v.loss_window_secs),
                    volume_id,
                    generation,
                }),
                _ => None,
            })
            .collect();
        // The finish (tags, Elastic IP, completion) always sees the instance as it is now.
        let me = if from_cache {
            match self.instance(hook, elapsed).await? {
                Ok(me) => me,
                Err(progress) => return Ok(progress),
            }
        } else {
            me
        };
        let mut eip_problem = None;
        if let Some(done) = self.finish_steps(&me, &attached, &mut eip_problem).await? {
            return Ok(Progress::Acted(done));
        }
        let verdict = match Verdict::launch_ready(&self.group.volume_names(), attached) {
            Some(v) => match eip_problem {
                Some(problem) => v.degraded(problem),
                None => v,
            },
            None => Verdict::abandon("not every configured volume is attached"),
        };
        let verdict = self.restored_latest(hook, verdict);
        Ok(Progress::Finished(verdict))
    }
}

/// `VolumeInUse` on an attach the machine asked for means the volume was attached since it was
/// observed: by a duplicate run of this hook, or by an SDK retry of a request that had landed.
/// Not permanent: observe again and let the machine see whom it is attached to (this instance:
/// ready; another instance: the fencing rules apply).
fn attach_race(e: StepError) -> StepError {
    if e.code.as_deref() == Some("VolumeInUse") {
        StepError {
            disposition: Disposition::Retry,
            ..e
        }
    } else {
        e
    }
}

/// The other instances whose state the decision needs: those a volume is attached to, and the launching
/// instances that claimed or created a detached volume of the newest generation (only those can compete).
fn holders_to_check<'a>(volumes: &'a [ObservedVolume], me: &str) -> Vec<&'a str> {
    let newest = volumes
        .iter()
        .filter(|v| v.holds_data())
        .filter_map(|v| v.generation)
        .max();
    let attached = volumes.iter().filter_map(ObservedVolume::attached_to);
    let claimants = volumes
        .iter()
        .filter(|v| v.holds_data() && v.attachment.is_none() && v.generation == newest)
        .filter_map(|v| v.hook.as_deref()?.strip_suffix(LAUNCH_KEY_SUFFIX));
    attached.chain(claimants).filter(|h| *h != me).collect()
}
