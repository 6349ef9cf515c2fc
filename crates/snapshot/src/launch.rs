//! The launch hook's effectful shell: observe the slot's volumes and snapshots, ask the pure machine,
//! and perform one step: claim, restore, snapshot, create, attach, move the Elastic IP, tag the instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::machine::{
    decide_launch_volume, LaunchView, VolumeStep, WaitFor, FINAL_RETRY_SECS, LAUNCH_KEY_SUFFIX,
};
use ferry_state_machine::observe::{
    HolderState, ObservedInstance, ObservedSnapshot, ObservedVolume, SnapshotReason,
};
use ferry_state_machine::slot::{decide_launch_slot, SlotStep};
use ferry_state_machine::unreachable::{apply_source_policy, Lineage, SourceView, Unreachable};
use ferry_state_machine::{
    tags, AttachedData, Disposition, HookEvent, HookWork, LifecycleActions, Progress, StepError,
    Verdict,
};
use tracing::{error, info, warn};

use crate::ledger::{self, SLOT};
use crate::ports::{Ec2, NewVolume, SnapshotQuery, VolumeQuery};
use crate::spec::{GroupSpec, VolumeSpec};

/// Hears what the `source_unreachable` policy saw, for metrics, logs and the webhook. Each is told once per
/// hook run.
pub trait SourceEvents: Send + Sync {
    /// A launch of `group` onto `instance` has waited `waited` (at least `restore_latest_after_secs`) on a
    /// source it cannot get; `policy` is `wait` or `restore-latest`.
    fn source_unreachable(&self, group: &str, instance: &str, policy: &str, waited: Duration);
    /// A launch of `group` onto `instance` is ready with data restored from a recovery point: the writes of
    /// the last `loss_window_secs` before the old instance's end are lost. `attached` is what it attached.
    fn restored_latest(
        &self,
        group: &str,
        instance: &str,
        loss_window_secs: u64,
        attached: &[AttachedData],
    );
}

/// The observations of one logical volume: its step, volumes and snapshots.
type Observed = (VolumeStep, Vec<ObservedVolume>, Vec<ObservedSnapshot>);

/// Runs launch hooks of one group.
pub struct LaunchWork {
    ec2: Arc<dyn Ec2>,
    asg: Arc<dyn LifecycleActions>,
    group: GroupSpec,
    events: Option<Arc<dyn SourceEvents>>,
    /// What the source policy last reported per hook, so that each is logged once.
    reported: Mutex<HashMap<String, &'static str>>,
}

impl LaunchWork {
    /// A launch executor for `group`.
    pub fn new(ec2: Arc<dyn Ec2>, asg: Arc<dyn LifecycleActions>, group: GroupSpec) -> Self {
        Self {
            ec2,
            asg,
            group,
            events: None,
            reported: Mutex::new(HashMap::new()),
        }
    }

    /// The same executor, telling `events` about unreachable sources.
    pub fn with_events(mut self, events: Arc<dyn SourceEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// Whether another instance holding a copy is leaving (terminating) or staying.
    async fn holder_state(&self, instance_id: &str) -> Result<HolderState, StepError> {
        if let Some(asg) = self.asg.describe_instance(instance_id).await? {
            if asg.is_terminating() {
                return Ok(HolderState::Leaving);
            }
        }
        Ok(match self.ec2.describe_instance(instance_id).await? {
            None => HolderState::Leaving,
            Some(i) if i.is_gone() => HolderState::Leaving,
            Some(_) => HolderState::Staying,
        })
    }

    /// Observes and decides for one logical volume.
    async fn volume_step(
        &self,
        hook: &HookEvent,
        me: &ObservedInstance,
        spec: &VolumeSpec,
        elapsed: Duration,
        now: i64,
    ) -> Result<Observed, StepError> {
        let volumes = self
            .ec2
            .find_volumes(&VolumeQuery {
                group: self.group.name.clone(),
                slot: Some(SLOT),
                logical: Some(spec.name.clone()),
                attached_instance: None,
            })
            .await?;
        let snapshots = self
            .ec2
            .find_snapshots(&SnapshotQuery {
                group: self.group.name.clone(),
                slot: Some(SLOT),
                logical: Some(spec.name.clone()),
                ..SnapshotQuery::default()
            })
            .await?;
        let mut holders = HashMap::new();
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
            holders: &holders,
            elapsed,
            staying_holder_timeout: self.group.staying_holder_timeout,
            now,
        });
        Ok((step, volumes, snapshots))
    }

    /// Applies `source_unreachable` to the slot's steps, and logs (once per hook and kind) what it saw.
    fn source_policy(
        &self,
        hook: &HookEvent,
        observed: &[Observed],
        elapsed: Duration,
        now: i64,
    ) -> (Vec<VolumeStep>, Unreachable) {
        let token = hook.ledger_key();
        let lineages: Vec<Lineage<'_>> = observed
            .iter()
            .map(|(_, v, s)| Lineage {
                volumes: v,
                snapshots: s,
            })
            .collect();
        let mut steps: Vec<VolumeStep> = observed.iter().map(|(s, _, _)| s.clone()).collect();
        let seen = apply_source_policy(
            &SourceView {
                token: &token,
                lineages: &lineages,
                elapsed,
                now,
                policy: self.group.source_policy(),
            },
            &mut steps,
        );
        let policy = if self.group.restore_latest {
            "restore-latest"
        } else {
            "wait"
        };
        let kind = match &seen {
            Unreachable::Reachable => return (steps, seen),
            Unreachable::Waiting { waited, .. } if *waited < self.group.restore_latest_after => {
                return (steps, seen)
            }
            Unreachable::Waiting { .. } => "waiting",
            Unreachable::Restoring(_) => "restoring",
            Unreachable::NothingToRestore => "nothing",
            Unreachable::AlreadyMoving => "moving",
        };
        let first = self
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), kind)
            != Some(kind);
        if !first {
            return (steps, seen);
        }
        if kind == "waiting" {
            if let Some(e) = &self.events {
                e.source_unreachable(&self.group.name, &hook.instance_id, policy, elapsed);
            }
        }
        match &seen {
            Unreachable::Waiting { waited, latest } => match latest {
                Some(set) => {
                    warn!(asg = %self.group.name, waited_secs = waited.as_secs(), newest_point = %set.key, loss_window_secs = set.loss_window_secs, "source unreachable: waiting for the newest data (source_unreachable = \"wait\"); restoring the newest recovery point instead would lose up to {}s of writes", set.loss_window_secs)
                }
                None => {
                    warn!(asg = %self.group.name, waited_secs = waited.as_secs(), "source unreachable: waiting for the newest data (source_unreachable = \"wait\"); no complete recovery point exists")
                }
            },
            Unreachable::Restoring(set) => {
                error!(asg = %self.group.name, point = %set.key, loss_window_secs = set.loss_window_secs, snapshots = ?set.snapshots, "source unreachable after {}s: restoring the newest completed recovery point (source_unreachable = \"restore-latest\"); writes of the last {}s before the old instance's end are lost", elapsed.as_secs(), set.loss_window_secs)
            }
            Unreachable::NothingToRestore => {
                error!(asg = %self.group.name, "source unreachable and restore-latest is due, but no complete recovery point set exists: waiting for the newest data")
            }
            Unreachable::AlreadyMoving => {
                warn!(asg = %self.group.name, "source unreachable for part of the slot after this launch moved another part itself: waiting, a recovery point would not be consistent with it")
            }
            Unreachable::Reachable => {}
        }
        (steps, seen)
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
        match step {
            VolumeStep::Claim {
                volume_id,
                generation,
            } => {
                let mut t = ledger::base_tags(group, &hook.ledger_key());
                t.extend(ledger::data_tags(&spec.name, generation));
                t.push(ledger::name_tag(group, &spec.name, generation));
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
                let req = NewVolume {
                    snapshot_id: Some(snapshot_id.clone()),
                    size_gib: None,
                    client_token: ledger::client_token(
                        &hook.ledger_key(),
                        &spec.name,
                        Some(&snapshot_id),
                    ),
                    tags: ledger::new_volume_tags(
                        group,
                        &hook.ledger_key(),
                        &spec.name,
                        generation,
                        Some((&snapshot_id, &source_volume)),
                    ),
                    ..self.new_volume(me, spec)
                };
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
                let mut tags = ledger::new_volume_tags(
                    group,
                    &hook.ledger_key(),
                    &spec.name,
                    generation,
                    Some((&snapshot_id, &source_volume)),
                );
                tags.push((tags::LOSS_WINDOW.into(), loss_window_secs.to_string()));
                let req = NewVolume {
                    snapshot_id: Some(snapshot_id.clone()),
                    size_gib: None,
                    client_token: ledger::client_token(
                        &hook.ledger_key(),
                        &spec.name,
                        Some(&snapshot_id),
                    ),
                    tags,
                    ..self.new_volume(me, spec)
                };
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
                let mut t = ledger::base_tags(group, &hook.ledger_key());
                t.extend(ledger::data_tags(&spec.name, generation));
                t.push((tags::REASON.into(), SnapshotReason::Final.as_tag().into()));
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
            VolumeStep::Ready { .. } | VolumeStep::Wait(_) | VolumeStep::Abandon(_) => {
                Ok(String::new())
            }
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

    /// After the data: move the Elastic IP, then tag the instance. `None` when both are in place.
    async fn finish_steps(
        &self,
        me: &ObservedInstance,
        attached: &[AttachedData],
        eip_problem: &mut Option<String>,
    ) -> Result<Option<String>, StepError> {
        if let Some(alloc) = &self.group.elastic_ip {
            match self.move_address(alloc, me).await {
                Ok(Some(done)) => return Ok(Some(done)),
                Ok(None) => {}
                // The data is attached; an address problem must not cost the instance (ABANDON would replace it,
                // and every replacement would fail the same way). Continue, loudly.
                Err(e) if e.disposition == Disposition::Permanent => {
                    error!(eip = %alloc, error = %e, "cannot move the Elastic IP; continuing without it (the data is attached)");
                    *eip_problem = Some(format!("Elastic IP {alloc} not moved: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        let mut want: Vec<(String, String)> = attached
            .iter()
            .map(|a| {
                (
                    format!("{}{}", tags::ATTACHED_PREFIX, a.logical),
                    a.volume_id.clone(),
                )
            })
            .collect();
        want.push((tags::GROUP.into(), self.group.name.clone()));
        want.push((tags::SLOT.into(), SLOT.to_string()));
        if want.iter().any(|(k, v)| me.tag(k) != Some(v.as_str())) {
            self.ec2.tag_instance(&me.id, &want).await?;
            return Ok(Some("tagging the instance".into()));
        }
        Ok(None)
    }

    /// Associates the Elastic IP with `me` unless it already is; `Some` when a call was made.
    async fn move_address(
        &self,
        alloc: &str,
        me: &ObservedInstance,
    ) -> Result<Option<String>, StepError> {
        let addr = self.ec2.describe_address(alloc).await?.ok_or_else(|| {
            StepError::permanent(
                "ec2:DescribeAddresses",
                format!("Elastic IP {alloc} does not exist"),
            )
        })?;
        if addr.instance_id.as_deref() == Some(me.id.as_str()) {
            return Ok(None);
        }
        self.ec2.associate_address(alloc, &me.id).await?;
        info!(eip = %alloc, public_ip = %addr.public_ip, from = ?addr.instance_id, "moving the Elastic IP");
        Ok(Some(format!("associating {alloc}")))
    }
}

#[async_trait]
impl HookWork for LaunchWork {
    async fn step(&self, hook: &HookEvent, elapsed: Duration) -> Result<Progress, StepError> {
        let me = match self.ec2.describe_instance(&hook.instance_id).await? {
            Some(i) if !i.is_gone() => i,
            Some(i) => {
                return Ok(Progress::Finished(Verdict::abandon(format!(
                    "instance {} is {}",
                    i.id, i.state
                ))))
            }
            None => {
                return Ok(Progress::Finished(Verdict::abandon(format!(
                    "instance {} does not exist",
                    hook.instance_id
                ))))
            }
        };
        let now = self.ec2.now_secs();
        let mut observed = Vec::with_capacity(self.group.volumes.len());
        for spec in &self.group.volumes {
            observed.push(self.volume_step(hook, &me, spec, elapsed, now).await?);
        }
        let (mut steps, seen) = self.source_policy(hook, &observed, elapsed, now);
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
                return Ok(Progress::Acted(self.act(hook, &me, spec, step).await?));
            }
            SlotStep::Wait => {
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
                let mut why = waits.join("; ");
                if let Unreachable::Waiting { waited, .. } = &seen {
                    if *waited >= self.group.restore_latest_after {
                        why.push_str(&format!(
                            "; source unreachable for {}s (source_unreachable = {})",
                            waited.as_secs(),
                            if self.group.restore_latest {
                                "restore-latest"
                            } else {
                                "wait"
                            }
                        ));
                    }
                }
                return Ok(Progress::Waiting(why));
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
        let verdict = match verdict.loss_window_secs() {
            Some(loss) => {
                let first = self
                    .reported
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(hook.ledger_key(), "restored")
                    != Some("restored");
                if first {
                    if let Some(e) = &self.events {
                        e.restored_latest(
                            &self.group.name,
                            &hook.instance_id,
                            loss,
                            verdict.attached(),
                        );
                    }
                }
                let gens: Vec<String> = verdict
                    .attached()
                    .iter()
                    .map(|a| format!("{} {} gen {}", a.logical, a.volume_id, a.generation))
                    .collect();
                verdict.degraded(format!(
                    "{RESTORED_LATEST}: {}; loss window {loss}s",
                    gens.join(", ")
                ))
            }
            None => verdict,
        };
        Ok(Progress::Finished(verdict))
    }
}

/// The start of the note on a launch verdict whose data came from a recovery point (`restore-latest`).
pub const RESTORED_LATEST: &str = "restored the newest recovery point, source unreachable";

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

fn describe_wait(logical: &str, w: &WaitFor) -> String {
    match w {
        WaitFor::VolumeCreating(v) => format!("{logical}: volume {v} creating"),
        WaitFor::Attachment(v) => format!("{logical}: volume {v} attaching or detaching"),
        WaitFor::Snapshot(s) => format!("{logical}: final snapshot {s} pending"),
        WaitFor::SourceBusy(v) => {
            format!("{logical}: volume {v} of the newest generation is creating, attaching or detaching")
        }
        WaitFor::FinalFailed(s) => format!(
            "{logical}: final snapshot {s} failed; it is taken again {FINAL_RETRY_SECS}s after it started"
        ),
        WaitFor::Holder {
            instance_id,
            volume_id,
        } => {
            format!("{logical}: barrier: {instance_id} is terminating with {volume_id}; waiting for the fence (its termination and the detach) before the final delta")
        }
        WaitFor::StayingHolder {
            instance_id,
            volume_id,
        } => {
            format!("{logical}: {instance_id} is still in service with {volume_id} (launch-before-terminate); waiting")
        }
    }
}
