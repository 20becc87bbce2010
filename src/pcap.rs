//! Packet traces: `verdict diff --pcap FILE --scenario SCENARIO` replays a capture (pcap or
//! pcapng) against a scenario's cluster on every backend, and `--write-pcap` writes it back
//! as pcapng with each packet's verdicts in its comment (`frame.comment` in tshark).
//!
//! How a packet is replayed:
//!
//! - The cluster and policies are the scenario's after its last step (or `--after-step N`);
//!   only the changes of the steps (and `advance`) are replayed, not their probes or
//!   `connect`/`send` packets, so nothing leaves conntrack entries behind for the trace to hit.
//! - Addresses are resolved as probes resolve them: a pod's address is that pod, a node's is
//!   its host, anything else is the world (the datapath then finds its CIDR identity in the
//!   ipcache, and the oracle and model match it against CIDR rules).
//! - On the datapath backends (`rbpf`, `rbpf-jit`, `kernel`) every IP packet runs as the
//!   datapath sees it: through the egress program of the source pod's node (when the source
//!   is a pod), then, if it passed, the ingress program of the destination pod's node (when
//!   the destination is a pod). Conntrack state carries over from packet to packet, so
//!   replies and later packets of allowed connections follow it. The virtual clock is the
//!   scenario's clock plus the packet's time since the first packet of the trace.
//! - The oracle and the model see unfragmented, untruncated TCP, UDP, SCTP and ICMP/ICMPv6
//!   echo packets through `Backend::packet`, that is through their own (Rust) conntrack, which
//!   follows Cilium's lookup order independently of the BPF one: the first packet of a
//!   connection in the trace (its 5-tuple in either direction; ICMP echo by identifier) is a
//!   connection attempt that policy decides (`Kind::New`), later packets and replies follow
//!   that conntrack (`Kind::Tracked`), and both are compared on every backend. Other ICMP
//!   types are compared as connection attempts when first of their tuple. ICMP errors (which
//!   the BPF conntrack relates to the flow they quote), fragments, truncated packets and
//!   protocols the oracle does not model are compared among the datapath backends only.
//! - Frames without readable IPv4/IPv6 addresses (other ethertypes, garbage, headers cut
//!   short) are not replayed: no program would know which endpoint they belong to.
//! - Between datapath backends the raw ring-buffer records of each packet and, after the
//!   trace, every map on every node must be identical byte for byte.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
use pcap_file::pcapng::{Block, PcapNgParser, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError};

use verdict_sim::cluster::{Peer, Protocol};
use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{self, Backend, World};
use verdict_sim::oracle::Flow;
use verdict_sim::scenario::{self, Step};
use verdict_sim::verdict::Outcome;

use crate::diff::{
    self, capture, compare_captures, outcome_cell, results_disagree, Contender, ContenderFactory,
    PairReport, Tap,
};

/// One packet of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePacket {
    /// 1-based position among the capture's packets.
    pub index: usize,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub orig_len: u32,
    pub linktype: DataLink,
    /// The bytes as captured.
    pub data: Vec<u8>,
}

impl TracePacket {
    /// The packet as an Ethernet frame (what the programs take), or why it cannot be one.
    pub fn ethernet(&self) -> Result<Cow<'_, [u8]>, String> {
        let wrap = |ethertype: u16, payload: &[u8]| {
            Cow::Owned(verdict_datapath::packet::ethernet(ethertype, payload))
        };
        let by_version = |payload: &[u8]| match payload.first().map(|b| b >> 4) {
            Some(4) => Ok(wrap(ETH_P_IP, payload)),
            Some(6) => Ok(wrap(ETH_P_IPV6, payload)),
            Some(v) => Err(format!("raw IP packet with IP version {v}")),
            None => Err("empty raw IP packet".to_string()),
        };
        match self.linktype {
            DataLink::ETHERNET => Ok(Cow::Borrowed(&self.data)),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => by_version(&self.data),
            // Linux cooked capture (tcpdump -i any): 16-byte header, protocol at 14.
            DataLink::LINUX_SLL => match self.data.get(14..16) {
                Some(p) if self.data.len() >= 16 => {
                    Ok(wrap(u16::from_be_bytes([p[0], p[1]]), &self.data[16..]))
                }
                _ => Err("LINUX_SLL header cut short".into()),
            },
            // Linux cooked capture v2: 20-byte header, protocol first.
            DataLink::LINUX_SLL2 => match self.data.get(..2) {
                Some(p) if self.data.len() >= 20 => {
                    Ok(wrap(u16::from_be_bytes([p[0], p[1]]), &self.data[20..]))
                }
                _ => Err("LINUX_SLL2 header cut short".into()),
            },
            other => Err(format!("link type {other:?} is not supported")),
        }
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

fn is_pcap_magic(m: &[u8]) -> bool {
    matches!(
        m,
        [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1]
    )
}

/// Reads every packet of a pcap or pcapng file. Errors name the file and the packet. A file
/// cut short in the middle of a packet (a capture that was still being written, a partial
/// copy) gives the packets before the cut and a warning on stderr, as tshark does; see
/// [`read_trace_with_warning`].
pub fn read_trace(path: &Path) -> Result<Vec<TracePacket>> {
    let (packets, warning) = read_trace_with_warning(path)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok(packets)
}

/// [`read_trace`], with the warning returned instead of printed: `Some` when the file ends
/// in the middle of a packet (its last record header or block declares more bytes than are
/// left). tshark then reads the packets before the cut and says `The file "F" appears to
/// have been cut short in the middle of a packet.` (wiretap's `WTAP_ERR_SHORT_READ`); a
/// record that is corrupt rather than cut short is still an error.
pub fn read_trace_with_warning(path: &Path) -> Result<(Vec<TracePacket>, Option<String>)> {
    let bytes = verdict_sim::fsread::read_bounded(path, MAX_CAPTURE_BYTES, "capture")
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let file = path.display();
    match bytes.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(path, &bytes),
        Some(m) if is_pcap_magic(m) => read_pcap(path, &bytes),
        Some(m) => bail!(
            "{file}: not a pcap or pcapng file (it starts with {:02x}{:02x}{:02x}{:02x})",
            m[0],
            m[1],
            m[2],
            m[3]
        ),
        None => bail!("{file}: not a pcap or pcapng file ({} bytes)", bytes.len()),
    }
}

/// The largest capture `verdict diff --pcap` reads (it holds the whole trace in memory).
pub const MAX_CAPTURE_BYTES: usize = 1 << 30;

/// The warning for a capture cut short at packet `index` (1-based), tshark's words first.
fn cut_short(path: &Path, index: usize) -> String {
    format!(
        "The file \"{}\" appears to have been cut short in the middle of a packet. Packet \
         {index} is incomplete; the {} packets before it are replayed",
        path.display(),
        index - 1
    )
}

fn read_pcap(path: &Path, bytes: &[u8]) -> Result<(Vec<TracePacket>, Option<String>)> {
    let file = path.display();
    let (mut rest, parser) =
        PcapParser::new(bytes).map_err(|e| anyhow::anyhow!("{file}: pcap header: {e}"))?;
    let header = parser.header();
    let linktype = header.datalink;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let index = out.len() + 1;
        let p = match parser.next_packet(rest) {
            Ok((r, p)) => {
                rest = r;
                p
            }
            // A record header (16 bytes) or its data (incl_len) running past the end of
            // the file: the capture was cut short there.
            Err(PcapError::IncompleteBuffer) if pcap_record_cut(rest, header.endianness) => {
                return Ok((out, Some(cut_short(path, index))));
            }
            Err(e) => bail!("{file}: packet {index}: {e}"),
        };
        let ts_ns = u64::try_from(p.timestamp.as_nanos())
            .map_err(|_| anyhow::anyhow!("{file}: packet {index}: timestamp out of range"))?;
        out.push(TracePacket {
            index,
            ts_ns,
            orig_len: p.orig_len,
            linktype,
            data: p.data.into_owned(),
        });
    }
    Ok((out, None))
}

fn read_u32(b: &[u8], at: usize, e: Endianness) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(match e {
        Endianness::Big => u32::from_be_bytes(w),
        Endianness::Little => u32::from_le_bytes(w),
    })
}

/// Whether a classic pcap record starting at `rest` ends past the end of the file.
fn pcap_record_cut(rest: &[u8], e: Endianness) -> bool {
    match read_u32(rest, 8, e) {
        Some(incl_len) => 16 + incl_len as usize > rest.len(),
        None => true,
    }
}

/// Whether a pcapng block starting at `rest` ends past the end of the file (its header is
/// incomplete, or its total length is more than what is left).
fn pcapng_block_cut(rest: &[u8], e: Endianness) -> bool {
    match read_u32(rest, 4, e) {
        Some(len) => len as usize > rest.len(),
        None => true,
    }
}

/// Nanoseconds of a pcapng timestamp, given its interface's `if_tsresol` and `if_tsoffset`
/// (pcap-file 2 hands back the raw tick count as if ticks were nanoseconds).
fn pcapng_ns(ticks: u128, idb: Option<&InterfaceDescriptionBlock<'_>>) -> Option<u64> {
    let mut resol = 6u8;
    let mut offset_s = 0u64;
    for o in idb.map(|i| i.options.as_slice()).unwrap_or(&[]) {
        match o {
            InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
            InterfaceDescriptionOption::IfTsOffset(s) => offset_s = *s,
            _ => {}
        }
    }
    let ns = if resol & 0x80 == 0 {
        let exp = u32::from(resol);
        if exp <= 9 {
            ticks.checked_mul(10u128.pow(9 - exp))?
        } else {
            ticks / 10u128.checked_pow(exp - 9)?
        }
    } else {
        let shift = u32::from(resol & 0x7f);
        ticks.checked_mul(1_000_000_000)?.checked_shr(shift)?
    };
    let ns = ns.checked_add(u128::from(offset_s) * 1_000_000_000)?;
    u64::try_from(ns).ok()
}

fn read_pcapng(path: &Path, bytes: &[u8]) -> Result<(Vec<TracePacket>, Option<String>)> {
    let file = path.display();
    let (mut rest, mut parser) = PcapNgParser::new(bytes)
        .map_err(|e| anyhow::anyhow!("{file}: pcapng section header: {e}"))?;
    let mut out = Vec::new();
    let mut last_ts = 0u64;
    while !rest.is_empty() {
        let index = out.len() + 1;
        let endianness = parser.section().endianness;
        let block = match parser.next_block(rest) {
            Ok((r, b)) => {
                rest = r;
                b
            }
            Err(PcapError::IncompleteBuffer) if pcapng_block_cut(rest, endianness) => {
                return Ok((out, Some(cut_short(path, index))));
            }
            Err(e) => bail!("{file}: packet {index} (or the block before it): {e}"),
        };
        // (interface, raw ticks or None for a block without a timestamp, orig len, data)
        let (iface, ticks, orig_len, data) = match block {
            Block::EnhancedPacket(p) => (
                p.interface_id,
                Some(p.timestamp.as_nanos()),
                p.original_len,
                p.data.into_owned(),
            ),
            Block::SimplePacket(p) => (0, None, p.original_len, p.data.into_owned()),
            Block::Packet(p) => (
                u32::from(p.interface_id),
                Some(u128::from(p.timestamp)),
                p.original_len,
                p.data.into_owned(),
            ),
            _ => continue,
        };
        let idb = parser.interfaces().get(iface as usize).ok_or_else(|| {
            anyhow::anyhow!("{file}: packet {index}: interface {iface} was never described")
        })?;
        let ts_ns = match ticks {
            Some(t) => pcapng_ns(t, Some(idb))
                .ok_or_else(|| anyhow::anyhow!("{file}: packet {index}: timestamp out of range"))?,
            // A simple packet block has no time: it keeps the previous packet's.
            None => last_ts,
        };
        last_ts = ts_ns;
        out.push(TracePacket {
            index,
            ts_ns,
            orig_len,
            linktype: idb.linktype,
            data,
        });
    }
    Ok((out, None))
}

/// One packet to write: its bytes, time and an optional comment.
pub struct OutPacket<'a> {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub linktype: DataLink,
    pub data: &'a [u8],
    pub comment: Option<String>,
}

/// The largest frame Wireshark and tshark read: wiretap's `WTAP_MAX_PACKET_SIZE_STANDARD`
/// (wiretap/wtap.h); a pcapng packet block with more captured bytes is refused as "a packet
/// with a length of N bytes (bigger than the maximum of 262144)".
pub const MAX_FRAME: usize = 262_144;

/// Writes packets as pcapng: little-endian (the same bytes on every host), one interface
/// per link type with nanosecond timestamps (`if_tsresol` 9), comments as `opt_comment`.
/// A frame longer than [`MAX_FRAME`] is written truncated to it, keeping its original length
/// (as a capture with that snaplen would), with a warning on stderr: Wireshark would refuse
/// the whole file otherwise.
pub fn write_pcapng(path: &Path, packets: &[OutPacket<'_>]) -> Result<()> {
    for w in write_pcapng_with_warnings(path, packets)? {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// [`write_pcapng`], returning the warnings (one per truncated frame) instead of printing them.
pub fn write_pcapng_with_warnings(path: &Path, packets: &[OutPacket<'_>]) -> Result<Vec<String>> {
    let file = path.display();
    let mut buf = Vec::new();
    let mut warnings = Vec::new();
    {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            ..Default::default()
        };
        let mut w = PcapNgWriter::with_section_header(&mut buf, section)
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let mut ifaces: BTreeMap<u32, u32> = BTreeMap::new();
        for (i, p) in packets.iter().enumerate() {
            let lt = u32::from(p.linktype);
            let id = match ifaces.get(&lt) {
                Some(id) => *id,
                None => {
                    let id = ifaces.len() as u32;
                    let idb = InterfaceDescriptionBlock {
                        linktype: p.linktype,
                        snaplen: 0,
                        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
                    };
                    w.write_pcapng_block(idb)
                        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
                    ifaces.insert(lt, id);
                    id
                }
            };
            let orig_len = p
                .orig_len
                .max(u32::try_from(p.data.len()).unwrap_or(u32::MAX));
            let data = if p.data.len() > MAX_FRAME {
                warnings.push(format!(
                    "{file}: packet {}: a frame of {} bytes is longer than {MAX_FRAME} bytes, \
                     the most Wireshark and tshark read: written truncated to {MAX_FRAME} bytes \
                     (original length {orig_len})",
                    i + 1,
                    p.data.len()
                ));
                &p.data[..MAX_FRAME]
            } else {
                p.data
            };
            let epb = EnhancedPacketBlock {
                interface_id: id,
                timestamp: Duration::from_nanos(p.ts_ns),
                original_len: orig_len,
                data: Cow::Borrowed(data),
                options: p
                    .comment
                    .iter()
                    .map(|c| EnhancedPacketOption::Comment(Cow::Borrowed(c.as_str())))
                    .collect(),
            };
            w.write_pcapng_block(epb)
                .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        }
    }
    std::fs::write(path, &buf).with_context(|| format!("writing {file}"))?;
    Ok(warnings)
}

/// The fields of a packet that decide how it is replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// Ports; for ICMP echo the identifier as the datapath's conntrack uses it (request:
    /// source, reply: destination).
    pub sport: u16,
    pub dport: u16,
    pub icmp_type: Option<u8>,
    pub tcp_flags: Option<u8>,
    pub fragment: bool,
    /// The transport header is cut short (or missing).
    pub truncated: bool,
}

impl Parsed {
    pub fn is_icmp_error(&self) -> bool {
        match (self.proto, self.icmp_type) {
            (1, Some(t)) => matches!(t, 3 | 4 | 5 | 11 | 12),
            (58, Some(t)) => (1..=4).contains(&t),
            _ => false,
        }
    }

    /// The connection this packet belongs to, the same in both directions.
    pub fn connection(&self) -> (u8, (IpAddr, u16), (IpAddr, u16)) {
        let a = (self.src, self.sport);
        let b = (self.dst, self.dport);
        (self.proto, a.min(b), a.max(b))
    }

    pub fn summary(&self) -> String {
        let join = |ip: IpAddr, port: u16| match ip {
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
            IpAddr::V4(_) => format!("{ip}:{port}"),
        };
        let mut s = match (self.proto, self.icmp_type) {
            (1 | 58, Some(t)) => format!(
                "{} -> {} {} type {t}",
                self.src,
                self.dst,
                if self.proto == 1 { "ICMP" } else { "ICMPv6" }
            ),
            (6 | 17 | 132, _) if !self.truncated => {
                let name = match self.proto {
                    6 => "TCP",
                    17 => "UDP",
                    _ => "SCTP",
                };
                let mut s = format!(
                    "{} -> {} {name}",
                    join(self.src, self.sport),
                    join(self.dst, self.dport)
                );
                if let Some(f) = self.tcp_flags {
                    let names = [
                        (0x02, "SYN"),
                        (0x10, "ACK"),
                        (0x08, "PSH"),
                        (0x01, "FIN"),
                        (0x04, "RST"),
                    ];
                    let set: Vec<&str> = names
                        .iter()
                        .filter(|(b, _)| f & b != 0)
                        .map(|(_, n)| *n)
                        .collect();
                    let _ = write!(s, " {}", set.join(","));
                }
                s
            }
            (p, _) => format!("{} -> {} proto {p}", self.src, self.dst),
        };
        if self.fragment {
            s.push_str(" fragment");
        }
        if self.truncated {
            s.push_str(" truncated");
        }
        s
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses an Ethernet frame's addresses and transport fields; `Err` says why the frame has
/// no readable IP addresses.
pub fn parse_frame(f: &[u8]) -> Result<Parsed, String> {
    let ethertype =
        be16(f, 12).ok_or_else(|| format!("{}-byte frame, no Ethernet header", f.len()))?;
    let ip = &f[14..];
    let (src, dst, mut proto, mut l4, mut fragment, mut first_fragment) = match ethertype {
        ETH_P_IP => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return Err("IPv4 header cut short or malformed".into());
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag = be16(ip, 6).unwrap_or(0);
            let offset = frag & 0x1fff;
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            let more = frag & 0x2000 != 0;
            (
                src,
                dst,
                ip[9],
                ip.get(ihl.max(20)..),
                more || offset != 0,
                offset == 0,
            )
        }
        ETH_P_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return Err("IPv6 header cut short or malformed".into());
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = IpAddr::V6(Ipv6Addr::from(a));
            a.copy_from_slice(&ip[24..40]);
            let dst = IpAddr::V6(Ipv6Addr::from(a));
            (src, dst, ip[6], ip.get(40..), false, true)
        }
        other => return Err(format!("ethertype {other:#06x} is not IPv4 or IPv6")),
    };
    // IPv6 extension headers (hop-by-hop, routing, fragment, destination options, AH).
    if src.is_ipv6() {
        for _ in 0..8 {
            let Some(h) = l4 else { break };
            match proto {
                0 | 43 | 60 | 51 | 44 => {
                    let (Some(&next), Some(&len)) = (h.first(), h.get(1)) else {
                        l4 = None;
                        break;
                    };
                    let size = match proto {
                        44 => {
                            let v = be16(h, 2).unwrap_or(0);
                            fragment = true;
                            first_fragment = v >> 3 == 0;
                            8
                        }
                        51 => (usize::from(len) + 2) * 4,
                        _ => (usize::from(len) + 1) * 8,
                    };
                    proto = next;
                    l4 = h.get(size..);
                }
                _ => break,
            }
        }
    }
    let mut p = Parsed {
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        icmp_type: None,
        tcp_flags: None,
        fragment,
        truncated: false,
    };
    let h = if first_fragment {
        l4.unwrap_or(&[])
    } else {
        &[]
    };
    match proto {
        6 | 17 | 132 => {
            let need = match proto {
                6 => 20,
                17 => 8,
                _ => 12,
            };
            if h.len() < need {
                p.truncated = first_fragment;
                return Ok(p);
            }
            p.sport = be16(h, 0).unwrap_or(0);
            p.dport = be16(h, 2).unwrap_or(0);
            if proto == 6 {
                p.tcp_flags = h.get(13).copied();
            }
        }
        1 | 58 => {
            if h.len() < 8 {
                p.truncated = first_fragment;
                return Ok(p);
            }
            p.icmp_type = Some(h[0]);
            let id = be16(h, 4).unwrap_or(0);
            match h[0] {
                8 | 128 => p.sport = id,
                0 | 129 => p.dport = id,
                _ => {}
            }
        }
        _ => {}
    }
    Ok(p)
}

/// How a packet was compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The first packet of its connection: on every backend.
    New,
    /// A later packet or a reply of a connection: on every backend, each through its own
    /// conntrack (the datapaths' BPF conntrack, the oracle's and model's Rust one).
    Tracked,
    /// On the datapath backends only, and why.
    DatapathOnly(&'static str),
    /// Not replayed, and why.
    NotReplayed(String),
}

/// One replayed packet.
#[derive(Clone, Debug)]
pub struct PacketRow {
    pub index: usize,
    pub ts_ns: u64,
    pub summary: String,
    /// `src-peer -> dst-peer`.
    pub peers: String,
    pub kind: Kind,
    /// Backends that decided this packet, in backend order.
    pub results: Vec<(String, Result<Outcome, String>)>,
    pub disagree: bool,
}

impl PacketRow {
    /// The pcapng comment: the verdict of every backend that decided the packet.
    pub fn comment(&self) -> String {
        let mut s = format!("verdict #{}", self.index);
        if self.disagree {
            s.push_str(" DISAGREEMENT");
        }
        let _ = write!(s, ": {}", self.peers);
        match &self.kind {
            Kind::New => s.push_str(" (new connection)"),
            Kind::Tracked => s.push_str(" (connection tracked)"),
            Kind::DatapathOnly(why) => {
                let _ = write!(s, " ({why}; datapath backends only)");
            }
            Kind::NotReplayed(why) => {
                let _ = write!(s, " not replayed: {why}");
            }
        }
        for (b, r) in &self.results {
            let _ = write!(s, " | {b}: {}", outcome_cell(r));
        }
        s
    }
}

/// `verdict diff --pcap` on one capture.
#[derive(Clone, Debug, Default)]
pub struct PcapReport {
    pub pcap: PathBuf,
    pub scenario: String,
    pub after_step: usize,
    pub backends: Vec<String>,
    pub packets: Vec<PacketRow>,
    pub pairs: Vec<PairReport>,
}

impl PcapReport {
    pub fn disagreements(&self) -> usize {
        self.packets.iter().filter(|p| p.disagree).count()
    }
    pub fn state_differences(&self) -> usize {
        self.pairs.iter().map(|p| p.rows.len()).sum()
    }
    pub fn clean(&self) -> bool {
        self.disagreements() == 0 && self.state_differences() == 0
    }
}

fn peer_text(p: &Peer) -> String {
    match p {
        Peer::World(ip) => format!("world {ip}"),
        other => other.to_string(),
    }
}

/// The probe protocol of a packet the oracle and model can decide.
fn probe_protocol(p: &Parsed) -> Option<Protocol> {
    match (p.proto, p.src.is_ipv6()) {
        (6, _) => Some(Protocol::Tcp),
        (17, _) => Some(Protocol::Udp),
        (132, _) => Some(Protocol::Sctp),
        (1, false) => Some(Protocol::Icmp),
        (58, true) => Some(Protocol::Icmpv6),
        _ => None,
    }
}

/// Replays `trace` against the scenario at `scenario_path` on `names` built by `make`.
pub fn replay(
    scenario_path: &Path,
    after_step: Option<usize>,
    trace: &[TracePacket],
    names: &[String],
    make: ContenderFactory<'_>,
) -> Result<PcapReport> {
    let loaded = scenario::load(scenario_path).map_err(anyhow::Error::msg)?;
    replay_loaded(loaded, after_step, trace, &[], names, make)
}

/// [`replay`] on a scenario already loaded (`verdict fuzz --packets` generates its own).
/// `route[i]` (when given) is where packet `i + 1` was meant to go: a frame that does not
/// parse is then still run through the datapaths, from and to those addresses.
pub fn replay_loaded(
    mut loaded: scenario::LoadedScenario,
    after_step: Option<usize>,
    trace: &[TracePacket],
    route: &[(IpAddr, IpAddr)],
    names: &[String],
    make: ContenderFactory<'_>,
) -> Result<PcapReport> {
    let scenario_path = loaded.path.clone();
    let steps = loaded.scenario.steps.len();
    let upto = after_step.unwrap_or(steps);
    if upto > steps {
        bail!(
            "{}: --after-step {upto}: the scenario has {steps} steps",
            scenario_path.display()
        );
    }
    // Changes (and `advance`) only: probes and the packets of `connect`/`send` would leave
    // conntrack entries for the trace to hit.
    loaded.scenario.steps.truncate(upto);
    loaded.scenario.steps.retain(|s| {
        !matches!(
            s,
            Step::Expect(_) | Step::ExpectMatrix(_) | Step::Connect(_) | Step::Send(_)
        )
    });

    let world_cell: Rc<RefCell<Option<World>>> = Rc::default();
    let handles: RefCell<Vec<(String, Rc<RefCell<Contender>>)>> = RefCell::default();
    let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
        let c = Rc::new(RefCell::new(make(name)?));
        if let Some(dp) = c.borrow_mut().datapath() {
            dp.keep_raw_records();
        }
        handles.borrow_mut().push((name.to_string(), c.clone()));
        let first = handles.borrow().len() == 1;
        Ok(Box::new(Tap {
            name: name.to_string(),
            inner: c,
            captures: None,
            world: first.then(|| world_cell.clone()),
        }))
    };
    let r = engine::run(&loaded, names, &factory);
    if let Some(e) = r.error {
        bail!("{e}");
    }
    let mut world = match world_cell.borrow_mut().take() {
        Some(w) => w,
        // No step was replayed: the initial state is the state.
        None => engine::build_world(&loaded).map_err(anyhow::Error::msg)?,
    };
    let handles = handles.into_inner();
    let reference = names.iter().find(|n| diff::is_datapath(n)).cloned();

    let mut report = PcapReport {
        pcap: PathBuf::new(),
        scenario: loaded.scenario.name.clone(),
        after_step: upto,
        backends: names.to_vec(),
        ..Default::default()
    };
    let mut pairs: BTreeMap<String, PairReport> = BTreeMap::new();
    let first_ts = trace.first().map_or(0, |p| p.ts_ns);
    let base_clock = world.clock_ns;
    let mut seen = BTreeSet::new();
    let progress = crate::progress::Progress::new(trace.len() as u64, "packets");
    for pkt in trace {
        progress.inc("");
        let frame = match pkt.ethernet() {
            Ok(f) => f,
            Err(why) => {
                report.packets.push(not_replayed(pkt, why));
                continue;
            }
        };
        let parsed = match parse_frame(&frame) {
            Ok(p) => p,
            Err(why) => {
                // A fuzzed frame says where it was meant to go: the datapaths get it anyway.
                if let Some(&(s, d)) = route.get(pkt.index.wrapping_sub(1)) {
                    let (src, dst) = (world.cluster.peer_of_ip(s), world.cluster.peer_of_ip(d));
                    let clock = base_clock.saturating_add(pkt.ts_ns.saturating_sub(first_ts));
                    world.clock_ns = clock;
                    let mut results = Vec::new();
                    let mut records = Vec::new();
                    for (name, c) in &handles {
                        if let Some(dp) = c.borrow_mut().datapath() {
                            let r = dp
                                .set_clock(clock)
                                .and_then(|()| dp.decide_frame(&world, &src, &dst, &frame));
                            let _ = Backend::take_flows(dp, &world);
                            records.push((name.clone(), dp.take_raw_records()));
                            results.push((name.clone(), r));
                        }
                    }
                    compare_records(&mut pairs, &reference, pkt.index, &records);
                    report.packets.push(PacketRow {
                        index: pkt.index,
                        ts_ns: pkt.ts_ns,
                        summary: format!("malformed frame of {} bytes ({why})", frame.len()),
                        peers: format!("{} -> {}", peer_text(&src), peer_text(&dst)),
                        disagree: results_disagree(&results),
                        kind: Kind::DatapathOnly("a frame that does not parse"),
                        results,
                    });
                    continue;
                }
                report.packets.push(not_replayed(pkt, why));
                continue;
            }
        };
        let src = world.cluster.peer_of_ip(parsed.src);
        let dst = world.cluster.peer_of_ip(parsed.dst);
        let first = seen.insert(parsed.connection());
        let protocol = probe_protocol(&parsed);
        let echo = matches!(parsed.icmp_type, Some(0 | 8 | 128 | 129));
        // Packets the oracle's and model's conntrack follows: TCP, UDP, SCTP, ICMP echo.
        let tracked = protocol.is_some_and(|p| !p.is_icmp() || echo);
        let kind = if parsed.truncated {
            Kind::DatapathOnly("truncated")
        } else if parsed.fragment {
            Kind::DatapathOnly("fragment")
        } else if parsed.is_icmp_error() {
            Kind::DatapathOnly("ICMP error, related to the flow it quotes")
        } else if protocol.is_none() {
            Kind::DatapathOnly("protocol the oracle does not model")
        } else if first {
            Kind::New
        } else if tracked {
            Kind::Tracked
        } else {
            Kind::DatapathOnly("later ICMP packet of a type conntrack does not track")
        };
        let clock = base_clock.saturating_add(pkt.ts_ns.saturating_sub(first_ts));
        // The oracle's and model's conntrack read the clock from the world.
        world.clock_ns = clock;
        world.cluster.auth.set_clock(clock);
        let mut results = Vec::new();
        let mut records = Vec::new();
        for (name, c) in &handles {
            let mut c = c.borrow_mut();
            match c.datapath() {
                Some(dp) => {
                    let r = dp
                        .set_clock(clock)
                        .and_then(|()| dp.decide_frame(&world, &src, &dst, &frame));
                    // Flows are not reported here; drain them so they do not pile up.
                    let _ = Backend::take_flows(dp, &world);
                    records.push((name.clone(), dp.take_raw_records()));
                    results.push((name.clone(), r));
                }
                None => {
                    let (Kind::New | Kind::Tracked, Some(protocol)) = (&kind, protocol) else {
                        continue;
                    };
                    let r = if tracked {
                        let p = ConnPacket {
                            src: src.clone(),
                            dst: dst.clone(),
                            protocol,
                            sport: parsed.sport,
                            dport: parsed.dport,
                            tcp_flags: parsed.tcp_flags.unwrap_or(0),
                            icmp_type: parsed.icmp_type.unwrap_or(0),
                        };
                        c.backend().packet(&world, &p)
                    } else {
                        // Other ICMP types: the first packet as a connection attempt.
                        let flow = Flow {
                            src: src.clone(),
                            dst: dst.clone(),
                            protocol,
                            dport: parsed.icmp_type.map_or(parsed.dport, u16::from),
                        };
                        c.backend().probe(&world, &flow)
                    };
                    results.push((name.clone(), r));
                }
            }
        }
        compare_records(&mut pairs, &reference, pkt.index, &records);
        report.packets.push(PacketRow {
            index: pkt.index,
            ts_ns: pkt.ts_ns,
            summary: parsed.summary(),
            peers: format!("{} -> {}", peer_text(&src), peer_text(&dst)),
            disagree: results_disagree(&results),
            kind,
            results,
        });
    }
    // Every map on every node after the trace.
    let mut finals = Vec::new();
    for (name, c) in &handles {
        if let Some(dp) = c.borrow_mut().datapath() {
            finals.push((name.clone(), capture(dp)));
        }
    }
    if let Some(((_, a), rest)) = finals.split_first() {
        for (name, b) in rest {
            let pair = pairs.entry(name.clone()).or_insert_with(|| PairReport {
                reference: reference.clone().unwrap_or_default(),
                other: name.clone(),
                ..Default::default()
            });
            // Records were compared packet by packet; these captures hold only maps.
            let before = pair.records;
            compare_captures(pair, None, a, b);
            pair.records = before;
        }
    }
    // Pairs in backend order.
    report.pairs = names.iter().filter_map(|n| pairs.remove(n)).collect();
    Ok(report)
}

/// Compares the ring-buffer records each datapath emitted for one packet with the first's.
fn compare_records(
    pairs: &mut BTreeMap<String, PairReport>,
    reference: &Option<String>,
    index: usize,
    records: &[(String, Vec<crate::dpbackend::RawRecord>)],
) {
    if let Some((_, ref_records)) = records.first() {
        for (name, recs) in records.iter().skip(1) {
            let pair = pairs.entry(name.clone()).or_insert_with(|| PairReport {
                reference: reference.clone().unwrap_or_default(),
                other: name.clone(),
                ..Default::default()
            });
            let a = diff::Capture {
                records: ref_records.clone(),
                ..Default::default()
            };
            let b = diff::Capture {
                records: recs.clone(),
                ..Default::default()
            };
            compare_captures(pair, Some(index), &a, &b);
        }
    }
}

fn not_replayed(pkt: &TracePacket, why: String) -> PacketRow {
    PacketRow {
        index: pkt.index,
        ts_ns: pkt.ts_ns,
        summary: format!("{} bytes", pkt.data.len()),
        peers: "-".into(),
        kind: Kind::NotReplayed(why),
        results: Vec::new(),
        disagree: false,
    }
}

/// `HH:MM:SS.nnnnnnnnn` (UTC) of a capture timestamp.
fn clock_text(ts_ns: u64) -> String {
    let s = ts_ns / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:09}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ts_ns % 1_000_000_000
    )
}

/// The report as `verdict diff --pcap` prints it.
pub fn render(r: &PcapReport) -> String {
    let mut s = String::new();
    let count = |f: &dyn Fn(&Kind) -> bool| r.packets.iter().filter(|p| f(&p.kind)).count();
    let new = count(&|k| *k == Kind::New);
    let tracked = count(&|k| *k == Kind::Tracked);
    let dp_only = count(&|k| matches!(k, Kind::DatapathOnly(_)));
    let skipped = count(&|k| matches!(k, Kind::NotReplayed(_)));
    let _ = writeln!(
        s,
        "{} {} against {} (after step {}) on {}: {} packets: {new} new connections and {tracked} tracked packets on every backend, {dp_only} on the datapaths only, {skipped} not replayed; {} disagreements, {} state differences",
        if r.clean() { "OK  " } else { "DIFF" },
        r.pcap.display(),
        r.scenario,
        r.after_step,
        r.backends.join(","),
        r.packets.len(),
        r.disagreements(),
        r.state_differences()
    );
    s.push_str(&diff::pair_lines(&r.pairs, "snapshots"));
    for p in r
        .packets
        .iter()
        .filter(|p| matches!(p.kind, Kind::NotReplayed(_)))
    {
        if let Kind::NotReplayed(why) = &p.kind {
            let _ = writeln!(
                s,
                "  packet {} ({}): not replayed: {why}",
                p.index, p.summary
            );
        }
    }
    let rows: Vec<diff::TableRow<'_>> = r
        .packets
        .iter()
        .filter(|p| p.disagree)
        .map(|p| diff::TableRow {
            at: format!("{} {}", p.index, clock_text(p.ts_ns)),
            what: format!("{} ({})", p.summary, p.peers),
            results: &p.results,
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(s, "{}", diff::verdict_table("packet", &rows, &r.backends));
    }
    for p in r.pairs.iter().filter(|p| !p.rows.is_empty()) {
        let _ = writeln!(s, "{}", diff::state_table("packet", p));
    }
    s
}

/// Arguments of the pcap mode of `verdict diff`.
pub struct PcapArgs {
    pub pcap: PathBuf,
    pub scenario: PathBuf,
    pub after_step: Option<usize>,
    pub write_pcap: Option<PathBuf>,
    pub only_disagreements: bool,
    pub backends: Vec<String>,
    /// A JUnit report to write.
    pub junit: Option<PathBuf>,
}

/// Runs the pcap mode; `Ok(false)` when anything disagrees.
pub fn run(a: &PcapArgs) -> Result<bool> {
    let trace = read_trace(&a.pcap)?;
    let mut report = replay(
        &a.scenario,
        a.after_step,
        &trace,
        &a.backends,
        &diff::contender,
    )?;
    report.pcap = a.pcap.clone();
    let text = render(&report);
    print!("{text}");
    if let Some(path) = &a.junit {
        write_junit(path, &a.scenario, &report, &text)?;
    }
    if let Some(out) = &a.write_pcap {
        let n = write_annotated(out, &trace, &report, a.only_disagreements)?;
        println!("wrote {n} packets with their verdicts to {}", out.display());
    }
    Ok(report.clean())
}

/// `verdict diff --pcap --junit`: one case for the capture, one for its disagreeing packets,
/// one per datapath pair with state differences.
fn write_junit(path: &Path, scenario: &Path, r: &PcapReport, text: &str) -> Result<()> {
    use crate::junit::{classname, Outcome, TestCase, TestSuite};
    let class = classname(&r.pcap);
    let name = format!("{} against {}", r.pcap.display(), scenario.display());
    let outcome = if r.clean() {
        Outcome::Passed
    } else {
        Outcome::Failure {
            message: format!(
                "{} packets disagree, {} state differences",
                r.disagreements(),
                r.state_differences()
            ),
            kind: "disagreement".into(),
            text: String::new(),
        }
    };
    let mut cases = vec![TestCase {
        system_out: Some(text.to_string()),
        ..TestCase::new(&class, &name, 0.0, outcome)
    }];
    let bad: Vec<String> = r
        .packets
        .iter()
        .filter(|p| p.disagree)
        .map(|p| p.comment())
        .collect();
    if !bad.is_empty() {
        cases.push(TestCase::new(
            &class,
            &format!("{name}: packets"),
            0.0,
            Outcome::Failure {
                message: format!("backends disagree on {} packets", bad.len()),
                kind: "disagreement".into(),
                text: bad.join("\n"),
            },
        ));
    }
    for p in r.pairs.iter().filter(|p| !p.rows.is_empty()) {
        cases.push(TestCase::new(
            &class,
            &format!("{name}: {} vs {} state", p.reference, p.other),
            0.0,
            Outcome::Failure {
                message: format!("{} map or flow-record differences", p.rows.len()),
                kind: "state".into(),
                text: diff::state_table("packet", p),
            },
        ));
    }
    let suite = TestSuite {
        name: "verdict diff --pcap".into(),
        cases,
        properties: vec![("backends".into(), r.backends.join(","))],
    };
    crate::junit::write(path, "verdict diff", &[suite])
}

/// Writes the trace with each packet's verdicts as its comment; returns the packet count.
pub fn write_annotated(
    out: &Path,
    trace: &[TracePacket],
    report: &PcapReport,
    only_disagreements: bool,
) -> Result<usize> {
    let rows: BTreeMap<usize, &PacketRow> = report.packets.iter().map(|p| (p.index, p)).collect();
    let packets: Vec<OutPacket<'_>> = trace
        .iter()
        .filter_map(|t| {
            let row = rows.get(&t.index)?;
            if only_disagreements && !row.disagree {
                return None;
            }
            Some(OutPacket {
                ts_ns: t.ts_ns,
                orig_len: t.orig_len,
                linktype: t.linktype,
                data: &t.data,
                comment: Some(row.comment()),
            })
        })
        .collect();
    write_pcapng(out, &packets)?;
    Ok(packets.len())
}
