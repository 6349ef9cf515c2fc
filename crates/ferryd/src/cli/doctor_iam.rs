//! `ferryd doctor`'s permission checks: every mutating EC2 call ferry makes, sent with `DryRun=true` and
//! shaped like ferry's real requests (same tags, same kind of resources), so that tag-scoped IAM conditions
//! are evaluated as they will be.
//!
//! `DryRunOperation` means allowed, `UnauthorizedOperation` means denied, and any other answer (a missing
//! resource, a resource in the wrong state, an endpoint that validates before it authorises) cannot tell:
//! WARN "cannot verify". Deletes use ids that do not exist, so that even an endpoint that ignored DryRun
//! could not delete anything.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    InstanceSpecification, ResourceType, Tag as Ec2Tag, TagSpecification, VolumeType,
};
use aws_smithy_runtime_api::client::result::SdkError;
use ferry_snapshot::ledger::{self, FIRST_SLOT};
use ferry_snapshot::{Tag, VolumeQuery, Volumes};
use ferry_state_machine::observe::{ObservedVolume, SnapshotReason};
use ferry_state_machine::{tags, Generation, GroupInfo};

use super::doctor::Check;
use super::Aws;
use crate::config::GroupConfig;

/// A well-formed id of nothing: what a probe names when the group has no real resource of that kind.
const NO_INSTANCE: &str = "i-00000000000000000";
const NO_VOLUME: &str = "vol-00000000000000000";
const NO_SNAPSHOT: &str = "snap-00000000000000000";

/// The calls ferry makes that have no DryRun, for one SKIP line.
pub(super) fn unverifiable() -> Check {
    Check::skip(
        "iam (no DryRun)",
        "autoscaling:CompleteLifecycleAction, autoscaling:RecordLifecycleActionHeartbeat, sqs:ReceiveMessage, \
         sqs:DeleteMessage, sqs:ChangeMessageVisibility cannot be tried without side effects; compare the role's \
         policy with deploy/iam/ferry-policy.json",
    )
}

fn ec2_tags(tags: &[Tag]) -> Vec<Ec2Tag> {
    tags.iter()
        .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_spec(resource: ResourceType, tags: &[Tag]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

/// Turns one DryRun answer into a check. `gc_only` calls are needed by `ferryd gc` alone: denied is a WARN.
fn verdict<T, E>(
    op: &str,
    gc_only: bool,
    context: &str,
    res: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> Check
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let name = format!("iam {op}");
    let grant = format!("grant {op} to ferryd's role (deploy/iam/ferry-policy.json)");
    match res {
        Ok(_) => Check::warn(
            name,
            format!("the endpoint ignored DryRun and performed the call{context}"),
            "this endpoint does not model DryRun; check the policy by hand",
        ),
        Err(e) => match e.code() {
            Some("DryRunOperation") => Check::pass(name, format!("allowed (DryRun){context}")),
            Some(
                "UnauthorizedOperation"
                | "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedAccess",
            ) if gc_only => Check::warn(
                name,
                format!("denied: `ferryd gc` cannot delete{context}"),
                grant,
            ),
            Some(
                code @ ("UnauthorizedOperation"
                | "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedAccess"),
            ) => Check::fail(name, format!("denied ({code}){context}"), grant),
            code => {
                let what = ferry_state_machine::error::sdk_error(op, &e).message;
                let detail = match code {
                    Some(_) => what,
                    None => format!("no answer: {what}"),
                };
                Check::warn(
                    name,
                    format!("cannot verify: {detail}{context}"),
                    format!("the endpoint answered before authorising; check by hand that the role allows {op}"),
                )
            }
        },
    }
}

/// The group's instance to probe with: the InService one, else any that is not leaving.
fn probe_instance(info: Option<&GroupInfo>) -> Option<(String, String)> {
    let instances = &info?.instances;
    instances
        .iter()
        .find(|i| i.lifecycle_state == "InService")
        .or_else(|| instances.iter().find(|i| !i.is_terminating()))
        .map(|i| (i.instance_id.clone(), i.availability_zone.clone()))
}

/// Every DryRun probe for one group.
pub(super) async fn checks(aws: &Aws, g: &GroupConfig, info: Option<&GroupInfo>) -> Vec<Check> {
    let ec2 = &aws.clients.ec2;
    let instance = probe_instance(info);
    let (instance_id, instance_note) = match &instance {
        Some((id, _)) => (id.clone(), String::new()),
        None => (
            NO_INSTANCE.to_string(),
            " (the group has no instance to test with)".to_string(),
        ),
    };
    let az = instance
        .as_ref()
        .map(|(_, az)| az.clone())
        .or_else(|| info.and_then(|i| i.availability_zones.first().cloned()))
        .unwrap_or_default();
    let spec = &g.volumes[0];
    // A ferry volume to probe with: attached to the instance, else any live one of the group.
    let mut volumes: Vec<ObservedVolume> = aws
        .ec2
        .find_volumes(&VolumeQuery {
            group: g.name.clone(),
            ..VolumeQuery::default()
        })
        .await
        .unwrap_or_default();
    volumes.retain(ObservedVolume::holds_data);
    volumes.sort_by_key(|v| v.attached_to() != Some(instance_id.as_str()));
    let volume = volumes.first();
    let (volume_id, volume_note) = match volume {
        Some(v) => (v.id.clone(), String::new()),
        None => (
            NO_VOLUME.to_string(),
            " (the group has no ferry volume to test with)".to_string(),
        ),
    };
    let logical = volume
        .and_then(|v| v.logical.clone())
        .unwrap_or_else(|| spec.name.clone());
    let generation = volume.and_then(|v| v.generation).unwrap_or(Generation(0));
    let slot = volume.and_then(|v| v.slot).unwrap_or(FIRST_SLOT);
    let hook = "doctor/dry-run";
    let mut out = Vec::new();

    let volume_tags =
        ledger::new_volume_tags(&g.name, slot, hook, &spec.name, Generation::FIRST, None);
    let res = ec2
        .create_volume()
        .dry_run(true)
        .availability_zone(&az)
        .size(spec.size_gib)
        .volume_type(VolumeType::from(spec.volume_type.as_str()))
        .set_encrypted(spec.encrypted)
        .set_kms_key_id(spec.kms_key_id.clone())
        .tag_specifications(tag_spec(ResourceType::Volume, &volume_tags))
        .send()
        .await;
    out.push(verdict(
        "ec2:CreateVolume",
        false,
        &format!(" in {az}"),
        res,
    ));

    let mut snap_tags = ledger::base_tags(&g.name, slot, hook);
    snap_tags.push((tags::REASON.into(), SnapshotReason::Manual.as_tag().into()));
    snap_tags.push((tags::NAME.into(), format!("ferry {} doctor", g.name)));
    let mut one = snap_tags.clone();
    one.extend(ledger::data_tags(&logical, generation));
    let res = ec2
        .create_snapshot()
        .dry_run(true)
        .volume_id(&volume_id)
        .description("ferry doctor dry run")
        .tag_specifications(tag_spec(ResourceType::Snapshot, &one))
        .send()
        .await;
    out.push(verdict("ec2:CreateSnapshot", false, &volume_note, res));

    let res = ec2
        .create_snapshots()
        .dry_run(true)
        .instance_specification(
            InstanceSpecification::builder()
                .instance_id(&instance_id)
                .exclude_boot_volume(true)
                .build(),
        )
        .description("ferry doctor dry run")
        .tag_specifications(tag_spec(ResourceType::Snapshot, &snap_tags))
        .send()
        .await;
    out.push(verdict("ec2:CreateSnapshots", false, &instance_note, res));

    // Rewrites the volume's own generation: a no-op even if DryRun were ignored.
    let res = ec2
        .create_tags()
        .dry_run(true)
        .resources(&volume_id)
        .set_tags(Some(ec2_tags(&[(
            tags::GENERATION.into(),
            generation.to_string(),
        )])))
        .send()
        .await;
    out.push(verdict("ec2:CreateTags", false, &volume_note, res));

    let device = g
        .volumes
        .iter()
        .find(|v| v.name == logical)
        .unwrap_or(spec)
        .device
        .clone();
    let res = ec2
        .attach_volume()
        .dry_run(true)
        .volume_id(&volume_id)
        .instance_id(&instance_id)
        .device(&device)
        .send()
        .await;
    let note = format!("{volume_note}{instance_note}");
    out.push(verdict("ec2:AttachVolume", false, &note, res));

    if let Some(alloc) = &g.elastic_ip {
        let res = ec2
            .associate_address()
            .dry_run(true)
            .allocation_id(alloc)
            .instance_id(&instance_id)
            .allow_reassociation(true)
            .send()
            .await;
        out.push(verdict("ec2:AssociateAddress", false, &instance_note, res));
    }

    // The warm pool's and the handover's fence: stop the instance, then detach its data.
    let res = ec2
        .stop_instances()
        .dry_run(true)
        .instance_ids(&instance_id)
        .send()
        .await;
    out.push(verdict("ec2:StopInstances", false, &instance_note, res));
    let res = ec2
        .detach_volume()
        .dry_run(true)
        .volume_id(&volume_id)
        .instance_id(&instance_id)
        .send()
        .await;
    out.push(verdict("ec2:DetachVolume", false, &note, res));

    let res = ec2
        .delete_snapshot()
        .dry_run(true)
        .snapshot_id(NO_SNAPSHOT)
        .send()
        .await;
    out.push(verdict("ec2:DeleteSnapshot", true, "", res));
    let res = ec2
        .delete_volume()
        .dry_run(true)
        .volume_id(NO_VOLUME)
        .send()
        .await;
    out.push(verdict("ec2:DeleteVolume", true, "", res));
    out
}
