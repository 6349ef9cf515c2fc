//! Wire shapes of the EC2 adapter's calls, on `aws-smithy-mocks`.

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::operation::associate_address::AssociateAddressOutput;
use aws_sdk_ec2::operation::create_volume::CreateVolumeOutput;
use aws_sdk_ec2::operation::delete_volume::DeleteVolumeOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::types::{
    EbsInstanceBlockDevice, Instance, InstanceBlockDeviceMapping, InstanceState, InstanceStateName,
    Placement, Reservation, Tag as Ec2Tag, Volume, VolumeAttachment, VolumeAttachmentState,
    VolumeState as Ec2VolumeState,
};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use ferry_state_machine::observe::{AttachState, Attachment, VolumeState};
use ferry_state_machine::Generation;

use aws_sdk_ec2::types::TagSpecification;
use ferry_state_machine::tags;

use super::*;

/// An EC2 (query protocol) error response, as the service sends it.
pub(super) fn ec2_error(status: u16, code: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>injected {code}</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
    );
    Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
}

pub(super) fn has_filter(filters: &[Filter], name: &str, value: &str) -> bool {
    filters
        .iter()
        .any(|f| f.name() == Some(name) && f.values() == [value.to_string()])
}

pub(super) fn ledger_tags() -> Vec<Tag> {
    [
        (tags::GROUP, "asg-db"),
        (tags::SLOT, "0"),
        (tags::VOLUME, "data"),
        (tags::GENERATION, "7"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub(super) fn tags_of(spec: &[TagSpecification], resource: ResourceType) -> Vec<Tag> {
    spec.iter()
        .filter(|s| s.resource_type() == Some(&resource))
        .flat_map(|s| s.tags())
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(super) fn ec2_tag(k: &str, v: &str) -> Ec2Tag {
    Ec2Tag::builder().key(k).value(v).build()
}

#[tokio::test]
async fn create_volume_carries_token_snapshot_zone_and_tags() {
    let rule = mock!(Client::create_volume)
        .match_requests(|r| {
            r.client_token() == Some("ferry-tok-1")
                && r.snapshot_id() == Some("snap-1")
                && r.availability_zone() == Some("us-east-1b")
                && r.volume_type() == Some(&VolumeType::Gp3)
                && r.throughput() == Some(250)
                && r.size().is_none()
                && tags_of(r.tag_specifications(), ResourceType::Volume) == ledger_tags()
        })
        .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new").build());
    let ec2 = AwsEc2::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]));
    let req = NewVolume {
        availability_zone: "us-east-1b".into(),
        snapshot_id: Some("snap-1".into()),
        volume_type: "gp3".into(),
        throughput: Some(250),
        client_token: "ferry-tok-1".into(),
        tags: ledger_tags(),
        ..NewVolume::default()
    };
    assert_eq!(ec2.create_volume(&req).await.unwrap(), "vol-new");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn find_volumes_filters_by_ledger_tags_and_reads_every_page() {
    let query = VolumeQuery {
        group: "asg-db".into(),
        slot: Some(0),
        logical: Some("data".into()),
        attached_instance: Some("i-1".into()),
    };
    let expected = |r: &aws_sdk_ec2::operation::describe_volumes::DescribeVolumesInput| {
        let f = r.filters();
        f.len() == 4
            && has_filter(f, "tag:ferry:group", "asg-db")
            && has_filter(f, "tag:ferry:slot", "0")
            && has_filter(f, "tag:ferry:volume", "data")
            && has_filter(f, "attachment.instance-id", "i-1")
    };
    let page1 = mock!(Client::describe_volumes)
        .match_requests(move |r| expected(r) && r.next_token().is_none())
        .then_output(|| {
            let attached = VolumeAttachment::builder()
                .instance_id("i-1")
                .device("/dev/sdf")
                .state(VolumeAttachmentState::Attached)
                .build();
            let v = Volume::builder()
                .volume_id("vol-1")
                .availability_zone("us-east-1a")
                .state(Ec2VolumeState::InUse)
                .size(100)
                .attachments(attached)
                .tags(ec2_tag("ferry:volume", "data"))
                .tags(ec2_tag("ferry:generation", "3"))
                .tags(ec2_tag("ferry:hook", "tok"))
                .build();
            DescribeVolumesOutput::builder()
                .volumes(v)
                .next_token("page-2")
                .build()
        });
    let page2 = mock!(Client::describe_volumes)
        .match_requests(move |r| expected(r) && r.next_token() == Some("page-2"))
        .then_output(|| {
            let detached = VolumeAttachment::builder()
                .instance_id("i-0")
                .device("/dev/sdf")
                .state(VolumeAttachmentState::Detached)
                .build();
            let v = Volume::builder()
                .volume_id("vol-2")
                .state(Ec2VolumeState::Available)
                .attachments(detached)
                .tags(ec2_tag("ferry:generation", "not-a-number"))
                .build();
            DescribeVolumesOutput::builder().volumes(v).build()
        });
    let ec2 = AwsEc2::new(mock_client!(
        aws_sdk_ec2,
        RuleMode::Sequential,
        [&page1, &page2]
    ));
    let got = ec2.find_volumes(&query).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].attachment,
        Some(Attachment {
            instance_id: "i-1".into(),
            device: "/dev/sdf".into(),
            state: AttachState::Attached,
            delete_on_termination: false,
        })
    );
    assert_eq!(got[0].state, VolumeState::InUse);
    assert_eq!(got[0].generation, Some(Generation(3)));
    assert_eq!(
        (
            got[0].logical.as_deref(),
            got[0].hook.as_deref(),
            got[0].size_gib
        ),
        (Some("data"), Some("tok"), 100)
    );
    assert_eq!(
        (got[1].attachment.clone(), got[1].generation),
        (None, None),
        "detached is no attachment"
    );
}

#[tokio::test]
async fn describe_volumes_survives_a_missing_id() {
    let by_ids = mock!(Client::describe_volumes)
        .match_requests(|r| r.volume_ids().len() == 2)
        .then_http_response(|| ec2_error(400, "InvalidVolume.NotFound"));
    let by_filter = mock!(Client::describe_volumes)
        .match_requests(|r| {
            r.volume_ids().is_empty()
                && r.filters().first().and_then(|f| f.name()) == Some("volume-id")
        })
        .then_output(|| {
            let v = Volume::builder()
                .volume_id("vol-1")
                .state(Ec2VolumeState::Available)
                .build();
            DescribeVolumesOutput::builder().volumes(v).build()
        });
    let ec2 = AwsEc2::new(mock_client!(
        aws_sdk_ec2,
        RuleMode::Sequential,
        [&by_ids, &by_filter]
    ));
    let got = ec2
        .describe_volumes(&["vol-1".into(), "vol-gone".into()])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["vol-1"]
    );
    assert!(
        ec2.describe_volumes(&[]).await.unwrap().is_empty(),
        "no ids never asks for every volume"
    );
    assert_eq!((by_ids.num_calls(), by_filter.num_calls()), (1, 1));
}

#[tokio::test]
async fn associate_address_allows_reassociation_explicitly() {
    let rule = mock!(Client::associate_address)
        .match_requests(|r| {
            r.allocation_id() == Some("eipalloc-1")
                && r.instance_id() == Some("i-new")
                && r.allow_reassociation() == Some(true)
        })
        .then_output(|| {
            AssociateAddressOutput::builder()
                .association_id("eipassoc-1")
                .build()
        });
    let ec2 = AwsEc2::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]));
    ec2.associate_address("eipalloc-1", "i-new").await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn throttles_retry_and_zone_mismatch_is_permanent() {
    let throttled =
        mock!(Client::create_volume).then_http_response(|| ec2_error(503, "RequestLimitExceeded"));
    let mismatch = mock!(Client::attach_volume)
        .then_http_response(|| ec2_error(400, "InvalidVolume.ZoneMismatch"));
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&throttled, &mismatch],
        |c| { c.retry_config(RetryConfig::disabled()) }
    );
    let ec2 = AwsEc2::new(client);
    let e = ec2.create_volume(&NewVolume::default()).await.unwrap_err();
    assert_eq!(
        (e.disposition, e.is_throttle()),
        (Disposition::Retry, true),
        "{e:?}"
    );
    assert_eq!(e.operation, "ec2:CreateVolume");
    let e = ec2
        .attach_volume("vol-1", "i-1", "/dev/sdf")
        .await
        .unwrap_err();
    assert_eq!(e.disposition, Disposition::Permanent, "{e:?}");
    assert_eq!(e.code.as_deref(), Some("InvalidVolume.ZoneMismatch"));
}

#[tokio::test]
async fn not_found_is_none_for_instances_and_success_for_deletes() {
    let gone_instance = mock!(Client::describe_instances)
        .then_http_response(|| ec2_error(400, "InvalidInstanceID.NotFound"));
    let gone_volume = mock!(Client::delete_volume)
        .then_http_response(|| ec2_error(400, "InvalidVolume.NotFound"));
    let busy_volume =
        mock!(Client::delete_volume).then_http_response(|| ec2_error(400, "VolumeInUse"));
    let detached = mock!(Client::detach_volume)
        .then_http_response(|| ec2_error(400, "InvalidAttachment.NotFound"));
    let no_instance = mock!(Client::detach_volume)
        .then_http_response(|| ec2_error(400, "InvalidInstanceID.NotFound"));
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::Sequential,
        [
            &gone_instance,
            &gone_volume,
            &busy_volume,
            &detached,
            &no_instance
        ]
    );
    let ec2 = AwsEc2::new(client);
    assert_eq!(ec2.describe_instance("i-gone").await.unwrap(), None);
    ec2.delete_volume("vol-gone").await.unwrap();
    let e = ec2.delete_volume("vol-busy").await.unwrap_err();
    assert_eq!(
        (e.disposition, e.code.as_deref()),
        (Disposition::Permanent, Some("VolumeInUse"))
    );
    // A detach of a volume no longer attached to that instance: the goal holds.
    ec2.detach_volume("vol-free", "i-a").await.unwrap();
    let e = ec2.detach_volume("vol-x", "i-gone").await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("InvalidInstanceID.NotFound"));
}

#[tokio::test]
async fn describe_instance_maps_zone_state_and_root_volume() {
    let rule = mock!(Client::describe_instances)
        .match_requests(|r| r.instance_ids() == ["i-1".to_string()])
        .then_output(|| {
            let bdm = |dev: &str, vol: &str| {
                InstanceBlockDeviceMapping::builder()
                    .device_name(dev)
                    .ebs(EbsInstanceBlockDevice::builder().volume_id(vol).build())
                    .build()
            };
            let i = Instance::builder()
                .instance_id("i-1")
                .placement(Placement::builder().availability_zone("us-east-1c").build())
                .state(
                    InstanceState::builder()
                        .name(InstanceStateName::Running)
                        .build(),
                )
                .root_device_name("/dev/xvda")
                .block_device_mappings(bdm("/dev/xvda", "vol-root"))
                .block_device_mappings(bdm("/dev/sdf", "vol-data"))
                .tags(ec2_tag("Name", "db"))
                .build();
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(i).build())
                .build()
        });
    let ec2 = AwsEc2::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]));
    let i = ec2.describe_instance("i-1").await.unwrap().unwrap();
    assert_eq!(
        (i.availability_zone.as_str(), i.state.as_str()),
        ("us-east-1c", "running")
    );
    assert_eq!(i.volume_ids, ["vol-root", "vol-data"]);
    assert_eq!(i.root_volume_id.as_deref(), Some("vol-root"));
    assert_eq!(i.tag("Name"), Some("db"));
}

#[tokio::test]
async fn delete_volume_success_sends_the_id() {
    let rule = mock!(Client::delete_volume)
        .match_requests(|r| r.volume_id() == Some("vol-9"))
        .then_output(|| DeleteVolumeOutput::builder().build());
    let ec2 = AwsEc2::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]));
    ec2.delete_volume("vol-9").await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn disassociating_an_allocation_that_is_gone_is_done() {
    let gone = mock!(Client::describe_addresses)
        .then_http_response(|| ec2_error(400, "InvalidAllocationID.NotFound"));
    let denied = mock!(Client::describe_addresses)
        .then_http_response(|| ec2_error(400, "UnauthorizedOperation"));
    let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&gone, &denied]);
    let ec2 = AwsEc2::new(client);
    ec2.disassociate_address("eipalloc-gone", "i-a")
        .await
        .unwrap();
    let e = ec2
        .disassociate_address("eipalloc-x", "i-a")
        .await
        .unwrap_err();
    assert_eq!(
        (e.disposition, e.code.as_deref()),
        (Disposition::Permanent, Some("UnauthorizedOperation"))
    );
    assert_eq!((gone.num_calls(), denied.num_calls()), (1, 1));
}
