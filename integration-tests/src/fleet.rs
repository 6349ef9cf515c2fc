//! Many groups on one queue, for the storm: N managed Auto Scaling groups (each of one instance, across AZ a
//! and b, with launch and terminate hooks and an Elastic IP), one hook queue, and one ferryd config for all.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::emulator::Emulator;
use crate::world::{
    create_group, group_toml, member_of, scale_group_to_one, Base, GroupMember, World, WorldOptions,
};

/// One group of the fleet.
#[derive(Debug, Clone)]
pub struct FleetGroup {
    /// The Auto Scaling group name.
    pub name: String,
    /// The Elastic IP's allocation id.
    pub eip_alloc: String,
    /// The Elastic IP's address.
    pub eip_ip: String,
}

/// The fleet's resources and SDK clients (signed with the emulator's default test key).
pub struct Fleet {
    /// EC2 client.
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling client.
    pub asg: aws_sdk_autoscaling::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The hook queue every group notifies.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// The queue's visibility timeout, in seconds.
    pub visibility_timeout: u32,
    /// The groups, in order: `storm-000`, `storm-001`, ...
    pub groups: Vec<FleetGroup>,
}

/// The name of the i-th group.
pub fn group_name(i: usize) -> String {
    format!("storm-{i:03}")
}

impl Fleet {
    /// Creates the queue, `n` groups (empty, min 0) with their hooks and the `ferry:managed` tag, and one
    /// Elastic IP per group.
    pub async fn setup(emu: &Emulator, n: usize, opts: &WorldOptions) -> Result<Fleet> {
        let b = Base::setup(emu, opts.visibility_timeout).await?;
        let mut groups = Vec::with_capacity(n);
        for i in 0..n {
            let name = group_name(i);
            create_group(&b.asg, &name, &b.arn, opts.heartbeat_timeout).await?;
            let (eip_alloc, eip_ip) = b.allocate_eip(&name).await?;
            groups.push(FleetGroup {
                name,
                eip_alloc,
                eip_ip,
            });
        }
        Ok(Fleet {
            ec2: b.ec2,
            asg: b.asg,
            sqs: b.sqs,
            queue_url: b.queue_url,
            dlq_url: b.dlq_url,
            visibility_timeout: opts.visibility_timeout,
            groups,
        })
    }

    /// A one-group view of group `i`, to use the one-group helpers (`check_holds`, `eip_instance`, ...).
    pub fn world(&self, i: usize) -> Option<World> {
        let g = self.groups.get(i)?;
        Some(World {
            ec2: self.ec2.clone(),
            asg: self.asg.clone(),
            sqs: self.sqs.clone(),
            queue_url: self.queue_url.clone(),
            dlq_url: self.dlq_url.clone(),
            visibility_timeout: self.visibility_timeout,
            group: g.name.clone(),
            eip_alloc: g.eip_alloc.clone(),
            eip_ip: g.eip_ip.clone(),
        })
    }

    /// ferryd's configuration for every group on the one queue, in TOML; `daemon_extra` and `top_extra`
    /// are appended to the `[daemon]` table and after it (e.g. an `[aws]` table).
    pub fn config_toml(&self, max_in_flight: usize, daemon_extra: &str, top_extra: &str) -> String {
        let mut c = format!(
            r#"[queue]
url = "{queue}"
visibility_timeout_secs = {visibility}

[daemon]
max_in_flight = {max_in_flight}
poll_min_ms = 200
poll_max_ms = 2000
{daemon_extra}
[metrics]
listen = "127.0.0.1:0"
# Off: the storm measures failovers, not the recovery-point age check.
recovery_interval_secs = 0
{top_extra}
"#,
            queue = self.queue_url,
            visibility = self.visibility_timeout,
        );
        for g in &self.groups {
            c.push_str(&group_toml(&g.name, &g.eip_alloc, 600));
        }
        c
    }

    /// Sets min = max = desired = 1 in every group: each launches its one instance.
    pub async fn scale_all_to_one(&self) -> Result<()> {
        for g in &self.groups {
            scale_group_to_one(&self.asg, &g.name).await?;
        }
        Ok(())
    }

    /// Every group's instances, by group name, read in pages (one call per 50 groups).
    pub async fn members(&self) -> Result<BTreeMap<String, Vec<GroupMember>>> {
        let mut out: BTreeMap<String, Vec<GroupMember>> = BTreeMap::new();
        let names: Vec<String> = self.groups.iter().map(|g| g.name.clone()).collect();
        for chunk in names.chunks(50) {
            let mut pages = self
                .asg
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                for g in page?.auto_scaling_groups() {
                    let members = g.instances().iter().map(member_of).collect();
                    out.insert(
                        g.auto_scaling_group_name().unwrap_or_default().to_string(),
                        members,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Where every Elastic IP points: allocation id → instance id (absent if unassociated).
    pub async fn eip_owners(&self) -> Result<BTreeMap<String, String>> {
        let out = self.ec2.describe_addresses().send().await?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| {
                let owner = a.instance_id().filter(|s| !s.is_empty())?;
                Some((a.allocation_id()?.to_string(), owner.to_string()))
            })
            .collect())
    }
}
