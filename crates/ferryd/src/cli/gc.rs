//! `ferryd gc [--dry-run]`: deletes old ledger snapshots and detached volumes by generation count and age
//! (`[gc]`), never anything attached, pending, untagged, or of the newest generations.

use std::process::ExitCode;

use aws_sdk_ec2::types::{
    Filter, Snapshot, SnapshotState as Ec2SnapshotState, Volume, VolumeState as Ec2VolumeState,
};
use clap::Args;
use ferry_snapshot::aws_ec2::AwsEc2;
use ferry_snapshot::{Snapshots, Volumes};
use ferry_state_machine::error::sdk_error;
use ferry_state_machine::{tags, StepError};

use super::{now_secs, println_out, runtime_error, Aws};
use crate::config::Config;
use crate::retention::{plan, Decision, Kind, Resource, State};

/// `ferryd gc` options.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be deleted and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also print what is kept, and why.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Runs `ferryd gc`.
pub fn main(config: &Config, args: &GcArgs) -> ExitCode {
    super::block_on(async {
        let aws = Aws::connect(config).await;
        // The deletes go through the delete role when there is one; listing stays on ferryd's own role.
        let deletes = AwsEc2::new(aws.deletes.clone());
        let groups: Vec<String> = config.groups.iter().map(|g| g.name.clone()).collect();
        let resources = match list(&aws, &groups).await {
            Ok(r) => r,
            Err(e) => return runtime_error(format!("cannot list the ledger: {e}")),
        };
        let policy = config.gc.policy();
        let decisions = plan(&resources, &groups, policy, now_secs());
        let (mut deleted, mut failed, mut kept) = (0usize, 0usize, 0usize);
        for d in &decisions {
            if !d.delete {
                kept += 1;
                if args.verbose {
                    println_out(&format!("keep {}: {}", describe(d), d.reason));
                }
                continue;
            }
            if args.dry_run {
                println_out(&format!("would delete {}: {}", describe(d), d.reason));
                deleted += 1;
                continue;
            }
            let r = &d.resource;
            let res = match r.kind {
                Kind::Snapshot => deletes.delete_snapshot(&r.id).await,
                Kind::Volume => deletes.delete_volume(&r.id).await,
            };
            match res {
                Ok(()) => {
                    println_out(&format!("deleted {}: {}", describe(d), d.reason));
                    deleted += 1;
                }
                Err(e) => {
                    eprintln!("ferryd: could not delete {}: {e}", describe(d));
                    failed += 1;
                }
            }
        }
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println_out(&format!(
            "gc: {verb} {deleted}, kept {kept}{} (keep_generations = {}, min_age_days = {})",
            if failed > 0 {
                format!(", failed {failed}")
            } else {
                String::new()
            },
            config.gc.keep_generations,
            config.gc.min_age_days
        ));
        if failed > 0 {
            ExitCode::from(crate::exit::RUNTIME)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// `snapshot snap-… (db/0 data gen 2)`.
fn describe(d: &Decision) -> String {
    let r = &d.resource;
    format!(
        "{} {} ({}/{} {} gen {})",
        r.kind.as_str(),
        r.id,
        r.group,
        r.slot.as_deref().unwrap_or("?"),
        r.logical.as_deref().unwrap_or("?"),
        r.generation
            .map_or_else(|| "?".to_string(), |g| g.to_string())
    )
}

/// Every snapshot and volume tagged `ferry:group` = one of `groups`. Read with the SDK rather than the ports,
/// which leave out what retention needs (creation time, slot, `SnapshotId` of a volume).
async fn list(aws: &Aws, groups: &[String]) -> Result<Vec<Resource>, StepError> {
    let by_group = || {
        Filter::builder()
            .name(format!("tag:{}", tags::GROUP))
            .set_values(Some(groups.to_vec()))
            .build()
    };
    let mut out = Vec::new();
    let mut snaps = aws
        .clients
        .ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(by_group())
        .into_paginator()
        .items()
        .send();
    while let Some(s) = snaps.next().await {
        let s = s.map_err(|e| sdk_error("ec2:DescribeSnapshots", &e))?;
        out.extend(snapshot_resource(&s));
    }
    let mut vols = aws
        .clients
        .ec2
        .describe_volumes()
        .filters(by_group())
        .into_paginator()
        .items()
        .send();
    while let Some(v) = vols.next().await {
        let v = v.map_err(|e| sdk_error("ec2:DescribeVolumes", &e))?;
        out.extend(volume_resource(&v));
    }
    Ok(out)
}

fn tag<'a>(t: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    t.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn ledger_fields(t: &[aws_sdk_ec2::types::Tag]) -> (Option<String>, Option<String>, Option<u64>) {
    (
        tag(t, tags::SLOT).map(str::to_string),
        tag(t, tags::VOLUME).map(str::to_string),
        tag(t, tags::GENERATION).and_then(|g| g.trim().parse().ok()),
    )
}

fn snapshot_resource(s: &Snapshot) -> Option<Resource> {
    let (slot, logical, generation) = ledger_fields(s.tags());
    Some(Resource {
        kind: Kind::Snapshot,
        id: s.snapshot_id()?.to_string(),
        group: tag(s.tags(), tags::GROUP)?.to_string(),
        slot,
        logical,
        generation,
        state: match s.state() {
            Some(Ec2SnapshotState::Completed) => State::Completed,
            Some(Ec2SnapshotState::Error) => State::Error,
            // pending, recoverable, recovering, or unknown: not finished, never touched.
            _ => State::Pending,
        },
        attached_to: None,
        created: s.start_time().map(|t| t.secs()),
        source_snapshot: None,
        reason: tag(s.tags(), tags::REASON).map(str::to_string),
        set: tag(s.tags(), tags::SET).map(str::to_string),
    })
}

fn volume_resource(v: &Volume) -> Option<Resource> {
    let (slot, logical, generation) = ledger_fields(v.tags());
    Some(Resource {
        kind: Kind::Volume,
        id: v.volume_id()?.to_string(),
        group: tag(v.tags(), tags::GROUP)?.to_string(),
        slot,
        logical,
        generation,
        state: match v.state() {
            Some(Ec2VolumeState::Available) => State::Available,
            Some(Ec2VolumeState::Creating) => State::Creating,
            Some(Ec2VolumeState::Deleting | Ec2VolumeState::Deleted) => State::Deleting,
            Some(Ec2VolumeState::Error) => State::Error,
            // in-use, or a state this SDK does not know: treat as held.
            _ => State::InUse,
        },
        attached_to: v
            .attachments()
            .iter()
            .find_map(|a| a.instance_id())
            .map(str::to_string),
        created: v.create_time().map(|t| t.secs()),
        source_snapshot: v
            .snapshot_id()
            .filter(|s| !s.is_empty())
            .or_else(|| tag(v.tags(), tags::SOURCE_SNAPSHOT))
            .map(str::to_string),
        reason: None,
        set: None,
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{Tag, VolumeAttachment};
    use aws_smithy_types::DateTime;

    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build()
    }

    #[test]
    fn volumes_map_attachment_source_and_ledger_tags() {
        let v = Volume::builder()
            .volume_id("vol-1")
            .state(Ec2VolumeState::InUse)
            .snapshot_id("snap-9")
            .create_time(DateTime::from_secs(100))
            .attachments(VolumeAttachment::builder().instance_id("i-1").build())
            .tags(t("ferry:group", "db"))
            .tags(t("ferry:slot", "0"))
            .tags(t("ferry:volume", "data"))
            .tags(t("ferry:generation", " 4 "))
            .build();
        let r = volume_resource(&v).expect("mapped");
        assert_eq!(r.kind, Kind::Volume);
        assert_eq!(
            (r.group.as_str(), r.slot.as_deref(), r.logical.as_deref()),
            ("db", Some("0"), Some("data"))
        );
        assert_eq!(
            (r.generation, r.state, r.created),
            (Some(4), State::InUse, Some(100))
        );
        assert_eq!(r.attached_to.as_deref(), Some("i-1"));
        assert_eq!(r.source_snapshot.as_deref(), Some("snap-9"));
    }

    #[test]
    fn untagged_resources_are_not_ledger_resources() {
        let v = Volume::builder()
            .volume_id("vol-2")
            .state(Ec2VolumeState::Available)
            .build();
        assert_eq!(volume_resource(&v), None);
        let s = Snapshot::builder()
            .snapshot_id("snap-2")
            .state(Ec2SnapshotState::Recoverable)
            .tags(t("ferry:group", "db"))
            .build();
        let r = snapshot_resource(&s).expect("mapped");
        assert_eq!((r.state, r.generation), (State::Pending, None));
    }
}
