//! The planned fence of an instance that keeps running, and the read it starts from: the slot's managed
//! volumes attached to one instance. Stopping the instance (`StopInstances`: the OS flushes and shuts down)
//! ends its writes; once it is stopped its data is detached into the ledger. Used by the warm pool's return
//! and by the launch-before-terminate handover.

use ferry_state_machine::observe::{AttachState, ObservedVolume};
use ferry_state_machine::{Progress, StepError};
use tracing::info;

use crate::ledger::FIRST_SLOT;
use crate::ports::{Ec2, VolumeQuery};
use crate::spec::GroupSpec;

/// The managed volumes of `slot` (every slot: `None`), of configured logical names and holding data,
/// attached, attaching or detaching to `instance`.
pub async fn managed_on(
    ec2: &dyn Ec2,
    group: &GroupSpec,
    slot: Option<u32>,
    instance: &str,
) -> Result<Vec<ObservedVolume>, StepError> {
    let names = group.volume_names();
    let query = VolumeQuery {
        group: group.name.clone(),
        slot,
        logical: None,
        attached_instance: Some(instance.to_string()),
    };
    Ok(ec2
        .find_volumes(&query)
        .await?
        .into_iter()
        .filter(|v| {
            v.holds_data()
                && v.attached_to() == Some(instance)
                && v.logical.as_ref().is_some_and(|l| names.contains(l))
        })
        .collect())
}

/// The slot an instance that may hold data holds: the slot of the managed volumes attached to it (the
/// data is the truth), else its `ferry:slot` tag (a launch claimed it before any data came), else slot 0,
/// where it holds nothing. A group of one has only slot 0.
pub async fn held_slot(ec2: &dyn Ec2, group: &GroupSpec, instance: &str) -> Result<u32, StepError> {
    if !group.multi_slot {
        return Ok(FIRST_SLOT);
    }
    let held = managed_on(ec2, group, None, instance).await?;
    if let Some(n) = held.iter().find_map(|v| v.slot) {
        return Ok(n);
    }
    let tagged = ec2
        .describe_instance(instance)
        .await?
        .and_then(|i| i.slot());
    Ok(tagged.unwrap_or(FIRST_SLOT))
}

/// Whether the volume's attachment is `attached` (not attaching or detaching).
pub fn is_attached(v: &ObservedVolume) -> bool {
    v.attachment
        .as_ref()
        .is_some_and(|a| a.state == AttachState::Attached)
}

/// One step of the planned fence of `instance`, which holds `held`: stop it while it runs, wait while it
/// stops, then detach what is still attached. `why` names the path in logs and reasons.
pub async fn stop_then_detach(
    ec2: &dyn Ec2,
    instance: &str,
    held: &[ObservedVolume],
    why: &str,
) -> Result<Progress, StepError> {
    let ids: Vec<&str> = held.iter().map(|v| v.id.as_str()).collect();
    let state = ec2
        .describe_instance(instance)
        .await?
        .map(|i| i.state)
        .unwrap_or_else(|| "terminated".into());
    match state.as_str() {
        "pending" | "running" => {
            ec2.stop_instance(instance).await?;
            info!(instance.id = %instance, volumes = ?ids, "{why}: stopping the instance (the fence) before its data is taken off");
            Ok(Progress::Acted(format!(
                "{why}: stopping {instance} (the fence)"
            )))
        }
        "stopped" => {
            let attached: Vec<&str> = held
                .iter()
                .filter(|v| is_attached(v))
                .map(|v| v.id.as_str())
                .collect();
            if attached.is_empty() {
                return Ok(Progress::Waiting(format!(
                    "{why}: {} detaching from {instance}",
                    ids.join(",")
                )));
            }
            for id in &attached {
                ec2.detach_volume(id, instance).await?;
            }
            info!(instance.id = %instance, volumes = ?attached, "{why}: detaching the data from the stopped instance; it waits in the ledger");
            Ok(Progress::Acted(format!(
                "{why}: detaching {} from stopped {instance}",
                attached.join(",")
            )))
        }
        // Stopping, or ending (its volumes then detach by themselves): wait.
        other => Ok(Progress::Waiting(format!(
            "{why}: {instance} is {other}; waiting before taking {} off",
            ids.join(",")
        ))),
    }
}
