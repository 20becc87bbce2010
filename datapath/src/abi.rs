//! Rust mirrors of the C structs and constants of verdict's datapath
//! (`datapath/bpf/lib/*.h`), other than the policy key and entry, which live in
//! `verdict_sim::abi` (C: `datapath/bpf/lib/policy_abi.h`).
//!
//! Every struct is `#[repr(C)]`, made of integers and byte arrays with explicit padding,
//! so its bytes are exactly what the programs read and write. Sizes and offsets are
//! checked in the tests below (and against the object's BTF in `tests/programs.rs`).

/// Map names in `verdict.bpf.o`.
pub mod maps {
    pub const IPCACHE: &str = "cilium_ipcache_v2";
    pub const LXC: &str = "cilium_lxc";
    pub const POLICY: &str = "cilium_policy_v2";
    pub const CT: &str = "cilium_ct_any";
    /// The auth map (`lib/auth.h`): [`crate::abi::AuthKey`] → [`crate::abi::AuthInfo`].
    pub const AUTH: &str = "cilium_auth_map";
    pub const CLOCK: &str = "verdict_clock";
    pub const EVENTS: &str = "cilium_events";
    pub const METRICS: &str = "cilium_metrics";
    pub const SCRATCH: &str = "verdict_scratch";
    /// The prog array of tail calls; see [`crate::abi::calls`].
    pub const CALLS: &str = "cilium_calls";
}

/// Program names in `verdict.bpf.o`.
pub mod programs {
    /// Entry: a packet leaving a pod (the source endpoint's egress policy).
    pub const FROM_CONTAINER: &str = "cil_from_container";
    /// Entry: a packet arriving at a pod (the destination endpoint's ingress policy).
    pub const TO_CONTAINER: &str = "cil_to_container";
    /// Entry, host firewall: a packet leaving the host (the host endpoint's egress policy;
    /// `bpf/lib/host_firewall.h`).
    pub const FROM_HOST: &str = "cil_from_host";
    /// Entry, host firewall: a packet arriving at the host (its ingress policy).
    pub const TO_HOST: &str = "cil_to_host";
}

/// Tail-call slots of `cilium_calls` and the program each holds (statically initialised
/// in `verdict.bpf.c`).
pub mod calls {
    pub const IPV4: u32 = 0;
    pub const IPV6: u32 = 1;
    pub const POLICY: u32 = 2;
    pub const VERDICT: u32 = 3;
    pub const CT: u32 = 4;
    /// `(slot, program name)`, in slot order.
    pub const PROGRAMS: [(u32, &str); 5] = [
        (IPV4, "tail_handle_ipv4"),
        (IPV6, "tail_handle_ipv6"),
        (POLICY, "tail_policy"),
        (VERDICT, "tail_verdict"),
        (CT, "tail_ct"),
    ];
}

/// TC return codes.
pub const TC_ACT_OK: u64 = 0;
pub const TC_ACT_SHOT: u64 = 2;

/// Reserved identity for addresses with no ipcache entry.
pub const WORLD_ID: u32 = 2;

/// `FAMILY_*`: address families in ipcache, endpoint and CT keys.
pub const FAMILY_IPV4: u8 = 1;
pub const FAMILY_IPV6: u8 = 2;

/// `DIR_*`: Cilium's policy-verdict / metrics direction encoding.
pub const DIR_INGRESS: u8 = 1;
pub const DIR_EGRESS: u8 = 2;

/// `endpoint_info.flags`.
pub const EP_F_INGRESS_POLICY: u32 = 0x1;
pub const EP_F_EGRESS_POLICY: u32 = 0x2;
pub const EP_F_AUDIT: u32 = 0x4;
/// The node's host endpoint (Cilium's `ENDPOINT_F_HOST`): the host programs enforce it.
pub const EP_F_HOST: u32 = 0x8;

/// `ct_key.flags`.
pub const TUPLE_F_OUT: u8 = 0;
pub const TUPLE_F_IN: u8 = 1;

/// `ct_entry.flags`.
pub const CT_F_RX_CLOSING: u16 = 0x1;
pub const CT_F_TX_CLOSING: u16 = 0x2;
pub const CT_F_SEEN_NON_SYN: u16 = 0x4;
/// Cilium's `ct_entry.proxy_redirect`: replies of this connection go back to the proxy.
pub const CT_F_PROXY_REDIRECT: u16 = 0x8;

/// Monitor message types (the first byte of every event record).
pub const CILIUM_NOTIFY_DROP: u8 = 1;
pub const CILIUM_NOTIFY_TRACE: u8 = 4;
pub const CILIUM_NOTIFY_POLICY_VERDICT: u8 = 5;

/// Trace observation points (Cilium `bpf/lib/notify.h` `enum trace_point`).
pub const TRACE_TO_LXC: u8 = 0;
/// The packet was handed to the L7 proxy; the record's `ep_id` (Cilium's `dst_id`) is the
/// proxy port, 0 on the return path of a redirected connection.
pub const TRACE_TO_PROXY: u8 = 1;
pub const TRACE_FROM_LXC: u8 = 5;
/// A packet the host endpoint's ingress policy passed (Hubble `TO_HOST`, "to-host").
pub const TRACE_TO_HOST: u8 = 2;
/// A packet the host endpoint's egress policy passed (Hubble `FROM_HOST`, "from-host").
pub const TRACE_FROM_HOST: u8 = 7;

/// ipcache LPM prefix of a full-address lookup.
pub const IPCACHE_STATIC_PREFIX: u32 = 32;

/// `struct ipcache_key` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IpcacheKey {
    /// Bits after this field that must match: 32 static + the address prefix.
    pub prefixlen: u32,
    pub cluster_id: u16,
    pub pad: u8,
    pub family: u8,
    /// IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

/// `struct remote_endpoint_info` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RemoteEndpointInfo {
    pub sec_identity: u32,
    /// Network order.
    pub tunnel_endpoint: [u8; 4],
    pub node_id: u16,
    pub flags: u8,
    pub pad: u8,
}

/// `struct auth_key` (12 bytes, `lib/auth.h`; Cilium's `bpf/lib/common.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AuthKey {
    pub local_sec_label: u32,
    pub remote_sec_label: u32,
    /// 0 for the local node.
    pub remote_node_id: u16,
    pub auth_type: u8,
    pub pad: u8,
}

/// `struct auth_info` (8 bytes): the expiration in utime (ns >> 9).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AuthInfo {
    pub expiration: u64,
}

/// `struct endpoint_key` (20 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub pad: [u8; 3],
}

/// `struct endpoint_info` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EndpointInfo {
    pub ep_id: u32,
    pub sec_identity: u32,
    /// `EP_F_*`.
    pub flags: u32,
    pub pad: u32,
}

/// `struct ct_key` (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct CtKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Network order.
    pub sport: [u8; 2],
    /// Network order.
    pub dport: [u8; 2],
    pub nexthdr: u8,
    /// [`TUPLE_F_OUT`] or [`TUPLE_F_IN`].
    pub flags: u8,
    pub family: u8,
    pub pad: u8,
}

/// `struct ct_entry` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtEntry {
    /// Harness-clock ns from which the entry is dead.
    pub expires: u64,
    pub packets: u64,
    pub bytes: u64,
    pub src_sec_id: u32,
    /// `CT_F_*`.
    pub flags: u16,
    /// TCP flags seen at egress hooks (masked by `CT_REPORT_FLAGS`: SYN, FIN, RST).
    pub tx_flags_seen: u8,
    /// TCP flags seen at ingress hooks.
    pub rx_flags_seen: u8,
}

/// `struct metrics_key` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MetricsKey {
    /// Drop reason; 0 = forwarded.
    pub reason: u8,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub dir: u8,
    pub pad: [u8; 6],
}

/// `struct metrics_value` (16 bytes, one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MetricsValue {
    pub count: u64,
    pub bytes: u64,
}

/// `struct flow_tuple` (48 bytes): the parsed flow, carried by every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowTuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Network order; ICMP echo request: the identifier.
    pub sport: [u8; 2],
    /// Network order; ICMP echo reply: the identifier.
    pub dport: [u8; 2],
    pub family: u8,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub tcp_flags: u8,
    /// 1 for an IP fragment (ports unknown, zero).
    pub fragment: u8,
    /// `CT_*` status.
    pub ct_status: u8,
    pub is_reply: u8,
    pub pad: u32,
}

/// `struct inner_tuple` (40 bytes): the packet quoted by an ICMP error.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct InnerTuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub valid: u8,
    pub pad: [u8; 2],
}

/// `struct verdict_state` (128 bytes): the per-packet state in `verdict_scratch`,
/// handed between tail-called stages. Internal, mirrored for debugging.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VerdictState {
    pub tuple: FlowTuple,
    pub inner: InnerTuple,
    pub policy_dport: [u8; 2],
    pub dir: u8,
    pub match_type: u8,
    pub len: u32,
    pub ep_id: u32,
    pub ep_identity: u32,
    pub ep_flags: u32,
    pub remote_identity: u32,
    pub verdict: i32,
    pub cookie: u32,
    pub auth_type: u8,
    pub audited: u8,
    pub policy_checked: u8,
    /// The CT entry the lookup hit has `CT_F_PROXY_REDIRECT`.
    pub ct_proxy_redirect: u8,
    pub drop_reason: u32,
}

/// `policy_verdict_notify.flags` layout: dir:2, ipv6:1, match_type:3, audited:1.
pub const PV_F_IPV6_SHIFT: u8 = 2;
pub const PV_F_MATCH_SHIFT: u8 = 3;
pub const PV_F_AUDITED_SHIFT: u8 = 6;

/// `struct verdict_event` (96 bytes): every ring-buffer record (see `lib/events.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VerdictEvent {
    pub r#type: u8,
    pub subtype: u8,
    pub source: u16,
    pub hash: u32,
    pub timestamp: u64,
    pub len_orig: u32,
    pub src_label: u32,
    pub dst_label: u32,
    pub remote_label: u32,
    pub verdict: i32,
    /// Host order.
    pub dst_port: u16,
    pub proto: u8,
    pub flags: u8,
    pub auth_type: u8,
    pub reason: u8,
    pub ep_id: u16,
    pub cookie: u32,
    pub tuple: FlowTuple,
}

/// Plain-old-data ABI values: viewed as bytes for map writes, read back from bytes.
pub trait Pod: Copy + Default {
    /// The value's bytes, exactly as the programs see them.
    fn as_bytes(&self) -> &[u8];
    /// Reads a value from the start of `bytes`; `None` if it is too short.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

macro_rules! pod {
    ($($t:ty),* $(,)?) => {$(
        impl Pod for $t {
            fn as_bytes(&self) -> &[u8] {
                // SAFETY: repr(C), Copy, integers and byte arrays only, no implicit
                // padding (every size is asserted in the tests below).
                unsafe {
                    std::slice::from_raw_parts(
                        self as *const Self as *const u8,
                        std::mem::size_of::<Self>(),
                    )
                }
            }
            fn from_bytes(bytes: &[u8]) -> Option<Self> {
                if bytes.len() < std::mem::size_of::<Self>() {
                    return None;
                }
                // SAFETY: length checked; every bit pattern is a valid value of these
                // integer-only types; read_unaligned tolerates any alignment.
                Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Self) })
            }
        }
    )*};
}

pod!(
    IpcacheKey,
    RemoteEndpointInfo,
    AuthKey,
    AuthInfo,
    EndpointKey,
    EndpointInfo,
    CtKey,
    CtEntry,
    MetricsKey,
    MetricsValue,
    FlowTuple,
    InnerTuple,
    VerdictState,
    VerdictEvent,
);

/// The 16-byte address field of the ABI (IPv4 in the first 4 bytes) and its family.
pub fn addr_bytes(ip: std::net::IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        std::net::IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_IPV4)
        }
        std::net::IpAddr::V6(v6) => (v6.octets(), FAMILY_IPV6),
    }
}

impl IpcacheKey {
    /// The key of prefix `ip/prefix_len` (address bits only, not counting the static 32).
    pub fn new(ip: std::net::IpAddr, prefix_len: u8) -> Self {
        let (addr, family) = addr_bytes(ip);
        IpcacheKey {
            prefixlen: IPCACHE_STATIC_PREFIX + u32::from(prefix_len),
            cluster_id: 0,
            pad: 0,
            family,
            addr,
        }
    }
}

impl EndpointKey {
    pub fn new(ip: std::net::IpAddr) -> Self {
        let (addr, family) = addr_bytes(ip);
        EndpointKey {
            addr,
            family,
            pad: [0; 3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(size_of::<IpcacheKey>(), 24);
        assert_eq!(offset_of!(IpcacheKey, family), 7);
        assert_eq!(offset_of!(IpcacheKey, addr), 8);
        assert_eq!(size_of::<RemoteEndpointInfo>(), 12);
        assert_eq!(size_of::<AuthKey>(), 12);
        assert_eq!(offset_of!(AuthKey, remote_node_id), 8);
        assert_eq!(offset_of!(AuthKey, auth_type), 10);
        assert_eq!(size_of::<AuthInfo>(), 8);
        assert_eq!(size_of::<EndpointKey>(), 20);
        assert_eq!(size_of::<EndpointInfo>(), 16);
        assert_eq!(size_of::<CtKey>(), 40);
        assert_eq!(offset_of!(CtKey, nexthdr), 36);
        assert_eq!(size_of::<CtEntry>(), 32);
        assert_eq!(offset_of!(CtEntry, src_sec_id), 24);
        assert_eq!(size_of::<MetricsKey>(), 8);
        assert_eq!(size_of::<MetricsValue>(), 16);
        assert_eq!(size_of::<FlowTuple>(), 48);
        assert_eq!(offset_of!(FlowTuple, family), 36);
        assert_eq!(offset_of!(FlowTuple, ct_status), 42);
        assert_eq!(size_of::<InnerTuple>(), 40);
        assert_eq!(size_of::<VerdictState>(), 128);
        assert_eq!(offset_of!(VerdictState, inner), 48);
        assert_eq!(offset_of!(VerdictState, policy_dport), 88);
        assert_eq!(offset_of!(VerdictState, len), 92);
        assert_eq!(offset_of!(VerdictState, verdict), 112);
        assert_eq!(offset_of!(VerdictState, drop_reason), 124);
        assert_eq!(size_of::<VerdictEvent>(), 96);
        assert_eq!(offset_of!(VerdictEvent, timestamp), 8);
        assert_eq!(offset_of!(VerdictEvent, verdict), 32);
        assert_eq!(offset_of!(VerdictEvent, dst_port), 36);
        assert_eq!(offset_of!(VerdictEvent, flags), 39);
        assert_eq!(offset_of!(VerdictEvent, ep_id), 42);
        assert_eq!(offset_of!(VerdictEvent, cookie), 44);
        assert_eq!(offset_of!(VerdictEvent, tuple), 48);
    }

    #[test]
    fn pod_round_trips() {
        let k = IpcacheKey::new("10.0.0.1".parse().unwrap(), 32);
        assert_eq!(k.prefixlen, 64);
        assert_eq!(IpcacheKey::from_bytes(k.as_bytes()), Some(k));
        assert_eq!(IpcacheKey::from_bytes(&[0; 3]), None);
    }
}
