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
 *   passed is treated as absent: that is Cilium's CT garbage collector run before every
 *   lookup, which keeps both backends deterministic. A NEW packet that passes
 *   overwrites it.
 * - Lifetimes are Cilium's defaults (bpf/node_config.h, pkg/defaults):
 *   CT_CONNECTION_LIFETIME_TCP 21600 s, CT_CONNECTION_LIFETIME_NONTCP 60 s,
 *   CT_SYN_TIMEOUT 60 s (TCP until a non-SYN packet is seen), CT_CLOSE_TIMEOUT 10 s.
 * - TCP close, simplified from __ct_lookup's ACTION_CLOSE: FIN marks the packet's side
 *   closing (tx for the original direction, rx for replies), RST marks both (Cilium does
 *   that only before both SYNs were seen, otherwise per side). When both sides are
 *   closing the entry gets CT_CLOSE_TIMEOUT once and is not refreshed again. A SYN in
 *   the original direction on a closing entry re-opens it (flags cleared) and reports
 *   CT_REOPENED, which is policy-checked and notified like CT_NEW (ACTION_CREATE).
 * - ICMP errors that quote no tracked flow are looked up by their own tuple (ports 0). */
#ifndef VERDICT_CONNTRACK_H
#define VERDICT_CONNTRACK_H

#include "maps.h"
#include "parse.h"

#define CT_CONNECTION_LIFETIME_TCP 21600
#define CT_CONNECTION_LIFETIME_NONTCP 60
#define CT_SYN_TIMEOUT 60
#define CT_CLOSE_TIMEOUT 10

#define CT_F_CLOSING (CT_F_RX_CLOSING | CT_F_TX_CLOSING)

static __always_inline __u64 ct_lifetime_ns(__u8 proto, __u16 flags)
{
	if (proto != IPPROTO_TCP)
		return CT_CONNECTION_LIFETIME_NONTCP * NSEC_PER_SEC;
	if (flags & CT_F_SEEN_NON_SYN)
		return CT_CONNECTION_LIFETIME_TCP * NSEC_PER_SEC;
	return CT_SYN_TIMEOUT * NSEC_PER_SEC;
}

/* Refreshes a live entry hit by a packet; returns the CT status to report. A
 * bpf-to-bpf subprogram: two call sites, one copy of the code. */
static __noinline int ct_update(struct ct_entry *e, const struct verdict_state *st,
				     __u64 now, int is_reply)
{
	__u16 old = e->flags, f = old;
	__u8 tf = st->tuple.tcp_flags;
	int status = is_reply ? CT_REPLY : CT_ESTABLISHED;

	e->packets += 1;
	e->bytes += st->len;
	if (st->tuple.proto == IPPROTO_TCP) {
		if ((tf & TCP_FLAG_SYN) && (f & CT_F_CLOSING) && !is_reply) {
			f &= ~CT_F_CLOSING;
			status = CT_REOPENED;
		}
		if (!(tf & TCP_FLAG_SYN))
			f |= CT_F_SEEN_NON_SYN;
		if (tf & TCP_FLAG_RST)
			f |= CT_F_CLOSING;
		else if (tf & TCP_FLAG_FIN)
			f |= is_reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
	}
	if ((f & CT_F_CLOSING) == CT_F_CLOSING) {
		if ((old & CT_F_CLOSING) != CT_F_CLOSING)
			e->expires = now + CT_CLOSE_TIMEOUT * NSEC_PER_SEC;
	} else {
		e->expires = now + ct_lifetime_ns(st->tuple.proto, f);
	}
	e->flags = f;
	return status;
}

static __always_inline struct ct_entry *ct_find(struct ct_key *key, __u64 now)
{
	struct ct_entry *e = bpf_map_lookup_elem(&cilium_ct_any, key);

	if (e && now < e->expires)
		return e;
	return 0;
}

/* The CT status of the packet in st (CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED or
 * CT_REOPENED), refreshing the entry it hits. */
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
		if (ct_find(&key, now))
			return CT_RELATED;
	}

	key.nexthdr = t->proto;
	copy_addr16(key.saddr, t->daddr);
	copy_addr16(key.daddr, t->saddr);
	key.sport = t->dport;
	key.dport = t->sport;
	key.flags = flags ^ 1;
	e = ct_find(&key, now);
	if (e)
		return ct_update(e, st, now, 1);

	copy_addr16(key.saddr, t->saddr);
	copy_addr16(key.daddr, t->daddr);
	key.sport = t->sport;
	key.dport = t->dport;
	key.flags = flags;
	e = ct_find(&key, now);
	if (e)
		return ct_update(e, st, now, 0);
	return CT_NEW;
}

/* Creates the entry of a CT_NEW packet that passed policy. Returns 0 or a drop reason. */
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

	if (t->proto == IPPROTO_TCP && !(t->tcp_flags & TCP_FLAG_SYN))
		e.flags = CT_F_SEEN_NON_SYN;
	e.expires = now + ct_lifetime_ns(t->proto, e.flags);
	e.packets = 1;
	e.bytes = st->len;
	e.src_sec_id = st->dir == DIR_EGRESS ? st->ep_identity : st->remote_identity;
	if (bpf_map_update_elem(&cilium_ct_any, &key, &e, BPF_ANY))
		return DROP_CT_CREATE_FAILED;
	return 0;
}

#endif
