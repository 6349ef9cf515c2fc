//! `ferryd status`'s lifecycle path of a slot: what Auto Scaling and the ledger show is in progress
//! (failover, warm-pool entry or return, root-volume replacement, handover, paused at zero, standby,
//! detached), decided from what was read. Pure, so that every case is tested.

use std::collections::HashMap;

use ferry_snapshot::ledger::FIRST_SLOT;
use ferry_snapshot::{Instances, VolumeQuery, Volumes};
use ferry_state_machine::{tags, GroupInstance, LifecycleActions};

use super::Aws;

/// What the path is decided from.
#[derive(Debug, Clone)]
pub struct PathView<'a> {
    /// The group's members (`DescribeAutoScalingGroups`).
    pub members: &'a [GroupInstance],
    /// The instances that hold the slot's data (a ferry volume attached), each with Auto Scaling's view
    /// of it (`None`: in no group).
    pub holders: &'a [(String, Option<GroupInstance>)],
    /// The `ferry:lifecycle-path` tag of instances, where set.
    pub tags: &'a HashMap<String, String>,
    /// The group's desired capacity.
    pub desired: i32,
    /// The ledger holds data for the slot (a ferry volume or snapshot).
    pub has_data: bool,
    /// `launch_before_terminate = "handover"`.
    pub handover: bool,
}

/// The slot's lifecycle path, as one label.
pub fn slot_path(v: &PathView<'_>) -> &'static str {
    let tagged = |id: &str, label: &str| v.tags.get(id).is_some_and(|t| t == label);
    let in_state = |s: &'static str| v.members.iter().filter(move |m| m.lifecycle_state == s);
    let holder_state = |id: &str| {
        v.holders
            .iter()
            .find(|(h, _)| h == id)
            .map(|(_, asg)| asg.as_ref().map(|a| a.lifecycle_state.as_str()))
    };
    let data_in_service = v
        .holders
        .iter()
        .any(|(_, a)| a.as_ref().is_some_and(|a| a.lifecycle_state == "InService"));

    if v.members
        .iter()
        .any(|m| m.lifecycle_state.starts_with("ReplacingRootVolume"))
        || in_state("Pending:Wait").any(|m| tagged(&m.instance_id, "root-volume-replacement-boot"))
    {
        return "root-volume-replacement";
    }
    if v.holders.iter().any(|(_, a)| {
        a.as_ref()
            .is_some_and(|a| a.lifecycle_state == "Warmed:Pending:Wait")
    }) {
        return "warm-pool-return";
    }
    if let Some(m) = in_state("Pending:Wait").next() {
        if data_in_service {
            return if v.handover {
                "handover"
            } else {
                "launch-before-terminate"
            };
        }
        if tagged(&m.instance_id, "warm-pool-entry") {
            return "warm-pool-entry";
        }
        return if v.has_data { "failover" } else { "first-boot" };
    }
    if in_state("Terminating:Wait").next().is_some() {
        return "failover";
    }
    for (id, _) in v.holders {
        match holder_state(id) {
            Some(Some("Standby")) => return "standby",
            Some(None) => return "detached",
            _ => {}
        }
    }
    let serving = v
        .members
        .iter()
        .any(|m| m.lifecycle_state.starts_with("Pending") || m.lifecycle_state == "InService");
    if !serving && v.desired == 0 && v.has_data {
        return "paused-at-zero";
    }
    if data_in_service {
        return "in-service";
    }
    if v.has_data {
        "data-waiting"
    } else {
        "no-data"
    }
}

/// Reads what the path is decided from (the slot's volumes, their holders, the waiting members' tags) and
/// decides it. `Err` names what could not be read.
pub(crate) async fn read_path(
    aws: &Aws,
    group: &str,
    members: &[GroupInstance],
    desired: i32,
    has_snapshots: bool,
    handover: bool,
) -> Result<&'static str, String> {
    let query = VolumeQuery {
        group: group.to_string(),
        slot: Some(FIRST_SLOT),
        logical: None,
        attached_instance: None,
    };
    let volumes = aws
        .ec2
        .find_volumes(&query)
        .await
        .map_err(|e| e.to_string())?;
    let mut held: Vec<String> = volumes
        .iter()
        .filter(|v| v.holds_data())
        .filter_map(|v| v.attached_to().map(str::to_string))
        .collect();
    held.sort();
    held.dedup();
    let strangers: Vec<String> = held
        .iter()
        .filter(|h| !members.iter().any(|m| &m.instance_id == *h))
        .cloned()
        .collect();
    let seen = if strangers.is_empty() {
        Vec::new()
    } else {
        aws.asg
            .describe_instances(&strangers)
            .await
            .map_err(|e| e.to_string())?
    };
    let holders: Vec<(String, Option<GroupInstance>)> = held
        .into_iter()
        .map(|h| {
            let asg = members
                .iter()
                .chain(&seen)
                .find(|m| m.instance_id == h)
                .cloned();
            (h, asg)
        })
        .collect();
    let waiting: Vec<String> = members
        .iter()
        .filter(|m| m.lifecycle_state.ends_with(":Wait"))
        .map(|m| m.instance_id.clone())
        .collect();
    let mut path_tags = HashMap::new();
    if !waiting.is_empty() {
        for i in aws
            .ec2
            .describe_instances(&waiting)
            .await
            .map_err(|e| e.to_string())?
        {
            if let Some(t) = i.tag(tags::LIFECYCLE_PATH) {
                path_tags.insert(i.id.clone(), t.to_string());
            }
        }
    }
    Ok(slot_path(&PathView {
        members,
        holders: &holders,
        tags: &path_tags,
        desired,
        has_data: has_snapshots || volumes.iter().any(|v| v.holds_data()),
        handover,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, state: &str) -> GroupInstance {
        GroupInstance {
            instance_id: id.into(),
            group: "db".into(),
            availability_zone: "us-east-1a".into(),
            lifecycle_state: state.into(),
            health_status: "Healthy".into(),
        }
    }

    #[test]
    fn every_path_is_told_apart() {
        let serving = [inst("i-old", "InService")];
        let held_by_old = [("i-old".to_string(), Some(inst("i-old", "InService")))];
        let launching = [inst("i-old", "InService"), inst("i-new", "Pending:Wait")];
        let new_only = [inst("i-new", "Pending:Wait")];
        let warm_tag: HashMap<String, String> =
            [("i-new".to_string(), "warm-pool-entry".to_string())].into();
        let none = HashMap::new();
        let base = PathView {
            members: &[],
            holders: &[],
            tags: &none,
            desired: 1,
            has_data: true,
            handover: false,
        };
        let cases: Vec<(&str, PathView<'_>)> = vec![
            (
                "in-service",
                PathView {
                    members: &serving,
                    holders: &held_by_old,
                    ..base.clone()
                },
            ),
            (
                "failover",
                PathView {
                    members: &new_only,
                    ..base.clone()
                },
            ),
            (
                "first-boot",
                PathView {
                    members: &new_only,
                    has_data: false,
                    ..base.clone()
                },
            ),
            (
                "warm-pool-entry",
                PathView {
                    members: &new_only,
                    tags: &warm_tag,
                    ..base.clone()
                },
            ),
            (
                "launch-before-terminate",
                PathView {
                    members: &launching,
                    holders: &held_by_old,
                    ..base.clone()
                },
            ),
            (
                "handover",
                PathView {
                    members: &launching,
                    holders: &held_by_old,
                    handover: true,
                    ..base.clone()
                },
            ),
            (
                "paused-at-zero",
                PathView {
                    desired: 0,
                    ..base.clone()
                },
            ),
            (
                "no-data",
                PathView {
                    has_data: false,
                    ..base.clone()
                },
            ),
        ];
        for (want, view) in cases {
            assert_eq!(slot_path(&view), want, "{view:?}");
        }
    }

    #[test]
    fn holders_out_of_service_name_their_path() {
        let none = HashMap::new();
        let table = [
            ("Standby", Some("Standby"), "standby"),
            (
                "Warmed:Pending:Wait",
                Some("Warmed:Pending:Wait"),
                "warm-pool-return",
            ),
            ("detached", None, "detached"),
        ];
        for (name, state, want) in table {
            let holders = [("i-old".to_string(), state.map(|s| inst("i-old", s)))];
            let members: Vec<GroupInstance> = state
                .filter(|s| *s == "Standby")
                .map(|s| inst("i-old", s))
                .into_iter()
                .collect();
            let view = PathView {
                members: &members,
                holders: &holders,
                tags: &none,
                desired: 0,
                has_data: true,
                handover: false,
            };
            assert_eq!(slot_path(&view), want, "{name}");
        }
        let root = [inst("i-db", "ReplacingRootVolume:Wait")];
        let view = PathView {
            members: &root,
            holders: &[],
            tags: &none,
            desired: 1,
            has_data: true,
            handover: false,
        };
        assert_eq!(slot_path(&view), "root-volume-replacement");
    }
}
