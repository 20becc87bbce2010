/* Mutual authentication (Cilium bpf/lib/auth.h): the auth map the agent's auth manager
 * fills (pkg/auth, pkg/maps/authmap) and auth_lookup, which turns a policy verdict of
 * DROP_POLICY_AUTH_REQUIRED into an allow when the pair has been authenticated.
 *
 * Key and value as Cilium's struct auth_key / struct auth_info (bpf/lib/common.h); the Rust
 * mirrors are datapath/src/abi.rs AuthKey / AuthInfo. Cilium finds the remote node id in
 * cilium_node_map by the ipcache entry's tunnel endpoint (lookup_ip4_node); verdict's ipcache
 * value carries the node id itself (remote_endpoint_info.node_id, 0 for the local node). The
 * expiration is in utime (ns >> 9, bpf/lib/utime.h) on the harness clock. Cilium also signals
 * the agent on a miss (send_signal_auth_required); the harness has no agent to signal: a
 * scenario's `authenticate` step stands for the handshake that follows. */
#ifndef VERDICT_AUTH_H
#define VERDICT_AUTH_H

#include "maps.h"
#include "clock.h"

#define UTIME_SHIFT 9

struct auth_key {
	__u32 local_sec_label;
	__u32 remote_sec_label;
	__u16 remote_node_id; /* zero for local node */
	__u8 auth_type;
	__u8 pad;
};

/* expiration is Unix epoch time in unit nanosecond/2^9 (ns/512). */
struct auth_info {
	__u64 expiration;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct auth_key);
	__type(value, struct auth_info);
	__uint(max_entries, 524288); /* Cilium's */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_auth_map SEC(".maps");

/* The node id of the remote peer's node from the ipcache: 0 for the local node, a peer
 * outside the cluster or one the ipcache does not know (bpf_lxc.c passes tunnel endpoint 0
 * when the egress lookup found no entry; at ingress it skips auth_lookup without one, so the
 * drop stands: such peers are never authenticated either way). */
static __always_inline __u16 auth_remote_node_id(const struct verdict_state *st)
{
	struct ipcache_key key = {};
	struct remote_endpoint_info *info;
	__u8 family = st->tuple.family;

	key.prefixlen = family == FAMILY_IPV4 ? IPCACHE_PREFIX_V4 : IPCACHE_PREFIX_V6;
	key.family = family;
	copy_addr16(key.addr, st->dir == DIR_EGRESS ? st->tuple.daddr : st->tuple.saddr);
	info = bpf_map_lookup_elem(&cilium_ipcache_v2, &key);
	return info ? info->node_id : 0;
}

/* auth_lookup: 0 when the node's auth map holds the (local identity, remote identity,
 * remote node id, auth type) entry unexpired, else -DROP_POLICY_AUTH_REQUIRED. */
static __always_inline int auth_lookup(const struct verdict_state *st, __u8 auth_type)
{
	struct auth_key key = {
		.local_sec_label = st->ep_identity,
		.remote_sec_label = st->remote_identity,
		.remote_node_id = auth_remote_node_id(st),
		.auth_type = auth_type,
		.pad = 0,
	};
	struct auth_info *auth = bpf_map_lookup_elem(&cilium_auth_map, &key);

	if (auth && (clock_now_ns() >> UTIME_SHIFT) < auth->expiration)
		return 0;
	return -DROP_POLICY_AUTH_REQUIRED;
}

#endif
