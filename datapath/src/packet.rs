//! Deterministic test packets: Ethernet + IPv4/IPv6 (IPv6 extension headers, IPv4 and
//! IPv6 fragments) + TCP/UDP/SCTP/ICMP/ICMPv6, with correct checksums (IPv4 header,
//! TCP/UDP/ICMPv6 pseudo-header sums, ICMP, SCTP CRC32c), for tests and the harness.
//!
//! The same inputs always give the same bytes: fixed MACs, IP id 0 unless a fragment
//! sets one, TTL 64, TCP sequence numbers from the caller.

use std::net::IpAddr;

/// Source and destination MACs of every frame (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// The transport part of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 (by the packet's family). `rest` is bytes 4..8 of the header
    /// (identifier and sequence for echo).
    Icmp {
        icmp_type: u8,
        code: u8,
        rest: [u8; 4],
    },
    /// Any other protocol: the payload follows the IP header directly.
    Other {
        proto: u8,
    },
}

impl L4 {
    pub fn tcp(sport: u16, dport: u16, flags: u8) -> L4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            seq: 0,
            ack: 0,
        }
    }
    pub fn udp(sport: u16, dport: u16) -> L4 {
        L4::Udp { sport, dport }
    }
    pub fn sctp(sport: u16, dport: u16) -> L4 {
        L4::Sctp { sport, dport }
    }
    /// An echo request (ICMP 8 / ICMPv6 128 is chosen by [`Packet`]'s family through
    /// [`Packet::echo_request`]); here the raw type is given.
    pub fn icmp(icmp_type: u8, code: u8, id: u16, seq: u16) -> L4 {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        L4::Icmp {
            icmp_type,
            code,
            rest,
        }
    }
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Tcp { .. } => IPPROTO_TCP,
            L4::Udp { .. } => IPPROTO_UDP,
            L4::Sctp { .. } => IPPROTO_SCTP,
            L4::Icmp { .. } if v6 => IPPROTO_ICMPV6,
            L4::Icmp { .. } => IPPROTO_ICMP,
            L4::Other { proto } => *proto,
        }
    }
}

/// An IPv6 extension header placed between the fixed header and the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// Hop-by-hop options, 8 bytes of padding options.
    HopByHop,
    /// Routing header type 0 with no addresses (8 bytes).
    Routing,
    /// Destination options, `len8` extra 8-byte units (hdr ext len field).
    DestOpts { len8: u8 },
    /// Authentication header (12 bytes + 4 of ICV: length field 2).
    Auth,
}

impl ExtHeader {
    fn proto(self) -> u8 {
        match self {
            ExtHeader::HopByHop => 0,
            ExtHeader::Routing => 43,
            ExtHeader::DestOpts { .. } => 60,
            ExtHeader::Auth => 51,
        }
    }
    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            ExtHeader::HopByHop => vec![next, 0, 1, 4, 0, 0, 0, 0],
            ExtHeader::Routing => vec![next, 0, 0, 0, 0, 0, 0, 0],
            ExtHeader::DestOpts { len8 } => {
                let mut b = vec![0u8; 8 * (usize::from(len8) + 1)];
                b[0] = next;
                b[1] = len8;
                b[2] = 1; // PadN covering the rest
                b[3] = (b.len() - 4) as u8;
                b
            }
            ExtHeader::Auth => {
                let mut b = vec![0u8; 16];
                b[0] = next;
                b[1] = 2; // (2 + 2) * 4 = 16 bytes
                b
            }
        }
    }
}

/// Fragmentation of a packet: offset in 8-byte units; `more` is the MF / M flag.
/// A fragment with a non-zero offset carries only payload, no transport header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    pub offset: u16,
    pub more: bool,
}

/// A packet to build. Fields are public; the constructors cover the common shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    pub payload: Vec<u8>,
    /// IPv6 only; ignored for IPv4.
    pub ext_headers: Vec<ExtHeader>,
    pub fragment: Option<Fragment>,
}

impl Packet {
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Packet {
        Packet {
            src,
            dst,
            l4,
            payload: Vec::new(),
            ext_headers: Vec::new(),
            fragment: None,
        }
    }
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Packet {
        Packet::new(src, dst, L4::tcp(sport, dport, flags))
    }
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Packet {
        Packet::new(src, dst, L4::udp(sport, dport))
    }
    pub fn sctp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Packet {
        Packet::new(src, dst, L4::sctp(sport, dport))
    }
    /// ICMP echo request (type 8, or 128 for IPv6).
    pub fn echo_request(src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Packet {
        let t = if src.is_ipv6() { 128 } else { 8 };
        Packet::new(src, dst, L4::icmp(t, 0, id, seq))
    }
    /// ICMP echo reply (type 0, or 129 for IPv6).
    pub fn echo_reply(src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Packet {
        let t = if src.is_ipv6() { 129 } else { 0 };
        Packet::new(src, dst, L4::icmp(t, 0, id, seq))
    }
    /// An ICMP error from `src` to `dst` quoting `quoted` (its IP header plus the first
    /// 8 bytes after it, RFC 792's minimum; IPv6 quotes the same amount here).
    pub fn icmp_error(
        src: IpAddr,
        dst: IpAddr,
        icmp_type: u8,
        code: u8,
        quoted: &Packet,
    ) -> Packet {
        let l3 = quoted.l3_bytes();
        let keep = if quoted.src.is_ipv6() { 40 } else { 20 } + 8;
        let mut p = Packet::new(
            src,
            dst,
            L4::Icmp {
                icmp_type,
                code,
                rest: [0; 4],
            },
        );
        p.payload = l3[..keep.min(l3.len())].to_vec();
        p
    }
    pub fn with_payload(mut self, payload: &[u8]) -> Packet {
        self.payload = payload.to_vec();
        self
    }
    pub fn with_ext_headers(mut self, ext: &[ExtHeader]) -> Packet {
        self.ext_headers = ext.to_vec();
        self
    }
    pub fn with_fragment(mut self, fragment: Fragment) -> Packet {
        self.fragment = Some(fragment);
        self
    }

    /// The L4 header and payload (what follows the IP header and extension headers),
    /// with its checksum.
    fn l4_bytes(&self) -> Vec<u8> {
        let v6 = self.src.is_ipv6();
        if matches!(self.fragment, Some(f) if f.offset != 0) {
            return self.payload.clone();
        }
        let mut b = match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
            } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&seq.to_be_bytes());
                h[8..12].copy_from_slice(&ack.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = *flags;
                h[14..16].copy_from_slice(&65535u16.to_be_bytes());
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                let len = (8 + self.payload.len()) as u16;
                h[4..6].copy_from_slice(&len.to_be_bytes());
                h
            }
            L4::Sctp { sport, dport } => {
                let mut h = vec![0u8; 12];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h
            }
            L4::Icmp {
                icmp_type,
                code,
                rest,
            } => {
                let mut h = vec![*icmp_type, *code, 0, 0];
                h.extend_from_slice(rest);
                h
            }
            L4::Other { .. } => Vec::new(),
        };
        b.extend_from_slice(&self.payload);
        let proto = self.l4.proto(v6);
        let sum_at = match self.l4 {
            L4::Tcp { .. } => Some(16),
            L4::Udp { .. } => Some(6),
            L4::Icmp { .. } => Some(2),
            _ => None,
        };
        if let Some(at) = sum_at {
            let pseudo = !matches!(self.l4, L4::Icmp { .. }) || v6;
            let mut sum = if pseudo {
                self.pseudo_sum(proto, b.len())
            } else {
                0
            };
            sum = add_words(sum, &b);
            let mut c = fold(sum);
            if c == 0 && matches!(self.l4, L4::Udp { .. }) {
                c = 0xffff;
            }
            b[at..at + 2].copy_from_slice(&c.to_be_bytes());
        } else if matches!(self.l4, L4::Sctp { .. }) {
            let crc = crc32c(&b);
            b[8..12].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    fn pseudo_sum(&self, proto: u8, len: usize) -> u32 {
        let mut sum = 0u32;
        let (s, d) = (ip_bytes(self.src), ip_bytes(self.dst));
        sum = add_words(sum, &s);
        sum = add_words(sum, &d);
        sum += u32::from(proto);
        sum += len as u32 & 0xffff;
        sum += (len as u32) >> 16;
        sum
    }

    /// The IP packet: header(s) and everything after.
    pub fn l3_bytes(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let proto = self.l4.proto(self.src.is_ipv6());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = vec![0u8; 20];
                h[0] = 0x45;
                let total = (20 + l4.len()) as u16;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                if let Some(f) = self.fragment {
                    h[4..6].copy_from_slice(&(f.id as u16).to_be_bytes());
                    let v = (f.offset & 0x1fff) | if f.more { 0x2000 } else { 0 };
                    h[6..8].copy_from_slice(&v.to_be_bytes());
                }
                h[8] = 64;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                let c = fold(add_words(0, &h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                h.extend_from_slice(&l4);
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                // Chain: fixed header -> ext headers -> fragment header -> L4.
                let mut chain: Vec<(u8, Vec<u8>)> = Vec::new();
                for e in &self.ext_headers {
                    chain.push((e.proto(), Vec::new()));
                }
                if self.fragment.is_some() {
                    chain.push((44, Vec::new()));
                }
                let mut next = proto;
                let mut exts = Vec::new();
                for (i, (hp, _)) in chain.iter().enumerate().rev() {
                    let bytes = if *hp == 44 {
                        let f = self.fragment.unwrap_or(Fragment {
                            id: 0,
                            offset: 0,
                            more: false,
                        });
                        let mut b = vec![next, 0, 0, 0, 0, 0, 0, 0];
                        let v = (f.offset << 3) | u16::from(f.more);
                        b[2..4].copy_from_slice(&v.to_be_bytes());
                        b[4..8].copy_from_slice(&f.id.to_be_bytes());
                        b
                    } else {
                        self.ext_headers[i].bytes(next)
                    };
                    exts.insert(0, bytes);
                    next = *hp;
                }
                let ext: Vec<u8> = exts.concat();
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                let plen = (ext.len() + l4.len()) as u16;
                h[4..6].copy_from_slice(&plen.to_be_bytes());
                h[6] = next;
                h[7] = 64;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                h.extend_from_slice(&ext);
                h.extend_from_slice(&l4);
                h
            }
            _ => panic!(
                "packet mixes IPv4 and IPv6 addresses: {} -> {}",
                self.src, self.dst
            ),
        }
    }

    /// The Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let ethertype = if self.src.is_ipv6() {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        };
        ethernet(ethertype, &self.l3_bytes())
    }
}

/// The shortest frame the kernel's `BPF_PROG_TEST_RUN` runs a tc program on, for the
/// frame's ethertype: it wants the Ethernet header, and for IP the network header too
/// (measured: an IPv4 frame shorter than Ethernet + IPv4 header, 34 bytes, gets EINVAL; IPv6
/// 54). Such frames never reach a tc program on a real interface either.
pub fn test_run_min_frame(frame: &[u8]) -> usize {
    match frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) {
        Some(0x0800) => 34,
        Some(0x86dd) => 54,
        _ => 14,
    }
}

/// An Ethernet frame with the fixed MACs around `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn add_words(mut sum: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum = sum.wrapping_add(u32::from(w));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// CRC32c (Castagnoli), as SCTP uses, bitwise: small and clear is enough for tests.
fn crc32c(b: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_tcp_checksums_verify() {
        let f = Packet::tcp(ip("10.0.0.1"), ip("10.0.0.2"), 1234, 80, tcp_flags::SYN).build();
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!(fold(add_words(0, &f[14..34])), 0, "IPv4 header checksum");
        let p = Packet::tcp(ip("10.0.0.1"), ip("10.0.0.2"), 1234, 80, tcp_flags::SYN);
        let sum = add_words(p.pseudo_sum(6, 20), &f[34..]);
        assert_eq!(fold(sum), 0, "TCP checksum");
    }

    #[test]
    fn crc32c_known_value() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn ipv6_ext_headers_and_fragment_chain() {
        let p = Packet::udp(ip("fd00::1"), ip("fd00::2"), 5, 53)
            .with_ext_headers(&[ExtHeader::HopByHop, ExtHeader::DestOpts { len8: 1 }])
            .with_fragment(Fragment {
                id: 7,
                offset: 0,
                more: true,
            });
        let f = p.build();
        assert_eq!(f[14 + 6], 0); // hop-by-hop first
        assert_eq!(f[54], 60); // then destination options
        assert_eq!(f[62], 44); // then the fragment header
        assert_eq!(f[78], 17); // then UDP
        assert_eq!(f.len(), 14 + 40 + 8 + 16 + 8 + 8);
    }

    #[test]
    fn builds_are_deterministic() {
        let a = Packet::echo_request(ip("10.0.0.1"), ip("10.0.0.2"), 9, 1).build();
        let b = Packet::echo_request(ip("10.0.0.1"), ip("10.0.0.2"), 9, 1).build();
        assert_eq!(a, b);
    }
}
