//! Differential testing on generated scenarios: a bounded batch of small generated cases
//! (`verdict_sim::gen`, `GenConfig::small`) is replayed on every backend, which must agree on
//! every probe; the batch must exercise every feature the generator knows; generation must
//! be deterministic and every generated scenario must parse.
//!
//! `VERDICT_BACKENDS` (comma-separated) overrides the backends; the default is
//! `verdict::backends::DEFAULT_BACKENDS`, plus `kernel` when built with the `kernel` feature.
//! `VERDICT_FUZZ_CASES` overrides the batch size.

mod common;

use std::path::{Path, PathBuf};

use verdict::backends;
use verdict::fuzz::{self, FuzzArgs};
use verdict_sim::cluster::{Peer, Protocol};
use verdict_sim::engine::{self, Backend, Change, World};
use verdict_sim::gen::{self, ym, ys, yseq, Coverage, GenConfig};
use verdict_sim::oracle::{self, Flow};
use verdict_sim::scenario;
use verdict_sim::verdict::Outcome;

/// The batch's seed; changing it changes every case.
const SEED: u64 = 20_261_127;
/// Cases in the batch.
const CASES: u64 = 40;

fn backend_names() -> Vec<String> {
    if let Ok(list) = std::env::var("VERDICT_BACKENDS") {
        return list.split(',').map(str::to_string).collect();
    }
    let names = backends::DEFAULT_BACKENDS
        .iter()
        .map(|s| s.to_string())
        .collect();
    common::with_kernel(names, "kernel backend in the generated differential run")
}

fn cases() -> u64 {
    std::env::var("VERDICT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES)
}

#[test]
fn backends_agree_on_generated_scenarios() {
    let names = backend_names();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-regressions");
    let args = FuzzArgs {
        seed: SEED,
        cases: cases(),
        backends: names.clone(),
        out_dir,
        verbose: false,
        shard: None,
    };
    let mut log = Vec::new();
    let summary = fuzz::run_with(&args, &GenConfig::small(), &mut log).expect("fuzz run");
    let log = String::from_utf8_lossy(&log);
    println!("{log}");
    assert!(summary.probes > 0, "no probes were run:\n{log}");
    assert!(
        summary.clean(),
        "backends {} disagree or fail on generated scenarios; reproducers (replay with `verdict run --backend {} FILE`): {:?}\n{log}",
        names.join(","),
        names.join(","),
        summary.reproducers
    );
}

#[test]
fn batch_covers_every_feature() {
    let mut cov = Coverage::default();
    for case in 0..cases() {
        let g = gen::generate(gen::case_seed(SEED, case), &GenConfig::small());
        cov.merge(&g.coverage);
    }
    println!("coverage of the test batch:\n{cov}");
    let missing = cov.missing();
    assert!(
        missing.is_empty(),
        "features never generated: {missing:?}\n{cov}"
    );
}

#[test]
fn generated_scenarios_parse_and_generation_is_deterministic() {
    let configs = [
        GenConfig::small(),
        GenConfig::fuzz(),
        GenConfig::bench(12, 3, 6),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for cfg in &configs {
        for case in 0..60 {
            let seed = gen::case_seed(7, case);
            let a = gen::generate(seed, cfg).scenario.to_yaml();
            let b = gen::generate(seed, cfg).scenario.to_yaml();
            assert_eq!(a, b, "seed {seed:#x}: generation is not deterministic");
            assert!(seen.insert(a.clone()), "seed {seed:#x}: duplicate scenario");
            if let Err(e) = scenario::parse(Path::new("generated.yaml"), &a) {
                panic!("seed {seed:#x} ({cfg:?}): generated scenario does not parse: {e}\n{a}");
            }
        }
    }
}

#[test]
fn bench_preset_has_the_requested_size() {
    let g = gen::generate(1, &GenConfig::bench(40, 4, 10));
    assert_eq!(g.scenario.pods.len(), 40);
    assert_eq!(g.scenario.namespaces.len(), 4);
    assert_eq!(g.scenario.policies.len(), 10);
    assert!(g.scenario.probe_count() >= 40 * 40);
}

/// A backend that agrees with the oracle except on 53/UDP to pods, where it answers the
/// opposite: a planted bug for the shrinker to find.
struct Liar;

impl Backend for Liar {
    fn name(&self) -> &str {
        "liar"
    }
    fn sync(&mut self, _: &World, _: &Change<'_>) -> Result<(), String> {
        Ok(())
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        let mut o = oracle::decide(&world.cluster, &world.repo, flow).outcome();
        if flow.protocol == Protocol::Udp && flow.dport == 53 && matches!(flow.dst, Peer::Pod(_)) {
            o.allowed = !o.allowed;
        }
        Ok(o)
    }
    fn packet(
        &mut self,
        _: &World,
        _: &verdict_sim::conntrack::ConnPacket,
    ) -> Result<Outcome, String> {
        Err("the liar backend does not track connections".into())
    }
}

fn with_liar(name: &str) -> Result<Box<dyn Backend>, String> {
    if name == "liar" {
        Ok(Box::new(Liar))
    } else {
        backends::factory(name)
    }
}

#[test]
fn a_planted_disagreement_is_found_and_shrunk_to_one_probe() {
    let names = vec!["oracle".to_string(), "liar".to_string()];
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-planted");
    let _ = std::fs::remove_dir_all(&out_dir);
    let args = FuzzArgs {
        seed: 3,
        cases: 6,
        backends: names.clone(),
        out_dir: out_dir.clone(),
        verbose: false,
        shard: None,
    };
    let mut log = Vec::new();
    let summary =
        fuzz::run_with_factory(&args, &GenConfig::small(), &with_liar, &mut log).expect("fuzz run");
    let log = String::from_utf8_lossy(&log).into_owned();
    assert!(summary.disagreements > 0, "{log}");
    assert!(
        log.contains("replay: verdict run --backend oracle,liar "),
        "{log}"
    );
    for path in &summary.reproducers {
        let text = std::fs::read_to_string(path).expect("reproducer written");
        let loaded = scenario::parse(path, &text).expect("reproducer parses");
        assert!(loaded.scenario.policies.is_empty(), "{text}");
        let r = engine::run(&loaded, &names, &with_liar);
        assert_eq!(r.checks().count(), 1, "{text}");
        assert_eq!(r.disagreement_count(), 1, "{text}");
    }
    // The same run prints the same thing.
    let mut again = Vec::new();
    fuzz::run_with_factory(&args, &GenConfig::small(), &with_liar, &mut again).expect("rerun");
    assert_eq!(log, String::from_utf8_lossy(&again));
}

#[test]
fn shrinking_keeps_an_error_and_drops_everything_else() {
    let g = gen::generate(gen::case_seed(SEED, 1), &GenConfig::small());
    let mut s = g.scenario;
    // A policy the API rejects: the scenario fails to parse until that policy goes.
    s.policies.push(ym(vec![
        ("apiVersion", ys("cilium.io/v2")),
        ("kind", ys("CiliumNetworkPolicy")),
        (
            "metadata",
            ym(vec![("name", ys("broken")), ("namespace", ys("x"))]),
        ),
        (
            "spec",
            ym(vec![
                ("endpointSelector", ym::<&str>(vec![])),
                ("ingress", yseq(vec![ym(vec![("toFQDNs", yseq(vec![]))])])),
            ]),
        ),
    ]));
    let names = backend_names();
    let ev = fuzz::evaluate(&s, &names, &backends::factory);
    let failure = ev.failure.expect("the broken scenario fails");
    let shrunk = fuzz::shrink(&s, &failure, &names, &backends::factory, 3000);
    assert!(shrunk.failure.same_kind(&failure));
    assert_eq!(
        shrunk.scenario.policies.len(),
        1,
        "{}",
        shrunk.scenario.to_yaml()
    );
    assert!(
        shrunk.scenario.steps.is_empty(),
        "{}",
        shrunk.scenario.to_yaml()
    );
}

/// `cargo test --test differential -- --ignored --nocapture show_generated_case` prints case
/// `VERDICT_FUZZ_CASE` (default 0) of the batch, and the planted-bug run's log.
#[test]
#[ignore = "a printing aid, not a check: run by hand to look at a generated case"]
fn show_generated_case() {
    let case = std::env::var("VERDICT_FUZZ_CASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let g = gen::generate(gen::case_seed(SEED, case), &GenConfig::small());
    println!("{}", g.scenario.to_yaml());
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-planted-show");
    let args = FuzzArgs {
        seed: 3,
        cases: 6,
        backends: vec!["oracle".into(), "liar".into()],
        out_dir,
        verbose: true,
        shard: None,
    };
    let mut log = Vec::new();
    fuzz::run_with_factory(&args, &GenConfig::small(), &with_liar, &mut log).expect("fuzz run");
    println!("{}", String::from_utf8_lossy(&log));
    for p in std::fs::read_dir(&args.out_dir).expect("out dir") {
        let p = p.expect("entry").path();
        println!(
            "--- {}\n{}",
            p.display(),
            std::fs::read_to_string(&p).unwrap_or_default()
        );
    }
}
