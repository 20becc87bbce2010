//! The model datapath: the agent's policy resolution (ipcache, selector cache, per-endpoint
//! MapState) kept up to date incrementally, and the BPF policy lookup of `bpf/lib/policy.h`
//! run over an LPM table of the ABI keys (spec §3.6, §4, §5.2).
//!
//! It owns the [`Model`]: built once from a [`Cluster`] and a [`Repository`], then updated after
//! each change (identities, pods, policies). Endpoints whose selecting rules changed are
//! recomputed in full (once per identity when their maps cannot differ); endpoints whose rules
//! use a selector whose selections changed, or that resolve named ports of an identity whose
//! ports changed, get only that identity's keys recomputed, as Cilium applies selector-cache
//! updates as incremental map changes. Every map change is written to one LPM table keyed by
//! the ABI key ([`EndpointPolicyKey`]), which the lookups read.
//!
//! [`Model::decide`] answers a flow the way the BPF programs do: egress on the source
//! endpoint, ingress on the destination endpoint, each with the L3 lookup
//! `{R, dir, proto, dport}`, deny returning at once, the L4-only lookup
//! `{0, dir, proto, dport}`, and the 1.19+ choice rule. It must agree with the `oracle` on
//! verdict, drop reason and direction; it also computes the match type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::abi::{
    self, AsBytes, EndpointPolicyKey, ENDPOINT_PREFIX_BITS, POLICY_FULL_PREFIX, PRECEDENCE_DENY,
};
use crate::cluster::{Cluster, ContainerPort, IdentityChange, Peer, Pod, PodName, Protocol};
use crate::identity::Identity;
use crate::ipcache::{CidrIdentityChange, IpCache, IpCacheHit, Lpm};
use crate::labels::{LabelSet, POD_NAMESPACE};
use crate::mapstate::{
    self, DirectionPolicy, Key, MapEntry, MapState, MapStateRow, NamedPorts, PolicyInput,
    DEFAULT_POLICY_MAP_MAX_ENTRIES,
};
use crate::oracle::Flow;
use crate::policy::{Peers, PolicyEntry, PolicyRef, PortSpec, Repository};
use crate::selector::Selector;
use crate::selectorcache::SelectorCache;
use crate::verdict::{Direction, DropReason, MatchType, Outcome, Redirects};

/// One local endpoint (a pod, or with the host firewall a node's host endpoint) and its
/// realized policy.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The pod; for a host endpoint `{namespace: "", name: <node>}` (see `host`).
    pub pod: PodName,
    /// A node's host endpoint (identity 1, host policies only; `bpf/bpf_host.c`).
    pub host: bool,
    /// Cilium's `LXC_ID`.
    pub id: u32,
    pub identity: Identity,
    pub node: String,
    pub ip: IpAddr,
    pub ports: Vec<ContainerPort>,
    pub ingress: DirectionPolicy,
    pub egress: DirectionPolicy,
    pub map: MapState,
}

impl Endpoint {
    /// How probes and `policy get` name the endpoint: `ns/pod` or `host:<node>`.
    pub fn name(&self) -> String {
        if self.host {
            format!("host:{}", self.node)
        } else {
            self.pod.to_string()
        }
    }

    /// Whether policy is enabled in `d`: the BPF programs emit verdict events only then.
    pub fn policy_enabled(&self, d: Direction) -> bool {
        match d {
            Direction::Ingress => self.ingress.enabled,
            Direction::Egress => self.egress.enabled,
        }
    }

    /// Whether the map holds more entries than Cilium's default map size.
    pub fn overflows(&self) -> bool {
        self.map.len() > DEFAULT_POLICY_MAP_MAX_ENTRIES
    }
}

/// The policy entries selecting one identity (`selectorPolicy`), by (policy, index).
#[derive(Clone, Debug, Default)]
struct SubjectRules {
    entries: Vec<(PolicyRef, usize)>,
    /// Some entry resolves named ports per destination identity.
    egress_named: bool,
    /// Some entry resolves named ports against the endpoint's own ports: endpoints of this
    /// identity may differ, so their maps are not shared.
    ingress_named: bool,
}

/// Work counters, to check and measure incrementality.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Endpoints whose map was recomputed in full.
    pub endpoints_recomputed: u64,
    /// Endpoints whose map had only some identities' keys recomputed.
    pub endpoint_deltas: u64,
    pub subjects_recomputed: u64,
    pub map_writes: u64,
    pub map_deletes: u64,
}

/// What changed in the realized state since the journal was last taken
/// ([`Model::take_journal`]): the items a map writer must re-read from the model to bring a
/// node's maps up to date without recomputing them whole. Each item names *where* something
/// may have changed, not the new value, so replaying a journal never depends on the order of
/// the changes inside it: the writer reads each item's current value (or its absence).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// Policy-map entries written or deleted, by (endpoint id, key).
    pub policy: BTreeSet<(u32, Key)>,
    /// Endpoints added, removed, or re-installed (identity or enforcement may differ), by
    /// address: the endpoint map's key.
    pub endpoints: BTreeSet<IpAddr>,
    /// ipcache prefixes whose entry may have changed.
    pub ipcache: BTreeSet<IpNet>,
    /// Nodes whose auth map changed ([`Model::set_auth`]).
    pub auth: BTreeSet<String>,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.policy.is_empty()
            && self.endpoints.is_empty()
            && self.ipcache.is_empty()
            && self.auth.is_empty()
    }
}

/// The model's part of the journal (the ipcache keeps its own).
#[derive(Clone, Debug, Default)]
struct ModelJournal {
    policy: BTreeSet<(u32, Key)>,
    endpoints: BTreeSet<IpAddr>,
    auth: BTreeSet<String>,
}

/// The keys of some remote identities in one endpoint's map.
type IdentityKeyMap = BTreeMap<Identity, Vec<(Key, MapEntry)>>;

/// Value of the policy LPM: the MapState key it came from and its ABI entry.
type PolicyMapValue = (Key, abi::PolicyEntry);

/// Bytes of [`EndpointPolicyKey`] after `prefixlen`: what the LPM trie compares.
const POLICY_KEY_DATA: usize = 12;

fn policy_key_data(k: &EndpointPolicyKey) -> [u8; POLICY_KEY_DATA] {
    let mut d = [0u8; POLICY_KEY_DATA];
    d.copy_from_slice(&k.as_bytes()[4..16]);
    d
}

/// See the module doc.
#[derive(Clone, Debug)]
pub struct Model {
    ipcache: IpCache,
    selectors: SelectorCache,
    policies: BTreeMap<PolicyRef, Vec<PolicyEntry>>,
    endpoints: BTreeMap<PodName, Endpoint>,
    by_id: BTreeMap<u32, PodName>,
    /// Endpoints by address (normally one each; the endpoint map is keyed by address).
    by_ip: BTreeMap<IpAddr, BTreeSet<PodName>>,
    by_identity: BTreeMap<Identity, BTreeSet<PodName>>,
    subjects: BTreeMap<Identity, SubjectRules>,
    named_ports: BTreeMap<Identity, NamedPorts>,
    nodes: BTreeMap<String, IpAddr>,
    /// Host endpoints by node, when the host firewall is on (`agent:`), with the
    /// labels host policies are matched against.
    hosts: BTreeMap<String, Endpoint>,
    host_labels: BTreeMap<String, LabelSet>,
    host_firewall: bool,
    policy_map: PolicyMap,
    dirty_subjects: BTreeSet<Identity>,
    dirty_endpoints: BTreeSet<PodName>,
    /// Selectors whose selections changed, and the identities that moved in or out.
    pending_selectors: BTreeSet<Selector>,
    pending_identities: BTreeSet<Identity>,
    /// Identities whose pods' named ports changed (egress named ports).
    named_ports_changed: BTreeSet<Identity>,
    stats: ModelStats,
    /// The change journal, when a map writer asked for it ([`Model::enable_journal`]); off
    /// by default so that backends that never drain it do not accumulate it.
    journal: Option<ModelJournal>,
    /// Every node's auth map, for the map writer.
    auth: crate::auth::AuthTable,
    /// The `toFQDNs` selectors in force, by `fqdn:` label key, with how many policy
    /// selectors name each (the name manager's `allSelectors`, `RegisterFQDNSelector`).
    fqdn_keys: BTreeMap<String, usize>,
    /// The name manager caches as last synced: per node, address → names.
    fqdn_view: BTreeMap<String, BTreeMap<IpAddr, BTreeSet<String>>>,
}

/// The peer selectors of an entry, as the selector cache holds them.
fn peer_selectors(e: &PolicyEntry) -> &[Selector] {
    match &e.peers {
        Peers::Selectors(s) => s,
        _ => &[],
    }
}

/// Whether an entry selects an identity as its subject: CCNP entries apply to every
/// namespace, CNP/KNP entries only to their own (`computePolicyEnforcementAndRules`,
/// spec §4.1), and the subject selector must match.
fn selects(pref: &PolicyRef, e: &PolicyEntry, labels: &LabelSet) -> bool {
    if e.node {
        // Host policies select host endpoints only (`matchesSubject`).
        return false;
    }
    let in_scope = match &pref.namespace {
        None => true,
        Some(ns) => labels.k8s_value(POD_NAMESPACE) == Some(ns.as_str()),
    };
    in_scope && e.subject.matches_labels(labels)
}

fn has_egress_named(e: &PolicyEntry) -> bool {
    e.direction == Direction::Egress && e.ports.iter().any(|p| matches!(p.port, PortSpec::Named(_)))
}

fn has_ingress_named(e: &PolicyEntry) -> bool {
    e.direction == Direction::Ingress
        && e.ports.iter().any(|p| matches!(p.port, PortSpec::Named(_)))
}

fn named_ports_of<'a>(pods: impl Iterator<Item = &'a [ContainerPort]>) -> NamedPorts {
    let mut out = NamedPorts::new();
    for ports in pods {
        for cp in ports {
            out.entry((cp.name.clone(), cp.protocol))
                .or_default()
                .insert(cp.port);
        }
    }
    out
}

impl Model {
    /// Full resolution of `cluster` under `repo`.
    pub fn new(cluster: &Cluster, repo: &Repository) -> Model {
        let mut m = Model {
            ipcache: IpCache::new(),
            selectors: SelectorCache::new(),
            policies: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            by_id: BTreeMap::new(),
            by_ip: BTreeMap::new(),
            by_identity: BTreeMap::new(),
            subjects: BTreeMap::new(),
            named_ports: BTreeMap::new(),
            nodes: BTreeMap::new(),
            hosts: BTreeMap::new(),
            host_labels: BTreeMap::new(),
            host_firewall: cluster.agent.host_firewall,
            policy_map: PolicyMap::default(),
            dirty_subjects: BTreeSet::new(),
            dirty_endpoints: BTreeSet::new(),
            pending_selectors: BTreeSet::new(),
            pending_identities: BTreeSet::new(),
            named_ports_changed: BTreeSet::new(),
            stats: ModelStats::default(),
            journal: None,
            auth: cluster.auth.clone(),
            fqdn_keys: BTreeMap::new(),
            fqdn_view: BTreeMap::new(),
        };
        m.sync_nodes(cluster);
        for (id, labels) in cluster.identities.iter() {
            m.selectors.add_identity(id, labels);
        }
        let mut cidr = CidrIdentityChange::default();
        for (name, g) in &cluster.cidr_groups {
            m.ipcache
                .upsert_cidr_group(name, &g.labels, &g.cidrs, &mut cidr);
        }
        m.apply_cidr_change(&cidr);
        for (key, entries) in repo.policies() {
            m.sync_policy_entries(key, Some(entries.to_vec()));
        }
        for pod in cluster.pods.values() {
            m.add_endpoint(cluster, pod);
        }
        m.sync_fqdn(cluster);
        m.flush();
        m
    }

    /// The name managers' caches changed (`crate::fqdn`): the addresses whose names changed
    /// get the `fqdn:` labels of the selectors matching their names, hence new identities in
    /// that node's ipcache, which the selector cache and the maps follow through the same
    /// incremental path as label churn (`UpdateGenerateDNS` → `updateMetadata`).
    pub fn fqdn_changed(&mut self, cluster: &Cluster) {
        self.sync_fqdn(cluster);
        self.flush();
    }

    fn sync_fqdn(&mut self, cluster: &Cluster) {
        let mut view: BTreeMap<String, BTreeMap<IpAddr, BTreeSet<String>>> = BTreeMap::new();
        for (node, n) in &cluster.fqdn.nodes {
            let addrs = n.addresses();
            if addrs.is_empty() {
                continue;
            }
            view.insert(
                node.clone(),
                addrs
                    .into_iter()
                    .map(|(ip, names)| (ip, names.into_iter().map(str::to_string).collect()))
                    .collect(),
            );
        }
        let mut touched: Vec<(String, IpAddr)> = Vec::new();
        let empty = BTreeMap::new();
        for node in view
            .keys()
            .chain(self.fqdn_view.keys())
            .collect::<BTreeSet<_>>()
        {
            let new = view.get(node).unwrap_or(&empty);
            let old = self.fqdn_view.get(node).unwrap_or(&empty);
            for ip in new.keys().chain(old.keys()).collect::<BTreeSet<_>>() {
                if new.get(ip) != old.get(ip) {
                    touched.push((node.clone(), *ip));
                }
            }
        }
        self.fqdn_view = view;
        let mut cidr = CidrIdentityChange::default();
        for (node, ip) in touched {
            self.relabel_fqdn(&node, ip, &mut cidr);
        }
        self.apply_cidr_change(&cidr);
    }

    /// Gives one FQDN address on one node the labels of the selectors matching its names.
    fn relabel_fqdn(&mut self, node: &str, ip: IpAddr, cidr: &mut CidrIdentityChange) {
        let keys = match self.fqdn_view.get(node).and_then(|m| m.get(&ip)) {
            Some(names) => {
                let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                crate::fqdn::labels_for_names(self.fqdn_keys.keys().map(String::as_str), &names)
            }
            None => BTreeSet::new(),
        };
        self.ipcache.set_fqdn(node, ip, keys, cidr);
    }

    /// Every cached address relabelled (the set of `toFQDNs` selectors changed:
    /// `RegisterFQDNSelector` / `UnregisterFQDNSelector` re-derive the labels of the names
    /// they match).
    fn relabel_all_fqdn(&mut self, cidr: &mut CidrIdentityChange) {
        let all: Vec<(String, IpAddr)> = self
            .fqdn_view
            .iter()
            .flat_map(|(n, m)| m.keys().map(move |ip| (n.clone(), *ip)))
            .collect();
        for (node, ip) in all {
            self.relabel_fqdn(&node, ip, cidr);
        }
    }

    /// The names and addresses a `toFQDNs` selector (by label key) holds on `node`, from the
    /// ipcache's labels: what `explain` shows.
    pub fn fqdn_selection(&self, node: &str, key: &str) -> Vec<(IpAddr, Vec<String>)> {
        self.fqdn_view
            .get(node)
            .into_iter()
            .flatten()
            .filter(|(ip, _)| {
                self.ipcache
                    .fqdn_keys(node, **ip)
                    .is_some_and(|k| k.contains(key))
            })
            .map(|(ip, names)| {
                (
                    *ip,
                    names
                        .iter()
                        .filter(|n| crate::fqdn::key_matches(key, n))
                        .cloned()
                        .collect(),
                )
            })
            .collect()
    }

    // ---- the change journal --------------------------------------------------------------

    /// Records, from now on, every policy-map entry, endpoint and ipcache prefix that changes,
    /// for [`Model::take_journal`]. Recording changes nothing else the model does.
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(ModelJournal::default);
        self.ipcache.enable_journal();
    }

    /// Whether the journal is recording (a freshly built model does not).
    pub fn journal_enabled(&self) -> bool {
        self.journal.is_some()
    }

    /// What changed since the last call (or since [`Model::enable_journal`]); empty when the
    /// journal is off.
    pub fn take_journal(&mut self) -> Journal {
        let m = self
            .journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        Journal {
            policy: m.policy,
            endpoints: m.endpoints,
            ipcache: self.ipcache.take_journal(),
            auth: m.auth,
        }
    }

    /// Takes the auth maps the auth managers wrote (`crate::auth`; the model decides from
    /// the cluster's table, and keeps this copy for the map writer).
    pub fn set_auth(&mut self, table: &crate::auth::AuthTable) {
        if let Some(j) = self.journal.as_mut() {
            for n in self.nodes.keys() {
                if table.entries(n).ne(self.auth.entries(n)) {
                    j.auth.insert(n.clone());
                }
            }
        }
        self.auth = table.clone();
    }

    /// The node id `observer` gives `node` (`crate::auth::node_id`), from the nodes the
    /// model knows.
    pub fn node_id(&self, observer: &str, node: &str) -> u16 {
        crate::auth::node_id_in(self.nodes.keys().map(String::as_str), observer, node)
    }

    /// The address of a node the model knows.
    pub fn node_ip(&self, node: &str) -> Option<IpAddr> {
        self.nodes.get(node).copied()
    }

    /// The auth maps as last given to [`Model::set_auth`].
    pub fn auth(&self) -> &crate::auth::AuthTable {
        &self.auth
    }

    fn note_policy_key(&mut self, ep_id: u32, k: &Key) {
        if let Some(j) = self.journal.as_mut() {
            j.policy.insert((ep_id, *k));
        }
    }

    fn note_endpoint(&mut self, ip: IpAddr) {
        if let Some(j) = self.journal.as_mut() {
            j.endpoints.insert(ip);
        }
    }

    // ---- incremental updates -------------------------------------------------------------

    /// Identities the cluster allocated or released (`IdentityChange` from a cluster op).
    pub fn identities_changed(&mut self, cluster: &Cluster, change: &IdentityChange) {
        for id in &change.added {
            if let Some(labels) = cluster.identities.labels(*id) {
                let changed = self.selectors.add_identity(*id, labels);
                self.note_selection_change(*id, changed);
            }
        }
        for id in &change.removed {
            let changed = self.selectors.remove_identity(*id);
            self.note_selection_change(*id, changed);
        }
        self.flush();
    }

    /// A pod was added to the cluster.
    pub fn pod_added(&mut self, cluster: &Cluster, name: &PodName) {
        self.sync_pod(cluster, name);
    }

    /// A pod was deleted from the cluster.
    pub fn pod_removed(&mut self, cluster: &Cluster, name: &PodName) {
        self.sync_pod(cluster, name);
    }

    /// A pod's labels (hence maybe its identity) changed.
    pub fn pod_updated(&mut self, cluster: &Cluster, name: &PodName) {
        self.sync_pod(cluster, name);
    }

    /// Several pods' labels changed at once (a namespace relabel): every endpoint is brought
    /// in line first and the pending work is processed once, so the subjects and selections
    /// the moves share are recomputed once rather than once per pod.
    pub fn pods_updated<'a>(
        &mut self,
        cluster: &Cluster,
        names: impl IntoIterator<Item = &'a PodName>,
    ) {
        for name in names {
            self.sync_pod_inner(cluster, name);
        }
        self.flush();
    }

    /// Brings one pod's endpoint in line with the cluster (added, removed or changed).
    pub fn sync_pod(&mut self, cluster: &Cluster, name: &PodName) {
        self.sync_pod_inner(cluster, name);
        self.flush();
    }

    /// Brings every pod in line with the cluster (after a namespace relabel, say); only the
    /// pods that differ are touched.
    pub fn sync_pods(&mut self, cluster: &Cluster) {
        let names: BTreeSet<PodName> = self
            .endpoints
            .keys()
            .chain(cluster.pods.keys())
            .cloned()
            .collect();
        for n in names {
            self.sync_pod_inner(cluster, &n);
        }
        self.flush();
    }

    /// Nodes added to the cluster (node addresses in the ipcache).
    pub fn sync_nodes(&mut self, cluster: &Cluster) {
        for n in &cluster.nodes {
            if self.nodes.get(&n.name) != Some(&n.ip) {
                if let Some(old) = self.nodes.insert(n.name.clone(), n.ip) {
                    self.ipcache.remove_node(old);
                }
                self.ipcache.upsert_node(&n.name, n.ip, n.remote_identity);
            }
            if !self.host_firewall {
                continue;
            }
            if let (Some(labels), Some(id)) = (
                cluster.host_labels(&n.name),
                cluster.host_endpoint_id(&n.name),
            ) {
                self.host_labels.insert(n.name.clone(), labels);
                let ep = self
                    .hosts
                    .entry(n.name.clone())
                    .or_insert_with(|| Endpoint {
                        pod: PodName {
                            namespace: String::new(),
                            name: n.name.clone(),
                        },
                        host: true,
                        id,
                        identity: Identity::HOST,
                        node: n.name.clone(),
                        ip: n.ip,
                        ports: Vec::new(),
                        ingress: DirectionPolicy::default(),
                        egress: DirectionPolicy::default(),
                        map: MapState::new(),
                    });
                ep.ip = n.ip;
            }
        }
        self.refresh_hosts();
    }

    /// Recomputes every host endpoint's map state from the host policies whose
    /// `nodeSelector` matches its labels (`matchesSubject`: node rules are matched against
    /// the host's labels directly), writing only the keys that changed. Host endpoints are
    /// one per node, so they are recomputed in full after every change rather than tracked
    /// per selector.
    fn refresh_hosts(&mut self) {
        let nodes: Vec<String> = self.hosts.keys().cloned().collect();
        for node in nodes {
            let Some(labels) = self.host_labels.get(&node) else {
                continue;
            };
            let entries: Vec<&PolicyEntry> = self
                .policies
                .values()
                .flatten()
                .filter(|e| e.node && e.subject.matches_labels(labels))
                .collect();
            let (map, ingress, egress) = mapstate::resolve_host(&PolicyInput {
                entries: &entries,
                selectors: &self.selectors,
                own_ports: &[],
                peer_named_ports: &self.named_ports,
            });
            let Some(ep) = self.hosts.get_mut(&node) else {
                continue;
            };
            let (id, ip) = (ep.id, ep.ip);
            let flags_changed =
                ep.ingress.enabled != ingress.enabled || ep.egress.enabled != egress.enabled;
            let old = std::mem::replace(&mut ep.map, map);
            ep.ingress = ingress;
            ep.egress = egress;
            let mut writes = Vec::new();
            for (k, _) in old.iter() {
                if ep.map.get(k).is_none() {
                    writes.push((*k, None));
                }
            }
            for (k, e) in ep.map.iter() {
                let abi_entry = e.to_abi(k);
                if old.get(k).map(|o| o.to_abi(k)) != Some(abi_entry) {
                    writes.push((*k, Some(abi_entry)));
                }
            }
            if flags_changed {
                self.note_endpoint(ip);
            }
            for (k, e) in writes {
                self.write_key(id, &k, e);
            }
        }
    }

    /// The CiliumCIDRGroup `name` was created, replaced or deleted in `cluster`: its
    /// prefixes' identities change in the ipcache, and the selectors that select them with
    /// them (`applyCIDRGroup` upserts the ipcache metadata; the selector cache follows the
    /// identities).
    pub fn cidr_group_changed(&mut self, cluster: &Cluster, name: &str) {
        let mut cidr = CidrIdentityChange::default();
        match cluster.cidr_groups.get(name) {
            Some(g) => self
                .ipcache
                .upsert_cidr_group(name, &g.labels, &g.cidrs, &mut cidr),
            None => self.ipcache.remove_cidr_group(name, &mut cidr),
        }
        self.apply_cidr_change(&cidr);
        self.flush();
    }

    /// Feeds CIDR identities that appeared or vanished to the selector cache.
    fn apply_cidr_change(&mut self, cidr: &CidrIdentityChange) {
        for (id, labels) in &cidr.added {
            let changed = self.selectors.add_identity(*id, labels);
            self.note_selection_change(*id, changed);
        }
        for id in &cidr.removed {
            let changed = self.selectors.remove_identity(*id);
            self.note_selection_change(*id, changed);
        }
    }

    /// A policy object was applied (created or replaced) in `repo`, or deleted from it.
    pub fn policy_changed(&mut self, repo: &Repository, key: &PolicyRef) {
        let entries = repo
            .policies()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e.to_vec());
        self.sync_policy_entries(key, entries);
        self.flush();
    }

    /// A policy object was applied (created or replaced).
    pub fn policy_applied(&mut self, repo: &Repository, key: &PolicyRef) {
        self.policy_changed(repo, key);
    }

    /// A policy object was deleted.
    pub fn policy_deleted(&mut self, key: &PolicyRef) {
        self.sync_policy_entries(key, None);
        self.flush();
    }

    fn sync_pod_inner(&mut self, cluster: &Cluster, name: &PodName) {
        let new = cluster.pods.get(name);
        let same = match (self.endpoints.get(name), new) {
            (None, None) => true,
            (Some(o), Some(p)) => {
                o.identity == p.identity
                    && o.ip == p.ip
                    && o.node == p.node
                    && o.ports == p.ports
                    && o.id == p.endpoint_id
            }
            _ => false,
        };
        if same {
            return;
        }
        if self.endpoints.contains_key(name) {
            self.remove_endpoint(cluster, name);
        }
        if let Some(p) = new {
            self.add_endpoint(cluster, p);
        }
    }

    fn add_endpoint(&mut self, cluster: &Cluster, pod: &Pod) {
        if !self.selectors.knows(pod.identity) {
            if let Some(labels) = cluster.identities.labels(pod.identity) {
                let changed = self.selectors.add_identity(pod.identity, labels);
                self.note_selection_change(pod.identity, changed);
            }
        }
        self.ipcache.upsert_pod(pod.ip, pod.identity);
        self.note_endpoint(pod.ip);
        self.by_ip
            .entry(pod.ip)
            .or_default()
            .insert(pod.name.clone());
        let members = self.by_identity.entry(pod.identity).or_default();
        if members.is_empty() {
            self.dirty_subjects.insert(pod.identity);
        }
        members.insert(pod.name.clone());
        self.by_id.insert(pod.endpoint_id, pod.name.clone());
        self.endpoints.insert(
            pod.name.clone(),
            Endpoint {
                pod: pod.name.clone(),
                host: false,
                id: pod.endpoint_id,
                identity: pod.identity,
                node: pod.node.clone(),
                ip: pod.ip,
                ports: pod.ports.clone(),
                ingress: DirectionPolicy::default(),
                egress: DirectionPolicy::default(),
                map: MapState::new(),
            },
        );
        if !pod.ports.is_empty() {
            self.refresh_named_ports(pod.identity);
        }
        self.dirty_endpoints.insert(pod.name.clone());
    }

    fn remove_endpoint(&mut self, cluster: &Cluster, name: &PodName) {
        let Some(ep) = self.endpoints.remove(name) else {
            return;
        };
        for (k, _) in ep.map.iter() {
            self.policy_map.delete(ep.id, k);
            self.note_policy_key(ep.id, k);
            self.stats.map_deletes += 1;
        }
        self.note_endpoint(ep.ip);
        if let Some(names) = self.by_ip.get_mut(&ep.ip) {
            names.remove(name);
            if names.is_empty() {
                self.by_ip.remove(&ep.ip);
            }
        }
        self.by_id.remove(&ep.id);
        self.ipcache.remove_pod(ep.ip);
        if let Some(members) = self.by_identity.get_mut(&ep.identity) {
            members.remove(name);
            if members.is_empty() {
                self.by_identity.remove(&ep.identity);
                self.subjects.remove(&ep.identity);
            }
        }
        if !ep.ports.is_empty() {
            self.refresh_named_ports(ep.identity);
        }
        // The cluster released the identity with its last pod.
        if cluster.identities.labels(ep.identity).is_none() {
            let changed = self.selectors.remove_identity(ep.identity);
            self.note_selection_change(ep.identity, changed);
        }
        self.dirty_endpoints.remove(name);
    }

    fn refresh_named_ports(&mut self, id: Identity) {
        let np = match self.by_identity.get(&id) {
            Some(members) => named_ports_of(
                members
                    .iter()
                    .filter_map(|n| self.endpoints.get(n))
                    .map(|e| e.ports.as_slice()),
            ),
            None => NamedPorts::new(),
        };
        let old = if np.is_empty() {
            self.named_ports.remove(&id)
        } else {
            self.named_ports.insert(id, np.clone())
        };
        if old.unwrap_or_default() != np {
            self.named_ports_changed.insert(id);
        }
    }

    fn sync_policy_entries(&mut self, key: &PolicyRef, new: Option<Vec<PolicyEntry>>) {
        let mut cidr = CidrIdentityChange::default();
        // Add the new selectors before dropping the old ones, so that re-applying a policy
        // keeps its CIDR identities.
        let keys_before: BTreeSet<String> = self.fqdn_keys.keys().cloned().collect();
        for e in new.iter().flatten() {
            for s in peer_selectors(e) {
                self.selectors.add_selector(s);
                self.ipcache.add_selector(s, &mut cidr);
                if let Some(k) = s.fqdn_key() {
                    *self.fqdn_keys.entry(k.to_string()).or_default() += 1;
                }
            }
        }
        let old = self.policies.remove(key);
        for e in old.iter().flatten() {
            for s in peer_selectors(e) {
                self.selectors.remove_selector(s);
                self.ipcache.remove_selector(s, &mut cidr);
                if let Some(k) = s.fqdn_key() {
                    if let Some(c) = self.fqdn_keys.get_mut(k) {
                        *c -= 1;
                        if *c == 0 {
                            self.fqdn_keys.remove(k);
                        }
                    }
                }
            }
        }
        if !self.fqdn_view.is_empty() && self.fqdn_keys.keys().ne(keys_before.iter()) {
            self.relabel_all_fqdn(&mut cidr);
        }
        self.apply_cidr_change(&cidr);
        // Subjects selected by the old or the new entries.
        for id in self.by_identity.keys() {
            let Some(labels) = self.selectors.labels(*id) else {
                continue;
            };
            let hit = old
                .iter()
                .flatten()
                .chain(new.iter().flatten())
                .any(|e| selects(key, e, labels));
            if hit {
                self.dirty_subjects.insert(*id);
            }
        }
        if let Some(new) = new {
            self.policies.insert(key.clone(), new);
        }
    }

    fn entry(&self, r: &(PolicyRef, usize)) -> Option<&PolicyEntry> {
        self.policies.get(&r.0).and_then(|es| es.get(r.1))
    }

    fn note_selection_change(&mut self, id: Identity, changed: Vec<Selector>) {
        if !changed.is_empty() {
            self.pending_selectors.extend(changed);
            self.pending_identities.insert(id);
        }
    }

    /// Processes pending work: subjects whose selecting rules changed get their endpoints
    /// recomputed in full; endpoints whose rules use a selector whose selections changed
    /// (or that resolve named ports of identities whose ports changed) get only the keys of
    /// those identities recomputed.
    fn flush(&mut self) {
        let mut full = std::mem::take(&mut self.dirty_endpoints);
        for id in std::mem::take(&mut self.dirty_subjects) {
            let Some(members) = self.by_identity.get(&id) else {
                self.subjects.remove(&id);
                continue;
            };
            full.extend(members.iter().cloned());
            let Some(labels) = self.selectors.labels(id) else {
                self.subjects.remove(&id);
                continue;
            };
            let mut rules = SubjectRules::default();
            for (pref, es) in &self.policies {
                for (i, e) in es.iter().enumerate() {
                    if selects(pref, e, labels) {
                        rules.entries.push((pref.clone(), i));
                        rules.egress_named |= has_egress_named(e);
                        rules.ingress_named |= has_ingress_named(e);
                    }
                }
            }
            self.subjects.insert(id, rules);
            self.stats.subjects_recomputed += 1;
        }
        // The wildcard selector is identity 0 whatever it selects (egress named ports aside,
        // which follow `named_ports_changed`).
        let pending: BTreeSet<Selector> = std::mem::take(&mut self.pending_selectors)
            .into_iter()
            .filter(|s| !s.is_wildcard())
            .collect();
        let moved = std::mem::take(&mut self.pending_identities);
        let named = std::mem::take(&mut self.named_ports_changed);
        let mut delta: BTreeMap<PodName, BTreeSet<Identity>> = BTreeMap::new();
        if !pending.is_empty() || !named.is_empty() {
            for (id, rules) in &self.subjects {
                let mut ids: BTreeSet<Identity> = BTreeSet::new();
                if rules.egress_named {
                    ids.extend(named.iter().copied());
                }
                let uses = !pending.is_empty()
                    && rules
                        .entries
                        .iter()
                        .filter_map(|r| self.entry(r))
                        .any(|e| peer_selectors(e).iter().any(|s| pending.contains(s)));
                if uses {
                    ids.extend(moved.iter().copied());
                }
                if ids.is_empty() {
                    continue;
                }
                for m in self.by_identity.get(id).into_iter().flatten() {
                    if !full.contains(m) {
                        delta
                            .entry(m.clone())
                            .or_default()
                            .extend(ids.iter().copied());
                    }
                }
            }
        }
        // Full recomputation, once per identity when its endpoints cannot differ.
        let mut groups: BTreeMap<Identity, Vec<PodName>> = BTreeMap::new();
        for name in full {
            if let Some(ep) = self.endpoints.get(&name) {
                groups.entry(ep.identity).or_default().push(name);
            }
        }
        for (id, names) in groups {
            let shareable = !self.subjects.get(&id).is_some_and(|r| r.ingress_named);
            let mut shared: Option<(MapState, DirectionPolicy, DirectionPolicy)> = None;
            for name in names {
                let resolved = match &shared {
                    Some(r) if shareable => r.clone(),
                    _ => {
                        let r = self.resolve_endpoint(&name);
                        if shareable {
                            shared = Some(r.clone());
                        }
                        r
                    }
                };
                self.install(&name, resolved);
            }
        }
        // Per-identity key updates, computed once per subject identity when its endpoints'
        // maps cannot differ.
        let mut groups: BTreeMap<(Identity, BTreeSet<Identity>), Vec<PodName>> = BTreeMap::new();
        for (name, ids) in delta {
            if let Some(ep) = self.endpoints.get(&name) {
                groups.entry((ep.identity, ids)).or_default().push(name);
            }
        }
        for ((subject, ids), names) in groups {
            let shareable = !self.subjects.get(&subject).is_some_and(|r| r.ingress_named);
            let mut shared: Option<IdentityKeyMap> = None;
            for name in names {
                let keys = self.update_endpoint_identities(&name, &ids, shared.as_ref());
                if shareable && shared.is_none() {
                    shared = Some(keys);
                }
            }
        }
        self.refresh_hosts();
    }

    fn input_entries(&self, identity: Identity) -> Vec<&PolicyEntry> {
        self.subjects
            .get(&identity)
            .map(|r| r.entries.iter().filter_map(|r| self.entry(r)).collect())
            .unwrap_or_default()
    }

    fn resolve_endpoint(&self, name: &PodName) -> (MapState, DirectionPolicy, DirectionPolicy) {
        let Some(ep) = self.endpoints.get(name) else {
            return Default::default();
        };
        let entries = self.input_entries(ep.identity);
        mapstate::resolve(&PolicyInput {
            entries: &entries,
            selectors: &self.selectors,
            own_ports: &ep.ports,
            peer_named_ports: &self.named_ports,
        })
    }

    /// Every policy-map change of an installed endpoint goes through here (removing an
    /// endpoint deletes its keys in `remove_endpoint`): the journal records both.
    fn write_key(&mut self, id: u32, k: &Key, e: Option<abi::PolicyEntry>) {
        self.note_policy_key(id, k);
        match e {
            Some(e) => {
                self.policy_map.write(id, k, e);
                self.stats.map_writes += 1;
            }
            None => {
                self.policy_map.delete(id, k);
                self.stats.map_deletes += 1;
            }
        }
    }

    /// Installs a recomputed map: only changed keys are written to the policy LPM.
    fn install(
        &mut self,
        name: &PodName,
        (map, ingress, egress): (MapState, DirectionPolicy, DirectionPolicy),
    ) {
        let Some(ep) = self.endpoints.get_mut(name) else {
            return;
        };
        let id = ep.id;
        let ip = ep.ip;
        let old = std::mem::replace(&mut ep.map, map);
        ep.ingress = ingress;
        ep.egress = egress;
        // The enforcement flags live in the endpoint map entry.
        self.note_endpoint(ip);
        let mut writes = Vec::new();
        if let Some(ep) = self.endpoints.get(name) {
            for (k, _) in old.iter() {
                if ep.map.get(k).is_none() {
                    writes.push((*k, None));
                }
            }
            for (k, e) in ep.map.iter() {
                let abi_entry = e.to_abi(k);
                if old.get(k).map(|o| o.to_abi(k)) != Some(abi_entry) {
                    writes.push((*k, Some(abi_entry)));
                }
            }
        }
        for (k, e) in writes {
            self.write_key(id, &k, e);
        }
        self.stats.endpoints_recomputed += 1;
    }

    /// Recomputes only the keys of the given remote identities (`mapstate::resolve_identity`),
    /// or, with `shared`, installs the keys already computed for another endpoint of the
    /// same identity whose map cannot differ. Returns the keys per remote identity.
    fn update_endpoint_identities(
        &mut self,
        name: &PodName,
        ids: &BTreeSet<Identity>,
        shared: Option<&IdentityKeyMap>,
    ) -> IdentityKeyMap {
        let mut out = IdentityKeyMap::new();
        let Some(ep) = self.endpoints.get_mut(name) else {
            return out;
        };
        let mut map = std::mem::take(&mut ep.map);
        let mut writes = Vec::new();
        let ep_id;
        {
            let Some(ep) = self.endpoints.get(name) else {
                return out;
            };
            ep_id = ep.id;
            let entries = self.input_entries(ep.identity);
            let input = PolicyInput {
                entries: &entries,
                selectors: &self.selectors,
                own_ports: &ep.ports,
                peer_named_ports: &self.named_ports,
            };
            for id in ids {
                let (before, after) = match shared.and_then(|s| s.get(id)) {
                    Some(after) => (map.replace_identity(*id, after), after.clone()),
                    None => mapstate::resolve_identity(&input, *id, &mut map),
                };
                let after_abi: BTreeMap<Key, abi::PolicyEntry> =
                    after.iter().map(|(k, e)| (*k, e.to_abi(k))).collect();
                let before_keys: BTreeSet<Key> = before.iter().map(|(k, _)| *k).collect();
                for (k, e) in &before {
                    match after_abi.get(k) {
                        None => writes.push((*k, None)),
                        Some(a) if *a != e.to_abi(k) => writes.push((*k, Some(*a))),
                        Some(_) => {}
                    }
                }
                for (k, e) in &after_abi {
                    if !before_keys.contains(k) {
                        writes.push((*k, Some(*e)));
                    }
                }
                out.insert(*id, after);
            }
        }
        if let Some(ep) = self.endpoints.get_mut(name) {
            ep.map = map;
        }
        for (k, e) in writes {
            self.write_key(ep_id, &k, e);
        }
        self.stats.endpoint_deltas += 1;
        out
    }

    // ---- queries ------------------------------------------------------------------------

    pub fn endpoint(&self, name: &PodName) -> Option<&Endpoint> {
        self.endpoints.get(name)
    }

    pub fn endpoint_by_id(&self, id: u32) -> Option<&Endpoint> {
        self.by_id
            .get(&id)
            .and_then(|n| self.endpoints.get(n))
            .or_else(|| self.hosts.values().find(|h| h.id == id))
    }

    /// `node`'s host endpoint, when the host firewall is on.
    pub fn host_endpoint(&self, node: &str) -> Option<&Endpoint> {
        self.hosts.get(node)
    }

    /// The endpoints with address `ip`, in pod-name order (as [`Model::endpoints`] yields
    /// them); normally at most one.
    pub fn endpoints_with_ip(&self, ip: IpAddr) -> impl Iterator<Item = &Endpoint> {
        self.by_ip
            .get(&ip)
            .into_iter()
            .flatten()
            .filter_map(|n| self.endpoints.get(n))
            .chain(self.hosts.values().filter(move |h| h.ip == ip))
    }

    /// Every endpoint: pods in name order, then host endpoints in node order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values().chain(self.hosts.values())
    }

    pub fn ipcache(&self) -> &IpCache {
        &self.ipcache
    }

    pub fn selector_cache(&self) -> &SelectorCache {
        &self.selectors
    }

    pub fn stats(&self) -> ModelStats {
        self.stats
    }

    /// The labels of any identity the model knows (reserved, cluster, CIDR).
    pub fn identity_labels(&self, id: Identity) -> Option<&LabelSet> {
        self.selectors.labels(id)
    }

    /// Every policy-map entry of every endpoint, sorted: what a map writer loads.
    pub fn policy_map_entries(&self) -> Vec<(EndpointPolicyKey, abi::PolicyEntry)> {
        let mut out: Vec<_> = self
            .endpoints()
            .flat_map(|ep| ep.map.to_abi(ep.id))
            .collect();
        out.sort_by(|a, b| {
            (a.0.ep_id, a.0.prefixlen, a.0.as_bytes()).cmp(&(
                b.0.ep_id,
                b.0.prefixlen,
                b.0.as_bytes(),
            ))
        });
        out
    }

    /// The policy map of every endpoint, as the lookups read it.
    pub fn policy_map(&self) -> &PolicyMap {
        &self.policy_map
    }

    /// Number of entries in the shared policy LPM (all endpoints).
    pub fn policy_map_len(&self) -> usize {
        self.policy_map.len()
    }

    /// `cilium-dbg bpf policy get` rows of one endpoint.
    pub fn rows(&self, name: &PodName) -> Option<Vec<MapStateRow>> {
        let ep = self.endpoints.get(name)?;
        Some(self.endpoint_rows(ep))
    }

    /// `cilium-dbg bpf policy get` rows of any endpoint (a host endpoint included).
    pub fn endpoint_rows(&self, ep: &Endpoint) -> Vec<MapStateRow> {
        ep.map.rows(|id| {
            self.identity_labels(id)
                .map(|l| l.iter().map(|l| l.to_string()).collect())
        })
    }

    /// Whether policy is enabled per direction on a pod's endpoint: (ingress, egress).
    pub fn policy_enabled(&self, name: &PodName) -> Option<(bool, bool)> {
        self.endpoints
            .get(name)
            .map(|e| (e.ingress.enabled, e.egress.enabled))
    }

    // ---- the datapath lookup -------------------------------------------------------------

    fn peer_ip(&self, cluster: &Cluster, peer: &Peer) -> Option<IpAddr> {
        match peer {
            Peer::Pod(p) => self
                .endpoints
                .get(p)
                .map(|e| e.ip)
                .or_else(|| cluster.ip_of(peer)),
            Peer::Host(n) => self.nodes.get(n).copied().or_else(|| cluster.ip_of(peer)),
            Peer::World(ip) => Some(*ip),
        }
    }

    /// One side of a flow: the enforcing endpoint (none for a side outside the cluster), the
    /// remote identity from that node's ipcache, the lookup and its verdict (steps 5–6).
    fn side<'a>(
        &'a self,
        cluster: &Cluster,
        dir: Direction,
        subject: &Peer,
        remote: &Peer,
        flow: &Flow,
    ) -> Option<Side<'a>> {
        let ep = match subject {
            Peer::Pod(pn) => self.endpoints.get(pn)?,
            Peer::Host(n) => self.hosts.get(n)?,
            Peer::World(_) => return None,
        };
        let hit = match self.peer_ip(cluster, remote) {
            Some(ip) => self.ipcache.lookup(&ep.node, ip),
            None => IpCacheHit {
                prefix: None,
                identity: Identity::WORLD,
            },
        };
        let lookup = self
            .policy_map
            .lookup(ep.id, dir, hit.identity, flow.protocol, flow.dport);
        let (mut allowed, mut reason, match_type) = lookup.verdict();
        // Step 5's auth check: an allow that needs an auth type drops with
        // DROP_POLICY_AUTH_REQUIRED unless this node's auth map holds the pair
        // (`bpf_lxc.c` calls `auth_lookup` on DROP_POLICY_AUTH_REQUIRED).
        let mut auth = None;
        if let Some(t) = lookup.auth_type().filter(|_| allowed) {
            let remote_pod = match remote {
                Peer::Pod(p) => Some(p),
                _ => None,
            };
            // A host endpoint is never authenticated: the auth manager's handshakes are
            // between pods here (`crate::auth`).
            let authenticated = match subject {
                Peer::Pod(pn) => {
                    cluster
                        .auth
                        .side_authenticated(cluster, pn, hit.identity, remote_pod, t)
                }
                _ => false,
            };
            if !authenticated {
                allowed = false;
                reason = Some(DropReason::AuthRequired);
            }
            auth = Some((t, authenticated));
        }
        let proxy_port = lookup
            .chosen
            .map(|(_, _, e)| e.proxy_port())
            .filter(|&p| allowed && p != 0);
        let summary = SideSummary {
            direction: dir,
            enforced: ep.policy_enabled(dir),
            allowed,
            reason,
            match_type,
            proxy_port,
            auth,
        };
        Some(Side {
            ep,
            hit,
            lookup,
            summary,
        })
    }

    fn explain_side(&self, dir: Direction, side: Option<Side<'_>>) -> DirectionExplanation {
        let Some(side) = side else {
            return DirectionExplanation {
                direction: dir,
                endpoint: None,
                enforced: false,
                remote_identity: None,
                remote_prefix: None,
                lookups: Vec::new(),
                chosen: None,
                choice: Choice::NotApplicable,
                allowed: true,
                reason: None,
                match_type: MatchType::None,
                auth: None,
            };
        };
        let chosen = side.lookup.chosen.map(|(stage, k, e)| {
            let full = side
                .ep
                .map
                .get(&k)
                .cloned()
                .unwrap_or_else(|| MapEntry::from_abi(&e));
            (stage, k, full)
        });
        DirectionExplanation {
            direction: dir,
            endpoint: Some((side.ep.name(), side.ep.id)),
            enforced: side.summary.enforced,
            remote_identity: Some(side.hit.identity),
            remote_prefix: side.hit.prefix,
            lookups: side.lookup.steps.iter().flatten().cloned().collect(),
            chosen,
            choice: side.lookup.choice,
            allowed: side.summary.allowed,
            reason: side.summary.reason,
            match_type: side.summary.match_type,
            auth: side.summary.auth,
        }
    }

    /// Decides a flow and says how, per direction.
    pub fn explain(&self, cluster: &Cluster, flow: &Flow) -> Explanation {
        let eg = self.side(cluster, Direction::Egress, &flow.src, &flow.dst, flow);
        let ing = self.side(cluster, Direction::Ingress, &flow.dst, &flow.src, flow);
        let outcome = outcome_of(
            eg.as_ref().map(|s| s.summary),
            ing.as_ref().map(|s| s.summary),
        );
        Explanation {
            egress: self.explain_side(Direction::Egress, eg),
            ingress: self.explain_side(Direction::Ingress, ing),
            outcome,
        }
    }

    /// Decides a flow as the BPF programs would (spec §5.2): egress on the source endpoint,
    /// then ingress on the destination endpoint. A flow the egress entry redirects to a proxy
    /// stops at the source's proxy (`redirect.egress`); [`Model::decide_upstream`] decides the
    /// proxy's upstream connection.
    pub fn decide(&self, cluster: &Cluster, flow: &Flow) -> Outcome {
        let eg = self.side(cluster, Direction::Egress, &flow.src, &flow.dst, flow);
        if let Some(s) = &eg {
            if !s.summary.allowed {
                return outcome_of(Some(s.summary), None);
            }
            if s.summary.proxy_port.is_some() {
                return outcome_of(Some(s.summary), None);
            }
        }
        let ing = self.side(cluster, Direction::Ingress, &flow.dst, &flow.src, flow);
        outcome_of(eg.map(|s| s.summary), ing.map(|s| s.summary))
    }

    /// The rules the proxy listening on `proxy_port` holds for `flow` on side `dir`: the
    /// subject endpoint's allow entries that select the remote identity (from that node's
    /// ipcache) on the flow's port (`mapstate::proxy_rules`).
    pub fn proxy_rules(
        &self,
        cluster: &Cluster,
        flow: &Flow,
        dir: Direction,
        proxy_port: u16,
    ) -> Result<Vec<crate::proxy::ProxyRule>, String> {
        let (subject, remote) = match dir {
            Direction::Egress => (&flow.src, &flow.dst),
            Direction::Ingress => (&flow.dst, &flow.src),
        };
        let Peer::Pod(pn) = subject else {
            return Err(format!("{dir} proxy for {subject}, which is not a pod"));
        };
        let ep = self
            .endpoints
            .get(pn)
            .ok_or_else(|| format!("no endpoint for {pn}"))?;
        let parser = crate::proxy::ProxyPorts::parser_of(proxy_port)
            .ok_or_else(|| format!("no proxy listens on port {proxy_port}"))?;
        let remote_id = match self.peer_ip(cluster, remote) {
            Some(ip) => self.ipcache.lookup(&ep.node, ip).identity,
            None => Identity::WORLD,
        };
        let entries = self.input_entries(ep.identity);
        Ok(mapstate::proxy_rules(
            &PolicyInput {
                entries: &entries,
                selectors: &self.selectors,
                own_ports: &ep.ports,
                peer_named_ports: &self.named_ports,
            },
            dir,
            remote_id,
            flow.protocol,
            flow.dport,
            parser,
        ))
    }

    /// The egress proxy's upstream connection of a flow [`Model::decide`] redirected at
    /// egress: the destination's ingress side too, as if both sides had run.
    pub fn decide_upstream(&self, cluster: &Cluster, flow: &Flow) -> Outcome {
        let eg = self.side(cluster, Direction::Egress, &flow.src, &flow.dst, flow);
        if let Some(s) = &eg {
            if !s.summary.allowed {
                return outcome_of(Some(s.summary), None);
            }
        }
        let ing = self.side(cluster, Direction::Ingress, &flow.dst, &flow.src, flow);
        outcome_of(eg.map(|s| s.summary), ing.map(|s| s.summary))
    }
}

/// The policy map of every endpoint: one LPM table over [`EndpointPolicyKey`] (the endpoint
/// id, then Cilium's `policy_key`) with the kernel's LPM trie semantics, and the lookup of
/// `bpf/lib/policy.h` over it (spec §5.2 steps 1–4).
#[derive(Clone, Debug, Default)]
pub struct PolicyMap {
    lpm: Lpm<POLICY_KEY_DATA, PolicyMapValue>,
}

impl PolicyMap {
    /// Writes one entry of endpoint `ep_id`.
    pub fn write(&mut self, ep_id: u32, key: &Key, entry: abi::PolicyEntry) {
        let k = key.to_abi(ep_id);
        self.lpm
            .insert(k.prefixlen, policy_key_data(&k), (*key, entry));
    }

    /// Deletes one entry of endpoint `ep_id`.
    pub fn delete(&mut self, ep_id: u32, key: &Key) {
        let k = key.to_abi(ep_id);
        self.lpm.remove(k.prefixlen, &policy_key_data(&k));
    }

    /// Writes every entry of a map state.
    pub fn write_all(&mut self, ep_id: u32, ms: &MapState) {
        for (k, e) in ms.iter() {
            self.write(ep_id, k, e.to_abi(k));
        }
    }

    pub fn len(&self) -> usize {
        self.lpm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lpm.is_empty()
    }

    fn lpm_lookup(&self, q: &EndpointPolicyKey) -> Option<PolicyMapValue> {
        self.lpm
            .lookup(q.prefixlen, &policy_key_data(q))
            .map(|(_, v)| *v)
    }

    /// `policy_can_access` for endpoint `ep_id` and one direction (spec §5.2 steps 1–4): the
    /// L3 lookup, a deny returning at once, the L4-only lookup and the 1.19+ choice rule.
    pub fn lookup(
        &self,
        ep_id: u32,
        dir: Direction,
        remote: Identity,
        protocol: Protocol,
        dport: u16,
    ) -> PolicyLookup {
        let query = |sec_label: u32| EndpointPolicyKey {
            prefixlen: ENDPOINT_PREFIX_BITS + POLICY_FULL_PREFIX,
            ep_id: ep_id.to_be_bytes(),
            sec_label,
            egress: dir.bit(),
            protocol: protocol.number(),
            dport: dport.to_be_bytes(),
        };
        // 1. L3 lookup {R, dir, proto, dport} at the full prefix.
        let l3_query = query(remote.0);
        let l3 = self.lpm_lookup(&l3_query);
        let l3_step = LookupStep {
            stage: LookupStage::L3,
            query: l3_query,
            hit: l3,
        };
        // 2. A deny found by the L3 lookup returns at once (1.19+: precedence == max).
        if let Some((k, e)) = l3 {
            if e.precedence == PRECEDENCE_DENY {
                return PolicyLookup {
                    steps: [Some(l3_step), None],
                    chosen: Some((LookupStage::L3, k, e)),
                    choice: Choice::L3Deny,
                };
            }
        }
        // 3. L4-only lookup {0, dir, proto, dport}.
        let l4_query = query(0);
        let l4 = self.lpm_lookup(&l4_query);
        let l4_step = LookupStep {
            stage: LookupStage::L4Only,
            query: l4_query,
            hit: l4,
        };
        // 4. Choose the L4 entry when there is no L3 entry, or it has a higher precedence, or
        //    an equal precedence and a longer prefix.
        let (chosen, choice) = match (l3, l4) {
            (None, None) => (None, Choice::NoEntry),
            (None, Some((k, e))) => (Some((LookupStage::L4Only, k, e)), Choice::L4NoL3),
            (Some((k, e)), None) => (Some((LookupStage::L3, k, e)), Choice::L3NoL4),
            (Some((k3, e3)), Some((k4, e4))) => {
                if e4.precedence > e3.precedence {
                    (
                        Some((LookupStage::L4Only, k4, e4)),
                        Choice::L4HigherPrecedence,
                    )
                } else if e4.precedence == e3.precedence
                    && e4.lpm_prefix_length() > e3.lpm_prefix_length()
                {
                    (Some((LookupStage::L4Only, k4, e4)), Choice::L4LongerPrefix)
                } else {
                    (Some((LookupStage::L3, k3, e3)), Choice::L3Kept)
                }
            }
        };
        PolicyLookup {
            steps: [Some(l3_step), Some(l4_step)],
            chosen,
            choice,
        }
    }
}

/// Step 6 of spec §5.2: the match type from the chosen entry's stage and prefix.
pub fn match_type(stage: LookupStage, lpm_prefix_length: u8) -> MatchType {
    match stage {
        LookupStage::L3 => match lpm_prefix_length {
            0 => MatchType::L3Only,
            1..=8 => MatchType::L3Proto,
            _ => MatchType::L3L4,
        },
        LookupStage::L4Only => match lpm_prefix_length {
            0 => MatchType::All,
            1..=8 => MatchType::ProtoOnly,
            _ => MatchType::L4Only,
        },
    }
}

/// What one enforcing side decided.
#[derive(Clone, Copy, Debug)]
struct SideSummary {
    direction: Direction,
    enforced: bool,
    allowed: bool,
    reason: Option<DropReason>,
    match_type: MatchType,
    /// The chosen entry's proxy port, on an allow (`policy_can_access` returns it).
    proxy_port: Option<u16>,
    /// The auth type the allow needs and whether the node's auth map holds the pair.
    auth: Option<(crate::policy::AuthType, bool)>,
}

struct Side<'a> {
    ep: &'a Endpoint,
    hit: IpCacheHit,
    lookup: PolicyLookup,
    summary: SideSummary,
}

/// The overall outcome, with the oracle's direction convention: the denying side (egress is
/// checked first); for an allowed flow the ingress side if it enforces, else egress if it
/// enforces, else none. The match type is that of the deciding side when it enforces. A side
/// outside the cluster (`None`) enforces nothing.
fn outcome_of(egress: Option<SideSummary>, ingress: Option<SideSummary>) -> Outcome {
    let redirect = Redirects {
        egress: egress.and_then(|e| e.proxy_port),
        ingress: ingress.and_then(|i| i.proxy_port),
    };
    let side = |d: SideSummary| Outcome {
        allowed: d.allowed,
        reason: d.reason,
        direction: Some(d.direction),
        match_type: d.enforced.then_some(d.match_type),
        redirect,
    };
    for d in [egress, ingress].into_iter().flatten() {
        if !d.allowed {
            return side(d);
        }
    }
    match (ingress, egress) {
        (Some(i), _) if i.enforced => side(i),
        (_, Some(e)) if e.enforced => side(e),
        _ => Outcome {
            allowed: true,
            reason: None,
            direction: None,
            match_type: None,
            redirect,
        },
    }
}

/// Which lookup an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupStage {
    /// `{R, dir, proto, dport}`.
    L3,
    /// `{0, dir, proto, dport}`.
    L4Only,
}

impl fmt::Display for LookupStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LookupStage::L3 => "L3",
            LookupStage::L4Only => "L4-only",
        })
    }
}

/// Why the lookup chose what it chose (spec §5.2 steps 2 and 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The side is not a local endpoint: nothing enforced.
    NotApplicable,
    /// Step 2: the L3 lookup found a deny and returned at once.
    L3Deny,
    L4NoL3,
    L3NoL4,
    L4HigherPrecedence,
    L4LongerPrefix,
    /// The L3 entry has a higher precedence, or an equal one and a prefix at least as long.
    L3Kept,
    /// Neither lookup found an entry: DROP_POLICY.
    NoEntry,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Choice::NotApplicable => "not a local endpoint: nothing enforced",
            Choice::L3Deny => "the L3 lookup found a deny: returned at once",
            Choice::L4NoL3 => "no L3 entry: the L4-only entry is used",
            Choice::L3NoL4 => "no L4-only entry: the L3 entry is used",
            Choice::L4HigherPrecedence => "the L4-only entry has the higher precedence",
            Choice::L4LongerPrefix => "equal precedence, the L4-only entry has the longer prefix",
            Choice::L3Kept => "the L3 entry has a higher precedence or a prefix at least as long",
            Choice::NoEntry => "no entry matched: DROP_POLICY",
        })
    }
}

/// One LPM lookup: the query key (full prefix) and the entry found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupStep {
    pub stage: LookupStage,
    /// The ABI query key, prefix [`ENDPOINT_PREFIX_BITS`] + 64 (Cilium's
    /// `POLICY_FULL_PREFIX`).
    pub query: EndpointPolicyKey,
    pub hit: Option<(Key, abi::PolicyEntry)>,
}

/// What [`PolicyMap::lookup`] did: the lookups made, the entry chosen and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyLookup {
    /// The L3 lookup, then the L4-only lookup unless the L3 lookup found a deny.
    pub steps: [Option<LookupStep>; 2],
    pub chosen: Option<(LookupStage, Key, abi::PolicyEntry)>,
    pub choice: Choice,
}

impl PolicyLookup {
    /// The auth type the chosen allow entry needs (`__policy_check`, `bpf/lib/policy.h`):
    /// its own, or, when it has no explicit type, the other lookup's entry's higher type at
    /// the same precedence. `None` for 0 (no authentication), a deny or no entry.
    pub fn auth_type(&self) -> Option<crate::policy::AuthType> {
        let (stage, _, e) = self.chosen?;
        if e.is_deny() {
            return None;
        }
        let mut t = e.auth_type();
        if e.auth & abi::POLICY_ENTRY_EXPLICIT_AUTH == 0 {
            let other = self
                .steps
                .iter()
                .flatten()
                .filter(|s| s.stage != stage)
                .find_map(|s| s.hit);
            if let Some((_, o)) = other {
                if o.precedence == e.precedence && o.auth_type() > t {
                    t = o.auth_type();
                }
            }
        }
        crate::policy::AuthType::from_number(t).filter(|t| *t != crate::policy::AuthType::Disabled)
    }

    /// Steps 5–6: allowed, the drop reason (DROP_POLICY without an entry, DROP_POLICY_DENY
    /// for a deny) and the match type.
    pub fn verdict(&self) -> (bool, Option<DropReason>, MatchType) {
        match self.chosen {
            None => (false, Some(DropReason::PolicyDenied), MatchType::None),
            Some((stage, _, e)) => (
                !e.is_deny(),
                e.is_deny().then_some(DropReason::PolicyDeny),
                match_type(stage, e.lpm_prefix_length()),
            ),
        }
    }
}

/// How one direction decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionExplanation {
    pub direction: Direction,
    /// The enforcing endpoint (`ns/pod` or `host:<node>`, endpoint id); `None` for a side
    /// outside the cluster.
    pub endpoint: Option<(String, u32)>,
    /// Policy enabled on this side (verdict events are emitted only then).
    pub enforced: bool,
    /// The remote identity from the enforcing node's ipcache, and the matching prefix.
    pub remote_identity: Option<Identity>,
    pub remote_prefix: Option<IpNet>,
    /// The lookups in order: L3, then (unless the L3 lookup found a deny) L4-only.
    pub lookups: Vec<LookupStep>,
    /// The chosen entry, with the rules it derives from.
    pub chosen: Option<(LookupStage, Key, MapEntry)>,
    pub choice: Choice,
    pub allowed: bool,
    pub reason: Option<DropReason>,
    pub match_type: MatchType,
    /// The auth type the chosen allow needs, and whether the pair was authenticated.
    pub auth: Option<(crate::policy::AuthType, bool)>,
}

/// [`Model::explain`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub egress: DirectionExplanation,
    pub ingress: DirectionExplanation,
    pub outcome: Outcome,
}

impl fmt::Display for DirectionExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((pod, id)) = &self.endpoint else {
            return writeln!(f, "{}: {}", self.direction, self.choice);
        };
        write!(f, "{} on {pod} (endpoint {id}", self.direction)?;
        if !self.enforced {
            write!(f, ", policy not enabled")?;
        }
        write!(f, ")")?;
        if let Some(r) = self.remote_identity {
            write!(f, ": remote identity {r}")?;
            if let Some(p) = self.remote_prefix {
                write!(f, " (ipcache {p})")?;
            } else {
                write!(f, " (no ipcache entry)")?;
            }
        }
        writeln!(f)?;
        for s in &self.lookups {
            let q = &s.query;
            write!(
                f,
                "  {} lookup {{identity {}, proto {}, dport {}}} /64: ",
                s.stage,
                q.sec_label,
                q.protocol,
                u16::from_be_bytes(q.dport)
            )?;
            match &s.hit {
                Some((k, e)) => writeln!(
                    f,
                    "{} {} precedence {:#x} prefix {}",
                    if e.is_deny() { "deny" } else { "allow" },
                    k,
                    e.precedence,
                    e.lpm_prefix_length()
                )?,
                None => writeln!(f, "no entry")?,
            }
        }
        writeln!(f, "  {}", self.choice)?;
        if let Some((_, _, e)) = &self.chosen {
            for o in &e.origins {
                writeln!(f, "  from {o}")?;
            }
            for s in &e.synthetic {
                writeln!(f, "  synthetic: {s}")?;
            }
        }
        if let Some((t, ok)) = self.auth {
            if ok {
                writeln!(
                    f,
                    "  needs auth type {t}: the pair is authenticated (auth map)"
                )?;
            } else {
                writeln!(
                    f,
                    "  needs auth type {t}: not in the auth map (until an `authenticate` step; \
                     test-always-fail never passes)"
                )?;
            }
        }
        match self.reason {
            None => writeln!(f, "  allowed, match {}", self.match_type),
            Some(r) => writeln!(f, "  dropped {r}, match {}", self.match_type),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.egress, self.ingress)?;
        writeln!(f, "=> {}", self.outcome)
    }
}

#[cfg(test)]
mod tests;
