//! ferryd's library: the daemon's parts (config, handler, driver wiring, metrics, operator commands), so
//! that the `ferryd` binary and the storm simulation (`ferry-storm-sim`) run the same code.

pub mod assemble;
pub mod aws;
pub mod cli;
pub mod config;
pub mod crashpoint;
pub mod daemon;
pub mod fanout;
pub mod handler;
pub mod http;
pub mod lease_store;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod queue_info;
pub mod reconcile;
pub mod recovery;
pub mod retention;
pub mod sdk_metrics;
pub mod sim;
pub mod verify;

/// Exit codes (documented in docs/operations.md).
pub mod exit {
    /// The configuration is invalid or unreadable.
    pub const CONFIG: u8 = 2;
    /// The daemon failed at run time.
    pub const RUNTIME: u8 = 1;
    /// `ferryd doctor` found at least one FAIL.
    pub const DOCTOR_FAILED: u8 = 3;
}
