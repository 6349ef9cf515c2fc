//! The SQS call coalescer, in the style of a data loader: hook tasks ask "delete these handles" or "change
//! these handles' visibility" and await their own results, while underneath the requests of every task go
//! out together as `DeleteMessageBatch` / `ChangeMessageVisibilityBatch` calls of at most ten entries.
//!
//! Each kind of call has a lane with at most one call in flight. A lane gathers requests for a window
//! (`batch_window`) or until ten entries wait, whichever comes first, and sends them as one call; then it
//! gathers again, so a steady trickle of completions (a storm's hooks end one by one) still shares calls.
//! The lane goes idle when nothing waits. Nothing a hook waits on is delayed by the window: a delete follows
//! the lifecycle action's completion, and an extension is due well before the visibility timeout.
//!
//! - Each entry's outcome from the response goes back to its own caller; an error of the whole call goes to
//!   every caller in that batch.
//! - A request whose caller has gone before its batch is sent (its future was dropped, e.g. an aborted
//!   visibility extension) is not sent, so a late extension cannot undo a release.
//! - Two requests for one receipt handle never share a call: the later waits for the next one, so they
//!   reach SQS in the order they were asked.
//!
//! Timers are tokio's, so the window passes in virtual time under `tokio::time::pause`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::StepError;
use tokio::sync::{oneshot, Notify};

use crate::queue::{EntryResults, Queue, VisibilityChange, MAX_BATCH_ENTRIES};

/// Where one entry's outcome goes.
type Reply = oneshot::Sender<Result<(), StepError>>;

/// One kind of batch call: what an entry is and how a batch of them is sent.
#[async_trait]
trait Entry: Send + Sync + Sized + 'static {
    /// The SQS action, for errors.
    const OP: &'static str;
    /// The receipt handle the entry acts on.
    fn handle(&self) -> &str;
    /// Makes the call for `batch` (1..=10 entries).
    async fn send(queue: &dyn Queue, batch: &[Self]) -> Result<EntryResults, StepError>;
}

/// A delete entry is its receipt handle.
#[async_trait]
impl Entry for String {
    const OP: &'static str = "sqs:DeleteMessageBatch";
    fn handle(&self) -> &str {
        self
    }
    async fn send(queue: &dyn Queue, batch: &[Self]) -> Result<EntryResults, StepError> {
        queue.delete_batch(batch).await
    }
}

#[async_trait]
impl Entry for VisibilityChange {
    const OP: &'static str = "sqs:ChangeMessageVisibilityBatch";
    fn handle(&self) -> &str {
        &self.receipt_handle
    }
    async fn send(queue: &dyn Queue, batch: &[Self]) -> Result<EntryResults, StepError> {
        queue.change_visibility_batch(batch).await
    }
}

/// Coalesces deletes and visibility changes into batch calls on `queue`. Cheap to clone; clones share lanes.
#[derive(Clone)]
pub(crate) struct Batcher {
    deletes: Arc<Lane<String>>,
    changes: Arc<Lane<VisibilityChange>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("window", &self.deletes.window)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Batches calls on `queue`, gathering requests for `window` before a lane's first call.
    pub(crate) fn new(queue: Arc<dyn Queue>, window: Duration) -> Self {
        Self {
            deletes: Lane::new(queue.clone(), window),
            changes: Lane::new(queue, window),
        }
    }

    /// Deletes the messages of these receipt handles; each handle's outcome, in order.
    pub(crate) async fn delete(&self, receipt_handles: &[String]) -> EntryResults {
        self.deletes.request(receipt_handles.to_vec()).await
    }

    /// Sets these handles' visibility timeout to `timeout` from now; each handle's outcome, in order.
    pub(crate) async fn change_visibility(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> EntryResults {
        let changes = receipt_handles
            .iter()
            .map(|h| VisibilityChange {
                receipt_handle: h.clone(),
                timeout,
            })
            .collect();
        self.changes.request(changes).await
    }
}

/// The requests waiting for one kind of call.
struct Lane<E> {
    queue: Arc<dyn Queue>,
    window: Duration,
    state: Mutex<LaneState<E>>,
    /// Signalled when a full batch waits, to end the window early.
    full: Notify,
}

struct LaneState<E> {
    /// Entries not yet sent, in order of request.
    waiting: VecDeque<(E, Reply)>,
    /// Whether a flush task is running (gathering, or making calls).
    flushing: bool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E: Entry> Lane<E> {
    fn new(queue: Arc<dyn Queue>, window: Duration) -> Arc<Self> {
        Arc::new(Self {
            queue,
            window,
            state: Mutex::new(LaneState {
                waiting: VecDeque::new(),
                flushing: false,
            }),
            full: Notify::new(),
        })
    }

    /// Queues `entries` (together, so one caller's entries tend to share a call) and awaits their outcomes.
    async fn request(self: &Arc<Self>, entries: Vec<E>) -> EntryResults {
        let mut replies = Vec::with_capacity(entries.len());
        {
            let mut s = locked(&self.state);
            for entry in entries {
                let (tx, rx) = oneshot::channel();
                s.waiting.push_back((entry, tx));
                replies.push(rx);
            }
            if !s.flushing && !s.waiting.is_empty() {
                s.flushing = true;
                tokio::spawn(self.clone().flush());
            }
            if s.waiting.len() >= MAX_BATCH_ENTRIES {
                self.full.notify_one();
            }
        }
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            out.push(rx.await.unwrap_or_else(|_| {
                Err(StepError::retry(
                    E::OP,
                    "the batcher stopped before this entry was sent",
                ))
            }));
        }
        out
    }

    /// Gathers for the window (or until a batch is full) and sends a batch, until nothing waits.
    async fn flush(self: Arc<Self>) {
        let mut guard = FlushGuard {
            lane: &self,
            done: false,
        };
        loop {
            self.gather().await;
            let batch = {
                let mut s = locked(&self.state);
                let batch = take_batch(&mut s.waiting);
                if batch.is_empty() {
                    s.flushing = false;
                    guard.done = true;
                    return;
                }
                batch
            };
            let (entries, replies): (Vec<E>, Vec<Reply>) = batch.into_iter().unzip();
            match E::send(self.queue.as_ref(), &entries).await {
                Ok(results) => {
                    let mut results = results.into_iter();
                    for reply in replies {
                        let result = results.next().unwrap_or_else(|| {
                            Err(StepError::retry(
                                E::OP,
                                "the batch response had no result for this entry",
                            ))
                        });
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

impl<E> Lane<E> {
    /// Waits out the window, or less if a full batch is waiting. (A stale signal, left by a batch already
    /// sent, is checked against the queue and ignored.)
    async fn gather(&self) {
        if self.window.is_zero() {
            return;
        }
        let window = tokio::time::sleep(self.window);
        tokio::pin!(window);
        while locked(&self.state).waiting.len() < MAX_BATCH_ENTRIES {
            tokio::select! {
                () = &mut window => return,
                () = self.full.notified() => {}
            }
        }
    }
}

/// Marks the lane idle if its flush task ends without finishing (a panic in a queue, or the runtime shutting
/// down), failing the requests still waiting, so that later requests start a new flush.
struct FlushGuard<'a, E> {
    lane: &'a Lane<E>,
    done: bool,
}

impl<E> Drop for FlushGuard<'_, E> {
    fn drop(&mut self) {
        if !self.done {
            let mut s = locked(&self.lane.state);
            s.flushing = false;
            s.waiting.clear();
        }
    }
}

/// Takes the next batch: up to ten waiting entries, in order, skipping those whose caller has gone and
/// leaving for a later batch any entry whose handle is already in this one (or already left).
fn take_batch<E: Entry>(waiting: &mut VecDeque<(E, Reply)>) -> Vec<(E, Reply)> {
    let mut batch: Vec<(E, Reply)> = Vec::with_capacity(MAX_BATCH_ENTRIES);
    let mut later: VecDeque<(E, Reply)> = VecDeque::new();
    while batch.len() < MAX_BATCH_ENTRIES {
        let Some((entry, reply)) = waiting.pop_front() else {
            break;
        };
        if reply.is_closed() {
            continue;
        }
        let handle = entry.handle();
        let taken = batch
            .iter()
            .chain(later.iter())
            .any(|(e, _)| e.handle() == handle);
        if taken {
            later.push_back((entry, reply));
        } else {
            batch.push((entry, reply));
        }
    }
    later.append(waiting);
    *waiting = later;
    batch
}

#[cfg(test)]
#[path = "batcher_tests.rs"]
mod tests;
