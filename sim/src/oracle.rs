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
//! it; a side outside the cluster (the world) enforces nothing, and neither does a node's
//! host endpoint unless the host firewall is on (`agent:`), when host policies
//! (`nodeSelector`) decide its ingress and egress as any endpoint's policy does.
//!
//! CIDR peers are decided on the peer's address directly (`x ∈ cidr`, `x ∉ except`), and
//! never match cluster endpoints (spec §3.4, §7 #9). CIDR-group peers (`cidrGroupRef`,
//! `cidrGroupSelector`) are decided on the labels of the CiliumCIDRGroups whose prefixes
//! hold the address, read from the group objects.

use std::net::IpAddr;

use crate::cluster::{Cluster, Peer, Protocol};
use crate::identity::Identity;
use crate::labels::LabelSet;
use crate::policy::{
    AuthType, L7Parser, L7Policy, Peers, PolicyEntry, PortSpec, Repository, RuleOrigin, RuleVerdict,
};
use crate::portrange::port_range_to_masked_ports;
use crate::proxy::{ProxyPorts, ProxyRule};
use crate::selector::Target;
use crate::verdict::{Direction, DropReason, Outcome, Redirects};

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
    /// Allowed by these entries (empty for the synthetic rules). `redirect`: some allowing
    /// entry carries L7 rules for the port, so the connection goes to that parser's proxy
    /// (a redirect entry has a higher precedence than a plain allow, `pkg/policy/types`);
    /// `proxy_rules` is then what the proxy holds for this remote and port.
    Allowed {
        by: Vec<RuleOrigin>,
        synthetic: Option<&'static str>,
        redirect: Option<L7Parser>,
        proxy_rules: Vec<ProxyRule>,
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
    /// backends model. A connection the egress side redirects stops at the source's proxy
    /// (`redirect.egress`; the ingress side is for [`Decision::upstream_outcome`]).
    pub fn outcome(&self) -> Outcome {
        if let Some(o) = self.egress_denial() {
            return o;
        }
        if let Some(p) = self.redirect_port(Direction::Egress) {
            return Outcome {
                allowed: true,
                reason: None,
                direction: Some(Direction::Egress),
                match_type: None,
                redirect: Redirects {
                    egress: Some(p),
                    ingress: None,
                },
            };
        }
        self.whole_outcome()
    }

    /// The outcome of the egress proxy's upstream connection: as if both sides had run, the
    /// egress redirect kept.
    pub fn upstream_outcome(&self) -> Outcome {
        self.egress_denial().unwrap_or_else(|| self.whole_outcome())
    }

    fn egress_denial(&self) -> Option<Outcome> {
        match &self.egress {
            DirectionVerdict::Denied { reason, .. } => Some(Outcome {
                allowed: false,
                reason: Some(*reason),
                direction: Some(Direction::Egress),
                match_type: None,
                redirect: Redirects::default(),
            }),
            _ => None,
        }
    }

    fn redirect_port(&self, d: Direction) -> Option<u16> {
        self.redirects()
            .into_iter()
            .find(|(rd, _, _)| *rd == d)
            .map(|(rd, p, _)| ProxyPorts::port(p, rd))
    }

    fn whole_outcome(&self) -> Outcome {
        let egress = self.redirect_port(Direction::Egress);
        if let DirectionVerdict::Denied { reason, .. } = &self.ingress {
            return Outcome {
                allowed: false,
                reason: Some(*reason),
                direction: Some(Direction::Ingress),
                match_type: None,
                redirect: Redirects {
                    egress,
                    ingress: None,
                },
            };
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
            redirect: Redirects {
                egress,
                ingress: self.redirect_port(Direction::Ingress),
            },
        }
    }

    /// The proxy the connection goes to: egress first (the source's proxy sees it first),
    /// with the rules that proxy holds. An egress redirect is followed by the ingress one, if
    /// any, on the proxy's own connection; verdict reports the first.
    pub fn redirect(&self) -> Option<(Direction, L7Parser, &[ProxyRule])> {
        for (d, v) in [
            (Direction::Egress, &self.egress),
            (Direction::Ingress, &self.ingress),
        ] {
            if let DirectionVerdict::Allowed {
                redirect: Some(p),
                proxy_rules,
                ..
            } = v
            {
                return Some((d, *p, proxy_rules));
            }
        }
        None
    }

    /// Every redirecting direction, in order (egress, then ingress).
    pub fn redirects(&self) -> Vec<(Direction, L7Parser, &[ProxyRule])> {
        let mut out = Vec::new();
        for (d, v) in [
            (Direction::Egress, &self.egress),
            (Direction::Ingress, &self.ingress),
        ] {
            if let DirectionVerdict::Allowed {
                redirect: Some(p),
                proxy_rules,
                ..
            } = v
            {
                out.push((d, *p, proxy_rules.as_slice()));
            }
        }
        out
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
    repo: &Repository,
    peer: &Peer,
    observer_node: &str,
) -> (LabelSet, Option<IpAddr>) {
    match peer {
        // The world, plus the labels of the CiliumCIDRGroups holding the address, plus the
        // `fqdn:` label of every `toFQDNs` selector matching a name the observer node's DNS
        // proxy has seen answered with the address (the name manager's cache,
        // `deriveLabelsForName`, `pkg/fqdn/namemanager/manager.go`).
        Peer::World(ip) => {
            let mut labels: Vec<_> = Identity::WORLD
                .reserved_labels()
                .unwrap_or_default()
                .iter()
                .cloned()
                .collect();
            labels.extend(cluster.cidr_group_labels_of(*ip));
            labels.extend(fqdn_labels_of(cluster, repo, observer_node, *ip));
            (LabelSet::new(labels), Some(*ip))
        }
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

/// The `fqdn:` labels of `ip` on `node`: the keys of the repository's `toFQDNs` selectors
/// that match a name `node`'s cache holds for `ip`.
pub fn fqdn_labels_of(
    cluster: &Cluster,
    repo: &Repository,
    node: &str,
    ip: IpAddr,
) -> Vec<crate::labels::Label> {
    let Some(n) = cluster.fqdn.node(node) else {
        return vec![];
    };
    let names: std::collections::BTreeSet<&str> = n.names_of(ip).collect();
    if names.is_empty() {
        return vec![];
    }
    let keys: std::collections::BTreeSet<&str> = repo
        .entries()
        .filter_map(|e| match &e.peers {
            Peers::Selectors(s) => Some(s.iter().filter_map(|s| s.fqdn_key())),
            _ => None,
        })
        .flatten()
        .collect();
    crate::fqdn::labels_for_names(keys, &names)
        .into_iter()
        .map(|k| crate::labels::Label::new(crate::labels::Source::Fqdn, k, ""))
        .collect()
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

/// Whether an entry matches the peer and port; `Some(l7s)` with the L7 rules of each of its
/// port filters that match (`[None]` for an L3-only entry).
/// An entry's matching port filters: each one's L7 rules and whether it is the connection
/// port's own filter (a single port or a named port), not the wildcard port or a range.
type FilterHits<'e> = Vec<(Option<&'e L7Policy>, bool)>;

fn entry_matches<'a, 'e>(
    e: &'e PolicyEntry,
    peer_labels: &LabelSet,
    peer_ip: Option<IpAddr>,
    flow: &Flow,
    named_ports_of: &impl Fn() -> &'a Vec<&'a crate::cluster::Pod>,
) -> Option<FilterHits<'e>> {
    if !e.has_filter() {
        return None;
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
        return None;
    }
    // Each hit: the filter's L7 rules and whether the filter is the port's own one (a single
    // port or a named port), not the wildcard port or a range containing it.
    if e.ports.is_empty() {
        return Some(vec![(None, false)]);
    }
    let hits: FilterHits<'_> = e
        .ports
        .iter()
        .filter(|pp| {
            pp.protocol == flow.protocol
                && match &pp.port {
                    PortSpec::Named(n) => {
                        named_port_matches(n, flow.protocol, flow.dport, named_ports_of())
                    }
                    range => range.contains(flow.dport),
                }
        })
        .map(|pp| {
            let own = match &pp.port {
                PortSpec::Named(_) => true,
                range => range.is_single(flow.dport),
            };
            (e.l7_for(pp), own)
        })
        .collect();
    (!hits.is_empty()).then_some(hits)
}

/// One way an allow entry matches a flow, as far as authentication is concerned.
#[derive(Clone, Copy, Debug)]
struct AuthMatch {
    /// The entry allows every remote (no peer field, or a `{}` selector): Cilium keys it
    /// with identity 0, the others with the remote's identity.
    wildcard: bool,
    /// How specific the matching port filter is: 0 for all protocols (L3-only), 8 for all
    /// ports of a protocol, 8 + the bits of the aligned port block holding the port.
    prefix: u8,
    /// The entry's `authentication.mode`, if it names one.
    explicit: Option<AuthType>,
    /// The precedence rank of the match: 1 for a plain allow, higher for an L7 redirect
    /// (the listener's priority), which Cilium puts above a plain allow of the same level.
    rank: u16,
}

/// The ways one allow entry matches the flow (one per matching port filter, or one for an
/// L3-only entry).
fn auth_matches_of<'a>(
    e: &PolicyEntry,
    flow: &Flow,
    named_ports_of: &impl Fn() -> &'a Vec<&'a crate::cluster::Pod>,
) -> Vec<AuthMatch> {
    let wildcard = match &e.peers {
        Peers::Unrestricted => true,
        Peers::Selectors(sels) => sels.iter().any(|s| s.is_wildcard()),
        Peers::Nothing => false,
    };
    let m = |prefix, rank| AuthMatch {
        wildcard,
        prefix,
        explicit: e.auth,
        rank,
    };
    if e.ports.is_empty() {
        return vec![m(0, 1)];
    }
    let mut out = Vec::new();
    for pp in &e.ports {
        if pp.protocol != flow.protocol {
            continue;
        }
        let prefix = match &pp.port {
            PortSpec::Named(n) => {
                if !named_port_matches(n, flow.protocol, flow.dport, named_ports_of()) {
                    continue;
                }
                24
            }
            PortSpec::Range { start, end } => {
                match port_range_to_masked_ports(*start, *end)
                    .into_iter()
                    .find(|b| b.contains(flow.dport))
                {
                    Some(b) => 8 + b.prefix,
                    None => continue,
                }
            }
        };
        let rank = e
            .l7_for(pp)
            .map_or(1, |l7| 256 - u16::from(l7.parser.listener_priority()));
        out.push(m(prefix, rank));
    }
    out
}

/// The auth type a direction's allow needs, from the matching allow entries (Cilium's
/// `authentication` semantics: `pkg/policy/l4.go` `getAuthType`, `mapstate.go`
/// `authPreferredInsert` and `lookup`, `bpf/lib/policy.h` `__policy_check`), stated over
/// rules:
/// - per kind of peer (the remote's identity, or every remote), the most specific matching
///   port filter decides: the highest mode its entries name (`disabled` counts: an explicit
///   "no authentication"), or, if none names one, the mode of the most specific broader
///   matching filter that names one;
/// - of the two kinds, the one with the higher precedence (an L7 redirect beats a plain
///   allow), else the more specific port filter (the remote's identity on a tie) decides; if
///   its entries name no mode, the other kind's type applies when higher and of the same
///   precedence.
///
/// `None` when no authentication is needed (auth type 0).
fn required_auth(matches: &[AuthMatch]) -> Option<AuthType> {
    // (prefix, type, explicit, rank) of one kind.
    let kind = |wildcard: bool| -> Option<(u8, AuthType, bool, u16)> {
        let ms: Vec<&AuthMatch> = matches.iter().filter(|m| m.wildcard == wildcard).collect();
        let top = ms.iter().map(|m| m.prefix).max()?;
        let rank = ms.iter().map(|m| m.rank).max().unwrap_or(1);
        let at_top = ms
            .iter()
            .filter(|m| m.prefix == top)
            .filter_map(|m| m.explicit)
            .max();
        if let Some(t) = at_top {
            return Some((top, t, true, rank));
        }
        let derived = ms
            .iter()
            .filter(|m| m.prefix < top)
            .filter_map(|m| m.explicit.map(|t| (m.prefix, t)))
            .max()
            .map_or(AuthType::Disabled, |(_, t)| t);
        Some((top, derived, false, rank))
    };
    let t = match (kind(false), kind(true)) {
        (None, None) => return None,
        (Some(k), None) | (None, Some(k)) => k.1,
        (Some(l3), Some(l4)) => {
            let (chosen, other) = if l4.3 > l3.3 || (l4.3 == l3.3 && l4.0 > l3.0) {
                (l4, l3)
            } else {
                (l3, l4)
            };
            if l3.3 != l4.3 {
                chosen.1
            } else if !chosen.2 && other.1 > chosen.1 {
                other.1
            } else {
                chosen.1
            }
        }
    };
    (t != AuthType::Disabled).then_some(t)
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
    // The subject: a pod, or (with the host firewall on) a node's host endpoint, which only
    // host policies select and endpoint rules never do (`pkg/policy/rule.go`
    // `matchesSubject`).
    let (pod, node, selecting): (Option<&crate::cluster::Pod>, &str, Vec<&PolicyEntry>) =
        match subject {
            Peer::Pod(pn) => {
                let Some(pod) = cluster.pods.get(pn) else {
                    return DirectionVerdict::NotApplicable;
                };
                let Some(subject_labels) = cluster.identities.labels(pod.identity) else {
                    return DirectionVerdict::NotApplicable;
                };
                let selecting = repo
                    .entries_for_namespace(&pn.namespace)
                    .filter(|e| {
                        !e.node && e.direction == dir && e.subject.matches_labels(subject_labels)
                    })
                    .collect();
                (Some(pod), pod.node.as_str(), selecting)
            }
            Peer::Host(n) if cluster.agent.host_firewall => {
                let Some(host_labels) = cluster.host_labels(n) else {
                    return DirectionVerdict::NotApplicable;
                };
                let selecting = repo
                    .entries()
                    .filter(|e| {
                        e.node && e.direction == dir && e.subject.matches_labels(&host_labels)
                    })
                    .collect();
                (None, n.as_str(), selecting)
            }
            _ => return DirectionVerdict::NotApplicable,
        };
    rules_out.extend(selecting.iter().map(|e| e.origin.clone()));
    if selecting.is_empty() {
        return DirectionVerdict::NotEnforced;
    }
    let (peer_labels, peer_ip) = target_labels(cluster, repo, peer, node);
    // Named ports: ingress resolves against the subject pod, egress against every pod that
    // has the destination's identity. Computed only when a named port is met.
    let named_ports_of = std::cell::OnceCell::new();
    let named_ports = || -> &Vec<&crate::cluster::Pod> {
        named_ports_of.get_or_init(|| match dir {
            Direction::Ingress => pod.into_iter().collect(),
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
    let matching = |v: RuleVerdict| -> Vec<(&PolicyEntry, FilterHits<'_>)> {
        selecting
            .iter()
            .filter(|e| e.verdict == v)
            .filter_map(|e| {
                entry_matches(e, &peer_labels, peer_ip, flow, &named_ports).map(|l7| (*e, l7))
            })
            .collect()
    };
    let denies = matching(RuleVerdict::Deny);
    if !denies.is_empty() {
        return DirectionVerdict::Denied {
            reason: DropReason::PolicyDeny,
            by: denies.iter().map(|(e, _)| e.origin.clone()).collect(),
        };
    }
    let allows = matching(RuleVerdict::Allow);
    if !allows.is_empty() {
        // The highest-precedence listener among the allowing entries' L7 rules (HTTP's
        // listener priority 101 beats DNS's 121, `pkg/policy/l4.go`).
        let redirect = allows
            .iter()
            .flat_map(|(_, l7)| l7.iter().filter_map(|(p, _)| p.map(|p| p.parser)))
            .min_by_key(|p| p.listener_priority());
        let proxy_rules = match redirect {
            None => vec![],
            Some(parser) => allows
                .iter()
                .flat_map(|(e, l7)| {
                    l7.iter().filter_map(move |(p, own)| match p {
                        Some(p) if p.parser != parser => None,
                        _ if !own && !crate::proxy::other_filters_reach(parser) => None,
                        p => Some(ProxyRule {
                            l7: p.cloned(),
                            origin: e.origin.clone(),
                        }),
                    })
                })
                .collect(),
        };
        let auth_matches: Vec<AuthMatch> = allows
            .iter()
            .flat_map(|(e, _)| auth_matches_of(e, flow, &named_ports))
            .collect();
        if let Some(t) = required_auth(&auth_matches) {
            let remote_pod = match peer {
                Peer::Pod(p) => cluster.pods.get(p),
                _ => None,
            };
            // A host endpoint is never authenticated (the handshakes are between pods).
            let ok = match (pod, remote_pod) {
                (Some(lp), Some(rp)) => cluster.auth.side_authenticated(
                    cluster,
                    &lp.name,
                    rp.identity,
                    Some(&rp.name),
                    t,
                ),
                _ => false,
            };
            if !ok {
                return DirectionVerdict::Denied {
                    reason: DropReason::AuthRequired,
                    by: allows.iter().map(|(e, _)| e.origin.clone()).collect(),
                };
            }
        }
        return DirectionVerdict::Allowed {
            by: allows.iter().map(|(e, _)| e.origin.clone()).collect(),
            synthetic: None,
            redirect,
            proxy_rules,
        };
    }
    let default_deny = selecting.iter().any(|e| e.default_deny);
    if !default_deny {
        return DirectionVerdict::Allowed {
            by: vec![],
            synthetic: Some("no default-deny rule selects the endpoint: allow-all"),
            redirect: None,
            proxy_rules: vec![],
        };
    }
    // The synthetic "allow ingress from reserved:host" rule (allow-localhost=always in K8s
    // mode, spec §4.1): the endpoint's own node only, and never on the host endpoint itself
    // (`pkg/policy/repository.go`: "insert localhost allow for k8s if the policy subject is
    // not the host").
    if dir == Direction::Ingress && pod.is_some() && matches!(peer, Peer::Host(n) if n == node) {
        return DirectionVerdict::Allowed {
            by: vec![],
            synthetic: Some("ingress from the local host is always allowed (allow-localhost)"),
            redirect: None,
            proxy_rules: vec![],
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
