//! The launch's last steps once the data is attached (move the Elastic IP, tag the instance), and how a
//! waiting launch describes what it waits for.

use ferry_state_machine::machine::{VolumeStep, WaitFor, FINAL_RETRY_SECS};
use ferry_state_machine::observe::{ObservedInstance, ObservedSnapshot, ObservedVolume};
use ferry_state_machine::{AttachedData, Disposition, HookEvent, StepError};
use tracing::{error, info};

use super::LaunchWork;
use crate::ledger;

impl LaunchWork {
    /// After the data: move the Elastic IP, then tag the instance. `None` when both are in place.
    pub(super) async fn finish_steps(
        &self,
        me: &ObservedInstance,
        attached: &[AttachedData],
        eip_problem: &mut Option<String>,
    ) -> Result<Option<String>, StepError> {
        if let Some(alloc) = self.group.elastic_ip_of(self.slot.get()) {
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
        let want = ledger::attached_tags(
            &self.group.name,
            self.slot.get(),
            attached
                .iter()
                .map(|a| (a.logical.as_str(), a.volume_id.as_str())),
        );
        if want.iter().any(|(k, v)| me.tag(k) != Some(v.as_str())) {
            self.ec2.tag_instance(&me.id, &want).await?;
            return Ok(Some("tagging the instance".into()));
        }
        Ok(None)
    }

    /// While every volume waits only for this hook's own volume to be created or attached (the barrier
    /// passed: no other instance holds a copy), moves the Elastic IP at once instead of after the attach,
    /// taking it off the critical path. `Some` when a call was made. A failure here is left to the finishing
    /// step, which decides whether it may cost the instance.
    pub(super) async fn early_address(
        &self,
        hook: &HookEvent,
        me: &ObservedInstance,
        steps: &[VolumeStep],
        observed: &[(VolumeStep, Vec<ObservedVolume>, Vec<ObservedSnapshot>)],
    ) -> Result<Option<String>, StepError> {
        let Some(alloc) = self.group.elastic_ip_of(self.slot.get()) else {
            return Ok(None);
        };
        let key = hook.ledger_key();
        let own = |vols: &[ObservedVolume], id: &str| {
            vols.iter().any(|v| {
                v.id == id
                    && v.hook.as_deref() == Some(key.as_str())
                    && v.attached_to().is_none_or(|i| i == me.id)
            })
        };
        let only_own = steps.iter().zip(observed).all(|(s, (_, vols, _))| match s {
            VolumeStep::Wait(WaitFor::VolumeCreating(v) | WaitFor::Attachment(v)) => own(vols, v),
            VolumeStep::Ready { .. } => true,
            _ => false,
        });
        if !only_own {
            return Ok(None);
        }
        Ok(self.move_address(alloc, me).await.unwrap_or(None))
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

pub(super) fn describe_wait(logical: &str, w: &WaitFor) -> String {
    match w {
        WaitFor::VolumeCreating(v) => format!("{logical}: volume {v} creating"),
        WaitFor::Attachment(v) => format!("{logical}: volume {v} attaching or detaching"),
        WaitFor::Snapshot(s) => format!("{logical}: final snapshot {s} pending"),
        WaitFor::SourceBusy(v) => {
            format!("{logical}: volume {v} of the newest generation is creating, attaching or detaching")
        }
        WaitFor::FinalLost(why) => format!(
            "{logical}: {why}; the newest recovery point is restored once restore_latest_after_secs have passed"
        ),
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
