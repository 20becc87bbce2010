//! Helpers shared by the end-to-end tests: running the `verdict` binary, and the backend list
//! with the kernel added when it is built in and usable.
#![allow(dead_code)] // each test binary uses a different subset

pub mod flowproto;

use std::path::Path;
use std::process::{Command, Output};

/// The repository root (tests run scenario paths relative to it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `verdict` binary from the repository root.
pub fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("running verdict")
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `names`, plus `kernel` when built with the `kernel` feature and the kernel backend is usable.
/// Otherwise a loud SKIP line says why; with `VERDICT_REQUIRE_KERNEL=1` an unusable kernel
/// backend fails the test instead.
pub fn with_kernel(names: Vec<String>, what: &str) -> Vec<String> {
    #[cfg(feature = "kernel")]
    {
        let mut names = names;
        match verdict_datapath::kernel::gate(what) {
            Ok(true) => names.push("kernel".into()),
            Ok(false) => {}
            Err(e) => panic!("{e}"),
        }
        names
    }
    #[cfg(not(feature = "kernel"))]
    {
        println!("SKIP {what} (built without the `kernel` feature)");
        eprintln!("SKIP {what} (built without the `kernel` feature)");
        names
    }
}
