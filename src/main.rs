//! `verdict`: run network-policy scenarios on the oracle, the model and the BPF datapaths,
//! and compare them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use verdict::backends;
use verdict::progress::Progress;
use verdict_sim::cluster::{PodName, Protocol};
use verdict_sim::engine::{self, ScenarioReport};
use verdict_sim::mapstate::MapStateRow;
use verdict_sim::model::Model;
use verdict_sim::oracle::{self, DirectionVerdict, Flow};
use verdict_sim::policy::Peers;
use verdict_sim::{api, report, scenario, translate};

#[derive(Parser)]
#[command(
    name = "verdict",
    version,
    about = "Deterministic simulation and differential testing of Cilium-style Kubernetes network policy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum FlowFormat {
    Json,
    Compact,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenario files (or every scenario under a directory) and check their expectations.
    ///
    /// Exit status: 0 when every expectation holds and no two backends disagree, 1 when one
    /// fails or backends disagree, 2 on a usage error or a scenario that cannot be loaded.
    Run {
        /// Backends, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
        /// oracle,model,rbpf, the backends that need no privileges).
        #[arg(
            long,
            visible_alias = "backends",
            value_delimiter = ',',
            value_name = "LIST"
        )]
        backend: Option<Vec<String>>,
        /// Report format on stdout (or on stderr with --flows).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Compare each scenario's full output with DIR/<scenario name>.txt.
        #[arg(long, value_name = "DIR")]
        golden: Option<PathBuf>,
        /// With --golden: write the golden files instead of comparing, and say which changed.
        #[arg(long, requires = "golden")]
        bless: bool,
        /// Print the flow events of the first datapath backend (rbpf, rbpf-jit or kernel) on
        /// stdout as `hubble observe` does (`json`: one GetFlowsResponse per line, as `-o
        /// json`; `compact`: its default lines); the report then goes to stderr.
        #[arg(long, value_enum, value_name = "FORMAT")]
        flows: Option<FlowFormat>,
        /// Also write a JUnit XML report: one test case per scenario, and one per step whose
        /// probes fail or disagree.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Print failing truth tables in full however large they are (by default a table of
        /// more than 900 cells prints as a summary: the counts and the failing cells).
        #[arg(long)]
        full_tables: bool,
        /// Print failing truth tables as expected, actual and diff side by side, instead of
        /// the Kubernetes e2e suite's expected / observed / comparison blocks.
        #[arg(long)]
        side_by_side: bool,
        /// Run only shard I of N (I counts from 1): item k of the unsharded run (the k-th
        /// scenario file, sorted) belongs to shard k mod N + 1. `verdict merge` combines the
        /// shards' --format json and --junit results.
        #[arg(long, value_name = "I/N", value_parser = verdict::shard::parse_arg)]
        shard: Option<verdict::shard::Shard>,
        /// Scenario files or directories (every *.yaml below, except `policies` directories).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Replay scenarios (or a packet capture, with --pcap) on several backends and print
    /// every disagreement: verdicts, and between datapaths the flow records and map contents.
    Diff(verdict::diff::DiffArgs),
    /// Generate random clusters, policies and probes from a seed, run them on several backends
    /// and shrink any disagreement to a reproducer scenario.
    Fuzz {
        /// The run's seed: case i uses a seed derived from it and i.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Number of generated cases.
        #[arg(long, default_value_t = 100)]
        cases: u64,
        /// Backends, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
        /// oracle,model,rbpf).
        #[arg(
            long,
            visible_alias = "backends",
            value_delimiter = ',',
            value_name = "LIST"
        )]
        backend: Option<Vec<String>>,
        /// Where reproducers are written (default scenarios/regressions; with --packets or
        /// --manifests, fuzz-findings, as those cases are malformed on purpose).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Instead of generated cases: N mutated and random frames (in cases of 250, each on a
        /// generated cluster) replayed on the datapath backends (default rbpf,rbpf-jit, plus
        /// kernel when usable), which must agree on every verdict, ring-buffer record and map
        /// entry, and never panic or hang.
        #[arg(long, value_name = "N", conflicts_with_all = ["manifests", "junit"])]
        packets: Option<u64>,
        /// Instead of generated cases: N mutated and malformed scenario files (policies
        /// inline), each of which must load and run on the oracle or be refused with an error
        /// naming the file, the line and the field; never a panic or a hang.
        #[arg(long, value_name = "N", conflicts_with = "junit")]
        manifests: Option<u64>,
        /// With --packets or --manifests: the most seconds one case may take before it
        /// counts as a hang.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        /// One line per case, not only per failure.
        #[arg(long)]
        verbose: bool,
        /// Also write a JUnit XML report: one test case per generated case.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Run only shard I of N (I counts from 1): case k belongs to shard k mod N + 1 and is
        /// generated from --seed and k, whichever machine runs it. `verdict merge` combines
        /// the shards' --junit reports.
        #[arg(long, value_name = "I/N", value_parser = verdict::shard::parse_arg)]
        shard: Option<verdict::shard::Shard>,
    },
    /// Control-plane churn at scale with propagation delays: generate a cluster, policies and
    /// a churn timeline from a seed, replay it, and report totals, delay percentiles, transient
    /// windows (security findings first) and real compute time per event.
    Churn {
        /// The seed everything is generated from.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Nodes in the cluster.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Pods at the start.
        #[arg(long, default_value_t = 20)]
        pods: usize,
        /// Namespaces.
        #[arg(long, default_value_t = 4)]
        namespaces: usize,
        /// Policies at the start.
        #[arg(long, default_value_t = 5)]
        policies: usize,
        /// Control-plane events in the timeline.
        #[arg(long, default_value_t = 100)]
        events: usize,
        /// Mean control-plane events per virtual second.
        #[arg(long, default_value_t = 10)]
        rate: u64,
        /// Smallest propagation delay (each change, each node; drawn from the seed).
        #[arg(long, default_value = "0s", value_parser = parse_duration_arg)]
        delay_min: u64,
        /// Largest propagation delay.
        #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
        delay_max: u64,
        /// Backends, comma-separated (default oracle,model; add rbpf for the transient
        /// analysis, at small sizes).
        #[arg(
            long,
            visible_alias = "backends",
            value_delimiter = ',',
            default_value = "oracle,model",
            value_name = "LIST"
        )]
        backend: Vec<String>,
        /// Generate the fuzzer's broad, every-feature policies instead of targeted ones
        /// (their map state grows fast: small sizes only).
        #[arg(long)]
        fuzz_policies: bool,
        /// Also write the run as a scenario file that `verdict run` replays, with the observed
        /// eventual verdicts as its expectations.
        #[arg(long, value_name = "FILE")]
        write_scenario: Option<PathBuf>,
        /// Leave out the real-time section, so the output is byte-identical across runs.
        #[arg(long)]
        no_timings: bool,
        /// Generate an invariant set (never, always on the first namespaces) and check it after
        /// every step on every backend, propagation windows included; violations are reported
        /// (transient ones as such), they do not fail the run.
        #[arg(long)]
        invariants: bool,
    },
    /// Policy map state, as `cilium-dbg bpf policy get` prints it.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// The DNS proxies' name caches, as `cilium-dbg fqdn cache list` prints them.
    Fqdn {
        #[command(subcommand)]
        cmd: FqdnCmd,
    },
    /// Why a connection attempt gets its verdict: identities, the oracle's deciding rules, and
    /// the model's policy-map lookups per direction.
    Explain {
        /// The scenario whose cluster and policies are used.
        scenario: PathBuf,
        /// The source: ns/pod, host:<node>, the name of an `externals` entry, or an IP
        /// address (a pod's, a node's, or any other, which is the world).
        #[arg(long, value_name = "ENDPOINT")]
        from: String,
        /// The destination, in the same forms as --from.
        #[arg(long, value_name = "ENDPOINT")]
        to: String,
        /// Destination port (TCP, UDP, SCTP).
        #[arg(long)]
        port: Option<u16>,
        /// TCP, UDP, SCTP, ICMP or ICMPv6.
        #[arg(long, default_value = "TCP")]
        protocol: String,
        /// ICMP type for ICMP probes (default echo request).
        #[arg(long)]
        icmp_type: Option<u8>,
        /// Explain the state after this step (1-based; 0 is the initial state; default: the end).
        #[arg(long, value_name = "N")]
        after_step: Option<usize>,
    },
    /// Run scenarios and write one self-contained HTML page: per scenario the truth tables
    /// (expected and each backend's actual, coloured), the probes, the disagreements, the
    /// flows, and for scenarios with propagation delays plots of the delays and compute time.
    ///
    /// Exit status as `run`: 0 pass, 1 failures or disagreements, 2 input errors.
    Report {
        /// The page to write.
        #[arg(long, value_name = "OUT")]
        html: PathBuf,
        /// Backends, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
        /// oracle,model,rbpf).
        #[arg(
            long,
            visible_alias = "backends",
            value_delimiter = ',',
            value_name = "LIST"
        )]
        backend: Option<Vec<String>>,
        /// Leave out the real compute time plot, so the page is byte-identical across runs.
        #[arg(long)]
        no_timings: bool,
        /// Flow lines shown per scenario (the rest are counted).
        #[arg(long, default_value_t = 2000, value_name = "N")]
        max_flows: usize,
        /// Scenario files or directories.
        #[arg(required = true, value_name = "SCENARIO")]
        paths: Vec<PathBuf>,
    },
    /// Build a scenario from a real cluster dump: `kubectl get -A -o yaml` (or `-o json`) of
    /// namespaces, nodes, pods and the policy kinds, in files or directories (`kind: List` or
    /// multi-document). Pods are synthesized from workload templates when the dump has none.
    /// The scenario checks no invented expectations: its truth tables are all `?`, which
    /// `verdict run` compares across backends. What was imported and left out goes to stderr.
    Import {
        /// Write the scenario here (default: stdout).
        #[arg(long, value_name = "SCENARIO")]
        out: Option<PathBuf>,
        /// The scenario's name (default: import-<name of the first PATH>).
        #[arg(long)]
        name: Option<String>,
        /// At most this many endpoints (rows and columns) per truth table: one pod per
        /// distinct identity and named-port set, in name order.
        #[arg(long, value_name = "N", default_value_t = verdict_sim::import::DEFAULT_PROBE_PODS)]
        probe_pods: usize,
        /// Destination ports of the truth tables, comma-separated PORT/PROTOCOL (default: the
        /// ports the policies name, then the pods' most common container ports; six at most).
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        probe_ports: Option<Vec<String>>,
        /// Leave out policies using fields verdict does not model yet (listed on stderr and
        /// in the scenario's description) instead of failing.
        #[arg(long)]
        skip_unsupported: bool,
        /// Dump files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Replay recorded Hubble flows (`hubble observe -o json`) against a scenario's cluster on
    /// every backend: per flow the recorded and the simulated verdicts and the deciding rule;
    /// disagreements grouped by workload pair, port and protocol.
    ///
    /// Exit status: 0 when every compared flow agrees with its record and the backends agree,
    /// 1 otherwise, 2 on a usage error or input that cannot be read.
    Replay(verdict::replay::ReplayArgs),
    /// What a proposed policy change does to recorded traffic: the flows replayed before and
    /// after it, newly DROPPED and newly FORWARDED flows grouped by workload pair and port,
    /// with the rules responsible.
    ///
    /// Exit status: 0 when nothing is newly dropped (or --allow-new-drops) and the backends
    /// agree, 1 otherwise, 2 on a usage error or input that cannot be read.
    Impact(verdict::impact::ImpactArgs),
    /// Least-privilege CiliumNetworkPolicies from the connections recorded flows show, one per
    /// workload, proven by replay (every forwarded flow stays allowed) and with what they newly
    /// deny among unobserved pod-to-pod traffic.
    ///
    /// Exit status: 0 when the proof holds, 1 when a forwarded flow would be dropped, 2 on a
    /// usage error or input that cannot be read.
    Suggest(verdict::suggest::SuggestArgs),
    /// Check scenarios' invariants (never, always, isolated) after the initial state and every
    /// step, on every backend, propagation windows included, and print the evidence table:
    /// each invariant, the instants and probes that checked it, pass or its counterexamples.
    ///
    /// Exit status: 0 when every invariant holds, 1 on a violation, 2 when a scenario cannot be
    /// loaded.
    Audit(verdict::audit::AuditArgs),
    /// Combine the results of a sharded run (`--shard I/N` on run, diff or fuzz) into the
    /// result of the unsharded run: `verdict run --format json` outputs, or `--junit`
    /// reports. Refuses shards of different runs, overlapping shards and missing ones.
    ///
    /// Exit status: 0 when every merged scenario or case passed, 1 when one failed, 2 when
    /// the files cannot be merged.
    Merge {
        /// Write the merged result here (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The shards' result files: all JSON or all JUnit XML, every shard once.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Generate inputs: `gen world` builds the synthetic world of tools/genworld.py.
    Gen {
        #[command(subcommand)]
        cmd: GenCmd,
    },
    /// Validate policy manifests and scenarios. A scenario file is checked with its own
    /// policies, and each rule shows which of the scenario's endpoints it selects.
    Check {
        /// A scenario whose cluster (at time 0) the rules of the manifest files are matched
        /// against.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Manifest files, scenario files, or directories of them.
        #[arg(required = true, value_name = "PATH")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GenCmd {
    /// The world of tools/genworld.py (`genworld.py NS PODS NPOL OUTDIR SEED`), built the same
    /// way draw for draw: OUTDIR/probe.json and OUTDIR/policies/gen-NNN.json as the script
    /// writes them, and OUTDIR/world.yaml, a scenario of that world with one all-'?' truth
    /// table (every pod to every pod on 80/TCP) that `verdict run` replays on every backend.
    World {
        /// Namespaces.
        ns: usize,
        /// Pods per namespace (at most 245).
        pods: usize,
        /// NetworkPolicies.
        npol: usize,
        /// Where the files go (created; files of an earlier run are overwritten).
        outdir: PathBuf,
        /// The seed of Python's random.Random (the script's default is 1).
        #[arg(default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum FqdnCmd {
    /// Every node's cache (per endpoint: its DNS lookups and its alive zombies, the IPs
    /// `toFQDNs` selectors hold), one table per node.
    Cache {
        /// The scenario to replay.
        scenario: PathBuf,
        /// The state after this step (1-based; 0 is the initial state; default: the end).
        #[arg(long, value_name = "N")]
        after_step: Option<usize>,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
        /// Only this endpoint: ns/name or its endpoint ID (`cilium-dbg fqdn cache list -e`).
        #[arg(short = 'e', long)]
        endpoint: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// An endpoint's realized policy map.
    Get {
        /// The scenario whose cluster and policies are used.
        scenario: PathBuf,
        /// The endpoint: ns/name, or its endpoint ID (as `policy get` prints it).
        pod: String,
        /// The state after this step (1-based; 0 is the initial state; default: the end).
        #[arg(long, value_name = "N")]
        after_step: Option<usize>,
        /// Do not resolve identities to labels (the IDENTITY column), as `cilium-dbg -n`.
        #[arg(short = 'n', long)]
        numeric: bool,
        /// Output format: `json` prints the map dump as `cilium-dbg ... -o json` does.
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<PolicyOutput>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum PolicyOutput {
    Json,
}

fn golden_path(dir: &Path, r: &ScenarioReport) -> PathBuf {
    dir.join(format!("{}.txt", r.name))
}

/// A short line diff of expected vs actual golden text.
fn diff_lines(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("    -{x}\n"));
                }
                if let Some(y) = y {
                    out.push_str(&format!("    +{y}\n"));
                }
            }
        }
    }
    out
}

/// How a scenario's output compared with its golden file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Golden {
    /// No --golden, or not compared (a duplicate name).
    NotChecked,
    Matches,
    Differs {
        diff: String,
    },
    Missing {
        why: String,
    },
    /// --bless: what was written.
    Written {
        before: Blessed,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blessed {
    New,
    Updated,
    Unchanged,
}

impl Golden {
    fn ok(&self) -> bool {
        !matches!(self, Golden::Differs { .. } | Golden::Missing { .. })
    }
    fn status(&self) -> &'static str {
        match self {
            Golden::NotChecked => "not-checked",
            Golden::Matches => "matches",
            Golden::Differs { .. } => "differs",
            Golden::Missing { .. } => "missing",
            Golden::Written {
                before: Blessed::New,
            } => "written-new",
            Golden::Written {
                before: Blessed::Updated,
            } => "written-updated",
            Golden::Written {
                before: Blessed::Unchanged,
            } => "unchanged",
        }
    }
}

/// Compares (or with `bless` writes) one scenario's golden file.
fn golden_check(dir: &Path, r: &ScenarioReport, bless: bool) -> Result<Golden> {
    let path = golden_path(dir, r);
    let text = report::golden(r);
    let old = std::fs::read_to_string(&path);
    if bless {
        let before = match &old {
            Ok(t) if *t == text => {
                return Ok(Golden::Written {
                    before: Blessed::Unchanged,
                })
            }
            Ok(_) => Blessed::Updated,
            Err(_) => Blessed::New,
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        return Ok(Golden::Written { before });
    }
    Ok(match old {
        Ok(want) if want == text => Golden::Matches,
        Ok(want) => Golden::Differs {
            diff: diff_lines(&want, &text),
        },
        Err(e) => Golden::Missing { why: e.to_string() },
    })
}

/// The command that blesses one scenario's golden file.
fn bless_command(dir: &Path, backends: &[String], file: &Path) -> String {
    format!(
        "verdict run --backend {} --golden {} --bless {}",
        backends.join(","),
        dir.display(),
        file.display()
    )
}

/// The flows of the first datapath backend that observed any during a scenario.
fn flow_lines(r: &ScenarioReport, how: FlowFormat) -> Result<Vec<String>> {
    let Some(backend) = r
        .steps
        .iter()
        .flat_map(|s| s.flows.iter().map(|(b, _)| b.clone()))
        .next()
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for s in &r.steps {
        for (b, flows) in &s.flows {
            if *b != backend {
                continue;
            }
            for f in flows {
                out.push(match how {
                    FlowFormat::Json => serde_json::to_string(&verdict::hubble::with_uuid(
                        &f.json,
                        &r.name,
                        out.len(),
                    ))?,
                    FlowFormat::Compact => f.compact.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Everything `verdict run` decided about one scenario.
struct RunResult {
    report: ScenarioReport,
    golden: Golden,
    /// Set when the scenario's name is already another file's.
    duplicate_of: Option<PathBuf>,
    /// Real time the replay took (JUnit's `time`).
    seconds: f64,
}

impl RunResult {
    fn passed(&self) -> bool {
        self.report.passed() && self.golden.ok() && self.duplicate_of.is_none()
    }
    /// Whether the scenario could not be checked at all (exit status 2).
    fn input_error(&self) -> bool {
        self.report.error.is_some()
    }
}

struct RunArgs {
    backends: Vec<String>,
    format: Format,
    golden: Option<PathBuf>,
    bless: bool,
    flows: Option<FlowFormat>,
    junit: Option<PathBuf>,
    tables: report::TextOptions,
    shard: Option<verdict::shard::Shard>,
    paths: Vec<PathBuf>,
}

/// `verdict run`: exit 0 when everything passed, 1 on failures, 2 when a scenario could not
/// be loaded or replayed.
fn run(a: RunArgs) -> Result<u8> {
    let backend = backends::validate(&a.backends).map_err(anyhow::Error::msg)?;
    if a.flows.is_some() && !backend.iter().any(|b| verdict::diff::is_datapath(b)) {
        bail!(
            "--flows needs a datapath backend (rbpf, rbpf-jit or kernel) in --backend {}: \
             the oracle and the model emit no flow events",
            backend.join(",")
        );
    }
    let files = verdict::scenario_files(&a.paths)?;
    let total = files.len();
    let fingerprint = verdict::shard::fingerprint(&files);
    let files = match a.shard {
        Some(s) => s.select(&files),
        None => files,
    };
    if total == 0 {
        bail!(
            "no scenario files (*.yaml, *.yml) found under {}",
            a.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    // With --flows, stdout carries only the flow lines (so `| jq` reads every line); the
    // report goes to stderr.
    let mut out: Box<dyn Write> = if a.flows.is_some() {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let stdout = std::io::stdout();
    let progress = Progress::new(files.len() as u64, "scenarios");
    let factory = verdict::backends::factory;
    let mut results: Vec<RunResult> = Vec::new();
    // The scenario format requires names unique within a suite; the name also names the
    // golden file, so a duplicate would overwrite (or be compared with) another's golden.
    let mut seen: BTreeMap<String, PathBuf> = Default::default();
    for f in &files {
        progress.message(&f.display().to_string());
        let t = Instant::now();
        let r = engine::run_file(f, &backend, &factory);
        let seconds = t.elapsed().as_secs_f64();
        let duplicate_of = if r.error.is_none() {
            match seen.get(&r.name) {
                Some(p) => Some(p.clone()),
                None => {
                    seen.insert(r.name.clone(), f.clone());
                    None
                }
            }
        } else {
            None
        };
        let golden = match (&a.golden, &duplicate_of) {
            (Some(dir), None) => golden_check(dir, &r, a.bless)?,
            _ => Golden::NotChecked,
        };
        let res = RunResult {
            report: r,
            golden,
            duplicate_of,
            seconds,
        };
        progress.suspend(|| -> Result<()> {
            if let Some(how) = a.flows {
                let mut lock = stdout.lock();
                for l in flow_lines(&res.report, how)? {
                    writeln!(lock, "{l}")?;
                }
            }
            if a.format == Format::Text {
                write!(out, "{}", text_of(&res, &a, &backend))?;
            }
            Ok(())
        })?;
        progress.inc(&res.report.name);
        // The flows are printed; what is kept for the summary, JSON and JUnit needs none of
        // them (they are most of a report's memory).
        let mut res = res;
        for s in &mut res.report.steps {
            s.flows.clear();
        }
        results.push(res);
    }
    progress.finish();
    let passed = results.iter().filter(|r| r.passed()).count();
    let failed = results.len() - passed;
    let probes: usize = results.iter().map(|r| r.report.probe_count()).sum();
    let disagreements: usize = results.iter().map(|r| r.report.disagreement_count()).sum();
    let errors = results.iter().filter(|r| r.input_error()).count();
    match a.format {
        Format::Text => {
            if let (Some(dir), true) = (&a.golden, a.bless) {
                let count = |b: Blessed| {
                    results
                        .iter()
                        .filter(|r| r.golden == Golden::Written { before: b })
                        .count()
                };
                writeln!(
                    out,
                    "blessed {} golden files in {}: {} new, {} updated, {} unchanged",
                    count(Blessed::New) + count(Blessed::Updated) + count(Blessed::Unchanged),
                    dir.display(),
                    count(Blessed::New),
                    count(Blessed::Updated),
                    count(Blessed::Unchanged)
                )?;
            }
            let shard_note = a
                .shard
                .map(|s| format!(" (shard {s} of {total})"))
                .unwrap_or_default();
            writeln!(
                out,
                "{} scenarios{shard_note}, {probes} probes checked on {}, {disagreements} disagreements",
                files.len(),
                backend.join(",")
            )?;
            if errors > 0 {
                writeln!(out, "{errors} could not be loaded or replayed")?;
            }
            writeln!(out, "{passed} passed, {failed} failed")?;
        }
        Format::Json => {
            let scenarios: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    let mut v = report::json(&r.report);
                    if let serde_json::Value::Object(o) = &mut v {
                        o.insert("passed".into(), r.passed().into());
                        if let Some(dir) = &a.golden {
                            let mut g = serde_json::Map::new();
                            g.insert(
                                "path".into(),
                                golden_path(dir, &r.report).display().to_string().into(),
                            );
                            g.insert("status".into(), r.golden.status().into());
                            match &r.golden {
                                Golden::Differs { diff } => {
                                    g.insert("diff".into(), diff.clone().into());
                                    g.insert(
                                        "bless".into(),
                                        bless_command(dir, &backend, &r.report.file).into(),
                                    );
                                }
                                Golden::Missing { why } => {
                                    g.insert("error".into(), why.clone().into());
                                    g.insert(
                                        "bless".into(),
                                        bless_command(dir, &backend, &r.report.file).into(),
                                    );
                                }
                                _ => {}
                            }
                            o.insert("golden".into(), g.into());
                        }
                        if let Some(p) = &r.duplicate_of {
                            o.insert("duplicate_of".into(), p.display().to_string().into());
                        }
                    }
                    v
                })
                .collect();
            let mut all = serde_json::json!({
                "scenarios": scenarios,
                "passed": passed,
                "failed": failed,
                "errors": errors,
                "probes": probes,
                "disagreements": disagreements,
            });
            // What `verdict merge` checks the shards of one run by; the merged JSON has none.
            if let (Some(s), serde_json::Value::Object(o)) = (a.shard, &mut all) {
                o.insert(
                    "shard".into(),
                    serde_json::json!({
                        "index": s.index,
                        "count": s.count,
                        "total": total,
                        "files": fingerprint,
                        "backends": backend,
                        "golden": a.golden.as_ref().map(|d| d.display().to_string()),
                    }),
                );
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        }
    }
    out.flush()?;
    if let Some(path) = &a.junit {
        let shard = a
            .shard
            .map(|s| verdict::shard::junit_properties(s, total, Some(&fingerprint)));
        write_run_junit(path, &results, &a, &backend, shard)?;
    }
    Ok(if errors > 0 {
        2
    } else if failed > 0 {
        1
    } else {
        0
    })
}

/// `verdict run --junit`: a suite per scenario directory; a case per scenario (its text report
/// as system-out) and one per failing step.
fn write_run_junit(
    path: &Path,
    results: &[RunResult],
    a: &RunArgs,
    backend: &[String],
    shard: Option<Vec<(String, String)>>,
) -> Result<()> {
    use verdict::junit::{self, Outcome, TestCase};
    let mut cases = Vec::new();
    for res in results {
        let r = &res.report;
        let class = junit::classname(&r.file);
        let suite = junit::suite_of(&r.file);
        let text = text_of(res, a, backend);
        let outcome = if let Some(e) = &r.error {
            Outcome::Error {
                message: report::clip_values(e),
                kind: "input".into(),
                text: String::new(),
            }
        } else if res.passed() {
            Outcome::Passed
        } else {
            let mut why = Vec::new();
            if r.failure_count() > 0 {
                why.push(format!("{} failed probes", r.failure_count()));
            }
            if r.disagreement_count() > 0 {
                why.push(format!("{} disagreements", r.disagreement_count()));
            }
            match &res.golden {
                Golden::Differs { .. } => why.push("golden file differs".into()),
                Golden::Missing { .. } => why.push("golden file missing".into()),
                _ => {}
            }
            if res.duplicate_of.is_some() {
                why.push("duplicate scenario name".into());
            }
            let kind = if r.failure_count() > 0 {
                "expectation"
            } else if r.disagreement_count() > 0 {
                "disagreement"
            } else {
                "golden"
            };
            Outcome::Failure {
                message: why.join(", "),
                kind: kind.into(),
                text: String::new(),
            }
        };
        cases.push((
            suite.clone(),
            TestCase {
                system_out: Some(text),
                ..TestCase::new(&class, &r.name, res.seconds, outcome)
            },
        ));
        for (title, detail) in report::failing_groups(r) {
            let n = detail.lines().count();
            let kind = if detail.lines().all(|l| l.starts_with("DISAGREEMENT")) {
                "disagreement"
            } else {
                "expectation"
            };
            cases.push((
                suite.clone(),
                TestCase::new(
                    &class,
                    &format!("{}: {title}", r.name),
                    0.0,
                    Outcome::Failure {
                        message: format!("{n} probes failed or disagree"),
                        kind: kind.into(),
                        text: detail,
                    },
                ),
            ));
        }
    }
    let mut props = vec![("backends".to_string(), backend.join(","))];
    props.extend(shard.iter().flatten().cloned());
    junit::write(
        path,
        "verdict run",
        &verdict::merge::junit_suites(cases, &props, shard.is_some()),
    )
}

/// The text report of one scenario, with what the golden comparison and the name check found.
fn text_of(res: &RunResult, a: &RunArgs, backend: &[String]) -> String {
    let r = &res.report;
    let mut t = report::text_with(r, &a.tables);
    if !res.passed() && r.passed() {
        t = t.replacen("PASS", "FAIL", 1);
    }
    if let Some(p) = &res.duplicate_of {
        t.push_str(&format!(
            "  duplicate scenario name {:?}: {} has it too (names are unique within a suite)\n",
            r.name,
            p.display()
        ));
    }
    let Some(dir) = &a.golden else {
        return t;
    };
    let path = golden_path(dir, r).display().to_string();
    match &res.golden {
        Golden::NotChecked | Golden::Matches => {}
        Golden::Differs { diff } => t.push_str(&format!(
            "  golden {path} differs (- golden, + now):\n{diff}  if the new output is right, bless it after reading the diff: {}\n",
            bless_command(dir, backend, &r.file)
        )),
        Golden::Missing { why } => t.push_str(&format!(
            "  golden {path}: {why}; create it with: {}\n",
            bless_command(dir, backend, &r.file)
        )),
        Golden::Written { before } => t.push_str(&match before {
            Blessed::New => format!("  wrote {path} (new)\n"),
            Blessed::Updated => format!("  wrote {path} (updated)\n"),
            Blessed::Unchanged => format!("  {path} unchanged\n"),
        }),
    }
    t
}

/// What a file given to `verdict check` holds, from its top-level keys (read as text, so a
/// file with a YAML syntax error is still sent to the loader that reports it best).
#[derive(Debug, PartialEq, Eq)]
enum FileKind {
    /// Nothing but blanks, comments and document markers.
    Empty,
    Scenario,
    Manifests,
}

fn file_kind(text: &str) -> FileKind {
    let top: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']) && !l.trim().is_empty())
        .filter_map(|l| l.split(':').next())
        .collect();
    let content = text
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#') && l != "---" && l != "...");
    if !content {
        FileKind::Empty
    } else if top.iter().any(|k| matches!(*k, "apiVersion" | "kind")) {
        FileKind::Manifests
    } else if top
        .iter()
        .any(|k| matches!(*k, "steps" | "cluster" | "policies"))
    {
        FileKind::Scenario
    } else {
        FileKind::Manifests
    }
}

/// Every file `verdict check` looks at: files as given, directories walked for *.yaml/*.yml
/// (including `policies` directories: they hold manifests).
fn check_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
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

/// `verdict check`: 0 when every file is valid, 1 when one is not (the error says where), 2
/// on a usage error.
fn check(scenario_path: Option<PathBuf>, paths: Vec<PathBuf>) -> Result<u8> {
    let world = match &scenario_path {
        Some(p) => {
            let loaded = scenario::load(p).map_err(anyhow::Error::msg)?;
            Some(engine::build_world(&loaded).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let files = check_files(&paths)?;
    if files.is_empty() {
        bail!("no *.yaml or *.yml files found");
    }
    let mut ok = true;
    let mut fail = |msg: String| {
        println!("error: {}", report::clip_values(&msg));
        ok = false;
    };
    for f in &files {
        let text = match verdict_sim::fsread::read_bounded_string(
            f,
            verdict_sim::fsread::MAX_MANIFEST_BYTES,
            "file",
        ) {
            Ok(t) => t,
            Err(e) => {
                fail(format!("{}: {e}", f.display()));
                continue;
            }
        };
        match file_kind(&text) {
            FileKind::Empty => fail(format!(
                "{}:1:1: empty file: no manifest or scenario in it",
                f.display()
            )),
            FileKind::Manifests => match api::parse_manifest_file(f, &text) {
                Ok(loaded) => {
                    println!("ok {}: {} manifest(s)", f.display(), loaded.manifests.len());
                    if !loaded.skipped.is_empty() {
                        println!("  skipped {}", loaded.skipped);
                    }
                    for m in &loaded.manifests {
                        print_rules(m, world.as_ref());
                    }
                }
                Err(e) => fail(e.to_string()),
            },
            FileKind::Scenario => {
                let loaded = match scenario::parse(f, &text) {
                    Ok(l) => l,
                    Err(e) => {
                        fail(e.to_string());
                        continue;
                    }
                };
                // The scenario's own cluster and policies: every `file:` reference loads, and
                // each rule is matched against the scenario's endpoints at time 0.
                let own = match engine::build_world(&loaded) {
                    Ok(w) => w,
                    Err(e) => {
                        fail(e.to_string());
                        continue;
                    }
                };
                let mut manifests = Vec::new();
                let mut bad = None;
                for src in &loaded.scenario.policies {
                    match engine::manifests_of(f, src) {
                        Ok(ms) => manifests.extend(ms),
                        Err(e) => {
                            bad = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(e) = bad {
                    fail(e);
                    continue;
                }
                println!(
                    "ok {}: scenario {}: {} pods, {} policy manifest(s), {} steps",
                    f.display(),
                    loaded.scenario.name,
                    own.cluster.pods.len(),
                    manifests.len(),
                    loaded.scenario.steps.len()
                );
                for m in &manifests {
                    print_rules(m, Some(&own));
                }
            }
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// One manifest's rules as `verdict check` prints them; with a world, which endpoints each
/// selects and which pods its peers select.
fn print_rules(m: &api::Manifest, world: Option<&engine::World>) {
    let Some(r) = translate::policy_ref(m) else {
        if let api::Manifest::CiliumCidrGroup(g) = m {
            let cidrs: Vec<String> = g
                .spec
                .external_cidrs
                .iter()
                .map(|c| c.to_string())
                .collect();
            println!(
                "  CiliumCIDRGroup {}: {}",
                g.metadata.name,
                if cidrs.is_empty() {
                    "no CIDRs".to_string()
                } else {
                    cidrs.join(", ")
                }
            );
        }
        return;
    };
    println!("  {r}");
    for e in translate::translate_in(m, world.map(|w| &w.cluster)) {
        let peers = match &e.peers {
            Peers::Nothing => "nothing (empty peer list)".to_string(),
            Peers::Unrestricted if e.ports.is_empty() => {
                "no filter (only sets default deny)".to_string()
            }
            Peers::Unrestricted => "any peer".to_string(),
            Peers::Selectors(s) => s
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" | "),
        };
        let ports = if e.ports.is_empty() {
            "all ports".to_string()
        } else {
            e.ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "    {}[{}] {} {:?}: subject {} peers {} ports {}{}",
            e.origin.section,
            e.origin.item,
            e.direction,
            e.verdict,
            e.subject,
            peers,
            ports,
            if e.default_deny {
                " (default deny)"
            } else {
                ""
            }
        );
        for (pp, l7) in &e.l7 {
            let mut rules: Vec<String> = l7.http.iter().map(|h| format!("http {h}")).collect();
            rules.extend(l7.dns.iter().map(|d| format!("dns {d}")));
            if l7.wildcard {
                rules.push("every request (wildcard)".to_string());
            }
            println!("      L7 {pp} -> {} proxy: {}", l7.parser, rules.join("; "));
        }
        let Some(w) = world else { continue };
        let matching = |sel: &dyn Fn(&verdict_sim::labels::LabelSet) -> bool| -> Vec<String> {
            w.cluster
                .pods
                .values()
                .filter(|p| w.cluster.identities.labels(p.identity).is_some_and(sel))
                .map(|p| p.name.to_string())
                .collect()
        };
        let selected = matching(&|l| e.subject.matches_labels(l));
        println!(
            "      selects: {}",
            if selected.is_empty() {
                "no endpoints".to_string()
            } else {
                selected.join(" ")
            }
        );
        if let Peers::Selectors(sels) = &e.peers {
            let peers = matching(&|l| sels.iter().any(|s| s.matches_labels(l)));
            println!(
                "      peer pods: {}",
                if peers.is_empty() {
                    "none".to_string()
                } else {
                    peers.join(" ")
                }
            );
        }
    }
}

fn default_backends() -> Vec<String> {
    verdict::backends::DEFAULT_BACKENDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn load_world(path: &Path, after_step: Option<usize>) -> Result<engine::World> {
    let loaded = scenario::load(path).map_err(anyhow::Error::msg)?;
    engine::world_after(&loaded, after_step).map_err(anyhow::Error::msg)
}

/// Cilium's default per-endpoint policy map size (`--bpf-policy-map-max`).
const POLICY_MAP_LIMIT: usize = 16_384;

/// `verdict policy get`: stdout is exactly what `cilium-dbg bpf policy get [-n] [-o json]
/// EP` prints for the endpoint; the endpoint line and the entry count against the map size
/// go to stderr.
fn policy_get(
    path: &Path,
    pod: &str,
    after_step: Option<usize>,
    numeric: bool,
    output: Option<PolicyOutput>,
) -> Result<bool> {
    let world = load_world(path, after_step)?;
    let model = Model::new(&world.cluster, &world.repo);
    // The endpoint: ns/name, host:<node> (the host endpoint, with the host firewall on), or
    // its endpoint ID as cilium-dbg takes it.
    let ep = if let Ok(id) = pod.parse::<u32>() {
        model.endpoint_by_id(id).with_context(|| {
            format!(
                "no endpoint with ID {id} in {} at that step",
                path.display()
            )
        })?
    } else if let Some(node) = pod.strip_prefix("host:") {
        if world.cluster.node(node).is_none() {
            anyhow::bail!("no node {:?} in {}", report::clip(node), path.display());
        }
        model.host_endpoint(node).with_context(|| {
            format!(
                "{} has the host firewall off (agent: {{enable-host-firewall: true}} \
                 turns it on): host:{} has no policy map",
                path.display(),
                report::clip(node)
            )
        })?
    } else {
        let name = PodName::parse(pod).with_context(|| {
            format!(
                "{:?} is neither an endpoint ID, host:<node> nor <namespace>/<name>",
                report::clip(pod)
            )
        })?;
        model.endpoint(&name).with_context(|| {
            format!(
                "no pod {} in {} at that step",
                report::clip(pod),
                path.display()
            )
        })?
    };
    let name = ep.name();
    let rows: Vec<MapStateRow> = model.endpoint_rows(ep);
    eprintln!(
        "endpoint {} ({name}) identity {} on {}: ingress policy {}, egress policy {}; {} entries of {POLICY_MAP_LIMIT} (Cilium's default per-endpoint limit)",
        ep.id,
        ep.identity,
        ep.node,
        if ep.ingress.enabled {
            "enabled"
        } else {
            "disabled"
        },
        if ep.egress.enabled {
            "enabled"
        } else {
            "disabled"
        },
        rows.len()
    );
    if rows.len() > POLICY_MAP_LIMIT {
        eprintln!("WARNING: {} entries exceed the default policy map size: Cilium would fail to regenerate this endpoint", rows.len());
    }
    match output {
        // command.PrintOutput: json.MarshalIndent(data, "", "  ").
        Some(PolicyOutput::Json) => {
            let all: Vec<serde_json::Value> = rows.iter().map(MapStateRow::json).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        None => print!("{}", MapStateRow::table(&rows, numeric)),
    }
    Ok(true)
}

fn unknown_endpoint(name: &str) -> String {
    format!(
        "unknown endpoint {:?}: expected ns/pod, host:<node>, the name of an externals entry, or an IP address",
        report::clip(name)
    )
}

#[allow(clippy::too_many_arguments)]
fn explain(
    path: &Path,
    from: &str,
    to: &str,
    port: Option<u16>,
    protocol: &str,
    icmp_type: Option<u8>,
    after_step: Option<usize>,
) -> Result<bool> {
    let world = load_world(path, after_step)?;
    let c = &world.cluster;
    // A `cluster.dns` name is its first address, as in probes.
    let resolve = |name: &str| {
        c.resolve(name)
            .or_else(|| world.dns.first_ip(name).map(|ip| c.peer_of_ip(ip)))
    };
    let src = resolve(from).with_context(|| unknown_endpoint(from))?;
    let dst = resolve(to).with_context(|| unknown_endpoint(to))?;
    let protocol = Protocol::parse(protocol).with_context(|| {
        format!(
            "--protocol: unknown protocol {:?}: expected TCP, UDP, SCTP, ICMP or ICMPv6",
            report::clip(protocol)
        )
    })?;
    let dport = match protocol {
        Protocol::Icmp => icmp_type.unwrap_or(8) as u16,
        Protocol::Icmpv6 => icmp_type.unwrap_or(128) as u16,
        _ => port.with_context(|| format!("a {protocol} probe needs --port"))?,
    };
    let flow = Flow {
        src: src.clone(),
        dst: dst.clone(),
        protocol,
        dport,
    };
    let model = Model::new(c, &world.repo);
    println!("{from} -> {to} {dport}/{protocol}");
    for (what, peer) in [("from", &src), ("to", &dst)] {
        let observer = c
            .node_of(if what == "from" { &dst } else { &src })
            .unwrap_or("node-1");
        let ip = c.ip_of(peer).map(|i| i.to_string()).unwrap_or_default();
        let hit = c.ip_of(peer).map(|ip| model.ipcache().lookup(observer, ip));
        let (id, labels) = match hit {
            Some(h) => (
                h.identity.to_string(),
                model
                    .identity_labels(h.identity)
                    .map(|l| l.to_string())
                    .unwrap_or_default(),
            ),
            None => ("?".into(), String::new()),
        };
        println!("  {what} {peer} ({ip}): identity {id} [{labels}]");
    }
    let d = oracle::decide(c, &world.repo, &flow);
    println!("oracle:");
    for (dir, v, rules) in [
        ("egress", &d.egress, &d.egress_rules),
        ("ingress", &d.ingress, &d.ingress_rules),
    ] {
        let selected = if rules.is_empty() {
            String::new()
        } else {
            format!(" ({} selecting rule(s))", rules.len())
        };
        match v {
            DirectionVerdict::NotApplicable => println!("  {dir}: not a pod: nothing enforced"),
            DirectionVerdict::NotEnforced => {
                println!("  {dir}: no rule selects the endpoint: allow")
            }
            DirectionVerdict::Allowed {
                by,
                synthetic,
                redirect,
                proxy_rules,
            } => {
                println!("  {dir}: allowed{selected}");
                if let Some(s) = synthetic {
                    println!("    by {s}");
                }
                for o in by {
                    println!("    by {o}");
                }
                if let Some(p) = redirect {
                    let side = if dir == "egress" {
                        verdict_sim::verdict::Direction::Egress
                    } else {
                        verdict_sim::verdict::Direction::Ingress
                    };
                    let (listener, port) = verdict_sim::proxy::ProxyPorts::listener(*p, side);
                    println!("    redirected to the {p} proxy ({listener}, proxy port {port}), which holds:");
                    for r in proxy_rules {
                        match &r.l7 {
                            None => println!("      {}: every request (no L7 rules)", r.origin),
                            Some(l7) if l7.wildcard => {
                                println!("      {}: every request (wildcard rule)", r.origin)
                            }
                            Some(l7) => {
                                for h in &l7.http {
                                    println!("      {}: http {h}", r.origin);
                                }
                                for d in &l7.dns {
                                    println!("      {}: dns {d}", r.origin);
                                }
                            }
                        }
                    }
                }
            }
            DirectionVerdict::Denied { reason, by } => {
                println!("  {dir}: denied {reason}{selected}");
                if by.is_empty() {
                    println!("    by default deny: no rule allows it");
                }
                for o in by {
                    println!("    by {o}");
                }
            }
        }
    }
    println!("  => {}", d.outcome());
    explain_fqdn(&world, &model, &src);
    println!("model:");
    let e = model.explain(c, &flow);
    for line in e.to_string().lines() {
        println!("  {line}");
    }
    Ok(true)
}

/// For a pod source: the names and addresses each toFQDNs selector of its egress rules holds
/// on its node at this instant (the model's ipcache labels over the name manager's cache).
fn explain_fqdn(world: &engine::World, model: &Model, src: &verdict_sim::cluster::Peer) {
    let verdict_sim::cluster::Peer::Pod(pn) = src else {
        return;
    };
    let c = &world.cluster;
    let Some(pod) = c.pods.get(pn) else { return };
    let Some(labels) = c.identities.labels(pod.identity) else {
        return;
    };
    let mut keys: Vec<&str> = world
        .repo
        .entries_for_namespace(&pn.namespace)
        .filter(|e| {
            e.direction == verdict_sim::verdict::Direction::Egress
                && e.subject.matches_labels(labels)
        })
        .filter_map(|e| match &e.peers {
            verdict_sim::policy::Peers::Selectors(s) => Some(s.iter().filter_map(|s| s.fqdn_key())),
            _ => None,
        })
        .flatten()
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return;
    }
    println!("toFQDNs selectors of {pn}'s egress on {}:", pod.node);
    for k in keys {
        let held = model.fqdn_selection(&pod.node, k);
        if held.is_empty() {
            println!("  fqdn:{k}: nothing (no allowed lookup of a matching name on this node)");
            continue;
        }
        let parts: Vec<String> = held
            .iter()
            .map(|(ip, names)| format!("{ip} ({})", names.join(",")))
            .collect();
        println!("  fqdn:{k}: {}", parts.join(", "));
    }
}

/// `verdict import`: the scenario to `out` (or stdout), the notes to stderr.
fn import(
    out: Option<PathBuf>,
    name: Option<String>,
    probe_pods: usize,
    probe_ports: Option<Vec<String>>,
    skip_unsupported: bool,
    paths: Vec<PathBuf>,
) -> Result<()> {
    use verdict_sim::import;
    if probe_pods == 0 {
        bail!("--probe-pods: must be at least 1");
    }
    let probe_ports = match probe_ports {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|p| {
                    let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "TCP"));
                    let port: u16 = port.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--probe-ports: {p:?}: the port must be 1-65535 (PORT/PROTOCOL)")
                    })?;
                    let proto = Protocol::parse(proto)
                        .filter(|p| !p.is_icmp())
                        .with_context(|| {
                            format!("--probe-ports: {p:?}: the protocol must be TCP, UDP or SCTP")
                        })?;
                    Ok((port, proto))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let opts = import::Options {
        name,
        probe_pods,
        probe_ports,
        skip_unsupported,
    };
    let imported = import::import(&paths, &opts)?;
    for n in &imported.notes {
        eprintln!("{n}");
    }
    match out {
        Some(p) => {
            std::fs::write(&p, &imported.scenario)
                .with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => print!("{}", imported.scenario),
    }
    Ok(())
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so writing to a closed pipe (`verdict run ... | head`) would panic
    // in println!. A command-line tool should just stop, as other Unix tools do.
    // SAFETY: setting a signal disposition to the default before any thread is started.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let status = |r: Result<bool>| r.map(|ok| if ok { 0 } else { 1 });
    let result: Result<u8> = match cli.cmd {
        Cmd::Run {
            backend,
            format,
            golden,
            bless,
            flows,
            junit,
            full_tables,
            side_by_side,
            shard,
            paths,
        } => run(RunArgs {
            backends: backend.unwrap_or_else(default_backends),
            format,
            golden,
            bless,
            flows,
            junit,
            tables: report::TextOptions {
                full_tables,
                side_by_side,
            },
            shard,
            paths,
        }),
        Cmd::Merge { out, files } => verdict::merge::run(&files, out.as_deref()),
        Cmd::Check { scenario, files } => check(scenario, files),
        Cmd::Gen {
            cmd:
                GenCmd::World {
                    ns,
                    pods,
                    npol,
                    outdir,
                    seed,
                },
        } => verdict_sim::genworld::generate(ns, pods, npol, seed)
            .and_then(|w| w.write(&outdir))
            .map_err(anyhow::Error::msg)
            .map(|()| {
                // The script's last line, word for word.
                println!(
                    "{} {ns} ns x {pods} pods = {} pods; {npol} policies",
                    outdir.display(),
                    ns * pods
                );
                0
            }),
        Cmd::Import {
            out,
            name,
            probe_pods,
            probe_ports,
            skip_unsupported,
            paths,
        } => import(out, name, probe_pods, probe_ports, skip_unsupported, paths).map(|()| 0),
        Cmd::Report {
            html,
            backend,
            no_timings,
            max_flows,
            paths,
        } => backends::validate(&backend.unwrap_or_else(default_backends))
            .map_err(anyhow::Error::msg)
            .and_then(|backends| {
                verdict::htmlreport::run(&verdict::htmlreport::ReportArgs {
                    html,
                    backends,
                    paths,
                    no_timings,
                    max_flows,
                })
            }),
        Cmd::Policy {
            cmd:
                PolicyCmd::Get {
                    scenario,
                    pod,
                    after_step,
                    numeric,
                    output,
                },
        } => status(policy_get(&scenario, &pod, after_step, numeric, output)),
        Cmd::Fqdn {
            cmd:
                FqdnCmd::Cache {
                    scenario,
                    after_step,
                    node,
                    endpoint,
                },
        } => status(load_world(&scenario, after_step).map(|w| {
            print!(
                "{}",
                verdict::fqdncache::render(&w, node.as_deref(), endpoint.as_deref())
            );
            true
        })),
        Cmd::Explain {
            scenario,
            from,
            to,
            port,
            protocol,
            icmp_type,
            after_step,
        } => status(explain(
            &scenario, &from, &to, port, &protocol, icmp_type, after_step,
        )),
        Cmd::Diff(args) => verdict::diff::run(args),
        Cmd::Replay(args) => verdict::replay::run(&args),
        Cmd::Impact(args) => verdict::impact::run(&args),
        Cmd::Suggest(args) => verdict::suggest::run(&args),
        Cmd::Audit(args) => verdict::audit::run(&args),
        Cmd::Churn {
            seed,
            nodes,
            pods,
            namespaces,
            policies,
            events,
            rate,
            delay_min,
            delay_max,
            backend,
            fuzz_policies,
            write_scenario,
            no_timings,
            invariants,
        } => backends::validate(&backend)
            .map_err(anyhow::Error::msg)
            .and_then(|backends| {
                status(verdict::churn::run(verdict::churn::ChurnArgs {
                    seed,
                    nodes,
                    pods,
                    namespaces,
                    policies,
                    events,
                    rate,
                    delay_min,
                    delay_max,
                    backends,
                    fuzz_policies,
                    write_scenario,
                    no_timings,
                    invariants,
                }))
            }),
        Cmd::Fuzz {
            seed,
            cases,
            backend,
            out_dir,
            verbose,
            junit: _,
            shard,
            packets,
            manifests,
            timeout,
        } if packets.is_some() || manifests.is_some() => {
            let (target, count) = match (packets, manifests) {
                (Some(n), _) => (verdict::fuzzscale::Target::Packets, n),
                (_, Some(n)) => (verdict::fuzzscale::Target::Manifests, n),
                _ => unreachable!("guarded"),
            };
            let names = match (backend, target) {
                (Some(b), _) => backends::validate(&b).map_err(anyhow::Error::msg),
                (None, verdict::fuzzscale::Target::Packets) => {
                    let mut v = vec!["rbpf".to_string(), "rbpf-jit".to_string()];
                    if verdict::diff::kernel_status().is_ok() {
                        v.push("kernel".into());
                    }
                    Ok(v)
                }
                (None, verdict::fuzzscale::Target::Manifests) => Ok(vec!["oracle".to_string()]),
            };
            let _ = cases;
            names.and_then(|backends| {
                status(verdict::fuzzscale::run(&verdict::fuzzscale::CampaignArgs {
                    target,
                    seed,
                    count,
                    backends,
                    out_dir: out_dir.unwrap_or_else(|| PathBuf::from("fuzz-findings")),
                    shard,
                    timeout: std::time::Duration::from_secs(timeout.max(1)),
                    verbose,
                }))
            })
        }
        Cmd::Fuzz {
            seed,
            cases,
            backend,
            out_dir,
            verbose,
            junit,
            shard,
            ..
        } => backends::validate(&backend.unwrap_or_else(default_backends))
            .map_err(anyhow::Error::msg)
            .and_then(|backends| {
                status(verdict::fuzz::run(
                    verdict::fuzz::FuzzArgs {
                        seed,
                        cases,
                        backends,
                        out_dir: out_dir.unwrap_or_else(|| PathBuf::from("scenarios/regressions")),
                        verbose,
                        shard,
                    },
                    junit.as_deref(),
                ))
            }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // As clap prints usage errors: `error: ...`, exit status 2.
            eprintln!("error: {}", report::clip_values(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// A `--delay-min`/`--delay-max` value: `2s`, `500ms`, ...
fn parse_duration_arg(s: &str) -> Result<u64, String> {
    scenario::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument and flag of every command says what it is for (`verdict CMD --help`).
    #[test]
    fn every_argument_has_a_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "verdict", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
        Cli::command().debug_assert();
    }

    /// `--backend` everywhere, `--backends` its alias.
    #[test]
    fn backend_flag_is_one_name_everywhere() {
        for cmd in ["run", "diff", "fuzz", "churn"] {
            let c = Cli::command();
            let sub = c.find_subcommand(cmd).expect(cmd);
            let a = sub
                .get_arguments()
                .find(|a| a.get_id() == "backend")
                .unwrap_or_else(|| panic!("{cmd} has no --backend"));
            assert_eq!(a.get_long(), Some("backend"), "{cmd}");
            assert!(
                a.get_visible_aliases()
                    .is_some_and(|v| v.contains(&"backends")),
                "{cmd}: --backends alias"
            );
        }
    }

    #[test]
    fn check_tells_scenarios_from_manifests() {
        assert_eq!(file_kind(""), FileKind::Empty);
        assert_eq!(file_kind("# nothing\n---\n"), FileKind::Empty);
        assert_eq!(
            file_kind("name: s\ncluster:\n  pods: []\n"),
            FileKind::Scenario
        );
        assert_eq!(
            file_kind("apiVersion: v1\nkind: NetworkPolicy\n"),
            FileKind::Manifests
        );
        assert_eq!(
            file_kind("spec: {}\nkind: CiliumNetworkPolicy\n"),
            FileKind::Manifests
        );
    }
}
