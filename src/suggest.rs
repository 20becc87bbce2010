//! `verdict suggest --flows FILE --scenario S [--namespace N] [--out DIR]`: least-privilege
//! CiliumNetworkPolicies from the connections a capture shows were forwarded, one per
//! workload, proven by replay.
//!
//! What is suggested (after Inspektor Gadget's `advise network-policy`, which writes one
//! policy per workload from observed connections):
//! - An observed connection is a forwarded opening packet (TCP SYN without ACK, the first
//!   UDP/SCTP datagram or ICMP echo request) that is not a reply, or a connection the replay
//!   found open before the capture began.
//! - One CiliumNetworkPolicy per workload (`suggested-<workload>`) in the chosen namespaces:
//!   `endpointSelector.matchLabels` are the labels every pod of the workload has, without
//!   those its controller sets per revision or per pod (`pod-template-hash`,
//!   `controller-revision-hash`, `statefulset.kubernetes.io/pod-name`,
//!   `apps.kubernetes.io/pod-index`, `pod-template-generation`, the Job controller's
//!   `controller-uid`/`batch.kubernetes.io/controller-uid`/`job-name`/`batch.kubernetes.io/job-name`).
//! - Ingress and egress rules per observed peer: pods by the same stable labels (plus
//!   `k8s:io.kubernetes.pod.namespace` for another namespace), the node by entity (`host` for
//!   the pod's own node, `remote-node` for another), the world by entity on ingress and, on
//!   egress, by its addresses (`toCIDR`, /32 or /128): the destination's DNS names, seen in the
//!   capture's DNS answers or `destination_names`, are written as a comment with the
//!   `toFQDNs` rule that would replace it, as the model has no toFQDNs yet. Each rule lists
//!   the observed ports and protocols.
//! - A direction with no observed connection gets `[{}]` (default deny, nothing allowed:
//!   Cilium's `examples/policies/l3/egress-default-deny`).
//!
//! The proof: the flows are replayed with the suggestion in place of the scenario's policies
//! of those namespaces; every flow the capture shows forwarded must stay allowed (a test
//! checks it). What the suggestion newly denies among traffic the capture did not show is
//! the probe matrix between the namespaces' pods on their container ports, before and after.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use verdict_sim::cluster::{Peer, PodName, Protocol};
use verdict_sim::oracle::{self, Flow};
use verdict_sim::scenario::{DeleteDecl, PolicySource, Step};

use crate::diff;
use crate::flowlog::Entry;
use crate::replay::{self, pod_workload, Prepared, Report, Row};

/// Labels a controller sets per revision or per pod: never in a suggested selector.
pub const UNSTABLE_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "pod-template-generation",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// `verdict suggest` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SuggestArgs {
    /// The flows: `hubble observe -o json` (or jsonpb) output.
    #[arg(long, value_name = "FILE")]
    pub flows: PathBuf,
    /// The scenario whose cluster the flows ran in (its pods, labels and nodes).
    #[arg(long, value_name = "S")]
    pub scenario: PathBuf,
    /// The state to start from: after step N (1-based; 0 is the initial state; default: after
    /// the last step). The proof and the probe matrix compare against it.
    #[arg(long, value_name = "N")]
    pub after_step: Option<usize>,
    /// Suggest policies for the workloads of these namespaces only (default: every namespace
    /// with a pod in the flows).
    #[arg(long, value_name = "N")]
    pub namespace: Vec<String>,
    /// Write one file per policy (`<namespace>-<workload>.yaml`) into DIR; without it the
    /// policies go to stdout and the report to stderr.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Backends the proof replays on, comma-separated (default: oracle,model,rbpf).
    #[arg(
        long,
        visible_alias = "backends",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub backend: Option<Vec<String>>,
}

/// A peer of a suggested rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum RulePeer {
    /// (namespace, stable labels) of a workload.
    Workload(String, BTreeMap<String, String>),
    Entity(&'static str),
    /// World addresses with the DNS names seen for them.
    Cidr(IpAddr),
}

/// One workload's observed connections.
#[derive(Debug, Default)]
struct Observed {
    ingress: BTreeMap<RulePeer, BTreeSet<(u16, String)>>,
    egress: BTreeMap<RulePeer, BTreeSet<(u16, String)>>,
    connections: usize,
}

/// A suggested policy.
#[derive(Clone, Debug)]
pub struct Suggestion {
    pub namespace: String,
    pub workload: String,
    pub name: String,
    pub yaml: String,
    pub connections: usize,
}

/// The labels every pod of a workload has, minus the unstable ones.
fn stable_labels(world: &verdict_sim::engine::World, pods: &[PodName]) -> BTreeMap<String, String> {
    let mut common: Option<BTreeMap<String, String>> = None;
    for p in pods {
        let Some(pod) = world.cluster.pods.get(p) else {
            continue;
        };
        let l: BTreeMap<String, String> = pod
            .labels
            .iter()
            .filter(|(k, _)| !UNSTABLE_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        common = Some(match common {
            None => l,
            Some(c) => c.into_iter().filter(|(k, v)| l.get(k) == Some(v)).collect(),
        });
    }
    common.unwrap_or_default()
}

/// Whether a row is the opening of a forwarded connection, and its (client, server, port).
fn connection(r: &Row) -> Option<(u32, u32, u16)> {
    if !r.recorded_allowed() {
        return None;
    }
    if r.is_reply == Some(true) {
        return if r.opened_before {
            Some((r.dst, r.src, r.sport))
        } else {
            None
        };
    }
    let opening = match r.protocol {
        Protocol::Tcp => r.tcp_flags & 0x02 != 0 && r.tcp_flags & 0x10 == 0,
        Protocol::Icmp | Protocol::Icmpv6 => matches!(r.dport, 8 | 128),
        _ => true,
    };
    (opening || r.opened_before).then_some((r.src, r.dst, r.dport))
}

/// DNS names per address, from L7 DNS answers and `destination_names`.
fn dns_names(path: &std::path::Path) -> Result<BTreeMap<IpAddr, BTreeSet<String>>> {
    let mut m: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for e in replay::read_flows(path)? {
        let Entry::Flow(r) = e? else { continue };
        let f = &r.flow;
        if let Some(dns) = f.l7.as_ref().and_then(|l| l.dns.as_ref()) {
            let name = dns.query.trim_end_matches('.').to_string();
            for ip in &dns.ips {
                if let (Ok(ip), false) = (ip.parse::<IpAddr>(), name.is_empty()) {
                    m.entry(ip).or_default().insert(name.clone());
                }
            }
        }
        if let Some(ip) = f.IP.as_ref().and_then(|i| i.destination) {
            for n in &f.destination_names {
                m.entry(ip)
                    .or_default()
                    .insert(n.trim_end_matches('.').to_string());
            }
        }
    }
    Ok(m)
}

fn yaml_str(s: &str) -> String {
    // Quote what YAML 1.1 would read as something else, and anything unusual.
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
        && !s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == ':')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~"
        );
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn labels_yaml(out: &mut String, indent: &str, labels: &BTreeMap<String, String>) {
    let _ = writeln!(out, "{indent}matchLabels:");
    for (k, v) in labels {
        let _ = writeln!(out, "{indent}  {}: {}", yaml_str(k), yaml_str(v));
    }
}

fn ports_yaml(out: &mut String, indent: &str, ports: &BTreeSet<(u16, String)>) {
    let _ = writeln!(out, "{indent}toPorts:");
    let _ = writeln!(out, "{indent}- ports:");
    for (p, proto) in ports {
        let _ = writeln!(out, "{indent}  - port: \"{p}\"");
        let _ = writeln!(out, "{indent}    protocol: {proto}");
    }
}

fn section_yaml(
    out: &mut String,
    section: &str,
    namespace: &str,
    rules: &BTreeMap<RulePeer, BTreeSet<(u16, String)>>,
    names: &BTreeMap<IpAddr, BTreeSet<String>>,
) {
    let _ = writeln!(out, "  {section}:");
    if rules.is_empty() {
        let _ = writeln!(
            out,
            "  # no {section} connection observed: default deny, nothing allowed"
        );
        let _ = writeln!(out, "  - {{}}");
        return;
    }
    let (eps, ents, cidr) = if section == "ingress" {
        ("fromEndpoints", "fromEntities", "fromCIDR")
    } else {
        ("toEndpoints", "toEntities", "toCIDR")
    };
    for (peer, ports) in rules {
        match peer {
            RulePeer::Workload(ns, labels) => {
                let mut l = labels.clone();
                if ns != namespace {
                    l.insert("k8s:io.kubernetes.pod.namespace".into(), ns.clone());
                }
                let _ = writeln!(out, "  - {eps}:");
                let mut s = String::new();
                labels_yaml(&mut s, "    ", &l);
                // The first line of the selector joins the list item.
                let s = s.replacen("    matchLabels:", "    - matchLabels:", 1);
                let s = s
                    .lines()
                    .enumerate()
                    .map(|(i, line)| {
                        if i == 0 {
                            line.to_string()
                        } else {
                            format!("  {line}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let _ = writeln!(out, "{s}");
            }
            RulePeer::Entity(e) => {
                let _ = writeln!(out, "  - {ents}: [{e}]");
            }
            RulePeer::Cidr(ip) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                if let Some(ns) = names.get(ip) {
                    let list: Vec<&str> = ns.iter().map(String::as_str).collect();
                    let _ = writeln!(
                        out,
                        "  # {ip} is {} (DNS answers in the flows). Once verdict models toFQDNs,",
                        list.join(", ")
                    );
                    let _ = writeln!(
                        out,
                        "  # this rule would be `toFQDNs: [{}]` with a DNS rule on the kube-dns egress.",
                        list.iter().map(|n| format!("{{matchName: {n}}}")).collect::<Vec<_>>().join(", ")
                    );
                }
                let _ = writeln!(out, "  - {cidr}: [{ip}/{bits}]");
            }
        }
        ports_yaml(out, "    ", ports);
    }
}

/// The suggested policies, from a replay report at the scenario's state.
fn suggestions(
    prep: &Prepared,
    rep: &Report,
    namespaces: &BTreeSet<String>,
    names: &BTreeMap<IpAddr, BTreeSet<String>>,
    source: &str,
) -> (Vec<Suggestion>, usize) {
    let world = &prep.world;
    // Workloads of the scenario's pods.
    let mut workloads: BTreeMap<(String, String), Vec<PodName>> = BTreeMap::new();
    for pn in world.cluster.pods.keys() {
        let w = pod_workload(&world.cluster, pn, None);
        let short = w.split_once('/').map_or(w.clone(), |(_, n)| n.to_string());
        workloads
            .entry((pn.namespace.clone(), short))
            .or_default()
            .push(pn.clone());
    }
    let workload_of = |pn: &PodName| -> (String, String) {
        let w = pod_workload(&world.cluster, pn, None);
        let short = w.split_once('/').map_or(w.clone(), |(_, n)| n.to_string());
        (pn.namespace.clone(), short)
    };
    let peer_of = |p: &Peer, other_node: Option<&str>, ingress: bool| -> RulePeer {
        match p {
            Peer::Pod(pn) => {
                let key = workload_of(pn);
                RulePeer::Workload(key.0.clone(), stable_labels(world, &workloads[&key]))
            }
            Peer::Host(n) => {
                if other_node == Some(n.as_str()) {
                    RulePeer::Entity("host")
                } else {
                    RulePeer::Entity("remote-node")
                }
            }
            Peer::World(ip) => {
                if ingress {
                    RulePeer::Entity("world")
                } else {
                    RulePeer::Cidr(*ip)
                }
            }
        }
    };
    let mut observed: BTreeMap<(String, String), Observed> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in &rep.rows {
        let Some((c, s, port)) = connection(r) else {
            continue;
        };
        let (cp, sp) = (&rep.peer(c).peer, &rep.peer(s).peer);
        let proto = r.protocol.to_string();
        let port = if r.protocol.is_icmp() { 0 } else { port };
        let first = seen.insert((c, s, port, proto.clone()));
        let c_node = world.cluster.node_of(cp).map(str::to_string);
        let s_node = world.cluster.node_of(sp).map(str::to_string);
        if let Peer::Pod(spn) = sp {
            let key = workload_of(spn);
            if namespaces.contains(&key.0) {
                let o = observed.entry(key).or_default();
                o.ingress
                    .entry(peer_of(cp, s_node.as_deref(), true))
                    .or_default()
                    .insert((port, proto.clone()));
                if first {
                    o.connections += 1;
                }
            }
        }
        if let Peer::Pod(cpn) = cp {
            let key = workload_of(cpn);
            if namespaces.contains(&key.0) {
                let o = observed.entry(key).or_default();
                o.egress
                    .entry(peer_of(sp, c_node.as_deref(), false))
                    .or_default()
                    .insert((port, proto.clone()));
                if first {
                    o.connections += 1;
                }
            }
        }
    }
    let mut out = Vec::new();
    let total = seen
        .iter()
        .filter(|(c, s, _, _)| {
            [c, s].iter().any(|i| match &rep.peer(**i).peer {
                Peer::Pod(pn) => namespaces.contains(&pn.namespace),
                _ => false,
            })
        })
        .count();
    for ((ns, w), pods) in &workloads {
        if !namespaces.contains(ns) {
            continue;
        }
        let empty = Observed::default();
        let o = observed.get(&(ns.clone(), w.clone())).unwrap_or(&empty);
        let labels = stable_labels(world, pods);
        let name = format!("suggested-{w}");
        let mut y = String::new();
        let _ = writeln!(
            y,
            "# Suggested by verdict suggest from {source}: the least privilege that allows the {} connections the capture shows {ns}/{w} ({} pod{}) making or taking.",
            o.connections,
            pods.len(),
            if pods.len() == 1 { "" } else { "s" }
        );
        let _ = writeln!(y, "apiVersion: cilium.io/v2");
        let _ = writeln!(y, "kind: CiliumNetworkPolicy");
        let _ = writeln!(y, "metadata:");
        let _ = writeln!(y, "  name: {}", yaml_str(&name));
        let _ = writeln!(y, "  namespace: {}", yaml_str(ns));
        let _ = writeln!(y, "spec:");
        let _ = writeln!(y, "  endpointSelector:");
        if labels.is_empty() {
            let _ = writeln!(
                y,
                "    # the workload's pods share no stable label: this selects every pod of {ns}"
            );
            let _ = writeln!(y, "    {{}}");
        } else {
            labels_yaml(&mut y, "    ", &labels);
        }
        section_yaml(&mut y, "ingress", ns, &o.ingress, names);
        section_yaml(&mut y, "egress", ns, &o.egress, names);
        out.push(Suggestion {
            namespace: ns.clone(),
            workload: w.clone(),
            name,
            yaml: y,
            connections: o.connections,
        });
    }
    (out, total)
}

/// The proof and the probe matrix.
#[derive(Debug, Default)]
pub struct Proof {
    /// Flows the capture shows forwarded, replayed with the suggestion in place.
    pub forwarded: usize,
    /// Of those, the ones the suggestion would drop, with a line each (must be empty).
    pub newly_dropped: Vec<String>,
    /// Unobserved pod-to-pod traffic the suggestion newly denies: (client workload, server
    /// workload, port/proto) -> probes.
    pub newly_denied: BTreeMap<(String, String, String), usize>,
    /// Probes of the matrix.
    pub probes: usize,
    /// Policies the suggestion replaced.
    pub replaced: Vec<String>,
    /// Distinct observed connections (client, server, port, protocol).
    pub connections: usize,
}

/// Runs `verdict suggest`: 0 when the proof holds, 1 when a forwarded flow would be dropped,
/// 2 on bad input.
pub fn run(a: &SuggestArgs) -> Result<u8> {
    let names = replay::backends_of(a.backend.as_deref())?;
    let (sugg, proof, report) = suggest(a, &names)?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "suggested {} policies for {} from {} ({} observed connections); proof on {}: {} forwarded flows replayed with the suggestion in place of {}: {} still allowed, {} newly dropped",
        sugg.len(),
        sugg.iter().map(|s| format!("{}/{}", s.namespace, s.workload)).collect::<Vec<_>>().join(", "),
        a.flows.display(),
        proof.connections,
        names.join(","),
        proof.forwarded,
        if proof.replaced.is_empty() { "no policy".to_string() } else { proof.replaced.join(", ") },
        proof.forwarded - proof.newly_dropped.len(),
        proof.newly_dropped.len()
    );
    for l in &proof.newly_dropped {
        let _ = writeln!(text, "  NEWLY DROPPED: {l}");
    }
    let denied: usize = proof.newly_denied.values().sum();
    let _ = writeln!(
        text,
        "unobserved traffic the suggestion newly denies (pod-to-pod probes on the pods' container ports, {} probes, oracle): {denied}",
        proof.probes
    );
    for ((c, s, p), n) in &proof.newly_denied {
        let _ = writeln!(
            text,
            "  {c} -> {s} {p}: {n} probe{}",
            if *n == 1 { "" } else { "s" }
        );
    }
    let _ = write!(text, "{report}");
    match &a.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for s in &sugg {
                let p = dir.join(format!("{}-{}.yaml", s.namespace, s.workload));
                std::fs::write(&p, &s.yaml).with_context(|| format!("writing {}", p.display()))?;
                let _ = writeln!(text, "wrote {}", p.display());
            }
            print!("{text}");
        }
        None => {
            let docs: Vec<&str> = sugg.iter().map(|s| s.yaml.as_str()).collect();
            print!("{}", docs.join("---\n"));
            eprint!("{text}");
        }
    }
    Ok(if proof.newly_dropped.is_empty() { 0 } else { 1 })
}

/// The suggestion, its proof, and notes.
pub fn suggest(a: &SuggestArgs, names: &[String]) -> Result<(Vec<Suggestion>, Proof, String)> {
    let mut before = replay::prepare(
        &a.scenario,
        a.after_step,
        Vec::new(),
        names,
        &diff::contender,
    )?;
    let rep = replay::replay_file(&a.flows, &mut before, true)?;
    let dns = dns_names(&a.flows)?;
    let mut namespaces: BTreeSet<String> = a.namespace.iter().cloned().collect();
    for n in &namespaces {
        if !before.world.cluster.namespaces.contains_key(n) {
            bail!("--namespace {n}: the scenario has no such namespace");
        }
    }
    if namespaces.is_empty() {
        for p in &rep.peers {
            if let Peer::Pod(pn) = &p.peer {
                namespaces.insert(pn.namespace.clone());
            }
        }
    }
    let (sugg, connections) = suggestions(
        &before,
        &rep,
        &namespaces,
        &dns,
        &a.flows.display().to_string(),
    );
    // The suggestion in place of the scenario's policies of those namespaces.
    let dir = std::env::temp_dir().join(format!(
        "verdict-suggest-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut steps = Vec::new();
    let mut replaced = Vec::new();
    for (r, _) in before.world.repo.policies() {
        if r.namespace.as_ref().is_some_and(|n| namespaces.contains(n)) {
            replaced.push(r.to_string());
            steps.push(Step::Delete(DeleteDecl {
                kind: r.kind.to_string(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            }));
        }
    }
    for s in &sugg {
        let p = dir.join(format!("{}-{}.yaml", s.namespace, s.workload));
        std::fs::write(&p, &s.yaml)?;
        steps.push(Step::Apply(PolicySource::File(p.display().to_string())));
    }
    let after = replay::prepare(&a.scenario, a.after_step, steps, names, &diff::contender);
    let _ = std::fs::remove_dir_all(&dir);
    let mut after = after.context("replaying with the suggested policies")?;
    let rep_after = replay::replay_file(&a.flows, &mut after, true)?;
    let mut proof = Proof {
        connections,
        replaced,
        ..Default::default()
    };
    // Rows of both replays are the same flows in the same order (the change leaves the
    // cluster, and so what resolves, alone).
    for (b, af) in rep.rows.iter().zip(&rep_after.rows) {
        if !b.recorded_allowed() || b.scope.is_none() {
            continue;
        }
        proof.forwarded += 1;
        let bad: Vec<String> = names
            .iter()
            .zip(&af.results)
            .filter(|(_, o)| match o {
                Ok(o) => {
                    replay::in_scope(o, af.scope.unwrap_or(replay::Scope::Path))
                        != replay::Sim::Allowed
                }
                Err(_) => true,
            })
            .map(|(n, o)| format!("{n}: {}", diff::outcome_cell(o)))
            .collect();
        if !bad.is_empty() {
            proof.newly_dropped.push(format!(
                "line {}: {} -> {} {}/{} ({}): {}",
                af.line,
                rep_after.peer(af.src).peer,
                rep_after.peer(af.dst).peer,
                af.dport,
                af.protocol,
                af.observed,
                bad.join("; ")
            ));
        }
    }
    // The probe matrix between the namespaces' pods.
    let (wb, wa) = (&before.world, &after.world);
    for (cn, _) in wb
        .cluster
        .pods
        .iter()
        .filter(|(n, _)| namespaces.contains(&n.namespace))
    {
        for (sn, sp) in wb
            .cluster
            .pods
            .iter()
            .filter(|(n, _)| namespaces.contains(&n.namespace))
        {
            if cn == sn {
                continue;
            }
            for port in &sp.ports {
                let flow = Flow {
                    src: Peer::Pod(cn.clone()),
                    dst: Peer::Pod(sn.clone()),
                    protocol: port.protocol,
                    dport: port.port,
                };
                proof.probes += 1;
                let b = oracle::decide(&wb.cluster, &wb.repo, &flow)
                    .outcome()
                    .allowed;
                let af = oracle::decide(&wa.cluster, &wa.repo, &flow)
                    .outcome()
                    .allowed;
                if b && !af {
                    *proof
                        .newly_denied
                        .entry((
                            pod_workload(&wb.cluster, cn, None),
                            pod_workload(&wb.cluster, sn, None),
                            format!("{}/{}", port.port, port.protocol),
                        ))
                        .or_default() += 1;
                }
            }
        }
    }
    Ok((sugg, proof, String::new()))
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
