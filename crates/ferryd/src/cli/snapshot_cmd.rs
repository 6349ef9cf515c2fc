//! `ferryd snapshot --group G [--wait]`: an on-demand, ledger-tagged snapshot of the ferry volumes attached to
//! the group's InService instance (`ferry:reason=manual`, `ferry:hook=manual/<unix-seconds>`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ferry_snapshot::ledger::{self, FIRST_SLOT};
use ferry_snapshot::{Instances, Snapshots, VolumeQuery, Volumes};
use ferry_state_machine::observe::{AttachState, ObservedVolume, SnapshotReason, SnapshotState};
use ferry_state_machine::{tags, Generation, LifecycleActions};

use super::{now_secs, println_out, runtime_error, Aws};
use crate::config::{Config, GroupConfig};

/// `ferryd snapshot` options.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The configured group whose InService instance's ferry volumes are snapshotted.
    #[arg(long, short)]
    pub group: String,
    /// Wait until every snapshot is `completed` (at most the group's `snapshot_timeout_secs`).
    #[arg(long)]
    pub wait: bool,
    /// The slot of a group of many whose instance is snapshotted (required when several are in service).
    #[arg(long)]
    pub slot: Option<u32>,
}

/// Runs `ferryd snapshot`.
pub fn main(config: &Config, args: &SnapshotArgs) -> ExitCode {
    let Some(group) = config.groups.iter().find(|g| g.name == args.group) else {
        eprintln!(
            "ferryd: group {:?} is not in the configuration (configured: {})",
            args.group,
            config
                .groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(crate::exit::CONFIG);
    };
    super::block_on(async {
        let aws = Aws::connect(config).await;
        let made = match take(&aws, group, args.slot).await {
            Ok(made) => made,
            Err(e) => return runtime_error(e),
        };
        for (snap, vol) in &made {
            println_out(&format!(
                "{snap}  {}  {}  generation {}",
                vol.logical.as_deref().unwrap_or("?"),
                vol.id,
                vol.generation.unwrap_or(Generation(0))
            ));
        }
        if !args.wait {
            return ExitCode::SUCCESS;
        }
        let ids: Vec<String> = made.into_iter().map(|(s, _)| s).collect();
        match wait(&aws, &ids, Duration::from_secs(group.snapshot_timeout_secs)).await {
            Ok(()) => {
                for id in &ids {
                    println_out(&format!("{id}  completed"));
                }
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        }
    })
}

/// The InService instance (of `in_service`) that holds slot `slot`'s volumes.
async fn slot_instance(
    aws: &Aws,
    group: &GroupConfig,
    slot: u32,
    in_service: &[&str],
) -> Result<String, String> {
    let held = aws
        .ec2
        .find_volumes(&VolumeQuery {
            group: group.name.clone(),
            slot: Some(slot),
            ..VolumeQuery::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    held.iter()
        .filter_map(|v| v.attached_to())
        .find(|i| in_service.contains(i))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "no InService instance of group {} holds slot {slot}'s volumes",
                group.name
            )
        })
}

/// Starts the snapshots; returns (snapshot id, the volume it is of).
async fn take(
    aws: &Aws,
    group: &GroupConfig,
    slot: Option<u32>,
) -> Result<Vec<(String, ObservedVolume)>, String> {
    let info = aws
        .asg
        .describe_group(&group.name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the Auto Scaling group {} does not exist", group.name))?;
    let in_service: Vec<&str> = info
        .instances
        .iter()
        .filter(|i| i.lifecycle_state == "InService")
        .map(|i| i.instance_id.as_str())
        .collect();
    let (instance, slot) = match (in_service.as_slice(), slot) {
        ([], _) => return Err(format!("group {} has no InService instance", group.name)),
        ([one], None) => (one.to_string(), FIRST_SLOT),
        (many, None) => {
            return Err(format!(
                "group {} has several InService instances ({}); name the slot with --slot",
                group.name,
                many.join(", ")
            ))
        }
        (_, Some(n)) => (slot_instance(aws, group, n, &in_service).await?, n),
    };
    let names: Vec<&str> = group.volumes.iter().map(|v| v.name.as_str()).collect();
    let volumes: Vec<ObservedVolume> = aws
        .ec2
        .find_volumes(&VolumeQuery {
            group: group.name.clone(),
            slot: Some(slot),
            logical: None,
            attached_instance: Some(instance.clone()),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|v| {
            v.holds_data()
                && v.attachment
                    .as_ref()
                    .is_some_and(|a| a.state == AttachState::Attached)
                && v.logical.as_deref().is_some_and(|l| names.contains(&l))
        })
        .collect();
    if volumes.is_empty() {
        return Err(format!(
            "instance {instance} of group {} has no attached ferry volume ({})",
            group.name,
            names.join(", ")
        ));
    }
    let hook = format!("manual/{}", now_secs());
    let mut common = ledger::base_tags(&group.name, slot, &hook);
    common.push((tags::REASON.into(), SnapshotReason::Manual.as_tag().into()));
    common.push((
        tags::NAME.into(),
        format!("ferry {} manual of {instance}", group.name),
    ));
    if let [v] = volumes.as_slice() {
        let mut t = common.clone();
        t.extend(ledger::volume_data_tags(v));
        let desc = format!(
            "ferry {}: {} manual snapshot of {instance}",
            group.name,
            v.logical.as_deref().unwrap_or("?")
        );
        let id = aws
            .ec2
            .create_snapshot(&v.id, &desc, &t)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(vec![(id, v.clone())]);
    }
    // Several volumes: one crash-consistent set, like a terminate, then the per-volume ledger tags.
    let observed = aws
        .ec2
        .describe_instance(&instance)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("EC2 does not know instance {instance}"))?;
    let wanted: Vec<String> = volumes.iter().map(|v| v.id.clone()).collect();
    let exclude = ledger::snapshot_set_exclusions(&observed, &wanted);
    let pairs = aws
        .ec2
        .create_snapshots(&instance, &exclude, &common)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (snap, vol_id) in pairs {
        let Some(v) = volumes.iter().find(|v| v.id == vol_id) else {
            continue;
        };
        aws.ec2
            .tag_snapshot(&snap, &ledger::volume_data_tags(v))
            .await
            .map_err(|e| format!("snapshot {snap} started but not tagged: {e}"))?;
        out.push((snap, v.clone()));
    }
    Ok(out)
}

/// Polls until every snapshot is completed; an `error` snapshot or the deadline fails.
async fn wait(aws: &Aws, ids: &[String], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(500);
    loop {
        let seen = aws
            .ec2
            .describe_snapshots(ids)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(bad) = seen.iter().find(|s| s.state == SnapshotState::Error) {
            return Err(format!("snapshot {} failed (state error)", bad.id));
        }
        let pending: Vec<String> = ids
            .iter()
            .filter(|id| {
                !seen
                    .iter()
                    .any(|s| &s.id == *id && s.state == SnapshotState::Completed)
            })
            .map(|id| {
                let progress = seen
                    .iter()
                    .find(|s| &s.id == id)
                    .and_then(|s| s.progress.clone())
                    .unwrap_or_else(|| "?".into());
                format!("{id} {progress}")
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "gave up after {}s waiting for: {}",
                timeout.as_secs(),
                pending.join(", ")
            ));
        }
        eprintln!("waiting: {}", pending.join(", "));
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(15));
    }
}
