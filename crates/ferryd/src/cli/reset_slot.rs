//! `ferryd reset-slot --group G [--slot 0] [--volume L] [--dry-run] [--force] --yes`: declares a slot new by
//! retiring its unreadable remains (`ferry:slot=retired-<slot>`, `ferry:retired-at=<unix seconds>`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use ferry_snapshot::ledger::FIRST_SLOT;
use ferry_snapshot::{SnapshotQuery, Snapshots, VolumeQuery, Volumes};
use ferry_state_machine::observe::SnapshotState;
use ferry_state_machine::{tags, StepError};
use serde::Serialize;

use super::status::OutputFormat;
use super::{now_secs, print_out, println_out, runtime_error, Aws};
use crate::config::Config;

use ferry_state_machine::tags::RETIRED_AT;

/// `ferryd reset-slot` options.
#[derive(Debug, Args)]
pub struct ResetSlotArgs {
    /// The configured group whose slot is declared new.
    #[arg(long, short)]
    pub group: String,
    /// The slot (a group of one has slot 0 only).
    #[arg(long, default_value_t = FIRST_SLOT)]
    pub slot: u32,
    /// Only this logical volume (`ferry:volume`); default: every logical volume of the slot.
    #[arg(long)]
    pub volume: Option<String>,
    /// List what would be retired; tag nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also retire remains that hold readable data (a live volume or a snapshot with a generation).
    #[arg(long)]
    pub force: bool,
    /// Confirm the retirement (required unless --dry-run).
    #[arg(long)]
    pub yes: bool,
    /// `table` for people, `json` for scripts (one document on stdout).
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// One ferry volume or snapshot of the slot.
#[derive(Debug, Clone, Serialize)]
pub struct Remain {
    /// `volume` or `snapshot`.
    pub kind: &'static str,
    /// The resource id.
    pub id: String,
    /// `ferry:volume`.
    pub logical: Option<String>,
    /// The EC2 state.
    pub state: &'static str,
    /// `ferry:generation`, when it parses.
    pub generation: Option<u64>,
    /// Whether a launch could read it: a live volume, or a snapshot not in error, with a generation.
    pub readable: bool,
    /// The instance it is attached to.
    pub attached_to: Option<String>,
}

/// The whole outcome (`--output json`).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The group.
    pub group: String,
    /// The slot.
    pub slot: u32,
    /// The logical volume, if limited to one.
    pub volume: Option<String>,
    /// Whether nothing was tagged on purpose.
    pub dry_run: bool,
    /// Every remain found, retired or not.
    pub remains: Vec<Remain>,
    /// The ids retired (with `--dry-run`: that would be).
    pub retired: Vec<String>,
    /// The ids whose `CreateTags` failed, and the error.
    pub failed: BTreeMap<String, String>,
    /// Why nothing was retired, if refused.
    pub refused: Option<String>,
}

/// Runs `ferryd reset-slot`.
pub fn main(config: &Config, args: &ResetSlotArgs) -> ExitCode {
    if !args.yes && !args.dry_run {
        eprintln!(
            "ferryd: reset-slot retires every remain of {}/{}, so that launches see the slot as new; \
             add --yes to confirm, or --dry-run to list them first",
            args.group, args.slot
        );
        return ExitCode::from(crate::exit::CONFIG);
    }
    if !config.groups.iter().any(|g| g.name == args.group) {
        let names: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
        eprintln!(
            "ferryd: group {:?} is not in the configuration (configured: {})",
            args.group,
            names.join(", ")
        );
        return ExitCode::from(crate::exit::CONFIG);
    }
    super::block_on(async {
        let aws = Aws::connect(config).await;
        let (remains, attached) = match list(&aws, args).await {
            Ok(r) => r,
            Err(e) => return runtime_error(format!("cannot list the slot's remains: {e}")),
        };
        let refused = refusal(&attached, &remains, args);
        let mut report = Report {
            group: args.group.clone(),
            slot: args.slot,
            volume: args.volume.clone(),
            dry_run: args.dry_run,
            remains,
            retired: Vec::new(),
            failed: BTreeMap::new(),
            refused,
        };
        if report.refused.is_none() {
            retire(&aws, args, &mut report).await;
        }
        finish(&report, args)
    })
}

/// Every ferry remain of the group's slot (of the logical volume, if given), and every volume of the slot
/// that is attached, whatever its logical volume.
async fn list(aws: &Aws, args: &ResetSlotArgs) -> Result<(Vec<Remain>, Vec<Remain>), StepError> {
    let vols = aws
        .ec2
        .find_volumes(&VolumeQuery {
            group: args.group.clone(),
            slot: Some(args.slot),
            ..VolumeQuery::default()
        })
        .await?;
    let snaps = aws
        .ec2
        .find_snapshots(&SnapshotQuery {
            group: args.group.clone(),
            slot: Some(args.slot),
            logical: args.volume.clone(),
            ..SnapshotQuery::default()
        })
        .await?;
    let vols = vols.into_iter().map(|v| Remain {
        kind: "volume",
        readable: v.holds_data() && v.generation.is_some(),
        attached_to: v.attached_to().map(str::to_string),
        state: v.state.as_aws(),
        generation: v.generation.map(|g| g.0),
        logical: v.logical,
        id: v.id,
    });
    let (attached, vols): (Vec<Remain>, Vec<Remain>) = vols.partition(|r| r.attached_to.is_some());
    let snaps = snaps.into_iter().map(|s| Remain {
        kind: "snapshot",
        readable: s.state != SnapshotState::Error && s.generation.is_some(),
        attached_to: None,
        state: snapshot_state(s.state),
        generation: s.generation.map(|g| g.0),
        logical: s.logical,
        id: s.id,
    });
    let mut remains: Vec<Remain> = vols
        .into_iter()
        .filter(|r| args.volume.is_none() || r.logical == args.volume)
        .chain(snaps)
        .collect();
    remains.sort_by(|a, b| (a.kind, &a.logical, &a.id).cmp(&(b.kind, &b.logical, &b.id)));
    Ok((remains, attached))
}

/// Why the slot must not be reset: it is in use, or (without `--force`) some remain is readable.
fn refusal(attached: &[Remain], remains: &[Remain], args: &ResetSlotArgs) -> Option<String> {
    let slot = format!("{}/{}", args.group, args.slot);
    if !attached.is_empty() {
        let held: Vec<String> = attached
            .iter()
            .map(|r| {
                format!(
                    "volume {} ({}) is attached to instance {}",
                    r.id,
                    r.logical.as_deref().unwrap_or("?"),
                    r.attached_to.as_deref().unwrap_or("?")
                )
            })
            .collect();
        return Some(format!(
            "refusing to reset {slot}: {}; a slot in use is not new",
            held.join("; ")
        ));
    }
    let readable: Vec<String> = remains
        .iter()
        .filter(|r| r.readable)
        .map(describe)
        .collect();
    (!readable.is_empty() && !args.force).then(|| {
        format!(
            "refusing to reset {slot}: these hold readable data, which a launch restores:\n  {}\n\
             to throw them away anyway, add --force",
            readable.join("\n  ")
        )
    })
}

/// Tags each remain retired (with `--dry-run`, only lists it); a failed `CreateTags` does not stop the rest.
async fn retire(aws: &Aws, args: &ResetSlotArgs, report: &mut Report) {
    let tags = [
        (tags::SLOT.to_string(), format!("retired-{}", args.slot)),
        (RETIRED_AT.to_string(), now_secs().to_string()),
    ];
    let table = args.output == OutputFormat::Table;
    for r in &report.remains {
        if args.dry_run {
            if table {
                println_out(&format!("would retire {}", describe(r)));
            }
            report.retired.push(r.id.clone());
            continue;
        }
        let res = match r.kind {
            "volume" => aws.ec2.tag_volume(&r.id, &tags).await,
            _ => aws.ec2.tag_snapshot(&r.id, &tags).await,
        };
        match res {
            Ok(()) => {
                if table {
                    println_out(&format!("retired {}", describe(r)));
                }
                report.retired.push(r.id.clone());
            }
            Err(e) => {
                eprintln!("ferryd: could not retire {}: {e}", describe(r));
                report.failed.insert(r.id.clone(), e.to_string());
            }
        }
    }
}

/// Prints the summary (or the JSON document) and picks the exit code.
fn finish(report: &Report, args: &ResetSlotArgs) -> ExitCode {
    match args.output {
        OutputFormat::Json => match serde_json::to_string_pretty(report) {
            Ok(s) => print_out(&format!("{s}\n")),
            Err(e) => return runtime_error(format!("cannot render JSON: {e}")),
        },
        OutputFormat::Table if report.refused.is_none() => {
            let verb = if args.dry_run {
                "would retire"
            } else {
                "retired"
            };
            let what = match (report.retired.len(), report.failed.len()) {
                (0, 0) => "nothing to retire".to_string(),
                (n, 0) => format!("{verb} {n}"),
                (n, f) => format!("{verb} {n}, failed {f}"),
            };
            let volume = args
                .volume
                .as_deref()
                .map_or_else(String::new, |v| format!(" {v}"));
            println_out(&format!(
                "reset-slot {}/{}{volume}: {what}",
                args.group, args.slot
            ));
        }
        OutputFormat::Table => {}
    }
    if let Some(why) = &report.refused {
        return runtime_error(why);
    }
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::RUNTIME)
    }
}

/// `snapshot snap-… (data, error, generation ?)`.
fn describe(r: &Remain) -> String {
    format!(
        "{} {} ({}, {}, generation {})",
        r.kind,
        r.id,
        r.logical.as_deref().unwrap_or("?"),
        r.state,
        r.generation
            .map_or_else(|| "?".to_string(), |g| g.to_string())
    )
}

fn snapshot_state(s: SnapshotState) -> &'static str {
    match s {
        SnapshotState::Pending => "pending",
        SnapshotState::Completed => "completed",
        SnapshotState::Error => "error",
    }
}
