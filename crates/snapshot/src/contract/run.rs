//! The runner: builds a case's world, makes its calls through the ports, and compares each outcome with the
//! one the contract expects.

use std::collections::BTreeMap;

use ferry_state_machine::{Disposition, StepError};

use super::calls::{call, tags_of, Got};
use super::check::check;
use super::spec::{Case, Contract, Step};
use super::World;

/// The case's names and the ids they stand for.
#[derive(Debug, Default)]
pub(super) struct Names {
    ids: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
    /// Instance id → its root device.
    roots: BTreeMap<String, String>,
}

impl Names {
    fn bind(&mut self, name: &str, id: &str) {
        self.ids.insert(name.to_string(), id.to_string());
        self.names.insert(id.to_string(), name.to_string());
    }

    /// The id a name stands for; any other value is an id as it is.
    pub(super) fn id(&self, name: &str) -> String {
        self.ids
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// The name of an id, or the id when it has none.
    pub(super) fn name(&self, id: &str) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// A device name, with `@root` standing for the instance's root device.
    pub(super) fn device(&self, instance_id: &str, device: &str) -> String {
        match (device, self.roots.get(instance_id)) {
            ("@root", Some(root)) => root.clone(),
            _ => device.to_string(),
        }
    }

    /// The names of ids, sorted.
    pub(super) fn sorted_names<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        let mut out: Vec<String> = ids.into_iter().map(|id| self.name(id)).collect();
        out.sort();
        out
    }
}

/// Runs every case; returns one line per failed case (empty: the implementation keeps the contract).
pub async fn run_all<W: World>(world: &mut W, contract: &Contract) -> Vec<String> {
    let mut failures = Vec::new();
    for case in &contract.cases {
        if let Err(e) = run_case(world, case).await {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    failures
}

/// Runs one case: builds its world, makes its steps, checks what must hold.
pub async fn run_case<W: World>(world: &mut W, case: &Case) -> Result<(), String> {
    let ec2 = world.fresh().await?;
    let mut names = build(world, case)
        .await
        .map_err(|e| format!("building the world: {e}"))?;
    world.set_timings(&case.timings).await?;
    for (i, step) in case.steps.iter().enumerate() {
        let at = format!("step {} ({:?})", i + 1, step.call);
        let got = call(&ec2, &names, step)
            .await
            .map_err(|e| format!("{at}: {e}"))?;
        expect(&mut names, step, got).map_err(|e| format!("{at}: {e}"))?;
        for c in &step.checks {
            check(&ec2, &names, c)
                .await
                .map_err(|e| format!("{at}, then: {e}"))?;
        }
    }
    for c in &case.checks {
        check(&ec2, &names, c)
            .await
            .map_err(|e| format!("at the end: {e}"))?;
    }
    Ok(())
}

async fn build<W: World>(world: &mut W, case: &Case) -> Result<Names, String> {
    let mut n = Names::default();
    let mut azs = BTreeMap::new();
    for i in &case.instances {
        let built = world.add_instance(&i.az).await?;
        n.bind(&i.name, &built.id);
        if let Some(root) = &built.root_volume {
            n.bind(&format!("{}.root", i.name), root);
        }
        n.roots.insert(built.id.clone(), built.root_device);
        azs.insert(i.name.clone(), i.az.clone());
    }
    // Empty volumes, then the snapshots of world volumes, then the volumes restored from those.
    for restored in [false, true] {
        if restored {
            for s in &case.snapshots {
                let id = world.add_snapshot(&n.id(&s.of), &tags_of(&s.tags)).await?;
                n.bind(&s.name, &id);
            }
        }
        for v in case.volumes.iter().filter(|v| v.from.is_some() == restored) {
            let az = match (&v.az, &v.attached) {
                (Some(az), _) => az.clone(),
                (None, Some(i)) => azs
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("no instance {i}"))?,
                (None, None) => return Err(format!("volume {} needs an az", v.name)),
            };
            let from = v.from.as_deref().map(|s| n.id(s));
            let id = world
                .add_volume(&az, v.size.unwrap_or(8), from.as_deref(), &tags_of(&v.tags))
                .await?;
            n.bind(&v.name, &id);
            if let Some(i) = &v.attached {
                let device = v.device.as_deref().unwrap_or("/dev/sdf");
                world.attach(&id, &n.id(i), device).await?;
            }
        }
    }
    for a in &case.addresses {
        let id = world.add_address().await?;
        n.bind(&a.name, &id);
        if let Some(i) = &a.associated {
            world.associate(&id, &n.id(i)).await?;
        }
    }
    for i in &case.instances {
        match i.state.as_deref() {
            None | Some("running") => {}
            Some(state) => world.set_instance_state(&n.id(&i.name), state).await?,
        }
    }
    Ok(n)
}

fn disposition_name(d: Disposition) -> &'static str {
    match d {
        Disposition::Retry => "retry",
        Disposition::Permanent => "permanent",
        Disposition::AlreadyDone => "already_done",
    }
}

/// Compares a call's outcome with the step's expectation, and binds what it created.
fn expect(n: &mut Names, s: &Step, got: Result<Got, StepError>) -> Result<(), String> {
    let got = match (got, &s.error) {
        (Err(e), Some(code)) => {
            if e.code.as_deref() != Some(code.as_str()) {
                return Err(format!(
                    "expected error {code}, got {e} (code {:?})",
                    e.code
                ));
            }
            let d = disposition_name(e.disposition);
            if let Some(want) = s.disposition.as_deref().filter(|w| *w != d) {
                return Err(format!("{code}: expected disposition {want}, got {d}"));
            }
            if !e.operation.starts_with("ec2:") {
                return Err(format!("{code}: operation {:?} is not ec2:*", e.operation));
            }
            return Ok(());
        }
        (Err(e), None) => {
            let d = disposition_name(e.disposition);
            return Err(format!(
                "expected success, got {e} (code {:?}, {d})",
                e.code
            ));
        }
        (Ok(got), Some(code)) => return Err(format!("expected error {code}, got {got:?}")),
        (Ok(got), None) => got,
    };
    match (&got, &s.bind) {
        (Got::Id(id), Some(name)) => n.bind(name, id),
        (Got::Pairs(pairs), Some(name)) => {
            for (snap, vol) in pairs {
                let vol_name = n.name(vol);
                n.bind(&format!("{name}:{vol_name}"), snap);
            }
        }
        (_, Some(name)) => return Err(format!("nothing to bind as {name} in {got:?}")),
        _ => {}
    }
    if let Some(other) = &s.same_as {
        let want = n.id(other);
        match &got {
            Got::Id(id) if *id == want => {}
            _ => return Err(format!("expected the id of {other} ({want}), got {got:?}")),
        }
    }
    if let Some(want) = &s.returns {
        let mut want = want.clone();
        want.sort();
        let have = match &got {
            Got::Ids(ids) => n.sorted_names(ids),
            Got::Pairs(pairs) => n.sorted_names(pairs.iter().map(|(_, v)| v)),
            other => return Err(format!("`returns` of a call that returned {other:?}")),
        };
        if have != want {
            return Err(format!("expected {want:?}, got {have:?}"));
        }
    }
    if let Some(want) = &s.returns_each {
        let Got::Batches(batches) = &got else {
            return Err(format!("`returns_each` of a call that returned {got:?}"));
        };
        let have: Vec<Vec<String>> = batches.iter().map(|b| n.sorted_names(b)).collect();
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|w| {
                let mut w = w.clone();
                w.sort();
                w
            })
            .collect();
        if have != want {
            return Err(format!("expected {want:?}, got {have:?}"));
        }
    }
    if let Some(want) = s.found {
        match got {
            Got::Found(have) if have == want => {}
            other => return Err(format!("expected found = {want}, got {other:?}")),
        }
    }
    Ok(())
}
