//! Mutual authentication state: what each node's auth map (`cilium_auth_map`,
//! `bpf/lib/auth.h`) holds, as Cilium's auth manager (`pkg/auth`) writes it.
//!
//! A policy entry with an auth type makes the datapath drop with
//! DROP_POLICY_AUTH_REQUIRED (189) unless the node's auth map holds an unexpired entry for
//! (local identity, remote identity, remote node id, auth type) (`auth_lookup`). The drop
//! signals the agent, whose auth manager authenticates the pair in the background
//! (`AuthManager.handleAuthRequest` → `authenticate`) and writes the entry with the
//! expiration of the certificates it used (`mutual_authhandler.go`: the earlier `NotAfter`
//! of the two). The `test-always-fail` handler never succeeds
//! (`always_fail_authhandler.go`), and pairs with a reserved identity are never authenticated
//! ("reserved identities are not compatible with authentication", `handleAuthRequest`).
//!
//! verdict has no SPIRE server and no background work, so a scenario says when a handshake
//! completes: the `authenticate` step ([`AuthTable::authenticate`]) writes the entries both
//! sides' agents would write. Entries expire on the virtual clock; the expiration is kept in
//! Cilium's utime unit (ns / 512, `bpf/lib/utime.h`), and the datapath compares
//! `now < expiration` as `auth_lookup` does.

use std::collections::BTreeMap;

use crate::cluster::{Cluster, PodName};
use crate::identity::Identity;
use crate::policy::AuthType;

/// `UTIME_SHIFT` (`bpf/lib/utime.h`): the auth map's time unit is 2^9 ns.
pub const UTIME_SHIFT: u32 = 9;

/// The lifetime of an authentication when the step names none: SPIRE's default X.509 SVID
/// TTL (`default_x509_svid_ttl`, 1h, SPIRE server configuration reference), which Cilium's
/// chart does not change; the auth manager keeps the certificates' expiration.
pub const DEFAULT_AUTH_LIFETIME_NS: u64 = 3_600 * 1_000_000_000;

/// `struct auth_key` (`bpf/lib/common.h`) without its padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthKey {
    pub local: Identity,
    pub remote: Identity,
    /// 0 for the local node (`auth_lookup`: a remote node IP of 0.0.0.0).
    pub remote_node_id: u16,
    pub auth_type: AuthType,
}

/// Converts virtual nanoseconds to utime (`utime_get_time`: the clock shifted by
/// [`UTIME_SHIFT`]; the world starts at the epoch, so the offset is 0).
pub fn utime(ns: u64) -> u64 {
    ns >> UTIME_SHIFT
}

/// The node id a node gives another (`pkg/datapath/linux/node_ids.go`): 0 for itself, and,
/// for the others, their position in the name order of the cluster's nodes plus one. Cilium
/// allocates the ids from 1 as it learns of the nodes (`allocateIDForNode`); verdict's agents
/// learn of them in name order.
pub fn node_id(cluster: &Cluster, observer: &str, node: &str) -> u16 {
    node_id_in(
        cluster.nodes.iter().map(|n| n.name.as_str()),
        observer,
        node,
    )
}

/// [`node_id`] over a list of node names (any order).
pub fn node_id_in<'a>(names: impl IntoIterator<Item = &'a str>, observer: &str, node: &str) -> u16 {
    if observer == node {
        return 0;
    }
    let below = names.into_iter().filter(|n| *n < node).count();
    u16::try_from(below + 1).unwrap_or(u16::MAX)
}

/// Every node's auth map: key → expiration (utime), read at the world's virtual time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthTable {
    nodes: BTreeMap<String, BTreeMap<AuthKey, u64>>,
    /// The virtual time (ns) lookups are made at: the world's clock, which the engine keeps
    /// here as it advances.
    now_ns: u64,
}

impl AuthTable {
    pub fn set_clock(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// Whether `node`'s auth map holds `key` unexpired now (`auth_lookup`:
    /// `utime_get_time() < auth->expiration`).
    pub fn is_authenticated(&self, node: &str, key: &AuthKey) -> bool {
        self.nodes
            .get(node)
            .and_then(|m| m.get(key))
            .is_some_and(|&exp| utime(self.now_ns) < exp)
    }

    /// The auth check of one enforcing side that needs `auth_type` (`auth_lookup` in
    /// `bpf_lxc.c`): the local pod's identity, the remote identity as the node resolved it,
    /// and the node id of the remote peer's node (0 for a peer that is not a pod of another
    /// node: the world has no tunnel endpoint, and a node's host is a reserved identity,
    /// never authenticated).
    pub fn side_authenticated(
        &self,
        cluster: &Cluster,
        local: &PodName,
        remote_identity: Identity,
        remote_pod: Option<&PodName>,
        auth_type: AuthType,
    ) -> bool {
        let Some(lp) = cluster.pods.get(local) else {
            return false;
        };
        let remote_node = remote_pod
            .and_then(|r| cluster.pods.get(r))
            .map(|p| p.node.as_str())
            .unwrap_or(lp.node.as_str());
        let key = AuthKey {
            local: lp.identity,
            remote: remote_identity,
            remote_node_id: node_id(cluster, &lp.node, remote_node),
            auth_type,
        };
        self.is_authenticated(&lp.node, &key)
    }

    /// `node`'s entries in key order, expired ones included (the datapath ignores those;
    /// Cilium's GC deletes them later, `authmap_gc.go` `cleanupExpiredEntries`).
    pub fn entries(&self, node: &str) -> impl Iterator<Item = (&AuthKey, u64)> + '_ {
        self.nodes
            .get(node)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k, *v)))
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.values().all(BTreeMap::is_empty)
    }

    /// Stores `entries` (from [`authentication_entries`]) expiring at `expires_ns` (virtual
    /// ns; kept in utime), replacing older ones (`AuthManager.updateAuthMap`).
    pub fn store(&mut self, entries: &[(String, AuthKey)], expires_ns: u64) {
        for (node, key) in entries {
            self.nodes
                .entry(node.clone())
                .or_default()
                .insert(*key, utime(expires_ns));
        }
    }
}

/// The auth map entries a completed mutual authentication of two pods writes, for auth type
/// spire (the only type a handler can succeed for): one on the source's node (local = the
/// source's identity, remote = the destination's) and one on the destination's node (the
/// reverse), each with the other's node id. A pod with a reserved identity is an error, as
/// the auth manager skips such pairs.
pub fn authentication_entries(
    cluster: &Cluster,
    from: &PodName,
    to: &PodName,
) -> Result<Vec<(String, AuthKey)>, String> {
    let pod = |p: &PodName| {
        cluster
            .pods
            .get(p)
            .ok_or_else(|| format!("unknown pod {p}"))
    };
    let (a, b) = (pod(from)?, pod(to)?);
    for p in [a, b] {
        if p.identity.is_reserved() {
            return Err(format!(
                "{} has the reserved identity {}: reserved identities are never \
                 authenticated (pkg/auth manager.go handleAuthRequest)",
                p.name, p.identity
            ));
        }
    }
    let mut written = Vec::new();
    for (local, remote) in [(a, b), (b, a)] {
        let key = AuthKey {
            local: local.identity,
            remote: remote.identity,
            remote_node_id: node_id(cluster, &local.node, &remote.node),
            auth_type: AuthType::Spire,
        };
        written.push((local.node.clone(), key));
    }
    written.dedup();
    Ok(written)
}
