//! The EC2 ports (`Volumes`, `Snapshots`, `Instances`, `Addresses`) on `aws-sdk-ec2`.
//!
//! EC2 models no error shapes: every error arrives unhandled with its AWS code, and `sdk_error` classifies it.

mod batch;
mod map;
mod snapshots;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, ResourceType, VolumeType};
use aws_sdk_ec2::Client;
use ferry_state_machine::error::{sdk_error, StepError};
use ferry_state_machine::observe::{ObservedAddress, ObservedInstance, ObservedVolume};
use ferry_state_machine::Disposition;

use crate::ports::{Addresses, Instances, NewVolume, Tag, VolumeQuery, Volumes};

pub(crate) use map::ledger;
use map::{ec2_tags, tag_spec, volume_filters};

/// EC2 through the AWS SDK: the real implementation of every EC2 port.
#[derive(Debug, Clone)]
pub struct AwsEc2 {
    client: Client,
}

impl AwsEc2 {
    /// Wraps an SDK client.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The wrapped SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn volumes_matching(
        &self,
        op: &str,
        filters: Vec<Filter>,
    ) -> Result<Vec<ObservedVolume>, StepError> {
        let mut pages = self
            .client
            .describe_volumes()
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let volume = item.map_err(|e| sdk_error(op, &e))?;
            out.extend(map::observe_volume(&volume));
        }
        Ok(out)
    }

    async fn create_tags(
        &self,
        op: &str,
        resource_id: &str,
        tags: &[Tag],
    ) -> Result<(), StepError> {
        if tags.is_empty() {
            return Ok(());
        }
        self.client
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(ec2_tags(tags)))
            .send()
            .await
            .map_err(|e| sdk_error(op, &e))?;
        Ok(())
    }
}

fn is_code(err: &StepError, code: &str) -> bool {
    err.code.as_deref() == Some(code)
}

/// An error for a successful response that lacks a field ferry needs.
fn missing(op: &str, what: &str, disposition: Disposition) -> StepError {
    StepError::new(op, None, format!("the response has no {what}"), disposition)
}

#[async_trait]
impl Volumes for AwsEc2 {
    async fn find_volumes(&self, query: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.volumes_matching("ec2:DescribeVolumes", volume_filters(query))
            .await
    }

    async fn find_volumes_batch(
        &self,
        queries: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        self.volumes_of(queries).await
    }

    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        const OP: &str = "ec2:DescribeVolumes";
        if ids.is_empty() {
            // No ids would mean "every volume of the account".
            return Ok(Vec::new());
        }
        let res = self
            .client
            .describe_volumes()
            .set_volume_ids(Some(ids.to_vec()))
            .send()
            .await;
        match res {
            Ok(out) => Ok(out
                .volumes()
                .iter()
                .filter_map(map::observe_volume)
                .collect()),
            Err(e) => {
                let err = sdk_error(OP, &e);
                if !is_code(&err, "InvalidVolume.NotFound") {
                    return Err(err);
                }
                // One missing id fails the whole call; a filter returns whatever exists.
                let by_id = Filter::builder()
                    .name("volume-id")
                    .set_values(Some(ids.to_vec()))
                    .build();
                self.volumes_matching(OP, vec![by_id]).await
            }
        }
    }

    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        const OP: &str = "ec2:CreateVolume";
        let out = self
            .client
            .create_volume()
            .availability_zone(&req.availability_zone)
            .set_snapshot_id(req.snapshot_id.clone())
            .set_size(req.size_gib)
            .set_volume_type(
                (!req.volume_type.is_empty()).then(|| VolumeType::from(req.volume_type.as_str())),
            )
            .set_iops(req.iops)
            .set_throughput(req.throughput)
            .set_encrypted(req.encrypted)
            .set_kms_key_id(req.kms_key_id.clone())
            .set_client_token((!req.client_token.is_empty()).then(|| req.client_token.clone()))
            .set_tag_specifications(tag_spec(ResourceType::Volume, &req.tags))
            .send()
            .await
            .map_err(|e| sdk_error(OP, &e))?;
        // Retrying is safe: the client token makes the create idempotent.
        out.volume_id()
            .map(str::to_string)
            .ok_or_else(|| missing(OP, "VolumeId", Disposition::Retry))
    }

    async fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), StepError> {
        self.client
            .attach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .device(device)
            .send()
            .await
            .map_err(|e| sdk_error("ec2:AttachVolume", &e))?;
        Ok(())
    }

    async fn detach_volume(&self, volume_id: &str, instance_id: &str) -> Result<(), StepError> {
        match self
            .client
            .detach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("ec2:DetachVolume", &e) {
                // Not attached to that instance (detached meanwhile, e.g. a second replica's fence): the
                // goal holds. The caller observes the volume again before its next step.
                err if is_code(&err, "InvalidAttachment.NotFound") => Ok(()),
                err => Err(err),
            },
        }
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), StepError> {
        match self
            .client
            .delete_volume()
            .volume_id(volume_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("ec2:DeleteVolume", &e) {
                err if is_code(&err, "InvalidVolume.NotFound") => Ok(()),
                err => Err(err),
            },
        }
    }

    async fn tag_volume(&self, volume_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.create_tags("ec2:CreateTags", volume_id, tags).await
    }
}

#[async_trait]
impl Instances for AwsEc2 {
    async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<ObservedInstance>, StepError> {
        match self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(instance_id))
                .map(map::observe_instance)),
            Err(e) => match sdk_error("ec2:DescribeInstances", &e) {
                err if is_code(&err, "InvalidInstanceID.NotFound") => Ok(None),
                err => Err(err),
            },
        }
    }

    async fn describe_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<ObservedInstance>, StepError> {
        self.instances_of(instance_ids).await
    }

    async fn tag_instance(&self, instance_id: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.create_tags("ec2:CreateTags", instance_id, tags).await
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<(), StepError> {
        // StopInstances of a stopping or stopped instance succeeds: the call is idempotent as it is.
        self.client
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| sdk_error("ec2:StopInstances", &e))?;
        Ok(())
    }
}

#[async_trait]
impl Addresses for AwsEc2 {
    async fn describe_address(
        &self,
        allocation_id: &str,
    ) -> Result<Option<ObservedAddress>, StepError> {
        match self
            .client
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .addresses()
                .iter()
                .find(|a| a.allocation_id() == Some(allocation_id))
                .map(|a| ObservedAddress {
                    allocation_id: allocation_id.to_string(),
                    public_ip: a.public_ip().unwrap_or_default().to_string(),
                    instance_id: a
                        .instance_id()
                        .filter(|i| !i.is_empty())
                        .map(str::to_string),
                })),
            Err(e) => match sdk_error("ec2:DescribeAddresses", &e) {
                err if is_code(&err, "InvalidAllocationID.NotFound") => Ok(None),
                err => Err(err),
            },
        }
    }

    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<ObservedAddress>, StepError> {
        self.addresses_of(allocation_ids).await
    }

    async fn associate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        self.client
            .associate_address()
            .allocation_id(allocation_id)
            .instance_id(instance_id)
            // Explicit: the default differs between EC2-Classic and VPC accounts and across implementations.
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| sdk_error("ec2:AssociateAddress", &e))?;
        Ok(())
    }

    async fn disassociate_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), StepError> {
        let out = match self
            .client
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => match sdk_error("ec2:DescribeAddresses", &e) {
                // An allocation that no longer exists (released) is on no instance: the goal holds, as
                // `describe_address` reads it as `None`.
                err if is_code(&err, "InvalidAllocationID.NotFound") => return Ok(()),
                err => return Err(err),
            },
        };
        let Some(association) = out
            .addresses()
            .iter()
            .find(|a| {
                a.allocation_id() == Some(allocation_id) && a.instance_id() == Some(instance_id)
            })
            .and_then(|a| a.association_id())
        else {
            return Ok(()); // not (or no longer) on this instance: nothing to take off
        };
        match self
            .client
            .disassociate_address()
            .association_id(association)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match sdk_error("ec2:DisassociateAddress", &e) {
                // Disassociated meanwhile (a race with another move): the goal holds.
                err if is_code(&err, "InvalidAssociationID.NotFound") => Ok(()),
                err => Err(err),
            },
        }
    }
}
