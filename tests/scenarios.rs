//! Every scenario under `scenarios/` is its own test: it must pass on every backend, with no
//! disagreement between backends, and its full output must equal its golden file
//! `golden/<scenario name>.txt` (bless with `verdict run --golden golden --bless scenarios/`,
//! after reading the diff).
//!
//! `VERDICT_BACKENDS` (comma-separated) overrides the backends; the default is every backend
//! that needs no privileges, plus `kernel` when built with the `kernel` feature and the kernel
//! backend is usable (a loud SKIP line says why when it is not; with
//! `VERDICT_REQUIRE_KERNEL=1` an unusable kernel backend fails the test instead).

mod common;

use std::path::{Path, PathBuf};

use rstest::rstest;
use verdict::backends;
use verdict_sim::{engine, report};

fn backend_names() -> Vec<String> {
    if let Ok(list) = std::env::var("VERDICT_BACKENDS") {
        return list.split(',').map(str::to_string).collect();
    }
    let names = backends::DEFAULT_BACKENDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    common::with_kernel(names, "kernel backend in the scenario suite")
}

#[rstest]
fn scenario(
    #[files("scenarios/**/*.yaml")]
    #[exclude("/policies/")]
    path: PathBuf,
) {
    let names = backend_names();
    let r = engine::run_file(&path, &names, &backends::factory);
    assert!(r.passed(), "{}", report::text(&r));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden_path = root.join("golden").join(format!("{}.txt", r.name));
    let want = std::fs::read_to_string(&golden_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; bless it with `verdict run --golden golden --bless {}`",
            golden_path.display(),
            path.display()
        )
    });
    let got = report::golden(&r);
    assert!(
        want == got,
        "{} differs from the golden file {}:\n--- golden\n{want}\n--- actual\n{got}",
        path.display(),
        golden_path.display()
    );
}

/// The scenario format requires a name unique within a suite; the name also names the golden
/// file, so two scenarios with one name would share (and overwrite) one golden file.
#[test]
fn scenario_names_are_unique() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = verdict::scenario_files(&[root.join("scenarios")]).expect("listing scenarios/");
    let mut seen: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for f in files {
        let s = verdict_sim::scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        if let Some(other) = seen.insert(s.scenario.name.clone(), f.clone()) {
            panic!(
                "scenario name {:?} is used by both {} and {}",
                s.scenario.name,
                other.display(),
                f.display()
            );
        }
    }
}
