/* Constants and the per-packet state shared by every stage of verdict's datapath.
 *
 * Names and numbers follow Cilium so a Cilium engineer can read the code without a
 * glossary; each block cites where Cilium defines it. */
#ifndef VERDICT_COMMON_H
#define VERDICT_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "policy_abi.h"

/* TC verdicts (uapi/linux/pkt_cls.h): TC_ACT_OK 0, TC_ACT_SHOT 2. */

/* Drop reasons, positive codes (Cilium bpf/lib/drop_reasons.h returns the negatives;
 * pkg/monitor/api/drop.go and flow.proto DropReason use these numbers). */
#define DROP_INVALID_SIP 132	       /* source IP is not this endpoint's (lxc.h is_valid_lxc_src_ip) */
#define DROP_POLICY 133
#define DROP_INVALID 134	       /* truncated or malformed L3/L4 header */
#define DROP_UNKNOWN_L3 139	       /* ethertype bpf_lxc.c does not handle */
#define DROP_MISSED_TAIL_CALL 140
#define DROP_CT_CREATE_FAILED 155
#define DROP_INVALID_EXTHDR 156	       /* IPv6 extension-header chain we cannot walk */
#define DROP_FRAG_NOSUPPORT 157
#define DROP_UNSUPPORTED_L2 166	       /* frame shorter than Ethernet, or 802.3 length field */
#define DROP_POLICY_DENY 181
#define DROP_POLICY_AUTH_REQUIRED 189
#define DROP_EP_NOT_READY 203	       /* local_delivery.h: no policy program for the endpoint */

/* Reserved identities (bpf/node_config.h, pkg/identity/numericidentity.go). */
#define WORLD_ID 2

/* Monitor message types (pkg/monitor/api/types.go, spec §5.5). */
#define CILIUM_NOTIFY_DROP 1
#define CILIUM_NOTIFY_TRACE 4
#define CILIUM_NOTIFY_POLICY_VERDICT 5

/* Trace observation points (bpf/lib/notify.h enum trace_point: TRACE_TO_LXC 0,
 * TRACE_TO_PROXY 1, TRACE_FROM_LXC 5). Hubble maps TRACE_TO_LXC to TO_ENDPOINT (101),
 * TRACE_TO_PROXY to TO_PROXY (1) and TRACE_FROM_LXC to FROM_ENDPOINT (5); for TO_PROXY it
 * reads the trace's dst_id as the flow's proxy_port (pkg/hubble/parser/threefour/parser.go
 * decodeProxyPort). */
#define TRACE_TO_LXC 0
#define TRACE_TO_PROXY 1
#define TRACE_TO_HOST 2
#define TRACE_FROM_LXC 5
#define TRACE_FROM_HOST 7

/* CT lookup results (bpf/lib/conntrack.h); also Cilium's trace reasons
 * (TRACE_REASON_POLICY = CT_NEW, ...). CT_REOPENED was Cilium's TRACE_REASON_CT_REOPENED,
 * "reserved" in Cilium main (bpf/lib/trace.h), which reports a reopen as CT_NEW: the
 * programs no longer produce it. */
#define CT_NEW 0
#define CT_ESTABLISHED 1
#define CT_REPLY 2
#define CT_RELATED 3
#define CT_REOPENED 4

/* Directions, in Cilium's policy-verdict / metrics encoding (bpf/lib/policy_log.h
 * "dir:2", bpf/lib/metrics.h METRIC_INGRESS 1, METRIC_EGRESS 2). */
#define DIR_INGRESS 1
#define DIR_EGRESS 2

/* Address families as in the ipcache key (bpf/lib/eps.h ENDPOINT_KEY_IPV4/IPV6). */
#define FAMILY_IPV4 1
#define FAMILY_IPV6 2

/* Policy match types (bpf/lib/policy_log.h, spec §5.5). */
#define POLICY_MATCH_NONE 0
#define POLICY_MATCH_L3_ONLY 1
#define POLICY_MATCH_L3_L4 2
#define POLICY_MATCH_L4_ONLY 3
#define POLICY_MATCH_ALL 4
#define POLICY_MATCH_L3_PROTO 5
#define POLICY_MATCH_PROTO_ONLY 6

/* Endpoint flags in cilium_lxc's endpoint_info.flags (ours; Cilium keeps these in the
 * endpoint's compiled config: policy enforcement per direction and audit mode). */
#define EP_F_INGRESS_POLICY 0x1
#define EP_F_EGRESS_POLICY 0x2
#define EP_F_AUDIT 0x4
/* The node's host endpoint (Cilium's ENDPOINT_F_HOST; lib/host_firewall.h). */
#define EP_F_HOST 0x8

/* TCP flags byte (offset 13 of the TCP header). */
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* Addresses are __u8[16] in every ABI struct, always at 4-byte aligned offsets; copying
 * them as words keeps the programs small (byte copies were 4x the code). The packet
 * side may be unaligned, which x86 and rbpf both accept (the verifier only enforces
 * alignment with BPF_F_STRICT_ALIGNMENT). */
static __always_inline void copy_addr(__u8 *dst, const __u8 *src, int words)
{
	__u32 *d = (__u32 *)dst;
	const __u32 *s = (const __u32 *)src;
	int i;

#pragma unroll
	for (i = 0; i < words; i++)
		d[i] = s[i];
}

#define copy_addr16(dst, src) copy_addr(dst, src, 4)

/* The flow a packet belongs to, as parsed; copied verbatim into every event record so
 * the harness needs no packet bytes. 48 bytes. */
struct flow_tuple {
	__u8 saddr[16];	 /* IPv4 in the first 4 bytes, rest zero */
	__u8 daddr[16];
	__be16 sport;	 /* network order; ICMP echo: identifier (request) or 0 */
	__be16 dport;	 /* network order; ICMP echo reply: identifier */
	__u8 family;	 /* FAMILY_IPV4 / FAMILY_IPV6 */
	__u8 proto;	 /* L4 protocol after IPv6 extension headers */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u8 fragment;	 /* 1: IP fragment, ports unknown and zero (spec §5.2) */
	__u8 ct_status;	 /* CT_* */
	__u8 is_reply;	 /* ct_status is CT_REPLY */
	__u32 pad;
};

/* The quoted packet of an ICMP error, for RELATED lookups (bpf/lib/conntrack.h
 * ct_lookup4/6 on ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ...). 40 bytes. */
struct inner_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 valid;
	__u8 pad[2];
};

/* Per-packet state handed between the tail-called stages through the per-CPU
 * verdict_scratch map (Cilium hands the same kind of state over in skb->cb and its
 * per-CPU scratch maps). One packet is in flight per CPU, so one slot suffices. */
struct verdict_state {
	struct flow_tuple tuple;   /* 0 */
	struct inner_tuple inner;  /* 48 */
	__be16 policy_dport;	   /* 88: dport for the policy key (ICMP: type) */
	__u8 dir;		   /* 90: DIR_INGRESS / DIR_EGRESS */
	__u8 match_type;	   /* 91 */
	__u32 len;		   /* 92: skb->len, the whole frame */
	__u32 ep_id;		   /* 96: local endpoint (0 before it is known) */
	__u32 ep_identity;	   /* 100 */
	__u32 ep_flags;		   /* 104 */
	__u32 remote_identity;	   /* 108 */
	__s32 verdict;		   /* 112: 0 allow, >0 proxy port, <0 -drop reason */
	__u32 cookie;		   /* 116 */
	__u8 auth_type;		   /* 120 */
	__u8 audited;		   /* 121 */
	__u8 policy_checked;	   /* 122: 1 when policy ran (NEW/ESTABLISHED) */
	__u8 ct_proxy_redirect;	   /* 123: the CT entry the lookup hit has proxy_redirect */
	__u32 drop_reason;	   /* 124: positive code, 0 = forward */
};

#endif
