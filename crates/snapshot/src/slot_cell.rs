//! The slot one hook's executor works on, set once the driver resolved it (`HookWork::slot`, `claim`).

use std::sync::OnceLock;

use crate::ledger::FIRST_SLOT;

/// The slot of one hook: unset until resolved, then fixed for the hook's life.
#[derive(Debug, Default)]
pub struct SlotCell(OnceLock<u32>);

impl SlotCell {
    /// Fixes the slot at `n` unless it is fixed already; returns the slot it holds.
    pub fn set(&self, n: u32) -> u32 {
        *self.0.get_or_init(|| n)
    }

    /// The slot; slot 0 until resolved (a group of one, and the executor tests that step without the
    /// driver). The driver resolves it before the first step of a group of many.
    pub fn get(&self) -> u32 {
        self.0.get().copied().unwrap_or(FIRST_SLOT)
    }

    /// Whether it is resolved.
    pub fn is_set(&self) -> bool {
        self.0.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_once_then_fixed() {
        let c = SlotCell::default();
        assert_eq!((c.get(), c.is_set()), (0, false));
        assert_eq!(c.set(2), 2);
        assert_eq!(
            c.set(1),
            2,
            "a second resolution never moves the hook to another slot"
        );
        assert_eq!((c.get(), c.is_set()), (2, true));
    }
}
