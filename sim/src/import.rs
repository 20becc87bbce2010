//! `verdict import`: a scenario built from a real cluster dump.
//!
//! The input is what `kubectl get -A -o yaml` (or `-o json`) prints for namespaces, nodes,
//! pods and the policy kinds, in one file or a directory of them, as `kind: List` or as
//! multi-document YAML (read by `api::parse_objects`, so every error names the file, the line
//! and the field). The output is a scenario (`../shared/spec/scenario-format.md`) written with
//! the byte-stable YAML writer (`yaml::emit`): every list sorted by name, so the same objects
//! give the same bytes whatever order the dump holds them in.
//!
//! What is taken from each object, and how objects Cilium would not turn into endpoints are
//! treated, is Cilium's behaviour (`docs/model.md`, "Importing a cluster dump"):
//! - a pod becomes an endpoint with its labels, `spec.serviceAccountName`, the named ports of
//!   `spec.containers` (`pkg/k8s/labels.go` `GetPodMetadata`; a later container's port of the
//!   same name replaces an earlier one, as `NamedPortMap.AddPort` does), its node and its
//!   address (`status.podIP`, else the first of `status.podIPs`: `k8sUtils.ValidIPs`);
//! - pods in phase Succeeded or Failed are left out (`pkg/k8s/watchers/pod.go`
//!   `addK8sPodV1`/`updateK8sPodV1` delete their ipcache entries: `IsPodRunning`), as are pods
//!   with no address yet (no `ValidIPs`, so no ipcache entry and no endpoint) and
//!   `hostNetwork` pods (skipped by the pod watcher: their traffic is the node's, identity
//!   host or remote-node);
//! - objects being deleted (`metadata.deletionTimestamp`) are kept: Cilium's policy and pod
//!   paths do not look at it (only the HostPort reflector and the local node do), so a
//!   terminating pod stays an endpoint, and a policy stays in force, until it is gone.
//!
//! A dump of workloads only (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs) and no
//! pods gets pods synthesized from the templates (`synthesize`), and says so.
//!
//! The user's cluster comes with no expectations, so none are invented: the scenario's steps
//! are truth tables whose cells are all `?` (not checked). `verdict run` replays every cell on
//! every backend and compares the backends with each other, so the imported scenario checks
//! that the oracle, the model and the BPF datapaths agree on this cluster's policies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::{self, ManifestError, ManifestKind, Object, ObjectClass};
use crate::cluster::Protocol;
use crate::labels;
use crate::yaml::{self, Node};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// What to import and how to probe it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario's name (default: `import-` and the first path's file or directory name).
    pub name: Option<String>,
    /// At most this many endpoints (rows and columns) per truth table.
    pub probe_pods: usize,
    /// The destination ports of the truth tables (default: the ports the policies name, then
    /// the pods' most common container ports, at most [`DEFAULT_PROBE_PORTS`]).
    pub probe_ports: Option<Vec<(u16, Protocol)>>,
    /// Leave out policies that use a field verdict does not model yet (listed in the notes
    /// and the scenario's description) instead of failing.
    pub skip_unsupported: bool,
}

/// Default cap on the endpoints of a truth table (900 cells: the size up to which a failing
/// table is printed in full).
pub const DEFAULT_PROBE_PODS: usize = 30;
/// Default number of destination ports probed.
pub const DEFAULT_PROBE_PORTS: usize = 6;

impl Default for Options {
    fn default() -> Self {
        Options {
            name: None,
            probe_pods: DEFAULT_PROBE_PODS,
            probe_ports: None,
            skip_unsupported: false,
        }
    }
}

/// An imported scenario and what was done to get it.
#[derive(Debug)]
pub struct Imported {
    /// The scenario, as YAML.
    pub scenario: String,
    /// One line each: what was imported, left out, synthesized (for stderr).
    pub notes: Vec<String>,
}

/// The files a list of paths stands for: a file as given, a directory's `*.yaml`, `*.yml`
/// and `*.json` files at any depth, in path order.
pub fn dump_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
        let io = |e: std::io::Error| ImportError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| ImportError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            let before = out.len();
            walk(p, &mut out)?;
            if out.len() == before {
                return Err(ImportError::Io {
                    path: p.clone(),
                    message: "no *.yaml, *.yml or *.json files in this directory".into(),
                });
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

// ---- the parts of the Kubernetes objects that are read (unknown fields are ignored: a dump
// carries far more than a scenario needs) ----

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    name: String,
    namespace: Option<String>,
    uid: Option<String>,
    labels: BTreeMap<String, String>,
    deletion_timestamp: Option<String>,
    owner_references: Vec<OwnerRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OwnerRef {
    kind: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NamespaceObj {
    metadata: Meta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeObj {
    metadata: Meta,
    spec: NodeSpec,
    status: NodeStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NodeSpec {
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs")]
    pod_cidrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeStatus {
    addresses: Vec<NodeAddress>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodObj {
    metadata: Meta,
    spec: PodSpec,
    status: PodStatus,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    node_name: Option<String>,
    host_network: bool,
    service_account_name: Option<String>,
    node_selector: BTreeMap<String, String>,
    containers: Vec<Container>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct Container {
    ports: Vec<ContainerPort>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContainerPort {
    name: Option<String>,
    container_port: i64,
    protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Vec<PodIp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodIp {
    ip: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WorkloadObj {
    metadata: Meta,
    spec: WorkloadSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WorkloadSpec {
    replicas: Option<i64>,
    parallelism: Option<i64>,
    completions: Option<i64>,
    template: Template,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Template {
    metadata: Meta,
    spec: PodSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceObj {
    metadata: Meta,
    spec: ServiceSpecObj,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ServiceSpecObj {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<String>,
    selector: Option<BTreeMap<String, String>>,
    ports: Vec<ServicePortObj>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ServicePortObj {
    name: Option<String>,
    port: i64,
    protocol: Option<String>,
    target_port: Option<IntOrString>,
}

/// Kubernetes' IntOrString.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EndpointSliceObj {
    metadata: Meta,
    address_type: Option<String>,
    endpoints: Vec<SliceEndpoint>,
    ports: Vec<SlicePort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SliceEndpoint {
    addresses: Vec<String>,
    conditions: SliceConditions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SliceConditions {
    ready: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SlicePort {
    name: Option<String>,
    port: Option<i64>,
    protocol: Option<String>,
}

#[derive(Debug, Clone)]
struct ServicePortRec {
    name: Option<String>,
    port: u16,
    protocol: Protocol,
    target: Option<IntOrString>,
}

#[derive(Debug)]
struct ServiceRec {
    labels: BTreeMap<String, String>,
    selector: Option<BTreeMap<String, String>>,
    /// `None` headless; `Some(None)`: allocate; `Some(Some(ip))` fixed.
    cluster_ip: Option<Option<IpAddr>>,
    ports: Vec<ServicePortRec>,
}

/// The ready endpoints of a service's EndpointSlices, and their ports by name.
#[derive(Debug, Default)]
struct SliceRec {
    addresses: BTreeSet<IpAddr>,
    ports: BTreeMap<(String, Protocol), u16>,
}

// ---- what the dump holds, once read ----

/// Where an object was read: for errors and duplicate reports.
#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug)]
struct NodeRec {
    ip: Option<IpAddr>,
    labels: BTreeMap<String, String>,
    pod_cidr: Option<ipnet::IpNet>,
}

/// A named container port: name, number, protocol.
type NamedPort = (String, u16, Protocol);
/// A service port, and the services with it as table columns (with their chosen backends).
type ServiceColumns = ((u16, Protocol), Vec<(String, IpAddr)>);
/// A pod's named ports, and all its container ports.
type Ports = (Vec<NamedPort>, Vec<(u16, Protocol)>);
/// A synthesized pod: name, node, labels.
type SynthPod = (String, String, BTreeMap<String, String>);

#[derive(Debug, Clone)]
struct PodRec {
    namespace: String,
    name: String,
    node: String,
    ip: IpAddr,
    labels: BTreeMap<String, String>,
    /// Named container ports (name, port, protocol), sorted by name.
    named_ports: Vec<(String, u16, Protocol)>,
    /// Every container port, named or not (probe port candidates).
    all_ports: Vec<(u16, Protocol)>,
    service_account: String,
}

struct PolicyRec {
    kind: ManifestKind,
    node: Node,
}

#[derive(Default)]
struct Dump {
    namespaces: BTreeMap<String, (BTreeMap<String, String>, Origin)>,
    nodes: BTreeMap<String, NodeRec>,
    node_origin: BTreeMap<String, Origin>,
    pods: BTreeMap<(String, String), (PodRec, Origin)>,
    policies: BTreeMap<(ManifestKind, String, String), (PolicyRec, Origin)>,
    workloads: Vec<(String, WorkloadObj, Origin)>,
    services: BTreeMap<(String, String), (ServiceRec, Origin)>,
    slices: BTreeMap<(String, String), SliceRec>,
    /// Services whose cluster IP lies outside the scenario's service CIDR (allocated instead).
    moved_cluster_ips: usize,
    /// Objects left out, by reason.
    left_out: BTreeMap<String, usize>,
    /// Policies left out because they use an unmodelled field (with `skip_unsupported`).
    unsupported: Vec<String>,
    terminating: usize,
    dropped_secondary_ips: usize,
}

impl Dump {
    fn leave_out(&mut self, why: impl Into<String>) {
        *self.left_out.entry(why.into()).or_default() += 1;
    }
}

fn origin(file: &Path, o: &Object) -> Origin {
    Origin {
        file: file.to_path_buf(),
        line: o.node.mark.line,
    }
}

/// An error at the field `field` (a path inside the object) of `o`.
fn field_error(file: &Path, o: &Object, field: &str, message: impl Into<String>) -> ImportError {
    let node = o.node.at_path(field).unwrap_or(&o.node);
    ImportError::Manifest(o.error_at(file, node, field, message))
}

fn parse_ip(file: &Path, o: &Object, field: &str, text: &str) -> Result<IpAddr, ImportError> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| field_error(file, o, field, format!("{text:?} is not an IP address")))?;
    crate::validate::check_endpoint_ip(ip).map_err(|m| field_error(file, o, field, m))?;
    Ok(ip)
}

fn namespace_of(meta: &Meta) -> String {
    meta.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn need_name(file: &Path, o: &Object, meta: &Meta) -> Result<(), ImportError> {
    if meta.name.is_empty() {
        return Err(field_error(file, o, "metadata", "metadata.name is not set"));
    }
    Ok(())
}

/// Container ports: the named ones (a later name replaces an earlier one, as Cilium's
/// `NamedPortMap.AddPort` does) and all of them.
fn container_ports(
    file: &Path,
    o: &Object,
    spec_path: &str,
    spec: &PodSpec,
) -> Result<Ports, ImportError> {
    let mut named: BTreeMap<String, (u16, Protocol)> = BTreeMap::new();
    let mut all = BTreeSet::new();
    for (ci, c) in spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            let at = format!("{spec_path}.containers[{ci}].ports[{pi}]");
            let port = u16::try_from(p.container_port)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    field_error(
                        file,
                        o,
                        &format!("{at}.containerPort"),
                        format!(
                            "Invalid value: {}: must be between 1 and 65535, inclusive",
                            p.container_port
                        ),
                    )
                })?;
            let proto_text = p.protocol.as_deref().unwrap_or("TCP");
            let protocol = match proto_text {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                other => {
                    return Err(field_error(
                        file,
                        o,
                        &format!("{at}.protocol"),
                        format!("Unsupported value: {other:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""),
                    ))
                }
            };
            all.insert((port, protocol));
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                named.insert(name.to_string(), (port, protocol));
            }
        }
    }
    Ok((
        named.into_iter().map(|(n, (p, pr))| (n, p, pr)).collect(),
        all.into_iter().collect(),
    ))
}

/// A policy's manifest as the scenario carries it: `apiVersion`, `kind`, `metadata` with
/// only `name`, `namespace` and `labels` (what the cluster writes, `managedFields`,
/// `resourceVersion`, `uid`, the last-applied annotation, ... and `status` go), then the
/// rest in the order written. Keys are rewritten plain, so YAML and JSON dumps give the same
/// bytes.
fn clean_policy(node: &Node) -> Node {
    let entries = node.as_map().unwrap_or_default();
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key_is(key, k))
            .map(|(_, v)| v)
    };
    let mut out: Vec<(String, Node)> = Vec::new();
    for k in ["apiVersion", "kind"] {
        if let Some(v) = get(k) {
            out.push((k.to_string(), normalize(v)));
        }
    }
    if let Some(meta) = get("metadata") {
        let mut m = Vec::new();
        for k in ["name", "namespace", "labels"] {
            if let Some(v) = meta.get(k) {
                m.push((k.to_string(), normalize(v)));
            }
        }
        out.push(("metadata".to_string(), Node::map_owned(m)));
    }
    for (k, v) in entries {
        let text = k.as_scalar().map_or("", |s| s.text.as_str());
        if !matches!(text, "apiVersion" | "kind" | "metadata" | "status") {
            out.push((text.to_string(), normalize(v)));
        }
    }
    Node::map_owned(out)
}

fn key_is(key: &Node, text: &str) -> bool {
    key.as_scalar().is_some_and(|s| s.text == text)
}

/// The node with every mapping key written as a plain string where it can be, and no
/// positions.
fn normalize(node: &Node) -> Node {
    let mut n = match &node.value {
        yaml::Value::Scalar(_) => node.clone(),
        yaml::Value::Seq(items) => Node::seq(items.iter().map(normalize).collect()),
        yaml::Value::Map(entries) => Node::map_owned(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_scalar().map_or(String::new(), |s| s.text.clone()),
                        normalize(v),
                    )
                })
                .collect(),
        ),
    };
    n.mark = yaml::Mark::default();
    n
}

fn read_file(
    file: &Path,
    dump: &mut Dump,
    opts: &Options,
    other_kinds: &mut BTreeMap<String, usize>,
) -> Result<(), ImportError> {
    let text = std::fs::read_to_string(file).map_err(|e| ImportError::Io {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    for o in api::parse_objects(file, &text)? {
        let core = o.api_version == "v1";
        match (o.kind.as_str(), o.api_version.as_str()) {
            ("Namespace", "v1") => {
                let ns: NamespaceObj = o.deserialize(file)?;
                need_name(file, &o, &ns.metadata)?;
                let at = origin(file, &o);
                if let Some((_, first)) = dump.namespaces.get(&ns.metadata.name) {
                    return Err(duplicate("namespace", &ns.metadata.name, first, &at));
                }
                if ns.metadata.deletion_timestamp.is_some() {
                    dump.terminating += 1;
                }
                dump.namespaces
                    .insert(ns.metadata.name.clone(), (ns.metadata.labels, at));
            }
            ("Node", "v1") => {
                let n: NodeObj = o.deserialize(file)?;
                need_name(file, &o, &n.metadata)?;
                let at = origin(file, &o);
                if let Some(first) = dump.node_origin.get(&n.metadata.name) {
                    return Err(duplicate("node", &n.metadata.name, first, &at));
                }
                // The node's address as Cilium's `ParseNode` prefers it: InternalIP, else
                // ExternalIP (`pkg/k8s/node.go`, `GetNodeIP`).
                let pick = |kind: &str| {
                    n.status
                        .addresses
                        .iter()
                        .enumerate()
                        .find(|(_, a)| a.kind == kind)
                };
                let ip = match pick("InternalIP").or_else(|| pick("ExternalIP")) {
                    Some((i, a)) => Some(parse_ip(
                        file,
                        &o,
                        &format!("status.addresses[{i}].address"),
                        &a.address,
                    )?),
                    None => None,
                };
                let cidr_text = n
                    .spec
                    .pod_cidr
                    .clone()
                    .or_else(|| n.spec.pod_cidrs.first().cloned());
                let pod_cidr = match cidr_text {
                    Some(t) => Some(t.parse::<ipnet::IpNet>().map_err(|_| {
                        field_error(file, &o, "spec.podCIDR", format!("{t:?} is not a CIDR"))
                    })?),
                    None => None,
                };
                if n.metadata.deletion_timestamp.is_some() {
                    dump.terminating += 1;
                }
                dump.node_origin.insert(n.metadata.name.clone(), at);
                dump.nodes.insert(
                    n.metadata.name,
                    NodeRec {
                        ip,
                        labels: n.metadata.labels,
                        pod_cidr,
                    },
                );
            }
            ("Pod", "v1") => read_pod(file, &o, dump)?,
            ("Service", "v1") => read_service(file, &o, dump)?,
            ("EndpointSlice", "discovery.k8s.io/v1") => read_slice(file, &o, dump)?,
            ("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet", "apps/v1")
            | ("Job", "batch/v1") => {
                let w: WorkloadObj = o.deserialize(file)?;
                need_name(file, &o, &w.metadata)?;
                dump.workloads.push((o.kind.clone(), w, origin(file, &o)));
            }
            // Policy input rather than a policy; imported once the CIDR-group support of the
            // policy2 lane is on main (it is then read like the policies).
            ("CiliumCIDRGroup", _) => dump.leave_out(
                "CiliumCIDRGroup (not imported yet: the scenario format has no CIDR groups)",
            ),
            ("CronJob", "batch/v1") => dump.leave_out(
                "CronJob (it has pods only while one of its Jobs runs: the dump's Jobs are imported)",
            ),
            _ => match api::classify(&o.api_version, &o.kind) {
                Ok(ObjectClass::Policy(kind)) => read_policy(file, &o, kind, dump, opts)?,
                _ => {
                    let label = if core || o.api_version.contains('/') {
                        o.kind.clone()
                    } else {
                        format!("{} ({})", o.kind, o.api_version)
                    };
                    *other_kinds.entry(label).or_default() += 1;
                }
            },
        }
    }
    Ok(())
}

fn duplicate(what: &str, name: &str, first: &Origin, again: &Origin) -> ImportError {
    ImportError::Invalid(format!(
        "{again}: {what} {name} appears twice (first at {first}); give each object once"
    ))
}

fn read_pod(file: &Path, o: &Object, dump: &mut Dump) -> Result<(), ImportError> {
    let p: PodObj = o.deserialize(file)?;
    need_name(file, o, &p.metadata)?;
    let namespace = namespace_of(&p.metadata);
    let at = origin(file, o);
    let key = (namespace.clone(), p.metadata.name.clone());
    if let Some((_, first)) = dump.pods.get(&key) {
        return Err(duplicate(
            "pod",
            &format!("{}/{}", key.0, key.1),
            first,
            &at,
        ));
    }
    // pkg/k8s/watchers/pod.go: hostNetwork pods are skipped ("Skip pod event using host
    // networking"); Succeeded and Failed pods lose their ipcache entries (IsPodRunning).
    if p.spec.host_network {
        dump.leave_out("hostNetwork pods (their traffic is the node's: host or remote-node)");
        return Ok(());
    }
    if let Some(phase @ ("Succeeded" | "Failed")) = p.status.phase.as_deref() {
        dump.leave_out(format!("{phase} pods (not running: no endpoint)"));
        return Ok(());
    }
    // k8sUtils.ValidIPs: podIP and podIPs; the scenario has one address per pod, the primary.
    let mut ips: Vec<(String, &str)> = Vec::new();
    if let Some(ip) = p.status.pod_ip.as_deref().filter(|s| !s.is_empty()) {
        ips.push(("status.podIP".into(), ip));
    }
    for (i, pip) in p.status.pod_ips.iter().enumerate() {
        if !pip.ip.is_empty() && ips.iter().all(|(_, t)| *t != pip.ip) {
            ips.push((format!("status.podIPs[{i}].ip"), &pip.ip));
        }
    }
    let Some((field, text)) = ips.first() else {
        dump.leave_out("pods with no IP yet (Pending: no endpoint, no ipcache entry)");
        return Ok(());
    };
    let ip = parse_ip(file, o, field, text)?;
    for (f, t) in &ips[1..] {
        parse_ip(file, o, f, t)?;
        dump.dropped_secondary_ips += 1;
    }
    if p.metadata.deletion_timestamp.is_some() {
        dump.terminating += 1;
    }
    let (named_ports, all_ports) = container_ports(file, o, "spec", &p.spec)?;
    let node = match p.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => {
            return Err(field_error(
                file,
                o,
                "spec",
                "spec.nodeName is not set on a pod that has an IP",
            ))
        }
    };
    let service_account = p
        .spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    dump.pods.insert(
        key,
        (
            PodRec {
                namespace,
                name: p.metadata.name,
                node,
                ip,
                labels: p.metadata.labels,
                named_ports,
                all_ports,
                service_account,
            },
            at,
        ),
    );
    Ok(())
}

fn parse_protocol(
    file: &Path,
    o: &Object,
    field: &str,
    text: Option<&str>,
) -> Result<Protocol, ImportError> {
    match text.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(field_error(
            file,
            o,
            field,
            format!("Unsupported value: {other:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""),
        )),
    }
}

fn port_number(file: &Path, o: &Object, field: &str, n: i64) -> Result<u16, ImportError> {
    u16::try_from(n).ok().filter(|&p| p > 0).ok_or_else(|| {
        field_error(
            file,
            o,
            field,
            format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
        )
    })
}

fn read_service(file: &Path, o: &Object, dump: &mut Dump) -> Result<(), ImportError> {
    let sv: ServiceObj = o.deserialize(file)?;
    need_name(file, o, &sv.metadata)?;
    let namespace = namespace_of(&sv.metadata);
    let at = origin(file, o);
    let key = (namespace.clone(), sv.metadata.name.clone());
    if let Some((_, first)) = dump.services.get(&key) {
        return Err(duplicate(
            "service",
            &format!("{}/{}", key.0, key.1),
            first,
            &at,
        ));
    }
    if sv.spec.kind.as_deref() == Some("ExternalName") {
        dump.leave_out("ExternalName services (a DNS alias: no cluster IP, no backends)");
        return Ok(());
    }
    let cluster_ip = match sv.spec.cluster_ip.as_deref() {
        Some("None") => None,
        None | Some("") => Some(None),
        Some(text) => {
            let ip: IpAddr = text.parse().map_err(|_| {
                field_error(
                    file,
                    o,
                    "spec.clusterIP",
                    format!("{text:?} is not an IP address"),
                )
            })?;
            if crate::service::check_cluster_ip(ip).is_ok() {
                Some(Some(ip))
            } else {
                dump.moved_cluster_ips += 1;
                Some(None)
            }
        }
    };
    let mut ports = Vec::new();
    for (i, p) in sv.spec.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port = port_number(file, o, &format!("{at}.port"), p.port)?;
        let protocol = parse_protocol(file, o, &format!("{at}.protocol"), p.protocol.as_deref())?;
        if let Some(IntOrString::Int(n)) = &p.target_port {
            port_number(file, o, &format!("{at}.targetPort"), *n)?;
        }
        ports.push(ServicePortRec {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port,
            protocol,
            target: p.target_port.clone(),
        });
    }
    dump.services.insert(
        key,
        (
            ServiceRec {
                labels: sv.metadata.labels,
                // kubectl never prints an empty selector (omitempty): empty means none.
                selector: sv.spec.selector.filter(|s| !s.is_empty()),
                cluster_ip,
                ports,
            },
            at,
        ),
    );
    Ok(())
}

/// An EndpointSlice's ready addresses and named ports, for the service its
/// `kubernetes.io/service-name` label names (`ready` unset counts as ready, as the API says).
fn read_slice(file: &Path, o: &Object, dump: &mut Dump) -> Result<(), ImportError> {
    let es: EndpointSliceObj = o.deserialize(file)?;
    let Some(service) = es
        .metadata
        .labels
        .get("kubernetes.io/service-name")
        .cloned()
    else {
        dump.leave_out("EndpointSlices without a kubernetes.io/service-name label");
        return Ok(());
    };
    if es.address_type.as_deref() == Some("FQDN") {
        dump.leave_out("EndpointSlices of address type FQDN");
        return Ok(());
    }
    let rec = dump
        .slices
        .entry((namespace_of(&es.metadata), service))
        .or_default();
    for (i, e) in es.endpoints.iter().enumerate() {
        if e.conditions.ready == Some(false) {
            continue;
        }
        for (j, a) in e.addresses.iter().enumerate() {
            let ip = parse_ip(file, o, &format!("endpoints[{i}].addresses[{j}]"), a)?;
            rec.addresses.insert(ip);
        }
    }
    for (i, p) in es.ports.iter().enumerate() {
        let protocol = parse_protocol(
            file,
            o,
            &format!("ports[{i}].protocol"),
            p.protocol.as_deref(),
        )?;
        if let Some(n) = p.port {
            let port = port_number(file, o, &format!("ports[{i}].port"), n)?;
            rec.ports
                .insert((p.name.clone().unwrap_or_default(), protocol), port);
        }
    }
    Ok(())
}

fn read_policy(
    file: &Path,
    o: &Object,
    kind: ManifestKind,
    dump: &mut Dump,
    opts: &Options,
) -> Result<(), ImportError> {
    let manifest = match o.manifest(file) {
        Ok(m) => m,
        Err(e) if e.message.starts_with("not supported yet") && opts.skip_unsupported => {
            dump.unsupported
                .push(format!("{} {}: {}", o.kind, o.name().unwrap_or("?"), e));
            return Ok(());
        }
        Err(mut e) => {
            if e.message.starts_with("not supported yet") {
                e.message
                    .push_str(" (pass --skip-unsupported to import without such policies)");
            }
            return Err(e.into());
        }
    };
    let namespace = manifest.namespace().unwrap_or("").to_string();
    let name = manifest.name().to_string();
    let at = origin(file, o);
    let key = (kind, namespace, name);
    if let Some((_, first)) = dump.policies.get(&key) {
        return Err(duplicate(&manifest.to_string(), "", first, &at));
    }
    dump.policies.insert(
        key,
        (
            PolicyRec {
                kind,
                node: clean_policy(&o.node),
            },
            at,
        ),
    );
    Ok(())
}

// ---- pods from workload templates ----

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no 0/1/3: no words, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a(data: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// `n` characters of the safe alphabet drawn from a hash of `seed` (deterministic stand-ins
/// for the random suffixes and template hashes the controllers generate).
fn safe_suffix(seed: &str, n: usize) -> String {
    let mut h = fnv1a(seed);
    let mut out = String::with_capacity(n);
    for _ in 0..n {
        out.push(SAFE[(h % SAFE.len() as u64) as usize] as char);
        h /= SAFE.len() as u64;
        if h == 0 {
            h = fnv1a(&format!("{seed}{out}"));
        }
    }
    out
}

/// Synthesizes the pods of the workloads, when the dump has no pods: `replicas` pods for a
/// Deployment, ReplicaSet or StatefulSet, one per matching node for a DaemonSet,
/// `parallelism` (capped by `completions`) for a Job; names and controller labels as the
/// controllers give them, addresses from each node's pod CIDR in order.
fn synthesize(dump: &mut Dump, notes: &mut Vec<String>) -> Result<(), String> {
    if dump.nodes.is_empty() {
        dump.nodes.insert(
            "node-1".into(),
            NodeRec {
                ip: None,
                labels: BTreeMap::new(),
                pod_cidr: None,
            },
        );
        notes.push(
            "note: the dump has no nodes: the synthesized pods run on one node, node-1".into(),
        );
    }
    let node_names: Vec<String> = dump.nodes.keys().cloned().collect();
    // Labels a node has for a nodeSelector: its own, plus the ones the kubelet always sets.
    let node_labels = |dump: &Dump, n: &str| -> BTreeMap<String, String> {
        let mut l = dump.nodes[n].labels.clone();
        l.entry("kubernetes.io/hostname".into())
            .or_insert_with(|| n.to_string());
        l.entry("kubernetes.io/os".into())
            .or_insert_with(|| "linux".to_string());
        l
    };
    let owned_by_deployment: BTreeSet<(String, String)> = dump
        .workloads
        .iter()
        .filter(|(k, _, _)| k == "Deployment")
        .map(|(_, w, _)| (namespace_of(&w.metadata), w.metadata.name.clone()))
        .collect();
    let mut next_host: BTreeMap<String, u32> = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    let mut workloads = std::mem::take(&mut dump.workloads);
    // In name order, so the addresses do not depend on the order of the dump's files.
    workloads.sort_by(|a, b| {
        (&a.0, namespace_of(&a.1.metadata), &a.1.metadata.name).cmp(&(
            &b.0,
            namespace_of(&b.1.metadata),
            &b.1.metadata.name,
        ))
    });
    for (kind, w, at) in &workloads {
        let ns = namespace_of(&w.metadata);
        let name = &w.metadata.name;
        if kind == "ReplicaSet"
            && w.metadata.owner_references.iter().any(|r| {
                r.kind == "Deployment"
                    && owned_by_deployment.contains(&(ns.clone(), r.name.clone()))
            })
        {
            // The Deployment's pods are this ReplicaSet's: synthesized once, from the Deployment.
            continue;
        }
        let tmpl = &w.spec.template;
        let template_text = format!(
            "{kind}/{ns}/{name}/{:?}/{:?}",
            tmpl.metadata.labels,
            tmpl.spec
                .containers
                .iter()
                .map(|c| c
                    .ports
                    .iter()
                    .map(|p| (p.name.clone(), p.container_port))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
        let hash = safe_suffix(&template_text, 10);
        let selector_ok = |n: &str| {
            let l = node_labels(dump, n);
            tmpl.spec
                .node_selector
                .iter()
                .all(|(k, v)| l.get(k) == Some(v))
        };
        let eligible: Vec<&String> = match tmpl.spec.node_name.as_deref() {
            Some(n) if !n.is_empty() => node_names.iter().filter(|x| *x == n).collect(),
            _ => node_names.iter().filter(|n| selector_ok(n)).collect(),
        };
        let (kind_key, pods): (&'static str, Vec<SynthPod>) = match kind.as_str() {
            "DaemonSet" => (
                "DaemonSet",
                eligible
                    .iter()
                    .map(|n| {
                        let mut l = tmpl.metadata.labels.clone();
                        l.insert("controller-revision-hash".into(), hash.clone());
                        l.insert("pod-template-generation".into(), "1".into());
                        (
                            format!("{name}-{}", safe_suffix(&format!("{name}/{n}"), 5)),
                            (*n).clone(),
                            l,
                        )
                    })
                    .collect(),
            ),
            _ => {
                let count = match kind.as_str() {
                    "Job" => {
                        let par = w.spec.parallelism.unwrap_or(1);
                        w.spec.completions.map_or(par, |c| par.min(c))
                    }
                    _ => w.spec.replicas.unwrap_or(1),
                };
                let count = usize::try_from(count).map_err(|_| {
                    format!("{at}: {kind} {ns}/{name}: a negative count of pods ({count})")
                })?;
                if eligible.is_empty() && count > 0 {
                    return Err(format!(
                        "{at}: {kind} {ns}/{name}: no node matches its nodeSelector {:?}",
                        tmpl.spec.node_selector
                    ));
                }
                let uid = w.metadata.uid.clone().unwrap_or_else(|| {
                    format!(
                        "{}-{}",
                        safe_suffix(&format!("uid/{ns}/{name}"), 8),
                        safe_suffix(&format!("uid2/{ns}/{name}"), 4)
                    )
                });
                let key: &'static str = match kind.as_str() {
                    "Deployment" => "Deployment",
                    "ReplicaSet" => "ReplicaSet",
                    "StatefulSet" => "StatefulSet",
                    _ => "Job",
                };
                let pods = (0..count)
                    .map(|i| {
                        let mut l = tmpl.metadata.labels.clone();
                        let pod_name = match kind.as_str() {
                            "Deployment" => {
                                l.insert("pod-template-hash".into(), hash.clone());
                                format!("{name}-{hash}-{}", safe_suffix(&format!("{name}/{i}"), 5))
                            }
                            "StatefulSet" => {
                                let pn = format!("{name}-{i}");
                                l.insert("statefulset.kubernetes.io/pod-name".into(), pn.clone());
                                l.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
                                l.insert(
                                    "controller-revision-hash".into(),
                                    format!("{name}-{hash}"),
                                );
                                pn
                            }
                            "Job" => {
                                l.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
                                l.insert("batch.kubernetes.io/job-name".into(), name.clone());
                                l.insert("controller-uid".into(), uid.clone());
                                l.insert("job-name".into(), name.clone());
                                format!("{name}-{}", safe_suffix(&format!("{name}/{i}"), 5))
                            }
                            _ => format!("{name}-{}", safe_suffix(&format!("{name}/{i}"), 5)),
                        };
                        (pod_name, eligible[i % eligible.len()].clone(), l)
                    })
                    .collect();
                (key, pods)
            }
        };
        let entry = counts.entry(kind_key).or_default();
        entry.0 += 1;
        if tmpl.spec.host_network {
            for _ in &pods {
                dump.leave_out(
                    "hostNetwork pods (their traffic is the node's: host or remote-node)",
                );
            }
            continue;
        }
        let (named_ports, all_ports) = synth_ports(&tmpl.spec);
        let service_account = tmpl
            .spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        for (pod_name, node, labels) in pods {
            let ip = allocate(dump, &node_names, &node, &mut next_host)?;
            entry.1 += 1;
            dump.pods.insert(
                (ns.clone(), pod_name.clone()),
                (
                    PodRec {
                        namespace: ns.clone(),
                        name: pod_name,
                        node,
                        ip,
                        labels,
                        named_ports: named_ports.clone(),
                        all_ports: all_ports.clone(),
                        service_account: service_account.clone(),
                    },
                    at.clone(),
                ),
            );
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, (w, p))| format!("{p} from {w} {k}{}", if *w == 1 { "" } else { "s" }))
        .collect();
    notes.push(format!(
        "note: the dump has no pods: synthesized {} pods from the workload templates ({}); names and addresses are made up (deterministically), placement is round-robin over the nodes that match a nodeSelector (no scheduler: affinity, taints and resources are not looked at)",
        counts.values().map(|c| c.1).sum::<usize>(),
        parts.join(", ")
    ));
    Ok(())
}

/// The container ports of a template (its errors were already reported when it was read).
fn synth_ports(spec: &PodSpec) -> Ports {
    let mut named = BTreeMap::new();
    let mut all = BTreeSet::new();
    for c in &spec.containers {
        for p in &c.ports {
            let Ok(port) = u16::try_from(p.container_port) else {
                continue;
            };
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            if port == 0 {
                continue;
            }
            all.insert((port, protocol));
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                named.insert(n.to_string(), (port, protocol));
            }
        }
    }
    (
        named.into_iter().map(|(n, (p, pr))| (n, p, pr)).collect(),
        all.into_iter().collect(),
    )
}

/// The next address of a node's pod CIDR (its `spec.podCIDR`, else 10.244.<i>.0/24 for the
/// i-th node by name), from the tenth host on, skipping addresses in use.
fn allocate(
    dump: &Dump,
    node_names: &[String],
    node: &str,
    next: &mut BTreeMap<String, u32>,
) -> Result<IpAddr, String> {
    let index = node_names.iter().position(|n| n == node).unwrap_or(0);
    let cidr = match dump.nodes.get(node).and_then(|n| n.pod_cidr) {
        Some(c) => c,
        None => format!("10.244.{}.0/24", index.min(255))
            .parse()
            .map_err(|_| "bad default pod CIDR".to_string())?,
    };
    let used: BTreeSet<IpAddr> = dump
        .pods
        .values()
        .map(|(p, _)| p.ip)
        .chain(dump.nodes.values().filter_map(|n| n.ip))
        .collect();
    let counter = next.entry(node.to_string()).or_insert(10);
    loop {
        let host = *counter;
        *counter += 1;
        let ip = match cidr.network() {
            IpAddr::V4(net) => {
                let bits = 32 - cidr.prefix_len() as u32;
                if bits < 32 && host as u64 >= (1u64 << bits) - 1 {
                    return Err(format!(
                        "node {node}: its pod CIDR {cidr} has no free address left for the synthesized pods"
                    ));
                }
                IpAddr::V4((u32::from(net) + host).into())
            }
            IpAddr::V6(net) => IpAddr::V6((u128::from(net) + host as u128).into()),
        };
        if !used.contains(&ip) {
            return Ok(ip);
        }
    }
}

// ---- the scenario ----

fn labels_node(l: &BTreeMap<String, String>) -> Node {
    Node::map_owned(
        l.iter()
            .map(|(k, v)| (k.clone(), Node::string(v)))
            .collect(),
    )
}

fn scenario_name(paths: &[PathBuf], opts: &Options) -> String {
    if let Some(n) = &opts.name {
        return n.clone();
    }
    let stem = paths
        .first()
        .and_then(|p| {
            let p = if p.as_os_str().is_empty() || p == Path::new(".") {
                std::env::current_dir().ok()?
            } else {
                p.clone()
            };
            p.file_stem().map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "import".to_string()
    } else {
        format!("import-{name}")
    }
}

/// The endpoints of the truth tables: one pod per distinct identity and set of named ports
/// (pods that share both get the same verdicts from every policy, spec §3.3, §4.3), in
/// name order, at most `cap`; per address family.
fn probe_endpoints(
    pods: &[&PodRec],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    cap: usize,
) -> (Vec<Vec<String>>, usize) {
    let mut seen = BTreeSet::new();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let empty = BTreeMap::new();
    for p in pods {
        let ns_labels = namespaces.get(&p.namespace).unwrap_or(&empty);
        let ids =
            labels::pod_identity_labels(&p.namespace, ns_labels, &p.labels, &p.service_account);
        if !seen.insert((ids, p.named_ports.clone(), p.ip.is_ipv4())) {
            continue;
        }
        let name = format!("{}/{}", p.namespace, p.name);
        if p.ip.is_ipv4() {
            v4.push(name);
        } else {
            v6.push(name);
        }
    }
    let distinct = v4.len() + v6.len();
    let mut out = Vec::new();
    for mut group in [v4, v6] {
        group.truncate(cap);
        if !group.is_empty() {
            out.push(group);
        }
    }
    (out, distinct)
}

fn table_text(rows: &[String], columns: &[String]) -> String {
    // Each column as wide as its endpoint's name, rows' names padded to the longest.
    let width = rows.iter().map(String::len).max().unwrap_or(1);
    let mut out = " ".repeat(width);
    for c in columns {
        out.push(' ');
        out.push_str(c);
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("{r:<width$}"));
        for c in columns {
            out.push(' ');
            out.push_str(&format!("{:>w$}", "?", w = c.len()));
        }
        out.push('\n');
    }
    out
}

/// The ports the policies name (numbers, and names resolved through the pods' named ports),
/// most mentioned first, then the pods' most common container ports: at most
/// [`DEFAULT_PROBE_PORTS`], in port order. Verdicts change where the policies' ports are.
fn default_probe_ports(dump: &Dump, pods: &[&PodRec]) -> Vec<(u16, Protocol)> {
    fn walk(node: &Node, in_ports: bool, out: &mut Vec<(String, Option<String>)>) {
        match &node.value {
            yaml::Value::Seq(items) => {
                for i in items {
                    walk(i, in_ports, out);
                }
            }
            yaml::Value::Map(entries) => {
                if in_ports {
                    if let Some(port) = node.get("port").and_then(|p| p.as_scalar()) {
                        let proto = node
                            .get("protocol")
                            .and_then(|p| p.as_scalar())
                            .map(|s| s.text.clone());
                        out.push((port.text.clone(), proto));
                    }
                }
                for (k, v) in entries {
                    walk(v, key_is(k, "ports"), out);
                }
            }
            yaml::Value::Scalar(_) => {}
        }
    }
    let mut named: BTreeMap<&str, BTreeSet<(u16, Protocol)>> = BTreeMap::new();
    for p in pods {
        for (n, port, proto) in &p.named_ports {
            named.entry(n.as_str()).or_default().insert((*port, *proto));
        }
    }
    let mut mentions: BTreeMap<(u16, Protocol), usize> = BTreeMap::new();
    for (p, _) in dump.policies.values() {
        let mut found = Vec::new();
        walk(&p.node, false, &mut found);
        for (port, proto) in found {
            let proto = match proto.as_deref().map(str::to_ascii_uppercase).as_deref() {
                Some("UDP") => Some(Protocol::Udp),
                Some("SCTP") => Some(Protocol::Sctp),
                Some("TCP") | Some("ANY") | None => None,
                Some(_) => continue,
            };
            match port.parse::<u16>() {
                Ok(0) => {}
                Ok(n) => {
                    *mentions
                        .entry((n, proto.unwrap_or(Protocol::Tcp)))
                        .or_default() += 1
                }
                Err(_) => {
                    for pp in named.get(port.as_str()).into_iter().flatten() {
                        if proto.is_none_or(|p| p == pp.1) {
                            *mentions.entry(*pp).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    let mut served: BTreeMap<(u16, Protocol), usize> = BTreeMap::new();
    for p in pods {
        for pp in &p.all_ports {
            *served.entry(*pp).or_default() += 1;
        }
    }
    let ranked = |m: BTreeMap<(u16, Protocol), usize>| {
        let mut v: Vec<((u16, Protocol), usize)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(p, _)| p)
    };
    let mut ports: Vec<(u16, Protocol)> = Vec::new();
    for p in ranked(mentions).chain(ranked(served)) {
        if ports.len() < DEFAULT_PROBE_PORTS && !ports.contains(&p) {
            ports.push(p);
        }
    }
    if ports.is_empty() {
        ports.push((80, Protocol::Tcp));
    }
    ports.sort();
    ports
}

/// The services as the scenario declares them, and truth tables with services as columns:
/// per service port (the most common ones, at most [`DEFAULT_PROBE_PORTS`]), the services that
/// have it (at most `--probe-pods`), from the probed pods, leaving out a pod that would be
/// the service's own backend (the harness does not model service loopback). Also the count
/// of selector-less services left without backends.
fn services_out(
    dump: &Dump,
    pods: &[&PodRec],
    rows: &[String],
    opts: &Options,
) -> (Node, Vec<Node>, usize) {
    let mut out = Vec::new();
    let mut no_backend_port = 0;
    // (port, protocol) -> [(column, the backend address the harness picks)]
    let mut columns: BTreeMap<(u16, Protocol), Vec<(String, IpAddr)>> = BTreeMap::new();
    for ((ns, name), (sv, _)) in &dump.services {
        let mut e = vec![("name", Node::string(format!("{ns}/{name}")))];
        if !sv.labels.is_empty() {
            e.push(("labels", labels_node(&sv.labels)));
        }
        let slice = dump.slices.get(&(ns.clone(), name.clone()));
        let family_v4 = match sv.cluster_ip {
            Some(Some(ip)) => ip.is_ipv4(),
            _ => slice
                .is_none_or(|s| s.addresses.iter().any(IpAddr::is_ipv4) || s.addresses.is_empty()),
        };
        let mut port_nodes = Vec::new();
        let mut endpoints: Vec<IpAddr> = Vec::new();
        let mut fixed_ok = true;
        for p in &sv.ports {
            let mut pe = Vec::new();
            if let Some(n) = &p.name {
                pe.push(("name", Node::string(n)));
            }
            pe.push(("port", Node::plain(p.port.to_string())));
            let target = if sv.selector.is_some() {
                p.target.clone()
            } else {
                // No selector: the EndpointSlice's port of that name is where traffic goes.
                let by_slice = slice.and_then(|s| {
                    s.ports
                        .get(&(p.name.clone().unwrap_or_default(), p.protocol))
                        .copied()
                });
                match (by_slice, &p.target) {
                    (Some(n), _) => Some(IntOrString::Int(n as i64)),
                    (None, Some(IntOrString::Str(_))) => {
                        fixed_ok = false;
                        None
                    }
                    (None, t) => t.clone(),
                }
            };
            match &target {
                Some(IntOrString::Int(n)) => pe.push(("targetPort", Node::plain(n.to_string()))),
                Some(IntOrString::Str(n)) => pe.push(("targetPort", Node::string(n))),
                None => {}
            }
            pe.push(("protocol", Node::string(p.protocol.to_string())));
            port_nodes.push(Node::map(pe));
        }
        match &sv.selector {
            Some(sel) => e.push(("selector", labels_node(sel))),
            None => {
                if fixed_ok {
                    endpoints = slice
                        .map(|s| {
                            s.addresses
                                .iter()
                                .filter(|a| a.is_ipv4() == family_v4)
                                .copied()
                                .collect()
                        })
                        .unwrap_or_default();
                } else {
                    no_backend_port += 1;
                }
                if !endpoints.is_empty() {
                    e.push((
                        "endpoints",
                        Node::seq(
                            endpoints
                                .iter()
                                .map(|a| Node::string(a.to_string()))
                                .collect(),
                        ),
                    ));
                }
            }
        }
        if !port_nodes.is_empty() {
            e.push(("ports", Node::seq(port_nodes)));
        }
        match sv.cluster_ip {
            None => e.push(("clusterIP", Node::string("None"))),
            Some(Some(ip)) => e.push(("clusterIP", Node::string(ip.to_string()))),
            Some(None) => {}
        }
        out.push(Node::map(e));
        if sv.cluster_ip.is_none() || !family_v4 {
            continue;
        }
        // The backend the harness would pick for each port: the lowest address.
        for p in &sv.ports {
            let backend = match &sv.selector {
                Some(sel) => pods
                    .iter()
                    .filter(|pod| {
                        pod.namespace == *ns
                            && pod.ip.is_ipv4()
                            && sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
                            && match &p.target {
                                Some(IntOrString::Str(n)) => pod
                                    .named_ports
                                    .iter()
                                    .any(|(pn, _, pr)| pn == n && *pr == p.protocol),
                                _ => true,
                            }
                    })
                    .map(|pod| pod.ip)
                    .min(),
                None => endpoints.iter().copied().min(),
            };
            if let Some(b) = backend {
                columns
                    .entry((p.port, p.protocol))
                    .or_default()
                    .push((format!("svc:{ns}/{name}"), b));
            }
        }
    }
    let mut ranked: Vec<ServiceColumns> = columns.into_iter().collect();
    ranked.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    ranked.truncate(DEFAULT_PROBE_PORTS);
    ranked.sort_by_key(|a| a.0);
    let by_name: BTreeMap<String, IpAddr> = pods
        .iter()
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.ip))
        .collect();
    let mut tables = Vec::new();
    for ((port, proto), mut cols) in ranked {
        cols.truncate(opts.probe_pods.max(1));
        let backends: BTreeSet<IpAddr> = cols.iter().map(|c| c.1).collect();
        let table_rows: Vec<String> = rows
            .iter()
            .filter(|r| by_name.get(*r).is_some_and(|ip| !backends.contains(ip)))
            .cloned()
            .collect();
        if table_rows.is_empty() {
            continue;
        }
        let names: Vec<String> = cols.into_iter().map(|c| c.0).collect();
        tables.push(Node::map(vec![(
            "expect-matrix",
            Node::map(vec![
                ("port", Node::plain(port.to_string())),
                ("protocol", Node::string(proto.to_string())),
                ("table", Node::block(table_text(&table_rows, &names))),
            ]),
        )]));
    }
    (Node::seq(out), tables, no_backend_port)
}

/// Reads the dump at `paths` and writes its scenario.
pub fn import(paths: &[PathBuf], opts: &Options) -> Result<Imported, ImportError> {
    let files = dump_files(paths)?;
    let mut dump = Dump::default();
    let mut other_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        read_file(f, &mut dump, opts, &mut other_kinds)?;
    }
    let mut notes = Vec::new();

    // Workloads: their pods are synthesized only when the dump has no pods at all.
    if !dump.workloads.is_empty() {
        if dump.pods.is_empty() {
            synthesize(&mut dump, &mut notes).map_err(ImportError::Invalid)?;
        } else {
            for (kind, _, _) in std::mem::take(&mut dump.workloads) {
                dump.leave_out(format!("{kind} (the dump has its pods)"));
            }
        }
    }

    // Nodes that pods run on but the dump does not hold.
    let mut made_up_nodes = Vec::new();
    for (p, _) in dump.pods.values() {
        if !dump.nodes.contains_key(&p.node) {
            made_up_nodes.push(p.node.clone());
        }
    }
    made_up_nodes.sort();
    made_up_nodes.dedup();
    for n in &made_up_nodes {
        dump.nodes.insert(
            n.clone(),
            NodeRec {
                ip: None,
                labels: BTreeMap::new(),
                pod_cidr: None,
            },
        );
    }
    if !made_up_nodes.is_empty() {
        notes.push(format!(
            "note: {} nodes that pods run on have no Node object in the dump; added with allocated addresses: {}",
            made_up_nodes.len(),
            made_up_nodes.join(", ")
        ));
    }
    // Namespaces that pods live in but the dump does not hold.
    let mut made_up_ns: Vec<String> = dump
        .pods
        .values()
        .map(|(p, _)| p.namespace.clone())
        .chain(dump.services.keys().map(|(ns, _)| ns.clone()))
        .filter(|n| !dump.namespaces.contains_key(n))
        .collect();
    made_up_ns.sort();
    made_up_ns.dedup();
    if !made_up_ns.is_empty() {
        notes.push(format!(
            "note: {} namespaces that pods or services live in have no Namespace object in the dump; added without labels (their policies may select them by labels the cluster has): {}",
            made_up_ns.len(),
            made_up_ns.join(", ")
        ));
    }
    let dummy = Origin {
        file: PathBuf::new(),
        line: 0,
    };
    for n in made_up_ns {
        dump.namespaces.insert(n, (BTreeMap::new(), dummy.clone()));
    }
    // Two endpoints with one address: the cluster would not have them.
    let mut by_ip: BTreeMap<IpAddr, &Origin> = BTreeMap::new();
    for (p, at) in dump.pods.values() {
        if let Some(first) = by_ip.insert(p.ip, at) {
            return Err(ImportError::Invalid(format!(
                "{at}: pod {}/{} has address {}, which the object at {first} has too",
                p.namespace, p.name, p.ip
            )));
        }
    }

    // ---- write ----
    let name = scenario_name(paths, opts);
    let pods: Vec<&PodRec> = dump.pods.values().map(|(p, _)| p).collect();
    let ns_labels: BTreeMap<String, BTreeMap<String, String>> = dump
        .namespaces
        .iter()
        .map(|(k, (l, _))| (k.clone(), l.clone()))
        .collect();
    let (groups, distinct) = probe_endpoints(&pods, &ns_labels, opts.probe_pods.max(1));
    let ports: Vec<(u16, Protocol)> = match &opts.probe_ports {
        Some(p) => p.clone(),
        None => default_probe_ports(&dump, &pods),
    };
    let probed: usize = groups.iter().map(Vec::len).sum();

    let mut description = format!(
        "Imported by `verdict import` from a cluster dump of {} files: {} nodes, {} namespaces, {} pods, {} services, {} policies.\n",
        files.len(),
        dump.nodes.len(),
        dump.namespaces.len(),
        dump.pods.len(),
        dump.services.len(),
        dump.policies.len()
    );
    description.push_str(
        "The cluster's intended verdicts are not known, so none are asserted: every truth-table \
         cell is '?' (not checked), and `verdict run` compares the backends with each other on \
         each cell (a disagreement fails the run).\n",
    );
    description.push_str(&format!(
        "Endpoints probed: one pod per distinct identity and named-port set ({probed} of {distinct}{}).\n",
        if probed < distinct { ", capped by --probe-pods" } else { "" }
    ));
    if !dump.unsupported.is_empty() {
        description.push_str(&format!(
            "Left out (not supported yet by verdict, so verdicts here may differ from the cluster's): {}\n",
            dump.unsupported.join("; ")
        ));
    }

    let nodes = Node::seq(
        dump.nodes
            .iter()
            .map(|(n, rec)| {
                let mut e = vec![("name", Node::string(n))];
                if let Some(ip) = rec.ip {
                    e.push(("ip", Node::string(ip.to_string())));
                }
                let mut l = rec.labels.clone();
                // The scenario format gives every node kubernetes.io/hostname=<name> itself.
                if l.get("kubernetes.io/hostname") == Some(n) {
                    l.remove("kubernetes.io/hostname");
                }
                if !l.is_empty() {
                    e.push(("labels", labels_node(&l)));
                }
                if e.len() == 1 {
                    Node::string(n)
                } else {
                    Node::map(e)
                }
            })
            .collect(),
    );
    let namespaces = Node::seq(
        dump.namespaces
            .iter()
            .map(|(n, (l, _))| {
                let mut l = l.clone();
                // Kubernetes sets it on every namespace, and so does the scenario format.
                if l.get("kubernetes.io/metadata.name") == Some(n) {
                    l.remove("kubernetes.io/metadata.name");
                }
                let mut e = vec![("name", Node::string(n))];
                if !l.is_empty() {
                    e.push(("labels", labels_node(&l)));
                }
                Node::map(e)
            })
            .collect(),
    );
    let pod_nodes = Node::seq(
        pods.iter()
            .map(|p| {
                let mut e = vec![
                    ("name", Node::string(format!("{}/{}", p.namespace, p.name))),
                    ("node", Node::string(&p.node)),
                    ("ip", Node::string(p.ip.to_string())),
                ];
                if !p.labels.is_empty() {
                    e.push(("labels", labels_node(&p.labels)));
                }
                if !p.named_ports.is_empty() {
                    e.push((
                        "ports",
                        Node::seq(
                            p.named_ports
                                .iter()
                                .map(|(n, port, proto)| {
                                    Node::map(vec![
                                        ("name", Node::string(n)),
                                        ("port", Node::plain(port.to_string())),
                                        ("protocol", Node::string(proto.to_string())),
                                    ])
                                })
                                .collect(),
                        ),
                    ));
                }
                if p.service_account != "default" {
                    e.push(("serviceAccount", Node::string(&p.service_account)));
                }
                Node::map(e)
            })
            .collect(),
    );
    let policies = Node::seq(
        dump.policies
            .values()
            .map(|(p, _)| p.node.clone())
            .collect(),
    );
    let mut steps = Vec::new();
    for group in &groups {
        for (port, proto) in &ports {
            steps.push(Node::map(vec![(
                "expect-matrix",
                Node::map(vec![
                    ("port", Node::plain(port.to_string())),
                    ("protocol", Node::string(proto.to_string())),
                    ("table", Node::block(table_text(group, group))),
                ]),
            )]));
        }
    }
    let pod_tables = steps.len();
    let (service_nodes, service_tables, no_backend_port) = services_out(
        &dump,
        &pods,
        groups.first().map(Vec::as_slice).unwrap_or(&[]),
        opts,
    );
    steps.extend(service_tables);
    if no_backend_port > 0 {
        notes.push(format!(
            "note: {no_backend_port} services without a selector name a targetPort their EndpointSlices do not resolve: imported without backends"
        ));
    }
    if dump.moved_cluster_ips > 0 {
        notes.push(format!(
            "note: {} services have a cluster IP outside the scenario's service CIDR (10.96.0.0/12, fd00:10:96::/112): given an allocated one instead (policies do not see cluster IPs: Cilium translates them to backends before policy)",
            dump.moved_cluster_ips
        ));
    }
    let tables = steps.len();
    let mut cluster = vec![("nodes", nodes), ("namespaces", namespaces)];
    if !pods.is_empty() {
        cluster.push(("pods", pod_nodes));
    }
    if !dump.services.is_empty() {
        cluster.push(("services", service_nodes));
    }
    let root = Node::map(vec![
        ("name", Node::string(&name)),
        ("description", Node::block(description)),
        ("cluster", Node::map(cluster)),
        ("policies", policies),
        ("steps", Node::seq(steps)),
    ]);
    let scenario = format!(
        "# Written by `verdict import`; re-importing the same dump gives the same bytes.\n{}",
        yaml::emit::to_string(&root)
    );

    // The scenario must load and build as written (a check on this module, and on objects
    // the dump holds that the scenario format refuses).
    let loaded = crate::scenario::parse(Path::new(&format!("{name}.yaml")), &scenario)
        .map_err(|e| ImportError::Invalid(format!("the imported scenario does not load: {e}")))?;
    crate::engine::build_world(&loaded)
        .map_err(|e| ImportError::Invalid(format!("the imported scenario does not build: {e}")))?;

    // ---- summary ----
    let kept: Vec<String> = dump
        .policies
        .values()
        .map(|(p, _)| p.kind.as_str())
        .fold(BTreeMap::<&str, usize>::new(), |mut m, k| {
            *m.entry(k).or_default() += 1;
            m
        })
        .into_iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    notes.insert(
        0,
        format!(
            "imported {} files: {} nodes, {} namespaces, {} pods, {} services, {} policies{}",
            files.len(),
            dump.nodes.len(),
            dump.namespaces.len(),
            dump.pods.len(),
            dump.services.len(),
            dump.policies.len(),
            if kept.is_empty() {
                String::new()
            } else {
                format!(" ({})", kept.join(", "))
            }
        ),
    );
    if dump.terminating > 0 {
        notes.push(format!(
            "note: {} objects are being deleted (deletionTimestamp): kept, as Cilium keeps them until they are gone",
            dump.terminating
        ));
    }
    if dump.dropped_secondary_ips > 0 {
        notes.push(format!(
            "note: {} pods have a second address (dual stack): the scenario gives each pod its primary address (status.podIP) only",
            dump.dropped_secondary_ips
        ));
    }
    for (why, n) in &dump.left_out {
        notes.push(format!("left out: {n} {why}"));
    }
    for u in &dump.unsupported {
        notes.push(format!("left out (--skip-unsupported): {u}"));
    }
    if !other_kinds.is_empty() {
        let parts: Vec<String> = other_kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        notes.push(format!(
            "skipped {} objects of kinds the scenario does not model: {}",
            other_kinds.values().sum::<usize>(),
            parts.join(", ")
        ));
    }
    notes.push(format!(
        "probes: {} truth tables ({} pods x {} ports{}; {} with services as columns), every cell '?': compared across backends",
        tables,
        probed,
        ports.len(),
        if probed < distinct {
            format!(
                "; {distinct} distinct identities, capped by --probe-pods {}",
                opts.probe_pods
            )
        } else {
            String::new()
        },
        tables - pod_tables,
    ));
    Ok(Imported { scenario, notes })
}
