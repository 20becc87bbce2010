/* Compile-time checks that the C layouts match the Rust mirrors (datapath/src/abi.rs,
 * sim/src/abi.rs). A change here must change both. */
#ifndef VERDICT_ABI_CHECK_H
#define VERDICT_ABI_CHECK_H

#include "maps.h"
#include "events.h"
#include "auth.h"

#define ABI_SIZE(t, n) _Static_assert(sizeof(t) == (n), "size of " #t)
#define ABI_OFF(t, f, n) _Static_assert(__builtin_offsetof(t, f) == (n), "offset of " #t "." #f)

ABI_SIZE(struct endpoint_policy_key, 16);
ABI_SIZE(struct policy_entry, 12);
ABI_SIZE(struct ipcache_key, 24);
ABI_OFF(struct ipcache_key, addr, 8);
ABI_SIZE(struct remote_endpoint_info, 12);
ABI_SIZE(struct endpoint_key, 20);
ABI_SIZE(struct endpoint_info, 16);
ABI_SIZE(struct ct_key, 40);
ABI_OFF(struct ct_key, nexthdr, 36);
ABI_SIZE(struct ct_entry, 32);
ABI_OFF(struct ct_entry, src_sec_id, 24);
ABI_SIZE(struct auth_key, 12);
ABI_OFF(struct auth_key, remote_node_id, 8);
ABI_OFF(struct auth_key, auth_type, 10);
ABI_SIZE(struct auth_info, 8);
ABI_SIZE(struct metrics_key, 8);
ABI_SIZE(struct metrics_value, 16);
ABI_SIZE(struct flow_tuple, 48);
ABI_OFF(struct flow_tuple, family, 36);
ABI_OFF(struct flow_tuple, ct_status, 42);
ABI_SIZE(struct inner_tuple, 40);
ABI_SIZE(struct verdict_state, 128);
ABI_OFF(struct verdict_state, inner, 48);
ABI_OFF(struct verdict_state, policy_dport, 88);
ABI_OFF(struct verdict_state, len, 92);
ABI_OFF(struct verdict_state, verdict, 112);
ABI_OFF(struct verdict_state, drop_reason, 124);
ABI_SIZE(struct verdict_event, 96);
ABI_OFF(struct verdict_event, timestamp, 8);
ABI_OFF(struct verdict_event, verdict, 32);
ABI_OFF(struct verdict_event, dst_port, 36);
ABI_OFF(struct verdict_event, flags, 39);
ABI_OFF(struct verdict_event, ep_id, 42);
ABI_OFF(struct verdict_event, cookie, 44);
ABI_OFF(struct verdict_event, tuple, 48);

#endif
