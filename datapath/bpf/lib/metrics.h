/* Per-reason packet and byte counters (Cilium bpf/lib/metrics.h update_metrics).
 * Per-CPU with plain increments: no atomics (rbpf has none), exact per CPU. */
#ifndef VERDICT_METRICS_H
#define VERDICT_METRICS_H

#include "maps.h"

static __always_inline void update_metrics(__u8 reason, __u8 dir, __u32 len)
{
	struct metrics_key key = {};
	struct metrics_value *v, init = {};

	key.reason = reason;
	key.dir = dir;
	v = bpf_map_lookup_elem(&cilium_metrics, &key);
	if (v) {
		v->count += 1;
		v->bytes += len;
		return;
	}
	init.count = 1;
	init.bytes = len;
	bpf_map_update_elem(&cilium_metrics, &key, &init, BPF_NOEXIST);
}

#endif
