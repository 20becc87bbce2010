/* Test object for the loader and the rbpf emulator (datapath/tests/emulator.rs).
 * Exercises every feature the emulator must get right: BTF-defined maps of each
 * supported type, a statically initialised prog array, the __sk_buff data/data_end
 * rewrite (also through a subprogram and a stack spill), bpf-to-bpf calls, tail calls
 * and ring-buffer records. Build: tools/build-bpf.sh, or
 * clang -O2 -g -target bpf -mcpu=v3 -I/usr/include/x86_64-linux-gnu -c emu_test.bpf.c */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cidr_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 16);
} seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct event {
	__u32 daddr;
	__u32 verdict;
	__u32 len;
	__u32 stage;
};

int stage2(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int(void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&stage2 },
};

/* Not inlined: checks that ctx passed as an argument is still rewritten. */
static __attribute__((noinline)) int load_daddr(struct __sk_buff *skb, __u32 *daddr)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	*daddr = ip->daddr;
	return 0;
}

static __attribute__((noinline)) __u32 bump(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);

	if (!c)
		return 0;
	*c += 1;
	return (__u32)*c;
}

SEC("tc")
int entry(struct __sk_buff *skb)
{
	struct lpm_v4_key key = { .prefixlen = 32 };
	struct event ev = {};
	__u32 daddr = 0;
	__u32 *verdict;
	__u64 one = 1, *old;

	if (load_daddr(skb, &daddr) < 0) {
		bump(0);
		return 2; /* TC_ACT_SHOT */
	}
	__builtin_memcpy(key.addr, &daddr, 4);
	verdict = bpf_map_lookup_elem(&cidr_map, &key);
	ev.daddr = daddr;
	ev.verdict = verdict ? *verdict : 0xffffffff;
	ev.len = skb->len;
	ev.stage = 1;
	bump(verdict ? 1 : 2);
	old = bpf_map_lookup_elem(&seen, &daddr);
	if (old)
		*old += 1;
	else
		bpf_map_update_elem(&seen, &daddr, &one, BPF_NOEXIST);
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	if (verdict && *verdict == 7) {
		skb->cb[0] = 42;
		bpf_tail_call(skb, &jumps, 1);
		return 3; /* only when the tail call fails */
	}
	return verdict ? (int)*verdict : 0;
}

SEC("tc")
int stage2(struct __sk_buff *skb)
{
	struct event ev = { .stage = 2, .len = skb->len, .verdict = skb->cb[0] };
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	ev.daddr = (__u32)(data_end - data);
	bpf_ringbuf_output(&events, &ev, sizeof(ev), 0);
	bump(3);
	return 100 + skb->cb[0];
}

/* Calls a helper the emulator does not provide. */
SEC("tc")
int uses_unknown_helper(struct __sk_buff *skb)
{
	return bpf_get_prandom_u32() & 1;
}

/* Tail-calls itself through slot 0 (filled by the test) until the kernel's limit stops it. */
SEC("tc")
int loop_forever(struct __sk_buff *skb)
{
	skb->cb[1] += 1;
	bpf_tail_call(skb, &jumps, 0);
	return skb->cb[1];
}

char LICENSE[] SEC("license") = "GPL";
