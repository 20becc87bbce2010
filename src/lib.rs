//! The `verdict` command's library side: which backends exist and how they are built, shared
//! by the CLI and the end-to-end tests.

pub mod audit;
pub mod backends;
pub mod churn;
pub mod diff;
pub mod dpbackend;
pub mod flowlog;
pub mod fqdncache;
pub mod fuzz;
pub mod fuzzscale;
pub mod htmlreport;
pub mod hubble;
pub mod impact;
pub mod junit;
pub mod merge;
pub mod pcap;
pub mod progress;
pub mod replay;
pub mod shard;
pub mod suggest;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Every scenario file under the given paths, sorted, for `verdict run` and `verdict diff`.
/// Directories named `policies` hold policy manifests that scenarios reference with `file:`,
/// not scenarios, and are skipped.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "policies") {
                    continue;
                }
                walk(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}
