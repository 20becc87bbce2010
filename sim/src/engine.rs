//! The scenario engine: replays a scenario's timeline on one or more backends and checks
//! every expectation, and every backend against the others.
//!
//! The engine owns the world (cluster state, policy repository, virtual clock). A backend
//! sees each change through [`Backend::sync`] and answers probes through [`Backend::probe`];
//! the oracle is the backend that needs no sync. Datapath backends plug in from other crates
//! through [`BackendFactory`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::api::{self, Manifest};
use crate::cluster::{
    Cluster, ClusterError, ContainerPort, IdentityChange, Peer, PodName, PodSpec, Protocol,
};
use crate::oracle::{self, Flow};
use crate::policy::{PolicyKind, PolicyRef, Repository};
use crate::scenario::{
    self, LoadedScenario, PodDecl, PolicySource, Probe, ScenarioError, Step, VerdictDecl,
};
use crate::translate;
use crate::verdict::{Direction, DropReason, MatchType, Outcome};

/// The simulated world at one instant.
#[derive(Debug, Default)]
pub struct World {
    pub cluster: Cluster,
    pub repo: Repository,
    /// Virtual time in nanoseconds.
    pub clock_ns: u64,
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
}

/// A backend: something that decides connection attempts.
pub trait Backend {
    fn name(&self) -> &str;
    /// Brings the backend up to date after a change to the world.
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String>;
    /// Decides one new connection attempt.
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String>;
    /// Flow events (Hubble-style) observed since the last call; backends without a datapath
    /// have none.
    fn take_flows(&mut self, _world: &World) -> Vec<FlowRecord> {
        Vec::new()
    }
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

/// The oracle as a backend.
#[derive(Debug, Default)]
pub struct OracleBackend;

impl Backend for OracleBackend {
    fn name(&self) -> &str {
        "oracle"
    }
    fn sync(&mut self, _: &World, _: &Change<'_>) -> Result<(), String> {
        Ok(())
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        Ok(oracle::decide(&world.cluster, &world.repo, flow).outcome())
    }
}

/// What a probe expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub allow: bool,
    pub reason: Option<DropReason>,
    pub match_type: Option<MatchType>,
    pub direction: Option<Direction>,
}

impl Expectation {
    /// Whether an outcome meets the expectation. Fields the backend does not compute (a
    /// match type from the oracle) are not held against it.
    pub fn holds(&self, o: &Outcome) -> bool {
        if o.allowed != self.allow {
            return false;
        }
        if let (Some(e), false) = (self.reason, o.allowed) {
            if o.reason != Some(e) {
                return false;
            }
        }
        if let (Some(e), Some(a)) = (self.match_type, o.match_type) {
            if e != a {
                return false;
            }
        }
        if let Some(e) = self.direction {
            if o.direction != Some(e) {
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
        Ok(())
    }
}

/// One probe on every backend.
#[derive(Clone, Debug)]
pub struct ProbeCheck {
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub port: u16,
    pub expected: Option<Expectation>,
    /// (backend, outcome or error), in backend order.
    pub results: Vec<(String, Result<Outcome, String>)>,
}

impl ProbeCheck {
    pub fn label(&self) -> String {
        if self.protocol.is_icmp() {
            format!(
                "{} -> {} {} type {}",
                self.from, self.to, self.protocol, self.port
            )
        } else {
            format!(
                "{} -> {} {}/{}",
                self.from, self.to, self.port, self.protocol
            )
        }
    }
    /// Backends whose outcome fails the expectation (or errored).
    pub fn failures(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, r)| match (r, &self.expected) {
                (Err(_), _) => true,
                (Ok(o), Some(e)) => !e.holds(o),
                (Ok(_), None) => false,
            })
            .map(|(b, _)| b.as_str())
            .collect()
    }
    /// Whether backends disagree on verdict, drop reason or deciding direction, or (among
    /// backends that compute one) on the match type.
    pub fn disagreement(&self) -> bool {
        let oks: Vec<&Outcome> = self
            .results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        let Some(first) = oks.first() else {
            return false;
        };
        if oks.iter().any(|o| {
            o.allowed != first.allowed || o.reason != first.reason || o.direction != first.direction
        }) {
            return true;
        }
        let mut matches = oks.iter().filter_map(|o| o.match_type);
        match matches.next() {
            Some(m) => matches.any(|x| x != m),
            None => false,
        }
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
    #[error("{file}: {context}: {message}")]
    At {
        file: PathBuf,
        context: String,
        message: String,
    },
}

fn at(file: &Path, context: impl Into<String>, message: impl std::fmt::Display) -> EngineError {
    EngineError::At {
        file: file.to_path_buf(),
        context: context.into(),
        message: message.to_string(),
    }
}

fn pod_spec(d: &PodDecl) -> PodSpec {
    PodSpec {
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

/// Reads the manifests a policy source names (relative paths are relative to the scenario).
pub fn manifests_of(
    scenario_path: &Path,
    src: &PolicySource,
) -> Result<Vec<Manifest>, EngineError> {
    match src {
        PolicySource::Inline(m) => Ok(vec![(**m).clone()]),
        PolicySource::File(rel) => {
            let base = scenario_path.parent().unwrap_or(Path::new("."));
            let path = base.join(rel);
            api::load_manifests(&path)
                .map_err(|e| EngineError::Scenario(ScenarioError::Manifest(e)))
        }
    }
}

/// Builds the initial world of a scenario (cluster and policies at time 0).
pub fn build_world(loaded: &LoadedScenario) -> Result<World, EngineError> {
    let s = &loaded.scenario;
    let file = &loaded.path;
    let mut world = World {
        cluster: Cluster::new(),
        ..Default::default()
    };
    let c = &mut world.cluster;
    for (i, n) in s.cluster.nodes.iter().enumerate() {
        c.add_node(&n.name, n.ip)
            .map_err(|e| at(file, format!("cluster.nodes[{i}]"), e))?;
    }
    if c.nodes.is_empty() {
        c.add_node("node-1", None)
            .map_err(|e| at(file, "cluster.nodes", e))?;
    }
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
    for (i, src) in s.policies.iter().enumerate() {
        for m in manifests_of(file, src).map_err(|e| match e {
            EngineError::At { .. } => e,
            other => at(file, format!("policies[{i}]"), other),
        })? {
            world
                .repo
                .apply(translate::policy_ref(&m), translate::translate(&m));
        }
    }
    Ok(world)
}

fn resolve(world: &World, file: &Path, ctx: &str, name: &str) -> Result<Peer, EngineError> {
    world.cluster.resolve(name).ok_or_else(|| {
        at(
            file,
            ctx,
            format!("unknown endpoint {name:?}: expected ns/pod, host:<node>, an externals name or an IP address"),
        )
    })
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
) -> ProbeCheck {
    let results = backends
        .iter_mut()
        .map(|b| (b.name().to_string(), b.probe(world, &flow)))
        .collect();
    ProbeCheck {
        from: from.to_string(),
        to: to.to_string(),
        protocol: flow.protocol,
        port: flow.dport,
        expected,
        results,
    }
}

fn expectation(p: &Probe) -> Expectation {
    Expectation {
        allow: p.verdict == VerdictDecl::Allow,
        reason: p.reason.map(|r| r.0),
        match_type: p.match_type.map(|m| m.0),
        direction: p.direction.map(|d| d.0),
    }
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
    if let Err(e) = replay(loaded, &mut backends, &mut report, None) {
        report.error = Some(e.to_string());
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
    };
    replay(loaded, &mut Vec::new(), &mut report, after_step)
}

fn replay(
    loaded: &LoadedScenario,
    backends: &mut [Box<dyn Backend>],
    report: &mut ScenarioReport,
    stop_after: Option<usize>,
) -> Result<World, EngineError> {
    let file = loaded.path.as_path();
    let mut world = build_world(loaded)?;
    sync_all(backends, &world, &Change::Initial).map_err(|e| at(file, "initial state", e))?;
    for (i, step) in loaded.scenario.steps.iter().enumerate() {
        let index = i + 1;
        if stop_after.is_some_and(|n| index > n) {
            break;
        }
        let ctx = format!("steps[{i}] ({})", step.kind());
        let outcome = match step {
            Step::Expect(probes) => {
                let mut checks = Vec::new();
                for (j, p) in probes.iter().enumerate() {
                    let pctx = format!("{ctx} probe {j}");
                    let src = resolve(&world, file, &pctx, &p.from)?;
                    let dst = resolve(&world, file, &pctx, &p.to)?;
                    let dport = probe_port(p.protocol.0, p.port, p.icmp_type)
                        .map_err(|e| at(file, &pctx, e))?;
                    if p.redirect == Some(true) {
                        return Err(at(
                            file,
                            &pctx,
                            "not supported yet: redirect (L7 proxy redirects are not modelled)",
                        ));
                    }
                    let flow = Flow {
                        src,
                        dst,
                        protocol: p.protocol.0,
                        dport,
                    };
                    checks.push(run_probe(
                        backends,
                        &world,
                        &p.from,
                        &p.to,
                        flow,
                        Some(expectation(p)),
                    ));
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
                        let dst = resolve(&world, file, &ctx, col)?;
                        let expected = table.cells[r][c].map(|allow| Expectation {
                            allow,
                            reason: None,
                            match_type: None,
                            direction: None,
                        });
                        let flow = Flow {
                            src: src.clone(),
                            dst,
                            protocol,
                            dport,
                        };
                        line.push(run_probe(backends, &world, row, col, flow, expected));
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
                for m in manifests_of(file, src)? {
                    let r = translate::policy_ref(&m);
                    world.repo.apply(r.clone(), translate::translate(&m));
                    sync_all(backends, &world, &Change::PolicyApplied(&r))
                        .map_err(|e| at(file, &ctx, e))?;
                    done.push(r.to_string());
                }
                StepOutcome::Change(format!("applied {}", done.join(", ")))
            }
            Step::Delete(d) => {
                let kind = PolicyKind::parse(&d.kind).ok_or_else(|| {
                    at(file, &ctx, format!("unknown kind {:?}: expected NetworkPolicy, CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy", d.kind))
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
                sync_all(backends, &world, &Change::PolicyDeleted(&r))
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
                sync_all(backends, &world, &Change::Identities(&change))
                    .map_err(|e| at(file, &ctx, e))?;
                sync_all(backends, &world, &Change::PodAdded(&pn))
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
                sync_all(backends, &world, &Change::PodRemoved(&pod))
                    .map_err(|e| at(file, &ctx, e))?;
                sync_all(backends, &world, &Change::Identities(&change))
                    .map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!("deleted pod {pn}"))
            }
            Step::LabelPod(l) => {
                let before = identities_of(&world.cluster);
                let change = world
                    .cluster
                    .label_pod(&l.pod, &l.set, &l.unset)
                    .map_err(|e| at(file, &ctx, e))?;
                relabel_sync(backends, &world, &before, &change).map_err(|e| at(file, &ctx, e))?;
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
                relabel_sync(backends, &world, &before, &change).map_err(|e| at(file, &ctx, e))?;
                StepOutcome::Change(format!(
                    "labelled namespace {}{}",
                    l.namespace,
                    describe_change(&change)
                ))
            }
            Step::Connect(_) | Step::Send(_) | Step::Advance(_) => {
                return Err(at(
                    file,
                    &ctx,
                    "not supported yet: connect/send/advance need conntrack and virtual time, which are not built yet",
                ));
            }
        };
        let flows = backends
            .iter_mut()
            .map(|b| (b.name().to_string(), b.take_flows(&world)))
            .filter(|(_, f)| !f.is_empty())
            .collect();
        report.steps.push(StepReport {
            index,
            kind: step.kind(),
            outcome,
            flows,
        });
    }
    Ok(world)
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
    sync_all(backends, world, &Change::Identities(&added))?;
    sync_all(backends, world, &Change::PodsRelabelled(&moved))?;
    sync_all(backends, world, &Change::Identities(&removed))
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
        },
    }
}
