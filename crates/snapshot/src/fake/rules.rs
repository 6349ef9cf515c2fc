//! AWS's validation rules and error codes, applied to the fake's state.

use ferry_state_machine::observe::{AttachState, Attachment, SnapshotState, VolumeState};
use ferry_state_machine::StepError;
use tokio::time::Instant;

use super::state::{Inner, SnapRec, VolRec};
use super::{aws_error, FakeVolume};
use crate::ports::{NewVolume, Tag};

/// The longest `ClientToken` EC2 accepts.
const MAX_CLIENT_TOKEN: usize = 64;

pub(super) fn volume_not_found(op: &str, id: &str) -> StepError {
    aws_error(
        op,
        "InvalidVolume.NotFound",
        format!("The volume '{id}' does not exist."),
    )
}

pub(super) fn instance_not_found(op: &str, id: &str) -> StepError {
    aws_error(
        op,
        "InvalidInstanceID.NotFound",
        format!("The instance ID '{id}' does not exist"),
    )
}

pub(super) fn snapshot_not_found(op: &str, id: &str) -> StepError {
    aws_error(
        op,
        "InvalidSnapshot.NotFound",
        format!("The snapshot '{id}' does not exist."),
    )
}

impl Inner {
    pub(super) fn call(&mut self, op: &str) {
        self.calls.push(op.to_string());
    }

    pub(super) fn create_volume(
        &mut self,
        req: &NewVolume,
        now: Instant,
    ) -> Result<String, StepError> {
        const OP: &str = "CreateVolume";
        if req.client_token.len() > MAX_CLIENT_TOKEN {
            return Err(aws_error(
                OP,
                "InvalidParameterValue",
                "ClientToken is longer than 64 characters",
            ));
        }
        if let Some((prev, id)) = self
            .tokens
            .get(&req.client_token)
            .filter(|_| !req.client_token.is_empty())
        {
            if prev != req {
                return Err(aws_error(
                    OP,
                    "IdempotentParameterMismatch",
                    "The client token was used with other parameters",
                ));
            }
            return Ok(id.clone());
        }
        if !self.azs.contains(&req.availability_zone) {
            let msg = format!("Invalid availability zone: [{}]", req.availability_zone);
            return Err(aws_error(OP, "InvalidParameterValue", msg));
        }
        let content = req
            .snapshot_id
            .as_deref()
            .and_then(|id| self.snapshots.get(id))
            .map_or(0, |s| s.s.content);
        let size = match req.snapshot_id.as_deref() {
            Some(snap_id) => {
                let snap = self
                    .snapshots
                    .get(snap_id)
                    .ok_or_else(|| snapshot_not_found(OP, snap_id))?;
                if snap.s.state != SnapshotState::Completed {
                    let msg =
                        format!("Snapshot is in invalid state - {:?}", snap.s.state).to_lowercase();
                    return Err(aws_error(OP, "IncorrectState", msg));
                }
                match req.size_gib {
                    Some(s) if s < snap.s.size_gib => {
                        let msg = format!(
                            "Volume of {s}GiB is smaller than snapshot {snap_id}, {}GiB",
                            snap.s.size_gib
                        );
                        return Err(aws_error(OP, "InvalidParameterValue", msg));
                    }
                    Some(s) => s,
                    None => snap.s.size_gib,
                }
            }
            None => req.size_gib.ok_or_else(|| {
                aws_error(
                    OP,
                    "MissingParameter",
                    "The request must contain the parameter size or snapshotId",
                )
            })?,
        };
        if req.kms_key_id.is_some() && req.encrypted != Some(true) {
            return Err(aws_error(
                OP,
                "InvalidParameterDependency",
                "The parameter KmsKeyId requires the parameter Encrypted to be set.",
            ));
        }
        let id = self.new_id("vol");
        let v = FakeVolume {
            state: VolumeState::Creating,
            snapshot_id: req.snapshot_id.clone(),
            volume_type: if req.volume_type.is_empty() {
                "gp2".into()
            } else {
                req.volume_type.clone()
            },
            iops: req.iops,
            throughput: req.throughput,
            encrypted: req.encrypted.unwrap_or(false),
            kms_key_id: req.kms_key_id.clone(),
            client_token: (!req.client_token.is_empty()).then(|| req.client_token.clone()),
            content,
            ..FakeVolume::available(&id, &req.availability_zone, size, &req.tags)
        };
        let mut rec = VolRec::new(v);
        rec.ready_at = Some(now + self.timings.volume_create);
        self.volumes.insert(id.clone(), rec);
        self.pending_volumes.insert(id.clone());
        if !req.client_token.is_empty() {
            self.tokens
                .insert(req.client_token.clone(), (req.clone(), id.clone()));
        }
        Ok(id)
    }

    pub(super) fn attach(
        &mut self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
        now: Instant,
    ) -> Result<(), StepError> {
        const OP: &str = "AttachVolume";
        let inst = self
            .instances
            .get(instance_id)
            .ok_or_else(|| instance_not_found(OP, instance_id))?;
        let vol = self
            .volumes
            .get(volume_id)
            .ok_or_else(|| volume_not_found(OP, volume_id))?;
        if matches!(inst.state.as_str(), "shutting-down" | "terminated") {
            let msg = format!(
                "The instance '{instance_id}' is not in a valid state for this operation ({}).",
                inst.state
            );
            return Err(aws_error(OP, "IncorrectInstanceState", msg));
        }
        if let Some(a) = &vol.v.attachment {
            let msg = format!(
                "{volume_id} is already attached to an instance ({})",
                a.instance_id
            );
            return Err(aws_error(OP, "VolumeInUse", msg));
        }
        if vol.v.state != VolumeState::Available {
            let msg = format!("The volume '{volume_id}' is not in the 'available' state.");
            return Err(aws_error(OP, "IncorrectState", msg));
        }
        if vol.v.availability_zone != inst.az {
            let msg = format!("The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'");
            return Err(aws_error(OP, "InvalidVolume.ZoneMismatch", msg));
        }
        let taken = inst.root_device == device
            || self
                .attached_to(instance_id)
                .iter()
                .any(|r| r.v.attachment.as_ref().is_some_and(|a| a.device == device));
        if taken {
            let msg = format!("Invalid value '{device}' for unixDevice. Attachment point {device} is already in use");
            return Err(aws_error(OP, "InvalidParameterValue", msg));
        }
        let due = now + self.timings.attach;
        if let Some(rec) = self.volumes.get_mut(volume_id) {
            rec.v.state = VolumeState::InUse;
            rec.v.attachment = Some(Attachment {
                instance_id: instance_id.into(),
                device: device.into(),
                state: AttachState::Attaching,
                delete_on_termination: false,
            });
            rec.attach_due = Some(due);
            self.pending_volumes.insert(volume_id.to_string());
            self.note_attachment(instance_id, volume_id);
        }
        self.settle(now);
        Ok(())
    }

    pub(super) fn detach(
        &mut self,
        volume_id: &str,
        instance_id: &str,
        now: Instant,
    ) -> Result<(), StepError> {
        const OP: &str = "DetachVolume";
        let due = now + self.timings.detach;
        // As EC2 (and the emulator) answer a detach that names its instance: an unknown instance first,
        // then a volume not attached to it (`IncorrectState` is only for a detach without InstanceId).
        if !self.instances.contains_key(instance_id) {
            return Err(instance_not_found(OP, instance_id));
        }
        let rec = self
            .volumes
            .get_mut(volume_id)
            .ok_or_else(|| volume_not_found(OP, volume_id))?;
        let Some(att) = rec.v.attachment.as_mut() else {
            let msg =
                format!("The volume '{volume_id}' is not attached to instance '{instance_id}'");
            return Err(aws_error(OP, "InvalidAttachment.NotFound", msg));
        };
        if att.instance_id != instance_id {
            let msg =
                format!("The volume '{volume_id}' is not attached to instance '{instance_id}'");
            return Err(aws_error(OP, "InvalidAttachment.NotFound", msg));
        }
        if att.state == AttachState::Detaching {
            return Err(aws_error(
                OP,
                "IncorrectState",
                format!("Volume '{volume_id}' is already detaching."),
            ));
        }
        att.state = AttachState::Detaching;
        rec.attach_due = Some(due);
        self.pending_volumes.insert(volume_id.to_string());
        self.settle(now);
        Ok(())
    }

    /// Starts one snapshot; the caller has checked the rate limit.
    pub(super) fn start_snapshot(
        &mut self,
        volume_id: &str,
        description: &str,
        tags: Vec<Tag>,
        now: Instant,
    ) -> String {
        let size = self.volumes.get(volume_id).map_or(0, |r| r.v.size_gib);
        let content = self.volumes.get(volume_id).map_or(0, |r| r.v.content);
        let id = self.new_id("snap");
        let mut rec = SnapRec::new(
            &id,
            volume_id,
            size,
            description,
            tags,
            self.epoch_secs(now),
            now,
            self.timings,
            // EBS copies only the blocks changed since the volume's previous snapshot.
            self.last_snapshot.contains_key(volume_id),
        );
        rec.s.content = content;
        self.snapshots.insert(id.clone(), rec);
        self.pending_snapshots.insert(id.clone());
        self.last_snapshot.insert(volume_id.to_string(), now);
        id
    }

    /// Whether a workload can write to the volume now: attached (not attaching or detaching) to a running
    /// instance.
    pub(super) fn writable(&self, volume_id: &str) -> Result<(), String> {
        let r = self
            .volumes
            .get(volume_id)
            .ok_or_else(|| format!("no volume {volume_id}"))?;
        let att = match &r.v.attachment {
            Some(a) if a.state == AttachState::Attached => a,
            Some(a) => return Err(format!("{volume_id} is {:?}", a.state)),
            None => return Err(format!("{volume_id} is detached")),
        };
        let state = self
            .instances
            .get(&att.instance_id)
            .map_or("unknown", |i| i.state.as_str());
        if state != "running" {
            return Err(format!(
                "{volume_id}'s instance {} is {state}",
                att.instance_id
            ));
        }
        Ok(())
    }

    pub(super) fn check_snapshot_rate(
        &self,
        op: &str,
        volume_id: &str,
        now: Instant,
    ) -> Result<(), StepError> {
        let (Some(interval), Some(last)) =
            (self.snapshot_interval, self.last_snapshot.get(volume_id))
        else {
            return Ok(());
        };
        if now.saturating_duration_since(*last) < interval {
            let msg = format!("The maximum per volume CreateSnapshot request rate has been exceeded for {volume_id}");
            return Err(aws_error(op, "SnapshotCreationPerVolumeRateExceeded", msg));
        }
        Ok(())
    }

    pub(super) fn create_snapshots(
        &mut self,
        instance_id: &str,
        exclude: &[String],
        tags: &[Tag],
        now: Instant,
    ) -> Result<Vec<(String, String)>, StepError> {
        const OP: &str = "CreateSnapshots";
        let inst = self
            .instances
            .get(instance_id)
            .ok_or_else(|| instance_not_found(OP, instance_id))?;
        if inst.state == "terminated" {
            return Err(aws_error(
                OP,
                "IncorrectInstanceState",
                format!("The instance '{instance_id}' is terminated."),
            ));
        }
        let root = inst.root_volume_id.clone();
        let sources: Vec<(String, Vec<Tag>)> = self
            .attached_to(instance_id)
            .into_iter()
            .filter(|r| Some(&r.v.id) != root.as_ref() && !exclude.contains(&r.v.id))
            .map(|r| (r.v.id.clone(), r.v.tags.clone()))
            .collect();
        for (volume_id, _) in &sources {
            self.check_snapshot_rate(OP, volume_id, now)?;
        }
        let description = format!("ferry: volumes of {instance_id}");
        let mut out = Vec::new();
        for (volume_id, _) in sources {
            // As ferry calls it: no CopyTagsFromSource, only the explicit tags.
            let snap = self.start_snapshot(&volume_id, &description, tags.to_vec(), now);
            out.push((snap, volume_id));
        }
        self.settle(now);
        Ok(out)
    }
}
