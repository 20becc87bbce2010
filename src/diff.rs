//! `verdict diff`: replays scenarios (or a packet capture, see [`crate::pcap`]) on several
//! backends at once and reports every disagreement between them.
//!
//! Two things are compared:
//!
//! - verdicts: every probe of every step on every backend (allowed or not, drop code,
//!   deciding direction, proxy redirects and, among backends that compute one, the match
//!   type), as
//!   [`ProbeCheck::disagreement`] defines it; a backend that errors where others answer
//!   counts too;
//! - datapath state: between the datapath backends (`rbpf`, `rbpf-jit`, `kernel`), the raw
//!   ring-buffer records each emitted and the contents of every map on every node after each
//!   step. The harness drives the clock (`verdict_clock`), so these must be identical byte for
//!   byte; the first datapath backend named is the reference the others are compared with.
//!
//! The engine owns the backends while it replays, so the datapath backends are wrapped in a
//! [`Tap`] that snapshots them when the engine asks for the step's flows (`take_flows` is
//! called exactly once per step, after the step's changes and probes).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use tabled::builder::Builder;
use tabled::settings::Style;

use verdict_datapath::backend::MapEntries;
use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::object::Object;
use verdict_datapath::{VERDICT_OBJECT, VERDICT_OBJECT_NAME};
use verdict_sim::engine::{self, Backend, Change, FlowRecord, ProbeCheck, StepOutcome, World};
use verdict_sim::oracle::Flow;
use verdict_sim::scenario::{self, LoadedScenario};
use verdict_sim::verdict::Outcome;

use crate::backends;
use crate::dpbackend::{DatapathBackend, Maker, RawRecord};

/// `verdict diff` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffArgs {
    /// Backends to compare, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
    /// oracle,model,rbpf, plus kernel when it is usable here).
    #[arg(
        long,
        visible_alias = "backends",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub backend: Option<Vec<String>>,
    /// Replay this capture (pcap or pcapng) against the cluster of --scenario instead of
    /// replaying scenario probes.
    #[arg(long, requires = "scenario", value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// With --pcap: the scenario whose cluster and policies the capture runs against.
    #[arg(long, requires = "pcap")]
    pub scenario: Option<PathBuf>,
    /// With --pcap: the cluster as it is after step N (1-based; 0 is the initial state;
    /// default: after the last step).
    #[arg(long, requires = "pcap", value_name = "N")]
    pub after_step: Option<usize>,
    /// With --pcap: write the replayed packets as pcapng, each with its verdicts as a
    /// packet comment.
    #[arg(long, requires = "pcap", value_name = "OUT.pcapng")]
    pub write_pcap: Option<PathBuf>,
    /// With --write-pcap: write only the packets the backends disagree on.
    #[arg(long, requires = "write_pcap")]
    pub only_disagreements: bool,
    /// Also write a JUnit XML report: one test case per scenario (or capture), and one per
    /// step (or per state comparison) where backends disagree.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Compare only shard I of N (I counts from 1): item k of the unsharded run (the k-th
    /// scenario file, sorted) belongs to shard k mod N + 1. `verdict merge` combines the
    /// shards' --junit reports. (A --pcap replay is one capture: not sharded.)
    #[arg(long, value_name = "I/N", value_parser = crate::shard::parse_arg, conflicts_with = "pcap")]
    pub shard: Option<crate::shard::Shard>,
    /// Scenario files or directories (every *.yaml below, except `policies` directories).
    #[arg(
        required_unless_present = "pcap",
        conflicts_with = "pcap",
        value_name = "PATH"
    )]
    pub paths: Vec<PathBuf>,
}

/// A backend as `verdict diff` holds it: datapath backends stay concrete so their maps and
/// raw records can be read.
pub enum Contender {
    Plain(Box<dyn Backend>),
    Datapath(Box<DatapathBackend>),
}

impl Contender {
    pub fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Contender::Plain(b) => b.as_mut(),
            Contender::Datapath(d) => d.as_mut(),
        }
    }
    pub fn datapath(&mut self) -> Option<&mut DatapathBackend> {
        match self {
            Contender::Plain(_) => None,
            Contender::Datapath(d) => Some(d),
        }
    }
}

/// Creates a contender by backend name.
pub type ContenderFactory<'a> = &'a dyn Fn(&str) -> Result<Contender, String>;

/// Whether a backend name is one of the BPF datapaths.
pub fn is_datapath(name: &str) -> bool {
    matches!(name, "rbpf" | "rbpf-jit" | "kernel")
}

fn emulator(mode: ExecMode) -> Maker {
    Box::new(move || {
        let obj = Object::parse(VERDICT_OBJECT_NAME, VERDICT_OBJECT).map_err(|e| e.to_string())?;
        let emu = Emulator::new(&obj, mode).map_err(|e| e.to_string())?;
        Ok(Box::new(emu) as Box<dyn verdict_datapath::backend::Datapath>)
    })
}

/// Whether the kernel backend can run here, and exactly why not.
pub fn kernel_status() -> Result<(), String> {
    #[cfg(feature = "kernel")]
    {
        verdict_datapath::kernel::kernel_available()
    }
    #[cfg(not(feature = "kernel"))]
    {
        Err("this verdict was built without the `kernel` feature (rebuild with `cargo build --features kernel`; running it needs libelf and root or CAP_BPF+CAP_NET_ADMIN)".into())
    }
}

#[cfg(feature = "kernel")]
fn kernel_maker() -> Result<Maker, String> {
    use verdict_datapath::kernel::KernelDatapath;
    kernel_status().map_err(|why| format!("kernel backend unavailable: {why}"))?;
    Ok(Box::new(|| {
        KernelDatapath::load_bytes(VERDICT_OBJECT_NAME, VERDICT_OBJECT)
            .map(|k| Box::new(k) as Box<dyn verdict_datapath::backend::Datapath>)
            .map_err(|e| e.to_string())
    }))
}

#[cfg(not(feature = "kernel"))]
fn kernel_maker() -> Result<Maker, String> {
    Err(format!(
        "kernel backend unavailable: {}",
        kernel_status().err().unwrap_or_default()
    ))
}

/// The standard contenders: the same backends as [`backends::factory`], with the datapath
/// ones kept concrete. (They are built here rather than taken from the factory because the
/// factory hands out `Box<dyn Backend>`, whose maps cannot be reached.)
pub fn contender(name: &str) -> Result<Contender, String> {
    let maker = match name {
        "rbpf" => emulator(ExecMode::Interpreter),
        "rbpf-jit" => emulator(ExecMode::Jit),
        "kernel" => kernel_maker()?,
        other => return backends::factory(other).map(Contender::Plain),
    };
    Ok(Contender::Datapath(Box::new(DatapathBackend::new(
        name, maker,
    ))))
}

/// The backends to compare: the requested ones (all known, no duplicates, `kernel` only when
/// usable), or by default [`backends::DEFAULT_BACKENDS`] plus `kernel` when usable. Returns
/// the names and notes to print (why `kernel` was left out).
pub fn choose_backends(requested: Option<&[String]>) -> Result<(Vec<String>, Vec<String>)> {
    let mut notes = Vec::new();
    let names: Vec<String> = match requested {
        Some(list) => backends::validate(list).map_err(anyhow::Error::msg)?,
        None => {
            let mut v: Vec<String> = backends::DEFAULT_BACKENDS
                .iter()
                .map(|s| s.to_string())
                .collect();
            match kernel_status() {
                Ok(()) => v.push("kernel".into()),
                Err(why) => notes.push(format!("note: kernel backend not used: {why}")),
            }
            v
        }
    };
    if names.len() < 2 {
        bail!(
            "--backend: diff needs at least two backends, got {}",
            names.join(",")
        );
    }
    Ok((names, notes))
}

/// What a datapath looked like after one step: every map on every node, and the raw
/// records emitted during the step.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    /// (node, map) -> dump, or the dump's error.
    pub maps: BTreeMap<(String, String), Result<MapEntries, String>>,
    pub records: Vec<RawRecord>,
}

/// Dumps every map of every node (in node and object order) and drains the raw records.
pub fn capture(dp: &mut DatapathBackend) -> Capture {
    let mut maps = BTreeMap::new();
    for (node, d) in dp.datapaths() {
        for def in d.map_defs() {
            maps.insert(
                (node.to_string(), def.name.clone()),
                d.map_dump(&def.name).map_err(|e| e.to_string()),
            );
        }
    }
    Capture {
        maps,
        records: dp.take_raw_records(),
    }
}

/// The world as of the last step, cloned (the engine keeps its own).
fn snapshot(world: &World) -> World {
    World {
        cluster: world.cluster.clone(),
        repo: world.repo.clone(),
        clock_ns: world.clock_ns,
        notes: world.notes.clone(),
        dns: world.dns.clone(),
    }
}

/// A backend the engine drives while `verdict diff` keeps a handle on it.
pub(crate) struct Tap {
    pub name: String,
    pub inner: Rc<RefCell<Contender>>,
    /// Datapath backends in scenario mode: one capture per step.
    pub captures: Option<Rc<RefCell<Vec<Capture>>>>,
    /// One tap keeps the latest world (the pcap replay needs the cluster after the steps).
    pub world: Option<Rc<RefCell<Option<World>>>>,
}

impl Backend for Tap {
    fn name(&self) -> &str {
        &self.name
    }
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        self.inner.borrow_mut().backend().sync(world, change)
    }
    // Propagation delays reach the wrapped backend, so a scenario with `propagation:` is
    // replayed as `verdict run` replays it (nodes lag), not as if updates were immediate.
    fn sync_due(
        &mut self,
        world: &World,
        change: &Change<'_>,
        due: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        self.inner
            .borrow_mut()
            .backend()
            .sync_due(world, change, due)
    }
    fn lags(&self) -> bool {
        self.inner.borrow_mut().backend().lags()
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        self.inner.borrow_mut().backend().probe(world, flow)
    }
    fn packet(
        &mut self,
        world: &World,
        pkt: &verdict_sim::conntrack::ConnPacket,
    ) -> Result<Outcome, String> {
        self.inner.borrow_mut().backend().packet(world, pkt)
    }
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: verdict_sim::verdict::Direction,
        proxy_port: u16,
    ) -> Result<Vec<verdict_sim::proxy::ProxyRule>, String> {
        self.inner
            .borrow_mut()
            .backend()
            .proxy_rules(world, flow, dir, proxy_port)
    }
    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        self.inner.borrow_mut().backend().proxy_upstream(world)
    }
    fn note_l7(&mut self, world: &World, l7: &verdict_sim::engine::L7Exchange<'_>) {
        self.inner.borrow_mut().backend().note_l7(world, l7)
    }
    fn take_flows(&mut self, world: &World) -> Vec<FlowRecord> {
        let mut inner = self.inner.borrow_mut();
        if let (Some(log), Some(dp)) = (&self.captures, inner.datapath()) {
            log.borrow_mut().push(capture(dp));
        }
        if let Some(w) = &self.world {
            *w.borrow_mut() = Some(snapshot(world));
        }
        inner.backend().take_flows(world)
    }
}

/// Whether a set of results disagrees: as [`ProbeCheck::disagreement`], and also when any
/// backend failed (an error is never agreement).
pub fn results_disagree(results: &[(String, Result<Outcome, String>)]) -> bool {
    if results.iter().any(|(_, r)| r.is_err()) {
        return true;
    }
    let oks: Vec<&Outcome> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let Some(first) = oks.first() else {
        return false;
    };
    if oks.iter().any(|o| {
        o.allowed != first.allowed
            || o.reason != first.reason
            || o.direction != first.direction
            || o.redirect != first.redirect
    }) {
        return true;
    }
    let mut matches = oks.iter().filter_map(|o| o.match_type);
    match matches.next() {
        Some(m) => matches.any(|x| x != m),
        None => false,
    }
}

/// One cell of a verdict table: verdict, drop code with Hubble's name, direction, match,
/// proxy redirects (`redirect=egress:15001`).
pub fn outcome_cell(r: &Result<Outcome, String>) -> String {
    match r {
        Err(e) => format!("error: {e}"),
        Ok(o) => {
            let mut s = String::from(if o.allowed { "allow" } else { "deny" });
            if let (false, Some(reason)) = (o.allowed, o.reason) {
                let _ = write!(s, " {} ({})", reason.hubble_name(), reason.code());
            }
            if let Some(d) = o.direction {
                let _ = write!(s, " {d}");
            }
            if let Some(m) = o.match_type {
                let _ = write!(s, " match={m}");
            }
            if o.redirect.any() {
                let _ = write!(s, " redirect={}", o.redirect);
            }
            s
        }
    }
}

/// Each backend's answer to one probe or packet, in backend order.
pub type Results = [(String, Result<Outcome, String>)];

/// One row of a verdict table.
pub struct TableRow<'a> {
    /// Step, or packet index and time.
    pub at: String,
    /// The probe or packet.
    pub what: String,
    pub results: &'a Results,
}

/// A probe the backends disagree on.
#[derive(Clone, Debug)]
pub struct VerdictRow {
    pub step: usize,
    pub what: String,
    pub results: Vec<(String, Result<Outcome, String>)>,
}

/// One byte-level difference between two datapaths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRow {
    /// Step (scenario mode) or packet index (pcap mode); `None`: after the whole trace.
    pub at: Option<usize>,
    pub node: String,
    /// `map NAME key HEX` or `record #N (PROGRAM)`.
    pub what: String,
    pub reference: String,
    pub other: String,
}

/// The byte comparison of one datapath backend with the reference.
#[derive(Clone, Debug, Default)]
pub struct PairReport {
    pub reference: String,
    pub other: String,
    pub snapshots: usize,
    pub map_entries: usize,
    pub records: usize,
    pub rows: Vec<StateRow>,
}

/// Hex of `b`, at most `max` bytes from `from`, with an ellipsis for what is cut.
fn hex_window(b: &[u8], from: usize, max: usize) -> String {
    let start = from.min(b.len());
    let end = (start + max).min(b.len());
    let mut s = String::new();
    if start > 0 {
        let _ = write!(s, "[{start}..] ");
    }
    for x in &b[start..end] {
        let _ = write!(s, "{x:02x}");
    }
    if end < b.len() {
        s.push('…');
    }
    if b.is_empty() {
        s.push_str("(empty)");
    }
    s
}

/// Both values around their first differing byte.
fn show_pair(a: Option<&[u8]>, b: Option<&[u8]>) -> (String, String) {
    match (a, b) {
        (Some(a), Some(b)) => {
            let off = a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            let from = off.saturating_sub(4) & !3;
            (hex_window(a, from, 24), hex_window(b, from, 24))
        }
        (a, b) => {
            let f = |v: Option<&[u8]>| v.map_or("(absent)".to_string(), |v| hex_window(v, 0, 24));
            (f(a), f(b))
        }
    }
}

/// Compares one capture of `other` with the reference's, appending rows to `pair`.
pub fn compare_captures(pair: &mut PairReport, at: Option<usize>, a: &Capture, b: &Capture) {
    pair.snapshots += 1;
    let keys: BTreeSet<&(String, String)> = a.maps.keys().chain(b.maps.keys()).collect();
    for key in keys {
        let (node, map) = key;
        match (a.maps.get(key), b.maps.get(key)) {
            (Some(Ok(x)), Some(Ok(y))) => {
                let xm: BTreeMap<&[u8], &[u8]> = x
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect();
                let ym: BTreeMap<&[u8], &[u8]> = y
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect();
                let ks: BTreeSet<&[u8]> = xm.keys().chain(ym.keys()).copied().collect();
                pair.map_entries += ks.len();
                for k in ks {
                    let (xv, yv) = (xm.get(k).copied(), ym.get(k).copied());
                    if xv != yv {
                        let (r, o) = show_pair(xv, yv);
                        pair.rows.push(StateRow {
                            at,
                            node: node.clone(),
                            what: format!("map {map} key {}", hex_window(k, 0, 48)),
                            reference: r,
                            other: o,
                        });
                    }
                }
            }
            (x, y) => {
                let show = |v: Option<&Result<MapEntries, String>>| match v {
                    None => "(no such map)".to_string(),
                    Some(Ok(e)) => format!("{} entries", e.len()),
                    Some(Err(e)) => format!("dump failed: {e}"),
                };
                let same_error = matches!((x, y), (Some(Err(p)), Some(Err(q))) if p == q);
                if !same_error {
                    pair.rows.push(StateRow {
                        at,
                        node: node.clone(),
                        what: format!("map {map}"),
                        reference: show(x),
                        other: show(y),
                    });
                }
            }
        }
    }
    let n = a.records.len().max(b.records.len());
    pair.records += n;
    for i in 0..n {
        let (x, y) = (a.records.get(i), b.records.get(i));
        if x == y {
            continue;
        }
        let node = x.or(y).map(|r| r.node.clone()).unwrap_or_default();
        let program = x.or(y).map(|r| r.program.clone()).unwrap_or_default();
        let where_ = |r: Option<&RawRecord>| {
            r.map(|r| format!("{}/{}: ", r.node, r.program))
                .unwrap_or_default()
        };
        let (r, o) = show_pair(x.map(|r| r.bytes.as_slice()), y.map(|r| r.bytes.as_slice()));
        let (r, o) = if x.map(|r| (&r.node, &r.program)) != y.map(|r| (&r.node, &r.program)) {
            (format!("{}{r}", where_(x)), format!("{}{o}", where_(y)))
        } else {
            (r, o)
        };
        pair.rows.push(StateRow {
            at,
            node,
            what: format!("record #{} ({program})", i + 1),
            reference: r,
            other: o,
        });
    }
}

/// `verdict diff` on one scenario.
#[derive(Clone, Debug, Default)]
pub struct ScenarioDiff {
    pub name: String,
    pub file: PathBuf,
    pub backends: Vec<String>,
    /// A replay error (bad scenario, backend failure): counts as a failure.
    pub error: Option<String>,
    pub steps: usize,
    pub probes: usize,
    pub verdicts: Vec<VerdictRow>,
    pub pairs: Vec<PairReport>,
    /// Probes in a propagation window where the lagging backends' verdict differs from the
    /// eventual one (expected by the scenario; not disagreements).
    pub transient: usize,
}

impl ScenarioDiff {
    pub fn state_differences(&self) -> usize {
        self.pairs.iter().map(|p| p.rows.len()).sum()
    }
    pub fn clean(&self) -> bool {
        self.error.is_none() && self.verdicts.is_empty() && self.state_differences() == 0
    }
}

/// Replays one loaded scenario on `names`, built by `make`, and compares them.
pub fn diff_scenario(
    loaded: &LoadedScenario,
    names: &[String],
    make: ContenderFactory<'_>,
) -> ScenarioDiff {
    let logs: RefCell<BTreeMap<String, Rc<RefCell<Vec<Capture>>>>> = RefCell::default();
    let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
        let mut c = make(name)?;
        let captures = c.datapath().map(|dp| {
            dp.keep_raw_records();
            let log = Rc::new(RefCell::new(Vec::new()));
            logs.borrow_mut().insert(name.to_string(), log.clone());
            log
        });
        Ok(Box::new(Tap {
            name: name.to_string(),
            inner: Rc::new(RefCell::new(c)),
            captures,
            world: None,
        }))
    };
    let r = engine::run(loaded, names, &factory);
    let mut out = ScenarioDiff {
        name: r.name.clone(),
        file: r.file.clone(),
        backends: names.to_vec(),
        error: r.error.clone(),
        steps: r.steps.len(),
        ..Default::default()
    };
    for s in &r.steps {
        let checks: Vec<&ProbeCheck> = match &s.outcome {
            StepOutcome::Probes(p) => p.iter().collect(),
            StepOutcome::Matrix(m) => m.checks().collect(),
            StepOutcome::Change(_) => Vec::new(),
        };
        for c in checks {
            out.probes += 1;
            // In a propagation window lagging backends (datapaths) are compared with each
            // other and the others with each other (`ProbeCheck::disagreement`): a node that
            // has not heard of a change yet is the simulation working, not a disagreement.
            if c.transient_disagreement() {
                out.transient += 1;
            }
            if c.results.iter().any(|(_, r)| r.is_err()) || c.disagreement() {
                out.verdicts.push(VerdictRow {
                    step: s.index,
                    what: c.label(),
                    results: c.results.clone(),
                });
            }
        }
    }
    let logs = logs.into_inner();
    let dps: Vec<&String> = names.iter().filter(|n| logs.contains_key(*n)).collect();
    if let Some((reference, others)) = dps.split_first() {
        let a = logs[*reference].borrow();
        for other in others {
            let b = logs[*other].borrow();
            let mut pair = PairReport {
                reference: reference.to_string(),
                other: other.to_string(),
                ..Default::default()
            };
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                compare_captures(&mut pair, Some(i + 1), x, y);
            }
            if a.len() != b.len() {
                pair.rows.push(StateRow {
                    at: None,
                    node: String::new(),
                    what: "steps captured".into(),
                    reference: a.len().to_string(),
                    other: b.len().to_string(),
                });
            }
            out.pairs.push(pair);
        }
    }
    out
}

/// Rows of state differences printed per pair; the rest are counted (one divergence tends
/// to cascade through every later step).
pub const MAX_STATE_ROWS: usize = 40;

/// A verdict table: one row per disagreement, one column per backend.
pub fn verdict_table(first: &str, rows: &[TableRow<'_>], names: &[String]) -> String {
    let mut b = Builder::default();
    let mut header = vec![first.to_string(), "probe".to_string()];
    header.extend(names.iter().cloned());
    b.push_record(header);
    for row in rows {
        let mut rec = vec![row.at.clone(), row.what.clone()];
        for n in names {
            rec.push(
                row.results
                    .iter()
                    .find(|(b, _)| b == n)
                    .map_or("-".to_string(), |(_, r)| outcome_cell(r)),
            );
        }
        b.push_record(rec);
    }
    let mut t = b.build();
    t.with(Style::sharp());
    t.to_string()
}

/// The table of one pair's byte differences (at most [`MAX_STATE_ROWS`] rows).
pub fn state_table(first: &str, pair: &PairReport) -> String {
    let mut b = Builder::default();
    b.push_record([
        first.to_string(),
        "node".into(),
        "what".into(),
        pair.reference.clone(),
        pair.other.clone(),
    ]);
    for r in pair.rows.iter().take(MAX_STATE_ROWS) {
        b.push_record([
            r.at.map_or("end".to_string(), |a| a.to_string()),
            r.node.clone(),
            r.what.clone(),
            r.reference.clone(),
            r.other.clone(),
        ]);
    }
    let mut t = b.build();
    t.with(Style::sharp());
    let mut s = t.to_string();
    if pair.rows.len() > MAX_STATE_ROWS {
        let _ = write!(s, "\n... and {} more", pair.rows.len() - MAX_STATE_ROWS);
    }
    s
}

/// Summary lines of the byte comparisons.
pub fn pair_lines(pairs: &[PairReport], unit: &str) -> String {
    let mut s = String::new();
    for p in pairs {
        let _ = writeln!(
            s,
            "  {} vs {}: {} {unit}, {} map entries, {} flow records compared: {}",
            p.reference,
            p.other,
            p.snapshots,
            p.map_entries,
            p.records,
            if p.rows.is_empty() {
                "identical".to_string()
            } else {
                format!("{} differences", p.rows.len())
            }
        );
    }
    s
}

/// The report of one scenario, as `verdict diff` prints it.
pub fn render(d: &ScenarioDiff) -> String {
    let mut s = String::new();
    let status = if d.clean() { "OK  " } else { "DIFF" };
    let _ = writeln!(
        s,
        "{status} {} ({}): {} steps, {} probes on {}: {} verdict disagreements, {} state differences",
        d.name,
        d.file.display(),
        d.steps,
        d.probes,
        d.backends.join(","),
        d.verdicts.len(),
        d.state_differences()
    );
    if d.transient > 0 {
        let _ = writeln!(
            s,
            "  {} probes landed in a propagation window where the lagging nodes still decide \
             differently from the eventual verdict (see `verdict run` for the windows)",
            d.transient
        );
    }
    if let Some(e) = &d.error {
        let _ = writeln!(s, "  error: {e}");
    }
    s.push_str(&pair_lines(&d.pairs, "steps"));
    if !d.verdicts.is_empty() {
        let rows: Vec<TableRow<'_>> = d
            .verdicts
            .iter()
            .map(|v| TableRow {
                at: v.step.to_string(),
                what: v.what.clone(),
                results: &v.results,
            })
            .collect();
        let _ = writeln!(s, "{}", verdict_table("step", &rows, &d.backends));
    }
    for p in d.pairs.iter().filter(|p| !p.rows.is_empty()) {
        let _ = writeln!(s, "{}", state_table("step", p));
    }
    s
}

/// The JUnit cases of one scenario's diff: the scenario, then one per step with verdict
/// disagreements and one per datapath pair with state differences.
fn junit_cases(
    d: &ScenarioDiff,
    text: &str,
    seconds: f64,
) -> Vec<(String, crate::junit::TestCase)> {
    use crate::junit::{classname, suite_of, Outcome, TestCase};
    let class = classname(&d.file);
    let suite = suite_of(&d.file);
    let outcome = match &d.error {
        Some(e) => Outcome::Error {
            message: verdict_sim::report::clip_values(e),
            kind: "input".into(),
            text: String::new(),
        },
        None if d.clean() => Outcome::Passed,
        None => Outcome::Failure {
            message: format!(
                "{} verdict disagreements, {} state differences",
                d.verdicts.len(),
                d.state_differences()
            ),
            kind: "disagreement".into(),
            text: String::new(),
        },
    };
    let mut out = vec![(
        suite.clone(),
        TestCase {
            system_out: Some(text.to_string()),
            ..TestCase::new(&class, &d.name, seconds, outcome)
        },
    )];
    let mut steps: BTreeMap<usize, Vec<&VerdictRow>> = BTreeMap::new();
    for v in &d.verdicts {
        steps.entry(v.step).or_default().push(v);
    }
    for (step, rows) in steps {
        let table: Vec<TableRow<'_>> = rows
            .iter()
            .map(|v| TableRow {
                at: v.step.to_string(),
                what: v.what.clone(),
                results: &v.results,
            })
            .collect();
        out.push((
            suite.clone(),
            TestCase::new(
                &class,
                &format!("{}: step {step}", d.name),
                0.0,
                Outcome::Failure {
                    message: format!("backends disagree on {} probes", rows.len()),
                    kind: "disagreement".into(),
                    text: verdict_table("step", &table, &d.backends),
                },
            ),
        ));
    }
    for p in d.pairs.iter().filter(|p| !p.rows.is_empty()) {
        out.push((
            suite.clone(),
            TestCase::new(
                &class,
                &format!("{}: {} vs {} state", d.name, p.reference, p.other),
                0.0,
                Outcome::Failure {
                    message: format!("{} map or flow-record differences", p.rows.len()),
                    kind: "state".into(),
                    text: state_table("step", p),
                },
            ),
        ));
    }
    out
}

/// Runs `verdict diff`: exit status 0 when everything agrees, 1 when anything disagrees, 2
/// when a scenario could not be loaded or replayed.
pub fn run(args: DiffArgs) -> Result<u8> {
    let (names, notes) = choose_backends(args.backend.as_deref())?;
    for n in &notes {
        println!("{n}");
    }
    if let Some(pcap) = &args.pcap {
        let scenario = args
            .scenario
            .as_ref()
            .context("--pcap needs --scenario (the cluster the capture runs against)")?;
        return crate::pcap::run(&crate::pcap::PcapArgs {
            pcap: pcap.clone(),
            scenario: scenario.clone(),
            after_step: args.after_step,
            write_pcap: args.write_pcap.clone(),
            only_disagreements: args.only_disagreements,
            backends: names,
            junit: args.junit.clone(),
        })
        .map(|clean| if clean { 0 } else { 1 });
    }
    let files = crate::scenario_files(&args.paths)?;
    if files.is_empty() {
        bail!("no scenario files found under {:?}", args.paths);
    }
    let total = files.len();
    let fingerprint = crate::shard::fingerprint(&files);
    let files = match args.shard {
        Some(s) => s.select(&files),
        None => files,
    };
    let mut clean = 0usize;
    let mut errors = 0usize;
    let (mut probes, mut verdicts, mut state) = (0usize, 0usize, 0usize);
    let progress = crate::progress::Progress::new(files.len() as u64, "scenarios");
    let mut cases = Vec::new();
    for f in &files {
        progress.message(&f.display().to_string());
        let t = std::time::Instant::now();
        let d = match scenario::load(f) {
            Ok(loaded) => diff_scenario(&loaded, &names, &contender),
            Err(e) => ScenarioDiff {
                name: f.display().to_string(),
                file: f.clone(),
                backends: names.clone(),
                error: Some(e.to_string()),
                ..Default::default()
            },
        };
        probes += d.probes;
        verdicts += d.verdicts.len();
        state += d.state_differences();
        if d.clean() {
            clean += 1;
        }
        if d.error.is_some() {
            errors += 1;
        }
        let text = render(&d);
        progress.inc(&d.name);
        if args.junit.is_some() {
            cases.extend(junit_cases(&d, &text, t.elapsed().as_secs_f64()));
        }
        progress.suspend(|| print!("{text}"));
    }
    progress.finish();
    if let Some(path) = &args.junit {
        let mut props = vec![("backends".to_string(), names.join(","))];
        if let Some(s) = args.shard {
            props.extend(crate::shard::junit_properties(s, total, Some(&fingerprint)));
        }
        let suites = crate::merge::junit_suites(cases, &props, args.shard.is_some());
        crate::junit::write(path, "verdict diff", &suites)?;
    }
    let shard_note = args
        .shard
        .map(|s| format!(" (shard {s} of {total})"))
        .unwrap_or_default();
    println!(
        "{} scenarios{shard_note}, {probes} probes on {}: {verdicts} verdict disagreements, {state} state differences; {clean} clean, {} not",
        files.len(),
        names.join(","),
        files.len() - clean
    );
    Ok(if errors > 0 {
        2
    } else if clean == files.len() {
        0
    } else {
        1
    })
}
