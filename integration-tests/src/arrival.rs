//! Whether the groups of a storm arrived: the launches completed with CONTINUE (from the emulator's lifecycle
//! actions), and each group checked whole afterwards (replacement InService in AZ b, EIP on it, its volumes
//! holding the workload's last acknowledged write).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::emulator::Emulator;
use crate::fleet::Fleet;
use crate::storm::StormReport;
use crate::workload::{volume_counter, Writer};
use crate::world::AZ_B;

/// Per group, the instance of its newest launch completed with CONTINUE, other than `not[group]`.
pub async fn launched(
    emu: &Emulator,
    not: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in emu.lifecycle().await? {
        let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
        let (group, instance) = (s("group"), s("instance_id"));
        if s("transition").ends_with("LAUNCHING")
            && s("state") == "completed"
            && s("result") == "CONTINUE"
            && not.get(&group) != Some(&instance)
        {
            out.insert(group, instance);
        }
    }
    Ok(out)
}

/// Waits until every group has a launch in `launched` (or the deadline); returns what arrived.
pub async fn arrivals(
    emu: &Emulator,
    fleet: &Fleet,
    not: &BTreeMap<String, String>,
    deadline: Instant,
) -> Result<BTreeMap<String, String>> {
    loop {
        let got = launched(emu, not).await?;
        if got.len() >= fleet.groups.len() || Instant::now() >= deadline {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks every group: the replacement InService in AZ b, the EIP on it, and every ferry volume on it holding
/// the workload's last acknowledged write. Groups that fail are added to `report.lost`.
pub async fn verify(
    emu: &Emulator,
    fleet: &Fleet,
    writers: BTreeMap<String, Writer>,
    arrived: &BTreeMap<String, String>,
    report: &mut StormReport,
) -> Result<()> {
    // Each workload stopped when its old instance shut down: what it acknowledged last is final.
    let mut last = BTreeMap::new();
    for (group, w) in writers {
        last.insert(
            group,
            w.finished(Duration::from_secs(10)).await.map(|(a, _)| a),
        );
    }
    let members = fleet.members().await?;
    let eips = fleet.eip_owners().await?;
    for (i, g) in fleet.groups.iter().enumerate() {
        let world = fleet.world(i).ok_or_else(|| anyhow!("no group {i}"))?;
        let acked = match last.remove(&g.name) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                report.lost.push((g.name.clone(), format!("{e:#}")));
                continue;
            }
            None => 0,
        };
        report.acked += acked;
        let Some(instance) = arrived.get(&g.name) else {
            report
                .lost
                .push((g.name.clone(), "no replacement arrived".into()));
            continue;
        };
        let member = members
            .get(&g.name)
            .and_then(|ms| ms.iter().find(|m| &m.id == instance));
        let why = match member {
            None => Some(format!("{instance} is not in the group")),
            Some(m) if m.state != "InService" || m.az != AZ_B => {
                Some(format!("{instance} is {} in {}", m.state, m.az))
            }
            Some(_) if eips.get(&g.eip_alloc) != Some(instance) => Some(format!(
                "the EIP points at {:?}, not {instance}",
                eips.get(&g.eip_alloc)
            )),
            Some(_) => None,
        };
        let mut why = why;
        let volumes = world.attached_volumes(instance).await?;
        if volumes.is_empty() {
            why.get_or_insert_with(|| format!("no ferry volume on {instance}"));
        }
        for v in &volumes {
            let id = v.volume_id().unwrap_or_default();
            let held = volume_counter(emu, id).await?;
            if held != acked {
                report.lost_writes += acked.saturating_sub(held);
                why.get_or_insert_with(|| {
                    format!("{id} holds write {held}, the last acknowledged {acked}")
                });
            }
        }
        if let Some(why) = why {
            report.lost.push((g.name.clone(), why));
        }
    }
    Ok(())
}
