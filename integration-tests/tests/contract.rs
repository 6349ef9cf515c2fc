#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end, the EC2 contract (`crates/snapshot/contract/ec2.toml`) against the emulator through the real
//! adapter, `AwsEc2`: the same cases `cargo test -p ferry-snapshot` runs against `FakeEc2`, so that what an
//! executor test proves on the fake holds on the emulator too. The world is built with the SDK (RunInstances,
//! CreateVolume, AttachVolume, CreateSnapshot, AllocateAddress); the steps go through the ports.

use std::future::Future;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    DomainType, Placement, ResourceType, Tag as Ec2Tag, TagSpecification, VolumeType,
};
use aws_sdk_ec2::Client;
use ferry_integration_tests::emulator::Emulator;
use ferry_snapshot::aws_ec2::AwsEc2;
use ferry_snapshot::contract::{ec2_contract, run_all, BuiltInstance, Timings, World};
use ferry_snapshot::Tag;
use serde_json::json;

/// How long the world waits for a resource to settle.
const SETTLE: Duration = Duration::from_secs(20);

/// The contract's world on a running emulator: reset before every case.
struct EmulatorWorld {
    emu: Emulator,
    ec2: Client,
}

/// An SDK error with its causes, for a world-building failure.
fn sdk<E, R>(what: &str, e: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    format!("{what}: {}", ferry_state_machine::error::display_chain(e))
}

fn tag_spec(resource: ResourceType, tags: &[Tag]) -> Option<Vec<TagSpecification>> {
    (!tags.is_empty()).then(|| {
        let tags = tags
            .iter()
            .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
            .collect();
        vec![TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags))
            .build()]
    })
}

/// Polls `probe` until it answers `true`.
async fn settle<F, Fut>(what: &str, mut probe: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !probe().await? {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{what} did not settle within {SETTLE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

impl EmulatorWorld {
    async fn instance_state(&self, id: &str) -> Result<String, String> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| sdk("DescribeInstances", &e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.state()?.name().map(|n| n.as_str().to_string()))
            .unwrap_or_default())
    }

    async fn volume_settled(&self, id: &str, attached: bool) -> Result<bool, String> {
        let out = self
            .ec2
            .describe_volumes()
            .volume_ids(id)
            .send()
            .await
            .map_err(|e| sdk("DescribeVolumes", &e))?;
        let Some(v) = out.volumes().first() else {
            return Ok(false);
        };
        let state = v.state().map(|s| s.as_str()).unwrap_or_default();
        let att = v
            .attachments()
            .first()
            .and_then(|a| a.state())
            .map(|s| s.as_str());
        Ok(match attached {
            true => state == "in-use" && att == Some("attached"),
            false => state == "available",
        })
    }
}

#[async_trait]
impl World for EmulatorWorld {
    type Ec2 = AwsEc2;

    async fn fresh(&mut self) -> Result<AwsEc2, String> {
        self.emu
            .reset()
            .await
            .map_err(|e| format!("reset: {e:#}"))?;
        Ok(AwsEc2::new(self.ec2.clone()))
    }

    async fn add_instance(&mut self, az: &str) -> Result<BuiltInstance, String> {
        let out = self
            .ec2
            .run_instances()
            .image_id("ami-12345678")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .placement(Placement::builder().availability_zone(az).build())
            .send()
            .await
            .map_err(|e| sdk("RunInstances", &e))?;
        let inst = out
            .instances()
            .first()
            .ok_or("RunInstances made no instance")?;
        let id = inst.instance_id().unwrap_or_default().to_string();
        let root_device = inst.root_device_name().unwrap_or("/dev/sda1").to_string();
        let root_volume = inst
            .block_device_mappings()
            .iter()
            .find(|m| m.device_name() == Some(root_device.as_str()))
            .and_then(|m| m.ebs()?.volume_id())
            .map(str::to_string);
        settle(&format!("{id} running"), || async {
            Ok(self.instance_state(&id).await? == "running")
        })
        .await?;
        Ok(BuiltInstance {
            id,
            root_device,
            root_volume,
        })
    }

    async fn add_volume(
        &mut self,
        az: &str,
        size_gib: i32,
        from: Option<&str>,
        tags: &[Tag],
    ) -> Result<String, String> {
        let out = self
            .ec2
            .create_volume()
            .availability_zone(az)
            .size(size_gib)
            .set_snapshot_id(from.map(str::to_string))
            .volume_type(VolumeType::Gp3)
            .set_tag_specifications(tag_spec(ResourceType::Volume, tags))
            .send()
            .await
            .map_err(|e| sdk("CreateVolume", &e))?;
        let id = out.volume_id().unwrap_or_default().to_string();
        settle(&format!("{id} available"), || {
            self.volume_settled(&id, false)
        })
        .await?;
        Ok(id)
    }

    async fn attach(
        &mut self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), String> {
        self.ec2
            .attach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .device(device)
            .send()
            .await
            .map_err(|e| sdk("AttachVolume", &e))?;
        settle(&format!("{volume_id} attached"), || {
            self.volume_settled(volume_id, true)
        })
        .await
    }

    async fn add_snapshot(&mut self, volume_id: &str, tags: &[Tag]) -> Result<String, String> {
        let out = self
            .ec2
            .create_snapshot()
            .volume_id(volume_id)
            .set_tag_specifications(tag_spec(ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(|e| sdk("CreateSnapshot", &e))?;
        let id = out.snapshot_id().unwrap_or_default().to_string();
        settle(&format!("{id} completed"), || async {
            let out = self
                .ec2
                .describe_snapshots()
                .snapshot_ids(&id)
                .send()
                .await
                .map_err(|e| sdk("DescribeSnapshots", &e))?;
            Ok(out
                .snapshots()
                .first()
                .and_then(|s| s.state())
                .is_some_and(|s| s.as_str() == "completed"))
        })
        .await?;
        Ok(id)
    }

    async fn add_address(&mut self) -> Result<String, String> {
        let out = self
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .map_err(|e| sdk("AllocateAddress", &e))?;
        Ok(out.allocation_id().unwrap_or_default().to_string())
    }

    async fn associate(&mut self, allocation_id: &str, instance_id: &str) -> Result<(), String> {
        self.ec2
            .associate_address()
            .allocation_id(allocation_id)
            .instance_id(instance_id)
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| sdk("AssociateAddress", &e))?;
        Ok(())
    }

    async fn set_instance_state(&mut self, instance_id: &str, state: &str) -> Result<(), String> {
        match state {
            "stopped" => {
                self.ec2
                    .stop_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map_err(|e| sdk("StopInstances", &e))?;
            }
            "terminated" => {
                self.ec2
                    .terminate_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map_err(|e| sdk("TerminateInstances", &e))?;
            }
            other => return Err(format!("the world cannot put an instance in {other}")),
        }
        settle(&format!("{instance_id} {state}"), || async {
            Ok(self.instance_state(instance_id).await? == state)
        })
        .await
    }

    async fn set_timings(&mut self, t: &Timings) -> Result<(), String> {
        let settings = json!({
            "volume_create_seconds": t.volume_create,
            "attach_seconds": t.attach,
            "detach_seconds": t.detach,
            "snapshot_seconds": t.snapshot,
        });
        self.emu
            .configure(settings)
            .await
            .map_err(|e| format!("config: {e:#}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_keeps_the_ec2_contract() -> Result<()> {
    let contract = ec2_contract().map_err(anyhow::Error::msg)?;
    ensure!(contract.cases.len() >= 25, "{} cases", contract.cases.len());
    let emu = Emulator::start().context("starting the emulator")?;
    let ec2 = Client::new(&emu.sdk_config().await);
    let mut world = EmulatorWorld { emu, ec2 };
    let failures = run_all(&mut world, &contract).await;
    ensure!(
        failures.is_empty(),
        "{} of {} cases fail on the emulator:\n{}",
        failures.len(),
        contract.cases.len(),
        failures.join("\n")
    );
    Ok(())
}
