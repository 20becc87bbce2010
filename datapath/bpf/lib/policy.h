/* The policy lookup of Cilium 1.19+ (bpf/lib/policy.h __policy_can_access, spec §5.2),
 * against our single cilium_policy_v2 whose key puts the endpoint id in front of
 * Cilium's policy_key (policy_abi.h). */
#ifndef VERDICT_POLICY_H
#define VERDICT_POLICY_H

#include "maps.h"
#include "parse.h"
#include "auth.h"

static __always_inline __u8 entry_prefix(const struct policy_entry *e)
{
	return e->flags >> POLICY_ENTRY_LPM_SHIFT;
}

/* Match type of the chosen entry (spec §5.2 step 6, bpf/lib/policy.h). */
static __always_inline __u8 policy_match_type(const struct policy_entry *e, int is_l3)
{
	__u8 p = entry_prefix(e);

	if (is_l3)
		return p > 8 ? POLICY_MATCH_L3_L4 : p > 0 ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_L3_ONLY;
	return p == 0 ? POLICY_MATCH_ALL : p <= 8 ? POLICY_MATCH_PROTO_ONLY : POLICY_MATCH_L4_ONLY;
}

/* Returns 0 (allow), the proxy port (> 0, redirect) or -drop reason; fills match_type,
 * cookie and auth_type of st. */
static __always_inline int policy_can_access(struct verdict_state *st)
{
	struct endpoint_policy_key key = {};
	struct policy_entry *policy, *l4policy, *chosen, *other;
	__u8 auth;
	int is_l3;

	/* allow_icmp_frag_needed (on by default): path-MTU discovery must work. */
	if (st->tuple.family == FAMILY_IPV4 && st->tuple.proto == IPPROTO_ICMP &&
	    st->tuple.icmp_type == ICMP_DEST_UNREACH && st->tuple.icmp_code == ICMP_FRAG_NEEDED &&
	    !st->tuple.fragment)
		return 0;

	key.prefixlen = ENDPOINT_PREFIX_BITS + POLICY_FULL_PREFIX;
	key.ep_id = bpf_htonl(st->ep_id);
	key.sec_label = st->remote_identity;
	key.egress = st->dir == DIR_EGRESS;
	key.protocol = st->tuple.proto;
	key.dport = st->policy_dport;

	/* 1-2: L3 lookup; a deny (maximum precedence) ends the search. */
	policy = bpf_map_lookup_elem(&cilium_policy_v2, &key);
	if (policy && policy->precedence == PRECEDENCE_DENY) {
		chosen = policy;
		other = 0;
		is_l3 = 1;
		goto check;
	}

	/* 3-4: L4-only lookup; it wins on higher precedence, or equal precedence and a
	 * longer protocol+port prefix. */
	key.sec_label = 0;
	l4policy = bpf_map_lookup_elem(&cilium_policy_v2, &key);
	if (l4policy && (!policy || l4policy->precedence > policy->precedence ||
			 (l4policy->precedence == policy->precedence &&
			  entry_prefix(l4policy) > entry_prefix(policy)))) {
		chosen = l4policy;
		other = policy;
		is_l3 = 0;
	} else if (policy) {
		chosen = policy;
		other = l4policy;
		is_l3 = 1;
	} else {
		st->match_type = POLICY_MATCH_NONE;
		/* Fragments carry no ports, so they match port-wildcard entries only. */
		return st->tuple.fragment ? -DROP_FRAG_NOSUPPORT : -DROP_POLICY;
	}

check:
	/* 5-6 */
	st->match_type = policy_match_type(chosen, is_l3);
	st->cookie = chosen->cookie;
	if (chosen->flags & POLICY_ENTRY_DENY)
		return -DROP_POLICY_DENY;
	/* Auth: an entry without an explicit type takes a higher type from the other
	 * entry of the same precedence; a type other than 0 needs the pair in the auth map
	 * (bpf_lxc.c calls auth_lookup on DROP_POLICY_AUTH_REQUIRED, lib/auth.h). */
	auth = chosen->auth & 0x7f;
	if (!(chosen->auth & POLICY_ENTRY_EXPLICIT_AUTH) && other &&
	    other->precedence == chosen->precedence && (other->auth & 0x7f) > auth)
		auth = other->auth & 0x7f;
	st->auth_type = auth;
	if (auth && auth_lookup(st, auth))
		return -DROP_POLICY_AUTH_REQUIRED;
	return bpf_ntohs(chosen->proxy_port);
}

#endif
