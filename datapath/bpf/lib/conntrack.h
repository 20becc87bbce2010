/* Connection tracking in Cilium's model, simplified (bpf/lib/conntrack.h, spec §5.3).
 *
 * - Each direction keeps its own entries, as Cilium's per-endpoint CT does: egress
 *   (from_container) creates TUPLE_F_OUT entries keyed by the packet's tuple, ingress
 *   (to_container) TUPLE_F_IN entries. A reply is found by the reversed tuple with the
 *   other direction's flag: A->B creates (A,B,OUT) in A's egress and (A,B,IN) in B's
 *   ingress, so B->A is REPLY in B's from_container and in A's to_container.
 * - Lookup order as Cilium: RELATED (an ICMP error quoting a tracked flow), then REPLY,
 *   then ESTABLISHED; otherwise NEW. Cilium looks up the reverse tuple first because
 *   RELATED/REPLY take precedence over ESTABLISHED for policy.
 * - Entries carry an absolute expiry on the harness clock. An entry whose expiry has
 *   passed is treated as absent: that is Cilium's CT garbage collector (pkg/maps/ctmap
 *   GCFilter RemoveExpired) run before every lookup, which keeps both backends
 *   deterministic. A NEW packet that passes overwrites it.
 * - Lifetimes are Cilium's defaults (bpf/node_config.h, pkg/defaults):
 *   CT_CONNECTION_LIFETIME_TCP 21600 s, CT_CONNECTION_LIFETIME_NONTCP 60 s,
 *   CT_SYN_TIMEOUT 60 s (TCP until a non-SYN packet is seen), CT_CLOSE_TIMEOUT 10 s.
 * - A hit is Cilium main's __ct_lookup, step for step (ct_hit below): the action is
 *   ct_tcp_select_action's (FIN or RST: close; SYN without ACK: create); a live entry
 *   (ct_entry_alive: not closing on both sides) gets ct_update_timeout (lifetime, and the
 *   TCP flags seen on this hook's side, masked by CT_REPORT_FLAGS); a create on a closing
 *   entry (ct_entry_closing: either side) resets its closing and seen flags and returns
 *   CT_NEW, so the caller checks policy as for a new connection and ct_create overwrites
 *   the entry (a policy drop leaves the reset entry); a close marks this hook's side
 *   closing (rx at ingress, tx at egress), or both for an RST before both SYNs were seen
 *   (ct_entry_seen_both_syns), and, once both sides are closing, sets CT_CLOSE_TIMEOUT
 *   (again on every later FIN or RST). Cilium no longer reports CT_REOPENED (its trace
 *   reason is "reserved").
 * - ct_create is Cilium's ct_create4/6: a TCP entry starts as if a SYN created it
 *   (CT_SYN_TIMEOUT, SYN seen on this side), whatever packet created it. The entry carries
 *   proxy_redirect when policy redirected the packet (ct_create_fill_entry); a lookup hands
 *   the hit entry's bit to the caller (ct_lookup_fill_state), which redirects REPLY and
 *   RELATED packets of such a connection to the proxy and, at egress, recreates an
 *   ESTABLISHED entry whose bit no longer matches the policy (verdict.bpf.c tail_verdict).
 * - ICMP errors that quote no tracked flow are looked up by their own tuple (ports 0). */
#ifndef VERDICT_CONNTRACK_H
#define VERDICT_CONNTRACK_H

#include "maps.h"
#include "parse.h"

#define CT_CONNECTION_LIFETIME_TCP 21600
#define CT_CONNECTION_LIFETIME_NONTCP 60
#define CT_SYN_TIMEOUT 60
#define CT_CLOSE_TIMEOUT 10

/* The agent writes CT_REPORT_FLAGS from --monitor-aggregation-flags, default syn,fin,rst
 * (pkg/option/config.go MonitorAggregationFlagsDefault). */
#define CT_REPORT_FLAGS (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)

#define CT_F_CLOSING (CT_F_RX_CLOSING | CT_F_TX_CLOSING)

/* __ct_update_timeout: the lifetime (seconds) from now, and the flags seen on this hook's
 * side. */
static __always_inline void __ct_update_timeout(struct ct_entry *e, __u64 life, __u8 tf,
						int ingress, __u64 now)
{
	e->expires = now + life * NSEC_PER_SEC;
	if (ingress)
		e->rx_flags_seen |= tf & CT_REPORT_FLAGS;
	else
		e->tx_flags_seen |= tf & CT_REPORT_FLAGS;
}

/* ct_update_timeout: the lifetime for the protocol and the SYN state. A subprogram: three
 * call sites. */
static __noinline void ct_update_timeout(struct ct_entry *e, __u8 proto, __u8 tf, int ingress,
					 __u64 now)
{
	__u64 life = CT_CONNECTION_LIFETIME_NONTCP;

	if (proto == IPPROTO_TCP) {
		if (!(tf & TCP_FLAG_SYN))
			e->flags |= CT_F_SEEN_NON_SYN;
		life = (e->flags & CT_F_SEEN_NON_SYN) ? CT_CONNECTION_LIFETIME_TCP :
							 CT_SYN_TIMEOUT;
	}
	__ct_update_timeout(e, life, tf, ingress, now);
}

/* __ct_lookup on a live entry: CT_ESTABLISHED, or CT_NEW for a SYN that reopens a
 * closing entry. A bpf-to-bpf subprogram: two call sites, one copy of the code. */
static __noinline int ct_hit(struct ct_entry *e, const struct verdict_state *st, __u64 now)
{
	__u8 proto = st->tuple.proto;
	__u8 tf = proto == IPPROTO_TCP ? st->tuple.tcp_flags : 0;
	int ingress = st->dir == DIR_INGRESS;

	/* ct_entry_alive */
	if ((e->flags & CT_F_CLOSING) != CT_F_CLOSING)
		ct_update_timeout(e, proto, tf, ingress, now);
	e->packets += 1;
	e->bytes += st->len;
	if (tf & (TCP_FLAG_FIN | TCP_FLAG_RST)) {
		/* ACTION_CLOSE */
		if ((tf & TCP_FLAG_RST) &&
		    !((e->rx_flags_seen & TCP_FLAG_SYN) && (e->tx_flags_seen & TCP_FLAG_SYN)))
			e->flags |= CT_F_CLOSING;
		else
			e->flags |= ingress ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
		if ((e->flags & CT_F_CLOSING) == CT_F_CLOSING)
			__ct_update_timeout(e, CT_CLOSE_TIMEOUT, tf, ingress, now);
	} else if ((tf & TCP_FLAG_SYN) && !(tf & TCP_FLAG_ACK) && (e->flags & CT_F_CLOSING)) {
		/* ACTION_CREATE on a closing entry */
		e->flags &= ~(CT_F_CLOSING | CT_F_SEEN_NON_SYN);
		e->rx_flags_seen = 0;
		e->tx_flags_seen = 0;
		ct_update_timeout(e, proto, tf, ingress, now);
		return CT_NEW;
	}
	return CT_ESTABLISHED;
}

/* ct_lookup_fill_state: the entry's proxy_redirect bit for the caller. */
static __always_inline __u8 ct_proxy_flag(const struct ct_entry *e)
{
	return (e->flags & CT_F_PROXY_REDIRECT) != 0;
}

static __always_inline struct ct_entry *ct_find(struct ct_key *key, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&cilium_ct_any, key);

	if (e && now < e->expires)
		return e;
	return 0;
}

/* The CT status of the packet in st (CT_NEW, CT_ESTABLISHED, CT_REPLY or CT_RELATED),
 * refreshing the entry it hits (__ct_lookup4/6 with SCOPE_BIDIR). */
static __always_inline int ct_lookup(struct verdict_state *st, __u64 now)
{
	const struct flow_tuple *t = &st->tuple;
	__u8 flags = st->dir == DIR_EGRESS ? TUPLE_F_OUT : TUPLE_F_IN;
	struct ct_key key = {};
	struct ct_entry *e;

	key.family = t->family;
	if (st->inner.valid) {
		/* The quoted packet travelled the other way: it is the original-direction
		 * tuple of an entry made by the opposite hook. */
		copy_addr16(key.saddr, st->inner.saddr);
		copy_addr16(key.daddr, st->inner.daddr);
		key.sport = st->inner.sport;
		key.dport = st->inner.dport;
		key.nexthdr = st->inner.proto;
		key.flags = flags ^ 1;
		e = ct_find(&key, now);
		if (e) {
			st->ct_proxy_redirect = ct_proxy_flag(e);
			return CT_RELATED;
		}
	}

	key.nexthdr = t->proto;
	copy_addr16(key.saddr, t->daddr);
	copy_addr16(key.daddr, t->saddr);
	key.sport = t->dport;
	key.dport = t->sport;
	key.flags = flags ^ 1;
	e = ct_find(&key, now);
	/* A reopened reverse entry is CT_NEW there: go on to the forward lookup. */
	if (e && ct_hit(e, st, now) == CT_ESTABLISHED) {
		st->ct_proxy_redirect = ct_proxy_flag(e);
		return CT_REPLY;
	}

	copy_addr16(key.saddr, t->saddr);
	copy_addr16(key.daddr, t->daddr);
	key.sport = t->sport;
	key.dport = t->dport;
	key.flags = flags;
	e = ct_find(&key, now);
	if (e) {
		st->ct_proxy_redirect = ct_proxy_flag(e);
		return ct_hit(e, st, now);
	}
	return CT_NEW;
}

/* Creates (or, for a reopened entry, overwrites) the entry of a CT_NEW packet that passed
 * policy (ct_create4/6). Returns 0 or a drop reason. */
static __always_inline int ct_create(const struct verdict_state *st, __u64 now)
{
	const struct flow_tuple *t = &st->tuple;
	struct ct_key key = {};
	struct ct_entry e = {};

	copy_addr16(key.saddr, t->saddr);
	copy_addr16(key.daddr, t->daddr);
	key.sport = t->sport;
	key.dport = t->dport;
	key.nexthdr = t->proto;
	key.flags = st->dir == DIR_EGRESS ? TUPLE_F_OUT : TUPLE_F_IN;
	key.family = t->family;

	/* ct_create4: seen_flags is SYN for TCP, whatever the packet carries. */
	ct_update_timeout(&e, t->proto, t->proto == IPPROTO_TCP ? TCP_FLAG_SYN : 0,
			  st->dir == DIR_INGRESS, now);
	/* ct_create_fill_entry: "Note if this is a proxy connection so that replies can be
	 * redirected back to the proxy" (the callers set proxy_redirect = proxy_port > 0). */
	if (st->verdict > 0)
		e.flags |= CT_F_PROXY_REDIRECT;
	e.packets = 1;
	e.bytes = st->len;
	e.src_sec_id = st->dir == DIR_EGRESS ? st->ep_identity : st->remote_identity;
	if (bpf_map_update_elem(&cilium_ct_any, &key, &e, BPF_ANY))
		return DROP_CT_CREATE_FAILED;
	return 0;
}

#endif
