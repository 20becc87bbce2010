/* An object the loader must refuse with a clear error (datapath/tests/emulator.rs):
 * a program that uses global data (.bss), which neither backend supports. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u32 hits;

SEC("tc")
int count_hits(struct __sk_buff *skb)
{
	hits += 1;
	return hits;
}

char LICENSE[] SEC("license") = "GPL";
