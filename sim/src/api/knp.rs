//! Kubernetes `NetworkPolicy` (networking.k8s.io/v1), validated as the API server does
//! (`pkg/apis/networking/validation`).

use super::de::validated_map;
use super::meta::{LabelSelector, ObjectMeta};
use super::net::{Cidr, KnpProtocol, Port, PrefixCidr};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A Kubernetes NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub metadata: ObjectMeta,
    pub spec: NetworkPolicySpec,
}

/// `policyTypes` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            PolicyType::Ingress => "Ingress",
            PolicyType::Egress => "Egress",
        })
    }
}

/// `spec` of a NetworkPolicy. A missing `podSelector` is the empty selector (all pods of the
/// namespace); `policyTypes` stays `None` when absent because the defaulting depends on it.
/// An absent `from`/`to` and an empty one mean the same to Kubernetes (all peers), so they
/// are plain `Vec`s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPolicySpec {
    pub pod_selector: LabelSelector,
    pub policy_types: Option<Vec<PolicyType>>,
    pub ingress: Vec<NetworkPolicyIngressRule>,
    pub egress: Vec<NetworkPolicyEgressRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    pod_selector: Option<LabelSelector>,
    #[serde(default)]
    policy_types: Option<Vec<PolicyType>>,
    #[serde(default)]
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    #[serde(default)]
    egress: Option<Vec<NetworkPolicyEgressRule>>,
}

impl TryFrom<RawSpec> for NetworkPolicySpec {
    type Error = String;
    fn try_from(r: RawSpec) -> Result<Self, String> {
        if let Some(types) = &r.policy_types {
            if types.len() > 2 {
                return Err("policyTypes: may not have more than 2 entries".into());
            }
            if types.len() == 2 && types[0] == types[1] {
                return Err(format!("policyTypes: duplicate value {}", types[0]));
            }
        }
        Ok(NetworkPolicySpec {
            pod_selector: r.pod_selector.unwrap_or_default(),
            policy_types: r.policy_types,
            ingress: r.ingress.unwrap_or_default(),
            egress: r.egress.unwrap_or_default(),
        })
    }
}
validated_map!(NetworkPolicySpec, RawSpec, "a NetworkPolicy spec");

/// One `ingress` rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    #[serde(default)]
    pub from: Vec<NetworkPolicyPeer>,
    #[serde(default)]
    pub ports: Vec<NetworkPolicyPort>,
}

/// One `egress` rule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    #[serde(default)]
    pub to: Vec<NetworkPolicyPeer>,
    #[serde(default)]
    pub ports: Vec<NetworkPolicyPort>,
}

/// A peer: `ipBlock` alone, or `podSelector` and/or `namespaceSelector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyPeer {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub ip_block: Option<IpBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPeer {
    #[serde(default)]
    pod_selector: Option<LabelSelector>,
    #[serde(default)]
    namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    ip_block: Option<IpBlock>,
}

impl TryFrom<RawPeer> for NetworkPolicyPeer {
    type Error = String;
    fn try_from(r: RawPeer) -> Result<Self, String> {
        let selectors = r.pod_selector.is_some() || r.namespace_selector.is_some();
        if !selectors && r.ip_block.is_none() {
            return Err("must specify a peer".into());
        }
        if selectors && r.ip_block.is_some() {
            return Err("may not specify both ipBlock and another peer".into());
        }
        Ok(NetworkPolicyPeer {
            pod_selector: r.pod_selector,
            namespace_selector: r.namespace_selector,
            ip_block: r.ip_block,
        })
    }
}
validated_map!(NetworkPolicyPeer, RawPeer, "a NetworkPolicy peer");

/// `ipBlock`: a CIDR and exceptions strictly inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: Cidr,
    pub except: Vec<Cidr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIpBlock {
    cidr: PrefixCidr,
    #[serde(default)]
    except: Option<Vec<PrefixCidr>>,
}

impl TryFrom<RawIpBlock> for IpBlock {
    type Error = String;
    fn try_from(r: RawIpBlock) -> Result<Self, String> {
        let cidr = r.cidr.0;
        let mut except = Vec::new();
        for e in r.except.unwrap_or_default() {
            let e = e.0;
            if !cidr.contains(&e) || e.0.prefix_len() <= cidr.0.prefix_len() {
                return Err(format!(
                    "except: {e} must be a strict subset of `cidr` {cidr}"
                ));
            }
            except.push(e);
        }
        Ok(IpBlock { cidr, except })
    }
}
validated_map!(IpBlock, RawIpBlock, "an ipBlock");

/// One `ports` entry. `port: None` means every port of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyPort {
    pub protocol: KnpProtocol,
    pub port: Option<Port>,
    pub end_port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPort {
    #[serde(default)]
    protocol: Option<KnpProtocol>,
    #[serde(default)]
    port: Option<KnpPort>,
    #[serde(default)]
    end_port: Option<i64>,
}

impl TryFrom<RawPort> for NetworkPolicyPort {
    type Error = String;
    fn try_from(r: RawPort) -> Result<Self, String> {
        let port = r.port.map(|p| p.0);
        let end_port = match r.end_port {
            None => None,
            Some(e) => {
                let start = match &port {
                    None => {
                        return Err("port: must be specified when `endPort` is specified".into())
                    }
                    Some(Port::Name(_)) => {
                        return Err(
                            "endPort: may not be specified when `port` is non-numeric".into()
                        )
                    }
                    Some(Port::Number(n)) => *n,
                };
                if !(1..=65535).contains(&e) {
                    return Err(format!(
                        "endPort: {e} must be between 1 and 65535, inclusive"
                    ));
                }
                if e < i64::from(start) {
                    return Err(format!(
                        "endPort: {e} must be greater than or equal to `port` {start}"
                    ));
                }
                u16::try_from(e).ok()
            }
        };
        Ok(NetworkPolicyPort {
            protocol: r.protocol.unwrap_or_default(),
            port,
            end_port,
        })
    }
}
validated_map!(NetworkPolicyPort, RawPort, "a NetworkPolicy port");

/// An IntOrString port: an integer 1–65535, or a string that is a lowercase IANA service name
/// (`"80"` quoted is a string and therefore an invalid name, as in Kubernetes).
struct KnpPort(Port);

impl<'de> Deserialize<'de> for KnpPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KnpPort;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number 1-65535 or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KnpPort, E> {
                match u16::try_from(v) {
                    Ok(n) if n >= 1 => Ok(KnpPort(Port::Number(n))),
                    _ => Err(E::custom(format!(
                        "{v} must be between 1 and 65535, inclusive"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KnpPort, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!(
                        "{v} must be between 1 and 65535, inclusive"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KnpPort, E> {
                if is_k8s_port_name(v) {
                    Ok(KnpPort(Port::Name(v.to_string())))
                } else {
                    Err(E::custom(format!(
                        "invalid port name {v:?}: must be no more than 15 lowercase alphanumeric characters or '-', with at least one letter, without '--' or a leading or trailing '-'"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Kubernetes `IsValidPortName`.
pub(crate) fn is_k8s_port_name(s: &str) -> bool {
    super::net::is_svc_name(s) && !s.chars().any(|c| c.is_ascii_uppercase())
}
