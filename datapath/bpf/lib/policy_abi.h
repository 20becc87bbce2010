/* The policy-map ABI shared with the Rust model: mirrors sim/src/abi.rs exactly.
 * Cilium 1.19+ layout (spec §5.1), with one map for all endpoints: the endpoint id is
 * placed in front of Cilium's policy_key as 32 more static prefix bits. */
#ifndef VERDICT_POLICY_ABI_H
#define VERDICT_POLICY_ABI_H

#include <linux/types.h>

#define POLICY_STATIC_PREFIX_BITS 40 /* sec_label + egress byte */
#define POLICY_FULL_PREFIX 64
#define ENDPOINT_PREFIX_BITS 32

struct endpoint_policy_key {
	__u32 prefixlen;  /* LPM prefix length, host order: 32 + Cilium's prefix */
	__be32 ep_id;     /* local endpoint id, network order */
	__u32 sec_label;  /* remote identity, host order; 0 = wildcard */
	__u8 egress;      /* bit 0: 1 = egress */
	__u8 protocol;    /* 0 = wildcard */
	__be16 dport;     /* network order; ICMP type for ICMP */
};

#define POLICY_ENTRY_DENY 0x1
#define POLICY_ENTRY_LPM_SHIFT 3
#define POLICY_ENTRY_EXPLICIT_AUTH 0x80
#define PRECEDENCE_DENY 0xFFFFFFFFu

struct policy_entry {
	__be16 proxy_port;  /* 0 = no redirect */
	__u8 flags;         /* deny:1, reserved:2, lpm_prefix_length:5 */
	__u8 auth;          /* auth_type:7, has_explicit_auth_type:1 */
	__u32 precedence;   /* higher wins; PRECEDENCE_DENY for deny */
	__u32 cookie;
};

#endif
