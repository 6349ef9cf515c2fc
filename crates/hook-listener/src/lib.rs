//! ferry's hook listener: consumes EC2 Auto Scaling lifecycle-hook notifications from SQS.
//!
//! - [`parse`]: the three message shapes (raw hook JSON, EventBridge, SNS) into a [`Notification`].
//! - [`Queue`]: the SQS port, with [`SqsQueue`] (aws-sdk-sqs), [`FakeQueue`] (in memory, paused-time
//!   friendly) and [`FaultyQueue`] (scripted faults).
//! - [`run`]: the consume loop with bounded concurrency, in-process dedupe by lifecycle action token,
//!   visibility extension while a hook runs, the delete/dead-letter policy and graceful shutdown. It calls a
//!   [`HookHandler`] (ferryd's, over the state machine's `Driver`) and reports to a [`ListenerObserver`].

mod fake_queue;
mod faulty;
mod handler;
mod inflight;
mod listener;
pub mod parse;
mod queue;
mod sqs;

pub use fake_queue::{FakeQueue, QueueCalls};
pub use faulty::{FaultyQueue, QueueOp};
pub use handler::{
    Admission, ConfigError, HookHandler, ListenerConfig, ListenerObserver, NoListenerObserver,
};
pub use inflight::hook_span;
pub use listener::{run, ListenerReport};
pub use parse::{parse_body, parse_bytes, Notification, ParseError};
pub use queue::{Queue, QueueMessage, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT};
pub use sqs::SqsQueue;
