//! How a hook ends. `Continue` can only be built from evidence that the data is in place.

use crate::model::{Generation, LifecycleResult};

/// One logical volume that a launch hook saw attached to its instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedData {
    /// The logical volume name.
    pub logical: String,
    /// The attached volume.
    pub volume_id: String,
    /// Its generation.
    pub generation: Generation,
    /// When it was restored from a recovery point (`restore-latest`): the writes it may miss, in seconds.
    pub loss_window_secs: Option<u64>,
}

/// The result to complete a hook with and why. Private fields: build it with the constructors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    result: LifecycleResult,
    reason: String,
    attached: Vec<AttachedData>,
}

impl Verdict {
    /// A launch may continue: every configured logical volume is attached with the newest data.
    /// Returns `None` (and so forbids `CONTINUE`) when `expected` names a volume that is not in `attached`.
    pub fn launch_ready(expected: &[String], attached: Vec<AttachedData>) -> Option<Verdict> {
        let complete = !expected.is_empty()
            && expected
                .iter()
                .all(|name| attached.iter().any(|a| &a.logical == name));
        complete.then(|| Verdict {
            result: LifecycleResult::Continue,
            reason: "data attached".to_string(),
            attached,
        })
    }

    /// A terminate may continue: its snapshots are done (or it has nothing to save, or they degraded).
    pub fn terminate_done(reason: impl Into<String>) -> Verdict {
        Verdict {
            result: LifecycleResult::Continue,
            reason: reason.into(),
            attached: Vec::new(),
        }
    }

    /// A hook whose instance must hold none of the slot's data may continue: a launch into the warm pool,
    /// or an instance that went back to the pool once its data and Elastic IP were taken off.
    pub fn holds_no_data(reason: impl Into<String>) -> Verdict {
        Verdict {
            result: LifecycleResult::Continue,
            reason: reason.into(),
            attached: Vec::new(),
        }
    }

    /// Give up on the hook.
    pub fn abandon(reason: impl Into<String>) -> Verdict {
        Verdict {
            result: LifecycleResult::Abandon,
            reason: reason.into(),
            attached: Vec::new(),
        }
    }

    /// The same verdict with a problem that did not stop it (e.g. the Elastic IP could not be moved).
    pub fn degraded(mut self, problem: impl AsRef<str>) -> Verdict {
        self.reason = format!("{} (degraded: {})", self.reason, problem.as_ref());
        self
    }

    /// Whether the verdict carries a problem that did not stop it.
    pub fn is_degraded(&self) -> bool {
        self.reason.contains("(degraded: ")
    }

    /// The lifecycle result.
    pub fn result(&self) -> LifecycleResult {
        self.result
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The data a continuing launch attached.
    pub fn attached(&self) -> &[AttachedData] {
        &self.attached
    }

    /// The largest loss window of the attached data, when a volume was restored from a recovery point.
    pub fn loss_window_secs(&self) -> Option<u64> {
        self.attached
            .iter()
            .filter_map(|a| a.loss_window_secs)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> AttachedData {
        AttachedData {
            logical: name.into(),
            volume_id: format!("vol-{name}"),
            generation: Generation(2),
            loss_window_secs: None,
        }
    }

    #[test]
    fn continue_needs_every_volume() {
        let expected = vec!["data".to_string(), "wal".to_string()];
        assert!(Verdict::launch_ready(&expected, vec![data("data")]).is_none());
        assert!(Verdict::launch_ready(&[], vec![]).is_none());
        let v = Verdict::launch_ready(&expected, vec![data("data"), data("wal")]);
        assert_eq!(v.map(|v| v.result()), Some(LifecycleResult::Continue));
    }
}
