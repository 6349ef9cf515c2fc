//! Starts the local AWS emulator (`integration-tests/emulator/serve`) and drives its control endpoints.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Emulator timings for tests: real waits (a snapshot stays pending, a volume creating, an attachment
/// attaching), short enough for a fast suite.
pub fn fast_timings() -> Value {
    json!({
        "snapshot_seconds": 1.0,
        "volume_create_seconds": 0.3,
        "attach_seconds": 0.2,
        "detach_seconds": 0.2
    })
}

/// The access key id every ferryd process the harness starts signs with; IAM is enforced on it.
pub use crate::storm::FERRYD_KEY;

/// The region and account the emulator serves.
pub const REGION: &str = "us-east-1";

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The IAM policy sources every emulator enforces on [`FERRYD_KEY`]: the JSON policy and the template
/// that embeds it.
pub fn shipped_policies() -> [PathBuf; 2] {
    [
        repo_root().join("deploy/iam/ferry-policy.json"),
        repo_root().join("deploy/cloudformation/ferry.yaml"),
    ]
}

/// The name of the role retention deletes as (`[gc] delete_role_arn`, the template's `FerryRetentionRole`).
pub const RETENTION_ROLE: &str = "ferry-retention";

/// `[gc] delete_role_arn` of the tests' configs: [`RETENTION_ROLE`] in the emulator's account.
pub const RETENTION_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ferry-retention";

/// The IAM policy sources the emulator enforces on the credentials of [`RETENTION_ROLE`]: the JSON and the
/// template's `FerryRetentionRole` policy.
pub fn retention_policies() -> [String; 2] {
    [
        repo_root()
            .join("deploy/iam/ferry-retention-policy.json")
            .display()
            .to_string(),
        format!(
            "{}#FerryRetentionRole/retention",
            repo_root()
                .join("deploy/cloudformation/ferry.yaml")
                .display()
        ),
    ]
}

/// The eventual consistency every emulator models for [`FERRYD_KEY`]'s EC2 calls: instances, volumes and
/// snapshots created, and tags written, less than this many seconds ago are not there yet (`NotFound` by
/// id, left out by filters, a tag's old value). `FERRY_E2E_VISIBILITY_DELAY` sets it (`0` turns it off);
/// the default, 1 s, is longer than most of AWS's real lags and short enough for a fast suite. The
/// harness's own reads (world setup, assertions) see the models at once.
pub fn visibility_delay() -> Result<f64> {
    const VAR: &str = "FERRY_E2E_VISIBILITY_DELAY";
    match std::env::var(VAR) {
        Err(_) => Ok(1.0),
        Ok(raw) => match raw.trim().parse::<f64>() {
            Ok(d) if d.is_finite() && d >= 0.0 => Ok(d),
            _ => bail!("{VAR} must be a non-negative number of seconds, got {raw:?}"),
        },
    }
}

/// A running emulator on a free loopback port; stopped (SIGKILL) when dropped.
pub struct Emulator {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Emulator {
    /// Starts `serve --port 0` and waits for its `ready http://127.0.0.1:PORT` line.
    ///
    /// IAM is enforced on every call signed by [`FERRYD_KEY`] (every ferryd process and CLI the harness
    /// starts): the shipped policy JSON and the template's copy of it must both allow each call, with the
    /// resource and request tags it carries, or it fails with `UnauthorizedOperation` as on AWS. So every
    /// end-to-end test also proves the policy, call by call ([`Emulator::iam_denials`]).
    ///
    /// Those calls' EC2 reads also lag the writes by [`visibility_delay`], as AWS's do.
    pub fn start() -> Result<Emulator> {
        let script = repo_root().join("integration-tests/emulator/serve");
        let mut cmd = Command::new(&script);
        cmd.args(["--port", "0", "--region", REGION]);
        let delay = visibility_delay()?;
        if delay > 0.0 {
            cmd.arg("--visibility-delay")
                .arg(delay.to_string())
                .args(["--visibility-key", FERRYD_KEY]);
        }
        for policy in shipped_policies() {
            cmd.arg("--iam-policy").arg(policy);
        }
        for policy in retention_policies() {
            cmd.arg("--iam-role-policy")
                .arg(format!("{RETENTION_ROLE}={policy}"));
        }
        let mut child = cmd
            .args(["--iam-principal", FERRYD_KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start the emulator at {}", script.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("emulator has no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the emulator never blocks on a full pipe.
            for _ in lines {}
        });
        // The first start may build the emulator's venv from PyPI.
        let line = match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!("the emulator did not print its ready line within 10 minutes");
            }
        };
        let url = line
            .strip_prefix("ready ")
            .ok_or_else(|| anyhow!("unexpected first line from the emulator: {line:?}"))?
            .trim()
            .to_string();
        Ok(Emulator {
            child,
            url,
            http: reqwest::Client::new(),
        })
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls a control endpoint and returns its JSON body; a non-2xx answer is an error.
    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}/_emulator/{path}", self.url);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{url} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The call log's highest sequence number so far (0 before any call): calls after it are newer.
    pub async fn last_seq(&self) -> Result<u64> {
        Ok(self
            .calls(None)
            .await?
            .last()
            .and_then(|c| c["seq"].as_u64())
            .unwrap_or(0))
    }

    /// Clears all state.
    pub async fn reset(&self) -> Result<()> {
        self.control(reqwest::Method::POST, "reset", None)
            .await
            .map(drop)
    }

    /// Sets timings and switches (`snapshot_seconds`, `volume_create_seconds`, `attach_seconds`, ...).
    pub async fn configure(&self, settings: Value) -> Result<()> {
        self.control(reqwest::Method::POST, "config", Some(settings))
            .await
            .map(drop)
    }

    /// Forces the AZ of the group's next launches (`None` clears).
    pub async fn place(&self, group: &str, az: Option<&str>) -> Result<()> {
        self.control(
            reqwest::Method::POST,
            "placement",
            Some(json!({"group": group, "az": az})),
        )
        .await
        .map(drop)
    }

    /// Sets faults (throttling, error rate, latency, AZ outage).
    pub async fn faults(&self, faults: Value) -> Result<()> {
        self.control(reqwest::Method::POST, "faults", Some(faults))
            .await
            .map(drop)
    }

    /// The call log, optionally filtered by action name.
    pub async fn calls(&self, action: Option<&str>) -> Result<Vec<Value>> {
        let path = match action {
            Some(a) => format!("calls?action={a}"),
            None => "calls".to_string(),
        };
        let v = self.control(reqwest::Method::GET, &path, None).await?;
        Ok(v["calls"].as_array().cloned().unwrap_or_default())
    }

    /// The call log's counts (`calls`, `throttled`, `errors`, per-action `actions`, and `last_seq`) of the
    /// calls with `seq > since`, signed with `access_key` if given.
    pub async fn call_summary(&self, since: u64, access_key: Option<&str>) -> Result<Value> {
        let mut path = format!("calls/summary?since={since}");
        if let Some(k) = access_key {
            path.push_str(&format!("&access_key={k}"));
        }
        self.control(reqwest::Method::GET, &path, None).await
    }

    /// Every lifecycle action the emulator has opened, with its state and result.
    pub async fn lifecycle(&self) -> Result<Vec<Value>> {
        let v = self
            .control(reqwest::Method::GET, "lifecycle", None)
            .await?;
        Ok(v["actions"].as_array().cloned().unwrap_or_default())
    }

    /// The AWS SDK config for this emulator: dummy static credentials and its endpoint.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "ferry-tests",
            ))
            .load()
            .await
    }

    /// Every call the emulator refused under IAM enforcement: `(action, resource, reason)` of each
    /// refused authorization request, for tests to assert there are none.
    pub async fn iam_denials(&self) -> Result<Vec<String>> {
        let calls = self.calls(None).await?;
        Ok(calls
            .iter()
            .flat_map(|c| c["authz"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["allowed"] == false)
            .map(|r| {
                format!(
                    "{} on {} ({}): {}",
                    r["action"].as_str().unwrap_or("?"),
                    r["resource"].as_str().unwrap_or("?"),
                    r["source"].as_str().unwrap_or("?"),
                    r["reason"].as_str().unwrap_or("?")
                )
            })
            .collect())
    }

    /// Replaces the enforced IAM policies (`/_emulator/iam`: `policies` or `policy_files`, `bindings`,
    /// `principals`, which defaults to [`FERRYD_KEY`]).
    pub async fn enforce_iam(&self, mut body: Value) -> Result<()> {
        if body.get("principals").is_none() {
            body["principals"] = json!([FERRYD_KEY]);
        }
        self.control(reqwest::Method::POST, "iam", Some(body))
            .await
            .map(drop)
    }

    /// Enforces the shipped policy and the template's copy again, as [`Emulator::start`] does.
    pub async fn enforce_shipped_iam(&self) -> Result<()> {
        let files = shipped_policies()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        let mut roles = serde_json::Map::new();
        roles.insert(RETENTION_ROLE.to_string(), json!(retention_policies()));
        self.enforce_iam(json!({"policy_files": files, "roles": roles}))
            .await
    }

    /// Evaluates authorization requests (call-log `authz` entries) against `policy`, a policy document:
    /// one decision (`allowed`, `statements`, `reason`) per request.
    pub async fn iam_evaluate(&self, policy: &Value, requests: &[Value]) -> Result<Vec<Value>> {
        let body = json!({"policy": policy, "requests": requests});
        let v = self
            .control(reqwest::Method::POST, "iam/evaluate", Some(body))
            .await?;
        Ok(v["decisions"].as_array().cloned().unwrap_or_default())
    }

    /// The environment that points a process (ferryd, signing as [`FERRYD_KEY`]) at this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", FERRYD_KEY),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
