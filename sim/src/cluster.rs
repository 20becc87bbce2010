//! Cluster state: nodes, namespaces, pods (with their security identities), externals, and
//! how a probe's endpoint names resolve to peers.
//!
//! Pods get identities from their identity-relevant labels (spec §2.4, §3.3); equal label
//! sets share one identity. Addresses not given in a scenario are allocated
//! deterministically: node `i` (0-based) gets 172.18.0.(2+i) and its pods 10.244.i.(10+n),
//! skipping addresses already taken.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

use crate::identity::{Identity, IdentityAllocator, Scope};
use ipnet::IpNet;

use crate::labels::{
    cidr_group_labels, is_identity_relevant, pod_identity_labels, Label, LabelSet, Source,
    DEFAULT_CLUSTER, POLICY_CLUSTER,
};

/// `namespace/name` of a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl PodName {
    pub fn parse(s: &str) -> Option<PodName> {
        let (ns, name) = s.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(PodName {
            namespace: ns.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An L4 protocol a probe or a port can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
}

impl Protocol {
    /// The IP protocol number (`Nexthdr` in Cilium's key).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
        }
    }
    pub fn from_number(n: u8) -> Option<Protocol> {
        Some(match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            _ => return None,
        })
    }
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            "ICMP" => Protocol::Icmp,
            "ICMPV6" => Protocol::Icmpv6,
            _ => return None,
        })
    }
    pub fn is_icmp(self) -> bool {
        matches!(self, Protocol::Icmp | Protocol::Icmpv6)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPv6",
        })
    }
}

/// A named container port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub ip: IpAddr,
    /// The node's labels: `kubernetes.io/hostname=<name>` (which the kubelet sets on every
    /// node) and those the scenario declares (`Cluster::set_node_labels`).
    pub labels: BTreeMap<String, String>,
    /// The identity other nodes give this node's addresses: remote-node (6), or under
    /// `--enable-node-selector-labels` its own identity by node labels
    /// ([`Cluster::set_agent`]).
    pub remote_identity: Identity,
}

/// The agent options a scenario sets (`agent:`), with Cilium's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentConfig {
    /// `--enable-host-firewall` (default false, `pkg/defaults`): host policies are enforced
    /// on each node's host endpoint (`bpf/bpf_host.c`, `bpf/lib/host_firewall.h`).
    pub host_firewall: bool,
    /// `--enable-node-selector-labels` (default false): remote nodes get identities by their
    /// labels, which `fromNodes`/`toNodes` select; without it those fields are refused.
    pub node_selector_labels: bool,
}

/// Endpoint ids of host endpoints: `HOST_ENDPOINT_ID_BASE + node index`, above every pod's
/// (pods count from 1), so enabling the host firewall renumbers no pod.
pub const HOST_ENDPOINT_ID_BASE: u32 = 0x8000;

/// The label the kubelet puts on every node (Kubernetes "Well-Known Labels").
pub const NODE_HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Clone, Debug)]
pub struct Namespace {
    pub name: String,
    /// Includes `kubernetes.io/metadata.name=<name>` (K8s ≥ 1.21 sets it on every namespace).
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub name: PodName,
    pub node: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<ContainerPort>,
    pub service_account: String,
    pub identity: Identity,
    /// Local endpoint id (Cilium's `LXC_ID`), unique in the cluster, never reused in a run.
    pub endpoint_id: u32,
}

/// A pod as a scenario declares it.
#[derive(Clone, Debug, Default)]
pub struct PodSpec {
    pub name: String,
    pub node: Option<String>,
    pub ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<ContainerPort>,
    /// `spec.serviceAccountName`; `None` is Kubernetes' default, the namespace's `default`
    /// service account. Cilium puts it in the `io.cilium.k8s.policy.serviceaccount` label.
    pub service_account: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error("pod name {0:?} is not <namespace>/<name>")]
    BadPodName(String),
    #[error("pod {0}: namespace {1} is not declared in cluster.namespaces")]
    UnknownNamespace(String, String),
    #[error("pod {0} already exists")]
    DuplicatePod(String),
    #[error("no pod {0}")]
    UnknownPod(String),
    #[error("no namespace {0}")]
    NoNamespace(String),
    #[error("namespace {0} declared twice")]
    DuplicateNamespace(String),
    #[error("pod {0}: node {1} is not declared in cluster.nodes")]
    UnknownNode(String, String),
    #[error("address {0} is already used by {1}")]
    AddressInUse(IpAddr, String),
    #[error("node {0} declared twice")]
    DuplicateNode(String),
    #[error("external {0} declared twice")]
    DuplicateExternal(String),
    #[error("no free pod address left on node {0}")]
    AddressesExhausted(String),
    #[error("namespace {0} still has pods")]
    NamespaceNotEmpty(String),
    #[error("pod {0}: serviceAccount {1:?} is not a valid name: {2}")]
    BadServiceAccount(String, String, String),
    #[error("service name {0:?} is not <namespace>/<name>")]
    BadServiceName(String),
    #[error("service {0} already exists")]
    DuplicateService(String),
    #[error("service {0}: clusterIP: {1}")]
    BadClusterIp(String, String),
    #[error("service {0}: {1}")]
    BadServiceEndpoint(String, String),
    #[error("no node {0}")]
    NoNode(String),
}

/// A peer of a probe or a packet, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Pod(PodName),
    /// A node's host endpoint.
    Host(String),
    /// Anything outside the cluster (an `externals` entry or a bare address).
    World(IpAddr),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pod(p) => write!(f, "{p}"),
            Peer::Host(n) => write!(f, "host:{n}"),
            Peer::World(ip) => write!(f, "{ip}"),
        }
    }
}

/// What a cluster change did to identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityChange {
    pub added: Vec<Identity>,
    pub removed: Vec<Identity>,
}

#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<PodName, Pod>,
    pub externals: BTreeMap<String, IpAddr>,
    /// Kubernetes Services (`crate::service`).
    pub services: BTreeMap<crate::service::ServiceName, crate::service::Service>,
    pub identities: IdentityAllocator,
    /// CiliumCIDRGroup objects by name.
    pub cidr_groups: BTreeMap<String, CidrGroup>,
    /// Every node's auth map, as the auth managers wrote it (`crate::auth`).
    pub auth: crate::auth::AuthTable,
    /// What each node's DNS proxy has taught its name manager (`crate::fqdn`).
    pub fqdn: crate::fqdn::FqdnCache,
    /// The agent options (the scenario's `agent:`).
    pub agent: AgentConfig,
    next_endpoint_id: u32,
}

/// A CiliumCIDRGroup as the agent keeps it (`policyWatcher.cidrGroupCache`): the labels its
/// prefixes get in the ipcache and its prefixes (masked, deduplicated).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrGroup {
    /// [`cidr_group_labels`]: the name label and the object's labels, world not included.
    pub labels: LabelSet,
    pub cidrs: BTreeSet<IpNet>,
}

impl Cluster {
    pub fn new() -> Self {
        Cluster {
            next_endpoint_id: 1,
            ..Default::default()
        }
    }

    pub fn add_node(&mut self, name: &str, ip: Option<IpAddr>) -> Result<(), ClusterError> {
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(ClusterError::DuplicateNode(name.to_string()));
        }
        let ip = match ip {
            Some(ip) => ip,
            None => {
                let mut i = self.nodes.len() as u32;
                loop {
                    let cand =
                        IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 18, 0, 2)) + i));
                    if self.owner_of(cand).is_none() {
                        break cand;
                    }
                    i += 1;
                }
            }
        };
        if let Some(owner) = self.owner_of(ip) {
            return Err(ClusterError::AddressInUse(ip, owner));
        }
        self.nodes.push(Node {
            name: name.to_string(),
            ip,
            labels: [(NODE_HOSTNAME_LABEL.to_string(), name.to_string())].into(),
            remote_identity: Identity::REMOTE_NODE,
        });
        Ok(())
    }

    /// Sets labels on a node (on top of `kubernetes.io/hostname`, which a declared label of
    /// that key replaces).
    pub fn set_node_labels(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .ok_or_else(|| ClusterError::NoNode(name.to_string()))?;
        for (k, v) in labels {
            node.labels.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    pub fn add_namespace(
        &mut self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        if self.namespaces.contains_key(name) {
            return Err(ClusterError::DuplicateNamespace(name.to_string()));
        }
        let mut labels = labels;
        labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
        self.namespaces.insert(
            name.to_string(),
            Namespace {
                name: name.to_string(),
                labels,
            },
        );
        Ok(())
    }

    pub fn add_external(&mut self, name: &str, ip: IpAddr) -> Result<(), ClusterError> {
        if self.externals.contains_key(name) {
            return Err(ClusterError::DuplicateExternal(name.to_string()));
        }
        self.externals.insert(name.to_string(), ip);
        Ok(())
    }

    fn ensure_default_node(&mut self) {
        if self.nodes.is_empty() {
            // The scenario format's default: one node "node-1".
            let _ = self.add_node("node-1", None);
        }
    }

    /// Who owns an address: a pod, a node or an external, for error messages.
    pub fn owner_of(&self, ip: IpAddr) -> Option<String> {
        if let Some(p) = self.pods.values().find(|p| p.ip == ip) {
            return Some(format!("pod {}", p.name));
        }
        if let Some(n) = self.nodes.iter().find(|n| n.ip == ip) {
            return Some(format!("node {}", n.name));
        }
        if let Some(s) = self.service_by_ip(ip) {
            return Some(format!("service {} (its cluster IP)", s.name));
        }
        None
    }

    fn allocate_pod_ip(&self, node_index: usize, node: &str) -> Result<IpAddr, ClusterError> {
        let used: BTreeSet<IpAddr> = self.pods.values().map(|p| p.ip).collect();
        for host in 10u8..=254 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 244, node_index as u8, host));
            if !used.contains(&ip) && self.owner_of(ip).is_none() {
                return Ok(ip);
            }
        }
        Err(ClusterError::AddressesExhausted(node.to_string()))
    }

    fn pod_labels(&self, ns: &str, labels: &BTreeMap<String, String>, sa: &str) -> LabelSet {
        let ns_labels = self
            .namespaces
            .get(ns)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        pod_identity_labels(ns, &ns_labels, labels, sa)
    }

    pub fn add_pod(&mut self, spec: PodSpec) -> Result<IdentityChange, ClusterError> {
        self.ensure_default_node();
        let name = PodName::parse(&spec.name)
            .ok_or_else(|| ClusterError::BadPodName(spec.name.clone()))?;
        if !self.namespaces.contains_key(&name.namespace) {
            return Err(ClusterError::UnknownNamespace(
                spec.name.clone(),
                name.namespace.clone(),
            ));
        }
        if self.pods.contains_key(&name) {
            return Err(ClusterError::DuplicatePod(spec.name.clone()));
        }
        let node = spec
            .node
            .clone()
            .unwrap_or_else(|| self.nodes[0].name.clone());
        let node_index = self
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| ClusterError::UnknownNode(spec.name.clone(), node.clone()))?;
        let ip = match spec.ip {
            Some(ip) => {
                if let Some(owner) = self.owner_of(ip) {
                    return Err(ClusterError::AddressInUse(ip, owner));
                }
                ip
            }
            None => self.allocate_pod_ip(node_index, &node)?,
        };
        let sa = spec
            .service_account
            .clone()
            .unwrap_or_else(|| "default".to_string());
        // A ServiceAccount name is a DNS subdomain (apimachinery ValidateServiceAccountName).
        crate::api::check_dns_subdomain(&sa)
            .map_err(|e| ClusterError::BadServiceAccount(spec.name.clone(), sa.clone(), e))?;
        let labels = self.pod_labels(&name.namespace, &spec.labels, &sa);
        let alloc = self.identities.acquire(&labels, Scope::Cluster);
        let endpoint_id = self.next_endpoint_id;
        self.next_endpoint_id += 1;
        self.pods.insert(
            name.clone(),
            Pod {
                name,
                node,
                ip,
                labels: spec.labels,
                ports: spec.ports,
                service_account: sa,
                identity: alloc.identity,
                endpoint_id,
            },
        );
        Ok(IdentityChange {
            added: if alloc.new {
                vec![alloc.identity]
            } else {
                vec![]
            },
            removed: vec![],
        })
    }

    pub fn delete_pod(&mut self, name: &str) -> Result<IdentityChange, ClusterError> {
        let pn = PodName::parse(name).ok_or_else(|| ClusterError::BadPodName(name.to_string()))?;
        let pod = self
            .pods
            .remove(&pn)
            .ok_or_else(|| ClusterError::UnknownPod(name.to_string()))?;
        self.fqdn.remove_endpoint(&pn);
        let released = self.identities.release(pod.identity);
        Ok(IdentityChange {
            added: vec![],
            removed: if released { vec![pod.identity] } else { vec![] },
        })
    }

    /// Recomputes a pod's identity after its labels or its namespace's labels changed.
    fn reidentify(&mut self, pn: &PodName, change: &mut IdentityChange) {
        let Some(pod) = self.pods.get(pn) else { return };
        let labels = self.pod_labels(&pn.namespace, &pod.labels, &pod.service_account);
        let old = pod.identity;
        if self.identities.labels(old) == Some(&labels) {
            return;
        }
        let alloc = self.identities.acquire(&labels, Scope::Cluster);
        if alloc.new {
            change.added.push(alloc.identity);
        }
        if self.identities.release(old) {
            change.removed.push(old);
        }
        if let Some(pod) = self.pods.get_mut(pn) {
            pod.identity = alloc.identity;
        }
    }

    pub fn label_pod(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<IdentityChange, ClusterError> {
        let pn = PodName::parse(name).ok_or_else(|| ClusterError::BadPodName(name.to_string()))?;
        let pod = self
            .pods
            .get_mut(&pn)
            .ok_or_else(|| ClusterError::UnknownPod(name.to_string()))?;
        for k in unset {
            pod.labels.remove(k);
        }
        for (k, v) in set {
            pod.labels.insert(k.clone(), v.clone());
        }
        let mut change = IdentityChange::default();
        self.reidentify(&pn, &mut change);
        Ok(change)
    }

    pub fn label_namespace(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<IdentityChange, ClusterError> {
        let ns = self
            .namespaces
            .get_mut(name)
            .ok_or_else(|| ClusterError::NoNamespace(name.to_string()))?;
        for k in unset {
            if k != "kubernetes.io/metadata.name" {
                ns.labels.remove(k);
            }
        }
        for (k, v) in set {
            if k != "kubernetes.io/metadata.name" {
                ns.labels.insert(k.clone(), v.clone());
            }
        }
        let mut change = IdentityChange::default();
        let members: Vec<PodName> = self
            .pods
            .keys()
            .filter(|p| p.namespace == name)
            .cloned()
            .collect();
        for pn in members {
            self.reidentify(&pn, &mut change);
        }
        Ok(change)
    }

    /// Creates or replaces the CiliumCIDRGroup `name` (`onUpsertCIDRGroup`).
    pub fn upsert_cidr_group(
        &mut self,
        name: &str,
        object_labels: &BTreeMap<String, String>,
        cidrs: impl IntoIterator<Item = IpNet>,
    ) {
        self.cidr_groups.insert(
            name.to_string(),
            CidrGroup {
                labels: cidr_group_labels(name, object_labels),
                cidrs: cidrs.into_iter().map(|c| c.trunc()).collect(),
            },
        );
    }

    /// Deletes a CiliumCIDRGroup; false when there is none of that name.
    pub fn delete_cidr_group(&mut self, name: &str) -> bool {
        self.cidr_groups.remove(name).is_some()
    }

    /// The CIDR-group labels an address outside the cluster carries: those of every group
    /// with a prefix containing it. The ipcache gives the longest prefix containing an
    /// address the labels of every shorter one as well (`mergeParentLabels`,
    /// `pkg/ipcache/metadata.go`), so these are the labels of the address's identity.
    pub fn cidr_group_labels_of(&self, ip: IpAddr) -> Vec<Label> {
        self.cidr_groups
            .values()
            .filter(|g| g.cidrs.iter().any(|c| c.contains(&ip)))
            .flat_map(|g| g.labels.iter().cloned())
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Resolves a probe endpoint (spec "Endpoints in probes"): `ns/pod`, `host:<node>`, an
    /// `externals` name, or an IP literal (a pod's or node's IP resolves to it).
    pub fn resolve(&self, name: &str) -> Option<Peer> {
        if let Some(node) = name.strip_prefix("host:") {
            return self.node(node).map(|n| Peer::Host(n.name.clone()));
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Some(self.peer_of_ip(ip));
        }
        if let Some(ip) = self.externals.get(name) {
            return Some(self.peer_of_ip(*ip));
        }
        let pn = PodName::parse(name)?;
        self.pods.contains_key(&pn).then_some(Peer::Pod(pn))
    }

    /// Whatever owns an address: a pod, a node's host, or the world.
    pub fn peer_of_ip(&self, ip: IpAddr) -> Peer {
        if let Some(p) = self.pods.values().find(|p| p.ip == ip) {
            return Peer::Pod(p.name.clone());
        }
        if let Some(n) = self.nodes.iter().find(|n| n.ip == ip) {
            return Peer::Host(n.name.clone());
        }
        Peer::World(ip)
    }

    pub fn ip_of(&self, peer: &Peer) -> Option<IpAddr> {
        match peer {
            Peer::Pod(p) => self.pods.get(p).map(|p| p.ip),
            Peer::Host(n) => self.node(n).map(|n| n.ip),
            Peer::World(ip) => Some(*ip),
        }
    }

    /// Sets the agent options, once the nodes and their labels are known. With
    /// `node_selector_labels`, each node gets a remote-node-scope identity with the labels
    /// `nodeIdentityLabels` (`pkg/node/manager/manager.go`) gives a remote node:
    /// `reserved:remote-node`, every node label with source `node` (`FilterNodeLabels`
    /// keeps all of them by default: no `--node-labels`), and
    /// `k8s:io.cilium.k8s.policy.cluster=<cluster>`. Node labels do not change later.
    pub fn set_agent(&mut self, agent: AgentConfig) {
        self.agent = agent;
        if !agent.node_selector_labels {
            return;
        }
        for i in 0..self.nodes.len() {
            let mut labels = vec![
                Label::reserved("remote-node"),
                Label::k8s(POLICY_CLUSTER, DEFAULT_CLUSTER),
            ];
            labels.extend(
                self.nodes[i]
                    .labels
                    .iter()
                    .map(|(k, v)| Label::new(Source::Node, k.clone(), v.clone())),
            );
            let id = self
                .identities
                .acquire(&LabelSet::new(labels), Scope::RemoteNode)
                .identity;
            self.nodes[i].remote_identity = id;
        }
    }

    /// The host endpoint's labels on `node` (`Endpoint.InitWithNodeLabels`,
    /// `pkg/endpoint/endpoint.go`): `reserved:host` plus the node's labels with source `k8s`,
    /// filtered as pod labels are (`labelsfilter.Filter`: `kubernetes.io/hostname` is not an
    /// identity label). A host policy's `nodeSelector` is matched against these
    /// (`pkg/policy/rule.go` `matchesSubject`).
    pub fn host_labels(&self, node: &str) -> Option<LabelSet> {
        let n = self.node(node)?;
        let mut labels = vec![Label::reserved("host")];
        labels.extend(
            n.labels
                .iter()
                .filter(|(k, _)| is_identity_relevant(k))
                .map(|(k, v)| Label::k8s(k.clone(), v.clone())),
        );
        Some(LabelSet::new(labels))
    }

    /// The endpoint id of `node`'s host endpoint ([`HOST_ENDPOINT_ID_BASE`]).
    pub fn host_endpoint_id(&self, node: &str) -> Option<u32> {
        self.nodes
            .iter()
            .position(|n| n.name == node)
            .map(|i| HOST_ENDPOINT_ID_BASE + i as u32)
    }

    /// The node a peer lives on (none for the world).
    pub fn node_of<'a>(&'a self, peer: &'a Peer) -> Option<&'a str> {
        match peer {
            Peer::Pod(p) => self.pods.get(p).map(|p| p.node.as_str()),
            Peer::Host(n) => Some(n.as_str()),
            Peer::World(_) => None,
        }
    }

    /// The identity of a cluster peer as seen from `observer_node`: a pod's identity, host (1)
    /// for the observer's own node, remote-node (6) for the others; `None` for the world,
    /// whose identity depends on the ipcache (world or a CIDR identity).
    pub fn cluster_identity(&self, peer: &Peer, observer_node: &str) -> Option<Identity> {
        match peer {
            Peer::Pod(p) => self.pods.get(p).map(|p| p.identity),
            Peer::Host(n) if n == observer_node => Some(Identity::HOST),
            Peer::Host(n) => Some(
                self.node(n)
                    .map_or(Identity::REMOTE_NODE, |n| n.remote_identity),
            ),
            Peer::World(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let mut c = Cluster::new();
        c.add_node("node-1", None).unwrap();
        c.add_node("node-2", None).unwrap();
        c.add_namespace("x", [("ns".to_string(), "x".to_string())].into())
            .unwrap();
        c
    }

    /// Cilium labels a pod with its service account (`SanitizePodLabels`, spec §2.4):
    /// `default` unless the pod names one, and the label is part of the identity.
    #[test]
    fn service_account_is_an_identity_label() {
        let mut c = cluster();
        let spec = |name: &str, sa: Option<&str>| PodSpec {
            name: name.into(),
            labels: [("pod".into(), "a".into())].into(),
            service_account: sa.map(str::to_string),
            ..Default::default()
        };
        c.add_pod(spec("x/a", None)).unwrap();
        c.add_pod(spec("x/b", Some("leia"))).unwrap();
        let label = |p: &str| {
            let id = c.pods[&PodName::parse(p).unwrap()].identity;
            c.identities
                .labels(id)
                .unwrap()
                .k8s_value(crate::labels::SERVICE_ACCOUNT)
                .map(str::to_string)
        };
        assert_eq!(label("x/a").as_deref(), Some("default"));
        assert_eq!(label("x/b").as_deref(), Some("leia"));
        assert_ne!(
            c.pods[&PodName::parse("x/a").unwrap()].identity,
            c.pods[&PodName::parse("x/b").unwrap()].identity
        );
        assert!(matches!(
            c.add_pod(spec("x/c", Some("Not_Valid"))),
            Err(ClusterError::BadServiceAccount(..))
        ));
    }

    #[test]
    fn addresses_and_identities_are_deterministic() {
        let mut c = cluster();
        c.add_pod(PodSpec {
            name: "x/a".into(),
            labels: [("pod".into(), "a".into())].into(),
            ..Default::default()
        })
        .unwrap();
        c.add_pod(PodSpec {
            name: "x/b".into(),
            node: Some("node-2".into()),
            labels: [("pod".into(), "a".into())].into(),
            ..Default::default()
        })
        .unwrap();
        let a = &c.pods[&PodName::parse("x/a").unwrap()];
        let b = &c.pods[&PodName::parse("x/b").unwrap()];
        assert_eq!(a.ip.to_string(), "10.244.0.10");
        assert_eq!(b.ip.to_string(), "10.244.1.10");
        assert_eq!(c.nodes[1].ip.to_string(), "172.18.0.3");
        // Equal label sets share one identity (spec §3.3).
        assert_eq!(a.identity, b.identity);
        assert_eq!(a.identity, Identity(256));
    }

    // spec §7 #20: a label change gives a new identity; pod-template-hash does not.
    #[test]
    fn relabel_changes_identity_only_for_relevant_labels() {
        let mut c = cluster();
        c.add_pod(PodSpec {
            name: "x/a".into(),
            labels: [("app".into(), "a".into())].into(),
            ..Default::default()
        })
        .unwrap();
        let ch = c
            .label_pod(
                "x/a",
                &[("pod-template-hash".into(), "123".into())].into(),
                &[],
            )
            .unwrap();
        assert_eq!(ch, IdentityChange::default());
        let ch = c
            .label_pod("x/a", &[("app".into(), "b".into())].into(), &[])
            .unwrap();
        assert_eq!(ch.added, vec![Identity(257)]);
        assert_eq!(ch.removed, vec![Identity(256)]);
    }

    #[test]
    fn resolves_probe_endpoints() {
        let mut c = cluster();
        c.add_external("dns", "8.8.8.8".parse().unwrap()).unwrap();
        c.add_pod(PodSpec {
            name: "x/a".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.resolve("x/a"),
            Some(Peer::Pod(PodName::parse("x/a").unwrap()))
        );
        assert_eq!(
            c.resolve("10.244.0.10"),
            Some(Peer::Pod(PodName::parse("x/a").unwrap()))
        );
        assert_eq!(c.resolve("host:node-2"), Some(Peer::Host("node-2".into())));
        assert_eq!(c.resolve("172.18.0.2"), Some(Peer::Host("node-1".into())));
        assert_eq!(
            c.resolve("dns"),
            Some(Peer::World("8.8.8.8".parse().unwrap()))
        );
        assert_eq!(c.resolve("x/zz"), None);
        let p = Peer::Host("node-2".into());
        assert_eq!(
            c.cluster_identity(&p, "node-1"),
            Some(Identity::REMOTE_NODE)
        );
        assert_eq!(c.cluster_identity(&p, "node-2"), Some(Identity::HOST));
    }
}
