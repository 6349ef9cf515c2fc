//! The port calls a step makes, with the step's names resolved to ids.

use std::collections::BTreeMap;

use ferry_state_machine::StepError;

use super::run::Names;
use super::spec::{Call, Step};
use crate::ports::{Ec2, NewVolume, SnapshotQuery, Tag, VolumeQuery};

/// What a call returned.
#[derive(Debug)]
pub(super) enum Got {
    Unit,
    Id(String),
    Ids(Vec<String>),
    Pairs(Vec<(String, String)>),
    Batches(Vec<Vec<String>>),
    Found(bool),
}

pub(super) fn tags_of(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn need<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, String> {
    v.as_deref()
        .ok_or_else(|| format!("the step needs `{what}`"))
}

/// Makes the step's call; `Err` only for a step the runner cannot make (a missing argument).
pub(super) async fn call<E: Ec2>(
    ec2: &E,
    n: &Names,
    s: &Step,
) -> Result<Result<Got, StepError>, String> {
    let id = |v: &Option<String>, what: &str| need(v, what).map(|name| n.id(name));
    let ids: Vec<String> = s.ids.iter().map(|i| n.id(i)).collect();
    let tags = tags_of(&s.tags);
    let unit = |r: Result<(), StepError>| r.map(|()| Got::Unit);
    Ok(match s.call {
        Call::CreateVolume => {
            let req = NewVolume {
                availability_zone: need(&s.az, "az")?.to_string(),
                snapshot_id: s.snapshot.as_deref().map(|x| n.id(x)),
                size_gib: s.size,
                volume_type: s.volume_type.clone().unwrap_or_else(|| "gp3".into()),
                encrypted: s.encrypted,
                kms_key_id: s.kms_key_id.clone(),
                client_token: s.token.clone().unwrap_or_default(),
                tags,
                ..NewVolume::default()
            };
            ec2.create_volume(&req).await.map(Got::Id)
        }
        Call::AttachVolume => {
            let instance = id(&s.instance, "instance")?;
            let device = n.device(&instance, need(&s.device, "device")?);
            let volume = id(&s.volume, "volume")?;
            unit(ec2.attach_volume(&volume, &instance, &device).await)
        }
        Call::DetachVolume => {
            let (v, i) = (id(&s.volume, "volume")?, id(&s.instance, "instance")?);
            unit(ec2.detach_volume(&v, &i).await)
        }
        Call::DeleteVolume => unit(ec2.delete_volume(&id(&s.volume, "volume")?).await),
        Call::DescribeVolumes => ec2
            .describe_volumes(&ids)
            .await
            .map(|vs| Got::Ids(vs.into_iter().map(|v| v.id).collect())),
        Call::FindVolumes => {
            let q = VolumeQuery {
                group: need(&s.group, "group")?.to_string(),
                slot: s.slot,
                logical: s.logical.clone(),
                attached_instance: s.instance.as_deref().map(|i| n.id(i)),
            };
            ec2.find_volumes(&q)
                .await
                .map(|vs| Got::Ids(vs.into_iter().map(|v| v.id).collect()))
        }
        Call::FindVolumesBatch => {
            let qs: Vec<VolumeQuery> = s
                .queries
                .iter()
                .map(|q| VolumeQuery {
                    group: q.group.clone(),
                    slot: q.slot,
                    logical: q.logical.clone(),
                    attached_instance: q.instance.as_deref().map(|i| n.id(i)),
                })
                .collect();
            ec2.find_volumes_batch(&qs).await.map(|all| {
                Got::Batches(
                    all.into_iter()
                        .map(|vs| vs.into_iter().map(|v| v.id).collect())
                        .collect(),
                )
            })
        }
        Call::TagVolume => unit(ec2.tag_volume(&id(&s.volume, "volume")?, &tags).await),
        Call::CreateSnapshot => {
            let volume = id(&s.volume, "volume")?;
            ec2.create_snapshot(&volume, "ferry contract", &tags)
                .await
                .map(Got::Id)
        }
        Call::CreateSnapshots => {
            let instance = id(&s.instance, "instance")?;
            ec2.create_snapshots(&instance, &ids, &tags)
                .await
                .map(Got::Pairs)
        }
        Call::DeleteSnapshot => unit(ec2.delete_snapshot(&id(&s.snapshot, "snapshot")?).await),
        Call::DescribeSnapshots => ec2
            .describe_snapshots(&ids)
            .await
            .map(|ss| Got::Ids(ss.into_iter().map(|s| s.id).collect())),
        Call::FindSnapshots => {
            let q = SnapshotQuery {
                group: need(&s.group, "group")?.to_string(),
                slot: s.slot,
                logical: s.logical.clone(),
                hook: None,
                volume_id: s.volume.as_deref().map(|v| n.id(v)),
            };
            ec2.find_snapshots(&q)
                .await
                .map(|ss| Got::Ids(ss.into_iter().map(|s| s.id).collect()))
        }
        Call::FindSnapshotsBatch => {
            let qs: Vec<SnapshotQuery> = s
                .queries
                .iter()
                .map(|q| SnapshotQuery {
                    group: q.group.clone(),
                    slot: q.slot,
                    logical: q.logical.clone(),
                    hook: q.hook.clone(),
                    volume_id: q.volume.as_deref().map(|v| n.id(v)),
                })
                .collect();
            ec2.find_snapshots_batch(&qs).await.map(|all| {
                Got::Batches(
                    all.into_iter()
                        .map(|ss| ss.into_iter().map(|s| s.id).collect())
                        .collect(),
                )
            })
        }
        Call::TagSnapshot => unit(ec2.tag_snapshot(&id(&s.snapshot, "snapshot")?, &tags).await),
        Call::DescribeInstance => ec2
            .describe_instance(&id(&s.instance, "instance")?)
            .await
            .map(|i| Got::Found(i.is_some())),
        Call::DescribeInstances => ec2
            .describe_instances(&ids)
            .await
            .map(|is| Got::Ids(is.into_iter().map(|i| i.id).collect())),
        Call::TagInstance => unit(ec2.tag_instance(&id(&s.instance, "instance")?, &tags).await),
        Call::StopInstance => unit(ec2.stop_instance(&id(&s.instance, "instance")?).await),
        Call::DescribeAddress => ec2
            .describe_address(&id(&s.address, "address")?)
            .await
            .map(|a| Got::Found(a.is_some())),
        Call::DescribeAddresses => ec2
            .describe_addresses(&ids)
            .await
            .map(|as_| Got::Ids(as_.into_iter().map(|a| a.allocation_id).collect())),
        Call::AssociateAddress => {
            let (a, i) = (id(&s.address, "address")?, id(&s.instance, "instance")?);
            unit(ec2.associate_address(&a, &i).await)
        }
        Call::DisassociateAddress => {
            let (a, i) = (id(&s.address, "address")?, id(&s.instance, "instance")?);
            unit(ec2.disassociate_address(&a, &i).await)
        }
    })
}
