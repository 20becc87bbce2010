//! The policy-map ABI shared with the BPF programs: `struct policy_key` and
//! `struct policy_entry` in Cilium's 1.19+ layout (spec §5.1), mirrored once here.
//!
//! The C side is `datapath/bpf/lib/policy_abi.h`; a test in `verdict-datapath` checks
//! sizes and offsets against the BTF of the committed object.
//!
//! One deliberate difference from Cilium: Cilium gives every endpoint its own LPM map
//! (`cilium_policy_v2`, one per endpoint). We keep one LPM map for all endpoints and put
//! the endpoint id in front of Cilium's key as 32 more static prefix bits
//! ([`EndpointPolicyKey`]). A lookup always carries the full endpoint id, so longest-prefix
//! matching inside one endpoint's slice is exactly Cilium's per-map lookup.

/// Bits of `policy_key` that are always matched: `sec_label` (32) + the egress byte (8).
/// Cilium: `StaticPrefixBits = 40` (`pkg/maps/policymap/policymap.go`).
pub const POLICY_STATIC_PREFIX_BITS: u32 = 40;
/// Cilium's `POLICY_FULL_PREFIX`: static bits + protocol (8) + port (16).
pub const POLICY_FULL_PREFIX: u32 = 64;
/// The endpoint-id bits we put in front of Cilium's key.
pub const ENDPOINT_PREFIX_BITS: u32 = 32;

/// Cilium's `struct policy_key` (12 bytes). `prefixlen` counts bits after itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PolicyKey {
    /// LPM prefix length in host order: 40, 48, or 48 + port prefix (49..=64).
    pub prefixlen: u32,
    /// Remote security identity, host order; 0 is the L3 wildcard.
    pub sec_label: u32,
    /// Bit 0: 1 = egress, 0 = ingress.
    pub egress: u8,
    /// IP protocol; 0 is the wildcard.
    pub protocol: u8,
    /// Destination port (or ICMP type) in **network order**.
    pub dport: [u8; 2],
}

/// The key of our single policy LPM map: the endpoint id, then Cilium's key (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EndpointPolicyKey {
    /// LPM prefix length: [`ENDPOINT_PREFIX_BITS`] + Cilium's prefix length.
    pub prefixlen: u32,
    /// Local endpoint id (Cilium's `LXC_ID`), **network order** so that it sorts first in
    /// the trie's big-endian bit order (any fixed encoding works; this one is explicit).
    pub ep_id: [u8; 4],
    pub sec_label: u32,
    pub egress: u8,
    pub protocol: u8,
    pub dport: [u8; 2],
}

/// `policy_entry.flags` bit 0: deny entry.
pub const POLICY_ENTRY_DENY: u8 = 1 << 0;
/// `policy_entry.flags` bits 3..=7: `lpm_prefix_length` (protocol + port prefix bits, 0..=24).
pub const POLICY_ENTRY_LPM_SHIFT: u8 = 3;
/// `policy_entry.auth` bit 7: the auth type was set explicitly.
pub const POLICY_ENTRY_EXPLICIT_AUTH: u8 = 1 << 7;

/// Precedence of a deny entry: the maximum (1.19+ tests `precedence == 0xFFFFFFFF`).
pub const PRECEDENCE_DENY: u32 = u32::MAX;
/// Precedence of a plain allow in tier Normal, priority 0: the upper 24 bits are the
/// inverted priority level (0 → 0xFFFFFF), the low byte 1 means "allow, no redirect".
pub const PRECEDENCE_ALLOW: u32 = 0xFFFF_FF01;

/// Cilium's 1.19+ `struct policy_entry` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PolicyEntry {
    /// Proxy port in network order; 0 means no redirect.
    pub proxy_port: [u8; 2],
    /// deny:1, reserved:2, lpm_prefix_length:5.
    pub flags: u8,
    /// auth_type:7, has_explicit_auth_type:1.
    pub auth: u8,
    /// Higher wins; [`PRECEDENCE_DENY`] for deny.
    pub precedence: u32,
    /// Policy-log cookie, passed to verdict events.
    pub cookie: u32,
}

impl PolicyEntry {
    pub fn is_deny(&self) -> bool {
        self.flags & POLICY_ENTRY_DENY != 0
    }
    pub fn lpm_prefix_length(&self) -> u8 {
        self.flags >> POLICY_ENTRY_LPM_SHIFT
    }
    pub fn proxy_port(&self) -> u16 {
        u16::from_be_bytes(self.proxy_port)
    }
    pub fn auth_type(&self) -> u8 {
        self.auth & 0x7f
    }
}

/// Views a `#[repr(C)]` ABI value as bytes, for map writers.
pub trait AsBytes: Copy {
    fn as_bytes(&self) -> &[u8];
}

macro_rules! plain_old_data {
    ($($t:ty),*) => {$(
        impl AsBytes for $t {
            fn as_bytes(&self) -> &[u8] {
                // SAFETY: the type is repr(C), Copy, and made only of integers and byte arrays
                // with no padding (sizes are checked in the tests below).
                unsafe {
                    std::slice::from_raw_parts(self as *const Self as *const u8, std::mem::size_of::<Self>())
                }
            }
        }
    )*};
}
plain_old_data!(PolicyKey, EndpointPolicyKey, PolicyEntry);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_cilium() {
        // spec §5.1: policy_key is 12 bytes; 1.19+ policy_entry is 12 bytes.
        assert_eq!(size_of::<PolicyKey>(), 12);
        assert_eq!(offset_of!(PolicyKey, sec_label), 4);
        assert_eq!(offset_of!(PolicyKey, egress), 8);
        assert_eq!(offset_of!(PolicyKey, protocol), 9);
        assert_eq!(offset_of!(PolicyKey, dport), 10);
        assert_eq!(size_of::<EndpointPolicyKey>(), 16);
        assert_eq!(offset_of!(EndpointPolicyKey, sec_label), 8);
        assert_eq!(size_of::<PolicyEntry>(), 12);
        assert_eq!(offset_of!(PolicyEntry, flags), 2);
        assert_eq!(offset_of!(PolicyEntry, auth), 3);
        assert_eq!(offset_of!(PolicyEntry, precedence), 4);
        assert_eq!(offset_of!(PolicyEntry, cookie), 8);
    }
}
