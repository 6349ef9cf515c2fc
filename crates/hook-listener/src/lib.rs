//! ferry's hook listener: consumes EC2 Auto Scaling lifecycle-hook notifications from SQS.
//!
//! - [`parse`]: the three message shapes (raw hook JSON, EventBridge, SNS) into a [`Notification`].
//! - [`Queue`]: the SQS port (`ReceiveMessage`, `DeleteMessageBatch`, `ChangeMessageVisibilityBatch`),
//!   with [`SqsQueue`] (aws-sdk-sqs), [`FakeQueue`] (in memory, paused-time friendly, counts calls),
//!   [`FaultyQueue`] (scripted faults of whole calls or single entries) and [`ThrottledQueue`] (each call
//!   waits for its action's token of the `ApiBudget`), each a [`GatedQueue`] with its own [`QueueGate`].
//! - [`run`]: the consume loop with bounded concurrency, in-process dedupe by lifecycle action token,
//!   visibility extension while a hook runs, the delete/dead-letter policy and graceful shutdown. It calls a
//!   [`HookHandler`] (ferryd's, over the state machine's `Driver`) and reports to a [`ListenerObserver`].
//!   Underneath, a coalescer merges every hook's deletes and visibility changes into batch calls of up to
//!   ten entries, gathered for [`ListenerConfig::batch_window`].

mod batcher;
mod fake_queue;
mod faulty;
mod gated;
mod handler;
mod inflight;
mod listener;
pub mod parse;
mod queue;
mod sqs;
mod throttled;

pub use fake_queue::{FakeQueue, QueueCalls};
pub use faulty::{FaultyQueue, QueueFaults};
pub use gated::{GatedQueue, QueueGate, QueueOp};
pub use handler::{
    Admission, ConfigError, HookHandler, ListenerConfig, ListenerObserver, NoListenerObserver,
    DEFAULT_BATCH_WINDOW, MAX_BATCH_WINDOW,
};
pub use inflight::hook_span;
pub use listener::{run, ListenerReport};
pub use parse::{parse_body, parse_bytes, Notification, ParseError};
pub use queue::{
    EntryResults, Queue, QueueMessage, VisibilityChange, MAX_BATCH, MAX_BATCH_ENTRIES,
    MAX_VISIBILITY, MAX_WAIT,
};
pub use sqs::SqsQueue;
pub use throttled::ThrottledQueue;
