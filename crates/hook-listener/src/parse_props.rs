//! Property tests: thousands of generated bodies (random strings and bytes, mutated and truncated valid
//! bodies, random JSON in every envelope, huge fields) never panic the parser.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::tests::{eventbridge, raw_hook, sns, with};
use super::*;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("Type".to_string()),
                    Just("Message".to_string()),
                    Just("detail-type".to_string()),
                    Just("detail".to_string()),
                    Just("Event".to_string()),
                    Just("LifecycleTransition".to_string()),
                    Just("LifecycleActionToken".to_string()),
                    ".{0,12}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The valid bodies of every shape, as mutation seeds.
fn seeds() -> Vec<String> {
    let raw = raw_hook().to_string();
    vec![
        raw.clone(),
        eventbridge(raw_hook()).to_string(),
        sns(&raw).to_string(),
        sns(&eventbridge(raw_hook()).to_string()).to_string(),
        r#"{"Event":"autoscaling:TEST_NOTIFICATION","AutoScalingGroupName":"g"}"#.to_string(),
    ]
}

fn mutated_body() -> impl Strategy<Value = String> {
    (
        0..seeds().len(),
        any::<usize>(),
        any::<usize>(),
        any::<u8>(),
        0u8..4,
    )
        .prop_map(|(i, a, b, byte, op)| {
            let mut bytes = seeds()[i].clone().into_bytes();
            let n = bytes.len();
            match op {
                0 => bytes.truncate(a % (n + 1)),
                1 => bytes[a % n] = byte,
                2 => {
                    let (lo, hi) = ((a % n).min(b % n), (a % n).max(b % n));
                    bytes.drain(lo..hi);
                }
                _ => {
                    let at = a % n;
                    let chunk: Vec<u8> = bytes[at..].iter().take(b % 64).copied().collect();
                    bytes.splice(at..at, chunk);
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

fn check(body: &str) {
    let _ = parse_body(body);
    let _ = parse_bytes(body.as_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_strings_never_panic(s in ".{0,300}") { check(&s); }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) { let _ = parse_bytes(&b); }

    #[test]
    fn mutated_valid_bodies_never_panic(body in mutated_body()) { check(&body); }

    #[test]
    fn random_json_never_panics(v in any_json()) {
        check(&v.to_string());
        // The same value inside each envelope.
        check(&sns(&v.to_string()).to_string());
        check(&eventbridge(v.clone()).to_string());
        let mut hook = raw_hook();
        if let Value::Object(m) = &v { for (k, val) in m { hook[k] = val.clone(); } }
        check(&hook.to_string());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn huge_strings_in_any_field_are_rejected_not_panicking(
        field in prop::sample::select(vec!["LifecycleHookName", "AutoScalingGroupName", "EC2InstanceId",
            "LifecycleActionToken", "LifecycleTransition", "Time", "NotificationMetadata", "Origin", "Destination", "Action"]),
        len in 4097usize..200_000,
    ) {
        let body = with(raw_hook(), field, json!("é".repeat(len / 2)));
        let got = parse_body(&body);
        prop_assert!(got.is_err(), "{field} of {len} bytes accepted");
    }
}
