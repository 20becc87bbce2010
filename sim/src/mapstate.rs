//! MapState: one endpoint's policy-map contents, per direction (Cilium's `mapState`,
//! `pkg/policy/mapstate.go`, spec §4.3), and its conversion to the BPF ABI (`abi`).
//!
//! It owns:
//! - the key and entry types (`pkg/policy/types/types.go`, `entry.go`);
//! - key generation from the policy entries selecting an endpoint (`L4Filter.toMapState`,
//!   spec §4.2/§4.3): L3-only keys (protocol 0, which covers ICMP), L4 keys per protocol,
//!   identity 0 for a wildcard peer, named ports, port ranges as masked ports, ICMP types as
//!   ports;
//! - insertion with deny precedence and pruning of covered entries (`insertWithChanges`),
//!   which the LPM datapath needs: the L3 lookup returns only the most specific entry of an
//!   identity, so an allow left under a covering deny would win;
//! - the synthetic entries of `pkg/policy/repository.go` / `resolve.go` (spec §4.1): allow-all
//!   for a direction no rule selects, allow-all in the lowest tier for a direction without
//!   default deny, allow from the local host (identity 1) for ingress default deny;
//! - the `cilium-dbg bpf policy get` row form.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::abi::{
    self, EndpointPolicyKey, ENDPOINT_PREFIX_BITS, POLICY_ENTRY_DENY, POLICY_ENTRY_EXPLICIT_AUTH,
    POLICY_ENTRY_LPM_SHIFT, POLICY_STATIC_PREFIX_BITS, PRECEDENCE_ALLOW, PRECEDENCE_DENY,
};
use crate::cluster::{ContainerPort, Protocol};
use crate::identity::Identity;
use crate::policy::{L7Parser, Peers, PolicyEntry, PortSpec, RuleOrigin, RuleVerdict};
use crate::portrange::{port_range_to_masked_ports, MaskedPort};
use crate::proxy::ProxyPorts;
use crate::selector::Selector;
use crate::selectorcache::SelectorCache;
use crate::verdict::Direction;

/// Cilium's default per-endpoint policy map size (`bpf-policy-map-max`, spec §5.1).
pub const DEFAULT_POLICY_MAP_MAX_ENTRIES: usize = 16_384;

/// Precedence of the synthetic allows (allow-all without default deny, allow from host):
/// an allow in the lowest tier at the lowest priority level, below every rule's allow
/// (spec §4.1 "lowest tier"; the exact number is ours: inverted priority 0, allow byte 1).
pub const PRECEDENCE_ALLOW_LOWEST: u32 = 0x0000_0001;

/// A policy-map key (`pkg/policy/types/types.go` `Key`): remote identity (0 = any),
/// direction, protocol (0 = any; then the port is the wildcard too) and a masked port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub direction: Direction,
    pub identity: Identity,
    /// IP protocol number (`Nexthdr`); 0 is any.
    pub nexthdr: u8,
    /// Destination port (the ICMP type for ICMP) with its prefix; the wildcard when
    /// `nexthdr` is 0.
    pub port: MaskedPort,
}

impl Key {
    /// An L3-only key: every protocol and port, ICMP included.
    pub fn l3_only(identity: Identity, direction: Direction) -> Key {
        Key {
            direction,
            identity,
            nexthdr: 0,
            port: MaskedPort::WILDCARD,
        }
    }

    pub fn l4(
        identity: Identity,
        direction: Direction,
        protocol: Protocol,
        port: MaskedPort,
    ) -> Key {
        Key {
            direction,
            identity,
            nexthdr: protocol.number(),
            port,
        }
    }

    /// Protocol + port prefix bits, 0..=24: the entry's `lpm_prefix_length` (spec §5.1).
    pub fn lpm_prefix_length(&self) -> u8 {
        if self.nexthdr == 0 {
            0
        } else {
            8 + self.port.prefix
        }
    }

    /// Cilium's `Key.Covers`: same direction, identity equal or 0, protocol equal or 0, and
    /// the port block contains the other's.
    pub fn covers(&self, other: &Key) -> bool {
        self.direction == other.direction
            && (self.identity == other.identity || self.identity == Identity::ANY)
            && (self.nexthdr == 0
                || (self.nexthdr == other.nexthdr && self.port.covers(other.port)))
    }

    /// The ABI key of this key in endpoint `endpoint_id`'s slice of the policy map.
    pub fn to_abi(&self, endpoint_id: u32) -> EndpointPolicyKey {
        EndpointPolicyKey {
            prefixlen: ENDPOINT_PREFIX_BITS
                + POLICY_STATIC_PREFIX_BITS
                + u32::from(self.lpm_prefix_length()),
            ep_id: endpoint_id.to_be_bytes(),
            sec_label: self.identity.0,
            egress: self.direction.bit(),
            protocol: self.nexthdr,
            dport: self.port.port.to_be_bytes(),
        }
    }

    /// Decodes an ABI key: (endpoint id, key); `None` when it is not a well-formed key.
    pub fn from_abi(k: &EndpointPolicyKey) -> Option<(u32, Key)> {
        let bits = k
            .prefixlen
            .checked_sub(ENDPOINT_PREFIX_BITS + POLICY_STATIC_PREFIX_BITS)?;
        let direction = match k.egress & 1 {
            0 => Direction::Ingress,
            _ => Direction::Egress,
        };
        let port = u16::from_be_bytes(k.dport);
        let (nexthdr, port) = match bits {
            0 if k.protocol == 0 && port == 0 => (0, MaskedPort::WILDCARD),
            8..=24 if k.protocol != 0 => {
                let prefix = (bits - 8) as u8;
                let mp = MaskedPort { port, prefix };
                if mp.port & !mp.mask() != 0 {
                    return None;
                }
                (k.protocol, mp)
            }
            _ => return None,
        };
        Some((
            u32::from_be_bytes(k.ep_id),
            Key {
                direction,
                identity: Identity(k.sec_label),
                nexthdr,
                port,
            },
        ))
    }

    /// `PORT/PROTO` as `cilium-dbg bpf policy get` prints it: `ANY`, `TCP`, `80/TCP`,
    /// `80-83/TCP`.
    pub fn port_proto(&self) -> String {
        if self.nexthdr == 0 {
            return "ANY".to_string();
        }
        let proto = match Protocol::from_number(self.nexthdr) {
            Some(p) => p.to_string(),
            None => self.nexthdr.to_string(),
        };
        if self.port.prefix == 0 {
            proto
        } else {
            format!("{}/{}", self.port, proto)
        }
    }
}

/// Cilium's key string form: `Identity=…,DestPort=p[-end],Nexthdr=…,TrafficDirection=0|1`.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = match self.port.prefix {
            0 => "0".to_string(),
            16 => self.port.port.to_string(),
            _ => format!("{}-{}", self.port.port, self.port.end()),
        };
        write!(
            f,
            "Identity={},DestPort={},Nexthdr={},TrafficDirection={}",
            self.identity,
            port,
            self.nexthdr,
            self.direction.bit()
        )
    }
}

/// A synthetic entry the agent adds by itself (spec §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Synthetic {
    /// No rule selects the endpoint in this direction (`allowAllIdentities`).
    AllowAllNotEnforced,
    /// Rules select the endpoint but none makes the direction default-deny.
    AllowAllNoDefaultDeny,
    /// Ingress default deny: allow from the local host (allow-localhost=always).
    AllowLocalHost,
}

impl fmt::Display for Synthetic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Synthetic::AllowAllNotEnforced => "no rule selects the endpoint: allow-all",
            Synthetic::AllowAllNoDefaultDeny => {
                "no default-deny rule selects the endpoint: allow-all (lowest tier)"
            }
            Synthetic::AllowLocalHost => {
                "ingress from the local host is always allowed (allow-localhost, lowest tier)"
            }
        })
    }
}

/// A policy-map entry (`pkg/policy/types/entry.go` `MapStateEntry`), with the rules it
/// derives from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub deny: bool,
    /// Higher wins (1.19+); [`PRECEDENCE_DENY`] for denies.
    pub precedence: u32,
    /// 0: no redirect; else the proxy (listener) port of the entry's L7 parser.
    pub proxy_port: u16,
    /// Auth type (bits 0–6) and explicit flag (bit 7, the rule named a mode); a type
    /// without the flag is derived from a covering entry ([`MapState::derive_auth`]).
    pub auth: u8,
    pub origins: BTreeSet<RuleOrigin>,
    pub synthetic: BTreeSet<Synthetic>,
}

impl MapEntry {
    pub fn allow(precedence: u32) -> MapEntry {
        MapEntry {
            deny: false,
            precedence,
            proxy_port: 0,
            auth: 0,
            origins: BTreeSet::new(),
            synthetic: BTreeSet::new(),
        }
    }

    /// An allow that redirects to the proxy of `parser` listening on `proxy_port`: the
    /// precedence of a plain allow with the low byte raised by the listener priority
    /// (`types.Priority.ToPrecedenceWithListenerPriority` and `Precedence.WithListenerPriority`,
    /// `pkg/policy/types/entry.go`: priority `p` becomes `1 + 254 - p`, so HTTP (101) is 0x9a
    /// and DNS (121) 0x86), which beats a plain allow (0x01) of the same priority level.
    pub fn redirect(parser: L7Parser, proxy_port: u16) -> MapEntry {
        let low = 1 + 254 - u32::from(parser.listener_priority());
        MapEntry {
            precedence: (PRECEDENCE_ALLOW & !0xff) | low,
            proxy_port,
            ..MapEntry::allow(PRECEDENCE_ALLOW)
        }
    }

    pub fn deny() -> MapEntry {
        MapEntry {
            deny: true,
            precedence: PRECEDENCE_DENY,
            ..MapEntry::allow(0)
        }
    }

    fn with_origin(mut self, o: &RuleOrigin) -> MapEntry {
        self.origins.insert(o.clone());
        self
    }

    fn with_synthetic(mut self, s: Synthetic) -> MapEntry {
        self.synthetic.insert(s);
        self
    }

    /// `addKeyWithChanges` + `MapStateEntry.Merge` (`pkg/policy/mapstate.go`,
    /// `pkg/policy/types/entry.go`) for two entries of the same key and the same precedence
    /// level (they may differ in the proxy-port byte): a redirect takes over when its
    /// precedence is higher, or equal with a lower proxy port; the higher auth type
    /// (explicit first); the union of origins.
    fn merge(&mut self, other: MapEntry) {
        if !self.deny && !other.deny && other.proxy_port != 0 {
            let takes = other.precedence > self.precedence
                || (other.precedence == self.precedence
                    && (self.proxy_port == 0 || other.proxy_port < self.proxy_port));
            if takes {
                self.proxy_port = other.proxy_port;
                self.precedence = other.precedence;
            }
        } else if other.precedence > self.precedence {
            self.precedence = other.precedence;
        }
        let explicit = |a: u8| a & POLICY_ENTRY_EXPLICIT_AUTH != 0;
        if (explicit(other.auth) && !explicit(self.auth))
            || (explicit(other.auth) == explicit(self.auth) && other.auth & 0x7f > self.auth & 0x7f)
        {
            self.auth = other.auth;
        }
        self.origins.extend(other.origins);
        self.synthetic.extend(other.synthetic);
    }

    /// The ABI entry for `key` (1.19+ layout).
    pub fn to_abi(&self, key: &Key) -> abi::PolicyEntry {
        abi::PolicyEntry {
            proxy_port: self.proxy_port.to_be_bytes(),
            flags: (if self.deny { POLICY_ENTRY_DENY } else { 0 })
                | (key.lpm_prefix_length() << POLICY_ENTRY_LPM_SHIFT),
            auth: self.auth,
            precedence: self.precedence,
            cookie: 0,
        }
    }

    /// Decodes an ABI entry (the rule origins are not in the map).
    pub fn from_abi(e: &abi::PolicyEntry) -> MapEntry {
        MapEntry {
            deny: e.is_deny(),
            precedence: e.precedence,
            proxy_port: e.proxy_port(),
            auth: e.auth,
            origins: BTreeSet::new(),
            synthetic: BTreeSet::new(),
        }
    }
}

/// One endpoint's policy-map contents, both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapState {
    entries: BTreeMap<Key, MapEntry>,
}

impl MapState {
    pub fn new() -> Self {
        MapState::default()
    }

    pub fn get(&self, key: &Key) -> Option<&MapEntry> {
        self.entries.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &MapEntry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries of one direction.
    pub fn direction(&self, d: Direction) -> impl Iterator<Item = (&Key, &MapEntry)> {
        self.entries.iter().filter(move |(k, _)| k.direction == d)
    }

    fn identity_range(id: Identity, d: Direction) -> std::ops::RangeInclusive<Key> {
        let lo = Key {
            direction: d,
            identity: id,
            nexthdr: 0,
            port: MaskedPort::WILDCARD,
        };
        let hi = Key {
            direction: d,
            identity: id,
            nexthdr: u8::MAX,
            port: MaskedPort {
                port: u16::MAX,
                prefix: 16,
            },
        };
        lo..=hi
    }

    /// The entries of remote identity `id`, both directions.
    pub fn identity_entries(&self, id: Identity) -> Vec<(Key, MapEntry)> {
        [Direction::Ingress, Direction::Egress]
            .into_iter()
            .flat_map(|d| self.entries.range(Self::identity_range(id, d)))
            .map(|(k, e)| (*k, e.clone()))
            .collect()
    }

    /// Removes every entry of remote identity `id`; returns them.
    pub fn remove_identity(&mut self, id: Identity) -> Vec<(Key, MapEntry)> {
        let gone = self.identity_entries(id);
        for (k, _) in &gone {
            self.entries.remove(k);
        }
        gone
    }

    /// Replaces the entries of remote identity `id` by `entries` (computed by
    /// [`resolve_identity`] for an identical map); returns the previous ones.
    pub fn replace_identity(
        &mut self,
        id: Identity,
        entries: &[(Key, MapEntry)],
    ) -> Vec<(Key, MapEntry)> {
        let gone = self.remove_identity(id);
        for (k, e) in entries {
            self.entries.insert(*k, e.clone());
        }
        gone
    }

    /// Every key that covers `key` (itself included): identity equal or 0, protocol equal
    /// or 0, and each port block containing it — at most 2 × 18 candidates.
    fn covering(&self, key: &Key) -> impl Iterator<Item = (&Key, &MapEntry)> + '_ {
        let key = *key;
        let ids: &[Identity] = if key.identity == Identity::ANY {
            &[Identity::ANY]
        } else {
            &[Identity::ANY, key.identity][..]
        };
        let mut cands = Vec::new();
        for &identity in ids {
            cands.push(Key::l3_only(identity, key.direction));
            if key.nexthdr != 0 {
                for prefix in 0..=key.port.prefix {
                    let port = MaskedPort::new(key.port.port, 16 - u32::from(prefix));
                    cands.push(Key {
                        direction: key.direction,
                        identity,
                        nexthdr: key.nexthdr,
                        port,
                    });
                }
            }
        }
        cands
            .into_iter()
            .filter_map(move |k| self.entries.get_key_value(&k))
    }

    /// Every key `key` covers, itself included.
    fn covered(&self, key: &Key) -> Vec<Key> {
        if key.identity == Identity::ANY || key.nexthdr == 0 {
            return self
                .entries
                .keys()
                .filter(|k| key.covers(k))
                .copied()
                .collect();
        }
        // Same identity and protocol: the port blocks inside key's block form one range.
        let lo = Key {
            port: MaskedPort {
                port: key.port.port,
                prefix: 0,
            },
            ..*key
        };
        let hi = Key {
            port: MaskedPort {
                port: key.port.end(),
                prefix: 16,
            },
            ..*key
        };
        self.entries
            .range(lo..=hi)
            .map(|(k, _)| *k)
            .filter(|k| key.covers(k))
            .collect()
    }

    /// Inserts an entry as `insertWithChanges` / `insertWithPasses` do for rules of one tier
    /// (`pkg/policy/mapstate.go`, spec §4.3), so that the longest-prefix match of the datapath
    /// always finds the highest precedence for an identity:
    /// - the entry is skipped under a covering key (itself included) of higher precedence, and
    ///   a deny also under a different covering deny;
    /// - otherwise it deletes the keys it covers with a lower precedence (and the other
    ///   denies it covers), and is added, or merged with an allow of the same key (the
    ///   higher precedence and its proxy port win, origins are united: Cilium merges the
    ///   rules of one selector and port before the map state, `mergePortProto`, and verdict
    ///   keeps the synthetic allows' reasons next to a rule's for `explain`).
    ///
    /// Precedences: deny > redirect (HTTP 0x9a, DNS 0x86 in the low byte) > plain allow >
    /// the synthetic lowest-tier allows.
    ///
    /// Auth (`authPreferredInsert`): an allow with an explicit auth type under a covering
    /// allow of the same identity and a higher precedence (a redirect) is kept with that
    /// entry's proxy port and precedence, and such an allow under a new covering allow of a
    /// higher precedence is kept the same way instead of being pruned. Derived auth types
    /// are filled in afterwards ([`MapState::derive_auth`]).
    pub fn insert(&mut self, key: Key, mut entry: MapEntry) {
        if !entry.deny && entry.auth & POLICY_ENTRY_EXPLICIT_AUTH != 0 {
            let over = self
                .covering(&key)
                .filter(|(k, e)| {
                    **k != key
                        && k.identity == key.identity
                        && !e.deny
                        && e.precedence > entry.precedence
                })
                .max_by_key(|(k, _)| k.lpm_prefix_length())
                .map(|(_, e)| (e.proxy_port, e.precedence));
            if let Some((port, precedence)) = over {
                entry.proxy_port = port;
                entry.precedence = precedence;
            }
        }
        let skip = self.covering(&key).any(|(k, e)| {
            if *k == key {
                e.deny && !entry.deny
            } else {
                e.precedence > entry.precedence || (entry.deny && e.deny)
            }
        });
        if skip {
            return;
        }
        for k in self.covered(&key) {
            if k == key {
                continue;
            }
            let Some(v) = self.entries.get(&k) else {
                continue;
            };
            if !v.deny
                && !entry.deny
                && v.precedence < entry.precedence
                && k.identity == key.identity
                && v.auth & POLICY_ENTRY_EXPLICIT_AUTH != 0
            {
                if let Some(v) = self.entries.get_mut(&k) {
                    v.proxy_port = entry.proxy_port;
                    v.precedence = entry.precedence;
                }
                continue;
            }
            if v.precedence < entry.precedence || (v.deny && entry.deny) {
                self.entries.remove(&k);
            }
        }
        match self.entries.get_mut(&key) {
            Some(e) if e.deny == entry.deny => e.merge(entry),
            _ => {
                self.entries.insert(key, entry);
            }
        }
    }

    /// Derived auth types (`authPreferredInsert`, `pkg/policy/mapstate.go`): an allow without
    /// an explicit auth type takes the explicit type of the most specific allow of the same
    /// identity whose key strictly covers its own (another port/protocol) and whose
    /// precedence level is at least its own (`Precedence.AllowPrecedence`, the proxy byte
    /// ignored); the explicit flag stays clear. `only`: just that identity's keys (an
    /// identity's keys derive only from keys of the same identity). Cilium computes the same
    /// while inserting, in whatever order; here it is one pass after them.
    pub fn derive_auth(&mut self, only: Option<Identity>) {
        let keys: Vec<Key> = match only {
            Some(id) => self
                .identity_entries(id)
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
            None => self.entries.keys().copied().collect(),
        };
        let level = |p: u32| p & !0xff;
        for k in keys {
            let Some(e) = self.entries.get(&k) else {
                continue;
            };
            if e.deny || e.auth & POLICY_ENTRY_EXPLICIT_AUTH != 0 {
                continue;
            }
            let derived = self
                .covering(&k)
                .filter(|(ck, ce)| {
                    **ck != k
                        && ck.identity == k.identity
                        && !ce.deny
                        && ce.auth & POLICY_ENTRY_EXPLICIT_AUTH != 0
                        && level(ce.precedence) >= level(e.precedence)
                })
                .max_by_key(|(ck, _)| ck.lpm_prefix_length())
                .map(|(_, ce)| ce.auth & 0x7f);
            if let (Some(a), Some(e)) = (derived, self.entries.get_mut(&k)) {
                e.auth = a;
            }
        }
    }

    /// The ABI form: one (key, entry) per map entry in endpoint `endpoint_id`'s slice.
    pub fn to_abi(&self, endpoint_id: u32) -> Vec<(EndpointPolicyKey, abi::PolicyEntry)> {
        self.entries
            .iter()
            .map(|(k, e)| (k.to_abi(endpoint_id), e.to_abi(k)))
            .collect()
    }

    /// Rebuilds a map state from ABI pairs of one endpoint (rule origins are lost).
    pub fn from_abi<'a>(
        endpoint_id: u32,
        pairs: impl IntoIterator<Item = &'a (EndpointPolicyKey, abi::PolicyEntry)>,
    ) -> MapState {
        let mut entries = BTreeMap::new();
        for (k, e) in pairs {
            if let Some((ep, key)) = Key::from_abi(k) {
                if ep == endpoint_id {
                    entries.insert(key, MapEntry::from_abi(e));
                }
            }
        }
        MapState { entries }
    }

    /// The rows `cilium-dbg bpf policy get` would print, in its order; `labels` gives an
    /// identity's labels (`None` when it cannot be resolved: the row shows the number).
    pub fn rows(&self, labels: impl Fn(Identity) -> Option<Vec<String>>) -> Vec<MapStateRow> {
        let mut rows: Vec<MapStateRow> = self
            .entries
            .iter()
            .map(|(k, e)| MapStateRow {
                deny: e.deny,
                direction: k.direction,
                identity: k.identity,
                // IdentityGet(0) is reserved:unknown, which formatMap prints as ANY.
                labels: if k.identity == Identity::ANY {
                    Some(vec!["ANY".to_string()])
                } else {
                    labels(k.identity)
                },
                port_proto: k.port_proto(),
                proxy_port: e.proxy_port,
                auth_type: e.auth & 0x7f,
                prefix: k.lpm_prefix_length(),
                precedence: e.precedence,
                nexthdr: k.nexthdr,
                dport: k.port.port,
            })
            .collect();
        // PolicyEntriesDump.Less: denies first, then by direction (ingress first) and
        // identity; the key's protocol and port break the ties Less leaves to sort.Slice.
        rows.sort_by(|a, b| {
            (
                !a.deny,
                a.direction.bit(),
                a.identity,
                a.nexthdr,
                a.dport,
                a.prefix,
            )
                .cmp(&(
                    !b.deny,
                    b.direction.bit(),
                    b.identity,
                    b.nexthdr,
                    b.dport,
                    b.prefix,
                ))
        });
        rows
    }
}

/// One entry as `cilium-dbg bpf policy get` prints it (`cilium-dbg/cmd/bpf_policy_get.go`,
/// `formatMap`; Cilium 1.19 and main, which added the COOKIE column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapStateRow {
    pub deny: bool,
    pub direction: Direction,
    pub identity: Identity,
    /// The remote identity's labels, one per line (`Labels.GetPrintableModel`); `None` when
    /// they cannot be resolved.
    pub labels: Option<Vec<String>>,
    pub port_proto: String,
    pub proxy_port: u16,
    pub auth_type: u8,
    /// The entry's protocol + port prefix length (`Key.GetPrefixLen`, 0..=24).
    pub prefix: u8,
    pub precedence: u32,
    /// Raw key fields, for the JSON dump.
    pub nexthdr: u8,
    pub dport: u16,
}

/// `pkg/policy/trafficdirection` `String`.
fn direction_text(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    }
}

/// `policyTypes.AuthType.String`.
fn auth_text(a: u8) -> String {
    match a {
        0 => "disabled".to_string(),
        1 => "spire".to_string(),
        2 => "test-always-fail".to_string(),
        n => format!("Unknown-auth-type-{n}"),
    }
}

/// Go's `text/tabwriter` as `cilium-dbg` configures it (`NewWriter(w, 5, 0, 3, ' ', 0)`):
/// every tab-terminated cell is padded to its column's width (widest cell + 3, at least 5),
/// empty cells included; the cell after the last tab is printed as it is.
pub fn tabwriter(lines: &[Vec<String>], minwidth: usize, padding: usize) -> String {
    let cols = lines
        .iter()
        .map(|l| l.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for l in lines {
        for (i, c) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
            widths[i] = widths[i].max((c.chars().count() + padding).max(minwidth));
        }
    }
    let mut out = String::new();
    for l in lines {
        let n = l.len();
        for (i, c) in l.iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

impl MapStateRow {
    /// The header, with `IDENTITY` (`-n`) or `LABELS (source:key[=value])`.
    pub fn header(numeric: bool) -> [&'static str; 10] {
        [
            "POLICY",
            "DIRECTION",
            if numeric {
                "IDENTITY"
            } else {
                "LABELS (source:key[=value])"
            },
            "PORT/PROTO",
            "PROXY PORT",
            "AUTH TYPE",
            "BYTES",
            "PACKETS",
            "PREFIX",
            "COOKIE",
        ]
    }

    /// The row's lines as cells: one line, or with labels one line per label, the later ones
    /// holding only the label. verdict keeps no per-entry traffic counters and allocates no
    /// policy-log cookies: BYTES and PACKETS are `-` (not available), COOKIE 0.
    pub fn lines(&self, numeric: bool) -> Vec<Vec<String>> {
        let id = self.identity.0.to_string();
        let first_label = match (&self.labels, numeric) {
            (Some(l), false) if !l.is_empty() => l[0].clone(),
            _ => id,
        };
        let mut out = vec![vec![
            if self.deny { "Deny" } else { "Allow" }.to_string(),
            direction_text(self.direction).to_string(),
            first_label,
            self.port_proto.clone(),
            if self.proxy_port == 0 {
                "NONE".to_string()
            } else {
                self.proxy_port.to_string()
            },
            auth_text(self.auth_type),
            "-".to_string(),
            "-".to_string(),
            self.prefix.to_string(),
            "0".to_string(),
        ]];
        if let (Some(l), false) = (&self.labels, numeric) {
            for lbl in l.iter().skip(1) {
                let mut line = vec![String::new(); 10];
                line[2] = lbl.clone();
                out.push(line);
            }
        }
        out
    }

    /// The table as `cilium-dbg bpf policy get [-n]` prints it.
    pub fn table(rows: &[MapStateRow], numeric: bool) -> String {
        let mut lines = vec![MapStateRow::header(numeric)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()];
        for r in rows {
            lines.extend(r.lines(numeric));
        }
        let mut s = tabwriter(&lines, 5, 3);
        if rows.is_empty() {
            s.push_str("Policy stats empty. Perhaps the policy enforcement is disabled?\n");
        }
        s
    }

    /// One entry as `cilium-dbg bpf policy get -o json` prints it: Go's encoding/json of
    /// `PolicyEntryDump` (the embedded `PolicyEntry` and `StatsValue` fields, then `Key`), raw
    /// map fields with ports in network byte order and `StatNotAvailable` counters.
    pub fn json(&self) -> serde_json::Value {
        let net = |p: u16| u16::from_ne_bytes(p.to_be_bytes());
        let flags = u8::from(self.deny) | (self.prefix << 3);
        serde_json::json!({
            "ProxyPortNetwork": net(self.proxy_port),
            "Flags": flags,
            "AuthRequirement": self.auth_type,
            "Precedence": self.precedence,
            "Cookie": 0,
            "Packets": u64::MAX,
            "Bytes": u64::MAX,
            "Key": {
                "Prefixlen": POLICY_STATIC_PREFIX_BITS + u32::from(self.prefix),
                "Identity": self.identity.0,
                "TrafficDirection": self.direction.bit(),
                "Nexthdr": self.nexthdr,
                "DestPortNetwork": net(self.dport),
            }
        })
    }
}

/// Whether a direction is enforced, and by which rules (spec §4.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionPolicy {
    /// Some rule selects the endpoint in this direction: policy (and verdict events) on.
    pub enabled: bool,
    /// Some selecting rule makes the direction default-deny.
    pub default_deny: bool,
    /// The selecting rules.
    pub rules: Vec<RuleOrigin>,
}

/// Named container ports of one identity's pods: (name, protocol) → ports.
pub type NamedPorts = BTreeMap<(String, Protocol), BTreeSet<u16>>;

/// Everything key generation needs for one endpoint.
#[derive(Clone, Copy)]
pub struct PolicyInput<'a> {
    /// The policy entries selecting the endpoint (both directions, any order).
    pub entries: &'a [&'a PolicyEntry],
    pub selectors: &'a SelectorCache,
    /// The endpoint's own container ports (ingress named ports).
    pub own_ports: &'a [ContainerPort],
    /// Named ports per identity (egress named ports, resolved per destination identity).
    pub peer_named_ports: &'a BTreeMap<Identity, NamedPorts>,
}

/// The remote identities an entry's peers name.
enum PeerIds {
    /// The wildcard selector or no peer field: identity 0 (one key, not an enumeration,
    /// spec §4.3).
    Wildcard,
    Ids(Vec<Identity>),
}

/// The identities of an entry's peers; with `only`, just whether `only` is among them.
fn peer_ids(e: &PolicyEntry, sc: &SelectorCache, only: Option<Identity>) -> Option<PeerIds> {
    match &e.peers {
        Peers::Nothing => None,
        Peers::Unrestricted => (!e.ports.is_empty()).then_some(PeerIds::Wildcard),
        Peers::Selectors(sels) => {
            if sels.iter().any(|s| s.is_wildcard()) {
                return Some(PeerIds::Wildcard);
            }
            let selected = |s: &Selector| sc.selections(s);
            match only {
                Some(x) => {
                    let hit = sels
                        .iter()
                        .any(|s| selected(s).is_some_and(|set| set.contains(&x)));
                    Some(PeerIds::Ids(if hit { vec![x] } else { vec![] }))
                }
                None => {
                    let mut ids = BTreeSet::new();
                    for s in sels {
                        if let Some(set) = selected(s) {
                            ids.extend(set.iter().copied());
                        }
                    }
                    Some(PeerIds::Ids(ids.into_iter().collect()))
                }
            }
        }
    }
}

/// The L7 rules the proxy holds for an endpoint, a remote identity and a port
/// (`pkg/envoy` NPDS `PortNetworkPolicyRule`s, the DNS proxy's allow list): one per allow
/// entry that selects the remote on that port, with that port filter's L7 rules (`None`:
/// none, everything passes), restricted to `parser`'s rules. Peers are resolved through the
/// selector cache, named ports as the keys resolve them.
pub fn proxy_rules(
    input: &PolicyInput<'_>,
    dir: Direction,
    remote: Identity,
    protocol: Protocol,
    dport: u16,
    parser: L7Parser,
) -> Vec<crate::proxy::ProxyRule> {
    let mut out = Vec::new();
    for e in input.entries {
        if e.direction != dir || e.verdict != RuleVerdict::Allow || !e.has_filter() {
            continue;
        }
        let selected = match peer_ids(e, input.selectors, Some(remote)) {
            None => false,
            Some(PeerIds::Wildcard) => true,
            Some(PeerIds::Ids(ids)) => ids.contains(&remote),
        };
        if !selected {
            continue;
        }
        let others = crate::proxy::other_filters_reach(parser);
        if e.ports.is_empty() {
            if others {
                out.push(crate::proxy::ProxyRule {
                    l7: None,
                    origin: e.origin.clone(),
                });
            }
            continue;
        }
        for pp in &e.ports {
            if pp.protocol != protocol {
                continue;
            }
            let hit = match &pp.port {
                PortSpec::Named(name) => match dir {
                    Direction::Ingress => input
                        .own_ports
                        .iter()
                        .any(|cp| cp.name == *name && cp.protocol == protocol && cp.port == dport),
                    Direction::Egress => input
                        .peer_named_ports
                        .get(&remote)
                        .and_then(|n| n.get(&(name.clone(), protocol)))
                        .is_some_and(|ports| ports.contains(&dport)),
                },
                range => range.contains(dport) && (others || range.is_single(dport)),
            };
            if !hit {
                continue;
            }
            match e.l7_for(pp) {
                Some(l7) if l7.parser != parser => {}
                l7 => out.push(crate::proxy::ProxyRule {
                    l7: l7.cloned(),
                    origin: e.origin.clone(),
                }),
            }
        }
    }
    out
}

/// Enforcement per direction from the entries selecting an endpoint (spec §4.1).
pub fn direction_policies(entries: &[&PolicyEntry]) -> (DirectionPolicy, DirectionPolicy) {
    let mut dirs = [DirectionPolicy::default(), DirectionPolicy::default()];
    for e in entries {
        let d = &mut dirs[usize::from(e.direction.bit())];
        d.enabled = true;
        d.default_deny |= e.default_deny;
        d.rules.push(e.origin.clone());
    }
    let [ingress, egress] = dirs;
    (ingress, egress)
}

/// The synthetic entries of spec §4.1 (keys of identity 0 and of the host, identity 1).
fn add_synthetic(ms: &mut MapState, ingress: &DirectionPolicy, egress: &DirectionPolicy) {
    add_synthetic_for(ms, ingress, egress, true);
}

/// [`add_synthetic`]; `allow_localhost` false for the host endpoint, which gets no
/// localhost allow (`pkg/policy/repository.go`: only "if the policy subject is not the
/// host").
fn add_synthetic_for(
    ms: &mut MapState,
    ingress: &DirectionPolicy,
    egress: &DirectionPolicy,
    allow_localhost: bool,
) {
    for (dir, d) in [(Direction::Ingress, ingress), (Direction::Egress, egress)] {
        if !d.enabled {
            ms.insert(
                Key::l3_only(Identity::ANY, dir),
                MapEntry::allow(PRECEDENCE_ALLOW_LOWEST)
                    .with_synthetic(Synthetic::AllowAllNotEnforced),
            );
        } else if !d.default_deny {
            ms.insert(
                Key::l3_only(Identity::ANY, dir),
                MapEntry::allow(PRECEDENCE_ALLOW_LOWEST)
                    .with_synthetic(Synthetic::AllowAllNoDefaultDeny),
            );
        } else if dir == Direction::Ingress && allow_localhost {
            ms.insert(
                Key::l3_only(Identity::HOST, dir),
                MapEntry::allow(PRECEDENCE_ALLOW_LOWEST).with_synthetic(Synthetic::AllowLocalHost),
            );
        }
    }
}

/// Computes an endpoint's map state and per-direction enforcement (spec §4.1–§4.3).
pub fn resolve(input: &PolicyInput<'_>) -> (MapState, DirectionPolicy, DirectionPolicy) {
    let mut ms = MapState::new();
    let (ingress, egress) = direction_policies(input.entries);
    for e in input.entries {
        add_entry_keys(&mut ms, e, input, None);
    }
    add_synthetic(&mut ms, &ingress, &egress);
    ms.derive_auth(None);
    (ms, ingress, egress)
}

/// [`resolve`] for a host endpoint (host firewall): the same map state, without the
/// localhost allow.
pub fn resolve_host(input: &PolicyInput<'_>) -> (MapState, DirectionPolicy, DirectionPolicy) {
    let mut ms = MapState::new();
    let (ingress, egress) = direction_policies(input.entries);
    for e in input.entries {
        add_entry_keys(&mut ms, e, input, None);
    }
    add_synthetic_for(&mut ms, &ingress, &egress, false);
    (ms, ingress, egress)
}

/// The keys of one remote identity before and after [`resolve_identity`].
pub type IdentityKeys = (Vec<(Key, MapEntry)>, Vec<(Key, MapEntry)>);

/// Recomputes only the keys of remote identity `id` in `ms`, after `id` appeared in or
/// vanished from some selections, or its named ports changed (Cilium applies such
/// selector-cache updates as incremental map changes). Keys of one identity interact only
/// with keys of that identity and of identity 0, which do not depend on `id`, so the result
/// equals a full [`resolve`]. Returns the keys of `id` before and after.
pub fn resolve_identity(input: &PolicyInput<'_>, id: Identity, ms: &mut MapState) -> IdentityKeys {
    let before = ms.remove_identity(id);
    if id != Identity::ANY {
        for e in input.entries {
            add_entry_keys(ms, e, input, Some(id));
        }
        if id == Identity::HOST {
            let (ingress, egress) = direction_policies(input.entries);
            add_synthetic(ms, &ingress, &egress);
        }
        ms.derive_auth(Some(id));
    }
    let after = ms.identity_entries(id);
    (before, after)
}

/// Adds the keys of one policy entry; with `only`, just the keys of that remote identity.
fn add_entry_keys(
    ms: &mut MapState,
    e: &PolicyEntry,
    input: &PolicyInput<'_>,
    only: Option<Identity>,
) {
    if !e.has_filter() {
        return;
    }
    let Some(peers) = peer_ids(e, input.selectors, only) else {
        return;
    };
    let entry = match e.verdict {
        RuleVerdict::Deny => MapEntry::deny(),
        // `PerSelectorPolicy.getAuthRequirement`: the type, with the explicit bit when the
        // rule names a mode (even `disabled`).
        RuleVerdict::Allow => MapEntry {
            auth: e
                .auth
                .map_or(0, |a| a.number() | POLICY_ENTRY_EXPLICIT_AUTH),
            ..MapEntry::allow(PRECEDENCE_ALLOW)
        },
    }
    .with_origin(&e.origin);
    let ids: &[Identity] = match (&peers, only) {
        (PeerIds::Wildcard, None) => &[Identity::ANY],
        (PeerIds::Wildcard, Some(_)) => &[],
        (PeerIds::Ids(ids), _) => ids,
    };
    if e.ports.is_empty() {
        for &id in ids {
            ms.insert(Key::l3_only(id, e.direction), entry.clone());
        }
        return;
    }
    for pp in &e.ports {
        let entry = match e.l7_for(pp) {
            Some(l7) => {
                let mut r = MapEntry::redirect(l7.parser, ProxyPorts::port(l7.parser, e.direction));
                r.origins = entry.origins.clone();
                r.auth = entry.auth;
                r
            }
            None => entry.clone(),
        };
        match &pp.port {
            PortSpec::Range { start, end } => {
                for mp in port_range_to_masked_ports(*start, *end) {
                    for &id in ids {
                        ms.insert(Key::l4(id, e.direction, pp.protocol, mp), entry.clone());
                    }
                }
            }
            PortSpec::Named(name) => match e.direction {
                // Ingress: the endpoint's own container port; unknown name → no key.
                Direction::Ingress => {
                    let ports: BTreeSet<u16> = input
                        .own_ports
                        .iter()
                        .filter(|cp| cp.name == *name && cp.protocol == pp.protocol)
                        .map(|cp| cp.port)
                        .collect();
                    for port in ports {
                        for &id in ids {
                            ms.insert(
                                Key::l4(id, e.direction, pp.protocol, MaskedPort::exact(port)),
                                entry.clone(),
                            );
                        }
                    }
                }
                // Egress: per destination identity, from its pods' container ports. A
                // wildcard peer enumerates the identities that have such ports.
                Direction::Egress => {
                    let lookup = (name.clone(), pp.protocol);
                    let dests: Vec<(&Identity, &NamedPorts)> = match (&peers, only) {
                        (PeerIds::Wildcard, None) => input.peer_named_ports.iter().collect(),
                        (PeerIds::Wildcard, Some(x)) => input
                            .peer_named_ports
                            .get_key_value(&x)
                            .into_iter()
                            .collect(),
                        (PeerIds::Ids(ids), _) => ids
                            .iter()
                            .filter_map(|id| input.peer_named_ports.get_key_value(id))
                            .collect(),
                    };
                    for (id, named) in dests {
                        for &port in named.get(&lookup).into_iter().flatten() {
                            ms.insert(
                                Key::l4(*id, e.direction, pp.protocol, MaskedPort::exact(port)),
                                entry.clone(),
                            );
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyKind, PolicyRef};

    fn origin(n: usize) -> RuleOrigin {
        RuleOrigin {
            policy: PolicyRef {
                kind: PolicyKind::CiliumNetworkPolicy,
                namespace: Some("x".into()),
                name: format!("p{n}"),
            },
            rule: 0,
            section: "ingress",
            item: n,
            log: None,
        }
    }
    const IN: Direction = Direction::Ingress;
    fn tcp(id: u32, port: u16, prefix: u8) -> Key {
        Key::l4(Identity(id), IN, Protocol::Tcp, MaskedPort { port, prefix })
    }

    #[test]
    fn covers_follows_key_covers() {
        let any = Key::l3_only(Identity::ANY, IN);
        let x = Key::l3_only(Identity(300), IN);
        assert!(any.covers(&x));
        assert!(x.covers(&tcp(300, 80, 16)));
        assert!(!x.covers(&tcp(301, 80, 16)));
        assert!(tcp(0, 80, 14).covers(&tcp(300, 81, 16)));
        assert!(!tcp(300, 80, 16).covers(&tcp(300, 80, 14)));
        assert!(!tcp(300, 80, 16).covers(&x));
        let egress = Key::l3_only(Identity::ANY, Direction::Egress);
        assert!(!egress.covers(&x));
    }

    // spec §4.3: a deny deletes the allows it covers; an allow under a deny is skipped;
    // order does not matter.
    #[test]
    fn deny_prunes_covered_allows_in_any_order() {
        let deny = (
            Key::l3_only(Identity(300), IN),
            MapEntry::deny().with_origin(&origin(1)),
        );
        let allows = [
            (
                tcp(300, 80, 16),
                MapEntry::allow(PRECEDENCE_ALLOW).with_origin(&origin(2)),
            ),
            (
                tcp(300, 80, 14),
                MapEntry::allow(PRECEDENCE_ALLOW).with_origin(&origin(3)),
            ),
            (
                tcp(0, 80, 16),
                MapEntry::allow(PRECEDENCE_ALLOW).with_origin(&origin(4)),
            ),
        ];
        let mut a = MapState::new();
        a.insert(deny.0, deny.1.clone());
        for (k, e) in allows.iter().cloned() {
            a.insert(k, e);
        }
        let mut b = MapState::new();
        for (k, e) in allows.iter().cloned() {
            b.insert(k, e);
        }
        b.insert(deny.0, deny.1.clone());
        assert_eq!(a, b);
        let keys: Vec<Key> = a.iter().map(|(k, _)| *k).collect();
        // (0, TCP/80) survives: a deny of identity 300 does not cover identity 0.
        assert_eq!(keys, vec![tcp(0, 80, 16), Key::l3_only(Identity(300), IN)]);
    }

    #[test]
    fn wildcard_deny_prunes_every_identity_and_narrower_denies() {
        let mut ms = MapState::new();
        ms.insert(tcp(300, 80, 16), MapEntry::deny());
        ms.insert(tcp(301, 81, 16), MapEntry::allow(PRECEDENCE_ALLOW));
        ms.insert(
            Key::l3_only(Identity(302), IN),
            MapEntry::allow(PRECEDENCE_ALLOW),
        );
        ms.insert(tcp(0, 80, 14), MapEntry::deny());
        let keys: Vec<Key> = ms.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![tcp(0, 80, 14), Key::l3_only(Identity(302), IN)]);
        // A deny under a covering deny is skipped.
        ms.insert(tcp(0, 81, 16), MapEntry::deny());
        assert_eq!(ms.len(), 2);
    }

    #[test]
    fn allows_merge_origins_and_precedence() {
        let mut ms = MapState::new();
        let k = Key::l3_only(Identity::HOST, IN);
        ms.insert(
            k,
            MapEntry::allow(PRECEDENCE_ALLOW_LOWEST).with_synthetic(Synthetic::AllowLocalHost),
        );
        ms.insert(k, MapEntry::allow(PRECEDENCE_ALLOW).with_origin(&origin(1)));
        let e = ms.get(&k).unwrap();
        assert_eq!(e.precedence, PRECEDENCE_ALLOW);
        assert_eq!(e.origins.len(), 1);
        assert_eq!(e.synthetic.len(), 1);
    }

    #[test]
    fn abi_round_trip_and_prefixes() {
        let mut ms = MapState::new();
        ms.insert(tcp(300, 80, 14), MapEntry::allow(PRECEDENCE_ALLOW));
        ms.insert(Key::l3_only(Identity(301), IN), MapEntry::deny());
        ms.insert(
            Key::l4(
                Identity::ANY,
                Direction::Egress,
                Protocol::Udp,
                MaskedPort::WILDCARD,
            ),
            MapEntry::allow(PRECEDENCE_ALLOW),
        );
        let abi = ms.to_abi(7);
        let k = abi.iter().find(|(k, _)| k.sec_label == 300).unwrap();
        // spec §7 #15: (X, TCP, 80/14) → lpm_prefix_length 22; key prefix 32 + 40 + 22.
        assert_eq!(k.1.lpm_prefix_length(), 22);
        assert_eq!(k.0.prefixlen, 32 + 40 + 22);
        assert_eq!(k.0.dport, [0, 80]);
        let deny = abi.iter().find(|(k, _)| k.sec_label == 301).unwrap();
        assert!(deny.1.is_deny());
        assert_eq!(deny.1.precedence, PRECEDENCE_DENY);
        assert_eq!(deny.0.prefixlen, 72);
        let back = MapState::from_abi(7, &abi);
        assert_eq!(
            back.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ms.iter().map(|(k, _)| *k).collect::<Vec<_>>()
        );
    }

    #[test]
    fn rows_print_like_cilium_dbg() {
        let mut ms = MapState::new();
        ms.insert(tcp(300, 80, 14), MapEntry::allow(PRECEDENCE_ALLOW));
        ms.insert(tcp(300, 443, 16), MapEntry::allow(PRECEDENCE_ALLOW));
        ms.insert(
            Key::l4(Identity::ANY, IN, Protocol::Tcp, MaskedPort::WILDCARD),
            MapEntry::allow(PRECEDENCE_ALLOW),
        );
        ms.insert(Key::l3_only(Identity(301), IN), MapEntry::deny());
        let rows = ms.rows(|id| Some(vec![format!("k8s:id={id}"), "k8s:x=y".into()]));
        // PolicyEntriesDump.Less: denies first, then direction and identity.
        let first: Vec<Vec<String>> = rows.iter().map(|r| r.lines(true)[0].clone()).collect();
        assert_eq!(first[0][0], "Deny");
        assert_eq!(first[0][2], "301");
        assert_eq!(first[0][3], "ANY");
        assert_eq!(first[1][2], "0");
        assert_eq!(first[1][3], "TCP");
        assert_eq!(first[1][8], "8");
        assert_eq!(first[2][3], "80-83/TCP");
        assert_eq!(first[2][8], "22");
        assert_eq!(first[2][4], "NONE");
        assert_eq!(first[2][5], "disabled");
        assert_eq!(first[2][6], "-");
        assert_eq!(first[2][9], "0");
        assert_eq!(first[3][3], "443/TCP");
        // Labels one per line; the ANY identity as ANY (reserved:unknown).
        assert_eq!(rows[0].lines(false).len(), 2);
        assert_eq!(rows[1].lines(false)[0][2], "ANY");
        let t = MapStateRow::table(&rows, true);
        assert_eq!(
            t.lines().next().unwrap(),
            "POLICY   DIRECTION   IDENTITY   PORT/PROTO   PROXY PORT   AUTH TYPE   BYTES   PACKETS   PREFIX   COOKIE"
        );
        assert_eq!(
            t.lines().nth(3).unwrap(),
            "Allow    Ingress     300        80-83/TCP    NONE         disabled    -       -         22       0"
        );
        assert!(MapStateRow::table(&[], false)
            .ends_with("Policy stats empty. Perhaps the policy enforcement is disabled?\n"));
        assert_eq!(
            tcp(300, 80, 14).to_string(),
            "Identity=300,DestPort=80-83,Nexthdr=6,TrafficDirection=0"
        );
    }
}
