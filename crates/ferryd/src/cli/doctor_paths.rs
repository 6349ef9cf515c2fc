//! `ferryd doctor`'s checks of the lifecycle paths a group may take: its capacity (one instance, paused
//! at zero, or one slot per instance), its maintenance policy against `launch_before_terminate`, and its warm pool as the standby.

use ferry_state_machine::{GroupInfo, LifecycleActions};

use super::doctor::Check;
use super::Aws;
use crate::config::{GroupConfig, LaunchBeforeTerminate};

/// One instance (min ≤ 1 = max, desired 1), paused at zero (desired 0: the data waits in the ledger), or a
/// group of many: one slot per instance up to the maximum, each with its own data (and Elastic IP, from
/// `elastic_ips`).
pub(super) fn capacity(name: &str, info: &GroupInfo, g: &GroupConfig) -> Check {
    let (min, max, desired) = info.capacity;
    let fix = format!(
        "aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --min-size 1 --max-size 1 --desired-capacity 1",
        g.name
    );
    match (min, max, desired) {
        (1, 1, 1) => Check::pass(name, "min = max = desired = 1"),
        (0, 1, 1) => Check::pass(name, "min 0, max 1, desired 1: one instance, and it may be paused at zero"),
        (0, 1, 0) => Check::pass(name, "desired 0: paused at zero; the data waits in the ledger and returns when desired goes back to 1"),
        (_, max, _) if max > 1 => slots(name, info.capacity, g),
        _ => Check::fail(name, format!("min {min}, max {max}, desired {desired}: ferry needs a maximum of at least 1"), fix),
    }
}

/// A group of many: slots `0..max-1`; `elastic_ip` would follow slot 0 alone, and `elastic_ips` shorter
/// than the maximum leaves the last slots without an address.
fn slots(name: &str, (min, max, desired): (i32, i32, i32), g: &GroupConfig) -> Check {
    let shape = format!("min {min}, max {max}, desired {desired}: a group of many, slots 0..{}, each with its own data", max - 1);
    let per_slot = "set elastic_ips = [\"eipalloc-…\", …] (one per slot) instead of elastic_ip";
    if g.elastic_ip.is_some() {
        return Check::warn(
            name,
            format!("{shape}; elastic_ip follows slot 0 alone"),
            per_slot,
        );
    }
    let ips = g.elastic_ips.len();
    if ips > 0 && ips < max as usize {
        let missing = format!(
            "{shape}; elastic_ips names {ips}, so slots {ips}..{} get no Elastic IP",
            max - 1
        );
        return Check::warn(
            name,
            missing,
            "add one elastic_ips entry per slot, up to the group's maximum",
        );
    }
    Check::pass(name, shape)
}

/// The instance maintenance policy: terminate before launch, unless the group hands over.
pub(super) fn maintenance(name: &str, policy: Option<(i32, i32)>, g: &GroupConfig) -> Check {
    let group = &g.name;
    let fix = format!("aws autoscaling update-auto-scaling-group --auto-scaling-group-name {group} --instance-maintenance-policy MinHealthyPercentage=0,MaxHealthyPercentage=100");
    let handover = g.launch_before_terminate == LaunchBeforeTerminate::Handover;
    match policy {
        Some((0, 100)) => Check::pass(name, "terminate before launch (MinHealthyPercentage 0, MaxHealthyPercentage 100)"),
        Some((min, max)) if max > 100 && handover => Check::pass(name, format!("MinHealthyPercentage {min}, MaxHealthyPercentage {max}: replacements launch first, and ferry hands the data over (launch_before_terminate = \"handover\"; the old instance is stopped for the move)")),
        Some((min, max)) if max > 100 => Check::fail(name, format!("MinHealthyPercentage {min}, MaxHealthyPercentage {max}: replacements launch before the old instance terminates, and ferry abandons them (launch-before-terminate)"), format!("{fix}; or set launch_before_terminate = \"handover\"")),
        Some((min, max)) => Check::warn(name, format!("MinHealthyPercentage {min}, MaxHealthyPercentage {max}: a replacement may be held up while the old instance still counts as healthy"), fix),
        None => Check::warn(name, "none set: Auto Scaling's defaults apply, and instance refresh or AZ rebalancing may launch a replacement before terminating the old instance, which ferry abandons", fix),
    }
}

/// The warm pool, if the group has one: a stopped (or hibernated) pool is the standby; a running one costs
/// compute for nothing ferry needs; a pool whose instances sit only in the in-service instance's AZ dies
/// with it.
pub(super) async fn warm_pool(aws: &Aws, name: &str, info: &GroupInfo) -> Option<Check> {
    if !info.has_warm_pool {
        return None;
    }
    let pool = match aws.asg.describe_warm_pool(&info.name).await {
        Ok(Some(p)) => p,
        Ok(None) => return None,
        Err(e) => {
            return Some(Check::fail(
                name,
                e.to_string(),
                "allow autoscaling:DescribeWarmPool",
            ))
        }
    };
    let fix = |what: &str| {
        format!(
            "aws autoscaling put-warm-pool --auto-scaling-group-name {} {what}",
            info.name
        )
    };
    if !matches!(pool.pool_state.as_str(), "Stopped" | "Hibernated") {
        return Some(Check::warn(name, format!("pool state {}: warm instances run (and cost) for nothing; ferry gives them no data", pool.pool_state), fix("--pool-state Stopped")));
    }
    let mut zones: Vec<&str> = pool
        .instances
        .iter()
        .map(|i| i.availability_zone.as_str())
        .collect();
    zones.sort_unstable();
    zones.dedup();
    let serving: Vec<&str> = info
        .instances
        .iter()
        .filter(|i| i.lifecycle_state == "InService")
        .map(|i| i.availability_zone.as_str())
        .collect();
    if pool.instances.is_empty() {
        return Some(Check::warn(
            name,
            format!(
                "pool state {}, but no warm instance: a failover cold-launches",
                pool.pool_state
            ),
            fix("--min-size 2"),
        ));
    }
    if info.availability_zones.len() > 1 && zones.len() == 1 {
        let why = if serving.contains(&zones[0]) {
            "with the in-service instance: an outage of that AZ takes the standby too"
        } else {
            "only: an outage of that AZ leaves no standby, and a failover out of it cold-launches"
        };
        return Some(Check::warn(
            name,
            format!("every warm instance is in {} {why}", zones[0]),
            fix("--min-size 2 (one warm instance per AZ)"),
        ));
    }
    let reuse = if pool.reuse_on_scale_in {
        ", reused on scale-in"
    } else {
        ""
    };
    Some(Check::pass(name, format!("{} warm instance(s) {} in {}{reuse}: the standby (ferry moves the data and the Elastic IP to it at a failover)", pool.instances.len(), pool.pool_state.to_lowercase(), zones.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::super::doctor::Verdict;
    use super::*;
    use crate::config::Config;

    fn group(extra: &str) -> GroupConfig {
        let text = format!(
            "[queue]\nurl = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\n[[groups]]\nname = \"db\"\n{extra}\n\
             [[groups.volumes]]\nname = \"data\"\ndevice = \"/dev/sdf\"\nsize_gib = 10\n"
        );
        Config::from_toml(&text, "test").unwrap().groups.remove(0)
    }

    #[test]
    fn one_instance_paused_at_zero_or_many_slots_pass_and_no_maximum_fails() {
        let g = group("");
        for (cap, want) in [
            ((1, 1, 1), Verdict::Pass),
            ((0, 1, 1), Verdict::Pass),
            ((0, 1, 0), Verdict::Pass),
            ((1, 2, 2), Verdict::Pass),
            ((0, 3, 1), Verdict::Pass),
            ((0, 0, 0), Verdict::Fail),
        ] {
            let info = GroupInfo {
                capacity: cap,
                ..GroupInfo::default()
            };
            assert_eq!(capacity("c", &info, &g).verdict, want, "{cap:?}");
        }
    }

    #[test]
    fn a_group_of_many_warns_of_slots_without_their_own_elastic_ip() {
        let info = GroupInfo {
            capacity: (3, 3, 3),
            ..GroupInfo::default()
        };
        let one = capacity("c", &info, &group("elastic_ip = \"eipalloc-1\""));
        assert_eq!(one.verdict, Verdict::Warn);
        assert!(one.detail.contains("slot 0 alone"), "{}", one.detail);
        let short = capacity(
            "c",
            &info,
            &group("elastic_ips = [\"eipalloc-1\", \"eipalloc-2\"]"),
        );
        assert_eq!(short.verdict, Verdict::Warn);
        assert!(short.detail.contains("slots 2..2"), "{}", short.detail);
        let full = group("elastic_ips = [\"eipalloc-1\", \"eipalloc-2\", \"eipalloc-3\"]");
        let c = capacity("c", &info, &full);
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.detail);
        assert!(c.detail.contains("slots 0..2"), "{}", c.detail);
    }

    #[test]
    fn a_launch_first_policy_fails_unless_the_group_hands_over() {
        let (abandon, handover) = (group(""), group("launch_before_terminate = \"handover\""));
        assert_eq!(
            maintenance("m", Some((100, 200)), &abandon).verdict,
            Verdict::Fail
        );
        let c = maintenance("m", Some((100, 200)), &handover);
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.detail);
        assert!(c.detail.contains("stopped"), "{}", c.detail);
        assert_eq!(
            maintenance("m", Some((0, 100)), &abandon).verdict,
            Verdict::Pass
        );
    }
}
