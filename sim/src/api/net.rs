//! Scalar network types of the policy APIs: CIDRs, ports, protocols, entities and ICMP types.

use super::de::from_str_scalar;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP prefix. Host bits are masked (`10.1.2.3/8` is `10.0.0.0/8`), as Cilium does when it
/// turns a CIDR into a selector label; the API accepts such prefixes. In `fromCIDR`/`toCIDR` a
/// bare address means a /32 (IPv4) or /128 (IPv6) prefix; `CIDRSet` entries and Kubernetes
/// `ipBlock`s need the `/len` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// True when `other` lies inside `self` (same family, at least as long a prefix).
    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = String;
    /// Parses `a.b.c.d/len`, `v6/len`, or a bare address.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            return PrefixCidr::from_str(s).map(|p| p.0);
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Cidr(IpNet::from(ip))),
            Err(_) => Err(format!(
                "unable to parse CIDR {s:?}: not an IP address or prefix"
            )),
        }
    }
}
from_str_scalar!(Cidr, "a CIDR such as 10.0.0.0/8 or an IP address");

/// A CIDR that must be written with its prefix length (`CIDRRule.cidr`, `except`, `ipBlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrefixCidr(pub Cidr);

impl FromStr for PrefixCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("IP must be specified".into());
        }
        match s.parse::<IpNet>() {
            Ok(net) => Ok(PrefixCidr(Cidr(net.trunc()))),
            Err(_) => Err(format!(
                "unable to parse CIDR {s:?}: expected an address with a prefix length, such as 10.0.0.0/8"
            )),
        }
    }
}
from_str_scalar!(PrefixCidr, "a CIDR such as 10.0.0.0/8");

/// A port: a number, or a named port (an IANA service name, lowercased as Cilium's sanitize
/// does). Port `0` in a CiliumNetworkPolicy means every port of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    Number(u16),
    Name(String),
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Name(n) => f.write_str(n),
        }
    }
}

/// Cilium's `iana.IsSvcName`: 1–15 characters, alphanumerics and single inner dashes, at
/// least one letter.
pub(crate) fn is_svc_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

impl FromStr for Port {
    type Err = String;
    /// The CiliumNetworkPolicy form: a string holding a number 0–65535 or a service name
    /// (an unquoted YAML number is read as its text).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("port must be specified".into());
        }
        if is_svc_name(s) {
            return Ok(Port::Name(s.to_ascii_lowercase()));
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(Port::Number(n));
            }
        }
        Err(format!(
            "invalid port {s:?}: must be a number 0-65535 or an IANA service name"
        ))
    }
}
from_str_scalar!(Port, "a port number or name");

/// The L4 protocol of a CiliumNetworkPolicy port (`""` and absent mean `ANY`, which covers
/// TCP, UDP and SCTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    #[default]
    Any,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Any => "ANY",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            "ANY" | "" => Ok(Protocol::Any),
            "ICMP" | "ICMPv6" | "ICMPV6" => {
                Err(format!("protocol {s} is not allowed in toPorts: use icmps"))
            }
            "VRRP" | "IGMP" | "GRE" | "IPIP" | "IPV6" | "ESP" | "AH" => Err(format!(
                "not supported yet: protocol {s} (extended IP protocols)"
            )),
            _ => Err(format!(
                "unsupported protocol {s:?}: supported values are TCP, UDP, SCTP, ANY"
            )),
        }
    }
}
from_str_scalar!(Protocol, "a protocol (TCP, UDP, SCTP or ANY)");

/// The protocol of a Kubernetes NetworkPolicy port (default TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum KnpProtocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for KnpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            KnpProtocol::Tcp => "TCP",
            KnpProtocol::Udp => "UDP",
            KnpProtocol::Sctp => "SCTP",
        })
    }
}

impl FromStr for KnpProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TCP" => Ok(KnpProtocol::Tcp),
            "UDP" => Ok(KnpProtocol::Udp),
            "SCTP" => Ok(KnpProtocol::Sctp),
            _ => Err(format!(
                "unsupported value {s:?}: supported values are \"SCTP\", \"TCP\", \"UDP\""
            )),
        }
    }
}
from_str_scalar!(KnpProtocol, "TCP, UDP or SCTP");

/// A Cilium entity (the CRD enum of `fromEntities`/`toEntities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    All,
    World,
    Cluster,
    Host,
    Init,
    Ingress,
    Unmanaged,
    RemoteNode,
    Health,
    None,
    KubeApiserver,
}

impl Entity {
    /// Every entity, in CRD order.
    pub const ALL: [Entity; 11] = [
        Entity::All,
        Entity::World,
        Entity::Cluster,
        Entity::Host,
        Entity::Init,
        Entity::Ingress,
        Entity::Unmanaged,
        Entity::RemoteNode,
        Entity::Health,
        Entity::None,
        Entity::KubeApiserver,
    ];

    /// The name as written in a policy.
    pub fn as_str(&self) -> &'static str {
        match self {
            Entity::All => "all",
            Entity::World => "world",
            Entity::Cluster => "cluster",
            Entity::Host => "host",
            Entity::Init => "init",
            Entity::Ingress => "ingress",
            Entity::Unmanaged => "unmanaged",
            Entity::RemoteNode => "remote-node",
            Entity::Health => "health",
            Entity::None => "none",
            Entity::KubeApiserver => "kube-apiserver",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Entity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Entity::ALL
            .iter()
            .find(|e| e.as_str() == s)
            .copied()
            .ok_or_else(|| format!("unsupported entity: {s}"))
    }
}
from_str_scalar!(Entity, "an entity name");

/// The address family of an ICMP field (default IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum IcmpFamily {
    #[default]
    IPv4,
    IPv6,
}

impl fmt::Display for IcmpFamily {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            IcmpFamily::IPv4 => "IPv4",
            IcmpFamily::IPv6 => "IPv6",
        })
    }
}

impl FromStr for IcmpFamily {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "IPv4" | "" => Ok(IcmpFamily::IPv4),
            "IPv6" => Ok(IcmpFamily::IPv6),
            _ => Err(format!("wrong family: {s} (expected IPv4 or IPv6)")),
        }
    }
}
from_str_scalar!(IcmpFamily, "IPv4 or IPv6");

/// ICMPv4 type names (Cilium `pkg/policy/api/icmp.go`).
const ICMPV4_NAMES: &[(&str, u8)] = &[
    ("EchoReply", 0),
    ("DestinationUnreachable", 3),
    ("Redirect", 5),
    ("Echo", 8),
    ("EchoRequest", 8),
    ("RouterAdvertisement", 9),
    ("RouterSelection", 10),
    ("TimeExceeded", 11),
    ("ParameterProblem", 12),
    ("Timestamp", 13),
    ("TimestampReply", 14),
    ("Photuris", 40),
    ("ExtendedEchoRequest", 42),
    ("ExtendedEchoReply", 43),
];

/// ICMPv6 type names (Cilium `pkg/policy/api/icmp.go`).
const ICMPV6_NAMES: &[(&str, u8)] = &[
    ("DestinationUnreachable", 1),
    ("PacketTooBig", 2),
    ("TimeExceeded", 3),
    ("ParameterProblem", 4),
    ("EchoRequest", 128),
    ("EchoReply", 129),
    ("MulticastListenerQuery", 130),
    ("MulticastListenerReport", 131),
    ("MulticastListenerDone", 132),
    ("RouterSolicitation", 133),
    ("RouterAdvertisement", 134),
    ("NeighborSolicitation", 135),
    ("NeighborAdvertisement", 136),
    ("RedirectMessage", 137),
    ("RouterRenumbering", 138),
    ("ICMPNodeInformationQuery", 139),
    ("ICMPNodeInformationResponse", 140),
    ("InverseNeighborDiscoverySolicitation", 141),
    ("InverseNeighborDiscoveryAdvertisement", 142),
    ("HomeAgentAddressDiscoveryRequest", 144),
    ("HomeAgentAddressDiscoveryReply", 145),
    ("MobilePrefixSolicitation", 146),
    ("MobilePrefixAdvertisement", 147),
    ("DuplicateAddressRequestCodeSuffix", 157),
    ("DuplicateAddressConfirmationCodeSuffix", 158),
    ("ExtendedEchoRequest", 160),
    ("ExtendedEchoReply", 161),
];

/// The ICMP type code for a CamelCase name in `family`, if Cilium knows it.
pub fn icmp_type_code(family: IcmpFamily, name: &str) -> Option<u8> {
    let table = match family {
        IcmpFamily::IPv4 => ICMPV4_NAMES,
        IcmpFamily::IPv6 => ICMPV6_NAMES,
    };
    table.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// An ICMP type as written: a number or a name, resolved to a code once the family is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawIcmpType {
    Code(u8),
    Name(String),
}

impl FromStr for RawIcmpType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            return s
                .parse::<u8>()
                .map(RawIcmpType::Code)
                .map_err(|_| format!("ICMP type {s} is out of range 0-255"));
        }
        if s.is_empty() {
            return Err("ICMP type must be specified".into());
        }
        Ok(RawIcmpType::Name(s.to_string()))
    }
}
// The CRD declares `type` int-or-string (`x-kubernetes-int-or-string`): `type: 8` and
// `type: "8"` are both accepted.
impl<'de> serde::Deserialize<'de> for RawIcmpType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawIcmpType;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ICMP type (0-255 or a CamelCase name)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawIcmpType, E> {
                u8::try_from(v)
                    .map(RawIcmpType::Code)
                    .map_err(|_| E::custom(format!("ICMP type {v} is out of range 0-255")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawIcmpType, E> {
                Err(E::custom(format!("ICMP type {v} is out of range 0-255")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawIcmpType, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}
