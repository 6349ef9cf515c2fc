//! A workload that keeps writing: it writes 1, 2, 3, … to every data volume of its instance through the
//! emulator's write endpoint, every few milliseconds, until a write is refused because the instance shut
//! down or its volumes were detached. What it last had acknowledged is what a failover must not lose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::emulator::Emulator;
use crate::world::World;

/// How often the workload writes.
pub const WRITE_EVERY: Duration = Duration::from_millis(5);

/// A running workload on one instance.
pub struct Writer {
    instance: String,
    acked: Arc<AtomicU64>,
    task: JoinHandle<Result<String>>,
}

impl Writer {
    /// Starts writing to every data volume of `instance`, starting after `from` (the value already on them).
    pub fn start(emu: &Emulator, instance: &str, from: u64) -> Writer {
        Writer::start_every(emu, instance, from, WRITE_EVERY)
    }

    /// As [`Writer::start`], one write every `every` (many writers at once would swamp the emulator).
    pub fn start_every(emu: &Emulator, instance: &str, from: u64, every: Duration) -> Writer {
        let url = format!("{}/_emulator/instances/{instance}/write", emu.url());
        let acked = Arc::new(AtomicU64::new(from));
        let (a, http) = (acked.clone(), reqwest::Client::new());
        let task = tokio::spawn(async move {
            let mut transport_errors = 0;
            loop {
                let next = a.load(Ordering::SeqCst) + 1;
                match http.post(&url).json(&json!({ "value": next })).send().await {
                    Ok(r) if r.status().is_success() => {
                        a.store(next, Ordering::SeqCst);
                        transport_errors = 0;
                    }
                    // Refused: the instance can no longer write. The workload is gone with it.
                    Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                        return Ok(r.text().await.unwrap_or_default())
                    }
                    Ok(r) => bail!("write {next} answered {}", r.status()),
                    Err(e) if transport_errors < 50 => {
                        transport_errors += 1;
                        let _ = e;
                    }
                    Err(e) => return Err(e).context("the emulator stopped answering writes"),
                }
                tokio::time::sleep(every).await;
            }
        });
        Writer {
            instance: instance.to_string(),
            acked,
            task,
        }
    }

    /// The last write acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until a write is refused; returns the last acknowledged write and why the next was refused.
    pub async fn finished(self, timeout: Duration) -> Result<(u64, String)> {
        let why = tokio::time::timeout(timeout, self.task)
            .await
            .with_context(|| format!("the workload on {} was never refused", self.instance))?
            .context("the workload task panicked")??;
        Ok((self.acked.load(Ordering::SeqCst), why))
    }
}

/// Checks that every ferry volume attached to `instance` holds exactly `last`, the last write the old
/// workload acknowledged: nothing lost, and every volume of the slot from the same point.
pub async fn check_holds(emu: &Emulator, world: &World, instance: &str, last: u64) -> Result<()> {
    ensure!(last > 0, "the workload acknowledged no write");
    let held = world.attached_volumes(instance).await?;
    ensure!(
        !held.is_empty(),
        "no ferry volume is attached to {instance}"
    );
    for v in &held {
        let id = v.volume_id().unwrap_or_default();
        let content = volume_counter(emu, id).await?;
        ensure!(
            content == last,
            "{id} on {instance} holds write {content}; the last acknowledged write was {last}"
        );
    }
    Ok(())
}

/// The write counter on a volume, from the emulator.
pub async fn volume_counter(emu: &Emulator, volume_id: &str) -> Result<u64> {
    counter(emu, "volumes", volume_id).await
}

/// The write counter a snapshot captured, from the emulator.
pub async fn snapshot_counter(emu: &Emulator, snapshot_id: &str) -> Result<u64> {
    counter(emu, "snapshots", snapshot_id).await
}

async fn counter(emu: &Emulator, kind: &str, id: &str) -> Result<u64> {
    let v = emu
        .control(reqwest::Method::GET, &format!("{kind}/{id}/data"), None)
        .await?;
    v["counter"]
        .as_u64()
        .with_context(|| format!("no counter for {id}: {v}"))
}
