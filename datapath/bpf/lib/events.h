/* Ring-buffer records: policy verdict (type 5), drop (type 1), trace (type 4).
 *
 * All three share one layout that starts with Cilium's common notify header
 * (bpf/lib/common.h NOTIFY_COMMON_HDR: type, subtype, source, hash) and carries the
 * fields Hubble reads from Cilium's policy_verdict_notify (bpf/lib/policy_log.h),
 * drop_notify (bpf/lib/drop.h) and trace_notify (bpf/lib/trace.h). Instead of the
 * captured packet bytes Cilium appends, each record carries the parsed flow tuple.
 * Mirrored by datapath/src/abi.rs VerdictEvent and decoded by datapath/src/events.rs. */
#ifndef VERDICT_EVENTS_H
#define VERDICT_EVENTS_H

#include "maps.h"
#include "clock.h"

/* policy_verdict_notify.flags (bpf/lib/policy_log.h): dir:2, ipv6:1, match_type:3,
 * audited:1, pad:1. */
#define PV_F_IPV6_SHIFT 2
#define PV_F_MATCH_SHIFT 3
#define PV_F_AUDITED_SHIFT 6

struct verdict_event {
	/* NOTIFY_COMMON_HDR */
	__u8 type;	     /* CILIUM_NOTIFY_* */
	__u8 subtype;	     /* drop: reason; trace: observation point; verdict: 0 */
	__u16 source;	     /* local endpoint id (Cilium's EVENT_SOURCE = LXC_ID) */
	__u32 hash;	     /* 0: no skb hash in test runs */
	__u64 timestamp;     /* harness clock, ns */
	__u32 len_orig;	     /* skb->len */
	__u32 src_label;     /* source identity */
	__u32 dst_label;     /* destination identity */
	__u32 remote_label;  /* policy verdict: the peer's identity */
	__s32 verdict;	     /* 0 allow, > 0 proxy port, < 0 -drop reason */
	__u16 dst_port;	     /* host order; ICMP: type */
	__u8 proto;
	__u8 flags;	     /* PV_F_* layout */
	__u8 auth_type;
	__u8 reason;	     /* trace reason = CT status */
	__u16 ep_id;	     /* trace dst_id (local endpoint; TO_PROXY: proxy port) / drop dst_id */
	__u32 cookie;	     /* policy-log cookie of the deciding entry */
	struct flow_tuple tuple;
};

/* A bpf-to-bpf subprogram: called up to three times per packet, kept once in the code.
 * dst_id is the record's ep_id: the local endpoint, except on a TRACE_TO_PROXY trace, which
 * carries the proxy port there, as Cilium's send_trace_notify(ctx, TRACE_TO_PROXY, ...,
 * bpf_ntohs(proxy_port), ...) does in bpf_lxc.c (0 on the return path of a redirected
 * connection). Cilium's egress TO_PROXY trace also names no destination identity
 * (UNKNOWN_ID); Hubble then takes the identity from the ipcache
 * (pkg/hubble/parser/common/endpoint.go ResolveEndpoint). */
static __noinline int emit_event(struct verdict_state *st, __u32 type, __u32 subtype,
				 __u32 dst_id)
{
	__u64 now = clock_now_ns();
	struct verdict_event ev = {};
	int egress = st->dir == DIR_EGRESS;

	ev.type = type;
	ev.subtype = subtype;
	ev.source = st->ep_id;
	ev.timestamp = now;
	ev.len_orig = st->len;
	ev.src_label = egress ? st->ep_identity : st->remote_identity;
	ev.dst_label = egress ? st->remote_identity : st->ep_identity;
	ev.remote_label = st->remote_identity;
	ev.verdict = st->verdict;
	ev.dst_port = bpf_ntohs(st->policy_dport);
	ev.proto = st->tuple.proto;
	ev.flags = st->dir | ((st->tuple.family == FAMILY_IPV6) << PV_F_IPV6_SHIFT) |
		   (st->match_type << PV_F_MATCH_SHIFT) | (st->audited << PV_F_AUDITED_SHIFT);
	ev.auth_type = st->auth_type;
	ev.reason = st->tuple.ct_status;
	ev.ep_id = dst_id;
	if (type == CILIUM_NOTIFY_TRACE && subtype == TRACE_TO_PROXY && egress)
		ev.dst_label = 0;
	ev.cookie = st->cookie;
	__builtin_memcpy(&ev.tuple, &st->tuple, sizeof(ev.tuple));
	/* BPF_RB_NO_WAKEUP: the harness drains the ring after every run and never waits on it;
	 * a wakeup per record costs a VM exit in the kernel (measured: 16 us -> 2.2 us per
	 * single-shot run). */
	return bpf_ringbuf_output(&cilium_events, &ev, sizeof(ev), BPF_RB_NO_WAKEUP);
}

#endif
