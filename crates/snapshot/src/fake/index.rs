//! Standing indexes of the fake's records, so that a fake holding 10,000 groups answers each call without
//! visiting every record: volumes and snapshots by their `ferry:group` tag, volumes by the instance they
//! were attached to.
//!
//! Entries are candidates, not answers: a record that was deleted, retagged or detached since is skipped
//! when the caller checks its current state. For the group index, the fake's ids come from one counter in
//! fixed-width hex, so a record added since the last look-up sorts after every record already indexed: each
//! look-up indexes only the new tail of the map, and a retagged record is indexed again by
//! [`GroupIndex::retagged`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use ferry_state_machine::tags;

use crate::ports::Tag;

/// Ids by group, up to the newest id indexed.
#[derive(Debug, Default)]
pub(super) struct GroupIndex {
    upto: Option<String>,
    ids: Candidates,
}

fn group_of(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .find(|(k, _)| k == tags::GROUP)
        .map(|(_, g)| g.as_str())
}

impl GroupIndex {
    /// Indexes every record added since the last call.
    pub fn refresh<R>(&mut self, records: &BTreeMap<String, R>, tags_of: impl Fn(&R) -> &[Tag]) {
        let from = match &self.upto {
            Some(last) => Bound::Excluded(last.as_str()),
            None => Bound::Unbounded,
        };
        let mut newest = None;
        for (id, r) in records.range::<str, _>((from, Bound::Unbounded)) {
            if let Some(g) = group_of(tags_of(r)) {
                self.ids.insert(g, id);
            }
            newest = Some(id.clone());
        }
        if newest.is_some() {
            self.upto = newest;
        }
    }

    /// Indexes a record again after its tags changed (it may have gained or changed its group).
    pub fn retagged(&mut self, id: &str, tags: &[Tag]) {
        if let Some(g) = group_of(tags) {
            self.ids.insert(g, id);
        }
    }

    /// The ids that may belong to `group`, in id (creation) order.
    pub fn candidates<'a>(&'a self, group: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.ids.candidates(group)
    }
}

/// Ids by a key (a group, an instance), added to and never removed from: the caller checks each candidate.
#[derive(Debug, Default)]
pub(super) struct Candidates(HashMap<String, BTreeSet<String>>);

impl Candidates {
    /// Notes that `id` may belong to `key`.
    pub fn insert(&mut self, key: &str, id: &str) {
        match self.0.get_mut(key) {
            Some(ids) => {
                ids.insert(id.to_owned());
            }
            None => {
                self.0
                    .insert(key.to_owned(), BTreeSet::from([id.to_owned()]));
            }
        }
    }

    /// The ids that may belong to `key`, in id order.
    pub fn candidates<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.0.get(key).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(group: &str) -> Vec<Tag> {
        vec![(tags::GROUP.to_owned(), group.to_owned())]
    }

    #[test]
    fn indexes_only_new_records_and_follows_a_retag() {
        let mut map: BTreeMap<String, Vec<Tag>> = BTreeMap::new();
        map.insert("vol-01".into(), tagged("a"));
        map.insert("vol-02".into(), tagged("b"));
        let mut index = GroupIndex::default();
        index.refresh(&map, Vec::as_slice);
        assert_eq!(index.candidates("a").collect::<Vec<_>>(), ["vol-01"]);

        map.insert("vol-03".into(), tagged("a"));
        map.insert("vol-04".into(), Vec::new());
        index.refresh(&map, Vec::as_slice);
        assert_eq!(
            index.candidates("a").collect::<Vec<_>>(),
            ["vol-01", "vol-03"]
        );

        map.insert("vol-04".into(), tagged("b"));
        index.retagged("vol-04", &tagged("b"));
        assert_eq!(
            index.candidates("b").collect::<Vec<_>>(),
            ["vol-02", "vol-04"]
        );
        assert_eq!(index.candidates("none").count(), 0);
    }
}
