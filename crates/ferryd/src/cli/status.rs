//! `ferryd status`: per configured group, its instance(s), attached ferry volumes, newest completed snapshot,
//! Elastic IP, pending lifecycle actions and slots, as a table or one JSON document.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ferry_snapshot::ledger::FIRST_SLOT;
use ferry_snapshot::{Addresses, SnapshotQuery, Snapshots, VolumeQuery, Volumes};
use ferry_state_machine::observe::{ObservedSnapshot, SnapshotState};
use ferry_state_machine::LifecycleActions;
use serde::Serialize;

use super::{human_age, now_secs, print_out, render_table, runtime_error, Aws};
use crate::config::{Config, GroupConfig, LaunchBeforeTerminate};

/// `ferryd status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// `table` for people, `json` for scripts (one document on stdout).
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Table,
    /// One JSON document.
    Json,
}

/// The whole status document (`--output json`).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// When the status was read, in seconds since the Unix epoch.
    pub now: i64,
    /// One entry per configured group, in config order.
    pub groups: Vec<GroupStatus>,
}

/// One group.
#[derive(Debug, Serialize)]
pub struct GroupStatus {
    /// The Auto Scaling group name.
    pub group: String,
    /// The slot the legacy per-group fields (`path`, `newest_snapshots`, `elastic_ip`) describe: 0.
    pub slot: u32,
    /// Every slot: one in a group of one, one per instance in a group of many.
    pub slots: Vec<super::status_slots::SlotStatus>,
    /// Whether Auto Scaling knows the group.
    pub exists: bool,
    /// Whether it carries `ferry:managed=true`.
    pub managed: bool,
    /// The slot's lifecycle path in progress: `in-service`, `first-boot`, `failover`, `warm-pool-entry`,
    /// `warm-pool-return`, `root-volume-replacement`, `handover`, `launch-before-terminate`,
    /// `paused-at-zero`, `standby`, `detached`, `data-waiting` or `no-data` (docs/operations.md).
    pub path: String,
    /// Its instances.
    pub instances: Vec<InstanceStatus>,
    /// The newest completed snapshot of each configured logical volume (absent: none yet).
    pub newest_snapshots: Vec<SnapshotStatus>,
    /// The configured Elastic IP, if any.
    pub elastic_ip: Option<EipStatus>,
    /// Instances held in a lifecycle hook's wait state (`Pending:Wait`, `Terminating:Wait`,
    /// `ReplacingRootVolume:Wait`, ...).
    pub pending_hooks: Vec<PendingHook>,
    /// How the group handles an unreachable source, and its recovery points.
    pub source_policy: super::status_dr::SourcePolicyStatus,
    /// Older copies of the slot's data, never attached as current.
    pub superseded: Vec<super::status_dr::SupersededVolume>,
    /// What could not be read.
    pub errors: Vec<String>,
}

/// One instance of a group.
#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    /// The instance id.
    pub instance_id: String,
    /// Its AZ.
    pub availability_zone: String,
    /// Its Auto Scaling lifecycle state.
    pub lifecycle_state: String,
    /// `Healthy` / `Unhealthy`.
    pub health_status: String,
    /// The ferry volumes attached to it.
    pub volumes: Vec<VolumeStatus>,
}

/// One attached ferry volume.
#[derive(Debug, Serialize)]
pub struct VolumeStatus {
    /// The logical name (`ferry:volume`).
    pub logical: Option<String>,
    /// The volume id.
    pub volume_id: String,
    /// Its generation (`ferry:generation`).
    pub generation: Option<u64>,
    /// Its EC2 state.
    pub state: String,
    /// The device it is attached at.
    pub device: Option<String>,
    /// Restored from a recovery point (`restore-latest`): the writes it may miss, in seconds.
    pub loss_window_secs: Option<u64>,
}

/// The newest completed snapshot of one logical volume.
#[derive(Debug, Serialize)]
pub struct SnapshotStatus {
    /// The logical name.
    pub logical: String,
    /// The snapshot id.
    pub snapshot_id: String,
    /// Its generation.
    pub generation: Option<u64>,
    /// `precopy`, `final`, `recovery` or `manual`.
    pub reason: Option<String>,
    /// When it started, in seconds since the Unix epoch.
    pub start_time: Option<i64>,
    /// Its age in seconds.
    pub age_secs: Option<i64>,
}

/// Where the Elastic IP points.
#[derive(Debug, Serialize)]
pub struct EipStatus {
    /// The allocation id.
    pub allocation_id: String,
    /// Whether EC2 knows the allocation.
    pub found: bool,
    /// The public IP.
    pub public_ip: Option<String>,
    /// The instance it is associated with.
    pub instance_id: Option<String>,
}

/// An instance whose lifecycle action is waiting.
#[derive(Debug, Serialize)]
pub struct PendingHook {
    /// The instance id.
    pub instance_id: String,
    /// `Pending:Wait` or `Terminating:Wait`.
    pub lifecycle_state: String,
}

/// Runs `ferryd status`.
pub fn main(config: &Config, args: &StatusArgs) -> ExitCode {
    super::block_on(async {
        let aws = Aws::connect(config).await;
        let mut report = StatusReport {
            now: now_secs(),
            groups: Vec::new(),
        };
        for g in &config.groups {
            report.groups.push(group_status(&aws, g, report.now).await);
        }
        match args.output {
            OutputFormat::Json => match serde_json::to_string_pretty(&report) {
                Ok(s) => print_out(&format!("{s}\n")),
                Err(e) => return runtime_error(format!("cannot render JSON: {e}")),
            },
            OutputFormat::Table => {
                let slots: Vec<(String, &[super::status_slots::SlotStatus])> = report
                    .groups
                    .iter()
                    .map(|g| (g.group.clone(), g.slots.as_slice()))
                    .collect();
                print_out(&format!(
                    "{}{}{}",
                    table(&report),
                    super::status_slots::table(&slots),
                    super::status_dr::notes(&report)
                ));
            }
        }
        let errors: Vec<String> = report
            .groups
            .iter()
            .flat_map(|g| g.errors.iter().map(move |e| format!("{}: {e}", g.group)))
            .collect();
        if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            runtime_error(format!(
                "some state could not be read:\n  {}",
                errors.join("\n  ")
            ))
        }
    })
}

async fn group_status(aws: &Aws, g: &GroupConfig, now: i64) -> GroupStatus {
    let mut st = GroupStatus {
        group: g.name.clone(),
        slot: FIRST_SLOT,
        slots: Vec::new(),
        exists: false,
        managed: false,
        path: String::new(),
        instances: Vec::new(),
        newest_snapshots: Vec::new(),
        elastic_ip: None,
        pending_hooks: Vec::new(),
        source_policy: super::status_dr::policy(g),
        superseded: Vec::new(),
        errors: Vec::new(),
    };
    match super::status_dr::superseded(aws, g).await {
        Ok(s) => st.superseded = s,
        Err(e) => st.errors.push(e),
    }
    let mut members = Vec::new();
    let mut desired = 0;
    match aws.asg.describe_group(&g.name).await {
        Ok(Some(info)) => {
            st.exists = true;
            st.managed = info.is_managed();
            members.clone_from(&info.instances);
            desired = info.capacity.2;
            for i in info.instances {
                if i.lifecycle_state.ends_with(":Wait") {
                    st.pending_hooks.push(PendingHook {
                        instance_id: i.instance_id.clone(),
                        lifecycle_state: i.lifecycle_state.clone(),
                    });
                }
                let volumes = match aws
                    .ec2
                    .find_volumes(&VolumeQuery {
                        group: g.name.clone(),
                        slot: None,
                        logical: None,
                        attached_instance: Some(i.instance_id.clone()),
                    })
                    .await
                {
                    Ok(v) => v,
                    Err(e) => {
                        st.errors.push(e.to_string());
                        Vec::new()
                    }
                };
                st.instances.push(InstanceStatus {
                    instance_id: i.instance_id,
                    availability_zone: i.availability_zone,
                    lifecycle_state: i.lifecycle_state,
                    health_status: i.health_status,
                    volumes: volumes
                        .into_iter()
                        .map(|v| VolumeStatus {
                            device: v.attachment.as_ref().map(|a| a.device.clone()),
                            logical: v.logical,
                            volume_id: v.id,
                            generation: v.generation.map(|g| g.0),
                            state: v.state.as_aws().into(),
                            loss_window_secs: v.loss_window_secs,
                        })
                        .collect(),
                });
            }
        }
        Ok(None) => st
            .errors
            .push("the Auto Scaling group does not exist".into()),
        Err(e) => st.errors.push(e.to_string()),
    }
    match super::status_slots::read(aws, g, &members, desired, now).await {
        Ok(slots) => st.slots = slots,
        Err(e) => st.errors.push(e),
    }
    let query = SnapshotQuery {
        group: g.name.clone(),
        slot: Some(FIRST_SLOT),
        ..SnapshotQuery::default()
    };
    let mut has_snapshots = false;
    match aws.ec2.find_snapshots(&query).await {
        Ok(snaps) => {
            has_snapshots = snaps.iter().any(|s| s.state == SnapshotState::Completed);
            for v in &g.volumes {
                if let Some(s) = newest_completed(&snaps, &v.name) {
                    st.newest_snapshots.push(SnapshotStatus {
                        logical: v.name.clone(),
                        snapshot_id: s.id.clone(),
                        generation: s.generation.map(|g| g.0),
                        reason: s.reason.map(|r| r.as_tag().to_string()),
                        start_time: s.start_time,
                        age_secs: s.start_time.map(|t| now - t),
                    });
                }
            }
        }
        Err(e) => st.errors.push(e.to_string()),
    }
    let handover = g.launch_before_terminate == LaunchBeforeTerminate::Handover;
    match super::status_path::read_path(aws, &g.name, &members, desired, has_snapshots, handover)
        .await
    {
        Ok(p) => st.path = p.to_string(),
        Err(e) => st.errors.push(e),
    }
    if let Some(alloc) = &g.elastic_ip {
        match aws.ec2.describe_address(alloc).await {
            Ok(a) => {
                st.elastic_ip = Some(EipStatus {
                    allocation_id: alloc.clone(),
                    found: a.is_some(),
                    public_ip: a.as_ref().map(|a| a.public_ip.clone()),
                    instance_id: a.and_then(|a| a.instance_id),
                });
            }
            Err(e) => st.errors.push(e.to_string()),
        }
    }
    st
}

/// The newest completed snapshot of one logical volume: highest generation, final before manual, latest start.
fn newest_completed<'a>(
    snaps: &'a [ObservedSnapshot],
    logical: &str,
) -> Option<&'a ObservedSnapshot> {
    snaps
        .iter()
        .filter(|s| s.state == SnapshotState::Completed && s.logical.as_deref() == Some(logical))
        .max_by_key(|s| {
            (
                s.generation,
                s.reason.is_some_and(|r| r.is_final()),
                s.start_time,
            )
        })
}

const HEADER: &[&str] = &[
    "GROUP",
    "SLOT",
    "INSTANCE",
    "AZ",
    "LIFECYCLE",
    "VOLUME",
    "GEN",
    "SNAPSHOT",
    "SNAP GEN",
    "SNAP AGE",
    "EIP",
    "PENDING HOOKS",
    "PATH",
];

/// One row per instance and attached volume (or per bare instance or group); EIP and pending hooks on the first.
fn table(report: &StatusReport) -> String {
    let dash = || "-".to_string();
    let mut rows = Vec::new();
    for g in &report.groups {
        let eip = match &g.elastic_ip {
            None => dash(),
            Some(e) if !e.found => format!("{} (not found)", e.allocation_id),
            Some(e) => format!(
                "{} -> {}",
                e.public_ip.as_deref().unwrap_or("?"),
                e.instance_id.as_deref().unwrap_or("(unassociated)")
            ),
        };
        let pending = if g.pending_hooks.is_empty() {
            dash()
        } else {
            let p: Vec<String> = g
                .pending_hooks
                .iter()
                .map(|p| format!("{} {}", p.instance_id, p.lifecycle_state))
                .collect();
            p.join(", ")
        };
        let snapshot_cols = |logical: Option<&str>| -> [String; 3] {
            let s = g
                .newest_snapshots
                .iter()
                .find(|s| Some(s.logical.as_str()) == logical)
                .or_else(|| {
                    logical
                        .is_none()
                        .then(|| g.newest_snapshots.first())
                        .flatten()
                });
            match s {
                Some(s) => [
                    s.snapshot_id.clone(),
                    s.generation.map_or_else(dash, |g| g.to_string()),
                    s.age_secs.map_or_else(dash, human_age),
                ],
                None => [dash(), dash(), dash()],
            }
        };
        let mut group_rows: Vec<Vec<String>> = Vec::new();
        let mut push = |instance: [String; 3], volume: [String; 2], logical: Option<&str>| {
            let mut row = vec![g.group.clone(), g.slot.to_string()];
            row.extend(instance);
            row.extend(volume);
            row.extend(snapshot_cols(logical));
            group_rows.push(row);
        };
        for i in &g.instances {
            let inst = || {
                [
                    i.instance_id.clone(),
                    i.availability_zone.clone(),
                    i.lifecycle_state.clone(),
                ]
            };
            if i.volumes.is_empty() {
                push(inst(), [dash(), dash()], None);
            }
            for v in &i.volumes {
                let name = format!("{} {}", v.logical.as_deref().unwrap_or("?"), v.volume_id);
                let generation = v.generation.map_or_else(dash, |g| g.to_string());
                push(inst(), [name, generation], v.logical.as_deref());
            }
        }
        if g.instances.is_empty() {
            let state = if g.exists {
                "(no instance)"
            } else {
                "(no group)"
            };
            push([dash(), dash(), state.into()], [dash(), dash()], None);
        }
        for (n, mut row) in group_rows.into_iter().enumerate() {
            if n == 0 {
                row.extend([eip.clone(), pending.clone(), g.path.clone()]);
            } else {
                row.extend([String::new(), String::new(), String::new()]);
            }
            rows.push(row);
        }
    }
    render_table(HEADER, &rows)
}
