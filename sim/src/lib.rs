//! verdict-sim: the reference model of Cilium network policy.
//!
//! The data flow, one module per step: manifests (`api`) → internal policy entries
//! (`translate`, `policy`) → cluster state and identities (`cluster`, `identity`, `labels`)
//! → the oracle's verdicts (`oracle`), and the scenario format and its replay (`scenario`,
//! `engine`). `abi` is the policy-map ABI shared with the BPF programs.

pub mod abi;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod conntrack;
pub mod engine;
pub mod fqdn;
pub mod fsread;
pub mod gen;
pub mod genworld;
pub mod identity;
pub mod import;
pub mod invariant;
pub mod ipcache;
pub mod labels;
pub mod mapstate;
pub mod model;
pub mod oracle;
pub mod policy;
pub mod portrange;
pub mod proxy;
pub mod report;
pub mod scenario;
pub mod selector;
pub mod selectorcache;
pub mod service;
pub mod translate;
pub mod validate;
pub mod verdict;
pub mod yaml;
