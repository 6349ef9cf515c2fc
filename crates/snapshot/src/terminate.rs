//! The terminate hook's effectful shell: the pre-copy. While the leaving instance still runs, snapshot its
//! managed volumes crash-consistently, tag the set into the ledger as a recovery point (`precopy`), and wait
//! (bounded) for it to complete. Completing the action is the fence: the instance shuts down and its volumes
//! detach; the launch then takes the small final delta of the fenced volumes (docs/architecture.md).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::budget::ApiBudget;
use ferry_state_machine::machine::{decide_terminate, TerminateStep, TerminateView};
use ferry_state_machine::observe::{ObservedSnapshot, ObservedVolume, SnapshotState};
use ferry_state_machine::{tags, HookEvent, HookWork, Progress, SlotChoice, StepError, Verdict};
use tracing::{error, info, warn};

use crate::fence;
use crate::ledger;
use crate::ports::{Ec2, SnapshotQuery, Tag};
use crate::slot_cell::SlotCell;
use crate::spec::GroupSpec;

/// Runs terminate hooks of one group.
pub struct TerminateWork {
    ec2: Arc<dyn Ec2>,
    group: GroupSpec,
    skip: Option<PrecopySkip>,
    slot: SlotCell,
}

/// When a terminate completes at once instead of taking its pre-copy: when a `CreateSnapshot` asked now
/// would wait longer than `after` for ferry's API budget. That is an AZ storm, where the `CreateSnapshot`
/// bucket bounds how fast every group moves and a pre-copy costs each group a second call; the launch's
/// final snapshot, taken after the fence, carries every acknowledged write either way.
#[derive(Clone)]
pub struct PrecopySkip {
    /// The budget whose `CreateSnapshot` queue is measured.
    pub budget: Arc<ApiBudget>,
    /// The longest wait for a token at which the pre-copy is still taken.
    pub after: Duration,
}

impl TerminateWork {
    /// A terminate executor for `group`.
    pub fn new(ec2: Arc<dyn Ec2>, group: GroupSpec) -> Self {
        Self {
            ec2,
            group,
            skip: None,
            slot: SlotCell::default(),
        }
    }

    /// Skips the pre-copy as `skip` says.
    pub fn with_precopy_skip(mut self, skip: Option<PrecopySkip>) -> Self {
        self.skip = skip;
        self
    }

    /// Why the pre-copy is skipped now, if it is: only under `wait` (under `restore-latest` the pre-copy is
    /// the newest point the replacement may restore) and only when no managed volume is deleted with the
    /// instance (then the pre-copy is the data's only copy), and only before any of it was taken.
    fn skip_reason(&self, managed: &[ObservedVolume], missing: &[String]) -> Option<String> {
        let skip = self.skip.as_ref()?;
        if self.group.restore_latest
            || missing.len() < managed.len()
            || managed.iter().any(deleted_with_instance)
        {
            return None;
        }
        let queued = skip.budget.backlog("ec2:CreateSnapshot");
        (queued > skip.after).then(|| {
            format!(
                "pre-copy skipped: a CreateSnapshot would wait {}s for ferry's API budget (over {}s: an AZ storm); \
                 completing is the fence, and the launch's final snapshot carries the data",
                queued.as_secs(),
                skip.after.as_secs()
            )
        })
    }

    /// The pre-copy's tags. `whole` is true for the first set of every managed volume (one instant, one
    /// `ferry:set`); a retake of some volumes gets a set of its own, since it is of a later instant.
    fn snapshot_tags(&self, hook: &HookEvent, elapsed: Duration, whole: bool) -> Vec<Tag> {
        let now = self.ec2.now_secs();
        let set = if whole {
            hook.ledger_key()
        } else {
            format!("{}/retake-{now}", hook.ledger_key())
        };
        ledger::precopy_tags(
            &self.group.name,
            self.slot.get(),
            &hook.ledger_key(),
            hook.began_secs(now, elapsed),
            set,
            format!(
                "ferry {} pre-copy at terminate of {}",
                self.group.name, hook.instance_id
            ),
        )
    }

    async fn snapshot(
        &self,
        hook: &HookEvent,
        managed: &[ObservedVolume],
        missing: &[String],
        elapsed: Duration,
    ) -> Result<String, StepError> {
        let t = self.snapshot_tags(hook, elapsed, missing.len() == managed.len());
        if missing.len() == 1 || missing.len() < managed.len() {
            // One volume (or a retry of some): CreateSnapshot per volume, with every ledger tag at creation.
            let mut made = Vec::new();
            for vol in managed.iter().filter(|v| missing.contains(&v.id)) {
                let mut vt = t.clone();
                vt.extend(ledger::volume_data_tags(vol));
                let desc = format!(
                    "ferry {}: {} pre-copy at terminate of {}",
                    self.group.name,
                    vol.logical.as_deref().unwrap_or("?"),
                    hook.instance_id
                );
                let id = self.ec2.create_snapshot(&vol.id, &desc, &vt).await?;
                info!(snapshot.id = %id, volume.id = %vol.id, "pre-copy snapshot started (a recovery point; the final delta follows the fence)");
                made.push(id);
            }
            return Ok(format!("snapshotting {}", made.join(",")));
        }
        // Several volumes: one crash-consistent CreateSnapshots, excluding the boot volume and unmanaged volumes.
        let instance = self
            .ec2
            .describe_instance(&hook.instance_id)
            .await?
            .ok_or_else(|| {
                StepError::retry(
                    "ec2:DescribeInstances",
                    format!(
                        "instance {} not found while its volumes are attached",
                        hook.instance_id
                    ),
                )
            })?;
        let exclude = ledger::snapshot_set_exclusions(&instance, missing);
        let made = self
            .ec2
            .create_snapshots(&hook.instance_id, &exclude, &t)
            .await?;
        let ids: Vec<&str> = made.iter().map(|(s, _)| s.as_str()).collect();
        info!(snapshots = ?ids, "crash-consistent pre-copy snapshot set started");
        Ok(format!("snapshotting {}", ids.join(",")))
    }
}

/// How far EC2's snapshot clock and the hook's start may disagree, in seconds.
const CLOCK_SLACK_SECS: i64 = 60;

/// Whether EC2 deletes this attached volume with its instance.
fn deleted_with_instance(v: &ObservedVolume) -> bool {
    v.attachment
        .as_ref()
        .is_some_and(|a| a.delete_on_termination)
}

/// The start of the reason of a terminate that ferry abandons because it cannot take the data off.
pub const CANNOT_TAKE_DATA_OFF: &str = "cannot take the data off";

impl TerminateWork {
    /// Under `restore-latest`, records the fence (now: the completion follows) on the completed pre-copies,
    /// so that a restore of one reports the writes acknowledged until the fence as lost
    /// (`ferry:fenced-at`). Under `wait` nothing restores a pre-copy, and no call is spent.
    async fn mark_fence(&self, snapshots: &[ObservedSnapshot]) -> Result<(), StepError> {
        if !self.group.restore_latest {
            return Ok(());
        }
        let now = self.ec2.now_secs().to_string();
        for s in snapshots
            .iter()
            .filter(|s| s.state == SnapshotState::Completed && s.fenced_at.is_none())
        {
            self.ec2
                .tag_snapshot(&s.id, &[(tags::FENCED_AT.into(), now.clone())])
                .await?;
        }
        Ok(())
    }

    /// The verdict when a managed volume would be deleted with the instance (`DeleteOnTermination`, e.g. a
    /// launch template's block device mapping): the fence would destroy the only copy of the newest data.
    /// With `wait`, ABANDON, so that Auto Scaling retains the instance with its data (the group's
    /// `TerminateHookAbandon = retain`); with `restore-latest`, CONTINUE, and the replacement restores the
    /// newest recovery point (the pre-copy just taken).
    fn doomed(&self, hook: &HookEvent, managed: &[ObservedVolume]) -> Verdict {
        let ids: Vec<&str> = managed
            .iter()
            .filter(|v| deleted_with_instance(v))
            .map(|v| v.id.as_str())
            .collect();
        let what = format!(
            "{} would be deleted with {} (DeleteOnTermination = true)",
            ids.join(","),
            hook.instance_id
        );
        if self.group.restore_latest {
            error!(volumes = ?ids, "{what}: completing the terminate anyway (source_unreachable = \"restore-latest\"); the replacement restores the newest recovery point");
            return Verdict::terminate_done(format!(
                "degraded: {what}; the replacement restores the newest recovery point"
            ));
        }
        error!(volumes = ?ids, "{what}: abandoning the terminate so that Auto Scaling retains the instance with its data (TerminateHookAbandon = retain)");
        Verdict::abandon(format!(
            "{CANNOT_TAKE_DATA_OFF}: {what}; abandoning so that the instance is retained with its data \
             (InstanceLifecyclePolicy TerminateHookAbandon = retain; see docs/failure-modes.md)"
        ))
    }
}

#[async_trait]
impl HookWork for TerminateWork {
    async fn slot(&self, hook: &HookEvent, _elapsed: Duration) -> Result<SlotChoice, StepError> {
        let n = fence::held_slot(self.ec2.as_ref(), &self.group, &hook.instance_id).await?;
        Ok(SlotChoice::Known(self.slot.set(n)))
    }

    async fn step(&self, hook: &HookEvent, elapsed: Duration) -> Result<Progress, StepError> {
        // Both reads at once: neither depends on the other, and each joins its own batched round.
        let snapshot_query = SnapshotQuery {
            group: self.group.name.clone(),
            hook: Some(hook.ledger_key()),
            ..SnapshotQuery::default()
        };
        let (managed, snapshots) = tokio::try_join!(
            fence::managed_on(
                self.ec2.as_ref(),
                &self.group,
                Some(self.slot.get()),
                &hook.instance_id
            ),
            self.ec2.find_snapshots(&snapshot_query)
        )?;
        // Only this action's: an instance back from a warm pool terminates again under the same ledger key,
        // and the pre-copy of its earlier terminate is no recovery point of this one.
        let began = hook.began_secs(self.ec2.now_secs(), elapsed);
        let snapshots: Vec<ObservedSnapshot> = snapshots
            .into_iter()
            .filter(|s| s.start_time.is_none_or(|t| t + CLOCK_SLACK_SECS >= began))
            .collect();
        let step = decide_terminate(&TerminateView {
            volumes: &managed,
            snapshots: &snapshots,
            elapsed,
            snapshot_timeout: self.group.terminate_snapshot_bound(),
        });
        match step {
            TerminateStep::Snapshot(missing) => {
                if let Some(why) = self.skip_reason(&managed, &missing) {
                    warn!(reason = %why, "completing the terminate without a pre-copy");
                    return Ok(Progress::Finished(Verdict::terminate_done(why)));
                }
                Ok(Progress::Acted(
                    self.snapshot(hook, &managed, &missing, elapsed).await?,
                ))
            }
            TerminateStep::TagSnapshots(pairs) => {
                for (snap, vol_id) in &pairs {
                    if let Some(vol) = managed.iter().find(|v| &v.id == vol_id) {
                        self.ec2
                            .tag_snapshot(snap, &ledger::volume_data_tags(vol))
                            .await?;
                    }
                }
                Ok(Progress::Acted(format!(
                    "tagged {} snapshot(s)",
                    pairs.len()
                )))
            }
            TerminateStep::Wait(pending) => Ok(Progress::Waiting(format!(
                "snapshots pending: {}",
                pending.join(",")
            ))),
            TerminateStep::Done | TerminateStep::DoneDegraded(_)
                if managed.iter().any(deleted_with_instance) =>
            {
                self.mark_fence(&snapshots).await?;
                Ok(Progress::Finished(self.doomed(hook, &managed)))
            }
            TerminateStep::Done if managed.is_empty() => Ok(Progress::Finished(
                Verdict::terminate_done("no managed volume attached: nothing to snapshot"),
            )),
            TerminateStep::Done => {
                self.mark_fence(&snapshots).await?;
                let ids: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
                Ok(Progress::Finished(Verdict::terminate_done(format!(
                    "pre-copy completed: {}; completing is the fence, the final delta follows",
                    ids.join(",")
                ))))
            }
            TerminateStep::DoneDegraded(why) => {
                warn!(reason = %why, "completing the terminate without a completed pre-copy; the fenced volume keeps the data and the final snapshot will be a full copy");
                Ok(Progress::Finished(Verdict::terminate_done(format!(
                    "degraded: {why}"
                ))))
            }
        }
    }
}
