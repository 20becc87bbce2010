//! CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2) rules, validated as
//! Cilium's CRD schema and `Rule.Sanitize` (`pkg/policy/api/rule_validation.go`) do.
//!
//! Fields that Cilium supports but this project does not model yet are rejected with
//! "not supported yet: <field>" at the field, never silently dropped.

use super::de::{from_str_scalar, not_supported, removed_list, validated_map, Never};
use super::l7::{FqdnSelector, L7Rules, TlsContext};
use super::meta::{check_dns_subdomain, EndpointSelector, ObjectMeta};
use super::net::{
    icmp_type_code, Cidr, Entity, IcmpFamily, Port, PrefixCidr, Protocol, RawIcmpType,
};
use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// At most this many ports per `toPorts` entry (`maxPorts`).
pub const MAX_PORTS: usize = 40;
/// At most this many fields per `icmps` entry (`maxICMPFields`).
pub const MAX_ICMP_FIELDS: usize = 40;

/// A CiliumNetworkPolicy: `spec` and/or `specs`, each rule parsed on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiliumNetworkPolicy {
    pub metadata: ObjectMeta,
    pub spec: Option<Rule>,
    pub specs: Option<Vec<Rule>>,
}

/// A CiliumClusterwideNetworkPolicy: same shape as [`CiliumNetworkPolicy`], cluster-scoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiliumClusterwideNetworkPolicy {
    pub metadata: ObjectMeta,
    pub spec: Option<Rule>,
    pub specs: Option<Vec<Rule>>,
}

impl CiliumNetworkPolicy {
    /// `spec` (if any) followed by `specs`, in the order Cilium parses them.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.spec.iter().chain(self.specs.iter().flatten())
    }
}

impl CiliumClusterwideNetworkPolicy {
    /// `spec` (if any) followed by `specs`, in the order Cilium parses them.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.spec.iter().chain(self.specs.iter().flatten())
    }
}

/// One policy rule. The subject is `endpointSelector`, or `nodeSelector` for a host policy
/// (exactly one of them, `Rule.Sanitize`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// The subject endpoints; empty (and unused) when `node_selector` is set.
    pub endpoint_selector: EndpointSelector,
    /// `nodeSelector`: the rule is a host policy, on the host endpoint of the nodes whose
    /// labels match (`pkg/policy/utils/parserules.go` `getSelector`: `PolicyEntry.Node`).
    /// Only CiliumClusterwideNetworkPolicy may have one (`cnp_types.go` `Parse`).
    pub node_selector: Option<EndpointSelector>,
    pub ingress: Vec<IngressRule>,
    pub ingress_deny: Vec<IngressDenyRule>,
    pub egress: Vec<EgressRule>,
    pub egress_deny: Vec<EgressDenyRule>,
    pub labels: Vec<Label>,
    pub description: Option<String>,
    pub enable_default_deny: DefaultDenyConfig,
    pub log: Option<LogConfig>,
}

/// `enableDefaultDeny`: `None` means "decided by whether the rule has rules in that direction".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultDenyConfig {
    #[serde(default)]
    pub ingress: Option<bool>,
    #[serde(default)]
    pub egress: Option<bool>,
}

/// `log`: a value copied into Hubble's `policy_log` (at most 32 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLogConfig {
    #[serde(default)]
    value: String,
}

impl TryFrom<RawLogConfig> for LogConfig {
    type Error = String;
    fn try_from(r: RawLogConfig) -> Result<Self, String> {
        if r.value.chars().count() > 32 {
            return Err(format!(
                "value: {:?} must be no more than 32 characters",
                r.value
            ));
        }
        Ok(LogConfig { value: r.value })
    }
}
validated_map!(LogConfig, RawLogConfig, "a log config");

/// A rule label: `{key, value, source}` or the string `source:key=value`. The source
/// defaults to `unspec`, as Cilium's `ParseLabel` does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub source: String,
    pub key: String,
    pub value: String,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}={}", self.source, self.key, self.value)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLabel {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    source: String,
}

fn label_from_parts(source: &str, key: &str, value: &str) -> Result<Label, String> {
    if key.is_empty() {
        return Err("label key must not be empty".into());
    }
    Ok(Label {
        source: if source.is_empty() { "unspec" } else { source }.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    })
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Label;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label: source:key=value or {key, value, source}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Label, E> {
                let (kpart, value) = s.split_once('=').unwrap_or((s, ""));
                let (source, key) = kpart.split_once(':').unwrap_or(("", kpart));
                label_from_parts(source, key, value).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Label, A::Error> {
                let r = RawLabel::deserialize(MapAccessDeserializer::new(map))?;
                label_from_parts(&r.source, &r.key, &r.value).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

// `fromGroups`/`toGroups` (`pkg/policy/api/groups.go`) select the addresses of AWS ENIs and
// security groups, which Cilium's operator reads from the AWS API (`pkg/policy/groups/aws`)
// and writes into derived CiliumCIDRGroups: nothing a scenario has.
not_supported!(
    ns_from_groups,
    "needs a cloud provider: fromGroups selects AWS security groups and ENIs, whose addresses \
     Cilium's operator reads from the AWS API (pkg/policy/groups/aws); name the addresses in a \
     CiliumCIDRGroup or fromCIDRSet instead"
);
not_supported!(
    ns_to_groups,
    "needs a cloud provider: toGroups selects AWS security groups and ENIs, whose addresses \
     Cilium's operator reads from the AWS API (pkg/policy/groups/aws); name the addresses in a \
     CiliumCIDRGroup or toCIDRSet instead"
);
// `fromRequires`/`toRequires` were deprecated in Cilium 1.17 and removed in 1.19
// (cilium/cilium c98e572b9f "policy: Remove support for FromRequires and ToRequires"): the
// current CRDs keep the fields as `+kubebuilder:validation:MaxItems=0`, so the API server
// refuses any item and accepts an empty list (`pkg/policy/api/ingress.go`, `egress.go`).
removed_list!(
    rm_from_requires,
    "fromRequires was deprecated in Cilium 1.17 and removed in 1.19, whose CRD allows no items; \
     require the labels in each fromEndpoints selector instead"
);
removed_list!(
    rm_to_requires,
    "toRequires was deprecated in Cilium 1.17 and removed in 1.19, whose CRD allows no items; \
     require the labels in each toEndpoints selector instead"
);
not_supported!(ns_listener, "listener");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    endpoint_selector: Option<EndpointSelector>,
    #[serde(default)]
    node_selector: Option<EndpointSelector>,
    #[serde(default)]
    ingress: Option<Vec<IngressRule>>,
    #[serde(default)]
    ingress_deny: Option<Vec<IngressDeny>>,
    #[serde(default)]
    egress: Option<Vec<EgressRule>>,
    #[serde(default)]
    egress_deny: Option<Vec<EgressDeny>>,
    #[serde(default)]
    labels: Option<Vec<Label>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enable_default_deny: Option<DefaultDenyConfig>,
    #[serde(default)]
    log: Option<LogConfig>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;
    fn try_from(r: RawRule) -> Result<Self, String> {
        let (endpoint_selector, node_selector) = match (r.endpoint_selector, r.node_selector) {
            (None, None) => {
                return Err("rule must have one of EndpointSelector or NodeSelector".into())
            }
            (Some(_), Some(_)) => {
                return Err("rule cannot have both EndpointSelector and NodeSelector".into())
            }
            (Some(es), None) => (es, None),
            (None, Some(ns)) => (EndpointSelector::default(), Some(ns)),
        };
        let ingress = r.ingress.unwrap_or_default();
        let ingress_deny: Vec<IngressRule> = r
            .ingress_deny
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.0)
            .collect();
        let egress = r.egress.unwrap_or_default();
        let egress_deny: Vec<EgressRule> = r
            .egress_deny
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.0)
            .collect();
        // Cilium >= 1.18 (4af386d181).
        if ingress.is_empty()
            && ingress_deny.is_empty()
            && egress.is_empty()
            && egress_deny.is_empty()
        {
            return Err(
                "rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny".into(),
            );
        }
        if node_selector.is_some() {
            check_host_policy_l7(&ingress, &egress)?;
        }
        Ok(Rule {
            endpoint_selector,
            node_selector,
            ingress,
            ingress_deny,
            egress,
            egress_deny,
            labels: r.labels.unwrap_or_default(),
            description: r.description,
            enable_default_deny: r.enable_default_deny.unwrap_or_default(),
            log: r.log,
        })
    }
}
validated_map!(Rule, RawRule, "a Cilium policy rule");

/// An ingress allow rule. `None` and `Some(vec![])` differ for the peer lists: the first is
/// "field absent", the second "present but empty", and the policy layer may treat them
/// differently. Only one peer kind may be non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngressRule {
    pub from_endpoints: Option<Vec<EndpointSelector>>,
    pub from_cidr: Option<Vec<Cidr>>,
    pub from_cidr_set: Option<Vec<CidrRule>>,
    pub from_entities: Option<Vec<Entity>>,
    /// `fromNodes`: remote nodes by their labels (the agent needs
    /// `--enable-node-selector-labels`, checked where the agent's options are known).
    pub from_nodes: Option<Vec<EndpointSelector>>,
    pub to_ports: Vec<PortRule>,
    pub icmps: Vec<IcmpRule>,
    /// `authentication.mode` (allow rules only; always `None` in a deny rule).
    pub authentication: Option<AuthenticationMode>,
}

/// An ingress deny rule: the same peers and ports as an allow rule; the deny-only API has
/// fewer fields (no L7 `rules`, no `authentication`), which parsing enforces.
pub type IngressDenyRule = IngressRule;

/// An egress allow rule (see [`IngressRule`] for `None` versus empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EgressRule {
    pub to_endpoints: Option<Vec<EndpointSelector>>,
    pub to_cidr: Option<Vec<Cidr>>,
    pub to_cidr_set: Option<Vec<CidrRule>>,
    pub to_entities: Option<Vec<Entity>>,
    /// `toNodes`: remote nodes by their labels (see [`IngressRule::from_nodes`]).
    pub to_nodes: Option<Vec<EndpointSelector>>,
    /// `toFQDNs`: the IPs the DNS proxy has seen for these names (egress allow only).
    pub to_fqdns: Option<Vec<FqdnSelector>>,
    /// `toServices`, resolved against the cluster's services when translated
    /// (`translate::translate_in`; Cilium's `pkg/policy/k8s/service.go`).
    pub to_services: Option<Vec<ServiceRule>>,
    pub to_ports: Vec<PortRule>,
    pub icmps: Vec<IcmpRule>,
    /// `authentication.mode` (allow rules only; always `None` in a deny rule).
    pub authentication: Option<AuthenticationMode>,
}

/// `authentication.mode` (`pkg/policy/api/rule.go` `AuthenticationMode`; the CRD enum
/// `disabled;required;test-always-fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthenticationMode {
    /// "Always succeeds": an explicit "no authentication" that overrides a broader rule's.
    Disabled,
    /// Mutual TLS with SPIFFE as certificate provider (auth type `spire`).
    Required,
    /// Never succeeds (`pkg/auth/always_fail_authhandler.go`).
    TestAlwaysFail,
}

impl AuthenticationMode {
    pub const ALL: [AuthenticationMode; 3] = [
        AuthenticationMode::Disabled,
        AuthenticationMode::Required,
        AuthenticationMode::TestAlwaysFail,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticationMode::Disabled => "disabled",
            AuthenticationMode::Required => "required",
            AuthenticationMode::TestAlwaysFail => "test-always-fail",
        }
    }
}

impl fmt::Display for AuthenticationMode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuthenticationMode {
    type Err = String;
    /// The API server's enum error (`+kubebuilder:validation:Enum`).
    fn from_str(s: &str) -> Result<Self, String> {
        AuthenticationMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "Unsupported value: {s:?}: supported values: \"disabled\", \"required\", \"test-always-fail\""
                )
            })
    }
}
from_str_scalar!(
    AuthenticationMode,
    "an authentication mode (disabled, required or test-always-fail)"
);

/// `authentication: {mode}` (`pkg/policy/api/rule.go` `Authentication`; `mode` is
/// `+kubebuilder:validation:Required`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAuthentication {
    #[serde(default)]
    mode: Option<AuthenticationMode>,
}

/// A parsed `authentication` block: its mode.
struct Authentication(AuthenticationMode);

impl TryFrom<RawAuthentication> for Authentication {
    type Error = String;
    fn try_from(r: RawAuthentication) -> Result<Self, String> {
        r.mode
            .map(Authentication)
            .ok_or_else(|| "mode: Required value".to_string())
    }
}
validated_map!(
    Authentication,
    RawAuthentication,
    "an authentication block: {mode: ...}"
);

/// A `toServices` entry (`pkg/policy/api/service.go` `Service`): by name or by the Service's
/// labels. An empty `namespace` matches services in every namespace (`serviceRefMatches`,
/// `serviceSelectorMatches`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRule {
    #[serde(default)]
    pub k8s_service: Option<K8sServiceNamespace>,
    #[serde(default)]
    pub k8s_service_selector: Option<K8sServiceSelectorNamespace>,
}

/// `k8sService`: a service name and, optionally, its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sServiceNamespace {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub namespace: String,
}

/// `k8sServiceSelector`: a label selector over Service objects and, optionally, a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct K8sServiceSelectorNamespace {
    pub selector: EndpointSelector,
    #[serde(default)]
    pub namespace: String,
}

/// An egress deny rule (no `toFQDNs`, L7 `rules` or `authentication` in the API; its
/// `to_fqdns` is always `None`).
pub type EgressDenyRule = EgressRule;

/// The L7 rules a host policy may hold (`IngressRule.sanitize(hostPolicy)`: "L7 policy is
/// not supported on host ingress yet"; `EgressRule.sanitize(hostPolicy)`: HTTP is not
/// supported on host egress, DNS is). Host DNS rules are valid upstream but send the host's
/// lookups through the agent's DNS proxy, which verdict does not model for the host.
fn check_host_policy_l7(ingress: &[IngressRule], egress: &[EgressRule]) -> Result<(), String> {
    let l7 = |ports: &[PortRule]| {
        ports
            .iter()
            .filter_map(|p| p.rules.as_ref())
            .cloned()
            .collect::<Vec<_>>()
    };
    if ingress.iter().any(|r| !l7(&r.to_ports).is_empty()) {
        return Err("L7 policy is not supported on host ingress yet".into());
    }
    for r in egress {
        for rules in l7(&r.to_ports) {
            if rules.http.is_some() {
                return Err("L7 protocol HTTP is not supported on host egress yet".into());
            }
            if rules.has_dns() {
                return Err(
                    "not supported yet: DNS rules in a host policy (the host's DNS proxy)".into(),
                );
            }
        }
    }
    Ok(())
}

/// Marks the always-rejected fields of a raw rule as read; they can only ever be `None`.
fn never_set(fields: &[Option<Never>]) {
    debug_assert!(fields.iter().all(Option::is_none));
}

fn len<T>(v: &Option<Vec<T>>) -> usize {
    v.as_ref().map_or(0, Vec::len)
}

/// "Combining X and Y is not supported yet" for the first two non-empty peer kinds.
fn check_exclusive(members: &[(&str, usize)]) -> Result<(), String> {
    let mut present = members
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, _)| *name);
    if let (Some(a), Some(b)) = (present.next(), present.next()) {
        return Err(format!("Combining {a} and {b} is not supported yet"));
    }
    Ok(())
}

fn check_ports_icmps(to_ports: &[PortRule], icmps: &[IcmpRule]) -> Result<(), String> {
    if !to_ports.is_empty() && !icmps.is_empty() {
        return Err("The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts.".into());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIngressRule {
    #[serde(default)]
    from_endpoints: Option<Vec<EndpointSelector>>,
    #[serde(default, rename = "fromCIDR")]
    from_cidr: Option<Vec<Cidr>>,
    #[serde(default, rename = "fromCIDRSet")]
    from_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default)]
    from_entities: Option<Vec<Entity>>,
    #[serde(default)]
    from_nodes: Option<Vec<EndpointSelector>>,
    #[serde(default, deserialize_with = "ns_from_groups")]
    from_groups: Option<Never>,
    #[serde(default, deserialize_with = "rm_from_requires")]
    from_requires: Option<Never>,
    #[serde(default)]
    to_ports: Option<Vec<PortRule>>,
    #[serde(default)]
    icmps: Option<Vec<IcmpRule>>,
    #[serde(default)]
    authentication: Option<Authentication>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIngressDenyRule {
    #[serde(default)]
    from_endpoints: Option<Vec<EndpointSelector>>,
    #[serde(default, rename = "fromCIDR")]
    from_cidr: Option<Vec<Cidr>>,
    #[serde(default, rename = "fromCIDRSet")]
    from_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default)]
    from_entities: Option<Vec<Entity>>,
    #[serde(default)]
    from_nodes: Option<Vec<EndpointSelector>>,
    #[serde(default, deserialize_with = "ns_from_groups")]
    from_groups: Option<Never>,
    #[serde(default, deserialize_with = "rm_from_requires")]
    from_requires: Option<Never>,
    #[serde(default)]
    to_ports: Option<Vec<PortDenyRule>>,
    #[serde(default)]
    icmps: Option<Vec<IcmpRule>>,
}

fn ingress_rule(rule: IngressRule) -> Result<IngressRule, String> {
    let IngressRule {
        from_endpoints,
        from_cidr,
        from_cidr_set,
        from_entities,
        from_nodes,
        to_ports,
        icmps,
        authentication,
    } = rule;
    check_exclusive(&[
        ("FromEndpoints", len(&from_endpoints)),
        ("FromCIDR", len(&from_cidr)),
        ("FromCIDRSet", len(&from_cidr_set)),
        ("FromEntities", len(&from_entities)),
        ("FromNodes", len(&from_nodes)),
    ])?;
    // `IngressRule.sanitize`: l7IngressSupport has DNS false.
    if to_ports
        .iter()
        .any(|p| p.rules.as_ref().is_some_and(L7Rules::has_dns))
    {
        return Err("L7 protocol DNS is not supported on ingress yet".into());
    }
    check_ports_icmps(&to_ports, &icmps)?;
    Ok(IngressRule {
        from_endpoints,
        from_cidr,
        from_cidr_set,
        from_entities,
        from_nodes,
        to_ports,
        icmps,
        authentication,
    })
}

impl TryFrom<RawIngressRule> for IngressRule {
    type Error = String;
    fn try_from(r: RawIngressRule) -> Result<Self, String> {
        never_set(&[r.from_groups, r.from_requires]);
        ingress_rule(IngressRule {
            from_endpoints: r.from_endpoints,
            from_cidr: r.from_cidr,
            from_cidr_set: r.from_cidr_set,
            from_entities: r.from_entities,
            from_nodes: r.from_nodes,
            to_ports: r.to_ports.unwrap_or_default(),
            icmps: r.icmps.unwrap_or_default(),
            authentication: r.authentication.map(|a| a.0),
        })
    }
}
validated_map!(IngressRule, RawIngressRule, "an ingress rule");

/// An `ingressDeny` entry, parsed with the deny rule's narrower field set.
struct IngressDeny(IngressRule);

impl TryFrom<RawIngressDenyRule> for IngressDeny {
    type Error = String;
    fn try_from(r: RawIngressDenyRule) -> Result<Self, String> {
        never_set(&[r.from_groups, r.from_requires]);
        ingress_rule(IngressRule {
            from_endpoints: r.from_endpoints,
            from_cidr: r.from_cidr,
            from_cidr_set: r.from_cidr_set,
            from_entities: r.from_entities,
            from_nodes: r.from_nodes,
            to_ports: r
                .to_ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect(),
            icmps: r.icmps.unwrap_or_default(),
            authentication: None,
        })
        .map(IngressDeny)
    }
}
validated_map!(IngressDeny, RawIngressDenyRule, "an ingress deny rule");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEgressRule {
    #[serde(default)]
    to_endpoints: Option<Vec<EndpointSelector>>,
    #[serde(default, rename = "toCIDR")]
    to_cidr: Option<Vec<Cidr>>,
    #[serde(default, rename = "toCIDRSet")]
    to_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default)]
    to_entities: Option<Vec<Entity>>,
    #[serde(default)]
    to_services: Option<Vec<ServiceRule>>,
    #[serde(default)]
    to_nodes: Option<Vec<EndpointSelector>>,
    #[serde(default, deserialize_with = "ns_to_groups")]
    to_groups: Option<Never>,
    #[serde(default, deserialize_with = "rm_to_requires")]
    to_requires: Option<Never>,
    #[serde(default, rename = "toFQDNs")]
    to_fqdns: Option<Vec<FqdnSelector>>,
    #[serde(default)]
    to_ports: Option<Vec<PortRule>>,
    #[serde(default)]
    icmps: Option<Vec<IcmpRule>>,
    #[serde(default)]
    authentication: Option<Authentication>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEgressDenyRule {
    #[serde(default)]
    to_endpoints: Option<Vec<EndpointSelector>>,
    #[serde(default, rename = "toCIDR")]
    to_cidr: Option<Vec<Cidr>>,
    #[serde(default, rename = "toCIDRSet")]
    to_cidr_set: Option<Vec<CidrRule>>,
    #[serde(default)]
    to_entities: Option<Vec<Entity>>,
    #[serde(default)]
    to_services: Option<Vec<ServiceRule>>,
    #[serde(default)]
    to_nodes: Option<Vec<EndpointSelector>>,
    #[serde(default, deserialize_with = "ns_to_groups")]
    to_groups: Option<Never>,
    #[serde(default, deserialize_with = "rm_to_requires")]
    to_requires: Option<Never>,
    #[serde(default)]
    to_ports: Option<Vec<PortDenyRule>>,
    #[serde(default)]
    icmps: Option<Vec<IcmpRule>>,
}

/// `EgressCommonRule.sanitize` with `EgressRule.l3Members` (ToFQDNs is one of them): the peer
/// kinds are exclusive, and ports/ICMPs are checked as for ingress.
fn egress_rule(rule: EgressRule) -> Result<EgressRule, String> {
    check_exclusive(&[
        ("ToEndpoints", len(&rule.to_endpoints)),
        ("ToCIDR", len(&rule.to_cidr)),
        ("ToCIDRSet", len(&rule.to_cidr_set)),
        ("ToEntities", len(&rule.to_entities)),
        ("ToNodes", len(&rule.to_nodes)),
        ("ToFQDNs", len(&rule.to_fqdns)),
        ("ToServices", len(&rule.to_services)),
    ])?;
    check_ports_icmps(&rule.to_ports, &rule.icmps)?;
    Ok(rule)
}

impl TryFrom<RawEgressRule> for EgressRule {
    type Error = String;
    fn try_from(r: RawEgressRule) -> Result<Self, String> {
        never_set(&[r.to_groups, r.to_requires]);
        egress_rule(EgressRule {
            to_endpoints: r.to_endpoints,
            to_cidr: r.to_cidr,
            to_cidr_set: r.to_cidr_set,
            to_entities: r.to_entities,
            to_nodes: r.to_nodes,
            to_fqdns: r.to_fqdns,
            to_services: r.to_services,
            to_ports: r.to_ports.unwrap_or_default(),
            icmps: r.icmps.unwrap_or_default(),
            authentication: r.authentication.map(|a| a.0),
        })
    }
}
validated_map!(EgressRule, RawEgressRule, "an egress rule");

/// An `egressDeny` entry, parsed with the deny rule's narrower field set.
struct EgressDeny(EgressRule);

impl TryFrom<RawEgressDenyRule> for EgressDeny {
    type Error = String;
    fn try_from(r: RawEgressDenyRule) -> Result<Self, String> {
        never_set(&[r.to_groups, r.to_requires]);
        egress_rule(EgressRule {
            to_endpoints: r.to_endpoints,
            to_cidr: r.to_cidr,
            to_cidr_set: r.to_cidr_set,
            to_entities: r.to_entities,
            to_nodes: r.to_nodes,
            to_fqdns: None,
            to_services: r.to_services,
            to_ports: r
                .to_ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect(),
            icmps: r.icmps.unwrap_or_default(),
            authentication: None,
        })
        .map(EgressDeny)
    }
}
validated_map!(EgressDeny, RawEgressDenyRule, "an egress deny rule");

/// A `fromCIDRSet`/`toCIDRSet` entry: a prefix, a CiliumCIDRGroup by name, or CIDR groups
/// by label (exactly one, `CIDRRule.sanitize`), and exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrRule {
    pub peer: CidrPeer,
    /// `except`. With `cidr` each lies inside it (checked); with a group Cilium checks
    /// nothing (`sanitize` returns before the check) and the exceptions apply to the
    /// group's addresses.
    pub except: Vec<Cidr>,
}

/// What a [`CidrRule`] selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrPeer {
    /// `cidr`.
    Cidr(Cidr),
    /// `cidrGroupRef`: the CiliumCIDRGroup of that name (a DNS subdomain).
    GroupRef(String),
    /// `cidrGroupSelector`: every CiliumCIDRGroup whose labels match. Keys without a source
    /// get `cidrgroup:` (`NewESFromK8sLabelSelector(LabelSourceCIDRGroupKeyPrefix, ...)`).
    GroupSelector(EndpointSelector),
}

impl fmt::Display for CidrRule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.peer {
            CidrPeer::Cidr(c) => write!(f, "{c}")?,
            CidrPeer::GroupRef(name) => write!(f, "cidrGroupRef {name}")?,
            CidrPeer::GroupSelector(sel) => write!(f, "cidrGroupSelector {}", sel.0)?,
        }
        for e in &self.except {
            write!(f, " except {e}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCidrRule {
    #[serde(default)]
    cidr: Option<PrefixCidr>,
    #[serde(default)]
    except: Option<Vec<PrefixCidr>>,
    #[serde(default)]
    cidr_group_ref: Option<String>,
    #[serde(default)]
    cidr_group_selector: Option<EndpointSelector>,
}

impl TryFrom<RawCidrRule> for CidrRule {
    type Error = String;
    fn try_from(r: RawCidrRule) -> Result<Self, String> {
        // `omitempty`: an empty string is no reference.
        let group_ref = r.cidr_group_ref.filter(|s| !s.is_empty());
        let set = usize::from(r.cidr.is_some())
            + usize::from(group_ref.is_some())
            + usize::from(r.cidr_group_selector.is_some());
        if set == 0 {
            return Err("one of cidr, cidrGroupRef, or cidrGroupSelector is required".into());
        }
        if set > 1 {
            return Err(
                "more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set".into(),
            );
        }
        let except: Vec<Cidr> = r
            .except
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.0)
            .collect();
        let peer = match (r.cidr, group_ref, r.cidr_group_selector) {
            (Some(PrefixCidr(cidr)), _, _) => {
                for e in &except {
                    if !cidr.contains(e) {
                        return Err(format!(
                            "allow CIDR prefix {cidr} does not contain exclude CIDR prefix {e}"
                        ));
                    }
                }
                CidrPeer::Cidr(cidr)
            }
            (None, Some(name), _) => {
                // `CIDRGroupRef`: `MaxLength=253` and the DNS-subdomain pattern.
                check_dns_subdomain(&name)
                    .map_err(|e| format!("cidrGroupRef: Invalid value: {name:?}: {e}"))?;
                CidrPeer::GroupRef(name)
            }
            (None, None, Some(sel)) => CidrPeer::GroupSelector(sel),
            (None, None, None) => {
                return Err("one of cidr, cidrGroupRef, or cidrGroupSelector is required".into())
            }
        };
        Ok(CidrRule { peer, except })
    }
}
validated_map!(CidrRule, RawCidrRule, "a CIDR rule");

/// A `toPorts` entry: up to [`MAX_PORTS`] ports and optional L7 `rules` (`http` or `dns`).
/// `serverNames`, `listener` and the TLS contexts are validated, then refused as not
/// supported yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortRule {
    pub ports: Vec<PortProtocol>,
    /// The L7 rules, `None` when absent or empty (`L7Rules.IsEmpty`: no redirect).
    pub rules: Option<L7Rules>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPortRule {
    #[serde(default)]
    ports: Option<Vec<PortProtocol>>,
    #[serde(default)]
    rules: Option<L7Rules>,
    #[serde(default)]
    server_names: Option<Vec<String>>,
    #[serde(default, deserialize_with = "ns_listener")]
    listener: Option<Never>,
    #[serde(default, rename = "terminatingTLS")]
    terminating_tls: Option<TlsContext>,
    #[serde(default, rename = "originatingTLS")]
    originating_tls: Option<TlsContext>,
}

fn port_rule(ports: Option<Vec<PortProtocol>>) -> Result<PortRule, String> {
    let ports = ports.unwrap_or_default();
    if ports.len() > MAX_PORTS {
        return Err(format!("too many ports, the max is {MAX_PORTS}"));
    }
    Ok(PortRule { ports, rules: None })
}

impl TryFrom<RawPortRule> for PortRule {
    type Error = String;
    /// `PortRule.sanitize` (`pkg/policy/api/rule_validation.go`), in its order.
    fn try_from(r: RawPortRule) -> Result<Self, String> {
        never_set(&[r.listener]);
        let rules = r.rules.filter(|l7| !l7.is_empty());
        let server_names = r.server_names.unwrap_or_default();
        if !server_names.is_empty() && rules.is_some() && r.terminating_tls.is_none() {
            return Err("ServerNames are not allowed with L7 rules without TLS termination".into());
        }
        if server_names.iter().any(String::is_empty) {
            return Err("empty server name is not allowed".into());
        }
        let mut out = port_rule(r.ports)?;
        let has_dns = rules.as_ref().is_some_and(L7Rules::has_dns);
        let mut have_zero_port = false;
        for pp in &out.ports {
            if let Port::Number(n) = pp.port {
                have_zero_port |= n == 0;
                if has_dns && pp.end_port.is_some_and(|e| e > n) {
                    return Err("DNS rules do not support port ranges".into());
                }
            }
            if rules.is_some() && !has_dns && pp.protocol != Protocol::Tcp {
                return Err(format!(
                    "L7 rules can only apply to TCP (not {}) except for DNS rules",
                    pp.protocol
                ));
            }
        }
        if let Some(l7) = &rules {
            if have_zero_port {
                return Err("L7 rules can not be used when a port is 0".into());
            }
            // `L7Rules.sanitize`.
            if l7.dns.is_some() && out.ports.is_empty() {
                return Err("port 53 must be specified for DNS rules".into());
            }
            if l7.http.is_some() && l7.dns.is_some() {
                return Err("multiple L7 protocol rule types specified in single rule".into());
            }
        }
        // Valid as Cilium sees it; what verdict does not simulate yet is refused here.
        if !server_names.is_empty() {
            return Err("not supported yet: serverNames (TLS SNI filtering)".into());
        }
        if r.terminating_tls.is_some() {
            return Err("not supported yet: terminatingTLS".into());
        }
        if r.originating_tls.is_some() {
            return Err("not supported yet: originatingTLS".into());
        }
        out.rules = rules;
        Ok(out)
    }
}
validated_map!(PortRule, RawPortRule, "a toPorts entry");

/// A deny rule's `toPorts` entry (only `ports`).
struct PortDenyRule(PortRule);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPortDenyRule {
    #[serde(default)]
    ports: Option<Vec<PortProtocol>>,
}

impl TryFrom<RawPortDenyRule> for PortDenyRule {
    type Error = String;
    fn try_from(r: RawPortDenyRule) -> Result<Self, String> {
        port_rule(r.ports).map(PortDenyRule)
    }
}
validated_map!(PortDenyRule, RawPortDenyRule, "a toPorts entry");

/// One port: a number (0 = all ports) or a named port, an optional range end, a protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortProtocol {
    pub port: Port,
    /// The last port of a range (`endPort`), only with a numeric `port`; `None` when absent
    /// or 0.
    pub end_port: Option<u16>,
    pub protocol: Protocol,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.end_port {
            Some(end) => write!(f, "{}-{end}/{}", self.port, self.protocol),
            None => write!(f, "{}/{}", self.port, self.protocol),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPortProtocol {
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    end_port: Option<i64>,
    #[serde(default)]
    protocol: Option<Protocol>,
}

impl TryFrom<RawPortProtocol> for PortProtocol {
    type Error = String;
    fn try_from(r: RawPortProtocol) -> Result<Self, String> {
        let Some(port) = r.port else {
            return Err("Port must be specified".into());
        };
        let end_port = match r.end_port {
            None | Some(0) => None,
            Some(e) => {
                let start = match &port {
                    Port::Name(name) => {
                        return Err(format!(
                            "endPort {e} cannot be used with the named port {name:?}"
                        ))
                    }
                    Port::Number(n) => *n,
                };
                let Ok(end) = u16::try_from(e) else {
                    return Err(format!("endPort {e} must be between 0 and 65535"));
                };
                if end < start {
                    return Err(format!(
                        "endPort {end} must be greater than or equal to port {start}"
                    ));
                }
                Some(end)
            }
        };
        Ok(PortProtocol {
            port,
            end_port,
            protocol: r.protocol.unwrap_or_default(),
        })
    }
}
validated_map!(PortProtocol, RawPortProtocol, "a port");

/// An `icmps` entry: up to [`MAX_ICMP_FIELDS`] fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IcmpRule {
    pub fields: Vec<IcmpField>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIcmpRule {
    #[serde(default)]
    fields: Option<Vec<IcmpField>>,
}

impl TryFrom<RawIcmpRule> for IcmpRule {
    type Error = String;
    fn try_from(r: RawIcmpRule) -> Result<Self, String> {
        let fields = r.fields.unwrap_or_default();
        if fields.len() > MAX_ICMP_FIELDS {
            return Err(format!("too many types, the max is {MAX_ICMP_FIELDS}"));
        }
        Ok(IcmpRule { fields })
    }
}
validated_map!(IcmpRule, RawIcmpRule, "an icmps entry");

/// One ICMP field, its type resolved to a code (names per Cilium's table for the family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IcmpField {
    pub family: IcmpFamily,
    pub icmp_type: u8,
}

impl fmt::Display for IcmpField {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let proto = match self.family {
            IcmpFamily::IPv4 => "ICMP",
            IcmpFamily::IPv6 => "ICMPv6",
        };
        write!(f, "{proto} type {}", self.icmp_type)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawIcmpField {
    #[serde(default)]
    family: Option<IcmpFamily>,
    #[serde(rename = "type")]
    icmp_type: RawIcmpType,
}

impl TryFrom<RawIcmpField> for IcmpField {
    type Error = String;
    fn try_from(r: RawIcmpField) -> Result<Self, String> {
        let family = r.family.unwrap_or_default();
        let icmp_type = match r.icmp_type {
            RawIcmpType::Code(c) => c,
            RawIcmpType::Name(name) => icmp_type_code(family, &name)
                .ok_or_else(|| format!("ICMP type {name} not found in {family}"))?,
        };
        Ok(IcmpField { family, icmp_type })
    }
}
validated_map!(IcmpField, RawIcmpField, "an ICMP field");
