//! Checks: what the ports observe of one resource after a step, compared with what the contract says.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_state_machine::observe::{AttachState, ObservedSnapshot, ObservedVolume, SnapshotState};
use ferry_state_machine::tags;

use super::run::Names;
use super::spec::Check;
use crate::ports::Ec2;

/// How long an `eventually` check polls.
const PATIENCE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// Asserts a check, polling while it is `eventually` and does not hold yet.
pub(super) async fn check<E: Ec2>(ec2: &E, n: &Names, c: &Check) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let problems = once(ec2, n, c).await?;
        if problems.is_empty() {
            return Ok(());
        }
        if !c.eventually || tokio::time::Instant::now() >= deadline {
            let what = what(c);
            let after = if c.eventually { " (after 20 s)" } else { "" };
            return Err(format!("{what}{after}: {}", problems.join("; ")));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn what(c: &Check) -> String {
    [
        ("volume", &c.volume),
        ("snapshot", &c.snapshot),
        ("instance", &c.instance),
        ("address", &c.address),
    ]
    .iter()
    .find_map(|(kind, name)| name.as_ref().map(|n| format!("{kind} {n}")))
    .unwrap_or_else(|| "a check naming nothing".into())
}

/// Collects mismatches: `diff(problems, "field", expected, actual)`.
fn diff<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, field: &str, want: T, have: T) {
    if want != have {
        out.push(format!("{field}: expected {want:?}, got {have:?}"));
    }
}

/// One look. `Err` for a port error or a check the runner cannot make; `Ok` lists what does not hold.
async fn once<E: Ec2>(ec2: &E, n: &Names, c: &Check) -> Result<Vec<String>, String> {
    let port = |e: ferry_state_machine::StepError| format!("observing: {e}");
    if let Some(v) = &c.volume {
        let id = n.id(v);
        let got = ec2
            .describe_volumes(std::slice::from_ref(&id))
            .await
            .map_err(port)?;
        return volume(n, c, got.into_iter().find(|o| o.id == id));
    }
    if let Some(s) = &c.snapshot {
        let id = n.id(s);
        let got = ec2
            .describe_snapshots(std::slice::from_ref(&id))
            .await
            .map_err(port)?;
        return snapshot(n, c, got.into_iter().find(|o| o.id == id));
    }
    let mut out = Vec::new();
    if let Some(i) = &c.instance {
        let Some(inst) = ec2.describe_instance(&n.id(i)).await.map_err(port)? else {
            diff(&mut out, "state", c.state.as_deref(), Some("absent"));
            return Ok(out);
        };
        if let Some(want) = &c.state {
            diff(&mut out, "state", want.as_str(), inst.state.as_str());
        }
        for (k, want) in &c.tags {
            diff(
                &mut out,
                &format!("tag {k}"),
                Some(want.as_str()),
                inst.tag(k),
            );
        }
        if let Some(want) = &c.volumes {
            let mut want = want.clone();
            want.sort();
            let root = inst.root_volume_id.as_ref();
            let data = inst.volume_ids.iter().filter(|v| Some(*v) != root);
            diff(&mut out, "volumes", want, n.sorted_names(data));
        }
        if let Some(want) = c.has_root {
            diff(&mut out, "has_root", want, inst.root_volume_id.is_some());
        }
        return Ok(out);
    }
    if let Some(a) = &c.address {
        let got = ec2.describe_address(&n.id(a)).await.map_err(port)?;
        let Some(addr) = got else {
            diff(&mut out, "state", c.state.as_deref(), Some("absent"));
            return Ok(out);
        };
        if let Some(want) = &c.attached {
            let have = addr
                .instance_id
                .as_deref()
                .map_or("none".into(), |i| n.name(i));
            diff(&mut out, "associated", want.as_str(), have.as_str());
        }
        return Ok(out);
    }
    Err("a check must name a volume, snapshot, instance or address".into())
}

fn attach_state_name(s: AttachState) -> &'static str {
    match s {
        AttachState::Attaching => "attaching",
        AttachState::Attached => "attached",
        AttachState::Detaching => "detaching",
    }
}

fn volume(n: &Names, c: &Check, got: Option<ObservedVolume>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let Some(v) = got else {
        diff(&mut out, "state", c.state.as_deref(), Some("absent"));
        return Ok(out);
    };
    if let Some(want) = &c.state {
        diff(&mut out, "state", want.as_str(), v.state.as_aws());
    }
    let att = v.attachment.as_ref();
    if let Some(want) = &c.attached {
        let have = att.map_or("none".into(), |a| n.name(&a.instance_id));
        diff(&mut out, "attached", want.as_str(), have.as_str());
    }
    if let Some(want) = &c.device {
        let want = att.map_or(want.clone(), |a| n.device(&a.instance_id, want));
        diff(
            &mut out,
            "device",
            Some(want.as_str()),
            att.map(|a| a.device.as_str()),
        );
    }
    if let Some(want) = &c.attach_state {
        let have = att.map(|a| attach_state_name(a.state));
        diff(&mut out, "attach_state", Some(want.as_str()), have);
    }
    if let Some(want) = c.delete_on_termination {
        let have = att.map(|a| a.delete_on_termination);
        diff(&mut out, "delete_on_termination", Some(want), have);
    }
    if let Some(want) = &c.az {
        diff(&mut out, "az", want.as_str(), v.availability_zone.as_str());
    }
    if let Some(want) = c.size {
        diff(&mut out, "size", want, v.size_gib);
    }
    let mut ledger = BTreeMap::new();
    ledger.insert(tags::VOLUME, v.logical.clone());
    ledger.insert(tags::GENERATION, v.generation.map(|g| g.0.to_string()));
    ledger.insert(tags::HOOK, v.hook.clone());
    ledger.insert(tags::SLOT, v.slot.map(|s| s.to_string()));
    ledger.insert(tags::SOURCE_SNAPSHOT, v.source_snapshot.clone());
    ledger_tags(&mut out, c, &ledger, "volume")?;
    Ok(out)
}

fn snapshot(n: &Names, c: &Check, got: Option<ObservedSnapshot>) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let Some(s) = got else {
        diff(&mut out, "state", c.state.as_deref(), Some("absent"));
        return Ok(out);
    };
    if let Some(want) = &c.state {
        let have = match s.state {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Error => "error",
        };
        diff(&mut out, "state", want.as_str(), have);
    }
    if let Some(want) = &c.of {
        diff(&mut out, "of", want.clone(), n.name(&s.volume_id));
    }
    let mut ledger = BTreeMap::new();
    ledger.insert(tags::VOLUME, s.logical.clone());
    ledger.insert(tags::GENERATION, s.generation.map(|g| g.0.to_string()));
    ledger.insert(tags::HOOK, s.hook.clone());
    ledger.insert(tags::SLOT, s.slot.map(|x| x.to_string()));
    ledger.insert(tags::REASON, s.reason.map(|r| r.as_tag().to_string()));
    ledger.insert(tags::SET, s.set.clone());
    ledger_tags(&mut out, c, &ledger, "snapshot")?;
    Ok(out)
}

/// Compares the check's tags with the ledger fields the ports read from a resource's tags.
fn ledger_tags(
    out: &mut Vec<String>,
    c: &Check,
    ledger: &BTreeMap<&str, Option<String>>,
    kind: &str,
) -> Result<(), String> {
    for (k, want) in &c.tags {
        let have = ledger
            .get(k.as_str())
            .ok_or_else(|| format!("the ports do not show tag {k} of a {kind}"))?;
        diff(out, &format!("tag {k}"), Some(want), have.as_ref());
    }
    Ok(())
}
