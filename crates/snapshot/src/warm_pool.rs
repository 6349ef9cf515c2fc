//! The warm pool's hooks: an instance launched into the pool, or going back to it, must hold none of the
//! slot's data and not the Elastic IP. A warm instance is stopped, not terminated, so its volumes would stay
//! attached to it: ferry stops it first (the planned fence: the OS flushes and shuts down), then detaches the
//! data into the ledger and takes the Elastic IP off, and only then CONTINUEs. The next launch into service
//! finds the detached volume as after any terminate (same-AZ claim, or the final delta elsewhere).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::{
    tags, Disposition, HookEvent, HookWork, Progress, SlotChoice, StepError, Verdict,
};
use tracing::{error, info};

use crate::fence;
use crate::ports::Ec2;
use crate::slot_cell::SlotCell;
use crate::spec::GroupSpec;

/// The value of a `ferry:attached:<name>` instance tag once the volume was taken off the instance.
pub const DETACHED: &str = "none";

/// Runs the warm-pool fill (EC2→WarmPool) and return (AutoScalingGroup→WarmPool) hooks of one group.
pub struct WarmPoolWork {
    ec2: Arc<dyn Ec2>,
    group: GroupSpec,
    slot: SlotCell,
}

impl WarmPoolWork {
    /// The warm-pool executor for `group`.
    pub fn new(ec2: Arc<dyn Ec2>, group: GroupSpec) -> Self {
        Self {
            ec2,
            group,
            slot: SlotCell::default(),
        }
    }

    /// Marks the instance's `ferry:attached:<name>` tags from its time in service as detached (`none`), so
    /// that the volume-wait helper, when the instance re-enters service, waits for the volume its launch
    /// attaches, not for the one it had. `Some` when a call was made.
    async fn clear_attached_tags(&self, me: &str) -> Result<Option<String>, StepError> {
        let Some(instance) = self.ec2.describe_instance(me).await? else {
            return Ok(None);
        };
        let stale: Vec<(String, String)> = instance
            .tags
            .iter()
            .filter(|(k, v)| k.starts_with(tags::ATTACHED_PREFIX) && v != DETACHED)
            .map(|(k, _)| (k.clone(), DETACHED.to_string()))
            .collect();
        if stale.is_empty() {
            return Ok(None);
        }
        self.ec2.tag_instance(me, &stale).await?;
        Ok(Some(format!("marked {} detached on {me}", stale.len())))
    }
}

#[async_trait]
impl HookWork for WarmPoolWork {
    async fn slot(&self, hook: &HookEvent, _elapsed: Duration) -> Result<SlotChoice, StepError> {
        let n = fence::held_slot(self.ec2.as_ref(), &self.group, &hook.instance_id).await?;
        Ok(SlotChoice::Known(self.slot.set(n)))
    }

    async fn step(&self, hook: &HookEvent, _elapsed: Duration) -> Result<Progress, StepError> {
        let me = hook.instance_id.as_str();
        let slot = self.slot.get();
        let held = fence::managed_on(self.ec2.as_ref(), &self.group, Some(slot), me).await?;
        if !held.is_empty() {
            return fence::stop_then_detach(self.ec2.as_ref(), me, &held, "warm pool").await;
        }
        if let Some(done) = self.clear_attached_tags(me).await? {
            return Ok(Progress::Acted(done));
        }
        if let Some(eip) = self.group.elastic_ip_of(slot) {
            let on_me = self
                .ec2
                .describe_address(eip)
                .await?
                .is_some_and(|a| a.instance_id.as_deref() == Some(me));
            if on_me {
                match self.ec2.disassociate_address(eip, me).await {
                    Ok(()) => {
                        info!(instance.id = %me, allocation.id = %eip, "took the Elastic IP off the instance going to the warm pool; the next launch into service moves it");
                        return Ok(Progress::Acted(format!("took {eip} off {me}")));
                    }
                    // The data is off; an address left on a stopped warm instance serves nothing and the next
                    // launch moves it. Not worth the hook: continue, loudly.
                    Err(e) if e.disposition == Disposition::Permanent => {
                        error!(instance.id = %me, allocation.id = %eip, error = %e, "cannot take the Elastic IP off the warm instance; continuing (the next launch into service moves it)");
                        return Ok(Progress::Finished(
                            Verdict::holds_no_data(
                                "warm pool: the instance holds none of the slot's data",
                            )
                            .degraded(format!("Elastic IP {eip} left on {me}: {e}")),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Progress::Finished(Verdict::holds_no_data(
            "warm pool: the instance holds none of the slot's data and not the Elastic IP",
        )))
    }
}
