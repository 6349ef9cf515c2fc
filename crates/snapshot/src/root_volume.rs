//! The terminate half of an instance refresh with `ReplaceRootVolume` (`ReplacingRootVolume:Wait`). The
//! instance stays, with its ENIs, IPs and data volumes; only its root volume is replaced. So ferry moves
//! nothing: it checks that the slot's data and the Elastic IP are on the instance (and says so when they are
//! not; the launch half that follows attaches them), takes a recovery point before the reboot when
//! `root_volume_recovery_point` is on, and CONTINUEs. No fence, no detach, no restore.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::observe::ObservedVolume;
use ferry_state_machine::{HookEvent, HookWork, Progress, SlotChoice, StepError, Verdict};
use tracing::{info, warn};

use crate::fence;
use crate::ports::{Ec2, SnapshotQuery};
use crate::recovery_point::RecoverySet;
use crate::slot_cell::SlotCell;
use crate::spec::GroupSpec;

/// Runs the terminate half of root-volume replacements of one group.
pub struct RootVolumeWork {
    ec2: Arc<dyn Ec2>,
    group: GroupSpec,
    slot: SlotCell,
}

/// The `ferry:hook` of a recovery point taken before a root-volume replacement of `instance`.
pub fn root_volume_hook_key(instance: &str) -> String {
    format!("{instance}/root-volume")
}

impl RootVolumeWork {
    /// The executor for `group`.
    pub fn new(ec2: Arc<dyn Ec2>, group: GroupSpec) -> Self {
        Self {
            ec2,
            group,
            slot: SlotCell::default(),
        }
    }

    /// The slot's newest data attached to the instance, per configured logical volume; and the names of
    /// the logical volumes that are not attached to it.
    async fn attached(&self, me: &str) -> Result<(Vec<ObservedVolume>, Vec<String>), StepError> {
        let managed: Vec<ObservedVolume> =
            fence::managed_on(self.ec2.as_ref(), &self.group, Some(self.slot.get()), me)
                .await?
                .into_iter()
                .filter(fence::is_attached)
                .collect();
        let missing = self
            .group
            .volume_names()
            .into_iter()
            .filter(|n| !managed.iter().any(|v| v.logical.as_ref() == Some(n)))
            .collect();
        Ok((managed, missing))
    }

    /// Whether this hook's recovery point was started already: a recovery set of this instance begun
    /// since the hook began (a repeated step after a crash or redelivery must not take a second).
    async fn recovery_point_taken(
        &self,
        me: &str,
        since: i64,
    ) -> Result<Option<Vec<String>>, StepError> {
        let query = SnapshotQuery {
            group: self.group.name.clone(),
            hook: Some(root_volume_hook_key(me)),
            ..SnapshotQuery::default()
        };
        let ids: Vec<String> = self
            .ec2
            .find_snapshots(&query)
            .await?
            .into_iter()
            .filter(|s| s.start_time.is_some_and(|t| t >= since))
            .map(|s| s.id)
            .collect();
        Ok((!ids.is_empty()).then_some(ids))
    }

    /// The Elastic IP problem, if the group has one and it is not on the instance.
    async fn address_problem(&self, me: &str) -> Result<Option<String>, StepError> {
        let Some(eip) = self.group.elastic_ip_of(self.slot.get()) else {
            return Ok(None);
        };
        let addr = self.ec2.describe_address(eip).await?;
        Ok(match addr.and_then(|a| a.instance_id) {
            Some(i) if i == me => None,
            Some(i) => Some(format!("{eip} is on {i}, not on {me}")),
            None => Some(format!("{eip} is not associated")),
        })
    }
}

#[async_trait]
impl HookWork for RootVolumeWork {
    async fn slot(&self, hook: &HookEvent, _elapsed: Duration) -> Result<SlotChoice, StepError> {
        let n = fence::held_slot(self.ec2.as_ref(), &self.group, &hook.instance_id).await?;
        Ok(SlotChoice::Known(self.slot.set(n)))
    }

    async fn step(&self, hook: &HookEvent, elapsed: Duration) -> Result<Progress, StepError> {
        let me = hook.instance_id.as_str();
        let (attached, missing) = self.attached(me).await?;
        let now = self.ec2.now_secs();
        let began = hook.began_secs(now, elapsed);
        let mut notes = Vec::new();
        if self.group.root_volume_recovery_point && !attached.is_empty() {
            match self.recovery_point_taken(me, began).await? {
                Some(ids) => notes.push(format!("recovery point {}", ids.join(","))),
                None => {
                    let ids: Vec<String> = attached.iter().map(|v| v.id.clone()).collect();
                    let set = RecoverySet {
                        group: &self.group.name,
                        slot: self.slot.get(),
                        instance: me,
                        hook: &root_volume_hook_key(me),
                        why: "recovery point before a root-volume replacement",
                    };
                    let made = set.start(self.ec2.as_ref(), &attached, &ids, now).await?;
                    let snaps: Vec<&str> = made.iter().map(|(s, _)| s.as_str()).collect();
                    return Ok(Progress::Acted(format!(
                        "recovery point {} before the root-volume replacement",
                        snaps.join(",")
                    )));
                }
            }
        }
        if !missing.is_empty() {
            warn!(instance.id = %me, missing = ?missing, "root-volume replacement: these logical volumes are not attached to the instance; its launch half attaches them");
            notes.push(format!("not attached: {}", missing.join(",")));
        }
        if let Some(problem) = self.address_problem(me).await? {
            warn!(instance.id = %me, problem = %problem, "root-volume replacement: the Elastic IP is not on the instance; its launch half moves it");
            notes.push(problem);
        }
        let ids: Vec<&str> = attached.iter().map(|v| v.id.as_str()).collect();
        info!(instance.id = %me, volumes = ?ids, "root-volume replacement: the data stays attached; nothing is moved");
        let mut reason = format!(
            "root-volume replacement: the instance keeps its data ({}) and IPs; nothing moved",
            if ids.is_empty() {
                "none attached".to_string()
            } else {
                ids.join(",")
            }
        );
        if !notes.is_empty() {
            reason = format!("{reason} ({})", notes.join("; "));
        }
        Ok(Progress::Finished(Verdict::terminate_done(reason)))
    }
}
