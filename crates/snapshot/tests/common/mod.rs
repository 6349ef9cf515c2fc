//! Shared harness for the executor tests: an in-memory EC2 and Auto Scaling, one managed group, hooks and a driver.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ferry_snapshot::fake::{FakeEc2, FakeSnapshot, FakeVolume, Timings};
use ferry_snapshot::{Ec2, GroupSpec, LaunchWork, Tag, TerminateWork, VolumeSpec};
use ferry_state_machine::fake::FakeLifecycleActions;
use ferry_state_machine::lock::{LocalSlotLocks, SlotLocks};
use ferry_state_machine::{
    tags, Driver, DriverConfig, GroupInstance, HookEvent, HookOutcome, HookSpec, HookWork,
    LifecycleResult, NoObserver, Transition,
};
use tokio::sync::watch;

/// The managed group.
pub const GROUP: &str = "asg-db";
/// Availability Zones.
pub const AZ_A: &str = "us-east-1a";
/// A second zone.
pub const AZ_B: &str = "us-east-1b";
/// A third zone.
pub const AZ_C: &str = "us-east-1c";
/// The group's Elastic IP.
pub const EIP: &str = "eipalloc-0ferry";
/// The lifecycle hooks' heartbeat timeout: a heartbeat falls due every 150 s.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a launch waits for an in-service holder before it abandons.
pub const STAYING_TIMEOUT: Duration = Duration::from_secs(600);

/// A logical volume at `device`, 20 GiB gp3 with 4000 IOPS.
pub fn volume_spec(name: &str, device: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        device: device.into(),
        size_gib: 20,
        volume_type: "gp3".into(),
        iops: Some(4000),
        throughput: Some(250),
        encrypted: Some(true),
        kms_key_id: None,
    }
}

/// The group with one `data` volume at `/dev/sdf`.
pub fn one_volume() -> GroupSpec {
    group(vec![volume_spec("data", "/dev/sdf")])
}

/// The group with `data` at `/dev/sdf` and `wal` at `/dev/sdg`.
pub fn two_volumes() -> GroupSpec {
    group(vec![
        volume_spec("data", "/dev/sdf"),
        volume_spec("wal", "/dev/sdg"),
    ])
}

fn group(volumes: Vec<VolumeSpec>) -> GroupSpec {
    GroupSpec {
        name: GROUP.into(),
        elastic_ip: Some(EIP.into()),
        elastic_ips: Vec::new(),
        multi_slot: false,
        volumes,
        staying_holder_timeout: STAYING_TIMEOUT,
        snapshot_timeout: Duration::from_secs(3600),
        restore_latest: false,
        restore_latest_after: Duration::from_secs(600),
        recovery_point_interval: Duration::ZERO,
        root_volume_recovery_point: true,
        handover: false,
    }
}

/// Realistic but short timed states.
pub fn timings() -> Timings {
    Timings {
        volume_create: Duration::from_secs(4),
        attach: Duration::from_secs(2),
        detach: Duration::from_secs(3),
        snapshot: Duration::from_secs(20),
        incremental_snapshot: None,
    }
}

/// The full ledger tags of a volume or snapshot of `logical` at `generation`, made by hook `hook`.
pub fn ledger(logical: &str, generation: u64, hook: &str) -> Vec<Tag> {
    let mut t = ferry_snapshot::fake::ledger_tags(GROUP, 0, logical, generation);
    t.push((tags::HOOK.into(), hook.into()));
    t
}

/// One test world: EC2, Auto Scaling and the group, sharing state with every clone.
pub struct World {
    pub ec2: FakeEc2,
    pub asg: FakeLifecycleActions,
    pub group: GroupSpec,
    pub locks: Arc<LocalSlotLocks>,
    shutdown: watch::Sender<bool>,
}

impl World {
    /// A world with the group's hooks declared and its Elastic IP allocated (associated with nothing).
    pub fn new(group: GroupSpec) -> Self {
        let ec2 = FakeEc2::new();
        ec2.add_address(EIP, "203.0.113.10");
        let asg = FakeLifecycleActions::default();
        for (name, transition) in [
            ("launch", Transition::Launching),
            ("terminate", Transition::Terminating),
        ] {
            asg.put_hook(
                GROUP,
                HookSpec {
                    name: name.into(),
                    transition: Some(transition),
                    heartbeat_timeout: HEARTBEAT_TIMEOUT,
                    default_result: LifecycleResult::Abandon,
                    target_arn: None,
                },
            );
        }
        let (shutdown, _) = watch::channel(false);
        Self {
            ec2,
            asg,
            group,
            locks: Arc::new(LocalSlotLocks::default()),
            shutdown,
        }
    }

    /// A driver with its own slot locks.
    pub fn driver(&self) -> Driver {
        Driver::new(
            Arc::new(self.asg.clone()),
            Arc::new(LocalSlotLocks::default()),
            Arc::new(NoObserver),
            DriverConfig::default(),
        )
    }

    /// A driver sharing this world's slot locks, as the drivers of one process do.
    pub fn shared_driver(&self) -> Driver {
        let locks: Arc<dyn SlotLocks> = self.locks.clone();
        Driver::new(
            Arc::new(self.asg.clone()),
            locks,
            Arc::new(NoObserver),
            DriverConfig::default(),
        )
    }

    /// Tells Auto Scaling about an instance in `lifecycle_state`.
    pub fn asg_instance(&self, id: &str, az: &str, lifecycle_state: &str) {
        self.asg.put_instance(GroupInstance {
            instance_id: id.into(),
            group: GROUP.into(),
            availability_zone: az.into(),
            lifecycle_state: lifecycle_state.into(),
            health_status: "Healthy".into(),
        });
    }

    /// A new instance in `Pending:Wait` with its launch action open.
    pub fn launch_hook(&self, instance: &str, az: &str, token: &str) -> HookEvent {
        self.ec2.add_instance(instance, az);
        self.asg_instance(instance, az, "Pending:Wait");
        self.asg.open_action(GROUP, "launch", instance, token);
        hook(instance, token, Transition::Launching)
    }

    /// An existing instance moved to `Terminating:Wait` with its terminate action open.
    pub fn terminate_hook(&self, instance: &str, token: &str) -> HookEvent {
        let az = self
            .ec2
            .instance(instance)
            .expect("instance exists")
            .availability_zone;
        self.asg_instance(instance, &az, "Terminating:Wait");
        self.asg.open_action(GROUP, "terminate", instance, token);
        hook(instance, token, Transition::Terminating)
    }

    /// An instance in service in `az` with the given generation of every logical volume attached
    /// (created by hook `hook`); returns the volume ids in config order.
    pub fn in_service(&self, instance: &str, az: &str, generation: u64, hook: &str) -> Vec<String> {
        self.ec2.add_instance(instance, az);
        self.asg_instance(instance, az, "InService");
        self.group
            .volumes
            .iter()
            .map(|v| {
                self.ec2.add_attached_volume(
                    instance,
                    &v.device,
                    v.size_gib,
                    &ledger(&v.name, generation, hook),
                )
            })
            .collect()
    }

    /// A launch executor on the plain fake.
    pub fn launch_work(&self) -> LaunchWork {
        self.launch_work_on(Arc::new(self.ec2.clone()))
    }

    /// A launch executor on any EC2 (a `FaultyEc2`, say).
    pub fn launch_work_on(&self, ec2: Arc<dyn Ec2>) -> LaunchWork {
        LaunchWork::new(ec2, Arc::new(self.asg.clone()), self.group.clone())
    }

    /// A terminate executor on the plain fake.
    pub fn terminate_work(&self) -> TerminateWork {
        TerminateWork::new(Arc::new(self.ec2.clone()), self.group.clone())
    }

    /// A shutdown receiver that never fires.
    pub fn no_shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Runs one hook to its end with a fresh driver.
    pub async fn run(&self, hook: &HookEvent, work: &dyn HookWork) -> HookOutcome {
        self.driver()
            .run(hook, work, Duration::ZERO, self.no_shutdown())
            .await
    }

    /// The ferry volumes of one logical volume, in creation order.
    pub fn volumes_of(&self, logical: &str) -> Vec<FakeVolume> {
        self.ec2
            .volumes()
            .into_iter()
            .filter(|v| v.tag(tags::GROUP) == Some(GROUP) && v.tag(tags::VOLUME) == Some(logical))
            .collect()
    }

    /// The ferry snapshots of one logical volume, in creation order.
    pub fn snapshots_of(&self, logical: &str) -> Vec<FakeSnapshot> {
        self.ec2
            .snapshots()
            .into_iter()
            .filter(|s| s.tag(tags::VOLUME) == Some(logical))
            .collect()
    }

    /// The volumes attached to an instance, root excluded.
    pub fn data_attached_to(&self, instance: &str) -> Vec<FakeVolume> {
        self.ec2
            .volumes()
            .into_iter()
            .filter(|v| {
                v.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == instance)
                    && v.tag(tags::GROUP).is_some()
            })
            .collect()
    }

    /// The results the lifecycle actions of `instance` were completed with.
    pub fn results_of(&self, instance: &str) -> Vec<LifecycleResult> {
        self.asg
            .completions()
            .into_iter()
            .filter(|c| c.instance_id == instance)
            .map(|c| c.result)
            .collect()
    }

    /// Where the Elastic IP points.
    pub fn eip_target(&self) -> Option<String> {
        self.ec2.address(EIP).and_then(|a| a.instance_id)
    }
}

/// The ledger key (`ferry:hook`) of the launch hook of `instance`.
pub fn launch_key(instance: &str) -> String {
    hook(instance, "", Transition::Launching).ledger_key()
}

/// A hook event.
pub fn hook(instance: &str, token: &str, transition: Transition) -> HookEvent {
    HookEvent {
        hook_name: match transition {
            Transition::Launching => "launch".into(),
            Transition::Terminating => "terminate".into(),
        },
        group: GROUP.into(),
        instance_id: instance.into(),
        token: token.into(),
        transition,
        time: None,
        origin: None,
        destination: None,
        action: None,
        metadata: None,
    }
}

/// Asserts the run completed the action with `result`; returns the reason.
#[track_caller]
pub fn assert_completed(outcome: &HookOutcome, result: LifecycleResult) -> String {
    match outcome {
        HookOutcome::Completed { result: r, reason } if *r == result => reason.clone(),
        other => panic!("expected {result:?}, got {other:?}"),
    }
}

/// Asserts a volume attachment: attached (settled) to `instance` at `device`.
#[track_caller]
pub fn assert_attached(vol: &FakeVolume, instance: &str, device: &str) {
    let a = vol
        .attachment
        .as_ref()
        .unwrap_or_else(|| panic!("{} is not attached", vol.id));
    assert_eq!(
        (a.instance_id.as_str(), a.device.as_str(), a.state),
        (
            instance,
            device,
            ferry_state_machine::observe::AttachState::Attached
        ),
        "{}",
        vol.id
    );
}

/// A workload on `instance` that writes 1, 2, 3, … to every data volume every 10 ms, until a write is
/// refused (its instance shut down or its volumes detached). Resolves to the last acknowledged value.
pub fn spawn_writer(ec2: &FakeEc2, instance: &str) -> tokio::task::JoinHandle<u64> {
    let (ec2, instance) = (ec2.clone(), instance.to_string());
    tokio::spawn(async move {
        let mut acked = 0;
        loop {
            if ec2.write_instance(&instance, acked + 1).is_err() {
                return acked;
            }
            acked += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// An AZ storm's API budget: its `CreateSnapshot` queue is `queued` calls deep, one refill every 100 s.
/// The waiters are returned so that they stay queued.
pub async fn storm_budget(
    queued: usize,
) -> (
    Arc<ferry_state_machine::budget::ApiBudget>,
    Vec<tokio::task::JoinHandle<Duration>>,
) {
    use ferry_state_machine::budget::{ApiBudget, Limit};
    let mut limits = std::collections::BTreeMap::new();
    limits.insert("ec2:CreateSnapshot".to_string(), Limit::new(1, 0.01));
    let budget = Arc::new(ApiBudget::new(&limits));
    budget.acquire("ec2:CreateSnapshot").await;
    let waiters = (0..queued)
        .map(|_| {
            let b = budget.clone();
            tokio::spawn(async move { b.acquire("ec2:CreateSnapshot").await })
        })
        .collect();
    tokio::task::yield_now().await;
    (budget, waiters)
}
