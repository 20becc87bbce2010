/* Endpoint and ipcache lookups (Cilium bpf/lib/eps.h: lookup_ip4_endpoint,
 * lookup_ip4_remote_endpoint and their v6 twins). */
#ifndef VERDICT_EPS_H
#define VERDICT_EPS_H

#include "maps.h"

/* The local endpoint owning addr, or NULL. */
static __always_inline struct endpoint_info *lookup_endpoint(const __u8 *addr, __u8 family)
{
	struct endpoint_key key = {};

	copy_addr16(key.addr, addr);
	key.family = family;
	return bpf_map_lookup_elem(&cilium_lxc, &key);
}

/* The security identity of addr: longest matching ipcache prefix, or WORLD_ID when none
 * matches (bpf_lxc.c falls back to WORLD_IPV4_ID/WORLD_IPV6_ID; spec §3.6). */
static __always_inline __u32 lookup_identity(const __u8 *addr, __u8 family)
{
	struct ipcache_key key = {};
	struct remote_endpoint_info *info;

	key.prefixlen = family == FAMILY_IPV4 ? IPCACHE_PREFIX_V4 : IPCACHE_PREFIX_V6;
	key.family = family;
	copy_addr16(key.addr, addr);
	info = bpf_map_lookup_elem(&cilium_ipcache_v2, &key);
	return info ? info->sec_identity : WORLD_ID;
}

#endif
