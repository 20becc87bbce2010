/* Every map of verdict's datapath, with its key and value layouts. The Rust mirrors
 * are in datapath/src/abi.rs (policy key/entry: sim/src/abi.rs). BTF-defined maps in
 * .maps, as libbpf and our ELF loader both read them. */
#ifndef VERDICT_MAPS_H
#define VERDICT_MAPS_H

#include "common.h"

/* --- ipcache (Cilium bpf/lib/eps.h, bpf/lib/maps.h IPCACHE_MAP, spec §3.6) --- */

/* 32 static bits (cluster_id, pad, family) precede the address: a full v4 lookup uses
 * prefixlen 64, v6 160. */
#define IPCACHE_STATIC_PREFIX 32
#define IPCACHE_PREFIX_V4 (IPCACHE_STATIC_PREFIX + 32)
#define IPCACHE_PREFIX_V6 (IPCACHE_STATIC_PREFIX + 128)

struct ipcache_key {
	__u32 prefixlen;
	__u16 cluster_id;
	__u8 pad;
	__u8 family;
	__u8 addr[16];
};

struct remote_endpoint_info {
	__u32 sec_identity;
	__be32 tunnel_endpoint;
	__u16 node_id;
	__u8 flags;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct remote_endpoint_info);
	__uint(max_entries, 512000); /* Cilium's IPCACHE_MAP_SIZE */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_ipcache_v2 SEC(".maps");

/* --- local endpoints (Cilium ENDPOINTS_MAP cilium_lxc, bpf/lib/eps.h) --- */

struct endpoint_key {
	__u8 addr[16];
	__u8 family;
	__u8 pad[3];
};

struct endpoint_info {
	__u32 ep_id;
	__u32 sec_identity;
	__u32 flags; /* EP_F_* */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, 65535); /* Cilium's ENDPOINTS_MAP_SIZE */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_lxc SEC(".maps");

/* --- policy (one LPM map for all endpoints, key and entry in policy_abi.h) ---
 * Cilium gives every endpoint its own map of 16,384 entries; this one map holds all of a
 * node's endpoints, so its ceiling is 1,024 endpoints at Cilium's full per-endpoint size.
 * A 5,000-pod cluster with 500 policies needed more than 2^20 entries on one node. Entries
 * are allocated on insert (BPF_F_NO_PREALLOC), so the ceiling costs nothing until used. */

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct endpoint_policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, 1 << 24);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_policy_v2 SEC(".maps");

/* --- conntrack (Cilium cilium_ct_any4/6 and ct_tcp4/6, merged: one map, both
 * families, all protocols). A plain HASH, not LRU: LRU eviction is not deterministic. */

#define TUPLE_F_OUT 0 /* entry created by egress (from_container) */
#define TUPLE_F_IN 1  /* entry created by ingress (to_container) */

struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 flags; /* TUPLE_F_OUT / TUPLE_F_IN */
	__u8 family;
	__u8 pad;
};

/* Cilium's ct_entry bit fields rx_closing, tx_closing, seen_non_syn, proxy_redirect. rx is
 * the side an ingress (to_container) hook sees, tx an egress (from_container) hook's.
 * proxy_redirect: "Connection is redirected to a proxy" (bpf/lib/conntrack.h struct
 * ct_entry), set by ct_create when policy returned a proxy port, so that replies go back
 * to the proxy. */
#define CT_F_RX_CLOSING 0x1
#define CT_F_TX_CLOSING 0x2
#define CT_F_SEEN_NON_SYN 0x4
#define CT_F_PROXY_REDIRECT 0x8

struct ct_entry {
	__u64 expires; /* ns on the harness clock; the entry is dead from this time on */
	__u64 packets;
	__u64 bytes;
	__u32 src_sec_id;
	__u16 flags; /* CT_F_* */
	__u8 tx_flags_seen; /* TCP flags seen at egress hooks, masked by CT_REPORT_FLAGS */
	__u8 rx_flags_seen; /* and at ingress hooks */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 262144); /* Cilium's CT_MAP_SIZE_ANY */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilium_ct_any SEC(".maps");

/* --- virtual clock: index 0 holds the harness time in ns --- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} verdict_clock SEC(".maps");

/* --- events (Cilium's EVENTS_MAP is a perf array; a ring buffer keeps order across
 * CPUs and is simpler to emulate) --- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} cilium_events SEC(".maps");

/* --- metrics (Cilium bpf/lib/metrics.h METRICS_MAP, per-CPU, plain increments) --- */

struct metrics_key {
	__u8 reason; /* drop reason, 0 = forwarded */
	__u8 dir;    /* DIR_INGRESS / DIR_EGRESS */
	__u8 pad[6];
};

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
	__uint(max_entries, 1024);
} cilium_metrics SEC(".maps");

/* --- per-packet scratch between tail calls --- */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct verdict_state);
	__uint(max_entries, 1);
} verdict_scratch SEC(".maps");

#endif
