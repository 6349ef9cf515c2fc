//! The shared vocabulary of a hook: transitions, slots, generations and the parsed lifecycle event.

use std::fmt;
use std::time::SystemTime;

pub use crate::path::Place;

/// The transition a lifecycle hook holds an instance in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// `autoscaling:EC2_INSTANCE_LAUNCHING`: the instance waits in `Pending:Wait`.
    Launching,
    /// `autoscaling:EC2_INSTANCE_TERMINATING`: the instance waits in `Terminating:Wait`.
    Terminating,
}

impl Transition {
    /// The AWS wire name of the transition.
    pub fn as_aws(self) -> &'static str {
        match self {
            Transition::Launching => "autoscaling:EC2_INSTANCE_LAUNCHING",
            Transition::Terminating => "autoscaling:EC2_INSTANCE_TERMINATING",
        }
    }

    /// Parses the AWS wire name; `None` for anything else.
    pub fn from_aws(s: &str) -> Option<Self> {
        match s {
            "autoscaling:EC2_INSTANCE_LAUNCHING" => Some(Transition::Launching),
            "autoscaling:EC2_INSTANCE_TERMINATING" => Some(Transition::Terminating),
            _ => None,
        }
    }

    /// A short label for logs and metrics: `launch` or `terminate`.
    pub fn label(self) -> &'static str {
        match self {
            Transition::Launching => "launch",
            Transition::Terminating => "terminate",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The result a lifecycle action is completed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleResult {
    /// Let the transition proceed.
    Continue,
    /// Stop the transition: a launching instance is terminated and replaced.
    Abandon,
}

impl LifecycleResult {
    /// The AWS wire name.
    pub fn as_aws(self) -> &'static str {
        match self {
            LifecycleResult::Continue => "CONTINUE",
            LifecycleResult::Abandon => "ABANDON",
        }
    }
}

/// A slot of a group: the unit that owns one copy of each logical volume. A group of one has slot 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    /// The Auto Scaling group name.
    pub group: String,
    /// The slot number within the group.
    pub slot: u32,
}

impl fmt::Display for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.slot)
    }
}

/// A monotonic counter of the data's moves. The highest generation holds the newest data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation of an empty first-boot volume.
    pub const FIRST: Generation = Generation(1);

    /// The generation after this one.
    pub fn next(self) -> Generation {
        Generation(self.0.saturating_add(1))
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One lifecycle action, as announced by a hook notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    /// The lifecycle hook's name.
    pub hook_name: String,
    /// The Auto Scaling group's name.
    pub group: String,
    /// The EC2 instance held by the hook.
    pub instance_id: String,
    /// The lifecycle action token: the action's identity and ferry's dedupe key.
    pub token: String,
    /// Launch or terminate.
    pub transition: Transition,
    /// When Auto Scaling put the instance into the wait state, if the message said.
    pub time: Option<SystemTime>,
    /// Where the instance comes from (`Origin`), if the message named a known place.
    pub origin: Option<Place>,
    /// Where the instance goes (`Destination`), if the message named a known place.
    pub destination: Option<Place>,
    /// The message's `Action`, e.g. `ReplaceRootVolume` for a root-volume refresh, if any.
    pub action: Option<String>,
    /// The hook's notification metadata, if set.
    pub metadata: Option<String>,
}

impl HookEvent {
    /// The reference that identifies this action to `CompleteLifecycleAction`: by token, or by instance id
    /// when the token is unknown (an action found by reconciliation rather than by a message).
    pub fn action(&self) -> ActionRef {
        ActionRef {
            group: self.group.clone(),
            hook_name: self.hook_name.clone(),
            instance_id: self.instance_id.clone(),
            token: (!self.token.is_empty()).then(|| self.token.clone()),
        }
    }

    /// When the action began, in Unix seconds: the notification's `Time`, else `now` less `elapsed` (how long
    /// the run has been going; an action found by reconciliation has no `Time`).
    pub fn began_secs(&self, now: i64, elapsed: std::time::Duration) -> i64 {
        self.time
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .unwrap_or_else(|| now - i64::try_from(elapsed.as_secs()).unwrap_or(0))
    }

    /// The ledger's dedupe key for this action (`ferry:hook`): `<instance-id>/<launch|terminate>`. Unlike the
    /// token, it is known both from a message and from `DescribeAutoScalingInstances`, so a run started by
    /// reconciliation finds what a message-driven run made, and the other way round.
    pub fn ledger_key(&self) -> String {
        format!("{}/{}", self.instance_id, self.transition.label())
    }

    /// An action found by `DescribeAutoScalingInstances` instead of a message: no token, no time.
    pub fn reconciled(
        group: &str,
        hook_name: &str,
        instance_id: &str,
        transition: Transition,
    ) -> Self {
        HookEvent {
            hook_name: hook_name.to_string(),
            group: group.to_string(),
            instance_id: instance_id.to_string(),
            token: String::new(),
            transition,
            time: None,
            origin: None,
            destination: None,
            action: None,
            metadata: None,
        }
    }
}

/// Identifies one lifecycle action to Auto Scaling: by token when known, else by instance id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    /// The Auto Scaling group's name.
    pub group: String,
    /// The lifecycle hook's name.
    pub hook_name: String,
    /// The instance held by the hook.
    pub instance_id: String,
    /// The lifecycle action token, if known.
    pub token: Option<String>,
}
