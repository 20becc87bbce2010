//! Decoding of `cilium_events` ring-buffer records into typed events, printed the way
//! Hubble's compact output reads (`policy-verdict:L3-L4 INGRESS ALLOWED`, `drop (Policy
//! denied)`, `to-endpoint FORWARDED`).
//!
//! Record layout: [`crate::abi::VerdictEvent`] (C: `datapath/bpf/lib/events.h`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::abi::{self, FlowTuple, Pod, VerdictEvent};

/// A drop reason by Cilium's number (`bpf/lib/drop_reasons.h`, flow.proto `DropReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropReason(pub u8);

impl DropReason {
    pub const INVALID_SIP: DropReason = DropReason(132);
    pub const POLICY: DropReason = DropReason(133);
    pub const INVALID: DropReason = DropReason(134);
    pub const UNKNOWN_L3: DropReason = DropReason(139);
    pub const MISSED_TAIL_CALL: DropReason = DropReason(140);
    pub const CT_CREATE_FAILED: DropReason = DropReason(155);
    pub const INVALID_EXTHDR: DropReason = DropReason(156);
    pub const FRAG_NOSUPPORT: DropReason = DropReason(157);
    pub const UNSUPPORTED_L2: DropReason = DropReason(166);
    pub const POLICY_DENY: DropReason = DropReason(181);
    pub const POLICY_AUTH_REQUIRED: DropReason = DropReason(189);
    pub const EP_NOT_READY: DropReason = DropReason(203);

    /// Cilium's text (`pkg/monitor/api/drop.go`).
    pub fn text(self) -> &'static str {
        match self.0 {
            132 => "Invalid source ip",
            133 => "Policy denied",
            134 => "Invalid packet",
            139 => "Unknown L3 target address",
            140 => "Missed tail call",
            155 => "CT map insertion failed",
            156 => "Invalid IPv6 extension header",
            157 => "Fragmentation needed",
            166 => "Unsupported L2 protocol",
            181 => "Policy denied by denylist",
            189 => "Authentication required",
            203 => "Endpoint policy program not available",
            _ => "Unknown drop reason",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text(), self.0)
    }
}

/// Policy match type (`bpf/lib/policy_log.h`, spec §5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    None,
    L3Only,
    L3L4,
    L4Only,
    All,
    L3Proto,
    ProtoOnly,
    Unknown(u8),
}

impl MatchType {
    pub fn from_raw(v: u8) -> MatchType {
        match v {
            0 => MatchType::None,
            1 => MatchType::L3Only,
            2 => MatchType::L3L4,
            3 => MatchType::L4Only,
            4 => MatchType::All,
            5 => MatchType::L3Proto,
            6 => MatchType::ProtoOnly,
            v => MatchType::Unknown(v),
        }
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchType::None => f.write_str("none"),
            MatchType::L3Only => f.write_str("L3-Only"),
            MatchType::L3L4 => f.write_str("L3-L4"),
            MatchType::L4Only => f.write_str("L4-Only"),
            MatchType::All => f.write_str("all"),
            MatchType::L3Proto => f.write_str("L3-Proto"),
            MatchType::ProtoOnly => f.write_str("Proto-Only"),
            MatchType::Unknown(v) => write!(f, "unknown({v})"),
        }
    }
}

/// Traffic direction of the enforcing endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
    Unknown(u8),
}

impl Direction {
    pub fn from_raw(v: u8) -> Direction {
        match v {
            abi::DIR_INGRESS => Direction::Ingress,
            abi::DIR_EGRESS => Direction::Egress,
            v => Direction::Unknown(v),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Direction::Ingress => f.write_str("INGRESS"),
            Direction::Egress => f.write_str("EGRESS"),
            Direction::Unknown(v) => write!(f, "UNKNOWN({v})"),
        }
    }
}

/// Conntrack status of the packet (`CT_*`, also Cilium's trace reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtStatus {
    New,
    Established,
    Reply,
    Related,
    Reopened,
    Unknown(u8),
}

impl CtStatus {
    pub fn from_raw(v: u8) -> CtStatus {
        match v {
            0 => CtStatus::New,
            1 => CtStatus::Established,
            2 => CtStatus::Reply,
            3 => CtStatus::Related,
            4 => CtStatus::Reopened,
            v => CtStatus::Unknown(v),
        }
    }
}

impl fmt::Display for CtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtStatus::New => f.write_str("new"),
            CtStatus::Established => f.write_str("established"),
            CtStatus::Reply => f.write_str("reply"),
            CtStatus::Related => f.write_str("related"),
            CtStatus::Reopened => f.write_str("reopened"),
            CtStatus::Unknown(v) => write!(f, "ct-unknown({v})"),
        }
    }
}

/// The flow a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub tcp_flags: u8,
    pub fragment: bool,
    pub ct_status: CtStatus,
    pub is_reply: bool,
}

impl Flow {
    pub fn from_tuple(t: &FlowTuple) -> Flow {
        let addr = |a: [u8; 16]| -> IpAddr {
            if t.family == abi::FAMILY_IPV6 {
                IpAddr::V6(Ipv6Addr::from(a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        Flow {
            src: addr(t.saddr),
            dst: addr(t.daddr),
            sport: u16::from_be_bytes(t.sport),
            dport: u16::from_be_bytes(t.dport),
            proto: t.proto,
            icmp_type: t.icmp_type,
            icmp_code: t.icmp_code,
            tcp_flags: t.tcp_flags,
            fragment: t.fragment != 0,
            ct_status: CtStatus::from_raw(t.ct_status),
            is_reply: t.is_reply != 0,
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |ip: IpAddr, port: u16| match ip {
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
            IpAddr::V4(_) => format!("{ip}:{port}"),
        };
        match self.proto {
            1 | 58 => write!(
                f,
                "{} -> {} {} type {} code {}",
                self.src,
                self.dst,
                if self.proto == 1 { "ICMPv4" } else { "ICMPv6" },
                self.icmp_type,
                self.icmp_code
            )?,
            6 | 17 | 132 => {
                let name = match self.proto {
                    6 => "TCP",
                    17 => "UDP",
                    _ => "SCTP",
                };
                write!(
                    f,
                    "{} -> {} {name}",
                    join(self.src, self.sport),
                    join(self.dst, self.dport)
                )?;
                if self.proto == 6 {
                    write!(f, " Flags: {}", TcpFlags(self.tcp_flags))?;
                }
            }
            p => write!(f, "{} -> {} proto {p}", self.src, self.dst)?,
        }
        if self.fragment {
            f.write_str(" fragment")?;
        }
        Ok(())
    }
}

struct TcpFlags(u8);

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (0x02, "SYN"),
            (0x10, "ACK"),
            (0x01, "FIN"),
            (0x04, "RST"),
            (0x08, "PSH"),
            (0x20, "URG"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if set.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&set.join(", "))
        }
    }
}

/// Fields every record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Common {
    /// Local endpoint id (0 when the packet had none).
    pub endpoint: u16,
    /// Harness clock, ns.
    pub timestamp: u64,
    pub len: u32,
    pub src_identity: u32,
    pub dst_identity: u32,
    pub direction: Direction,
    pub flow: Flow,
}

/// A policy-verdict notification (type 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyVerdict {
    pub common: Common,
    pub remote_identity: u32,
    /// 0 allow, > 0 proxy port (redirect), < 0 minus the drop reason.
    pub verdict: i32,
    pub dst_port: u16,
    pub proto: u8,
    pub ipv6: bool,
    pub match_type: MatchType,
    pub audited: bool,
    pub auth_type: u8,
    pub cookie: u32,
}

impl PolicyVerdict {
    /// Hubble's verdict word for this notification.
    pub fn verdict_word(&self) -> &'static str {
        if self.verdict < 0 {
            "DENIED"
        } else if self.audited {
            "AUDIT"
        } else if self.verdict > 0 {
            "REDIRECTED"
        } else {
            "ALLOWED"
        }
    }
}

/// A drop (type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Drop {
    pub common: Common,
    pub reason: DropReason,
}

/// A forwarded packet (type 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Trace {
    pub common: Common,
    /// Cilium's observation point (`TRACE_TO_LXC` 0, `TRACE_TO_PROXY` 1, `TRACE_FROM_LXC`
    /// 5).
    pub obs_point: u8,
    /// Cilium's `dst_id`: the local endpoint, or for `TRACE_TO_PROXY` the proxy port (0 on
    /// the return path of a redirected connection).
    pub dst_id: u16,
}

impl Trace {
    /// The proxy port of a `TRACE_TO_PROXY` trace (Hubble's `proxy_port`,
    /// `pkg/hubble/parser/threefour/parser.go` decodeProxyPort: the trace's `DstID`).
    pub fn proxy_port(&self) -> Option<u16> {
        (self.obs_point == abi::TRACE_TO_PROXY).then_some(self.dst_id)
    }

    /// Cilium's observation point name (`pkg/monitor/api/types.go` TraceObservationPoints:
    /// `to-endpoint`, `to-proxy`, `from-endpoint`, `to-host`, `from-host`).
    pub fn point_name(&self) -> String {
        match self.obs_point {
            abi::TRACE_TO_LXC => "to-endpoint".to_string(),
            abi::TRACE_TO_PROXY => "to-proxy".to_string(),
            abi::TRACE_FROM_LXC => "from-endpoint".to_string(),
            abi::TRACE_TO_HOST => "to-host".to_string(),
            abi::TRACE_FROM_HOST => "from-host".to_string(),
            p => format!("trace-point-{p}"),
        }
    }
}

/// One ring-buffer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    PolicyVerdict(PolicyVerdict),
    Drop(Drop),
    Trace(Trace),
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event record of {len} bytes is shorter than the {want}-byte verdict_event")]
    Short { len: usize, want: usize },
    #[error("event record has unknown type {0}")]
    UnknownType(u8),
}

impl Event {
    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let want = std::mem::size_of::<VerdictEvent>();
        let ev = VerdictEvent::from_bytes(bytes).ok_or(DecodeError::Short {
            len: bytes.len(),
            want,
        })?;
        Event::from_raw(&ev)
    }

    pub fn from_raw(ev: &VerdictEvent) -> Result<Event, DecodeError> {
        let common = Common {
            endpoint: ev.source,
            timestamp: ev.timestamp,
            len: ev.len_orig,
            src_identity: ev.src_label,
            dst_identity: ev.dst_label,
            direction: Direction::from_raw(ev.flags & 0x3),
            flow: Flow::from_tuple(&ev.tuple),
        };
        Ok(match ev.r#type {
            abi::CILIUM_NOTIFY_POLICY_VERDICT => Event::PolicyVerdict(PolicyVerdict {
                common,
                remote_identity: ev.remote_label,
                verdict: ev.verdict,
                dst_port: ev.dst_port,
                proto: ev.proto,
                ipv6: (ev.flags >> abi::PV_F_IPV6_SHIFT) & 1 != 0,
                match_type: MatchType::from_raw((ev.flags >> abi::PV_F_MATCH_SHIFT) & 0x7),
                audited: (ev.flags >> abi::PV_F_AUDITED_SHIFT) & 1 != 0,
                auth_type: ev.auth_type,
                cookie: ev.cookie,
            }),
            abi::CILIUM_NOTIFY_DROP => Event::Drop(Drop {
                common,
                reason: DropReason(ev.subtype),
            }),
            abi::CILIUM_NOTIFY_TRACE => Event::Trace(Trace {
                common,
                obs_point: ev.subtype,
                dst_id: ev.ep_id,
            }),
            t => return Err(DecodeError::UnknownType(t)),
        })
    }

    pub fn common(&self) -> &Common {
        match self {
            Event::PolicyVerdict(e) => &e.common,
            Event::Drop(e) => &e.common,
            Event::Trace(e) => &e.common,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.common();
        match self {
            Event::PolicyVerdict(e) => write!(
                f,
                "policy-verdict:{} {} {} ep {} identity {}->{}: {}",
                e.match_type,
                c.direction,
                e.verdict_word(),
                c.endpoint,
                c.src_identity,
                c.dst_identity,
                c.flow
            ),
            Event::Drop(e) => write!(
                f,
                "drop ({}) {} ep {} identity {}->{}: {}",
                e.reason, c.direction, c.endpoint, c.src_identity, c.dst_identity, c.flow
            ),
            Event::Trace(e) => {
                write!(f, "{} FORWARDED ({})", e.point_name(), c.flow.ct_status)?;
                // pkg/monitor/datapath_trace.go traceSummary: "-> proxy port N".
                if let Some(p) = e.proxy_port().filter(|p| *p != 0) {
                    write!(f, " port {p}")?;
                }
                write!(
                    f,
                    " ep {} identity {}->{}: {}",
                    c.endpoint, c.src_identity, c.dst_identity, c.flow
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_prints_a_policy_verdict() {
        let mut raw = VerdictEvent {
            r#type: abi::CILIUM_NOTIFY_POLICY_VERDICT,
            source: 7,
            src_label: 1000,
            dst_label: 2000,
            remote_label: 1000,
            verdict: -133,
            dst_port: 80,
            proto: 6,
            flags: abi::DIR_INGRESS | (2 << abi::PV_F_MATCH_SHIFT),
            ..Default::default()
        };
        raw.tuple.family = abi::FAMILY_IPV4;
        raw.tuple.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        raw.tuple.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        raw.tuple.sport = 1234u16.to_be_bytes();
        raw.tuple.dport = 80u16.to_be_bytes();
        raw.tuple.proto = 6;
        raw.tuple.tcp_flags = 0x02;
        let ev = Event::decode(raw.as_bytes()).unwrap();
        assert_eq!(
            ev.to_string(),
            "policy-verdict:L3-L4 INGRESS DENIED ep 7 identity 1000->2000: \
             10.0.0.1:1234 -> 10.0.0.2:80 TCP Flags: SYN"
        );
        assert!(matches!(
            Event::decode(&[0; 10]),
            Err(DecodeError::Short { .. })
        ));
    }
}
