//! ferry's end-to-end harness: the local emulator, a scenario world on it, the real ferryd binary, and the
//! cross-AZ failover walkthrough used by the README's demo and by the end-to-end tests.

pub mod arrival;
pub mod calls;
pub mod cli_support;
pub mod daemon;
pub mod emulator;
pub mod fleet;
pub mod lease_table;
pub mod scenario;
pub mod storm;
pub mod walkthrough;
pub mod workload;
pub mod world;
