//! Tests of the policy API layer: upstream examples parse, every validation error names the
//! right line and field, and no input panics.

use super::*;
use proptest::prelude::*;
use std::path::Path;

fn parse(yaml: &str) -> Result<Vec<Manifest>, ManifestError> {
    parse_manifests(Path::new("test.yaml"), yaml)
}

fn parse_ok(yaml: &str) -> Vec<Manifest> {
    match parse(yaml) {
        Ok(m) => m,
        Err(e) => panic!("expected success, got: {e}"),
    }
}

fn one(yaml: &str) -> Manifest {
    let mut all = parse_ok(yaml);
    assert_eq!(all.len(), 1, "expected one manifest");
    all.remove(0)
}

fn cnp_rule(yaml: &str) -> Rule {
    match one(yaml) {
        Manifest::CiliumNetworkPolicy(p) => p.spec.expect("spec"),
        Manifest::CiliumClusterwideNetworkPolicy(p) => p.spec.expect("spec"),
        other => panic!("not a Cilium policy: {other:?}"),
    }
}

/// The 1-based line of the (only) line holding the marker `#!`.
fn marked_line(yaml: &str) -> usize {
    let lines: Vec<usize> = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("#!"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "mark exactly one line with #!");
    lines[0]
}

/// Asserts that `yaml` fails on the line marked `#!`, at `field`, with a message containing
/// `message`.
fn assert_err(yaml: &str, field: &str, message: &str) -> ManifestError {
    let e = match parse(yaml) {
        Ok(m) => panic!("expected an error about {field}, parsed {m:?}"),
        Err(e) => e,
    };
    assert_eq!(e.line, Some(marked_line(yaml)), "line of: {e}");
    assert_eq!(e.field, field, "field of: {e}");
    assert!(
        e.message.contains(message),
        "message of: {e}\nexpected to contain: {message}"
    );
    e
}

const CNP_HEAD: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: x\nspec:\n  endpointSelector: {}\n";

/// A CiliumNetworkPolicy whose `spec` continues with `rest` (indented by two spaces).
fn cnp(rest: &str) -> String {
    format!("{CNP_HEAD}{rest}")
}

const KNP_HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  podSelector: {}\n";

fn knp(rest: &str) -> String {
    format!("{KNP_HEAD}{rest}")
}

// ---------------------------------------------------------------------------------------
// Upstream examples
// ---------------------------------------------------------------------------------------

/// kubernetes.io/docs/concepts/services-networking/network-policies/ "test-network-policy".
#[test]
fn k8s_docs_test_network_policy() {
    let m = one(r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
"#);
    assert_eq!(m.kind(), "NetworkPolicy");
    assert_eq!(m.name(), "test-network-policy");
    assert_eq!(m.namespace(), Some("default"));
    let Manifest::NetworkPolicy(np) = m else {
        panic!("kind")
    };
    let spec = &np.spec;
    assert_eq!(spec.pod_selector.match_labels["role"], "db");
    assert_eq!(
        spec.policy_types,
        Some(vec![PolicyType::Ingress, PolicyType::Egress])
    );
    let from = &spec.ingress[0].from;
    assert_eq!(from.len(), 3);
    let block = from[0].ip_block.as_ref().expect("ipBlock");
    assert_eq!(block.cidr.to_string(), "172.17.0.0/16");
    assert_eq!(block.except[0].to_string(), "172.17.1.0/24");
    assert!(from[1].namespace_selector.is_some() && from[1].pod_selector.is_none());
    assert_eq!(
        spec.ingress[0].ports,
        vec![NetworkPolicyPort {
            protocol: KnpProtocol::Tcp,
            port: Some(Port::Number(6379)),
            end_port: None
        }]
    );
    assert_eq!(spec.egress[0].ports[0].port, Some(Port::Number(5978)));
}

/// Kubernetes docs: "Targeting a range of ports" (endPort) and "Default deny all ingress".
#[test]
fn k8s_docs_end_port_and_default_deny() {
    let all = parse_ok(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: multi-port-egress
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Egress
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 32000
          endPort: 32768
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
  policyTypes:
  - Ingress
"#,
    );
    assert_eq!(all.len(), 2);
    let Manifest::NetworkPolicy(np) = &all[0] else {
        panic!("kind")
    };
    assert_eq!(np.spec.egress[0].ports[0].end_port, Some(32768));
    let Manifest::NetworkPolicy(deny) = &all[1] else {
        panic!("kind")
    };
    assert!(deny.spec.pod_selector.is_empty());
    assert!(deny.spec.ingress.is_empty());
    assert_eq!(all[1].namespace(), Some("default"));
}

/// docs.cilium.io "Layer 3 examples": endpoints-based `l3-rule`, plus the namespace and
/// matchExpressions variants.
#[test]
fn cilium_docs_l3_endpoints() {
    let rule = cnp_rule(
        r#"
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "l3-rule"
spec:
  endpointSelector:
    matchLabels:
      role: backend
  ingress:
  - fromEndpoints:
    - matchLabels:
        role: frontend
    - matchLabels:
        k8s:io.kubernetes.pod.namespace: ns2
    - matchExpressions:
      - key: role
        operator: NotIn
        values:
        - production
"#,
    );
    assert_eq!(rule.endpoint_selector.match_labels["role"], "backend");
    let eps = rule.ingress[0]
        .from_endpoints
        .as_ref()
        .expect("fromEndpoints");
    assert_eq!(eps.len(), 3);
    assert_eq!(
        eps[1].match_labels["k8s:io.kubernetes.pod.namespace"],
        "ns2"
    );
    assert_eq!(eps[2].match_expressions[0].operator, Operator::NotIn);
    assert_eq!(eps[2].to_string(), "{role NotIn (production)}");
    assert!(rule.ingress[0].from_cidr.is_none());
}

/// docs.cilium.io "IP/CIDR based": `cidr-rule` with toCIDR and toCIDRSet/except.
#[test]
fn cilium_docs_l3_cidr() {
    let rule = cnp_rule(
        r#"
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "cidr-rule"
spec:
  endpointSelector:
    matchLabels:
      app: myService
  egress:
  - toCIDR:
    - 20.1.1.1/32
  - toCIDRSet:
    - cidr: 10.0.0.0/8
      except:
      - 10.96.0.0/12
"#,
    );
    assert_eq!(
        rule.egress[0].to_cidr.as_ref().expect("toCIDR")[0].to_string(),
        "20.1.1.1/32"
    );
    let set = &rule.egress[1].to_cidr_set.as_ref().expect("toCIDRSet")[0];
    assert_eq!(set.to_string(), "10.0.0.0/8 except 10.96.0.0/12");
}

/// docs.cilium.io "Entities based": `dev-to-host`, and the deny example `external-lockdown`
/// (a CCNP with ingressDeny from world).
#[test]
fn cilium_docs_entities_and_deny() {
    let rule = cnp_rule(
        r#"
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "dev-to-host"
spec:
  endpointSelector:
    matchLabels:
      env: dev
  egress:
    - toEntities:
      - host
"#,
    );
    assert_eq!(rule.egress[0].to_entities, Some(vec![Entity::Host]));

    let m = one(r#"
apiVersion: "cilium.io/v2"
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: "external-lockdown"
spec:
  endpointSelector: {}
  ingressDeny:
  - fromEntities:
    - "world"
  ingress:
  - fromEntities:
    - "all"
"#);
    assert_eq!(m.namespace(), None);
    assert_eq!(m.kind(), "CiliumClusterwideNetworkPolicy");
    let Manifest::CiliumClusterwideNetworkPolicy(p) = m else {
        panic!("kind")
    };
    let rule = p.spec.expect("spec");
    assert_eq!(
        rule.ingress_deny[0].from_entities,
        Some(vec![Entity::World])
    );
    assert_eq!(rule.ingress[0].from_entities, Some(vec![Entity::All]));
}

/// docs.cilium.io "Layer 4 examples": `l4-rule`, port ranges, and the ICMP example
/// (`icmp-rule`, numeric and named types).
#[test]
fn cilium_docs_l4_ports_and_icmp() {
    let rule = cnp_rule(
        r#"
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "l4-rule"
spec:
  endpointSelector:
    matchLabels:
      app: myService
  egress:
    - toPorts:
      - ports:
        - port: "80"
          protocol: TCP
        - port: "8080"
          endPort: 8090
        - port: Http-Alt
          protocol: UDP
"#,
    );
    let ports = &rule.egress[0].to_ports[0].ports;
    assert_eq!(ports[0].to_string(), "80/TCP");
    assert_eq!(ports[1].to_string(), "8080-8090/ANY");
    assert_eq!(ports[2].port, Port::Name("http-alt".into()));
    assert_eq!(ports[2].protocol, Protocol::Udp);

    let rule = cnp_rule(
        r#"
apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "icmp-rule"
spec:
  endpointSelector:
    matchLabels:
      app: myService
  egress:
  - icmps:
    - fields:
      - type: 8
        family: IPv4
      - type: EchoRequest
        family: IPv6
      - type: EchoReply
"#,
    );
    let fields = &rule.egress[0].icmps[0].fields;
    assert_eq!(
        fields,
        &vec![
            IcmpField {
                family: IcmpFamily::IPv4,
                icmp_type: 8
            },
            IcmpField {
                family: IcmpFamily::IPv6,
                icmp_type: 128
            },
            IcmpField {
                family: IcmpFamily::IPv4,
                icmp_type: 0
            },
        ]
    );
}

/// Deny rules with ports (docs.cilium.io "Deny policies"), `specs`, labels, description,
/// enableDefaultDeny and log.
#[test]
fn cilium_specs_deny_ports_and_rule_metadata() {
    let m = one(r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: multi
specs:
- description: "deny port 22 from everywhere"
  endpointSelector:
    matchLabels:
      app: web
  labels:
  - "k8s:team=blue"
  - key: owner
    value: alice
  enableDefaultDeny:
    ingress: false
  log:
    value: deny-ssh
  ingressDeny:
  - fromEntities: [all]
    toPorts:
    - ports:
      - port: "22"
        protocol: TCP
- endpointSelector: {}
  egressDeny:
  - toCIDR: [192.168.1.7, "2001:db8::1"]
  ingress:
  - {}
"#);
    let Manifest::CiliumNetworkPolicy(p) = &m else {
        panic!("kind")
    };
    let rules: Vec<&Rule> = p.rules().collect();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].labels[0].to_string(), "k8s:team=blue");
    assert_eq!(rules[0].labels[1].to_string(), "unspec:owner=alice");
    assert_eq!(rules[0].enable_default_deny.ingress, Some(false));
    assert_eq!(rules[0].enable_default_deny.egress, None);
    assert_eq!(
        rules[0].log.as_ref().map(|l| l.value.as_str()),
        Some("deny-ssh")
    );
    assert_eq!(
        rules[0].ingress_deny[0].to_ports[0].ports[0].to_string(),
        "22/TCP"
    );
    let cidrs = rules[1].egress_deny[0].to_cidr.as_ref().expect("toCIDR");
    assert_eq!(cidrs[0].to_string(), "192.168.1.7/32");
    assert_eq!(cidrs[1].to_string(), "2001:db8::1/128");
    assert_eq!(rules[1].ingress, vec![IngressRule::default()]);
    assert_eq!(m.namespace(), Some("default"));
}

#[test]
fn absent_and_empty_peer_lists_differ() {
    let rule = cnp_rule(&cnp("  ingress:\n  - fromEndpoints: []\n  - toPorts: []\n"));
    assert_eq!(rule.ingress[0].from_endpoints, Some(vec![]));
    assert_eq!(rule.ingress[1].from_endpoints, None);
}

#[test]
fn cidr_host_bits_are_masked_and_cilium_keys_accepted() {
    let rule = cnp_rule(&cnp(
        "  ingress:\n  - fromCIDR: [10.1.2.3/8]\n  - fromEndpoints:\n    - matchLabels: {\"reserved:host\": \"\", \"any:app.kubernetes.io/name\": web}\n",
    ));
    assert_eq!(
        rule.ingress[0].from_cidr.as_ref().expect("cidr")[0].to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        rule.ingress[1].from_endpoints.as_ref().expect("eps")[0]
            .match_labels
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------
// Manifest-level errors
// ---------------------------------------------------------------------------------------

#[test]
fn other_kinds_are_skipped_and_counted() {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{}}\n---\n{CNP_HEAD}  ingress: [{{}}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: c}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: t}}\n"
    );
    let f = parse_manifest_file(Path::new("t.yaml"), &text).unwrap();
    assert_eq!(f.manifests.len(), 1);
    assert_eq!(
        f.skipped.to_string(),
        "4 objects that are not policies: 1 Deployment, 1 NetworkPolicy (projectcalico.org/v3), 2 Service"
    );
    // A document without a kind, or that is not a mapping, is still an error.
    assert_err(
        "apiVersion: v1 #!\nmetadata: {name: s}\n",
        "",
        "kind not set",
    );
    assert_err("- a #!\n- b\n", "", "must be a mapping");
    assert_err(
        "apiVersion: v1\nkind: [List] #!\n",
        "kind",
        "cannot unmarshal array",
    );
}

#[test]
fn wrong_api_version_either_order() {
    assert_err(
        "apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy #!\nmetadata: {name: p}\n",
        "kind",
        "apiVersion \"cilium.io/v1\" does not serve kind CiliumNetworkPolicy: expected cilium.io/v2",
    );
    assert_err(
        "kind: NetworkPolicy\napiVersion: cilium.io/v2 #!\nmetadata: {name: p}\n",
        "apiVersion",
        "expected networking.k8s.io/v1",
    );
}

#[test]
fn spec_before_kind() {
    // kubectl takes any key order; Cilium's connectivity-check files put apiVersion and kind
    // last. The rule is still validated (its error names the kind's rules).
    assert_err(
        "apiVersion: cilium.io/v2\nspec:\n  endpointSelector: {} #!\nkind: CiliumNetworkPolicy\n",
        "spec",
        "rule must have at least one of Ingress",
    );
    let m = one("metadata: {name: p}\nspec:\n  endpointSelector: {}\n  egress: [{}]\nkind: CiliumNetworkPolicy\napiVersion: cilium.io/v2\n");
    assert_eq!(m.kind(), "CiliumNetworkPolicy");
}

#[test]
fn cnp_without_spec_or_specs() {
    assert_err(
        "apiVersion: cilium.io/v2 #!\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n",
        "",
        "empty policy",
    );
}

#[test]
fn knp_has_no_specs() {
    assert_err(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspecs: [] #!\n",
        "specs",
        "unknown field `specs`",
    );
}

#[test]
fn missing_and_invalid_metadata() {
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  namespace: x #!\nspec: {}\n",
        "metadata",
        "missing field `name`",
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: Bad_Name #!\nspec: {}\n",
        "metadata",
        "invalid name \"Bad_Name\"",
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  generatedName: q #!\nspec: {}\n",
        "metadata.generatedName",
        "unknown field `generatedName`",
    );
}

/// A top-level `description`, as some of Cilium's example files have it (outside `spec`), is
/// accepted and ignored on the Cilium kinds, and stays an unknown field on a KNP.
#[test]
fn top_level_description_on_cilium_kinds() {
    let with = parse_ok(&format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\ndescription: \"from the docs\"\n{}  ingress: [{{}}]\n",
        &CNP_HEAD["apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n".len()..]
    ));
    let without = parse_ok(&format!("{CNP_HEAD}  ingress: [{{}}]\n"));
    assert_eq!(format!("{with:?}"), format!("{without:?}"));
    assert_err(
        &format!("{}description: x #!\n", knp("  policyTypes: [Ingress]\n")),
        "description",
        "unknown field `description`",
    );
    assert_err(
        &format!("{CNP_HEAD}  ingress: [{{}}]\ndescription: [not, a, string] #!\n"),
        "description",
        "Invalid value: \"array\": must be of type string",
    );
}

/// Every `ObjectMeta` field (apimachinery `pkg/apis/meta/v1/types.go`) loads, as
/// `kubectl get -o yaml --show-managed-fields` prints them; the server-set ones are ignored.
#[test]
fn server_set_metadata_is_accepted_and_ignored() {
    let full = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  \
        generateName: p-\n  selfLink: /apis/x\n  uid: 0d1e\n  \
        resourceVersion: \"55\"\n  generation: 2\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n  \
        deletionTimestamp: \"2024-01-02T00:00:00Z\"\n  deletionGracePeriodSeconds: 30\n  \
        ownerReferences: [{apiVersion: v1, kind: Namespace, name: x, uid: 1}]\n  \
        finalizers: [example.com/f]\n  managedFields: [{manager: kubectl, operation: Update}]\n\
        spec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    let plain = knp("  policyTypes: [Ingress]\n");
    let (a, b) = (parse_ok(full), parse_ok(&plain));
    assert_eq!(a.len(), 1);
    // Same policy either way (the metadata keeps uid etc., the rules are identical).
    assert_eq!(
        format!("{:?}", crate::translate::translate(&a[0])),
        format!("{:?}", crate::translate::translate(&b[0]))
    );
}

#[test]
fn unknown_top_level_field() {
    assert_err(
        &format!("{CNP_HEAD}  ingress: [{{}}]\nstatuz: {{}} #!\n"),
        "statuz",
        "unknown field `statuz`",
    );
}

/// `status` is in every kind's schema and written by the cluster: Cilium declares
/// `Status CiliumNetworkPolicyStatus `json:"status"`` without omitempty
/// (`pkg/k8s/apis/cilium.io/v2/cnp_types.go`), so serialized CNPs always carry it, and
/// networking.k8s.io/v1 NetworkPolicy had one in Kubernetes 1.24-1.26. Accepted and ignored.
#[test]
fn status_is_accepted_and_ignored() {
    let with = parse_ok(&format!(
        "{CNP_HEAD}  ingress: [{{}}]\nstatus:\n  nodes:\n    node-1: {{ok: true, enforcing: true}}\n"
    ));
    let without = parse_ok(&format!("{CNP_HEAD}  ingress: [{{}}]\n"));
    assert_eq!(format!("{with:?}"), format!("{without:?}"));
    let knp_with = parse_ok(&knp("  policyTypes: [Ingress]\nstatus: {}\n"));
    let knp_without = parse_ok(&knp("  policyTypes: [Ingress]\n"));
    assert_eq!(format!("{knp_with:?}"), format!("{knp_without:?}"));
    assert_err(
        &format!("{CNP_HEAD}  ingress: [{{}}]\nstatus: {{}}\nstatus: {{}} #!\n"),
        "status",
        "duplicate key \"status\"",
    );
}

// ---------------------------------------------------------------------------------------
// CiliumNetworkPolicy rule validation
// ---------------------------------------------------------------------------------------

#[test]
fn rule_needs_endpoint_selector() {
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  ingress: [{}] #!\n",
        "spec",
        "rule must have one of EndpointSelector or NodeSelector",
    );
}

#[test]
fn rule_needs_a_direction() {
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {} #!\n  ingress: []\n",
        "spec",
        "rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny",
    );
}

#[test]
fn combining_peer_kinds() {
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints: [{}] #!\n    fromCIDR: [10.0.0.0/8]\n"),
        "spec.ingress[0]",
        "Combining FromEndpoints and FromCIDR is not supported yet",
    );
    assert_err(
        &cnp("  egressDeny:\n  - toEntities: [world] #!\n    toCIDRSet: [{cidr: 10.0.0.0/8}]\n"),
        "spec.egressDeny[0]",
        "Combining ToCIDRSet and ToEntities is not supported yet",
    );
}

#[test]
fn icmps_with_to_ports() {
    assert_err(
        &cnp("  egress:\n  - toPorts: [{ports: [{port: \"80\"}]}] #!\n    icmps: [{fields: [{type: 8}]}]\n"),
        "spec.egress[0]",
        "The ICMPs block may only be present without ToPorts",
    );
}

#[test]
fn too_many_ports_and_icmp_fields() {
    let ports: Vec<String> = (1..=41).map(|p| format!("{{port: \"{p}\"}}")).collect();
    assert_err(
        &cnp(&format!(
            "  ingress:\n  - toPorts:\n    - ports: [{}] #!\n",
            ports.join(", ")
        )),
        "spec.ingress[0].toPorts[0]",
        "too many ports, the max is 40",
    );
    let fields: Vec<String> = (0..41).map(|t| format!("{{type: {t}}}")).collect();
    assert_err(
        &cnp(&format!(
            "  ingress:\n  - icmps:\n    - fields: [{}] #!\n",
            fields.join(", ")
        )),
        "spec.ingress[0].icmps[0]",
        "too many types, the max is 40",
    );
    // Exactly 40 is fine.
    let ports: Vec<String> = (1..=40).map(|p| format!("{{port: \"{p}\"}}")).collect();
    parse_ok(&cnp(&format!(
        "  ingress:\n  - toPorts:\n    - ports: [{}]\n",
        ports.join(", ")
    )));
}

#[test]
fn unknown_entity() {
    assert_err(
        &cnp("  egress:\n  - toEntities:\n    - host\n    - world-ipv4 #!\n"),
        "spec.egress[0].toEntities[1]",
        "unsupported entity: world-ipv4",
    );
}

#[test]
fn port_out_of_range() {
    assert_err(
        &cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"70000\" #!\n"),
        "spec.ingress[0].toPorts[0].ports[0].port",
        "invalid port \"70000\"",
    );
}

#[test]
fn end_port_below_port() {
    assert_err(
        &cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"80\" #!\n        endPort: 79\n"),
        "spec.ingress[0].toPorts[0].ports[0]",
        "endPort 79 must be greater than or equal to port 80",
    );
}

#[test]
fn end_port_with_named_port() {
    assert_err(
        &cnp(
            "  ingress:\n  - toPorts:\n    - ports:\n      - port: http #!\n        endPort: 90\n",
        ),
        "spec.ingress[0].toPorts[0].ports[0]",
        "cannot be used with the named port \"http\"",
    );
}

#[test]
fn icmp_as_to_ports_protocol() {
    assert_err(
        &cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"0\"\n        protocol: ICMP #!\n"),
        "spec.ingress[0].toPorts[0].ports[0].protocol",
        "use icmps",
    );
}

#[test]
fn bad_protocol_spelling() {
    assert_err(
        &cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: tcp #!\n"),
        "spec.ingress[0].toPorts[0].ports[0].protocol",
        "unsupported protocol \"tcp\"",
    );
}

#[test]
fn extended_protocol_not_supported() {
    assert_err(
        &cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"0\"\n        protocol: VRRP #!\n"),
        "spec.ingress[0].toPorts[0].ports[0].protocol",
        "not supported yet: protocol VRRP",
    );
}

#[test]
fn bad_cidrs() {
    assert_err(
        &cnp("  egress:\n  - toCIDR:\n    - 10.0.0.300/8 #!\n"),
        "spec.egress[0].toCIDR[0]",
        "unable to parse CIDR \"10.0.0.300/8\"",
    );
    assert_err(
        &cnp("  egress:\n  - toCIDRSet:\n    - cidr: 10.0.0.1 #!\n"),
        "spec.egress[0].toCIDRSet[0].cidr",
        "expected an address with a prefix length",
    );
    assert_err(
        &cnp("  egress:\n  - toCIDRSet:\n    - cidr: 10.0.0.0/8 #!\n      except: [192.168.0.0/16]\n"),
        "spec.egress[0].toCIDRSet[0]",
        "allow CIDR prefix 10.0.0.0/8 does not contain exclude CIDR prefix 192.168.0.0/16",
    );
}

#[test]
fn bad_selector_operator() {
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchExpressions:\n      - key: app\n        operator: Equals #!\n        values: [a]\n"),
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator",
        "unknown variant `Equals`",
    );
}

#[test]
fn in_without_values_and_exists_with_values() {
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchExpressions:\n      - key: app #!\n        operator: In\n        values: []\n"),
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0]",
        "values: must be specified when `operator` is 'In' or 'NotIn'",
    );
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchExpressions:\n      - key: app #!\n        operator: Exists\n        values: [a]\n"),
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0]",
        "values: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
    );
}

#[test]
fn invalid_label_keys_and_values() {
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchLabels:\n        \"bad key\": x #!\n"),
        "spec.ingress[0].fromEndpoints[0].matchLabels.bad key",
        "invalid label key \"bad key\"",
    );
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchLabels:\n        app: -web #!\n"),
        "spec.ingress[0].fromEndpoints[0].matchLabels.app",
        "invalid label value \"-web\"",
    );
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchLabels:\n        \":app\": web #!\n"),
        "spec.ingress[0].fromEndpoints[0].matchLabels.:app",
        "empty label source",
    );
    // A Kubernetes selector takes no source prefix.
    assert_err(
        &knp("  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          k8s:app: web #!\n"),
        "spec.ingress[0].from[0].podSelector.matchLabels.k8s:app",
        "invalid label key \"k8s:app\"",
    );
}

#[test]
fn unknown_icmp_name_and_family() {
    assert_err(
        &cnp("  ingress:\n  - icmps:\n    - fields:\n      - type: PacketTooBig #!\n"),
        "spec.ingress[0].icmps[0].fields[0]",
        "ICMP type PacketTooBig not found in IPv4",
    );
    assert_err(
        &cnp("  ingress:\n  - icmps:\n    - fields:\n      - type: 3\n        family: IPv5 #!\n"),
        "spec.ingress[0].icmps[0].fields[0].family",
        "wrong family: IPv5",
    );
    assert_err(
        &cnp("  ingress:\n  - icmps:\n    - fields:\n      - type: 256 #!\n"),
        "spec.ingress[0].icmps[0].fields[0].type",
        "out of range",
    );
}

/// `authentication: {mode}` on allow rules (`pkg/policy/api/rule.go` `Authentication`: `mode`
/// is required and an enum of disabled, required, test-always-fail); the deny rules' schema
/// has no such field (`IngressDenyRule`, `EgressDenyRule`).
#[test]
fn authentication_parses_on_allow_rules_only() {
    let rule = cnp_rule(&cnp(
        "  ingress:\n  - fromEndpoints: [{}]\n    authentication: {mode: required}\n  egress:\n  - toEndpoints: [{}]\n    authentication:\n      mode: \"test-always-fail\"\n  - toEndpoints: [{}]\n    authentication: {mode: disabled}\n  - toEndpoints: [{}]\n",
    ));
    use super::AuthenticationMode as M;
    assert_eq!(rule.ingress[0].authentication, Some(M::Required));
    assert_eq!(rule.egress[0].authentication, Some(M::TestAlwaysFail));
    assert_eq!(rule.egress[1].authentication, Some(M::Disabled));
    assert_eq!(rule.egress[2].authentication, None);
    assert_err(
        &cnp("  ingress:\n  - authentication: {mode: optional} #!\n"),
        "spec.ingress[0].authentication.mode",
        "Unsupported value: \"optional\": supported values: \"disabled\", \"required\", \"test-always-fail\"",
    );
    assert_err(
        &cnp("  egress:\n  - authentication: {mode: Required} #!\n"),
        "spec.egress[0].authentication.mode",
        "Unsupported value: \"Required\"",
    );
    assert_err(
        &cnp("  ingress:\n  - authentication: {} #!\n"),
        "spec.ingress[0].authentication",
        "mode: Required value",
    );
    assert_err(
        &cnp("  ingress:\n  - authentication: {mode: required, type: spire} #!\n"),
        "spec.ingress[0].authentication.type",
        "unknown field `type`",
    );
    // The field of Cilium's old examples/policies/auth/auth.yaml (`auth: {type: "null"}`),
    // which no released CRD has.
    assert_err(
        &cnp("  egress:\n  - toEndpoints: [{}]\n    auth: {type: \"null\"} #!\n"),
        "spec.egress[0].auth",
        "unknown field `auth`",
    );
    assert_err(
        &cnp("  ingressDeny:\n  - fromEndpoints: [{}]\n    authentication: {mode: required} #!\n"),
        "spec.ingressDeny[0].authentication",
        "unknown field `authentication`",
    );
}

#[test]
fn deny_rules_have_fewer_fields() {
    assert_err(
        &cnp("  egressDeny:\n  - toEndpoints: [{}]\n    authentication: {mode: required} #!\n"),
        "spec.egressDeny[0].authentication",
        "unknown field `authentication`",
    );
    assert_err(
        &cnp("  ingressDeny:\n  - toPorts:\n    - ports: [{port: \"80\"}]\n      rules: {} #!\n"),
        "spec.ingressDeny[0].toPorts[0].rules",
        "unknown field `rules`",
    );
}

// toServices as pkg/policy/api/service.go types it and Sanitize restricts it
// (rule_validation.go l3Members: one peer kind per item).
#[test]
fn to_services_parse_and_validate() {
    let m = parse(&cnp("  egress:\n  - toServices:\n    - k8sService: {serviceName: s, namespace: ns1}\n    - k8sServiceSelector: {selector: {matchLabels: {env: a}}}\n")).unwrap().remove(0);
    let Manifest::CiliumNetworkPolicy(c) = &m else {
        panic!("{m:?}")
    };
    let svcs = c.spec.as_ref().unwrap().egress[0]
        .to_services
        .clone()
        .unwrap();
    assert_eq!(svcs[0].k8s_service.as_ref().unwrap().service_name, "s");
    assert_eq!(svcs[1].k8s_service_selector.as_ref().unwrap().namespace, "");
    assert_err(
        &cnp("  egress:\n  - toEndpoints: [{}] #!\n    toServices: [{k8sService: {serviceName: s}}]\n"),
        "spec.egress[0]",
        "Combining ToEndpoints and ToServices is not supported yet",
    );
    assert_err(
        &cnp("  egress:\n  - toServices:\n    - k8sService: {name: s} #!\n"),
        "spec.egress[0].toServices[0].k8sService.name",
        "unknown field `name`",
    );
    assert_err(
        &cnp("  egress:\n  - toServices:\n    - k8sServiceSelector: {namespace: ns1} #!\n"),
        "spec.egress[0].toServices[0].k8sServiceSelector",
        "missing field `selector`",
    );
    // egressDeny takes toServices too (EgressCommonRule).
    assert!(parse(&cnp(
        "  egressDeny:\n  - toServices: [{k8sService: {serviceName: s}}]\n"
    ))
    .is_ok());
}

#[test]
fn unsupported_fields_are_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("  ingress:\n  - fromGroups: [] #!\n", "spec.ingress[0].fromGroups", "needs a cloud provider: fromGroups"),
        ("  egress:\n  - toGroups: [] #!\n", "spec.egress[0].toGroups", "needs a cloud provider: toGroups"),
        ("  ingressDeny:\n  - fromGroups: [{aws: {securityGroupsIds: [sg-1]}}] #!\n", "spec.ingressDeny[0].fromGroups", "needs a cloud provider: fromGroups"),
        ("  egressDeny:\n  - toGroups: [{aws: {labels: {a: b}}}] #!\n", "spec.egressDeny[0].toGroups", "needs a cloud provider: toGroups"),
        ("  egress:\n  - toPorts:\n    - serverNames: [a.com] #!\n", "spec.egress[0].toPorts[0]", "serverNames"),
        ("  egress:\n  - toPorts:\n    - listener: {name: l} #!\n", "spec.egress[0].toPorts[0].listener", "listener"),
        ("  egress:\n  - toPorts:\n    - terminatingTLS: {secret: {name: s}} #!\n", "spec.egress[0].toPorts[0]", "terminatingTLS"),
        ("  egress:\n  - toPorts:\n    - originatingTLS: {secret: {name: s}} #!\n", "spec.egress[0].toPorts[0]", "originatingTLS"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"9092\", protocol: TCP}]\n      rules: {kafka: [{}]} #!\n", "spec.egress[0].toPorts[0].rules.kafka", "rules.kafka"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules: {l7proto: x} #!\n", "spec.egress[0].toPorts[0].rules.l7proto", "rules.l7proto"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http:\n        - headerMatches:\n          - {name: X, secret: {name: s}} #!\n", "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].secret", "headerMatches.secret"),
    ];
    for (rest, field, what) in cases {
        assert_err(&cnp(rest), field, &format!("not supported yet: {what}"));
    }
}

/// `fromRequires`/`toRequires` were removed in Cilium 1.19: the CRD keeps them as
/// `MaxItems=0` (`pkg/policy/api/ingress.go`, `egress.go`), so an item is the API server's
/// "Too many" error and an empty list is accepted.
#[test]
fn requires_fields_allow_no_items() {
    assert_err(
        &cnp("  ingress:\n  - fromRequires: [{matchLabels: {env: prod}}] #!\n"),
        "spec.ingress[0].fromRequires",
        "Too many: 1: must have at most 0 items (fromRequires was deprecated in Cilium 1.17 and removed in 1.19",
    );
    assert_err(
        &cnp("  egress:\n  - toRequires: [a, b] #!\n"),
        "spec.egress[0].toRequires",
        "Too many: 2: must have at most 0 items (toRequires was deprecated",
    );
    assert_err(
        &cnp("  ingressDeny:\n  - fromRequires: [{}] #!\n"),
        "spec.ingressDeny[0].fromRequires",
        "Too many: 1",
    );
    let rule = cnp_rule(&cnp(
        "  ingress:\n  - fromRequires: []\n    fromEndpoints: [{}]\n  egress:\n  - toRequires: null\n",
    ));
    assert_eq!(rule.ingress.len(), 1);
    assert_eq!(rule.egress.len(), 1);
}

/// CiliumCIDRGroup (`pkg/k8s/apis/cilium.io/client/crds/v2/ciliumcidrgroups.yaml`): served at
/// cilium.io/v2 and the deprecated v2alpha1; `spec.externalCIDRs` required; items are
/// prefixes; no status.
#[test]
fn cidr_groups_parse_as_the_crd_validates_them() {
    // Documentation/network/kubernetes/ciliumcidrgroup.rst's example, in v2alpha1.
    let g = one("apiVersion: cilium.io/v2alpha1\nkind: CiliumCIDRGroup\nmetadata:\n  name: vpn-example-1\n  labels:\n    role: vpn\nspec:\n  externalCIDRs:\n    - \"10.48.0.0/24\"\n    - \"10.16.0.0/24\"\n");
    let Manifest::CiliumCidrGroup(g) = g else {
        panic!("not a group: {g:?}")
    };
    assert_eq!(g.metadata.labels["role"], "vpn");
    let cidrs: Vec<String> = g
        .spec
        .external_cidrs
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(cidrs, ["10.48.0.0/24", "10.16.0.0/24"]);
    // Cluster-scoped; an empty list is allowed (MinItems=0).
    let m = one("kind: CiliumCIDRGroup\napiVersion: cilium.io/v2\nmetadata: {name: g, namespace: x}\nspec: {externalCIDRs: []}\n");
    assert_eq!(m.namespace(), None);
    assert_eq!(m.to_string(), "CiliumCIDRGroup g");
    assert_err(
        "apiVersion: cilium.io/v1\nkind: CiliumCIDRGroup #!\nmetadata: {name: g}\nspec: {externalCIDRs: []}\n",
        "kind",
        "does not serve kind CiliumCIDRGroup: expected cilium.io/v2 (or the deprecated cilium.io/v2alpha1)",
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: g}\nspec: {} #!\n",
        "spec",
        "spec.externalCIDRs: Required value",
    );
    assert_err(
        "apiVersion: cilium.io/v2 #!\nkind: CiliumCIDRGroup\nmetadata: {name: g}\n",
        "",
        "missing field `spec`",
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: g}\nspec:\n  externalCIDRs: [10.0.0.1] #!\n",
        "spec.externalCIDRs[0]",
        "expected an address with a prefix length",
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: g}\nspec: {externalCIDRs: []}\nstatus: {} #!\n",
        "status",
        "unknown field `status`",
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: g}\nspec: {externalCIDRs: [], cidrs: []} #!\n",
        "spec.cidrs",
        "unknown field `cidrs`",
    );
}

/// `fromCIDRSet`/`toCIDRSet` entries: exactly one of cidr, cidrGroupRef, cidrGroupSelector
/// (`CIDRRule.sanitize`, `pkg/policy/api/rule_validation.go`); a group reference is a DNS
/// subdomain (the CRD's pattern); `except` is not checked against a group.
#[test]
fn cidr_rules_take_one_of_cidr_and_the_group_fields() {
    let rule = cnp_rule(&cnp("  ingress:\n  - fromCIDRSet:\n    - cidrGroupRef: vpn-example-1\n      except: [10.48.0.0/25]\n    - cidrGroupSelector:\n        matchLabels: {role: vpn}\n"));
    let sets = rule.ingress[0].from_cidr_set.as_ref().expect("fromCIDRSet");
    assert_eq!(sets[0].peer, CidrPeer::GroupRef("vpn-example-1".into()));
    assert_eq!(
        sets[0].to_string(),
        "cidrGroupRef vpn-example-1 except 10.48.0.0/25"
    );
    assert!(matches!(&sets[1].peer, CidrPeer::GroupSelector(s) if s.match_labels["role"] == "vpn"));
    assert_err(
        &cnp("  ingress:\n  - fromCIDRSet:\n    - cidr: 10.0.0.0/8 #!\n      cidrGroupRef: g\n"),
        "spec.ingress[0].fromCIDRSet[0]",
        "more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set",
    );
    assert_err(
        &cnp("  ingress:\n  - fromCIDRSet:\n    - except: [10.0.0.0/8] #!\n"),
        "spec.ingress[0].fromCIDRSet[0]",
        "one of cidr, cidrGroupRef, or cidrGroupSelector is required",
    );
    assert_err(
        &cnp("  egress:\n  - toCIDRSet:\n    - cidrGroupRef: Bad_Name #!\n"),
        "spec.egress[0].toCIDRSet[0]",
        "cidrGroupRef: Invalid value: \"Bad_Name\"",
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes NetworkPolicy validation
// ---------------------------------------------------------------------------------------

#[test]
fn knp_port_errors() {
    assert_err(
        &knp("  ingress:\n  - ports:\n    - port: 70000 #!\n"),
        "spec.ingress[0].ports[0].port",
        "70000 must be between 1 and 65535, inclusive",
    );
    assert_err(
        &knp("  ingress:\n  - ports:\n    - port: 0 #!\n"),
        "spec.ingress[0].ports[0].port",
        "must be between 1 and 65535",
    );
    assert_err(
        &knp("  ingress:\n  - ports:\n    - port: \"80\" #!\n"),
        "spec.ingress[0].ports[0].port",
        "invalid port name \"80\"",
    );
    assert_err(
        &knp("  ingress:\n  - ports:\n    - port: 80 #!\n      endPort: 79\n"),
        "spec.ingress[0].ports[0]",
        "endPort: 79 must be greater than or equal to `port` 80",
    );
    assert_err(
        &knp("  ingress:\n  - ports:\n    - port: http #!\n      endPort: 90\n"),
        "spec.ingress[0].ports[0]",
        "endPort: may not be specified when `port` is non-numeric",
    );
    assert_err(
        &knp("  ingress:\n  - ports:\n    - port: 53\n      protocol: ICMP #!\n"),
        "spec.ingress[0].ports[0].protocol",
        "unsupported value \"ICMP\"",
    );
}

#[test]
fn knp_peer_errors() {
    assert_err(
        &knp(
            "  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8} #!\n      podSelector: {}\n",
        ),
        "spec.ingress[0].from[0]",
        "may not specify both ipBlock and another peer",
    );
    assert_err(
        &knp("  egress:\n  - to:\n    - {} #!\n"),
        "spec.egress[0].to[0]",
        "must specify a peer",
    );
    assert_err(
        &knp("  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8 #!\n        except: [10.0.0.0/8]\n"),
        "spec.egress[0].to[0].ipBlock",
        "must be a strict subset of `cidr`",
    );
    assert_err(
        &knp("  policyTypes: [Ingress, Sideways] #!\n"),
        "spec.policyTypes[1]",
        "unknown variant `Sideways`",
    );
}

#[test]
fn knp_named_port_and_defaults() {
    let m = one(&knp(
        "  ingress:\n  - ports:\n    - port: http\n    - protocol: UDP\n",
    ));
    let Manifest::NetworkPolicy(np) = m else {
        panic!("kind")
    };
    let ports = &np.spec.ingress[0].ports;
    assert_eq!(ports[0].port, Some(Port::Name("http".into())));
    assert_eq!(ports[0].protocol, KnpProtocol::Tcp);
    assert_eq!(ports[1].port, None);
    assert_eq!(ports[1].protocol, KnpProtocol::Udp);
    assert!(np.spec.policy_types.is_none());
}

// ---------------------------------------------------------------------------------------
// Locations: multi-document files, inline manifests, YAML syntax errors, Display
// ---------------------------------------------------------------------------------------

#[test]
fn error_in_second_document_has_absolute_line() {
    let yaml = format!(
        "# leading comment\n---\n{}---\n\n---\n{}",
        knp("  ingress: []\n"),
        cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"99999\" #!\n")
    );
    let e = assert_err(
        &yaml,
        "spec.ingress[0].toPorts[0].ports[0].port",
        "invalid port",
    );
    assert_eq!(e.document, 3, "{e}");
    assert_eq!(e.column, Some(15));
}

#[test]
fn yaml_syntax_error_has_line() {
    let yaml = format!(
        "{}---\napiVersion: cilium.io/v2\nkind: [unclosed\n#!\n",
        knp("")
    );
    let e = match parse(&yaml) {
        Ok(m) => panic!("parsed {m:?}"),
        Err(e) => e,
    };
    assert_eq!(e.document, 2, "{e}");
    assert!(e.line.is_some_and(|l| l >= marked_line(&yaml) - 1), "{e}");
    assert!(e.message.contains("while parsing a flow sequence"), "{e}");
}

#[test]
fn display_format() {
    let e = assert_err(
        &cnp("  ingress:\n  - toPorts:\n    - ports:\n      - port: \"70000\" #!\n"),
        "spec.ingress[0].toPorts[0].ports[0].port",
        "invalid port",
    );
    assert_eq!(
        e.to_string(),
        "test.yaml:11:15: document 1: spec.ingress[0].toPorts[0].ports[0].port: invalid port \"70000\": must be a number 0-65535 or an IANA service name"
    );
    let io = load_manifests(Path::new("/nonexistent/policy.yaml")).expect_err("missing file");
    assert!(
        io.to_string()
            .starts_with("/nonexistent/policy.yaml: cannot read file"),
        "{io}"
    );
}

#[test]
fn empty_documents_are_skipped() {
    assert!(parse_ok("").is_empty());
    assert!(parse_ok("---\n---\n# only a comment\n...\n").is_empty());
    let all = parse_ok(&format!("---\n{}---\n---\n", knp("")));
    assert_eq!(all.len(), 1);
}

/// A scenario-like document with manifests inline, both through a derived `Deserialize`
/// and through a hand-written visitor that delegates with [`manifest_from_map`].
#[test]
fn inline_manifest_in_larger_document() {
    use serde::de::{Error as _, MapAccess, Visitor};

    #[derive(Debug)]
    enum Entry {
        File(String),
        Inline(Box<Manifest>),
    }
    impl<'de> serde::Deserialize<'de> for Entry {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Entry;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("{file: path} or a manifest")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
                    let Some(key) = map.next_key::<String>()? else {
                        return Err(A::Error::custom("empty entry"));
                    };
                    if key == "file" {
                        return Ok(Entry::File(map.next_value()?));
                    }
                    manifest_from_map(key, map).map(|m| Entry::Inline(Box::new(m)))
                }
            }
            d.deserialize_map(V)
        }
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenario {
        #[allow(dead_code)]
        name: String,
        policies: Vec<Entry>,
        #[serde(default)]
        apply: Option<Manifest>,
    }

    let good = r#"
name: s
policies:
  - file: ../policies/deny-all.yaml
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: allow-x, namespace: x}
    spec: {podSelector: {}}
apply:
  kind: CiliumClusterwideNetworkPolicy
  apiVersion: cilium.io/v2
  metadata: {name: c}
  spec: {endpointSelector: {}, egress: [{}]}
"#;
    let read = |text: &str| {
        let node = crate::yaml::parse_one(text).unwrap().unwrap();
        crate::yaml::de::from_node::<Scenario>(&node, crate::yaml::de::Mode::SCENARIO)
            .map_err(|e| ManifestError::from_node_error(Path::new("scenario.yaml"), 1, &e))
    };
    let s: Scenario = read(good).expect("scenario parses");
    assert!(matches!(&s.policies[0], Entry::File(f) if f == "../policies/deny-all.yaml"));
    assert!(matches!(&s.policies[1], Entry::Inline(m) if m.namespace() == Some("x")));
    assert_eq!(
        s.apply.as_ref().map(|m| m.kind()),
        Some("CiliumClusterwideNetworkPolicy")
    );

    let bad = r#"
name: s
policies:
  - file: a.yaml
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p}
    spec:
      endpointSelector: {}
      egress:
      - toPorts:
        - ports:
          - port: "80"
            endPort: 10 #!
"#;
    let e = read(bad).expect_err("bad inline manifest");
    assert_eq!(e.line, Some(marked_line(bad) - 1), "{e}");
    assert_eq!(e.field, "policies[1].spec.egress[0].toPorts[0].ports[0]");
    assert!(e.message.contains("endPort 10 must be greater"), "{e}");

    let bad_apply = "name: s\npolicies: []\napply:\n  apiVersion: v1\n  kind: ConfigMap #!\n";
    let e = read(bad_apply).expect_err("bad kind");
    assert_eq!(e.line, Some(marked_line(bad_apply)), "{e}");
    assert_eq!(e.field, "apply.kind");
    assert!(e.message.contains("unsupported kind ConfigMap"), "{e}");
}

// ---------------------------------------------------------------------------------------
// No panics
// ---------------------------------------------------------------------------------------

const VALID: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: p
  labels: {a: b}
spec:
  endpointSelector:
    matchExpressions: [{key: app, operator: In, values: [web]}]
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:role": db}}]
    toPorts: [{ports: [{port: "80", endPort: 90, protocol: TCP}]}]
  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]
  egressDeny:
  - toEntities: [world]
    icmps: [{fields: [{type: EchoRequest, family: IPv6}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: x}
spec:
  podSelector: {matchLabels: {a: b}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {namespaceSelector: {}}]
    ports: [{port: 80, endPort: 90}, {port: http, protocol: UDP}]
"#;

#[test]
fn valid_fixture_parses() {
    assert_eq!(parse_ok(VALID).len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[-a-zA-Z0-9:{}\\[\\],\"'&*!|>#. \n]{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn mutated_manifest_never_panics(
        pos in 0usize..VALID.len(),
        cut in 0usize..20,
        insert in "[-a-zA-Z0-9:{}\\[\\],\"'&*!. \n]{0,8}",
    ) {
        let mut text = VALID.to_string();
        let start = (0..=pos).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let end = (start..=(start + cut).min(text.len()))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(start);
        text.replace_range(start..end, &insert);
        let _ = parse(&text);
    }
}

// ---------------------------------------------------------------------------------------
// Manifests as kubectl takes them (issue 11 item 1)
// ---------------------------------------------------------------------------------------

/// `kubectl get -o yaml` prints `kind: List`; API list responses are typed lists whose items
/// carry no apiVersion or kind. Errors inside an item name it.
#[test]
fn lists_of_every_shape() {
    let text = r#"apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: a, namespace: x}
  spec: {endpointSelector: {}, ingress: [{}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: p}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicyList
items:
- metadata: {name: b, namespace: y1}
  spec: {podSelector: {}}
- metadata: {name: c, namespace: y1}
  spec: {podSelector: {}, policyTypes: [Egress]}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicyList
items: []
"#;
    let f = parse_manifest_file(Path::new("t.yaml"), text).unwrap();
    let names: Vec<String> = f.manifests.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        names,
        [
            "CiliumNetworkPolicy x/a",
            "NetworkPolicy y1/b",
            "NetworkPolicy y1/c"
        ]
    );
    assert_eq!(
        f.skipped.to_string(),
        "1 object that is not a policy: 1 Pod"
    );
    let bad = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: a}\n  spec:\n    endpointSelector: {}\n    ingress:\n    - toPorts: [{ports: [{port: 99999}]}] #!\n";
    let e = assert_err(
        bad,
        "items[0].spec.ingress[0].toPorts[0].ports[0].port",
        "Invalid value: \"integer\": must be of type string",
    );
    assert_eq!(e.column, Some(33), "{e}");
}

/// Kubernetes wants strings in these places and the API server refuses anything else: a CRD
/// field with its schema's words (`Invalid value: "integer": ... must be of type string`), a
/// built-in kind with Go's encoding/json words.
#[test]
fn strings_where_kubernetes_wants_strings() {
    assert_err(
        &cnp("  ingress:\n  - toPorts: [{ports: [{port: 80}]}] #!\n"),
        "spec.ingress[0].toPorts[0].ports[0].port",
        "Invalid value: \"integer\": must be of type string: \"integer\" (quote it: \"80\")",
    );
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints: [{matchLabels: {tier: 5}}] #!\n"),
        "spec.ingress[0].fromEndpoints[0].matchLabels.tier",
        "Invalid value: \"integer\": must be of type string",
    );
    assert_err(
        &knp("  ingress:\n  - from: [{podSelector: {matchLabels: {tier: 5}}}] #!\n"),
        "spec.ingress[0].from[0].podSelector.matchLabels.tier",
        "json: cannot unmarshal number into Go value of type string",
    );
    // YAML 1.1, as kubectl reads it: an unquoted yes, on, y is a boolean.
    assert_err(
        &knp("  ingress:\n  - from: [{namespaceSelector: {matchLabels: {enabled: yes}}}] #!\n"),
        "spec.ingress[0].from[0].namespaceSelector.matchLabels.enabled",
        "an unquoted \"yes\" is the boolean true: quote it",
    );
    // Where the schema is int-or-string, both are fine.
    let m = one(&knp("  ingress:\n  - ports: [{port: 80}, {port: http}]\n"));
    let Manifest::NetworkPolicy(np) = m else {
        panic!()
    };
    assert_eq!(np.spec.ingress[0].ports[0].port, Some(Port::Number(80)));
    let r = cnp_rule(&cnp(
        "  ingress:\n  - icmps: [{fields: [{type: 8}, {type: \"0\"}]}]\n",
    ));
    assert_eq!(r.ingress[0].icmps[0].fields.len(), 2);
    // Booleans must be booleans.
    assert_err(
        &cnp("  ingress: [{}]\n  enableDefaultDeny: {ingress: \"false\"} #!\n"),
        "spec.enableDefaultDeny.ingress",
        "Invalid value: \"string\": must be of type boolean",
    );
}

/// Anchors, aliases and merge keys, as Cilium's and users' manifests use them.
#[test]
fn anchors_and_merge_keys_in_manifests() {
    let text = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector:
    matchLabels: &web {app: web, tier: front}
  ingress:
  - fromEndpoints:
    - matchLabels:
        <<: *web
        tier: back
    toPorts: &ports [{ports: [{port: "80", protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {<<: [*web, {zone: a}]}}]
    toPorts: *ports
"#;
    let r = cnp_rule(text);
    let from = &r.ingress[0].from_endpoints.as_ref().unwrap()[0].match_labels;
    assert_eq!(from["app"], "web");
    assert_eq!(from["tier"], "back");
    let to = &r.egress[0].to_endpoints.as_ref().unwrap()[0].match_labels;
    assert_eq!(to.len(), 3);
    assert_eq!(r.egress[0].to_ports, r.ingress[0].to_ports);
}

#[test]
fn duplicate_keys_are_errors_in_manifests() {
    let e = assert_err(
        &cnp("  ingress:\n  - fromEndpoints:\n    - matchLabels:\n        run: nginx\n        run: nginx2 #!\n"),
        "spec.ingress[0].fromEndpoints[0].matchLabels.run",
        "duplicate key \"run\" (first at line 11 column 9",
    );
    assert_eq!(e.column, Some(9));
}

/// A null list or object reads as empty, as Go's encoding/json and CRD pruning take it; an
/// optional peer list that is null is absent.
#[test]
fn null_lists_and_objects_are_empty() {
    let m = one(&knp("  ingress:\n  - from: ~\n    ports: null\n"));
    let Manifest::NetworkPolicy(np) = m else {
        panic!()
    };
    assert!(np.spec.ingress[0].from.is_empty() && np.spec.ingress[0].ports.is_empty());
    let r = cnp_rule(&cnp("  ingress:\n  - fromEndpoints: ~\n    toPorts: ~\n"));
    assert_eq!(r.ingress[0].from_endpoints, None);
}

// ---------------------------------------------------------------------------------------
// L7 rules and toFQDNs (pkg/policy/api/rule_validation.go PortRule.sanitize,
// L7Rules.sanitize, IngressRule.sanitize, EgressCommonRule.sanitize; http.go; fqdn.go; the
// CRD's matchName/matchPattern patterns)
// ---------------------------------------------------------------------------------------

#[test]
fn l7_rules_and_fqdns_parse() {
    let r = cnp_rule(&cnp(r#"  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http:
        - {method: POST, path: /v1/request-landing}
        - {method: GET, path: "/public/.*", host: "a\\.b", headers: ["X-Token abc"], headerMatches: [{name: X-Y, value: z, mismatch: LOG}]}
  egress:
  - toEndpoints: [{matchLabels: {k8s-app: kube-dns}}]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*"}, {matchName: api.github.com}]
  - toFQDNs: [{matchName: api.github.com}, {matchPattern: "*.github.com"}, {matchPattern: "**.cilium.io"}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"#));
    let http = r.ingress[0].to_ports[0]
        .rules
        .as_ref()
        .unwrap()
        .http
        .as_ref()
        .unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(
        http[1].header_matches[0].mismatch,
        Some(MismatchAction::Log)
    );
    let dns = r.egress[0].to_ports[0]
        .rules
        .as_ref()
        .unwrap()
        .dns
        .as_ref()
        .unwrap();
    assert_eq!(dns[1], FqdnSelector::MatchName("api.github.com".into()));
    assert_eq!(r.egress[1].to_fqdns.as_ref().unwrap().len(), 3);
    // Empty rules are no rules (`L7Rules.IsEmpty`): no redirect.
    let r = cnp_rule(&cnp("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules: {http: []}\n"));
    assert_eq!(r.egress[0].to_ports[0].rules, None);
}

#[test]
fn l7_rules_are_validated_as_cilium_does() {
    let port_rule = "spec.egress[0].toPorts[0]";
    let cases: &[(&str, &str, &str)] = &[
        // PortRule.sanitize: L7 only on TCP except DNS.
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: UDP}] #!\n      rules: {http: [{}]}\n", port_rule, "L7 rules can only apply to TCP (not UDP) except for DNS rules"),
        // A port without protocol is ANY (ParseL4Proto("")).
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\"}] #!\n      rules: {http: [{}]}\n", port_rule, "L7 rules can only apply to TCP (not ANY) except for DNS rules"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"0\", protocol: TCP}] #!\n      rules: {http: [{}]}\n", port_rule, "L7 rules can not be used when a port is 0"),
        ("  egress:\n  - toPorts:\n    - rules: {dns: [{matchName: a.com}]} #!\n", port_rule, "port 53 must be specified for DNS rules"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"53\", endPort: 54, protocol: UDP}] #!\n      rules: {dns: [{matchName: a.com}]}\n", port_rule, "DNS rules do not support port ranges"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"53\", protocol: TCP}] #!\n      rules: {dns: [{matchName: a.com}], http: [{}]}\n", port_rule, "multiple L7 protocol rule types specified in single rule"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"443\", protocol: TCP}] #!\n      serverNames: [a.com]\n      rules: {http: [{}]}\n", port_rule, "ServerNames are not allowed with L7 rules without TLS termination"),
        ("  egress:\n  - toPorts:\n    - serverNames: [\"\"] #!\n", port_rule, "empty server name is not allowed"),
        // IngressRule.sanitize: no DNS on ingress.
        ("  ingress:\n  - toPorts: #!\n    - ports: [{port: \"53\", protocol: UDP}]\n      rules: {dns: [{matchName: a.com}]}\n", "spec.ingress[0]", "L7 protocol DNS is not supported on ingress yet"),
        // EgressCommonRule.sanitize: ToFQDNs is an L3 member.
        ("  egress:\n  - toEndpoints: [{}] #!\n    toFQDNs: [{matchName: a.com}]\n", "spec.egress[0]", "Combining ToEndpoints and ToFQDNs is not supported yet"),
        // PortRuleHTTP.Sanitize: path and method compile as regexes.
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http:\n        - {path: \"/a(\"} #!\n", "spec.egress[0].toPorts[0].rules.http[0]", "error parsing regexp"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http:\n        - headerMatches: [{value: x}] #!\n", "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0]", "Header name missing"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http:\n        - headerMatches: [{name: x, mismatch: DROP}] #!\n", "spec.egress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch", "unknown variant `DROP`"),
        // FQDNSelector: exactly one of matchName / matchPattern; the CRD patterns.
        ("  egress:\n  - toFQDNs:\n    - {matchName: a.com, matchPattern: \"*.a.com\"} #!\n", "spec.egress[0].toFQDNs[0]", "only one of MatchName or MatchPattern"),
        ("  egress:\n  - toFQDNs:\n    - {} #!\n", "spec.egress[0].toFQDNs[0]", "must validate one and only one schema (oneOf)"),
        ("  egress:\n  - toFQDNs:\n    - {matchName: \"a b.com\"} #!\n", "spec.egress[0].toFQDNs[0]", "matchName in body should match '^([-a-zA-Z0-9_]+[.]?)+$'"),
        ("  egress:\n  - toFQDNs:\n    - {matchName: \"*.a.com\"} #!\n", "spec.egress[0].toFQDNs[0]", "matchName in body should match"),
        ("  egress:\n  - toFQDNs:\n    - {matchPattern: \"a?.com\"} #!\n", "spec.egress[0].toFQDNs[0]", "matchPattern in body should match"),
        ("  egress:\n  - toPorts:\n    - ports: [{port: \"53\", protocol: UDP}]\n      rules:\n        dns:\n        - {matchPattern: \"a/b\"} #!\n", "spec.egress[0].toPorts[0].rules.dns[0]", "matchPattern in body should match"),
        // toFQDNs exist on egress allow rules only.
        ("  ingress:\n  - toFQDNs: [{matchName: a.com}] #!\n", "spec.ingress[0].toFQDNs", "unknown field `toFQDNs`"),
        ("  egressDeny:\n  - toFQDNs: [{matchName: a.com}] #!\n", "spec.egressDeny[0].toFQDNs", "unknown field `toFQDNs`"),
    ];
    for (rest, field, what) in cases {
        assert_err(&cnp(rest), field, what);
    }
}

const CCNP_HOST_HEAD: &str = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: p\nspec:\n  nodeSelector: {matchLabels: {node-access: ssh}}\n";

/// Host policies: `nodeSelector` in a CCNP (`pkg/policy/api/rule_validation.go`
/// `Rule.Sanitize`: exactly one of endpointSelector/nodeSelector).
#[test]
fn node_selector_host_policies() {
    let m = parse(&format!(
        "{CCNP_HOST_HEAD}  ingress: [{{fromEntities: [cluster]}}]\n"
    ))
    .expect("a host policy");
    let Manifest::CiliumClusterwideNetworkPolicy(p) = &m[0] else {
        panic!("{m:?}")
    };
    let rule = p.spec.as_ref().expect("spec");
    assert_eq!(
        rule.node_selector
            .as_ref()
            .map(|s| s.match_labels["node-access"].as_str()),
        Some("ssh")
    );
    assert_err(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: p}\nspec:\n  endpointSelector: {} #!\n  nodeSelector: {}\n  ingress: [{}]\n",
        "spec",
        "rule cannot have both EndpointSelector and NodeSelector",
    );
    // `CiliumNetworkPolicy.Parse` (cnp_types.go): host policies are cluster-wide only.
    let e = parse(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  nodeSelector: {}\n  ingress: [{}]\n",
    )
    .expect_err("a CNP with nodeSelector");
    assert!(
        e.message
            .contains("Invalid CiliumNetworkPolicy spec: rule cannot have NodeSelector"),
        "{e}"
    );
    // IngressRule.sanitize(hostPolicy) / EgressRule.sanitize(hostPolicy). The error is the
    // rule's (spec's first line).
    let head = CCNP_HOST_HEAD.replace("ssh}}\n", "ssh}} #!\n");
    let http =
        "  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules: {http: [{}]}\n";
    assert_err(
        &format!("{head}  ingress:\n{http}"),
        "spec",
        "L7 policy is not supported on host ingress yet",
    );
    assert_err(
        &format!("{head}  egress:\n{http}"),
        "spec",
        "L7 protocol HTTP is not supported on host egress yet",
    );
    // The same L7 rule is fine on an endpoint rule.
    assert!(parse(&cnp(
        "  ingress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules: {http: [{}]}\n"
    ))
    .is_ok());
}

/// `fromNodes`/`toNodes`: label selectors, one more exclusive L3 peer kind
/// (`IngressCommonRule.sanitize` l3Members; `EgressCommonRule.l3Members`).
#[test]
fn from_nodes_and_to_nodes() {
    let m = parse(&cnp(
        "  ingress:\n  - fromNodes: [{matchLabels: {node-role.kubernetes.io/control-plane: ''}}]\n  egressDeny:\n  - toNodes: [{}]\n",
    ))
    .expect("fromNodes and toNodes");
    let Manifest::CiliumNetworkPolicy(p) = &m[0] else {
        panic!("{m:?}")
    };
    let rule = p.spec.as_ref().expect("spec");
    assert_eq!(rule.ingress[0].from_nodes.as_ref().map(Vec::len), Some(1));
    assert_eq!(rule.egress_deny[0].to_nodes.as_ref().map(Vec::len), Some(1));
    assert_err(
        &cnp("  ingress:\n  - fromEndpoints: [{}] #!\n    fromNodes: [{}]\n"),
        "spec.ingress[0]",
        "Combining FromEndpoints and FromNodes is not supported yet",
    );
    assert_err(
        &cnp("  egress:\n  - toNodes: [{}] #!\n    toCIDR: [10.0.0.0/8]\n"),
        "spec.egress[0]",
        "Combining ToCIDR and ToNodes is not supported yet",
    );
}

/// Every property of the CNP/CCNP CRDs' `spec` (the list derived from Cilium main's CRD
/// YAML, `tests/data/crd/cilium-policy-properties.txt`) is a field verdict reads: set to null
/// at its path (in `spec` and in `specs`, in both kinds), it parses or fails with a validation
/// error or "not supported yet", never with "unknown field".
#[test]
fn crd_fields_are_all_known() {
    let list = include_str!("../../../tests/data/crd/cilium-policy-properties.txt");
    let paths: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(paths.len() > 250, "{} paths", paths.len());
    // `a.b[].c` → {"a": {"b": [{"c": null}]}} (as JSON, which YAML reads).
    fn nest(parts: &[&str]) -> String {
        let Some((head, rest)) = parts.split_first() else {
            return "null".into();
        };
        let (name, list) = match head.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (*head, false),
        };
        let inner = nest(rest);
        let value = if list && !rest.is_empty() {
            format!("[{inner}]")
        } else {
            inner
        };
        format!("{{\"{name}\": {value}}}")
    }
    let mut unsupported = Vec::new();
    for path in &paths {
        let parts: Vec<&str> = path.split('.').collect();
        assert_eq!(parts[0], "spec", "{path}");
        let rule = nest(&parts[1..]);
        // Every rule needs a subject: add `endpointSelector` unless the path sets it.
        let rule = if parts[1] == "endpointSelector" {
            rule
        } else {
            format!("{{\"endpointSelector\": {{}}, {}", &rule[1..])
        };
        for kind in ["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"] {
            for (key, value) in [("spec", rule.clone()), ("specs", format!("[{rule}]"))] {
                let doc = format!(
                    "{{\"apiVersion\": \"cilium.io/v2\", \"kind\": \"{kind}\", \"metadata\": {{\"name\": \"p\", \"namespace\": \"x\"}}, \"{key}\": {value}}}\n"
                );
                if let Err(e) = parse(&doc) {
                    assert!(
                        !e.message.contains("unknown field"),
                        "{kind} {key}: {path}: {e}\n{doc}"
                    );
                    if e.message.contains("not supported yet") && key == "spec" {
                        unsupported.push(format!("{path}: {}", e.message));
                    }
                }
            }
        }
    }
    // The CRD fields refused today (each kind once); a change here must be a choice.
    unsupported.sort();
    unsupported.dedup();
    assert!(
        unsupported
            .iter()
            .any(|u| u.contains("toGroups") && u.contains("needs a cloud provider")),
        "{unsupported:#?}"
    );
}
