//! The backends `verdict` can run, by name.

use verdict_sim::engine::{Backend, OracleBackend};

/// Names accepted by `--backend`.
pub const BACKENDS: &[&str] = &["oracle"];

/// What `verdict run` and the tests use when no backend is named.
pub const DEFAULT_BACKENDS: &[&str] = &["oracle"];

pub fn factory(name: &str) -> Result<Box<dyn Backend>, String> {
    match name {
        "oracle" => Ok(Box::new(OracleBackend)),
        other => Err(format!(
            "unknown backend {other:?}: available backends are {}",
            BACKENDS.join(", ")
        )),
    }
}
