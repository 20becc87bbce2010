//! The incremental control plane is exact: after every control-plane change, every node's
//! maps, maintained by applying only the journalled entries (`NodeDelta`), equal what the
//! full recomputation (`NodeMaps::from_model`) gives, byte for byte, both in the map writer's
//! record and in the datapath's maps themselves (dumped).
//!
//! With propagation delays a node may lag: a node with `k` updates still queued must hold
//! exactly the full view of the model as it was `k` changes ago. The checker keeps the full
//! view of every node after each change and compares at every point where the engine calls
//! the backend (after each change, each clock move, each probe and packet).
//!
//! Inputs: generated churn (pod create/delete with address reuse, pod relabel, namespace
//! relabel, policy apply/replace/delete; targeted and fuzz policies, the latter with CIDR
//! selectors whose CIDR identities come and go) on several seeds, generated fuzz scenarios,
//! and every scenario under `scenarios/` with a control-plane step (identity reuse, host vs
//! remote-node per node, CIDR with except, connections).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use verdict::backends;
use verdict::churn::{self, ChurnArgs};
use verdict::dpbackend::DatapathBackend;
use verdict_datapath::abi::maps;
use verdict_datapath::backend::Datapath;
use verdict_datapath::control::{MapContents, NodeMaps, WriteStats};
use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{self, Backend, Change, FlowRecord, World};
use verdict_sim::gen::{self, GenConfig};
use verdict_sim::oracle::Flow;
use verdict_sim::scenario;
use verdict_sim::verdict::Outcome;

/// How many past full views are kept: more than any node's queue gets in these runs.
const HISTORY: usize = 512;

/// An rbpf backend that checks its maps against the full recomputation at every call.
struct Checked {
    inner: DatapathBackend,
    /// Every node's full view after each of the last control-plane updates, newest last.
    history: VecDeque<BTreeMap<String, NodeMaps>>,
    /// Comparisons made (each node at each point), to prove the checker ran.
    compared: std::rc::Rc<std::cell::Cell<u64>>,
    label: String,
    /// The backend's write count when the datapaths were last dumped: only the map writer
    /// writes these maps, so they need dumping again only after it wrote.
    dumped_at: Option<WriteStats>,
}

fn dump(dp: &dyn Datapath, map: &str) -> MapContents {
    dp.map_dump(map)
        .unwrap_or_else(|e| panic!("dumping {map}: {e}"))
        .into_iter()
        .collect()
}

fn same(label: &str, what: &str, got: &MapContents, want: &MapContents) {
    if got == want {
        return;
    }
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, v)| want.get(*k) != Some(*v))
        .take(5)
        .collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .collect();
    panic!(
        "{label}: {what}: {} entries, full recomputation has {}; wrong or extra {extra:x?}, \
         missing or different {missing:x?}",
        got.len(),
        want.len()
    );
}

impl Checked {
    fn new(label: &str, compared: std::rc::Rc<std::cell::Cell<u64>>) -> Self {
        Checked {
            inner: backends::datapath_backend("rbpf").expect("rbpf backend"),
            history: VecDeque::new(),
            compared,
            label: label.to_string(),
            dumped_at: None,
        }
    }

    /// Records every node's full view of the model as it is now (after an update).
    fn record(&mut self, world: &World) {
        let model = self.inner.model().expect("model after sync");
        let views = world
            .cluster
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    NodeMaps::from_model(model, &n.name, world.clock_ns),
                )
            })
            .collect();
        self.history.push_back(views);
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    fn check(&mut self, world: &World, at: &str) {
        let label = format!("{} {at} at {}ns", self.label, world.clock_ns);
        let dump_maps = self.dumped_at != Some(self.inner.writes());
        self.dumped_at = Some(self.inner.writes());
        let dps: BTreeMap<&str, &dyn Datapath> = self.inner.datapaths().collect();
        for n in &world.cluster.nodes {
            let (written, pending) = self
                .inner
                .written(&n.name)
                .unwrap_or_else(|| panic!("{label}: no datapath for {}", n.name));
            assert!(
                pending < self.history.len(),
                "{label}: {} has {pending} updates queued, more than the history kept",
                n.name
            );
            // The node has applied every update but its `pending` newest ones.
            let want = &self.history[self.history.len() - 1 - pending][&n.name];
            let node_label = format!("{label} node {} ({pending} queued)", n.name);
            same(
                &node_label,
                "written ipcache",
                &written.ipcache,
                &want.ipcache,
            );
            same(
                &node_label,
                "written endpoints",
                &written.endpoints,
                &want.endpoints,
            );
            same(&node_label, "written policy", &written.policy, &want.policy);
            assert_eq!(
                written.clock_ns, world.clock_ns,
                "{node_label}: the clock map lags"
            );
            self.compared.set(self.compared.get() + 1);
            if !dump_maps {
                continue;
            }
            let dp = dps[n.name.as_str()];
            same(
                &node_label,
                "ipcache map",
                &dump(dp, maps::IPCACHE),
                &want.ipcache,
            );
            same(
                &node_label,
                "endpoint map",
                &dump(dp, maps::LXC),
                &want.endpoints,
            );
            same(
                &node_label,
                "policy map",
                &dump(dp, maps::POLICY),
                &want.policy,
            );
        }
    }

    /// Whether the inner backend turns this change into a map update (it does for every
    /// change but a clock move once its nodes exist).
    fn updates(&self, change: &Change<'_>) -> bool {
        !matches!(change, Change::Clock) || self.inner.datapaths().next().is_none()
    }
}

impl Backend for Checked {
    fn name(&self) -> &str {
        "rbpf"
    }
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        let updates = self.updates(change);
        self.inner.sync(world, change)?;
        if updates {
            self.record(world);
        }
        self.check(world, "sync");
        Ok(())
    }
    fn sync_due(
        &mut self,
        world: &World,
        change: &Change<'_>,
        due: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        let updates = self.updates(change);
        self.inner.sync_due(world, change, due)?;
        if updates {
            self.record(world);
        }
        self.check(world, "sync_due");
        Ok(())
    }
    fn lags(&self) -> bool {
        self.inner.lags()
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        let o = self.inner.probe(world, flow)?;
        self.check(world, "probe");
        Ok(o)
    }
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        let o = Backend::packet(&mut self.inner, world, pkt)?;
        self.check(world, "packet");
        Ok(o)
    }
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: verdict_sim::verdict::Direction,
        proxy_port: u16,
    ) -> Result<Vec<verdict_sim::proxy::ProxyRule>, String> {
        Backend::proxy_rules(&mut self.inner, world, flow, dir, proxy_port)
    }
    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        Backend::proxy_upstream(&mut self.inner, world)
    }
    fn take_flows(&mut self, world: &World) -> Vec<FlowRecord> {
        self.inner.take_flows(world)
    }
}

/// Runs a scenario on the oracle, the model and the checked rbpf backend; returns the number
/// of node comparisons made. The run itself must pass too (no disagreement).
fn run_checked(label: &str, loaded: &scenario::LoadedScenario, must_pass: bool) -> u64 {
    let compared = std::rc::Rc::new(std::cell::Cell::new(0));
    let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
        if name == "rbpf" {
            Ok(Box::new(Checked::new(label, compared.clone())))
        } else {
            backends::factory(name)
        }
    };
    let names: Vec<String> = ["oracle", "model", "rbpf"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = engine::run(loaded, &names, &factory);
    assert!(r.error.is_none(), "{label}: {:?}", r.error);
    if must_pass {
        assert!(r.passed(), "{label}: {}", verdict_sim::report::text(&r));
    } else {
        assert_eq!(r.disagreement_count(), 0, "{label}");
    }
    compared.get()
}

fn churn_args(seed: u64, fuzz_policies: bool) -> ChurnArgs {
    ChurnArgs {
        seed,
        nodes: 3,
        pods: if fuzz_policies { 18 } else { 40 },
        namespaces: if fuzz_policies { 3 } else { 5 },
        policies: if fuzz_policies { 6 } else { 10 },
        events: 120,
        rate: 10,
        delay_min: 0,
        delay_max: 2_000_000_000,
        backends: vec!["oracle".into(), "model".into(), "rbpf".into()],
        fuzz_policies,
        write_scenario: None,
        no_timings: true,
        invariants: false,
    }
}

fn check_churn(seed: u64, fuzz_policies: bool) {
    let args = churn_args(seed, fuzz_policies);
    let text = churn::scenario_text(&args);
    let path = PathBuf::from(format!("churn-{seed}.yaml"));
    let loaded = scenario::parse(&path, &text).expect("churn scenario parses");
    let kinds: std::collections::BTreeSet<&str> = loaded
        .scenario
        .steps
        .iter()
        .filter(|s| s.is_control_plane())
        .map(|s| s.kind())
        .collect();
    let label = format!("churn seed {seed} fuzz {fuzz_policies}");
    let compared = run_checked(&label, &loaded, false);
    assert!(compared > 3 * 120, "{label}: only {compared} comparisons");
    // The churn covers every kind of control-plane change.
    for kind in [
        "apply",
        "delete",
        "create-pod",
        "delete-pod",
        "label-pod",
        "label-namespace",
    ] {
        assert!(kinds.contains(kind), "{label}: no {kind} in {kinds:?}");
    }
}

#[test]
fn incremental_maps_equal_full_recomputation_on_targeted_churn() {
    for seed in [1, 2, 3, 4] {
        check_churn(seed, false);
    }
}

#[test]
fn incremental_maps_equal_full_recomputation_on_fuzz_policy_churn() {
    // Fuzz policies use CIDR selectors (with except), entities, named ports, deny rules and
    // port ranges: CIDR identities and their ipcache prefixes come and go with them.
    let mut cidr_seen = false;
    for seed in [1, 2, 3, 5] {
        let text = churn::scenario_text(&churn_args(seed, true));
        cidr_seen |= text.contains("CIDR") || text.contains("ipBlock");
        check_churn(seed, true);
    }
    assert!(cidr_seen, "no CIDR policy in the fuzz churn");
}

#[test]
fn incremental_maps_equal_full_recomputation_on_fuzz_scenarios() {
    let cfg = GenConfig {
        namespaces: 3,
        pods: 8,
        policies: 4,
        probes: 4,
        steps: 8,
        exact: false,
    };
    for i in 0..12 {
        let g = gen::generate(gen::case_seed(11, i), &cfg);
        let text = g.scenario.to_yaml();
        let path = PathBuf::from(format!("fuzz-{i}.yaml"));
        let loaded = scenario::parse(&path, &text).expect("generated scenario parses");
        let label = format!("fuzz case {i}");
        assert!(run_checked(&label, &loaded, false) > 0, "{label}");
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "policies") {
                yaml_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Every scenario with a control-plane step or a `dns-lookup` (whose answer the name manager
/// turns into new FQDN identities and ipcache entries, written incrementally); the others make
/// only the initial full write, which every run above makes too.
#[test]
fn incremental_maps_equal_full_recomputation_on_every_scenario_with_changes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let mut ran = 0;
    for f in &files {
        let loaded = scenario::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if loaded
            .scenario
            .steps
            .iter()
            .any(|s| s.is_control_plane() || matches!(s, scenario::Step::DnsLookup(_)))
        {
            run_checked(&f.display().to_string(), &loaded, true);
            ran += 1;
        }
    }
    assert!(ran > 40, "{ran} scenarios with control-plane steps");
}
