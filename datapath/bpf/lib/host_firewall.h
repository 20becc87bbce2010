/* The host firewall (Cilium bpf/lib/host_firewall.h with bpf/bpf_host.c): host policies on
 * a node's host endpoint, with --enable-host-firewall. The host endpoint is an entry of
 * cilium_lxc keyed by the node's address with EP_F_HOST, identity 1 (HOST_ID) and its own
 * policy-map entries, which the shared stages (CT, policy, verdict) use as any endpoint's.
 *
 * Entry programs (verdict.bpf.c):
 *   cil_from_host  a packet leaving the host (bpf_host.c handle_ipv4 from-host on
 *                  cilium_host, handle_to_netdev towards the network): host egress policy;
 *   cil_to_host    a packet arriving at the host (from-netdev, or from a local pod through
 *                  bpf_lxc.c lxc_deliver_to_host's tail call into the host's policy
 *                  program): host ingress policy.
 *
 * As in Cilium, only packets from (egress) or to (ingress) an address of the host are the
 * host firewall's: ipv4_host_policy_egress_lookup needs the source identity HOST_ID,
 * ipv4_host_policy_ingress_lookup the destination identity HOST_ID; any other packet passes
 * untouched (CTX_ACT_OK, no event). REPLY and RELATED packets skip policy ("Reply traffic
 * and related are allowed regardless of policy verdict", __ipv4_host_policy_ingress /
 * __ipv4_host_policy_egress), which tail_ct already does for every endpoint. A forwarded
 * packet's trace is TRACE_FROM_HOST at egress and TRACE_TO_HOST at ingress (bpf/lib/notify.h
 * enum trace_point; Hubble FROM_HOST / TO_HOST). */
#ifndef VERDICT_HOST_FIREWALL_H
#define VERDICT_HOST_FIREWALL_H

#include "common.h"
#include "maps.h"

/* Returned by host_fw_resolve for a packet the host firewall does not apply to. */
#define HOST_FW_PASS (-1)

/* Whether this run is one of the host programs (handle_entry records it in ep_flags
 * until the endpoint is known). */
static __always_inline int host_fw_program(const struct verdict_state *st)
{
	return st->ep_flags & EP_F_HOST;
}

/* The local endpoint of a host program: the host endpoint owning the packet's host-side
 * address, or HOST_FW_PASS when that address is not the host's. */
static __always_inline int host_fw_resolve(const struct endpoint_info *ep)
{
	return ep && (ep->flags & EP_F_HOST) ? 0 : HOST_FW_PASS;
}

/* The trace of a forwarded packet on the host endpoint. */
static __always_inline __u32 host_fw_trace_point(const struct verdict_state *st)
{
	return st->dir == DIR_EGRESS ? TRACE_FROM_HOST : TRACE_TO_HOST;
}

#endif
