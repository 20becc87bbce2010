//! `verdict fuzz`: differential testing of the backends on generated scenarios.
//!
//! This module owns the fuzz loop, the shrinker and the reproducers. Case `i` of a run with
//! seed `s` is the scenario `verdict_sim::gen::generate(case_seed(s, i), config)`; it is
//! parsed exactly as a scenario file is, replayed on every backend, and any disagreement
//! between backends (or any error) is shrunk: policies, policy items, namespaces, pods,
//! labels, ports, steps and matrix rows and columns are removed one at a time, greedily,
//! while the same kind of failure persists (each candidate is re-run). The smallest
//! scenario found is written as `fuzz-<seed>-<case>.yaml`, with the command that replays it.
//!
//! The output for a given seed, case count, backends and config is deterministic (no
//! timings, no addresses, no hash order).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use verdict_sim::engine::{self, BackendFactory, ProbeCheck, ScenarioReport};
use verdict_sim::gen::{self, Coverage, GenConfig, GenScenario, GenStep, Yaml};
use verdict_sim::scenario;

use crate::backends;

/// What `verdict fuzz` takes.
#[derive(Clone, Debug)]
pub struct FuzzArgs {
    pub seed: u64,
    pub cases: u64,
    pub backends: Vec<String>,
    /// Where reproducers go (the CLI's default is `scenarios/regressions`).
    pub out_dir: PathBuf,
    pub verbose: bool,
    /// Only the cases of this shard (case k is shard k mod N + 1's).
    pub shard: Option<crate::shard::Shard>,
}

/// How a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Backends disagree on at least one probe; the first one, described.
    Disagreement { probes: usize, first: String },
    /// The scenario did not parse, the replay stopped, or a backend errored on a probe.
    /// `signature` is the message with numbers and step positions blotted out, so that
    /// shrinking keeps "the same" error.
    Error { message: String, signature: String },
}

impl Failure {
    /// Whether `other` is the same kind of failure (for shrinking).
    pub fn same_kind(&self, other: &Failure) -> bool {
        match (self, other) {
            (Failure::Disagreement { .. }, Failure::Disagreement { .. }) => true,
            (Failure::Error { signature: a, .. }, Failure::Error { signature: b, .. }) => a == b,
            _ => false,
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Failure::Disagreement { probes, first } => {
                format!("DISAGREEMENT on {probes} probe(s); first: {first}")
            }
            Failure::Error { message, .. } => format!("ERROR: {message}"),
        }
    }
}

fn signature(message: &str) -> String {
    let tail = match message.find("backend ") {
        Some(i) => &message[i..],
        None => message
            .rsplit_once("): ")
            .map(|(_, t)| t)
            .unwrap_or(message),
    };
    let mut out = String::new();
    for c in tail.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn describe(c: &ProbeCheck) -> String {
    let results: Vec<String> = c
        .results
        .iter()
        .map(|(b, r)| match r {
            Ok(o) => format!("{b}: {o}"),
            Err(e) => format!("{b}: error {e}"),
        })
        .collect();
    format!("{} [{}]", c.label(), results.join("; "))
}

/// The failure of a report, if any.
pub fn classify(report: &ScenarioReport) -> Option<Failure> {
    if let Some(e) = &report.error {
        return Some(Failure::Error {
            message: e.clone(),
            signature: signature(e),
        });
    }
    let disagreeing: Vec<&ProbeCheck> = report.checks().filter(|c| c.disagreement()).collect();
    if let Some(first) = disagreeing.first() {
        return Some(Failure::Disagreement {
            probes: disagreeing.len(),
            first: describe(first),
        });
    }
    for c in report.checks() {
        for (b, r) in &c.results {
            if let Err(e) = r {
                let message = format!("backend {b}: probe {}: {e}", c.label());
                return Some(Failure::Error {
                    signature: signature(&message),
                    message,
                });
            }
        }
    }
    None
}

/// The result of replaying one scenario.
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    /// Probes run (on each backend).
    pub probes: usize,
    pub failure: Option<Failure>,
    /// The verdicts of the first backend: how many probes it allowed, and how many it
    /// denied for each drop reason (a batch that allows everything tests little).
    pub verdicts: VerdictMix,
}

/// Allowed probes and denied probes by drop reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictMix {
    pub allowed: u64,
    pub denied: BTreeMap<String, u64>,
}

impl VerdictMix {
    fn add_report(&mut self, report: &ScenarioReport) {
        for c in report.checks() {
            match c.results.first().map(|(_, r)| r) {
                Some(Ok(o)) if o.allowed => self.allowed += 1,
                Some(Ok(o)) => {
                    let reason = o
                        .reason
                        .map(|r| r.hubble_name())
                        .unwrap_or_else(|| "no reason".into());
                    *self.denied.entry(reason).or_default() += 1;
                }
                _ => {}
            }
        }
    }

    pub fn merge(&mut self, other: &VerdictMix) {
        self.allowed += other.allowed;
        for (k, v) in &other.denied {
            *self.denied.entry(k.clone()).or_default() += v;
        }
    }
}

impl std::fmt::Display for VerdictMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let denied: u64 = self.denied.values().sum();
        write!(f, "{} allowed, {denied} denied", self.allowed)?;
        if !self.denied.is_empty() {
            let parts: Vec<String> = self
                .denied
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Parses a generated scenario as a scenario file and replays it on `backend_names`, built
/// by `factory` (normally `verdict::backends::factory`).
pub fn evaluate(
    s: &GenScenario,
    backend_names: &[String],
    factory: BackendFactory<'_>,
) -> Evaluation {
    let text = s.to_yaml();
    let path = PathBuf::from(format!("{}.yaml", s.name));
    let loaded = match scenario::parse(&path, &text) {
        Ok(l) => l,
        Err(e) => {
            let message = format!("generated scenario does not parse: {e}");
            return Evaluation {
                failure: Some(Failure::Error {
                    signature: signature(&message),
                    message,
                }),
                ..Default::default()
            };
        }
    };
    let report = engine::run(&loaded, backend_names, factory);
    let mut verdicts = VerdictMix::default();
    verdicts.add_report(&report);
    Evaluation {
        probes: report.checks().count(),
        failure: classify(&report),
        verdicts,
    }
}

/// One case of a fuzz run.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub case: u64,
    pub case_seed: u64,
    pub scenario: GenScenario,
    pub coverage: Coverage,
    pub evaluation: Evaluation,
}

/// Generates and replays case `case` of a run seeded with `seed`.
pub fn check_case(
    seed: u64,
    case: u64,
    config: &GenConfig,
    backend_names: &[String],
    factory: BackendFactory<'_>,
) -> CaseResult {
    let case_seed = gen::case_seed(seed, case);
    let mut g = gen::generate(case_seed, config);
    g.scenario.name = format!("fuzz-{seed}-{case}");
    let evaluation = evaluate(&g.scenario, backend_names, factory);
    CaseResult {
        case,
        case_seed,
        scenario: g.scenario,
        coverage: g.coverage,
        evaluation,
    }
}

/// Paths of the removable parts of a manifest: sequence items and optional keys (never
/// `apiVersion`, `kind`, `metadata` or a key a rule cannot go without).
fn removable_paths(v: &Yaml, path: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    const KEEP: &[&str] = &[
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "endpointSelector",
        "cidr",
        "key",
        "operator",
        "type",
    ];
    match v {
        Yaml::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i);
                out.push(path.clone());
                removable_paths(item, path, out);
                path.pop();
            }
        }
        Yaml::Map(entries) => {
            for (i, (k, item)) in entries.iter().enumerate() {
                if k == "metadata" {
                    continue;
                }
                path.push(i);
                if !KEEP.contains(&k.as_str()) {
                    out.push(path.clone());
                }
                removable_paths(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn remove_at(v: &mut Yaml, path: &[usize]) {
    let Some((&last, rest)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for &i in rest {
        cur = match cur {
            Yaml::Seq(items) => &mut items[i],
            Yaml::Map(entries) => &mut entries[i].1,
            _ => return,
        };
    }
    match cur {
        Yaml::Seq(items) if last < items.len() => {
            items.remove(last);
        }
        Yaml::Map(entries) if last < entries.len() => {
            entries.remove(last);
        }
        _ => {}
    }
}

/// Every one-step simplification of `s`, biggest first.
pub fn candidates(s: &GenScenario) -> Vec<GenScenario> {
    let mut out = Vec::new();
    let mut push = |mut c: GenScenario| {
        c.repair();
        if c != *s {
            out.push(c);
        }
    };
    for i in 0..s.policies.len() {
        let mut c = s.clone();
        c.policies.remove(i);
        push(c);
    }
    for i in 0..s.steps.len() {
        let mut c = s.clone();
        c.steps.remove(i);
        push(c);
    }
    for i in 0..s.namespaces.len() {
        let mut c = s.clone();
        c.namespaces.remove(i);
        push(c);
    }
    for i in 0..s.pods.len() {
        let mut c = s.clone();
        c.pods.remove(i);
        push(c);
    }
    if s.nodes.len() > 1 {
        let mut c = s.clone();
        let first = c.nodes[0].0.clone();
        c.nodes.truncate(1);
        for p in &mut c.pods {
            p.node = first.clone();
        }
        for st in &mut c.steps {
            if let GenStep::CreatePod(p) = st {
                p.node = first.clone();
            }
        }
        push(c);
    }
    for (i, st) in s.steps.iter().enumerate() {
        if let GenStep::Matrix(m) = st {
            for r in 0..m.rows.len() {
                let mut c = s.clone();
                if let GenStep::Matrix(cm) = &mut c.steps[i] {
                    cm.rows.remove(r);
                }
                push(c);
            }
            for col in 0..m.columns.len() {
                let mut c = s.clone();
                if let GenStep::Matrix(cm) = &mut c.steps[i] {
                    cm.columns.remove(col);
                }
                push(c);
            }
        }
    }
    for i in 0..s.externals.len() {
        let mut c = s.clone();
        c.externals.remove(i);
        push(c);
    }
    // Inside policies, initial and applied.
    for i in 0..s.policies.len() {
        let mut paths = Vec::new();
        removable_paths(&s.policies[i], &mut Vec::new(), &mut paths);
        for p in paths {
            let mut c = s.clone();
            remove_at(&mut c.policies[i], &p);
            push(c);
        }
    }
    for (i, st) in s.steps.iter().enumerate() {
        if let GenStep::Apply(m) = st {
            let mut paths = Vec::new();
            removable_paths(m, &mut Vec::new(), &mut paths);
            for p in paths {
                let mut c = s.clone();
                if let GenStep::Apply(cm) = &mut c.steps[i] {
                    remove_at(cm, &p);
                }
                push(c);
            }
        }
    }
    // Pod labels and ports, namespace labels.
    for (i, p) in s.pods.iter().enumerate() {
        for k in p.labels.keys() {
            let mut c = s.clone();
            c.pods[i].labels.remove(k);
            push(c);
        }
        for j in 0..p.ports.len() {
            let mut c = s.clone();
            c.pods[i].ports.remove(j);
            push(c);
        }
    }
    for (i, n) in s.namespaces.iter().enumerate() {
        for k in n.labels.keys() {
            let mut c = s.clone();
            c.namespaces[i].labels.remove(k);
            push(c);
        }
    }
    out
}

/// The outcome of shrinking.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub scenario: GenScenario,
    pub failure: Failure,
    /// Candidates replayed.
    pub runs: usize,
}

/// Shrinks `s`, which fails with `failure`, greedily, replaying at most `budget` candidates.
pub fn shrink(
    s: &GenScenario,
    failure: &Failure,
    backend_names: &[String],
    factory: BackendFactory<'_>,
    budget: usize,
) -> Shrunk {
    let mut cur = s.clone();
    let mut cur_failure = failure.clone();
    let mut runs = 0;
    let mut start = 0;
    'outer: loop {
        let cands = candidates(&cur);
        if cands.is_empty() {
            break;
        }
        let n = cands.len();
        let mut found = None;
        for k in 0..n {
            if runs >= budget {
                break 'outer;
            }
            let i = (start + k) % n;
            runs += 1;
            let ev = evaluate(&cands[i], backend_names, factory);
            if let Some(f) = ev.failure {
                if f.same_kind(failure) {
                    found = Some((i, f));
                    break;
                }
            }
        }
        match found {
            Some((i, f)) => {
                cur = cands[i].clone();
                cur_failure = f;
                start = i;
            }
            None => break,
        }
    }
    Shrunk {
        scenario: cur,
        failure: cur_failure,
        runs,
    }
}

/// The command that replays a reproducer.
pub fn replay_command(backend_names: &[String], path: &Path) -> String {
    format!(
        "verdict run --backend {} {}",
        backend_names.join(","),
        path.display()
    )
}

/// Totals of a fuzz run.
#[derive(Clone, Debug, Default)]
pub struct FuzzSummary {
    pub cases: u64,
    /// Probes compared (each on every backend).
    pub probes: u64,
    pub disagreements: u64,
    pub errors: u64,
    pub coverage: Coverage,
    /// Verdicts of the first backend over every case.
    pub verdicts: VerdictMix,
    /// Reproducers written.
    pub reproducers: Vec<PathBuf>,
    /// One record per case, in order (the JUnit report's test cases).
    pub records: Vec<CaseRecord>,
}

/// What became of one case.
#[derive(Clone, Debug, Default)]
pub struct CaseRecord {
    pub case: u64,
    pub case_seed: u64,
    pub probes: usize,
    /// The failure's summary, and the shrunk reproducer's path and replay command.
    pub failure: Option<(Failure, String)>,
    /// Real seconds, shrinking included.
    pub seconds: f64,
}

impl FuzzSummary {
    pub fn clean(&self) -> bool {
        self.disagreements == 0 && self.errors == 0
    }
}

/// At most this many candidate replays per shrink.
pub const SHRINK_BUDGET: usize = 4000;

/// Runs the fuzz loop with `config` on the project's backends, writing progress to `out`.
pub fn run_with(
    args: &FuzzArgs,
    config: &GenConfig,
    out: &mut dyn Write,
) -> anyhow::Result<FuzzSummary> {
    run_with_factory(args, config, &backends::factory, out)
}

/// [`run_with`] on backends built by `factory`.
pub fn run_with_factory(
    args: &FuzzArgs,
    config: &GenConfig,
    factory: BackendFactory<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<FuzzSummary> {
    if args.backends.is_empty() {
        anyhow::bail!("no backends to compare");
    }
    for b in &args.backends {
        factory(b).map_err(|e| anyhow::anyhow!(e))?;
    }
    let cases: Vec<u64> = (0..args.cases)
        .filter(|&k| args.shard.is_none_or(|s| s.owns(k as usize)))
        .collect();
    let shard_note = args
        .shard
        .map(|s| format!(" (shard {s}: {} of them)", cases.len()))
        .unwrap_or_default();
    writeln!(
        out,
        "verdict fuzz: seed {}, {} cases{shard_note}, backends {}",
        args.seed,
        args.cases,
        args.backends.join(",")
    )?;
    if args.backends.len() < 2 {
        writeln!(
            out,
            "note: one backend only: nothing to compare, only errors can be found"
        )?;
    }
    let mut sum = FuzzSummary::default();
    let progress = crate::progress::Progress::new(cases.len() as u64, "cases");
    for case in cases {
        progress.inc(&format!("{} failing", sum.disagreements + sum.errors));
        let t = std::time::Instant::now();
        let r = check_case(args.seed, case, config, &args.backends, factory);
        sum.cases += 1;
        sum.probes += r.evaluation.probes as u64;
        sum.coverage.merge(&r.coverage);
        sum.verdicts.merge(&r.evaluation.verdicts);
        let Some(failure) = &r.evaluation.failure else {
            sum.records.push(CaseRecord {
                case,
                case_seed: r.case_seed,
                probes: r.evaluation.probes,
                failure: None,
                seconds: t.elapsed().as_secs_f64(),
            });
            if args.verbose {
                writeln!(
                    out,
                    "case {case} (seed {:#018x}): ok, {} policies, {} steps, {} probes",
                    r.case_seed,
                    r.scenario.policies.len(),
                    r.scenario.steps.len(),
                    r.evaluation.probes
                )?;
            }
            continue;
        };
        match failure {
            Failure::Disagreement { .. } => sum.disagreements += 1,
            Failure::Error { .. } => sum.errors += 1,
        }
        writeln!(
            out,
            "case {case} (seed {:#018x}): {}",
            r.case_seed,
            failure.summary()
        )?;
        let shrunk = shrink(&r.scenario, failure, &args.backends, factory, SHRINK_BUDGET);
        let path = write_reproducer(args, case, &r, &shrunk)?;
        writeln!(
            out,
            "  shrunk in {} replays: {} -> {} policies, {} -> {} pods, {} -> {} steps, {} -> {} probes",
            shrunk.runs,
            r.scenario.policies.len(),
            shrunk.scenario.policies.len(),
            r.scenario.pods.len(),
            shrunk.scenario.pods.len(),
            r.scenario.steps.len(),
            shrunk.scenario.steps.len(),
            r.scenario.probe_count(),
            shrunk.scenario.probe_count()
        )?;
        writeln!(out, "  now: {}", shrunk.failure.summary())?;
        writeln!(out, "  reproducer: {}", path.display())?;
        writeln!(out, "  replay: {}", replay_command(&args.backends, &path))?;
        sum.records.push(CaseRecord {
            case,
            case_seed: r.case_seed,
            probes: r.evaluation.probes,
            failure: Some((
                failure.clone(),
                format!(
                    "shrunk: {}\nreproducer: {}\nreplay: {}",
                    shrunk.failure.summary(),
                    path.display(),
                    replay_command(&args.backends, &path)
                ),
            )),
            seconds: t.elapsed().as_secs_f64(),
        });
        sum.reproducers.push(path);
    }
    progress.finish();
    writeln!(
        out,
        "summary: {} cases, {} probes compared on {} backend(s), {} disagreement(s), {} error(s)",
        sum.cases,
        sum.probes,
        args.backends.len(),
        sum.disagreements,
        sum.errors
    )?;
    writeln!(out, "verdicts ({}): {}", args.backends[0], sum.verdicts)?;
    writeln!(out, "coverage:\n{}", sum.coverage)?;
    Ok(sum)
}

fn write_reproducer(
    args: &FuzzArgs,
    case: u64,
    r: &CaseResult,
    shrunk: &Shrunk,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let name = format!("fuzz-{}-{case}", args.seed);
    let path = args.out_dir.join(format!("{name}.yaml"));
    let mut s = shrunk.scenario.clone();
    s.name = name;
    s.description = format!(
        "Found by `verdict fuzz --seed {} --cases {} --backend {}` (case {case}, case seed {:#018x}) \
         and shrunk from {} policies, {} pods and {} probes: {}. Every matrix cell is `?`: the \
         scenario checks that the backends agree, not what they answer. Replay: {}",
        args.seed,
        args.cases,
        args.backends.join(","),
        r.case_seed,
        r.scenario.policies.len(),
        r.scenario.pods.len(),
        r.scenario.probe_count(),
        shrunk.failure.summary(),
        replay_command(&args.backends, &path)
    );
    std::fs::write(&path, s.to_yaml()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `verdict fuzz`: runs `args.cases` generated cases ([`GenConfig::fuzz`]) on the backends,
/// prints every failure with its shrunk reproducer and a summary; `Ok(true)` when the
/// backends agreed everywhere and nothing errored.
pub fn run(args: FuzzArgs, junit: Option<&Path>) -> anyhow::Result<bool> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let sum = run_with(&args, &GenConfig::fuzz(), &mut lock)?;
    if let Some(path) = junit {
        crate::junit::write(path, "verdict fuzz", &[junit_suite(&args, &sum)])?;
    }
    Ok(sum.clean())
}

/// The JUnit suite of a fuzz run: one test case per generated case.
pub fn junit_suite(args: &FuzzArgs, sum: &FuzzSummary) -> crate::junit::TestSuite {
    use crate::junit::{Outcome, TestCase, TestSuite};
    let class = format!("verdict.fuzz.seed{}", args.seed);
    let cases = sum
        .records
        .iter()
        .map(|c| {
            let name = format!("case {} (seed {:#018x})", c.case, c.case_seed);
            let outcome = match &c.failure {
                None => Outcome::Passed,
                Some((f @ Failure::Disagreement { .. }, detail)) => Outcome::Failure {
                    message: f.summary(),
                    kind: "disagreement".into(),
                    text: detail.clone(),
                },
                Some((f @ Failure::Error { .. }, detail)) => Outcome::Error {
                    message: f.summary(),
                    kind: "error".into(),
                    text: detail.clone(),
                },
            };
            TestCase::new(&class, &name, c.seconds, outcome)
        })
        .collect();
    let mut properties = vec![
        ("backends".into(), args.backends.join(",")),
        ("seed".into(), args.seed.to_string()),
        ("cases".into(), args.cases.to_string()),
    ];
    if let Some(s) = args.shard {
        properties.extend(crate::shard::junit_properties(s, args.cases as usize, None));
    }
    TestSuite {
        name: format!("verdict fuzz --seed {} --cases {}", args.seed, args.cases),
        cases,
        properties,
    }
}
