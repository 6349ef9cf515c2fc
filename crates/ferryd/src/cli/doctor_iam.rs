//! `ferryd doctor`'s permission checks: every mutating EC2 call ferry makes, sent with `DryRun=true` and
//! shaped like ferry's real requests: the same resources of the group and, per write, the exact tag set it
//! sends ([`super::doctor_probe`]), so that tag-scoped IAM conditions are evaluated as they will be. A
//! probe that needs a resource the group does not have yet (a ferry volume, a completed snapshot, an
//! attached instance) is a SKIP naming what is missing, not a guess that IAM would refuse.
//!
//! `DryRunOperation` means allowed, `UnauthorizedOperation` means denied, and any other answer (a missing
//! resource, a resource in the wrong state, an endpoint that validates before it authorises) cannot tell:
//! WARN "cannot verify". Deletes name the group's newest snapshot and an attached volume (which EC2 refuses
//! to delete anyway), and are skipped while the group has neither.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification, VolumeType};
use aws_smithy_runtime_api::client::result::SdkError;
use ferry_snapshot::Tag;
use ferry_state_machine::GroupInfo;

use super::doctor::Check;
use super::doctor_probe::{TagSets, Targets};
use super::Aws;
use crate::config::GroupConfig;

/// The calls ferry makes that have no DryRun, for one SKIP line.
pub(super) fn unverifiable() -> Check {
    Check::skip(
        "iam (no DryRun)",
        "autoscaling:CompleteLifecycleAction, autoscaling:RecordLifecycleActionHeartbeat, sqs:ReceiveMessage, \
         sqs:DeleteMessage, sqs:ChangeMessageVisibility cannot be tried without side effects; compare the role's \
         policy with deploy/iam/ferry-policy.json",
    )
}

pub(super) fn ec2_tags(tags: &[Tag]) -> Vec<Ec2Tag> {
    tags.iter()
        .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
        .collect()
}

pub(super) fn tag_spec(resource: ResourceType, tags: &[Tag]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

/// Turns one DryRun answer into a check named `iam <op> (<what>)`. `gc_only` calls are needed by
/// `ferryd gc` alone: denied is a WARN.
pub(super) fn verdict<T, E>(
    op: &str,
    what: &str,
    gc_only: bool,
    context: &str,
    res: Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>,
) -> Check
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let name = format!("iam {op} ({what})");
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

/// A probe that cannot run until the group has `missing`.
pub(super) fn skipped(op: &str, what: &str, missing: &str) -> Check {
    Check::skip(
        format!("iam {op} ({what})"),
        format!("the group has no {missing} to test with yet; run doctor again after its first failover"),
    )
}

/// Every DryRun probe for one group.
pub(super) async fn checks(aws: &Aws, g: &GroupConfig, info: Option<&GroupInfo>) -> Vec<Check> {
    let ec2 = &aws.clients.ec2;
    let t = Targets::find(aws, g, info).await;
    let spec = &g.volumes[0];
    let mut out = Vec::new();
    let az = t.az.clone();

    let res = ec2
        .create_volume()
        .dry_run(true)
        .availability_zone(&az)
        .size(spec.size_gib)
        .volume_type(VolumeType::from(spec.volume_type.as_str()))
        .set_encrypted(spec.encrypted)
        .set_kms_key_id(spec.kms_key_id.clone())
        .tag_specifications(tag_spec(
            ResourceType::Volume,
            &TagSets::empty_volume(g, &t),
        ))
        .send()
        .await;
    let context = format!(" in {az}");
    out.push(verdict(
        "ec2:CreateVolume",
        "empty volume",
        false,
        &context,
        res,
    ));
    out.push(match &t.snapshot {
        Some(snap) => {
            let res = ec2
                .create_volume()
                .dry_run(true)
                .availability_zone(&az)
                .snapshot_id(&snap.id)
                .volume_type(VolumeType::from(spec.volume_type.as_str()))
                .tag_specifications(tag_spec(
                    ResourceType::Volume,
                    &TagSets::restored_volume(g, snap),
                ))
                .send()
                .await;
            let context = format!(" from {} in {az}", snap.id);
            verdict("ec2:CreateVolume", "restore", false, &context, res)
        }
        None => skipped("ec2:CreateVolume", "restore", "completed ferry snapshot"),
    });

    match &t.volume {
        Some(vol) => {
            for (what, tags) in [
                ("final delta", TagSets::final_delta(g, vol)),
                ("recovery point", TagSets::recovery_point(g, vol)),
            ] {
                let res = ec2
                    .create_snapshot()
                    .dry_run(true)
                    .volume_id(&vol.id)
                    .description("ferry doctor dry run")
                    .tag_specifications(tag_spec(ResourceType::Snapshot, &tags))
                    .send()
                    .await;
                out.push(verdict(
                    "ec2:CreateSnapshot",
                    what,
                    false,
                    &format!(" of {}", vol.id),
                    res,
                ));
            }
            // The claim rewrites the volume's own values: a no-op even if DryRun were ignored.
            let res = ec2
                .create_tags()
                .dry_run(true)
                .resources(&vol.id)
                .set_tags(Some(ec2_tags(&TagSets::claim(g, vol))))
                .send()
                .await;
            out.push(verdict(
                "ec2:CreateTags",
                "claim of a volume",
                false,
                &format!(" on {}", vol.id),
                res,
            ));
        }
        None => {
            for what in ["final delta", "recovery point"] {
                out.push(skipped("ec2:CreateSnapshot", what, "ferry volume"));
            }
            out.push(skipped(
                "ec2:CreateTags",
                "claim of a volume",
                "ferry volume",
            ));
        }
    }

    match &t.snapshot {
        Some(snap) => {
            let mut writes = vec![("snapshot data tags", TagSets::snapshot_data(snap))];
            writes.extend(TagSets::fenced_at(snap).map(|f| ("fence of a pre-copy", f)));
            for (what, tags) in writes {
                let res = ec2
                    .create_tags()
                    .dry_run(true)
                    .resources(&snap.id)
                    .set_tags(Some(ec2_tags(&tags)))
                    .send()
                    .await;
                out.push(verdict(
                    "ec2:CreateTags",
                    what,
                    false,
                    &format!(" on {}", snap.id),
                    res,
                ));
            }
        }
        None => out.push(skipped(
            "ec2:CreateTags",
            "snapshot data tags",
            "completed ferry snapshot",
        )),
    }

    match &t.instance {
        Some(me) => super::doctor_iam_instance::probes(aws, g, &t, me, &mut out).await,
        None => {
            for (op, what) in [
                ("ec2:CreateSnapshots", "pre-copy set"),
                ("ec2:AttachVolume", "data volume"),
                ("ec2:StopInstances", "fence"),
                ("ec2:DetachVolume", "data volume"),
            ] {
                out.push(skipped(op, what, "instance"));
            }
        }
    }

    // Retention's deletes (as `[gc] delete_role_arn` when set), on the group's newest snapshot (the one retention never deletes) and on an
    // attached volume (which EC2 refuses to delete even without DryRun), so that their ferry:group tag is
    // evaluated; AWS and the emulator honour DryRun.
    out.push(match &t.snapshot {
        Some(snap) => {
            let res = aws
                .deletes
                .delete_snapshot()
                .dry_run(true)
                .snapshot_id(&snap.id)
                .send()
                .await;
            verdict(
                "ec2:DeleteSnapshot",
                "retention",
                true,
                &format!(" of {}", snap.id),
                res,
            )
        }
        None => skipped(
            "ec2:DeleteSnapshot",
            "retention",
            "completed ferry snapshot",
        ),
    });
    out.push(
        match t.volume.as_ref().filter(|v| v.attached_to().is_some()) {
            Some(vol) => {
                let res = aws
                    .deletes
                    .delete_volume()
                    .dry_run(true)
                    .volume_id(&vol.id)
                    .send()
                    .await;
                verdict(
                    "ec2:DeleteVolume",
                    "retention",
                    true,
                    &format!(" of {}", vol.id),
                    res,
                )
            }
            None => skipped("ec2:DeleteVolume", "retention", "attached ferry volume"),
        },
    );
    out
}
