//! The planned fence of an instance that keeps running, and the read it starts from: the slot's managed
//! volumes attached to one instance. Stopping the instance (`StopInstances`: the OS flushes and shuts down)
//! ends its writes; once it is stopped its data is detached into the ledger. Used by the warm pool's return
//! and by the launch-before-terminate handover.

use ferry_state_machine::observe::{AttachState, ObservedVolume};
use ferry_state_machine::{Progress, StepError};
use tracing::info;

use crate::ledger::SLOT;
use crate::ports::{Ec2, VolumeQuery};
use crate::spec::GroupSpec;

/// The slot's managed volumes (configured logical names, holding data) attached, attaching or detaching to
/// `instance`.
pub async fn managed_on(
    ec2: &dyn Ec2,
    group: &GroupSpec,
    instance: &str,
) -> Result<Vec<ObservedVolume>, StepError> {
    let names = group.volume_names();
    let query = VolumeQuery {
        group: group.name.clone(),
        slot: Some(SLOT),
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
