//! Random map state × random packets (issue: BPF datapath under rbpf):
//! - valid packets, IPv4 and IPv6, over a generated cluster and policy set: the model and the
//!   BPF programs under rbpf give the same verdict, drop code, direction and match type;
//! - truncated, corrupted and garbage frames up to 9,000 bytes: the interpreter and the JIT
//!   never fail, and give identical outcomes and identical flow records.
//!
//! The random choices come from a fixed-seed proptest runner, so every run checks the same cases.

use std::net::IpAddr;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use verdict::backends;
use verdict::dpbackend::DatapathBackend;
use verdict_datapath::packet::{Packet, L4};
use verdict_sim::cluster::{Peer, PodSpec, Protocol};
use verdict_sim::engine::{Backend, Change, World};
use verdict_sim::oracle::Flow;
use verdict_sim::{engine, gen, scenario};

fn world(seed: u64) -> World {
    let g = gen::generate(seed, &gen::GenConfig::small());
    let loaded = scenario::parse(Path::new("gen.yaml"), &g.scenario.to_yaml())
        .expect("generated scenario parses");
    let mut w = engine::world_after(&loaded, Some(0)).expect("generated world builds");
    // Two IPv6 pods wearing the labels of existing pods, so the policies select them too.
    let donors: Vec<_> = w.cluster.pods.values().take(2).cloned().collect();
    for (i, d) in donors.iter().enumerate() {
        let spec = PodSpec {
            service_account: None,
            name: format!("{}/v6-{i}", d.name.namespace),
            node: Some(d.node.clone()),
            ip: Some(format!("fd00::{:x}", 0x10 + i).parse().unwrap()),
            labels: d.labels.clone(),
            ports: d.ports.clone(),
        };
        w.cluster.add_pod(spec).expect("IPv6 pod");
    }
    w
}

/// Builds a datapath backend directly (the factory returns trait objects).
fn rbpf(world: &World, jit: bool) -> DatapathBackend {
    let name = if jit { "rbpf-jit" } else { "rbpf" };
    let mut b = backends::datapath_backend(name).expect("rbpf backend");
    b.sync(world, &Change::Initial).expect("initial sync");
    b
}

fn frame(src: IpAddr, dst: IpAddr, proto: Protocol, sport: u16, dport: u16) -> Vec<u8> {
    let l4 = match proto {
        Protocol::Tcp => L4::tcp(sport, dport, 0x02),
        Protocol::Udp => L4::udp(sport, dport),
        Protocol::Sctp => L4::sctp(sport, dport),
        Protocol::Icmp | Protocol::Icmpv6 => L4::icmp(dport as u8, 0, sport, 1),
    };
    Packet::new(src, dst, l4).build()
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(Vec<(usize, u8)>),
    Append(Vec<u8>),
    Garbage(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..120).prop_map(Mutation::Truncate),
        prop::collection::vec((0usize..80, any::<u8>()), 1..6).prop_map(Mutation::Flip),
        prop::collection::vec(any::<u8>(), 1..8_900).prop_map(Mutation::Append),
        prop::collection::vec(any::<u8>(), 0..9_000).prop_map(Mutation::Garbage),
    ]
}

fn mutate(mut f: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Truncate(n) => {
            f.truncate(*n);
            f
        }
        Mutation::Flip(flips) => {
            for (at, x) in flips {
                if let Some(b) = f.get_mut(*at) {
                    *b ^= x | 1;
                }
            }
            f
        }
        Mutation::Append(tail) => {
            f.extend_from_slice(tail);
            f.truncate(9_000);
            f
        }
        Mutation::Garbage(g) => g.clone(),
    }
}

#[test]
fn model_and_rbpf_agree_on_random_state_and_packets_and_survive_garbage() {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 24,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (
        any::<u64>(),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                0u8..4,
                1u16..1024,
                mutation(),
            ),
            24,
        ),
    );
    runner
        .run(&strategy, |(seed, packets)| {
            let w = world(seed);
            let mut interp = rbpf(&w, false);
            let mut jit = rbpf(&w, true);
            let model = interp.model().expect("model built").clone();
            let pods: Vec<_> = w.cluster.pods.values().cloned().collect();
            for (i, (a, b, p, port, m)) in packets.iter().enumerate() {
                let src = a.get(&pods);
                let dst = b.get(&pods);
                if src.ip.is_ipv4() != dst.ip.is_ipv4() {
                    continue;
                }
                let v6 = src.ip.is_ipv6();
                let protocol = match (p, v6) {
                    (0, _) => Protocol::Tcp,
                    (1, _) => Protocol::Udp,
                    (2, _) => Protocol::Sctp,
                    (_, false) => Protocol::Icmp,
                    (_, true) => Protocol::Icmpv6,
                };
                let dport = if protocol.is_icmp() {
                    if v6 {
                        128
                    } else {
                        8
                    }
                } else {
                    *port
                };
                let flow = Flow {
                    src: Peer::Pod(src.name.clone()),
                    dst: Peer::Pod(dst.name.clone()),
                    protocol,
                    dport,
                };
                let f = frame(src.ip, dst.ip, protocol, 20_000 + i as u16, dport);
                let want = model.decide(&w.cluster, &flow);
                let got = interp
                    .run_frame(&w, &flow.src, &flow.dst, &f)
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(&got, &want, "seed {} packet {} {:?}", seed, i, flow);
                let got_jit = jit
                    .run_frame(&w, &flow.src, &flow.dst, &f)
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(&got_jit, &want);
                // The same packet mangled: both modes run it and agree exactly.
                let bad = mutate(f, m);
                let a = interp
                    .run_frame(&w, &flow.src, &flow.dst, &bad)
                    .map_err(TestCaseError::fail)?;
                let b = jit
                    .run_frame(&w, &flow.src, &flow.dst, &bad)
                    .map_err(TestCaseError::fail)?;
                prop_assert_eq!(a, b, "seed {} packet {} mutation {:?}", seed, i, m);
            }
            prop_assert_eq!(interp.take_flows(&w), jit.take_flows(&w));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// Cilium main bpf/lib/conntrack.h __ct_lookup: close on FIN/RST, reopen on a SYN to a closing
// entry, CT_CLOSE_TIMEOUT, CT_SYN_TIMEOUT. The Rust conntrack of the oracle and the model and
// the BPF programs' must agree on every packet of random TCP flag sequences, both ways, with
// the clock moving by amounts around those timeouts.
#[test]
fn rust_and_bpf_conntrack_agree_on_random_tcp_flag_sequences() {
    use verdict_sim::conntrack::{ConnPacket, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    const FLAGS: [u8; 8] = [
        TCP_SYN,
        TCP_SYN | TCP_ACK,
        TCP_ACK,
        TCP_FIN | TCP_ACK,
        TCP_FIN,
        TCP_RST,
        TCP_RST | TCP_ACK,
        TCP_SYN | TCP_FIN,
    ];
    const STEPS_S: [u64; 5] = [0, 1, 9, 11, 61];
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 16,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (
        any::<u64>(),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                prop::collection::vec((0usize..FLAGS.len(), any::<bool>(), 0usize..5), 1..14),
            ),
            4,
        ),
    );
    runner
        .run(&strategy, |(seed, conns)| {
            let mut w = world(seed);
            let mut backends: Vec<Box<dyn Backend>> = ["oracle", "model", "rbpf"]
                .iter()
                .map(|n| backends::factory(n).expect("backend"))
                .collect();
            for b in backends.iter_mut() {
                b.sync(&w, &Change::Initial).map_err(TestCaseError::fail)?;
            }
            let pods: Vec<_> = w.cluster.pods.values().cloned().collect();
            for (c, (a, b, packets)) in conns.iter().enumerate() {
                let (src, dst) = (a.get(&pods), b.get(&pods));
                if src.ip.is_ipv4() != dst.ip.is_ipv4() {
                    continue;
                }
                for (i, (f, reply, dt)) in packets.iter().enumerate() {
                    w.clock_ns += STEPS_S[*dt] * 1_000_000_000;
                    let (from, to, sport, dport) = if *reply {
                        (dst, src, 80, 50_000 + c as u16)
                    } else {
                        (src, dst, 50_000 + c as u16, 80)
                    };
                    let pkt = ConnPacket {
                        src: Peer::Pod(from.name.clone()),
                        dst: Peer::Pod(to.name.clone()),
                        protocol: Protocol::Tcp,
                        sport,
                        dport,
                        tcp_flags: FLAGS[*f],
                        icmp_type: 0,
                    };
                    let mut outs = Vec::new();
                    for b in backends.iter_mut() {
                        b.sync(&w, &Change::Clock).map_err(TestCaseError::fail)?;
                        outs.push(b.packet(&w, &pkt).map_err(TestCaseError::fail)?);
                    }
                    // The oracle computes no match type (docs/model.md choice 9).
                    let mut oracle = outs[0].clone();
                    oracle.match_type = outs[1].match_type;
                    prop_assert_eq!(
                        &oracle,
                        &outs[1],
                        "seed {} conn {} packet {} {:?}",
                        seed,
                        c,
                        i,
                        pkt
                    );
                    prop_assert_eq!(
                        &outs[1],
                        &outs[2],
                        "seed {} conn {} packet {} {:?}",
                        seed,
                        c,
                        i,
                        pkt
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Issue 14: the probes of a truth table filled the CT map (900 pods, 809,100 cells:
/// rbpf answered drop 155 on 354,844 of them). A probe is one connection attempt: after
/// it, its conntrack entries are gone (expired and collected, as Cilium's CT GC removes
/// expired entries, pkg/maps/ctmap), so the map is empty after any number of probes; and a
/// full CT map (DROP_CT_CREATE_FAILED, bpf/lib/conntrack.h ct_create) is a reported error,
/// never a "deny".
#[test]
fn probes_leave_no_conntrack_entries_and_a_full_ct_map_is_an_error() {
    use verdict_datapath::abi;
    let w = world(7);
    let mut b = rbpf(&w, false);
    let pods: Vec<_> = w
        .cluster
        .pods
        .values()
        .filter(|p| p.ip.is_ipv4())
        .cloned()
        .collect();
    let mut allowed = 0;
    for a in &pods {
        for z in &pods {
            for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Icmp] {
                let flow = Flow {
                    src: Peer::Pod(a.name.clone()),
                    dst: Peer::Pod(z.name.clone()),
                    protocol,
                    dport: if protocol == Protocol::Icmp { 8 } else { 80 },
                };
                if b.probe(&w, &flow).expect("probe").allowed {
                    allowed += 1;
                }
            }
        }
    }
    assert!(allowed > 0, "no probe was allowed: nothing was checked");
    let nodes: Vec<String> = b.datapaths().map(|(n, _)| n.to_string()).collect();
    for n in &nodes {
        let dp = b.datapath_mut(n).unwrap();
        let left = dp.map_dump(abi::maps::CT).unwrap();
        assert!(left.is_empty(), "node {n}: {} CT entries left", left.len());
    }
    // Fill one node's CT map with other connections: the next allowed probe from a pod on
    // it cannot be tracked, which is an error naming the node and the map.
    let (a, z) = pods
        .iter()
        .flat_map(|a| pods.iter().map(move |z| (a, z)))
        .find(|(a, z)| {
            b.probe(
                &w,
                &Flow {
                    src: Peer::Pod(a.name.clone()),
                    dst: Peer::Pod(z.name.clone()),
                    protocol: Protocol::Udp,
                    dport: 80,
                },
            )
            .is_ok_and(|o| o.allowed)
        })
        .expect("an allowed UDP pair");
    let node = a.node.clone();
    let dp = b.datapath_mut(&node).unwrap();
    let max = dp
        .map_defs()
        .iter()
        .find(|d| d.name == abi::maps::CT)
        .unwrap()
        .max_entries;
    for i in 0..max {
        let key = abi::CtKey {
            saddr: [
                10,
                99,
                (i >> 8) as u8,
                i as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            daddr: [10, 98, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: ((i >> 16) as u16).to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            nexthdr: 17,
            flags: abi::TUPLE_F_OUT,
            family: abi::FAMILY_IPV4,
            pad: 0,
        };
        use verdict_datapath::abi::Pod as _;
        dp.map_update(
            abi::maps::CT,
            key.as_bytes(),
            abi::CtEntry::default().as_bytes(),
        )
        .expect("filling the CT map");
    }
    let e = b
        .probe(
            &w,
            &Flow {
                src: Peer::Pod(a.name.clone()),
                dst: Peer::Pod(z.name.clone()),
                protocol: Protocol::Udp,
                dport: 80,
            },
        )
        .expect_err("a full CT map must be an error");
    assert!(
        e.contains(&format!(
            "node {node}: conntrack map cilium_ct_any is full ({max} entries)"
        )) && e.contains("DROP_CT_CREATE_FAILED (155)"),
        "{e}"
    );
}
