//! The scenario file format (`../shared/spec/scenario-format.md`, with the extensions and
//! conventions of `docs/model.md` and `docs/propagation.md`): parsing and validation, with
//! errors that name the file, the line and the field. Replaying a scenario is `engine`'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::api::{self, Manifest, ManifestError};
use crate::cluster::Protocol;
use crate::verdict::{Direction, DropReason, MatchType};

/// Scenario files larger than this are refused before parsing (a guard against runaway
/// generated files; the biggest suite file is a few KiB).
pub const MAX_SCENARIO_BYTES: usize = 16 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub seed: u64,
    /// Control-plane propagation delays (an extension; `docs/propagation.md`). Absent: every
    /// change reaches every node before the next step.
    #[serde(default)]
    pub propagation: Option<Propagation>,
    /// Agent options that differ from Cilium's defaults (an extension; `docs/model.md`).
    #[serde(default)]
    pub agent: AgentDecl,
    #[serde(default)]
    pub cluster: ClusterDecl,
    #[serde(default)]
    pub policies: Vec<PolicySource>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Properties checked after the initial state and every step, on every backend (a format
    /// extension: scenarios/README.md; `verdict audit`).
    #[serde(default)]
    pub invariants: Vec<crate::invariant::InvariantDecl>,
}

/// `agent:`: the cilium-agent flags verdict models, spelled as the flags are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentDecl {
    /// `--tofqdns-min-ttl` (seconds; Cilium's default 0).
    #[serde(default)]
    pub tofqdns_min_ttl: Option<u32>,
    /// `--tofqdns-idle-connection-grace-period` (a duration; default 0s).
    #[serde(default)]
    pub tofqdns_idle_connection_grace_period: Option<DurationDecl>,
    /// `--enable-host-firewall` (default false): host policies (`nodeSelector`) are enforced
    /// on each node's host endpoint.
    #[serde(default)]
    pub enable_host_firewall: bool,
    /// `--enable-node-selector-labels` (default false): remote nodes get identities by their
    /// labels, which `fromNodes`/`toNodes` select; without it the agent refuses those fields.
    #[serde(default)]
    pub enable_node_selector_labels: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDecl {
    #[serde(default)]
    pub nodes: Vec<NodeDecl>,
    #[serde(default)]
    pub namespaces: Vec<NamespaceDecl>,
    #[serde(default)]
    pub pods: Vec<PodDecl>,
    #[serde(default)]
    pub externals: Vec<ExternalDecl>,
    /// Extension: Kubernetes Services (cluster IPs and their backends; `docs/model.md`).
    #[serde(default)]
    pub services: Vec<ServiceDecl>,
    /// Extension: what the cluster's DNS server answers, and which pod it is.
    #[serde(default)]
    pub dns: Vec<DnsDecl>,
}

/// A `cluster.dns` entry: a name and its addresses (`ttl` seconds, default 300), or
/// `{name, pod}` naming the pod that serves DNS (the name then resolves to that pod).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsDecl {
    pub name: String,
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub pod: Option<String>,
}

/// An HTTP request of a probe (`http:`): method (default GET), path (default `/`), host
/// (default: the destination as written, with `:port` unless the port is 80) and headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDecl {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A node: a bare name, or `{name, ip, labels}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDecl {
    pub name: String,
    pub ip: Option<IpAddr>,
    /// Extension: the node's labels (nodeSelector, fromNodes/toNodes).
    pub labels: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for NodeDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: String,
            #[serde(default)]
            ip: Option<IpAddr>,
            #[serde(default)]
            labels: BTreeMap<String, String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NodeDecl;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a node name or {name, ip, labels}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeDecl, E> {
                Ok(NodeDecl {
                    name: v.to_string(),
                    ip: None,
                    labels: BTreeMap::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NodeDecl, A::Error> {
                let f = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(NodeDecl {
                    name: f.name,
                    ip: f.ip,
                    labels: f.labels,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDecl {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodDecl {
    pub name: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ContainerPortDecl>,
    /// Extension: the pod's `serviceAccountName` (default `default`), which Cilium exposes as
    /// the `io.cilium.k8s.policy.serviceaccount` label (docs/model.md).
    #[serde(default, rename = "serviceAccount")]
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerPortDecl {
    pub name: String,
    pub port: u16,
    #[serde(default = "default_tcp")]
    pub protocol: ProtocolDecl,
}

fn default_tcp() -> ProtocolDecl {
    ProtocolDecl(Protocol::Tcp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalDecl {
    pub name: String,
    pub ip: IpAddr,
}

/// A Service (format extension): `ns/name`, backends by `selector` or fixed `endpoints`,
/// its ports, and an optional cluster IP (`None` for a headless service).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    pub name: String,
    /// `spec.selector`: the pods of the service's namespace whose labels include all of these.
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// Fixed backend addresses (a service without a selector and its EndpointSlice).
    #[serde(default)]
    pub endpoints: Option<Vec<IpAddr>>,
    #[serde(default)]
    pub ports: Vec<ServicePortDecl>,
    /// `spec.clusterIP`: an address in the service CIDR, or `None` (headless).
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// `metadata.labels` of the Service (k8sServiceSelector selects services by them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePortDecl {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    /// A number or a container port name; default: `port`.
    #[serde(default, rename = "targetPort")]
    pub target_port: Option<TargetPortDecl>,
    #[serde(default = "default_tcp")]
    pub protocol: ProtocolDecl,
}

/// A service port's `targetPort`: int-or-string, as in the Service API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPortDecl {
    Number(u16),
    Name(String),
}

impl<'de> Deserialize<'de> for TargetPortDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetPortDecl;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number (1-65535) or a container port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TargetPortDecl, E> {
                u16::try_from(v)
                    .ok()
                    .filter(|p| *p != 0)
                    .map(TargetPortDecl::Number)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "targetPort {v} must be between 1 and 65535, inclusive"
                        ))
                    })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TargetPortDecl, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "targetPort {v} must be between 1 and 65535, inclusive"
                    )));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetPortDecl, E> {
                // A numeric string is a number (intstr.Parse); a name is checked later.
                match v.parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Ok(TargetPortDecl::Name(v.to_string())),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A protocol name as probes spell it (TCP, UDP, SCTP, ICMP, ICMPv6; any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolDecl(pub Protocol);

impl<'de> Deserialize<'de> for ProtocolDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Protocol::parse(&s).map(ProtocolDecl).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown protocol {s:?}: expected TCP, UDP, SCTP, ICMP or ICMPv6"
            ))
        })
    }
}

/// Where a policy comes from: a file (relative to the scenario) or an inline manifest.
#[derive(Debug)]
pub enum PolicySource {
    File(String),
    Inline(Box<Manifest>),
}

impl<'de> Deserialize<'de> for PolicySource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PolicySource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{file: path} or a policy manifest")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PolicySource, A::Error> {
                let Some(first) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty policy: expected {file: path} or a manifest",
                    ));
                };
                if first == "file" {
                    let path: String = map.next_value()?;
                    if let Some(k) = map.next_key::<String>()? {
                        return Err(de::Error::custom(format!(
                            "unknown field `{k}` next to `file` (a policy is either {{file: path}} or a manifest)"
                        )));
                    }
                    return Ok(PolicySource::File(path));
                }
                api::manifest_from_map(first, map).map(|m| PolicySource::Inline(Box::new(m)))
            }
        }
        // An inline manifest is read as kubectl reads it (any key order, YAML 1.1 scalars,
        // strings only where Kubernetes wants strings).
        crate::yaml::de::deserialize_k8s_object(d, V)
    }
}

/// How long a control-plane change (policy apply/delete, pod create/delete, relabel) takes to
/// reach each node's datapath: a mapping with exactly one key (`docs/propagation.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Propagation {
    /// `fixed: 2s`: every node, every change.
    Fixed(u64),
    /// `uniform: {min: 1s, max: 5s}`: drawn per change and node from the scenario's `seed`,
    /// in whole milliseconds, both bounds included.
    Uniform { min: u64, max: u64 },
    /// `per-node: {node-1: 0s, node-2: 3s}`: a fixed delay per node; every node of the
    /// cluster must be listed.
    PerNode(BTreeMap<String, u64>),
}

/// The propagation kinds, as written in scenario files.
pub const PROPAGATION_KINDS: &[&str] = &["fixed", "uniform", "per-node"];

impl<'de> Deserialize<'de> for Propagation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Uniform {
            min: DurationDecl,
            max: DurationDecl,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Propagation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "{fixed: 2s}, {uniform: {min: 1s, max: 5s}} or {per-node: {node-1: 0s}}",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Propagation, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty propagation: expected one of fixed, uniform, per-node",
                    ));
                };
                let p = match kind.as_str() {
                    "fixed" => Propagation::Fixed(map.next_value::<DurationDecl>()?.0),
                    "uniform" => {
                        let u: Uniform = map.next_value()?;
                        if u.min.0 > u.max.0 {
                            return Err(de::Error::custom("uniform: min is larger than max"));
                        }
                        Propagation::Uniform {
                            min: u.min.0,
                            max: u.max.0,
                        }
                    }
                    "per-node" => {
                        let m: BTreeMap<String, DurationDecl> = map.next_value()?;
                        Propagation::PerNode(m.into_iter().map(|(k, v)| (k, v.0)).collect())
                    }
                    other => return Err(de::Error::unknown_variant(other, PROPAGATION_KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "propagation has exactly one kind; `{extra}` follows `{kind}`"
                    )));
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// One step of the timeline: a mapping with exactly one key, the step kind.
#[derive(Debug)]
pub enum Step {
    Expect(Vec<Probe>),
    ExpectMatrix(MatrixDecl),
    Apply(PolicySource),
    Delete(DeleteDecl),
    CreatePod(PodDecl),
    DeletePod(String),
    LabelPod(LabelPodDecl),
    LabelNamespace(LabelNamespaceDecl),
    Connect(ConnectDecl),
    Send(SendDecl),
    Advance(DurationDecl),
    Authenticate(AuthenticateDecl),
    /// A DNS lookup with no expectation (`dns-lookup: {from, name}`).
    DnsLookup(DnsLookupDecl),
}

/// The step kinds, as written in scenario files.
pub const STEP_KINDS: &[&str] = &[
    "expect",
    "expect-matrix",
    "apply",
    "delete",
    "create-pod",
    "delete-pod",
    "label-pod",
    "label-namespace",
    "connect",
    "send",
    "advance",
    "authenticate",
    "dns-lookup",
];

// serde_yaml 0.9 reads externally tagged enums only from YAML tags (`!expect`), so the
// `- expect: [...]` form is read by hand, value by value, which keeps error locations.
impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a step: a mapping with one key, the step kind")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty step: expected one of the step kinds",
                    ));
                };
                let step = match kind.as_str() {
                    "expect" => Step::Expect(map.next_value()?),
                    "expect-matrix" => Step::ExpectMatrix(map.next_value()?),
                    "apply" => Step::Apply(map.next_value()?),
                    "delete" => Step::Delete(map.next_value()?),
                    "create-pod" => Step::CreatePod(map.next_value()?),
                    "delete-pod" => Step::DeletePod(map.next_value()?),
                    "label-pod" => Step::LabelPod(map.next_value()?),
                    "label-namespace" => Step::LabelNamespace(map.next_value()?),
                    "connect" => Step::Connect(map.next_value()?),
                    "send" => Step::Send(map.next_value()?),
                    "advance" => Step::Advance(map.next_value()?),
                    "authenticate" => Step::Authenticate(map.next_value()?),
                    "dns-lookup" => Step::DnsLookup(map.next_value()?),
                    other => return Err(de::Error::unknown_variant(other, STEP_KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a step has exactly one kind; `{extra}` follows `{kind}` (start a new `- ` item)"
                    )));
                }
                Ok(step)
            }
        }
        d.deserialize_map(V)
    }
}

impl Step {
    /// Whether the step is a control-plane change, which the `propagation:` extension delays
    /// on its way to each node's datapath (policy apply/delete, pod create/delete, relabel).
    pub fn is_control_plane(&self) -> bool {
        matches!(
            self,
            Step::Apply(_)
                | Step::Delete(_)
                | Step::CreatePod(_)
                | Step::DeletePod(_)
                | Step::LabelPod(_)
                | Step::LabelNamespace(_)
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Step::Expect(_) => "expect",
            Step::ExpectMatrix(_) => "expect-matrix",
            Step::Apply(_) => "apply",
            Step::Delete(_) => "delete",
            Step::CreatePod(_) => "create-pod",
            Step::DeletePod(_) => "delete-pod",
            Step::LabelPod(_) => "label-pod",
            Step::LabelNamespace(_) => "label-namespace",
            Step::Connect(_) => "connect",
            Step::Send(_) => "send",
            Step::Advance(_) => "advance",
            Step::Authenticate(_) => "authenticate",
            Step::DnsLookup(_) => "dns-lookup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictDecl {
    Allow,
    Deny,
}

impl fmt::Display for VerdictDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerdictDecl::Allow => "allow",
            VerdictDecl::Deny => "deny",
        })
    }
}

/// A probe: one new connection attempt with its expected verdict.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Probe {
    pub from: String,
    /// Required except for a `dns:` probe, which goes to the cluster's DNS server.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Required except for a `dns:` probe (default UDP).
    #[serde(default)]
    pub protocol: Option<ProtocolDecl>,
    /// Extension: an HTTP request on the new TCP connection.
    #[serde(default)]
    pub http: Option<HttpDecl>,
    /// Extension: a DNS lookup of this name through the cluster's DNS server.
    #[serde(default)]
    pub dns: Option<String>,
    #[serde(default)]
    pub icmp_type: Option<u8>,
    pub verdict: VerdictDecl,
    #[serde(default)]
    pub reason: Option<ReasonDecl>,
    #[serde(default, rename = "match")]
    pub match_type: Option<MatchDecl>,
    #[serde(default)]
    pub direction: Option<DirectionDecl>,
    #[serde(default)]
    pub redirect: Option<bool>,
}

macro_rules! parsed_string {
    ($name:ident, $inner:ty, $parse:expr, $what:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map($name).ok_or_else(|| {
                    de::Error::custom(format!(
                        "unknown {} {s:?}: expected {}",
                        stringify!($name),
                        $what
                    ))
                })
            }
        }
    };
}

parsed_string!(
    ReasonDecl,
    DropReason,
    DropReason::parse,
    "POLICY_DENIED, POLICY_DENY, AUTH_REQUIRED (Hubble's drop_reason_desc) or L7_DENIED (the L7 proxy's 403 / REFUSED)"
);
parsed_string!(
    MatchDecl,
    MatchType,
    MatchType::parse,
    "none, L3-Only, L3-L4, L4-Only, all, L3-Proto or Proto-Only"
);
parsed_string!(
    DirectionDecl,
    Direction,
    Direction::parse,
    "ingress or egress"
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixDecl {
    #[serde(default)]
    pub port: Option<u16>,
    pub protocol: ProtocolDecl,
    #[serde(default, rename = "icmp-type")]
    pub icmp_type: Option<u8>,
    pub table: String,
}

/// A parsed truth table: `cells[row][col]` is `Some(true)` allow, `Some(false)` deny,
/// `None` not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub columns: Vec<String>,
    pub rows: Vec<String>,
    pub cells: Vec<Vec<Option<bool>>>,
}

impl MatrixDecl {
    pub fn parse_table(&self) -> Result<Matrix, String> {
        // The format's own example annotates table lines with `# ...`; inside a YAML block
        // scalar that text is part of the table, so it is dropped here ('#' is never part of
        // a cell or of an endpoint name).
        let mut lines = self
            .table
            .lines()
            .map(|l| l.split_once('#').map_or(l, |(before, _)| before))
            .filter(|l| !l.trim().is_empty());
        let header = lines.next().ok_or("table is empty")?;
        let columns: Vec<String> = header.split_whitespace().map(str::to_string).collect();
        let mut rows = Vec::new();
        let mut cells = Vec::new();
        for (i, line) in lines.enumerate() {
            let mut parts = line.split_whitespace();
            let Some(name) = parts.next() else { continue };
            let row: Vec<&str> = parts.collect();
            if row.len() != columns.len() {
                return Err(format!(
                    "table row {} ({name}) has {} cells, the header has {} columns",
                    i + 1,
                    row.len(),
                    columns.len()
                ));
            }
            let parsed = row
                .iter()
                .map(|c| match *c {
                    "." => Ok(Some(true)),
                    "X" | "x" => Ok(Some(false)),
                    "?" => Ok(None),
                    other => Err(format!(
                        "table row {name}: cell {other:?} is not '.', 'X' or '?'"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(name.to_string());
            cells.push(parsed);
        }
        if rows.is_empty() {
            return Err("table has a header but no rows".into());
        }
        Ok(Matrix {
            columns,
            rows,
            cells,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteDecl {
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelPodDecl {
    pub pod: String,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelNamespaceDecl {
    pub namespace: String,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectDecl {
    pub id: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub port: Option<u16>,
    pub protocol: ProtocolDecl,
}

/// `dns-lookup: {from: x/a, name: api.github.com}`: the pod asks the cluster's DNS server
/// for the name (UDP 53 unless `protocol`/`port` say otherwise).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsLookupDecl {
    pub from: String,
    pub name: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<ProtocolDecl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendDirection {
    Forward,
    Reply,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendDecl {
    pub id: String,
    pub direction: SendDirection,
    pub verdict: VerdictDecl,
}

/// `authenticate: {from: x/a, to: y/b, lifetime: 1h}`: the auth managers of both pods'
/// nodes have completed a mutual authentication of the two pods' identities (auth type
/// spire, what `authentication: {mode: required}` asks for), valid for `lifetime` (default
/// one hour, SPIRE's default SVID TTL) from this instant (`crate::auth`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateDecl {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub lifetime: Option<DurationDecl>,
}

/// A virtual-time duration such as `30s`, `500ms`, `2m`, `1h`; stored in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationDecl(pub u64);

impl<'de> Deserialize<'de> for DurationDecl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(DurationDecl)
            .map_err(de::Error::custom)
    }
}

pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected a number and a unit (ms, s, m, h)"))?;
    let mult: u64 = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(format!(
                "bad duration {s:?}: unit must be ns, us, ms, s, m or h"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// An error loading a scenario: the file, and where in it.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {message}")]
    Io { file: PathBuf, message: String },
    #[error("{file}:{line}:{column}: {field}{message}")]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{file}: {context}: {message}")]
    Invalid {
        file: PathBuf,
        context: String,
        message: String,
    },
}

/// A scenario loaded from disk (the policy files it references are read when replayed).
#[derive(Debug)]
pub struct LoadedScenario {
    pub path: PathBuf,
    pub scenario: Scenario,
    /// The parsed YAML, which locates errors found after parsing ([`LoadedScenario::locate`]).
    pub source: crate::yaml::Node,
}

impl LoadedScenario {
    /// The position of the node at a field path such as `steps[3].expect[0]` (a trailing
    /// ` (...)` note is ignored; the longest prefix that exists is used).
    pub fn locate(&self, context: &str) -> crate::yaml::Mark {
        let path = context.split(" (").next().unwrap_or(context).trim();
        crate::validate::locate(&self.source, path)
    }
}

/// Loads and parses one scenario file.
pub fn load(path: &Path) -> Result<LoadedScenario, ScenarioError> {
    let text = crate::fsread::read_bounded_string(path, MAX_SCENARIO_BYTES, "scenario").map_err(
        |message| ScenarioError::Io {
            file: path.to_path_buf(),
            message,
        },
    )?;
    parse(path, &text)
}

/// Parses a scenario from text; `path` names it in errors and anchors relative `file:` paths.
pub fn parse(path: &Path, text: &str) -> Result<LoadedScenario, ScenarioError> {
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(ScenarioError::Io {
            file: path.to_path_buf(),
            message: format!("scenario is larger than the limit of {MAX_SCENARIO_BYTES} bytes"),
        });
    }
    let content = text
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#') && l != "---" && l != "...");
    if !content {
        return Err(ScenarioError::Parse {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            field: String::new(),
            message: "empty file: a scenario needs at least a name".into(),
        });
    }
    let source = crate::yaml::parse_one(text)
        .map_err(|e| ScenarioError::Parse {
            file: path.to_path_buf(),
            line: e.mark.line,
            column: e.mark.column,
            field: if e.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path)
            },
            message: e.message,
        })?
        .unwrap_or_else(|| crate::yaml::Node::map(Vec::new()));
    let scenario: Scenario = crate::yaml::de::from_node(&source, crate::yaml::de::Mode::SCENARIO)
        .map_err(|e| node_error(path, &e))?;
    crate::validate::validate(path, &scenario, &source)?;
    Ok(LoadedScenario {
        path: path.to_path_buf(),
        scenario,
        source,
    })
}

/// Turns a located YAML reader error into file:line:column: field: message.
pub fn node_error(path: &Path, e: &crate::yaml::de::Error) -> ScenarioError {
    let mark = e.mark().unwrap_or(crate::yaml::Mark { line: 1, column: 1 });
    ScenarioError::Parse {
        file: path.to_path_buf(),
        line: mark.line,
        column: mark.column,
        field: if e.path().is_empty() {
            String::new()
        } else {
            format!("{}: ", e.path())
        },
        message: e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("t.yaml"), text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = err("name: t\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: allow, colour: red}\n");
        assert!(e.starts_with("t.yaml:4:"), "{e}");
        assert!(e.contains("steps[0]"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = err("name: t\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCPX, verdict: allow}\n");
        assert!(e.starts_with("t.yaml:4:"), "{e}");
        assert!(e.contains("TCPX"), "{e}");
        let e = err("name: t\nsteps:\n  - advance: 3 parsecs\n");
        assert!(e.contains("t.yaml:3:"), "{e}");
        let e = err("name: t\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 70000, protocol: TCP, verdict: allow}\n");
        assert!(e.starts_with("t.yaml:4:"), "{e}");
        let e = err("name: t\nsteps:\n  - teleport: {}\n");
        assert!(e.contains("teleport"), "{e}");
        let e = err("name: [unclosed\n");
        assert!(e.starts_with("t.yaml:"), "{e}");
    }

    #[test]
    fn nodes_accept_both_forms_and_durations_parse() {
        let s = parse(
            Path::new("t.yaml"),
            "name: t\ncluster:\n  nodes: [node-1, {name: node-2, ip: 172.18.0.3}]\n",
        )
        .unwrap();
        assert_eq!(
            s.scenario.cluster.nodes[1].ip,
            Some("172.18.0.3".parse().unwrap())
        );
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn propagation_forms_parse_and_errors_are_located() {
        let p = |t: &str| parse(Path::new("t.yaml"), t).map(|s| s.scenario.propagation);
        assert_eq!(p("name: t\n").unwrap(), None);
        assert_eq!(
            p("name: t\npropagation: {fixed: 2s}\n").unwrap(),
            Some(Propagation::Fixed(2_000_000_000))
        );
        assert_eq!(
            p("name: t\npropagation:\n  uniform: {min: 1s, max: 5s}\n").unwrap(),
            Some(Propagation::Uniform {
                min: 1_000_000_000,
                max: 5_000_000_000
            })
        );
        let per = p("name: t\npropagation:\n  per-node: {node-1: 0s, node-2: 3s}\n")
            .unwrap()
            .unwrap();
        let Propagation::PerNode(m) = per else {
            panic!("{per:?}")
        };
        assert_eq!(m["node-2"], 3_000_000_000);
        let e = err("name: t\npropagation:\n  gaussian: 1s\n");
        assert!(e.starts_with("t.yaml:3:") && e.contains("gaussian"), "{e}");
        let e = err("name: t\npropagation:\n  uniform: {min: 1s, max: 5s, mean: 2s}\n");
        assert!(e.starts_with("t.yaml:3:") && e.contains("mean"), "{e}");
        let e = err("name: t\npropagation:\n  uniform: {min: 5s, max: 1s}\n");
        assert!(e.contains("t.yaml:3:") && e.contains("min"), "{e}");
        let e = err("name: t\npropagation: {fixed: 1s, per-node: {}}\n");
        assert!(e.contains("t.yaml:2:") && e.contains("exactly one"), "{e}");
        let e = err("name: t\npropagation: {fixed: soon}\n");
        assert!(e.contains("t.yaml:2:"), "{e}");
    }

    #[test]
    fn matrix_tables_parse_and_reject_bad_cells() {
        let m = MatrixDecl {
            port: Some(80),
            protocol: ProtocolDecl(Protocol::Tcp),
            icmp_type: None,
            table: "    x/a x/b\nx/a ? .\nx/b X ?\n".into(),
        };
        let t = m.parse_table().unwrap();
        assert_eq!(
            t.cells,
            vec![vec![None, Some(true)], vec![Some(false), None]]
        );
        // Trailing `# ...` annotations, as in the format's example, are not cells.
        let annotated = MatrixDecl {
            table: "    x/a x/b      # '.' allow, 'X' deny\nx/a ? .   # self unchecked\n# a comment line\nx/b X ?\n".into(),
            port: Some(80),
            protocol: ProtocolDecl(Protocol::Tcp),
            icmp_type: None,
        };
        assert_eq!(annotated.parse_table().unwrap(), t);
        let bad = MatrixDecl {
            table: "x/a\nx/a Y\n".into(),
            ..m
        };
        assert!(bad.parse_table().unwrap_err().contains("\"Y\""));
    }
}
