//! The crash-point wrappers of the EC2 and Auto Scaling ports. Compiled only with the `test-crashpoints`
//! feature: a build without it has no code that could kill ferryd.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use ferry_snapshot::ports::{
    Addresses, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};
use ferry_snapshot::Ec2;
use ferry_state_machine::observe::{
    ObservedAddress, ObservedInstance, ObservedSnapshot, ObservedVolume,
};
use ferry_state_machine::port::{CompleteOutcome, GroupInfo, GroupInstance, HookSpec, WarmPool};
use ferry_state_machine::{ActionRef, LifecycleActions, LifecycleResult, StepError};

use super::CrashPoint;

impl CrashPoint {
    /// Records a successful call; kills this process with SIGKILL when the armed call is reached.
    fn passed<T>(&self, op: &str, result: Result<T, StepError>) -> Result<T, StepError> {
        if result.is_ok() && op == self.op && self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            tracing::warn!(op = %op, "crash point reached: SIGKILL");
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            std::process::abort();
        }
        result
    }
}

/// Wraps the EC2 and Auto Scaling ports with a crash point.
pub(crate) struct Crashing<T> {
    inner: T,
    point: Arc<CrashPoint>,
}

impl<T> Crashing<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T, point: Arc<CrashPoint>) -> Self {
        Self { inner, point }
    }
}

#[async_trait]
impl<T: Ec2> Volumes for Crashing<T> {
    async fn find_volumes(&self, q: &VolumeQuery) -> Result<Vec<ObservedVolume>, StepError> {
        self.inner.find_volumes(q).await
    }
    async fn find_volumes_batch(
        &self,
        q: &[VolumeQuery],
    ) -> Result<Vec<Vec<ObservedVolume>>, StepError> {
        self.inner.find_volumes_batch(q).await
    }
    async fn describe_volumes(&self, ids: &[String]) -> Result<Vec<ObservedVolume>, StepError> {
        self.inner.describe_volumes(ids).await
    }
    async fn create_volume(&self, req: &NewVolume) -> Result<String, StepError> {
        self.point
            .passed("ec2:CreateVolume", self.inner.create_volume(req).await)
    }
    async fn attach_volume(&self, v: &str, i: &str, d: &str) -> Result<(), StepError> {
        self.point
            .passed("ec2:AttachVolume", self.inner.attach_volume(v, i, d).await)
    }
    async fn detach_volume(&self, v: &str, i: &str) -> Result<(), StepError> {
        self.point
            .passed("ec2:DetachVolume", self.inner.detach_volume(v, i).await)
    }
    async fn delete_volume(&self, v: &str) -> Result<(), StepError> {
        self.point
            .passed("ec2:DeleteVolume", self.inner.delete_volume(v).await)
    }
    async fn tag_volume(&self, v: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.point
            .passed("ec2:CreateTags", self.inner.tag_volume(v, tags).await)
    }
}

#[async_trait]
impl<T: Ec2> Snapshots for Crashing<T> {
    async fn find_snapshots(&self, q: &SnapshotQuery) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.inner.find_snapshots(q).await
    }
    async fn find_snapshots_batch(
        &self,
        q: &[SnapshotQuery],
    ) -> Result<Vec<Vec<ObservedSnapshot>>, StepError> {
        self.inner.find_snapshots_batch(q).await
    }
    async fn describe_snapshots(&self, ids: &[String]) -> Result<Vec<ObservedSnapshot>, StepError> {
        self.inner.describe_snapshots(ids).await
    }
    async fn create_snapshots(
        &self,
        i: &str,
        ex: &[String],
        tags: &[Tag],
    ) -> Result<Vec<(String, String)>, StepError> {
        self.point.passed(
            "ec2:CreateSnapshots",
            self.inner.create_snapshots(i, ex, tags).await,
        )
    }
    async fn create_snapshot(&self, v: &str, d: &str, tags: &[Tag]) -> Result<String, StepError> {
        self.point.passed(
            "ec2:CreateSnapshot",
            self.inner.create_snapshot(v, d, tags).await,
        )
    }
    async fn delete_snapshot(&self, s: &str) -> Result<(), StepError> {
        self.point
            .passed("ec2:DeleteSnapshot", self.inner.delete_snapshot(s).await)
    }
    async fn tag_snapshot(&self, s: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.point
            .passed("ec2:CreateTags", self.inner.tag_snapshot(s, tags).await)
    }
}

#[async_trait]
impl<T: Ec2> Instances for Crashing<T> {
    async fn describe_instance(&self, i: &str) -> Result<Option<ObservedInstance>, StepError> {
        self.inner.describe_instance(i).await
    }
    async fn describe_instances(&self, i: &[String]) -> Result<Vec<ObservedInstance>, StepError> {
        self.inner.describe_instances(i).await
    }
    async fn tag_instance(&self, i: &str, tags: &[Tag]) -> Result<(), StepError> {
        self.point
            .passed("ec2:CreateTags", self.inner.tag_instance(i, tags).await)
    }
    async fn stop_instance(&self, i: &str) -> Result<(), StepError> {
        self.point
            .passed("ec2:StopInstances", self.inner.stop_instance(i).await)
    }
    fn now_secs(&self) -> i64 {
        self.inner.now_secs()
    }
}

#[async_trait]
impl<T: Ec2> Addresses for Crashing<T> {
    async fn describe_address(&self, a: &str) -> Result<Option<ObservedAddress>, StepError> {
        self.inner.describe_address(a).await
    }
    async fn describe_addresses(&self, a: &[String]) -> Result<Vec<ObservedAddress>, StepError> {
        self.inner.describe_addresses(a).await
    }
    async fn associate_address(&self, a: &str, i: &str) -> Result<(), StepError> {
        self.point.passed(
            "ec2:AssociateAddress",
            self.inner.associate_address(a, i).await,
        )
    }
    async fn disassociate_address(&self, a: &str, i: &str) -> Result<(), StepError> {
        self.point.passed(
            "ec2:DisassociateAddress",
            self.inner.disassociate_address(a, i).await,
        )
    }
}

#[async_trait]
impl<T: LifecycleActions> LifecycleActions for Crashing<T> {
    async fn describe_hook(&self, g: &str, h: &str) -> Result<Option<HookSpec>, StepError> {
        self.inner.describe_hook(g, h).await
    }
    async fn describe_hooks(&self, g: &str) -> Result<Vec<HookSpec>, StepError> {
        self.inner.describe_hooks(g).await
    }
    async fn heartbeat(&self, a: &ActionRef) -> Result<CompleteOutcome, StepError> {
        self.point.passed(
            "autoscaling:RecordLifecycleActionHeartbeat",
            self.inner.heartbeat(a).await,
        )
    }
    async fn complete(
        &self,
        a: &ActionRef,
        r: LifecycleResult,
    ) -> Result<CompleteOutcome, StepError> {
        self.point.passed(
            "autoscaling:CompleteLifecycleAction",
            self.inner.complete(a, r).await,
        )
    }
    async fn describe_instance(&self, i: &str) -> Result<Option<GroupInstance>, StepError> {
        self.inner.describe_instance(i).await
    }
    async fn describe_instances(&self, i: &[String]) -> Result<Vec<GroupInstance>, StepError> {
        self.inner.describe_instances(i).await
    }
    async fn describe_groups(&self, g: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        self.inner.describe_groups(g).await
    }
    async fn describe_group(&self, g: &str) -> Result<Option<GroupInfo>, StepError> {
        self.inner.describe_group(g).await
    }
    async fn describe_warm_pool(&self, g: &str) -> Result<Option<WarmPool>, StepError> {
        self.inner.describe_warm_pool(g).await
    }
    async fn instance_refresh_active(&self, g: &str) -> Result<bool, StepError> {
        self.inner.instance_refresh_active(g).await
    }
}
