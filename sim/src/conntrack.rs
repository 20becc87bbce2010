//! Connection tracking for the backends without a datapath (oracle, model), written from
//! Cilium's semantics (`bpf/lib/conntrack.h`, `bpf/bpf_lxc.c`, spec §5.3), so that the BPF
//! programs' conntrack is compared against an independent implementation.
//!
//! - Each enforcing side keeps its own entries, as Cilium's per-endpoint CT does: the source
//!   pod's egress hook creates an "out" entry keyed by the packet's tuple, the destination
//!   pod's ingress hook an "in" entry. They live on the node where that hook runs.
//! - Lookup: the reversed tuple with the other side's flag first (a hit is REPLY), then the
//!   tuple itself with this side's flag (ESTABLISHED), else NEW.
//! - Policy is checked on NEW and ESTABLISHED packets (the original direction); REPLY skips
//!   it. A NEW packet that passes creates the entry; a hit refreshes it, even when policy then
//!   drops the packet.
//! - A policy-verdict notification is emitted when the side enforces policy and the packet is
//!   dropped or not ESTABLISHED (`bpf_lxc.c`); the outcome's direction and match type come
//!   from those notifications only, as with the datapath's events.
//! - Lifetimes, Cilium's defaults (`bpf/node_config.h` / `pkg/defaults`): TCP 21,600 s once a
//!   non-SYN packet was seen, SYN 60 s before that, non-TCP 60 s, 10 s once both sides are
//!   closing (`CT_CLOSE_TIMEOUT`). An expired entry is absent (as if the CT garbage collector
//!   ran before every lookup).
//! - A hit follows Cilium main's `__ct_lookup` (`bpf/lib/conntrack.h`): FIN or RST closes
//!   the hook's side (both sides for an RST before both SYNs were seen), a SYN without ACK on
//!   a closing entry resets it and is NEW (policy-checked and notified as a new connection,
//!   then re-created), and a new entry starts as a SYN's whatever packet created it
//!   (`ct_create4`). See [`Entry::hit`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::cluster::{Peer, Protocol};
use crate::oracle::Flow;
use crate::verdict::{Direction, DropReason, MatchType, Outcome, Redirects};

pub const NSEC_PER_SEC: u64 = 1_000_000_000;
pub const CT_CONNECTION_LIFETIME_TCP: u64 = 21_600 * NSEC_PER_SEC;
pub const CT_CONNECTION_LIFETIME_NONTCP: u64 = 60 * NSEC_PER_SEC;
pub const CT_SYN_TIMEOUT: u64 = 60 * NSEC_PER_SEC;
pub const CT_CLOSE_TIMEOUT: u64 = 10 * NSEC_PER_SEC;

/// TCP flags a connection packet carries.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
/// The TCP flags an entry remembers per side: the agent's `CT_REPORT_FLAGS`, from
/// `--monitor-aggregation-flags` (default syn,fin,rst: `pkg/option/config.go`).
const CT_REPORT_FLAGS: u8 = TCP_SYN | TCP_FIN | TCP_RST;

/// A packet of a tracked connection, as both kinds of backend must process it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnPacket {
    pub src: Peer,
    pub dst: Peer,
    pub protocol: Protocol,
    /// TCP/UDP/SCTP ports; for ICMP echo, `sport` is the identifier on a request and `dport`
    /// on a reply (the port slots Cilium's tuple gives it).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (SYN for a connect, SYN|ACK for the first reply, ACK after that).
    pub tcp_flags: u8,
    /// ICMP type (echo request 8/128 or reply 0/129).
    pub icmp_type: u8,
}

impl ConnPacket {
    /// The destination port policy sees: the port, or the ICMP type.
    pub fn policy_port(&self) -> u16 {
        if self.protocol.is_icmp() {
            self.icmp_type as u16
        } else {
            self.dport
        }
    }
    pub fn flow(&self) -> Flow {
        Flow {
            src: self.src.clone(),
            dst: self.dst.clone(),
            protocol: self.protocol,
            dport: self.policy_port(),
        }
    }
}

/// A connection tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Tuple {
    saddr: IpAddr,
    daddr: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
}

impl Tuple {
    fn reversed(self) -> Tuple {
        Tuple {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Flag {
    Out,
    In,
}

impl Flag {
    fn other(self) -> Flag {
        match self {
            Flag::Out => Flag::In,
            Flag::In => Flag::Out,
        }
    }
}

/// Cilium's `struct ct_entry`, the fields policy depends on. `rx` is the side an ingress
/// hook sees, `tx` an egress hook's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Entry {
    expires: u64,
    seen_non_syn: bool,
    rx_closing: bool,
    tx_closing: bool,
    rx_flags_seen: u8,
    tx_flags_seen: u8,
    /// `proxy_redirect`: the connection was redirected to this proxy port when it was
    /// created (`ct_create4` with the policy's proxy port), so its replies go to the proxy.
    proxy_port: Option<u16>,
}

impl Entry {
    /// `ct_create4`: TCP entries start as if a SYN created them.
    fn created(proto: u8, ingress: bool, now: u64) -> Entry {
        let mut e = Entry::default();
        e.update_timeout(proto, if proto == 6 { TCP_SYN } else { 0 }, ingress, now);
        e
    }

    /// `ct_entry_alive`.
    fn alive(&self) -> bool {
        !self.rx_closing || !self.tx_closing
    }

    /// `__ct_update_timeout`.
    fn set_timeout(&mut self, lifetime: u64, tcp_flags: u8, ingress: bool, now: u64) {
        self.expires = now.saturating_add(lifetime);
        let seen = if ingress {
            &mut self.rx_flags_seen
        } else {
            &mut self.tx_flags_seen
        };
        *seen |= tcp_flags & CT_REPORT_FLAGS;
    }

    /// `ct_update_timeout`.
    fn update_timeout(&mut self, proto: u8, tcp_flags: u8, ingress: bool, now: u64) {
        if proto == 6 && tcp_flags & TCP_SYN == 0 {
            self.seen_non_syn = true;
        }
        self.set_timeout(lifetime(proto, self.seen_non_syn), tcp_flags, ingress, now);
    }

    /// `__ct_lookup` on an entry that is there: `Established`, or `New` for a SYN that
    /// reopens a closing entry (`ACTION_CREATE` on `ct_entry_closing`).
    fn hit(&mut self, proto: u8, tcp_flags: u8, ingress: bool, now: u64) -> CtStatus {
        let f = if proto == 6 { tcp_flags } else { 0 };
        if self.alive() {
            self.update_timeout(proto, f, ingress, now);
        }
        if f & (TCP_FIN | TCP_RST) != 0 {
            // ACTION_CLOSE
            let both_syns = self.rx_flags_seen & TCP_SYN != 0 && self.tx_flags_seen & TCP_SYN != 0;
            if f & TCP_RST != 0 && !both_syns {
                self.rx_closing = true;
                self.tx_closing = true;
            } else if ingress {
                self.rx_closing = true;
            } else {
                self.tx_closing = true;
            }
            if !self.alive() {
                self.set_timeout(CT_CLOSE_TIMEOUT, f, ingress, now);
            }
        } else if f & TCP_SYN != 0 && f & TCP_ACK == 0 && (self.rx_closing || self.tx_closing) {
            // ACTION_CREATE on a closing entry: "Return CT_NEW so that the caller creates a
            // new entry instead of updating the old one. (For policy drops the old entry
            // remains.)"
            self.rx_closing = false;
            self.tx_closing = false;
            self.rx_flags_seen = 0;
            self.tx_flags_seen = 0;
            self.seen_non_syn = false;
            self.update_timeout(proto, f, ingress, now);
            return CtStatus::New;
        }
        CtStatus::Established
    }
}

/// The CT status of a packet at one hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtStatus {
    New,
    Established,
    Reply,
}

fn lifetime(proto: u8, seen_non_syn: bool) -> u64 {
    if proto != 6 {
        CT_CONNECTION_LIFETIME_NONTCP
    } else if seen_non_syn {
        CT_CONNECTION_LIFETIME_TCP
    } else {
        CT_SYN_TIMEOUT
    }
}

/// What one side's policy says about a packet (from the oracle or the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideVerdict {
    /// Whether the side is a pod that enforces policy in this direction.
    pub enforced: bool,
    pub allowed: bool,
    pub reason: Option<DropReason>,
    pub match_type: Option<MatchType>,
    /// The proxy port of the policy entry that allowed it (a redirect).
    pub proxy_port: Option<u16>,
}

/// Conntrack tables of every node.
#[derive(Clone, Debug, Default)]
pub struct Conntrack {
    entries: BTreeMap<(String, Flag, Tuple), Entry>,
}

/// What one hook did to a packet.
struct HookResult {
    passed: bool,
    reason: Option<DropReason>,
    /// `Some(match type)` when a policy-verdict notification was emitted.
    notified: Option<Option<MatchType>>,
    /// Redirected to this proxy port: the policy's on NEW and ESTABLISHED packets, the
    /// entry's (`proxy_redirect`, set when the entry was created) on replies.
    proxy_port: Option<u16>,
}

impl Conntrack {
    pub fn new() -> Self {
        Conntrack::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The live entry under `key` (an expired one is as good as collected).
    fn live(&mut self, key: &(String, Flag, Tuple), now: u64) -> Option<&mut Entry> {
        self.entries.get_mut(key).filter(|e| now < e.expires)
    }

    /// `ct_lookup4/6` with `SCOPE_BIDIR` at the hook `flag` stands for (`Out`: egress,
    /// `In`: ingress): the reversed tuple first (REPLY), then the tuple (ESTABLISHED).
    fn lookup(&mut self, node: &str, flag: Flag, t: Tuple, tcp_flags: u8, now: u64) -> CtStatus {
        let ingress = flag == Flag::In;
        let rev = (node.to_string(), flag.other(), t.reversed());
        if let Some(e) = self.live(&rev, now) {
            // A reopened reverse entry is NEW there: the forward lookup follows.
            if e.hit(t.proto, tcp_flags, ingress, now) == CtStatus::Established {
                return CtStatus::Reply;
            }
        }
        let same = (node.to_string(), flag, t);
        match self.live(&same, now) {
            Some(e) => e.hit(t.proto, tcp_flags, ingress, now),
            None => CtStatus::New,
        }
    }

    fn create(&mut self, node: &str, flag: Flag, t: Tuple, now: u64, proxy_port: Option<u16>) {
        let mut e = Entry::created(t.proto, flag == Flag::In, now);
        e.proxy_port = proxy_port;
        self.entries.insert((node.to_string(), flag, t), e);
    }

    #[allow(clippy::too_many_arguments)]
    fn hook(
        &mut self,
        node: &str,
        flag: Flag,
        t: Tuple,
        pkt: &ConnPacket,
        now: u64,
        policy: SideVerdict,
    ) -> HookResult {
        let status = self.lookup(node, flag, t, pkt.tcp_flags, now);
        if status == CtStatus::Reply {
            let rev = (node.to_string(), flag.other(), t.reversed());
            return HookResult {
                passed: true,
                reason: None,
                notified: None,
                // The return path of a redirected connection goes to the proxy's socket:
                // port 0 (l7dp's convention, iface-redirect.md).
                proxy_port: self.entries.get(&rev).and_then(|e| e.proxy_port).map(|_| 0),
            };
        }
        let notified = (policy.enforced && (!policy.allowed || status != CtStatus::Established))
            .then_some(policy.match_type);
        if !policy.allowed {
            return HookResult {
                passed: false,
                reason: policy.reason,
                notified,
                proxy_port: None,
            };
        }
        if status == CtStatus::New {
            self.create(node, flag, t, now, policy.proxy_port);
        }
        HookResult {
            passed: true,
            reason: None,
            notified,
            proxy_port: policy.proxy_port,
        }
    }

    /// Runs a packet through the source pod's egress hook and the destination pod's ingress
    /// hook, with `decide` giving each side's policy verdict for the packet's flow. A packet
    /// the egress hook redirects to the source's proxy stops there (the ingress hook runs for
    /// the proxy's upstream packet, [`Conntrack::process_upstream`]).
    pub fn process(
        &mut self,
        pkt: &ConnPacket,
        src: (IpAddr, Option<&str>),
        dst: (IpAddr, Option<&str>),
        now: u64,
        mut decide: impl FnMut(Direction) -> SideVerdict,
    ) -> Outcome {
        let t = Self::tuple(pkt, src.0, dst.0);
        let mut egress = None;
        let mut redirect = Redirects::default();
        // A pod's hooks, or (the caller passes its node only with the host firewall on) a
        // host endpoint's (`bpf/lib/host_firewall.h` tracks the host's connections too).
        if let (Peer::Pod(_) | Peer::Host(_), Some(node)) = (&pkt.src, src.1) {
            let r = self.hook(node, Flag::Out, t, pkt, now, decide(Direction::Egress));
            if !r.passed {
                return Outcome {
                    allowed: false,
                    reason: r.reason,
                    direction: Some(Direction::Egress),
                    match_type: r.notified.flatten(),
                    redirect,
                };
            }
            egress = r.notified;
            if r.proxy_port.is_some() {
                redirect.egress = r.proxy_port;
                return Outcome {
                    allowed: true,
                    reason: None,
                    direction: egress.map(|_| Direction::Egress),
                    match_type: egress.flatten(),
                    redirect,
                };
            }
        }
        self.ingress_side(
            pkt,
            t,
            dst,
            now,
            egress,
            redirect,
            decide(Direction::Ingress),
        )
    }

    /// The proxy's upstream packet of a packet [`Conntrack::process`] stopped at the source's
    /// egress proxy: the destination's ingress hook only (the proxy keeps the source's
    /// identity); `egress` is the egress hook's notification, so the outcome reads as if both
    /// sides had run, with the egress redirect kept.
    #[allow(clippy::too_many_arguments)]
    pub fn process_upstream(
        &mut self,
        pkt: &ConnPacket,
        src: IpAddr,
        dst: (IpAddr, Option<&str>),
        now: u64,
        egress: Option<Option<MatchType>>,
        egress_redirect: Option<u16>,
        ingress: SideVerdict,
    ) -> Outcome {
        let t = Self::tuple(pkt, src, dst.0);
        let redirect = Redirects {
            egress: egress_redirect,
            ingress: None,
        };
        self.ingress_side(pkt, t, dst, now, egress, redirect, ingress)
    }

    fn tuple(pkt: &ConnPacket, saddr: IpAddr, daddr: IpAddr) -> Tuple {
        Tuple {
            saddr,
            daddr,
            sport: pkt.sport,
            dport: pkt.dport,
            proto: pkt.protocol.number(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ingress_side(
        &mut self,
        pkt: &ConnPacket,
        t: Tuple,
        dst: (IpAddr, Option<&str>),
        now: u64,
        egress: Option<Option<MatchType>>,
        mut redirect: Redirects,
        policy: SideVerdict,
    ) -> Outcome {
        let mut ingress = None;
        if let (Peer::Pod(_) | Peer::Host(_), Some(node)) = (&pkt.dst, dst.1) {
            let r = self.hook(node, Flag::In, t, pkt, now, policy);
            if !r.passed {
                return Outcome {
                    allowed: false,
                    reason: r.reason,
                    direction: Some(Direction::Ingress),
                    match_type: r.notified.flatten(),
                    redirect,
                };
            }
            ingress = r.notified;
            redirect.ingress = r.proxy_port;
        }
        let (direction, match_type) = match (ingress, egress) {
            (Some(m), _) => (Some(Direction::Ingress), m),
            (None, Some(m)) => (Some(Direction::Egress), m),
            (None, None) => (None, None),
        };
        Outcome {
            allowed: true,
            reason: None,
            direction,
            match_type,
            redirect,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::PodName;

    fn pod(s: &str) -> Peer {
        Peer::Pod(PodName::parse(s).unwrap())
    }

    fn allow(enforced: bool) -> SideVerdict {
        SideVerdict {
            enforced,
            allowed: true,
            reason: None,
            match_type: enforced.then_some(MatchType::L3Only),
            proxy_port: None,
        }
    }

    fn deny() -> SideVerdict {
        SideVerdict {
            enforced: true,
            allowed: false,
            reason: Some(DropReason::PolicyDenied),
            match_type: Some(MatchType::None),
            proxy_port: None,
        }
    }

    fn pkt(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> ConnPacket {
        ConnPacket {
            src: pod(src),
            dst: pod(dst),
            protocol: Protocol::Tcp,
            sport,
            dport,
            tcp_flags: flags,
            icmp_type: 0,
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    // spec §7 #21: B's egress default-deny does not stop B's replies on a connection A opened.
    #[test]
    fn replies_skip_policy() {
        let mut ct = Conntrack::new();
        let syn = pkt("x/a", "x/b", 40000, 80, TCP_SYN);
        let o = ct.process(&syn, (A, Some("n1")), (B, Some("n1")), 0, |_| allow(true));
        assert!(o.allowed);
        let reply = pkt("x/b", "x/a", 80, 40000, TCP_SYN | TCP_ACK);
        let o = ct.process(&reply, (B, Some("n1")), (A, Some("n1")), 1, |_| deny());
        assert!(o.allowed, "{o:?}");
        assert_eq!(o.direction, None);
        // A connection B opens itself is policy-checked.
        let syn_b = pkt("x/b", "x/a", 41000, 80, TCP_SYN);
        let o = ct.process(&syn_b, (B, Some("n1")), (A, Some("n1")), 2, |d| {
            if d == Direction::Egress {
                deny()
            } else {
                allow(true)
            }
        });
        assert!(!o.allowed);
        assert_eq!(o.direction, Some(Direction::Egress));
    }

    // spec §5.3: policy is checked on every original-direction packet; an allowed
    // ESTABLISHED packet emits no policy verdict.
    #[test]
    fn established_packets_are_policy_checked() {
        let mut ct = Conntrack::new();
        let syn = pkt("x/a", "x/b", 40000, 80, TCP_SYN);
        ct.process(&syn, (A, Some("n1")), (B, Some("n1")), 0, |_| allow(true));
        let ack = pkt("x/a", "x/b", 40000, 80, TCP_ACK);
        let o = ct.process(&ack, (A, Some("n1")), (B, Some("n1")), 1, |_| allow(true));
        assert_eq!((o.allowed, o.direction), (true, None));
        let o = ct.process(&ack, (A, Some("n1")), (B, Some("n1")), 2, |d| {
            if d == Direction::Ingress {
                deny()
            } else {
                allow(true)
            }
        });
        assert_eq!((o.allowed, o.direction), (false, Some(Direction::Ingress)));
    }

    #[test]
    fn entries_expire_on_the_virtual_clock() {
        let mut ct = Conntrack::new();
        let mut udp = pkt("x/a", "x/b", 40000, 53, 0);
        udp.protocol = Protocol::Udp;
        ct.process(&udp, (A, Some("n1")), (B, Some("n1")), 0, |_| allow(true));
        let mut reply = pkt("x/b", "x/a", 53, 40000, 0);
        reply.protocol = Protocol::Udp;
        let live = ct.process(
            &reply,
            (B, Some("n1")),
            (A, Some("n1")),
            59 * NSEC_PER_SEC,
            |_| deny(),
        );
        assert!(live.allowed);
        // The reply refreshed the entries: 60 s from 59 s.
        let later = ct.process(
            &reply,
            (B, Some("n1")),
            (A, Some("n1")),
            119 * NSEC_PER_SEC - 1,
            |_| deny(),
        );
        assert!(later.allowed);
        let expired = ct.process(
            &reply,
            (B, Some("n1")),
            (A, Some("n1")),
            200 * NSEC_PER_SEC,
            |_| deny(),
        );
        assert!(!expired.allowed);
    }

    // Cilium main bpf/lib/conntrack.h __ct_lookup, ACTION_CREATE on ct_entry_closing: a SYN
    // on a closed 5-tuple within CT_CLOSE_TIMEOUT is NEW: policy-checked and notified.
    #[test]
    fn syn_on_a_closing_entry_is_new_and_policy_checked() {
        let mut ct = Conntrack::new();
        let (a, b) = ((A, Some("n1")), (B, Some("n1")));
        let open = |ct: &mut Conntrack, t: u64| {
            ct.process(&pkt("x/a", "x/b", 40000, 80, TCP_SYN), a, b, t, |_| {
                allow(true)
            })
        };
        assert_eq!(open(&mut ct, 0).direction, Some(Direction::Ingress));
        ct.process(
            &pkt("x/b", "x/a", 80, 40000, TCP_SYN | TCP_ACK),
            b,
            a,
            0,
            |_| deny(),
        );
        ct.process(&pkt("x/a", "x/b", 40000, 80, TCP_ACK), a, b, 0, |_| {
            allow(true)
        });
        let fin = pkt("x/a", "x/b", 40000, 80, TCP_FIN | TCP_ACK);
        assert!(!ct.process(&fin, a, b, 0, |_| deny()).allowed);
        // A denied FIN still closed the egress side it hit (the hit comes before policy).
        let fin_back = pkt("x/b", "x/a", 80, 40000, TCP_FIN | TCP_ACK);
        assert!(ct.process(&fin_back, b, a, 0, |_| deny()).allowed);
        // Established, not re-notified, while open; NEW once closing.
        let o = open(&mut ct, NSEC_PER_SEC);
        assert_eq!((o.allowed, o.direction), (true, Some(Direction::Ingress)));
        // A denied reopen leaves the (reset) entry: the next SYN is ESTABLISHED there.
        let mut ct2 = ct.clone();
        let denied = ct2.process(
            &pkt("x/a", "x/b", 40000, 80, TCP_SYN),
            a,
            b,
            2 * NSEC_PER_SEC,
            |_| deny(),
        );
        assert!(!denied.allowed);
        let again = ct2.process(
            &pkt("x/a", "x/b", 40000, 80, TCP_SYN),
            a,
            b,
            2 * NSEC_PER_SEC,
            |_| allow(true),
        );
        assert_eq!((again.allowed, again.direction), (true, None));
    }

    // ct_entry_seen_both_syns: an RST before the SYN-ACK closes both sides at once; after
    // it, only its own side.
    #[test]
    fn rst_closes_both_sides_only_before_both_syns() {
        let mut ct = Conntrack::new();
        let (a, b) = ((A, Some("n1")), (B, Some("n1")));
        ct.process(&pkt("x/a", "x/b", 40000, 80, TCP_SYN), a, b, 0, |_| {
            allow(true)
        });
        ct.process(&pkt("x/a", "x/b", 40000, 80, TCP_RST), a, b, 0, |_| {
            allow(true)
        });
        let key = (
            "n1".to_string(),
            Flag::Out,
            Tuple {
                saddr: A,
                daddr: B,
                sport: 40000,
                dport: 80,
                proto: 6,
            },
        );
        let e = ct.entries[&key];
        assert!(e.rx_closing && e.tx_closing, "{e:?}");
        assert_eq!(e.expires, CT_CLOSE_TIMEOUT);

        let mut ct = Conntrack::new();
        ct.process(&pkt("x/a", "x/b", 40000, 80, TCP_SYN), a, b, 0, |_| {
            allow(true)
        });
        ct.process(
            &pkt("x/b", "x/a", 80, 40000, TCP_SYN | TCP_ACK),
            b,
            a,
            0,
            |_| allow(true),
        );
        ct.process(&pkt("x/a", "x/b", 40000, 80, TCP_RST), a, b, 0, |_| {
            allow(true)
        });
        let e = ct.entries[&key];
        assert!(e.tx_closing && !e.rx_closing, "{e:?}");
        assert_eq!(e.expires, CT_CONNECTION_LIFETIME_TCP);
    }
}
