//! Recovery point sets for `restore-latest`: which snapshots of a slot form one consistent instant, which
//! sets are complete for every volume, their order, and the loss window of each. Pure.

use std::collections::{BTreeMap, HashMap};

use crate::machine::newest_generation;
use crate::model::Generation;
use crate::observe::{ObservedSnapshot, ObservedVolume, SnapshotReason, SnapshotState};
use crate::unreachable::{Lineage, PointSet, SourceView};

/// The identity of the set a snapshot belongs to. The final snapshots a launch took (of volumes fenced at
/// one instant, the old instance's end) are one set.
pub fn set_key(s: &ObservedSnapshot) -> String {
    if s.reason.is_some_and(SnapshotReason::is_final) {
        return match &s.hook {
            Some(hook) => format!("final/{hook}"),
            None => format!("final/gen-{}", s.generation.map_or(0, |g| g.0)),
        };
    }
    match (&s.set, &s.hook) {
        (Some(set), _) => set.clone(),
        (None, Some(hook)) => format!("{hook}@{}", s.start_time.unwrap_or(0)),
        (None, None) => s.id.clone(),
    }
}

/// One snapshot of a set: (snapshot id, volume id, start time, generation).
type Member = (String, String, i64, Generation);

/// Every set with a completed snapshot for every lineage: newest generation first, then newest start.
pub fn complete_sets(v: &SourceView<'_>) -> Vec<PointSet> {
    let mut sets: BTreeMap<String, Vec<Option<Member>>> = BTreeMap::new();
    for (i, l) in v.lineages.iter().enumerate() {
        let cutoffs = fork_cutoffs(l);
        for s in l
            .snapshots
            .iter()
            .filter(|s| s.state == SnapshotState::Completed)
        {
            let (Some(start), Some(g)) = (s.start_time, s.generation) else {
                continue;
            };
            // A snapshot of an older generation taken after the newer one was restored from it belongs to
            // a superseded fork (an impaired AZ's copy that completed later): never restored.
            if cutoffs.get(&g).is_some_and(|cut| start > *cut) {
                continue;
            }
            let slots = sets
                .entry(set_key(s))
                .or_insert_with(|| vec![None; v.lineages.len()]);
            if slots[i].as_ref().is_none_or(|m| start > m.2) {
                slots[i] = Some((s.id.clone(), s.volume_id.clone(), start, g));
            }
        }
    }
    let mut out: Vec<(Generation, PointSet)> = sets
        .into_iter()
        .filter_map(|(key, slots)| {
            let members: Vec<Member> = slots.into_iter().collect::<Option<_>>()?;
            let start_time = members.iter().map(|m| m.2).min()?;
            let generation = members.iter().map(|m| m.3).min()?;
            Some((
                generation,
                PointSet {
                    loss_window_secs: loss_window(v, start_time),
                    key,
                    start_time,
                    snapshots: members.into_iter().map(|m| (m.0, m.1)).collect(),
                },
            ))
        })
        .collect();
    out.sort_by(|(ga, a), (gb, b)| (gb, b.start_time, &b.key).cmp(&(ga, a.start_time, &a.key)));
    out.into_iter().map(|(_, s)| s).collect()
}

/// Per generation h of a lineage: the start of the snapshot a live volume of h+1 was restored from. Later
/// snapshots of h are of a superseded fork.
fn fork_cutoffs(l: &Lineage<'_>) -> HashMap<Generation, i64> {
    let mut out = HashMap::new();
    for vol in l.volumes.iter().filter(|x| x.holds_data()) {
        let (Some(g), Some(src)) = (vol.generation, &vol.source_snapshot) else {
            continue;
        };
        let Some(s) = l.snapshots.iter().find(|s| &s.id == src) else {
            continue;
        };
        if let (Some(sg), Some(start)) = (s.generation, s.start_time) {
            if sg.next() == g {
                let cut = out.entry(sg).or_insert(start);
                *cut = (*cut).min(start);
            }
        }
    }
    out
}

/// The loss window of a set started at `start`, an upper bound in whole seconds (two whole-second times,
/// plus one). It ends at the old instance's fence when its completed pre-copy recorded it (it acknowledged
/// writes until then); else at its terminate action's start, when that is after `start` (an impaired AZ:
/// the pre-copy never completed); else at this launch's start, which comes after the fence.
pub fn loss_window(v: &SourceView<'_>, start: i64) -> u64 {
    let precopies: Vec<&ObservedSnapshot> = v
        .lineages
        .iter()
        .flat_map(|l| {
            let live: Vec<&ObservedVolume> = l
                .volumes
                .iter()
                .filter(|x| x.holds_data() && x.hook.as_deref() != Some(v.token))
                .collect();
            let g = newest_generation(&live, l.snapshots);
            l.snapshots.iter().filter(move |s| {
                g.is_some() && s.generation == g && s.reason == Some(SnapshotReason::Precopy)
            })
        })
        .collect();
    let fenced = precopies.iter().filter_map(|s| s.fenced_at).max();
    let action = precopies.iter().filter_map(|s| s.action_started).min();
    let end = match (fenced, action) {
        (Some(f), _) => f,
        (None, Some(a)) if a >= start => a,
        _ => v.launch_started,
    };
    let end = end.max(start).min(v.launch_started.max(start));
    u64::try_from(end.saturating_sub(start).saturating_add(1)).unwrap_or(0)
}
