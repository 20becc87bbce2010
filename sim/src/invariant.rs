//! Invariants: the scenario format's `invariants:` extension (scenarios/README.md). An
//! invariant is a property of the reachability between peer sets that must hold at every
//! instant: `never` (no connection from one set to another on these ports), `always` (every
//! such connection allowed) and `isolated` (a namespace accepts connections only from itself).
//! This module owns their declaration, their validation and their expansion, at one instant of
//! a world, into the probes that check them; `verdict audit` and `verdict churn` run the
//! probes on every backend.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use crate::cluster::{Cluster, Peer, Protocol};
use crate::oracle::Flow;
use crate::scenario::ProtocolDecl;

/// The address that stands for the world in an `isolated` invariant when the scenario
/// declares no `externals` (TEST-NET-1, RFC 5737: never a real host).
pub const WORLD_PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// One declared invariant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvariantDecl {
    /// Unique within the scenario.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub never: Option<FlowSetDecl>,
    #[serde(default)]
    pub always: Option<FlowSetDecl>,
    #[serde(default)]
    pub isolated: Option<IsolatedDecl>,
}

/// Connections from one peer set to another, on some ports.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSetDecl {
    pub from: PeerSetDecl,
    pub to: PeerSetDecl,
    /// Default: each destination pod's container ports.
    #[serde(default)]
    pub ports: Vec<PortDecl>,
}

/// A set of peers: pods by namespace and labels, an entity, or probe endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSetDecl {
    /// Pods of this namespace (every namespace when absent, if `labels` is given).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Pods with all these labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `world` (every `externals` entry, or 192.0.2.1 when there is none), `host` (every
    /// node's host endpoint) or `cluster` (every pod).
    #[serde(default)]
    pub entity: Option<String>,
    /// Probe endpoints, as probes name them (`ns/pod`, `host:<node>`, an `externals` name, an
    /// IP address).
    #[serde(default)]
    pub endpoints: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDecl {
    #[serde(default)]
    pub port: Option<u16>,
    pub protocol: ProtocolDecl,
    #[serde(default, rename = "icmp-type")]
    pub icmp_type: Option<u8>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolatedDecl {
    pub namespace: String,
    /// Default: each pod's container ports.
    #[serde(default)]
    pub ports: Vec<PortDecl>,
}

/// What an invariant demands of each of its probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Never,
    Always,
    Isolated,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Never => "never",
            Kind::Always => "always",
            Kind::Isolated => "isolated",
        }
    }
    /// Whether its probes must be allowed.
    pub fn wants_allow(self) -> bool {
        self == Kind::Always
    }
}

impl InvariantDecl {
    pub fn kind(&self) -> Result<Kind, String> {
        match (&self.never, &self.always, &self.isolated) {
            (Some(_), None, None) => Ok(Kind::Never),
            (None, Some(_), None) => Ok(Kind::Always),
            (None, None, Some(_)) => Ok(Kind::Isolated),
            _ => Err("exactly one of never, always, isolated is required".into()),
        }
    }
}

/// One probe of an invariant at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantProbe {
    pub from: String,
    pub to: String,
    pub flow: Flow,
}

impl fmt::Display for InvariantProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flow.protocol.is_icmp() {
            write!(
                f,
                "{} -> {} {} type {}",
                self.from, self.to, self.flow.protocol, self.flow.dport
            )
        } else {
            write!(
                f,
                "{} -> {} {}/{}",
                self.from, self.to, self.flow.dport, self.flow.protocol
            )
        }
    }
}

fn port_of(p: &PortDecl) -> Result<(Protocol, u16), String> {
    let proto = p.protocol.0;
    if proto.is_icmp() {
        let default = if proto == Protocol::Icmpv6 { 128 } else { 8 };
        return Ok((proto, p.icmp_type.unwrap_or(default) as u16));
    }
    match p.port {
        Some(0) | None => Err(format!("a {proto} port (1-65535) is required")),
        Some(n) => Ok((proto, n)),
    }
}

/// The peers of a set at one instant, with their names.
fn members(c: &Cluster, s: &PeerSetDecl) -> Result<Vec<(String, Peer)>, String> {
    let mut out: Vec<(String, Peer)> = Vec::new();
    let any = s.namespace.is_some()
        || s.labels.is_some()
        || s.entity.is_some()
        || !s.endpoints.is_empty();
    if !any {
        return Err("an empty peer set: give namespace, labels, entity or endpoints".into());
    }
    if s.namespace.is_some() || s.labels.is_some() {
        if let Some(ns) = &s.namespace {
            if !c.namespaces.contains_key(ns) {
                return Err(format!("namespace {ns:?} is not in the cluster"));
            }
        }
        for (pn, p) in &c.pods {
            if s.namespace.as_ref().is_some_and(|n| *n != pn.namespace) {
                continue;
            }
            if let Some(l) = &s.labels {
                if !l.iter().all(|(k, v)| p.labels.get(k) == Some(v)) {
                    continue;
                }
            }
            out.push((pn.to_string(), Peer::Pod(pn.clone())));
        }
    }
    match s.entity.as_deref() {
        None => {}
        Some("world") => {
            if c.externals.is_empty() {
                out.push((WORLD_PROBE.to_string(), Peer::World(WORLD_PROBE)));
            }
            for (name, ip) in &c.externals {
                out.push((name.clone(), c.peer_of_ip(*ip)));
            }
        }
        Some("host") => {
            for n in &c.nodes {
                out.push((format!("host:{}", n.name), Peer::Host(n.name.clone())));
            }
        }
        Some("cluster") => {
            for pn in c.pods.keys() {
                out.push((pn.to_string(), Peer::Pod(pn.clone())));
            }
        }
        Some(e) => {
            return Err(format!(
                "unknown entity {e:?}: expected world, host or cluster"
            ))
        }
    }
    for e in &s.endpoints {
        let p = c
            .resolve(e)
            .ok_or_else(|| format!("unknown endpoint {e:?}"))?;
        out.push((e.clone(), p));
    }
    let mut seen = BTreeSet::new();
    out.retain(|(n, _)| seen.insert(n.clone()));
    Ok(out)
}

fn ports_for(c: &Cluster, peer: &Peer, ports: &[PortDecl]) -> Result<Vec<(Protocol, u16)>, String> {
    if !ports.is_empty() {
        return ports.iter().map(port_of).collect();
    }
    match peer {
        Peer::Pod(pn) => Ok(c
            .pods
            .get(pn)
            .map(|p| p.ports.iter().map(|cp| (cp.protocol, cp.port)).collect())
            .unwrap_or_default()),
        other => Err(format!(
            "ports are required: {other} has no container ports to default to"
        )),
    }
}

fn same_family(c: &Cluster, a: &Peer, b: &Peer) -> bool {
    match (c.ip_of(a), c.ip_of(b)) {
        (Some(x), Some(y)) => x.is_ipv4() == y.is_ipv4(),
        _ => false,
    }
}

/// The probes that check an invariant in this cluster, now.
pub fn probes(c: &Cluster, inv: &InvariantDecl) -> Result<Vec<InvariantProbe>, String> {
    let mut out = Vec::new();
    let mut push =
        |from: &(String, Peer), to: &(String, Peer), ports: &[PortDecl]| -> Result<(), String> {
            if from.1 == to.1 || !same_family(c, &from.1, &to.1) {
                return Ok(());
            }
            for (protocol, dport) in ports_for(c, &to.1, ports)? {
                if protocol == Protocol::Icmpv6 && c.ip_of(&to.1).is_some_and(|ip| ip.is_ipv4()) {
                    continue;
                }
                out.push(InvariantProbe {
                    from: from.0.clone(),
                    to: to.0.clone(),
                    flow: Flow {
                        src: from.1.clone(),
                        dst: to.1.clone(),
                        protocol,
                        dport,
                    },
                });
            }
            Ok(())
        };
    match inv.kind()? {
        Kind::Never | Kind::Always => {
            let set = inv.never.as_ref().or(inv.always.as_ref()).expect("kind");
            let (from, to) = (
                members(c, &set.from).map_err(|e| format!("from: {e}"))?,
                members(c, &set.to).map_err(|e| format!("to: {e}"))?,
            );
            for f in &from {
                for t in &to {
                    push(f, t, &set.ports)?;
                }
            }
        }
        Kind::Isolated => {
            let iso = inv.isolated.as_ref().expect("kind");
            if !c.namespaces.contains_key(&iso.namespace) {
                return Err(format!(
                    "namespace {:?} is not in the cluster",
                    iso.namespace
                ));
            }
            let inside: Vec<(String, Peer)> = c
                .pods
                .keys()
                .filter(|p| p.namespace == iso.namespace)
                .map(|p| (p.to_string(), Peer::Pod(p.clone())))
                .collect();
            let mut outside: Vec<(String, Peer)> = c
                .pods
                .keys()
                .filter(|p| p.namespace != iso.namespace)
                .map(|p| (p.to_string(), Peer::Pod(p.clone())))
                .collect();
            outside.extend(members(
                c,
                &PeerSetDecl {
                    entity: Some("world".into()),
                    ..Default::default()
                },
            )?);
            for t in &inside {
                for f in &outside {
                    push(f, t, &iso.ports)?;
                }
            }
        }
    }
    Ok(out)
}

/// Checks a scenario's invariants against its initial cluster: names unique, one kind each,
/// peer sets that resolve. Errors name the invariant's field path.
pub fn check(c: &Cluster, invs: &[InvariantDecl]) -> Result<(), (String, String)> {
    let mut names = BTreeSet::new();
    for (i, inv) in invs.iter().enumerate() {
        let at = format!("invariants[{i}]");
        if inv.name.is_empty() {
            return Err((format!("{at}.name"), "may not be empty".into()));
        }
        if !names.insert(inv.name.clone()) {
            return Err((
                format!("{at}.name"),
                format!("duplicate invariant name {:?}", inv.name),
            ));
        }
        let kind = inv.kind().map_err(|e| (at.clone(), e))?;
        let field = format!("{at}.{}", kind.as_str());
        probes(c, inv).map_err(|e| (field, e))?;
    }
    Ok(())
}
