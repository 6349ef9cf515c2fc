//! ferry's EBS and Elastic IP work: snapshot on terminate, restore or reattach on launch, ledger queries,
//! and the EC2 ports with their real, fake and fault-injecting implementations.

pub mod aws_ec2;
pub mod batched;
pub mod contract;
pub mod fake;
pub mod faulty;
pub mod fence;
pub mod gated;
pub mod launch;
pub mod ledger;
pub mod ports;
pub mod read_your_writes;
pub mod recovery_point;
pub mod root_volume;
pub mod slot_cell;
pub mod spec;
pub mod terminate;
pub mod warm_pool;

pub use launch::{LaunchWork, SourceEvents, RESTORED_LATEST};
pub use ports::{
    Addresses, Ec2, Instances, NewVolume, SnapshotQuery, Snapshots, Tag, VolumeQuery, Volumes,
};
pub use recovery_point::{RecoveryPoints, Round, RoundOutcome};
pub use root_volume::RootVolumeWork;
pub use spec::{GroupSpec, VolumeSpec};
pub use terminate::{PrecopySkip, TerminateWork};
pub use warm_pool::WarmPoolWork;
