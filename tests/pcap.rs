//! Packet traces: the shipped capture `scenarios/pcap/shop.pcapng` (made here, with the
//! project's packet builder) replays against `scenarios/pcap/shop.yaml` on every available
//! backend with zero disagreements; `--write-pcap` output reads back and shows its comments in
//! tshark; malformed captures give errors naming the file and the packet, never a panic.
//!
//! The capture is committed; `shipped_capture_is_what_the_generator_makes` checks it is
//! byte-identical to what `shop_trace()` builds, and `VERDICT_BLESS_PCAP=1` rewrites it.
//! Backends: oracle, model, rbpf, rbpf-jit, plus kernel when built with the `kernel` feature
//! and usable (a loud SKIP otherwise; `VERDICT_REQUIRE_KERNEL=1` makes that a failure).

mod common;

use common::{root, text, verdict};

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use verdict::diff::{self, Contender};
use verdict::pcap::{self, Kind, OutPacket, TracePacket};
use verdict_datapath::packet::{self, tcp_flags as F, Packet, L4};
use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{Backend, Change, World};
use verdict_sim::oracle::Flow;
use verdict_sim::verdict::Outcome;

const CAPTURE: &str = "scenarios/pcap/shop.pcapng";
const SCENARIO: &str = "scenarios/pcap/shop.yaml";

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pcap-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// 2026-11-27T03:14:15Z, the capture's start.
const T0: u64 = 1_795_749_255 * 1_000_000_000;

/// The shipped capture: (time since T0 in µs, frame, original length).
fn shop_trace() -> Vec<(u64, Vec<u8>, u32)> {
    let fe = ip("10.0.1.10");
    let be = ip("10.0.2.20");
    let prober = ip("10.0.1.30");
    let node2 = ip("172.18.0.3");
    let dns = ip("8.8.8.8");
    let cf = ip("1.1.1.1");
    let customer = ip("203.0.113.7");
    let fe6 = ip("fd00:10:1::10");
    let be6 = ip("fd00:10:2::20");
    let customer6 = ip("2001:db8::7");

    let mut out: Vec<(u64, Vec<u8>, u32)> = Vec::new();
    let mut push = |t: u64, p: Packet| {
        let f = p.build();
        let len = f.len() as u32;
        out.push((t, f, len));
    };
    let tcp = |s: IpAddr, d: IpAddr, sp: u16, dp: u16, flags: u8, seq: u32, ack: u32| {
        Packet::new(
            s,
            d,
            L4::Tcp {
                sport: sp,
                dport: dp,
                flags,
                seq,
                ack,
            },
        )
    };

    // A DNS query for `name` (type A = 1, AAAA = 28) and its answer.
    fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            b.push(label.len() as u8);
            b.extend_from_slice(label.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        b
    }
    fn dns_answer(id: u16, name: &str, qtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut b = dns_query(id, name, qtype);
        b[2] = 0x81;
        b[3] = 0x80;
        b[7] = 1; // one answer
        b.extend_from_slice(&[0xc0, 0x0c]);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0, 0, 0x01, 0x2c]);
        b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        b.extend_from_slice(rdata);
        b
    }

    // 1. The frontend resolves the API's name at 8.8.8.8 (allowed), A and AAAA.
    push(
        0,
        Packet::udp(fe, dns, 41523, 53).with_payload(&dns_query(0x3a1f, "api.shop.example", 1)),
    );
    push(
        11_482,
        Packet::udp(dns, fe, 53, 41523).with_payload(&dns_answer(
            0x3a1f,
            "api.shop.example",
            1,
            &[93, 184, 216, 34],
        )),
    );
    push(
        11_907,
        Packet::udp(fe, dns, 41524, 53).with_payload(&dns_query(0x3a20, "api.shop.example", 28)),
    );
    push(
        23_114,
        Packet::udp(dns, fe, 53, 41524).with_payload(&dns_answer(
            0x3a20,
            "api.shop.example",
            28,
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x34,
            ],
        )),
    );
    // 2. ... and tries 1.1.1.1 (denied at egress), retrying after a second.
    let q = dns_query(0x51c4, "telemetry.vendor.example", 1);
    push(30_201, Packet::udp(fe, cf, 52001, 53).with_payload(&q));
    push(1_030_533, Packet::udp(fe, cf, 52001, 53).with_payload(&q));

    // 3. frontend -> backend 8080 across nodes: handshake, request, response, close.
    let (c, s) = (0x6b8b_4567u32, 0x3276_2a1cu32);
    let req = b"GET /api/cart/42 HTTP/1.1\r\nHost: backend.shop:8080\r\nUser-Agent: frontend/1.4\r\nAccept: application/json\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"items\":[3,7],\"total\":42}\n";
    let (rq, rs) = (req.len() as u32, resp.len() as u32);
    push(40_017, tcp(fe, be, 43210, 8080, F::SYN, c, 0));
    push(40_391, tcp(be, fe, 8080, 43210, F::SYN | F::ACK, s, c + 1));
    push(40_502, tcp(fe, be, 43210, 8080, F::ACK, c + 1, s + 1));
    push(
        40_655,
        tcp(fe, be, 43210, 8080, F::PSH | F::ACK, c + 1, s + 1).with_payload(req),
    );
    push(41_020, tcp(be, fe, 8080, 43210, F::ACK, s + 1, c + 1 + rq));
    push(
        43_876,
        tcp(be, fe, 8080, 43210, F::PSH | F::ACK, s + 1, c + 1 + rq).with_payload(resp),
    );
    push(
        44_003,
        tcp(fe, be, 43210, 8080, F::ACK, c + 1 + rq, s + 1 + rs),
    );
    push(
        44_310,
        tcp(fe, be, 43210, 8080, F::FIN | F::ACK, c + 1 + rq, s + 1 + rs),
    );
    push(
        44_702,
        tcp(be, fe, 8080, 43210, F::FIN | F::ACK, s + 1 + rs, c + 2 + rq),
    );
    push(
        44_811,
        tcp(fe, be, 43210, 8080, F::ACK, c + 2 + rq, s + 2 + rs),
    );

    // 4. The frontend pings the backend twice.
    push(
        60_114,
        Packet::echo_request(fe, be, 0x1c2b, 1).with_payload(&[0xab; 48]),
    );
    push(
        60_480,
        Packet::echo_reply(be, fe, 0x1c2b, 1).with_payload(&[0xab; 48]),
    );
    push(
        1_060_233,
        Packet::echo_request(fe, be, 0x1c2b, 2).with_payload(&[0xab; 48]),
    );
    push(
        1_060_597,
        Packet::echo_reply(be, fe, 0x1c2b, 2).with_payload(&[0xab; 48]),
    );

    // 5. frontend -> backend:22 is denied at egress; the SYN is retried.
    push(70_882, tcp(fe, be, 39874, 22, F::SYN, 0x0a0b_0c0d, 0));
    push(1_071_950, tcp(fe, be, 39874, 22, F::SYN, 0x0a0b_0c0d, 0));

    // 6. A customer on the internet loads the shop's front page.
    let (c2, s2) = (0x1234_5678u32, 0x7fee_0001u32);
    let page = b"GET / HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\n\r\n";
    let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\n\r\n<h1>the shop</h1>\r\n";
    push(120_040, tcp(customer, fe, 51514, 80, F::SYN, c2, 0));
    push(
        120_310,
        tcp(fe, customer, 80, 51514, F::SYN | F::ACK, s2, c2 + 1),
    );
    push(
        148_772,
        tcp(customer, fe, 51514, 80, F::ACK, c2 + 1, s2 + 1),
    );
    push(
        148_990,
        tcp(customer, fe, 51514, 80, F::PSH | F::ACK, c2 + 1, s2 + 1).with_payload(page),
    );
    push(
        150_145,
        tcp(
            fe,
            customer,
            80,
            51514,
            F::PSH | F::ACK,
            s2 + 1,
            c2 + 1 + page.len() as u32,
        )
        .with_payload(html),
    );
    push(
        178_330,
        tcp(
            customer,
            fe,
            51514,
            80,
            F::RST | F::ACK,
            c2 + 1 + page.len() as u32,
            s2 + 1 + html.len() as u32,
        ),
    );

    // 7. The prober scrapes the backend's metrics (denied until step 2 lets it in).
    push(
        200_000,
        tcp(prober, be, 38000, 9090, F::SYN, 0x5555_0000, 0),
    );
    push(
        200_377,
        tcp(
            be,
            prober,
            9090,
            38000,
            F::SYN | F::ACK,
            0x6666_0000,
            0x5555_0001,
        ),
    );
    push(
        200_451,
        tcp(prober, be, 38000, 9090, F::ACK, 0x5555_0001, 0x6666_0001),
    );

    // 8. node-2's kubelet health-checks the backend (host traffic is allowed to local pods).
    push(250_600, tcp(node2, be, 50123, 8080, F::SYN, 0x4242_0000, 0));
    push(
        250_655,
        tcp(
            be,
            node2,
            8080,
            50123,
            F::SYN | F::ACK,
            0x2424_0000,
            0x4242_0001,
        ),
    );
    push(
        250_700,
        tcp(
            node2,
            be,
            50123,
            8080,
            F::RST | F::ACK,
            0x4242_0001,
            0x2424_0001,
        ),
    );

    // 9. IPv6: frontend-v6 -> backend-v6 8080, a ping, and a customer over IPv6.
    let (c3, s3) = (0x0bad_f00du32, 0x0dec_afe0u32);
    push(300_010, tcp(fe6, be6, 44000, 8080, F::SYN, c3, 0));
    push(
        300_388,
        tcp(be6, fe6, 8080, 44000, F::SYN | F::ACK, s3, c3 + 1),
    );
    push(300_470, tcp(fe6, be6, 44000, 8080, F::ACK, c3 + 1, s3 + 1));
    push(
        300_612,
        tcp(fe6, be6, 44000, 8080, F::PSH | F::ACK, c3 + 1, s3 + 1).with_payload(req),
    );
    push(
        303_101,
        tcp(be6, fe6, 8080, 44000, F::PSH | F::ACK, s3 + 1, c3 + 1 + rq).with_payload(resp),
    );
    push(
        303_350,
        tcp(
            fe6,
            be6,
            44000,
            8080,
            F::FIN | F::ACK,
            c3 + 1 + rq,
            s3 + 1 + rs,
        ),
    );
    push(
        303_790,
        tcp(
            be6,
            fe6,
            8080,
            44000,
            F::FIN | F::ACK,
            s3 + 1 + rs,
            c3 + 2 + rq,
        ),
    );
    push(
        303_901,
        tcp(fe6, be6, 44000, 8080, F::ACK, c3 + 2 + rq, s3 + 2 + rs),
    );
    push(
        310_000,
        Packet::echo_request(fe6, be6, 0x77, 1).with_payload(&[0x5a; 56]),
    );
    push(
        310_321,
        Packet::echo_reply(be6, fe6, 0x77, 1).with_payload(&[0x5a; 56]),
    );
    push(
        350_500,
        tcp(customer6, fe6, 60606, 80, F::SYN, 0x0101_0101, 0),
    );
    push(
        350_790,
        tcp(
            fe6,
            customer6,
            80,
            60606,
            F::SYN | F::ACK,
            0x0202_0202,
            0x0101_0102,
        ),
    );
    // ... and one to a port the policy does not open: denied at the frontend's ingress.
    push(
        351_000,
        tcp(customer6, fe6, 60607, 443, F::SYN, 0x0303_0303, 0),
    );

    // 10. An ICMP error from the resolver about the first query (related to a tracked flow).
    let quoted =
        Packet::udp(fe, dns, 41523, 53).with_payload(&dns_query(0x3a1f, "api.shop.example", 1));
    push(400_000, Packet::icmp_error(dns, fe, 3, 3, &quoted));

    // 11. A GRE packet to the world (a protocol the oracle does not model).
    push(
        420_000,
        Packet::new(fe, dns, L4::Other { proto: 47 })
            .with_payload(&[0, 0, 0x08, 0, 0x45, 0, 0, 20]),
    );

    // 12. A first IPv4 fragment of a big UDP datagram to the backend.
    push(
        430_000,
        Packet::udp(fe, be, 40001, 8080)
            .with_payload(&[0x11; 64])
            .with_fragment(packet::Fragment {
                id: 0x4d2,
                offset: 0,
                more: true,
            }),
    );

    let mut v = out;
    // 13. Garbage: an ARP request, an LLDP frame, a TCP header cut by the snap length, an
    // IPv4 header cut short, and a 10-byte runt.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&packet::SRC_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&packet::SRC_MAC);
    arp.extend_from_slice(&[10, 0, 1, 10, 0, 0, 0, 0, 0, 0, 10, 0, 1, 1]);
    let arp_len = arp.len() as u32;
    v.push((440_000, arp, arp_len));
    let lldp = packet::ethernet(0x88cc, &[0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0x02, 0, 0]);
    let lldp_len = lldp.len() as u32;
    v.push((450_000, lldp, lldp_len));
    let full = tcp(fe, be, 43999, 8080, F::SYN, 1, 0).build();
    v.push((460_000, full[..14 + 20 + 8].to_vec(), full.len() as u32));
    let full = Packet::udp(be, fe, 5353, 5353).build();
    v.push((470_000, full[..30].to_vec(), full.len() as u32));
    v.push((480_000, vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5], 10));

    v.sort_by_key(|(t, _, _)| *t);
    v
}

fn shop_bytes() -> Vec<u8> {
    let trace = shop_trace();
    let packets: Vec<OutPacket<'_>> = trace
        .iter()
        .map(|(t, data, len)| OutPacket {
            ts_ns: T0 + t * 1000,
            orig_len: *len,
            linktype: pcap_file::DataLink::ETHERNET,
            data,
            comment: None,
        })
        .collect();
    let p = tmp("shop-generated.pcapng");
    pcap::write_pcapng(&p, &packets).unwrap();
    std::fs::read(&p).unwrap()
}

#[test]
fn shipped_capture_is_what_the_generator_makes() {
    let want = shop_bytes();
    let path = root().join(CAPTURE);
    if std::env::var("VERDICT_BLESS_PCAP").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let have = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with VERDICT_BLESS_PCAP=1 cargo test --test pcap",
            path.display()
        )
    });
    assert!(
        have == want,
        "{} differs from what the generator makes; rewrite it with VERDICT_BLESS_PCAP=1 cargo test --test pcap",
        path.display()
    );
}

fn shipped() -> Vec<TracePacket> {
    pcap::read_trace(&root().join(CAPTURE)).expect("reading the shipped capture")
}

#[test]
fn shipped_capture_reads_back_with_its_timestamps() {
    let trace = shipped();
    let gen = shop_trace();
    assert_eq!(trace.len(), gen.len());
    for (t, (us, data, len)) in trace.iter().zip(&gen) {
        assert_eq!(t.ts_ns, T0 + us * 1000, "packet {}", t.index);
        assert_eq!(&t.data, data, "packet {}", t.index);
        assert_eq!(t.orig_len, *len, "packet {}", t.index);
    }
}

#[test]
fn shipped_capture_replays_without_disagreement_on_every_backend() {
    let names = backend_names();
    let trace = shipped();
    let r = pcap::replay(
        &root().join(SCENARIO),
        None,
        &trace,
        &names,
        &diff::contender,
    )
    .expect("replay");
    let out = pcap::render(&r);
    println!("{out}");
    assert!(r.clean(), "{out}");
    let count = |f: &dyn Fn(&Kind) -> bool| r.packets.iter().filter(|p| f(&p.kind)).count();
    assert!(count(&|k| *k == Kind::New) >= 10, "{out}");
    assert!(count(&|k| *k == Kind::Tracked) >= 30, "{out}");
    // The ICMP error, the GRE packet, the fragment and the truncated SYN.
    assert_eq!(count(&|k| matches!(k, Kind::DatapathOnly(_))), 4, "{out}");
    assert_eq!(count(&|k| matches!(k, Kind::NotReplayed(_))), 4, "{out}");
    // New and tracked packets got a verdict from every backend, the others from every
    // datapath backend.
    let dps = names.iter().filter(|n| diff::is_datapath(n)).count();
    for p in &r.packets {
        let want = match p.kind {
            Kind::New | Kind::Tracked => names.len(),
            Kind::DatapathOnly(_) => dps,
            Kind::NotReplayed(_) => 0,
        };
        assert_eq!(p.results.len(), want, "packet {}: {:?}", p.index, p.results);
    }
    // Spot checks: the allowed DNS reply and the denied query to 1.1.1.1.
    let row = |i: usize| &r.packets[i - 1];
    let verdict_of = |i: usize| row(i).results[0].1.clone().unwrap();
    assert!(verdict_of(2).allowed, "{:?}", row(2));
    assert!(!verdict_of(5).allowed, "{:?}", row(5));
    assert_eq!(row(5).kind, Kind::New);
    for (b, o) in &r
        .pairs
        .iter()
        .map(|p| (p.other.clone(), p.rows.len()))
        .collect::<Vec<_>>()
    {
        assert_eq!(*o, 0, "{b}");
    }
    assert!(
        r.pairs.iter().all(|p| p.records > 0 && p.map_entries > 0),
        "{out}"
    );
}

#[test]
fn after_step_changes_the_cluster_the_trace_meets() {
    let trace = shipped();
    let names: Vec<String> = ["oracle", "model", "rbpf"].map(String::from).to_vec();
    let scrape = |step: Option<usize>| {
        let r = pcap::replay(
            &root().join(SCENARIO),
            step,
            &trace,
            &names,
            &diff::contender,
        )
        .expect("replay");
        assert!(r.clean(), "{}", pcap::render(&r));
        let p = r
            .packets
            .iter()
            .find(|p| {
                p.summary
                    .contains("10.0.1.30:38000 -> 10.0.2.20:9090 TCP SYN")
            })
            .expect("the prober's SYN");
        p.results.iter().all(|(_, o)| o.as_ref().unwrap().allowed)
    };
    assert!(
        !scrape(Some(1)),
        "the prober is denied before the metrics policy"
    );
    assert!(scrape(None), "the prober is let in after step 2");
    assert!(pcap::replay(
        &root().join(SCENARIO),
        Some(9),
        &trace,
        &names,
        &diff::contender
    )
    .is_err());
}

/// The shipped capture, then the same packets again `gap_s` seconds after its start: every
/// TCP connection of the second copy opens on the 5-tuple the first copy closed (FIN both
/// ways).
fn shipped_twice(gap_s: u64) -> Vec<TracePacket> {
    let first = shipped();
    let mut twice = first.clone();
    for p in &first {
        twice.push(TracePacket {
            index: first.len() + p.index,
            ts_ns: p.ts_ns + gap_s * 1_000_000_000,
            ..p.clone()
        });
    }
    twice
}

// Cilium main bpf/lib/conntrack.h __ct_lookup: a SYN (ACTION_CREATE) on an entry that is
// closing returns CT_NEW, so the new connection is policy-checked and notified as new and
// the entry re-created. Within CT_CLOSE_TIMEOUT (2 s) the closed entries are still there;
// after it (30 s) they are gone. Both times every backend must agree on every packet.
#[test]
fn a_capture_replayed_twice_reopens_its_closed_connections_on_every_backend() {
    let names = backend_names();
    for gap in [2, 30] {
        let trace = shipped_twice(gap);
        let r = pcap::replay(
            &root().join(SCENARIO),
            None,
            &trace,
            &names,
            &diff::contender,
        )
        .expect("replay");
        let out = pcap::render(&r);
        assert!(r.clean(), "gap {gap} s:\n{out}");
        // The second SYN of frontend -> backend:8080 is a new connection everywhere: the
        // deciding side (backend's ingress) is reported, as for the first SYN.
        let syns: Vec<&pcap::PacketRow> = r
            .packets
            .iter()
            .filter(|p| {
                p.summary
                    .contains("10.0.1.10:43210 -> 10.0.2.20:8080 TCP SYN")
            })
            .collect();
        assert_eq!(syns.len(), 2, "{out}");
        for p in syns {
            for (b, o) in &p.results {
                let o = o.as_ref().unwrap();
                assert!(o.allowed, "gap {gap} s: {b}: packet {}: {o:?}", p.index);
                assert_eq!(
                    o.direction,
                    Some(verdict_sim::verdict::Direction::Ingress),
                    "gap {gap} s: {b}: packet {}",
                    p.index
                );
            }
        }
    }
}

/// A model that answers the opposite on the prober's SYN: a planted disagreement.
struct Liar(Box<dyn Backend>);

impl Backend for Liar {
    fn name(&self) -> &str {
        "model"
    }
    fn sync(&mut self, w: &World, c: &Change<'_>) -> Result<(), String> {
        self.0.sync(w, c)
    }
    fn probe(&mut self, w: &World, f: &Flow) -> Result<Outcome, String> {
        let mut o = self.0.probe(w, f)?;
        if f.dport == 9090 {
            o.allowed = !o.allowed;
        }
        Ok(o)
    }
    fn packet(&mut self, w: &World, p: &ConnPacket) -> Result<Outcome, String> {
        let mut o = self.0.packet(w, p)?;
        if p.dport == 9090 && p.tcp_flags == F::SYN {
            o.allowed = !o.allowed;
        }
        Ok(o)
    }
}

#[test]
fn a_planted_disagreement_is_reported_and_written_alone() {
    let trace = shipped();
    let names: Vec<String> = ["oracle", "model", "rbpf"].map(String::from).to_vec();
    let make = |n: &str| -> Result<Contender, String> {
        match n {
            "model" => Ok(Contender::Plain(Box::new(Liar(
                verdict::backends::factory("model")?,
            )))),
            other => diff::contender(other),
        }
    };
    let r = pcap::replay(&root().join(SCENARIO), None, &trace, &names, &make).unwrap();
    let out = pcap::render(&r);
    assert_eq!(r.disagreements(), 1, "{out}");
    assert!(out.contains("DIFF"), "{out}");
    assert!(out.contains("38000 -> 10.0.2.20:9090"), "{out}");
    let p = tmp("disagreements.pcapng");
    let n = pcap::write_annotated(&p, &trace, &r, true).unwrap();
    assert_eq!(n, 1);
    let back = pcap::read_trace(&p).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].data,
        trace[r.packets.iter().position(|p| p.disagree).unwrap()].data
    );
}

#[test]
fn written_pcapng_has_every_packet_and_tshark_shows_the_comments() {
    let out = tmp("annotated.pcapng");
    let o = verdict(&[
        "diff",
        "--backends",
        "oracle,model,rbpf,rbpf-jit",
        "--pcap",
        CAPTURE,
        "--scenario",
        SCENARIO,
        "--write-pcap",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    let trace = shipped();
    let back = pcap::read_trace(&out).unwrap();
    assert_eq!(back.len(), trace.len());
    for (a, b) in back.iter().zip(&trace) {
        assert_eq!(
            (a.ts_ns, &a.data, a.orig_len),
            (b.ts_ns, &b.data, b.orig_len)
        );
    }
    // Byte-identical across runs.
    let again = tmp("annotated-again.pcapng");
    let o2 = verdict(&[
        "diff",
        "--backends",
        "oracle,model,rbpf,rbpf-jit",
        "--pcap",
        CAPTURE,
        "--scenario",
        SCENARIO,
        "--write-pcap",
        again.to_str().unwrap(),
    ]);
    assert_eq!(text(&o2).replace("annotated-again", "annotated"), t);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());

    let Ok(ts) = Command::new("tshark").arg("--version").output() else {
        println!("SKIP tshark check: tshark is not on PATH (apt-get install tshark)");
        eprintln!("SKIP tshark check: tshark is not on PATH (apt-get install tshark)");
        return;
    };
    assert!(ts.status.success());
    // tshark 3.x and 4.x name the field frame.comment (pkt_comment is the older alias).
    let o = Command::new("tshark")
        .args([
            "-r",
            out.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("running tshark");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), trace.len(), "{stdout}");
    assert!(
        lines[0].starts_with(
            "verdict #1: shop/frontend -> world 8.8.8.8 (new connection) | oracle: allow"
        ),
        "{stdout}"
    );
    assert!(lines.iter().all(|l| l.starts_with("verdict #")), "{stdout}");
    assert!(stdout.contains("rbpf-jit: deny"), "{stdout}");
    assert!(stdout.contains("not replayed"), "{stdout}");
}

#[test]
fn legacy_pcap_with_microseconds_and_cooked_headers_reads() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, Endianness, TsResolution};
    let frame = Packet::udp(ip("10.0.1.10"), ip("8.8.8.8"), 1000, 53).l3_bytes();
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&frame);
    let header = PcapHeader {
        datalink: DataLink::LINUX_SLL,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Big,
        ..Default::default()
    };
    let p = tmp("cooked.pcap");
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    w.write_packet(&PcapPacket::new(
        std::time::Duration::from_micros(1_795_749_255_123_456),
        sll.len() as u32,
        &sll,
    ))
    .unwrap();
    std::fs::write(&p, w.into_writer()).unwrap();
    let t = pcap::read_trace(&p).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].ts_ns, 1_795_749_255_123_456_000);
    let eth = t[0].ethernet().unwrap();
    assert_eq!(&eth[14..], &frame[..]);
    let parsed = pcap::parse_frame(&eth).unwrap();
    assert_eq!(parsed.dport, 53);
}

#[test]
fn malformed_captures_give_errors_naming_file_and_packet() {
    let good = std::fs::read(root().join(CAPTURE)).unwrap();
    // Every truncation and a spread of corruptions: an error or a shorter trace, no panic.
    let p = tmp("broken.pcapng");
    let mut errors = 0;
    for cut in (0..good.len()).step_by(7) {
        std::fs::write(&p, &good[..cut]).unwrap();
        if let Err(e) = pcap::read_trace(&p) {
            let e = format!("{e:#}");
            assert!(e.contains("broken.pcapng"), "{e}");
            errors += 1;
        }
    }
    assert!(errors > 0);
    for at in (0..good.len()).step_by(13) {
        let mut b = good.clone();
        b[at] ^= 0xa5;
        std::fs::write(&p, &b).unwrap();
        if let Err(e) = pcap::read_trace(&p) {
            assert!(format!("{e:#}").contains("broken.pcapng"));
        }
    }
    // Cut inside the 10th packet block: the error names the packet.
    let tenth = {
        let mut off = 0;
        let mut seen = 0;
        // Blocks are (type u32, length u32, ...); packet blocks have type 6.
        loop {
            let ty = u32::from_le_bytes(good[off..off + 4].try_into().unwrap());
            let len = u32::from_le_bytes(good[off + 4..off + 8].try_into().unwrap()) as usize;
            if ty == 6 {
                seen += 1;
                if seen == 10 {
                    break off;
                }
            }
            off += len;
        }
    };
    // Cut inside the 10th packet block (issue 14: this was refused whole): the 9 packets
    // before the cut are read, with tshark's warning (wiretap WTAP_ERR_SHORT_READ: "The file
    // ... appears to have been cut short in the middle of a packet.").
    std::fs::write(&p, &good[..tenth + 20]).unwrap();
    let (packets, warning) = pcap::read_trace_with_warning(&p).unwrap();
    assert_eq!(packets, shipped()[..9].to_vec());
    let w = warning.expect("a warning for the cut");
    assert!(
        w.contains("broken.pcapng\" appears to have been cut short in the middle of a packet")
            && w.contains("Packet 10 is incomplete"),
        "{w}"
    );
    // A cut on a block boundary is a shorter capture, nothing to warn about.
    std::fs::write(&p, &good[..tenth]).unwrap();
    let (packets, warning) = pcap::read_trace_with_warning(&p).unwrap();
    assert_eq!((packets.len(), warning), (9, None));

    // Through the CLI: the 9 packets are replayed, the warning is on stderr, no panic.
    std::fs::write(&p, &good[..tenth + 20]).unwrap();
    let o = verdict(&[
        "diff",
        "--pcap",
        p.to_str().unwrap(),
        "--scenario",
        SCENARIO,
        "--backends",
        "oracle,rbpf",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning: The file \""),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    // A corrupt block (its length field zeroed) inside the file is still an error naming
    // the file and the packet.
    let mut b = good.clone();
    b[tenth + 4..tenth + 8].copy_from_slice(&[0, 0, 0, 0]);
    std::fs::write(&p, &b).unwrap();
    let e = format!("{:#}", pcap::read_trace(&p).unwrap_err());
    assert!(
        e.contains("broken.pcapng") && e.contains("packet 10"),
        "{e}"
    );
    let o = verdict(&[
        "diff",
        "--pcap",
        p.to_str().unwrap(),
        "--scenario",
        SCENARIO,
        "--backends",
        "oracle,rbpf",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("broken.pcapng") && t.contains("packet 10"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    std::fs::write(&p, b"hello, not a capture").unwrap();
    let o = verdict(&[
        "diff",
        "--pcap",
        p.to_str().unwrap(),
        "--scenario",
        SCENARIO,
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("not a pcap or pcapng file"), "{t}");
}

fn backend_names() -> Vec<String> {
    let names = ["oracle", "model", "rbpf", "rbpf-jit"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    common::with_kernel(names, "kernel backend in the pcap replay")
}

/// Issue 14: a classic pcap cut in the middle of a packet replays up to the cut, with the
/// same warning as a pcapng (tshark reads both that way).
#[test]
fn truncated_classic_pcap_reads_up_to_the_cut_with_a_warning() {
    let trace = shipped();
    // Classic pcap, nanosecond magic, little-endian, Ethernet.
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    let mut starts = Vec::new();
    for p in &trace {
        starts.push(b.len());
        b.extend_from_slice(&((p.ts_ns / 1_000_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((p.ts_ns % 1_000_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        b.extend_from_slice(&p.orig_len.to_le_bytes());
        b.extend_from_slice(&p.data);
    }
    let path = tmp("cut.pcap");
    std::fs::write(&path, &b).unwrap();
    let (all, w) = pcap::read_trace_with_warning(&path).unwrap();
    assert_eq!((all.len(), w), (trace.len(), None));
    for cut in [starts[5] + 3, starts[5] + 16 + 10] {
        std::fs::write(&path, &b[..cut]).unwrap();
        let (packets, w) = pcap::read_trace_with_warning(&path).unwrap();
        assert_eq!(packets.len(), 5);
        assert_eq!(packets[4].data, trace[4].data);
        let w = w.expect("a warning");
        assert!(
            w.contains("cut short in the middle of a packet") && w.contains("Packet 6"),
            "{w}"
        );
    }
}

/// Issue 14: `--write-pcap` wrote frames longer than 262,144 bytes, which Wireshark refuses
/// (wiretap/wtap.h WTAP_MAX_PACKET_SIZE_STANDARD). They are written truncated to 262,144
/// bytes with their original length, and a warning; tshark reads the file.
#[test]
fn frames_longer_than_wiresharks_maximum_are_written_truncated_with_a_warning() {
    let big = vec![0xabu8; 300_000];
    let small = shipped()[0].data.clone();
    let packets = [
        pcap::OutPacket {
            ts_ns: 1_000,
            orig_len: big.len() as u32,
            linktype: pcap_file::DataLink::ETHERNET,
            data: &big,
            comment: None,
        },
        pcap::OutPacket {
            ts_ns: 2_000,
            orig_len: small.len() as u32,
            linktype: pcap_file::DataLink::ETHERNET,
            data: &small,
            comment: None,
        },
    ];
    let p = tmp("big.pcapng");
    let w = pcap::write_pcapng_with_warnings(&p, &packets).unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("packet 1: a frame of 300000 bytes is longer than 262144 bytes"),
        "{w:?}"
    );
    let back = pcap::read_trace(&p).unwrap();
    assert_eq!(back[0].data.len(), pcap::MAX_FRAME);
    assert_eq!(back[0].orig_len, 300_000);
    assert_eq!(back[1].data, small);
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("SKIP tshark check: tshark is not on PATH (apt-get install tshark)");
        eprintln!("SKIP tshark check: tshark is not on PATH (apt-get install tshark)");
        return;
    }
    let o = Command::new("tshark")
        .args([
            "-r",
            p.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
        ])
        .output()
        .expect("running tshark");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(out.lines().next(), Some("300000\t262144"), "{out}");
}
