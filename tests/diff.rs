//! `verdict diff`: a few scenarios on oracle, model, rbpf and rbpf-jit (and kernel when the
//! `kernel` feature is built and the backend is usable; a loud SKIP otherwise, a failure with
//! `VERDICT_REQUIRE_KERNEL=1`) give zero disagreements and identical map dumps and flow
//! records; and planted differences (a flipped verdict, a skewed clock on one datapath) are
//! reported, so the comparison is known to look.

mod common;

use common::{root, text, verdict};

use verdict::diff::{self, Contender};
use verdict::dpbackend::DatapathBackend;
use verdict_datapath::abi;
use verdict_datapath::backend::{Datapath, DatapathError, MapEntries, RunOutcome, UpdateFlags};
use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::object::{MapDef, Object};
use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{Backend, Change, World};
use verdict_sim::oracle::Flow;
use verdict_sim::scenario;
use verdict_sim::verdict::Outcome;

const SCENARIOS: &[&str] = &[
    "scenarios/cilium/tocidr-vs-world.yaml",
    "scenarios/k8s/cyclonus-create-delete-pod.yaml",
    "scenarios/k8s/stacked-policies.yaml",
    "scenarios/pcap/shop.yaml",
];

#[test]
fn scenarios_agree_on_every_backend_byte_for_byte() {
    let names = backend_names();
    let list = names.join(",");
    let mut args = vec!["diff", "--backends", &list];
    args.extend_from_slice(SCENARIOS);
    let o = verdict(&args);
    let t = text(&o);
    println!("{t}");
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    for other in names
        .iter()
        .filter(|n| diff::is_datapath(n) && *n != "rbpf")
    {
        let line = format!("rbpf vs {other}: ");
        let n = t
            .lines()
            .filter(|l| l.contains(&line) && l.ends_with("identical"))
            .count();
        assert_eq!(n, SCENARIOS.len(), "{line} not identical everywhere:\n{t}");
    }
    assert!(
        t.contains(&format!("{} scenarios, ", SCENARIOS.len()))
            && t.contains("0 verdict disagreements, 0 state differences; 4 clean, 0 not"),
        "{t}"
    );
    // The same bytes every time.
    assert_eq!(text(&verdict(&args)), t);
}

/// `propagation:` reaches the datapaths under `verdict diff` as under `verdict run`: the
/// transient drop the scenario declares (`docs/propagation.md`) shows up as a probe in a
/// propagation window, and lagging datapaths are not reported as disagreeing with the
/// eventually-consistent oracle.
#[test]
fn propagation_delays_reach_the_datapaths() {
    let f = "scenarios/propagation/transient-drop.yaml";
    let o = verdict(&["diff", "--backends", "oracle,model,rbpf,rbpf-jit", f]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("0 verdict disagreements, 0 state differences; 1 clean, 0 not"),
        "{t}"
    );
    assert!(
        t.contains("1 probes landed in a propagation window where the lagging nodes"),
        "the datapaths did not lag: {t}"
    );
}

#[test]
fn map_dumps_and_records_are_really_compared() {
    // Not vacuous: every step of every scenario compared real maps and records.
    let names: Vec<String> = ["rbpf", "rbpf-jit"].map(String::from).to_vec();
    for s in SCENARIOS {
        let loaded = scenario::load(&root().join(s)).unwrap();
        let d = diff::diff_scenario(&loaded, &names, &diff::contender);
        assert!(d.clean(), "{}", diff::render(&d));
        let p = &d.pairs[0];
        assert_eq!(p.snapshots, d.steps, "{s}");
        assert!(p.map_entries > 0 && p.records > 0, "{s}: {p:?}");
    }
}

/// The model, except that its `nth` probe answers the opposite.
struct Flip {
    inner: Box<dyn Backend>,
    nth: usize,
    seen: usize,
}

impl Backend for Flip {
    fn name(&self) -> &str {
        "model"
    }
    fn sync(&mut self, w: &World, c: &Change<'_>) -> Result<(), String> {
        self.inner.sync(w, c)
    }
    fn probe(&mut self, w: &World, f: &Flow) -> Result<Outcome, String> {
        let mut o = self.inner.probe(w, f)?;
        self.seen += 1;
        if self.seen == self.nth {
            o.allowed = !o.allowed;
        }
        Ok(o)
    }
    fn packet(&mut self, w: &World, p: &ConnPacket) -> Result<Outcome, String> {
        self.inner.packet(w, p)
    }
    fn proxy_upstream(&mut self, w: &World) -> Result<Outcome, String> {
        self.inner.proxy_upstream(w)
    }
}

#[test]
fn a_flipped_verdict_is_reported() {
    let names: Vec<String> = ["oracle", "model", "rbpf", "rbpf-jit"]
        .map(String::from)
        .to_vec();
    let make = |n: &str| -> Result<Contender, String> {
        match n {
            "model" => Ok(Contender::Plain(Box::new(Flip {
                inner: verdict::backends::factory("model")?,
                nth: 3,
                seen: 0,
            }))),
            other => diff::contender(other),
        }
    };
    let loaded = scenario::load(&root().join("scenarios/pcap/shop.yaml")).unwrap();
    let d = diff::diff_scenario(&loaded, &names, &make);
    let out = diff::render(&d);
    println!("{out}");
    assert!(!d.clean());
    assert_eq!(d.verdicts.len(), 1, "{out}");
    assert_eq!(d.verdicts[0].step, 1);
    assert_eq!(
        d.verdicts[0].what,
        "shop/frontend -> shop/backend ICMP type 8"
    );
    assert_eq!(d.state_differences(), 0, "{out}");
    assert!(out.starts_with("DIFF pcap-shop"), "{out}");
    assert!(out.contains("│ step │ probe"), "{out}");
    assert!(out.contains("│ deny ingress match=L3-L4 │"), "{out}");
}

/// An emulator whose clock runs 1 ns ahead: verdicts stay the same, but the clock map, the
/// conntrack expiries and every record's timestamp differ from the reference.
struct Skewed(Box<dyn Datapath>);

impl Datapath for Skewed {
    fn backend_name(&self) -> &str {
        self.0.backend_name()
    }
    fn map_defs(&self) -> &[MapDef] {
        self.0.map_defs()
    }
    fn map_update_flags(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), DatapathError> {
        if map == abi::maps::CLOCK && value.len() == 8 {
            let mut v = [0u8; 8];
            v.copy_from_slice(value);
            let skewed = (u64::from_ne_bytes(v) + 1).to_ne_bytes();
            return self.0.map_update_flags(map, key, &skewed, flags);
        }
        self.0.map_update_flags(map, key, value, flags)
    }
    fn map_delete(&mut self, map: &str, key: &[u8]) -> Result<bool, DatapathError> {
        self.0.map_delete(map, key)
    }
    fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, DatapathError> {
        self.0.map_lookup(map, key)
    }
    fn map_dump(&self, map: &str) -> Result<MapEntries, DatapathError> {
        self.0.map_dump(map)
    }
    fn prog_array_set(
        &mut self,
        map: &str,
        index: u32,
        program: Option<&str>,
    ) -> Result<(), DatapathError> {
        self.0.prog_array_set(map, index, program)
    }
    fn run(&mut self, program: &str, packet: &[u8]) -> Result<RunOutcome, DatapathError> {
        self.0.run(program, packet)
    }
}

#[test]
fn a_skewed_datapath_is_reported_in_maps_and_records() {
    let names: Vec<String> = ["oracle", "rbpf", "rbpf-jit"].map(String::from).to_vec();
    let make = |n: &str| -> Result<Contender, String> {
        match n {
            "rbpf-jit" => Ok(Contender::Datapath(Box::new(DatapathBackend::new(
                "rbpf-jit",
                Box::new(|| {
                    let obj = Object::parse(
                        verdict_datapath::VERDICT_OBJECT_NAME,
                        verdict_datapath::VERDICT_OBJECT,
                    )
                    .map_err(|e| e.to_string())?;
                    let emu = Emulator::new(&obj, ExecMode::Jit).map_err(|e| e.to_string())?;
                    Ok(Box::new(Skewed(Box::new(emu))) as Box<dyn Datapath>)
                }),
            )))),
            other => diff::contender(other),
        }
    };
    let loaded = scenario::load(&root().join("scenarios/cilium/tocidr-vs-world.yaml")).unwrap();
    let d = diff::diff_scenario(&loaded, &names, &make);
    let out = diff::render(&d);
    println!("{out}");
    assert!(d.verdicts.is_empty(), "{out}");
    assert!(!d.clean());
    let rows = &d.pairs[0].rows;
    assert!(
        rows.iter().any(|r| r.what.starts_with("map verdict_clock")),
        "{out}"
    );
    // The scenario has probes only, and a probe leaves no conntrack entries (docs/model.md,
    // Connections: its entries are expired after it), so the skew shows in the clock map and
    // in every record's timestamp, not in cilium_ct_any.
    assert!(
        !rows.iter().any(|r| r.what.starts_with("map cilium_ct_any")),
        "{out}"
    );
    assert!(rows.iter().any(|r| r.what.starts_with("record #")), "{out}");
    // Step 1 already differs; the table is capped and says how many rows it left out.
    assert_eq!(rows[0].at, Some(1));
    assert!(out.contains("... and "), "{out}");
}

#[test]
fn kernel_backend_requested_says_why_it_is_unavailable() {
    let o = verdict(&[
        "diff",
        "--backends",
        "oracle,kernel",
        "scenarios/pcap/shop.yaml",
    ]);
    let t = text(&o);
    match diff::kernel_status() {
        Ok(()) => assert_eq!(o.status.code(), Some(0), "{t}"),
        Err(why) => {
            assert_eq!(o.status.code(), Some(2), "{t}");
            assert!(
                t.contains("error: --backend: kernel backend unavailable") && t.contains(&why),
                "{t}"
            );
        }
    }
    // Without --backends, kernel joins when usable and a note says why when not.
    let o = verdict(&["diff", "scenarios/pcap/shop.yaml"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    match diff::kernel_status() {
        Ok(()) => assert!(t.contains("on oracle,model,rbpf,kernel"), "{t}"),
        Err(why) => assert!(
            t.contains(&format!("note: kernel backend not used: {why}")),
            "{t}"
        ),
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    for args in [
        &[
            "diff",
            "--backends",
            "oracle,bogus",
            "scenarios/pcap/shop.yaml",
        ][..],
        &[
            "diff",
            "--backends",
            "oracle,oracle",
            "scenarios/pcap/shop.yaml",
        ],
        &["diff", "--backends", "oracle", "scenarios/pcap/shop.yaml"],
        &["diff", "scenarios/no-such-file.yaml"],
    ] {
        let o = verdict(args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        // A note about the kernel backend may come first; the error line must be there.
        assert!(t.lines().any(|l| l.starts_with("error: ")), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    // A scenario that fails to load is reported with its error, and the exit status is 2
    // (an input error, as `verdict run` has it).
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let bad = dir.join("diff-bad-scenario.yaml");
    std::fs::write(&bad, "name: bad\nsteps:\n  - expect: [unclosed\n").unwrap();
    let o = verdict(&["diff", "--backends", "oracle,rbpf", bad.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("diff-bad-scenario.yaml") && t.contains("error:"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

fn backend_names() -> Vec<String> {
    let names = ["oracle", "model", "rbpf", "rbpf-jit"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    common::with_kernel(names, "kernel backend in verdict diff")
}
