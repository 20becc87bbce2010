//! The datapath's behaviour cases (spec §5.2, §5.3, §7 and Cilium's
//! `bpf/tests/network_policy.c`), written once against [`Harness`] so the emulator, the
//! kernel backend and throwaway kernel checkers all run the very same checks.
//!
//! The including file provides `abi`, `events` and `packet` (verdict-datapath's
//! modules) and `policy_abi` (verdict-sim's `abi`) in its scope.

use std::net::IpAddr;

use verdict_datapath::backend::Datapath;

use super::{abi, events, packet, policy_abi};

use abi::Pod as _;
use events::Event;
use packet::{tcp_flags, ExtHeader, Fragment, Packet};
use policy_abi::AsBytes as _;

/// What a backend must offer the cases.
pub trait Harness {
    fn name(&self) -> String;
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]);
    /// Per-CPU values summed lane-wise.
    fn lookup(&mut self, map: &str, key: &[u8]) -> Option<Vec<u8>>;
    /// Return value and the ring-buffer records of one run.
    fn run(&mut self, program: &str, packet: &[u8]) -> (u64, Vec<Vec<u8>>);
}

/// [`Harness`] over any [`Datapath`]; a backend error fails the case loudly.
pub struct Single<D: Datapath>(pub D);

impl<D: Datapath> Harness for Single<D> {
    fn name(&self) -> String {
        self.0.backend_name().to_string()
    }
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) {
        if let Err(e) = self.0.map_update(map, key, value) {
            panic!("[{}] update {map}: {e}", self.0.backend_name());
        }
    }
    fn lookup(&mut self, map: &str, key: &[u8]) -> Option<Vec<u8>> {
        match self.0.map_lookup(map, key) {
            Ok(v) => v,
            Err(e) => panic!("[{}] lookup {map}: {e}", self.0.backend_name()),
        }
    }
    fn run(&mut self, program: &str, packet: &[u8]) -> (u64, Vec<Vec<u8>>) {
        match self.0.run(program, packet) {
            Ok(out) => (out.retval, out.events),
            Err(e) => panic!(
                "[{}] run {program} on {} bytes: {e}",
                self.0.backend_name(),
                packet.len()
            ),
        }
    }
}

const FROM: &str = abi::programs::FROM_CONTAINER;
const TO: &str = abi::programs::TO_CONTAINER;
const OK: u64 = abi::TC_ACT_OK;
const SHOT: u64 = abi::TC_ACT_SHOT;
const SEC: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

// Local endpoints: (address, endpoint id, identity, flags).
const A: (&str, u32, u32, u32) = ("10.0.0.1", 1, 1001, 3);
const B: (&str, u32, u32, u32) = ("10.0.0.2", 2, 1002, 3);
const A6: (&str, u32, u32, u32) = ("fd00::1", 3, 1003, 3);
const B6: (&str, u32, u32, u32) = ("fd00::2", 4, 1004, 3);
const C: (&str, u32, u32, u32) = (
    "10.0.0.10",
    5,
    1010,
    abi::EP_F_INGRESS_POLICY | abi::EP_F_AUDIT,
);
const D: (&str, u32, u32, u32) = ("10.0.0.11", 6, 1011, 0);
// Remote (not local) addresses and their identities.
const X1: (&str, u32) = ("10.0.0.3", 1005); // port range 80-83
const X2: (&str, u32) = ("10.0.0.4", 1006); // deny TCP/80 + allow ANY
const X3: (&str, u32) = ("10.0.0.5", 1007); // L3-only, plus the L4-only 8080 for all
const X4: (&str, u32) = ("10.0.0.6", 1008); // auth required on 443
const X5: (&str, u32) = ("10.0.0.7", 1009); // redirect to proxy 15001
const WORLD: &str = "8.8.8.8";

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

/// A policy key: `port_prefix` bits of the port (16 = exact), `proto` 0 = any.
fn pkey(
    ep: u32,
    id: u32,
    egress: bool,
    proto: u8,
    port: u16,
    port_prefix: u32,
) -> policy_abi::EndpointPolicyKey {
    let bits = if proto == 0 { 0 } else { 8 + port_prefix };
    policy_abi::EndpointPolicyKey {
        prefixlen: policy_abi::ENDPOINT_PREFIX_BITS + policy_abi::POLICY_STATIC_PREFIX_BITS + bits,
        ep_id: ep.to_be_bytes(),
        sec_label: id,
        egress: u8::from(egress),
        protocol: proto,
        dport: port.to_be_bytes(),
    }
}

/// A policy entry whose key had `proto`/`port_prefix` as in [`pkey`].
fn pentry(
    proto: u8,
    port_prefix: u32,
    deny: bool,
    proxy: u16,
    auth: u8,
    cookie: u32,
) -> policy_abi::PolicyEntry {
    let lpm = if proto == 0 { 0 } else { 8 + port_prefix } as u8;
    policy_abi::PolicyEntry {
        proxy_port: proxy.to_be_bytes(),
        flags: (lpm << policy_abi::POLICY_ENTRY_LPM_SHIFT) | u8::from(deny),
        auth,
        precedence: if deny {
            policy_abi::PRECEDENCE_DENY
        } else {
            policy_abi::PRECEDENCE_ALLOW
        },
        cookie,
    }
}

fn set_clock(h: &mut dyn Harness, ns: u64) {
    h.update(abi::maps::CLOCK, &0u32.to_ne_bytes(), &ns.to_ne_bytes());
}

/// Fills every map with the hand-made cluster the cases use.
pub fn setup(h: &mut dyn Harness) {
    set_clock(h, SEC);
    for (addr, ep, id, flags) in [A, B, A6, B6, C, D] {
        let key = abi::EndpointKey::new(ip(addr));
        let info = abi::EndpointInfo {
            ep_id: ep,
            sec_identity: id,
            flags,
            pad: 0,
        };
        h.update(abi::maps::LXC, key.as_bytes(), info.as_bytes());
        let plen = if ip(addr).is_ipv6() { 128 } else { 32 };
        let k = abi::IpcacheKey::new(ip(addr), plen);
        let v = abi::RemoteEndpointInfo {
            sec_identity: id,
            ..Default::default()
        };
        h.update(abi::maps::IPCACHE, k.as_bytes(), v.as_bytes());
    }
    for (addr, id) in [X1, X2, X3, X4, X5] {
        let k = abi::IpcacheKey::new(ip(addr), 32);
        let v = abi::RemoteEndpointInfo {
            sec_identity: id,
            ..Default::default()
        };
        h.update(abi::maps::IPCACHE, k.as_bytes(), v.as_bytes());
    }
    // A, A6 and D: allow-all both ways (the key {0, ANY}: match type "all").
    let mut cookie = 0;
    let put =
        |h: &mut dyn Harness, k: policy_abi::EndpointPolicyKey, e: policy_abi::PolicyEntry| {
            h.update(abi::maps::POLICY, k.as_bytes(), e.as_bytes());
        };
    for ep in [A.1, A6.1, D.1] {
        for egress in [false, true] {
            cookie += 1;
            put(
                h,
                pkey(ep, 0, egress, 0, 0, 0),
                pentry(0, 0, false, 0, 0, cookie),
            );
        }
    }
    let b = B.1;
    // cookies 11.. : B's ingress; B has no egress entries (default deny).
    put(
        h,
        pkey(b, A.2, false, TCP, 80, 16),
        pentry(TCP, 16, false, 0, 0, 11),
    );
    put(
        h,
        pkey(b, A.2, false, UDP, 53, 16),
        pentry(UDP, 16, false, 0, 0, 12),
    );
    put(
        h,
        pkey(b, A.2, false, ICMP, 8, 16),
        pentry(ICMP, 16, false, 0, 0, 13),
    );
    put(
        h,
        pkey(b, X1.1, false, TCP, 80, 14),
        pentry(TCP, 14, false, 0, 0, 14),
    );
    put(
        h,
        pkey(b, X2.1, false, TCP, 80, 16),
        pentry(TCP, 16, true, 0, 0, 15),
    );
    put(
        h,
        pkey(b, X2.1, false, 0, 0, 0),
        pentry(0, 0, false, 0, 0, 16),
    );
    put(
        h,
        pkey(b, 0, false, TCP, 8080, 16),
        pentry(TCP, 16, false, 0, 0, 17),
    );
    put(
        h,
        pkey(b, X3.1, false, 0, 0, 0),
        pentry(0, 0, false, 0, 0, 18),
    );
    put(
        h,
        pkey(b, X4.1, false, TCP, 443, 16),
        pentry(TCP, 16, false, 0, 1, 19),
    );
    put(
        h,
        pkey(b, X5.1, false, TCP, 80, 16),
        pentry(TCP, 16, false, 15001, 0, 20),
    );
    // B6 ingress: A6 on TCP/80 only.
    put(
        h,
        pkey(B6.1, A6.2, false, TCP, 80, 16),
        pentry(TCP, 16, false, 0, 0, 21),
    );
}

/// One line per record: what the cases compare.
pub fn summary(ev: &Event) -> String {
    match ev {
        Event::PolicyVerdict(p) => format!(
            "verdict {} {} {}{} cookie={}",
            p.common.direction,
            p.match_type,
            p.verdict,
            if p.audited { " audited" } else { "" },
            p.cookie
        ),
        Event::Drop(d) => format!("drop {} {}", d.reason.0, d.common.direction),
        Event::Trace(t) => match t.proxy_port() {
            Some(port) => format!(
                "trace {} {} port={port}",
                t.obs_point, t.common.flow.ct_status
            ),
            None => format!("trace {} {}", t.obs_point, t.common.flow.ct_status),
        },
    }
}

/// Collects mismatches so one run reports them all.
pub struct Checker<'h> {
    h: &'h mut dyn Harness,
    failures: Vec<String>,
    pub cases: usize,
}

impl<'h> Checker<'h> {
    pub fn new(h: &'h mut dyn Harness) -> Self {
        Checker {
            h,
            failures: Vec::new(),
            cases: 0,
        }
    }

    /// Runs `frame` through `program` and compares the return value and the records.
    pub fn check(&mut self, what: &str, program: &str, frame: &[u8], ret: u64, expect: &[&str]) {
        self.cases += 1;
        let (got, records) = self.h.run(program, frame);
        let mut lines = Vec::new();
        for r in &records {
            match Event::decode(r) {
                Ok(ev) => lines.push(summary(&ev)),
                Err(e) => lines.push(format!("undecodable: {e}")),
            }
        }
        let want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        if got != ret || lines != want {
            self.failures.push(format!(
                "[{}] {what} ({program}): expected ret {ret} {want:?}\n    got ret {got} {lines:?}",
                self.h.name()
            ));
        }
    }

    pub fn fail(&mut self, msg: String) {
        self.failures.push(format!("[{}] {msg}", self.h.name()));
    }

    pub fn harness(&mut self) -> &mut dyn Harness {
        self.h
    }

    pub fn finish(self) -> Result<usize, String> {
        if self.failures.is_empty() {
            Ok(self.cases)
        } else {
            Err(self.failures.join("\n"))
        }
    }
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    Packet::tcp(ip(src), ip(dst), sport, dport, flags).build()
}

/// Every case, in order (later cases rely on the conntrack state earlier ones made).
pub fn run_all(h: &mut dyn Harness) -> Result<usize, String> {
    setup(h);
    let mut c = Checker::new(h);
    let (a, b) = (A.0, B.0);
    let syn = tcp_flags::SYN;
    let ack = tcp_flags::ACK;

    // --- a connection A -> B:80 and its replies (spec §5.3) ---
    let f = tcp(a, b, 40000, 80, syn);
    c.check(
        "A->B:80 SYN egress",
        FROM,
        &f,
        OK,
        &["verdict EGRESS all 0 cookie=2", "trace 5 new"],
    );
    c.check(
        "A->B:80 SYN ingress",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-L4 0 cookie=11", "trace 0 new"],
    );
    let f = tcp(b, a, 80, 40000, syn | ack);
    c.check(
        "B->A SYN-ACK egress is REPLY (B has no egress policy)",
        FROM,
        &f,
        OK,
        &["trace 5 reply"],
    );
    c.check(
        "B->A SYN-ACK ingress is REPLY",
        TO,
        &f,
        OK,
        &["trace 0 reply"],
    );
    let f = tcp(a, b, 40000, 80, ack);
    c.check(
        "A->B ACK egress ESTABLISHED: no verdict event",
        FROM,
        &f,
        OK,
        &["trace 5 established"],
    );
    c.check(
        "A->B ACK ingress ESTABLISHED",
        TO,
        &f,
        OK,
        &["trace 0 established"],
    );
    let f = tcp(b, a, 1234, 22, syn);
    c.check(
        "B->A:22 new from B: B egress default deny",
        FROM,
        &f,
        SHOT,
        &["verdict EGRESS none -133 cookie=0", "drop 133 EGRESS"],
    );

    // --- port range 80-83 (spec §7 #15, network_policy.c) ---
    for port in [80u16, 81, 82, 83] {
        let f = tcp(X1.0, b, 5000, port, syn);
        c.check(
            &format!("X1->B:{port} in range"),
            TO,
            &f,
            OK,
            &["verdict INGRESS L3-L4 0 cookie=14", "trace 0 new"],
        );
    }
    for port in [79u16, 84] {
        let f = tcp(X1.0, b, 5000, port, syn);
        c.check(
            &format!("X1->B:{port} outside range"),
            TO,
            &f,
            SHOT,
            &["verdict INGRESS none -133 cookie=0", "drop 133 INGRESS"],
        );
    }

    // --- deny (X,TCP/80) beats allow (X,ANY) (spec §7 #10) ---
    let f = tcp(X2.0, b, 5000, 80, syn);
    c.check(
        "X2->B:80 deny wins",
        TO,
        &f,
        SHOT,
        &["verdict INGRESS L3-L4 -181 cookie=15", "drop 181 INGRESS"],
    );
    let f = tcp(X2.0, b, 5000, 81, syn);
    c.check(
        "X2->B:81 L3-only allow",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-Only 0 cookie=16", "trace 0 new"],
    );

    // --- L4-only (0,TCP/8080) + L3-only (X3,ANY) (spec §7 #28) ---
    let f = tcp(X3.0, b, 5000, 8080, syn);
    c.check(
        "X3->B:8080 L4-only wins on prefix",
        TO,
        &f,
        OK,
        &["verdict INGRESS L4-Only 0 cookie=17", "trace 0 new"],
    );
    let f = tcp(X3.0, b, 5000, 8081, syn);
    c.check(
        "X3->B:8081 L3-only",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-Only 0 cookie=18", "trace 0 new"],
    );
    let f = tcp(X1.0, b, 5001, 8080, syn);
    c.check(
        "X1->B:8080 L4-only for anyone",
        TO,
        &f,
        OK,
        &["verdict INGRESS L4-Only 0 cookie=17", "trace 0 new"],
    );

    // --- no entry, world ---
    let f = tcp(WORLD, b, 5000, 22, syn);
    c.check(
        "world->B:22 no entry",
        TO,
        &f,
        SHOT,
        &["verdict INGRESS none -133 cookie=0", "drop 133 INGRESS"],
    );

    // --- auth required, redirect, audit, direction not enforced ---
    let f = tcp(X4.0, b, 5000, 443, syn);
    c.check(
        "X4->B:443 auth required",
        TO,
        &f,
        SHOT,
        &["verdict INGRESS L3-L4 -189 cookie=19", "drop 189 INGRESS"],
    );
    auth_cases(&mut c, b);
    let f = tcp(X5.0, b, 5000, 80, syn);
    c.check(
        "X5->B:80 redirect",
        TO,
        &f,
        OK,
        &[
            "verdict INGRESS L3-L4 15001 cookie=20",
            "trace 1 new port=15001",
        ],
    );
    let f = tcp(X1.0, C.0, 5000, 22, syn);
    c.check(
        "X1->C:22 audit mode",
        TO,
        &f,
        OK,
        &["verdict INGRESS none 0 audited cookie=0", "trace 0 new"],
    );
    let f = tcp(X1.0, D.0, 5000, 22, syn);
    c.check(
        "X1->D:22 policy not enforced: no verdict event",
        TO,
        &f,
        OK,
        &["trace 0 new"],
    );

    // --- malformed and non-IP frames ---
    let full = tcp(a, b, 40001, 80, syn);
    c.check(
        "TCP header cut at 10 bytes",
        FROM,
        &full[..14 + 20 + 10],
        SHOT,
        &["drop 134 EGRESS"],
    );
    // The kernel's test run refuses IPv4 frames shorter than 14 + 20 bytes and IPv6
    // shorter than 14 + 40 (EINVAL), so a cut L3 header is tested through IHL instead.
    let mut opts = full[..14 + 20 + 8].to_vec();
    opts[14] = 0x4f; // IHL 15: 40 bytes of options the frame does not have
    c.check(
        "IPv4 options beyond the frame",
        FROM,
        &opts,
        SHOT,
        &["drop 134 EGRESS"],
    );
    // Frames shorter than Ethernet (DROP_UNSUPPORTED_L2) are not here: the kernel's
    // BPF_PROG_TEST_RUN refuses data shorter than ETH_HLEN, so backends cannot compare.
    let mut garbage = packet::ethernet(packet::ETH_P_IP, &[0xff; 40]);
    c.check(
        "IPv4 ethertype, garbage header",
        FROM,
        &garbage,
        SHOT,
        &["drop 134 EGRESS"],
    );
    garbage[14] = 0x43; // version 4, IHL 3
    c.check(
        "IPv4 IHL below 5",
        FROM,
        &garbage,
        SHOT,
        &["drop 134 EGRESS"],
    );
    c.check(
        "LLDP frame",
        FROM,
        &packet::ethernet(0x88cc, &[0; 46]),
        SHOT,
        &["drop 139 EGRESS"],
    );
    c.check(
        "802.3 length field",
        TO,
        &packet::ethernet(0x0100, &[0; 46]),
        SHOT,
        &["drop 166 INGRESS"],
    );
    c.check(
        "ARP passes",
        FROM,
        &packet::ethernet(packet::ETH_P_ARP, &[0; 28]),
        OK,
        &[],
    );
    let f = tcp("10.9.9.9", b, 5000, 80, syn);
    c.check(
        "source is no local endpoint",
        FROM,
        &f,
        SHOT,
        &["drop 132 EGRESS"],
    );
    let f = tcp(a, "10.9.9.9", 5000, 80, syn);
    c.check(
        "destination is no local endpoint",
        TO,
        &f,
        SHOT,
        &["drop 203 INGRESS"],
    );

    // --- IPv6 and extension headers ---
    let (a6, b6) = (A6.0, B6.0);
    let ext = [
        ExtHeader::HopByHop,
        ExtHeader::Routing,
        ExtHeader::DestOpts { len8: 1 },
        ExtHeader::Auth,
    ];
    let f = Packet::tcp(ip(a6), ip(b6), 40000, 80, syn)
        .with_ext_headers(&ext)
        .build();
    c.check(
        "IPv6 4 extension headers egress",
        FROM,
        &f,
        OK,
        &["verdict EGRESS all 0 cookie=4", "trace 5 new"],
    );
    c.check(
        "IPv6 4 extension headers ingress",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-L4 0 cookie=21", "trace 0 new"],
    );
    let f = Packet::tcp(ip(a6), ip(b6), 40002, 81, syn)
        .with_ext_headers(&ext[..1])
        .build();
    c.check(
        "IPv6 to an unallowed port",
        TO,
        &f,
        SHOT,
        &["verdict INGRESS none -133 cookie=0", "drop 133 INGRESS"],
    );
    let five = [
        ExtHeader::HopByHop,
        ExtHeader::Routing,
        ExtHeader::Routing,
        ExtHeader::DestOpts { len8: 0 },
        ExtHeader::Auth,
    ];
    let f = Packet::tcp(ip(a6), ip(b6), 40003, 80, syn)
        .with_ext_headers(&five)
        .build();
    c.check(
        "IPv6 five extension headers",
        TO,
        &f,
        SHOT,
        &["drop 156 INGRESS"],
    );
    let f = Packet::new(ip(a6), ip(b6), packet::L4::Other { proto: 59 }).build();
    c.check("IPv6 no next header", TO, &f, SHOT, &["drop 156 INGRESS"]);
    let f = Packet::tcp(ip(a6), ip(b6), 40004, 80, syn)
        .with_ext_headers(&ext)
        .build();
    c.check(
        "IPv6 extension headers cut",
        TO,
        &f[..14 + 40 + 12],
        SHOT,
        &["drop 134 INGRESS"],
    );

    // --- fragments: port 0, port-wildcard entries only (spec §5.2) ---
    let frag = Fragment {
        id: 1,
        offset: 0,
        more: true,
    };
    let f = Packet::tcp(ip(X1.0), ip(b), 5000, 80, syn)
        .with_fragment(frag)
        .build();
    c.check(
        "fragment, only a port entry",
        TO,
        &f,
        SHOT,
        &["verdict INGRESS none -157 cookie=0", "drop 157 INGRESS"],
    );
    let f = Packet::tcp(ip(X2.0), ip(b), 5000, 80, syn)
        .with_fragment(Fragment {
            id: 2,
            offset: 100,
            more: false,
        })
        .with_payload(&[0; 16])
        .build();
    c.check(
        "fragment, L3-only entry",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-Only 0 cookie=16", "trace 0 new"],
    );
    let f = Packet::tcp(ip(a6), ip(b6), 40005, 80, syn)
        .with_fragment(frag)
        .build();
    c.check(
        "IPv6 fragment, only a port entry",
        TO,
        &f,
        SHOT,
        &["verdict INGRESS none -157 cookie=0", "drop 157 INGRESS"],
    );
    let f = Packet::tcp(ip(a6), ip(b6), 40006, 80, syn)
        .with_fragment(Fragment {
            id: 3,
            offset: 0,
            more: false,
        })
        .build();
    c.check(
        "IPv6 atomic fragment is a whole packet",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-L4 0 cookie=21", "trace 0 new"],
    );

    // --- UDP, ICMP echo and ICMP errors (RELATED) ---
    let q = Packet::udp(ip(a), ip(b), 5353, 53);
    c.check(
        "A->B UDP/53 egress",
        FROM,
        &q.build(),
        OK,
        &["verdict EGRESS all 0 cookie=2", "trace 5 new"],
    );
    c.check(
        "A->B UDP/53 ingress",
        TO,
        &q.build(),
        OK,
        &["verdict INGRESS L3-L4 0 cookie=12", "trace 0 new"],
    );
    let err = Packet::icmp_error(ip(b), ip(a), 3, 3, &q).build();
    c.check(
        "B->A port unreachable egress is RELATED",
        FROM,
        &err,
        OK,
        &["trace 5 related"],
    );
    c.check(
        "B->A port unreachable ingress is RELATED",
        TO,
        &err,
        OK,
        &["trace 0 related"],
    );
    let stray =
        Packet::icmp_error(ip(b), ip(a), 3, 3, &Packet::udp(ip(a), ip(b), 5354, 53)).build();
    c.check(
        "unrelated ICMP error is NEW, B egress denies",
        FROM,
        &stray,
        SHOT,
        &["verdict EGRESS none -133 cookie=0", "drop 133 EGRESS"],
    );
    let fneeded =
        Packet::icmp_error(ip(b), ip(a), 3, 4, &Packet::udp(ip(a), ip(b), 5355, 53)).build();
    c.check(
        "ICMP frag-needed always allowed",
        FROM,
        &fneeded,
        OK,
        &["verdict EGRESS none 0 cookie=0", "trace 5 new"],
    );
    let ping = Packet::echo_request(ip(a), ip(b), 77, 1).build();
    c.check(
        "A->B echo egress",
        FROM,
        &ping,
        OK,
        &["verdict EGRESS all 0 cookie=2", "trace 5 new"],
    );
    c.check(
        "A->B echo ingress (ICMP type 8 entry)",
        TO,
        &ping,
        OK,
        &["verdict INGRESS L3-L4 0 cookie=13", "trace 0 new"],
    );
    let pong = Packet::echo_reply(ip(b), ip(a), 77, 1).build();
    c.check(
        "B->A echo reply egress is REPLY",
        FROM,
        &pong,
        OK,
        &["trace 5 reply"],
    );
    c.check(
        "B->A echo reply ingress is REPLY",
        TO,
        &pong,
        OK,
        &["trace 0 reply"],
    );
    let cut = Packet::echo_request(ip(a), ip(b), 78, 1).build();
    c.check(
        "ICMP header cut",
        TO,
        &cut[..14 + 20 + 4],
        SHOT,
        &["drop 134 INGRESS"],
    );

    // --- TCP close and reopen (Cilium main bpf/lib/conntrack.h __ct_lookup) ---
    let f = tcp(a, b, 40000, 80, tcp_flags::FIN | ack);
    c.check("A->B FIN", FROM, &f, OK, &["trace 5 established"]);
    let f = tcp(b, a, 80, 40000, tcp_flags::FIN | ack);
    c.check("B->A FIN reply", FROM, &f, OK, &["trace 5 reply"]);
    // ACTION_CREATE on a closing entry (ct_entry_closing): CT_NEW, policy-checked and
    // notified as a new connection, and ct_create overwrites the entry.
    let f = tcp(a, b, 40000, 80, syn);
    c.check(
        "SYN on a closing entry is NEW",
        FROM,
        &f,
        OK,
        &["verdict EGRESS all 0 cookie=2", "trace 5 new"],
    );
    // An RST before both SYNs were seen closes both sides (!ct_entry_seen_both_syns), so
    // a later SYN is NEW, and the closed entry lives CT_CLOSE_TIMEOUT.
    let f = tcp(a, b, 40001, 80, syn);
    c.check(
        "A->B:80 second connection SYN",
        FROM,
        &f,
        OK,
        &["verdict EGRESS all 0 cookie=2", "trace 5 new"],
    );
    let f = tcp(a, b, 40001, 80, tcp_flags::RST);
    c.check(
        "RST before the SYN-ACK",
        FROM,
        &f,
        OK,
        &["trace 5 established"],
    );
    let f = tcp(a, b, 40001, 80, ack);
    c.check(
        "ACK on the closed entry is still ESTABLISHED",
        FROM,
        &f,
        OK,
        &["trace 5 established"],
    );
    let f = tcp(a, b, 40001, 80, syn | ack);
    c.check(
        "SYN|ACK is no create action: ESTABLISHED",
        FROM,
        &f,
        OK,
        &["trace 5 established"],
    );
    let key40001 = abi::CtKey {
        saddr: abi::addr_bytes(ip(a)).0,
        daddr: abi::addr_bytes(ip(b)).0,
        sport: 40001u16.to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        nexthdr: TCP,
        flags: abi::TUPLE_F_OUT,
        family: abi::FAMILY_IPV4,
        pad: 0,
    };
    match c
        .harness()
        .lookup(abi::maps::CT, key40001.as_bytes())
        .and_then(|v| abi::CtEntry::from_bytes(&v))
    {
        // Closed at SEC by the RST: CT_CLOSE_TIMEOUT from then, not refreshed by the
        // packets after it (ct_entry_alive is false).
        Some(e)
            if e.expires == SEC + 10 * SEC
                && e.flags == abi::CT_F_RX_CLOSING | abi::CT_F_TX_CLOSING | abi::CT_F_SEEN_NON_SYN
                && e.tx_flags_seen == tcp_flags::SYN | tcp_flags::RST => {}
        other => c.fail(format!(
            "CT entry A->B:40001 OUT after RST: expected both closing, expiry {}, tx flags SYN|RST, got {other:?}",
            SEC + 10 * SEC
        )),
    }
    let f = tcp(a, b, 40001, 80, syn);
    c.check(
        "SYN after the RST is NEW",
        FROM,
        &f,
        OK,
        &["verdict EGRESS all 0 cookie=2", "trace 5 new"],
    );
    match c
        .harness()
        .lookup(abi::maps::CT, key40001.as_bytes())
        .and_then(|v| abi::CtEntry::from_bytes(&v))
    {
        // ct_create4: a fresh entry, CT_SYN_TIMEOUT, SYN seen on the egress side.
        Some(e)
            if e.expires == SEC + 60 * SEC
                && e.flags == 0
                && e.packets == 1
                && e.tx_flags_seen == tcp_flags::SYN
                && e.rx_flags_seen == 0 => {}
        other => c.fail(format!(
            "CT entry A->B:40001 OUT after the new SYN: expected a fresh entry, got {other:?}"
        )),
    }

    // --- expiry on the harness clock: UDP lives 60 s ---
    set_clock(c.harness(), SEC + 59 * SEC);
    let r = Packet::udp(ip(b), ip(a), 53, 5353).build();
    c.check("UDP reply within 60 s", FROM, &r, OK, &["trace 5 reply"]);
    set_clock(c.harness(), SEC + 59 * SEC + 61 * SEC);
    c.check(
        "UDP reply after expiry is NEW and denied",
        FROM,
        &r,
        SHOT,
        &["verdict EGRESS none -133 cookie=0", "drop 133 EGRESS"],
    );
    let f = tcp(a, b, 40000, 80, ack);
    c.check(
        "half-closed TCP entry still ESTABLISHED",
        TO,
        &f,
        OK,
        &["trace 0 established"],
    );
    // Both SYNs were seen: the RST closes the ingress side only (rx); tx was closed by
    // the FIN reply, so now both are.
    let f = tcp(a, b, 40000, 80, tcp_flags::RST);
    c.check(
        "RST after both SYNs closes its own side",
        TO,
        &f,
        OK,
        &["trace 0 established"],
    );
    set_clock(c.harness(), SEC + 128 * SEC);
    let f = tcp(a, b, 40000, 80, ack);
    c.check(
        "closed entry still there within CT_CLOSE_TIMEOUT",
        TO,
        &f,
        OK,
        &["trace 0 established"],
    );
    set_clock(c.harness(), SEC + 130 * SEC);
    c.check(
        "closed entry gone after CT_CLOSE_TIMEOUT: NEW",
        TO,
        &f,
        OK,
        &["verdict INGRESS L3-L4 0 cookie=11", "trace 0 new"],
    );

    // --- conntrack entry and metrics contents ---
    let key = abi::CtKey {
        saddr: abi::addr_bytes(ip(a)).0,
        daddr: abi::addr_bytes(ip(b)).0,
        sport: 40000u16.to_be_bytes(),
        dport: 80u16.to_be_bytes(),
        nexthdr: TCP,
        flags: abi::TUPLE_F_IN,
        family: abi::FAMILY_IPV4,
        pad: 0,
    };
    // Re-created by the last ACK: ct_create4 starts every TCP entry as a SYN's
    // (CT_SYN_TIMEOUT, SYN seen on this side), whatever packet created it.
    let at = SEC + 130 * SEC;
    match c
        .harness()
        .lookup(abi::maps::CT, key.as_bytes())
        .and_then(|v| abi::CtEntry::from_bytes(&v))
    {
        Some(e) => {
            if e.expires != at + 60 * SEC
                || e.flags != 0
                || e.rx_flags_seen != tcp_flags::SYN
                || e.src_sec_id != A.2
            {
                c.fail(format!(
                    "CT entry A->B:80 IN: expected expiry {} flags 0 rx SYN, got {e:?}",
                    at + 60 * SEC
                ));
            }
        }
        None => c.fail("CT entry A->B:80 IN missing".into()),
    }
    let mk = abi::MetricsKey {
        reason: 133,
        dir: abi::DIR_INGRESS,
        pad: [0; 6],
    };
    match c
        .harness()
        .lookup(abi::maps::METRICS, mk.as_bytes())
        .and_then(|v| abi::MetricsValue::from_bytes(&v))
    {
        Some(m) if m.count == 4 => {}
        other => c.fail(format!(
            "metrics (133, ingress): expected count 4, got {other:?}"
        )),
    }
    redirect_cases(&mut c, SEC + 130 * SEC);
    c.finish()
}

/// A redirect entry (proxy port > 0). Its precedence has a low byte in 2..=254 (spec §5.1:
/// "2–254 redirect"), above a plain allow's 1 on the same tier.
fn predirect(proto: u8, port_prefix: u32, proxy: u16, cookie: u32) -> policy_abi::PolicyEntry {
    policy_abi::PolicyEntry {
        precedence: (policy_abi::PRECEDENCE_ALLOW & !0xff) | 0x80,
        ..pentry(proto, port_prefix, false, proxy, 0, cookie)
    }
}

fn ct_flags(c: &mut Checker<'_>, key: &abi::CtKey) -> Option<(u16, u64)> {
    c.harness()
        .lookup(abi::maps::CT, key.as_bytes())
        .and_then(|v| abi::CtEntry::from_bytes(&v))
        .map(|e| (e.flags, e.packets))
}

fn ct_key(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> abi::CtKey {
    abi::CtKey {
        saddr: abi::addr_bytes(ip(src)).0,
        daddr: abi::addr_bytes(ip(dst)).0,
        sport: sport.to_be_bytes(),
        dport: dport.to_be_bytes(),
        nexthdr: TCP,
        flags,
        family: abi::FAMILY_IPV4,
        pad: 0,
    }
}

/// Proxy redirects, as Cilium main's bpf_lxc.c does them: policy_can_egress/ingress hand
/// back the entry's proxy port (bpf/lib/policy.h __policy_check `*proxy_port =
/// policy->proxy_port`), the policy verdict carries it (bpf/lib/policy_log.h
/// send_policy_verdict_notify: `verdict = proxy_port` when the verdict is OK), the packet
/// gets a TRACE_TO_PROXY trace whose dst_id is the port (ipv4_forward_to_destination at
/// egress, ipv4_policy's redirect_to_proxy at ingress), ct_create4 records proxy_redirect
/// (ct_create_fill_entry), replies and related packets of the connection go back to the
/// proxy with port 0 (handle_ipv4_from_lxc and ipv4_policy, CT_REPLY/CT_RELATED), and an
/// ESTABLISHED egress packet whose entry's flag is stale recreates the entry
/// (handle_ipv4_from_lxc, "Recreate the CT entry if the proxy_redirect flag is stale"),
/// while ingress creates on CT_NEW only.
fn redirect_cases(c: &mut Checker<'_>, now: u64) {
    set_clock(c.harness(), now);
    let (a, b) = (A.0, B.0);
    let (syn, ack) = (tcp_flags::SYN, tcp_flags::ACK);
    let redirect_key = pkey(A.1, X5.1, true, TCP, 8080, 16);
    let put = |c: &mut Checker<'_>, e: policy_abi::PolicyEntry| {
        c.harness()
            .update(abi::maps::POLICY, redirect_key.as_bytes(), e.as_bytes());
    };
    put(c, predirect(TCP, 16, 15002, 30));

    // --- egress: A -> X5:8080 goes to A's egress proxy ---
    let out = ct_key(a, X5.0, 41000, 8080, abi::TUPLE_F_OUT);
    let f = tcp(a, X5.0, 41000, 8080, syn);
    c.check(
        "A->X5:8080 SYN egress redirect",
        FROM,
        &f,
        OK,
        &[
            "verdict EGRESS L3-L4 15002 cookie=30",
            "trace 5 new",
            "trace 1 new port=15002",
        ],
    );
    match ct_flags(c, &out) {
        Some((fl, 1)) if fl & abi::CT_F_PROXY_REDIRECT != 0 => {}
        other => c.fail(format!(
            "CT entry A->X5:8080 OUT: expected proxy_redirect, 1 packet, got {other:?}"
        )),
    }
    let r = tcp(X5.0, a, 8080, 41000, syn | ack);
    c.check(
        "X5->A SYN-ACK at A's ingress: REPLY back to the egress proxy",
        TO,
        &r,
        OK,
        &["trace 1 reply port=0"],
    );
    let quoted = Packet::tcp(ip(a), ip(X5.0), 41000, 8080, syn);
    let err = Packet::icmp_error(ip(X5.0), ip(a), 3, 1, &quoted).build();
    c.check(
        "ICMP error quoting the redirected flow: RELATED, to the proxy",
        TO,
        &err,
        OK,
        &["trace 1 related port=0"],
    );
    let f = tcp(a, X5.0, 41000, 8080, ack);
    c.check(
        "A->X5 ACK: ESTABLISHED, still redirected, no verdict",
        FROM,
        &f,
        OK,
        &["trace 5 established", "trace 1 established port=15002"],
    );
    match ct_flags(c, &out) {
        // SYN, the SYN-ACK (a reply hits this entry) and the ACK.
        Some((fl, 3)) if fl & abi::CT_F_PROXY_REDIRECT != 0 => {}
        other => c.fail(format!(
            "CT entry A->X5:8080 OUT after the ACK: expected proxy_redirect, 3 packets, got {other:?}"
        )),
    }
    // The L7 rule goes away: the entry is a plain allow now.
    put(c, pentry(TCP, 16, false, 0, 0, 31));
    c.check(
        "A->X5 ACK after the redirect went: forwarded, CT entry recreated",
        FROM,
        &f,
        OK,
        &["trace 5 established"],
    );
    match ct_flags(c, &out) {
        Some((fl, 1)) if fl & abi::CT_F_PROXY_REDIRECT == 0 => {}
        other => c.fail(format!(
            "CT entry A->X5:8080 OUT recreated: expected no proxy_redirect, 1 packet, got {other:?}"
        )),
    }
    c.check(
        "X5->A reply after the recreate: to the endpoint",
        TO,
        &r,
        OK,
        &["trace 0 reply"],
    );
    // And back: the connection comes into the scope of an L7 rule.
    put(c, predirect(TCP, 16, 15002, 30));
    c.check(
        "A->X5 ACK when a redirect appears: recreated with proxy_redirect",
        FROM,
        &f,
        OK,
        &["trace 5 established", "trace 1 established port=15002"],
    );
    match ct_flags(c, &out) {
        Some((fl, 1)) if fl & abi::CT_F_PROXY_REDIRECT != 0 => {}
        other => c.fail(format!(
            "CT entry A->X5:8080 OUT recreated: expected proxy_redirect, 1 packet, got {other:?}"
        )),
    }

    // --- ingress: X5 -> B:80 goes to B's ingress proxy (cookie 20, port 15001) ---
    let inn = ct_key(X5.0, b, 5100, 80, abi::TUPLE_F_IN);
    let f = tcp(X5.0, b, 5100, 80, syn);
    c.check(
        "X5->B:80 SYN ingress redirect",
        TO,
        &f,
        OK,
        &[
            "verdict INGRESS L3-L4 15001 cookie=20",
            "trace 1 new port=15001",
        ],
    );
    let r = tcp(b, X5.0, 80, 5100, syn | ack);
    c.check(
        "B->X5 SYN-ACK at B's egress: REPLY back to the ingress proxy",
        FROM,
        &r,
        OK,
        &["trace 5 reply", "trace 1 reply port=0"],
    );
    let f = tcp(X5.0, b, 5100, 80, ack);
    c.check(
        "X5->B ACK: ESTABLISHED, still redirected",
        TO,
        &f,
        OK,
        &["trace 1 established port=15001"],
    );
    let b_key = pkey(B.1, X5.1, false, TCP, 80, 16);
    c.harness().update(
        abi::maps::POLICY,
        b_key.as_bytes(),
        pentry(TCP, 16, false, 0, 0, 20).as_bytes(),
    );
    c.check(
        "X5->B ACK after the redirect went: to the endpoint, entry kept",
        TO,
        &f,
        OK,
        &["trace 0 established"],
    );
    match ct_flags(c, &inn) {
        Some((fl, 4)) if fl & abi::CT_F_PROXY_REDIRECT != 0 => {}
        other => c.fail(format!(
            "CT entry X5->B:80 IN: ingress keeps the stale proxy_redirect, 4 packets; got {other:?}"
        )),
    }
    c.check(
        "B->X5 reply on the stale ingress entry: still to the proxy",
        FROM,
        &r,
        OK,
        &["trace 5 reply", "trace 1 reply port=0"],
    );
    c.harness().update(
        abi::maps::POLICY,
        b_key.as_bytes(),
        pentry(TCP, 16, false, 15001, 0, 20).as_bytes(),
    );
}

/// `lib/auth.h` `auth_lookup` (Cilium's `bpf/lib/auth.h`): the auth-required entry of
/// X4->B:443 passes once B's node holds (B, X4, remote node 0, spire) in `cilium_auth_map`
/// with an expiration (utime, ns >> 9) after now; an entry for another remote node does not
/// count, and an expired one drops again.
fn auth_cases(c: &mut Checker<'_>, b: &str) {
    let syn = tcp_flags::SYN;
    let key = |node: u16| abi::AuthKey {
        local_sec_label: B.2,
        remote_sec_label: X4.1,
        remote_node_id: node,
        auth_type: 1,
        pad: 0,
    };
    let until = abi::AuthInfo {
        expiration: (3 * SEC) >> 9,
    };
    set_clock(c.harness(), SEC);
    c.harness()
        .update(abi::maps::AUTH, key(7).as_bytes(), until.as_bytes());
    c.check(
        "X4->B:443 auth entry for another node",
        TO,
        &tcp(X4.0, b, 5188, 443, syn),
        SHOT,
        &["verdict INGRESS L3-L4 -189 cookie=19", "drop 189 INGRESS"],
    );
    c.harness()
        .update(abi::maps::AUTH, key(0).as_bytes(), until.as_bytes());
    c.check(
        "X4->B:443 authenticated",
        TO,
        &tcp(X4.0, b, 5189, 443, syn),
        OK,
        &["verdict INGRESS L3-L4 0 cookie=19", "trace 0 new"],
    );
    set_clock(c.harness(), 3 * SEC);
    c.check(
        "X4->B:443 authentication expired",
        TO,
        &tcp(X4.0, b, 5190, 443, syn),
        SHOT,
        &["verdict INGRESS L3-L4 -189 cookie=19", "drop 189 INGRESS"],
    );
    set_clock(c.harness(), SEC);
}
