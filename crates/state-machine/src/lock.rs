//! One active executor per (group, slot): the `SlotLocks` trait and its in-process implementation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;

use crate::model::SlotKey;

/// A held slot lock; dropping it releases the slot.
pub trait SlotGuard: Send {}

impl SlotGuard for OwnedMutexGuard<()> {}

/// Exclusive access to a slot. In-process today; a DynamoDB lease can implement this for several replicas.
#[async_trait]
pub trait SlotLocks: Send + Sync {
    /// Waits until the slot is free and takes it.
    async fn lock(&self, slot: &SlotKey) -> Box<dyn SlotGuard>;
}

/// Slot locks within one process.
#[derive(Debug, Default, Clone)]
pub struct LocalSlotLocks {
    slots: Arc<Mutex<HashMap<SlotKey, Arc<tokio::sync::Mutex<()>>>>>,
}

#[async_trait]
impl SlotLocks for LocalSlotLocks {
    async fn lock(&self, slot: &SlotKey) -> Box<dyn SlotGuard> {
        let mutex = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(slot.clone()).or_default().clone()
        };
        Box::new(mutex.lock_owned().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn same_slot_is_exclusive_other_slots_are_not() {
        let locks = LocalSlotLocks::default();
        let a = SlotKey {
            group: "db".into(),
            slot: 0,
        };
        let b = SlotKey {
            group: "db".into(),
            slot: 1,
        };
        let held = locks.lock(&a).await;
        assert!(tokio::time::timeout(Duration::from_secs(1), locks.lock(&b))
            .await
            .is_ok());
        assert!(tokio::time::timeout(Duration::from_secs(1), locks.lock(&a))
            .await
            .is_err());
        drop(held);
        assert!(tokio::time::timeout(Duration::from_secs(1), locks.lock(&a))
            .await
            .is_ok());
    }
}
