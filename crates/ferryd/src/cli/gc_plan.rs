//! The pure retention decision of `ferryd gc`: which ledger snapshots and volumes may go, and why.
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
}

/// The retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The newest generations kept per (group, slot, volume).
    pub keep_generations: u64,
    /// The minimum age of anything deleted, in seconds.
    pub min_age_secs: i64,
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
    let sources_in_use: HashSet<&str> = resources
        .iter()
        .filter(|r| r.kind == Kind::Volume && r.state == State::Creating)
        .filter_map(|r| r.source_snapshot.as_deref())
        .collect();
    let mut out: Vec<Decision> = resources
        .iter()
        .map(|r| {
            let (delete, reason) = decide(r, groups, &lineages, &sources_in_use, policy, now);
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
    groups: &[String],
    lineages: &BTreeMap<Key, Lineage>,
    sources_in_use: &HashSet<&str>,
    policy: Policy,
    now: i64,
) -> (bool, String) {
    let keep = |why: String| (false, why);
    if !groups.contains(&r.group) {
        return keep(format!("group {:?} is not configured", r.group));
    }
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
            super::human_age(age),
            super::human_age(policy.min_age_secs)
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
            super::human_age(age)
        ),
    )
}

fn list(gens: &[u64]) -> String {
    gens.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "gc_plan_tests.rs"]
mod tests;
