//! One contract, two implementations: the behaviour of ferry's EC2 ports written once as data
//! (`contract/ec2.toml`) and run against every implementation that claims it.
//!
//! A case builds a small world (instances, volumes, snapshots, Elastic IPs) through a [`World`], makes port
//! calls on it, and asserts each call's outcome (its result, or its AWS error code and disposition) and the
//! state the ports observe afterwards. The same cases run against [`crate::fake::FakeEc2`] (this crate's
//! tests) and against the emulator through [`crate::aws_ec2::AwsEc2`] (the `e2e_contract` test of ferryd),
//! so an executor test on the fake means what an end-to-end test on the emulator means.

mod calls;
mod check;
mod fake_world;
mod run;
pub mod spec;

use async_trait::async_trait;

pub use fake_world::FakeWorld;
pub use run::{run_all, run_case};
pub use spec::{Case, Contract, Timings};

use crate::ports::{Ec2, Tag};

/// The EC2 contract of ferry's ports, as shipped in `contract/ec2.toml`.
pub const EC2_CONTRACT: &str = include_str!("../../contract/ec2.toml");

/// Parses a contract file.
pub fn parse(text: &str) -> Result<Contract, String> {
    let contract: Contract = toml::from_str(text).map_err(|e| format!("contract: {e}"))?;
    let mut seen = std::collections::BTreeSet::new();
    for case in &contract.cases {
        if !seen.insert(case.name.as_str()) {
            return Err(format!("contract: case {} is there twice", case.name));
        }
    }
    Ok(contract)
}

/// The shipped EC2 contract, parsed.
pub fn ec2_contract() -> Result<Contract, String> {
    parse(EC2_CONTRACT)
}

/// An instance the world built: its id and its root device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltInstance {
    /// The instance id.
    pub id: String,
    /// Its root device (`/dev/xvda`, `/dev/sda1`, ...), where its root volume is attached.
    pub root_device: String,
    /// Its root volume's id (a case names it `<instance>.root`).
    pub root_volume: Option<String>,
}

/// Builds a case's world on one implementation. Every method leaves its resource settled (`available`,
/// `attached`, `completed`): the timed states apply only to the steps, after [`World::set_timings`].
#[async_trait]
pub trait World: Send {
    /// The ports of this implementation.
    type Ec2: Ec2 + 'static;

    /// An empty world with zero timings, and its ports.
    async fn fresh(&mut self) -> Result<Self::Ec2, String>;
    /// A `running` instance with a root volume.
    async fn add_instance(&mut self, az: &str) -> Result<BuiltInstance, String>;
    /// An `available` volume, empty or restored from `from`; returns its id.
    async fn add_volume(
        &mut self,
        az: &str,
        size_gib: i32,
        from: Option<&str>,
        tags: &[Tag],
    ) -> Result<String, String>;
    /// Attaches a volume and waits for `attached`.
    async fn attach(
        &mut self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), String>;
    /// A `completed` snapshot of a volume; returns its id.
    async fn add_snapshot(&mut self, volume_id: &str, tags: &[Tag]) -> Result<String, String>;
    /// An Elastic IP associated with nothing; returns its allocation id.
    async fn add_address(&mut self) -> Result<String, String>;
    /// Associates an Elastic IP with an instance.
    async fn associate(&mut self, allocation_id: &str, instance_id: &str) -> Result<(), String>;
    /// Puts an instance in `stopped` or `terminated` (with what EC2 does on termination), settled.
    async fn set_instance_state(&mut self, instance_id: &str, state: &str) -> Result<(), String>;
    /// The timed states of the steps to come.
    async fn set_timings(&mut self, timings: &Timings) -> Result<(), String>;
}
