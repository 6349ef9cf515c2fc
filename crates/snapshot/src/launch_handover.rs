//! How a launch sees the other instances that hold a copy of its slot's data, and the handover: with
//! `launch_before_terminate = "handover"`, a launch fences an old instance that Auto Scaling is replacing (a
//! planned stop: the OS flushes and shuts down), detaches its data, and then takes the data as from any
//! fenced instance. It never fences an instance unless Auto Scaling shows the replacement.

use ferry_state_machine::observe::HolderState;
use ferry_state_machine::{GroupInstance, Progress, StepError};
use tracing::info;

use super::LaunchWork;
use crate::fence;

impl LaunchWork {
    /// Whether another instance holding a copy is fenced (EC2 ended it, or neither EC2 nor Auto Scaling
    /// knows it), leaving (Auto
    /// Scaling terminates it, or it waits to go back to the warm pool while running), replaced (see
    /// [`HolderState::Replaced`]) or staying.
    pub(super) async fn holder_state(&self, instance_id: &str) -> Result<HolderState, StepError> {
        let ec2 = self.ec2.describe_instance(instance_id).await?;
        if ec2.as_ref().is_some_and(|i| i.is_gone()) {
            return Ok(HolderState::Fenced);
        }
        let asg = self.asg.describe_instance(instance_id).await?;
        let (ec2_state, asg) = match (ec2, asg) {
            (Some(i), Some(asg)) => (i.state, asg),
            (Some(_), None) => return Ok(HolderState::Staying),
            // Unknown to both: ended long ago.
            (None, None) => return Ok(HolderState::Fenced),
            // EC2 does not show it yet (eventual consistency: a claimant launched moments ago), but Auto
            // Scaling has it: it is alive. Never fenced on EC2's silence alone.
            (None, Some(asg)) if asg.is_terminating() => return Ok(HolderState::Leaving),
            (None, Some(_)) => return Ok(HolderState::Staying),
        };
        if asg.is_terminating() {
            return Ok(HolderState::Leaving);
        }
        if asg.lifecycle_state.starts_with("Warmed") {
            // Out of service in the warm pool. Stopped, it writes nothing: its data is detached (the return
            // hook timed out before ferry took it off). Still running, its return hook is taking it off.
            return Ok(if ec2_state == "stopped" {
                HolderState::Replaced
            } else {
                HolderState::Leaving
            });
        }
        if self.group.handover && self.being_replaced(&asg).await? {
            return Ok(HolderState::Replaced);
        }
        Ok(HolderState::Staying)
    }

    /// Whether Auto Scaling shows that `old`, in service in this group, is being replaced: an instance
    /// refresh of the group is in progress, or the group's maintenance policy launches before it terminates
    /// (MaxHealthyPercentage above 100) and the group holds more instances than it desires (so one goes).
    async fn being_replaced(&self, old: &GroupInstance) -> Result<bool, StepError> {
        if old.group != self.group.name || old.lifecycle_state != "InService" {
            return Ok(false);
        }
        if self.asg.instance_refresh_active(&self.group.name).await? {
            info!(old = %old.instance_id, "handover: an instance refresh of the group is in progress");
            return Ok(true);
        }
        let Some(info) = self.asg.describe_group(&self.group.name).await? else {
            return Ok(false);
        };
        let launches_first = info.maintenance_policy.is_some_and(|(_, max)| max > 100);
        let counted = info
            .instances
            .iter()
            .filter(|i| {
                i.lifecycle_state.starts_with("Pending") || i.lifecycle_state == "InService"
            })
            .count();
        let surplus = i32::try_from(counted).unwrap_or(i32::MAX) > info.capacity.2;
        if launches_first && surplus {
            info!(old = %old.instance_id, desired = info.capacity.2, counted, "handover: the maintenance policy launches before terminating and the group is over its desired capacity");
        }
        Ok(launches_first && surplus)
    }

    /// One step of the handover's fence of `holder`: stop it, then detach the slot's volumes from it once
    /// it is stopped.
    pub(super) async fn fence_holder(&self, holder: &str) -> Result<Progress, StepError> {
        let held = fence::managed_on(
            self.ec2.as_ref(),
            &self.group,
            Some(self.slot.get()),
            holder,
        )
        .await?;
        if held.is_empty() {
            return Ok(Progress::Waiting(format!(
                "handover: the data is detaching from {holder}"
            )));
        }
        fence::stop_then_detach(self.ec2.as_ref(), holder, &held, "handover").await
    }
}
