//! The tag ledger's keys (see docs/tags.md). ferry's durable state is these tags on AWS resources.

/// The Auto Scaling group name, on volumes and snapshots.
pub const GROUP: &str = "ferry:group";
/// The slot within the group (`0` for a group of one).
pub const SLOT: &str = "ferry:slot";
/// The logical volume name from config (`data`, `wal`, ...).
pub const VOLUME: &str = "ferry:volume";
/// The generation of the data; the highest generation is the newest data.
pub const GENERATION: &str = "ferry:generation";
/// The lifecycle action that created or last claimed the resource, as `<instance-id>/<launch|terminate>`:
/// the dedupe key (see `HookEvent::ledger_key`).
pub const HOOK: &str = "ferry:hook";
/// Why a snapshot was taken: `precopy` (the terminate's, a recovery point), `final` (of a fenced volume),
/// `recovery` (periodic) or `manual`; v1's `terminate` reads as `precopy` and `launch` as `final`.
pub const REASON: &str = "ferry:reason";
/// On a snapshot: the crash-consistent set it belongs to, one value for the snapshots of one instant
/// (`<instance-id>/terminate` for a pre-copy, `<instance-id>/recovery/<unix secs>` for a recovery point).
pub const SET: &str = "ferry:set";
/// On a pre-copy: when its terminate action began, in Unix seconds (the end of a restore-latest loss window).
pub const ACTION_STARTED: &str = "ferry:action-started";
/// On a pre-copy that completed, under `restore-latest`: when the terminate completed (the fence), in Unix
/// seconds. The old instance acknowledged writes until then, so a loss window ends there.
pub const FENCED_AT: &str = "ferry:fenced-at";
/// On a volume restored from a recovery point (`source_unreachable = "restore-latest"`): an upper bound in
/// whole seconds of the writes it misses, from the recovery point's start to the old instance's fence or
/// terminate action (or the launch's start, when there was none); see `point_sets::loss_window`.
pub const LOSS_WINDOW: &str = "ferry:loss-window-secs";
/// On a volume: the snapshot it was restored from, for lineage.
pub const SOURCE_SNAPSHOT: &str = "ferry:source-snapshot";
/// On a volume: the volume it descends from, for lineage.
pub const SOURCE_VOLUME: &str = "ferry:source-volume";
/// On a volume or snapshot retired by `ferryd reset-slot`: when, in Unix seconds. Such resources carry
/// `ferry:slot = retired-<slot>`, so a launch's slot lookups no longer see them.
pub const RETIRED_AT: &str = "ferry:retired-at";
/// On an Auto Scaling group: the opt-in marker, `true`.
pub const MANAGED: &str = "ferry:managed";
/// On an instance: the prefix of `ferry:attached:<logical volume>` = volume id.
pub const ATTACHED_PREFIX: &str = "ferry:attached:";
/// On an instance: the lifecycle path of its hook in progress, when its Auto Scaling state alone does not
/// show it (`warm-pool-entry`, `warm-pool-fill`, `warm-pool-return`, `root-volume-replacement`, `handover`,
/// ...; see `LifecyclePath::label`). Written when the hook starts; `ferryd status` reads it.
pub const LIFECYCLE_PATH: &str = "ferry:lifecycle-path";
/// A name tag, for people reading the console.
pub const NAME: &str = "Name";
