//! Translation of validated manifests (`api`) into internal policy entries (`policy`):
//! Cilium's `Rule.Sanitize` + `ParseToCiliumRule` for CNP/CCNP (spec §2) and
//! `ParseNetworkPolicy` for KNP (spec §1.5), including namespacing, the local-cluster filter
//! of `--policy-default-local-cluster` (default true since 1.19, spec §2.3), entity expansion
//! (spec §3.5), ANY → TCP/UDP/SCTP (spec §1.2) and default-deny resolution (spec §4.1).

use ipnet::IpNet;

use crate::api::{self, Entity, Manifest};
use crate::cluster::{Cluster, Protocol};
use crate::labels::{
    cidr_group_name_key, Label, LabelKey, LabelSet, Source, DEFAULT_CLUSTER,
    NAMESPACE_LABELS_PREFIX, POD_NAMESPACE, POLICY_CLUSTER,
};
use crate::policy::{
    AuthType, L7Parser, L7Policy, Peers, PolicyEntry, PolicyKind, PolicyRef, PortProto, PortSpec,
    RuleOrigin, RuleVerdict,
};
use crate::selector::{Op, Requirement, Selector};
use crate::service::Service;
use crate::verdict::Direction;

/// The policy object's reference (kind, namespace, name); `None` for a CiliumCIDRGroup,
/// which is not a policy (it goes to the cluster's ipcache input, `Cluster::cidr_groups`).
pub fn policy_ref(m: &Manifest) -> Option<PolicyRef> {
    let kind = match m {
        Manifest::NetworkPolicy(_) => PolicyKind::NetworkPolicy,
        Manifest::CiliumNetworkPolicy(_) => PolicyKind::CiliumNetworkPolicy,
        Manifest::CiliumClusterwideNetworkPolicy(_) => PolicyKind::CiliumClusterwideNetworkPolicy,
        Manifest::CiliumCidrGroup(_) => return None,
    };
    Some(PolicyRef {
        kind,
        namespace: m.namespace().map(str::to_string),
        name: m.name().to_string(),
    })
}

/// Translates one manifest into its policy entries, in a cluster without services (a
/// `toServices` entry then matches nothing; none for a CiliumCIDRGroup).
pub fn translate(m: &Manifest) -> Vec<PolicyEntry> {
    translate_in(m, None)
}

/// Translates one manifest into its policy entries (none for a CiliumCIDRGroup); `toServices`
/// is resolved against the cluster's services, as Cilium's policy watcher does before the rule
/// reaches the repository (`pkg/policy/k8s/service.go` `resolveToServices`).
pub fn translate_in(m: &Manifest, cluster: Option<&Cluster>) -> Vec<PolicyEntry> {
    let Some(pref) = policy_ref(m) else {
        return Vec::new();
    };
    match m {
        Manifest::NetworkPolicy(knp) => translate_knp(&pref, knp),
        Manifest::CiliumNetworkPolicy(cnp) => cnp
            .rules()
            .enumerate()
            .flat_map(|(i, r)| translate_rule(&pref, i, r, pref.namespace.as_deref(), cluster))
            .collect(),
        Manifest::CiliumClusterwideNetworkPolicy(ccnp) => ccnp
            .rules()
            .enumerate()
            .flat_map(|(i, r)| translate_rule(&pref, i, r, None, cluster))
            .collect(),
        Manifest::CiliumCidrGroup(_) => Vec::new(),
    }
}

/// Whether a `toServices` entry selects a service: `serviceRefMatches` (same name, and the
/// namespace if one is given) or `serviceSelectorMatches` (the selector over the Service's
/// own labels, label sources ignored, and the namespace if one is given). A selector is
/// tried before a name when an entry has both (`processRule`).
fn service_rule_matches(r: &api::ServiceRule, svc: &Service) -> bool {
    let ns_ok = |ns: &str| ns.is_empty() || ns == svc.name.namespace;
    if let Some(sel) = &r.k8s_service_selector {
        let labels = LabelSet::new(
            svc.labels
                .iter()
                .map(|(k, v)| Label::k8s(k.clone(), v.clone()))
                .collect(),
        );
        ns_ok(&sel.namespace) && cilium_selector(&sel.selector).matches_labels(&labels)
    } else if let Some(r) = &r.k8s_service {
        ns_ok(&r.namespace) && r.service_name == svc.name.name
    } else {
        false
    }
}

/// The peers `toServices` generates (`pkg/policy/k8s/service.go` `processRule`, Cilium main
/// and 1.18 alike): for each matching service with a selector, a generated `toEndpoints`
/// selector of its selector's labels (`k8s:` source) and `k8s:io.kubernetes.pod.namespace` =
/// its namespace (`newEndpointSelectorForServiceSelector`), which then gets the local-cluster
/// filter as any `toEndpoints` selector (spec §2.3); for each matching service without a
/// selector, one generated `toCIDRSet` entry per backend address (/32, /128:
/// `newServiceEndpoints`). Services in services order (name), deduplicated.
fn service_selectors(rules: &[api::ServiceRule], cluster: Option<&Cluster>) -> Vec<Selector> {
    let Some(c) = cluster else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for svc in c.services.values() {
        for r in rules {
            if !service_rule_matches(r, svc) {
                continue;
            }
            match &svc.selector {
                Some(sel) if !sel.is_empty() => {
                    let mut reqs: Vec<Requirement> = sel
                        .iter()
                        .map(|(k, v)| Requirement::equals(k8s_key(k), v.clone()))
                        .collect();
                    reqs.push(Requirement::equals(
                        k8s_key(POD_NAMESPACE),
                        svc.name.namespace.clone(),
                    ));
                    out.push(with_cluster_filter(Selector::new(reqs)));
                }
                _ => {
                    for ip in c.service_backend_ips(svc) {
                        out.push(cidr_selector(&IpNet::from(ip), &[]));
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn k8s_key(k: &str) -> LabelKey {
    LabelKey::new(Source::K8s, k)
}

fn op_of(op: &api::Operator, values: &[String]) -> Op {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        v
    };
    match op {
        api::Operator::In => Op::In(sorted(values)),
        api::Operator::NotIn => Op::NotIn(sorted(values)),
        api::Operator::Exists => Op::Exists,
        api::Operator::DoesNotExist => Op::DoesNotExist,
    }
}

fn requirement(key: LabelKey, op: &api::Operator, values: &[String]) -> Requirement {
    Requirement::label(key, op_of(op, values))
}

/// Converts a label selector, mapping every key through `key`.
fn selector_with(sel: &api::LabelSelector, key: impl Fn(&str) -> LabelKey) -> Selector {
    let mut reqs = Vec::new();
    for (k, v) in &sel.match_labels {
        reqs.push(Requirement::equals(key(k), v.clone()));
    }
    for e in &sel.match_expressions {
        reqs.push(requirement(key(&e.key), &e.operator, &e.values));
    }
    Selector::new(reqs)
}

/// A CNP/CCNP selector after `Sanitize`: keys without a known source get `any:`.
fn cilium_selector(sel: &api::EndpointSelector) -> Selector {
    selector_with(&sel.0, LabelKey::parse_selector_key)
}

fn is_key(k: &LabelKey, name: &str) -> bool {
    (k.source == Source::K8s || k.source == Source::Any) && k.key == name
}

fn names_namespace(sel: &Selector) -> bool {
    sel.has_key(|k| is_key(k, POD_NAMESPACE))
        || sel.has_key(|k| {
            (k.source == Source::K8s || k.source == Source::Any)
                && k.key.starts_with(NAMESPACE_LABELS_PREFIX)
        })
}

/// Adds `k8s:io.cilium.k8s.policy.cluster=default` unless the selector names that key
/// (spec §2.3).
fn with_cluster_filter(sel: Selector) -> Selector {
    if sel.has_key(|k| is_key(k, POLICY_CLUSTER)) {
        sel
    } else {
        sel.with(Requirement::equals(
            k8s_key(POLICY_CLUSTER),
            DEFAULT_CLUSTER,
        ))
    }
}

/// `getEndpointSelector` (spec §2.1 / §2.2) for a fromEndpoints/toEndpoints peer.
fn peer_endpoint_selector(
    sel: &api::EndpointSelector,
    namespace: Option<&str>,
    subject_is_init: bool,
) -> Selector {
    let s = cilium_selector(sel);
    if s.has_key(|k| k.source == Source::Reserved) {
        return s;
    }
    let s = if names_namespace(&s) || subject_is_init {
        s
    } else {
        match namespace {
            Some(ns) => s.with(Requirement::equals(k8s_key(POD_NAMESPACE), ns)),
            None => s.with(Requirement::label(k8s_key(POD_NAMESPACE), Op::Exists)),
        }
    };
    with_cluster_filter(s)
}

fn reserved(name: &str) -> Selector {
    Selector::new(vec![Requirement::equals(
        LabelKey::new(Source::Reserved, name),
        "",
    )])
}

/// Entity selectors (`pkg/policy/api/entity.go`, spec §3.5).
pub fn entity_selectors(e: Entity) -> Vec<Selector> {
    match e {
        Entity::All => vec![Selector::wildcard()],
        Entity::World => vec![
            reserved("world"),
            reserved("world-ipv4"),
            reserved("world-ipv6"),
        ],
        Entity::Cluster => vec![
            reserved("host"),
            reserved("remote-node"),
            reserved("init"),
            reserved("ingress"),
            reserved("health"),
            reserved("unmanaged"),
            reserved("kube-apiserver"),
            Selector::new(vec![Requirement::equals(
                k8s_key(POLICY_CLUSTER),
                DEFAULT_CLUSTER,
            )]),
        ],
        Entity::Host => vec![reserved("host")],
        Entity::RemoteNode => vec![reserved("remote-node")],
        Entity::KubeApiserver => vec![reserved("kube-apiserver")],
        Entity::Health => vec![reserved("health")],
        Entity::Init => vec![reserved("init")],
        Entity::Ingress => vec![reserved("ingress")],
        Entity::Unmanaged => vec![reserved("unmanaged")],
        Entity::None => vec![reserved("none")],
    }
}

/// A CIDR selector: `cidr:<prefix>` plus `!cidr:<except>` for each except; a /0 prefix is the
/// world label instead (spec §3.4).
pub fn cidr_selector(cidr: &IpNet, except: &[IpNet]) -> Selector {
    let mut reqs: Vec<Requirement> = except
        .iter()
        .map(|e| Requirement::NotCidr(e.trunc()))
        .collect();
    if cidr.prefix_len() == 0 {
        reqs.push(Requirement::equals(
            LabelKey::new(Source::Reserved, "world"),
            "",
        ));
    } else {
        reqs.push(Requirement::Cidr(cidr.trunc()));
    }
    Selector::new(reqs)
}

/// A `cidrGroupSelector` key: `cidrgroup:<key>` unless the key names a source
/// (`labels.NewSourceEncodedLabelKey(LabelSourceCIDRGroupKeyPrefix, key)`).
fn cidr_group_selector_key(raw: &str) -> LabelKey {
    if let Some((src, key)) = raw.split_once(':') {
        if let Some(source) = Source::parse(src) {
            return LabelKey::new(source, key);
        }
    }
    LabelKey::new(Source::CidrGroup, raw)
}

/// The selector of one `fromCIDRSet`/`toCIDRSet` entry (`newCIDRRuleSelector`,
/// `pkg/policy/types/selector.go`): a CIDR selector; for `cidrGroupRef` an Exists
/// requirement on the group's name label; for `cidrGroupSelector` its requirements on
/// `cidrgroup:` keys, matched against the encoded labels. `except` adds `!cidr:<except>`
/// in every case.
pub fn cidr_rule_selector(rule: &api::CidrRule) -> Selector {
    let except: Vec<IpNet> = rule.except.iter().map(|e| e.0).collect();
    let mut reqs: Vec<Requirement> = except
        .iter()
        .map(|e| Requirement::NotCidr(e.trunc()))
        .collect();
    match &rule.peer {
        api::CidrPeer::Cidr(c) => return cidr_selector(&c.0, &except),
        api::CidrPeer::GroupRef(name) => {
            reqs.push(Requirement::label(cidr_group_name_key(name), Op::Exists));
        }
        api::CidrPeer::GroupSelector(sel) => {
            for (k, v) in &sel.match_labels {
                reqs.push(Requirement::Encoded {
                    key: cidr_group_selector_key(k),
                    op: Op::In(vec![v.clone()]),
                });
            }
            for e in &sel.match_expressions {
                reqs.push(Requirement::Encoded {
                    key: cidr_group_selector_key(&e.key),
                    op: op_of(&e.operator, &e.values),
                });
            }
        }
    }
    Selector::new(reqs)
}

fn expand_protocol(p: api::Protocol) -> Vec<Protocol> {
    match p {
        api::Protocol::Tcp => vec![Protocol::Tcp],
        api::Protocol::Udp => vec![Protocol::Udp],
        api::Protocol::Sctp => vec![Protocol::Sctp],
        // spec §1.2: ANY expands to TCP, UDP and SCTP only, never ICMP.
        api::Protocol::Any => vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp],
    }
}

fn port_spec(port: &api::Port, end: Option<u16>) -> PortSpec {
    match port {
        api::Port::Number(n) => PortSpec::Range {
            start: *n,
            end: end.unwrap_or(*n),
        },
        api::Port::Name(name) => PortSpec::Named(name.clone()),
    }
}

fn cnp_ports(to_ports: &[api::PortRule], icmps: &[api::IcmpRule]) -> Vec<PortProto> {
    let mut out = Vec::new();
    for pr in to_ports {
        for pp in &pr.ports {
            for protocol in expand_protocol(pp.protocol) {
                out.push(PortProto {
                    protocol,
                    port: port_spec(&pp.port, pp.end_port),
                });
            }
        }
    }
    for ir in icmps {
        for f in &ir.fields {
            let protocol = match f.family {
                api::IcmpFamily::IPv4 => Protocol::Icmp,
                api::IcmpFamily::IPv6 => Protocol::Icmpv6,
            };
            // The type becomes the port; type 0 is then the port wildcard (spec §7 #23,
            // inferred from pkg/policy/l4.go; documented as a modelling choice).
            out.push(PortProto {
                protocol,
                port: PortSpec::Range {
                    start: f.icmp_type as u16,
                    end: f.icmp_type as u16,
                },
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The L7 rules of one allow item, per port (`createL4Filter` + `mergePortProto`,
/// `pkg/policy/l4.go`, `pkg/policy/rule.go`): a `toPorts` entry with `http` rules redirects
/// its TCP ports to the HTTP proxy, one with `dns` rules its ports (any protocol) to the DNS
/// proxy; the rules of several entries on the same port are merged (union), and an entry of
/// the same item without L7 rules on that port adds the wildcard rule (the selector's L7 is
/// then allow-all, still redirected). A rule that does not make its direction default-deny
/// gets the wildcard too (`ensureWildcard` for `enableDefaultDeny: false`).
fn cnp_l7(to_ports: &[api::PortRule], default_deny: bool) -> Vec<(PortProto, L7Policy)> {
    let mut plain: Vec<PortProto> = Vec::new();
    let mut l7: Vec<(PortProto, L7Policy)> = Vec::new();
    for pr in to_ports {
        for pp in &pr.ports {
            for protocol in expand_protocol(pp.protocol) {
                let key = PortProto {
                    protocol,
                    port: port_spec(&pp.port, pp.end_port),
                };
                let Some(rules) = &pr.rules else {
                    plain.push(key);
                    continue;
                };
                let (parser, http, dns) = if rules.has_dns() {
                    (L7Parser::Dns, vec![], rules.dns.clone().unwrap_or_default())
                } else if protocol == Protocol::Tcp {
                    (
                        L7Parser::Http,
                        rules.http.clone().unwrap_or_default(),
                        vec![],
                    )
                } else {
                    // Validation allows HTTP rules on TCP only; nothing to redirect.
                    plain.push(key);
                    continue;
                };
                match l7.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, pol)) => {
                        for r in http {
                            if !pol.http.contains(&r) {
                                pol.http.push(r);
                            }
                        }
                        for r in dns {
                            if !pol.dns.contains(&r) {
                                pol.dns.push(r);
                            }
                        }
                    }
                    None => l7.push((
                        key,
                        L7Policy {
                            parser,
                            http,
                            dns,
                            wildcard: !default_deny,
                        },
                    )),
                }
            }
        }
    }
    for (k, pol) in &mut l7 {
        if plain.contains(k) {
            pol.wildcard = true;
        }
    }
    l7.sort_by(|a, b| a.0.cmp(&b.0));
    l7
}

/// `toFQDNs` selectors: each selects the identities whose labels carry
/// `fqdn:<matchName or matchPattern>` (`FQDNSelector.IdentityLabel`, `pkg/policy/api/fqdn.go`),
/// the labels the name manager gives the IPs of the names it saw the DNS proxy allow
/// (`deriveLabelsForName`, `pkg/fqdn/namemanager/manager.go`).
pub fn fqdn_selector(sel: &api::FqdnSelector) -> Selector {
    let key = match sel {
        api::FqdnSelector::MatchName(n) | api::FqdnSelector::MatchPattern(n) => n,
    };
    Selector::new(vec![Requirement::label(
        LabelKey::new(Source::Fqdn, key),
        Op::Exists,
    )])
}

/// A `fromNodes`/`toNodes` selector (`parseToCiliumIngressCommonRule`,
/// `parseToCiliumEgressCommonRule` in `pkg/k8s/apis/cilium.io/utils/utils.go`): the user's
/// selector (keys without a source get `any:`), `reserved:remote-node Exists`, and the
/// local-cluster filter (`addClusterFilterByDefault`). It selects the remote-node identities
/// the agent allocates per node label set under `--enable-node-selector-labels`
/// (`pkg/node/manager/manager.go` `nodeIdentityLabels`), never the local host.
pub fn node_peer_selector(sel: &api::EndpointSelector) -> Selector {
    with_cluster_filter(cilium_selector(sel).with(Requirement::label(
        LabelKey::new(Source::Reserved, "remote-node"),
        Op::Exists,
    )))
}

/// The L3 peer fields of one CNP item (ingress `from*` or egress `to*`).
struct PeerFields<'a> {
    endpoints: Option<&'a Vec<api::EndpointSelector>>,
    cidrs: Option<&'a Vec<api::Cidr>>,
    cidr_sets: Option<&'a Vec<api::CidrRule>>,
    entities: Option<&'a Vec<Entity>>,
    nodes: Option<&'a Vec<api::EndpointSelector>>,
    fqdns: Option<&'a Vec<api::FqdnSelector>>,
}

/// Peers of one CNP item: present-but-empty lists select nothing; no peer field is
/// unrestricted (spec §4.2).
fn cnp_peers(f: PeerFields<'_>, namespace: Option<&str>, subject_is_init: bool) -> Peers {
    let PeerFields {
        endpoints,
        cidrs,
        cidr_sets,
        entities,
        nodes,
        fqdns,
    } = f;
    let mut present = false;
    let mut sels = Vec::new();
    if let Some(ns) = nodes {
        present = true;
        sels.extend(ns.iter().map(node_peer_selector));
    }
    if let Some(fs) = fqdns {
        present = true;
        sels.extend(fs.iter().map(fqdn_selector));
    }
    if let Some(eps) = endpoints {
        present = true;
        sels.extend(
            eps.iter()
                .map(|s| peer_endpoint_selector(s, namespace, subject_is_init)),
        );
    }
    if let Some(cs) = cidrs {
        present = true;
        sels.extend(cs.iter().map(|c| cidr_selector(&c.0, &[])));
    }
    if let Some(sets) = cidr_sets {
        present = true;
        for s in sets {
            sels.push(cidr_rule_selector(s));
        }
    }
    if let Some(es) = entities {
        present = true;
        for e in es {
            sels.extend(entity_selectors(*e));
        }
    }
    if !present {
        Peers::Unrestricted
    } else if sels.is_empty() {
        Peers::Nothing
    } else {
        sels.sort();
        sels.dedup();
        Peers::Selectors(sels)
    }
}

/// `toPorts`/`icmps` entries that name no port (`toPorts: [{}]`, `toPorts: [{ports: []}]`,
/// `icmps: [{}]`) add no filter at all. Cilium builds an L3-only (all ports) filter only when
/// the item has no such entries: `pkg/policy/utils/parserules.go` `RulesToPolicyEntries`
/// collects them into `PolicyEntry.L4` and a non-empty `L4` is iterated port by port
/// (`pkg/policy/rule.go` `mergeIngress`/`mergeEgress`: the L3-only filter needs
/// `toPorts.Len() == 0 && icmp.Len() == 0`). Such an item selects nothing; it still counts
/// for default deny.
fn portless_entries_select_nothing(
    peers: Peers,
    ports: &[PortProto],
    to_ports: &[api::PortRule],
    icmps: &[api::IcmpRule],
) -> Peers {
    if ports.is_empty() && (!to_ports.is_empty() || !icmps.is_empty()) {
        Peers::Nothing
    } else {
        peers
    }
}

fn translate_rule(
    pref: &PolicyRef,
    rule_index: usize,
    r: &api::Rule,
    namespace: Option<&str>,
    cluster: Option<&Cluster>,
) -> Vec<PolicyEntry> {
    let node = r.node_selector.is_some();
    let mut subject = cilium_selector(r.node_selector.as_ref().unwrap_or(&r.endpoint_selector));
    if let (Some(ns), false) = (namespace, node) {
        // ParseToCiliumRule: AddMatch overwrites the k8s: namespace key (spec §2.1, §7 #3).
        subject = subject.with_match(k8s_key(POD_NAMESPACE), ns);
    }
    let subject_is_init = subject.has_key(|k| k.source == Source::Reserved && k.key == "init");
    let has_ingress = !r.ingress.is_empty() || !r.ingress_deny.is_empty();
    let has_egress = !r.egress.is_empty() || !r.egress_deny.is_empty();
    // spec §4.1: enableDefaultDeny.<dir> if set, else true when the rule has entries there.
    let dd_ingress = r.enable_default_deny.ingress.unwrap_or(has_ingress);
    let dd_egress = r.enable_default_deny.egress.unwrap_or(has_egress);
    let log = r
        .log
        .as_ref()
        .map(|l| l.value.clone())
        .filter(|v| !v.is_empty());
    let mut out = Vec::new();
    let mut push = |direction, verdict, section, item, peers, ports, l7, auth| {
        out.push(PolicyEntry {
            subject: subject.clone(),
            direction,
            verdict,
            peers,
            ports,
            l7,
            default_deny: if direction == Direction::Ingress {
                dd_ingress
            } else {
                dd_egress
            },
            auth,
            node,
            origin: RuleOrigin {
                policy: pref.clone(),
                rule: rule_index,
                section,
                item,
                log: log.clone(),
            },
        });
    };
    for (sec, verdict, items) in [
        ("ingress", RuleVerdict::Allow, &r.ingress),
        ("ingressDeny", RuleVerdict::Deny, &r.ingress_deny),
    ] {
        for (i, it) in items.iter().enumerate() {
            let peers = cnp_peers(
                PeerFields {
                    endpoints: it.from_endpoints.as_ref(),
                    cidrs: it.from_cidr.as_ref(),
                    cidr_sets: it.from_cidr_set.as_ref(),
                    entities: it.from_entities.as_ref(),
                    nodes: it.from_nodes.as_ref(),
                    fqdns: None,
                },
                namespace,
                subject_is_init,
            );
            let ports = cnp_ports(&it.to_ports, &it.icmps);
            let peers = portless_entries_select_nothing(peers, &ports, &it.to_ports, &it.icmps);
            let l7 = match verdict {
                RuleVerdict::Allow => cnp_l7(&it.to_ports, dd_ingress),
                RuleVerdict::Deny => vec![],
            };
            let auth = it.authentication.map(AuthType::from_mode);
            push(Direction::Ingress, verdict, sec, i, peers, ports, l7, auth);
        }
    }
    for (sec, verdict, items) in [
        ("egress", RuleVerdict::Allow, &r.egress),
        ("egressDeny", RuleVerdict::Deny, &r.egress_deny),
    ] {
        for (i, it) in items.iter().enumerate() {
            let peers = cnp_peers(
                PeerFields {
                    endpoints: it.to_endpoints.as_ref(),
                    cidrs: it.to_cidr.as_ref(),
                    cidr_sets: it.to_cidr_set.as_ref(),
                    entities: it.to_entities.as_ref(),
                    nodes: it.to_nodes.as_ref(),
                    fqdns: it.to_fqdns.as_ref(),
                },
                namespace,
                subject_is_init,
            );
            let ports = cnp_ports(&it.to_ports, &it.icmps);
            let peers = match &it.to_services {
                // toServices sits alone in its item (Sanitize refuses it with any other peer
                // kind). Cilium resolves it in `egress` only: `processRule` never looks at
                // `egressDeny`, whose toServices therefore generates nothing. What it
                // generates (possibly nothing) is the item's whole L3: with no peer at all,
                // `RulesToPolicyEntries` leaves L3 empty but non-nil, which `createL4Filter`
                // turns into the wildcard when the item has ports (an L4-only rule), and
                // which adds no filter when it has none (`mergeL4Filter` needs a non-empty
                // L3 for the L3-only filter).
                Some(svcs) => {
                    let generated = if verdict == RuleVerdict::Allow {
                        service_selectors(svcs, cluster)
                    } else {
                        Vec::new()
                    };
                    if !generated.is_empty() {
                        Peers::Selectors(generated)
                    } else if ports.is_empty() {
                        Peers::Nothing
                    } else {
                        Peers::Unrestricted
                    }
                }
                None => peers,
            };
            let peers = portless_entries_select_nothing(peers, &ports, &it.to_ports, &it.icmps);
            let l7 = match verdict {
                RuleVerdict::Allow => cnp_l7(&it.to_ports, dd_egress),
                RuleVerdict::Deny => vec![],
            };
            let auth = it.authentication.map(AuthType::from_mode);
            push(Direction::Egress, verdict, sec, i, peers, ports, l7, auth);
        }
    }
    out
}

/// A KNP peer (`ParseNetworkPolicy`, spec §1.5).
fn knp_peer(p: &api::NetworkPolicyPeer, namespace: &str) -> Selector {
    if let Some(ib) = &p.ip_block {
        let except: Vec<IpNet> = ib.except.iter().map(|e| e.0).collect();
        return cidr_selector(&ib.cidr.0, &except);
    }
    let pod = p
        .pod_selector
        .as_ref()
        .map(|s| selector_with(s, k8s_key))
        .unwrap_or_default();
    let sel = match &p.namespace_selector {
        Some(ns) if ns.match_labels.is_empty() && ns.match_expressions.is_empty() => {
            pod.with(Requirement::label(k8s_key(POD_NAMESPACE), Op::Exists))
        }
        Some(ns) => {
            let nss = selector_with(ns, |k| k8s_key(&format!("{NAMESPACE_LABELS_PREFIX}{k}")));
            nss.requirements()
                .iter()
                .fold(pod, |s, r| s.with(r.clone()))
        }
        None => pod.with(Requirement::equals(k8s_key(POD_NAMESPACE), namespace)),
    };
    with_cluster_filter(sel)
}

fn knp_ports(ports: &[api::NetworkPolicyPort]) -> Vec<PortProto> {
    let mut out: Vec<PortProto> = ports
        .iter()
        .map(|p| {
            let protocol = match p.protocol {
                api::KnpProtocol::Tcp => Protocol::Tcp,
                api::KnpProtocol::Udp => Protocol::Udp,
                api::KnpProtocol::Sctp => Protocol::Sctp,
            };
            let port = match &p.port {
                None => PortSpec::Range { start: 0, end: 0 },
                Some(port) => port_spec(port, p.end_port),
            };
            PortProto { protocol, port }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn translate_knp(pref: &PolicyRef, knp: &api::NetworkPolicy) -> Vec<PolicyEntry> {
    let namespace = pref.namespace.as_deref().unwrap_or("default");
    let subject = selector_with(&knp.spec.pod_selector, k8s_key)
        .with_match(k8s_key(POD_NAMESPACE), namespace);
    let mut out = Vec::new();
    let mut push = |direction, section, item, peers, ports| {
        out.push(PolicyEntry {
            subject: subject.clone(),
            direction,
            verdict: RuleVerdict::Allow,
            peers,
            ports,
            l7: vec![],
            default_deny: true,
            auth: None,
            node: false,
            origin: RuleOrigin {
                policy: pref.clone(),
                rule: 0,
                section,
                item,
                log: None,
            },
        });
    };
    let peers_of = |list: &[api::NetworkPolicyPeer]| {
        if list.is_empty() {
            // An empty or missing from/to: every identity, world included.
            Peers::Selectors(vec![Selector::wildcard()])
        } else {
            Peers::Selectors(list.iter().map(|p| knp_peer(p, namespace)).collect())
        }
    };
    for (i, r) in knp.spec.ingress.iter().enumerate() {
        push(
            Direction::Ingress,
            "ingress",
            i,
            peers_of(&r.from),
            knp_ports(&r.ports),
        );
    }
    for (i, r) in knp.spec.egress.iter().enumerate() {
        push(
            Direction::Egress,
            "egress",
            i,
            peers_of(&r.to),
            knp_ports(&r.ports),
        );
    }
    let types = knp.spec.policy_types.as_deref().unwrap_or(&[]);
    let has_type = |t: api::PolicyType| types.contains(&t);
    if knp.spec.ingress.is_empty()
        && (has_type(api::PolicyType::Ingress) || !has_type(api::PolicyType::Egress))
    {
        push(Direction::Ingress, "ingress", 0, Peers::Nothing, vec![]);
    }
    if knp.spec.egress.is_empty() && has_type(api::PolicyType::Egress) {
        push(Direction::Egress, "egress", 0, Peers::Nothing, vec![]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnp(yaml: &str) -> Vec<PolicyEntry> {
        let m = api::parse_manifests(std::path::Path::new("t.yaml"), yaml)
            .expect("valid manifest")
            .remove(0);
        translate(&m)
    }

    /// `toPorts: [{}]` / `icmps: [{}]` name no port: no filter, not an L3-only allow or deny
    /// of every port (cilium `pkg/policy/rule.go` mergeIngress, `parserules.go`).
    #[test]
    fn portless_to_ports_and_icmps_select_nothing() {
        let es = cnp("apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {pod: b}}]
    toPorts: [{}]
  - fromEndpoints: [{matchLabels: {pod: b}}]
    icmps: [{}]
  - fromEndpoints: [{matchLabels: {pod: b}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {pod: c}}]
    toPorts: [{ports: []}]
  egress:
  - toPorts: [{}, {ports: [{port: '80', protocol: TCP}]}]
");
        assert_eq!(es.len(), 5);
        assert_eq!(es[0].peers, Peers::Nothing);
        assert_eq!(es[1].peers, Peers::Nothing);
        // Without toPorts/icmps entries: the L3-only filter, as before.
        assert!(matches!(es[2].peers, Peers::Selectors(_)));
        assert!(es[2].ports.is_empty());
        assert_eq!(es[3].peers, Peers::Nothing);
        assert_eq!(es[3].verdict, RuleVerdict::Deny);
        // One entry with a port is enough for the L4-only rule.
        assert_eq!(es[4].peers, Peers::Unrestricted);
        assert_eq!(es[4].ports.len(), 1);
        assert!(es.iter().all(|e| e.default_deny));
    }
}
