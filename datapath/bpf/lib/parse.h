/* Packet parsing: Ethernet, IPv4 (options), IPv6 (extension headers), fragments, and the
 * L4 fields policy and conntrack need (TCP/UDP/SCTP ports, TCP flags, ICMP/ICMPv6 type,
 * code and echo identifier, and the packet quoted by an ICMP error).
 *
 * Every access is checked against data_end through pkt_ptr(), which the verifier
 * requires anyway; a header that does not fit gives a defined drop reason, never an
 * out-of-bounds read. Cilium: bpf/lib/eth.h validate_ethertype, bpf/lib/ipv4.h,
 * bpf/lib/ipv6.h ipv6_hdrlen_offset, bpf/lib/conntrack.h ct_extract_ports4/6. */
#ifndef VERDICT_PARSE_H
#define VERDICT_PARSE_H

#include "common.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86DD
#define ETH_P_802_3_MIN 0x0600

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_NONE 59
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMP_FRAG_NEEDED 4 /* code of ICMP_DEST_UNREACH */
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

/* Cilium's IPV6_MAX_HEADERS: at most this many extension headers are skipped. */
#define IPV6_MAX_HEADERS 4
/* Headers must end within this many bytes of the frame start: keeps every offset
 * bounded for the verifier. Longer header chains are DROP_INVALID. */
#define MAX_HDR_OFF 1024

/* A pointer to len bytes at off, or NULL if they are not all inside the packet. */
static __always_inline __u8 *pkt_ptr(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *data_end = (__u8 *)(long)skb->data_end;

	if (off > MAX_HDR_OFF)
		return 0;
	if (data + off + len > data_end)
		return 0;
	return data + off;
}

static __always_inline __be16 load_be16(const __u8 *p)
{
	return *(const __be16 *)p;
}

/* Ports of an L4 header quoted inside an ICMP error (at least 8 bytes are quoted,
 * RFC 792/4443). A truncated quote leaves the inner tuple invalid: not RELATED. */
static __always_inline void parse_inner_l4(struct __sk_buff *skb, struct inner_tuple *in,
					   __u32 off)
{
	__u8 *p = pkt_ptr(skb, off, 8);

	if (!p)
		return;
	switch (in->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		in->sport = load_be16(p);
		in->dport = load_be16(p + 2);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* The quoted echo request was ours: its identifier is our sport. */
		if (p[0] == ICMP_ECHO || p[0] == ICMPV6_ECHO_REQUEST)
			in->sport = load_be16(p + 4);
		else if (p[0] == ICMP_ECHOREPLY || p[0] == ICMPV6_ECHO_REPLY)
			in->dport = load_be16(p + 4);
		break;
	}
	in->valid = 1;
}

/* The IP header quoted by an ICMP error at off. The inner IPv6 header's extension
 * headers are not walked (simplification): the quoted nexthdr is used as is. */
static __always_inline void parse_inner(struct __sk_buff *skb, struct verdict_state *st,
					__u32 off, __u8 family)
{
	struct inner_tuple *in = &st->inner;
	__u8 *p;

	if (family == FAMILY_IPV4) {
		p = pkt_ptr(skb, off, 20);
		if (!p)
			return;
		in->proto = p[9];
		copy_addr(in->saddr, p + 12, 1);
		copy_addr(in->daddr, p + 16, 1);
		parse_inner_l4(skb, in, off + ((p[0] & 0xf) << 2));
	} else {
		p = pkt_ptr(skb, off, 40);
		if (!p)
			return;
		in->proto = p[6];
		copy_addr16(in->saddr, p + 8);
		copy_addr16(in->daddr, p + 24);
		parse_inner_l4(skb, in, off + 40);
	}
}

static __always_inline int is_icmp_error(__u8 family, __u8 type)
{
	if (family == FAMILY_IPV4)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
		       type == ICMP_PARAMETERPROB;
	/* ICMPv6 error messages are types 1..4 (RFC 4443). */
	return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
}

/* L4 fields at off. Returns 0 or a drop reason. Other protocols have no ports.
 * family is a compile-time constant at each call site, so each entry keeps only the
 * code of its own family. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct verdict_state *st, __u32 off,
				    __u8 family)
{
	struct flow_tuple *t = &st->tuple;
	__u8 *p;

	switch (t->proto) {
	case IPPROTO_TCP:
		p = pkt_ptr(skb, off, 14);
		if (!p)
			return DROP_INVALID;
		t->tcp_flags = p[13];
		goto ports;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		p = pkt_ptr(skb, off, 4);
		if (!p)
			return DROP_INVALID;
ports:
		t->sport = load_be16(p);
		t->dport = load_be16(p + 2);
		st->policy_dport = t->dport;
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* ICMPv4 in IPv6 (or the reverse) is just an unknown protocol. */
		if ((t->proto == IPPROTO_ICMP) != (family == FAMILY_IPV4))
			return 0;
		p = pkt_ptr(skb, off, 8);
		if (!p)
			return DROP_INVALID;
		t->icmp_type = p[0];
		t->icmp_code = p[1];
		/* Policy keys carry the ICMP type in the port field (enable_icmp_rule). */
		st->policy_dport = bpf_htons(p[0]);
		/* Echo: the identifier plays the port, so request and reply form one CT
		 * flow (Cilium ct_extract_ports4 puts it in a port of the tuple). */
		if (p[0] == ICMP_ECHO || p[0] == ICMPV6_ECHO_REQUEST)
			t->sport = load_be16(p + 4);
		else if (p[0] == ICMP_ECHOREPLY || p[0] == ICMPV6_ECHO_REPLY)
			t->dport = load_be16(p + 4);
		else if (is_icmp_error(family, p[0]))
			parse_inner(skb, st, off + 8, family);
		return 0;
	}
	return 0;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct verdict_state *st)
{
	struct flow_tuple *t = &st->tuple;
	__u8 *p = pkt_ptr(skb, ETH_HLEN, 20);
	__u32 ihl;

	if (!p)
		return DROP_INVALID;
	ihl = (p[0] & 0xf) << 2;
	if ((p[0] >> 4) != 4 || ihl < 20)
		return DROP_INVALID;
	t->family = FAMILY_IPV4;
	t->proto = p[9];
	copy_addr(t->saddr, p + 12, 1);
	copy_addr(t->daddr, p + 16, 1);
	/* MF set or a non-zero offset: a fragment (bpf/lib/ipv4.h ipv4_is_fragment). */
	if (load_be16(p + 6) & bpf_htons(0x3fff)) {
		t->fragment = 1;
		return 0;
	}
	return parse_l4(skb, st, ETH_HLEN + ihl, FAMILY_IPV4);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct verdict_state *st)
{
	struct flow_tuple *t = &st->tuple;
	__u8 *p = pkt_ptr(skb, ETH_HLEN, 40);
	__u32 off = ETH_HLEN + 40;
	__u8 nh;
	int i;

	if (!p)
		return DROP_INVALID;
	if ((p[0] >> 4) != 6)
		return DROP_INVALID;
	t->family = FAMILY_IPV6;
	nh = p[6];
	copy_addr16(t->saddr, p + 8);
	copy_addr16(t->daddr, p + 24);

	/* Skip extension headers as bpf/lib/ipv6.h ipv6_hdrlen_offset does. A real loop
	 * (bounded, so the verifier accepts it): unrolled it was 4x the code. */
#pragma clang loop unroll(disable)
	for (i = 0; i < IPV6_MAX_HEADERS; i++) {
		switch (nh) {
		case IPPROTO_NONE:
			return DROP_INVALID_EXTHDR;
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_AH:
		case IPPROTO_FRAGMENT:
			p = pkt_ptr(skb, off, 8);
			if (!p)
				return DROP_INVALID;
			if (nh == IPPROTO_FRAGMENT) {
				/* Offset (13 bits) or M set: a fragment. Offset 0 with M clear
				 * is an atomic fragment, a whole packet (RFC 6946). */
				t->fragment = (load_be16(p + 2) & bpf_htons(0xfff9)) != 0;
				off += 8;
			} else if (nh == IPPROTO_AH) {
				off += ((__u32)p[1] + 2) << 2;
			} else {
				off += ((__u32)p[1] + 1) << 3;
			}
			nh = p[0];
			break;
		default:
			goto done;
		}
	}
	/* Cilium gives up after IPV6_MAX_HEADERS with DROP_INVALID_EXTHDR. */
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	    nh == IPPROTO_AH || nh == IPPROTO_FRAGMENT || nh == IPPROTO_NONE)
		return DROP_INVALID_EXTHDR;
done:
	t->proto = nh;
	if (t->fragment)
		return 0;
	return parse_l4(skb, st, off, FAMILY_IPV6);
}

#endif
