//! The lifecycle-path table: every combination Auto Scaling documents, and what the confirmed state overrides.

use super::*;
use crate::model::Transition::{Launching as L, Terminating as T};
use Place::{AutoScalingGroup as Asg, Ec2, WarmPool as Pool};

const ROOT: Option<&str> = Some(REPLACE_ROOT_VOLUME);

fn input<'a>(
    transition: Transition,
    origin: Option<Place>,
    destination: Option<Place>,
    action: Option<&'a str>,
    state: &'a str,
) -> PathInput<'a> {
    PathInput {
        transition,
        origin,
        destination,
        action,
        state,
    }
}

#[test]
fn every_documented_combination_has_its_path() {
    use LifecyclePath::*;
    let cold = EnterService {
        from_warm_pool: false,
    };
    let warm = EnterService {
        from_warm_pool: true,
    };
    // (transition, origin, destination, action, confirmed state) → path; none of these is overridden.
    let table = [
        (L, Some(Ec2), Some(Asg), None, "Pending:Wait", cold),
        (
            L,
            Some(Ec2),
            Some(Pool),
            None,
            "Warmed:Pending:Wait",
            FillWarmPool,
        ),
        (L, Some(Pool), Some(Asg), None, "Pending:Wait", warm),
        (
            T,
            Some(Asg),
            Some(Pool),
            None,
            "Warmed:Pending:Wait",
            ReturnToWarmPool,
        ),
        (T, Some(Asg), Some(Ec2), None, "Terminating:Wait", Leave),
        (
            T,
            Some(Pool),
            Some(Ec2),
            None,
            "Warmed:Terminating:Wait",
            DrainWarmPool,
        ),
        (
            T,
            Some(Asg),
            Some(Asg),
            ROOT,
            "ReplacingRootVolume:Wait",
            ReplaceRootStop,
        ),
        (
            L,
            Some(Asg),
            Some(Asg),
            ROOT,
            "Pending:Wait",
            ReplaceRootStart,
        ),
        // A terminate to the pool announced while the instance is still `Terminating:Wait`: stopped, not ended.
        (
            T,
            Some(Asg),
            Some(Pool),
            None,
            "Terminating:Wait",
            ReturnToWarmPool,
        ),
    ];
    for (t, o, d, a, state, want) in table {
        let got = classify(&input(t, o, d, a, state)).unwrap();
        assert_eq!(got.path, want, "{t} {o:?}→{d:?} {a:?} in {state}");
        assert_eq!(got.overridden, None, "{t} {o:?}→{d:?} {a:?} in {state}");
    }
}

#[test]
fn a_message_without_origin_or_destination_follows_the_state() {
    // Reconciliation finds actions with no message at all: the state alone decides.
    use LifecyclePath::*;
    let table = [
        (
            L,
            "Pending:Wait",
            EnterService {
                from_warm_pool: false,
            },
        ),
        (L, "Warmed:Pending:Wait", FillWarmPool),
        (T, "Warmed:Pending:Wait", ReturnToWarmPool),
        (T, "Terminating:Wait", Leave),
        (T, "Warmed:Terminating:Wait", DrainWarmPool),
        (T, "ReplacingRootVolume:Wait", ReplaceRootStop),
    ];
    for (t, state, want) in table {
        let got = classify(&input(t, None, None, None, state)).unwrap();
        assert_eq!((got.path, got.overridden), (want, None), "{t} in {state}");
    }
}

#[test]
fn where_the_message_and_the_state_disagree_the_state_wins_and_is_reported() {
    use LifecyclePath::*;
    let table = [
        // A forged "into the pool" for a real launch into service: the data still comes.
        (
            L,
            Some(Ec2),
            Some(Pool),
            None,
            "Pending:Wait",
            EnterService {
                from_warm_pool: false,
            },
        ),
        // A forged "into service" for a warm-pool fill: no data goes to the warm instance.
        (
            L,
            Some(Ec2),
            Some(Asg),
            None,
            "Warmed:Pending:Wait",
            FillWarmPool,
        ),
        // A forged "warm instance drained" for a real terminate: the pre-copy and fence still run.
        (T, Some(Pool), Some(Ec2), None, "Terminating:Wait", Leave),
        // A forged root-volume action on a real terminate: taken off as a terminate, never left attached.
        (T, Some(Asg), Some(Asg), ROOT, "Terminating:Wait", Leave),
        // A root-volume terminate announced as an ordinary one: the state says the instance stays.
        (
            T,
            Some(Asg),
            Some(Ec2),
            None,
            "ReplacingRootVolume:Wait",
            ReplaceRootStop,
        ),
    ];
    for (t, o, d, a, state, want) in table {
        let got = classify(&input(t, o, d, a, state)).unwrap();
        assert_eq!(got.path, want, "{t} {o:?}→{d:?} {a:?} in {state}");
        let why = got.overridden.expect("the disagreement is reported");
        assert!(
            why.contains(state) && why.contains("following Auto Scaling"),
            "{why}"
        );
    }
}

#[test]
fn undocumented_combinations_are_refused_with_their_state() {
    for (t, state) in [
        (L, "Terminating:Wait"),
        (L, "InService"),
        (T, "Pending:Wait"),
    ] {
        let err = classify(&input(t, None, None, None, state)).unwrap_err();
        assert!(err.contains(state), "{err}");
    }
}

#[test]
fn wait_states_match_the_paths() {
    // Every wait state of a transition classifies, and `Warmed:Pending:Wait` waits on both transitions.
    for t in [L, T] {
        for s in wait_states(t) {
            assert!(classify(&input(t, None, None, None, s)).is_ok(), "{t} {s}");
        }
    }
    assert_eq!(transitions_waiting_in("Warmed:Pending:Wait"), vec![L, T]);
    assert_eq!(transitions_waiting_in("ReplacingRootVolume:Wait"), vec![T]);
    assert_eq!(transitions_waiting_in("Pending:Wait"), vec![L]);
    assert!(transitions_waiting_in("InService").is_empty());
}

#[test]
fn places_round_trip_their_wire_names() {
    for p in [Ec2, Asg, Pool] {
        assert_eq!(Place::from_aws(p.as_aws()), Some(p));
    }
    assert_eq!(Place::from_aws("Mars"), None);
}
