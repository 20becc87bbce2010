//! Per-packet cost of the enforcement programs on a realistic map state, side by side in one
//! run: the model's decision, rbpf's interpreter, rbpf's JIT and (with `--features kernel`,
//! as root) the kernel, single-shot and `BPF_PROG_TEST_RUN` with `repeat`.
//!
//! The map state is built the way `verdict run` builds it: a generated cluster goes through
//! the model (`Model::new`) and the control plane's map writer (`NodeMaps::from_model`,
//! `MapWriter::apply`) fills every backend. Sizes: 10,000 client pods in 20 namespaces × 50
//! apps (1,000 identities, plus the servers'), hence about 10,000 ipcache prefixes on the
//! measured node, and one policy that gives each measured server endpoint about 10,000
//! policy-map entries (every identity × 5 ports, each direction).
//!
//! Each case cycles over 64 packets that differ in the source port. Allowed packets reach
//! the conntrack steady state after the warm-up pass (ESTABLISHED: CT hit, policy lookups,
//! trace event); denied packets take the full deny path every time (policy-verdict and drop
//! events). The kernel's `repeat` figure replays one packet in the kernel (no syscall per
//! packet): it is the in-kernel cost the JIT should be compared with.
//!
//! Run: `cargo bench -p verdict-datapath --bench packets` (add `--features kernel` as root for
//! the kernel columns). The summary table at the end is the one the README quotes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use verdict_datapath::abi::{programs, TC_ACT_OK};
use verdict_datapath::backend::Datapath;
use verdict_datapath::control::{MapWriter, NodeMaps};
use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::object::Object;
use verdict_datapath::packet::{tcp_flags, Packet};
use verdict_datapath::{VERDICT_OBJECT, VERDICT_OBJECT_NAME};
use verdict_sim::cluster::{Cluster, Peer, PodName, PodSpec, Protocol};
use verdict_sim::model::Model;
use verdict_sim::oracle::Flow;
use verdict_sim::policy::Repository;

const NODES: usize = 4;
const NAMESPACES: usize = 20;
const APPS: usize = 50;
const CLIENTS: usize = 10_000;
/// The measured node: both servers live here.
const NODE: &str = "node-0";
const CLOCK_NS: u64 = 1_000_000_000;
/// Distinct packets per case (source ports).
const CYCLE: u16 = 64;
/// Timed passes per figure in the summary. Each pass is short (about a millisecond), so
/// the fastest of many is a figure that other load on a shared machine did not inflate.
const PASSES: usize = 51;

const SERVER4: &str = "ns00/server4";
const SERVER6: &str = "ns00/server6";
const SERVER4_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const SERVER6_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10);
const CLIENT6: &str = "ns01/client6";
const CLIENT6_IP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x20);

fn ns(i: usize) -> String {
    format!("ns{i:02}")
}

fn client(p: usize) -> String {
    format!("{}/client-{p}", ns(p % NAMESPACES))
}

fn client_ip(p: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + p as u32)
}

fn pod(name: &str, node: usize, ip: IpAddr, app: &str) -> PodSpec {
    PodSpec {
        service_account: None,
        name: name.into(),
        node: Some(format!("node-{node}")),
        ip: Some(ip),
        labels: [("app".to_string(), app.to_string())].into(),
        ports: Vec::new(),
    }
}

fn cluster() -> Cluster {
    let mut c = Cluster::new();
    for n in 0..NODES {
        let ip = IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2 + n as u8));
        c.add_node(&format!("node-{n}"), Some(ip)).expect("node");
    }
    for i in 0..NAMESPACES {
        c.add_namespace(&ns(i), BTreeMap::new()).expect("namespace");
    }
    // Identity = namespace × app: pod p is in namespace p % 20 with app (p / 20) % 50.
    for p in 0..CLIENTS {
        let app = format!("app{}", (p / NAMESPACES) % APPS);
        c.add_pod(pod(&client(p), p % NODES, IpAddr::V4(client_ip(p)), &app))
            .expect("client pod");
    }
    c.add_pod(pod(SERVER4, 0, IpAddr::V4(SERVER4_IP), "server"))
        .expect("server4");
    c.add_pod(pod(SERVER6, 0, IpAddr::V6(SERVER6_IP), "server"))
        .expect("server6");
    c.add_pod(pod(CLIENT6, 1, IpAddr::V6(CLIENT6_IP), "app0"))
        .expect("client6");
    c
}

/// One policy on the servers: every pod of every namespace may reach them on TCP 8000-8003
/// and UDP 53, and they may reach every pod on TCP 9000-9003 and UDP 53 (five separate
/// ports per direction, so five map entries per identity and direction).
const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: servers, namespace: ns00}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: io.kubernetes.pod.namespace, operator: Exists}]}]
    toPorts:
    - ports: [{port: '8000', protocol: TCP}, {port: '8001', protocol: TCP}, {port: '8002', protocol: TCP}, {port: '8003', protocol: TCP}, {port: '53', protocol: UDP}]
  egress:
  - toEndpoints: [{matchExpressions: [{key: io.kubernetes.pod.namespace, operator: Exists}]}]
    toPorts:
    - ports: [{port: '9000', protocol: TCP}, {port: '9001', protocol: TCP}, {port: '9002', protocol: TCP}, {port: '9003', protocol: TCP}, {port: '53', protocol: UDP}]
";

fn repository() -> Repository {
    let mut repo = Repository::default();
    let manifests = verdict_sim::api::parse_manifests(Path::new("packets.yaml"), POLICY)
        .expect("bench policy parses");
    for m in &manifests {
        if let Some(key) = verdict_sim::translate::policy_ref(m) {
            repo.apply(key, verdict_sim::translate::translate(m));
        }
    }
    repo
}

/// One measured case: a program, the packets it cycles over, and the model's flow.
struct Case {
    name: String,
    program: &'static str,
    allowed: bool,
    packets: Vec<Vec<u8>>,
    /// The model's view of the packet; `None` for the fixed-cost case.
    flow: Option<Flow>,
}

fn case(
    dir: &str,
    what: &str,
    allowed: bool,
    (src, dst): (&str, &str),
    (sip, dip): (IpAddr, IpAddr),
    protocol: Protocol,
    dport: u16,
) -> Case {
    let program = if dir == "egress" {
        programs::FROM_CONTAINER
    } else {
        programs::TO_CONTAINER
    };
    let packets = (0..CYCLE)
        .map(|i| {
            let sport = 40_000 + i;
            match protocol {
                Protocol::Tcp => Packet::tcp(sip, dip, sport, dport, tcp_flags::SYN),
                Protocol::Udp => Packet::udp(sip, dip, sport, dport),
                _ => unreachable!("TCP and UDP cases only"),
            }
            .build()
        })
        .collect();
    Case {
        name: format!(
            "{dir} {what} {}",
            if allowed { "allowed" } else { "denied" }
        ),
        program,
        allowed,
        packets,
        flow: Some(Flow {
            src: Peer::Pod(PodName::parse(src).expect("pod name")),
            dst: Peer::Pod(PodName::parse(dst).expect("pod name")),
            protocol,
            dport,
        }),
    }
}

/// The fixed cost of a run: an ARP frame passes in the entry program after one map lookup
/// (the scratch state) and no tail call, so it measures run setup, one VM entry and one
/// helper call.
fn fixed_cost_case() -> Case {
    let arp = verdict_datapath::packet::ethernet(0x0806, &[0u8; 28]);
    Case {
        name: "ARP, entry program only (fixed cost)".into(),
        program: programs::FROM_CONTAINER,
        allowed: true,
        packets: vec![arp; CYCLE as usize],
        flow: None,
    }
}

fn cases() -> Vec<Case> {
    // A client on another node, so the measured node sees it through the ipcache only.
    let peer = 1;
    let (c4, c4ip) = (client(peer), IpAddr::V4(client_ip(peer)));
    let (s4, s6) = (IpAddr::V4(SERVER4_IP), IpAddr::V6(SERVER6_IP));
    let c6 = IpAddr::V6(CLIENT6_IP);
    let mut out = vec![fixed_cost_case()];
    for (allowed, tcp, udp) in [(true, 0, 53), (false, 999, 54)] {
        out.push(case(
            "egress",
            "TCP/IPv4",
            allowed,
            (SERVER4, &c4),
            (s4, c4ip),
            Protocol::Tcp,
            9000 + tcp,
        ));
        out.push(case(
            "egress",
            "UDP/IPv4",
            allowed,
            (SERVER4, &c4),
            (s4, c4ip),
            Protocol::Udp,
            udp,
        ));
        out.push(case(
            "egress",
            "TCP/IPv6",
            allowed,
            (SERVER6, CLIENT6),
            (s6, c6),
            Protocol::Tcp,
            9001 + tcp,
        ));
        out.push(case(
            "ingress",
            "TCP/IPv4",
            allowed,
            (&c4, SERVER4),
            (c4ip, s4),
            Protocol::Tcp,
            8000 + tcp,
        ));
        out.push(case(
            "ingress",
            "UDP/IPv4",
            allowed,
            (&c4, SERVER4),
            (c4ip, s4),
            Protocol::Udp,
            udp,
        ));
        out.push(case(
            "ingress",
            "TCP/IPv6",
            allowed,
            (CLIENT6, SERVER6),
            (c6, s6),
            Protocol::Tcp,
            8001 + tcp,
        ));
    }
    out
}

struct Fixture {
    cluster: Cluster,
    model: Model,
    maps: NodeMaps,
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let t = Instant::now();
    let cluster = cluster();
    let repo = repository();
    let model = Model::new(&cluster, &repo);
    let maps = NodeMaps::from_model(&model, NODE, CLOCK_NS);
    let server = model
        .endpoints()
        .find(|e| e.pod.to_string() == SERVER4)
        .expect("server endpoint");
    println!(
        "packets bench: {} pods, {} identities (incl. reserved), node {NODE}: {} ipcache \
         prefixes, {} local endpoints, {} policy-map entries ({} of them server4's); \
         model built in {:.1} s",
        cluster.pods.len(),
        cluster.identities.len(),
        maps.ipcache.len(),
        maps.endpoints.len(),
        maps.policy.len(),
        server.map.len(),
        t.elapsed().as_secs_f64()
    );
    Fixture {
        cluster,
        model,
        maps,
        cases: cases(),
    }
}

fn emulator(maps: &NodeMaps, mode: ExecMode) -> Emulator {
    let obj = Object::parse(VERDICT_OBJECT_NAME, VERDICT_OBJECT).expect("object parses");
    let mut emu = Emulator::new(&obj, mode).expect("emulator");
    let errors = emu.load_errors();
    assert!(errors.is_empty(), "programs failed to load: {errors:?}");
    MapWriter::new()
        .apply(&mut emu, maps.clone())
        .expect("map writer");
    emu
}

/// Checks the verdict of every packet (and warms conntrack up) before anything is timed.
fn warm_up(dp: &mut dyn Datapath, c: &Case) {
    for p in &c.packets {
        let out = dp.run(c.program, p).expect("run");
        assert_eq!(
            out.retval == TC_ACT_OK,
            c.allowed,
            "{}: {} returned {}",
            c.name,
            dp.backend_name(),
            out.retval
        );
    }
}

/// The fastest of `batches` timed passes of `runs` packets each, in ns per packet: on a shared
/// machine the minimum is the figure least disturbed by other load.
fn ns_per_packet(runs: usize, batches: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut samples: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for i in 0..runs {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / runs as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[0]
}

fn time_datapath(dp: &mut dyn Datapath, c: &Case, runs: usize) -> f64 {
    let n = c.packets.len();
    ns_per_packet(runs, PASSES, |i| {
        black_box(dp.run(c.program, &c.packets[i % n]).expect("run"));
    })
}

/// One row of the summary: ns/packet per backend, `None` where not measured.
struct Row {
    case: String,
    model: Option<f64>,
    interp: f64,
    jit: f64,
    kernel: Option<(f64, f64)>,
}

#[cfg(feature = "kernel")]
mod kernel {
    use super::*;
    use verdict_datapath::kernel::{kernel_available, KernelDatapath};

    pub const REPEAT: u32 = 100_000;

    pub fn load(maps: &NodeMaps) -> Option<KernelDatapath> {
        if let Err(why) = kernel_available() {
            let line = format!("SKIP kernel columns (kernel backend unavailable: {why})");
            println!(
                "{}\n{line}\n{}",
                "!".repeat(line.len()),
                "!".repeat(line.len())
            );
            return None;
        }
        let mut k =
            KernelDatapath::load_bytes(VERDICT_OBJECT_NAME, VERDICT_OBJECT).expect("kernel load");
        MapWriter::new()
            .apply(&mut k, maps.clone())
            .expect("kernel map writer");
        Some(k)
    }

    /// (single-shot ns/packet, in-kernel ns/packet with `repeat`).
    pub fn measure(k: &mut KernelDatapath, c: &Case) -> (f64, f64) {
        let _pin = k.pin_thread().expect("pin");
        warm_up(k, c);
        let single = time_datapath(k, c, 256);
        // The in-kernel average of a few packets of the cycle, each replayed REPEAT times.
        let sample = &c.packets[..4];
        let total: f64 = sample
            .iter()
            .map(|p| {
                let r = k.run_repeat(c.program, p, REPEAT).expect("run_repeat");
                assert_eq!(
                    r.retval == TC_ACT_OK,
                    c.allowed,
                    "{}: kernel repeat",
                    c.name
                );
                r.per_run.as_nanos() as f64
            })
            .sum();
        (single, total / sample.len() as f64)
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}, Linux {kernel}")
}

fn summary(f: &Fixture) {
    let mut interp = emulator(&f.maps, ExecMode::Interpreter);
    let mut jit = emulator(&f.maps, ExecMode::Jit);
    #[cfg(feature = "kernel")]
    let mut kern = kernel::load(&f.maps);
    #[cfg(not(feature = "kernel"))]
    {
        let line = "SKIP kernel columns (built without --features kernel)";
        println!(
            "{}\n{line}\n{}",
            "!".repeat(line.len()),
            "!".repeat(line.len())
        );
    }
    let mut rows = Vec::new();
    for c in &f.cases {
        let model = c.flow.as_ref().map(|flow| {
            // Egress cases: the model decides both sides; the server's egress denies.
            let outcome = f.model.decide(&f.cluster, flow);
            assert_eq!(outcome.allowed, c.allowed, "{}: model", c.name);
            ns_per_packet(2_048, PASSES, |_| {
                black_box(f.model.decide(&f.cluster, black_box(flow)));
            })
        });
        warm_up(&mut interp, c);
        warm_up(&mut jit, c);
        let i = time_datapath(&mut interp, c, 256);
        let j = time_datapath(&mut jit, c, 2_048);
        #[cfg(feature = "kernel")]
        let k = kern.as_mut().map(|k| kernel::measure(k, c));
        #[cfg(not(feature = "kernel"))]
        let k = None;
        rows.push(Row {
            case: c.name.clone(),
            model,
            interp: i,
            jit: j,
            kernel: k,
        });
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "packet (program)",
        "model decide",
        "rbpf interpreter",
        "rbpf JIT",
        "kernel single-shot",
        "kernel in-program (repeat)",
    ]);
    let fmt = |v: f64| format!("{v:.0} ns");
    for r in &rows {
        let prog = if r.case.starts_with("ingress") {
            "cil_to_container"
        } else {
            "cil_from_container"
        };
        b.push_record([
            format!("{} ({prog})", r.case),
            r.model.map_or("-".into(), fmt),
            fmt(r.interp),
            fmt(r.jit),
            r.kernel.map_or("SKIP".into(), |k| fmt(k.0)),
            r.kernel.map_or("SKIP".into(), |k| fmt(k.1)),
        ]);
    }
    let mut table = b.build();
    table.with(tabled::settings::Style::markdown());
    println!(
        "\nns/packet, best of {PASSES} passes; machine: {}",
        machine()
    );
    println!("{table}\n");
}

fn benches(c: &mut Criterion, f: &Fixture) {
    let mut interp = emulator(&f.maps, ExecMode::Interpreter);
    let mut jit = emulator(&f.maps, ExecMode::Jit);
    let mut g = c.benchmark_group("packets");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for case in &f.cases {
        warm_up(&mut interp, case);
        warm_up(&mut jit, case);
        let n = case.packets.len();
        if let Some(flow) = &case.flow {
            g.bench_function(format!("{}/model", case.name), |b| {
                b.iter(|| black_box(f.model.decide(&f.cluster, black_box(flow))))
            });
        }
        for (name, dp) in [("interpreter", &mut interp), ("jit", &mut jit)] {
            let mut i = 0usize;
            g.bench_function(format!("{}/{name}", case.name), |b| {
                b.iter(|| {
                    i += 1;
                    black_box(dp.run(case.program, &case.packets[i % n]).expect("run"))
                })
            });
        }
    }
    g.finish();
}

fn run(c: &mut Criterion) {
    let f = fixture();
    benches(c, &f);
    // Last, so the table is the final thing printed; skipped under `--profile-time`, where
    // only the selected benchmark should show up in a profile.
    if !std::env::args().any(|a| a == "--profile-time") {
        summary(&f);
    }
}

criterion_group!(packet_benches, run);

fn main() {
    packet_benches();
    Criterion::default().configure_from_args().final_summary();
}
