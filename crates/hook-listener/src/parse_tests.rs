//! Table tests for every accepted shape, the test notification and every rejection.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::*;

const TOKEN: &str = "bb6c4e37-7c1b-4f56-a0c3-6a0a9e2c7a11";

pub(super) fn raw_hook() -> Value {
    json!({
        "Origin": "EC2",
        "LifecycleHookName": "ferry-launch",
        "Destination": "AutoScalingGroup",
        "AccountId": "123456789012",
        "RequestId": "4f6e5c4a-1111-2222-3333-444455556666",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
        "AutoScalingGroupName": "db-asg",
        "Service": "AWS Auto Scaling",
        "Time": "2026-11-22T23:11:08.123Z",
        "EC2InstanceId": "i-0123456789abcdef0",
        "LifecycleActionToken": TOKEN,
        "NotificationMetadata": "{\"slot\":0}"
    })
}

pub(super) fn eventbridge(detail: Value) -> Value {
    json!({
        "version": "0",
        "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": "EC2 Instance-terminate Lifecycle Action",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-11-22T23:11:09Z",
        "region": "us-east-1",
        "resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/db-asg"],
        "detail": detail
    })
}

pub(super) fn sns(message: &str) -> Value {
    json!({
        "Type": "Notification",
        "MessageId": "7b1e9a2c-0000-0000-0000-000000000000",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ferry",
        "Subject": "Auto Scaling:  Lifecycle action 'LAUNCHING' for instance i-0123456789abcdef0",
        "Message": message,
        "Timestamp": "2026-11-22T23:11:08.200Z",
        "SignatureVersion": "1"
    })
}

fn expected_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_389_068_123)
}

fn hook(body: &str) -> HookEvent {
    match parse_body(body) {
        Ok(Notification::Hook(h)) => h,
        other => panic!("expected a hook from {body}, got {other:?}"),
    }
}

pub(super) fn with(mut v: Value, key: &str, val: Value) -> String {
    v[key] = val;
    v.to_string()
}

fn without(mut v: Value, key: &str) -> String {
    if let Value::Object(m) = &mut v {
        m.remove(key);
    }
    v.to_string()
}

#[test]
fn raw_hook_json_parses_every_field() {
    let h = hook(&raw_hook().to_string());
    assert_eq!(h.hook_name, "ferry-launch");
    assert_eq!(h.group, "db-asg");
    assert_eq!(h.instance_id, "i-0123456789abcdef0");
    assert_eq!(h.token, TOKEN);
    assert_eq!(h.transition, Transition::Launching);
    assert_eq!(h.time, Some(expected_time()));
    assert_eq!(h.origin, Some(Place::Ec2));
    assert_eq!(h.destination, Some(Place::AutoScalingGroup));
    assert_eq!(h.action, None);
    assert_eq!(h.metadata.as_deref(), Some("{\"slot\":0}"));
}

#[test]
fn a_root_volume_replacement_carries_its_action_and_unknown_places_read_as_absent() {
    let mut raw = raw_hook();
    raw["Origin"] = json!("AutoScalingGroup");
    raw["Action"] = json!("ReplaceRootVolume");
    raw["Destination"] = json!("Atlantis");
    let h = hook(&raw.to_string());
    assert_eq!(h.origin, Some(Place::AutoScalingGroup));
    assert_eq!(h.action.as_deref(), Some("ReplaceRootVolume"));
    assert_eq!(h.destination, None, "an unknown place is no claim at all");
}

#[test]
fn eventbridge_envelope_takes_detail_and_falls_back_to_envelope_time() {
    let mut detail = raw_hook();
    detail["LifecycleTransition"] = json!("autoscaling:EC2_INSTANCE_TERMINATING");
    detail["Destination"] = json!("WarmPool");
    let detail: Value = serde_json::from_str(&without(detail, "Time")).unwrap();
    let h = hook(&eventbridge(detail).to_string());
    assert_eq!(h.transition, Transition::Terminating);
    assert_eq!(h.destination, Some(Place::WarmPool));
    assert_eq!(
        h.time,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_389_069))
    );
}

#[test]
fn sns_envelope_carries_raw_or_eventbridge() {
    let h = hook(&sns(&raw_hook().to_string()).to_string());
    assert_eq!(h.token, TOKEN);
    let inner = eventbridge(raw_hook()).to_string();
    let h = hook(&sns(&inner).to_string());
    assert_eq!(h.group, "db-asg");
}

#[test]
fn test_notification_in_every_wrapper() {
    let test = json!({
        "AccountId": "123456789012", "RequestId": "r", "AutoScalingGroupARN": "arn:x",
        "AutoScalingGroupName": "db-asg", "Service": "AWS Auto Scaling",
        "Event": "autoscaling:TEST_NOTIFICATION", "Time": "2026-11-22T23:11:08.123Z"
    });
    let want = Notification::Test {
        group: Some("db-asg".into()),
    };
    assert_eq!(parse_body(&test.to_string()), Ok(want.clone()));
    assert_eq!(parse_body(&sns(&test.to_string()).to_string()), Ok(want));
    assert_eq!(
        parse_body(r#"{"Event":"autoscaling:TEST_NOTIFICATION"}"#),
        Ok(Notification::Test { group: None })
    );
}

#[test]
fn recognised_but_irrelevant_messages_are_other() {
    let launch_ok = json!({"detail-type": "EC2 Instance Launch Successful", "detail": {}});
    assert!(
        matches!(parse_body(&launch_ok.to_string()), Ok(Notification::Other(s)) if s.contains("Launch Successful"))
    );
    let plain = json!({"Event": "autoscaling:EC2_INSTANCE_LAUNCH", "AutoScalingGroupName": "g"});
    assert!(matches!(
        parse_body(&plain.to_string()),
        Ok(Notification::Other(_))
    ));
    let sub = json!({"Type": "SubscriptionConfirmation", "Message": "confirm me"});
    assert!(
        matches!(parse_body(&sub.to_string()), Ok(Notification::Other(s)) if s.contains("SubscriptionConfirmation"))
    );
}

#[test]
fn bad_time_keeps_the_hook_with_no_time() {
    let h = hook(&with(raw_hook(), "Time", json!("yesterday-ish")));
    assert_eq!(h.time, None);
    let h = hook(&with(raw_hook(), "Time", json!("")));
    assert_eq!(h.time, None);
    assert_eq!(hook(&without(raw_hook(), "Time")).time, None);
}

#[test]
fn empty_optional_fields_read_as_absent() {
    let h = hook(&with(
        with_value(raw_hook(), "Origin", json!("")),
        "NotificationMetadata",
        json!(null),
    ));
    assert_eq!(h.origin, None);
    assert_eq!(h.metadata, None);
}

fn with_value(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

#[test]
fn each_rejection_names_its_cause() {
    let long = "x".repeat(MAX_FIELD_BYTES + 1);
    let cases: Vec<(String, ParseError)> = vec![
        (
            "not json".into(),
            ParseError::NotJson {
                context: "body",
                detail: String::new(),
            },
        ),
        ("[1,2]".into(), ParseError::NotObject { context: "body" }),
        ("{}".into(), ParseError::UnknownShape),
        (
            without(raw_hook(), "LifecycleActionToken"),
            ParseError::MissingField {
                field: "LifecycleActionToken",
            },
        ),
        (
            without(raw_hook(), "EC2InstanceId"),
            ParseError::MissingField {
                field: "EC2InstanceId",
            },
        ),
        (
            with(raw_hook(), "AutoScalingGroupName", json!(null)),
            ParseError::MissingField {
                field: "AutoScalingGroupName",
            },
        ),
        (
            with(raw_hook(), "LifecycleHookName", json!("")),
            ParseError::EmptyField {
                field: "LifecycleHookName",
            },
        ),
        (
            with(raw_hook(), "EC2InstanceId", json!(42)),
            ParseError::NotAString {
                field: "EC2InstanceId",
            },
        ),
        (
            with(raw_hook(), "LifecycleActionToken", json!(long)),
            ParseError::FieldTooLong {
                field: "LifecycleActionToken",
                len: MAX_FIELD_BYTES + 1,
                max: MAX_FIELD_BYTES,
            },
        ),
        (
            with(raw_hook(), "RequestId", json!(long)),
            ParseError::FieldTooLong {
                field: "RequestId",
                len: MAX_FIELD_BYTES + 1,
                max: MAX_FIELD_BYTES,
            },
        ),
        (
            with(
                raw_hook(),
                "NotificationMetadata",
                json!("m".repeat(MAX_METADATA_BYTES + 1)),
            ),
            ParseError::FieldTooLong {
                field: "NotificationMetadata",
                len: MAX_METADATA_BYTES + 1,
                max: MAX_METADATA_BYTES,
            },
        ),
        (
            with(
                raw_hook(),
                "LifecycleTransition",
                json!("autoscaling:EC2_INSTANCE_REBOOTING"),
            ),
            ParseError::UnknownTransition("autoscaling:EC2_INSTANCE_REBOOTING".into()),
        ),
        (
            sns("not json").to_string(),
            ParseError::NotJson {
                context: "SNS Message",
                detail: String::new(),
            },
        ),
        (
            sns("\"a string\"").to_string(),
            ParseError::NotObject {
                context: "SNS Message",
            },
        ),
        (
            sns(&sns(&raw_hook().to_string()).to_string()).to_string(),
            ParseError::BadNesting("an SNS envelope inside an SNS envelope"),
        ),
        (
            json!({"Type": "Notification", "Message": {"inline": "object"}}).to_string(),
            ParseError::NotAString { field: "Message" },
        ),
        (
            with(eventbridge(raw_hook()), "detail", json!("str")),
            ParseError::NotObject { context: "detail" },
        ),
        (
            without(eventbridge(raw_hook()), "detail"),
            ParseError::MissingField { field: "detail" },
        ),
        (
            eventbridge(eventbridge(raw_hook())).to_string(),
            ParseError::BadNesting("an envelope inside EventBridge detail"),
        ),
        (
            format!("\"{}\"", "a".repeat(MAX_BODY_BYTES)),
            ParseError::TooLarge {
                len: MAX_BODY_BYTES + 2,
                max: MAX_BODY_BYTES,
            },
        ),
        (
            "[".repeat(10_000),
            ParseError::NotJson {
                context: "body",
                detail: String::new(),
            },
        ),
    ];
    for (body, want) in cases {
        let got = parse_body(&body);
        let shown = truncate(&body, 80);
        match (&got, &want) {
            // The parser's detail text is serde_json's; compare the rest.
            (
                Err(ParseError::NotJson { context: a, .. }),
                ParseError::NotJson { context: b, .. },
            ) => {
                assert_eq!(a, b, "{shown}")
            }
            _ => assert_eq!(got.as_ref(), Err(&want), "{shown}"),
        }
        let msg = want.to_string();
        assert!(!msg.is_empty());
    }
}

#[test]
fn rejection_messages_name_the_field() {
    let e = parse_body(&without(raw_hook(), "LifecycleActionToken")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "missing required field `LifecycleActionToken`"
    );
    let e = parse_body(&with(
        raw_hook(),
        "LifecycleTransition",
        json!("x".repeat(1000)),
    ))
    .unwrap_err();
    assert!(
        e.to_string().len() < 120,
        "offending values are quoted truncated: {e}"
    );
}

#[test]
fn bytes_reject_bad_utf8_and_size_first() {
    assert_eq!(
        parse_bytes(b"{\"a\":\"\xff\"}"),
        Err(ParseError::NotUtf8 { valid_up_to: 6 })
    );
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert!(matches!(
        parse_bytes(&big),
        Err(ParseError::TooLarge { .. })
    ));
    assert!(matches!(
        parse_bytes(raw_hook().to_string().as_bytes()),
        Ok(Notification::Hook(_))
    ));
}

#[test]
fn truncate_cuts_on_char_boundaries() {
    assert_eq!(truncate("abc", 5), "abc");
    assert_eq!(truncate("ééé", 3), "é…");
    assert_eq!(truncate("ééé", 1), "…");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    assert!(matches!(parse_body(&deep), Err(ParseError::NotJson { .. })));
    let inner = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        parse_body(&sns(&inner).to_string()),
        Err(ParseError::NotJson {
            context: "SNS Message",
            ..
        })
    ));
}
