//! The ipcache: IP prefix → security identity, as each node's BPF ipcache LPM map
//! (`cilium_ipcache_v2`, `bpf/lib/eps.h`) resolves it for packets (spec §3.6).
//!
//! It owns:
//! - pod addresses (/32, /128) → the pod's identity;
//! - node addresses → host (1) on that node itself, remote-node (6) on every other node;
//! - every prefix a selector in force names (`cidr` and `except`, [`Selector::prefixes`]) →
//!   a node-local CIDR identity with labels `cidr:<prefix>` + `reserved:world`
//!   (`pkg/labels/cidr.go`, spec §3.4), allocated with [`Scope::Local`] and reference-counted
//!   by the selectors naming the prefix;
//! - every prefix of a CiliumCIDRGroup → a node-local identity with the group's labels
//!   (`cidrgroup:io.cilium.policy.cidrgroupname/<name>`, its object labels) + `reserved:world`
//!   (`applyCIDRGroup`, `pkg/policy/k8s/cilium_cidr_group.go`), so one group is one identity.
//!   As Cilium's ipcache metadata layer does (`mergeParentLabels`, `pkg/ipcache/metadata.go`),
//!   a prefix also takes the labels of every shorter prefix holding it, but at most one
//!   `cidr:` label (its own, else the longest parent's): an address inside a group resolves
//!   to an identity that the group's selectors and the enclosing CIDR selectors all match;
//! - [`Lpm`], the longest-prefix-match table with the kernel's `BPF_MAP_TYPE_LPM_TRIE`
//!   semantics, which the policy map (`model`) uses as well.
//!
//! Pod and node entries beat CIDR entries for the same prefix: in-cluster addresses never
//! resolve to CIDR identities (`resolveLabels` in `pkg/ipcache/metadata.go`, spec §3.4, §7 #9).
//! Nothing matching → world (2) (`bpf/bpf_lxc.c`).
//!
//! Cilium allocates CIDR identities per node. Every node here sees the same policies in the
//! same order, so the per-node allocations coincide and one table serves all nodes; only
//! node addresses differ per node, and they are resolved at lookup time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::identity::{Identity, IdentityAllocator, Scope};
use crate::labels::{Label, LabelSet};
use crate::selector::{cidr_label, Selector};

/// A longest-prefix-match table over `N`-byte keys with the kernel's LPM trie semantics: a
/// key is a prefix length in bits plus data compared most-significant bit first (the bytes
/// after `lpm_key.prefixlen`, in memory order); a lookup returns the entry with the longest
/// prefix whose bits equal the query's.
///
/// Entries are kept per prefix length, data masked to that length; a lookup probes the
/// lengths from the longest down, which returns exactly what the trie returns.
#[derive(Clone, Debug)]
pub struct Lpm<const N: usize, V> {
    // Point lookups only: iteration goes through `iter`, which sorts.
    by_len: BTreeMap<u32, HashMap<[u8; N], V>>,
    len: usize,
}

impl<const N: usize, V> Default for Lpm<N, V> {
    fn default() -> Self {
        Lpm {
            by_len: BTreeMap::new(),
            len: 0,
        }
    }
}

/// `data` with every bit after the first `prefixlen` cleared.
pub fn mask_bits<const N: usize>(data: &[u8; N], prefixlen: u32) -> [u8; N] {
    let mut out = *data;
    let full = (prefixlen / 8) as usize;
    let rest = prefixlen % 8;
    for (i, b) in out.iter_mut().enumerate() {
        if i < full {
            continue;
        }
        if i == full && rest > 0 {
            *b &= 0xFFu8 << (8 - rest);
        } else {
            *b = 0;
        }
    }
    out
}

impl<const N: usize, V> Lpm<N, V> {
    pub const MAX_PREFIX: u32 = (N as u32) * 8;

    /// Inserts or replaces the entry for (`prefixlen`, `data`); bits past the prefix are
    /// ignored, as the kernel does. Returns the previous value.
    pub fn insert(&mut self, prefixlen: u32, data: [u8; N], value: V) -> Option<V> {
        let prefixlen = prefixlen.min(Self::MAX_PREFIX);
        let old = self
            .by_len
            .entry(prefixlen)
            .or_default()
            .insert(mask_bits(&data, prefixlen), value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, prefixlen: u32, data: &[u8; N]) -> Option<V> {
        let prefixlen = prefixlen.min(Self::MAX_PREFIX);
        let table = self.by_len.get_mut(&prefixlen)?;
        let old = table.remove(&mask_bits(data, prefixlen));
        if table.is_empty() {
            self.by_len.remove(&prefixlen);
        }
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The exact entry (`prefixlen`, `data`), no prefix matching.
    pub fn get_exact(&self, prefixlen: u32, data: &[u8; N]) -> Option<&V> {
        let prefixlen = prefixlen.min(Self::MAX_PREFIX);
        self.by_len
            .get(&prefixlen)?
            .get(&mask_bits(data, prefixlen))
    }

    /// The longest-prefix match for a query of `prefixlen` bits (the kernel only considers
    /// entries no longer than the query): the matched prefix length and value.
    pub fn lookup(&self, prefixlen: u32, data: &[u8; N]) -> Option<(u32, &V)> {
        let prefixlen = prefixlen.min(Self::MAX_PREFIX);
        for (&len, table) in self.by_len.range(..=prefixlen).rev() {
            if let Some(v) = table.get(&mask_bits(data, len)) {
                return Some((len, v));
            }
        }
        None
    }

    /// Like [`Lpm::lookup`], over the entries `keep` maps to `Some` only: the view of a
    /// table whose entries other than those are absent.
    pub fn lookup_where<T>(
        &self,
        prefixlen: u32,
        data: &[u8; N],
        keep: impl Fn(&V) -> Option<T>,
    ) -> Option<(u32, T)> {
        let prefixlen = prefixlen.min(Self::MAX_PREFIX);
        for (&len, table) in self.by_len.range(..=prefixlen).rev() {
            if let Some(t) = table.get(&mask_bits(data, len)).and_then(&keep) {
                return Some((len, t));
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry as (prefix length, data, value), sorted by prefix length then data.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8; N], &V)> {
        self.by_len.iter().flat_map(|(&len, table)| {
            let mut rows: Vec<(&[u8; N], &V)> = table.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            rows.into_iter().map(move |(k, v)| (len, k, v))
        })
    }
}

/// Static bits in front of the address in Cilium's ipcache key: `cluster_id` u16, `pad` u8,
/// `family` u8 (spec §3.6).
pub const IPCACHE_STATIC_PREFIX_BITS: u32 = 32;

/// Cilium's `ipcache_key` data after `lpm_key.prefixlen`: cluster id 0, pad, family
/// (1 = IPv4, 2 = IPv6), then the address (IPv4 in the first 4 bytes).
pub fn ipcache_key_data(ip: IpAddr) -> [u8; 20] {
    let mut d = [0u8; 20];
    match ip {
        IpAddr::V4(v4) => {
            d[3] = 1;
            d[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            d[3] = 2;
            d[4..20].copy_from_slice(&v6.octets());
        }
    }
    d
}

fn prefix_key(net: &IpNet) -> (u32, [u8; 20]) {
    (
        IPCACHE_STATIC_PREFIX_BITS + u32::from(net.prefix_len()),
        ipcache_key_data(net.network()),
    )
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// What a prefix is known as; pods and nodes beat CIDRs and FQDN IPs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PrefixInfo {
    pod: Option<Identity>,
    /// A node's name and the identity the other nodes give it.
    node: Option<(String, Identity)>,
    cidr: Option<Identity>,
    /// An address the DNS proxy of these nodes has seen for a name some `toFQDNs` selector
    /// matches: its identity on each of them (`fqdn:` labels merged with the prefix's own and
    /// inherited CIDR labels). Other nodes do not have it (their `cidr`, if any, applies).
    fqdn: BTreeMap<String, Identity>,
}

impl PrefixInfo {
    fn is_empty(&self) -> bool {
        self.pod.is_none() && self.node.is_none() && self.cidr.is_none() && self.fqdn.is_empty()
    }

    fn value(&self) -> Option<IpCacheValue> {
        if let Some((n, remote)) = &self.node {
            Some(IpCacheValue::Node(n.clone(), *remote))
        } else if let Some(id) = self.pod {
            Some(IpCacheValue::Identity(id))
        } else if !self.fqdn.is_empty() {
            Some(IpCacheValue::PerNode(self.fqdn.clone(), self.cidr))
        } else {
            self.cidr.map(IpCacheValue::Identity)
        }
    }

    /// The identity of the prefix as `observer_node` sees it: node beats pod beats FQDN
    /// beats CIDR; `None` when the observer's ipcache has no entry for it.
    fn identity_on(&self, observer_node: &str) -> Option<Identity> {
        self.value()?.identity_on(observer_node)
    }
}

/// The identity a prefix resolves to, before the per-node view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpCacheValue {
    Identity(Identity),
    /// A node address: host (1) on that node; elsewhere remote-node (6), or the node's own
    /// identity under `--enable-node-selector-labels` (the second field).
    Node(String, Identity),
    /// An FQDN address: its identity on the nodes that learned it, else the CIDR identity
    /// (or no entry).
    PerNode(BTreeMap<String, Identity>, Option<Identity>),
}

impl IpCacheValue {
    /// The identity as seen from `observer_node` (`None`: no entry on that node).
    pub fn identity_on(&self, observer_node: &str) -> Option<Identity> {
        match self {
            IpCacheValue::Identity(id) => Some(*id),
            IpCacheValue::Node(n, _) if n == observer_node => Some(Identity::HOST),
            IpCacheValue::Node(_, remote) => Some(*remote),
            IpCacheValue::PerNode(m, other) => m.get(observer_node).copied().or(*other),
        }
    }
}

/// One resolved lookup: the matching prefix (none for the world default) and the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpCacheHit {
    pub prefix: Option<IpNet>,
    pub identity: Identity,
}

/// What changed among CIDR identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CidrIdentityChange {
    pub added: Vec<(Identity, LabelSet)>,
    pub removed: Vec<Identity>,
}

/// The ipcache of every node (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct IpCache {
    prefixes: BTreeMap<IpNet, PrefixInfo>,
    lpm: Lpm<20, IpCacheValue>,
    /// The metadata of each CIDR prefix (selector references, CIDR groups), from which its
    /// identity's labels are computed ([`IpCache::labels_of`]).
    meta: BTreeMap<IpNet, PrefixMeta>,
    /// CIDR groups by name: the labels they give their prefixes and the prefixes.
    groups: BTreeMap<String, (LabelSet, BTreeSet<IpNet>)>,
    /// Node-local identities (Scope::Local): CIDR and FQDN identities.
    local: IdentityAllocator,
    /// Per FQDN address and node: the `fqdn:` label keys the name manager gives it there.
    fqdn: BTreeMap<IpNet, BTreeMap<String, BTreeSet<String>>>,
    /// Prefixes whose entry may have changed since the journal was last taken, when a map
    /// writer asked for them ([`IpCache::enable_journal`]); `None` (the default) records
    /// nothing, so backends that never drain it do not accumulate it.
    journal: Option<BTreeSet<IpNet>>,
}

/// Who puts a CIDR prefix in the ipcache (the metadata layer's resources for it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PrefixMeta {
    /// Selectors naming the prefix (`cidr`, `except`).
    refs: usize,
    /// CIDR groups listing the prefix.
    groups: BTreeSet<String>,
}

impl PrefixMeta {
    fn is_empty(&self) -> bool {
        self.refs == 0 && self.groups.is_empty()
    }
}

/// The labels of the CIDR identity of `net`: its `cidr:` label and `reserved:world`; a /0
/// prefix carries only the world label and so is the world identity (spec §3.4).
pub fn cidr_identity_labels(net: &IpNet) -> LabelSet {
    if net.prefix_len() == 0 {
        LabelSet::new(vec![Label::reserved("world")])
    } else {
        LabelSet::new(vec![cidr_label(net), Label::reserved("world")])
    }
}

impl IpCache {
    pub fn new() -> Self {
        IpCache::default()
    }

    /// Records every prefix whose entry may change from now on, for [`IpCache::take_journal`].
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(BTreeSet::new);
    }

    /// The prefixes recorded since the last call (empty when the journal is off).
    pub fn take_journal(&mut self) -> BTreeSet<IpNet> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Every change to an entry goes through here, so this is the one place the journal
    /// records (a prefix refreshed to the same value is recorded too: the writer skips it).
    fn refresh(&mut self, net: IpNet) {
        if let Some(j) = self.journal.as_mut() {
            j.insert(net);
        }
        let (len, data) = prefix_key(&net);
        let value = self.prefixes.get(&net).and_then(|i| i.value());
        match value {
            Some(v) => {
                self.lpm.insert(len, data, v);
            }
            None => {
                self.lpm.remove(len, &data);
                self.prefixes.remove(&net);
            }
        }
    }

    /// A pod's address → its identity.
    pub fn upsert_pod(&mut self, ip: IpAddr, identity: Identity) {
        let net = host_net(ip);
        self.prefixes.entry(net).or_default().pod = Some(identity);
        self.refresh(net);
    }

    pub fn remove_pod(&mut self, ip: IpAddr) {
        let net = host_net(ip);
        if let Some(info) = self.prefixes.get_mut(&net) {
            info.pod = None;
        }
        self.refresh(net);
    }

    /// A node's address (host on itself, `remote` elsewhere).
    pub fn upsert_node(&mut self, name: &str, ip: IpAddr, remote: Identity) {
        let net = host_net(ip);
        self.prefixes.entry(net).or_default().node = Some((name.to_string(), remote));
        self.refresh(net);
    }

    pub fn remove_node(&mut self, ip: IpAddr) {
        let net = host_net(ip);
        if let Some(info) = self.prefixes.get_mut(&net) {
            info.node = None;
        }
        self.refresh(net);
    }

    /// Takes a reference on every prefix `sel` names; new prefixes get CIDR identities.
    pub fn add_selector(&mut self, sel: &Selector, change: &mut CidrIdentityChange) {
        for net in sel.prefixes() {
            let net = net.trunc();
            let m = self.meta.entry(net).or_default();
            m.refs += 1;
            if m.refs == 1 {
                self.recompute_under(net, change);
            }
        }
    }

    /// Drops the references `sel` held; prefixes nobody names any more lose their identity.
    pub fn remove_selector(&mut self, sel: &Selector, change: &mut CidrIdentityChange) {
        for net in sel.prefixes() {
            let net = net.trunc();
            let Some(m) = self.meta.get_mut(&net) else {
                continue;
            };
            if m.refs == 0 {
                continue;
            }
            m.refs -= 1;
            if m.refs > 0 {
                continue;
            }
            if m.is_empty() {
                self.meta.remove(&net);
            }
            self.recompute_under(net, change);
        }
    }

    /// Creates or replaces the CIDR group `name` with these labels (world not included) and
    /// prefixes (`applyCIDRGroup`: new prefixes are upserted, stale ones removed, and every
    /// prefix relabelled, as the labels may have changed).
    pub fn upsert_cidr_group(
        &mut self,
        name: &str,
        labels: &LabelSet,
        cidrs: &BTreeSet<IpNet>,
        change: &mut CidrIdentityChange,
    ) {
        let cidrs: BTreeSet<IpNet> = cidrs.iter().map(|c| c.trunc()).collect();
        let old = self
            .groups
            .insert(name.to_string(), (labels.clone(), cidrs.clone()))
            .map(|(_, c)| c)
            .unwrap_or_default();
        self.regroup(name, &old, &cidrs, change);
    }

    /// Removes the CIDR group `name` (`onDeleteCIDRGroup`).
    pub fn remove_cidr_group(&mut self, name: &str, change: &mut CidrIdentityChange) {
        if let Some((_, old)) = self.groups.remove(name) {
            self.regroup(name, &old, &BTreeSet::new(), change);
        }
    }

    fn regroup(
        &mut self,
        name: &str,
        old: &BTreeSet<IpNet>,
        new: &BTreeSet<IpNet>,
        change: &mut CidrIdentityChange,
    ) {
        for net in old.difference(new) {
            if let Some(m) = self.meta.get_mut(net) {
                m.groups.remove(name);
                if m.is_empty() {
                    self.meta.remove(net);
                }
            }
        }
        for net in new {
            self.meta
                .entry(*net)
                .or_default()
                .groups
                .insert(name.to_string());
        }
        // Every prefix inside the group's, whether or not groups remain (the last group's
        // removal must relabel what inherited from it).
        let mut done = BTreeSet::new();
        for net in old.union(new) {
            for n in self.inside(*net) {
                if done.insert(n) {
                    self.recompute(n, change);
                }
            }
        }
        for net in old.union(new) {
            self.recompute_fqdn_inside(*net, change);
        }
    }

    /// `net` and every prefix with metadata inside it: the prefixes whose labels a change at
    /// `net` may change. Without CIDR groups a prefix inherits nothing its own `cidr:` label
    /// does not already decide, so only `net` itself.
    fn under(&self, net: IpNet) -> Vec<IpNet> {
        if self.groups.is_empty() {
            return vec![net];
        }
        self.inside(net)
    }

    /// `net` and every prefix with metadata inside it.
    fn inside(&self, net: IpNet) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = self
            .meta
            .keys()
            .filter(|k| **k != net && net.contains(*k))
            .copied()
            .collect();
        out.push(net);
        out
    }

    fn recompute_under(&mut self, net: IpNet, change: &mut CidrIdentityChange) {
        for n in self.under(net) {
            self.recompute(n, change);
        }
        self.recompute_fqdn_inside(net, change);
    }

    /// FQDN addresses inside `net` inherit its labels (`mergeParentLabels`): relabels them.
    fn recompute_fqdn_inside(&mut self, net: IpNet, change: &mut CidrIdentityChange) {
        let inside: Vec<(IpNet, Vec<String>)> = self
            .fqdn
            .iter()
            .filter(|(k, _)| net.contains(*k))
            .map(|(k, m)| (*k, m.keys().cloned().collect()))
            .collect();
        for (k, nodes) in inside {
            for node in nodes {
                self.recompute_fqdn(k, &node, change);
            }
        }
    }

    /// Sets the `fqdn:` label keys of `ip` on `node` (`updateMetadata` upserting or removing
    /// the name manager's labels for the address, `pkg/fqdn/namemanager/manager.go`); an
    /// empty set removes the address from that node's ipcache (unless a CIDR names it).
    pub fn set_fqdn(
        &mut self,
        node: &str,
        ip: IpAddr,
        keys: BTreeSet<String>,
        change: &mut CidrIdentityChange,
    ) {
        let net = host_net(ip);
        let per_node = self.fqdn.entry(net).or_default();
        if keys.is_empty() {
            if per_node.remove(node).is_none() {
                if per_node.is_empty() {
                    self.fqdn.remove(&net);
                }
                return;
            }
            if per_node.is_empty() {
                self.fqdn.remove(&net);
            }
        } else {
            if per_node.get(node) == Some(&keys) {
                return;
            }
            per_node.insert(node.to_string(), keys);
        }
        self.recompute_fqdn(net, node, change);
    }

    /// The `fqdn:` label keys of `ip` on `node`.
    pub fn fqdn_keys(&self, node: &str, ip: IpAddr) -> Option<&BTreeSet<String>> {
        self.fqdn.get(&host_net(ip))?.get(node)
    }

    /// Every FQDN address with the nodes that have it.
    pub fn fqdn_addresses(
        &self,
    ) -> impl Iterator<Item = (IpNet, &BTreeMap<String, BTreeSet<String>>)> {
        self.fqdn.iter().map(|(k, v)| (*k, v))
    }

    /// Gives the FQDN address `net` on `node` the identity of its labels: the `fqdn:` labels,
    /// its own and its parents' CIDR and CIDR-group labels (`mergeParentLabels`), and
    /// `reserved:world` (`resolveLabels`), releasing the one it had.
    fn recompute_fqdn(&mut self, net: IpNet, node: &str, change: &mut CidrIdentityChange) {
        let new = self.fqdn.get(&net).and_then(|m| m.get(node)).map(|keys| {
            let mut labels: Vec<Label> = keys
                .iter()
                .map(|k| Label::new(crate::labels::Source::Fqdn, k.as_str(), ""))
                .collect();
            labels.extend(self.inherited_labels(&net));
            labels.push(Label::reserved("world"));
            LabelSet::new(labels)
        });
        let old = self
            .prefixes
            .get(&net)
            .and_then(|i| i.fqdn.get(node).copied());
        if old.is_some() && old.and_then(|id| self.local.labels(id)) == new.as_ref() {
            return;
        }
        let new_id = new.map(|labels| {
            let alloc = self.local.acquire(&labels, Scope::Local);
            if alloc.new {
                change.added.push((alloc.identity, labels));
            }
            alloc.identity
        });
        if let Some(id) = old {
            if self.local.release(id) {
                change.removed.push(id);
            }
        }
        let info = self.prefixes.entry(net).or_default();
        match new_id {
            Some(id) => {
                info.fqdn.insert(node.to_string(), id);
            }
            None => {
                info.fqdn.remove(node);
            }
        }
        self.refresh(net);
    }

    /// The CIDR and CIDR-group labels `net` has of its own and from every shorter prefix
    /// with metadata, at most one `cidr:` label (the longest), world not included.
    fn inherited_labels(&self, net: &IpNet) -> Vec<Label> {
        let mut labels = Vec::new();
        let mut cidr = None;
        let add = |m: &PrefixMeta, labels: &mut Vec<Label>| {
            for g in &m.groups {
                if let Some((l, _)) = self.groups.get(g) {
                    labels.extend(l.iter().cloned());
                }
            }
        };
        for len in (0..=net.prefix_len()).rev() {
            let Ok(p) = IpNet::new(net.addr(), len) else {
                continue;
            };
            if let Some(m) = self.meta.get(&p.trunc()) {
                add(m, &mut labels);
                if cidr.is_none() && m.refs > 0 {
                    cidr = Some(p.trunc());
                }
            }
        }
        if let Some(c) = cidr.filter(|c| c.prefix_len() > 0) {
            labels.push(cidr_label(&c));
        }
        labels
    }

    /// The labels of the identity of `net` (`None`: it has no CIDR identity): its own and
    /// its groups', then those of every shorter prefix with metadata, from the longest,
    /// with at most one `cidr:` label (`mergeParentLabels`), then `reserved:world`.
    fn labels_of(&self, net: &IpNet) -> Option<LabelSet> {
        let own = self.meta.get(net).filter(|m| !m.is_empty())?;
        if self.groups.is_empty() {
            return Some(cidr_identity_labels(net));
        }
        let mut labels: Vec<Label> = Vec::new();
        let mut cidr = (own.refs > 0).then_some(*net);
        let add_groups = |m: &PrefixMeta, labels: &mut Vec<Label>| {
            for g in &m.groups {
                if let Some((l, _)) = self.groups.get(g) {
                    labels.extend(l.iter().cloned());
                }
            }
        };
        add_groups(own, &mut labels);
        for len in (0..net.prefix_len()).rev() {
            let Ok(parent) = IpNet::new(net.addr(), len) else {
                continue;
            };
            if let Some(m) = self.meta.get(&parent.trunc()) {
                add_groups(m, &mut labels);
                if cidr.is_none() && m.refs > 0 {
                    cidr = Some(parent.trunc());
                }
            }
        }
        if let Some(c) = cidr.filter(|c| c.prefix_len() > 0) {
            labels.push(cidr_label(&c));
        }
        labels.push(Label::reserved("world"));
        Some(LabelSet::new(labels))
    }

    /// Gives `net` the identity of its current labels, releasing the one it had.
    fn recompute(&mut self, net: IpNet, change: &mut CidrIdentityChange) {
        let new = self.labels_of(&net);
        let old = self.prefixes.get(&net).and_then(|i| i.cidr);
        if old.is_some() && old.and_then(|id| self.local.labels(id)) == new.as_ref() {
            return;
        }
        let new_id = new.map(|labels| {
            let alloc = self.local.acquire(&labels, Scope::Local);
            if alloc.new {
                change.added.push((alloc.identity, labels));
            }
            alloc.identity
        });
        if let Some(id) = old {
            if self.local.release(id) {
                change.removed.push(id);
            }
        }
        if new_id.is_none() && old.is_none() {
            return;
        }
        self.prefixes.entry(net).or_default().cidr = new_id;
        self.refresh(net);
    }

    /// The identity of `ip` as `observer_node`'s ipcache resolves it (world when nothing
    /// matches), with the matching prefix.
    pub fn lookup(&self, observer_node: &str, ip: IpAddr) -> IpCacheHit {
        let data = ipcache_key_data(ip);
        let full = IPCACHE_STATIC_PREFIX_BITS + if ip.is_ipv4() { 32 } else { 128 };
        match self
            .lpm
            .lookup_where(full, &data, |v| v.identity_on(observer_node))
        {
            Some((len, identity)) => {
                let plen = (len - IPCACHE_STATIC_PREFIX_BITS) as u8;
                IpCacheHit {
                    prefix: IpNet::new(ip, plen).ok().map(|n| n.trunc()),
                    identity,
                }
            }
            None => IpCacheHit {
                prefix: None,
                identity: Identity::WORLD,
            },
        }
    }

    /// Every entry as `observer_node` sees it, sorted by prefix: what a map writer puts in
    /// that node's BPF ipcache.
    pub fn entries<'a>(
        &'a self,
        observer_node: &'a str,
    ) -> impl Iterator<Item = (IpNet, Identity)> + 'a {
        self.prefixes
            .iter()
            .filter_map(move |(net, info)| Some((*net, info.identity_on(observer_node)?)))
    }

    /// The entry of exactly `net` as `observer_node`'s ipcache map holds it (one row of
    /// [`IpCache::entries`]); `None` when the map has no such entry.
    pub fn entry(&self, net: &IpNet, observer_node: &str) -> Option<Identity> {
        self.prefixes.get(net)?.identity_on(observer_node)
    }

    /// The node-local identities (CIDR identities) with their labels.
    pub fn local_identities(&self) -> impl Iterator<Item = (Identity, &LabelSet)> {
        self.local.iter().filter(|(id, _)| id.is_local_scope())
    }

    /// The labels of a node-local identity.
    pub fn local_labels(&self, id: Identity) -> Option<&LabelSet> {
        if id.is_local_scope() {
            self.local.labels(id)
        } else {
            None
        }
    }

    /// The CIDR identity of a prefix named by a selector, if any.
    pub fn cidr_identity(&self, net: &IpNet) -> Option<Identity> {
        self.prefixes.get(&net.trunc()).and_then(|i| i.cidr)
    }

    pub fn len(&self) -> usize {
        self.prefixes.values().filter(|i| !i.is_empty()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Requirement;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn cidr_sel(c: &str, except: &[&str]) -> Selector {
        let mut reqs = vec![Requirement::Cidr(net(c))];
        reqs.extend(except.iter().map(|e| Requirement::NotCidr(net(e))));
        Selector::new(reqs)
    }

    #[test]
    fn lpm_returns_longest_matching_prefix() {
        let mut l: Lpm<2, &str> = Lpm::default();
        l.insert(8, [10, 0], "a");
        l.insert(12, [10, 0xf0], "b");
        l.insert(16, [10, 0xf7], "c");
        assert_eq!(l.lookup(16, &[10, 0xf7]), Some((16, &"c")));
        assert_eq!(l.lookup(16, &[10, 0xf1]), Some((12, &"b")));
        assert_eq!(l.lookup(16, &[10, 0x01]), Some((8, &"a")));
        assert_eq!(l.lookup(16, &[11, 0x01]), None);
        // A shorter query never matches longer entries.
        assert_eq!(l.lookup(8, &[10, 0xf7]), Some((8, &"a")));
        assert_eq!(l.remove(12, &[10, 0xff]), Some("b"));
        assert_eq!(l.lookup(16, &[10, 0xf1]), Some((8, &"a")));
        assert_eq!(l.len(), 2);
    }

    // spec §3.6: pod /32 → pod identity; node → host on itself, remote-node elsewhere;
    // nothing → world.
    #[test]
    fn pods_nodes_and_world() {
        let mut c = IpCache::new();
        c.upsert_pod(ip("10.244.0.10"), Identity(256));
        c.upsert_node("node-1", ip("172.18.0.2"), Identity::REMOTE_NODE);
        c.upsert_node("node-2", ip("172.18.0.3"), Identity::REMOTE_NODE);
        assert_eq!(
            c.lookup("node-1", ip("10.244.0.10")).identity,
            Identity(256)
        );
        assert_eq!(
            c.lookup("node-1", ip("172.18.0.2")).identity,
            Identity::HOST
        );
        assert_eq!(
            c.lookup("node-2", ip("172.18.0.2")).identity,
            Identity::REMOTE_NODE
        );
        assert_eq!(c.lookup("node-1", ip("8.8.8.8")).identity, Identity::WORLD);
        assert_eq!(
            c.lookup("node-1", ip("2001:db8::1")).identity,
            Identity::WORLD
        );
        c.remove_pod(ip("10.244.0.10"));
        assert_eq!(
            c.lookup("node-1", ip("10.244.0.10")).identity,
            Identity::WORLD
        );
    }

    // spec §3.4, §7 #8: cidr and except prefixes get CIDR identities; longest prefix wins.
    #[test]
    fn cidr_and_except_prefixes_get_local_identities() {
        let mut c = IpCache::new();
        let mut ch = CidrIdentityChange::default();
        let s = cidr_sel("10.0.0.0/8", &["10.96.0.0/12"]);
        c.add_selector(&s, &mut ch);
        assert_eq!(ch.added.len(), 2);
        let outer = c.cidr_identity(&net("10.0.0.0/8")).unwrap();
        let inner = c.cidr_identity(&net("10.96.0.0/12")).unwrap();
        assert!(outer.is_local_scope() && inner.is_local_scope());
        assert_eq!(outer, Identity((1 << 24) | 1));
        assert_eq!(c.lookup("n", ip("10.1.2.3")).identity, outer);
        let hit = c.lookup("n", ip("10.96.0.10"));
        assert_eq!(hit.identity, inner);
        assert_eq!(hit.prefix, Some(net("10.96.0.0/12")));
        assert_eq!(
            c.local_labels(inner).unwrap().to_string(),
            "reserved:world cidr:10.96.0.0/12"
        );
        // Reference counting: a second selector naming 10.0.0.0/8 keeps it alive.
        let s2 = cidr_sel("10.0.0.0/8", &[]);
        let mut ch2 = CidrIdentityChange::default();
        c.add_selector(&s2, &mut ch2);
        assert!(ch2.added.is_empty());
        let mut rm = CidrIdentityChange::default();
        c.remove_selector(&s, &mut rm);
        assert_eq!(rm.removed, vec![inner]);
        assert_eq!(c.lookup("n", ip("10.96.0.10")).identity, outer);
        c.remove_selector(&s2, &mut rm);
        assert_eq!(rm.removed, vec![inner, outer]);
        assert_eq!(c.lookup("n", ip("10.96.0.10")).identity, Identity::WORLD);
        assert!(c.is_empty());
    }

    // pkg/policy/k8s/cilium_cidr_group.go applyCIDRGroup: a group's prefixes share one
    // identity (its labels + world); pkg/ipcache/metadata.go mergeParentLabels: a prefix takes
    // the labels of every shorter one, with at most one cidr: label (the longest).
    #[test]
    fn cidr_groups_label_their_prefixes_and_children_inherit() {
        let mut c = IpCache::new();
        let mut ch = CidrIdentityChange::default();
        let vpn = crate::labels::cidr_group_labels("vpn", &[("role".into(), "vpn".into())].into());
        let two: BTreeSet<IpNet> = [net("10.48.0.0/24"), net("10.16.0.0/24")].into();
        c.upsert_cidr_group("vpn", &vpn, &two, &mut ch);
        assert_eq!(ch.added.len(), 1, "one identity per group: {ch:?}");
        let g = c.lookup("n", ip("10.48.0.5")).identity;
        assert_eq!(c.lookup("n", ip("10.16.0.5")).identity, g);
        assert_eq!(
            c.local_labels(g).unwrap().to_string(),
            "reserved:world cidrgroup:io.cilium.policy.cidrgroupname/vpn cidrgroup:role=vpn cidrgroup:role+vpn"
        );
        // A selector prefix inside the group carries the group's labels; one enclosing the
        // group gives the group prefixes its cidr: label.
        c.add_selector(&cidr_sel("10.48.0.128/25", &[]), &mut ch);
        c.add_selector(&cidr_sel("10.0.0.0/8", &[]), &mut ch);
        let inner = c.lookup("n", ip("10.48.0.200")).identity;
        assert_eq!(
            c.local_labels(inner).unwrap().to_string(),
            "reserved:world cidr:10.48.0.128/25 cidrgroup:io.cilium.policy.cidrgroupname/vpn cidrgroup:role=vpn cidrgroup:role+vpn"
        );
        let grouped = c.lookup("n", ip("10.16.0.5")).identity;
        assert_eq!(
            c.local_labels(grouped).unwrap().to_string(),
            "reserved:world cidr:10.0.0.0/8 cidrgroup:io.cilium.policy.cidrgroupname/vpn cidrgroup:role=vpn cidrgroup:role+vpn"
        );
        assert_eq!(c.lookup("n", ip("10.48.0.5")).identity, grouped);
        // Deleting the group relabels what inherited from it and drops its own prefixes.
        let mut rm = CidrIdentityChange::default();
        c.remove_cidr_group("vpn", &mut rm);
        assert_eq!(
            c.local_labels(c.lookup("n", ip("10.48.0.200")).identity)
                .unwrap()
                .to_string(),
            "reserved:world cidr:10.48.0.128/25"
        );
        assert_eq!(
            c.lookup("n", ip("10.16.0.5")).prefix,
            Some(net("10.0.0.0/8"))
        );
        assert!(rm.removed.contains(&inner) && rm.removed.contains(&grouped));
        c.remove_selector(&cidr_sel("10.48.0.128/25", &[]), &mut rm);
        c.remove_selector(&cidr_sel("10.0.0.0/8", &[]), &mut rm);
        assert!(c.is_empty());
        assert_eq!(c.local_identities().count(), 0);
    }

    // pkg/fqdn/namemanager updateMetadata + pkg/ipcache/metadata.go: an FQDN address gets, on
    // the node that learned it, an identity of its fqdn: labels, the enclosing selector
    // prefix's cidr: label (mergeParentLabels) and world; other nodes have no entry for it
    // (their LPM finds the enclosing prefix); dropping the labels releases the identity.
    #[test]
    fn fqdn_addresses_are_per_node_and_inherit_cidr_labels() {
        let mut c = IpCache::new();
        let mut ch = CidrIdentityChange::default();
        c.add_selector(&cidr_sel("140.82.112.0/24", &[]), &mut ch);
        let outer = c.cidr_identity(&net("140.82.112.0/24")).unwrap();
        let keys: BTreeSet<String> = ["api.github.com".to_string()].into();
        c.set_fqdn("node-1", ip("140.82.112.5"), keys.clone(), &mut ch);
        let id = c.lookup("node-1", ip("140.82.112.5")).identity;
        assert!(id.is_local_scope() && id != outer);
        assert_eq!(
            c.local_labels(id).unwrap().to_string(),
            "reserved:world cidr:140.82.112.0/24 fqdn:api.github.com"
        );
        assert_eq!(c.lookup("node-2", ip("140.82.112.5")).identity, outer);
        assert_eq!(c.entry(&net("140.82.112.5/32"), "node-2"), None);
        // A second node learning the same name shares the identity (same labels).
        c.set_fqdn("node-2", ip("140.82.112.5"), keys, &mut ch);
        assert_eq!(c.lookup("node-2", ip("140.82.112.5")).identity, id);
        let mut rm = CidrIdentityChange::default();
        c.set_fqdn("node-1", ip("140.82.112.5"), BTreeSet::new(), &mut rm);
        assert!(rm.removed.is_empty(), "node-2 still holds it");
        c.set_fqdn("node-2", ip("140.82.112.5"), BTreeSet::new(), &mut rm);
        assert_eq!(rm.removed, vec![id]);
        assert_eq!(c.lookup("node-1", ip("140.82.112.5")).identity, outer);
        // An address outside every selector prefix carries only its fqdn: labels and world.
        let mut ch2 = CidrIdentityChange::default();
        c.set_fqdn("node-1", ip("8.8.8.8"), ["*".to_string()].into(), &mut ch2);
        let g = c.lookup("node-1", ip("8.8.8.8")).identity;
        assert_eq!(
            c.local_labels(g).unwrap().to_string(),
            "reserved:world fqdn:*"
        );
    }

    // spec §7 #9: in-cluster addresses never resolve to CIDR identities.
    #[test]
    fn pod_entries_beat_cidr_entries() {
        let mut c = IpCache::new();
        let mut ch = CidrIdentityChange::default();
        c.add_selector(&cidr_sel("10.244.0.10/32", &[]), &mut ch);
        c.add_selector(&cidr_sel("10.0.0.0/8", &[]), &mut ch);
        c.upsert_pod(ip("10.244.0.10"), Identity(300));
        assert_eq!(c.lookup("n", ip("10.244.0.10")).identity, Identity(300));
        let entries: Vec<_> = c.entries("n").collect();
        assert_eq!(entries.len(), 2);
        c.remove_pod(ip("10.244.0.10"));
        assert!(c.lookup("n", ip("10.244.0.10")).identity.is_local_scope());
    }
}
