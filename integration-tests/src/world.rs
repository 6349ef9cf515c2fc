//! The AWS side of a scenario, made on the emulator: a queue with a DLQ, a managed Auto Scaling group across
//! two AZs with launch and terminate hooks, and an Elastic IP.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_autoscaling::types::{LifecycleHookSpecification, Tag as AsgTag};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::emulator::Emulator;

/// The two AZs the group spans.
pub const AZ_A: &str = "us-east-1a";
/// The second AZ.
pub const AZ_B: &str = "us-east-1b";

/// What a scenario is built from.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// The Auto Scaling group name.
    pub group: String,
    /// The lifecycle hooks' heartbeat timeout, in seconds.
    pub heartbeat_timeout: i32,
    /// The queue's visibility timeout, in seconds.
    pub visibility_timeout: u32,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            group: "db".into(),
            heartbeat_timeout: 300,
            visibility_timeout: 30,
        }
    }
}

/// An instance of the group as Auto Scaling reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The instance id.
    pub id: String,
    /// Its AZ.
    pub az: String,
    /// Its lifecycle state.
    pub state: String,
}

/// The scenario's resources and SDK clients.
pub struct World {
    /// EC2 client.
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling client.
    pub asg: aws_sdk_autoscaling::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The hook queue.
    pub queue_url: String,
    /// The hook queue's dead-letter queue (5 receives).
    pub dlq_url: String,
    /// The hook queue's visibility timeout, in seconds; ferry's `[queue] visibility_timeout_secs` too.
    pub visibility_timeout: u32,
    /// The group name.
    pub group: String,
    /// The Elastic IP's allocation id.
    pub eip_alloc: String,
    /// The Elastic IP's address.
    pub eip_ip: String,
}

/// What every scenario starts from: the SDK clients, the hook queue with its DLQ, and the launch
/// configuration its groups use.
pub(crate) struct Base {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) asg: aws_sdk_autoscaling::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) queue_url: String,
    pub(crate) dlq_url: String,
    /// The hook queue's ARN, the hooks' notification target.
    pub(crate) arn: String,
}

impl Base {
    pub(crate) async fn setup(emu: &Emulator, visibility_timeout: u32) -> Result<Base> {
        let conf = emu.sdk_config().await;
        let (ec2, asg, sqs) = (
            aws_sdk_ec2::Client::new(&conf),
            aws_sdk_autoscaling::Client::new(&conf),
            aws_sdk_sqs::Client::new(&conf),
        );
        let (queue_url, dlq_url, arn) = create_queues(&sqs, visibility_timeout).await?;
        asg.create_launch_configuration()
            .launch_configuration_name("ferry-lc")
            .image_id("ami-12345678")
            .instance_type("t3.micro")
            .send()
            .await?;
        Ok(Base {
            ec2,
            asg,
            sqs,
            queue_url,
            dlq_url,
            arn,
        })
    }

    /// Allocates `group`'s Elastic IP: (allocation id, address).
    pub(crate) async fn allocate_eip(&self, group: &str) -> Result<(String, String)> {
        let eip = self
            .ec2
            .allocate_address()
            .domain(aws_sdk_ec2::types::DomainType::Vpc)
            .tag_specifications(eip_tags(group))
            .send()
            .await
            .with_context(|| format!("allocating the Elastic IP of {group}"))?;
        Ok((
            eip.allocation_id().unwrap_or_default().to_string(),
            eip.public_ip().unwrap_or_default().to_string(),
        ))
    }
}

/// The tags of a group's Elastic IP, as the template sets them: ferry's policy associates only addresses
/// tagged with its group.
pub fn eip_tags(group: &str) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::ElasticIp)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("ferry:group")
                .value(group)
                .build(),
        )
        .build()
}

/// Sets min = max = desired = 1 in `group`: it launches its one instance.
pub(crate) async fn scale_group_to_one(
    asg: &aws_sdk_autoscaling::Client,
    group: &str,
) -> Result<()> {
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .send()
        .await
        .with_context(|| format!("scaling {group} to one"))?;
    Ok(())
}

/// An instance of a group as Auto Scaling describes it.
pub(crate) fn member_of(i: &aws_sdk_autoscaling::types::Instance) -> GroupMember {
    GroupMember {
        id: i.instance_id().unwrap_or_default().to_string(),
        az: i.availability_zone().unwrap_or_default().to_string(),
        state: i
            .lifecycle_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    }
}

/// A `[[groups]]` table of ferryd's config: `name` with its Elastic IP and one 20 GiB `data` volume, no
/// recovery points (the tests count the hooks' snapshot calls exactly).
pub(crate) fn group_toml(name: &str, eip: &str, launch_before_terminate_secs: u32) -> String {
    format!(
        r#"
[[groups]]
name = "{name}"
elastic_ip = "{eip}"
launch_before_terminate_timeout_secs = {launch_before_terminate_secs}
recovery_point_interval_secs = 0

[[groups.volumes]]
name = "data"
device = "/dev/sdf"
size_gib = 20
type = "gp3"
"#
    )
}

impl World {
    /// Creates the queue, the group (empty, min 0) with its hooks and the `ferry:managed` tag, and the EIP.
    pub async fn setup(emu: &Emulator, opts: &WorldOptions) -> Result<World> {
        let b = Base::setup(emu, opts.visibility_timeout).await?;
        create_group(&b.asg, &opts.group, &b.arn, opts.heartbeat_timeout).await?;
        let (eip_alloc, eip_ip) = b.allocate_eip(&opts.group).await?;
        Ok(World {
            ec2: b.ec2,
            asg: b.asg,
            sqs: b.sqs,
            queue_url: b.queue_url,
            dlq_url: b.dlq_url,
            visibility_timeout: opts.visibility_timeout,
            group: opts.group.clone(),
            eip_alloc,
            eip_ip,
        })
    }

    /// ferry's configuration for this world, in TOML.
    /// (Recovery points are off: these tests count the hooks' snapshot calls exactly; the dead-AZ tests turn
    /// them on.)
    pub fn config_toml(&self) -> String {
        format!(
            r#"[queue]
url = "{queue}"
visibility_timeout_secs = {visibility}

[daemon]
poll_min_ms = 200
poll_max_ms = 2000
# EC2's reads lag by the harness's visibility delay: a restarted ferryd reads only after it.
startup_settle_secs = {settle}

# Many ferryd processes run at once in the tests: each takes a free port.
[metrics]
listen = "127.0.0.1:0"
recovery_interval_secs = 1

# Retention deletes as the retention role, the only one allowed to (as the template configures it).
[gc]
delete_role_arn = "{retention}"
{group}"#,
            retention = crate::emulator::RETENTION_ROLE_ARN,
            settle = startup_settle_secs(),
            queue = self.queue_url,
            group = group_toml(&self.group, &self.eip_alloc, 60),
            visibility = self.visibility_timeout
        )
    }

    /// ferry's configuration with `extra` more logical volumes: `v1` at /dev/sdg, `v2` at /dev/sdh, ...
    pub fn config_toml_with_volumes(&self, extra: u8) -> String {
        let mut c = self.config_toml();
        for i in 0..extra {
            let dev = char::from(b'g' + i);
            c.push_str(&format!(
                "\n[[groups.volumes]]\nname = \"v{}\"\ndevice = \"/dev/sd{dev}\"\nsize_gib = 10\ntype = \"gp3\"\n",
                i + 1
            ));
        }
        c
    }

    /// Sets min = max = desired = 1: the group launches its one instance.
    pub async fn scale_to_one(&self) -> Result<()> {
        scale_group_to_one(&self.asg, &self.group).await
    }

    /// The group's instances.
    pub async fn members(&self) -> Result<Vec<GroupMember>> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await?;
        let g = out
            .auto_scaling_groups()
            .first()
            .ok_or_else(|| anyhow!("group {} is gone", self.group))?;
        Ok(g.instances().iter().map(member_of).collect())
    }

    /// The group's warm-pool instances: (instance id, lifecycle state).
    pub async fn warm_instances(&self) -> Result<Vec<(String, String)>> {
        let out = self
            .asg
            .describe_warm_pool()
            .auto_scaling_group_name(&self.group)
            .send()
            .await?;
        Ok(out
            .instances()
            .iter()
            .map(|i| {
                let state = i.lifecycle_state().map(|s| s.as_str().to_string());
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    state.unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Terminates an instance through Auto Scaling without lowering the desired capacity: it is replaced.
    pub async fn terminate(&self, instance_id: &str) -> Result<()> {
        self.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(false)
            .send()
            .await?;
        Ok(())
    }

    /// The EC2 state name of an instance.
    pub async fn ec2_state(&self, instance_id: &str) -> Result<String> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| {
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
            })
            .unwrap_or_default())
    }

    /// The ferry volumes attached to an instance.
    pub async fn attached_volumes(
        &self,
        instance_id: &str,
    ) -> Result<Vec<aws_sdk_ec2::types::Volume>> {
        let f = |n: &str, v: &str| {
            aws_sdk_ec2::types::Filter::builder()
                .name(n)
                .values(v)
                .build()
        };
        let out = self
            .ec2
            .describe_volumes()
            .filters(f("attachment.instance-id", instance_id))
            .filters(f("tag:ferry:group", &self.group))
            .send()
            .await?;
        Ok(out.volumes().to_vec())
    }

    /// Where the Elastic IP points.
    pub async fn eip_instance(&self) -> Result<Option<String>> {
        let out = self
            .ec2
            .describe_addresses()
            .allocation_ids(&self.eip_alloc)
            .send()
            .await?;
        Ok(out
            .addresses()
            .first()
            .and_then(|a| a.instance_id())
            .filter(|s| !s.is_empty())
            .map(str::to_string))
    }

    /// Messages on the hook queue, visible or in flight.
    pub async fn queue_depth(&self) -> Result<u64> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attrs = out.attributes();
        let n = |k: QueueAttributeName| {
            attrs
                .and_then(|a| a.get(&k))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}

/// Creates the hook queue `ferry-hooks` (this visibility timeout) and its dead-letter queue
/// `ferry-hooks-dlq` (5 receives); returns the queue's URL, the DLQ's URL and the queue's ARN.
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    visibility_timeout: u32,
) -> Result<(String, String, String)> {
    let dlq = sqs
        .create_queue()
        .queue_name("ferry-hooks-dlq")
        .send()
        .await?;
    let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let q = sqs
        .create_queue()
        .queue_name("ferry-hooks")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout.to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"5"}}"#),
        )
        .send()
        .await
        .context("creating the hook queue")?;
    let queue_url = q.queue_url().unwrap_or_default().to_string();
    let arn = queue_arn(sqs, &queue_url).await?;
    Ok((queue_url, dlq_url, arn))
}

/// Creates a managed group (empty, min 0, max 1, across AZ a and b, launch configuration `ferry-lc`) with
/// ferry's launch and terminate hooks notifying the queue `queue_arn`, and the `ferry:managed` tag.
pub async fn create_group(
    asg: &aws_sdk_autoscaling::Client,
    group: &str,
    queue_arn: &str,
    heartbeat_timeout: i32,
) -> Result<()> {
    let hook = |name: &str, transition: &str| {
        LifecycleHookSpecification::builder()
            .lifecycle_hook_name(name)
            .lifecycle_transition(transition)
            .notification_target_arn(queue_arn)
            .role_arn("arn:aws:iam::123456789012:role/ferry-hooks")
            .heartbeat_timeout(heartbeat_timeout)
            .default_result("ABANDON")
            .build()
    };
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(group)
        .launch_configuration_name("ferry-lc")
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .availability_zones(AZ_A)
        .availability_zones(AZ_B)
        .lifecycle_hook_specification_list(hook(
            "ferry-launch",
            "autoscaling:EC2_INSTANCE_LAUNCHING",
        ))
        .lifecycle_hook_specification_list(hook(
            "ferry-terminate",
            "autoscaling:EC2_INSTANCE_TERMINATING",
        ))
        .tags(
            AsgTag::builder()
                .key("ferry:managed")
                .value("true")
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("creating the Auto Scaling group {group}"))?;
    Ok(())
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow!("queue {url} has no ARN"))
}

/// Polls `check` every 200 ms until it returns `Some`, or fails naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `[daemon] startup_settle_secs` for the harness's lag: the next whole second past it.
fn startup_settle_secs() -> u64 {
    let lag = crate::emulator::visibility_delay().unwrap_or(1.0);
    // The lag is a small non-negative number of seconds (checked when the emulator starts).
    lag.ceil().min(60.0) as u64 + 1
}
