//! The one retention rule, shared by `ferryd gc` and the daemon's recovery-point retention: which ledger
//! snapshots and volumes may go, and why.
//!
//! No I/O and no clock: the caller lists the resources tagged with a configured group and passes `now`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Snapshot or volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// An EBS snapshot.
    Snapshot,
    /// An EBS volume.
    Volume,
}

impl Kind {
    /// `snapshot` / `volume`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Volume => "volume",
        }
    }
}

/// The state of a snapshot or volume, as far as retention cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A snapshot still being copied (or recovering).
    Pending,
    /// A usable snapshot.
    Completed,
    /// A volume being created.
    Creating,
    /// A detached volume.
    Available,
    /// An attached volume.
    InUse,
    /// A volume being deleted.
    Deleting,
    /// Failed; holds no data.
    Error,
}

/// One ledger resource: a snapshot or volume tagged `ferry:group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Snapshot or volume.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// `ferry:group`.
    pub group: String,
    /// `ferry:slot`.
    pub slot: Option<String>,
    /// `ferry:volume`.
    pub logical: Option<String>,
    /// `ferry:generation`, parsed.
    pub generation: Option<u64>,
    /// Its state.
    pub state: State,
    /// For a volume: the instance it is attached to, if any.
    pub attached_to: Option<String>,
    /// Creation (volume) or start (snapshot) time, in seconds since the Unix epoch.
    pub created: Option<i64>,
    /// For a volume: the snapshot it was created from (`SnapshotId`, else `ferry:source-snapshot`).
    pub source_snapshot: Option<String>,
    /// For a snapshot: why it was taken (`ferry:reason`).
    pub reason: Option<String>,
    /// For a snapshot: its crash-consistent set (`ferry:set`).
    pub set: Option<String>,
}

impl Resource {
    /// Whether this is a periodic recovery point (`ferry:reason = recovery`).
    pub fn is_recovery_point(&self) -> bool {
        self.kind == Kind::Snapshot && self.reason.as_deref() == Some(RECOVERY)
    }
}

/// The `ferry:reason` of a periodic recovery point.
const RECOVERY: &str = "recovery";

/// The retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The newest generations kept per (group, slot, volume).
    pub keep_generations: u64,
    /// The minimum age of anything deleted, in seconds (not of periodic recovery points: they have their own).
    pub min_age_secs: i64,
    /// The newest completed periodic recovery points kept per (group, slot, volume).
    pub keep_recovery_points: u64,
    /// Periodic recovery points older than this, in seconds, go (but never the newest completed one).
    pub recovery_point_max_age_secs: i64,
}

/// What to do with one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The resource.
    pub resource: Resource,
    /// Delete it.
    pub delete: bool,
    /// Why (one line).
    pub reason: String,
}

type Key = (String, String, String);

/// What one (group, slot, volume) keeps by generation.
#[derive(Debug, Default)]
struct Lineage {
    /// The distinct generations of resources that hold data, newest first.
    generations: Vec<u64>,
    /// The newest generation with a completed snapshot.
    newest_completed: Option<u64>,
}

fn holds_data(r: &Resource) -> bool {
    !matches!(r.state, State::Error | State::Deleting)
}

fn key_of(r: &Resource) -> Option<Key> {
    Some((r.group.clone(), r.slot.clone()?, r.logical.clone()?))
}

/// Decides for every resource, in a stable order (group, slot, volume, generation, kind, id).
/// `groups` are the configured group names: anything else is never deleted.
pub fn plan(resources: &[Resource], groups: &[String], policy: Policy, now: i64) -> Vec<Decision> {
    let mut lineages: BTreeMap<Key, Lineage> = BTreeMap::new();
    for r in resources.iter().filter(|r| holds_data(r)) {
        let (Some(key), Some(g)) = (key_of(r), r.generation) else {
            continue;
        };
        let l = lineages.entry(key).or_default();
        l.generations.push(g);
        if r.kind == Kind::Snapshot && r.state == State::Completed {
            l.newest_completed = l.newest_completed.max(Some(g));
        }
    }
    for l in lineages.values_mut() {
        let set: BTreeSet<u64> = l.generations.iter().copied().collect();
        l.generations = set.into_iter().rev().collect();
    }
    let points = RecoveryPoints::of(resources);
    let sources_in_use: HashSet<&str> = resources
        .iter()
        .filter(|r| r.kind == Kind::Volume && r.state == State::Creating)
        .filter_map(|r| r.source_snapshot.as_deref())
        .collect();
    let mut out: Vec<Decision> = resources
        .iter()
        .map(|r| {
            let (delete, reason) = if !groups.contains(&r.group) {
                (false, format!("group {:?} is not configured", r.group))
            } else if r.is_recovery_point() {
                decide_point(r, &points, &sources_in_use, policy, now)
            } else {
                decide(r, &lineages, &sources_in_use, policy, now)
            };
            Decision {
                resource: r.clone(),
                delete,
                reason,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let k = |d: &Decision| {
            let r = &d.resource;
            (
                r.group.clone(),
                r.slot.clone(),
                r.logical.clone(),
                r.generation,
                r.kind,
                r.id.clone(),
            )
        };
        k(a).cmp(&k(b))
    });
    out
}

fn decide(
    r: &Resource,
    lineages: &BTreeMap<Key, Lineage>,
    sources_in_use: &HashSet<&str>,
    policy: Policy,
    now: i64,
) -> (bool, String) {
    let keep = |why: String| (false, why);
    let (Some(key), Some(g)) = (key_of(r), r.generation) else {
        return keep(
            "incomplete ledger tags (ferry:slot, ferry:volume or ferry:generation)".into(),
        );
    };
    if let Some(i) = &r.attached_to {
        return keep(format!("attached to {i}"));
    }
    match r.state {
        State::InUse => return keep("in use".into()),
        State::Creating => return keep("still creating".into()),
        State::Pending => return keep("snapshot still pending".into()),
        State::Deleting => return keep("already being deleted".into()),
        _ => {}
    }
    if sources_in_use.contains(r.id.as_str()) {
        return keep("the source of a volume that is still creating".into());
    }
    let Some(l) = lineages.get(&key) else {
        return keep("no lineage".into());
    };
    if l.newest_completed == Some(g) {
        return keep(format!("generation {g} is the newest completed generation"));
    }
    if r.kind == Kind::Volume && l.generations.first().is_some_and(|&top| g >= top) {
        return keep(format!("a volume of the newest generation ({g})"));
    }
    let kept: Vec<u64> = l
        .generations
        .iter()
        .copied()
        .take(usize::try_from(policy.keep_generations).unwrap_or(usize::MAX))
        .collect();
    // Anything at or above the oldest kept generation stays, including newer resources in `error`.
    if kept.last().is_some_and(|&oldest| g >= oldest) {
        return keep(format!(
            "generation {g} is among the {} newest ({})",
            policy.keep_generations,
            list(&kept)
        ));
    }
    let Some(created) = r.created else {
        return keep("unknown age".into());
    };
    let age = now - created;
    if age < policy.min_age_secs {
        return keep(format!(
            "too young: {} old, minimum {}",
            crate::cli::human_age(age),
            crate::cli::human_age(policy.min_age_secs)
        ));
    }
    let what = if r.state == State::Error {
        "in error, holds no data; "
    } else {
        ""
    };
    (
        true,
        format!(
            "{what}generation {g} is older than the {} newest ({}) and {} old",
            policy.keep_generations,
            list(&kept),
            crate::cli::human_age(age)
        ),
    )
}

/// What the periodic recovery points of each (group, slot, volume) are, newest first.
#[derive(Debug, Default)]
struct RecoveryPoints {
    /// Completed recovery points per lineage, newest first: (created, id).
    completed: BTreeMap<Key, Vec<(i64, String)>>,
    /// The members of the newest set complete for every volume of its (group, slot).
    newest_sets: HashSet<String>,
}

impl RecoveryPoints {
    fn of(resources: &[Resource]) -> Self {
        let mut out = RecoveryPoints::default();
        let done = resources
            .iter()
            .filter(|r| r.is_recovery_point() && r.state == State::Completed);
        // (group, slot) -> set -> (volume -> (created, id)); and the volumes seen per (group, slot).
        type Sets = BTreeMap<String, (i64, BTreeMap<String, String>)>;
        let mut sets: BTreeMap<(String, String), Sets> = BTreeMap::new();
        let mut volumes: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for r in done {
            let (Some(key), Some(created)) = (key_of(r), r.created) else {
                continue;
            };
            out.completed
                .entry(key.clone())
                .or_default()
                .push((created, r.id.clone()));
            let slot = (key.0, key.1);
            volumes
                .entry(slot.clone())
                .or_default()
                .insert(key.2.clone());
            if let Some(set) = &r.set {
                let e = sets
                    .entry(slot)
                    .or_default()
                    .entry(set.clone())
                    .or_insert((i64::MAX, BTreeMap::new()));
                // A set's time is its earliest member's, as restore-latest orders them.
                e.0 = e.0.min(created);
                e.1.insert(key.2, r.id.clone());
            }
        }
        for list in out.completed.values_mut() {
            list.sort_by(|a, b| b.cmp(a));
        }
        for (slot, by_set) in sets {
            let all = volumes.get(&slot).map_or(0, BTreeSet::len);
            if let Some((_, (_, members))) = by_set
                .into_iter()
                .filter(|(_, (_, m))| m.len() == all)
                .max_by_key(|(set, (t, _))| (*t, set.clone()))
            {
                out.newest_sets.extend(members.into_values());
            }
        }
        out
    }
}

/// The rule of periodic recovery points: the newest `keep_recovery_points` completed ones younger than
/// `recovery_point_max_age_secs` stay; so do the newest completed one and the newest complete set, always.
fn decide_point(
    r: &Resource,
    points: &RecoveryPoints,
    sources_in_use: &HashSet<&str>,
    policy: Policy,
    now: i64,
) -> (bool, String) {
    let keep = |why: String| (false, why);
    let Some(key) = key_of(r) else {
        return keep("incomplete ledger tags (ferry:slot or ferry:volume)".into());
    };
    match r.state {
        State::Pending => return keep("recovery point still pending".into()),
        State::Completed | State::Error => {}
        _ => return keep("not a snapshot state".into()),
    }
    if sources_in_use.contains(r.id.as_str()) {
        return keep("the source of a volume that is still creating".into());
    }
    if r.state == State::Error {
        return (true, "recovery point in error, holds no data".into());
    }
    let list = points.completed.get(&key).map_or(&[][..], Vec::as_slice);
    let rank = list.iter().position(|(_, id)| id == &r.id);
    if rank == Some(0) {
        return keep("the newest completed recovery point".into());
    }
    if points.newest_sets.contains(&r.id) {
        return keep("a member of the newest complete recovery point set".into());
    }
    let age = r.created.map(|c| now - c);
    let young = age.is_some_and(|a| a < policy.recovery_point_max_age_secs);
    let kept = usize::try_from(policy.keep_recovery_points).unwrap_or(usize::MAX);
    match (rank, age) {
        (Some(n), Some(_)) if n < kept && young => keep(format!(
            "among the {} newest recovery points and younger than {}",
            policy.keep_recovery_points,
            crate::cli::human_age(policy.recovery_point_max_age_secs)
        )),
        (_, None) => keep("unknown age".into()),
        (_, Some(a)) => (
            true,
            format!(
                "recovery point {} old, beyond the {} newest or older than {}",
                crate::cli::human_age(a),
                policy.keep_recovery_points,
                crate::cli::human_age(policy.recovery_point_max_age_secs)
            ),
        ),
    }
}

fn list(gens: &[u64]) -> String {
    gens.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
