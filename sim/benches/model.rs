//! Model benchmarks on a generated cluster: 5,000 pods (~1,000 identities) on 20 nodes and
//! 500 policies (CNP allow/deny with L3, L4, ranges, named ports, CIDRs; KNP).
//!
//! Measures full resolution (`Model::new`), one pod label change (identity change +
//! incremental update) and model decisions per second, and prints the full/incremental
//! ratio. Generation is deterministic (a fixed-seed xorshift of our own).
//!
//! Run: `cargo bench -p verdict-sim --bench model`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use verdict_sim::cluster::{Cluster, ContainerPort, Peer, PodName, PodSpec, Protocol};
use verdict_sim::model::Model;
use verdict_sim::oracle::Flow;
use verdict_sim::policy::Repository;

const SEED: u64 = 0x5eed_cafe_f00d_0001;
const PODS: usize = 5_000;
const NAMESPACES: usize = 20;
const APPS_PER_NAMESPACE: usize = 50; // 20 × 50 = 1,000 identities
const NODES: usize = 20;
const POLICIES: usize = 500;

/// xorshift64*: small, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn ns(i: usize) -> String {
    format!("ns{i:02}")
}

fn generate_cluster(rng: &mut Rng) -> Cluster {
    let mut c = Cluster::new();
    for n in 0..NODES {
        let ip = IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2 + n as u8));
        c.add_node(&format!("node-{n}"), Some(ip)).expect("node");
    }
    for i in 0..NAMESPACES {
        let labels: BTreeMap<String, String> = [("team".to_string(), format!("t{}", i % 4))].into();
        c.add_namespace(&ns(i), labels).expect("namespace");
    }
    for p in 0..PODS {
        let n = rng.below(NAMESPACES);
        let app = rng.below(APPS_PER_NAMESPACE);
        let mut ports = Vec::new();
        if app.is_multiple_of(3) {
            ports.push(ContainerPort {
                name: "http".into(),
                port: 8080 + (app % 5) as u16,
                protocol: Protocol::Tcp,
            });
        }
        let ip = IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(10, 1, 0, 0)) + p as u32,
        ));
        c.add_pod(PodSpec {
            service_account: None,
            name: format!("{}/pod-{p}", ns(n)),
            node: Some(format!("node-{}", p % NODES)),
            ip: Some(ip),
            labels: [
                ("app".to_string(), format!("app{app}")),
                (
                    "pod-template-hash".to_string(),
                    format!("{:x}", rng.next() % 4096),
                ),
            ]
            .into(),
            ports,
        })
        .expect("pod");
    }
    c
}

fn generate_policy(rng: &mut Rng, i: usize) -> String {
    let n = ns(rng.below(NAMESPACES));
    let subject = format!("app{}", rng.below(APPS_PER_NAMESPACE));
    let peer = format!("app{}", rng.below(APPS_PER_NAMESPACE));
    let port = [80, 443, 8080, 53][rng.below(4)];
    match rng.below(8) {
        0 => format!(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: knp-{i}, namespace: {n}}}
spec:
  podSelector: {{matchLabels: {{app: {subject}}}}}
  ingress:
  - from:
    - podSelector: {{matchLabels: {{app: {peer}}}}}
      namespaceSelector: {{matchLabels: {{team: t{}}}}}
    ports: [{{port: {port}, protocol: TCP}}]
",
            rng.below(4)
        ),
        1 => {
            let b = 100 + rng.below(100);
            format!(
                "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{matchLabels: {{app: {subject}}}}}
  egress:
  - toCIDRSet: [{{cidr: 10.{b}.0.0/16, except: [10.{b}.{}.0/24]}}]
  - toEntities: [cluster]
",
                rng.below(256)
            )
        }
        2 => format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{matchLabels: {{app: {subject}}}}}
  ingress:
  - fromEndpoints: [{{matchLabels: {{app: {peer}}}}}]
  ingressDeny:
  - fromEndpoints: [{{matchLabels: {{app: {peer}}}}}]
    toPorts: [{{ports: [{{port: '{port}', protocol: TCP}}]}}]
"
        ),
        3 => format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{matchLabels: {{app: {subject}}}}}
  egress:
  - toEndpoints: [{{matchLabels: {{io.kubernetes.pod.namespace: {}}}}}]
    toPorts: [{{ports: [{{port: http, protocol: TCP}}]}}]
",
            ns(rng.below(NAMESPACES))
        ),
        4 => format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{matchLabels: {{app: {subject}}}}}
  ingress:
  - toPorts: [{{ports: [{{port: '{port}', protocol: TCP}}]}}]
  - fromEndpoints: [{{matchLabels: {{app: {peer}}}}}]
    toPorts: [{{ports: [{{port: '8000', endPort: 8999, protocol: TCP}}]}}]
"
        ),
        5 => format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{}}
  ingress:
  - fromEndpoints: [{{}}]
"
        ),
        6 => format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{matchLabels: {{app: {subject}}}}}
  egress:
  - toEndpoints: [{{matchLabels: {{app: {peer}, io.kubernetes.pod.namespace: {}}}}}]
    toPorts: [{{ports: [{{port: '{port}', protocol: ANY}}]}}]
  - toCIDR: [{}.{}.0.0/16]
",
            ns(rng.below(NAMESPACES)),
            20 + rng.below(100),
            rng.below(256)
        ),
        _ => format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: cnp-{i}, namespace: {n}}}
spec:
  endpointSelector: {{matchLabels: {{app: {subject}}}}}
  enableDefaultDeny: {{ingress: {}}}
  ingressDeny:
  - fromEntities: [world]
  - fromEndpoints: [{{matchLabels: {{app: {peer}}}}}]
    icmps: [{{fields: [{{type: 8}}]}}]
",
            rng.chance(50)
        ),
    }
}

fn generate_repository(rng: &mut Rng) -> Repository {
    let mut repo = Repository::default();
    for i in 0..POLICIES {
        let yaml = generate_policy(rng, i);
        let manifests = verdict_sim::api::parse_manifests(Path::new("bench.yaml"), &yaml)
            .expect("generated policy parses");
        for m in &manifests {
            if let Some(key) = verdict_sim::translate::policy_ref(m) {
                repo.apply(key, verdict_sim::translate::translate(m));
            }
        }
    }
    repo
}

fn generate_flows(rng: &mut Rng, c: &Cluster, n: usize) -> Vec<Flow> {
    let pods: Vec<&PodName> = c.pods.keys().collect();
    (0..n)
        .map(|_| {
            let src = Peer::Pod(pods[rng.below(pods.len())].clone());
            let dst = match rng.below(10) {
                0 => Peer::World(IpAddr::V4(Ipv4Addr::new(
                    10,
                    100 + rng.below(100) as u8,
                    1,
                    1,
                ))),
                1 => Peer::Host(format!("node-{}", rng.below(NODES))),
                _ => Peer::Pod(pods[rng.below(pods.len())].clone()),
            };
            let (protocol, dport) = match rng.below(6) {
                0 => (Protocol::Udp, 53),
                1 => (Protocol::Icmp, 8),
                2 => (Protocol::Tcp, 8000 + rng.below(1000) as u16),
                _ => (Protocol::Tcp, [80, 443, 8080, 8081][rng.below(4)]),
            };
            Flow {
                src,
                dst,
                protocol,
                dport,
            }
        })
        .collect()
}

struct Fixture {
    cluster: Cluster,
    repo: Repository,
    model: Model,
    flows: Vec<Flow>,
}

fn fixture() -> Fixture {
    let mut rng = Rng(SEED);
    let cluster = generate_cluster(&mut rng);
    let repo = generate_repository(&mut rng);
    let model = Model::new(&cluster, &repo);
    let flows = generate_flows(&mut rng, &cluster, 10_000);
    Fixture {
        cluster,
        repo,
        model,
        flows,
    }
}

/// Relabels one pod to a fresh app (a new identity) and updates the model incrementally.
fn relabel(cluster: &mut Cluster, model: &mut Model, pod: &PodName, app: &str) {
    let set: BTreeMap<String, String> = [("app".to_string(), app.to_string())].into();
    let change = cluster
        .label_pod(&pod.to_string(), &set, &[])
        .expect("relabel");
    model.identities_changed(cluster, &change);
    model.pod_updated(cluster, pod);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One-off figures printed before criterion runs: sizes, full vs incremental, decisions/s.
fn summary(f: &Fixture) {
    let identities = f.cluster.identities.len();
    let entries: usize = f.model.endpoints().map(|e| e.map.len()).sum();
    let max_entries = f.model.endpoints().map(|e| e.map.len()).max().unwrap_or(0);
    println!(
        "model bench: {} pods, {} identities (incl. reserved), {} policies, {} policy-map entries (max {} per endpoint), {} selectors, {} ipcache entries",
        f.cluster.pods.len(),
        identities,
        f.repo.len(),
        entries,
        max_entries,
        f.model.selector_cache().len(),
        f.model.ipcache().len()
    );
    let full = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                black_box(Model::new(&f.cluster, &f.repo));
                t.elapsed()
            })
            .collect(),
    );
    let pods: Vec<PodName> = f.cluster.pods.keys().cloned().collect();
    let mut cluster = f.cluster.clone();
    let mut model = f.model.clone();
    let mut times = Vec::new();
    let mut recomputed = Vec::new();
    for i in 0..50 {
        let pod = &pods[(i * 97) % pods.len()];
        let before = model.stats().endpoints_recomputed;
        let t = Instant::now();
        relabel(&mut cluster, &mut model, pod, &format!("moved{i}"));
        times.push(t.elapsed());
        recomputed.push(model.stats().endpoints_recomputed - before);
    }
    recomputed.sort();
    let incr = median(times);
    let t = Instant::now();
    let mut allowed = 0usize;
    for fl in &f.flows {
        allowed += usize::from(f.model.decide(&f.cluster, fl).allowed);
    }
    let per_sec = f.flows.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "full resolution {:.1} ms; one pod label change {:.1} µs (median of 50, {} endpoints recomputed at the median); ratio full/incremental {:.0}×",
        full.as_secs_f64() * 1e3,
        incr.as_secs_f64() * 1e6,
        recomputed[recomputed.len() / 2],
        full.as_secs_f64() / incr.as_secs_f64()
    );
    println!(
        "model decisions: {:.0}/s ({} of {} flows allowed)",
        per_sec,
        allowed,
        f.flows.len()
    );
}

fn benches(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    g.bench_function("full_resolution_5000_pods_500_policies", |b| {
        b.iter(|| black_box(Model::new(&f.cluster, &f.repo)))
    });
    // Each iteration moves one pod to a label set no pod has yet (a new identity, announced
    // to every selector; the old one is released when the pod was its last user), on one
    // long-lived model.
    let pods: Vec<PodName> = f.cluster.pods.keys().cloned().collect();
    let mut cluster = f.cluster.clone();
    let mut model = f.model.clone();
    let mut n = 0usize;
    g.bench_function("pod_label_change_incremental", |b| {
        b.iter(|| {
            n += 1;
            let pod = &pods[(n * 97) % pods.len()];
            relabel(&mut cluster, &mut model, pod, &format!("bench{n}"));
        })
    });
    g.throughput(Throughput::Elements(f.flows.len() as u64));
    g.bench_function("decide_10000_flows", |b| {
        b.iter(|| {
            for fl in &f.flows {
                black_box(f.model.decide(&f.cluster, fl));
            }
        })
    });
    g.finish();
}

fn run(c: &mut Criterion) {
    let f = fixture();
    summary(&f);
    benches(c, &f);
}

criterion_group!(model_benches, run);

fn main() {
    model_benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
