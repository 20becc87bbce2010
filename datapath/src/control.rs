//! The control plane: the one map writer that turns the model's realized state (ipcache,
//! local endpoints, per-endpoint policy map state, the virtual clock) into BPF map entries on
//! any [`Datapath`], writing only the entries that changed since its last write.
//!
//! Each node has its own datapath instance and its own view: its ipcache (a node's own
//! address is `host`, the others `remote-node`), its local endpoints, and their policy
//! entries. [`NodeMaps::from_model`] computes that view; [`MapWriter::apply`] diffs it against
//! what it wrote before and issues the updates and deletes, so replaying churn costs map writes
//! in proportion to the change.

use std::collections::BTreeMap;

use verdict_sim::abi::AsBytes;
use verdict_sim::model::Model;

use crate::abi::{self, EndpointInfo, EndpointKey, IpcacheKey, Pod, RemoteEndpointInfo};
use crate::backend::{Datapath, DatapathError};

/// Map contents by key bytes.
pub type MapContents = BTreeMap<Vec<u8>, Vec<u8>>;

/// The maps the control plane owns on one node, as they should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMaps {
    pub ipcache: MapContents,
    pub endpoints: MapContents,
    pub policy: MapContents,
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
            let key = IpcacheKey::new(net.addr(), net.prefix_len());
            let value = RemoteEndpointInfo {
                sec_identity: identity.0,
                ..Default::default()
            };
            out.ipcache
                .insert(key.as_bytes().to_vec(), value.as_bytes().to_vec());
        }
        let mut local = std::collections::BTreeSet::new();
        for ep in model.endpoints().filter(|e| e.node == node) {
            local.insert(ep.id);
            let mut flags = 0;
            if ep.ingress.enabled {
                flags |= abi::EP_F_INGRESS_POLICY;
            }
            if ep.egress.enabled {
                flags |= abi::EP_F_EGRESS_POLICY;
            }
            let info = EndpointInfo {
                ep_id: ep.id,
                sec_identity: ep.identity.0,
                flags,
                pad: 0,
            };
            out.endpoints.insert(
                Pod::as_bytes(&EndpointKey::new(ep.ip)).to_vec(),
                Pod::as_bytes(&info).to_vec(),
            );
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

    /// Everything written since creation.
    pub fn total(&self) -> WriteStats {
        self.total
    }

    /// What the writer believes is in the maps.
    pub fn written(&self) -> &NodeMaps {
        &self.written
    }
}
