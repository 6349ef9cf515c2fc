//! Which lifecycle path a hook is on, decided from the message's `Origin`, `Destination` and `Action` and the
//! lifecycle state Auto Scaling confirmed. Pure: no I/O. The message is a claim; where it and the confirmed
//! state disagree, the state decides, and the disagreement is reported.

use std::fmt;

use crate::model::Transition;

/// Where an instance comes from or goes to, as a hook notification's `Origin` and `Destination` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// `EC2`: outside Auto Scaling (a new instance, or one that is terminated).
    Ec2,
    /// `AutoScalingGroup`: in service in the group.
    AutoScalingGroup,
    /// `WarmPool`: in the group's warm pool (pre-initialized, usually stopped).
    WarmPool,
}

impl Place {
    /// Parses the wire name; `None` for anything else.
    pub fn from_aws(s: &str) -> Option<Place> {
        match s {
            "EC2" => Some(Place::Ec2),
            "AutoScalingGroup" => Some(Place::AutoScalingGroup),
            "WarmPool" => Some(Place::WarmPool),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_aws(self) -> &'static str {
        match self {
            Place::Ec2 => "EC2",
            Place::AutoScalingGroup => "AutoScalingGroup",
            Place::WarmPool => "WarmPool",
        }
    }
}

/// The `Action` of an instance refresh that replaces only the root volume.
pub const REPLACE_ROOT_VOLUME: &str = "ReplaceRootVolume";

/// The lifecycle path of one hook, and so what ferry does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecyclePath {
    /// EC2→AutoScalingGroup or WarmPool→AutoScalingGroup: an instance enters service. It gets the slot's
    /// data (same-AZ fast path, final delta, restore) and the Elastic IP, then CONTINUE.
    EnterService {
        /// It comes from the warm pool (pre-initialized and started), not from a cold launch.
        from_warm_pool: bool,
    },
    /// EC2→WarmPool: an instance is launched into the warm pool. It never gets data or the Elastic IP:
    /// CONTINUE at once.
    FillWarmPool,
    /// AutoScalingGroup→EC2: an instance leaves for good. Pre-copy, then the fence (the completion).
    Leave,
    /// AutoScalingGroup→WarmPool (`InstanceReusePolicy`): an instance goes back to the pool, where it is
    /// stopped, not terminated. ferry stops it (the fence), detaches the data and the Elastic IP, then
    /// CONTINUE: a warm instance never keeps the data.
    ReturnToWarmPool,
    /// WarmPool→EC2: a warm instance is terminated. It holds nothing; the terminate still checks.
    DrainWarmPool,
    /// The terminate half of a `ReplaceRootVolume` refresh (`ReplacingRootVolume:Wait`): the instance stays,
    /// with its data volumes and IPs. Check that the data and the Elastic IP are attached, take a recovery
    /// point if configured, CONTINUE. No fence, no detach, no restore.
    ReplaceRootStop,
    /// The launch half of a `ReplaceRootVolume` refresh: the same instance boots its new root volume. The
    /// launch check finds its data attached and CONTINUEs without moving anything.
    ReplaceRootStart,
}

impl LifecyclePath {
    /// A short label for logs, metrics and `status`.
    pub fn label(self) -> &'static str {
        match self {
            LifecyclePath::EnterService {
                from_warm_pool: false,
            } => "failover",
            LifecyclePath::EnterService {
                from_warm_pool: true,
            } => "warm-pool-entry",
            LifecyclePath::FillWarmPool => "warm-pool-fill",
            LifecyclePath::Leave => "leave",
            LifecyclePath::ReturnToWarmPool => "warm-pool-return",
            LifecyclePath::DrainWarmPool => "warm-pool-drain",
            LifecyclePath::ReplaceRootStop => "root-volume-replacement",
            LifecyclePath::ReplaceRootStart => "root-volume-replacement-boot",
        }
    }
}

impl fmt::Display for LifecyclePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a hook's notification claims, and the state Auto Scaling confirmed.
#[derive(Debug, Clone, Copy)]
pub struct PathInput<'a> {
    /// Launch or terminate.
    pub transition: Transition,
    /// The message's `Origin`, if it named a known one.
    pub origin: Option<Place>,
    /// The message's `Destination`, if it named a known one.
    pub destination: Option<Place>,
    /// The message's `Action` (`ReplaceRootVolume`), if any.
    pub action: Option<&'a str>,
    /// The instance's lifecycle state as `DescribeAutoScalingInstances` reported it.
    pub state: &'a str,
}

/// The path, and what of the message the confirmed state overrode (for a warning), if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChoice {
    /// The path to follow.
    pub path: LifecyclePath,
    /// Set when the message claimed another path than the confirmed state shows.
    pub overridden: Option<String>,
}

/// Decides the path. `Err` names a combination Auto Scaling does not produce (verification refuses those
/// states before this is asked, so it is a defence, not a branch that runs).
pub fn classify(input: &PathInput<'_>) -> Result<PathChoice, String> {
    let by_state = from_state(input)?;
    let claimed = from_message(input);
    let overridden = claimed.filter(|c| *c != by_state).map(|c| {
        format!(
            "the message claims {c} (Origin {}, Destination {}, Action {}), but Auto Scaling shows {} in {}: \
             following Auto Scaling",
            name(input.origin),
            name(input.destination),
            input.action.unwrap_or("none"),
            by_state,
            input.state
        )
    });
    Ok(PathChoice {
        path: by_state,
        overridden,
    })
}

fn name(p: Option<Place>) -> &'static str {
    p.map_or("none", Place::as_aws)
}

/// The path the confirmed lifecycle state shows. Where one state serves two paths, the message's claims
/// pick between them, and only in the safe direction (see the arms).
fn from_state(input: &PathInput<'_>) -> Result<LifecyclePath, String> {
    let root = input.action == Some(REPLACE_ROOT_VOLUME);
    Ok(match (input.transition, input.state) {
        (Transition::Terminating, "ReplacingRootVolume:Wait") => LifecyclePath::ReplaceRootStop,
        // A `Pending:Wait` launch is a root-volume boot only when the message says so; an unsupported claim
        // costs nothing, since the launch check moves data only when it is not attached already.
        (Transition::Launching, "Pending:Wait") if root => LifecyclePath::ReplaceRootStart,
        (Transition::Launching, "Pending:Wait") => LifecyclePath::EnterService {
            from_warm_pool: input.origin == Some(Place::WarmPool),
        },
        (Transition::Launching, "Warmed:Pending:Wait") => LifecyclePath::FillWarmPool,
        // On AWS an instance going back to the pool waits in `Warmed:Pending:Wait`. A `Terminating:Wait` whose
        // message names the pool is stopped, not ended, too: both are taken off the same way, which is safe
        // for a real termination as well (the data is detached into the ledger either way).
        (Transition::Terminating, "Warmed:Pending:Wait") => LifecyclePath::ReturnToWarmPool,
        (Transition::Terminating, "Terminating:Wait")
            if input.destination == Some(Place::WarmPool) =>
        {
            LifecyclePath::ReturnToWarmPool
        }
        (Transition::Terminating, "Terminating:Wait") => LifecyclePath::Leave,
        (Transition::Terminating, "Warmed:Terminating:Wait") => LifecyclePath::DrainWarmPool,
        (t, s) => {
            return Err(format!(
                "a {t} hook of an instance in {s} is no lifecycle path Auto Scaling documents"
            ))
        }
    })
}

/// The path the message alone claims, if it claims a known one.
fn from_message(input: &PathInput<'_>) -> Option<LifecyclePath> {
    use Place::{AutoScalingGroup as Asg, Ec2, WarmPool};
    if input.action == Some(REPLACE_ROOT_VOLUME) {
        return Some(match input.transition {
            Transition::Terminating => LifecyclePath::ReplaceRootStop,
            Transition::Launching => LifecyclePath::ReplaceRootStart,
        });
    }
    Some(
        match (input.transition, input.origin?, input.destination?) {
            (Transition::Launching, Ec2, Asg) => LifecyclePath::EnterService {
                from_warm_pool: false,
            },
            (Transition::Launching, WarmPool, Asg) => LifecyclePath::EnterService {
                from_warm_pool: true,
            },
            (Transition::Launching, Ec2, WarmPool) => LifecyclePath::FillWarmPool,
            (Transition::Terminating, Asg, Ec2) => LifecyclePath::Leave,
            (Transition::Terminating, Asg, WarmPool) => LifecyclePath::ReturnToWarmPool,
            (Transition::Terminating, WarmPool, Ec2) => LifecyclePath::DrainWarmPool,
            _ => return None,
        },
    )
}

/// The lifecycle states in which an action of `transition` can be waiting.
pub fn wait_states(transition: Transition) -> &'static [&'static str] {
    match transition {
        Transition::Launching => &["Pending:Wait", "Warmed:Pending:Wait"],
        Transition::Terminating => &[
            "Terminating:Wait",
            "Warmed:Pending:Wait",
            "Warmed:Terminating:Wait",
            "ReplacingRootVolume:Wait",
        ],
    }
}

/// The transitions whose action an instance in `state` may be waiting on: an instance in
/// `Warmed:Pending:Wait` waits on a launch (into the pool) or a terminate (back into it).
pub fn transitions_waiting_in(state: &str) -> Vec<Transition> {
    [Transition::Launching, Transition::Terminating]
        .into_iter()
        .filter(|t| wait_states(*t).contains(&state))
        .collect()
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
