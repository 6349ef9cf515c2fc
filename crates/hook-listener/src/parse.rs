//! Parses an SQS message body into a lifecycle hook notification: raw hook JSON, an EventBridge envelope or
//! an SNS envelope, with every field checked and bounded.
//!
//! Decisions:
//! - Required hook fields are the ones ferry acts on: `LifecycleHookName`, `AutoScalingGroupName`,
//!   `EC2InstanceId`, `LifecycleActionToken`, `LifecycleTransition`. They must be non-empty strings of at
//!   most [`MAX_FIELD_BYTES`]. `AccountId`, `RequestId`, `Service` and `Time` are optional (EventBridge's
//!   `detail` carries no `Time`; the envelope's `time` is used instead) but bounded when present.
//! - A `Time` that is not ISO-8601 yields `time: None` and a `warn!`, not a rejection: the hook is still
//!   valid, and dropping it would leave the instance to its hook's default result.
//! - Empty optional fields (`NotificationMetadata`, `Origin`, `Destination`, `Action`) read as absent.
//!   `Origin` and `Destination` are [`Place`]s; an unknown place reads as absent (with a warning), since the
//!   lifecycle state Auto Scaling confirms decides the path, not the message.
//! - Envelopes nest at most once: SNS may carry an EventBridge event or raw hook JSON; EventBridge carries
//!   raw hook fields in `detail`. Anything deeper is [`ParseError::BadNesting`].
//! - [`Notification::Other`] is a recognised message that ferry does not act on (another EventBridge
//!   detail-type, a plain Auto Scaling notification, an SNS subscription message). The listener deletes it.

use std::time::SystemTime;

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use ferry_state_machine::{HookEvent, Place, Transition};
use serde_json::{Map, Value};
use tracing::warn;

/// The largest body accepted: SQS's own message size limit.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The largest accepted string field (tokens, ids, names, times).
pub const MAX_FIELD_BYTES: usize = 1600;
/// The largest accepted `NotificationMetadata` (AWS allows 1023 characters, at most 4 bytes each).
pub const MAX_METADATA_BYTES: usize = 4096;

const TEST_EVENT: &str = "autoscaling:TEST_NOTIFICATION";
const LAUNCH_DETAIL: &str = "EC2 Instance-launch Lifecycle Action";
const TERMINATE_DETAIL: &str = "EC2 Instance-terminate Lifecycle Action";
/// How much of an offending value an error quotes.
const QUOTE_BYTES: usize = 64;

/// What one message body announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A lifecycle action to work.
    Hook(HookEvent),
    /// `autoscaling:TEST_NOTIFICATION`, sent when a hook is created: acknowledge and delete it.
    Test {
        /// The group the test came from, if the message named it.
        group: Option<String>,
    },
    /// A recognised message that is not a lifecycle action (e.g. an EventBridge `EC2 Instance Launch
    /// Successful`). The string says what it was; the listener deletes it.
    Other(String),
}

/// Why a body was rejected. Rejected messages are left on the queue, so its redrive policy dead-letters them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body exceeds [`MAX_BODY_BYTES`].
    #[error("body is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The body's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8.
    #[error("body is not valid UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// How many leading bytes are valid.
        valid_up_to: usize,
    },
    /// The body (or an envelope's payload) is not JSON.
    #[error("{context} is not valid JSON: {detail}")]
    NotJson {
        /// Which part of the message: `body`, `SNS Message`.
        context: &'static str,
        /// The JSON parser's complaint.
        detail: String,
    },
    /// A JSON value that must be an object is not.
    #[error("{context} is not a JSON object")]
    NotObject {
        /// Which part of the message: `body`, `SNS Message`, `detail`.
        context: &'static str,
    },
    /// A required field is absent or null.
    #[error("missing required field `{field}`")]
    MissingField {
        /// The field's name.
        field: &'static str,
    },
    /// A field is not a JSON string.
    #[error("field `{field}` is not a string")]
    NotAString {
        /// The field's name.
        field: &'static str,
    },
    /// A required field is an empty string.
    #[error("field `{field}` is empty")]
    EmptyField {
        /// The field's name.
        field: &'static str,
    },
    /// A field exceeds its size limit.
    #[error("field `{field}` is {len} bytes, over the {max}-byte limit")]
    FieldTooLong {
        /// The field's name.
        field: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `LifecycleTransition` is neither launching nor terminating.
    #[error("unknown LifecycleTransition `{0}`")]
    UnknownTransition(String),
    /// An envelope inside an envelope of a kind that cannot nest (SNS in SNS, an envelope in `detail`).
    #[error("bad nesting: {0}")]
    BadNesting(&'static str),
    /// A JSON object that matches none of the known shapes.
    #[error("unrecognised message shape (no LifecycleTransition, Event, detail-type or SNS Type)")]
    UnknownShape,
}

/// Where in the nesting a payload sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Body,
    InSns,
}

/// Parses raw bytes: rejects oversized and non-UTF-8 bodies, then [`parse_body`].
pub fn parse_bytes(body: &[u8]) -> Result<Notification, ParseError> {
    check_size(body.len())?;
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    parse_body(text)
}

/// Parses an SQS message body in any of the three shapes.
pub fn parse_body(body: &str) -> Result<Notification, ParseError> {
    check_size(body.len())?;
    let value = json("body", body)?;
    parse_value(value, Layer::Body)
}

fn check_size(len: usize) -> Result<(), ParseError> {
    if len > MAX_BODY_BYTES {
        return Err(ParseError::TooLarge {
            len,
            max: MAX_BODY_BYTES,
        });
    }
    Ok(())
}

fn json(context: &'static str, text: &str) -> Result<Value, ParseError> {
    // serde_json's recursion limit (128) bounds nesting, so deep input errors instead of overflowing the stack.
    serde_json::from_str(text).map_err(|e| ParseError::NotJson {
        context,
        detail: e.to_string(),
    })
}

fn parse_value(value: Value, layer: Layer) -> Result<Notification, ParseError> {
    let context = match layer {
        Layer::Body => "body",
        Layer::InSns => "SNS Message",
    };
    let Value::Object(obj) = value else {
        return Err(ParseError::NotObject { context });
    };
    if obj.contains_key("Type") && obj.contains_key("Message") {
        if layer == Layer::InSns {
            return Err(ParseError::BadNesting(
                "an SNS envelope inside an SNS envelope",
            ));
        }
        return parse_sns(&obj);
    }
    if obj.contains_key("detail-type") {
        return parse_eventbridge(&obj);
    }
    if obj.contains_key("LifecycleTransition") || obj.contains_key("LifecycleActionToken") {
        return parse_hook(&obj, None).map(Notification::Hook);
    }
    if let Some(event) = opt_str(&obj, "Event", MAX_FIELD_BYTES)? {
        if event == TEST_EVENT {
            let group = opt_str(&obj, "AutoScalingGroupName", MAX_FIELD_BYTES)?;
            return Ok(Notification::Test {
                group: group.map(str::to_string),
            });
        }
        return Ok(Notification::Other(format!(
            "autoscaling event {}",
            quote(event)
        )));
    }
    Err(ParseError::UnknownShape)
}

fn parse_sns(obj: &Map<String, Value>) -> Result<Notification, ParseError> {
    let kind = req_str(obj, "Type", MAX_FIELD_BYTES)?;
    if kind != "Notification" {
        return Ok(Notification::Other(format!("SNS {}", quote(kind))));
    }
    // `Message` is a JSON document inside a string; its length is bounded by the body's.
    let message = req_str(obj, "Message", MAX_BODY_BYTES)?;
    parse_value(json("SNS Message", message)?, Layer::InSns)
}

fn parse_eventbridge(obj: &Map<String, Value>) -> Result<Notification, ParseError> {
    let detail_type = req_str(obj, "detail-type", MAX_FIELD_BYTES)?;
    if detail_type != LAUNCH_DETAIL && detail_type != TERMINATE_DETAIL {
        return Ok(Notification::Other(format!(
            "EventBridge {}",
            quote(detail_type)
        )));
    }
    let detail = match obj.get("detail") {
        None | Some(Value::Null) => return Err(ParseError::MissingField { field: "detail" }),
        Some(Value::Object(d)) => d,
        Some(_) => return Err(ParseError::NotObject { context: "detail" }),
    };
    if detail.contains_key("detail-type") || detail.contains_key("Message") {
        return Err(ParseError::BadNesting(
            "an envelope inside EventBridge detail",
        ));
    }
    let envelope_time = opt_str(obj, "time", MAX_FIELD_BYTES)?;
    let hook = parse_hook(detail, envelope_time)?;
    let expected = if detail_type == LAUNCH_DETAIL {
        Transition::Launching
    } else {
        Transition::Terminating
    };
    if hook.transition != expected {
        warn!(detail_type, transition = hook.transition.as_aws(), "EventBridge detail-type disagrees with LifecycleTransition; trusting LifecycleTransition");
    }
    Ok(Notification::Hook(hook))
}

fn parse_hook(
    obj: &Map<String, Value>,
    fallback_time: Option<&str>,
) -> Result<HookEvent, ParseError> {
    let hook_name = req_str(obj, "LifecycleHookName", MAX_FIELD_BYTES)?;
    let group = req_str(obj, "AutoScalingGroupName", MAX_FIELD_BYTES)?;
    let instance_id = req_str(obj, "EC2InstanceId", MAX_FIELD_BYTES)?;
    let token = req_str(obj, "LifecycleActionToken", MAX_FIELD_BYTES)?;
    let transition_raw = req_str(obj, "LifecycleTransition", MAX_FIELD_BYTES)?;
    let transition = Transition::from_aws(transition_raw)
        .ok_or_else(|| ParseError::UnknownTransition(quote(transition_raw)))?;
    for field in ["AccountId", "RequestId", "Service"] {
        opt_str(obj, field, MAX_FIELD_BYTES)?;
    }
    let time_raw = non_empty(opt_str(obj, "Time", MAX_FIELD_BYTES)?).or(non_empty(fallback_time));
    let metadata = non_empty(opt_str(obj, "NotificationMetadata", MAX_METADATA_BYTES)?);
    let place = |field| -> Result<Option<Place>, ParseError> {
        Ok(non_empty(opt_str(obj, field, MAX_FIELD_BYTES)?).and_then(|raw| {
            let p = Place::from_aws(raw);
            if p.is_none() {
                warn!(hook.token = token, field, value = %quote(raw), "unknown place in a hook message; ignoring it (the confirmed lifecycle state decides the path)");
            }
            p
        }))
    };
    let origin = place("Origin")?;
    let destination = place("Destination")?;
    let action = non_empty(opt_str(obj, "Action", MAX_FIELD_BYTES)?);
    Ok(HookEvent {
        hook_name: hook_name.to_string(),
        group: group.to_string(),
        instance_id: instance_id.to_string(),
        token: token.to_string(),
        transition,
        time: time_raw.and_then(|t| parse_time(t, token)),
        origin,
        destination,
        action: action.map(str::to_string),
        metadata: metadata.map(str::to_string),
    })
}

/// Parses an ISO-8601 time such as `2026-11-22T23:11:08.123Z`; `None` (with a warning) if it is not one.
fn parse_time(raw: &str, token: &str) -> Option<SystemTime> {
    match DateTime::from_str(raw, Format::DateTime).map(SystemTime::try_from) {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            warn!(hook.token = token, time = %quote(raw), error = %e, "hook Time out of range; ignoring it");
            None
        }
        Err(e) => {
            warn!(hook.token = token, time = %quote(raw), error = %e, "hook Time is not ISO-8601; ignoring it");
            None
        }
    }
}

/// A required non-empty string field of at most `max` bytes.
fn req_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<&'a str, ParseError> {
    match opt_str(obj, field, max)? {
        None => Err(ParseError::MissingField { field }),
        Some("") => Err(ParseError::EmptyField { field }),
        Some(s) => Ok(s),
    }
}

/// An optional string field of at most `max` bytes; absent and null read as `None`. Callers that treat an
/// empty string as absent filter it with [`non_empty`].
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<&'a str>, ParseError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(ParseError::FieldTooLong {
            field,
            len: s.len(),
            max,
        }),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ParseError::NotAString { field }),
    }
}

/// An empty optional field reads as absent.
fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Quotes at most [`QUOTE_BYTES`] of a value, on a character boundary, for errors and logs.
fn quote(s: &str) -> String {
    truncate(s, QUOTE_BYTES)
}

/// The first `max` bytes of `s` (cut on a character boundary), with `…` when anything was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "parse_props.rs"]
mod props;
