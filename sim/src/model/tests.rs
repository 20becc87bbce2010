//! Model tests: every spec §7 case in scope, named after it, with keys and outcomes taken
//! from the spec text; incrementality checks; and a proptest against the oracle.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::cluster::PodSpec;
use crate::mapstate::Synthetic;
use crate::oracle;
use crate::portrange::MaskedPort;

// ---- fixtures --------------------------------------------------------------------------

/// Two nodes (172.18.0.2, 172.18.0.3), namespaces x, y and kube-system.
fn cluster() -> Cluster {
    let mut c = Cluster::new();
    c.add_node("node-1", Some("172.18.0.2".parse().unwrap()))
        .unwrap();
    c.add_node("node-2", Some("172.18.0.3".parse().unwrap()))
        .unwrap();
    for ns in ["x", "y", "kube-system"] {
        c.add_namespace(ns, BTreeMap::new()).unwrap();
    }
    c
}

fn add_pod(
    c: &mut Cluster,
    name: &str,
    ip: &str,
    labels: &[(&str, &str)],
    ports: &[(&str, u16, Protocol)],
) {
    c.add_pod(PodSpec {
        service_account: None,
        name: name.to_string(),
        node: None,
        ip: Some(ip.parse().unwrap()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: ports
            .iter()
            .map(|(n, p, proto)| ContainerPort {
                name: n.to_string(),
                port: *p,
                protocol: *proto,
            })
            .collect(),
    })
    .unwrap();
}

/// x/a (10.0.1.10, app=a), x/b (10.0.1.11, app=b), x/c (10.0.1.12, app=c), y/a (10.0.2.10,
/// app=a), all on node-1; kube-system/coredns (10.0.3.10, k8s-app=kube-dns).
fn standard_cluster() -> Cluster {
    let mut c = cluster();
    add_pod(&mut c, "x/a", "10.0.1.10", &[("app", "a")], &[]);
    add_pod(&mut c, "x/b", "10.0.1.11", &[("app", "b")], &[]);
    add_pod(&mut c, "x/c", "10.0.1.12", &[("app", "c")], &[]);
    add_pod(&mut c, "y/a", "10.0.2.10", &[("app", "a")], &[]);
    add_pod(
        &mut c,
        "kube-system/coredns",
        "10.0.3.10",
        &[("k8s-app", "kube-dns")],
        &[],
    );
    c
}

fn repo(yaml: &str) -> Repository {
    let mut r = Repository::default();
    let ms =
        crate::api::parse_manifests(Path::new("test.yaml"), yaml).expect("test manifest parses");
    for m in &ms {
        if let Some(key) = crate::translate::policy_ref(m) {
            r.apply(key, crate::translate::translate(m));
        }
    }
    r
}

fn flow(c: &Cluster, from: &str, to: &str, protocol: Protocol, dport: u16) -> Flow {
    Flow {
        src: c.resolve(from).unwrap_or_else(|| panic!("no peer {from}")),
        dst: c.resolve(to).unwrap_or_else(|| panic!("no peer {to}")),
        protocol,
        dport,
    }
}

fn pod(name: &str) -> PodName {
    PodName::parse(name).unwrap()
}

/// Decides with the model and checks the oracle agrees on verdict, reason and direction.
fn decide(
    m: &Model,
    c: &Cluster,
    r: &Repository,
    from: &str,
    to: &str,
    protocol: Protocol,
    dport: u16,
) -> Outcome {
    let f = flow(c, from, to, protocol, dport);
    let got = m.decide(c, &f);
    let want = oracle::decide(c, r, &f).outcome();
    assert_eq!(
        (got.allowed, got.reason, got.direction),
        (want.allowed, want.reason, want.direction),
        "model and oracle disagree on {from} -> {to} {protocol}/{dport}\n{}",
        m.explain(c, &f)
    );
    got
}

fn allowed(direction: Option<Direction>, m: MatchType) -> Outcome {
    Outcome {
        allowed: true,
        reason: None,
        direction,
        match_type: Some(m),
        redirect: crate::verdict::Redirects::default(),
    }
}

fn dropped(reason: DropReason, direction: Direction, m: MatchType) -> Outcome {
    Outcome {
        allowed: false,
        reason: Some(reason),
        direction: Some(direction),
        match_type: Some(m),
        redirect: crate::verdict::Redirects::default(),
    }
}

const IN: Option<Direction> = Some(Direction::Ingress);
const EG: Option<Direction> = Some(Direction::Egress);
const TCP: Protocol = Protocol::Tcp;

fn keys(m: &Model, p: &str, d: Direction) -> Vec<(Key, bool)> {
    m.endpoint(&pod(p))
        .unwrap()
        .map
        .direction(d)
        .map(|(k, e)| (*k, e.deny))
        .collect()
}

fn id_of(c: &Cluster, p: &str) -> Identity {
    c.pods[&pod(p)].identity
}

fn l4(id: Identity, d: Direction, proto: Protocol, port: u16, prefix: u8) -> Key {
    Key::l4(id, d, proto, MaskedPort { port, prefix })
}

/// An endpoint's map with CIDR identities named by their labels: their numbers depend on
/// allocation order (spec §8), so an incremental model and a fresh one may number them
/// differently.
type NormalRow = (String, Direction, u8, MaskedPort, bool, u32);

fn normalized(m: &Model, ep: &Endpoint) -> Vec<NormalRow> {
    let mut rows: Vec<NormalRow> = ep
        .map
        .iter()
        .map(|(k, e)| {
            let id = if k.identity.is_local_scope() {
                m.identity_labels(k.identity)
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            } else {
                k.identity.to_string()
            };
            (id, k.direction, k.nexthdr, k.port, e.deny, e.precedence)
        })
        .collect();
    rows.sort();
    rows
}

/// A model updated incrementally must equal a fresh one (maps and enforcement).
fn same_as_fresh(m: &Model, c: &Cluster, r: &Repository) -> Result<(), String> {
    let fresh = Model::new(c, r);
    if m.endpoints().count() != fresh.endpoints().count() {
        return Err("endpoint count differs".into());
    }
    for ep in fresh.endpoints() {
        let got = m
            .endpoint(&ep.pod)
            .ok_or(format!("no endpoint {}", ep.pod))?;
        if (got.identity, &got.ingress, &got.egress) != (ep.identity, &ep.ingress, &ep.egress) {
            return Err(format!("{}: identity or enforcement differs", ep.pod));
        }
        let (a, b) = (normalized(m, got), normalized(&fresh, ep));
        if a != b {
            return Err(format!(
                "{}: map differs\nincremental {a:?}\nfresh {b:?}",
                ep.pod
            ));
        }
    }
    if m.policy_map_len() != fresh.policy_map_len() {
        return Err("policy LPM size differs".into());
    }
    if m.policy_map_len() != m.policy_map_entries().len() {
        return Err("policy LPM out of sync with the endpoints' maps".into());
    }
    Ok(())
}

fn assert_same_as_fresh(m: &Model, c: &Cluster, r: &Repository) {
    if let Err(e) = same_as_fresh(m, c, r) {
        panic!("{e}");
    }
}

// ---- spec §7 ---------------------------------------------------------------------------

// §7 #1: CNP in x with endpointSelector {} and fromEndpoints [{}]: x's pods may reach x's
// pods; a pod of y is dropped at x's ingress with DROP_POLICY.
#[test]
fn spec7_01_empty_from_endpoints_is_own_namespace() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80),
        allowed(IN, MatchType::L3Only)
    );
    assert_eq!(
        decide(&m, &c, &r, "y/a", "x/a", TCP, 80),
        dropped(
            DropReason::PolicyDenied,
            Direction::Ingress,
            MatchType::None
        )
    );
}

// §7 #2: fromEndpoints naming namespace y: only y's pods are allowed, x's own pods are not.
#[test]
fn spec7_02_from_endpoints_other_namespace_only() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: 'y'}}]
",
    );
    let m = Model::new(&c, &r);
    assert!(decide(&m, &c, &r, "y/a", "x/a", TCP, 80).allowed);
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
}

// §7 #3: endpointSelector naming another namespace with the bare key selects nothing.
#[test]
fn spec7_03_endpoint_selector_bare_namespace_selects_nothing() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {io.kubernetes.pod.namespace: 'y'}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: none}}]
",
    );
    let m = Model::new(&c, &r);
    for p in ["x/a", "y/a"] {
        assert_eq!(m.policy_enabled(&pod(p)), Some((false, false)));
    }
    assert_eq!(decide(&m, &c, &r, "x/b", "y/a", TCP, 80).direction, None);
}

// §7 #4: CCNP {} with fromEndpoints [{}]: every pod allowed in; world DROP_POLICY; host
// allowed (localhost rule); remote-node DROP_POLICY.
#[test]
fn spec7_04_ccnp_all_pods_host_allowed_world_and_remote_node_dropped() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
",
    );
    let m = Model::new(&c, &r);
    assert!(decide(&m, &c, &r, "y/a", "x/a", TCP, 80).allowed);
    assert!(decide(&m, &c, &r, "kube-system/coredns", "x/a", TCP, 80).allowed);
    assert_eq!(
        decide(&m, &c, &r, "8.8.8.8", "x/a", TCP, 80),
        dropped(
            DropReason::PolicyDenied,
            Direction::Ingress,
            MatchType::None
        )
    );
    // Host: the synthetic L3-only allow of identity 1.
    assert_eq!(
        decide(&m, &c, &r, "host:node-1", "x/a", TCP, 80),
        allowed(IN, MatchType::L3Only)
    );
    assert_eq!(
        decide(&m, &c, &r, "host:node-2", "x/a", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
}

// §7 #5: a DNS egress rule without a namespace is scoped to the policy's namespace.
#[test]
fn spec7_05_egress_selector_auto_scoped_to_namespace() {
    let c = standard_cluster();
    let yaml = |extra: &str| {
        format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: p, namespace: x}}
spec:
  endpointSelector: {{matchLabels: {{app: a}}}}
  egress:
  - toEndpoints: [{{matchLabels: {{k8s-app: kube-dns{extra}}}}}]
    toPorts: [{{ports: [{{port: '53', protocol: UDP}}]}}]
"
        )
    };
    let r = repo(&yaml(""));
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "x/a", "kube-system/coredns", Protocol::Udp, 53),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
    let r = repo(&yaml(", io.kubernetes.pod.namespace: kube-system"));
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "x/a", "kube-system/coredns", Protocol::Udp, 53),
        allowed(EG, MatchType::L3L4)
    );
}

// §7 #6: toEntities cluster allows host, remote-node and every pod; 8.8.8.8 is denied.
#[test]
fn spec7_06_to_entities_cluster() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [cluster]
",
    );
    let m = Model::new(&c, &r);
    for to in ["host:node-1", "host:node-2", "y/a", "kube-system/coredns"] {
        assert_eq!(
            decide(&m, &c, &r, "x/a", to, TCP, 443),
            allowed(EG, MatchType::L3Only),
            "{to}"
        );
    }
    assert_eq!(
        decide(&m, &c, &r, "x/a", "8.8.8.8", TCP, 443),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
    let ep = m.endpoint(&pod("x/a")).unwrap();
    for id in [1, 3, 4, 5, 6, 7, 8] {
        assert!(
            ep.map
                .get(&Key::l3_only(Identity(id), Direction::Egress))
                .is_some(),
            "identity {id}"
        );
    }
}

// §7 #7: toCIDR 8.8.8.8/32: 8.8.8.8 gets a local identity (cidr:8.8.8.8/32 + world) and is
// allowed; 8.8.4.4 is world and dropped; toEntities world would allow both.
#[test]
fn spec7_07_to_cidr_exact_prefix_only() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDR: [8.8.8.8/32]
",
    );
    let m = Model::new(&c, &r);
    let hit = m.ipcache().lookup("node-1", "8.8.8.8".parse().unwrap());
    assert!(hit.identity.0 >= 16_777_217);
    assert_eq!(
        m.identity_labels(hit.identity).unwrap().to_string(),
        "reserved:world cidr:8.8.8.8/32"
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "8.8.8.8", Protocol::Udp, 53),
        allowed(EG, MatchType::L3Only)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "8.8.4.4", Protocol::Udp, 53),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [world]
  - toCIDR: [8.8.8.8/32]
",
    );
    let m = Model::new(&c, &r);
    assert!(decide(&m, &c, &r, "x/a", "8.8.8.8", Protocol::Udp, 53).allowed);
    assert!(decide(&m, &c, &r, "x/a", "8.8.4.4", Protocol::Udp, 53).allowed);
}

// §7 #8: toCIDRSet 10.0.0.0/8 except 10.96.0.0/12: 10.96.0.10 denied, 10.1.2.3 allowed.
#[test]
fn spec7_08_cidr_set_except() {
    let mut c = cluster();
    add_pod(&mut c, "x/a", "172.20.0.10", &[("app", "a")], &[]);
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "x/a", "10.96.0.10", TCP, 443),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "10.1.2.3", TCP, 443),
        allowed(EG, MatchType::L3Only)
    );
    // Both prefixes have identities; only the outer one is in the map.
    let outer = m
        .ipcache()
        .cidr_identity(&"10.0.0.0/8".parse().unwrap())
        .unwrap();
    let inner = m
        .ipcache()
        .cidr_identity(&"10.96.0.0/12".parse().unwrap())
        .unwrap();
    assert_eq!(
        keys(&m, "x/a", Direction::Egress),
        vec![(Key::l3_only(outer, Direction::Egress), false)]
    );
    assert_ne!(outer, inner);
}

// spec §3.6 for IPv6: CIDR prefixes resolve by longest prefix; no entry → world.
#[test]
fn ipv6_cidr_egress() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDRSet: [{cidr: '2001:db8::/32', except: ['2001:db8:1::/48']}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "x/a", "2001:db8::1", TCP, 443),
        allowed(EG, MatchType::L3Only)
    );
    for to in ["2001:db8:1::1", "2001:db9::1"] {
        assert_eq!(
            decide(&m, &c, &r, "x/a", to, TCP, 443).reason,
            Some(DropReason::PolicyDenied),
            "{to}"
        );
    }
    let hit = m
        .ipcache()
        .lookup("node-1", "2001:db8:1::1".parse().unwrap());
    assert_eq!(hit.prefix, Some("2001:db8:1::/48".parse().unwrap()));
    assert_eq!(
        m.identity_labels(hit.identity).unwrap().to_string(),
        "reserved:world cidr:2001-db8-1--/48"
    );
}

// §7 #9: toCIDR 10.0.0.0/8 where 10.0.1.11 is a pod: denied (the pod identity wins).
#[test]
fn spec7_09_cidr_never_matches_pods() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDR: [10.0.0.0/8, 10.0.1.11/32]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        m.ipcache()
            .lookup("node-1", "10.0.1.11".parse().unwrap())
            .identity,
        id_of(&c, "x/b")
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "x/b", TCP, 80),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
    assert!(decide(&m, &c, &r, "x/a", "10.0.1.99", TCP, 80).allowed);
}

// §7 #10: L3-only allow from client plus an ingressDeny from client on 80/TCP. The map
// holds the deny (client, TCP/80) and the allow (client, ANY); 80/TCP → DROP_POLICY_DENY
// with match L3-L4 (the L3 lookup hits the deny first); 81/TCP allowed L3-Only; ping allowed.
#[test]
fn spec7_10_deny_beats_l3_allow_port_80() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    let client = id_of(&c, "x/b");
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress),
        vec![
            (Key::l3_only(Identity::HOST, Direction::Ingress), false),
            (Key::l3_only(client, Direction::Ingress), false),
            (l4(client, Direction::Ingress, TCP, 80, 16), true),
        ]
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80),
        dropped(DropReason::PolicyDeny, Direction::Ingress, MatchType::L3L4)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 81),
        allowed(IN, MatchType::L3Only)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", Protocol::Icmp, 8),
        allowed(IN, MatchType::L3Only)
    );
    let ex = m.explain(&c, &flow(&c, "x/b", "x/a", TCP, 80));
    assert_eq!(ex.ingress.choice, Choice::L3Deny);
    assert_eq!(ex.ingress.lookups.len(), 1);
    assert_eq!(ex.ingress.remote_identity, Some(client));
}

// §7 #11: only ingressDeny from world still makes ingress default-deny: pod→pod
// DROP_POLICY, world DROP_POLICY_DENY. With enableDefaultDeny.ingress false pods are allowed
// and world still gets DROP_POLICY_DENY.
#[test]
fn spec7_11_deny_only_policy_is_default_deny() {
    let c = standard_cluster();
    let yaml = |extra: &str| {
        format!(
            "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: p, namespace: x}}
spec:
  endpointSelector: {{matchLabels: {{app: a}}}}
{extra}  ingressDeny:
  - fromEntities: [world]
"
        )
    };
    let r = repo(&yaml(""));
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
    assert_eq!(
        decide(&m, &c, &r, "8.8.8.8", "x/a", TCP, 80),
        dropped(
            DropReason::PolicyDeny,
            Direction::Ingress,
            MatchType::L3Only
        )
    );
    let r = repo(&yaml("  enableDefaultDeny: {ingress: false}\n"));
    let m = Model::new(&c, &r);
    // Allowed by the lowest-tier allow-all (the L4-only wildcard entry: match "all").
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80),
        allowed(IN, MatchType::All)
    );
    assert_eq!(
        decide(&m, &c, &r, "8.8.8.8", "x/a", TCP, 80).reason,
        Some(DropReason::PolicyDeny)
    );
}

// §7 #12: ingress toPorts 80/TCP without from: any source, world included, may reach 80/TCP
// (key identity 0, match L4-Only); ping is dropped.
#[test]
fn spec7_12_l4_only_rule_any_source() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - toPorts: [{ports: [{port: '80', protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress),
        vec![
            (l4(Identity::ANY, Direction::Ingress, TCP, 80, 16), false),
            (Key::l3_only(Identity::HOST, Direction::Ingress), false),
        ]
    );
    for from in ["8.8.8.8", "x/b", "y/a", "host:node-2"] {
        assert_eq!(
            decide(&m, &c, &r, from, "x/a", TCP, 80),
            allowed(IN, MatchType::L4Only),
            "{from}"
        );
    }
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", Protocol::Icmp, 8),
        dropped(
            DropReason::PolicyDenied,
            Direction::Ingress,
            MatchType::None
        )
    );
}

// §7 #13: protocol ANY port 53 gives TCP/53, UDP/53 and SCTP/53 only; ICMP is not covered.
#[test]
fn spec7_13_protocol_any_is_tcp_udp_sctp() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '53', protocol: ANY}]}]
",
    );
    let m = Model::new(&c, &r);
    let b = id_of(&c, "x/b");
    let got: Vec<Key> = keys(&m, "x/a", Direction::Ingress)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        got,
        vec![
            Key::l3_only(Identity::HOST, Direction::Ingress),
            l4(b, Direction::Ingress, Protocol::Tcp, 53, 16),
            l4(b, Direction::Ingress, Protocol::Udp, 53, 16),
            l4(b, Direction::Ingress, Protocol::Sctp, 53, 16),
        ]
    );
    for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        assert_eq!(
            decide(&m, &c, &r, "x/b", "x/a", p, 53),
            allowed(IN, MatchType::L3L4)
        );
    }
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", Protocol::Icmp, 53).reason,
        Some(DropReason::PolicyDenied)
    );
}

// §7 #14: fromEndpoints [] with toPorts selects nothing but enables default deny: every
// ingress is dropped except from the host.
#[test]
fn spec7_14_explicit_empty_from_endpoints_selects_nothing() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: []
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress),
        vec![(Key::l3_only(Identity::HOST, Direction::Ingress), false)]
    );
    for from in ["x/b", "8.8.8.8", "host:node-2"] {
        assert_eq!(
            decide(&m, &c, &r, from, "x/a", TCP, 80).reason,
            Some(DropReason::PolicyDenied)
        );
    }
    assert!(decide(&m, &c, &r, "host:node-1", "x/a", TCP, 80).allowed);
}

// §7 #15: port 80 endPort 83 TCP from X: key (X, TCP, 80/14), lpm_prefix_length 22; 80–83
// allowed with match L3-L4; 79 and 84 dropped.
#[test]
fn spec7_15_port_range_is_one_masked_key() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '80', endPort: 83, protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    let x = id_of(&c, "x/b");
    let key = l4(x, Direction::Ingress, TCP, 80, 14);
    let ep = m.endpoint(&pod("x/a")).unwrap();
    let e = ep.map.get(&key).expect("masked key present");
    assert_eq!(e.to_abi(&key).lpm_prefix_length(), 22);
    assert_eq!(ep.map.len(), 3); // + host ingress + egress allow-all
    for port in 80..=83 {
        assert_eq!(
            decide(&m, &c, &r, "x/b", "x/a", TCP, port),
            allowed(IN, MatchType::L3L4)
        );
    }
    for port in [79, 84] {
        assert_eq!(
            decide(&m, &c, &r, "x/b", "x/a", TCP, port).reason,
            Some(DropReason::PolicyDenied)
        );
    }
    let rows = m.rows(&pod("x/a")).unwrap();
    assert!(rows
        .iter()
        .any(|r| r.port_proto == "80-83/TCP" && r.prefix == 22));
}

// §7 #16: KNP podSelector {} with policyTypes [Egress] and no egress rules: egress
// default-deny; ingress not enabled (allow-all key, match "all", no verdict events).
#[test]
fn spec7_16_knp_egress_policy_type_only() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(m.policy_enabled(&pod("x/a")), Some((false, true)));
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress),
        vec![(Key::l3_only(Identity::ANY, Direction::Ingress), false)]
    );
    assert_eq!(keys(&m, "x/a", Direction::Egress), vec![]);
    assert_eq!(
        decide(&m, &c, &r, "x/a", "y/a", TCP, 80),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
    // Ingress into x/a from y/a: allowed, no side enforces (y/a has no policy).
    let ex = m.explain(&c, &flow(&c, "y/a", "x/a", TCP, 80));
    assert!(!ex.ingress.enforced);
    assert_eq!(ex.ingress.match_type, MatchType::All);
    assert_eq!(decide(&m, &c, &r, "y/a", "x/a", TCP, 80).direction, None);
}

// §7 #17: KNP with only egress rules and no policyTypes: ingress also default-deny.
#[test]
fn spec7_17_knp_egress_rules_without_policy_types_deny_ingress() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{podSelector: {}}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(m.policy_enabled(&pod("x/a")), Some((true, true)));
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "x/b", TCP, 80),
        allowed(EG, MatchType::L3Only)
    );
}

// §7 #18: a namespace relabel changes the pods' identities and thus the verdict.
#[test]
fn spec7_18_namespace_selector_follows_namespace_labels() {
    let mut c = standard_cluster();
    let r = repo(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: t}}}]
",
    );
    let mut m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "y/a", "x/a", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
    let ch = c
        .label_namespace("y", &[("team".to_string(), "t".to_string())].into(), &[])
        .unwrap();
    m.identities_changed(&c, &ch);
    m.sync_pods(&c);
    assert_eq!(
        decide(&m, &c, &r, "y/a", "x/a", TCP, 80),
        allowed(IN, MatchType::L3Only)
    );
    assert_same_as_fresh(&m, &c, &r);
}

// §7 #19: ingress named port "http": nothing without such a container port; with
// http→8080, 8080/TCP is allowed, not 80.
#[test]
fn spec7_19_ingress_named_port() {
    let mut c = standard_cluster();
    add_pod(
        &mut c,
        "x/web",
        "10.0.1.20",
        &[("app", "a")],
        &[("http", 8080, TCP)],
    );
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: http, protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    // x/a shares the identity of x/web but has no port named http: no key.
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress),
        vec![(Key::l3_only(Identity::HOST, Direction::Ingress), false)]
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 8080).reason,
        Some(DropReason::PolicyDenied)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/web", TCP, 8080),
        allowed(IN, MatchType::L3L4)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/web", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
}

// §7 #19 (egress side, spec §4.3): an egress named port resolves per destination identity;
// a wildcard peer enumerates the identities that have the port.
#[test]
fn spec7_19_egress_named_port_per_destination_identity() {
    let mut c = standard_cluster();
    add_pod(
        &mut c,
        "y/web",
        "10.0.2.20",
        &[("app", "web")],
        &[("http", 8080, TCP)],
    );
    add_pod(
        &mut c,
        "y/alt",
        "10.0.2.21",
        &[("app", "alt")],
        &[("http", 9090, TCP)],
    );
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toPorts: [{ports: [{port: http, protocol: TCP}]}]
",
    );
    let mut m = Model::new(&c, &r);
    let web = id_of(&c, "y/web");
    let alt = id_of(&c, "y/alt");
    assert_eq!(
        keys(&m, "x/a", Direction::Egress),
        vec![
            (l4(web, Direction::Egress, TCP, 8080, 16), false),
            (l4(alt, Direction::Egress, TCP, 9090, 16), false),
        ]
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "y/web", TCP, 8080),
        allowed(EG, MatchType::L3L4)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/a", "y/web", TCP, 9090).reason,
        Some(DropReason::PolicyDenied)
    );
    assert!(decide(&m, &c, &r, "x/a", "y/alt", TCP, 9090).allowed);
    // A new pod with a named port: its identity gets a key incrementally.
    add_pod(
        &mut c,
        "y/new",
        "10.0.2.22",
        &[("app", "new")],
        &[("http", 7070, TCP)],
    );
    let ch = IdentityChange {
        added: vec![id_of(&c, "y/new")],
        removed: vec![],
    };
    m.identities_changed(&c, &ch);
    m.pod_added(&c, &pod("y/new"));
    assert!(decide(&m, &c, &r, "x/a", "y/new", TCP, 7070).allowed);
    assert_same_as_fresh(&m, &c, &r);
}

// §7 #20: a label change app=a → app=b gives a new identity; rules on app=a stop matching.
#[test]
fn spec7_20_label_change_moves_identity() {
    let mut c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: c}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: a}}]
",
    );
    let mut m = Model::new(&c, &r);
    assert!(decide(&m, &c, &r, "x/a", "x/c", TCP, 80).allowed);
    let before = m.stats();
    let ch = c
        .label_pod("x/a", &[("app".to_string(), "z".to_string())].into(), &[])
        .unwrap();
    assert_eq!(ch.added.len(), 1);
    m.identities_changed(&c, &ch);
    m.pod_updated(&c, &pod("x/a"));
    assert_eq!(
        decide(&m, &c, &r, "x/a", "x/c", TCP, 80).reason,
        Some(DropReason::PolicyDenied)
    );
    // x/a (new identity) is recomputed in full; x/c, whose peer selector lost x/a's old
    // identity, only for that identity's keys; x/b, y/a and coredns are untouched.
    let after = m.stats();
    assert_eq!(after.endpoints_recomputed - before.endpoints_recomputed, 1);
    assert_eq!(after.endpoint_deltas - before.endpoint_deltas, 1);
    // pod-template-hash keeps the identity: nothing to do.
    let ch = c
        .label_pod(
            "x/a",
            &[("pod-template-hash".to_string(), "1".to_string())].into(),
            &[],
        )
        .unwrap();
    assert_eq!(ch, IdentityChange::default());
    assert_same_as_fresh(&m, &c, &r);
}

/// The change journal: off by default; once on, it names every policy-map entry, endpoint
/// and ipcache prefix that changed (a superset is allowed: the map writer skips no-ops), and
/// nothing for a change that changes nothing. The end-to-end property (journalled deltas
/// give exactly the full recomputation) is `tests/incremental.rs`.
#[test]
fn journal_names_every_change() {
    let mut c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: c}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: a}}]
  egress:
  - toCIDR: [192.0.2.0/24]
",
    );
    let mut m = Model::new(&c, &r);
    assert!(!m.journal_enabled());
    assert!(m.take_journal().is_empty());
    m.enable_journal();
    assert!(m.take_journal().is_empty());
    let entries = |m: &Model| -> BTreeMap<(u32, Key), abi::PolicyEntry> {
        m.endpoints()
            .flat_map(|ep| ep.map.iter().map(move |(k, e)| ((ep.id, *k), e.to_abi(k))))
            .collect()
    };
    let before = entries(&m);
    let ch = c
        .label_pod("x/a", &[("app".to_string(), "z".to_string())].into(), &[])
        .unwrap();
    m.identities_changed(&c, &ch);
    m.pod_updated(&c, &pod("x/a"));
    let after = entries(&m);
    let j = m.clone().take_journal();
    let changed: BTreeSet<(u32, Key)> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .copied()
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed.is_subset(&j.policy),
        "{changed:?} vs {:?}",
        j.policy
    );
    let a_ip: IpAddr = "10.0.1.10".parse().unwrap();
    assert!(j.endpoints.contains(&a_ip));
    assert!(j.ipcache.contains(&IpNet::from(a_ip)));
    // The clone took a copy; the model still has its own, and taking empties it.
    assert_eq!(m.take_journal(), j);
    assert!(m.take_journal().is_empty());
    // pod-template-hash keeps the identity: nothing changes, nothing is journalled.
    let ch = c
        .label_pod(
            "x/a",
            &[("pod-template-hash".to_string(), "1".to_string())].into(),
            &[],
        )
        .unwrap();
    m.identities_changed(&c, &ch);
    m.pod_updated(&c, &pod("x/a"));
    assert!(m.take_journal().is_empty());
    // Deleting the policy releases the CIDR identity: its prefix is journalled.
    m.policy_deleted(&PolicyRef {
        kind: crate::policy::PolicyKind::CiliumNetworkPolicy,
        namespace: Some("x".to_string()),
        name: "p".to_string(),
    });
    let j = m.take_journal();
    assert!(j
        .ipcache
        .contains(&"192.0.2.0/24".parse::<IpNet>().unwrap()));
    assert!(m
        .ipcache()
        .entry(&"192.0.2.0/24".parse().unwrap(), "node-1")
        .is_none());
    assert_same_as_fresh(&m, &c, &Repository::default());
}

// §7 #21 (policy part; replies skip policy in conntrack, which the model does not cover): A
// egress allows B:80 and B has `egress: [{}]` (egress default deny, nothing allowed): A→B:80
// allowed; B-initiated connections are denied at B's egress.
#[test]
fn spec7_21_egress_default_deny_does_not_block_inbound() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: b}}
  egress:
  - {}
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(m.policy_enabled(&pod("x/b")), Some((false, true)));
    assert_eq!(keys(&m, "x/b", Direction::Egress), vec![]);
    assert_eq!(
        decide(&m, &c, &r, "x/a", "x/b", TCP, 80),
        allowed(EG, MatchType::L3L4)
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80),
        dropped(DropReason::PolicyDenied, Direction::Egress, MatchType::None)
    );
}

// §7 #22: host → pod under default deny is allowed (synthetic L3-only host key); an
// ingressDeny from host denies it with DROP_POLICY_DENY.
#[test]
fn spec7_22_host_probe_allowed_unless_denied() {
    let c = standard_cluster();
    let base = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
";
    let r = repo(base);
    let m = Model::new(&c, &r);
    let ex = m.explain(&c, &flow(&c, "host:node-1", "x/a", TCP, 8080));
    assert_eq!(ex.outcome, allowed(IN, MatchType::L3Only));
    let (_, _, e) = ex.ingress.chosen.as_ref().unwrap();
    assert!(e.synthetic.contains(&Synthetic::AllowLocalHost));
    assert_eq!(e.precedence, crate::mapstate::PRECEDENCE_ALLOW_LOWEST);
    let r = repo(&format!("{base}  ingressDeny:\n  - fromEntities: [host]\n"));
    let m = Model::new(&c, &r);
    assert_eq!(
        decide(&m, &c, &r, "host:node-1", "x/a", TCP, 8080),
        dropped(
            DropReason::PolicyDeny,
            Direction::Ingress,
            MatchType::L3Only
        )
    );
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress)
            .into_iter()
            .filter(|(k, _)| k.identity == Identity::HOST)
            .collect::<Vec<_>>(),
        vec![(Key::l3_only(Identity::HOST, Direction::Ingress), true)]
    );
}

// §7 #23: ICMP type 0 is the port wildcard: key (…, ICMP, prefix 0), every ICMPv4 type.
#[test]
fn spec7_23_icmp_type_zero_is_wildcard() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    icmps: [{fields: [{type: 0}]}]
  - fromEndpoints: [{matchLabels: {app: c}}]
    icmps: [{fields: [{type: 8}]}]
",
    );
    let m = Model::new(&c, &r);
    let b = id_of(&c, "x/b");
    let cc = id_of(&c, "x/c");
    let got: Vec<Key> = keys(&m, "x/a", Direction::Ingress)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(got.contains(&l4(b, Direction::Ingress, Protocol::Icmp, 0, 0)));
    assert!(got.contains(&l4(cc, Direction::Ingress, Protocol::Icmp, 8, 16)));
    for t in [0, 3, 8] {
        assert_eq!(
            decide(&m, &c, &r, "x/b", "x/a", Protocol::Icmp, t),
            allowed(IN, MatchType::L3Proto)
        );
    }
    assert_eq!(
        decide(&m, &c, &r, "x/c", "x/a", Protocol::Icmp, 8),
        allowed(IN, MatchType::L3L4)
    );
    assert!(!decide(&m, &c, &r, "x/c", "x/a", Protocol::Icmp, 0).allowed);
}

// §7 #25: NotIn on the namespace key matches identities lacking it; the cluster filter
// (1.19+) excludes world and host, so world is dropped.
#[test]
fn spec7_25_notin_namespace_with_cluster_filter() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: io.kubernetes.pod.namespace, operator: NotIn, values: [kube-system]}]}]
",
    );
    let m = Model::new(&c, &r);
    assert!(decide(&m, &c, &r, "y/a", "x/a", TCP, 80).allowed);
    assert!(!decide(&m, &c, &r, "kube-system/coredns", "x/a", TCP, 80).allowed);
    assert!(!decide(&m, &c, &r, "8.8.8.8", "x/a", TCP, 80).allowed);
}

// §7 #26: toEntities remote-node also matches kube-apiserver (7), which carries
// reserved:remote-node; toEntities kube-apiserver matches 7 only (the host here does not
// back the apiserver).
#[test]
fn spec7_26_remote_node_entity_matches_kube_apiserver() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [remote-node]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: q, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: b}}
  egress:
  - toEntities: [kube-apiserver]
",
    );
    let m = Model::new(&c, &r);
    let eg = |id: u32| (Key::l3_only(Identity(id), Direction::Egress), false);
    assert_eq!(keys(&m, "x/a", Direction::Egress), vec![eg(6), eg(7)]);
    assert_eq!(keys(&m, "x/b", Direction::Egress), vec![eg(7)]);
    assert!(decide(&m, &c, &r, "x/a", "host:node-2", TCP, 6443).allowed);
    assert!(!decide(&m, &c, &r, "x/b", "host:node-2", TCP, 6443).allowed);
}

// §7 #27: an endpoint no rule selects holds the allow-all key in both directions; no side
// enforces, so the outcome has no direction and no match type.
#[test]
fn spec7_27_no_selecting_rules_allow_all() {
    let c = standard_cluster();
    let r = Repository::default();
    let m = Model::new(&c, &r);
    let ep = m.endpoint(&pod("x/a")).unwrap();
    let got: Vec<Key> = ep.map.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        got,
        vec![
            Key::l3_only(Identity::ANY, Direction::Ingress),
            Key::l3_only(Identity::ANY, Direction::Egress),
        ]
    );
    assert!(!ep.policy_enabled(Direction::Ingress) && !ep.policy_enabled(Direction::Egress));
    let o = decide(&m, &c, &r, "x/b", "x/a", TCP, 80);
    assert_eq!(
        o,
        Outcome {
            allowed: true,
            reason: None,
            direction: None,
            match_type: None,
            redirect: crate::verdict::Redirects::default(),
        }
    );
    let rows = m.rows(&pod("x/a")).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].lines(false)[0][2], "ANY");
    assert_eq!(rows[0].lines(false)[0][3], "ANY");
}

// §7 #28: L4-only allow (0, TCP/80) plus L3-only allow (X, ANY): X→80/TCP allowed with
// match L4-Only (equal precedence, prefix 24 beats 0); X→81 L3-Only.
#[test]
fn spec7_28_l4_only_beats_l3_only_at_equal_precedence() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - toPorts: [{ports: [{port: '80', protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: b}}]
",
    );
    let m = Model::new(&c, &r);
    let ex = m.explain(&c, &flow(&c, "x/b", "x/a", TCP, 80));
    assert_eq!(ex.outcome, allowed(IN, MatchType::L4Only));
    assert_eq!(ex.ingress.choice, Choice::L4LongerPrefix);
    assert_eq!(ex.ingress.lookups.len(), 2);
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 81),
        allowed(IN, MatchType::L3Only)
    );
    assert!(ex.to_string().contains("L4-only lookup"));
}

// ---- map contents, ABI and incrementality --------------------------------------------

// spec §4.3: a deny of identity 0 prunes the allows it covers; the map stays LPM-correct.
#[test]
fn wildcard_deny_prunes_covered_allows() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
  ingressDeny:
  - toPorts: [{ports: [{port: '0', protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    assert_eq!(
        keys(&m, "x/a", Direction::Ingress),
        vec![
            (l4(Identity::ANY, Direction::Ingress, TCP, 0, 0), true),
            (Key::l3_only(Identity::HOST, Direction::Ingress), false),
        ]
    );
    assert_eq!(
        decide(&m, &c, &r, "x/b", "x/a", TCP, 80),
        dropped(
            DropReason::PolicyDeny,
            Direction::Ingress,
            MatchType::ProtoOnly
        )
    );
    // Host: the L3 entry (1, ANY) is an allow; the L4-only deny has the higher precedence.
    assert_eq!(
        decide(&m, &c, &r, "host:node-1", "x/a", TCP, 80),
        dropped(
            DropReason::PolicyDeny,
            Direction::Ingress,
            MatchType::ProtoOnly
        )
    );
    assert!(decide(&m, &c, &r, "host:node-1", "x/a", Protocol::Udp, 80).allowed);
}

#[test]
fn abi_entries_round_trip_per_endpoint() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '80', endPort: 444, protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    let ep = m.endpoint(&pod("x/a")).unwrap();
    let abi = ep.map.to_abi(ep.id);
    assert_eq!(abi.len(), 9 + 2);
    let back = MapState::from_abi(ep.id, &abi);
    assert_eq!(
        back.iter()
            .map(|(k, e)| (*k, e.deny, e.precedence))
            .collect::<Vec<_>>(),
        ep.map
            .iter()
            .map(|(k, e)| (*k, e.deny, e.precedence))
            .collect::<Vec<_>>()
    );
    assert_eq!(m.policy_map_len(), m.policy_map_entries().len());
}

#[test]
fn policy_apply_and_delete_recompute_only_selected_endpoints() {
    let c = standard_cluster();
    let mut r = Repository::default();
    let mut m = Model::new(&c, &r);
    let extra = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: q, namespace: 'y'}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDR: [8.8.8.8/32]
",
    );
    let (key, entries) = extra
        .policies()
        .next()
        .map(|(k, e)| (k.clone(), e.to_vec()))
        .unwrap();
    r.apply(key.clone(), entries);
    let before = m.stats();
    m.policy_applied(&r, &key);
    // Only y/a is selected.
    assert_eq!(
        m.stats().endpoints_recomputed - before.endpoints_recomputed,
        1
    );
    assert_same_as_fresh(&m, &c, &r);
    assert!(decide(&m, &c, &r, "y/a", "8.8.8.8", TCP, 443).allowed);
    r.delete(&key);
    m.policy_deleted(&key);
    assert_same_as_fresh(&m, &c, &r);
    // The CIDR identity is released with the last selector naming the prefix.
    assert_eq!(
        m.ipcache()
            .lookup("node-1", "8.8.8.8".parse().unwrap())
            .identity,
        Identity::WORLD
    );
}

// A prefix named by a new policy gets a CIDR identity that an older, broader selector also
// selects: the older policy's endpoints must gain its key (spec §3.4 incremental).
#[test]
fn new_cidr_identity_reaches_existing_broader_selector() {
    let c = standard_cluster();
    let mut r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDR: [10.0.0.0/8]
",
    );
    let mut m = Model::new(&c, &r);
    assert!(decide(&m, &c, &r, "x/a", "10.200.0.1", TCP, 443).allowed);
    let extra = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: q, namespace: 'y'}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toCIDR: [10.200.0.0/16]
",
    );
    let (key, entries) = extra
        .policies()
        .next()
        .map(|(k, e)| (k.clone(), e.to_vec()))
        .unwrap();
    r.apply(key.clone(), entries);
    m.policy_applied(&r, &key);
    // 10.200.0.1 now resolves to the /16 identity, which x/a's /8 selector selects.
    assert!(decide(&m, &c, &r, "x/a", "10.200.0.1", TCP, 443).allowed);
    assert_same_as_fresh(&m, &c, &r);
}

#[test]
fn pod_add_and_remove_are_incremental() {
    let mut c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: d}}]
",
    );
    let mut m = Model::new(&c, &r);
    let ch = c
        .add_pod(PodSpec {
            name: "x/d".into(),
            labels: [("app".to_string(), "d".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
    m.identities_changed(&c, &ch);
    m.pod_added(&c, &pod("x/d"));
    assert_eq!(
        decide(&m, &c, &r, "x/d", "x/a", TCP, 80),
        allowed(IN, MatchType::L3Only)
    );
    assert_same_as_fresh(&m, &c, &r);
    let ch = c.delete_pod("x/d").unwrap();
    m.pod_removed(&c, &pod("x/d"));
    m.identities_changed(&c, &ch);
    assert!(m.endpoint(&pod("x/d")).is_none());
    assert_same_as_fresh(&m, &c, &r);
}

// ---- differential proptest against the oracle -----------------------------------------

mod differential {
    use super::*;
    use crate::labels::{LabelKey, Source};
    use crate::policy::{PolicyKind, PortProto, RuleOrigin, RuleVerdict};
    use crate::selector::{Op, Requirement};
    use crate::translate::{cidr_selector, entity_selectors};
    use proptest::prelude::*;

    const APPS: [&str; 3] = ["a", "b", "c"];

    fn app_sel(app: usize, ns: Option<&str>) -> Selector {
        let mut reqs = vec![Requirement::equals(
            LabelKey::new(Source::Any, "app"),
            APPS[app],
        )];
        if let Some(ns) = ns {
            reqs.push(Requirement::equals(
                LabelKey::new(Source::K8s, "io.kubernetes.pod.namespace"),
                ns,
            ));
        }
        Selector::new(reqs)
    }

    fn peer_strategy() -> impl Strategy<Value = Peers> {
        let sel = prop_oneof![
            (0..3usize).prop_map(|a| app_sel(a, None)),
            (0..3usize).prop_map(|a| app_sel(a, Some("x"))),
            Just(Selector::wildcard()),
            Just(cidr_selector(&"8.8.8.8/32".parse().unwrap(), &[])),
            Just(cidr_selector(
                &"10.0.0.0/8".parse().unwrap(),
                &["10.96.0.0/12".parse().unwrap()]
            )),
            Just(cidr_selector(&"10.96.0.0/16".parse().unwrap(), &[])),
            Just(entity_selectors(crate::api::Entity::Host)[0].clone()),
            Just(entity_selectors(crate::api::Entity::RemoteNode)[0].clone()),
            Just(entity_selectors(crate::api::Entity::World)[0].clone()),
            Just(Selector::new(vec![Requirement::label(
                LabelKey::new(Source::Any, "app"),
                Op::NotIn(vec!["a".into()])
            )])),
        ];
        prop_oneof![
            1 => Just(Peers::Nothing),
            2 => Just(Peers::Unrestricted),
            6 => proptest::collection::vec(sel, 1..3).prop_map(Peers::Selectors),
        ]
    }

    fn port_strategy() -> impl Strategy<Value = PortProto> {
        let proto = prop_oneof![
            Just(Protocol::Tcp),
            Just(Protocol::Udp),
            Just(Protocol::Icmp)
        ];
        let port = prop_oneof![
            Just(PortSpec::Range { start: 80, end: 80 }),
            Just(PortSpec::Range { start: 80, end: 83 }),
            Just(PortSpec::Range { start: 0, end: 0 }),
            Just(PortSpec::Range { start: 8, end: 8 }),
            Just(PortSpec::Range { start: 53, end: 53 }),
            Just(PortSpec::Named("http".into())),
        ];
        (proto, port).prop_map(|(protocol, port)| PortProto { protocol, port })
    }

    fn entry_strategy() -> impl Strategy<Value = PolicyEntry> {
        (
            prop_oneof![
                Just(Selector::wildcard()),
                (0..3usize).prop_map(|a| app_sel(a, None)),
                (0..3usize).prop_map(|a| app_sel(a, Some("x")))
            ],
            prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
            prop_oneof![3 => Just(RuleVerdict::Allow), 1 => Just(RuleVerdict::Deny)],
            peer_strategy(),
            proptest::collection::vec(port_strategy(), 0..3),
            prop_oneof![4 => Just(true), 1 => Just(false)],
            // `authentication.mode` (allow entries only): none mostly, each mode sometimes.
            prop_oneof![
                6 => Just(None),
                1 => Just(Some(crate::policy::AuthType::Disabled)),
                2 => Just(Some(crate::policy::AuthType::Spire)),
                1 => Just(Some(crate::policy::AuthType::AlwaysFail)),
            ],
        )
            .prop_map(
                |(subject, direction, verdict, peers, ports, default_deny, auth)| PolicyEntry {
                    subject,
                    direction,
                    verdict,
                    peers,
                    ports,
                    l7: vec![],
                    default_deny,
                    auth: auth.filter(|_| verdict == RuleVerdict::Allow),
                    node: false,
                    origin: RuleOrigin {
                        policy: PolicyRef {
                            kind: PolicyKind::CiliumNetworkPolicy,
                            namespace: Some("x".into()),
                            name: "p".into(),
                        },
                        rule: 0,
                        section: "ingress",
                        item: 0,
                        log: None,
                    },
                },
            )
    }

    /// Pods: (namespace, app, node, has named port http=8080 or 9090).
    fn pods_strategy() -> impl Strategy<Value = Vec<(usize, usize, usize, u8)>> {
        proptest::collection::vec((0..2usize, 0..3usize, 0..2usize, 0..3u8), 1..6)
    }

    fn build(pods: &[(usize, usize, usize, u8)]) -> Cluster {
        let mut c = cluster();
        for (i, (ns, app, node, port)) in pods.iter().enumerate() {
            let ports = match port {
                1 => vec![ContainerPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
                2 => vec![ContainerPort {
                    name: "http".into(),
                    port: 9090,
                    protocol: Protocol::Tcp,
                }],
                _ => vec![],
            };
            c.add_pod(PodSpec {
                service_account: None,
                name: format!("{}/p{i}", ["x", "y"][*ns]),
                node: Some(["node-1", "node-2"][*node].to_string()),
                ip: None,
                labels: [("app".to_string(), APPS[*app].to_string())].into(),
                ports,
            })
            .unwrap();
        }
        c
    }

    fn peers_of(c: &Cluster) -> Vec<Peer> {
        let mut out: Vec<Peer> = c.pods.keys().map(|p| Peer::Pod(p.clone())).collect();
        out.push(Peer::Host("node-1".into()));
        out.push(Peer::Host("node-2".into()));
        for ip in ["8.8.8.8", "8.8.4.4", "10.96.0.10", "10.96.1.1", "10.1.2.3"] {
            out.push(Peer::World(ip.parse().unwrap()));
        }
        out
    }

    fn flows(c: &Cluster) -> Vec<Flow> {
        let peers = peers_of(c);
        let mut out = Vec::new();
        for s in &peers {
            for d in &peers {
                if !matches!(s, Peer::Pod(_)) && !matches!(d, Peer::Pod(_)) {
                    continue;
                }
                for (protocol, dport) in [
                    (Protocol::Tcp, 80),
                    (Protocol::Tcp, 82),
                    (Protocol::Tcp, 8080),
                    (Protocol::Tcp, 9090),
                    (Protocol::Udp, 53),
                    (Protocol::Icmp, 8),
                    (Protocol::Icmp, 0),
                ] {
                    out.push(Flow {
                        src: s.clone(),
                        dst: d.clone(),
                        protocol,
                        dport,
                    });
                }
            }
        }
        out
    }

    fn check_all(m: &Model, c: &Cluster, r: &Repository) -> Result<(), TestCaseError> {
        for f in flows(c) {
            let got = m.decide(c, &f);
            let want = oracle::decide(c, r, &f).outcome();
            prop_assert_eq!(
                (got.allowed, got.reason, got.direction),
                (want.allowed, want.reason, want.direction),
                "flow {:?}\n{}",
                f,
                m.explain(c, &f)
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        // Model::decide agrees with the oracle on verdict, drop reason and direction, and an
        // incrementally maintained model equals a fresh one after policy and label changes.
        #[test]
        fn model_agrees_with_oracle(
            pods in pods_strategy(),
            policies in proptest::collection::vec(
                (0..3usize, proptest::collection::vec(entry_strategy(), 1..4)),
                1..4,
            ),
            relabel in (0..6usize, 0..3usize),
        ) {
            let mut c = build(&pods);
            // Some pairs of pods are mutually authenticated (for an hour), the others not,
            // so that both outcomes of an auth check are exercised.
            let names: Vec<PodName> = c.pods.keys().cloned().collect();
            for (i, a) in names.iter().enumerate() {
                for b in names.iter().skip(i + 1).step_by(2) {
                    let written = crate::auth::authentication_entries(&c, a, b).expect("pods");
                    c.auth.store(&written, 3_600_000_000_000);
                }
            }
            let mut r = Repository::default();
            let mut m = Model::new(&c, &r);
            for (i, (scope, entries)) in policies.iter().enumerate() {
                // A CNP of x, a CNP of y, or a CCNP.
                let key = PolicyRef {
                    kind: if *scope == 2 {
                        PolicyKind::CiliumClusterwideNetworkPolicy
                    } else {
                        PolicyKind::CiliumNetworkPolicy
                    },
                    namespace: ["x", "y"].get(*scope).map(|s| s.to_string()),
                    name: format!("p{i}"),
                };
                let entries: Vec<PolicyEntry> = entries
                    .iter()
                    .enumerate()
                    .map(|(j, e)| PolicyEntry {
                        origin: RuleOrigin { policy: key.clone(), item: j, ..e.origin.clone() },
                        ..e.clone()
                    })
                    .collect();
                r.apply(key.clone(), entries);
                m.policy_applied(&r, &key);
            }
            check_all(&m, &c, &r)?;
            // Relabel one pod, then delete the first policy.
            let name = c.pods.keys().nth(relabel.0 % c.pods.len()).cloned().expect("a pod");
            let ch = c
                .label_pod(&name.to_string(), &[("app".to_string(), APPS[relabel.1].to_string())].into(), &[])
                .expect("relabel");
            m.identities_changed(&c, &ch);
            m.pod_updated(&c, &name);
            check_all(&m, &c, &r)?;
            let first = r.policies().next().map(|(k, _)| k.clone()).expect("a policy");
            r.delete(&first);
            m.policy_deleted(&first);
            check_all(&m, &c, &r)?;
            if let Err(e) = same_as_fresh(&m, &c, &r) {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}

// ---- the LPM lookup against the simple model ------------------------------------------

mod lpm_equivalence {
    use super::*;
    use crate::abi::PRECEDENCE_ALLOW;
    use crate::mapstate::PRECEDENCE_ALLOW_LOWEST;
    use crate::portrange::port_range_to_masked_ports;
    use proptest::prelude::*;

    /// One policy filter: (remote identity or 0, protocol or none, port range, deny, low tier).
    type Filter = (u32, Option<Protocol>, (u16, u16), bool, bool);

    fn filter() -> impl Strategy<Value = Filter> {
        (
            prop_oneof![Just(0u32), Just(300), Just(301)],
            prop_oneof![
                Just(None),
                Just(Some(Protocol::Tcp)),
                Just(Some(Protocol::Udp))
            ],
            prop_oneof![
                Just((0u16, 0u16)),
                (78u16..86).prop_map(|p| (p, p)),
                (78u16..86, 78u16..90),
                Just((1024, 65535)),
            ],
            any::<bool>(),
            any::<bool>(),
        )
    }

    fn keys_of(f: &Filter) -> Vec<(Key, MapEntry)> {
        let (id, proto, (start, end), deny, low) = *f;
        let entry = if deny {
            MapEntry::deny()
        } else if low {
            MapEntry::allow(PRECEDENCE_ALLOW_LOWEST)
        } else {
            MapEntry::allow(PRECEDENCE_ALLOW)
        };
        match proto {
            None => vec![(Key::l3_only(Identity(id), Direction::Ingress), entry)],
            Some(p) => port_range_to_masked_ports(start, end)
                .into_iter()
                .map(|mp| {
                    (
                        Key::l4(Identity(id), Direction::Ingress, p, mp),
                        entry.clone(),
                    )
                })
                .collect(),
        }
    }

    fn matches(f: &Filter, remote: u32, proto: Protocol, port: u16) -> bool {
        let (id, p, (start, end), _, _) = *f;
        (id == 0 || id == remote)
            && match p {
                None => true,
                Some(p) => p == proto && (start == 0 || (port >= start && port <= end.max(start))),
            }
    }

    proptest! {
        // spec §4.3: with deny pruning, the datapath lookup (§5.2) over the LPM gives the simple
        // model's verdict — deny if any matching deny, else allow if any matching allow, else
        // DROP_POLICY — and insertion order does not matter.
        #[test]
        fn lpm_lookup_equals_simple_model(filters in proptest::collection::vec(filter(), 0..8)) {
            let mut forward = MapState::new();
            for f in &filters {
                for (k, e) in keys_of(f) {
                    forward.insert(k, e);
                }
            }
            let mut backward = MapState::new();
            for f in filters.iter().rev() {
                for (k, e) in keys_of(f).into_iter().rev() {
                    backward.insert(k, e);
                }
            }
            prop_assert_eq!(
                forward.iter().map(|(k, e)| (*k, e.deny, e.precedence)).collect::<Vec<_>>(),
                backward.iter().map(|(k, e)| (*k, e.deny, e.precedence)).collect::<Vec<_>>()
            );
            let mut pm = PolicyMap::default();
            pm.write_all(7, &forward);
            for remote in [300u32, 301, 302] {
                for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Icmp] {
                    for port in [0u16, 77, 78, 79, 80, 81, 83, 84, 85, 89, 1024, 40000] {
                        let deny = filters.iter().any(|f| f.3 && matches(f, remote, proto, port));
                        let allow = filters.iter().any(|f| !f.3 && matches(f, remote, proto, port));
                        let want = if deny {
                            (false, Some(DropReason::PolicyDeny))
                        } else if allow {
                            (true, None)
                        } else {
                            (false, Some(DropReason::PolicyDenied))
                        };
                        let lk = pm.lookup(7, Direction::Ingress, Identity(remote), proto, port);
                        let (allowed, reason, _) = lk.verdict();
                        prop_assert_eq!((allowed, reason), want, "{} {}/{}: {:?}", remote, proto, port, lk);
                        // Another endpoint's slice is never consulted.
                        prop_assert_eq!(pm.lookup(8, Direction::Ingress, Identity(remote), proto, port).chosen, None);
                    }
                }
            }
        }
    }
}

#[test]
fn explain_prints_lookups_and_rules() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: '80', protocol: TCP}]}]
",
    );
    let m = Model::new(&c, &r);
    let text = m.explain(&c, &flow(&c, "x/b", "x/a", TCP, 80)).to_string();
    println!("{text}");
    assert!(text.contains("egress on x/b (endpoint 2, policy not enabled)"));
    assert!(text.contains("the L3 lookup found a deny: returned at once"));
    assert!(text.contains("from CiliumNetworkPolicy x/p rule 0 ingressDeny[0]"));
    assert!(text.contains("=> deny POLICY_DENY ingress match=L3-L4"));
    let rows = MapStateRow::table(&m.rows(&pod("x/a")).unwrap(), false);
    println!("{rows}");
    assert!(rows.contains("Deny"));
}

// ---- L7 redirects (issue 10) ------------------------------------------------------------

const HTTP_INGRESS: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: a}}]
    toPorts:
    - ports: [{port: '80', protocol: TCP}]
      rules:
        http: [{method: GET, path: /v1}]
";

/// Both the oracle and the model: (allowed, the proxy port of either side). An egress
/// redirect stops at the source's proxy; the upstream outcome is compared too.
fn redirect_of(
    m: &Model,
    c: &Cluster,
    r: &Repository,
    from: &str,
    to: &str,
    proto: Protocol,
    port: u16,
) -> (bool, Option<u16>) {
    let got = decide(m, c, r, from, to, proto, port);
    let f = flow(c, from, to, proto, port);
    let d = oracle::decide(c, r, &f);
    assert_eq!(
        got.redirect,
        d.outcome().redirect,
        "{from} -> {to} {proto}/{port}"
    );
    let (up, want_up) = (m.decide_upstream(c, &f), d.upstream_outcome());
    assert_eq!(
        (up.allowed, up.reason, up.direction, up.redirect),
        (
            want_up.allowed,
            want_up.reason,
            want_up.direction,
            want_up.redirect
        )
    );
    (got.allowed, got.redirect.egress.or(got.redirect.ingress))
}

/// An HTTP rule (Documentation/security/policy/language.rst, "Layer 7 Examples") puts the
/// `cilium-http-ingress` proxy port in the entry (`L4Filter.makeMapStateEntry`
/// `LookupRedirectPort`) with a redirect precedence (`ToPrecedenceWithListenerPriority`,
/// HTTP listener priority 101: low byte 0x9a); other ports stay denied.
#[test]
fn l7_http_rule_redirects_to_the_ingress_http_proxy() {
    let c = standard_cluster();
    let r = repo(HTTP_INGRESS);
    let m = Model::new(&c, &r);
    let p = crate::proxy::ProxyPorts::port(crate::policy::L7Parser::Http, Direction::Ingress);
    assert_eq!(
        redirect_of(&m, &c, &r, "x/a", "x/b", Protocol::Tcp, 80),
        (true, Some(p))
    );
    assert_eq!(
        redirect_of(&m, &c, &r, "x/a", "x/b", Protocol::Tcp, 81),
        (false, None)
    );
    assert_eq!(
        redirect_of(&m, &c, &r, "x/c", "x/b", Protocol::Tcp, 80),
        (false, None)
    );
    let key = l4(id_of(&c, "x/a"), Direction::Ingress, Protocol::Tcp, 80, 16);
    let e = m
        .endpoint(&pod("x/b"))
        .unwrap()
        .map
        .get(&key)
        .cloned()
        .unwrap();
    assert_eq!((e.proxy_port, e.precedence), (p, 0xFFFF_FF9A));
    let rows = m.rows(&pod("x/b")).unwrap();
    assert!(
        rows.iter().any(|row| row.proxy_port == p),
        "policy get shows the proxy port"
    );
}

/// `mergePortProto` (pkg/policy/rule.go): an L4-only allow for the same peer and port is
/// merged into the L7 selector as the wildcard rule, so traffic is still redirected (and the
/// proxy then passes everything); a wildcard-peer L4-only rule beside a specific L7 rule
/// leaves the other peers unredirected, as their key has no L7 rule at all.
#[test]
fn l7_l4_only_rule_on_the_same_port_keeps_the_redirect() {
    let c = standard_cluster();
    let r = repo(&format!(
        "{HTTP_INGRESS}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: l4, namespace: x}}
spec:
  endpointSelector: {{matchLabels: {{app: b}}}}
  ingress:
  - toPorts: [{{ports: [{{port: '80', protocol: TCP}}]}}]
"
    ));
    let m = Model::new(&c, &r);
    let p = crate::proxy::ProxyPorts::port(crate::policy::L7Parser::Http, Direction::Ingress);
    assert_eq!(
        redirect_of(&m, &c, &r, "x/a", "x/b", Protocol::Tcp, 80),
        (true, Some(p))
    );
    assert_eq!(
        redirect_of(&m, &c, &r, "x/c", "x/b", Protocol::Tcp, 80),
        (true, None)
    );
    let d = oracle::decide(&c, &r, &flow(&c, "x/a", "x/b", Protocol::Tcp, 80));
    let (_, _, rules) = d.redirect().expect("redirected");
    // The proxy holds the L7 rule and the L4-only rule (allow-all) for x/a.
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().any(|r| r.l7.is_none()));
}

/// A deny on the port beats the L7 allow: dropped before any proxy (spec §4.3 deny
/// precedence; Documentation/security/policy/language.rst "Deny Policies").
#[test]
fn l7_deny_beats_the_l7_allow() {
    let c = standard_cluster();
    let r = repo(&format!(
        "{HTTP_INGRESS}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: deny, namespace: x}}
spec:
  endpointSelector: {{matchLabels: {{app: b}}}}
  ingressDeny:
  - fromEndpoints: [{{matchLabels: {{app: a}}}}]
    toPorts: [{{ports: [{{port: '80', protocol: TCP}}]}}]
"
    ));
    let m = Model::new(&c, &r);
    assert_eq!(
        redirect_of(&m, &c, &r, "x/a", "x/b", Protocol::Tcp, 80),
        (false, None)
    );
}

/// DNS rules (Documentation/security/dns.rst): egress to kube-dns on 53/ANY redirects UDP
/// and TCP to the DNS proxy (`cilium-dns-egress`, listener priority 121: low byte 0x86).
#[test]
fn l7_dns_rule_redirects_udp_and_tcp_to_the_dns_proxy() {
    let c = standard_cluster();
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
    toPorts:
    - ports: [{port: '53', protocol: ANY}]
      rules:
        dns: [{matchPattern: '*'}]
",
    );
    let m = Model::new(&c, &r);
    let p = crate::proxy::ProxyPorts::port(crate::policy::L7Parser::Dns, Direction::Egress);
    for proto in [Protocol::Udp, Protocol::Tcp] {
        assert_eq!(
            redirect_of(&m, &c, &r, "x/a", "kube-system/coredns", proto, 53),
            (true, Some(p))
        );
    }
    let key = l4(
        id_of(&c, "kube-system/coredns"),
        Direction::Egress,
        Protocol::Udp,
        53,
        16,
    );
    let e = m
        .endpoint(&pod("x/a"))
        .unwrap()
        .map
        .get(&key)
        .cloned()
        .unwrap();
    assert_eq!(e.precedence, 0xFFFF_FF86);
}

// ---- host firewall and node-label identities ------------------------------------------

/// node-1 labelled node-access=ssh, node-2 role=db; x/a on node-1 (10.0.1.10), x/b on node-2
/// (10.0.2.10); the agent options as given.
fn host_cluster(agent: crate::cluster::AgentConfig) -> Cluster {
    let mut c = cluster();
    c.set_node_labels("node-1", &[("node-access".into(), "ssh".into())].into())
        .unwrap();
    c.set_node_labels("node-2", &[("role".into(), "db".into())].into())
        .unwrap();
    c.set_agent(agent);
    add_pod(&mut c, "x/a", "10.0.1.10", &[("app", "a")], &[]);
    c.add_pod(PodSpec {
        service_account: None,
        name: "x/b".into(),
        node: Some("node-2".into()),
        ip: Some("10.0.2.10".parse().unwrap()),
        labels: [("app".to_string(), "b".to_string())].into(),
        ports: vec![],
    })
    .unwrap();
    c
}

const DEMO_HOST_POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: demo-host-policy}
spec:
  nodeSelector: {matchLabels: {node-access: ssh}}
  ingress:
  - fromEntities: [cluster]
  - toPorts: [{ports: [{port: '22', protocol: TCP}]}]
";

/// examples/policies/host/demo-host-policy.yaml with `--enable-host-firewall`: the selected
/// node's host endpoint enforces ingress (world only on 22/TCP, the cluster on every port)
/// with no localhost allow (`pkg/policy/repository.go`); the other node is not selected.
#[test]
fn host_firewall_demo_policy() {
    let c = host_cluster(crate::cluster::AgentConfig {
        host_firewall: true,
        node_selector_labels: false,
    });
    let r = repo(DEMO_HOST_POLICY);
    let m = Model::new(&c, &r);
    let h = m.host_endpoint("node-1").expect("host endpoint");
    assert_eq!((h.ingress.enabled, h.egress.enabled), (true, false));
    assert!(h
        .map
        .iter()
        .all(|(_, e)| !e.synthetic.contains(&Synthetic::AllowLocalHost)));
    assert!(!m.host_endpoint("node-2").unwrap().ingress.enabled);
    let tcp = Protocol::Tcp;
    let d = |from: &str, to: &str, port| decide(&m, &c, &r, from, to, tcp, port);
    assert!(d("1.1.1.1", "host:node-1", 22).allowed);
    assert_eq!(
        d("1.1.1.1", "host:node-1", 21).reason,
        Some(DropReason::PolicyDenied)
    );
    assert!(d("x/a", "host:node-1", 10250).allowed);
    assert!(d("x/b", "host:node-1", 10250).allowed);
    assert!(d("host:node-2", "host:node-1", 2379).allowed);
    assert!(d("1.1.1.1", "host:node-2", 21).allowed);
    assert!(d("host:node-1", "1.1.1.1", 443).allowed);
    // Pods are no subjects of the host policy.
    assert!(d("1.1.1.1", "x/a", 21).allowed);
}

/// The host firewall off (Cilium's default): the same policy is accepted and enforces
/// nothing.
#[test]
fn host_policy_without_host_firewall_enforces_nothing() {
    let c = host_cluster(crate::cluster::AgentConfig::default());
    let r = repo(DEMO_HOST_POLICY);
    let m = Model::new(&c, &r);
    assert!(m.host_endpoint("node-1").is_none());
    let o = decide(&m, &c, &r, "1.1.1.1", "host:node-1", Protocol::Tcp, 21);
    assert!(o.allowed);
}

/// `--enable-node-selector-labels`: remote nodes get identities from the remote-node scope
/// with `reserved:remote-node`, `node:` labels and the cluster label (`nodeIdentityLabels`),
/// which `fromNodes` selects (`parseToCiliumIngressCommonRule` adds `reserved:remote-node
/// Exists` and the cluster filter); the local host stays identity 1.
#[test]
fn from_nodes_selects_remote_node_identities_by_label() {
    let c = host_cluster(crate::cluster::AgentConfig {
        host_firewall: false,
        node_selector_labels: true,
    });
    let n2 = c.node("node-2").unwrap().remote_identity;
    assert_eq!(n2.0 & 0xFF00_0000, Identity::REMOTE_NODE_SCOPE);
    let labels = c.identities.labels(n2).unwrap().to_string();
    assert!(labels.contains("node:role=db"), "{labels}");
    assert!(labels.contains("reserved:remote-node"), "{labels}");
    let r = repo(
        "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromNodes: [{matchLabels: {role: db}}]
",
    );
    let m = Model::new(&c, &r);
    let tcp = Protocol::Tcp;
    assert!(decide(&m, &c, &r, "host:node-2", "x/a", tcp, 80).allowed);
    // The local host is allowed by allow-localhost, not by fromNodes.
    assert!(decide(&m, &c, &r, "host:node-1", "x/a", tcp, 80).allowed);
    assert!(!decide(&m, &c, &r, "x/b", "x/a", tcp, 80).allowed);
    assert!(!decide(&m, &c, &r, "1.1.1.1", "x/a", tcp, 80).allowed);
}
