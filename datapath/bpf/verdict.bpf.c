// SPDX-License-Identifier: Apache-2.0
/* verdict's enforcement programs, run both in the kernel (BPF_PROG_TEST_RUN) and under
 * rbpf. Layout after Cilium's bpf/bpf_lxc.c: thin entry programs on top of lib/.
 *
 * Entry programs (SEC("tc"), return TC_ACT_OK 0 or TC_ACT_SHOT 2):
 *   cil_from_container  a packet leaving a pod: the source endpoint's egress policy;
 *                       the endpoint is found by the packet's source IP in cilium_lxc.
 *   cil_to_container    a packet arriving at a pod: the destination endpoint's ingress
 *                       policy; the endpoint is found by the destination IP.
 *   cil_from_host       the host firewall (lib/host_firewall.h): a packet leaving the
 *   cil_to_host         host, or arriving at it, on the host endpoint's policy.
 *
 * TAIL-CALL CONVENTION (shared with the loader and the emulator):
 *   Prog array `cilium_calls` (BPF_MAP_TYPE_PROG_ARRAY, 5 slots, key/value size 4) is
 *   initialised statically in this file (`.values = { [slot] = &prog }`, as libbpf does):
 *     slot 0 CALL_IPV4    -> `tail_handle_ipv4`  parse IPv4 + L4, endpoint, ipcache
 *     slot 1 CALL_IPV6    -> `tail_handle_ipv6`  parse IPv6 (ext headers) + L4, same
 *     slot 2 CALL_POLICY  -> `tail_policy`       policy lookup
 *     slot 3 CALL_VERDICT -> `tail_verdict`      CT create, events, metrics, verdict
 *     slot 4 CALL_CT      -> `tail_ct`           conntrack lookup
 *   All nine programs are SEC("tc") in one ELF section. bpf_tail_call is helper 12; every
 *   call is followed directly by `return TC_ACT_SHOT` with nothing in between (that code
 *   runs only when the slot is empty). The split exists because rbpf's x86 JIT holds 4 KiB
 *   of code per program: each program, subprograms linked in, stays under 400
 *   instructions (tests/programs.rs checks it). Subprograms (bpf-to-bpf calls):
 *   ct_hit, ct_update_timeout and emit_event; none takes the ctx.
 *   Stages hand state over in `verdict_scratch` (PERCPU_ARRAY, one struct verdict_state),
 *   as Cilium hands state over in skb->cb and per-CPU scratch maps.
 *
 * Flow: entry (L2, ethertype) -> tail_handle_ipv4/6 (parse, endpoint, ipcache) ->
 *   tail_ct (CT) -> tail_policy (policy; skipped by REPLY and RELATED) -> tail_verdict. A packet that fails parsing or has no local
 *   endpoint goes straight to tail_verdict with its drop reason.
 *
 * Events (lib/events.h, one record layout): a policy verdict (type 5) when policy ran,
 *   the direction is enforced for the endpoint (cilium_lxc flags) and the packet is
 *   denied or its CT status is not ESTABLISHED (bpf_lxc.c; a redirect counts as allowed);
 *   then a drop (type 1, subtype = reason) for every drop, or a trace (type 4, subtype
 *   TRACE_FROM_LXC in from_container, TRACE_TO_LXC in to_container) for every forwarded
 *   packet. Cilium also emits TRACE_FROM_LXC at the start of every from-container
 *   packet, dropped or not; we trace forwarded packets only. A packet redirected to the
 *   proxy gets a TRACE_TO_PROXY trace (dst_id = proxy port): after TRACE_FROM_LXC at
 *   egress, instead of TRACE_TO_LXC at ingress (tail_verdict).
 *
 * Policy for packets whose local endpoint is not in cilium_lxc: egress drops with
 * DROP_INVALID_SIP (132), Cilium's verdict for a source IP that is not the endpoint's
 * (bpf/lib/lxc.h is_valid_lxc_src_ip); ingress drops with DROP_EP_NOT_READY (203), what
 * Cilium's local delivery returns when the endpoint's policy program is missing
 * (bpf/lib/local_delivery.h tail_call_policy). Either way a drop event with source 0.
 *
 * Non-IP frames as bpf_lxc.c cil_from_container/cil_to_container: ARP passes
 * (ENABLE_ARP_PASSTHROUGH) without events, an 802.3 length field or a frame shorter
 * than Ethernet is DROP_UNSUPPORTED_L2 (166), any other ethertype DROP_UNKNOWN_L3 (139). */

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/clock.h"
#include "lib/parse.h"
#include "lib/eps.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/events.h"
#include "lib/metrics.h"
#include "lib/host_firewall.h"
#include "lib/abi_check.h"

#define CALL_IPV4 0
#define CALL_IPV6 1
#define CALL_POLICY 2
#define CALL_VERDICT 3
#define CALL_CT 4
#define CALLS_MAX 5

SEC("tc") int tail_handle_ipv4(struct __sk_buff *skb);
SEC("tc") int tail_handle_ipv6(struct __sk_buff *skb);
SEC("tc") int tail_ct(struct __sk_buff *skb);
SEC("tc") int tail_policy(struct __sk_buff *skb);
SEC("tc") int tail_verdict(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, CALLS_MAX);
	/* Sizes, not BTF types: the kernel rejects BTF key/value types on a prog array. */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__array(values, int(struct __sk_buff *));
} cilium_calls SEC(".maps") = {
	.values = {
		[CALL_IPV4] = (void *)&tail_handle_ipv4,
		[CALL_IPV6] = (void *)&tail_handle_ipv6,
		[CALL_POLICY] = (void *)&tail_policy,
		[CALL_VERDICT] = (void *)&tail_verdict,
		[CALL_CT] = (void *)&tail_ct,
	},
};

static __always_inline struct verdict_state *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&verdict_scratch, &zero);
}

/* Resets the scratch state, checks L2 and dispatches on the ethertype
 * (bpf_lxc.c cil_from_container / cil_to_container). */
static __always_inline int handle_entry(struct __sk_buff *skb, __u8 dir, __u32 host)
{
	struct verdict_state *st = scratch();
	__u8 *eth;
	__u16 proto;

	if (!st)
		return TC_ACT_SHOT;
	__builtin_memset(st, 0, sizeof(*st));
	st->dir = dir;
	/* A host program (lib/host_firewall.h), until resolve_endpoints sets the flags. */
	st->ep_flags = host;
	st->len = skb->len;

	eth = pkt_ptr(skb, 0, ETH_HLEN);
	if (!eth) {
		st->drop_reason = DROP_UNSUPPORTED_L2;
		goto drop;
	}
	proto = bpf_ntohs(load_be16(eth + 12));
	if (proto == ETH_P_IP) {
		bpf_tail_call(skb, &cilium_calls, CALL_IPV4);
		return TC_ACT_SHOT;
	}
	if (proto == ETH_P_IPV6) {
		bpf_tail_call(skb, &cilium_calls, CALL_IPV6);
		return TC_ACT_SHOT;
	}
	if (proto == ETH_P_ARP)
		return TC_ACT_OK;
	st->drop_reason = proto < ETH_P_802_3_MIN ? DROP_UNSUPPORTED_L2 : DROP_UNKNOWN_L3;
drop:
	bpf_tail_call(skb, &cilium_calls, CALL_VERDICT);
	return TC_ACT_SHOT;
}

SEC("tc")
int cil_from_container(struct __sk_buff *skb)
{
	return handle_entry(skb, DIR_EGRESS, 0);
}

SEC("tc")
int cil_to_container(struct __sk_buff *skb)
{
	return handle_entry(skb, DIR_INGRESS, 0);
}

/* The host firewall's entry programs (lib/host_firewall.h). */
SEC("tc")
int cil_from_host(struct __sk_buff *skb)
{
	return handle_entry(skb, DIR_EGRESS, EP_F_HOST);
}

SEC("tc")
int cil_to_host(struct __sk_buff *skb)
{
	return handle_entry(skb, DIR_INGRESS, EP_F_HOST);
}

/* After parsing: the local endpoint and the peer's identity. Returns 0, a drop reason, or
 * HOST_FW_PASS in a host program for a packet that is not the host's. */
static __always_inline int resolve_endpoints(struct verdict_state *st, __u8 family)
{
	struct endpoint_info *ep;
	__u8 *local, *remote;

	local = st->dir == DIR_EGRESS ? st->tuple.saddr : st->tuple.daddr;
	remote = st->dir == DIR_EGRESS ? st->tuple.daddr : st->tuple.saddr;
	ep = lookup_endpoint(local, family);
	if (host_fw_program(st) && host_fw_resolve(ep))
		return HOST_FW_PASS;
	if (!ep)
		return st->dir == DIR_EGRESS ? DROP_INVALID_SIP : DROP_EP_NOT_READY;
	st->ep_id = ep->ep_id;
	st->ep_identity = ep->sec_identity;
	st->ep_flags = ep->flags;
	st->remote_identity = lookup_identity(remote, family);
	return 0;
}

SEC("tc")
int tail_handle_ipv4(struct __sk_buff *skb)
{
	struct verdict_state *st = scratch();
	int ret;

	if (!st)
		return TC_ACT_SHOT;
	ret = parse_ipv4(skb, st);
	if (!ret)
		ret = resolve_endpoints(st, FAMILY_IPV4);
	if (ret == HOST_FW_PASS)
		return TC_ACT_OK;
	st->drop_reason = ret;
	bpf_tail_call(skb, &cilium_calls, ret ? CALL_VERDICT : CALL_CT);
	return TC_ACT_SHOT;
}

SEC("tc")
int tail_handle_ipv6(struct __sk_buff *skb)
{
	struct verdict_state *st = scratch();
	int ret;

	if (!st)
		return TC_ACT_SHOT;
	ret = parse_ipv6(skb, st);
	if (!ret)
		ret = resolve_endpoints(st, FAMILY_IPV6);
	if (ret == HOST_FW_PASS)
		return TC_ACT_OK;
	st->drop_reason = ret;
	bpf_tail_call(skb, &cilium_calls, ret ? CALL_VERDICT : CALL_CT);
	return TC_ACT_SHOT;
}

/* Conntrack. Policy follows for original-direction packets (bpf_lxc.c: CT_NEW and
 * CT_ESTABLISHED are checked, CT_REPLY and CT_RELATED skip policy). */
SEC("tc")
int tail_ct(struct __sk_buff *skb)
{
	struct verdict_state *st = scratch();
	int status;

	if (!st)
		return TC_ACT_SHOT;
	status = ct_lookup(st, clock_now_ns());
	st->tuple.ct_status = status;
	st->tuple.is_reply = status == CT_REPLY;
	bpf_tail_call(skb, &cilium_calls,
		      status == CT_REPLY || status == CT_RELATED ? CALL_VERDICT : CALL_POLICY);
	return TC_ACT_SHOT;
}

SEC("tc")
int tail_policy(struct __sk_buff *skb)
{
	struct verdict_state *st = scratch();
	int verdict;

	if (!st)
		return TC_ACT_SHOT;
	st->policy_checked = 1;
	verdict = policy_can_access(st);
	/* Audit mode turns a denial into an audited allow (policy_can_egress). */
	if (verdict < 0 && (st->ep_flags & EP_F_AUDIT)) {
		st->audited = 1;
		verdict = 0;
	}
	st->verdict = verdict;
	if (verdict < 0)
		st->drop_reason = -verdict;
	bpf_tail_call(skb, &cilium_calls, CALL_VERDICT);
	return TC_ACT_SHOT;
}

/* Whether the packet goes to the proxy: policy returned a proxy port, or it is a REPLY
 * or RELATED packet of a connection whose CT entry has proxy_redirect. */
static __always_inline int redirects(const struct verdict_state *st)
{
	__u8 status = st->tuple.ct_status;

	return st->verdict > 0 ||
	       ((status == CT_REPLY || status == CT_RELATED) && st->ct_proxy_redirect);
}

/* Acts on the decision: CT entry for an allowed NEW packet, the policy-verdict
 * notification when the direction is enforced and the packet is denied or not
 * ESTABLISHED (bpf_lxc.c), then a drop or trace record and the metrics.
 *
 * Proxy redirects (bpf_lxc.c handle_ipv4_from_lxc / ipv4_forward_to_destination at
 * egress, ipv4_policy at ingress; the same for IPv6): a packet whose policy returned a
 * proxy port (st->verdict > 0), or a REPLY/RELATED packet whose CT entry has
 * proxy_redirect ("return traffic to an ingress proxy" at egress, "to an egress proxy" at
 * ingress; port 0), goes to the proxy: a TRACE_TO_PROXY trace with the proxy port as
 * dst_id, after the from-endpoint trace at egress and instead of the to-endpoint trace at
 * ingress. The packet passes (TC_ACT_OK: ctx_redirect_to_proxy4/6 returns CTX_ACT_OK
 * and leaves delivery to the stack). At egress an ESTABLISHED packet whose CT entry's
 * proxy_redirect differs from what policy now says recreates the entry ("Recreate the CT
 * entry if the proxy_redirect flag is stale", handle_ipv4_from_lxc, ct_recreate4);
 * ipv4_policy at ingress creates entries for CT_NEW only, so an ingress entry keeps its
 * bit. */
SEC("tc")
int tail_verdict(struct __sk_buff *skb)
{
	struct verdict_state *st = scratch();
	__u64 now = clock_now_ns();
	__u8 reason, status = st ? st->tuple.ct_status : 0;

	if (!st)
		return TC_ACT_SHOT;
	if (!st->drop_reason &&
	    (status == CT_NEW ||
	     (status == CT_ESTABLISHED && st->dir == DIR_EGRESS &&
	      st->ct_proxy_redirect != (st->verdict > 0))))
		st->drop_reason = ct_create(st, now);

	/* EP_F_INGRESS_POLICY == DIR_INGRESS and EP_F_EGRESS_POLICY == DIR_EGRESS. */
	if (st->policy_checked && (st->ep_flags & st->dir) &&
	    (st->verdict < 0 || st->tuple.ct_status != CT_ESTABLISHED))
		emit_event(st, CILIUM_NOTIFY_POLICY_VERDICT, 0, st->ep_id);

	reason = st->drop_reason;
	update_metrics(reason, st->dir, st->len);
	if (reason) {
		emit_event(st, CILIUM_NOTIFY_DROP, reason, st->ep_id);
		return TC_ACT_SHOT;
	}
	/* redirects() reads st after each emit_event, and emit_event reads the clock itself:
	 * rbpf's JIT runs a subprogram on its caller's stack frame (rbpf 0.4.1 jit.rs
	 * emit_local_call leaves R10 alone), so no value on this program's stack may live
	 * across emit_event, whose record is on the stack. */
	if (st->ep_flags & EP_F_HOST)
		emit_event(st, CILIUM_NOTIFY_TRACE, host_fw_trace_point(st), st->ep_id);
	else if (st->dir == DIR_EGRESS)
		emit_event(st, CILIUM_NOTIFY_TRACE, TRACE_FROM_LXC, st->ep_id);
	else if (!redirects(st))
		emit_event(st, CILIUM_NOTIFY_TRACE, TRACE_TO_LXC, st->ep_id);
	if (redirects(st))
		emit_event(st, CILIUM_NOTIFY_TRACE, TRACE_TO_PROXY, st->verdict > 0 ? st->verdict : 0);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
