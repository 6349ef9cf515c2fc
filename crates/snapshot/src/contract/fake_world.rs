//! The contract's world on [`FakeEc2`]: resources come from the fake's seeding helpers, timings from
//! [`FakeEc2::set_timings`].

use std::time::Duration;

use async_trait::async_trait;
use ferry_state_machine::observe::SnapshotState;

use super::{BuiltInstance, Timings, World};
use crate::fake::{FakeEc2, Timings as FakeTimings};
use crate::ports::{Addresses, NewVolume, Tag, Volumes};

/// Builds every case on a fresh [`FakeEc2`].
#[derive(Debug, Default)]
pub struct FakeWorld {
    ec2: FakeEc2,
    next: u32,
}

impl FakeWorld {
    /// A world builder on the fake.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{:017x}", 0xc0_0000 + self.next)
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

#[async_trait]
impl World for FakeWorld {
    type Ec2 = FakeEc2;

    async fn fresh(&mut self) -> Result<FakeEc2, String> {
        self.ec2 = FakeEc2::new();
        Ok(self.ec2.clone())
    }

    async fn add_instance(&mut self, az: &str) -> Result<BuiltInstance, String> {
        let id = self.next_id("i");
        let root = self.ec2.add_instance(&id, az);
        Ok(BuiltInstance {
            id,
            root_device: "/dev/xvda".into(),
            root_volume: Some(root),
        })
    }

    async fn add_volume(
        &mut self,
        az: &str,
        size_gib: i32,
        from: Option<&str>,
        tags: &[Tag],
    ) -> Result<String, String> {
        let Some(snapshot) = from else {
            return Ok(self.ec2.add_volume(az, size_gib, tags));
        };
        let req = NewVolume {
            availability_zone: az.into(),
            snapshot_id: Some(snapshot.into()),
            size_gib: Some(size_gib),
            volume_type: "gp3".into(),
            tags: tags.to_vec(),
            ..NewVolume::default()
        };
        self.ec2
            .create_volume(&req)
            .await
            .map_err(|e| e.to_string())
    }

    async fn attach(
        &mut self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), String> {
        self.ec2
            .attach_volume(volume_id, instance_id, device)
            .await
            .map_err(|e| e.to_string())
    }

    async fn add_snapshot(&mut self, volume_id: &str, tags: &[Tag]) -> Result<String, String> {
        let size = self
            .ec2
            .volume(volume_id)
            .map(|v| v.size_gib)
            .ok_or_else(|| format!("no volume {volume_id}"))?;
        Ok(self
            .ec2
            .put_snapshot(volume_id, size, SnapshotState::Completed, tags))
    }

    async fn add_address(&mut self) -> Result<String, String> {
        let id = self.next_id("eipalloc");
        let ip = format!("198.51.100.{}", self.next % 250);
        self.ec2.add_address(&id, &ip);
        Ok(id)
    }

    async fn associate(&mut self, allocation_id: &str, instance_id: &str) -> Result<(), String> {
        self.ec2
            .associate_address(allocation_id, instance_id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_instance_state(&mut self, instance_id: &str, state: &str) -> Result<(), String> {
        if self.ec2.instance(instance_id).is_none() {
            return Err(format!("no instance {instance_id}"));
        }
        self.ec2.set_instance_state(instance_id, state);
        Ok(())
    }

    async fn set_timings(&mut self, t: &Timings) -> Result<(), String> {
        self.ec2.set_timings(FakeTimings {
            volume_create: secs(t.volume_create),
            attach: secs(t.attach),
            detach: secs(t.detach),
            snapshot: secs(t.snapshot),
            incremental_snapshot: None,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ec2_contract, run_all};

    /// Every case of the shipped contract holds on the fake (under paused time: the timed states pass as
    /// the runner's polls advance the clock).
    #[tokio::test(start_paused = true)]
    async fn the_fake_keeps_the_ec2_contract() {
        let contract = ec2_contract().unwrap();
        assert!(contract.cases.len() >= 25, "{} cases", contract.cases.len());
        let failures = run_all(&mut FakeWorld::new(), &contract).await;
        assert!(
            failures.is_empty(),
            "{} of {} cases fail on the fake:\n{}",
            failures.len(),
            contract.cases.len(),
            failures.join("\n")
        );
    }
}
