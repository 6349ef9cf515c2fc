//! An in-memory SQS queue: visibility timeouts on `tokio::time::Instant` (so tests run on paused time),
//! receive counts, a dead-letter queue after `max_receive_count` receives, and counters of the calls (and
//! batch entries) served, so tests can assert how many SQS calls were made.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ferry_state_machine::StepError;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::queue::{
    EntryResults, Queue, QueueMessage, VisibilityChange, HANDLE_GONE, MAX_BATCH, MAX_BATCH_ENTRIES,
    MAX_VISIBILITY, MAX_WAIT,
};

/// How many calls of each kind a [`FakeQueue`] has served, and how many entries its batch calls carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCalls {
    /// `ReceiveMessage` calls.
    pub receive: usize,
    /// `DeleteMessageBatch` calls.
    pub delete_batch: usize,
    /// Entries of all `DeleteMessageBatch` calls.
    pub delete_entries: usize,
    /// `ChangeMessageVisibilityBatch` calls.
    pub change_visibility_batch: usize,
    /// Entries of all `ChangeMessageVisibilityBatch` calls.
    pub change_visibility_entries: usize,
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    sent_at: SystemTime,
    receive_count: u32,
    visible_at: Instant,
    /// The handle of the latest delivery; only it can delete or change visibility.
    handle: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    live: Vec<Stored>,
    dead: Vec<Stored>,
    /// Ids of deleted messages, in order of deletion.
    deleted: Vec<String>,
    /// Receipt handles of deleted messages: deleting them again succeeds, as on SQS.
    gone_handles: Vec<String>,
    calls: QueueCalls,
    /// (receipt handle, timeout) of every accepted visibility change.
    extensions: Vec<(String, Duration)>,
    next_id: u64,
    next_handle: u64,
}

/// An in-memory queue with SQS's delivery semantics, for tests.
#[derive(Debug, Clone)]
pub struct FakeQueue {
    state: Arc<Mutex<State>>,
    pushed: Arc<Notify>,
    visibility_timeout: Duration,
    max_receive_count: Option<u32>,
}

impl FakeQueue {
    /// A queue whose messages become invisible for `visibility_timeout` on receipt, and move to the
    /// dead-letter queue once they have been received `max_receive_count` times (`None`: never).
    pub fn new(visibility_timeout: Duration, max_receive_count: Option<u32>) -> Self {
        Self {
            state: Arc::default(),
            pushed: Arc::default(),
            visibility_timeout,
            max_receive_count,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Sends a message; returns its message id.
    pub fn push(&self, body: impl Into<String>) -> String {
        let id = self.with(|s| {
            s.next_id += 1;
            let id = format!("msg-{}", s.next_id);
            s.live.push(Stored {
                id: id.clone(),
                body: body.into(),
                sent_at: SystemTime::now(),
                receive_count: 0,
                visible_at: Instant::now(),
                handle: None,
            });
            id
        });
        self.pushed.notify_waiters();
        id
    }

    /// Messages neither deleted nor dead-lettered (visible or in flight).
    pub fn len(&self) -> usize {
        self.with(|s| s.live.len())
    }

    /// Whether no message is left (visible or in flight).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages received and not yet visible again.
    pub fn in_flight(&self) -> usize {
        let now = Instant::now();
        self.with(|s| s.live.iter().filter(|m| m.visible_at > now).count())
    }

    /// Messages that a receive would return now.
    pub fn visible(&self) -> usize {
        self.len() - self.in_flight()
    }

    /// Ids of the deleted messages, in order of deletion.
    pub fn deleted(&self) -> Vec<String> {
        self.with(|s| s.deleted.clone())
    }

    /// Ids of the dead-lettered messages, in order.
    pub fn dead_lettered(&self) -> Vec<String> {
        self.with(|s| s.dead.iter().map(|m| m.id.clone()).collect())
    }

    /// How many times a message has been received, if it is still live or dead-lettered.
    pub fn receive_count(&self, message_id: &str) -> Option<u32> {
        self.with(|s| {
            s.live
                .iter()
                .chain(s.dead.iter())
                .find(|m| m.id == message_id)
                .map(|m| m.receive_count)
        })
    }

    /// Calls served so far.
    pub fn calls(&self) -> QueueCalls {
        self.with(|s| s.calls.clone())
    }

    /// Every accepted visibility change: (receipt handle, timeout).
    pub fn extensions(&self) -> Vec<(String, Duration)> {
        self.with(|s| s.extensions.clone())
    }

    /// Takes up to `max` visible messages, dead-lettering those past `max_receive_count`.
    fn take_visible(&self, max: usize) -> Vec<QueueMessage> {
        let now = Instant::now();
        let limit = self.max_receive_count;
        let visibility = self.visibility_timeout;
        self.with(|s| {
            if let Some(limit) = limit {
                let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut s.live)
                    .into_iter()
                    .partition(|m| m.visible_at <= now && m.receive_count >= limit);
                s.live = live;
                s.dead.extend(dead);
            }
            let mut out = Vec::new();
            for i in 0..s.live.len() {
                if out.len() >= max {
                    break;
                }
                if s.live[i].visible_at > now {
                    continue;
                }
                s.next_handle += 1;
                let handle = format!("{}#{}", s.live[i].id, s.next_handle);
                let m = &mut s.live[i];
                m.receive_count += 1;
                m.visible_at = now + visibility;
                m.handle = Some(handle.clone());
                out.push(QueueMessage {
                    message_id: m.id.clone(),
                    receipt_handle: handle,
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                    sent_at: Some(m.sent_at),
                });
            }
            out
        })
    }

    /// When the next in-flight message becomes visible again.
    fn next_visible(&self) -> Option<Instant> {
        self.with(|s| s.live.iter().map(|m| m.visible_at).min())
    }
}

const DELETE: &str = "sqs:DeleteMessageBatch";
const CHANGE: &str = "sqs:ChangeMessageVisibilityBatch";

fn invalid(op: &str, code: &str, message: String) -> StepError {
    StepError::from_aws(op, Some(code), Some(&message), Some(400))
}

/// SQS's checks of a batch request as a whole: 1..=10 entries.
fn check_batch(op: &str, entries: usize) -> Result<(), StepError> {
    match entries {
        0 => Err(invalid(op, "EmptyBatchRequest", "no entries".into())),
        n if n > MAX_BATCH_ENTRIES => Err(invalid(
            op,
            "TooManyEntriesInBatchRequest",
            format!("{n} entries; at most {MAX_BATCH_ENTRIES}"),
        )),
        _ => Ok(()),
    }
}

impl State {
    /// One delete entry: the latest handle deletes; a stale or spent one succeeds without deleting.
    fn delete_one(&mut self, receipt_handle: &str) -> Result<(), StepError> {
        if let Some(i) = self
            .live
            .iter()
            .position(|m| m.handle.as_deref() == Some(receipt_handle))
        {
            let m = self.live.remove(i);
            self.deleted.push(m.id);
            self.gone_handles.push(receipt_handle.to_string());
            return Ok(());
        }
        let known = self.gone_handles.iter().any(|h| h == receipt_handle)
            || self
                .live
                .iter()
                .chain(self.dead.iter())
                .any(|m| receipt_handle.starts_with(&format!("{}#", m.id)));
        if known {
            // SQS accepts a stale or spent handle without deleting anything.
            Ok(())
        } else {
            Err(invalid(
                DELETE,
                HANDLE_GONE,
                format!("unknown handle {receipt_handle}"),
            ))
        }
    }

    /// One visibility entry: only the latest handle of a message in flight may change it.
    fn change_one(&mut self, change: &VisibilityChange, now: Instant) -> Result<(), StepError> {
        let handle = change.receipt_handle.as_str();
        let Some(m) = self
            .live
            .iter_mut()
            .find(|m| m.handle.as_deref() == Some(handle))
        else {
            return Err(invalid(
                CHANGE,
                HANDLE_GONE,
                format!("no message for handle {handle}"),
            ));
        };
        if m.visible_at <= now {
            return Err(invalid(
                CHANGE,
                "MessageNotInflight",
                format!("message {} is not in flight", m.id),
            ));
        }
        m.visible_at = now + change.timeout.min(MAX_VISIBILITY);
        self.extensions.push((handle.to_string(), change.timeout));
        Ok(())
    }
}

#[async_trait]
impl Queue for FakeQueue {
    async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<QueueMessage>, StepError> {
        self.with(|s| s.calls.receive += 1);
        if !(1..=MAX_BATCH).contains(&max) || wait > MAX_WAIT {
            return Err(invalid(
                "sqs:ReceiveMessage",
                "InvalidParameterValue",
                format!("max {max} must be 1..=10 and wait {wait:?} at most 20s"),
            ));
        }
        let max = usize::try_from(max).unwrap_or(1);
        let deadline = Instant::now() + wait;
        loop {
            // Register for pushes before looking, so a push between the look and the wait is not missed.
            let pushed = self.pushed.notified();
            let got = self.take_visible(max);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            let wake = self
                .next_visible()
                .filter(|t| *t > Instant::now())
                .map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = pushed => {}
            }
        }
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<EntryResults, StepError> {
        self.with(|s| {
            s.calls.delete_batch += 1;
            s.calls.delete_entries += receipt_handles.len();
            check_batch(DELETE, receipt_handles.len())?;
            Ok(receipt_handles.iter().map(|h| s.delete_one(h)).collect())
        })
    }

    async fn change_visibility_batch(
        &self,
        changes: &[VisibilityChange],
    ) -> Result<EntryResults, StepError> {
        let now = Instant::now();
        let results = self.with(|s| {
            s.calls.change_visibility_batch += 1;
            s.calls.change_visibility_entries += changes.len();
            check_batch(CHANGE, changes.len())?;
            Ok::<_, StepError>(changes.iter().map(|c| s.change_one(c, now)).collect())
        })?;
        // A long poll returns as soon as a message becomes visible, so wake any to look again.
        self.pushed.notify_waiters();
        Ok(results)
    }
}

#[cfg(test)]
#[path = "fake_queue_tests.rs"]
mod tests;
