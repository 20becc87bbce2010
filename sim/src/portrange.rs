//! Port ranges as masked ports: Cilium's `PortRangeToMaskedPorts` (`pkg/policy/portrange.go`,
//! spec §4.3). A policy-map key cannot hold a range, only a port and a prefix of its bits, so a
//! range `start..=end` becomes the minimal set of aligned power-of-two blocks that cover it.
//!
//! This module owns only that arithmetic; `mapstate` turns masked ports into keys.

use std::fmt;

/// A port with its `prefix` high-order bits significant: it covers
/// `port ..= port | !mask`. Prefix 16 is an exact port, prefix 0 every port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaskedPort {
    /// The first port of the block (`port & mask`).
    pub port: u16,
    /// Number of significant high-order bits, 0..=16.
    pub prefix: u8,
}

impl MaskedPort {
    /// The wildcard: every port.
    pub const WILDCARD: MaskedPort = MaskedPort { port: 0, prefix: 0 };

    /// A block of `port` with the lowest `wildcard_bits` bits wildcarded (Cilium's
    /// `maskedPort`).
    pub fn new(port: u16, wildcard_bits: u32) -> MaskedPort {
        let mask = mask_of(16 - wildcard_bits.min(16) as u8);
        MaskedPort {
            port: port & mask,
            prefix: (16 - wildcard_bits.min(16)) as u8,
        }
    }

    /// A single port.
    pub fn exact(port: u16) -> MaskedPort {
        MaskedPort { port, prefix: 16 }
    }

    /// The bit mask of the significant bits.
    pub fn mask(self) -> u16 {
        mask_of(self.prefix)
    }

    /// The last port the block covers.
    pub fn end(self) -> u16 {
        self.port | !self.mask()
    }

    pub fn contains(self, port: u16) -> bool {
        port & self.mask() == self.port
    }

    /// Whether this block contains every port of `other` (Cilium's `Key.Covers` port part).
    pub fn covers(self, other: MaskedPort) -> bool {
        self.prefix <= other.prefix && self.contains(other.port)
    }
}

/// Prints `*` for the wildcard, `80` for an exact port, `80-83` for a block.
impl fmt::Display for MaskedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            0 => f.write_str("*"),
            16 => write!(f, "{}", self.port),
            _ => write!(f, "{}-{}", self.port, self.end()),
        }
    }
}

fn mask_of(prefix: u8) -> u16 {
    match prefix {
        0 => 0,
        p => u16::MAX << (16 - p.min(16) as u32),
    }
}

/// The masked ports covering `start..=end`, sorted by port (spec §4.3).
///
/// - `start == 0`: the wildcard (a policy port 0 means "every port", whatever the end; Cilium
///   decides this before calling `PortRangeToMaskedPorts`).
/// - `end <= start`: the single port `start`.
/// - otherwise the minimal cover by aligned blocks, approached from both ends towards the
///   highest differing bit, as `pkg/policy/portrange.go` does.
pub fn port_range_to_masked_ports(start: u16, end: u16) -> Vec<MaskedPort> {
    if start == 0 {
        return vec![MaskedPort::WILDCARD];
    }
    if end <= start {
        return vec![MaskedPort::exact(start)];
    }
    let common_bits = (start ^ end).leading_zeros();
    let tail_mask = u16::MAX >> common_bits;
    // All bits after the common prefix are 0 in start and 1 in end: one block.
    if start & tail_mask == 0 && !end & tail_mask == 0 {
        return vec![MaskedPort::new(start, 16 - common_bits)];
    }
    // The highest differing bit: blocks approach it from both sides.
    let middle_bit = 15 - common_bits;
    let middle = 1u16 << middle_bit;
    let mut out = Vec::new();
    // From the start up to the middle: the start's trailing zeros, then every 0-bit below
    // the middle bit set, with the lower bits wildcarded.
    let mut bit = (start | middle).trailing_zeros();
    out.push(MaskedPort::new(start, bit));
    bit += 1;
    while bit < middle_bit {
        if start & (1 << bit) == 0 {
            out.push(MaskedPort::new(start.wrapping_add(1 << bit), bit));
        }
        bit += 1;
    }
    // From the end down to the middle: the end's trailing ones, then every 1-bit below the
    // middle bit cleared.
    let mut bit = (!end | middle).trailing_zeros();
    out.push(MaskedPort::new(end, bit));
    bit += 1;
    while bit < middle_bit {
        if end & (1 << bit) != 0 {
            out.push(MaskedPort::new(end.wrapping_sub(1 << bit), bit));
        }
        bit += 1;
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mp(port: u16, prefix: u8) -> MaskedPort {
        MaskedPort { port, prefix }
    }

    // spec §4.3 examples.
    #[test]
    fn spec_4_3_examples() {
        assert_eq!(port_range_to_masked_ports(80, 83), vec![mp(80, 14)]);
        assert_eq!(port_range_to_masked_ports(16, 31), vec![mp(16, 12)]);
        assert_eq!(
            port_range_to_masked_ports(80, 444),
            vec![
                mp(80, 12),
                mp(96, 11),
                mp(128, 9),
                mp(256, 9),
                mp(384, 11),
                mp(416, 12),
                mp(432, 13),
                mp(440, 14),
                mp(444, 16)
            ]
        );
        assert_eq!(
            port_range_to_masked_ports(8080, 8090),
            vec![mp(8080, 13), mp(8088, 15), mp(8090, 16)]
        );
        assert_eq!(
            port_range_to_masked_ports(1024, 65535),
            vec![
                mp(1024, 6),
                mp(2048, 5),
                mp(4096, 4),
                mp(8192, 3),
                mp(16384, 2),
                mp(32768, 1)
            ]
        );
        assert_eq!(port_range_to_masked_ports(1, 65535).len(), 16);
    }

    #[test]
    fn wildcard_and_single_port() {
        assert_eq!(port_range_to_masked_ports(0, 0), vec![MaskedPort::WILDCARD]);
        assert_eq!(
            port_range_to_masked_ports(0, 65535),
            vec![MaskedPort::WILDCARD]
        );
        assert_eq!(
            port_range_to_masked_ports(0, 100),
            vec![MaskedPort::WILDCARD]
        );
        assert_eq!(port_range_to_masked_ports(80, 80), vec![mp(80, 16)]);
        assert_eq!(port_range_to_masked_ports(80, 10), vec![mp(80, 16)]);
        assert_eq!(
            port_range_to_masked_ports(65535, 65535),
            vec![mp(65535, 16)]
        );
    }

    #[test]
    fn display_forms() {
        assert_eq!(mp(80, 14).to_string(), "80-83");
        assert_eq!(mp(80, 16).to_string(), "80");
        assert_eq!(MaskedPort::WILDCARD.to_string(), "*");
        assert!(mp(0, 0).covers(mp(80, 14)));
        assert!(mp(80, 14).covers(mp(81, 16)));
        assert!(!mp(80, 16).covers(mp(80, 14)));
    }

    proptest! {
        // Every port of [start, end] is covered by exactly one key, and no port outside.
        #[test]
        fn masked_ports_cover_the_range_exactly(start in 1u16..=65535, end in 1u16..=65535) {
            let keys = port_range_to_masked_ports(start, end);
            let last = end.max(start);
            // Blocks are aligned and sorted; walk them as a partition.
            let mut next = start as u32;
            for k in &keys {
                prop_assert_eq!(k.port & !k.mask(), 0, "unaligned block {:?}", k);
                prop_assert_eq!(k.port as u32, next, "gap or overlap at {:?}", k);
                next = k.end() as u32 + 1;
            }
            prop_assert_eq!(next, last as u32 + 1);
            // Spot-check membership at the edges.
            for p in [start.saturating_sub(1), start, last, last.saturating_add(1)] {
                let n = keys.iter().filter(|k| k.contains(p)).count();
                let inside = p >= start && p <= last;
                prop_assert_eq!(n, usize::from(inside), "port {}", p);
            }
        }
    }
}
