//! Wakes the hooks of a slot when another hook of the same slot acts or completes its action.
//!
//! A launch waits on its group's terminate (the fence, the final delta); polling alone would see the
//! terminate's completion only at the next poll. Within one process the driver knows the moment it happens,
//! so a waiting hook sleeps until its poll interval passes or its slot changes, whichever comes first. A
//! wake-up is only a hint to observe again: a missed one costs a poll interval, never correctness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::model::SlotKey;

/// One signal per slot, shared by the driver's clones.
#[derive(Debug, Default, Clone)]
pub struct SlotChanges {
    slots: Arc<Mutex<HashMap<SlotKey, Arc<Notify>>>>,
}

impl SlotChanges {
    /// The signal of `slot`: await `notified()` on it to sleep until the slot changes.
    pub fn of(&self, slot: &SlotKey) -> Arc<Notify> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(slot.clone()).or_default().clone()
    }

    /// Wakes every hook sleeping on `slot` now.
    pub fn changed(&self, slot: &SlotKey) {
        self.of(slot).notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slot(group: &str) -> SlotKey {
        SlotKey {
            group: group.into(),
            slot: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_wakes_only_the_sleepers_of_its_slot() {
        let changes = SlotChanges::default();
        let (db, mq) = (changes.of(&slot("db")), changes.of(&slot("mq")));
        let db_wait = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), db.notified()).await
        });
        let mq_wait = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), mq.notified()).await
        });
        tokio::task::yield_now().await;
        changes.changed(&slot("db"));
        assert!(db_wait.await.unwrap().is_ok(), "db's sleeper woke");
        assert!(
            mq_wait.await.unwrap().is_err(),
            "mq's slept until its timeout"
        );
    }
}
