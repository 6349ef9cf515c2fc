//! The `Snapshots` port on `aws-sdk-ec2`.

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceSpecification, ResourceType};
use ferry_state_machine::error::{sdk_error, StepError};
use ferry_state_machine::observe::ObservedSnapshot;
use ferry_state_machine::Disposition;

use super::map::{self, snapshot_filters, tag_spec};
use super::{is_code, missing, AwsEc2};
use crate::ports::{SnapshotQuery, Snapshots, Tag};

impl AwsEc2 {
    async fn snapshots_matching(
        &self,
        op: &str,
        filters: Vec<Filter>,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        let mut pages = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let snapshot = item.map_err(|e| sdk_error(op, &e))?;
            out.extend(map::observe_snapshot(&snapshot));
        }
        Ok(out)
    }
}

#[async_trait]
impl Snapshots for AwsEc2 {
    async fn find_snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.snapshots_matching("ec2:DescribeSnapshots", snapshot_filters(query))
            .await
    }

    async fn find_snapshots_batch(
        &self,
        queries: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        self.snapshots_of(queries).await
    }

    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        const OP: &str = "ec2:DescribeSnapshots";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let res = self
            .client
            .describe_snapshots()
            .set_snapshot_ids(Some(ids.to_vec()))
            .send()
            .await;
        match res {
            Ok(out) => Ok(out
                .snapshots()
                .iter()
                .filter_map(map::observe_snapshot)
                .collect()),
            Err(e) => {
                let err = sdk_error(OP, &e);
                if !is_code(&err, "InvalidSnapshot.NotFound") {
                    return Err(err);
                }
                let by_id = Filter::builder()
                    .name("snapshot-id")
                    .set_values(Some(ids.to_vec()))
                    .build();
                self.snapshots_matching(OP, vec![by_id]).await
            }
        }
    }

    async fn create_snapshots(
        &self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        const OP: &str = "ec2:CreateSnapshots";
        let spec = InstanceSpecification::builder()
            .instance_id(instance_id)
            .exclude_boot_volume(true)
            .set_exclude_data_volume_ids((!exclude.is_empty()).then(|| exclude.to_vec()))
            .build();
        let out = self
            .client
            .create_snapshots()
            .instance_specification(spec)
            .description(format!("ferry: volumes of {instance_id}"))
            // No CopyTagsFromSource: the volume's own ferry:hook and Name must not reach the snapshot, where
            // they could shadow the terminate's dedupe key. Per-volume ledger tags follow by CreateTags.
            .set_tag_specifications(tag_spec(ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(|e| sdk_error(OP, &e))?;
        Ok(out
            .snapshots()
            .iter()
            .filter_map(|s| Some((s.snapshot_id()?.to_string(), s.volume_id()?.to_string())))
            .collect())
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<String, StepError> {
        const OP: &str = "ec2:CreateSnapshot";
        let out = self
            .client
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .set_tag_specifications(tag_spec(ResourceType::Snapshot, tags))
            .send()
            .await
            .map_err(|e| sdk_error(OP, &e))?;
        // No client token here: a blind retry could take a second snapshot, so let the caller look first.
        out.snapshot_id()
            .map(str::to_string)
            .ok_or_else(|| missing(OP, "SnapshotId", Disposition::Permanent))
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), StepError> {
        match self
            .client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("ec2:DeleteSnapshot", &e) {
                err if is_code(&err, "InvalidSnapshot.NotFound") => Ok(()),
                err => Err(err),
            },
        }
    }

    async fn tag_snapshot(&self, snapshot_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.create_tags("ec2:CreateTags", snapshot_id, tags).await
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::operation::create_snapshots::CreateSnapshotsOutput;
    use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_ec2::types::{Snapshot, SnapshotInfo, SnapshotState as Ec2SnapshotState};
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_types::DateTime;
    use ferry_state_machine::observe::{SnapshotReason, SnapshotState};
    use ferry_state_machine::Generation;

    use super::super::tests::{ec2_tag, has_filter, ledger_tags, tags_of};
    use super::*;

    #[tokio::test]
    async fn create_snapshots_excludes_boot_and_given_volumes_and_tags_explicitly() {
        let rule = mock!(Client::create_snapshots)
            .match_requests(|r| {
                let spec = r.instance_specification();
                spec.and_then(|s| s.instance_id()) == Some("i-old")
                    && spec.and_then(|s| s.exclude_boot_volume()) == Some(true)
                    && spec.map(|s| s.exclude_data_volume_ids().to_vec())
                        == Some(vec!["vol-scratch".to_string()])
                    && r.copy_tags_from_source().is_none()
                    && tags_of(r.tag_specifications(), ResourceType::Snapshot) == ledger_tags()
            })
            .then_output(|| {
                CreateSnapshotsOutput::builder()
                    .snapshots(
                        SnapshotInfo::builder()
                            .snapshot_id("snap-a")
                            .volume_id("vol-a")
                            .build(),
                    )
                    .snapshots(
                        SnapshotInfo::builder()
                            .snapshot_id("snap-b")
                            .volume_id("vol-b")
                            .build(),
                    )
                    .build()
            });
        let ec2 = AwsEc2::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]));
        let got = ec2
            .create_snapshots("i-old", &["vol-scratch".to_string()], &ledger_tags())
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("snap-a".into(), "vol-a".into()),
                ("snap-b".into(), "vol-b".into())
            ]
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn find_snapshots_asks_for_own_snapshots_with_ledger_filters() {
        let rule = mock!(Client::describe_snapshots)
            .match_requests(|r| {
                let f = r.filters();
                r.owner_ids() == ["self".to_string()]
                    && f.len() == 4
                    && has_filter(f, "tag:ferry:group", "asg-db")
                    && has_filter(f, "tag:ferry:volume", "data")
                    && has_filter(f, "tag:ferry:hook", "tok-9")
                    && has_filter(f, "volume-id", "vol-1")
            })
            .then_output(|| {
                let s = Snapshot::builder()
                    .snapshot_id("snap-1")
                    .volume_id("vol-1")
                    .state(Ec2SnapshotState::Recoverable)
                    .progress("40%")
                    .start_time(DateTime::from_secs(1_700_000_000))
                    .tags(ec2_tag("ferry:reason", "terminate"))
                    .tags(ec2_tag("ferry:generation", "5"))
                    .build();
                DescribeSnapshotsOutput::builder().snapshots(s).build()
            });
        let ec2 = AwsEc2::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]));
        let q = SnapshotQuery {
            group: "asg-db".into(),
            logical: Some("data".into()),
            hook: Some("tok-9".into()),
            volume_id: Some("vol-1".into()),
            ..SnapshotQuery::default()
        };
        let got = ec2.find_snapshots(&q).await.unwrap();
        assert_eq!(got.len(), 1);
        let s = &got[0];
        assert_eq!(
            (s.state, s.progress.as_deref()),
            (SnapshotState::Pending, Some("40%"))
        );
        assert_eq!(
            (s.reason, s.generation),
            (Some(SnapshotReason::Precopy), Some(Generation(5)))
        );
        assert_eq!(s.start_time, Some(1_700_000_000));
    }
}
