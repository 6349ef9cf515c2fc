//! ferry's shared hook model: the vocabulary (hook, transition, slot, generation), the pure transition core,
//! and the driver that runs one hook and is the only place a lifecycle action is completed.

pub mod aws;
pub mod batched;
pub mod budget;
pub mod driver;
mod driver_lease;
pub mod error;
pub mod fake;
pub mod gate;
mod heartbeat;
pub mod hook_cache;
pub mod lease;
pub mod lease_keeper;
pub mod loader;
pub mod lock;
pub mod machine;
pub mod model;
pub mod observe;
pub mod outcome;
pub mod path;
pub mod point_sets;
pub mod port;
pub mod recovery;
pub mod seat;
pub mod slot;
pub mod slot_pick;
pub mod tags;
pub mod unreachable;
pub mod verdict;
pub mod wake;

pub use driver::{
    Driver, DriverConfig, HookObserver, HookOutcome, HookWork, NoObserver, Progress, SlotChoice,
};
pub use error::{Disposition, StepError};
pub use model::{ActionRef, Generation, HookEvent, LifecycleResult, SlotKey, Transition};
pub use path::{LifecyclePath, Place};
pub use port::{CompleteOutcome, GroupInfo, GroupInstance, HookSpec, LifecycleActions, WarmPool};
pub use verdict::{AttachedData, Verdict};
