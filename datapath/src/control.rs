//! The control plane: the one map writer that turns the model's realized state (ipcache,
//! local endpoints, per-endpoint policy map state, the virtual clock) into BPF map entries on
//! any [`Datapath`], writing only the entries that changed since its last write.
//!
//! Each node has its own datapath instance and its own view: its ipcache (a node's own
//! address is `host`, the others `remote-node`), its local endpoints, and their policy
//! entries. Two ways in, one writer:
//!
//! - [`NodeMaps::from_model`] computes the node's whole view and [`MapWriter::apply`] diffs it
//!   against what the writer wrote before: the first write of a node, and the benches.
//! - [`NodeDelta::from_journal`] reads from the model only the items its change journal
//!   ([`verdict_sim::model::Journal`]) names, and [`MapWriter::apply_delta`] writes those
//!   whose value differs from what it wrote: every later control-plane change, so replaying
//!   churn costs work, not just map writes, in proportion to the change.
//!
//! Both leave the maps (and the writer's record of them) exactly equal to `from_model` of the
//! model they were computed from; `tests/incremental.rs` checks that on generated churn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use verdict_sim::abi::AsBytes;
use verdict_sim::identity::Identity;
use verdict_sim::model::{Endpoint, Journal, Model};

use crate::abi::{
    self, AuthInfo, AuthKey, EndpointInfo, EndpointKey, IpcacheKey, Pod, RemoteEndpointInfo,
};
use crate::backend::{Datapath, DatapathError};

/// Map contents by key bytes.
pub type MapContents = BTreeMap<Vec<u8>, Vec<u8>>;

/// Changes to one map by key bytes: `Some(value)` to hold, `None` to be absent.
pub type MapChanges = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The ipcache map key of the prefix `addr/prefix_len`.
fn ipcache_key(addr: IpAddr, prefix_len: u8) -> Vec<u8> {
    IpcacheKey::new(addr, prefix_len).as_bytes().to_vec()
}

#[cfg(test)]
fn ipcache_value(identity: Identity) -> Vec<u8> {
    let value = RemoteEndpointInfo {
        sec_identity: identity.0,
        ..Default::default()
    };
    value.as_bytes().to_vec()
}

/// The ipcache value of `net` on `node`: the identity and, for the address of a pod on
/// another node, that node as the tunnel endpoint (IPv4 nodes; Cilium's
/// `remote_endpoint_info.tunnel_endpoint`) and its node id (which Cilium looks up in
/// `cilium_node_map` by the tunnel endpoint, `lib/auth.h`'s `auth_lookup` reads it here).
/// `host`: the prefix is one address, `addr`.
fn ipcache_value_on(
    model: &Model,
    node: &str,
    addr: IpAddr,
    host: bool,
    identity: Identity,
) -> Vec<u8> {
    let mut value = RemoteEndpointInfo {
        sec_identity: identity.0,
        ..Default::default()
    };
    if host {
        let owner = model.endpoints_with_ip(addr).last().map(|e| e.node.clone());
        if let Some(owner) = owner.filter(|o| o != node) {
            value.node_id = model.node_id(node, &owner);
            if let Some(IpAddr::V4(v4)) = model.node_ip(&owner) {
                value.tunnel_endpoint = v4.octets();
            }
        }
    }
    value.as_bytes().to_vec()
}

fn auth_key(k: &verdict_sim::auth::AuthKey) -> Vec<u8> {
    let key = AuthKey {
        local_sec_label: k.local.0,
        remote_sec_label: k.remote.0,
        remote_node_id: k.remote_node_id,
        auth_type: k.auth_type.number(),
        pad: 0,
    };
    Pod::as_bytes(&key).to_vec()
}

fn auth_value(expiration: u64) -> Vec<u8> {
    Pod::as_bytes(&AuthInfo { expiration }).to_vec()
}

/// `node`'s auth map as the model's auth table has it.
fn auth_entries(model: &Model, node: &str) -> MapContents {
    model
        .auth()
        .entries(node)
        .map(|(k, exp)| (auth_key(k), auth_value(exp)))
        .collect()
}

fn endpoint_key(ip: IpAddr) -> Vec<u8> {
    Pod::as_bytes(&EndpointKey::new(ip)).to_vec()
}

/// The endpoint map value of a local endpoint.
fn endpoint_value(ep: &Endpoint) -> Vec<u8> {
    let mut flags = 0;
    if ep.ingress.enabled {
        flags |= abi::EP_F_INGRESS_POLICY;
    }
    if ep.egress.enabled {
        flags |= abi::EP_F_EGRESS_POLICY;
    }
    if ep.host {
        flags |= abi::EP_F_HOST;
    }
    let info = EndpointInfo {
        ep_id: ep.id,
        sec_identity: ep.identity.0,
        flags,
        pad: 0,
    };
    Pod::as_bytes(&info).to_vec()
}

/// The maps the control plane owns on one node, as they should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMaps {
    pub ipcache: MapContents,
    pub endpoints: MapContents,
    pub policy: MapContents,
    /// `cilium_auth_map` (`lib/auth.h`).
    pub auth: MapContents,
    pub clock_ns: u64,
}

impl NodeMaps {
    /// The node's view of the model at virtual time `clock_ns`.
    pub fn from_model(model: &Model, node: &str, clock_ns: u64) -> NodeMaps {
        let mut out = NodeMaps {
            clock_ns,
            ..Default::default()
        };
        for (net, identity) in model.ipcache().entries(node) {
            out.ipcache.insert(
                ipcache_key(net.addr(), net.prefix_len()),
                ipcache_value_on(
                    model,
                    node,
                    net.addr(),
                    net.prefix_len() == net.max_prefix_len(),
                    identity,
                ),
            );
        }
        out.auth = auth_entries(model, node);
        let mut local = BTreeSet::new();
        for ep in model.endpoints().filter(|e| e.node == node) {
            local.insert(ep.id);
            out.endpoints
                .insert(endpoint_key(ep.ip), endpoint_value(ep));
        }
        for (key, entry) in model.policy_map_entries() {
            if local.contains(&u32::from_be_bytes(key.ep_id)) {
                out.policy.insert(
                    AsBytes::as_bytes(&key).to_vec(),
                    AsBytes::as_bytes(&entry).to_vec(),
                );
            }
        }
        out
    }

    /// Applies `delta` to these contents (the clock is left alone).
    pub fn patch(&mut self, delta: &NodeDelta) {
        fn patch_map(map: &mut MapContents, changes: &MapChanges) {
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        map.insert(k.clone(), v.clone());
                    }
                    None => {
                        map.remove(k);
                    }
                }
            }
        }
        patch_map(&mut self.ipcache, &delta.ipcache);
        patch_map(&mut self.endpoints, &delta.endpoints);
        patch_map(&mut self.policy, &delta.policy);
        patch_map(&mut self.auth, &delta.auth);
    }
}

/// The entries of one node's maps that a control-plane change may have touched, each with
/// the value the model now gives it (or `None`: the node must not have it). Applied to the
/// node's maps as they were [`NodeMaps::from_model`] before the change, it gives exactly
/// `from_model` after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeDelta {
    pub ipcache: MapChanges,
    pub endpoints: MapChanges,
    pub policy: MapChanges,
    pub auth: MapChanges,
}

impl NodeDelta {
    /// Node `node`'s entries for every item `journal` names, read from `model` as it is now
    /// (so the order of the changes inside the journal does not matter), filtered and shaped
    /// exactly as [`NodeMaps::from_model`] does: ipcache entries as `node` sees them (host vs
    /// remote-node), endpoint entries and policy entries of endpoints local to `node` only.
    pub fn from_journal(model: &Model, node: &str, journal: &Journal) -> NodeDelta {
        let mut out = NodeDelta::default();
        for net in &journal.ipcache {
            let value = model.ipcache().entry(net, node).map(|id| {
                let host = net.prefix_len() == net.max_prefix_len();
                ipcache_value_on(model, node, net.addr(), host, id)
            });
            out.ipcache
                .insert(ipcache_key(net.addr(), net.prefix_len()), value);
        }
        for ip in &journal.endpoints {
            // `from_model` inserts local endpoints in pod-name order, so the last one wins.
            let value = model
                .endpoints_with_ip(*ip)
                .filter(|e| e.node == node)
                .last()
                .map(endpoint_value);
            out.endpoints.insert(endpoint_key(*ip), value);
        }
        for (ep_id, key) in &journal.policy {
            // An endpoint id is never reused (the cluster allocates them in order), so the
            // entry belongs to this node exactly when that endpoint still exists here.
            let value = model
                .endpoint_by_id(*ep_id)
                .filter(|e| e.node == node)
                .and_then(|e| e.map.get(key))
                .map(|e| AsBytes::as_bytes(&e.to_abi(key)).to_vec());
            let k = key.to_abi(*ep_id);
            out.policy.insert(AsBytes::as_bytes(&k).to_vec(), value);
        }
        // Auth entries are only ever added or replaced (expired ones stay until Cilium's GC,
        // which the harness does not run), so the node's whole table is the change.
        if journal.auth.contains(node) {
            out.auth = auth_entries(model, node)
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect();
        }
        out
    }

    /// `later` applied after `self`, as one delta (the later value of a key wins).
    pub fn merge(&mut self, later: NodeDelta) {
        self.ipcache.extend(later.ipcache);
        self.endpoints.extend(later.endpoints);
        self.policy.extend(later.policy);
        self.auth.extend(later.auth);
    }

    pub fn is_empty(&self) -> bool {
        self.ipcache.is_empty()
            && self.endpoints.is_empty()
            && self.policy.is_empty()
            && self.auth.is_empty()
    }
}

/// What one [`MapWriter::apply`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub updates: u64,
    pub deletes: u64,
}

impl std::ops::AddAssign for WriteStats {
    fn add_assign(&mut self, o: WriteStats) {
        self.updates += o.updates;
        self.deletes += o.deletes;
    }
}

/// Writes [`NodeMaps`] to one datapath, incrementally.
#[derive(Debug, Default)]
pub struct MapWriter {
    written: NodeMaps,
    clock_written: bool,
    total: WriteStats,
}

fn diff(
    dp: &mut dyn Datapath,
    map: &str,
    old: &MapContents,
    new: &MapContents,
    stats: &mut WriteStats,
) -> Result<(), DatapathError> {
    // Deletes first: an LPM map never holds a stale, more specific entry next to a new one.
    for k in old.keys() {
        if !new.contains_key(k) {
            dp.map_delete(map, k)?;
            stats.deletes += 1;
        }
    }
    for (k, v) in new {
        if old.get(k) != Some(v) {
            dp.map_update(map, k, v)?;
            stats.updates += 1;
        }
    }
    Ok(())
}

/// Writes the entries of `changes` whose value differs from `written`, deletes those it
/// wrote and that must go, and keeps `written` equal to what the map holds.
fn apply_changes(
    dp: &mut dyn Datapath,
    map: &str,
    written: &mut MapContents,
    changes: &MapChanges,
    stats: &mut WriteStats,
) -> Result<(), DatapathError> {
    // Deletes first, as in `diff`.
    for (k, v) in changes {
        if v.is_none() && written.contains_key(k) {
            dp.map_delete(map, k)?;
            written.remove(k);
            stats.deletes += 1;
        }
    }
    for (k, v) in changes {
        if let Some(v) = v {
            if written.get(k) != Some(v) {
                dp.map_update(map, k, v)?;
                written.insert(k.clone(), v.clone());
                stats.updates += 1;
            }
        }
    }
    Ok(())
}

impl MapWriter {
    pub fn new() -> Self {
        MapWriter::default()
    }

    /// Brings the datapath's maps to `desired`, touching only what changed.
    pub fn apply(
        &mut self,
        dp: &mut dyn Datapath,
        desired: NodeMaps,
    ) -> Result<WriteStats, DatapathError> {
        let mut stats = WriteStats::default();
        diff(
            dp,
            abi::maps::IPCACHE,
            &self.written.ipcache,
            &desired.ipcache,
            &mut stats,
        )?;
        diff(
            dp,
            abi::maps::LXC,
            &self.written.endpoints,
            &desired.endpoints,
            &mut stats,
        )?;
        diff(
            dp,
            abi::maps::POLICY,
            &self.written.policy,
            &desired.policy,
            &mut stats,
        )?;
        diff(
            dp,
            abi::maps::AUTH,
            &self.written.auth,
            &desired.auth,
            &mut stats,
        )?;
        if !self.clock_written || self.written.clock_ns != desired.clock_ns {
            dp.map_update(
                abi::maps::CLOCK,
                &0u32.to_ne_bytes(),
                &desired.clock_ns.to_ne_bytes(),
            )?;
            stats.updates += 1;
            self.clock_written = true;
        }
        self.written = desired;
        self.total += stats;
        Ok(stats)
    }

    /// Writes the entries of `delta` that differ from what this writer wrote (a write of the
    /// same value is skipped; a delete of a key it never wrote is not issued), maps in the
    /// order [`MapWriter::apply`] uses, deletes before updates within a map. The clock is
    /// left alone ([`MapWriter::set_clock`]).
    pub fn apply_delta(
        &mut self,
        dp: &mut dyn Datapath,
        delta: &NodeDelta,
    ) -> Result<WriteStats, DatapathError> {
        let mut stats = WriteStats::default();
        let result = (|| {
            apply_changes(
                dp,
                abi::maps::IPCACHE,
                &mut self.written.ipcache,
                &delta.ipcache,
                &mut stats,
            )?;
            apply_changes(
                dp,
                abi::maps::LXC,
                &mut self.written.endpoints,
                &delta.endpoints,
                &mut stats,
            )?;
            apply_changes(
                dp,
                abi::maps::POLICY,
                &mut self.written.policy,
                &delta.policy,
                &mut stats,
            )?;
            apply_changes(
                dp,
                abi::maps::AUTH,
                &mut self.written.auth,
                &delta.auth,
                &mut stats,
            )
        })();
        // What was written before a failure is written: count it either way.
        self.total += stats;
        result.map(|()| stats)
    }

    /// Writes the virtual clock when it differs from what this writer last wrote.
    pub fn set_clock(
        &mut self,
        dp: &mut dyn Datapath,
        clock_ns: u64,
    ) -> Result<WriteStats, DatapathError> {
        let mut stats = WriteStats::default();
        if !self.clock_written || self.written.clock_ns != clock_ns {
            dp.map_update(
                abi::maps::CLOCK,
                &0u32.to_ne_bytes(),
                &clock_ns.to_ne_bytes(),
            )?;
            stats.updates += 1;
            self.clock_written = true;
            self.written.clock_ns = clock_ns;
        }
        self.total += stats;
        Ok(stats)
    }

    /// Everything written since creation.
    pub fn total(&self) -> WriteStats {
        self.total
    }

    /// What the writer believes is in the maps.
    pub fn written(&self) -> &NodeMaps {
        &self.written
    }
}

#[cfg(test)]
mod tests {
    //! The writer's bookkeeping on a real map set (the emulator). That incremental updates
    //! give exactly the full recomputation on generated churn is `tests/incremental.rs` of the
    //! `verdict` crate.

    use super::*;
    use crate::emu::{Emulator, ExecMode};
    use crate::object::Object;

    fn datapath() -> Emulator {
        let obj = Object::parse(crate::VERDICT_OBJECT_NAME, crate::VERDICT_OBJECT).unwrap();
        Emulator::new(&obj, ExecMode::Interpreter).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dumped(dp: &dyn Datapath, map: &str) -> MapContents {
        dp.map_dump(map).unwrap().into_iter().collect()
    }

    #[test]
    fn apply_delta_writes_only_what_differs_and_deletes_only_what_it_wrote() {
        let mut dp = datapath();
        let mut w = MapWriter::new();
        let a = ipcache_key(ip("10.0.0.1"), 32);
        let b = ipcache_key(ip("10.0.0.2"), 32);
        let c = ipcache_key(ip("192.0.2.0"), 24);
        let mut full = NodeMaps {
            clock_ns: 5,
            ..Default::default()
        };
        full.ipcache.insert(a.clone(), ipcache_value(Identity(256)));
        // The first write: one entry and the clock.
        let s = w.apply(&mut dp, full.clone()).unwrap();
        assert_eq!((s.updates, s.deletes), (2, 0));

        // `a` unchanged (skipped), `b` new, `c` absent and never written (no delete issued).
        let mut d = NodeDelta::default();
        d.ipcache
            .insert(a.clone(), Some(ipcache_value(Identity(256))));
        d.ipcache
            .insert(b.clone(), Some(ipcache_value(Identity(257))));
        d.ipcache.insert(c.clone(), None);
        let s = w.apply_delta(&mut dp, &d).unwrap();
        assert_eq!((s.updates, s.deletes), (1, 0));
        full.patch(&d);
        assert_eq!(w.written(), &full);
        assert_eq!(dumped(&dp, abi::maps::IPCACHE), full.ipcache);

        // Two deltas merged: the later value wins; `a` goes, `b` changes.
        let mut d1 = NodeDelta::default();
        d1.ipcache
            .insert(b.clone(), Some(ipcache_value(Identity(300))));
        let mut d2 = NodeDelta::default();
        d2.ipcache.insert(a.clone(), None);
        d2.ipcache
            .insert(b.clone(), Some(ipcache_value(Identity(258))));
        d1.merge(d2);
        let s = w.apply_delta(&mut dp, &d1).unwrap();
        assert_eq!((s.updates, s.deletes), (1, 1));
        full.patch(&d1);
        assert_eq!(full.ipcache.len(), 1);
        assert_eq!(w.written(), &full);
        assert_eq!(dumped(&dp, abi::maps::IPCACHE), full.ipcache);

        // The clock is written only when it moves.
        assert_eq!(w.set_clock(&mut dp, 5).unwrap().updates, 0);
        assert_eq!(w.set_clock(&mut dp, 6).unwrap().updates, 1);
        assert_eq!(
            w.total(),
            WriteStats {
                updates: 5,
                deletes: 1
            }
        );
    }
}
