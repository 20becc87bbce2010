//! Invariant checking on every backend (`verdict audit`, and `verdict churn --invariants`):
//! an [`InvariantTap`] wraps a backend and, after the initial state and after every step of
//! the timeline, probes every invariant of the scenario (`sim/src/invariant.rs`) through it,
//! at that instant of virtual time, propagation windows included (a lagging datapath answers
//! with what its nodes have). A violation records the instant, the step, the backend, the
//! flow, the nodes of both ends and the rules that decided (the oracle's, from the manifests
//! in force). A violation on a lagging backend while the backends that give the eventual
//! answer hold is transient: it happened in a propagation window, and is reported as such.
//!
//! `verdict audit SCENARIO...` prints the evidence table an audit asks for: each invariant,
//! how many instants and probes checked it on which backends, and pass or its counterexamples.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Result;
use serde_json::{json, Value};

use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{self, Backend, Change, FlowRecord, World};
use verdict_sim::invariant::{self, InvariantDecl, InvariantProbe, Kind};
use verdict_sim::oracle::{self, Flow};
use verdict_sim::scenario::{self, LoadedScenario};
use verdict_sim::verdict::Outcome;

/// One violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: String,
    /// Its index in the scenario's invariants.
    pub index: usize,
    pub backend: String,
    /// Virtual time (ns) and the step after which it was seen (0: the initial state).
    pub at_ns: u64,
    pub step: usize,
    pub probe: String,
    pub outcome: String,
    /// Nodes of the source and destination (`-` for the world).
    pub nodes: (String, String),
    pub rules: String,
    /// The eventual backends held at the same check: a propagation window.
    pub transient: bool,
}

/// What was checked for one invariant.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub kind: &'static str,
    /// Check points (initial state and steps) at which it was probed.
    pub instants: usize,
    /// Probes run, summed over backends.
    pub probes: usize,
    pub violations: Vec<Violation>,
    /// Errors expanding it at some instant (a peer set that stopped resolving).
    pub errors: Vec<String>,
}

/// Shared between the taps of one run: per invariant, its evidence.
#[derive(Debug, Default)]
pub struct Ledger {
    pub invariants: Vec<(InvariantDecl, Evidence)>,
    /// (check index) -> per invariant -> per probe label -> per backend: held?
    held: BTreeMap<(usize, usize, String), BTreeMap<String, bool>>,
    eventual: Vec<String>,
}

impl Ledger {
    pub fn new(invs: &[InvariantDecl]) -> Self {
        Ledger {
            invariants: invs
                .iter()
                .map(|i| {
                    (
                        i.clone(),
                        Evidence {
                            kind: i.kind().map_or("?", Kind::as_str),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Marks violations on lagging backends transient where every eventual backend held.
    pub fn settle(&mut self) {
        let held = std::mem::take(&mut self.held);
        let eventual = self.eventual.clone();
        for (_, ev) in self.invariants.iter_mut() {
            for v in ev.violations.iter_mut() {
                if eventual.contains(&v.backend) {
                    continue;
                }
                let ok = held
                    .iter()
                    .filter(|((s, i, p), _)| *s == v.step && *i == v.index && *p == v.probe)
                    .any(|(_, per)| {
                        !eventual.is_empty() && eventual.iter().all(|b| per.get(b) == Some(&true))
                    });
                v.transient = ok;
            }
        }
        self.held = held;
    }
}

/// A backend that checks invariants after every step.
pub struct InvariantTap {
    pub inner: Box<dyn Backend>,
    pub ledger: Rc<RefCell<Ledger>>,
    step: usize,
    /// Only one tap counts instants.
    pub counts_instants: bool,
}

impl InvariantTap {
    pub fn new(inner: Box<dyn Backend>, ledger: Rc<RefCell<Ledger>>, first: bool) -> Self {
        if !inner.lags() {
            ledger.borrow_mut().eventual.push(inner.name().to_string());
        }
        InvariantTap {
            inner,
            ledger,
            step: 0,
            counts_instants: first,
        }
    }

    fn check(&mut self, world: &World) {
        let name = self.inner.name().to_string();
        let n = self.ledger.borrow().invariants.len();
        for i in 0..n {
            let inv = self.ledger.borrow().invariants[i].0.clone();
            let probes = match invariant::probes(&world.cluster, &inv) {
                Ok(p) => p,
                Err(e) => {
                    let mut l = self.ledger.borrow_mut();
                    let msg = format!("after step {}: {e}", self.step);
                    if !l.invariants[i].1.errors.contains(&msg) {
                        l.invariants[i].1.errors.push(msg);
                    }
                    continue;
                }
            };
            let want = inv.kind().is_ok_and(Kind::wants_allow);
            let mut results: Vec<(InvariantProbe, Result<Outcome, String>)> = Vec::new();
            for p in probes {
                let r = self.inner.probe(world, &p.flow);
                results.push((p, r));
            }
            let mut l = self.ledger.borrow_mut();
            if self.counts_instants {
                l.invariants[i].1.instants += 1;
            }
            l.invariants[i].1.probes += results.len();
            for (p, r) in results {
                let held = matches!(&r, Ok(o) if o.allowed == want);
                l.held
                    .entry((self.step, i, p.to_string()))
                    .or_default()
                    .insert(name.clone(), held);
                if !held {
                    let mut v = violation(world, &inv.name, &name, self.step, &p, &r);
                    v.index = i;
                    l.invariants[i].1.violations.push(v);
                }
            }
        }
    }
}

fn violation(
    world: &World,
    inv: &str,
    backend: &str,
    step: usize,
    p: &InvariantProbe,
    r: &Result<Outcome, String>,
) -> Violation {
    let node = |peer| {
        world
            .cluster
            .node_of(peer)
            .map_or("-".to_string(), str::to_string)
    };
    let d = oracle::decide(&world.cluster, &world.repo, &p.flow);
    Violation {
        invariant: inv.to_string(),
        index: 0,
        backend: backend.to_string(),
        at_ns: world.clock_ns,
        step,
        probe: p.to_string(),
        outcome: crate::diff::outcome_cell(r),
        nodes: (node(&p.flow.src), node(&p.flow.dst)),
        rules: crate::replay::rule_text(&d),
        transient: false,
    }
}

impl Backend for InvariantTap {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        let r = self.inner.sync(world, change);
        if matches!(change, Change::Initial) && r.is_ok() {
            self.check(world);
        }
        r
    }
    fn sync_due(
        &mut self,
        world: &World,
        change: &Change<'_>,
        due: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        self.inner.sync_due(world, change, due)
    }
    fn lags(&self) -> bool {
        self.inner.lags()
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        self.inner.probe(world, flow)
    }
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        self.inner.packet(world, pkt)
    }
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: verdict_sim::verdict::Direction,
        proxy_port: u16,
    ) -> Result<Vec<verdict_sim::proxy::ProxyRule>, String> {
        self.inner.proxy_rules(world, flow, dir, proxy_port)
    }
    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        self.inner.proxy_upstream(world)
    }
    fn note_l7(&mut self, world: &World, l7: &verdict_sim::engine::L7Exchange<'_>) {
        self.inner.note_l7(world, l7)
    }
    fn take_flows(&mut self, world: &World) -> Vec<FlowRecord> {
        // Called by the engine after every step: the check point.
        let flows = self.inner.take_flows(world);
        self.step += 1;
        self.check(world);
        // The invariant probes' own flow events are not the scenario's.
        let _ = self.inner.take_flows(world);
        flows
    }
}

/// One scenario's audit.
#[derive(Debug, Default)]
pub struct ScenarioAudit {
    pub name: String,
    pub file: PathBuf,
    pub backends: Vec<String>,
    pub steps: usize,
    pub invariants: Vec<(InvariantDecl, Evidence)>,
    pub error: Option<String>,
    /// The scenario's own expectations (run alongside): failed probes and disagreements.
    pub failures: usize,
}

impl ScenarioAudit {
    pub fn violations(&self) -> usize {
        self.invariants
            .iter()
            .map(|(_, e)| e.violations.len())
            .sum()
    }
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .invariants
                .iter()
                .all(|(_, e)| e.violations.is_empty() && e.errors.is_empty())
    }
}

/// Makes the backend of a name (`oracle`, `model`, `rbpf`, ...).
pub type BackendFactory<'a> = &'a dyn Fn(&str) -> Result<Box<dyn Backend>, String>;

/// Runs one loaded scenario with its invariants checked on every backend.
pub fn audit_loaded(
    loaded: &LoadedScenario,
    invs: &[InvariantDecl],
    names: &[String],
    make: BackendFactory<'_>,
) -> (engine::ScenarioReport, Ledger) {
    let ledger = Rc::new(RefCell::new(Ledger::new(invs)));
    let count = RefCell::new(0usize);
    let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
        let first = *count.borrow() == 0;
        *count.borrow_mut() += 1;
        Ok(Box::new(InvariantTap::new(
            make(name)?,
            ledger.clone(),
            first,
        )))
    };
    let report = engine::run(loaded, names, &factory);
    let mut l = Rc::try_unwrap(ledger)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    l.settle();
    (report, l)
}

/// Audits one scenario file.
pub fn audit_file(path: &std::path::Path, names: &[String]) -> ScenarioAudit {
    let mut a = ScenarioAudit {
        name: path.display().to_string(),
        file: path.to_path_buf(),
        backends: names.to_vec(),
        ..Default::default()
    };
    let loaded = match scenario::load(path) {
        Ok(l) => l,
        Err(e) => {
            a.error = Some(e.to_string());
            return a;
        }
    };
    a.name = loaded.scenario.name.clone();
    a.steps = loaded.scenario.steps.len();
    let invs = loaded.scenario.invariants.clone();
    // Invariants are checked against the initial cluster before anything runs.
    match engine::build_world(&loaded) {
        Err(e) => {
            a.error = Some(e.to_string());
            return a;
        }
        Ok(world) => {
            if let Err((field, msg)) = invariant::check(&world.cluster, &invs) {
                let m = loaded.locate(&field);
                a.error = Some(format!(
                    "{}:{}:{}: {field}: {msg}",
                    path.display(),
                    m.line,
                    m.column
                ));
                return a;
            }
        }
    }
    let (report, ledger) = audit_loaded(&loaded, &invs, names, &crate::backends::factory);
    a.failures = report.failure_count() + report.disagreement_count();
    if let Some(e) = report.error {
        a.error = Some(e);
    }
    a.invariants = ledger.invariants;
    a
}

/// One counterexample as the reports print it.
pub fn counterexample_line(v: &Violation) -> String {
    format!(
        "{}after step {} at {} on {}: {} (nodes {} -> {}): {}; rules: {}",
        if v.transient {
            "TRANSIENT (propagation window) "
        } else {
            ""
        },
        v.step,
        engine::format_ns(v.at_ns),
        v.backend,
        v.probe,
        v.nodes.0,
        v.nodes.1,
        v.outcome,
        v.rules
    )
}

/// The evidence table.
pub fn render_text(audits: &[ScenarioAudit]) -> String {
    let mut s = String::new();
    for a in audits {
        if let Some(e) = &a.error {
            let _ = writeln!(s, "ERROR {} ({}): {e}", a.name, a.file.display());
            continue;
        }
        let _ = writeln!(
            s,
            "{} {} ({}): {} invariants checked after the initial state and each of {} steps on {}; {} violations{}",
            if a.passed() { "PASS" } else { "FAIL" },
            a.name,
            a.file.display(),
            a.invariants.len(),
            a.steps,
            a.backends.join(","),
            a.violations(),
            if a.failures > 0 {
                format!("; the scenario's own expectations: {} failures or disagreements", a.failures)
            } else {
                String::new()
            }
        );
        if a.invariants.is_empty() {
            continue;
        }
        let mut b = tabled::builder::Builder::default();
        b.push_record(["invariant", "kind", "instants", "probes", "result"]);
        for (inv, e) in &a.invariants {
            let transient = e.violations.iter().filter(|v| v.transient).count();
            let result = if !e.errors.is_empty() {
                format!("error: {}", e.errors.join("; "))
            } else if e.violations.is_empty() {
                "pass".to_string()
            } else if transient == e.violations.len() {
                format!(
                    "FAIL: {} counterexamples, all transient",
                    e.violations.len()
                )
            } else {
                format!(
                    "FAIL: {} counterexamples ({transient} transient)",
                    e.violations.len()
                )
            };
            b.push_record([
                inv.name.clone(),
                e.kind.to_string(),
                e.instants.to_string(),
                e.probes.to_string(),
                result,
            ]);
        }
        let mut t = b.build();
        t.with(tabled::settings::Style::sharp());
        let _ = writeln!(s, "{t}");
        for (inv, e) in &a.invariants {
            for v in e.violations.iter().take(20) {
                let _ = writeln!(s, "  {}: {}", inv.name, counterexample_line(v));
            }
            if e.violations.len() > 20 {
                let _ = writeln!(s, "  {}: ... {} more", inv.name, e.violations.len() - 20);
            }
        }
    }
    s
}

pub fn to_json(audits: &[ScenarioAudit]) -> Value {
    Value::Array(
        audits
            .iter()
            .map(|a| {
                json!({
                    "name": a.name,
                    "file": a.file.display().to_string(),
                    "backends": a.backends,
                    "steps": a.steps,
                    "error": a.error,
                    "passed": a.passed(),
                    "invariants": a.invariants.iter().map(|(inv, e)| json!({
                        "name": inv.name,
                        "kind": e.kind,
                        "instants": e.instants,
                        "probes": e.probes,
                        "passed": e.violations.is_empty() && e.errors.is_empty(),
                        "errors": e.errors,
                        "violations": e.violations.iter().map(|v| json!({
                            "step": v.step,
                            "time": engine::format_ns(v.at_ns),
                            "backend": v.backend,
                            "flow": v.probe,
                            "outcome": v.outcome,
                            "source_node": v.nodes.0,
                            "destination_node": v.nodes.1,
                            "rules": v.rules,
                            "transient": v.transient,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn junit(audits: &[ScenarioAudit]) -> String {
    use crate::junit::{Outcome as J, TestCase, TestSuite};
    let suites: Vec<TestSuite> = audits
        .iter()
        .map(|a| {
            let class = crate::junit::classname(&a.file);
            let mut cases = Vec::new();
            if let Some(e) = &a.error {
                cases.push(TestCase::new(
                    &class,
                    &a.name,
                    0.0,
                    J::Error {
                        message: "the scenario could not be audited".into(),
                        kind: "load".into(),
                        text: e.clone(),
                    },
                ));
            }
            for (inv, e) in &a.invariants {
                let outcome = if e.violations.is_empty() && e.errors.is_empty() {
                    J::Passed
                } else {
                    J::Failure {
                        message: format!("{} counterexamples", e.violations.len()),
                        kind: "invariant".into(),
                        text: e
                            .violations
                            .iter()
                            .map(counterexample_line)
                            .chain(e.errors.iter().cloned())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    }
                };
                let mut tc =
                    TestCase::new(&class, &format!("{}: {}", a.name, inv.name), 0.0, outcome);
                tc.system_out = Some(format!(
                    "{} invariant checked at {} instants with {} probes on {}",
                    e.kind,
                    e.instants,
                    e.probes,
                    a.backends.join(",")
                ));
                cases.push(tc);
            }
            TestSuite {
                name: a.name.clone(),
                cases,
                properties: vec![("backends".into(), a.backends.join(","))],
            }
        })
        .collect();
    crate::junit::render("verdict audit", &suites)
}

/// Audit output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// The evidence table and the counterexamples.
    Text,
    /// One JSON document.
    Json,
    /// JUnit XML: one test case per invariant.
    Junit,
}

/// `verdict audit` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// text (the evidence table), json, or junit (JUnit XML on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: AuditFormat,
    /// Backends, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
    /// oracle,model,rbpf).
    #[arg(
        long,
        visible_alias = "backends",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub backend: Option<Vec<String>>,
    /// Scenario files or directories.
    #[arg(required = true, value_name = "SCENARIO")]
    pub paths: Vec<PathBuf>,
}

/// Runs `verdict audit`: 0 when every invariant holds, 1 on a violation, 2 when a scenario
/// cannot be loaded.
pub fn run(a: &AuditArgs) -> Result<u8> {
    let names = crate::replay::backends_of(a.backend.as_deref())?;
    let files = crate::scenario_files(&a.paths)?;
    if files.is_empty() {
        anyhow::bail!("no scenario files found under {:?}", a.paths);
    }
    let audits: Vec<ScenarioAudit> = files.iter().map(|f| audit_file(f, &names)).collect();
    match a.format {
        AuditFormat::Text => print!("{}", render_text(&audits)),
        AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&to_json(&audits))?),
        AuditFormat::Junit => print!("{}", junit(&audits)),
    }
    Ok(if audits.iter().any(|a| a.error.is_some()) {
        2
    } else if audits.iter().all(ScenarioAudit::passed) {
        0
    } else {
        1
    })
}
