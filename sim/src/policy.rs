//! Internal policy entries and the policy repository.
//!
//! Every CNP/CCNP/KNP rule item is translated (by `translate`) into [`PolicyEntry`] values,
//! Cilium's internal form (`pkg/policy/types` PolicyEntry, spec §4.2): a subject selector,
//! a direction, allow or deny, peer selectors, port/protocol filters, and whether it makes
//! its direction default-deny. The oracle and the policy compiler both read these entries and
//! nothing else of the manifests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::{FqdnSelector, HttpRule};
use crate::cluster::Protocol;
use crate::selector::Selector;
use crate::verdict::Direction;

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleVerdict {
    Allow,
    Deny,
}

/// The peers of an entry (spec §4.2 "L3 selectors").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peers {
    /// A peer field present but empty (`fromEndpoints: []`): selects nothing, even with ports.
    Nothing,
    /// No peer field: with ports, every identity (an L4-only rule); without, no filter.
    Unrestricted,
    /// The union of these selectors.
    Selectors(Vec<Selector>),
}

/// A destination port filter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortSpec {
    /// `start..=end`; `start == 0` means every port (spec §4.3 `PortRangeToMaskedPorts`);
    /// `end <= start` means the single port `start`.
    Range { start: u16, end: u16 },
    /// A named container port, resolved per endpoint (spec §4.3).
    Named(String),
}

impl PortSpec {
    pub fn is_wildcard(&self) -> bool {
        matches!(self, PortSpec::Range { start: 0, .. })
    }
    /// Whether this is exactly the single port `port` (not a range or the wildcard port that
    /// contains it): the L4 filter Cilium keys by that port alone (`pkg/policy/l4.go`).
    pub fn is_single(&self, port: u16) -> bool {
        matches!(*self, PortSpec::Range { start, end } if start == port && port != 0 && end <= start)
    }
    /// Whether a numeric port falls in this range (named ports never match here).
    pub fn contains(&self, port: u16) -> bool {
        match *self {
            PortSpec::Range { start: 0, .. } => true,
            PortSpec::Range { start, end } => port >= start && port <= end.max(start),
            PortSpec::Named(_) => false,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Range { start: 0, .. } => f.write_str("*"),
            PortSpec::Range { start, end } if end > start => write!(f, "{start}-{end}"),
            PortSpec::Range { start, .. } => write!(f, "{start}"),
            PortSpec::Named(n) => f.write_str(n),
        }
    }
}

/// One protocol + port filter. `ANY` is expanded to TCP, UDP and SCTP before it gets here
/// (spec §1.2); ICMP types are ports of the ICMP protocols (spec §1.3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortProto {
    pub protocol: Protocol,
    pub port: PortSpec,
}

impl fmt::Display for PortProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// The proxy a redirected connection goes to (`pkg/policy/l4.go` `L7ParserType`; TLS, CRD and
/// Kafka parsers are not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L7Parser {
    Http,
    Dns,
}

impl L7Parser {
    /// `L7ParserType.defaultPriority` (`pkg/policy/l4.go`): the listener priority that goes
    /// into the low byte of a redirect entry's precedence.
    pub fn listener_priority(self) -> u8 {
        match self {
            L7Parser::Http => 101,
            L7Parser::Dns => 121,
        }
    }
}

impl fmt::Display for L7Parser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L7Parser::Http => "http",
            L7Parser::Dns => "dns",
        })
    }
}

/// The L7 rules one policy entry attaches to one port (`PerSelectorPolicy.L7Rules`): the
/// requests the proxy lets through. `wildcard` adds the allow-everything rule Cilium appends
/// when an L4-only rule of the same entry names the same port (`mergePortProto`,
/// `appendL7WildcardRule`) or when the rule does not make its direction default-deny
/// (`createL4Filter`, `ensureWildcard`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Policy {
    pub parser: L7Parser,
    pub http: Vec<HttpRule>,
    pub dns: Vec<FqdnSelector>,
    pub wildcard: bool,
}

/// The auth type a rule requires (`pkg/policy/types` `AuthType`; `getAuthType`,
/// `pkg/policy/l4.go`): `authentication.mode` disabled is 0, required is spire (1),
/// test-always-fail is 2. These are the numbers of the policy entry's `auth_type` bits and of
/// the auth map key (`bpf/lib/common.h` `struct auth_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthType {
    Disabled = 0,
    Spire = 1,
    AlwaysFail = 2,
}

impl AuthType {
    pub fn from_mode(m: crate::api::AuthenticationMode) -> AuthType {
        match m {
            crate::api::AuthenticationMode::Disabled => AuthType::Disabled,
            crate::api::AuthenticationMode::Required => AuthType::Spire,
            crate::api::AuthenticationMode::TestAlwaysFail => AuthType::AlwaysFail,
        }
    }
    pub fn number(self) -> u8 {
        self as u8
    }
    pub fn from_number(n: u8) -> Option<AuthType> {
        Some(match n {
            0 => AuthType::Disabled,
            1 => AuthType::Spire,
            2 => AuthType::AlwaysFail,
            _ => return None,
        })
    }
}

/// `AuthType.String` (`pkg/policy/types/auth.go`): `disabled`, `spire`, `test-always-fail`.
impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthType::Disabled => "disabled",
            AuthType::Spire => "spire",
            AuthType::AlwaysFail => "test-always-fail",
        })
    }
}

/// The kind of a policy object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            PolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
        }
    }
    pub fn parse(s: &str) -> Option<PolicyKind> {
        Some(match s {
            "NetworkPolicy" => PolicyKind::NetworkPolicy,
            "CiliumNetworkPolicy" => PolicyKind::CiliumNetworkPolicy,
            "CiliumClusterwideNetworkPolicy" => PolicyKind::CiliumClusterwideNetworkPolicy,
            _ => return None,
        })
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a policy object: kind, namespace (none for CCNP) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Where an entry came from: the object, the rule (index in `specs`, 0 for `spec` and KNP),
/// the section (`ingress`, `egressDeny`, ...) and the item's index in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleOrigin {
    pub policy: PolicyRef,
    pub rule: usize,
    pub section: &'static str,
    pub item: usize,
    /// The rule's `log.value` (CNP/CCNP), which Hubble reports as `policy_log` on the flows
    /// the rule decides (`pkg/policy/correlation`).
    pub log: Option<String>,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rule {} {}[{}]",
            self.policy, self.rule, self.section, self.item
        )
    }
}

/// One internal policy entry (spec §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyEntry {
    pub subject: Selector,
    pub direction: Direction,
    pub verdict: RuleVerdict,
    pub peers: Peers,
    /// Empty: every protocol and port, ICMP included (an L3-only rule).
    pub ports: Vec<PortProto>,
    /// The ports of `ports` that carry L7 rules, with those rules (allow entries only;
    /// sorted by port). A connection the entry allows on such a port is redirected to the
    /// parser's proxy.
    pub l7: Vec<(PortProto, L7Policy)>,
    pub default_deny: bool,
    /// The rule's `authentication.mode` as an auth type (allow entries only); `None` when
    /// the rule has none, so the type of a broader entry may apply (`AuthRequirement`'s
    /// explicit bit clear).
    pub auth: Option<AuthType>,
    /// A host policy entry (`nodeSelector`; Cilium's `PolicyEntry.Node`): its subject is
    /// matched against the host endpoint's labels only, and an endpoint rule never selects
    /// the host (`pkg/policy/rule.go` `matchesSubject`).
    pub node: bool,
    pub origin: RuleOrigin,
}

impl PolicyEntry {
    /// Whether the entry can match any traffic at all (`ingress: [{}]` only sets default deny).
    /// The L7 rules this entry attaches to a port (exact port/protocol spec).
    pub fn l7_for(&self, pp: &PortProto) -> Option<&L7Policy> {
        self.l7.iter().find(|(p, _)| p == pp).map(|(_, l)| l)
    }

    pub fn has_filter(&self) -> bool {
        match &self.peers {
            Peers::Nothing => false,
            Peers::Unrestricted => !self.ports.is_empty(),
            Peers::Selectors(s) => !s.is_empty(),
        }
    }
}

/// Every policy object in force, by kind/namespace/name; applying an object with the same
/// identity replaces it, as `kubectl apply` does.
#[derive(Clone, Debug, Default)]
pub struct Repository {
    policies: BTreeMap<PolicyRef, Vec<PolicyEntry>>,
    /// Policy objects by namespace (`None`: cluster-wide). A CNP's or KNP's subject always
    /// carries its own namespace (spec §2.1, §1.5), so it can only select pods there.
    by_namespace: BTreeMap<Option<String>, BTreeSet<PolicyRef>>,
    revision: u64,
}

impl Repository {
    pub fn apply(&mut self, key: PolicyRef, entries: Vec<PolicyEntry>) {
        self.by_namespace
            .entry(key.namespace.clone())
            .or_default()
            .insert(key.clone());
        self.policies.insert(key, entries);
        self.revision += 1;
    }
    pub fn delete(&mut self, key: &PolicyRef) -> bool {
        let removed = self.policies.remove(key).is_some();
        if removed {
            if let Some(set) = self.by_namespace.get_mut(&key.namespace) {
                set.remove(key);
            }
            self.revision += 1;
        }
        removed
    }
    /// The entries that may select a pod of `namespace`: that namespace's CNPs and KNPs and
    /// every CCNP, in policy order.
    pub fn entries_for_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a PolicyEntry> + 'a {
        let mut refs: Vec<&PolicyRef> = self
            .by_namespace
            .get(&Some(namespace.to_string()))
            .into_iter()
            .chain(self.by_namespace.get(&None))
            .flatten()
            .collect();
        refs.sort();
        refs.into_iter()
            .filter_map(|r| self.policies.get(r))
            .flatten()
    }
    pub fn revision(&self) -> u64 {
        self.revision
    }
    pub fn policies(&self) -> impl Iterator<Item = (&PolicyRef, &[PolicyEntry])> {
        self.policies.iter().map(|(k, v)| (k, v.as_slice()))
    }
    pub fn entries(&self) -> impl Iterator<Item = &PolicyEntry> {
        self.policies.values().flatten()
    }
    pub fn len(&self) -> usize {
        self.policies.len()
    }
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
    pub fn contains(&self, key: &PolicyRef) -> bool {
        self.policies.contains_key(key)
    }
}
