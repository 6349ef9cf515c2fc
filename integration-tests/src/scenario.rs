//! Building blocks of the robustness tests (crash matrix, duplicates, poison, faults, expiry): a rig of one
//! emulator, one world and any number of ferryd runs with their logs; the emulator's state read back as an
//! inventory of ferry's volumes and snapshots; call-log and lifecycle queries; raw SQS access.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ec2::types::{Filter, Snapshot, Tag, Volume};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::daemon::{Ferryd, Logs};
use crate::emulator::Emulator;
use crate::world::{wait_for, GroupMember, World, WorldOptions};

/// How long any one step of a scenario may take.
pub const STEP: Duration = Duration::from_secs(90);

/// One emulator, one world on it, and the ferryd runs against it.
pub struct Rig {
    /// The emulator.
    pub emu: Emulator,
    /// The scenario's AWS resources.
    pub world: World,
    /// Where configs and logs go.
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    logs: Vec<PathBuf>,
}

impl Rig {
    /// Starts an emulator with these timings (`/_emulator/config`), and sets up a world on it.
    pub async fn new(bin: &Path, opts: &WorldOptions, settings: Value) -> Result<Rig> {
        let emu = Emulator::start()?;
        emu.configure(settings).await?;
        let world = World::setup(&emu, opts).await?;
        Ok(Rig {
            emu,
            world,
            dir: tempfile::tempdir()?,
            bin: bin.to_path_buf(),
            logs: Vec::new(),
        })
    }

    /// Starts a ferryd with the world's config and these extra environment variables; its log is
    /// `ferryd-<n>.log`.
    pub fn ferryd(&mut self, extra_env: &[(&str, &str)]) -> Result<Ferryd> {
        let config = self.world.config_toml();
        self.ferryd_with(&config, extra_env)
    }

    /// Starts a ferryd with this config.
    pub fn ferryd_with(&mut self, config: &str, extra_env: &[(&str, &str)]) -> Result<Ferryd> {
        let log = self
            .dir
            .path()
            .join(format!("ferryd-{}.log", self.logs.len() + 1));
        let mut env = vec![("FERRY_LOG_FORMAT", "json")];
        env.extend_from_slice(extra_env);
        let d = Ferryd::start(
            &self.bin,
            &self.emu,
            self.dir.path(),
            config,
            Logs::File(log.clone()),
            &env,
        )?;
        self.logs.push(log);
        Ok(d)
    }

    /// Every ferryd run's log, each under a header.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.logs.iter().enumerate() {
            out.push_str(&format!(
                "===== ferryd run {} ({}) =====\n",
                i + 1,
                p.display()
            ));
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// `res` with every ferryd run's log appended to its error, after the cause, so that a truncated CI log
    /// (head and tail kept) still shows why the case failed.
    pub fn explain<T>(&self, res: Result<T>) -> Result<T> {
        res.map_err(|e| anyhow!("{e:#}\n\nferryd logs:\n{}", self.logs()))
    }

    /// How many ferryd runs were started.
    pub fn runs(&self) -> usize {
        self.logs.len()
    }

    /// The log of the n-th run (1-based).
    pub fn log(&self, n: usize) -> String {
        self.logs
            .get(n.wrapping_sub(1))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The highest call-log sequence number so far.
    pub async fn seq(&self) -> Result<u64> {
        self.emu.last_seq().await
    }

    /// Places the next launch in `az`, scales to one and waits for the instance to be InService.
    pub async fn first_boot(&self, az: &str) -> Result<GroupMember> {
        self.emu.place(&self.world.group, Some(az)).await?;
        self.world.scale_to_one().await?;
        in_service(&self.world, &[]).await
    }

    /// Waits until the hook queue is empty (nothing visible or in flight).
    pub async fn queue_drained(&self) -> Result<()> {
        wait_for("the hook queue to drain", STEP, || async {
            Ok((self.world.queue_depth().await? == 0).then_some(()))
        })
        .await
    }

    /// What ferry left in the emulator.
    pub async fn inventory(&self) -> Result<Inventory> {
        inventory(&self.world).await
    }
}

/// Waits for an InService member not in `not`.
pub async fn in_service(world: &World, not: &[&str]) -> Result<GroupMember> {
    wait_for("an instance to be InService", STEP, || async {
        Ok(world
            .members()
            .await?
            .into_iter()
            .find(|m| m.state == "InService" && !not.contains(&m.id.as_str())))
    })
    .await
}

/// Waits for the process to exit; an error if it is still running after `timeout`.
pub async fn exited(d: &mut Ferryd, what: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !d.exited()? {
        if tokio::time::Instant::now() >= deadline {
            bail!("ferryd did not exit within {}s: {what}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A tag's value.
pub fn tag(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Every volume and snapshot in the emulator, split into ferry's (tagged with the group) and the rest.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Volumes tagged `ferry:group` = the world's group.
    pub ferry_volumes: Vec<Volume>,
    /// Every other volume (instances' root volumes).
    pub other_volumes: Vec<Volume>,
    /// Every snapshot.
    pub snapshots: Vec<Snapshot>,
}

impl Inventory {
    /// A ferry volume by id.
    pub fn volume(&self, id: &str) -> Option<&Volume> {
        self.ferry_volumes
            .iter()
            .find(|v| v.volume_id() == Some(id))
    }

    /// The ferry volumes attached to `instance`.
    pub fn attached_to(&self, instance: &str) -> Vec<&Volume> {
        self.ferry_volumes
            .iter()
            .filter(|v| {
                v.attachments()
                    .iter()
                    .any(|a| a.instance_id() == Some(instance))
            })
            .collect()
    }

    /// Snapshots tagged as ferry's (`ferry:group`).
    pub fn ferry_snapshots(&self, group: &str) -> Vec<&Snapshot> {
        self.snapshots
            .iter()
            .filter(|s| tag(s.tags(), "ferry:group").as_deref() == Some(group))
            .collect()
    }
}

/// Reads the inventory. The full listing and ferry's own tag filter must agree; while ferry is still
/// creating volumes the two reads can straddle a create, so a mismatch is read again before it fails.
pub async fn inventory(world: &World) -> Result<Inventory> {
    let mut last = String::new();
    for _ in 0..5 {
        let vols = world.ec2.describe_volumes().send().await?;
        let (ferry_volumes, other_volumes) =
            vols.volumes().iter().cloned().partition(|v| {
                tag(v.tags(), "ferry:group").as_deref() == Some(world.group.as_str())
            });
        let snaps = world.ec2.describe_snapshots().send().await?;
        // Cross-check the tag filter ferry itself uses: it must find the same set.
        let by_filter = world
            .ec2
            .describe_volumes()
            .filters(filter("tag:ferry:group", &world.group))
            .send()
            .await?;
        let inv = Inventory {
            ferry_volumes,
            other_volumes,
            snapshots: snaps.snapshots().to_vec(),
        };
        if by_filter.volumes().len() == inv.ferry_volumes.len() {
            return Ok(inv);
        }
        last = format!(
            "the tag filter finds {} ferry volumes, the full listing {}",
            by_filter.volumes().len(),
            inv.ferry_volumes.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{last}, in five reads")
}

/// A volume's one attachment as (instance, device, state).
pub fn attachment(v: &Volume) -> Option<(String, String, String)> {
    v.attachments().first().map(|a| {
        (
            a.instance_id().unwrap_or_default().to_string(),
            a.device().unwrap_or_default().to_string(),
            a.state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        )
    })
}

/// One lifecycle action as the emulator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The token.
    pub token: String,
    /// The instance.
    pub instance: String,
    /// The lifecycle hook's name.
    pub hook: String,
    /// `true` for a launch, `false` for a terminate.
    pub launch: bool,
    /// `active`, `completed` or `expired`.
    pub state: String,
    /// `CONTINUE`, `ABANDON` or empty.
    pub result: String,
}

/// Every lifecycle action the emulator opened.
pub async fn actions(emu: &Emulator) -> Result<Vec<Action>> {
    Ok(emu
        .lifecycle()
        .await?
        .iter()
        .map(|a| Action {
            token: a["token"].as_str().unwrap_or_default().to_string(),
            instance: a["instance_id"].as_str().unwrap_or_default().to_string(),
            hook: a["hook"].as_str().unwrap_or_default().to_string(),
            launch: a["transition"]
                .as_str()
                .is_some_and(|t| t.ends_with("LAUNCHING")),
            state: a["state"].as_str().unwrap_or_default().to_string(),
            result: a["result"].as_str().unwrap_or_default().to_string(),
        })
        .collect())
}

/// The action of `instance` (launch or terminate); an error unless there is exactly one.
pub fn action_of<'a>(all: &'a [Action], instance: &str, launch: bool) -> Result<&'a Action> {
    let found: Vec<&Action> = all
        .iter()
        .filter(|a| a.instance == instance && a.launch == launch)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => bail!(
            "expected one {} action of {instance}, found {}: {all:?}",
            if launch { "launch" } else { "terminate" },
            found.len()
        ),
    }
}

/// Successful (HTTP 200) calls of `action`, with `seq > since`.
pub async fn ok_calls(emu: &Emulator, action: &str, since: u64) -> Result<Vec<Value>> {
    Ok(emu
        .calls(Some(action))
        .await?
        .into_iter()
        .filter(|c| c["status"] == 200 && c["seq"].as_u64().unwrap_or(0) > since)
        .collect())
}

/// The ledger's dedupe key (`ferry:hook`) of an instance's launch or terminate action.
pub fn ledger_key(instance: &str, launch: bool) -> String {
    format!("{instance}/{}", if launch { "launch" } else { "terminate" })
}

/// The results of the successful `CompleteLifecycleAction` calls of each action, keyed by the action's
/// token. A call by instance id (ferry's reconciliation completes that way) counts for the action of that
/// instance and hook.
pub async fn completions(emu: &Emulator) -> Result<BTreeMap<String, Vec<String>>> {
    let all = actions(emu).await?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in ok_calls(emu, "CompleteLifecycleAction", 0).await? {
        let p = &c["params"];
        let key = match p["LifecycleActionToken"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => t.to_string(),
            None => {
                let (instance, hook) = (
                    p["InstanceId"].as_str().unwrap_or_default(),
                    p["LifecycleHookName"].as_str().unwrap_or_default(),
                );
                all.iter()
                    .find(|a| a.instance == instance && a.hook == hook)
                    .map(|a| a.token.clone())
                    .unwrap_or_else(|| format!("{instance}/{hook}"))
            }
        };
        out.entry(key).or_default().push(
            p["LifecycleActionResult"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    Ok(out)
}

/// The distinct `ClientToken`s of successful `CreateVolume` calls: one per volume ferry meant to make.
pub async fn create_volume_tokens(emu: &Emulator) -> Result<BTreeSet<String>> {
    Ok(ok_calls(emu, "CreateVolume", 0)
        .await?
        .iter()
        .map(|c| {
            c["params"]["ClientToken"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect())
}

/// Checks the rules every end state obeys: no call of ferryd's refused by the shipped IAM policy, no orphan volumes (every non-ferry volume is the root volume
/// of a live instance), the EIP on `owner`, every successful `CompleteLifecycleAction` once per token and
/// with CONTINUE, no action ABANDONed by ferry or left active (nor expired, unless `allow_expired`), and
/// both queues empty.
pub async fn check_common(
    rig: &Rig,
    inv: &Inventory,
    owner: &str,
    allow_expired: bool,
) -> Result<()> {
    let world = &rig.world;
    let denied = rig.emu.iam_denials().await?;
    if !denied.is_empty() {
        bail!("the shipped IAM policy refused ferryd's calls: {denied:#?}");
    }
    for v in &inv.other_volumes {
        let holder = attachment(v).map(|a| a.0).unwrap_or_default();
        let state = if holder.is_empty() {
            String::new()
        } else {
            world.ec2_state(&holder).await?
        };
        if state != "running" {
            bail!(
                "orphan volume {:?} (not ferry's, attached to {holder:?} in state {state:?})",
                v.volume_id()
            );
        }
    }
    let eip = world.eip_instance().await?;
    if eip.as_deref() != Some(owner) {
        bail!("the Elastic IP points at {eip:?}, not {owner}");
    }
    let all = actions(&rig.emu).await?;
    for a in &all {
        let bad = match a.state.as_str() {
            "completed" => a.result != "CONTINUE",
            "expired" => !allow_expired,
            _ => true,
        };
        if bad {
            bail!("lifecycle action not cleanly completed: {a:?}\nall: {all:?}");
        }
    }
    for (token, results) in completions(&rig.emu).await? {
        if results != ["CONTINUE"] {
            bail!("token {token} was completed {results:?} (want exactly one CONTINUE)");
        }
    }
    // A killed ferryd's messages come back after their visibility timeout and are then consumed (confirmed
    // as ended, deleted): the queues must end empty, which can take one more visibility timeout.
    let settle = Duration::from_secs(u64::from(world.visibility_timeout) * 2 + 10);
    let drained = wait_for("both queues to be empty", settle, || async {
        let (q, dlq) = (
            depth(world, &world.queue_url).await?,
            depth(world, &world.dlq_url).await?,
        );
        Ok((q == 0 && dlq == 0).then_some(()))
    })
    .await;
    if drained.is_err() {
        let (q, dlq) = (
            depth(world, &world.queue_url).await?,
            depth(world, &world.dlq_url).await?,
        );
        bail!("queue depth {q}, dead-letter queue depth {dlq}: want both empty");
    }
    Ok(())
}

/// Messages on a queue, visible or in flight.
pub async fn depth(world: &World, url: &str) -> Result<u64> {
    let out = world
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?;
    let attrs = out.attributes();
    Ok([
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ]
    .into_iter()
    .map(|k| {
        attrs
            .and_then(|a| a.get(&k))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum())
}

/// A message received with a raw SQS client.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The body.
    pub body: String,
    /// The receipt handle.
    pub receipt: String,
    /// `ApproximateReceiveCount`.
    pub receive_count: u64,
}

/// Receives up to 10 messages from `url` (long poll of `wait_secs`), hiding them for `visibility` seconds.
pub async fn receive(
    world: &World,
    url: &str,
    wait_secs: i32,
    visibility: i32,
) -> Result<Vec<RawMessage>> {
    let out = world
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .visibility_timeout(visibility)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await
        .context("raw ReceiveMessage")?;
    Ok(out
        .messages()
        .iter()
        .map(|m| RawMessage {
            body: m.body().unwrap_or_default().to_string(),
            receipt: m.receipt_handle().unwrap_or_default().to_string(),
            receive_count: m
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
        .collect())
}

/// Takes the lifecycle-action messages off the hook queue (receive, then delete) until `n` are held,
/// ordered as received; other messages (test notifications) are deleted too.
pub async fn take_hook_messages(world: &World, n: usize) -> Result<Vec<Value>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + STEP;
    while got.len() < n {
        if tokio::time::Instant::now() >= deadline {
            bail!("only {} of {n} lifecycle messages arrived", got.len());
        }
        for m in receive(world, &world.queue_url, 1, 60).await? {
            let v: Value = serde_json::from_str(&m.body)
                .with_context(|| format!("a hook message is not JSON: {}", m.body))?;
            if v.get("LifecycleActionToken").is_some() {
                got.push(v);
            }
            world
                .sqs
                .delete_message()
                .queue_url(&world.queue_url)
                .receipt_handle(&m.receipt)
                .send()
                .await?;
        }
    }
    Ok(got)
}

/// Sends a body to the hook queue, delayed by `delay_secs`.
pub async fn send(world: &World, body: &str, delay_secs: i32) -> Result<()> {
    world
        .sqs
        .send_message()
        .queue_url(&world.queue_url)
        .message_body(body)
        .delay_seconds(delay_secs)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "SendMessage: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}

/// Runs `f` until it succeeds, at most `attempts` times, 300 ms apart: for the test's own calls while the
/// emulator injects faults.
pub async fn retrying<T, F, Fut>(what: &str, attempts: usize, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut last = None;
    for _ in 0..attempts.max(1) {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last
        .unwrap_or_else(|| anyhow!("no attempt"))
        .context(format!("{what}: every attempt failed")))
}
