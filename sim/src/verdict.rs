//! Verdict vocabulary shared by every backend: directions, drop reasons with Cilium's codes
//! and Hubble's names (spec §5.4), and policy-verdict match types (spec §5.5).

use std::fmt;

/// Traffic direction as seen by the endpoint that enforces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "ingress" | "INGRESS" | "Ingress" => Some(Direction::Ingress),
            "egress" | "EGRESS" | "Egress" => Some(Direction::Egress),
            _ => None,
        }
    }
    /// Cilium's `TrafficDirection`: 0 ingress, 1 egress.
    pub fn bit(self) -> u8 {
        match self {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// A drop reason (`bpf/lib/drop_reasons.h`), with Hubble's `drop_reason_desc` as Display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// 133 DROP_POLICY: no allow entry.
    PolicyDenied,
    /// 181 DROP_POLICY_DENY: a deny entry.
    PolicyDeny,
    /// 189 DROP_POLICY_AUTH_REQUIRED.
    AuthRequired,
    /// 157 DROP_FRAG_NOSUPPORT.
    FragNoSupport,
    /// 134 DROP_INVALID.
    Invalid,
    /// 170 DROP_ENCAP_PROHIBITED.
    EncapProhibited,
    /// 163 DROP_UNKNOWN_CT.
    UnknownCt,
    /// Any other code a datapath reported.
    Other(u8),
}

impl DropReason {
    pub fn code(self) -> u8 {
        match self {
            DropReason::PolicyDenied => 133,
            DropReason::PolicyDeny => 181,
            DropReason::AuthRequired => 189,
            DropReason::FragNoSupport => 157,
            DropReason::Invalid => 134,
            DropReason::EncapProhibited => 170,
            DropReason::UnknownCt => 163,
            DropReason::Other(c) => c,
        }
    }
    pub fn from_code(c: u8) -> DropReason {
        match c {
            133 => DropReason::PolicyDenied,
            181 => DropReason::PolicyDeny,
            189 => DropReason::AuthRequired,
            157 => DropReason::FragNoSupport,
            134 => DropReason::Invalid,
            170 => DropReason::EncapProhibited,
            163 => DropReason::UnknownCt,
            c => DropReason::Other(c),
        }
    }
    /// Hubble's `drop_reason_desc` spelling.
    pub fn hubble_name(self) -> String {
        match self {
            DropReason::PolicyDenied => "POLICY_DENIED".into(),
            DropReason::PolicyDeny => "POLICY_DENY".into(),
            DropReason::AuthRequired => "AUTH_REQUIRED".into(),
            DropReason::FragNoSupport => "IP_FRAGMENTATION_NOT_SUPPORTED".into(),
            DropReason::Invalid => "INVALID_PACKET_DROPPED".into(),
            DropReason::EncapProhibited => "ENCAPSULATION_TRAFFIC_IS_PROHIBITED".into(),
            DropReason::UnknownCt => "UNKNOWN_CONNECTION_TRACKING_STATE".into(),
            DropReason::Other(c) => format!("DROP_REASON_{c}"),
        }
    }
    /// Cilium's monitor text ("Policy denied", ...).
    pub fn text(self) -> &'static str {
        match self {
            DropReason::PolicyDenied => "Policy denied",
            DropReason::PolicyDeny => "Policy denied by denylist",
            DropReason::AuthRequired => "Authentication required",
            DropReason::FragNoSupport => "IP fragmentation not supported",
            DropReason::Invalid => "Invalid packet",
            DropReason::EncapProhibited => "Encapsulation traffic is prohibited",
            DropReason::UnknownCt => "Unknown connection tracking state",
            DropReason::Other(_) => "Unknown drop reason",
        }
    }
    pub fn parse(s: &str) -> Option<DropReason> {
        Some(match s {
            "POLICY_DENIED" => DropReason::PolicyDenied,
            "POLICY_DENY" => DropReason::PolicyDeny,
            "AUTH_REQUIRED" => DropReason::AuthRequired,
            "IP_FRAGMENTATION_NOT_SUPPORTED" => DropReason::FragNoSupport,
            "INVALID_PACKET_DROPPED" => DropReason::Invalid,
            "ENCAPSULATION_TRAFFIC_IS_PROHIBITED" => DropReason::EncapProhibited,
            "UNKNOWN_CONNECTION_TRACKING_STATE" => DropReason::UnknownCt,
            _ => return None,
        })
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.hubble_name(), self.code())
    }
}

/// Policy-verdict match type (`bpf/lib/policy_log.h`, spec §5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchType {
    None = 0,
    L3Only = 1,
    L3L4 = 2,
    L4Only = 3,
    All = 4,
    L3Proto = 5,
    ProtoOnly = 6,
}

impl MatchType {
    pub fn from_u8(v: u8) -> Option<MatchType> {
        Some(match v {
            0 => MatchType::None,
            1 => MatchType::L3Only,
            2 => MatchType::L3L4,
            3 => MatchType::L4Only,
            4 => MatchType::All,
            5 => MatchType::L3Proto,
            6 => MatchType::ProtoOnly,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::None => "none",
            MatchType::L3Only => "L3-Only",
            MatchType::L3L4 => "L3-L4",
            MatchType::L4Only => "L4-Only",
            MatchType::All => "all",
            MatchType::L3Proto => "L3-Proto",
            MatchType::ProtoOnly => "Proto-Only",
        }
    }
    pub fn parse(s: &str) -> Option<MatchType> {
        [
            MatchType::None,
            MatchType::L3Only,
            MatchType::L3L4,
            MatchType::L4Only,
            MatchType::All,
            MatchType::L3Proto,
            MatchType::ProtoOnly,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one probe or packet on one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// The drop reason when denied.
    pub reason: Option<DropReason>,
    /// The direction that decided: the denying side, or for an allowed flow the last
    /// enforcing side (ingress when both enforce). `None` when no side enforces policy.
    pub direction: Option<Direction>,
    /// The match type of the deciding policy verdict, when the backend computes one.
    pub match_type: Option<MatchType>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed {
            f.write_str("allow")?;
        } else {
            f.write_str("deny")?;
            if let Some(r) = self.reason {
                write!(f, " {}", r.hubble_name())?;
            }
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
