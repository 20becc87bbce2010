//! Traffic replay: `verdict replay --flows FILE --scenario S` replays recorded Hubble flows
//! against a scenario's cluster on every chosen backend and compares each flow's recorded
//! verdict with the simulated one. `verdict impact` (src/impact.rs) and `verdict suggest`
//! (src/suggest.rs) are built on it.
//!
//! How a flow is replayed:
//!
//! - The cluster and policies are the scenario's after its last step (or `--after-step N`),
//!   changes only, as `verdict diff --pcap` replays them (no probe leaves conntrack state).
//! - Source and destination are resolved by pod name and namespace when the flow names them
//!   (the scenario's address of that pod is then used), else by IP as the ipcache resolves it
//!   (a pod's or a node's address; any other address is the world). A flow naming a pod the
//!   scenario lacks, or an address with a cluster identity that no scenario pod has, is
//!   unresolvable: counted and listed, never guessed.
//! - Each L3/L4 flow is one packet (ports, protocol, TCP flags) through each backend's
//!   conntrack, so replies and later packets follow it as Cilium's does (`bpf/lib/conntrack.h`:
//!   a reply of an entry skips policy, other packets are checked). A reply or a non-opening
//!   packet of a connection the capture did not see open (it was opened before the capture
//!   began) is preceded by a synthetic opening packet of that connection, so it passes if and
//!   only if the policy would have let the connection open.
//! - What a recorded verdict asserts depends on where Hubble observed it: a drop and a
//!   `to-endpoint` trace assert the whole path; a `policy-verdict` event asserts its own
//!   direction; `to-stack`/`to-overlay`/`to-host`/... from a pod assert that the sender's egress
//!   passed; `from-*` traces are taken before policy and assert nothing (replayed, not
//!   compared); drops for reasons other than policy are not compared.
//! - L7 records (`Type: L7`): an HTTP or DNS request is replayed as a new connection carrying
//!   that request through the proxies the backend's datapath hands it to (as an `http:`/`dns:`
//!   probe is), compared with the proxy's recorded verdict (FORWARDED passed, DROPPED refused)
//!   up to the proxy that logged it: an egress proxy's record asserts the sender's egress, an
//!   ingress proxy's the whole path. Responses and other L7 records are counted as "not
//!   replayed: L7".
//! - The deciding rule is the oracle's (the rules straight from the manifests), or
//!   "conntrack" for a reply that passed without a policy lookup.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use verdict_sim::cluster::{Cluster, Peer, PodName, Protocol};
use verdict_sim::conntrack::{ConnPacket, Conntrack, SideVerdict, TCP_ACK, TCP_SYN};
use verdict_sim::engine::{self, Backend, World};
use verdict_sim::oracle::{self, Decision, DirectionVerdict, Flow};
use verdict_sim::scenario::{self, Step};
use verdict_sim::verdict::{Direction, DropReason, Outcome};

use crate::diff::{self, Contender, ContenderFactory, Tap};
use crate::flowlog::{self, Entry, Recorded};

/// The cluster at one instant, with every backend synced to it.
pub struct Prepared {
    pub world: World,
    pub backends: Vec<(String, Rc<RefCell<Contender>>)>,
    pub scenario: String,
    pub after_step: usize,
}

/// Builds the scenario's state after `after_step` steps (changes only), then `extra` steps
/// (the change `verdict impact` judges), on `names`.
pub fn prepare(
    scenario_path: &Path,
    after_step: Option<usize>,
    extra: Vec<Step>,
    names: &[String],
    make: ContenderFactory<'_>,
) -> Result<Prepared> {
    let mut loaded = scenario::load(scenario_path).map_err(anyhow::Error::msg)?;
    let steps = loaded.scenario.steps.len();
    let upto = after_step.unwrap_or(steps);
    if upto > steps {
        bail!(
            "{}: --after-step {upto}: the scenario has {steps} steps",
            scenario_path.display()
        );
    }
    loaded.scenario.steps.truncate(upto);
    loaded.scenario.steps.retain(|s| {
        !matches!(
            s,
            Step::Expect(_) | Step::ExpectMatrix(_) | Step::Connect(_) | Step::Send(_)
        )
    });
    let had_steps = !loaded.scenario.steps.is_empty() || !extra.is_empty();
    loaded.scenario.steps.extend(extra);
    let world_cell: Rc<RefCell<Option<World>>> = Rc::default();
    let handles: RefCell<Vec<(String, Rc<RefCell<Contender>>)>> = RefCell::default();
    let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
        let c = Rc::new(RefCell::new(make(name)?));
        handles.borrow_mut().push((name.to_string(), c.clone()));
        let first = handles.borrow().len() == 1;
        Ok(Box::new(Tap {
            name: name.to_string(),
            inner: c,
            captures: None,
            world: first.then(|| world_cell.clone()),
        }))
    };
    let r = engine::run(&loaded, names, &factory);
    if let Some(e) = r.error {
        bail!("{e}");
    }
    let world = match world_cell.borrow_mut().take() {
        Some(w) if had_steps => w,
        _ => engine::build_world(&loaded).map_err(anyhow::Error::msg)?,
    };
    let backends = handles.into_inner();
    for (_, c) in &backends {
        if let Some(dp) = c.borrow_mut().datapath() {
            dp.clear_flows();
        }
    }
    Ok(Prepared {
        world,
        backends,
        scenario: loaded.scenario.name.clone(),
        after_step: upto,
    })
}

/// What a recorded verdict asserts, from where Hubble observed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole path: a drop, or delivery to the destination pod (`to-endpoint`).
    Path,
    /// The sender's egress: a `policy-verdict` EGRESS, or a trace of the packet leaving the
    /// sender's node.
    Egress,
    /// The receiver's ingress: a `policy-verdict` INGRESS.
    Ingress,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Path => "path",
            Scope::Egress => "egress",
            Scope::Ingress => "ingress",
        }
    }
}

/// A simulated verdict within a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sim {
    Allowed,
    Denied,
    /// Ingress scope: the packet was dropped at egress and never reached ingress.
    NotReached,
}

/// An outcome seen within a scope.
pub fn in_scope(o: &Outcome, scope: Scope) -> Sim {
    match scope {
        Scope::Path => {
            if o.allowed {
                Sim::Allowed
            } else {
                Sim::Denied
            }
        }
        Scope::Egress => {
            if o.allowed || o.direction == Some(Direction::Ingress) {
                Sim::Allowed
            } else {
                Sim::Denied
            }
        }
        Scope::Ingress => {
            if o.allowed {
                Sim::Allowed
            } else if o.direction == Some(Direction::Egress) {
                Sim::NotReached
            } else {
                Sim::Denied
            }
        }
    }
}

/// Why a line was not replayed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// An L7 record that is not a replayable request (a response, Kafka, ...).
    L7,
    /// Source or destination could not be resolved against the scenario.
    Unresolvable,
    /// Not an L3/L4 packet verdict replay can decide (SOCK events, no IP or L4 header,
    /// protocols the model does not have, other response kinds).
    NotL34,
}

impl Skip {
    pub fn as_str(&self) -> &'static str {
        match self {
            Skip::L7 => "L7",
            Skip::Unresolvable => "unresolvable",
            Skip::NotL34 => "not an L3/L4 flow",
        }
    }
}

/// A line that was not replayed.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub line: usize,
    pub kind: Skip,
    pub why: String,
}

/// One replayed flow.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: usize,
    pub time_ns: u64,
    pub src: u32,
    pub dst: u32,
    pub protocol: Protocol,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub is_reply: Option<bool>,
    /// Where Hubble observed it (`to-endpoint`, `policy-verdict EGRESS`, `drop`, ...).
    pub observed: &'static str,
    /// The recorded verdict (flow.proto name) and drop reason.
    pub recorded: &'static str,
    pub recorded_reason: Option<u32>,
    /// What the recorded verdict asserts; `None` when it asserts nothing about policy.
    pub scope: Option<Scope>,
    /// Why it is not compared, when `scope` is `None`.
    pub not_compared: Option<&'static str>,
    /// A synthetic opening packet was replayed first (the connection predates the capture).
    pub opened_before: bool,
    pub results: Vec<Result<Outcome, String>>,
    /// Index into [`Report::rules`].
    pub rule: u32,
}

impl Row {
    /// Whether the recorded verdict allowed the packet (within its scope).
    pub fn recorded_allowed(&self) -> bool {
        matches!(self.recorded, "FORWARDED" | "REDIRECTED")
    }
    /// Per backend: agrees with the record (`None` when not compared or on an error).
    pub fn agrees(&self, backend: usize) -> Option<bool> {
        let scope = self.scope?;
        let o = self.results.get(backend)?.as_ref().ok()?;
        let sim = in_scope(o, scope);
        Some((sim == Sim::Allowed) == self.recorded_allowed() && sim != Sim::NotReached)
    }
    /// The backends disagree among themselves (or one failed).
    pub fn backends_disagree(&self) -> bool {
        let first = self.results.first();
        self.results.iter().any(|r| r.is_err())
            || self.results.iter().any(|r| match (r, first) {
                (Ok(a), Some(Ok(b))) => a.allowed != b.allowed || a.reason != b.reason,
                _ => false,
            })
    }
    /// Compared and some backend disagrees with the record (or failed).
    pub fn disagrees(&self) -> bool {
        self.scope.is_some() && (0..self.results.len()).any(|i| self.agrees(i) != Some(true))
    }
}

/// A replay's result.
#[derive(Debug, Default)]
pub struct Report {
    pub flows_file: PathBuf,
    pub scenario: String,
    pub after_step: usize,
    pub backends: Vec<String>,
    /// Lines read (flows and other responses).
    pub lines: usize,
    pub rows: Vec<Row>,
    pub skipped: Vec<Skipped>,
    /// Resolved endpoints, by index.
    pub peers: Vec<PeerInfo>,
    /// Deciding-rule texts, by index.
    pub rules: Vec<String>,
    /// Backends disagreeing among themselves on some flow.
    pub backend_disagreements: usize,
    /// Counts over every replayed flow (`rows` may keep only the disagreeing ones).
    pub counts: Counts,
}

/// Counts over the replayed flows.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub replayed: usize,
    pub compared: usize,
    pub agreements: usize,
    pub disagreements: usize,
    /// Not compared, by why.
    pub not_compared: BTreeMap<&'static str, usize>,
    /// Connections the capture did not see open.
    pub opened_before: usize,
}

impl Counts {
    fn add(&mut self, r: &Row) {
        self.replayed += 1;
        if r.opened_before {
            self.opened_before += 1;
        }
        match r.not_compared {
            Some(why) => *self.not_compared.entry(why).or_default() += 1,
            None => {
                self.compared += 1;
                if r.disagrees() {
                    self.disagreements += 1;
                } else {
                    self.agreements += 1;
                }
            }
        }
    }
}

/// A resolved endpoint.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub peer: Peer,
    /// The workload it belongs to (`ns/name` of its controller, `host`, `world`, ...).
    pub workload: String,
}

impl Report {
    pub fn compared(&self) -> usize {
        self.counts.compared
    }
    pub fn disagreements(&self) -> usize {
        self.counts.disagreements
    }
    pub fn skipped_count(&self, k: Skip) -> usize {
        self.skipped.iter().filter(|s| s.kind == k).count()
    }
    pub fn clean(&self) -> bool {
        self.disagreements() == 0 && self.backend_disagreements == 0
    }
    /// The disagreeing rows grouped by (source workload, destination workload, port,
    /// protocol), in that order.
    pub fn groups(&self) -> BTreeMap<GroupKey, Vec<&Row>> {
        let mut m: BTreeMap<GroupKey, Vec<&Row>> = BTreeMap::new();
        for r in self.rows.iter().filter(|r| r.disagrees()) {
            m.entry(self.group_key(r)).or_default().push(r);
        }
        m
    }
    /// The connection's workload pair and server port, whichever way the packet went.
    pub fn group_key(&self, r: &Row) -> GroupKey {
        let (c, s, port) = if r.is_reply == Some(true) {
            (r.dst, r.src, r.sport)
        } else {
            (r.src, r.dst, r.dport)
        };
        GroupKey {
            src: self.peers[c as usize].workload.clone(),
            dst: self.peers[s as usize].workload.clone(),
            port,
            protocol: r.protocol.to_string(),
        }
    }
    pub fn peer(&self, i: u32) -> &PeerInfo {
        &self.peers[i as usize]
    }
}

/// (source workload, destination workload, port, protocol).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub src: String,
    pub dst: String,
    pub port: u16,
    pub protocol: String,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} {}/{}",
            self.src, self.dst, self.port, self.protocol
        )
    }
}

/// The workload of a pod: its controller's name from the flow (`workloads`), else the pod
/// name without the suffix its controller gives it (a ReplicaSet's `-<pod-template-hash>-xxxxx`,
/// a StatefulSet's `-<ordinal>`), else the pod name.
pub fn pod_workload(cluster: &Cluster, pn: &PodName, from_flow: Option<&str>) -> String {
    if let Some(w) = from_flow.filter(|w| !w.is_empty()) {
        return format!("{}/{w}", pn.namespace);
    }
    let name = &pn.name;
    if let Some(p) = cluster.pods.get(pn) {
        let labels = &p.labels;
        if let Some(h) = labels.get("pod-template-hash") {
            if let Some(i) = name.find(&format!("-{h}-")) {
                return format!("{}/{}", pn.namespace, &name[..i]);
            }
            if let Some(base) = name.strip_suffix(&format!("-{h}")) {
                return format!("{}/{base}", pn.namespace);
            }
        }
        if labels.contains_key("controller-revision-hash") {
            if let Some((base, ord)) = name.rsplit_once('-') {
                if !ord.is_empty() && ord.bytes().all(|b| b.is_ascii_digit()) {
                    return format!("{}/{base}", pn.namespace);
                }
            }
        }
    }
    pn.to_string()
}

/// Resolves flow endpoints against the world, caching answers.
pub struct Resolver {
    cluster: Cluster,
    by_ip: HashMap<IpAddr, Peer>,
    cache: HashMap<(String, String, Option<IpAddr>), Result<u32, String>>,
    pub peers: Vec<PeerInfo>,
    index: HashMap<String, u32>,
}

/// Reserved identities (`pkg/identity` `reservedIdentityNames`) that are nodes.
fn node_identity(id: u32) -> Option<&'static str> {
    match id {
        1 => Some("host"),
        6 => Some("remote-node"),
        7 => Some("kube-apiserver"),
        4 => Some("health"),
        8 => Some("ingress"),
        _ => None,
    }
}

impl Resolver {
    pub fn new(world: &World) -> Self {
        let mut by_ip = HashMap::new();
        for n in &world.cluster.nodes {
            by_ip.insert(n.ip, Peer::Host(n.name.clone()));
        }
        for p in world.cluster.pods.values() {
            by_ip.insert(p.ip, Peer::Pod(p.name.clone()));
        }
        Resolver {
            cluster: world.cluster.clone(),
            by_ip,
            cache: HashMap::new(),
            peers: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn intern(&mut self, peer: Peer, workload: String) -> u32 {
        let key = format!("{peer}");
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        let i = self.peers.len() as u32;
        self.peers.push(PeerInfo { peer, workload });
        self.index.insert(key, i);
        i
    }

    /// One end of a flow: `side` names it in errors (`source`, `destination`).
    pub fn resolve(
        &mut self,
        side: &str,
        ep: Option<&flowlog::Endpoint>,
        ip: Option<IpAddr>,
        names: &[String],
    ) -> Result<u32, String> {
        let (ns, pod) = ep
            .map(|e| (e.namespace.clone(), e.pod_name.clone()))
            .unwrap_or_default();
        let key = (
            ns.clone(),
            pod.clone(),
            if pod.is_empty() { ip } else { None },
        );
        if let Some(r) = self.cache.get(&key) {
            return r.clone();
        }
        let r = self.resolve_uncached(side, ep, ip, &ns, &pod, names);
        self.cache.insert(key, r.clone());
        r
    }

    fn resolve_uncached(
        &mut self,
        side: &str,
        ep: Option<&flowlog::Endpoint>,
        ip: Option<IpAddr>,
        ns: &str,
        pod: &str,
        names: &[String],
    ) -> Result<u32, String> {
        if !pod.is_empty() {
            let full = format!("{ns}/{pod}");
            let pn = PodName::parse(&full)
                .ok_or_else(|| format!("{side} pod {full:?} is not a namespace/name"))?;
            if !self.cluster.pods.contains_key(&pn) {
                return Err(format!("{side} pod {full} is not in the scenario"));
            }
            let wl = ep
                .and_then(|e| e.workloads.first())
                .map(|w| w.name.as_str());
            let workload = pod_workload(&self.cluster, &pn, wl);
            return Ok(self.intern(Peer::Pod(pn), workload));
        }
        let Some(ip) = ip else {
            return Err(format!("{side}: no pod name and no IP address"));
        };
        if let Some(p) = self.by_ip.get(&ip).cloned() {
            let workload = match &p {
                Peer::Pod(pn) => pod_workload(&self.cluster, pn, None),
                Peer::Host(_) => "host".to_string(),
                Peer::World(_) => unreachable_world(),
            };
            return Ok(self.intern(p, workload));
        }
        let identity = ep.map_or(0, |e| e.identity);
        if let Some(name) = node_identity(identity) {
            return Err(format!(
                "{side} {ip} has the {name} identity but is no node of the scenario"
            ));
        }
        if (256..1 << 24).contains(&identity) {
            return Err(format!(
                "{side} {ip} has a cluster identity ({identity}) but no pod of the scenario has this address"
            ));
        }
        let workload = match names.first() {
            Some(n) => format!("world ({n})"),
            None => format!("world ({ip})"),
        };
        Ok(self.intern(Peer::World(ip), workload))
    }
}

// The by-IP index holds only pods and nodes.
fn unreachable_world() -> String {
    "world".to_string()
}

/// Where a flow was observed and what its verdict asserts.
fn observation(
    f: &flowlog::Flow,
    src_is_pod: bool,
) -> (&'static str, Option<Scope>, Option<&'static str>) {
    let verdict = f
        .verdict
        .name(flowlog::VERDICTS)
        .unwrap_or("VERDICT_UNKNOWN");
    let event = f.event_type.as_ref().map_or(-1, |e| e.event_type);
    let point = f
        .trace_observation_point
        .name(flowlog::OBSERVATION_POINTS)
        .unwrap_or("UNKNOWN_POINT");
    let direction = f.traffic_direction.name(flowlog::DIRECTIONS);
    if !matches!(verdict, "FORWARDED" | "DROPPED" | "REDIRECTED" | "AUDIT") {
        return ("other", None, Some("the verdict is not a policy outcome"));
    }
    // MESSAGE_TYPE_DROP (1), MESSAGE_TYPE_TRACE (4), MESSAGE_TYPE_POLICY_VERDICT (5):
    // pkg/monitor/api/types.go.
    match event {
        5 => match direction {
            Some("EGRESS") => ("policy-verdict EGRESS", Some(Scope::Egress), None),
            Some("INGRESS") => ("policy-verdict INGRESS", Some(Scope::Ingress), None),
            _ => (
                "policy-verdict",
                None,
                Some("a policy verdict without a direction"),
            ),
        },
        4 => match point {
            "TO_ENDPOINT" => ("to-endpoint", Some(Scope::Path), None),
            "TO_STACK" | "TO_OVERLAY" | "TO_HOST" | "TO_NETWORK" | "TO_PROXY" | "TO_CRYPTO"
                if src_is_pod =>
            {
                (trace_name(point), Some(Scope::Egress), None)
            }
            "TO_STACK" | "TO_OVERLAY" | "TO_HOST" | "TO_NETWORK" | "TO_PROXY" | "TO_CRYPTO" => (
                trace_name(point),
                None,
                Some("traced leaving a node it was not sent from by a pod"),
            ),
            _ => (
                trace_name(point),
                None,
                Some("traced before policy (from-*)"),
            ),
        },
        _ if verdict == "DROPPED" => {
            let policy = matches!(f.drop_reason, 133 | 181 | 189)
                || matches!(
                    f.drop_reason_desc.name(&[]),
                    Some("POLICY_DENIED" | "POLICY_DENY" | "AUTH_REQUIRED")
                );
            if policy {
                ("drop", Some(Scope::Path), None)
            } else {
                ("drop", None, Some("dropped for a reason other than policy"))
            }
        }
        _ => (
            "other",
            None,
            Some("not a trace, drop or policy verdict event"),
        ),
    }
}

fn trace_name(point: &str) -> &'static str {
    match point {
        "TO_ENDPOINT" => "to-endpoint",
        "TO_STACK" => "to-stack",
        "TO_OVERLAY" => "to-overlay",
        "TO_HOST" => "to-host",
        "TO_NETWORK" => "to-network",
        "TO_PROXY" => "to-proxy",
        "TO_CRYPTO" => "to-crypto",
        "FROM_ENDPOINT" => "from-endpoint",
        "FROM_PROXY" => "from-proxy",
        "FROM_HOST" => "from-host",
        "FROM_STACK" => "from-stack",
        "FROM_OVERLAY" => "from-overlay",
        "FROM_NETWORK" => "from-network",
        "FROM_CRYPTO" => "from-crypto",
        _ => "trace",
    }
}

fn verdict_name(f: &flowlog::Flow) -> &'static str {
    match f.verdict.name(flowlog::VERDICTS) {
        Some("FORWARDED") => "FORWARDED",
        Some("DROPPED") => "DROPPED",
        Some("REDIRECTED") => "REDIRECTED",
        Some("AUDIT") => "AUDIT",
        Some("ERROR") => "ERROR",
        Some("TRACED") => "TRACED",
        Some("TRANSLATED") => "TRANSLATED",
        _ => "VERDICT_UNKNOWN",
    }
}

/// The deciding rule of an oracle decision, in words.
pub fn rule_text(d: &Decision) -> String {
    let names = |v: &[verdict_sim::policy::RuleOrigin]| {
        v.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (dir, v, selecting) in [
        ("egress", &d.egress, &d.egress_rules),
        ("ingress", &d.ingress, &d.ingress_rules),
    ] {
        if let DirectionVerdict::Denied { reason, by } = v {
            return if by.is_empty() {
                let mut sel: Vec<String> = selecting.iter().map(|r| r.policy.to_string()).collect();
                sel.dedup();
                format!(
                    "{dir} default deny ({}): selected by {}, no rule allows",
                    reason.hubble_name(),
                    sel.join(", ")
                )
            } else {
                format!("{dir} denied ({}) by {}", reason.hubble_name(), names(by))
            };
        }
    }
    let mut parts = Vec::new();
    for (dir, v) in [("egress", &d.egress), ("ingress", &d.ingress)] {
        if let DirectionVerdict::Allowed { by, synthetic, .. } = v {
            match synthetic {
                Some(s) => parts.push(format!("{dir} allowed by {s}")),
                None => parts.push(format!("{dir} allowed by {}", names(by))),
            }
        }
    }
    if parts.is_empty() {
        "no policy selects either end".to_string()
    } else {
        parts.join("; ")
    }
}

/// The rule for a packet that passed as a reply, without a policy lookup.
pub const CONNTRACK_RULE: &str = "conntrack: reply of a tracked connection (no policy lookup)";

fn side_of(v: &DirectionVerdict) -> SideVerdict {
    SideVerdict {
        enforced: v.enforced(),
        allowed: v.allows(),
        reason: match v {
            DirectionVerdict::Denied { reason, .. } => Some(*reason),
            _ => None,
        },
        match_type: None,
        proxy_port: None,
    }
}

/// What feeding one line to a [`Replayer`] gave.
pub enum Fed {
    Row(Row),
    Skipped(Skipped),
}

/// A connection: protocol and both ends (peer index, port), the lower end first.
type ConnKey = (u8, u32, u16, u32, u16);

/// Replays flows one by one on a prepared cluster.
pub struct Replayer<'p> {
    prep: &'p mut Prepared,
    pub names: Vec<String>,
    resolver: Resolver,
    base_clock: u64,
    first_ts: Option<u64>,
    clock: u64,
    ct: Conntrack,
    decisions: HashMap<(u32, u32, u8, u16), (Decision, u32)>,
    rule_index: HashMap<String, u32>,
    pub rules: Vec<String>,
    /// Connections seen: (opener, an allowed packet of the opener created its entry).
    conns: HashMap<ConnKey, (u32, bool)>,
    conntrack_rule: u32,
    pub lines: usize,
    pub backend_disagreements: usize,
}

impl<'p> Replayer<'p> {
    pub fn new(prep: &'p mut Prepared) -> Self {
        let names: Vec<String> = prep.backends.iter().map(|(n, _)| n.clone()).collect();
        let resolver = Resolver::new(&prep.world);
        let base_clock = prep.world.clock_ns;
        let mut r = Replayer {
            prep,
            names,
            resolver,
            base_clock,
            first_ts: None,
            clock: base_clock,
            ct: Conntrack::new(),
            decisions: HashMap::new(),
            rule_index: HashMap::new(),
            rules: Vec::new(),
            conns: HashMap::new(),
            conntrack_rule: 0,
            lines: 0,
            backend_disagreements: 0,
        };
        r.conntrack_rule = r.intern_rule(CONNTRACK_RULE.to_string());
        r
    }

    pub fn world(&self) -> &World {
        &self.prep.world
    }

    pub fn peers(&self) -> &[PeerInfo] {
        &self.resolver.peers
    }

    fn intern_rule(&mut self, s: String) -> u32 {
        if let Some(i) = self.rule_index.get(&s) {
            return *i;
        }
        let i = self.rules.len() as u32;
        self.rules.push(s.clone());
        self.rule_index.insert(s, i);
        i
    }

    /// The oracle's decision for a flow between resolved peers, cached, with its rule text.
    fn decision(
        &mut self,
        key: (u32, u32, u8, u16),
        flow: &Flow,
    ) -> (SideVerdict, SideVerdict, u32) {
        if let Some((d, t)) = self.decisions.get(&key) {
            return (side_of(&d.egress), side_of(&d.ingress), *t);
        }
        let d = oracle::decide(&self.prep.world.cluster, &self.prep.world.repo, flow);
        let t = self.intern_rule(rule_text(&d));
        let out = (side_of(&d.egress), side_of(&d.ingress), t);
        self.decisions.insert(key, (d, t));
        out
    }

    /// Feeds one line.
    pub fn feed(&mut self, entry: Entry) -> Fed {
        self.lines += 1;
        let rec: Box<Recorded> = match entry {
            Entry::Other(line, what) => {
                return Fed::Skipped(Skipped {
                    line,
                    kind: Skip::NotL34,
                    why: format!("a {what} response, not a flow"),
                })
            }
            Entry::Flow(r) => r,
        };
        let f = &rec.flow;
        let skip = |kind: Skip, why: String| {
            Fed::Skipped(Skipped {
                line: rec.line,
                kind,
                why,
            })
        };
        match f.Type.name(flowlog::FLOW_TYPES) {
            Some("SOCK") => return skip(Skip::NotL34, "a socket translation (SOCK) event".into()),
            Some("L7") => return self.feed_l7(&rec),
            _ if f.l7.is_some() => return self.feed_l7(&rec),
            _ => {}
        }
        let Some(ipf) = &f.IP else {
            return skip(Skip::NotL34, "no IP header (field IP)".into());
        };
        let l4 = f.l4.clone().unwrap_or_default();
        let (protocol, sport, dport, flags, icmp_type) = if let Some(p) = &l4.TCP {
            (
                Protocol::Tcp,
                p.source_port,
                p.destination_port,
                p.flags.as_ref().map_or(0, |f| f.bits()),
                0,
            )
        } else if let Some(p) = &l4.UDP {
            (Protocol::Udp, p.source_port, p.destination_port, 0, 0)
        } else if let Some(p) = &l4.SCTP {
            (Protocol::Sctp, p.source_port, p.destination_port, 0, 0)
        } else if let Some(i) = &l4.ICMPv4 {
            (Protocol::Icmp, 0, 0, 0, i.icmp_type)
        } else if let Some(i) = &l4.ICMPv6 {
            (Protocol::Icmpv6, 0, 0, 0, i.icmp_type)
        } else {
            let what = if l4.VRRP.is_some() {
                "a VRRP packet (a protocol the model does not have)"
            } else if l4.IGMP.is_some() {
                "an IGMP packet (a protocol the model does not have)"
            } else {
                "no layer-4 header (field l4)"
            };
            return skip(Skip::NotL34, what.into());
        };
        if protocol.is_icmp() && !matches!(icmp_type, 0 | 8 | 128 | 129) {
            return skip(
                Skip::NotL34,
                format!("ICMP type {icmp_type}: only echo requests and replies are replayed"),
            );
        }
        let src = self
            .resolver
            .resolve("source", f.source.as_ref(), ipf.source, &f.source_names);
        let dst = self.resolver.resolve(
            "destination",
            f.destination.as_ref(),
            ipf.destination,
            &f.destination_names,
        );
        let (src, dst) = match (src, dst) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => return skip(Skip::Unresolvable, e),
        };
        let (sp, dp) = (
            self.resolver.peers[src as usize].peer.clone(),
            self.resolver.peers[dst as usize].peer.clone(),
        );
        if let (Some(a), Some(b)) = (
            self.prep.world.cluster.ip_of(&sp),
            self.prep.world.cluster.ip_of(&dp),
        ) {
            if a.is_ipv4() != b.is_ipv4() {
                return skip(
                    Skip::Unresolvable,
                    format!("{sp} and {dp} have addresses of different families"),
                );
            }
        }
        let (observed, scope, not_compared) = observation(f, matches!(sp, Peer::Pod(_)));
        // The virtual clock follows the capture's timestamps, never backwards.
        let t0 = *self.first_ts.get_or_insert(rec.time_ns);
        self.clock = self.clock.max(
            self.base_clock
                .saturating_add(rec.time_ns.saturating_sub(t0)),
        );
        self.prep.world.clock_ns = self.clock;
        self.prep.world.cluster.auth.set_clock(self.clock);
        let is_reply = f.is_reply;
        let reply = is_reply == Some(true);
        let icmp_reply = protocol.is_icmp() && matches!(icmp_type, 0 | 129);
        let pkt = ConnPacket {
            src: sp.clone(),
            dst: dp.clone(),
            protocol,
            sport,
            dport,
            tcp_flags: flags,
            icmp_type,
        };
        // The connection, whichever way this packet goes; its opener is the sender of its
        // first packet (or, for a reply, the other side).
        let orig_reply = reply || icmp_reply;
        let conn_key = if (src, sport) <= (dst, dport) {
            (protocol.number(), src, sport, dst, dport)
        } else {
            (protocol.number(), dst, dport, src, sport)
        };
        let opening = !orig_reply
            && match protocol {
                Protocol::Tcp => flags & TCP_SYN != 0 && flags & TCP_ACK == 0,
                _ => true,
            };
        let mut opened_before = false;
        if !self.conns.contains_key(&conn_key) {
            let opener = if orig_reply { dst } else { src };
            self.conns.insert(conn_key, (opener, false));
            if !opening {
                // Opened before the capture: open it first, as it was then.
                opened_before = true;
                let (os, od, osp, odp, oi, oj) = if orig_reply {
                    (dp.clone(), sp.clone(), dport, sport, dst, src)
                } else {
                    (sp.clone(), dp.clone(), sport, dport, src, dst)
                };
                let open = ConnPacket {
                    src: os,
                    dst: od,
                    protocol,
                    sport: osp,
                    dport: odp,
                    tcp_flags: TCP_SYN,
                    icmp_type: match icmp_type {
                        0 => 8,
                        129 => 128,
                        t => t,
                    },
                };
                let (eg, ing, _) = self.decision(
                    (oi, oj, protocol.number(), open.policy_port()),
                    &open.flow(),
                );
                let world = &self.prep.world;
                let o =
                    engine::process_with_conntrack(&mut self.ct, world, &open, |dir| match dir {
                        Direction::Egress => eg,
                        Direction::Ingress => ing,
                    });
                if o.is_ok_and(|o| o.allowed) {
                    self.conns.insert(conn_key, (opener, true));
                }
                for (_, h) in &self.prep.backends {
                    let mut c = h.borrow_mut();
                    let _ = c.backend().packet(world, &open);
                    if let Some(dp) = c.datapath() {
                        dp.clear_flows();
                    }
                }
            }
        }
        let (eg, ing, rule) = self.decision(
            (src, dst, protocol.number(), pkt.policy_port()),
            &pkt.flow(),
        );
        let world = &self.prep.world;
        let o = engine::process_with_conntrack(&mut self.ct, world, &pkt, |dir| match dir {
            Direction::Egress => eg,
            Direction::Ingress => ing,
        });
        // As the reference conntrack follows it: a packet of the opener on an entry it
        // created is checked by policy (ESTABLISHED); one of the other side is a reply, which
        // passes without a lookup.
        let (opener, established) = self.conns[&conn_key];
        let from_opener = src == opener;
        let rule = if !from_opener && established && o.as_ref().is_ok_and(|o| o.allowed) {
            self.conntrack_rule
        } else {
            rule
        };
        if from_opener && o.is_ok_and(|o| o.allowed) {
            self.conns.insert(conn_key, (opener, true));
        }
        let mut results = Vec::with_capacity(self.prep.backends.len());
        for (_, h) in &self.prep.backends {
            let mut c = h.borrow_mut();
            let r = c.backend().packet(world, &pkt);
            if let Some(dp) = c.datapath() {
                dp.clear_flows();
            }
            results.push(r);
        }
        let row = Row {
            line: rec.line,
            time_ns: rec.time_ns,
            src,
            dst,
            protocol,
            sport: if protocol.is_icmp() { 0 } else { sport },
            dport: if protocol.is_icmp() {
                icmp_type as u16
            } else {
                dport
            },
            tcp_flags: flags,
            is_reply,
            observed,
            recorded: verdict_name(f),
            recorded_reason: (f.drop_reason != 0).then_some(f.drop_reason),
            scope,
            not_compared,
            opened_before,
            results,
            rule,
        };
        if row.backends_disagree() {
            self.backend_disagreements += 1;
        }
        Fed::Row(row)
    }

    /// An L7 record: an HTTP or DNS request is replayed as a new connection carrying that
    /// request (`engine::probe_through_proxies`, what an `http:`/`dns:` probe does), its
    /// recorded verdict the proxy's (FORWARDED: passed, DROPPED: refused); it asserts the path
    /// up to the proxy that logged it (an egress proxy's record: the sender's egress side; an
    /// ingress proxy's: the whole path). Responses, Kafka and other records are counted as not
    /// replayed (a response's request is the replayed line).
    fn feed_l7(&mut self, rec: &Recorded) -> Fed {
        let f = &rec.flow;
        let skip = |why: String| {
            Fed::Skipped(Skipped {
                line: rec.line,
                kind: Skip::L7,
                why,
            })
        };
        let Some(l7) = f.l7.as_ref() else {
            return skip(l7_summary(f));
        };
        if l7.l7_type.name(flowlog::L7_TYPES) != Some("REQUEST") {
            return skip(l7_summary(f));
        }
        let request = if let Some(h) = &l7.http {
            // Envoy's access log: http://<authority><path> (pkg/envoy ParseURL).
            let rest = h.url.split_once("://").map_or(h.url.as_str(), |(_, r)| r);
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            verdict_sim::proxy::L7Request::Http(verdict_sim::proxy::HttpRequest {
                method: h.method.clone(),
                path: path.to_string(),
                // `verdict run` percent-encodes the `/` of a default `ns/pod` Host.
                host: host.replace("%2F", "/"),
                headers: h
                    .headers
                    .iter()
                    .map(|x| (x.key.clone(), x.value.clone()))
                    .collect(),
            })
        } else if let Some(d) = &l7.dns {
            let q = d.query.trim_end_matches('.');
            if q.is_empty() {
                return skip("a DNS request without a query name".into());
            }
            verdict_sim::proxy::L7Request::Dns(q.to_string())
        } else {
            return skip(l7_summary(f));
        };
        let Some(ipf) = &f.IP else {
            return skip("an L7 record without an IP header (field IP)".into());
        };
        let l4 = f.l4.clone().unwrap_or_default();
        let (protocol, sport, dport) = if let Some(p) = &l4.TCP {
            (Protocol::Tcp, p.source_port, p.destination_port)
        } else if let Some(p) = &l4.UDP {
            (Protocol::Udp, p.source_port, p.destination_port)
        } else {
            return skip("an L7 record without a TCP or UDP header (field l4)".into());
        };
        let src = self
            .resolver
            .resolve("source", f.source.as_ref(), ipf.source, &f.source_names);
        let dst = self.resolver.resolve(
            "destination",
            f.destination.as_ref(),
            ipf.destination,
            &f.destination_names,
        );
        let (src, dst) = match (src, dst) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) | (_, Err(e)) => {
                return Fed::Skipped(Skipped {
                    line: rec.line,
                    kind: Skip::Unresolvable,
                    why: e,
                })
            }
        };
        let flow = Flow {
            src: self.resolver.peers[src as usize].peer.clone(),
            dst: self.resolver.peers[dst as usize].peer.clone(),
            protocol,
            dport,
        };
        let verdict = verdict_name(f);
        let direction = f.traffic_direction.name(flowlog::DIRECTIONS);
        let kind = if l7.http.is_some() { "http" } else { "dns" };
        let (observed, scope, not_compared) = match (verdict, direction) {
            ("FORWARDED" | "DROPPED", Some("EGRESS")) => (
                if kind == "http" {
                    "http-request EGRESS"
                } else {
                    "dns-request EGRESS"
                },
                Some(Scope::Egress),
                None,
            ),
            ("FORWARDED" | "DROPPED", Some("INGRESS")) => (
                if kind == "http" {
                    "http-request INGRESS"
                } else {
                    "dns-request INGRESS"
                },
                Some(Scope::Path),
                None,
            ),
            ("FORWARDED" | "DROPPED", _) => {
                ("l7-request", None, Some("an L7 record without a direction"))
            }
            _ => (
                "l7-request",
                None,
                Some("the verdict is not a policy outcome"),
            ),
        };
        let t0 = *self.first_ts.get_or_insert(rec.time_ns);
        self.clock = self.clock.max(
            self.base_clock
                .saturating_add(rec.time_ns.saturating_sub(t0)),
        );
        self.prep.world.clock_ns = self.clock;
        let (_, _, rule) = self.decision((src, dst, protocol.number(), dport), &flow);
        let world = &self.prep.world;
        let mut results = Vec::with_capacity(self.prep.backends.len());
        for (_, h) in &self.prep.backends {
            let mut c = h.borrow_mut();
            let r = engine::probe_through_proxies(c.backend(), world, &flow, Some(&request));
            if let Some(dp) = c.datapath() {
                dp.clear_flows();
            }
            results.push(r);
        }
        let row = Row {
            line: rec.line,
            time_ns: rec.time_ns,
            src,
            dst,
            protocol,
            sport,
            dport,
            tcp_flags: 0,
            is_reply: Some(false),
            observed,
            recorded: verdict,
            recorded_reason: None,
            scope,
            not_compared,
            opened_before: false,
            results,
            rule,
        };
        if row.backends_disagree() {
            self.backend_disagreements += 1;
        }
        Fed::Row(row)
    }

    /// An empty report for this replay, to which rows are added.
    pub fn report(&self) -> Report {
        Report {
            scenario: self.prep.scenario.clone(),
            after_step: self.prep.after_step,
            backends: self.names.clone(),
            ..Default::default()
        }
    }

    /// Completes a report with what the replayer learnt (peers, rules, counts).
    pub fn finish(self, mut report: Report) -> Report {
        report.lines = self.lines;
        report.peers = self.resolver.peers;
        report.rules = self.rules;
        report.backend_disagreements = self.backend_disagreements;
        report
    }
}

/// Replays flows on a prepared cluster. With `keep_all` every row is kept; otherwise only
/// the rows that disagree (enough for the text report: a million-flow replay keeps little).
pub fn replay_entries(
    prep: &mut Prepared,
    entries: impl IntoIterator<Item = Result<Entry>>,
    keep_all: bool,
) -> Result<Report> {
    let mut r = Replayer::new(prep);
    let mut report = r.report();
    for entry in entries {
        match r.feed(entry?) {
            Fed::Skipped(s) => report.skipped.push(s),
            Fed::Row(row) => {
                report.counts.add(&row);
                if keep_all || row.disagrees() || row.backends_disagree() {
                    report.rows.push(row);
                }
            }
        }
    }
    Ok(r.finish(report))
}

fn l7_summary(f: &flowlog::Flow) -> String {
    let kind = match f.l7.as_ref() {
        Some(l) if l.dns.is_some() => "DNS",
        Some(l) if l.http.is_some() => "HTTP",
        Some(l) if l.kafka.is_some() => "Kafka",
        _ => "L7",
    };
    let ty =
        f.l7.as_ref()
            .and_then(|l| {
                l.l7_type
                    .name(&[(1, "REQUEST"), (2, "RESPONSE"), (3, "SAMPLE")])
            })
            .unwrap_or("record");
    let why = match ty {
        "RESPONSE" => "its request is the replayed line",
        _ if kind == "Kafka" || kind == "L7" => "Kafka and other L7 protocols are not modelled",
        _ => "only requests are replayed",
    };
    format!("{kind} {} ({why})", ty.to_lowercase())
}

/// A peer as reports show it: `ns/pod`, `host:<node>`, or a world address.
pub fn peer_text(p: &Peer) -> String {
    p.to_string()
}

fn outcome_short(r: &Result<Outcome, String>) -> String {
    diff::outcome_cell(r)
}

/// The recorded verdict as text (`DROPPED POLICY_DENIED (133)`).
pub fn recorded_text(r: &Row) -> String {
    match r.recorded_reason {
        Some(code) if r.recorded == "DROPPED" => {
            let d = DropReason::from_code(code.min(255) as u8);
            format!("DROPPED {} ({code})", d.hubble_name())
        }
        _ => r.recorded.to_string(),
    }
}

fn flags_text(bits: u8) -> String {
    let names = [
        (TCP_SYN, "SYN"),
        (TCP_ACK, "ACK"),
        (0x04, "RST"),
        (0x01, "FIN"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// One row as JSON.
pub fn row_json(rep: &Report, r: &Row) -> Value {
    let mut sim = serde_json::Map::new();
    for (i, (b, res)) in rep.backends.iter().zip(&r.results).enumerate() {
        let mut o = serde_json::Map::new();
        o.insert("verdict".into(), json!(outcome_short(res)));
        if let Some(scope) = r.scope {
            if let Ok(out) = res {
                o.insert(
                    "in_scope".into(),
                    json!(match in_scope(out, scope) {
                        Sim::Allowed => "allowed",
                        Sim::Denied => "denied",
                        Sim::NotReached => "not reached",
                    }),
                );
            }
            o.insert("agrees".into(), json!(r.agrees(i)));
        }
        sim.insert(b.clone(), Value::Object(o));
    }
    let key = rep.group_key(r);
    let mut v = json!({
        "line": r.line,
        "time": crate::hubble::rfc3339(r.time_ns),
        "source": peer_text(&rep.peer(r.src).peer),
        "destination": peer_text(&rep.peer(r.dst).peer),
        "source_workload": rep.peer(r.src).workload,
        "destination_workload": rep.peer(r.dst).workload,
        "protocol": r.protocol.to_string(),
        "source_port": r.sport,
        "destination_port": r.dport,
        "is_reply": r.is_reply,
        "observed": r.observed,
        "recorded": recorded_text(r),
        "scope": r.scope.map(Scope::as_str),
        "simulated": sim,
        "rule": rep.rules[r.rule as usize],
        "group": key.to_string(),
    });
    if r.protocol == Protocol::Tcp {
        v["tcp_flags"] = json!(flags_text(r.tcp_flags));
    }
    if let Some(why) = r.not_compared {
        v["not_compared"] = json!(why);
    }
    if r.opened_before {
        v["opened_before_capture"] = json!(true);
    }
    v
}

/// The summary as JSON.
pub fn summary_json(rep: &Report) -> Value {
    let groups: Vec<Value> = rep
        .groups()
        .iter()
        .map(|(k, rows)| {
            let mut rules: Vec<&str> = rows.iter().map(|r| rep.rules[r.rule as usize].as_str()).collect();
            rules.sort_unstable();
            rules.dedup();
            json!({
                "source_workload": k.src,
                "destination_workload": k.dst,
                "port": k.port,
                "protocol": k.protocol,
                "flows": rows.len(),
                "lines": rows.iter().map(|r| r.line).collect::<Vec<_>>(),
                "recorded": rows.iter().map(|r| recorded_text(r)).collect::<std::collections::BTreeSet<_>>(),
                "rules": rules,
            })
        })
        .collect();
    let mut skipped = serde_json::Map::new();
    for k in [Skip::L7, Skip::Unresolvable, Skip::NotL34] {
        skipped.insert(k.as_str().into(), json!(rep.skipped_count(k)));
    }
    json!({
        "flows_file": rep.flows_file.display().to_string(),
        "scenario": rep.scenario,
        "after_step": rep.after_step,
        "backends": rep.backends,
        "lines": rep.lines,
        "replayed": rep.counts.replayed,
        "compared": rep.counts.compared,
        "agreements": rep.counts.agreements,
        "disagreements": rep.counts.disagreements,
        "not_compared": rep.counts.not_compared,
        "opened_before_capture": rep.counts.opened_before,
        "backend_disagreements": rep.backend_disagreements,
        "not_replayed": skipped,
        "disagreement_groups": groups,
        "not_replayed_flows": rep.skipped.iter().map(|s| json!({"line": s.line, "kind": s.kind.as_str(), "why": s.why})).collect::<Vec<_>>(),
    })
}

/// The first line of the text report.
pub fn headline(rep: &Report) -> String {
    let c = &rep.counts;
    let nc: usize = c.not_compared.values().sum();
    format!(
        "{} {} against {} (after step {}) on {}: {} lines, {} flows replayed: {} compared ({} agree, {} disagree), {nc} not compared; not replayed: {} L7, {} unresolvable, {} not L3/L4; {} backend disagreements",
        if rep.clean() { "OK  " } else { "DIFF" },
        rep.flows_file.display(),
        rep.scenario,
        rep.after_step,
        rep.backends.join(","),
        rep.lines,
        c.replayed,
        c.compared,
        c.agreements,
        c.disagreements,
        rep.skipped_count(Skip::L7),
        rep.skipped_count(Skip::Unresolvable),
        rep.skipped_count(Skip::NotL34),
        rep.backend_disagreements,
    )
}

/// The text report: the headline, the disagreement groups, what was not compared and what
/// was not replayed.
pub fn render_text(rep: &Report) -> String {
    let mut s = headline(rep);
    s.push('\n');
    let groups = rep.groups();
    if !groups.is_empty() {
        let _ = writeln!(
            s,
            "disagreements by (source workload, destination workload, port, protocol):"
        );
    }
    for (k, rows) in &groups {
        let _ = writeln!(s, "  {k}: {} flows", rows.len());
        let mut seen = std::collections::BTreeSet::new();
        for r in rows {
            let sims: Vec<String> = rep
                .backends
                .iter()
                .zip(&r.results)
                .map(|(b, o)| format!("{b}: {}", outcome_short(o)))
                .collect();
            let line = format!(
                "recorded {} at {} ({}); {}; rule: {}",
                recorded_text(r),
                r.observed,
                r.scope.map_or("-", Scope::as_str),
                sims.join("; "),
                rep.rules[r.rule as usize]
            );
            if seen.insert(line.clone()) {
                let lines: Vec<String> = rows
                    .iter()
                    .filter(|x| {
                        x.observed == r.observed
                            && x.recorded == r.recorded
                            && x.results == r.results
                            && x.rule == r.rule
                    })
                    .map(|x| x.line.to_string())
                    .collect();
                let _ = writeln!(s, "    lines {}: {line}", compress(&lines));
            }
        }
    }
    if !rep.counts.not_compared.is_empty() {
        let _ = writeln!(
            s,
            "replayed, not compared (the record asserts no policy verdict):"
        );
        for (why, n) in &rep.counts.not_compared {
            let _ = writeln!(s, "  {n} {why}");
        }
    }
    if rep.counts.opened_before > 0 {
        let _ = writeln!(
            s,
            "{} connections were open before the capture began: each was opened first with a synthetic packet",
            rep.counts.opened_before
        );
    }
    if !rep.skipped.is_empty() {
        let _ = writeln!(s, "not replayed:");
        let mut by: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
        for k in &rep.skipped {
            by.entry((k.kind.as_str(), k.why.as_str()))
                .or_default()
                .push(k.line.to_string());
        }
        for ((kind, why), lines) in by {
            let _ = writeln!(
                s,
                "  {kind}: {why}: {} (lines {})",
                lines.len(),
                compress(&lines)
            );
        }
    }
    s
}

/// `1,2,3,7` -> `1-3,7`, at most 12 items.
fn compress(lines: &[String]) -> String {
    let nums: Vec<usize> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    line_ranges(&nums)
}

/// Sorted line numbers as ranges: `1,2,3,7` -> `1-3,7`, at most 12 items (then `... N more`).
pub(crate) fn line_ranges(nums: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", nums[i], nums[j])
        } else {
            nums[i].to_string()
        });
        i = j + 1;
    }
    if parts.len() > 12 {
        let n = parts.len() - 12;
        parts.truncate(12);
        parts.push(format!("... {n} more"));
    }
    parts.join(",")
}

/// The compact form: each replayed flow as `hubble observe` prints it (the recorded fields),
/// followed by every backend's simulated verdict and the deciding rule.
pub fn render_compact(rep: &Report) -> String {
    let mut s = String::new();
    for r in &rep.rows {
        let host = |i: u32, port: u16| {
            let p = &rep.peer(i).peer;
            if r.protocol.is_icmp() {
                peer_text(p)
            } else {
                format!("{}:{port}", peer_text(p))
            }
        };
        let (a, b) = (host(r.src, r.sport), host(r.dst, r.dport));
        let (a, arrow, b) = match r.is_reply {
            None => (a, "<>", b),
            Some(false) => (a, "->", b),
            Some(true) => (b, "<-", a),
        };
        let summary = if r.protocol == Protocol::Tcp {
            format!("TCP Flags: {}", flags_text(r.tcp_flags).replace(',', ", "))
        } else {
            r.protocol.to_string()
        };
        let sims: Vec<String> = rep
            .backends
            .iter()
            .zip(&r.results)
            .enumerate()
            .map(|(i, (b, o))| {
                let mark = match r.agrees(i) {
                    Some(true) => "",
                    Some(false) => " DISAGREES",
                    None => "",
                };
                format!("{b}: {}{mark}", outcome_short(o))
            })
            .collect();
        let _ = writeln!(
            s,
            "{}: {a} {arrow} {b} {} {} ({summary}) => {} [{}]",
            crate::hubble::compact_time(r.time_ns),
            r.observed,
            recorded_text(r),
            sims.join(" | "),
            rep.rules[r.rule as usize]
        );
    }
    s
}

/// Output formats of the traffic commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The summary: counts, disagreement groups, what was not replayed.
    Text,
    /// One JSON document: the summary and every flow.
    Json,
    /// Every flow as `hubble observe` prints it, with the simulated verdicts.
    Compact,
}

/// `verdict replay` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The flows: `hubble observe -o json` (or jsonpb) output, one GetFlowsResponse or Flow per
    /// line.
    #[arg(long, value_name = "FILE")]
    pub flows: PathBuf,
    /// The scenario whose cluster and policies the flows are replayed against.
    #[arg(long, value_name = "S")]
    pub scenario: PathBuf,
    /// The cluster as it is after step N (1-based; 0 is the initial state; default: after the
    /// last step).
    #[arg(long, value_name = "N")]
    pub after_step: Option<usize>,
    /// Backends, comma-separated: oracle, model, rbpf, rbpf-jit, kernel (default:
    /// oracle,model,rbpf).
    #[arg(
        long,
        visible_alias = "backends",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub backend: Option<Vec<String>>,
    /// text (the summary), json (the summary and every flow) or compact (every flow as
    /// `hubble observe` prints it, with the simulated verdicts).
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
}

/// Reads a flow file lazily, line by line.
pub fn read_flows(path: &Path) -> Result<impl Iterator<Item = Result<Entry>>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let p = path.to_path_buf();
    let mut n = 0usize;
    let lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    Ok(lines.filter_map(move |l| {
        n += 1;
        match l {
            Err(e) => Some(Err(anyhow::anyhow!("{}:{n}: {e}", p.display()))),
            Ok(text) => flowlog::parse_line(&p, n, &text).transpose(),
        }
    }))
}

/// Replays a flow file against a scenario state.
pub fn replay_file(flows: &Path, prep: &mut Prepared, keep_all: bool) -> Result<Report> {
    let mut rep = replay_entries(prep, read_flows(flows)?, keep_all)?;
    if rep.lines == 0 {
        bail!("{}: no flows (an empty file)", flows.display());
    }
    rep.flows_file = flows.to_path_buf();
    Ok(rep)
}

/// The backends a traffic command runs on (default oracle,model,rbpf), checked once.
pub fn backends_of(list: Option<&[String]>) -> Result<Vec<String>> {
    let list: Vec<String> = match list {
        Some(l) => l.to_vec(),
        None => crate::backends::DEFAULT_BACKENDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    crate::backends::validate(&list).map_err(anyhow::Error::msg)
}

/// Runs `verdict replay`: 0 when every compared flow agrees with its record and the backends
/// agree, 1 otherwise, 2 on bad input.
pub fn run(a: &ReplayArgs) -> Result<u8> {
    let names = backends_of(a.backend.as_deref())?;
    let mut prep = prepare(
        &a.scenario,
        a.after_step,
        Vec::new(),
        &names,
        &diff::contender,
    )?;
    let rep = replay_file(&a.flows, &mut prep, a.output != Output::Text)?;
    match a.output {
        Output::Text => print!("{}", render_text(&rep)),
        Output::Json => {
            let mut v = summary_json(&rep);
            v["flows"] = Value::Array(rep.rows.iter().map(|r| row_json(&rep, r)).collect());
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Compact => {
            print!("{}", render_compact(&rep));
            eprint!("{}", render_text(&rep));
        }
    }
    Ok(if rep.clean() { 0 } else { 1 })
}
