//! cross-AZ failover walkthrough used by the README's demo and by the end-to-end tests.

pub mod cli_support;
pub mod daemon;
pub mod emulator;
pub mod walkthrough;
pub mod world;
