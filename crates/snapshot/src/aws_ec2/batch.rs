//! Batched reads on `aws-sdk-ec2`: many queries answered by one filtered, paged call per 200 filter values,
//! then split client-side. Filtered and paged, every call draws from EC2's standard Describe bucket, not the
//! smaller one of unfiltered, unpaged calls.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, Snapshot, Volume};
use ferry_state_machine::error::{sdk_error, StepError};
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::tags;

use super::{map, AwsEc2};
use crate::ports::{SnapshotQuery, VolumeQuery};

/// Values per filter: EC2 accepts up to 200 in one filter.
pub(super) const FILTER_VALUES: usize = 200;
const VOLUME_PAGE: i32 = 500;
const SNAPSHOT_PAGE: i32 = 1000;
const INSTANCE_PAGE: i32 = 1000;

fn values_filter(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

fn tag<'a>(t: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    t.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn slot_matches(t: &[aws_sdk_ec2::types::Tag], slot: Option<u32>) -> bool {
    slot.is_none_or(|s| tag(t, tags::SLOT) == Some(s.to_string().as_str()))
}

/// What `map::volume_filters(q)` selects, evaluated on a volume EC2 returned.
fn volume_matches(q: &VolumeQuery, v: &Volume) -> bool {
    let t = v.tags();
    tag(t, tags::GROUP) == Some(q.group.as_str())
        && slot_matches(t, q.slot)
        && q.logical
            .as_deref()
            .is_none_or(|l| tag(t, tags::VOLUME) == Some(l))
        && q.attached_instance
            .as_deref()
            .is_none_or(|i| v.attachments().iter().any(|a| a.instance_id() == Some(i)))
}

/// What `map::snapshot_filters(q)` selects, evaluated on a snapshot EC2 returned.
fn snapshot_matches(q: &SnapshotQuery, s: &Snapshot) -> bool {
    let t = s.tags();
    tag(t, tags::GROUP) == Some(q.group.as_str())
        && slot_matches(t, q.slot)
        && q.logical
            .as_deref()
            .is_none_or(|l| tag(t, tags::VOLUME) == Some(l))
        && q.hook
            .as_deref()
            .is_none_or(|h| tag(t, tags::HOOK) == Some(h))
        && q.volume_id
            .as_deref()
            .is_none_or(|id| s.volume_id() == Some(id))
}

/// The distinct values, sorted (stable requests), in chunks a filter takes.
fn chunks<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Vec<String>> {
    let all: Vec<String> = values
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    all.chunks(FILTER_VALUES).map(<[String]>::to_vec).collect()
}

/// The slot every query asks for, when they agree: one more filter that narrows every page.
fn common_slot(slots: impl Iterator<Item = Option<u32>>) -> Option<u32> {
    let all: BTreeSet<Option<u32>> = slots.collect();
    match all.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(s)] => Some(*s),
        _ => None,
    }
}

impl AwsEc2 {
    pub(super) async fn volumes_of(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        const OP: &str = "ec2:DescribeVolumes";
        let slot = common_slot(queries.iter().map(|q| q.slot));
        let mut raw = Vec::new();
        for groups in chunks(queries.iter().map(|q| q.group.as_str())) {
            let mut filters = vec![values_filter(&format!("tag:{}", tags::GROUP), &groups)];
            filters.extend(
                slot.map(|s| values_filter(&format!("tag:{}", tags::SLOT), &[s.to_string()])),
            );
            let mut pages = self
                .client
                .describe_volumes()
                .set_filters(Some(filters))
                .max_results(VOLUME_PAGE)
                .into_paginator()
                .items()
                .send();
            while let Some(v) = pages.next().await {
                raw.push(v.map_err(|e| sdk_error(OP, &e))?);
            }
        }
        Ok(queries
            .iter()
            .map(|q| {
                raw.iter()
                    .filter(|v| volume_matches(q, v))
                    .filter_map(map::observe_volume)
                    .collect()
            })
            .collect())
    }

    pub(super) async fn snapshots_of(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        const OP: &str = "ec2:DescribeSnapshots";
        // Every query names its hook (the terminate's): select by hook, a handful of snapshots each. Otherwise
        // by group, narrowed by the common slot.
        let by_hook = queries.iter().all(|q| q.hook.is_some());
        let (key, values) = if by_hook {
            let hooks = queries.iter().filter_map(|q| q.hook.as_deref());
            (tags::HOOK, chunks(hooks))
        } else {
            (
                tags::GROUP,
                chunks(queries.iter().map(|q| q.group.as_str())),
            )
        };
        let slot = common_slot(queries.iter().map(|q| q.slot));
        let mut raw = Vec::new();
        for chunk in values {
            let mut filters = vec![values_filter(&format!("tag:{key}"), &chunk)];
            filters.extend(
                slot.map(|s| values_filter(&format!("tag:{}", tags::SLOT), &[s.to_string()])),
            );
            let mut pages = self
                .client
                .describe_snapshots()
                .owner_ids("self")
                .set_filters(Some(filters))
                .max_results(SNAPSHOT_PAGE)
                .into_paginator()
                .items()
                .send();
            while let Some(s) = pages.next().await {
                raw.push(s.map_err(|e| sdk_error(OP, &e))?);
            }
        }
        Ok(queries
            .iter()
            .map(|q| {
                raw.iter()
                    .filter(|s| snapshot_matches(q, s))
                    .filter_map(map::observe_snapshot)
                    .collect()
            })
            .collect())
    }

    pub(super) async fn instances_of(
        &self,
        ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
        const OP: &str = "ec2:DescribeInstances";
        let mut out = Vec::new();
        // A filter, not InstanceIds: an unknown id is left out instead of failing the call, and the call
        // may page.
        for chunk in chunks(ids.iter().map(String::as_str)) {
            let mut pages = self
                .client
                .describe_instances()
                .filters(values_filter("instance-id", &chunk))
                .max_results(INSTANCE_PAGE)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| sdk_error(OP, &e))?;
                out.extend(
                    page.reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .map(map::observe_instance),
                );
            }
        }
        Ok(out)
    }

    pub(super) async fn addresses_of(
        &self,
        ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
        const OP: &str = "ec2:DescribeAddresses";
        let mut out = Vec::new();
        for chunk in chunks(ids.iter().map(String::as_str)) {
            let page = self
                .client
                .describe_addresses()
                .filters(values_filter("allocation-id", &chunk))
                .send()
                .await
                .map_err(|e| sdk_error(OP, &e))?;
            out.extend(page.addresses().iter().filter_map(|a| {
                Some(ObservedAddress {
                    allocation_id: a.allocation_id()?.to_string(),
                    public_ip: a.public_ip().unwrap_or_default().to_string(),
                    instance_id: a
                        .instance_id()
                        .filter(|i| !i.is_empty())
                        .map(str::to_string),
                })
            }));
        }
        Ok(out)
    }
}
