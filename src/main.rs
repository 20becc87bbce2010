//! `verdict`: run network-policy scenarios on the oracle, the model and the BPF datapaths,
//! and compare them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

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
    Run {
        /// Backends to run, comma-separated (default: every backend that needs no privileges).
        #[arg(long, value_delimiter = ',')]
        backend: Option<Vec<String>>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Compare each scenario's full output with DIR/<scenario name>.txt.
        #[arg(long)]
        golden: Option<PathBuf>,
        /// With --golden: write the golden files instead of comparing.
        #[arg(long, requires = "golden")]
        bless: bool,
        /// Print the flow events of the first datapath backend (rbpf, rbpf-jit or kernel) as
        /// `hubble observe` does: `json` lines or `compact` lines.
        #[arg(long, value_enum)]
        flows: Option<FlowFormat>,
        /// Scenario files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Replay scenarios (or a packet capture, with --pcap) on several backends and print
    /// every disagreement: verdicts, and between datapaths the flow records and map contents.
    Diff(verdict::diff::DiffArgs),
    /// Generate random clusters, policies and probes from a seed, run them on several backends
    /// and shrink any disagreement to a reproducer scenario.
    Fuzz {
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 100)]
        cases: u64,
        /// Backends to compare, comma-separated (default: every backend that needs no privileges).
        #[arg(long, value_delimiter = ',')]
        backend: Option<Vec<String>>,
        /// Where reproducers are written.
        #[arg(long, default_value = "scenarios/regressions")]
        out_dir: PathBuf,
        #[arg(long)]
        verbose: bool,
    },
    /// Control-plane churn at scale with propagation delays: generate a cluster, policies and
    /// a churn timeline from a seed, replay it, and report totals, delay percentiles, transient
    /// windows (security findings first) and real compute time per event.
    Churn {
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        pods: usize,
        #[arg(long, default_value_t = 4)]
        namespaces: usize,
        #[arg(long, default_value_t = 5)]
        policies: usize,
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
        #[arg(long, value_delimiter = ',', default_value = "oracle,model")]
        backends: Vec<String>,
        /// Generate the fuzzer's broad, every-feature policies instead of targeted ones
        /// (their map state grows fast: small sizes only).
        #[arg(long)]
        fuzz_policies: bool,
        /// Also write the run as a scenario file that `verdict run` replays.
        #[arg(long)]
        write_scenario: Option<PathBuf>,
        /// Leave out the real-time section, so the output is byte-identical across runs.
        #[arg(long)]
        no_timings: bool,
    },
    /// Policy map state, as `cilium-dbg bpf policy get` prints it.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Why a connection attempt gets its verdict: identities, the oracle's deciding rules, and
    /// the model's policy-map lookups per direction.
    Explain {
        scenario: PathBuf,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, default_value = "TCP")]
        protocol: String,
        /// ICMP type for ICMP probes (default echo request).
        #[arg(long)]
        icmp_type: Option<u8>,
        /// Explain the state after this step (1-based; 0 is the initial state; default: the end).
        #[arg(long)]
        after_step: Option<usize>,
    },
    /// Validate policy manifests; with --scenario, show which endpoints each rule selects.
    Check {
        /// A scenario whose cluster (at time 0) the rules are matched against.
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// An endpoint's realized policy map.
    Get {
        scenario: PathBuf,
        /// The pod, as ns/name.
        pod: String,
        /// The state after this step (1-based; 0 is the initial state; default: the end).
        #[arg(long)]
        after_step: Option<usize>,
    },
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

/// Prints the flows one backend observed during a scenario.
fn print_flows(r: &ScenarioReport, how: FlowFormat) -> Result<()> {
    let Some(backend) = r
        .steps
        .iter()
        .flat_map(|s| s.flows.iter().map(|(b, _)| b.clone()))
        .next()
    else {
        return Ok(());
    };
    for s in &r.steps {
        for (b, flows) in &s.flows {
            if *b != backend {
                continue;
            }
            for f in flows {
                match how {
                    FlowFormat::Json => println!("{}", serde_json::to_string(&f.json)?),
                    FlowFormat::Compact => println!("{}", f.compact),
                }
            }
        }
    }
    Ok(())
}

fn run(
    backend: Vec<String>,
    format: Format,
    golden: Option<PathBuf>,
    bless: bool,
    flows: Option<FlowFormat>,
    paths: Vec<PathBuf>,
) -> Result<bool> {
    let files = verdict::scenario_files(&paths)?;
    if files.is_empty() {
        bail!("no scenario files found under {:?}", paths);
    }
    let factory = verdict::backends::factory;
    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut probes = 0usize;
    let mut disagreements = 0usize;
    let mut json_out = Vec::new();
    // The scenario format requires names unique within a suite; the name also names the
    // golden file, so a duplicate would overwrite (or be compared with) another's golden.
    let mut seen: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for f in &files {
        let r = engine::run_file(f, &backend, &factory);
        let mut ok = r.passed();
        probes += r.probe_count();
        disagreements += r.disagreement_count();
        let mut golden_note = String::new();
        let duplicate = r.error.is_none() && seen.contains_key(&r.name);
        if duplicate {
            ok = false;
            golden_note = format!(
                "  duplicate scenario name {:?}: {} has it too (names are unique within a suite)\n",
                r.name,
                seen[&r.name].display()
            );
        } else {
            seen.insert(r.name.clone(), f.clone());
        }
        if let (Some(dir), false) = (&golden, duplicate) {
            let path = golden_path(dir, &r);
            let text = report::golden(&r);
            if bless {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            } else {
                match std::fs::read_to_string(&path) {
                    Ok(want) if want == text => {}
                    Ok(want) => {
                        ok = false;
                        golden_note = format!(
                            "  golden {} differs:\n{}",
                            path.display(),
                            diff_lines(&want, &text)
                        );
                    }
                    Err(e) => {
                        ok = false;
                        golden_note = format!(
                            "  golden {}: {e} (run with --bless to create it)\n",
                            path.display()
                        );
                    }
                }
            }
        }
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
        match format {
            Format::Text => {
                let mut t = report::text(&r);
                if !ok && r.passed() {
                    t = t.replacen("PASS", "FAIL", 1);
                }
                print!("{t}{golden_note}");
                if let Some(how) = flows {
                    print_flows(&r, how)?;
                }
            }
            Format::Json => json_out.push(report::json(&r)),
        }
    }
    match format {
        Format::Text => {
            println!(
                "{} scenarios, {probes} probes checked on {}, {disagreements} disagreements",
                files.len(),
                backend.join(",")
            );
            println!("{passed} passed, {failed} failed");
        }
        Format::Json => {
            let all = serde_json::json!({"scenarios": json_out, "passed": passed, "failed": failed, "probes": probes, "disagreements": disagreements});
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
    }
    Ok(failed == 0)
}

fn check(scenario_path: Option<PathBuf>, files: Vec<PathBuf>) -> Result<bool> {
    let world = match &scenario_path {
        Some(p) => {
            let loaded = scenario::load(p).map_err(anyhow::Error::msg)?;
            Some(engine::build_world(&loaded).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let mut ok = true;
    for f in &files {
        let loaded = match api::load_manifest_file(f) {
            Ok(m) => m,
            Err(e) => {
                println!("error: {e}");
                ok = false;
                continue;
            }
        };
        let manifests = loaded.manifests;
        println!("ok {}: {} manifest(s)", f.display(), manifests.len());
        if !loaded.skipped.is_empty() {
            println!("  skipped {}", loaded.skipped);
        }
        for m in &manifests {
            let r = translate::policy_ref(m);
            println!("  {r}");
            for e in translate::translate(m) {
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
                if let Some(w) = &world {
                    let selected: Vec<String> = w
                        .cluster
                        .pods
                        .values()
                        .filter(|p| {
                            w.cluster
                                .identities
                                .labels(p.identity)
                                .is_some_and(|l| e.subject.matches_labels(l))
                        })
                        .map(|p| p.name.to_string())
                        .collect();
                    println!(
                        "      selects: {}",
                        if selected.is_empty() {
                            "no endpoints".to_string()
                        } else {
                            selected.join(" ")
                        }
                    );
                    if let Peers::Selectors(sels) = &e.peers {
                        let peers: Vec<String> = w
                            .cluster
                            .pods
                            .values()
                            .filter(|p| {
                                w.cluster
                                    .identities
                                    .labels(p.identity)
                                    .is_some_and(|l| sels.iter().any(|s| s.matches_labels(l)))
                            })
                            .map(|p| p.name.to_string())
                            .collect();
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
        }
    }
    Ok(ok)
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

fn policy_get(path: &Path, pod: &str, after_step: Option<usize>) -> Result<bool> {
    let world = load_world(path, after_step)?;
    let name = PodName::parse(pod).with_context(|| format!("{pod:?} is not <namespace>/<name>"))?;
    let model = Model::new(&world.cluster, &world.repo);
    let ep = model
        .endpoint(&name)
        .with_context(|| format!("no pod {pod} in {} at that step", path.display()))?;
    // One label per line, as cilium-dbg prints the LABELS column.
    let rows: Vec<MapStateRow> = model
        .rows(&name)
        .unwrap_or_default()
        .into_iter()
        .map(|mut r| {
            r.labels = r.labels.split(' ').collect::<Vec<_>>().join("\n");
            r
        })
        .collect();
    println!(
        "endpoint {} ({pod}) identity {} on {}: ingress policy {}, egress policy {}",
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
    );
    let mut table = tabled::builder::Builder::default();
    table.push_record(MapStateRow::HEADER);
    for r in &rows {
        table.push_record(r.columns());
    }
    let mut table = table.build();
    table.with(tabled::settings::Style::blank());
    println!("{table}");
    println!(
        "{} entries of {POLICY_MAP_LIMIT} (Cilium's default per-endpoint limit)",
        rows.len()
    );
    if rows.len() > POLICY_MAP_LIMIT {
        println!("WARNING: {} entries exceed the default policy map size: Cilium would fail to regenerate this endpoint", rows.len());
    }
    Ok(true)
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
    let src = c
        .resolve(from)
        .with_context(|| format!("unknown endpoint {from:?}"))?;
    let dst = c
        .resolve(to)
        .with_context(|| format!("unknown endpoint {to:?}"))?;
    let protocol =
        Protocol::parse(protocol).with_context(|| format!("unknown protocol {protocol:?}"))?;
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
            DirectionVerdict::Allowed { by, synthetic } => {
                println!("  {dir}: allowed{selected}");
                if let Some(s) = synthetic {
                    println!("    by {s}");
                }
                for o in by {
                    println!("    by {o}");
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
    println!("model:");
    let e = model.explain(c, &flow);
    for line in e.to_string().lines() {
        println!("  {line}");
    }
    Ok(true)
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
    let result = match cli.cmd {
        Cmd::Run {
            backend,
            format,
            golden,
            bless,
            flows,
            paths,
        } => run(
            backend.unwrap_or_else(default_backends),
            format,
            golden,
            bless,
            flows,
            paths,
        ),
        Cmd::Check { scenario, files } => check(scenario, files),
        Cmd::Policy {
            cmd:
                PolicyCmd::Get {
                    scenario,
                    pod,
                    after_step,
                },
        } => policy_get(&scenario, &pod, after_step),
        Cmd::Explain {
            scenario,
            from,
            to,
            port,
            protocol,
            icmp_type,
            after_step,
        } => explain(
            &scenario, &from, &to, port, &protocol, icmp_type, after_step,
        ),
        Cmd::Diff(args) => verdict::diff::run(args),
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
            backends,
            fuzz_policies,
            write_scenario,
            no_timings,
        } => verdict::churn::run(verdict::churn::ChurnArgs {
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
        }),
        Cmd::Fuzz {
            seed,
            cases,
            backend,
            out_dir,
            verbose,
        } => verdict::fuzz::run(verdict::fuzz::FuzzArgs {
            seed,
            cases,
            backends: backend.unwrap_or_else(default_backends),
            out_dir,
            verbose,
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("verdict: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A `--delay-min`/`--delay-max` value: `2s`, `500ms`, ...
fn parse_duration_arg(s: &str) -> Result<u64, String> {
    scenario::parse_duration(s)
}
