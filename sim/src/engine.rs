//! The scenario engine: replays a scenario's timeline on one or more backends and checks
//! every expectation, and every backend against the others.
//!
//! The engine owns the world (cluster state, policy repository, virtual clock). A backend
//! sees each change through [`Backend::sync`] and answers probes through [`Backend::probe`];
//! the oracle is the backend that needs no sync. Datapath backends plug in from other crates
//! through [`BackendFactory`].
//!
//! With a scenario's `propagation:` extension (`docs/propagation.md`) the engine also owns the
//! propagation schedule: when each control-plane change reaches each node's datapath
//! ([`Backend::sync_due`]), and which probes land while a node involved still has an update
//! pending ([`Transient`]). Backends that model no per-node datapath state (the oracle, the
//! model) keep giving the eventually-consistent answer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::api::{self, Manifest};
use crate::cluster::{
    Cluster, ClusterError, ContainerPort, IdentityChange, Peer, PodName, PodSpec, Protocol,
};
use crate::conntrack::{ConnPacket, Conntrack, SideVerdict, TCP_ACK, TCP_SYN};
use crate::gen::SplitMix64;
use crate::oracle::{self, Flow};
use crate::policy::{PolicyKind, PolicyRef, Repository};
use crate::scenario::{
    self, LoadedScenario, PodDecl, PolicySource, Probe, Propagation, ScenarioError, SendDirection,
    Step, VerdictDecl,
};
use crate::service::{ClusterIpSpec, ServicePort, ServiceSpec, TargetPort};
use crate::translate;
use crate::verdict::{Direction, DropReason, MatchType, Outcome};

/// The simulated world at one instant.
#[derive(Debug, Default)]
pub struct World {
    pub cluster: Cluster,
    pub repo: Repository,
    /// Virtual time in nanoseconds.
    pub clock_ns: u64,
    /// Notes from loading (see [`ScenarioReport::notes`]).
    pub notes: Vec<String>,
    /// What the cluster's DNS server answers (`cluster.dns`).
    pub dns: DnsZone,
}

/// The cluster's DNS zone (`cluster.dns`): names (lower case, fully qualified) and their
/// answers, and the pod that serves them.
#[derive(Debug, Default, Clone)]
pub struct DnsZone {
    pub records: BTreeMap<String, DnsRecord>,
    pub server: Option<PodName>,
}

/// One name's answer: its addresses and TTL in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub ips: Vec<std::net::IpAddr>,
    pub ttl: u32,
}

/// The TTL of a `cluster.dns` entry that gives none (the scenario format's default).
pub const DEFAULT_DNS_TTL: u32 = 300;

impl DnsZone {
    pub fn lookup(&self, name: &str) -> Option<&DnsRecord> {
        self.records.get(&api::fqdn(&name.to_lowercase()))
    }
    /// The first address of a name, as a probe endpoint resolves it.
    pub fn first_ip(&self, name: &str) -> Option<std::net::IpAddr> {
        self.lookup(name).and_then(|r| r.ips.first().copied())
    }
}

/// What changed, for incremental backends.
#[derive(Debug)]
pub enum Change<'a> {
    /// The initial state (cluster and policies at time 0).
    Initial,
    /// Identities appeared or vanished (pod create/delete, relabel).
    Identities(&'a IdentityChange),
    PodAdded(&'a PodName),
    /// A pod was deleted; its last state is given.
    PodRemoved(&'a crate::cluster::Pod),
    /// Pods whose identity changed (relabel), with their old identity.
    PodsRelabelled(&'a [(PodName, crate::identity::Identity)]),
    PolicyApplied(&'a PolicyRef),
    PolicyDeleted(&'a PolicyRef),
    /// The CiliumCIDRGroup of this name was created, replaced or deleted (its current state,
    /// or its absence, is in `World::cluster.cidr_groups`).
    CidrGroupChanged(&'a str),
    /// The virtual clock moved (`World::clock_ns`).
    Clock,
    /// Auth map entries were written on these nodes (`World::cluster.auth`).
    Authenticated(&'a [(String, crate::auth::AuthKey)]),
    /// Some node's name-manager cache changed (`World::cluster.fqdn`): a DNS answer the
    /// proxy allowed, or the DNS garbage collector.
    Fqdn,
}

/// A backend: something that decides connection attempts.
pub trait Backend {
    fn name(&self) -> &str;
    /// Brings the backend up to date after a change to the world.
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String>;
    /// Decides one new connection attempt.
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String>;
    /// Processes one packet of a tracked connection (conntrack applies).
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String>;
    /// Flow events (Hubble-style) observed since the last call; backends without a datapath
    /// have none.
    fn take_flows(&mut self, _world: &World) -> Vec<FlowRecord> {
        Vec::new()
    }
    /// Like [`Backend::sync`], for a change that reaches each node's datapath at the virtual
    /// time `due[node]` (never earlier than `world.clock_ns`; nanoseconds). Until then the
    /// node keeps deciding with what it had. Backends without per-node datapath state give
    /// the eventual answer and need not override this.
    fn sync_due(
        &mut self,
        world: &World,
        change: &Change<'_>,
        _due: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        self.sync(world, change)
    }
    /// The egress proxy's upstream connection for the last probe/packet whose outcome had
    /// `redirect.egress = Some(_)`: the same flow, from the proxy, through the destination
    /// pod's ingress side only (Cilium's proxy keeps the source pod's identity). Returns the
    /// flow's whole outcome: as if both sides had run, `redirect.egress` kept
    /// (`/work/coord/iface-redirect.md`).
    fn proxy_upstream(&mut self, _world: &World) -> Result<Outcome, String> {
        Err(format!("{}: no proxy upstream", self.name()))
    }
    /// The L7 rules the proxy on `proxy_port` holds for `flow` on side `dir`, from this
    /// backend's control plane (the oracle: the rules; the others: their model's selector
    /// cache, `Model::proxy_rules`). The engine hands them and the request to the proxy model
    /// (`crate::proxy::decide`), the same for every backend.
    fn proxy_rules(
        &mut self,
        _world: &World,
        _flow: &Flow,
        _dir: Direction,
        _proxy_port: u16,
    ) -> Result<Vec<crate::proxy::ProxyRule>, String> {
        Err(format!("{}: no L7 proxy policy", self.name()))
    }
    /// The proxies' decisions on the last probe's L7 request, in the order the request met
    /// them (egress proxy first), for the access-log records a datapath backend reports as
    /// Hubble L7 flows. Called after [`Backend::probe`] (and `proxy_upstream`) of that probe.
    fn note_l7(&mut self, _world: &World, _l7: &L7Exchange<'_>) {}
    /// Whether this backend honours [`Backend::sync_due`] (its nodes can lag behind the
    /// control plane). Expectations of probes in a propagation window are checked against
    /// lagging backends only.
    fn lags(&self) -> bool {
        false
    }
}

/// What the L7 proxies did with one probe's request ([`Backend::note_l7`]).
#[derive(Clone, Debug)]
pub struct L7Exchange<'a> {
    pub flow: &'a Flow,
    pub request: &'a crate::proxy::L7Request,
    /// Each proxy the request reached, in order, and whether it let the request through.
    pub proxies: Vec<(Direction, bool)>,
    /// Whether the connection reached the server (every proxy passed it and the
    /// destination's ingress side allowed the proxy's upstream connection).
    pub delivered: bool,
}

/// One observed flow event, rendered the way `hubble observe` prints it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    /// `hubble observe -o json` line (a GetFlowsResponse).
    pub json: serde_json::Value,
    /// `hubble observe` compact line.
    pub compact: String,
}

/// Creates a backend by name; `None` for an unknown name.
pub type BackendFactory<'a> = &'a dyn Fn(&str) -> Result<Box<dyn Backend>, String>;

/// What a Rust backend remembers of its last redirected probe or packet, for
/// [`Backend::proxy_upstream`].
#[derive(Clone, Debug, Default)]
pub enum LastRedirect {
    #[default]
    None,
    Probe(Flow),
    /// A connection packet and its outcome at the egress proxy.
    Packet(ConnPacket, Outcome),
}

impl LastRedirect {
    /// Remembers `o`'s flow when its egress side redirected.
    pub fn note_probe(&mut self, flow: &Flow, o: &Outcome) {
        *self = match o.redirect.egress {
            Some(_) => LastRedirect::Probe(flow.clone()),
            None => LastRedirect::None,
        };
    }
    pub fn note_packet(&mut self, pkt: &ConnPacket, o: &Outcome) {
        *self = match o.redirect.egress {
            Some(_) => LastRedirect::Packet(pkt.clone(), o.clone()),
            None => LastRedirect::None,
        };
    }
}

/// The oracle as a backend, with the reference conntrack for connections.
#[derive(Debug, Default)]
pub struct OracleBackend {
    ct: Conntrack,
    last: LastRedirect,
}

/// One side of an oracle decision as conntrack input.
fn oracle_side(d: &oracle::Decision, dir: Direction) -> SideVerdict {
    let v = match dir {
        Direction::Egress => &d.egress,
        Direction::Ingress => &d.ingress,
    };
    SideVerdict {
        enforced: v.enforced(),
        allowed: v.allows(),
        reason: match v {
            oracle::DirectionVerdict::Denied { reason, .. } => Some(*reason),
            _ => None,
        },
        match_type: None,
        proxy_port: d
            .redirects()
            .into_iter()
            .find(|(rd, _, _)| *rd == dir)
            .map(|(rd, p, _)| crate::proxy::ProxyPorts::port(p, rd)),
    }
}

impl Backend for OracleBackend {
    fn name(&self) -> &str {
        "oracle"
    }
    fn sync(&mut self, _: &World, _: &Change<'_>) -> Result<(), String> {
        Ok(())
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        let o = oracle::decide(&world.cluster, &world.repo, flow).outcome();
        self.last.note_probe(flow, &o);
        Ok(o)
    }
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        let d = oracle::decide(&world.cluster, &world.repo, &pkt.flow());
        let o = process_with_conntrack(&mut self.ct, world, pkt, |dir| oracle_side(&d, dir))?;
        self.last.note_packet(pkt, &o);
        Ok(o)
    }
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: Direction,
        _proxy_port: u16,
    ) -> Result<Vec<crate::proxy::ProxyRule>, String> {
        let d = oracle::decide(&world.cluster, &world.repo, flow);
        d.redirects()
            .into_iter()
            .find(|(rd, _, _)| *rd == dir)
            .map(|(_, _, rules)| rules.to_vec())
            .ok_or_else(|| format!("oracle: no {dir} redirect for this flow"))
    }
    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        match std::mem::take(&mut self.last) {
            LastRedirect::None => Err("oracle: no redirected probe or packet".into()),
            LastRedirect::Probe(flow) => {
                Ok(oracle::decide(&world.cluster, &world.repo, &flow).upstream_outcome())
            }
            LastRedirect::Packet(pkt, at_proxy) => {
                let d = oracle::decide(&world.cluster, &world.repo, &pkt.flow());
                upstream_with_conntrack(
                    &mut self.ct,
                    world,
                    &pkt,
                    &at_proxy,
                    oracle_side(&d, Direction::Ingress),
                )
            }
        }
    }
}

/// The ingress side of the proxy's upstream packet for a packet stopped at the egress proxy
/// (`at_proxy` is that packet's outcome).
pub fn upstream_with_conntrack(
    ct: &mut Conntrack,
    world: &World,
    pkt: &ConnPacket,
    at_proxy: &Outcome,
    ingress: SideVerdict,
) -> Result<Outcome, String> {
    let c = &world.cluster;
    let src = c
        .ip_of(&pkt.src)
        .ok_or_else(|| format!("no address for {}", pkt.src))?;
    let dst = c
        .ip_of(&pkt.dst)
        .ok_or_else(|| format!("no address for {}", pkt.dst))?;
    let egress_notified =
        (at_proxy.direction == Some(Direction::Egress)).then_some(at_proxy.match_type);
    Ok(ct.process_upstream(
        pkt,
        src,
        (dst, enforcing_node(c, &pkt.dst)),
        world.clock_ns,
        egress_notified,
        at_proxy.redirect.egress,
        ingress,
    ))
}

/// Runs a connection packet through a Rust conntrack, given each side's policy verdict.
/// The node whose hooks see a peer's side of a connection: a pod's node; a host's node only
/// with the host firewall on (without it nothing tracks or enforces the host's side).
fn enforcing_node<'a>(c: &'a Cluster, peer: &'a Peer) -> Option<&'a str> {
    match peer {
        Peer::Host(_) if !c.agent.host_firewall => None,
        _ => c.node_of(peer),
    }
}

pub fn process_with_conntrack(
    ct: &mut Conntrack,
    world: &World,
    pkt: &ConnPacket,
    decide: impl FnMut(Direction) -> SideVerdict,
) -> Result<Outcome, String> {
    let c = &world.cluster;
    let src = c
        .ip_of(&pkt.src)
        .ok_or_else(|| format!("no address for {}", pkt.src))?;
    let dst = c
        .ip_of(&pkt.dst)
        .ok_or_else(|| format!("no address for {}", pkt.dst))?;
    Ok(ct.process(
        pkt,
        (src, enforcing_node(c, &pkt.src)),
        (dst, enforcing_node(c, &pkt.dst)),
        world.clock_ns,
        decide,
    ))
}

/// What a probe expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub allow: bool,
    pub reason: Option<DropReason>,
    pub match_type: Option<MatchType>,
    pub direction: Option<Direction>,
    /// `redirect:`: whether the connection goes to an L7 proxy.
    pub redirect: Option<bool>,
}

impl Expectation {
    /// Whether an outcome meets the expectation. Fields the backend does not compute (a
    /// match type from the oracle) are not held against it.
    ///
    /// An allowed flow that no side enforces policy on is looked up, on each side, on the
    /// allow-all key `{identity 0, proto 0, port 0}` of a direction without policy, whose match
    /// type is `all` (spec §4.1 `allowAllIdentities`, §5.2 step 6, §7 rows 16 and 27); no
    /// policy-verdict event reports it, so no backend does either. A pinned `match` is checked
    /// against `all` there rather than passing whatever it says.
    pub fn holds(&self, o: &Outcome) -> bool {
        if o.allowed != self.allow {
            return false;
        }
        if let (Some(e), false) = (self.reason, o.allowed) {
            if o.reason != Some(e) {
                return false;
            }
        }
        let actual_match = o
            .match_type
            .or_else(|| (o.allowed && o.direction.is_none()).then_some(MatchType::All));
        if let (Some(e), Some(a)) = (self.match_type, actual_match) {
            if e != a {
                return false;
            }
        }
        if let Some(e) = self.direction {
            if o.direction != Some(e) {
                return false;
            }
        }
        if let Some(r) = self.redirect {
            if o.redirected() != r {
                return false;
            }
        }
        true
    }
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.allow { "allow" } else { "deny" })?;
        if let Some(r) = self.reason {
            write!(f, " {}", r.hubble_name())?;
        }
        if let Some(d) = self.direction {
            write!(f, " {d}")?;
        }
        if let Some(m) = self.match_type {
            write!(f, " match={m}")?;
        }
        match self.redirect {
            Some(true) => f.write_str(" redirect")?,
            Some(false) => f.write_str(" no-redirect")?,
            None => {}
        }
        Ok(())
    }
}

/// A probe that landed while a node involved (the source pod's or the destination pod's)
/// had a control-plane update pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transient {
    /// `(node, virtual time its last pending update is due)`, in node order.
    pub pending: Vec<(String, u64)>,
    /// Backends that give the eventual answer (no per-node lag): the expectation is not
    /// checked against them, and their disagreement with lagging backends is the window.
    pub eventual: Vec<String>,
    /// The source's and destination's identities (pods only), as the control plane has them.
    pub identities: (
        Option<crate::identity::Identity>,
        Option<crate::identity::Identity>,
    ),
}

impl Transient {
    /// `transient: node-2 pending until 3s`.
    pub fn note(&self) -> String {
        let nodes: Vec<String> = self
            .pending
            .iter()
            .map(|(n, t)| format!("{n} pending until {}", format_ns(*t)))
            .collect();
        format!("transient: {}", nodes.join(", "))
    }
}

/// One probe on every backend.
#[derive(Clone, Debug)]
pub struct ProbeCheck {
    /// For packets of a tracked connection: which (`c1 connect`, `c1 reply`, ...).
    pub context: Option<String>,
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub port: u16,
    pub expected: Option<Expectation>,
    /// (backend, outcome or error), in backend order.
    pub results: Vec<(String, Result<Outcome, String>)>,
    /// Set when the probe landed in a propagation window.
    pub transient: Option<Transient>,
}

/// Whether outcomes disagree on verdict, drop reason, deciding direction or proxy redirect
/// (port included), or (among those that compute one) on the match type.
fn outcomes_disagree(oks: &[&Outcome]) -> bool {
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

impl ProbeCheck {
    pub fn label(&self) -> String {
        let ctx = self
            .context
            .as_ref()
            .map(|c| format!("[{c}] "))
            .unwrap_or_default();
        if self.protocol.is_icmp() {
            format!(
                "{ctx}{} -> {} {} type {}",
                self.from, self.to, self.protocol, self.port
            )
        } else {
            format!(
                "{ctx}{} -> {} {}/{}",
                self.from, self.to, self.port, self.protocol
            )
        }
    }
    /// Whether a backend gives the eventual answer in this probe's propagation window.
    pub fn is_eventual(&self, backend: &str) -> bool {
        self.transient
            .as_ref()
            .is_some_and(|t| t.eventual.iter().any(|b| b == backend))
    }
    /// Successful outcomes of the lagging (`true`) or eventual (`false`) backends; outside a
    /// propagation window every backend is in the lagging group.
    fn group(&self, lagging: bool) -> Vec<&Outcome> {
        self.results
            .iter()
            .filter(|(b, _)| self.is_eventual(b) != lagging)
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect()
    }
    /// Backends whose outcome fails the expectation (or errored). In a propagation window
    /// the expectation is what each node's datapath does, so backends that give the eventual
    /// answer are not held to it (their errors still count).
    pub fn failures(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(b, r)| r.is_err() || !self.is_eventual(b))
            .filter(|(_, r)| match (r, &self.expected) {
                (Err(_), _) => true,
                (Ok(o), Some(e)) => !e.holds(o),
                (Ok(_), None) => false,
            })
            .map(|(b, _)| b.as_str())
            .collect()
    }
    /// Whether backends disagree on verdict, drop reason or deciding direction, or (among
    /// backends that compute one) on the match type. In a propagation window, lagging
    /// backends are compared with each other and eventual ones with each other; a difference
    /// between the two groups is [`ProbeCheck::transient_disagreement`], not a failure.
    pub fn disagreement(&self) -> bool {
        outcomes_disagree(&self.group(true)) || outcomes_disagree(&self.group(false))
    }
    /// In a propagation window: the lagging backends' verdict (allow, reason or direction)
    /// differs from the eventual one.
    pub fn transient_disagreement(&self) -> bool {
        if self.transient.is_none() {
            return false;
        }
        let (lag, ev) = (self.group(true), self.group(false));
        match (lag.first(), ev.first()) {
            (Some(l), Some(e)) => {
                l.allowed != e.allowed || l.reason != e.reason || l.direction != e.direction
            }
            _ => false,
        }
    }
    /// The merged outcome of the lagging (`true`) or eventual (`false`) backends.
    pub fn merged_group(&self, lagging: bool) -> Option<Outcome> {
        let oks = self.group(lagging);
        let mut o = (*oks.first()?).clone();
        o.match_type = oks.iter().find_map(|o| o.match_type);
        Some(o)
    }
    /// The agreed outcome, merging fields only some backends compute.
    pub fn merged(&self) -> Option<Outcome> {
        let oks: Vec<&Outcome> = self
            .results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        let mut o = (*oks.first()?).clone();
        o.match_type = oks.iter().find_map(|o| o.match_type);
        Some(o)
    }
}

/// A checked truth table.
#[derive(Clone, Debug)]
pub struct MatrixCheck {
    pub port: u16,
    pub protocol: Protocol,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// Expected cells (None: not checked).
    pub expected: Vec<Vec<Option<bool>>>,
    /// `cells[r][c]`: the probe of that cell on every backend.
    pub cells: Vec<Vec<ProbeCheck>>,
}

impl MatrixCheck {
    pub fn checks(&self) -> impl Iterator<Item = &ProbeCheck> {
        self.cells.iter().flatten()
    }
    pub fn failed(&self) -> bool {
        self.checks().any(|c| !c.failures().is_empty())
    }
}

#[derive(Clone, Debug)]
pub enum StepOutcome {
    Probes(Vec<ProbeCheck>),
    Matrix(Box<MatrixCheck>),
    /// A change to the world, summarised.
    Change(String),
}

#[derive(Clone, Debug)]
pub struct StepReport {
    /// 1-based step number (0 is the initial state).
    pub index: usize,
    pub kind: &'static str,
    pub outcome: StepOutcome,
    /// Flow events per backend during this step (datapath backends only).
    pub flows: Vec<(String, Vec<FlowRecord>)>,
    /// With `propagation:`, for a control-plane change: when it reaches each node.
    pub deliveries: Vec<Delivery>,
}

/// When one control-plane change reaches one node's datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub node: String,
    /// Virtual time of the change (ns).
    pub issued_ns: u64,
    /// Virtual time the node applies it (ns): the drawn delay later, and never before the
    /// node's previous update (a node applies updates in order).
    pub due_ns: u64,
    /// The delay drawn for this change and node (ns), before ordering.
    pub drawn_ns: u64,
}

/// The result of one scenario on a set of backends.
#[derive(Clone, Debug)]
pub struct ScenarioReport {
    pub name: String,
    pub file: PathBuf,
    pub backends: Vec<String>,
    pub steps: Vec<StepReport>,
    /// A fatal error that stopped the replay (bad reference, unsupported step, backend error).
    pub error: Option<String>,
    /// What the loader did that the reader should know (objects skipped in policy files).
    pub notes: Vec<String>,
}

impl ScenarioReport {
    pub fn checks(&self) -> impl Iterator<Item = &ProbeCheck> {
        self.steps
            .iter()
            .flat_map(|s| -> Box<dyn Iterator<Item = &ProbeCheck>> {
                match &s.outcome {
                    StepOutcome::Probes(p) => Box::new(p.iter()),
                    StepOutcome::Matrix(m) => Box::new(m.checks()),
                    StepOutcome::Change(_) => Box::new(std::iter::empty()),
                }
            })
    }
    pub fn probe_count(&self) -> usize {
        self.checks().filter(|c| c.expected.is_some()).count()
    }
    pub fn failure_count(&self) -> usize {
        self.checks().filter(|c| !c.failures().is_empty()).count()
    }
    pub fn disagreement_count(&self) -> usize {
        self.checks().filter(|c| c.disagreement()).count()
    }
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.failure_count() == 0 && self.disagreement_count() == 0
    }
}

/// Errors that stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{}{}: {context}: {message}", file.display(), mark.map(|m| format!(":{}:{}", m.line, m.column)).unwrap_or_default())]
    At {
        file: PathBuf,
        /// Where in the scenario the context's field is (filled in by [`locate`]).
        mark: Option<crate::yaml::Mark>,
        /// The field path (`steps[3].expect[0]`), maybe followed by a note in parentheses.
        context: String,
        message: String,
    },
}

fn at(file: &Path, context: impl Into<String>, message: impl std::fmt::Display) -> EngineError {
    EngineError::At {
        file: file.to_path_buf(),
        mark: None,
        context: context.into(),
        message: message.to_string(),
    }
}

/// Gives an error about a field of the scenario its line and column.
fn locate(loaded: &LoadedScenario, e: EngineError) -> EngineError {
    match e {
        EngineError::At {
            file,
            mark: None,
            context,
            message,
        } if file == loaded.path && context.starts_with(['c', 'p', 's']) => EngineError::At {
            mark: Some(loaded.locate(&context)),
            file,
            context,
            message,
        },
        other => other,
    }
}

fn pod_spec(d: &PodDecl) -> PodSpec {
    PodSpec {
        service_account: d.service_account.clone(),
        name: d.name.clone(),
        node: d.node.clone(),
        ip: d.ip,
        labels: d.labels.clone(),
        ports: d
            .ports
            .iter()
            .map(|p| ContainerPort {
                name: p.name.clone(),
                port: p.port,
                protocol: p.protocol.0,
            })
            .collect(),
    }
}

/// A scenario's service declaration as the cluster takes it (validated on load).
pub fn service_spec(d: &scenario::ServiceDecl) -> ServiceSpec {
    ServiceSpec {
        name: d.name.clone(),
        selector: d.selector.clone(),
        endpoints: d.endpoints.clone().unwrap_or_default(),
        ports: d
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                port: p.port,
                target_port: match &p.target_port {
                    None => TargetPort::Number(p.port),
                    Some(scenario::TargetPortDecl::Number(n)) => TargetPort::Number(*n),
                    Some(scenario::TargetPortDecl::Name(n)) => TargetPort::Name(n.clone()),
                },
                protocol: p.protocol.0,
            })
            .collect(),
        cluster_ip: match d.cluster_ip.as_deref() {
            None => ClusterIpSpec::Auto,
            Some("None") => ClusterIpSpec::Headless,
            // validate.rs has refused anything else that is not an address.
            Some(ip) => ip
                .parse()
                .map(ClusterIpSpec::Fixed)
                .unwrap_or(ClusterIpSpec::Auto),
        },
        labels: d.labels.clone(),
    }
}

/// Reads the manifests a policy source names (relative paths are relative to the scenario).
pub fn manifests_of(
    scenario_path: &Path,
    src: &PolicySource,
) -> Result<Vec<Manifest>, EngineError> {
    manifest_file_of(scenario_path, src).map(|f| f.manifests)
}

/// Like [`manifests_of`], with the count of the objects a file held that are not policies
/// (skipped, as `verdict check` skips them).
pub fn manifest_file_of(
    scenario_path: &Path,
    src: &PolicySource,
) -> Result<api::ManifestFile, EngineError> {
    match src {
        PolicySource::Inline(m) => Ok(api::ManifestFile {
            manifests: vec![(**m).clone()],
            skipped: Default::default(),
        }),
        PolicySource::File(rel) => {
            let base = scenario_path.parent().unwrap_or(Path::new("."));
            let path = base.join(rel);
            api::load_manifest_file(&path)
                .map_err(|e| EngineError::Scenario(ScenarioError::Manifest(e)))
        }
    }
}

/// The note for a policy file's skipped objects, if it had any.
fn skipped_note(src: &PolicySource, f: &api::ManifestFile) -> Option<String> {
    match src {
        PolicySource::File(rel) if !f.skipped.is_empty() => {
            Some(format!("{rel}: skipped {}", f.skipped))
        }
        _ => None,
    }
}

/// Builds the initial world of a scenario (cluster and policies at time 0).
pub fn build_world(loaded: &LoadedScenario) -> Result<World, EngineError> {
    build_world_at(loaded).map_err(|e| locate(loaded, e))
}

fn build_world_at(loaded: &LoadedScenario) -> Result<World, EngineError> {
    let s = &loaded.scenario;
    let file = &loaded.path;
    let mut world = World {
        cluster: Cluster::new(),
        ..Default::default()
    };
    world.cluster.fqdn = crate::fqdn::FqdnCache::new(crate::fqdn::FqdnConfig {
        min_ttl: s
            .agent
            .tofqdns_min_ttl
            .unwrap_or(crate::fqdn::DEFAULT_MIN_TTL),
        idle_grace_ns: s
            .agent
            .tofqdns_idle_connection_grace_period
            .map_or(crate::fqdn::DEFAULT_IDLE_CONNECTION_GRACE_NS, |d| d.0),
    });
    // The agent starts at time 0: the conntrack GC's first run.
    world.cluster.fqdn.advance(0, &|_, _, _| false);
    let c = &mut world.cluster;
    for (i, n) in s.cluster.nodes.iter().enumerate() {
        c.add_node(&n.name, n.ip)
            .and_then(|()| c.set_node_labels(&n.name, &n.labels))
            .map_err(|e| at(file, format!("cluster.nodes[{i}]"), e))?;
    }
    if c.nodes.is_empty() {
        c.add_node("node-1", None)
            .map_err(|e| at(file, "cluster.nodes", e))?;
    }
    c.set_agent(crate::cluster::AgentConfig {
        host_firewall: s.agent.enable_host_firewall,
        node_selector_labels: s.agent.enable_node_selector_labels,
    });
    for (i, ns) in s.cluster.namespaces.iter().enumerate() {
        c.add_namespace(&ns.name, ns.labels.clone())
            .map_err(|e| at(file, format!("cluster.namespaces[{i}]"), e))?;
    }
    for (i, p) in s.cluster.pods.iter().enumerate() {
        c.add_pod(pod_spec(p))
            .map_err(|e| at(file, format!("cluster.pods[{i}] ({})", p.name), e))?;
    }
    for (i, e) in s.cluster.externals.iter().enumerate() {
        c.add_external(&e.name, e.ip)
            .map_err(|err| at(file, format!("cluster.externals[{i}]"), err))?;
    }
    for (i, sv) in s.cluster.services.iter().enumerate() {
        c.add_service(service_spec(sv))
            .map_err(|e| at(file, format!("cluster.services[{i}] ({})", sv.name), e))?;
    }
    for (i, d) in s.cluster.dns.iter().enumerate() {
        let ctx = format!("cluster.dns[{i}] ({})", d.name);
        let name = api::fqdn(&d.name.to_lowercase());
        let ips = match (&d.pod, d.ips.is_empty()) {
            (Some(_), false) => {
                return Err(at(
                    file,
                    ctx,
                    "an entry names either `ips` or the server `pod`, not both",
                ))
            }
            (None, true) => {
                return Err(at(
                    file,
                    ctx,
                    "an entry needs `ips` (or `pod`: the DNS server)",
                ))
            }
            (None, false) => d.ips.clone(),
            (Some(p), true) => {
                let pn = PodName::parse(p)
                    .filter(|pn| world.cluster.pods.contains_key(pn))
                    .ok_or_else(|| at(file, &ctx, format!("pod: unknown pod {p:?}")))?;
                if let Some(prev) = &world.dns.server {
                    return Err(at(
                        file,
                        &ctx,
                        format!("the DNS server is already {prev}: one server pod per cluster"),
                    ));
                }
                world.dns.server = Some(pn.clone());
                vec![world.cluster.pods[&pn].ip]
            }
        };
        if world.dns.records.contains_key(&name) {
            return Err(at(file, &ctx, format!("duplicate name {:?}", d.name)));
        }
        world.dns.records.insert(
            name,
            DnsRecord {
                ips,
                ttl: d.ttl.unwrap_or(DEFAULT_DNS_TTL),
            },
        );
    }
    for (i, src) in s.policies.iter().enumerate() {
        let f = manifest_file_of(file, src).map_err(|e| match e {
            EngineError::At { .. } => e,
            other => at(file, format!("policies[{i}]"), other),
        })?;
        if let Some(n) = skipped_note(src, &f) {
            world.notes.push(format!("policies[{i}]: {n}"));
        }
        for m in f.manifests {
            apply_manifest(&mut world, &m).map_err(|e| at(file, format!("policies[{i}]"), e))?;
        }
    }
    Ok(world)
}

/// What applying one manifest changed.
enum Applied {
    Policy(PolicyRef),
    CidrGroup(String),
}

/// Applies one manifest to the world: a policy to the repository, a CiliumCIDRGroup to the
/// cluster (it is ipcache input, not policy).
fn apply_manifest(world: &mut World, m: &Manifest) -> Result<Applied, String> {
    Ok(match translate::policy_ref(m) {
        Some(r) => {
            agent_accepts(m, &world.cluster.agent).map_err(|e| format!("{r}: {e}"))?;
            let entries = translate::translate_in(m, Some(&world.cluster));
            world.repo.apply(r.clone(), entries);
            Applied::Policy(r)
        }
        None => {
            if let Manifest::CiliumCidrGroup(g) = m {
                world.cluster.upsert_cidr_group(
                    &g.metadata.name,
                    &g.metadata.labels,
                    g.spec.external_cidrs.iter().map(|c| c.0),
                );
            }
            Applied::CidrGroup(m.name().to_string())
        }
    })
}

/// The checks of `Rule.Sanitize` that depend on the agent's options
/// (`pkg/policy/api/rule_validation.go`): `fromNodes`/`toNodes` need
/// `--enable-node-selector-labels` (`ErrFromToNodesRequiresNodeSelectorOption`). The API
/// server accepts such a policy; the agent refuses to import it.
fn agent_accepts(m: &Manifest, agent: &crate::cluster::AgentConfig) -> Result<(), String> {
    if agent.node_selector_labels {
        return Ok(());
    }
    let rules: Vec<&api::Rule> = match m {
        Manifest::CiliumNetworkPolicy(p) => p.rules().collect(),
        Manifest::CiliumClusterwideNetworkPolicy(p) => p.rules().collect(),
        _ => Vec::new(),
    };
    let uses_nodes = rules.iter().any(|r| {
        r.ingress
            .iter()
            .chain(&r.ingress_deny)
            .any(|i| i.from_nodes.is_some())
            || r.egress
                .iter()
                .chain(&r.egress_deny)
                .any(|e| e.to_nodes.is_some())
    });
    if uses_nodes {
        return Err(
            "FromNodes/ToNodes rules can only be applied when the \"enable-node-selector-labels\" \
             flag is set (agent: {enable-node-selector-labels: true}): the agent refuses \
             this policy"
                .into(),
        );
    }
    Ok(())
}

const ENDPOINT_FORMS: &str =
    "expected ns/pod, host:<node>, svc:<ns>/<name>, an externals name or an IP address";

/// A connection's source. A service is no source: connections go to services, not from them.
fn resolve(world: &World, file: &Path, ctx: &str, name: &str) -> Result<Peer, EngineError> {
    if name.starts_with("svc:") {
        return Err(at(
            file,
            ctx,
            format!("{name:?} cannot be a source: a service is a destination (its backends are pods or addresses: name one of them)"),
        ));
    }
    world
        .cluster
        .resolve(name)
        .or_else(|| {
            world
                .dns
                .first_ip(name)
                .map(|ip| world.cluster.peer_of_ip(ip))
        })
        .ok_or_else(|| {
            at(
                file,
                ctx,
                format!("unknown endpoint {name:?}: {ENDPOINT_FORMS}"),
            )
        })
}

/// A connection's destination and the port it arrives on: `svc:ns/name` and cluster IPs are
/// translated to a backend and its target port first, as Cilium's service load balancing
/// does before the egress policy lookup (`crate::service`).
fn resolve_dst(
    world: &World,
    file: &Path,
    ctx: &str,
    src: &Peer,
    name: &str,
    protocol: Protocol,
    port: u16,
) -> Result<(Peer, u16), EngineError> {
    // A DNS name of `cluster.dns` is its first address (the scenario format's extension).
    let dns_ip = world
        .cluster
        .resolve(name)
        .is_none()
        .then(|| world.dns.first_ip(name))
        .flatten()
        .map(|ip| ip.to_string());
    let name = dns_ip.as_deref().unwrap_or(name);
    match world.cluster.resolve_destination(name, protocol, port) {
        Ok(Some((dst, _))) if &dst == src && world.cluster.resolve(name).as_ref() != Some(src) => {
            Err(at(
                file,
                ctx,
                format!("{name}: the chosen backend is the client {src} itself: Cilium sends such a connection through its service loopback (hairpin) path, which verdict does not model yet"),
            ))
        }
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(at(
            file,
            ctx,
            format!("unknown endpoint {name:?}: {ENDPOINT_FORMS}"),
        )),
        Err(e) => Err(at(file, ctx, format!("{name}: {e}"))),
    }
}

/// A probe's two ends must have addresses of one family: a packet has one IP header, and
/// a pod (one address here) cannot send IPv4 to an IPv6 address or the reverse.
fn same_family(world: &World, src: &Peer, dst: &Peer) -> Result<(), String> {
    let (Some(a), Some(b)) = (world.cluster.ip_of(src), world.cluster.ip_of(dst)) else {
        return Ok(());
    };
    if a.is_ipv4() == b.is_ipv4() {
        return Ok(());
    }
    let fam = |ip: std::net::IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    Err(format!(
        "mixes address families: {src} is {} ({a}) and {dst} is {} ({b}); a probe needs two ends of one family",
        fam(a),
        fam(b)
    ))
}

/// The destination port of a probe: the port, or the ICMP type (default: echo request).
fn probe_port(protocol: Protocol, port: Option<u16>, icmp_type: Option<u8>) -> Result<u16, String> {
    match protocol {
        Protocol::Icmp => Ok(icmp_type.unwrap_or(8) as u16),
        Protocol::Icmpv6 => Ok(icmp_type.unwrap_or(128) as u16),
        _ => match (port, icmp_type) {
            (_, Some(_)) => Err(format!("icmp-type is only for ICMP probes, not {protocol}")),
            (Some(p), None) => Ok(p),
            (None, None) => Err(format!("a {protocol} probe needs a port")),
        },
    }
}

fn run_probe(
    backends: &mut [Box<dyn Backend>],
    world: &World,
    from: &str,
    to: &str,
    flow: Flow,
    expected: Option<Expectation>,
    transient: Option<Transient>,
) -> ProbeCheck {
    run_l7_probe(backends, world, from, to, flow, None, expected, transient)
}

/// A probe with an optional L7 request. A connection redirected at egress goes to the
/// source's proxy: the request is decided there (a denial is the proxy's 403 / REFUSED:
/// `L7_DENIED`, nothing reaches the server), then the proxy's upstream connection runs the
/// destination's ingress side (`Backend::proxy_upstream`); a connection redirected at ingress
/// has its request decided by the destination's proxy. Every backend's proxy decisions go
/// through the same proxy model with the rules of its own control plane.
#[allow(clippy::too_many_arguments)]
fn run_l7_probe(
    backends: &mut [Box<dyn Backend>],
    world: &World,
    from: &str,
    to: &str,
    flow: Flow,
    request: Option<&crate::proxy::L7Request>,
    expected: Option<Expectation>,
    transient: Option<Transient>,
) -> ProbeCheck {
    let results = backends
        .iter_mut()
        .map(|b| {
            let r = probe_through_proxies(b.as_mut(), world, &flow, request);
            (b.name().to_string(), r)
        })
        .collect();
    ProbeCheck {
        context: None,
        from: from.to_string(),
        to: to.to_string(),
        protocol: flow.protocol,
        port: flow.dport,
        expected,
        results,
        transient,
    }
}

/// One new connection carrying `request` through whatever proxies the backend's datapath
/// hands it to (as a probe of a scenario step does; `verdict replay` uses it for L7 flows).
pub fn probe_through_proxies(
    b: &mut dyn Backend,
    world: &World,
    flow: &Flow,
    request: Option<&crate::proxy::L7Request>,
) -> Result<Outcome, String> {
    let mut seen: Vec<(Direction, bool)> = Vec::new();
    let o = probe_proxies(b, world, flow, request, &mut seen)?;
    if let (Some(req), false) = (request, seen.is_empty()) {
        b.note_l7(
            world,
            &L7Exchange {
                flow,
                request: req,
                proxies: seen,
                delivered: o.allowed,
            },
        );
    }
    Ok(o)
}

fn probe_proxies(
    b: &mut dyn Backend,
    world: &World,
    flow: &Flow,
    request: Option<&crate::proxy::L7Request>,
    seen: &mut Vec<(Direction, bool)>,
) -> Result<Outcome, String> {
    let mut o = b.probe(world, flow)?;
    let denied_by_proxy = |o: &Outcome, dir: Direction| Outcome {
        allowed: false,
        reason: Some(DropReason::L7Denied),
        direction: Some(dir),
        ..o.clone()
    };
    let l7_allows = |b: &mut dyn Backend, dir: Direction, port: u16| -> Result<bool, String> {
        let Some(req) = request else {
            return Ok(true);
        };
        // A request the listener's parser does not speak is refused by that proxy.
        if crate::proxy::ProxyPorts::parser_of(port) != Some(req.parser()) {
            return Ok(false);
        }
        let rules = b.proxy_rules(world, flow, dir, port)?;
        Ok(crate::proxy::decide(&rules, req).allowed())
    };
    // A proxy logs the requests its parser reads (an HTTP request sent to the DNS proxy is
    // refused without an access-log record of either kind).
    let logs = |port: u16| {
        request.is_some_and(|r| crate::proxy::ProxyPorts::parser_of(port) == Some(r.parser()))
    };
    if o.allowed {
        if let Some(port) = o.redirect.egress {
            let ok = l7_allows(b, Direction::Egress, port)?;
            if logs(port) {
                seen.push((Direction::Egress, ok));
            }
            if !ok {
                return Ok(denied_by_proxy(&o, Direction::Egress));
            }
            o = b.proxy_upstream(world)?;
        }
    }
    if o.allowed {
        if let Some(port) = o.redirect.ingress {
            let ok = l7_allows(b, Direction::Ingress, port)?;
            if logs(port) {
                seen.push((Direction::Ingress, ok));
            }
            if !ok {
                return Ok(denied_by_proxy(&o, Direction::Ingress));
            }
        }
    }
    Ok(o)
}

/// Whether a DNS query of `flow` is seen, allowed and answered through the source's DNS
/// proxy, as the world's reference (the oracle's decision on the rules) has it: the egress
/// side redirects it to the DNS proxy (an L7 DNS rule applies), the proxy's rules allow the
/// name, and the proxy's upstream query passes the server's ingress side. Only such a
/// lookup teaches the name manager (`NotifyOnDNSMsg` → `UpdateOnDNSMsg`,
/// `pkg/fqdn/messagehandler/message_handler.go`, called by the DNS proxy only); a lookup
/// without a DNS rule goes straight to the server and no agent sees it.
fn dns_proxy_allows(world: &World, flow: &Flow, query: &crate::proxy::L7Request) -> bool {
    let d = oracle::decide(&world.cluster, &world.repo, flow);
    if !d.egress.allows() {
        return false;
    }
    match d.redirects().first() {
        Some((Direction::Egress, crate::policy::L7Parser::Dns, rules)) => {
            crate::proxy::decide(rules, query).allowed() && d.upstream_outcome().allowed
        }
        _ => false,
    }
}

/// After a DNS query of `from` (a pod) for `name` through `flow`: an answer the DNS proxy
/// allowed teaches the pod's node its addresses at this instant (`crate::fqdn`), and every
/// backend follows. A name the zone does not know is NXDOMAIN: nothing to learn.
fn learn_dns(
    backends: &mut [Box<dyn Backend>],
    world: &mut World,
    flow: &Flow,
    name: &str,
) -> Result<Option<String>, String> {
    let req = crate::proxy::L7Request::Dns(name.to_string());
    if !dns_proxy_allows(world, flow, &req) {
        return Ok(None);
    }
    let Peer::Pod(pn) = &flow.src else {
        return Ok(None);
    };
    let Some(node) = world.cluster.pods.get(pn).map(|p| p.node.clone()) else {
        return Ok(None);
    };
    let Some(rec) = world.dns.lookup(name).cloned() else {
        return Ok(None);
    };
    let now = world.clock_ns;
    world
        .cluster
        .fqdn
        .learn(&node, pn, name, &rec.ips, rec.ttl, now);
    sync_all(backends, world, &Change::Fqdn)?;
    let ips: Vec<String> = rec.ips.iter().map(|i| i.to_string()).collect();
    Ok(Some(format!(
        "{node} learned {} -> {} (ttl {})",
        api::fqdn(&name.to_lowercase()),
        ips.join(","),
        rec.ttl.max(world.cluster.fqdn.config.min_ttl)
    )))
}

/// A probe's destination (as written), protocol, port and L7 request: a `dns:` probe goes to
/// the cluster's DNS server on UDP 53 unless `protocol`/`port` say otherwise; an `http:`
/// probe is a TCP connection carrying one request.
fn probe_target(
    world: &World,
    p: &Probe,
) -> Result<
    (
        String,
        Protocol,
        Option<u16>,
        Option<crate::proxy::L7Request>,
    ),
    String,
> {
    if let Some(q) = &p.dns {
        if p.to.is_some() {
            return Err("a dns: probe goes to the cluster's DNS server (the cluster.dns entry with `pod:`); leave out `to`".into());
        }
        if p.http.is_some() {
            return Err("a probe carries one request: http or dns, not both".into());
        }
        let (to, protocol, port, req) = dns_target(world, q, p.protocol.map(|x| x.0), p.port)?;
        return Ok((to, protocol, Some(port), Some(req)));
    }
    let to = p.to.clone().ok_or("missing field `to`")?;
    let protocol = p.protocol.ok_or("missing field `protocol`")?.0;
    let request = match &p.http {
        None => None,
        Some(h) => {
            if protocol != Protocol::Tcp {
                return Err(format!(
                    "an http: probe is a TCP connection, not {protocol}"
                ));
            }
            let port = p.port.unwrap_or(80);
            let host = h.host.clone().unwrap_or_else(|| {
                if port == 80 {
                    to.clone()
                } else {
                    format!("{to}:{port}")
                }
            });
            Some(crate::proxy::L7Request::Http(crate::proxy::HttpRequest {
                method: h.method.clone().unwrap_or_else(|| "GET".into()),
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                host,
                headers: h
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }))
        }
    };
    Ok((to, protocol, p.port, request))
}

/// A DNS query's destination: the cluster's DNS server, UDP 53 unless said otherwise.
fn dns_target(
    world: &World,
    q: &str,
    protocol: Option<Protocol>,
    port: Option<u16>,
) -> Result<(String, Protocol, u16, crate::proxy::L7Request), String> {
    if q.is_empty() || !api::is_dns_query_name(q) {
        return Err(format!("dns: invalid name {q:?}"));
    }
    let server = world
        .dns
        .server
        .as_ref()
        .ok_or("a DNS query needs the cluster's DNS server: a cluster.dns entry {name, pod}")?;
    Ok((
        server.to_string(),
        protocol.unwrap_or(Protocol::Udp),
        port.unwrap_or(53),
        crate::proxy::L7Request::Dns(q.to_string()),
    ))
}

fn expectation(p: &Probe) -> Expectation {
    Expectation {
        allow: p.verdict == VerdictDecl::Allow,
        reason: p.reason.map(|r| r.0),
        match_type: p.match_type.map(|m| m.0),
        direction: p.direction.map(|d| d.0),
        redirect: p.redirect,
    }
}

/// The stream of the scenario seed that propagation delays are drawn from (splitmix64 seeded
/// with `case_seed(seed, PROPAGATION_STREAM)`), apart from any other use of the seed.
pub const PROPAGATION_STREAM: u64 = 0x7072_6f70;

/// The propagation schedule of one replay: when each control-plane change reaches each node.
#[derive(Clone, Debug)]
pub struct Propagator {
    spec: Propagation,
    rng: SplitMix64,
    /// Per node: when its last scheduled update is due (ns).
    last_due: BTreeMap<String, u64>,
}

impl Propagator {
    /// Checks the declaration against the cluster (`per-node` must name exactly its nodes).
    pub fn new(spec: &Propagation, seed: u64, world: &World) -> Result<Self, String> {
        if let Propagation::PerNode(m) = spec {
            for n in &world.cluster.nodes {
                if !m.contains_key(&n.name) {
                    return Err(format!("per-node has no delay for node {:?}", n.name));
                }
            }
            for k in m.keys() {
                if world.cluster.node(k).is_none() {
                    return Err(format!(
                        "per-node names {k:?}, which is not a node of the cluster"
                    ));
                }
            }
        }
        Ok(Propagator {
            spec: spec.clone(),
            rng: SplitMix64::new(crate::gen::case_seed(seed, PROPAGATION_STREAM)),
            last_due: BTreeMap::new(),
        })
    }

    /// Draws one change's delays, node by node in the cluster's order.
    pub fn schedule(&mut self, world: &World) -> Vec<Delivery> {
        let now = world.clock_ns;
        let mut out = Vec::new();
        for n in &world.cluster.nodes {
            let drawn = match &self.spec {
                Propagation::Fixed(d) => *d,
                Propagation::Uniform { min, max } => {
                    let steps = (max - min) / 1_000_000;
                    let k = if steps == 0 {
                        0
                    } else {
                        self.rng.next_u64() % (steps + 1)
                    };
                    min + k * 1_000_000
                }
                Propagation::PerNode(m) => m.get(&n.name).copied().unwrap_or(0),
            };
            let last = self.last_due.get(&n.name).copied().unwrap_or(0);
            let due = now.saturating_add(drawn).max(last);
            self.last_due.insert(n.name.clone(), due);
            out.push(Delivery {
                node: n.name.clone(),
                issued_ns: now,
                due_ns: due,
                drawn_ns: drawn,
            });
        }
        out
    }

    /// Nodes among those running the peers' programs (a pod's node) with an update still
    /// pending at the current instant, with when it is due.
    pub fn pending(&self, world: &World, peers: &[&Peer]) -> Vec<(String, u64)> {
        let mut nodes: Vec<&str> = peers
            .iter()
            .filter_map(|p| match p {
                Peer::Pod(pn) => world.cluster.pods.get(pn).map(|p| p.node.as_str()),
                _ => None,
            })
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
            .into_iter()
            .filter_map(|n| {
                let due = *self.last_due.get(n)?;
                (due > world.clock_ns).then(|| (n.to_string(), due))
            })
            .collect()
    }
}

/// The propagation state of a replay and the backends that give the eventual answer.
struct PropagationState {
    propagator: Propagator,
    eventual: Vec<String>,
}

impl PropagationState {
    fn transient(&self, world: &World, peers: &[&Peer]) -> Option<Transient> {
        let pending = self.propagator.pending(world, peers);
        let identity = |i: usize| match peers.get(i) {
            Some(Peer::Pod(pn)) => world.cluster.pods.get(pn).map(|p| p.identity),
            _ => None,
        };
        (!pending.is_empty()).then(|| Transient {
            pending,
            eventual: self.eventual.clone(),
            identities: (identity(0), identity(1)),
        })
    }
}

fn transient_of(
    prop: &Option<PropagationState>,
    world: &World,
    peers: &[&Peer],
) -> Option<Transient> {
    prop.as_ref().and_then(|p| p.transient(world, peers))
}

/// Syncs one change, through the propagation schedule when there is one.
fn sync_step(
    backends: &mut [Box<dyn Backend>],
    world: &World,
    change: &Change<'_>,
    due: Option<&BTreeMap<String, u64>>,
) -> Result<(), String> {
    let Some(due) = due else {
        return sync_all(backends, world, change);
    };
    for b in backends.iter_mut() {
        b.sync_due(world, change, due)
            .map_err(|e| format!("backend {}: {e}", b.name()))?;
    }
    Ok(())
}

fn sync_all(
    backends: &mut [Box<dyn Backend>],
    world: &World,
    change: &Change<'_>,
) -> Result<(), String> {
    for b in backends.iter_mut() {
        b.sync(world, change)
            .map_err(|e| format!("backend {}: {e}", b.name()))?;
    }
    Ok(())
}

/// Replays a loaded scenario on the named backends.
pub fn run(
    loaded: &LoadedScenario,
    backend_names: &[String],
    factory: BackendFactory<'_>,
) -> ScenarioReport {
    let mut report = ScenarioReport {
        name: loaded.scenario.name.clone(),
        file: loaded.path.clone(),
        backends: backend_names.to_vec(),
        steps: Vec::new(),
        error: None,
        notes: Vec::new(),
    };
    let mut backends: Vec<Box<dyn Backend>> = Vec::new();
    for name in backend_names {
        match factory(name) {
            Ok(b) => backends.push(b),
            Err(e) => {
                report.error = Some(at(&loaded.path, "backends", e).to_string());
                return report;
            }
        }
    }
    // A dry run of the timeline (no backends) first, so that a bad reference anywhere in the
    // scenario (an unknown endpoint, a probe across address families) fails it before any
    // backend runs, as a load error rather than halfway through a replay.
    if let Err(e) = world_after(loaded, None) {
        report.error = Some(e.to_string());
        return report;
    }
    if let Err(e) = replay(loaded, &mut backends, &mut report, None) {
        report.error = Some(locate(loaded, e).to_string());
    }
    report
}

/// The world after step `after_step` (1-based; 0 is the initial state; `None` the end),
/// replaying changes only.
pub fn world_after(
    loaded: &LoadedScenario,
    after_step: Option<usize>,
) -> Result<World, EngineError> {
    let steps = loaded.scenario.steps.len();
    if let Some(n) = after_step {
        if n > steps {
            return Err(at(
                &loaded.path,
                "--after-step",
                format!("the scenario has {steps} steps, not {n}"),
            ));
        }
    }
    let mut report = ScenarioReport {
        name: loaded.scenario.name.clone(),
        file: loaded.path.clone(),
        backends: vec![],
        steps: vec![],
        error: None,
        notes: vec![],
    };
    replay(loaded, &mut Vec::new(), &mut report, after_step).map_err(|e| locate(loaded, e))
}

fn replay(
    loaded: &LoadedScenario,
    backends: &mut [Box<dyn Backend>],
    report: &mut ScenarioReport,
    stop_after: Option<usize>,
) -> Result<World, EngineError> {
    let file = loaded.path.as_path();
    let mut world = build_world_at(loaded)?;
    report.notes = world.notes.clone();
    let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
    let mut prop = match &loaded.scenario.propagation {
        Some(p) => Some(PropagationState {
            propagator: Propagator::new(p, loaded.scenario.seed, &world)
                .map_err(|e| at(file, "propagation", e))?,
            eventual: backends
                .iter()
                .filter(|b| !b.lags())
                .map(|b| b.name().to_string())
                .collect(),
        }),
        None => None,
    };
    sync_all(backends, &world, &Change::Initial).map_err(|e| at(file, "initial state", e))?;
    for (i, step) in loaded.scenario.steps.iter().enumerate() {
        let index = i + 1;
        if stop_after.is_some_and(|n| index > n) {
            break;
        }
        let ctx = format!("steps[{i}] ({})", step.kind());
        let deliveries = match (&mut prop, step.is_control_plane()) {
            (Some(p), true) => p.propagator.schedule(&world),
            _ => Vec::new(),
        };
        let due_map: Option<BTreeMap<String, u64>> = (!deliveries.is_empty()).then(|| {
            deliveries
                .iter()
                .map(|d| (d.node.clone(), d.due_ns))
                .collect()
        });
        let due = due_map.as_ref();
        let outcome = match step {
            Step::Expect(probes) => {
                let mut checks = Vec::new();
                for (j, p) in probes.iter().enumerate() {
                    let pctx = format!("steps[{i}].expect[{j}]");
                    let (to, protocol, port, request) =
                        probe_target(&world, p).map_err(|e| at(file, &pctx, e))?;
                    let src = resolve(&world, file, &pctx, &p.from)?;
                    let port =
                        probe_port(protocol, port, p.icmp_type).map_err(|e| at(file, &pctx, e))?;
                    let (dst, dport) = resolve_dst(&world, file, &pctx, &src, &to, protocol, port)?;
                    same_family(&world, &src, &dst)
                        .map_err(|e| at(file, format!("{pctx} ({} -> {to})", p.from), e))?;
                    let transient = transient_of(&prop, &world, &[&src, &dst]);
                    let flow = Flow {
                        src,
                        dst,
                        protocol,
                        dport,
                    };
                    let mut check = run_l7_probe(
                        backends,
                        &world,
                        &p.from,
                        &to,
                        flow.clone(),
                        request.as_ref(),
                        Some(expectation(p)),
                        transient,
                    );
                    // Reported as written: a service probe on the service's port.
                    check.port = port;
                    checks.push(check);
                    if let Some(crate::proxy::L7Request::Dns(q)) = &request {
                        learn_dns(backends, &mut world, &flow, q)
                            .map_err(|e| at(file, &pctx, e))?;
                    }
                }
                StepOutcome::Probes(checks)
            }
            Step::ExpectMatrix(m) => {
                let table = m.parse_table().map_err(|e| at(file, &ctx, e))?;
                let protocol = m.protocol.0;
                let dport =
                    probe_port(protocol, m.port, m.icmp_type).map_err(|e| at(file, &ctx, e))?;
                let mut cells = Vec::new();
                for (r, row) in table.rows.iter().enumerate() {
                    let src = resolve(&world, file, &ctx, row)?;
                    let mut line = Vec::new();
                    for (c, col) in table.columns.iter().enumerate() {
                        let (dst, cell_port) =
                            resolve_dst(&world, file, &ctx, &src, col, protocol, dport)?;
                        same_family(&world, &src, &dst).map_err(|e| {
                            at(
                                file,
                                format!("steps[{i}].expect-matrix.table ({row} -> {col})"),
                                e,
                            )
                        })?;
                        let expected = table.cells[r][c].map(|allow| Expectation {
                            allow,
                            reason: None,
                            match_type: None,
                            direction: None,
                            redirect: None,
                        });
                        let transient = transient_of(&prop, &world, &[&src, &dst]);
                        let flow = Flow {
                            src: src.clone(),
                            dst,
                            protocol,
                            dport: cell_port,
                        };
                        let mut check =
                            run_probe(backends, &world, row, col, flow, expected, transient);
                        check.port = dport;
                        line.push(check);
                    }
                    cells.push(line);
                }
                StepOutcome::Matrix(Box::new(MatrixCheck {
                    port: dport,
                    protocol,
                    rows: table.rows,
                    columns: table.columns,
                    expected: table.cells,
                    cells,
                }))
            }
            Step::Apply(src) => {
                let mut done = Vec::new();
                let f = manifest_file_of(file, src)?;
                let note = skipped_note(src, &f);
                for m in f.manifests {
                    match apply_manifest(&mut world, &m).map_err(|e| at(file, &ctx, e))? {
                        Applied::Policy(r) => {
                            sync_step(backends, &world, &Change::PolicyApplied(&r), due)
                                .map_err(|e| at(file, &ctx, e))?;
                            done.push(r.to_string());
                        }
                        Applied::CidrGroup(name) => {
                            sync_step(backends, &world, &Change::CidrGroupChanged(&name), due)
                                .map_err(|e| at(file, &ctx, e))?;
                            done.push(format!("CiliumCIDRGroup {name}"));
                        }
                    }
                }
                StepOutcome::Change(match note {
                    Some(n) => format!("applied {}; {n}", done.join(", ")),
                    None => format!("applied {}", done.join(", ")),
                })
            }
            Step::Delete(d) if d.kind == "CiliumCIDRGroup" => {
                if !world.cluster.delete_cidr_group(&d.name) {
                    return Err(at(
                        file,
                        &ctx,
                        format!("no CiliumCIDRGroup {} to delete", d.name),
                    ));
                }
                sync_step(backends, &world, &Change::CidrGroupChanged(&d.name), due)
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!("deleted CiliumCIDRGroup {}", d.name))
            }
            Step::Delete(d) => {
                let kind = PolicyKind::parse(&d.kind).ok_or_else(|| {
                    at(file, &ctx, format!("unknown kind {:?}: expected NetworkPolicy, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or CiliumCIDRGroup", d.kind))
                })?;
                let namespace = match kind {
                    PolicyKind::CiliumClusterwideNetworkPolicy => None,
                    _ => Some(d.namespace.clone().unwrap_or_else(|| "default".into())),
                };
                let r = PolicyRef {
                    kind,
                    namespace,
                    name: d.name.clone(),
                };
                if !world.repo.delete(&r) {
                    return Err(at(file, &ctx, format!("no {r} to delete")));
                }
                sync_step(backends, &world, &Change::PolicyDeleted(&r), due)
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!("deleted {r}"))
            }
            Step::CreatePod(p) => {
                let change = world
                    .cluster
                    .add_pod(pod_spec(p))
                    .map_err(|e| at(file, &ctx, e))?;
                let pn = PodName::parse(&p.name)
                    .ok_or_else(|| at(file, &ctx, ClusterError::BadPodName(p.name.clone())))?;
                sync_step(backends, &world, &Change::Identities(&change), due)
                    .map_err(|e| at(file, &ctx, e))?;
                sync_step(backends, &world, &Change::PodAdded(&pn), due)
                    .map_err(|e| at(file, &ctx, e))?;
                let pod = &world.cluster.pods[&pn];
                StepOutcome::Change(format!(
                    "created pod {pn} ip {} identity {}",
                    pod.ip, pod.identity
                ))
            }
            Step::DeletePod(name) => {
                let pn = PodName::parse(name)
                    .ok_or_else(|| at(file, &ctx, ClusterError::BadPodName(name.clone())))?;
                let pod = world
                    .cluster
                    .pods
                    .get(&pn)
                    .cloned()
                    .ok_or_else(|| at(file, &ctx, ClusterError::UnknownPod(name.clone())))?;
                let change = world
                    .cluster
                    .delete_pod(name)
                    .map_err(|e| at(file, &ctx, e))?;
                sync_step(backends, &world, &Change::PodRemoved(&pod), due)
                    .map_err(|e| at(file, &ctx, e))?;
                sync_step(backends, &world, &Change::Identities(&change), due)
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!("deleted pod {pn}"))
            }
            Step::LabelPod(l) => {
                let before = identities_of(&world.cluster);
                let change = world
                    .cluster
                    .label_pod(&l.pod, &l.set, &l.unset)
                    .map_err(|e| at(file, &ctx, e))?;
                relabel_sync(backends, &world, &before, &change, due)
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!(
                    "labelled pod {}{}",
                    l.pod,
                    describe_change(&change)
                ))
            }
            Step::LabelNamespace(l) => {
                let before = identities_of(&world.cluster);
                let change = world
                    .cluster
                    .label_namespace(&l.namespace, &l.set, &l.unset)
                    .map_err(|e| at(file, &ctx, e))?;
                relabel_sync(backends, &world, &before, &change, due)
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!(
                    "labelled namespace {}{}",
                    l.namespace,
                    describe_change(&change)
                ))
            }
            Step::Connect(cd) => {
                if conns.contains_key(&cd.id) {
                    return Err(at(
                        file,
                        &ctx,
                        format!("connection {:?} already exists", cd.id),
                    ));
                }
                let src = resolve(&world, file, &ctx, &cd.from)?;
                let protocol = cd.protocol.0;
                let port = probe_port(protocol, cd.port, None).map_err(|e| at(file, &ctx, e))?;
                let (dst, dport) = resolve_dst(&world, file, &ctx, &src, &cd.to, protocol, port)?;
                // Connections take source ports (ICMP ids) from their own range, apart from
                // the probes' ports, so they never meet a probe's conntrack entry.
                let sport = CONN_FIRST_PORT + conns.len() as u16;
                let conn = Conn {
                    from: cd.from.clone(),
                    to: cd.to.clone(),
                    src,
                    dst,
                    protocol,
                    sport,
                    dport,
                    replies: 0,
                    established: false,
                    last_ns: world.clock_ns,
                };
                let pkt = conn.packet(false, TCP_SYN);
                let mut conn = conn;
                conn.established = oracle::decide(&world.cluster, &world.repo, &pkt.flow())
                    .upstream_outcome()
                    .allowed;
                let transient = transient_of(&prop, &world, &[&conn.src, &conn.dst]);
                let check = run_packet(
                    backends,
                    &world,
                    &conn,
                    false,
                    format!("{} connect", cd.id),
                    &pkt,
                    None,
                    transient,
                );
                conns.insert(cd.id.clone(), conn);
                StepOutcome::Probes(vec![check])
            }
            Step::Send(sd) => {
                let conn = conns.get_mut(&sd.id).ok_or_else(|| {
                    at(
                        file,
                        &ctx,
                        format!("no connection {:?} (connect it first)", sd.id),
                    )
                })?;
                let reply = sd.direction == SendDirection::Reply;
                let flags = if reply && conn.replies == 0 {
                    TCP_SYN | TCP_ACK
                } else {
                    TCP_ACK
                };
                if reply {
                    conn.replies += 1;
                }
                conn.last_ns = world.clock_ns;
                let pkt = conn.packet(reply, flags);
                let what = if reply { "reply" } else { "forward" };
                let expected = Expectation {
                    allow: sd.verdict == VerdictDecl::Allow,
                    reason: None,
                    match_type: None,
                    direction: None,
                    redirect: None,
                };
                let conn = conn.clone();
                let transient = transient_of(&prop, &world, &[&conn.src, &conn.dst]);
                let check = run_packet(
                    backends,
                    &world,
                    &conn,
                    reply,
                    format!("{} {what}", sd.id),
                    &pkt,
                    Some(expected),
                    transient,
                );
                StepOutcome::Probes(vec![check])
            }
            Step::Authenticate(a) => {
                let pod = |name: &str| -> Result<PodName, EngineError> {
                    match resolve(&world, file, &ctx, name)? {
                        Peer::Pod(p) => Ok(p),
                        other => Err(at(
                            file,
                            &ctx,
                            format!(
                                "authenticate: {name} is {other}, not a pod: only pods have \
                                 identities the auth manager authenticates"
                            ),
                        )),
                    }
                };
                let (from, to) = (pod(&a.from)?, pod(&a.to)?);
                let lifetime = a
                    .lifetime
                    .map_or(crate::auth::DEFAULT_AUTH_LIFETIME_NS, |d| d.0);
                let now = world.clock_ns;
                let written = crate::auth::authentication_entries(&world.cluster, &from, &to)
                    .map_err(|e| at(file, &ctx, format!("authenticate: {e}")))?;
                world
                    .cluster
                    .auth
                    .store(&written, now.saturating_add(lifetime));
                sync_all(backends, &world, &Change::Authenticated(&written))
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!(
                    "authenticated {from} and {to} (spire) until {}",
                    format_ns(now.saturating_add(lifetime))
                ))
            }
            Step::Advance(d) => {
                world.clock_ns = world
                    .clock_ns
                    .checked_add(d.0)
                    .ok_or_else(|| at(file, &ctx, "the virtual clock overflowed"))?;
                world.cluster.auth.set_clock(world.clock_ns);
                sync_all(backends, &world, &Change::Clock).map_err(|e| at(file, &ctx, e))?;
                // The DNS and conntrack garbage collectors due by now (`crate::fqdn`).
                let now = world.clock_ns;
                let held: Vec<(PodName, std::net::IpAddr, u64)> = conns
                    .values()
                    .filter_map(|c| c.held(&world.cluster))
                    .collect();
                let alive = |pod: &PodName, ip: std::net::IpAddr, t: u64| {
                    held.iter()
                        .any(|(p, i, until)| p == pod && *i == ip && t <= *until)
                };
                let changed = world.cluster.fqdn.advance(now, &alive);
                if changed {
                    sync_all(backends, &world, &Change::Fqdn).map_err(|e| at(file, &ctx, e))?;
                }
                StepOutcome::Change(format!("clock at {}", format_ns(world.clock_ns)))
            }
            Step::DnsLookup(l) => {
                let (to, protocol, port, request) =
                    dns_target(&world, &l.name, l.protocol.map(|p| p.0), l.port)
                        .map_err(|e| at(file, &ctx, e))?;
                let src = resolve(&world, file, &ctx, &l.from)?;
                let (dst, dport) = resolve_dst(&world, file, &ctx, &src, &to, protocol, port)?;
                same_family(&world, &src, &dst)
                    .map_err(|e| at(file, format!("{ctx} ({} -> {to})", l.from), e))?;
                let transient = transient_of(&prop, &world, &[&src, &dst]);
                let flow = Flow {
                    src,
                    dst,
                    protocol,
                    dport,
                };
                let mut check = run_l7_probe(
                    backends,
                    &world,
                    &l.from,
                    &to,
                    flow.clone(),
                    Some(&request),
                    None,
                    transient,
                );
                check.context = Some(format!("dns {}", l.name));
                learn_dns(backends, &mut world, &flow, &l.name).map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Probes(vec![check])
            }
        };
        let flows = backends
            .iter_mut()
            .map(|b| (b.name().to_string(), b.take_flows(&world)))
            .filter(|(_, f)| !f.is_empty())
            .collect();
        let outcome = match outcome {
            StepOutcome::Change(c) if !deliveries.is_empty() => {
                StepOutcome::Change(format!("{c}; {}", describe_deliveries(&deliveries)))
            }
            other => other,
        };
        report.steps.push(StepReport {
            index,
            kind: step.kind(),
            outcome,
            flows,
            deliveries,
        });
    }
    Ok(world)
}

/// First source port (ICMP identifier) of connections; probes use lower ports.
pub const CONN_FIRST_PORT: u16 = 50000;

/// A connection opened by a `connect` step.
#[derive(Clone, Debug)]
struct Conn {
    from: String,
    to: String,
    src: Peer,
    dst: Peer,
    protocol: Protocol,
    sport: u16,
    dport: u16,
    replies: u32,
    /// Whether the connection was let through at `connect` (the reference's decision): only
    /// then does conntrack hold it.
    established: bool,
    /// Virtual time of its last packet (ns).
    last_ns: u64,
}

impl Conn {
    /// How long conntrack holds this connection: its entry's
    /// lifetime from the last packet (`crate::conntrack`: SYN only, established TCP, or
    /// non-TCP), what the CT GC walks when it marks DNS zombies alive.
    /// `(source pod, destination address, held until)`, or `None` when never established
    /// or not from a pod.
    fn held(&self, c: &Cluster) -> Option<(PodName, std::net::IpAddr, u64)> {
        use crate::conntrack::{
            CT_CONNECTION_LIFETIME_NONTCP, CT_CONNECTION_LIFETIME_TCP, CT_SYN_TIMEOUT,
        };
        let lifetime = match (self.protocol, self.replies) {
            (Protocol::Tcp, 0) => CT_SYN_TIMEOUT,
            (Protocol::Tcp, _) => CT_CONNECTION_LIFETIME_TCP,
            _ => CT_CONNECTION_LIFETIME_NONTCP,
        };
        let Peer::Pod(p) = &self.src else {
            return None;
        };
        if !self.established {
            return None;
        }
        Some((
            p.clone(),
            c.ip_of(&self.dst)?,
            self.last_ns.saturating_add(lifetime),
        ))
    }

    /// A packet of this connection, forward or reply.
    fn packet(&self, reply: bool, tcp_flags: u8) -> ConnPacket {
        let icmp = self.protocol.is_icmp();
        let v6 = self.protocol == Protocol::Icmpv6;
        let (src, dst) = if reply {
            (&self.dst, &self.src)
        } else {
            (&self.src, &self.dst)
        };
        // ICMP echo: the identifier sits in sport on requests and dport on replies.
        let (sport, dport, icmp_type) = match (icmp, reply) {
            (true, false) => (self.sport, 0, if v6 { 128 } else { 8 }),
            (true, true) => (0, self.sport, if v6 { 129 } else { 0 }),
            (false, false) => (self.sport, self.dport, 0),
            (false, true) => (self.dport, self.sport, 0),
        };
        ConnPacket {
            src: src.clone(),
            dst: dst.clone(),
            protocol: self.protocol,
            sport,
            dport,
            tcp_flags: if self.protocol == Protocol::Tcp {
                tcp_flags
            } else {
                0
            },
            icmp_type,
        }
    }
}

// One argument per part of a packet check; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn run_packet(
    backends: &mut [Box<dyn Backend>],
    world: &World,
    conn: &Conn,
    reply: bool,
    context: String,
    pkt: &ConnPacket,
    expected: Option<Expectation>,
    transient: Option<Transient>,
) -> ProbeCheck {
    let results = backends
        .iter_mut()
        .map(|b| (b.name().to_string(), b.packet(world, pkt)))
        .collect();
    let (from, to) = if reply {
        (&conn.to, &conn.from)
    } else {
        (&conn.from, &conn.to)
    };
    ProbeCheck {
        context: Some(context),
        from: from.clone(),
        to: to.clone(),
        protocol: pkt.protocol,
        port: pkt.policy_port(),
        expected,
        results,
        transient,
    }
}

/// Virtual time for humans: `90s`, `1h2m3s`, `1.5s`.
pub fn format_ns(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac > 0 {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    } else if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn identities_of(c: &Cluster) -> Vec<(PodName, crate::identity::Identity)> {
    c.pods
        .values()
        .map(|p| (p.name.clone(), p.identity))
        .collect()
}

fn relabel_sync(
    backends: &mut [Box<dyn Backend>],
    world: &World,
    before: &[(PodName, crate::identity::Identity)],
    change: &IdentityChange,
    due: Option<&BTreeMap<String, u64>>,
) -> Result<(), String> {
    let moved: Vec<(PodName, crate::identity::Identity)> = before
        .iter()
        .filter(|(pn, id)| {
            world
                .cluster
                .pods
                .get(pn)
                .is_some_and(|p| p.identity != *id)
        })
        .cloned()
        .collect();
    // New identities first, so selectors know them before pods move onto them; pods next;
    // released identities last.
    let added = IdentityChange {
        added: change.added.clone(),
        removed: vec![],
    };
    let removed = IdentityChange {
        added: vec![],
        removed: change.removed.clone(),
    };
    sync_step(backends, world, &Change::Identities(&added), due)?;
    sync_step(backends, world, &Change::PodsRelabelled(&moved), due)?;
    sync_step(backends, world, &Change::Identities(&removed), due)
}

/// `reaches node-1 at 0s, node-2 at 3s`.
fn describe_deliveries(ds: &[Delivery]) -> String {
    let parts: Vec<String> = ds
        .iter()
        .map(|d| format!("{} at {}", d.node, format_ns(d.due_ns)))
        .collect();
    format!("reaches {}", parts.join(", "))
}

fn describe_change(c: &IdentityChange) -> String {
    let mut s = String::new();
    if !c.added.is_empty() {
        let ids: Vec<String> = c.added.iter().map(|i| i.to_string()).collect();
        let _ = write!(s, "; new identities {}", ids.join(","));
    }
    if !c.removed.is_empty() {
        let ids: Vec<String> = c.removed.iter().map(|i| i.to_string()).collect();
        let _ = write!(s, "; released identities {}", ids.join(","));
    }
    s
}

/// Loads and replays one scenario file.
pub fn run_file(
    path: &Path,
    backend_names: &[String],
    factory: BackendFactory<'_>,
) -> ScenarioReport {
    match scenario::load(path) {
        Ok(loaded) => run(&loaded, backend_names, factory),
        Err(e) => ScenarioReport {
            name: path.display().to_string(),
            file: path.to_path_buf(),
            backends: backend_names.to_vec(),
            steps: Vec::new(),
            error: Some(e.to_string()),
            notes: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect_match(m: MatchType) -> Expectation {
        Expectation {
            allow: true,
            reason: None,
            match_type: Some(m),
            direction: None,
            redirect: None,
        }
    }

    #[test]
    fn pinned_match_on_unenforced_flow_is_all() {
        // Allowed, no side enforcing: the allow-all key, match type all (spec §7 row 27).
        let unenforced = Outcome {
            allowed: true,
            reason: None,
            direction: None,
            match_type: None,
            redirect: crate::verdict::Redirects::default(),
        };
        assert!(expect_match(MatchType::All).holds(&unenforced));
        assert!(!expect_match(MatchType::L3L4).holds(&unenforced));
        // An enforcing side without a computed match type (the oracle): not held against it.
        let oracle_enforced = Outcome {
            direction: Some(Direction::Ingress),
            ..unenforced.clone()
        };
        assert!(expect_match(MatchType::L3L4).holds(&oracle_enforced));
        // A computed match type is compared as it is.
        let computed = Outcome {
            match_type: Some(MatchType::L3Only),
            ..oracle_enforced
        };
        assert!(expect_match(MatchType::L3Only).holds(&computed));
        assert!(!expect_match(MatchType::All).holds(&computed));
    }
}
