//! `verdict impact --flows FILE --scenario S (--apply MANIFESTS... | --delete KIND/NS/NAME...)`:
//! what a proposed policy change does to recorded traffic. The flows are replayed (as
//! `verdict replay` replays them, src/replay.rs) on the scenario's state and on that state with
//! the change applied, in lockstep, and every flow whose simulated verdict changes is reported:
//! newly DROPPED and newly FORWARDED, grouped by workload pair, port and protocol, with the
//! rule that decided before and the one that decides after. A CI gate: exit status 1 when
//! anything would be newly dropped (unless `--allow-new-drops`), or when backends disagree.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use verdict_sim::policy::{PolicyKind, PolicyRef};
use verdict_sim::scenario::{DeleteDecl, PolicySource, Step};

use crate::diff;
use crate::flowlog::Entry;
use crate::replay::{self, Fed, GroupKey, Replayer, Row};

/// `verdict impact` output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImpactOutput {
    /// The summary: counts and the changed groups with their rules.
    Text,
    /// The same as one JSON document.
    Json,
}

/// `verdict impact` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ImpactArgs {
    /// The flows: `hubble observe -o json` (or jsonpb) output.
    #[arg(long, value_name = "FILE")]
    pub flows: PathBuf,
    /// The scenario whose cluster and policies the flows are replayed against.
    #[arg(long, value_name = "S")]
    pub scenario: PathBuf,
    /// The state the change is applied to: after step N (1-based; 0 is the initial state;
    /// default: after the last step).
    #[arg(long, value_name = "N")]
    pub after_step: Option<usize>,
    /// The change: manifest files applied as `kubectl apply -f` applies them (an object with the
    /// same kind, namespace and name replaces the existing one).
    #[arg(long, num_args = 1.., value_name = "MANIFESTS", required_unless_present = "delete")]
    pub apply: Vec<PathBuf>,
    /// The change: policies deleted, as KIND/NAMESPACE/NAME (KIND/NAME for a
    /// CiliumClusterwideNetworkPolicy); KIND is NetworkPolicy, CiliumNetworkPolicy or
    /// CiliumClusterwideNetworkPolicy (or netpol, cnp, ccnp).
    #[arg(long, num_args = 1.., value_name = "KIND/NS/NAME")]
    pub delete: Vec<String>,
    /// Report new drops without failing (exit status 0 unless backends disagree).
    #[arg(long)]
    pub allow_new_drops: bool,
    /// Also write a JUnit XML report: one test case per changed flow group, and one for the
    /// unchanged flows.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Backends, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
    /// oracle,model,rbpf).
    #[arg(
        long,
        visible_alias = "backends",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub backend: Option<Vec<String>>,
    /// text or json.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: ImpactOutput,
}

/// A parsed `--delete` target.
pub fn parse_delete(s: &str) -> Result<PolicyRef> {
    let parts: Vec<&str> = s.split('/').collect();
    let kind_of = |k: &str| -> Result<PolicyKind> {
        let k = match k.to_ascii_lowercase().as_str() {
            "netpol" | "networkpolicy" | "networkpolicies" => "NetworkPolicy",
            "cnp" | "ciliumnetworkpolicy" | "ciliumnetworkpolicies" => "CiliumNetworkPolicy",
            "ccnp" | "ciliumclusterwidenetworkpolicy" | "ciliumclusterwidenetworkpolicies" => {
                "CiliumClusterwideNetworkPolicy"
            }
            _ => bail!("--delete {s:?}: unknown kind {k:?}: expected NetworkPolicy, CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy (netpol, cnp, ccnp)"),
        };
        Ok(PolicyKind::parse(k).expect("a kind name"))
    };
    match parts.as_slice() {
        [k, name] if !name.is_empty() => {
            let kind = kind_of(k)?;
            if kind != PolicyKind::CiliumClusterwideNetworkPolicy {
                bail!("--delete {s:?}: a {kind} is namespaced: write {kind}/NAMESPACE/NAME");
            }
            Ok(PolicyRef {
                kind,
                namespace: None,
                name: name.to_string(),
            })
        }
        [k, ns, name] if !ns.is_empty() && !name.is_empty() => {
            let kind = kind_of(k)?;
            if kind == PolicyKind::CiliumClusterwideNetworkPolicy {
                bail!("--delete {s:?}: a CiliumClusterwideNetworkPolicy has no namespace: write CiliumClusterwideNetworkPolicy/NAME");
            }
            Ok(PolicyRef {
                kind,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            })
        }
        _ => bail!(
            "--delete {s:?}: expected KIND/NAMESPACE/NAME (or CiliumClusterwideNetworkPolicy/NAME)"
        ),
    }
}

/// How one flow's simulated verdict changed on the reference backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    NewlyDropped,
    NewlyForwarded,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::NewlyDropped => "newly DROPPED",
            Change::NewlyForwarded => "newly FORWARDED",
        }
    }
}

/// One changed flow group.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub lines: Vec<usize>,
    /// (rule before, rule after) -> flows.
    pub rules: BTreeMap<(String, String), usize>,
}

/// `verdict impact`'s result.
#[derive(Debug, Default)]
pub struct ImpactReport {
    pub flows_file: PathBuf,
    pub scenario: String,
    pub after_step: usize,
    pub change: Vec<String>,
    pub backends: Vec<String>,
    pub lines: usize,
    pub replayed: usize,
    pub unchanged: usize,
    pub groups: BTreeMap<(Change, GroupKey), Group>,
    /// Flows whose change differs between backends: (line, per-backend change text).
    pub backend_disagreements: Vec<(usize, String)>,
    pub not_replayed: BTreeMap<&'static str, usize>,
}

impl ImpactReport {
    pub fn count(&self, c: Change) -> usize {
        self.groups
            .iter()
            .filter(|((k, _), _)| *k == c)
            .map(|(_, g)| g.lines.len())
            .sum()
    }
}

fn change_of(before: &Row, after: &Row, i: usize) -> Result<Option<Change>, String> {
    match (&before.results[i], &after.results[i]) {
        (Ok(b), Ok(a)) => Ok(match (b.allowed, a.allowed) {
            (true, false) => Some(Change::NewlyDropped),
            (false, true) => Some(Change::NewlyForwarded),
            _ => None,
        }),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    }
}

/// The change as steps appended to the scenario, checked against the state it applies to.
fn change_steps(a: &ImpactArgs, names: &[String]) -> Result<(Vec<Step>, Vec<String>)> {
    let mut steps = Vec::new();
    let mut text = Vec::new();
    for m in &a.apply {
        let abs = std::fs::canonicalize(m).with_context(|| format!("--apply {}", m.display()))?;
        // Load it here so a bad manifest is reported with its own file and line.
        let f = verdict_sim::api::load_manifest_file(&abs).map_err(anyhow::Error::msg)?;
        if f.manifests.is_empty() {
            bail!("--apply {}: the file holds no policy", m.display());
        }
        for man in &f.manifests {
            text.push(match verdict_sim::translate::policy_ref(man) {
                Some(r) => format!("apply {r}"),
                None => format!("apply CiliumCIDRGroup {}", man.name()),
            });
        }
        steps.push(Step::Apply(PolicySource::File(abs.display().to_string())));
    }
    if !a.delete.is_empty() {
        let probe = replay::prepare(
            &a.scenario,
            a.after_step,
            Vec::new(),
            &names[..1],
            &diff::contender,
        )?;
        for d in &a.delete {
            let r = parse_delete(d)?;
            if !probe.world.repo.contains(&r) {
                let have: Vec<String> = probe
                    .world
                    .repo
                    .policies()
                    .map(|(p, _)| p.to_string())
                    .collect();
                bail!(
                    "--delete {d}: the scenario has no {r} after step {} (it has: {})",
                    probe.after_step,
                    if have.is_empty() {
                        "no policies".to_string()
                    } else {
                        have.join(", ")
                    }
                );
            }
            text.push(format!("delete {r}"));
            steps.push(Step::Delete(DeleteDecl {
                kind: r.kind.to_string(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            }));
        }
    }
    Ok((steps, text))
}

/// Replays the flows before and after the change.
pub fn impact(a: &ImpactArgs, names: &[String]) -> Result<ImpactReport> {
    let (steps, change) = change_steps(a, names)?;
    let mut before = replay::prepare(
        &a.scenario,
        a.after_step,
        Vec::new(),
        names,
        &diff::contender,
    )?;
    let mut after = replay::prepare(&a.scenario, a.after_step, steps, names, &diff::contender)?;
    let mut rb = Replayer::new(&mut before);
    let mut ra = Replayer::new(&mut after);
    let mut rep = ImpactReport {
        flows_file: a.flows.clone(),
        change,
        backends: names.to_vec(),
        ..Default::default()
    };
    let shell = rb.report();
    rep.scenario = shell.scenario.clone();
    rep.after_step = shell.after_step;
    for entry in replay::read_flows(&a.flows)? {
        let entry = entry?;
        // Both replayers read the same line; a flow skipped by one is skipped by both (the
        // skip depends on the flow and the cluster, which the change leaves alone).
        let copy = match &entry {
            Entry::Flow(r) => Entry::Flow(r.clone()),
            Entry::Other(l, w) => Entry::Other(*l, w),
        };
        let (fb, fa) = (rb.feed(entry), ra.feed(copy));
        rep.lines += 1;
        let (b, af) = match (fb, fa) {
            (Fed::Row(b), Fed::Row(af)) => (b, af),
            (Fed::Skipped(s), _) | (_, Fed::Skipped(s)) => {
                *rep.not_replayed.entry(s.kind.as_str()).or_default() += 1;
                continue;
            }
        };
        rep.replayed += 1;
        let changes: Vec<Result<Option<Change>, String>> =
            (0..names.len()).map(|i| change_of(&b, &af, i)).collect();
        if changes.iter().any(|c| c.is_err()) || changes.windows(2).any(|w| w[0] != w[1]) {
            let text: Vec<String> = names
                .iter()
                .zip(&changes)
                .map(|(n, c)| match c {
                    Ok(Some(c)) => format!("{n}: {}", c.as_str()),
                    Ok(None) => format!("{n}: unchanged"),
                    Err(e) => format!("{n}: error: {e}"),
                })
                .collect();
            rep.backend_disagreements.push((b.line, text.join("; ")));
        }
        match &changes[0] {
            Ok(Some(c)) => {
                let key = (*c, rb_group(&rb, &b));
                let g = rep.groups.entry(key).or_default();
                g.lines.push(b.line);
                *g.rules
                    .entry((
                        rb.rules[b.rule as usize].clone(),
                        ra.rules[af.rule as usize].clone(),
                    ))
                    .or_default() += 1;
            }
            _ => rep.unchanged += 1,
        }
    }
    Ok(rep)
}

fn rb_group(r: &Replayer<'_>, row: &Row) -> GroupKey {
    let peers = r.peers();
    let (c, s, port) = if row.is_reply == Some(true) {
        (row.dst, row.src, row.sport)
    } else {
        (row.src, row.dst, row.dport)
    };
    GroupKey {
        src: peers[c as usize].workload.clone(),
        dst: peers[s as usize].workload.clone(),
        port,
        protocol: row.protocol.to_string(),
    }
}

/// The text report.
pub fn render_text(r: &ImpactReport) -> String {
    let mut s = String::new();
    let dropped = r.count(Change::NewlyDropped);
    let forwarded = r.count(Change::NewlyForwarded);
    let not: usize = r.not_replayed.values().sum();
    let _ = writeln!(
        s,
        "impact of {} on {} against {} (after step {}) on {}: {} lines, {} flows replayed: {dropped} newly DROPPED, {forwarded} newly FORWARDED, {} unchanged; {not} not replayed{}; {} backend disagreements",
        r.change.join(", "),
        r.flows_file.display(),
        r.scenario,
        r.after_step,
        r.backends.join(","),
        r.lines,
        r.replayed,
        r.unchanged,
        if r.not_replayed.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                r.not_replayed
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        r.backend_disagreements.len()
    );
    for c in [Change::NewlyDropped, Change::NewlyForwarded] {
        let groups: Vec<_> = r.groups.iter().filter(|((k, _), _)| *k == c).collect();
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "{} (by source workload, destination workload, port, protocol; {} decides):",
            c.as_str(),
            r.backends[0]
        );
        for ((_, key), g) in groups {
            let _ = writeln!(
                s,
                "  {key}: {} flows (lines {})",
                g.lines.len(),
                lines_text(&g.lines)
            );
            for ((before, after), n) in &g.rules {
                let _ = writeln!(s, "    {n} flows: before: {before}; after: {after}");
            }
        }
    }
    for (line, text) in &r.backend_disagreements {
        let _ = writeln!(s, "  backends disagree on line {line}: {text}");
    }
    s
}

fn lines_text(lines: &[usize]) -> String {
    crate::replay::line_ranges(lines)
}

/// The report as JSON.
pub fn to_json(r: &ImpactReport) -> Value {
    let groups: Vec<Value> = r
        .groups
        .iter()
        .map(|((c, k), g)| {
            json!({
                "change": c.as_str(),
                "source_workload": k.src,
                "destination_workload": k.dst,
                "port": k.port,
                "protocol": k.protocol,
                "flows": g.lines.len(),
                "lines": g.lines,
                "rules": g.rules.iter().map(|((b, a), n)| json!({"before": b, "after": a, "flows": n})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "flows_file": r.flows_file.display().to_string(),
        "scenario": r.scenario,
        "after_step": r.after_step,
        "change": r.change,
        "backends": r.backends,
        "lines": r.lines,
        "replayed": r.replayed,
        "newly_dropped": r.count(Change::NewlyDropped),
        "newly_forwarded": r.count(Change::NewlyForwarded),
        "unchanged": r.unchanged,
        "not_replayed": r.not_replayed,
        "groups": groups,
        "backend_disagreements": r.backend_disagreements.iter().map(|(l, t)| json!({"line": l, "changes": t})).collect::<Vec<_>>(),
    })
}

/// The JUnit report: one case per changed group (a new drop fails unless allowed), one for
/// the unchanged flows, one for backend disagreements.
pub fn write_junit(path: &Path, r: &ImpactReport, allow_new_drops: bool) -> Result<()> {
    use crate::junit::{classname, Outcome, TestCase, TestSuite};
    let class = classname(&r.flows_file);
    let mut cases = Vec::new();
    for ((c, k), g) in &r.groups {
        let name = format!("{}: {k}", c.as_str());
        let detail: Vec<String> = g
            .rules
            .iter()
            .map(|((b, a), n)| format!("{n} flows: before: {b}; after: {a}"))
            .collect();
        let text = format!("lines {}\n{}", lines_text(&g.lines), detail.join("\n"));
        let outcome = if *c == Change::NewlyDropped && !allow_new_drops {
            Outcome::Failure {
                message: format!("{} flows newly dropped", g.lines.len()),
                kind: "new-drop".into(),
                text: text.clone(),
            }
        } else {
            Outcome::Passed
        };
        let mut tc = TestCase::new(&class, &name, 0.0, outcome);
        tc.system_out = Some(text);
        cases.push(tc);
    }
    let mut tc = TestCase::new(&class, "unchanged flows", 0.0, Outcome::Passed);
    tc.system_out = Some(format!("{} flows unchanged", r.unchanged));
    cases.push(tc);
    if !r.backend_disagreements.is_empty() {
        cases.push(TestCase::new(
            &class,
            "backends agree",
            0.0,
            Outcome::Failure {
                message: format!(
                    "backends disagree on {} flows",
                    r.backend_disagreements.len()
                ),
                kind: "disagreement".into(),
                text: r
                    .backend_disagreements
                    .iter()
                    .map(|(l, t)| format!("line {l}: {t}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        ));
    }
    let suite = TestSuite {
        name: format!("impact of {}", r.change.join(", ")),
        cases,
        properties: vec![
            ("backends".into(), r.backends.join(",")),
            ("scenario".into(), r.scenario.clone()),
        ],
    };
    crate::junit::write(path, "verdict impact", &[suite])
}

/// Runs `verdict impact`: 0 when nothing is newly dropped (or `--allow-new-drops`) and the
/// backends agree, 1 otherwise, 2 on bad input.
pub fn run(a: &ImpactArgs) -> Result<u8> {
    let names = replay::backends_of(a.backend.as_deref())?;
    let r = impact(a, &names)?;
    match a.output {
        ImpactOutput::Json => println!("{}", serde_json::to_string_pretty(&to_json(&r))?),
        ImpactOutput::Text => print!("{}", render_text(&r)),
    }
    if let Some(p) = &a.junit {
        write_junit(p, &r, a.allow_new_drops)?;
    }
    let new_drops = r.count(Change::NewlyDropped) > 0;
    Ok(
        if (new_drops && !a.allow_new_drops) || !r.backend_disagreements.is_empty() {
            1
        } else {
            0
        },
    )
}
