//! The `verdict` command's library side: which backends exist and how they are built, shared
//! by the CLI and the end-to-end tests.

pub mod backends;
pub mod churn;
pub mod diff;
pub mod dpbackend;
pub mod fuzz;
pub mod hubble;
pub mod pcap;
