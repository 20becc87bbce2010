//! `verdict fuzz --packets N` and `verdict fuzz --manifests N`: long fuzz campaigns that mutate
//! packets and scenario/manifest YAML rather than generating well-formed cases.
//!
//! Both are deterministic from `--seed`: case `k` draws everything from
//! `gen::case_seed(seed, k)`, so a case replays alone, on any machine or shard.
//!
//! - `--packets`: case `k` is a generated cluster and policies (the fuzzer's
//!   [`GenConfig::fuzz`]) and [`PACKETS_PER_CASE`] frames: well-formed TCP, UDP, SCTP, ICMP and
//!   ICMPv6 frames between its pods and outside addresses, most of them then mutated (bytes
//!   flipped, cut short, grown, the ethertype or IP header fields rewritten). They are replayed
//!   as `verdict diff --pcap` replays a capture, on the datapath backends (rbpf's interpreter,
//!   its JIT and the kernel when usable): every frame's verdict and ring-buffer records, and
//!   every map on every node after the case, must be identical, and nothing may panic or hang.
//!   A failing case is saved as a scenario and a pcapng, with the `verdict diff --pcap` command
//!   that replays it.
//! - `--manifests`: case `k` is a generated scenario's YAML (policies inline) with one to four
//!   text mutations (lines deleted, duplicated, re-indented, values replaced by ones of another
//!   type, out of range, huge, deeply nested, YAML anchors, tags, control characters, ...).
//!   Loading and replaying it on the oracle must give a clean run or an error that names the
//!   file and a line of it, and the field unless the text is not YAML at all; never a panic or
//!   a hang. A failing case is saved as the mutated file.
//!
//! Every case runs on a worker thread under a watchdog (`--timeout`): a case that takes
//! longer is reported as a hang with its seed and replay command, and the run stops. Before a
//! case runs, its replay command is written to `OUT_DIR/fuzz-inflight-SEED[-shard-I-N].txt`, so
//! that even an abort (which ends the process) leaves the case to replay; the file is removed
//! when the run ends.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pcap_file::DataLink;

use verdict_datapath::packet::{self, Packet, L4};
use verdict_sim::gen::{self, GenConfig, SplitMix64};
use verdict_sim::scenario;

use crate::pcap::{OutPacket, TracePacket};
use crate::shard::Shard;

/// Frames per `--packets` case: one cluster, its maps compared after these.
pub const PACKETS_PER_CASE: u64 = 250;

/// What to mutate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Packets,
    Manifests,
}

/// Arguments of the campaign.
#[derive(Clone, Debug)]
pub struct CampaignArgs {
    pub target: Target,
    pub seed: u64,
    /// Packets, or manifests.
    pub count: u64,
    pub backends: Vec<String>,
    pub out_dir: PathBuf,
    pub shard: Option<Shard>,
    pub timeout: Duration,
    pub verbose: bool,
}

impl CampaignArgs {
    fn cases(&self) -> u64 {
        match self.target {
            Target::Packets => self.count.div_ceil(PACKETS_PER_CASE),
            Target::Manifests => self.count,
        }
    }
    fn flag(&self) -> &'static str {
        match self.target {
            Target::Packets => "--packets",
            Target::Manifests => "--manifests",
        }
    }
    /// The command that runs case `case` alone: the shard of one case (shards are
    /// round-robin over the case indexes, so shard K+1 of CASES is case K).
    pub fn case_command(&self, case: u64) -> String {
        format!(
            "verdict fuzz {} {} --seed {} --backend {} --timeout {} --shard {}/{}",
            self.flag(),
            self.count,
            self.seed,
            self.backends.join(","),
            self.timeout.as_secs(),
            case + 1,
            self.cases()
        )
    }
    /// The command that runs this campaign again.
    fn command(&self) -> String {
        let mut c = format!(
            "verdict fuzz {} {} --seed {} --backend {} --timeout {}",
            self.flag(),
            self.count,
            self.seed,
            self.backends.join(","),
            self.timeout.as_secs()
        );
        if let Some(s) = self.shard {
            c.push_str(&format!(" --shard {s}"));
        }
        c
    }
}

/// What one case found.
#[derive(Clone, Debug)]
pub struct Finding {
    pub case: u64,
    pub case_seed: u64,
    pub what: String,
    /// Files written for it, and the command that replays it.
    pub files: Vec<PathBuf>,
    pub replay: String,
}

/// Totals of a campaign.
#[derive(Clone, Debug, Default)]
pub struct CampaignSummary {
    pub cases: u64,
    /// Packets replayed, or manifests loaded.
    pub items: u64,
    /// Manifests: loaded cleanly / refused with a located error. Packets: frames the
    /// datapaths decided / frames they refused as malformed (drop or error).
    pub clean: u64,
    pub refused: u64,
    pub findings: Vec<Finding>,
    pub seconds: f64,
}

// ---------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------

fn random_ip(rng: &mut SplitMix64, v6: bool) -> IpAddr {
    if v6 {
        let mut b = [0u8; 16];
        for x in &mut b {
            *x = rng.below(256) as u8;
        }
        if rng.chance(50) {
            b[..2].copy_from_slice(&[0xfd, 0x00]);
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
    }
}

/// A well-formed frame between `ips` (or outside addresses), before mutation, and its
/// addresses.
fn base_frame(rng: &mut SplitMix64, ips: &[IpAddr]) -> (Vec<u8>, (IpAddr, IpAddr)) {
    let v6 = rng.chance(15);
    let pick = |rng: &mut SplitMix64| -> IpAddr {
        let family: Vec<&IpAddr> = ips.iter().filter(|ip| ip.is_ipv6() == v6).collect();
        if !family.is_empty() && rng.chance(85) {
            **rng.pick(&family)
        } else {
            random_ip(rng, v6)
        }
    };
    let (src, dst) = (pick(rng), pick(rng));
    let ports = [80u16, 443, 53, 8080, 5432, 6379, 9090, 0, 1, 65535];
    let port = |rng: &mut SplitMix64| -> u16 {
        if rng.chance(70) {
            *rng.pick(&ports)
        } else {
            rng.below(65536) as u16
        }
    };
    let (sport, dport) = (port(rng), port(rng));
    let l4 = match rng.below(6) {
        0 | 1 => L4::tcp(sport, dport, rng.below(256) as u8),
        2 => L4::udp(sport, dport),
        3 => L4::sctp(sport, dport),
        _ => {
            let t = if v6 {
                *rng.pick(&[128u8, 129, 1, 2, 3, 4, 133, 135, 136])
            } else {
                *rng.pick(&[8u8, 0, 3, 5, 11, 12, 13])
            };
            L4::icmp(
                t,
                rng.below(4) as u8,
                rng.below(65536) as u16,
                rng.below(65536) as u16,
            )
        }
    };
    let mut p = Packet::new(src, dst, l4);
    if rng.chance(30) {
        let n = rng.below(200);
        p.payload = (0..n).map(|_| rng.below(256) as u8).collect();
    }
    if rng.chance(5) {
        p.fragment = Some(packet::Fragment {
            id: rng.next_u64() as u32,
            offset: rng.below(8192) as u16,
            more: rng.chance(50),
        });
    }
    (p.build(), (src, dst))
}

/// One to four mutations of a frame (or none, for a fifth of the frames).
fn mutate_frame(rng: &mut SplitMix64, mut f: Vec<u8>) -> Vec<u8> {
    if rng.chance(20) {
        return f;
    }
    for _ in 0..rng.range(1, 4) {
        match rng.below(9) {
            // Flip bits anywhere.
            0 | 1 => {
                if !f.is_empty() {
                    let i = rng.below(f.len());
                    f[i] ^= 1 << rng.below(8);
                }
            }
            // A byte of the IP or L4 header replaced.
            2 | 3 => {
                if f.len() > 14 {
                    let i = 14 + rng.below((f.len() - 14).min(60));
                    f[i] = rng.below(256) as u8;
                }
            }
            // Cut short.
            4 => {
                let n = rng.below(f.len() + 1);
                f.truncate(n);
            }
            // Grown with garbage.
            5 => {
                for _ in 0..rng.range(1, 64) {
                    f.push(rng.below(256) as u8);
                }
            }
            // Another ethertype (VLAN, ARP, the other IP version, anything).
            6 => {
                if f.len() >= 14 {
                    let t: u16 = *rng.pick(&[0x0800, 0x86dd, 0x8100, 0x0806, 0x88a8, 0xffff, 0]);
                    f[12..14].copy_from_slice(&t.to_be_bytes());
                }
            }
            // IPv4 IHL / IPv6 payload length / total length rewritten.
            7 => {
                if f.len() > 18 {
                    f[14] = (f[14] & 0xf0) | rng.below(16) as u8;
                    let len = rng.below(65536) as u16;
                    f[16..18].copy_from_slice(&len.to_be_bytes());
                }
            }
            // Entirely random bytes.
            _ => {
                let n = rng.below(120);
                f = (0..n).map(|_| rng.below(256) as u8).collect();
            }
        }
    }
    f
}

/// A generated case's scenario and frames.
pub struct PacketCase {
    pub yaml: String,
    pub name: String,
    pub trace: Vec<TracePacket>,
    /// Where each frame was meant to go (a mutated frame may not say any more).
    pub route: Vec<(IpAddr, IpAddr)>,
}

/// Case `case` of a `--packets` campaign seeded with `seed`, of `n` frames. With `kernel`,
/// frames shorter than the kernel's test run takes ([`packet::test_run_min_frame`]) are
/// padded with random bytes to that length: the kernel refuses them (EINVAL) before any
/// program runs, as a real interface never hands them to tc; without it they run as cut.
pub fn packet_case(seed: u64, case: u64, n: u64, kernel: bool) -> Result<PacketCase> {
    let cs = gen::case_seed(seed, case);
    let mut g = gen::generate(cs, &GenConfig::fuzz());
    g.scenario.name = format!("fuzz-packets-{seed}-{case}");
    let yaml = g.scenario.to_yaml();
    let path = PathBuf::from(format!("{}.yaml", g.scenario.name));
    let loaded = scenario::parse(&path, &yaml)
        .map_err(|e| anyhow::anyhow!("generated scenario does not parse: {e}"))?;
    let world = verdict_sim::engine::build_world(&loaded).map_err(anyhow::Error::msg)?;
    let mut ips: Vec<IpAddr> = world.cluster.pods.values().map(|p| p.ip).collect();
    ips.sort();
    let mut rng = SplitMix64::new(cs ^ 0x9ac4_e75f_0000_0001);
    let mut route = Vec::new();
    let trace = (0..n)
        .map(|i| {
            let (base, r) = base_frame(&mut rng, &ips);
            route.push(r);
            let mut f = mutate_frame(&mut rng, base);
            if kernel {
                while f.len() < packet::test_run_min_frame(&f) {
                    f.push(rng.below(256) as u8);
                }
            }
            TracePacket {
                index: i as usize + 1,
                ts_ns: 1_000_000_000 + i * 1_000_000,
                orig_len: f.len() as u32,
                linktype: DataLink::ETHERNET,
                data: f,
            }
        })
        .collect();
    Ok(PacketCase {
        yaml,
        name: g.scenario.name,
        trace,
        route,
    })
}

/// Replays one packet case; `Ok((decided, refused))` when every backend agrees.
fn run_packet_case(
    c: &PacketCase,
    names: &[String],
) -> Result<std::result::Result<(u64, u64), String>> {
    let path = PathBuf::from(format!("{}.yaml", c.name));
    let loaded = scenario::parse(&path, &c.yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let r = crate::pcap::replay_loaded(
        loaded,
        None,
        &c.trace,
        &c.route,
        names,
        &crate::diff::contender,
    )?;
    if !r.clean() {
        let bad = r.packets.iter().filter(|p| p.disagree).count();
        let state: usize = r.pairs.iter().map(|p| p.rows.len()).sum();
        let first = r
            .packets
            .iter()
            .find(|p| p.disagree)
            .map(|p| {
                let cells: Vec<String> = p
                    .results
                    .iter()
                    .map(|(b, o)| format!("{b}: {}", crate::diff::outcome_cell(o)))
                    .collect();
                format!(
                    "; first: packet {} {} [{}]",
                    p.index,
                    p.summary,
                    cells.join("; ")
                )
            })
            .or_else(|| {
                r.pairs.iter().flat_map(|p| &p.rows).next().map(|row| {
                    format!(
                        "; first: {} on {} at {:?}: {} vs {}",
                        row.what, row.node, row.at, row.reference, row.other
                    )
                })
            })
            .unwrap_or_default();
        return Ok(Err(format!(
            "{bad} packets with differing verdicts or records, {state} state differences{first}"
        )));
    }
    let decided = r
        .packets
        .iter()
        .filter(|p| {
            p.results
                .iter()
                .any(|(_, o)| o.as_ref().is_ok_and(|o| o.allowed))
        })
        .count() as u64;
    Ok(Ok((decided, r.packets.len() as u64 - decided)))
}

fn save_packet_case(args: &CampaignArgs, c: &PacketCase) -> Result<(Vec<PathBuf>, String)> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let yaml = args.out_dir.join(format!("{}.yaml", c.name));
    std::fs::write(&yaml, &c.yaml).with_context(|| format!("writing {}", yaml.display()))?;
    let pcap = args.out_dir.join(format!("{}.pcapng", c.name));
    let out: Vec<OutPacket<'_>> = c
        .trace
        .iter()
        .map(|p| OutPacket {
            ts_ns: p.ts_ns,
            orig_len: p.orig_len,
            linktype: p.linktype,
            data: &p.data,
            comment: None,
        })
        .collect();
    crate::pcap::write_pcapng(&pcap, &out)?;
    // The frames that still parse replay with `verdict diff --pcap` (those that do not are
    // skipped there: the capture does not say where they were meant to go).
    let replay = format!(
        "verdict diff --backend {} --pcap {} --scenario {}",
        args.backends.join(","),
        pcap.display(),
        yaml.display()
    );
    Ok((vec![yaml, pcap], replay))
}

// ---------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------

/// Values that are wrong somewhere: another type, out of range, huge, YAML's odd corners.
const BAD_VALUES: &[&str] = &[
    "",
    "~",
    "null",
    "[]",
    "{}",
    "[1, 2",
    "{a: }",
    "-1",
    "0",
    "65536",
    "70000",
    "4294967296",
    "99999999999999999999999999",
    "1e400",
    "-0x10",
    "0o777",
    ".nan",
    "true",
    "\"\"",
    "'unterminated",
    "\"\\u0000\"",
    "\"\\x07bell\"",
    "*undefined",
    "&a [*a]",
    "!!binary AAAA",
    "!!python/object:os.system",
    "!custom x",
    "10.0.0.0/33",
    "::1/129",
    "300.1.1.1",
    "ns/",
    "/pod",
    "a/b/c",
    "TCP",
    "ANY",
    "Ingress",
    "<<: {x: 1}",
    "? complex\n: key",
    "|\n  block",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
];

/// One to four text mutations of `text`.
fn mutate_text(rng: &mut SplitMix64, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..rng.range(1, 4) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = rng.below(lines.len());
        match rng.below(10) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            // Re-indented.
            2 => {
                let l = lines[i].trim_start().to_string();
                let n = rng.below(12);
                let pad = if rng.chance(20) {
                    "\t".repeat(1 + n / 4)
                } else {
                    " ".repeat(n)
                };
                lines[i] = format!("{pad}{l}");
            }
            // A value replaced.
            3..=5 => {
                let v = *rng.pick(BAD_VALUES);
                let l = &lines[i];
                lines[i] = match l.find(": ") {
                    Some(at) => format!("{}: {v}", &l[..at]),
                    None => match l.find("- ") {
                        Some(at) => format!("{}- {v}", &l[..at]),
                        None => format!("{l} {v}"),
                    },
                };
            }
            // A key renamed (a typo, a field of another kind).
            6 => {
                let l = lines[i].clone();
                if let Some(at) = l.find(':') {
                    let key = *rng.pick(&[
                        "nmae",
                        "ports",
                        "toPorts",
                        "endpointSelector",
                        "matchLabels",
                        "cidr",
                        "steps",
                        "kind",
                        "spec",
                        "x-unknown",
                        "",
                        "-",
                    ]);
                    let indent = l.len() - l.trim_start().len();
                    let dash = if l.trim_start().starts_with("- ") {
                        "- "
                    } else {
                        ""
                    };
                    lines[i] = format!("{}{dash}{key}{}", &l[..indent], &l[at..]);
                }
            }
            // Characters in the middle of a line.
            7 => {
                let l = lines[i].clone();
                let cut = (0..=l.len())
                    .filter(|&k| l.is_char_boundary(k))
                    .nth(rng.below(l.chars().count() + 1))
                    .unwrap_or(0);
                let ins = *rng.pick(&[
                    ":", "{", "}", "[", "]", ",", "#", "&", "*", "!", "|", ">", "'", "\"", "%",
                    "@", "`", "\u{0}", "\u{1b}", "\u{feff}", "\u{2028}", "é",
                ]);
                lines[i] = format!("{}{ins}{}", &l[..cut], &l[cut..]);
            }
            // A line swapped with another.
            8 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            // A document separator or directive.
            _ => {
                let d = *rng.pick(&["---", "...", "%YAML 1.2", "%TAG ! tag:x,2000:", "--- |"]);
                lines.insert(i, d.to_string());
            }
        }
    }
    let mut out = lines.join("\n");
    if rng.chance(90) {
        out.push('\n');
    }
    out
}

/// Case `case` of a `--manifests` campaign: its file name and text.
pub fn manifest_case(seed: u64, case: u64) -> (String, String) {
    let cs = gen::case_seed(seed, case);
    let mut g = gen::generate(cs, &GenConfig::fuzz());
    let name = format!("fuzz-manifests-{seed}-{case}");
    g.scenario.name = name.clone();
    let mut rng = SplitMix64::new(cs ^ 0x3a11_f00d_0000_0002);
    (
        format!("{name}.yaml"),
        mutate_text(&mut rng, &g.scenario.to_yaml()),
    )
}

/// Loads and replays (on the oracle) one manifest case: `Ok(true)` loaded and ran,
/// `Ok(false)` refused with a located error, `Err` what is wrong with the error.
fn run_manifest_case(file: &str, text: &str) -> std::result::Result<bool, String> {
    let path = Path::new(file);
    let lines = text.lines().count().max(1);
    let check_located = |msg: &str, field_needed: bool| -> std::result::Result<bool, String> {
        let rest = msg
            .strip_prefix(&format!("{file}:"))
            .ok_or_else(|| format!("the error does not start with the file name: {msg}"))?;
        let line: usize = rest
            .split(':')
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| format!("the error names no line: {msg}"))?;
        if line == 0 || line > lines + 1 {
            return Err(format!(
                "the error names line {line} of a {lines}-line file: {msg}"
            ));
        }
        if field_needed {
            // file:line:column: field: message
            // (a missing field is named in the message: "missing field `name`").
            let after = rest.splitn(3, ':').nth(2).unwrap_or("");
            if after.trim_start().split(": ").count() < 2 && !after.contains("field `") {
                return Err(format!("the error names no field: {msg}"));
            }
        }
        Ok(false)
    };
    let loaded = match scenario::parse(path, text) {
        Ok(l) => l,
        Err(e) => {
            let msg = e.to_string();
            // Text that is not YAML (or not one document) has no field to name.
            let yaml_ok = matches!(verdict_sim::yaml::parse_one(text), Ok(Some(_)));
            let field_needed = yaml_ok && !msg.contains("empty file");
            return check_located(&msg, field_needed);
        }
    };
    let names = ["oracle".to_string()];
    let r = verdict_sim::engine::run(&loaded, &names, &crate::backends::factory);
    match &r.error {
        None => Ok(true),
        Some(msg) => check_located(msg, true),
    }
}

// ---------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------

/// Writes a failing case's files; returns them and the command that inspects them.
type SaveCase = Box<dyn Fn() -> Result<(Vec<PathBuf>, String)>>;

enum Outcome {
    Done(std::result::Result<(u64, u64), String>),
    Panicked(String),
    Hung,
}

/// Runs `f` on a worker thread, at most `timeout`.
fn watchdog<F>(timeout: Duration, f: F) -> Outcome
where
    F: FnOnce() -> std::result::Result<(u64, u64), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let h = std::thread::Builder::new()
        .name("fuzz-case".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
    let Ok(h) = h else {
        return Outcome::Done(Err("could not start a worker thread".into()));
    };
    match rx.recv_timeout(timeout) {
        Ok(Ok(r)) => {
            let _ = h.join();
            Outcome::Done(r)
        }
        Ok(Err(p)) => {
            let _ = h.join();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            Outcome::Panicked(msg)
        }
        // The thread is left behind: it cannot be stopped, and the run ends.
        Err(_) => Outcome::Hung,
    }
}

/// Runs the campaign, writing progress and findings to `out`.
pub fn run_campaign(args: &CampaignArgs, out: &mut dyn Write) -> Result<CampaignSummary> {
    if args.count == 0 {
        bail!("{} 0: nothing to fuzz", args.flag());
    }
    if args.target == Target::Packets {
        if let Some(b) = args.backends.iter().find(|b| !crate::diff::is_datapath(b)) {
            bail!(
                "--packets compares the datapath backends (rbpf, rbpf-jit, kernel) frame by frame; {b} does not take frames"
            );
        }
        if args.backends.len() < 2 {
            bail!(
                "--packets needs at least two datapath backends to compare, got {}",
                args.backends.join(",")
            );
        }
        for b in &args.backends {
            crate::diff::contender(b).map_err(anyhow::Error::msg)?;
        }
    }
    let t0 = Instant::now();
    let cases: Vec<u64> = (0..args.cases())
        .filter(|&k| args.shard.is_none_or(|s| s.owns(k as usize)))
        .collect();
    writeln!(
        out,
        "verdict fuzz {} {}: seed {}, {} cases{}, backends {}, timeout {} s per case",
        args.flag(),
        args.count,
        args.seed,
        cases.len(),
        args.shard
            .map(|s| format!(" (shard {s})"))
            .unwrap_or_default(),
        match args.target {
            Target::Packets => args.backends.join(","),
            Target::Manifests => "oracle".into(),
        },
        args.timeout.as_secs()
    )?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let inflight = args.out_dir.join(format!(
        "fuzz-inflight-{}{}.txt",
        args.seed,
        args.shard
            .map(|s| format!("-shard-{}-{}", s.index, s.count))
            .unwrap_or_default()
    ));
    let mut sum = CampaignSummary::default();
    let progress = crate::progress::Progress::new(cases.len() as u64, "cases");
    for case in cases {
        progress.inc(&format!("{} findings", sum.findings.len()));
        let case_seed = gen::case_seed(args.seed, case);
        let (outcome, save): (Outcome, SaveCase) = match args.target {
            Target::Packets => {
                let n = PACKETS_PER_CASE.min(args.count - case * PACKETS_PER_CASE);
                let kernel = args.backends.iter().any(|b| b == "kernel");
                let c = std::sync::Arc::new(packet_case(args.seed, case, n, kernel)?);
                std::fs::write(
                    &inflight,
                    format!(
                        "case {case} (seed {case_seed:#018x}) of: {}\n",
                        args.command()
                    ),
                )
                .with_context(|| format!("writing {}", inflight.display()))?;
                let names = args.backends.clone();
                let c2 = c.clone();
                let o = watchdog(args.timeout, move || {
                    run_packet_case(&c2, &names).map_err(|e| format!("error: {e:#}"))?
                });
                sum.items += n;
                let a = args.clone();
                (o, Box::new(move || save_packet_case(&a, &c)))
            }
            Target::Manifests => {
                let (file, text) = manifest_case(args.seed, case);
                std::fs::write(
                    &inflight,
                    format!(
                        "case {case} (seed {case_seed:#018x}) of: {}\n",
                        args.command()
                    ),
                )
                .with_context(|| format!("writing {}", inflight.display()))?;
                let (f2, t2) = (file.clone(), text.clone());
                let o = watchdog(args.timeout, move || {
                    run_manifest_case(&f2, &t2).map(|ok| if ok { (1, 0) } else { (0, 1) })
                });
                sum.items += 1;
                let dir = args.out_dir.clone();
                (
                    o,
                    Box::new(move || {
                        let p = dir.join(&file);
                        std::fs::write(&p, &text)
                            .with_context(|| format!("writing {}", p.display()))?;
                        let replay = format!("verdict run --backend oracle {}", p.display());
                        Ok((vec![p], replay))
                    }),
                )
            }
        };
        sum.cases += 1;
        let what = match outcome {
            Outcome::Done(Ok((c, r))) => {
                sum.clean += c;
                sum.refused += r;
                if args.verbose {
                    writeln!(out, "case {case} (seed {case_seed:#018x}): ok")?;
                }
                continue;
            }
            Outcome::Done(Err(e)) => e,
            Outcome::Panicked(m) => format!("PANIC: {m}"),
            Outcome::Hung => format!("HANG: still running after {} s", args.timeout.as_secs()),
        };
        let hung = what.starts_with("HANG");
        let (files, replay) = save()?;
        progress.suspend(|| -> Result<()> {
            writeln!(out, "case {case} (seed {case_seed:#018x}): {what}")?;
            writeln!(
                out,
                "  saved: {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            writeln!(out, "  replay: {}", args.case_command(case))?;
            writeln!(out, "  or: {replay}")?;
            writeln!(out, "  campaign: {}", args.command())?;
            Ok(())
        })?;
        sum.findings.push(Finding {
            case,
            case_seed,
            what,
            files,
            replay,
        });
        if hung {
            writeln!(out, "stopping: a hung case keeps running on its thread")?;
            break;
        }
    }
    progress.finish();
    let _ = std::fs::remove_file(&inflight);
    sum.seconds = t0.elapsed().as_secs_f64();
    let (c, r) = match args.target {
        Target::Packets => ("allowed by some backend", "dropped or refused"),
        Target::Manifests => ("loaded and ran", "refused with a located error"),
    };
    writeln!(
        out,
        "summary: {} cases, {} {}: {} {c}, {} {r}; {} finding(s)",
        sum.cases,
        sum.items,
        match args.target {
            Target::Packets => "packets",
            Target::Manifests => "manifests",
        },
        sum.clean,
        sum.refused,
        sum.findings.len()
    )?;
    Ok(sum)
}

/// `verdict fuzz --packets|--manifests`: `Ok(true)` when nothing was found.
pub fn run(args: &CampaignArgs) -> Result<bool> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let sum = run_campaign(args, &mut lock)?;
    Ok(sum.findings.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_deterministic() {
        let a = packet_case(7, 3, 20, true).unwrap();
        let b = packet_case(7, 3, 20, true).unwrap();
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.yaml, b.yaml);
        assert_ne!(packet_case(7, 4, 20, true).unwrap().trace, a.trace);
        assert_eq!(manifest_case(1, 2), manifest_case(1, 2));
        assert_ne!(manifest_case(1, 2).1, manifest_case(1, 3).1);
    }

    #[test]
    fn the_watchdog_reports_panics_and_hangs() {
        let t = Duration::from_secs(20);
        assert!(matches!(
            watchdog(t, || Ok((1, 0))),
            Outcome::Done(Ok((1, 0)))
        ));
        match watchdog(t, || panic!("boom {}", 7)) {
            Outcome::Panicked(m) => assert_eq!(m, "boom 7"),
            _ => panic!("not reported as a panic"),
        }
        let o = watchdog(Duration::from_millis(300), || {
            std::thread::sleep(Duration::from_secs(3));
            Ok((0, 0))
        });
        assert!(matches!(o, Outcome::Hung));
    }

    /// What counts as a located error (the --manifests oracle).
    #[test]
    fn located_errors() {
        // Loads and runs.
        let ok = "name: ok\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}]\n";
        assert_eq!(run_manifest_case("f.yaml", ok), Ok(true));
        // Refused: a field with its line.
        let bad =
            "name: ok\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a, ip: 300.1.1.1}]\n";
        assert_eq!(run_manifest_case("f.yaml", bad), Ok(false));
        // A missing field is named in the message; not YAML at all has no field to name.
        assert_eq!(run_manifest_case("f.yaml", "cluster: {}\n"), Ok(false));
        assert_eq!(run_manifest_case("f.yaml", "name: [1\n"), Ok(false));
        assert_eq!(run_manifest_case("f.yaml", ""), Ok(false));
    }
}
