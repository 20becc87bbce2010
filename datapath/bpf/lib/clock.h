/* The one time source of the datapath: the virtual clock the harness writes into
 * verdict_clock[0]. Cilium reads bpf_ktime_get_ns / bpf_mono_now (bpf/lib/time.h);
 * that is wall time and would make kernel and emulator runs differ. */
#ifndef VERDICT_CLOCK_H
#define VERDICT_CLOCK_H

#include "maps.h"

#define NSEC_PER_SEC 1000000000ULL

static __always_inline __u64 clock_now_ns(void)
{
	__u32 zero = 0;
	__u64 *now = bpf_map_lookup_elem(&verdict_clock, &zero);

	return now ? *now : 0;
}

#endif
