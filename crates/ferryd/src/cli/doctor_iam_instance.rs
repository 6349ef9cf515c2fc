//! `ferryd doctor`'s DryRun probes of the calls that name the group's instance: the pre-copy set, the
//! attached-data tags, attach and detach of the data volume, the Elastic IPs and the fence.

use aws_sdk_ec2::types::{InstanceSpecification, ResourceType};
use ferry_snapshot::ledger::FIRST_SLOT;
use ferry_state_machine::observe::ObservedInstance;

use super::doctor::Check;
use super::doctor_iam::{ec2_tags, skipped, tag_spec, verdict};
use super::doctor_probe::{TagSets, Targets};
use super::Aws;
use crate::config::GroupConfig;

/// The probes that need the group's instance.
pub(super) async fn probes(
    aws: &Aws,
    g: &GroupConfig,
    t: &Targets,
    me: &ObservedInstance,
    out: &mut Vec<Check>,
) {
    let ec2 = &aws.clients.ec2;
    let on = format!(" on {}", me.id);
    let slot = me.slot().unwrap_or(FIRST_SLOT);
    let res = ec2
        .create_snapshots()
        .dry_run(true)
        .instance_specification(
            InstanceSpecification::builder()
                .instance_id(&me.id)
                .exclude_boot_volume(true)
                .build(),
        )
        .description("ferry doctor dry run")
        .tag_specifications(tag_spec(ResourceType::Snapshot, &TagSets::precopy(g, slot)))
        .send()
        .await;
    out.push(verdict(
        "ec2:CreateSnapshots",
        "pre-copy set",
        false,
        &on,
        res,
    ));

    out.push(match TagSets::attached(g, me) {
        Some(tags) => {
            let res = ec2
                .create_tags()
                .dry_run(true)
                .resources(&me.id)
                .set_tags(Some(ec2_tags(&tags)))
                .send()
                .await;
            verdict(
                "ec2:CreateTags",
                "attached data on the instance",
                false,
                &on,
                res,
            )
        }
        None => skipped(
            "ec2:CreateTags",
            "attached data on the instance",
            "instance with attached data",
        ),
    });

    match &t.volume {
        Some(vol) => {
            let device = g
                .volumes
                .iter()
                .find(|v| Some(&v.name) == vol.logical.as_ref())
                .unwrap_or(&g.volumes[0])
                .device
                .clone();
            let res = ec2
                .attach_volume()
                .dry_run(true)
                .volume_id(&vol.id)
                .instance_id(&me.id)
                .device(&device)
                .send()
                .await;
            let context = format!(" of {} to {}", vol.id, me.id);
            out.push(verdict(
                "ec2:AttachVolume",
                "data volume",
                false,
                &context,
                res,
            ));
            let res = ec2
                .detach_volume()
                .dry_run(true)
                .volume_id(&vol.id)
                .instance_id(&me.id)
                .send()
                .await;
            out.push(verdict(
                "ec2:DetachVolume",
                "data volume",
                false,
                &context,
                res,
            ));
        }
        None => {
            out.push(skipped("ec2:AttachVolume", "data volume", "ferry volume"));
            out.push(skipped("ec2:DetachVolume", "data volume", "ferry volume"));
        }
    }

    for alloc in g.elastic_ip.iter().chain(&g.elastic_ips) {
        let res = ec2
            .associate_address()
            .dry_run(true)
            .allocation_id(alloc)
            .instance_id(&me.id)
            .allow_reassociation(true)
            .send()
            .await;
        out.push(verdict("ec2:AssociateAddress", alloc, false, &on, res));
    }

    // The warm pool's and the handover's fence.
    let res = ec2
        .stop_instances()
        .dry_run(true)
        .instance_ids(&me.id)
        .send()
        .await;
    out.push(verdict("ec2:StopInstances", "fence", false, &on, res));
}
