//! The cost of one DNS answer end to end on rbpf: the name manager learns it
//! (`FqdnCache::learn`), the model relabels the new addresses (`fqdn:` identities in the
//! ipcache, the selector cache, the map state's incremental path) and the map writer writes
//! each node's changed ipcache and policy entries into the emulator's maps.
//!
//! Cluster: 3 nodes, 50 namespaces, 5,000 pods (10 apps per namespace), 500 policies of which
//! 50 carry toFQDNs (a matchPattern and a matchName, with a DNS rule to kube-dns) and 450 are
//! L3/L4 allows between apps. Each measured answer is for a new name matching one toFQDNs
//! policy's pattern, with 1, 10 or 100 new addresses.
//!
//! Run: `cargo bench --bench fqdn` (release). Prints per size the median, mean and max.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use verdict::backends;
use verdict_sim::cluster::PodName;
use verdict_sim::engine::{self, Change};

const NODES: usize = 3;
const NAMESPACES: usize = 50;
const PODS: usize = 5_000;
const APPS: usize = 10;
const POLICIES: usize = 500;
const FQDN_POLICIES: usize = 50;
const RUNS: usize = 15;

fn scenario() -> String {
    let mut s = String::from("name: bench-fqdn\ncluster:\n  nodes: [");
    for n in 0..NODES {
        let _ = write!(s, "{}node-{n}", if n > 0 { ", " } else { "" });
    }
    s.push_str("]\n  namespaces:\n    - {name: kube-system}\n");
    for i in 0..NAMESPACES {
        let _ = writeln!(s, "    - {{name: ns{i}}}");
    }
    s.push_str("  pods:\n    - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}}\n");
    for p in 0..PODS {
        let _ = writeln!(
            s,
            "    - {{name: ns{}/pod-{p}, node: node-{}, ip: 10.100.{}.{}, labels: {{app: a{}}}}}",
            p % NAMESPACES,
            p % NODES,
            p / 250,
            p % 250 + 1,
            (p / NAMESPACES) % APPS
        );
    }
    s.push_str("  dns:\n    - {name: kube-dns, pod: kube-system/kube-dns}\npolicies:\n");
    for k in 0..POLICIES {
        let ns = k % NAMESPACES;
        let app = (k / NAMESPACES) % APPS;
        if k < FQDN_POLICIES {
            let _ = writeln!(
                s,
                r#"  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {{name: fqdn-{k}, namespace: ns{ns}}}
    spec:
      endpointSelector: {{matchLabels: {{app: a{app}}}}}
      egress:
      - toFQDNs:
        - matchPattern: "*.svc{k}.example.com"
        - matchName: "api{k}.example.com"
        toPorts: [{{ports: [{{port: "443", protocol: TCP}}]}}]
      - toEndpoints:
        - matchLabels: {{"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}
        toPorts:
        - ports: [{{port: "53", protocol: ANY}}]
          rules: {{dns: [{{matchPattern: "*"}}]}}"#
            );
        } else {
            let _ = writeln!(
                s,
                r#"  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {{name: allow-{k}, namespace: ns{ns}}}
    spec:
      endpointSelector: {{matchLabels: {{app: a{app}}}}}
      ingress:
      - fromEndpoints: [{{matchLabels: {{app: a{}}}}}]
        toPorts: [{{ports: [{{port: "{}", protocol: TCP}}]}}]"#,
                (app + 1) % APPS,
                8000 + k % 100
            );
        }
    }
    s
}

fn main() {
    let dir = std::env::temp_dir().join(format!("verdict-bench-fqdn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bench.yaml");
    std::fs::write(&path, scenario()).expect("write scenario");
    let loaded = verdict_sim::scenario::load(&path).expect("load");
    let mut world = engine::build_world(&loaded).expect("world");
    let mut rbpf = backends::factory("rbpf").expect("rbpf");
    let t = Instant::now();
    rbpf.sync(&world, &Change::Initial).expect("initial sync");
    println!(
        "initial state on rbpf ({PODS} pods, {POLICIES} policies, {FQDN_POLICIES} with toFQDNs, {NODES} nodes): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The policy fqdn-0 selects app a0 in ns0: pod-0 (node-0) is one of them.
    let pod = PodName::parse("ns0/pod-0").expect("pod");
    let mut next_ip: u32 = u32::from(Ipv4Addr::new(100, 64, 0, 1));
    let mut serial = 0;
    for size in [1usize, 10, 100] {
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..RUNS {
            serial += 1;
            let name = format!("h{serial}.svc{}.example.com", serial % FQDN_POLICIES);
            let ips: Vec<IpAddr> = (0..size)
                .map(|_| {
                    next_ip += 1;
                    IpAddr::V4(Ipv4Addr::from(next_ip))
                })
                .collect();
            let t = Instant::now();
            world
                .cluster
                .fqdn
                .learn("node-0", &pod, &name, &ips, 300, world.clock_ns);
            rbpf.sync(&world, &Change::Fqdn).expect("fqdn sync");
            times.push(t.elapsed());
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "one DNS answer teaching {size:>3} new IP(s): median {:.3} ms, mean {:.3} ms, max {:.3} ms ({RUNS} answers)",
            times[times.len() / 2].as_secs_f64() * 1e3,
            mean.as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
