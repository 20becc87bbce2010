//! The oracle: decides a connection attempt straight from the policy entries, with no
//! identity tables, ipcache or policy map. It is the reference the policy compiler and every
//! datapath are compared against.
//!
//! Per direction (spec §4.1, §4.3 "simple model"): the direction is enforced only when some
//! entry selects the endpoint in that direction; then any matching deny gives
//! POLICY_DENY (181); else any matching allow allows; else default deny gives
//! POLICY_DENIED (133) — except that ingress from the endpoint's own host is allowed by the
//! synthetic localhost rule (spec §4.1) — and a direction without default deny allows.
//! A connection is allowed when the sender's egress and the receiver's ingress both allow
//! it; a side outside the cluster (world, a node's host) enforces nothing (no host firewall).
//!
//! CIDR peers are decided on the peer's address directly (`x ∈ cidr`, `x ∉ except`), and
//! never match cluster endpoints (spec §3.4, §7 #9).

use std::net::IpAddr;

use crate::cluster::{Cluster, Peer, Protocol};
use crate::identity::Identity;
use crate::labels::LabelSet;
use crate::policy::{Peers, PolicyEntry, PortSpec, Repository, RuleOrigin, RuleVerdict};
use crate::selector::Target;
use crate::verdict::{Direction, DropReason, Outcome};

/// A connection attempt between two resolved peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: Peer,
    pub dst: Peer,
    pub protocol: Protocol,
    /// Destination port, or the ICMP type for ICMP protocols.
    pub dport: u16,
}

/// How one direction decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectionVerdict {
    /// The peer is not a pod of the cluster: nothing to enforce on this side.
    NotApplicable,
    /// No entry selects the endpoint in this direction: everything allowed.
    NotEnforced,
    /// Allowed by these entries (empty for the synthetic rules).
    Allowed {
        by: Vec<RuleOrigin>,
        synthetic: Option<&'static str>,
    },
    /// Denied: by deny entries (181), or by default deny with no allow (133).
    Denied {
        reason: DropReason,
        by: Vec<RuleOrigin>,
    },
}

impl DirectionVerdict {
    pub fn allows(&self) -> bool {
        !matches!(self, DirectionVerdict::Denied { .. })
    }
    pub fn enforced(&self) -> bool {
        !matches!(
            self,
            DirectionVerdict::NotApplicable | DirectionVerdict::NotEnforced
        )
    }
}

/// The oracle's answer, with both directions' reasoning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    /// Entries that select the subject per direction (for `explain`).
    pub egress_rules: Vec<RuleOrigin>,
    pub ingress_rules: Vec<RuleOrigin>,
}

impl Decision {
    /// The overall outcome: egress is checked first, then ingress. The oracle computes no
    /// match type: that is a property of the policy map lookup, which only the compiled
    /// backends model.
    pub fn outcome(&self) -> Outcome {
        let deciding = |d: Direction, v: &DirectionVerdict| match v {
            DirectionVerdict::Denied { reason, .. } => Some(Outcome {
                allowed: false,
                reason: Some(*reason),
                direction: Some(d),
                match_type: None,
            }),
            _ => None,
        };
        if let Some(o) = deciding(Direction::Egress, &self.egress) {
            return o;
        }
        if let Some(o) = deciding(Direction::Ingress, &self.ingress) {
            return o;
        }
        let direction = if self.ingress.enforced() {
            Some(Direction::Ingress)
        } else if self.egress.enforced() {
            Some(Direction::Egress)
        } else {
            None
        };
        Outcome {
            allowed: true,
            reason: None,
            direction,
            match_type: None,
        }
    }

    /// The entries that decided the outcome.
    pub fn deciding_rules(&self) -> Vec<RuleOrigin> {
        for v in [&self.egress, &self.ingress] {
            if let DirectionVerdict::Denied { by, .. } = v {
                return by.clone();
            }
        }
        let mut out = Vec::new();
        for v in [&self.egress, &self.ingress] {
            if let DirectionVerdict::Allowed { by, .. } = v {
                out.extend(by.iter().cloned());
            }
        }
        out
    }
}

/// The peer as a selector target, seen from `observer_node`.
fn target_labels(
    cluster: &Cluster,
    peer: &Peer,
    observer_node: &str,
) -> (LabelSet, Option<IpAddr>) {
    match peer {
        Peer::World(ip) => (
            Identity::WORLD.reserved_labels().unwrap_or_default(),
            Some(*ip),
        ),
        _ => {
            let id = cluster
                .cluster_identity(peer, observer_node)
                .unwrap_or(Identity::WORLD);
            let labels = cluster
                .identities
                .labels(id)
                .cloned()
                .or_else(|| id.reserved_labels())
                .unwrap_or_default();
            (labels, None)
        }
    }
}

/// Whether a named port resolves to `port`/`protocol` for this entry's direction: ingress
/// against the subject pod's own container ports; egress against the container ports of the
/// pods that share the destination's identity (spec §4.3).
fn named_port_matches(
    name: &str,
    protocol: Protocol,
    port: u16,
    named_ports_of: &[&crate::cluster::Pod],
) -> bool {
    named_ports_of.iter().any(|p| {
        p.ports
            .iter()
            .any(|cp| cp.name == name && cp.protocol == protocol && cp.port == port)
    })
}

fn entry_matches<'a>(
    e: &PolicyEntry,
    peer_labels: &LabelSet,
    peer_ip: Option<IpAddr>,
    flow: &Flow,
    named_ports_of: &impl Fn() -> &'a Vec<&'a crate::cluster::Pod>,
) -> bool {
    if !e.has_filter() {
        return false;
    }
    let target = Target {
        labels: peer_labels,
        world_ip: peer_ip,
    };
    let peer_ok = match &e.peers {
        Peers::Nothing => false,
        Peers::Unrestricted => true,
        Peers::Selectors(sels) => sels.iter().any(|s| s.matches(target)),
    };
    if !peer_ok {
        return false;
    }
    if e.ports.is_empty() {
        return true;
    }
    e.ports.iter().any(|pp| {
        pp.protocol == flow.protocol
            && match &pp.port {
                PortSpec::Named(n) => {
                    named_port_matches(n, flow.protocol, flow.dport, named_ports_of())
                }
                range => range.contains(flow.dport),
            }
    })
}

fn decide_direction(
    cluster: &Cluster,
    repo: &Repository,
    dir: Direction,
    subject: &Peer,
    peer: &Peer,
    flow: &Flow,
    rules_out: &mut Vec<RuleOrigin>,
) -> DirectionVerdict {
    let Peer::Pod(pn) = subject else {
        return DirectionVerdict::NotApplicable;
    };
    let Some(pod) = cluster.pods.get(pn) else {
        return DirectionVerdict::NotApplicable;
    };
    let Some(subject_labels) = cluster.identities.labels(pod.identity) else {
        return DirectionVerdict::NotApplicable;
    };
    let selecting: Vec<&PolicyEntry> = repo
        .entries_for_namespace(&pn.namespace)
        .filter(|e| e.direction == dir && e.subject.matches_labels(subject_labels))
        .collect();
    rules_out.extend(selecting.iter().map(|e| e.origin.clone()));
    if selecting.is_empty() {
        return DirectionVerdict::NotEnforced;
    }
    let (peer_labels, peer_ip) = target_labels(cluster, peer, &pod.node);
    // Named ports: ingress resolves against the subject pod, egress against every pod that
    // has the destination's identity. Computed only when a named port is met.
    let named_ports_of = std::cell::OnceCell::new();
    let named_ports = || -> &Vec<&crate::cluster::Pod> {
        named_ports_of.get_or_init(|| match dir {
            Direction::Ingress => vec![pod],
            Direction::Egress => match peer {
                Peer::Pod(dst) => match cluster.pods.get(dst) {
                    Some(d) => cluster
                        .pods
                        .values()
                        .filter(|p| p.identity == d.identity)
                        .collect(),
                    None => vec![],
                },
                _ => vec![],
            },
        })
    };
    let matching = |v: RuleVerdict| -> Vec<RuleOrigin> {
        selecting
            .iter()
            .filter(|e| e.verdict == v)
            .filter(|e| entry_matches(e, &peer_labels, peer_ip, flow, &named_ports))
            .map(|e| e.origin.clone())
            .collect()
    };
    let denies = matching(RuleVerdict::Deny);
    if !denies.is_empty() {
        return DirectionVerdict::Denied {
            reason: DropReason::PolicyDeny,
            by: denies,
        };
    }
    let allows = matching(RuleVerdict::Allow);
    if !allows.is_empty() {
        return DirectionVerdict::Allowed {
            by: allows,
            synthetic: None,
        };
    }
    let default_deny = selecting.iter().any(|e| e.default_deny);
    if !default_deny {
        return DirectionVerdict::Allowed {
            by: vec![],
            synthetic: Some("no default-deny rule selects the endpoint: allow-all"),
        };
    }
    // The synthetic "allow ingress from reserved:host" rule (allow-localhost=always in K8s
    // mode, spec §4.1): the endpoint's own node only.
    if dir == Direction::Ingress && matches!(peer, Peer::Host(n) if *n == pod.node) {
        return DirectionVerdict::Allowed {
            by: vec![],
            synthetic: Some("ingress from the local host is always allowed (allow-localhost)"),
        };
    }
    DirectionVerdict::Denied {
        reason: DropReason::PolicyDenied,
        by: vec![],
    }
}

/// Decides one connection attempt.
pub fn decide(cluster: &Cluster, repo: &Repository, flow: &Flow) -> Decision {
    let mut egress_rules = Vec::new();
    let mut ingress_rules = Vec::new();
    let egress = decide_direction(
        cluster,
        repo,
        Direction::Egress,
        &flow.src,
        &flow.dst,
        flow,
        &mut egress_rules,
    );
    let ingress = decide_direction(
        cluster,
        repo,
        Direction::Ingress,
        &flow.dst,
        &flow.src,
        flow,
        &mut ingress_rules,
    );
    Decision {
        egress,
        ingress,
        egress_rules,
        ingress_rules,
    }
}
