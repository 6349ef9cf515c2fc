//! `Loader`: coalesces the reads of many hooks into few calls, in the style of a data loader. A caller asks
//! for one key (a query, an id) and awaits its own answer; underneath, every request that arrives while a
//! call is in flight, or while the loader waits for its pace, joins the next round, and one round makes one
//! call per `max_batch` distinct keys.
//!
//! A round starts after every request it answers arrived, so an answer is never older than its request: a
//! hook that just mutated and then asks always sees a read made after its mutation. The pace (a token bucket
//! per loader) bounds the rounds a second however many hooks wait: its burst keeps a lone failover fast, and
//! its slow refill makes a storm look at what it waits for a few times a minute. A round's calls (one per
//! `max_batch` keys) go together.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::budget::{Bucket, Limit};
use crate::StepError;

type Reply<V> = oneshot::Sender<Result<V, StepError>>;

/// How a loader batches and paces its calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    /// Distinct keys per call.
    pub max_batch: usize,
    /// Calls a second this loader may make, and how many may go at once.
    pub pace: Limit,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            max_batch: 200,
            pace: Limit::new(20, 0.33),
        }
    }
}

/// Coalesces requests for keys `K` into batched calls answering `V` per key.
pub struct Loader<K, V> {
    tx: mpsc::UnboundedSender<(K, Reply<V>)>,
    op: &'static str,
}

impl<K, V> std::fmt::Debug for Loader<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("op", &self.op).finish()
    }
}

impl<K, V> Loader<K, V>
where
    K: Ord + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Starts a loader whose rounds call `fetch` with up to `max_batch` distinct keys, sorted; `fetch`
    /// answers one value per key, in order. `op` names the call in errors. The loader's task ends when the
    /// loader is dropped. Must be called within a tokio runtime.
    pub fn spawn<F, Fut>(op: &'static str, cfg: LoaderConfig, fetch: F) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<V>, StepError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let pace = Bucket::new(cfg.pace).map(Arc::new);
        tokio::spawn(rounds(op, cfg.max_batch.max(1), pace, rx, fetch));
        Self { tx, op }
    }

    /// The answer for `key`, from the next round that starts.
    pub async fn load(&self, key: K) -> Result<V, StepError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((key, reply))
            .map_err(|_| StepError::retry(self.op, "the batched reader has stopped"))?;
        answer
            .await
            .map_err(|_| StepError::retry(self.op, "the batched reader dropped the request"))?
    }
}

async fn rounds<K, V, F, Fut>(
    op: &'static str,
    max_batch: usize,
    pace: Option<Arc<Bucket>>,
    mut rx: mpsc::UnboundedReceiver<(K, Reply<V>)>,
    fetch: F,
) where
    K: Ord + Clone + Send + 'static,
    V: Clone + Send + 'static,
    F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<V>, StepError>> + Send + 'static,
{
    while let Some(first) = rx.recv().await {
        // Let the requests made in the same instant join: the tasks woken with this one run first.
        tokio::task::yield_now().await;
        if let Some(p) = &pace {
            p.acquire().await;
        }
        let mut waiting: BTreeMap<K, Vec<Reply<V>>> = BTreeMap::new();
        let mut add = |(key, reply): (K, Reply<V>)| waiting.entry(key).or_default().push(reply);
        add(first);
        while let Ok(next) = rx.try_recv() {
            add(next);
        }
        // The round's calls go together: the pace bounds rounds (how often waiting is looked at), while the
        // calls of a round are the distinct keys asked for, each needed. The action's API budget, below the
        // loader, still spaces them.
        let mut entries: Vec<(K, Vec<Reply<V>>)> = waiting.into_iter().collect();
        let mut calls = Vec::new();
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(max_batch));
            let chunk = std::mem::replace(&mut entries, rest);
            let keys: Vec<K> = chunk.iter().map(|(k, _)| k.clone()).collect();
            let answer = fetch(keys);
            calls.push(async move { answer_chunk(op, chunk, answer.await) });
        }
        futures_util::future::join_all(calls).await;
    }
}

/// The answers of a batched describe, in the order of `keys`: what it found by `key_of`, `None` for the
/// keys it did not find (a describe leaves unknown ids out).
pub fn in_key_order<T: Clone>(
    keys: &[String],
    found: Vec<T>,
    key_of: impl Fn(&T) -> &str,
) -> Vec<Option<T>> {
    let index: std::collections::HashMap<String, T> = found
        .into_iter()
        .map(|t| (key_of(&t).to_string(), t))
        .collect();
    keys.iter().map(|k| index.get(k).cloned()).collect()
}

fn answer_chunk<K, V: Clone>(
    op: &'static str,
    chunk: Vec<(K, Vec<Reply<V>>)>,
    answer: Result<Vec<V>, StepError>,
) {
    match answer {
        Ok(values) if values.len() == chunk.len() => {
            for ((_, replies), v) in chunk.into_iter().zip(values) {
                for r in replies {
                    let _ = r.send(Ok(v.clone()));
                }
            }
        }
        Ok(values) => {
            let e = StepError::retry(
                op,
                format!(
                    "a batched read answered {} of {} keys",
                    values.len(),
                    chunk.len()
                ),
            );
            for (_, replies) in chunk {
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
        Err(e) => {
            for (_, replies) in chunk {
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;
