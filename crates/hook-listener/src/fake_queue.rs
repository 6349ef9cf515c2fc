//! An in-memory SQS queue: visibility timeouts on `tokio::time::Instant` (so tests run on paused time),
//! receive counts, a dead-letter queue after `max_receive_count` receives, and call counters.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ferry_state_machine::StepError;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::queue::{Queue, QueueMessage, MAX_BATCH, MAX_VISIBILITY, MAX_WAIT};

/// How many calls of each kind a [`FakeQueue`] has served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCalls {
    /// `receive` calls.
    pub receive: usize,
    /// `delete` calls.
    pub delete: usize,
    /// `extend_visibility` calls.
    pub extend: usize,
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

fn invalid(op: &str, code: &str, message: String) -> StepError {
    StepError::from_aws(op, Some(code), Some(&message), Some(400))
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

    async fn delete(&self, receipt_handle: &str) -> Result<(), StepError> {
        self.with(|s| {
            s.calls.delete += 1;
            if let Some(i) = s
                .live
                .iter()
                .position(|m| m.handle.as_deref() == Some(receipt_handle))
            {
                let m = s.live.remove(i);
                s.deleted.push(m.id);
                s.gone_handles.push(receipt_handle.to_string());
                return Ok(());
            }
            let known = s.gone_handles.iter().any(|h| h == receipt_handle)
                || s.live
                    .iter()
                    .chain(s.dead.iter())
                    .any(|m| receipt_handle.starts_with(&format!("{}#", m.id)));
            if known {
                // SQS accepts a stale or spent handle without deleting anything.
                Ok(())
            } else {
                Err(invalid(
                    "sqs:DeleteMessage",
                    "ReceiptHandleIsInvalid",
                    format!("unknown handle {receipt_handle}"),
                ))
            }
        })
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let now = Instant::now();
        self.with(|s| -> Result<(), StepError> {
            s.calls.extend += 1;
            let Some(m) = s
                .live
                .iter_mut()
                .find(|m| m.handle.as_deref() == Some(receipt_handle))
            else {
                return Err(invalid(
                    "sqs:ChangeMessageVisibility",
                    "ReceiptHandleIsInvalid",
                    format!("no message for handle {receipt_handle}"),
                ));
            };
            if m.visible_at <= now {
                return Err(invalid(
                    "sqs:ChangeMessageVisibility",
                    "MessageNotInflight",
                    format!("message {} is not in flight", m.id),
                ));
            }
            m.visible_at = now + timeout.min(MAX_VISIBILITY);
            s.extensions.push((receipt_handle.to_string(), timeout));
            Ok(())
        })?;
        // A long poll returns as soon as a message becomes visible, so wake any to look again.
        self.pushed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ferry_state_machine::Disposition;

    use super::*;

    const VIS: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn visibility_hides_then_returns_a_message_with_a_new_handle() {
        let q = FakeQueue::new(VIS, None);
        let id = q.push("a");
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((q.in_flight(), q.visible()), (1, 0));
        let began = Instant::now();
        let second = q.receive(10, Duration::from_secs(20)).await.unwrap();
        assert!(second.is_empty(), "still invisible within a 20 s poll");
        assert_eq!(began.elapsed(), Duration::from_secs(20));
        let third = q.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!(third.len(), 1, "visible again after 30 s");
        assert_eq!(Instant::now() - began, VIS);
        assert_ne!(third[0].receipt_handle, first[0].receipt_handle);
        assert_eq!(q.receive_count(&id), Some(2));
        // The stale handle neither deletes nor fails; the fresh one deletes.
        q.delete(&first[0].receipt_handle).await.unwrap();
        assert_eq!(q.len(), 1);
        q.delete(&third[0].receipt_handle).await.unwrap();
        assert!(q.is_empty());
        assert_eq!(q.deleted(), vec![id]);
        q.delete(&third[0].receipt_handle).await.unwrap();
        let e = q.delete("nonsense").await.unwrap_err();
        assert_eq!(e.disposition, Disposition::Permanent);
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_on_push() {
        let q = FakeQueue::new(VIS, None);
        let q2 = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            q2.push("late");
        });
        let began = Instant::now();
        let got = q.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(began.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_after_max_receives_and_extends_visibility() {
        let q = FakeQueue::new(VIS, Some(2));
        let id = q.push("poison");
        for _ in 0..2 {
            assert_eq!(
                q.receive(1, Duration::from_secs(20)).await.unwrap().len(),
                1
            );
            tokio::time::sleep(VIS).await;
        }
        assert!(q.receive(1, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.dead_lettered(), vec![id]);
        assert!(q.is_empty());

        let id = q.push("b");
        let m = q.receive(1, Duration::ZERO).await.unwrap().remove(0);
        tokio::time::sleep(Duration::from_secs(20)).await;
        q.extend_visibility(&m.receipt_handle, Duration::from_secs(30))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(q.in_flight(), 1, "extended past the original 30 s");
        tokio::time::sleep(Duration::from_secs(11)).await;
        let e = q
            .extend_visibility(&m.receipt_handle, VIS)
            .await
            .unwrap_err();
        assert_eq!(e.code.as_deref(), Some("MessageNotInflight"));
        assert_eq!(q.receive_count(&id), Some(1));
        assert_eq!(
            q.calls(),
            QueueCalls {
                receive: 4,
                delete: 0,
                extend: 2
            }
        );
        assert!(
            q.receive(11, Duration::ZERO).await.is_err(),
            "SQS rejects batches over 10"
        );
    }
}
