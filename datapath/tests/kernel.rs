//! The in-kernel backend (`--features kernel`): our object loader against libbpf, the
//! behaviour cases of `cases/mod.rs` in the kernel, and the kernel and the emulator
//! (interpreter and JIT) in lockstep on the same packets and map state: identical return
//! values, identical ring-buffer bytes and identical dumps of every map after every run.
//!
//! Every test that needs the kernel goes through [`kernel::gate`]: without root/CAP_BPF or
//! BPF support it prints `SKIP (kernel backend unavailable: <why>)` and passes, unless
//! `VERDICT_REQUIRE_KERNEL=1`, which turns that into a failure.

#![cfg(feature = "kernel")]

use std::path::{Path, PathBuf};

use libbpf_rs::ObjectBuilder;
use verdict_datapath::backend::{Datapath, DatapathError, UpdateFlags};
use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::kernel::{self, KernelDatapath};
use verdict_datapath::object::{MapType, Object};
use verdict_datapath::{abi, events, packet};
use verdict_sim::abi as policy_abi;

mod cases;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn verdict_object() -> PathBuf {
    manifest_dir().join("bpf/verdict.bpf.o")
}

fn emu_test_object() -> PathBuf {
    manifest_dir().join("tests/bpf/emu_test.bpf.o")
}

/// True when the kernel can be used; prints SKIP and returns false when it cannot;
/// panics when it cannot and `VERDICT_REQUIRE_KERNEL=1`.
fn kernel_or_skip(test: &str) -> bool {
    match kernel::gate(test) {
        Ok(available) => available,
        Err(e) => panic!("{e}"),
    }
}

fn load_kernel() -> KernelDatapath {
    match KernelDatapath::load(&verdict_object()) {
        Ok(k) => k,
        Err(e) => panic!("kernel: load verdict.bpf.o: {e}"),
    }
}

fn load_emulator(mode: ExecMode) -> Emulator {
    match Emulator::from_file(&verdict_object(), mode) {
        Ok(e) => e,
        Err(e) => panic!("{mode:?}: load verdict.bpf.o: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// (a) our loader's map definitions are libbpf's
// ---------------------------------------------------------------------------------------

/// What libbpf parsed (open, before load): needs no privileges, so it always runs.
fn compare_defs_with_libbpf_open(path: &Path) -> usize {
    let ours = Object::from_file(path).expect("our loader parses the object");
    let mut builder = ObjectBuilder::default();
    let open = builder.open_file(path).expect("libbpf opens the object");
    let mut theirs: Vec<String> = open
        .maps()
        .map(|m| m.name().to_string_lossy().into_owned())
        .collect();
    theirs.sort();
    let mut names: Vec<String> = ours.maps.iter().map(|m| m.name.clone()).collect();
    names.sort();
    assert_eq!(names, theirs, "{}: map names", path.display());
    for m in open.maps() {
        let name = m.name().to_string_lossy().into_owned();
        let def = ours.map(&name).expect("same names");
        let got = (
            def.map_type.raw(),
            def.key_size,
            def.value_size,
            def.max_entries,
            def.map_flags,
        );
        let want = (
            u32::from(m.map_type()),
            m.key_size(),
            m.value_size(),
            m.max_entries(),
            m.map_flags(),
        );
        assert_eq!(
            got,
            want,
            "{} map {name}: (type, key, value, max_entries, flags) ours vs libbpf",
            path.display()
        );
    }
    let mut progs: Vec<(String, String)> = open
        .progs()
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                p.section().to_string_lossy().into_owned(),
            )
        })
        .collect();
    progs.sort();
    let mut our_progs: Vec<(String, String)> = ours
        .programs
        .iter()
        .map(|p| (p.name.clone(), p.section.clone()))
        .collect();
    our_progs.sort();
    assert_eq!(
        our_progs,
        progs,
        "{}: programs and sections",
        path.display()
    );
    ours.maps.len()
}

#[test]
fn loader_map_definitions_equal_libbpf_open() {
    let a = compare_defs_with_libbpf_open(&verdict_object());
    let b = compare_defs_with_libbpf_open(&emu_test_object());
    println!("{a} + {b} map definitions equal libbpf's");
}

/// What the kernel created (after load), and the prog-array slots libbpf filled from the
/// static initialisers our loader reads out of `.rel.maps`.
#[test]
fn loader_map_definitions_equal_the_kernels() {
    if !kernel_or_skip("loader_map_definitions_equal_the_kernels") {
        return;
    }
    let ours = Object::from_file(&verdict_object()).expect("parse");
    let k = load_kernel();
    assert_eq!(
        k.map_defs(),
        &ours.maps[..],
        "kernel map_defs vs our loader"
    );
    let emu = load_emulator(ExecMode::Interpreter);
    assert_eq!(k.map_defs(), emu.map_defs(), "kernel vs emulator map_defs");
    for def in &ours.maps {
        if def.map_type != MapType::ProgArray {
            continue;
        }
        let dump = k.map_dump(&def.name).expect("dump prog array");
        let slots: Vec<(u32, String)> = dump
            .iter()
            .map(|(key, v)| {
                let slot = u32::from_ne_bytes(key[..4].try_into().expect("4-byte key"));
                let p = u32::from_ne_bytes(v[..4].try_into().expect("4-byte value"));
                (slot, ours.programs[p as usize].name.clone())
            })
            .collect();
        assert_eq!(slots, def.initial_programs, "{}: filled slots", def.name);
        assert_eq!(dump, emu.map_dump(&def.name).expect("emu dump"));
    }
}

// ---------------------------------------------------------------------------------------
// The behaviour cases on the kernel
// ---------------------------------------------------------------------------------------
#[test]
fn cases_in_the_kernel() {
    if !kernel_or_skip("cases_in_the_kernel") {
        return;
    }
    let mut h = cases::Single(load_kernel());
    match cases::run_all(&mut h) {
        Ok(n) => println!("kernel: {n} cases passed"),
        Err(failures) => panic!("kernel:\n{failures}"),
    }
}

// ---------------------------------------------------------------------------------------
// (b) kernel and emulator in lockstep
// ---------------------------------------------------------------------------------------

/// Drives the kernel and emulators with the same calls; the kernel's answers go back to
/// the caller (the cases), every difference is recorded.
struct Lockstep {
    kernel: KernelDatapath,
    emus: Vec<Emulator>,
    maps: Vec<String>,
    runs: usize,
    dumps: usize,
    diffs: Vec<String>,
    /// What the current run is, for messages.
    label: String,
}

impl Lockstep {
    fn new() -> Lockstep {
        Lockstep::with_object(&verdict_object())
    }

    fn with_object(path: &Path) -> Lockstep {
        let kernel = KernelDatapath::load(path)
            .unwrap_or_else(|e| panic!("kernel: load {}: {e}", path.display()));
        let maps = kernel.map_defs().iter().map(|d| d.name.clone()).collect();
        let emu = |mode| {
            Emulator::from_file(path, mode)
                .unwrap_or_else(|e| panic!("{mode:?}: load {}: {e}", path.display()))
        };
        Lockstep {
            kernel,
            emus: vec![emu(ExecMode::Interpreter), emu(ExecMode::Jit)],
            maps,
            runs: 0,
            dumps: 0,
            diffs: Vec::new(),
            label: String::new(),
        }
    }

    fn diff(&mut self, msg: String) {
        // Keep the report readable: one divergence tends to cascade through later runs.
        if self.diffs.len() < 40 {
            self.diffs.push(msg);
        }
    }

    /// Every map on every backend, compared with the kernel's.
    fn compare_maps(&mut self, when: &str) {
        for map in self.maps.clone() {
            let k = self.kernel.map_dump(&map);
            for i in 0..self.emus.len() {
                let e = self.emus[i].map_dump(&map);
                self.dumps += 1;
                let same = match (&k, &e) {
                    (Ok(a), Ok(b)) => a == b,
                    (Err(a), Err(b)) => a.to_string() == b.to_string(),
                    _ => false,
                };
                if !same {
                    let name = self.emus[i].backend_name().to_string();
                    self.diff(format!(
                        "{when}: map {map} differs, kernel vs {name}:\n{}",
                        dump_diff(&k, &e)
                    ));
                }
            }
        }
    }

    /// Runs `frame` everywhere; `None` when the kernel refused the frame (then the
    /// emulators are not compared: the case set avoids such frames, the fuzzer counts).
    fn run_all(&mut self, program: &str, frame: &[u8]) -> Option<(u64, Vec<Vec<u8>>)> {
        self.runs += 1;
        let k = match self.kernel.run(program, frame) {
            Ok(out) => out,
            Err(e) => {
                let msg = format!("run #{} {}: kernel error {e}", self.runs, self.label);
                self.diff(msg);
                return None;
            }
        };
        for i in 0..self.emus.len() {
            let name = self.emus[i].backend_name().to_string();
            match self.emus[i].run(program, frame) {
                Ok(e) if e == k => {}
                Ok(e) => {
                    let msg = format!(
                        "run #{} {} ({program}, {} bytes): kernel ret {} events {}\n    {name} ret {} events {}",
                        self.runs,
                        self.label,
                        frame.len(),
                        k.retval,
                        hex_events(&k.events),
                        e.retval,
                        hex_events(&e.events)
                    );
                    self.diff(msg);
                }
                Err(err) => {
                    let msg = format!("run #{} {}: {name} error {err}", self.runs, self.label);
                    self.diff(msg);
                }
            }
        }
        let when = format!("after run #{} {} ({program})", self.runs, self.label);
        self.compare_maps(&when);
        Some((k.retval, k.events))
    }

    fn finish(self, what: &str) {
        println!(
            "{what}: {} runs and {} map dumps compared on kernel vs {} emulator modes, {} differences",
            self.runs,
            self.dumps,
            self.emus.len(),
            self.diffs.len()
        );
        assert!(
            self.diffs.is_empty(),
            "{what}: kernel and emulator differ:\n{}",
            self.diffs.join("\n")
        );
    }
}

impl cases::Harness for Lockstep {
    fn name(&self) -> String {
        "kernel+emulator".into()
    }
    fn update(&mut self, map: &str, key: &[u8], value: &[u8]) {
        let k = self.kernel.map_update(map, key, value);
        for i in 0..self.emus.len() {
            let e = self.emus[i].map_update(map, key, value);
            if k.as_ref().map_err(ToString::to_string) != e.as_ref().map_err(ToString::to_string) {
                let name = self.emus[i].backend_name().to_string();
                self.diff(format!("update {map}: kernel {k:?}, {name} {e:?}"));
            }
        }
        if let Err(e) = k {
            panic!("kernel update {map}: {e}");
        }
    }
    fn lookup(&mut self, map: &str, key: &[u8]) -> Option<Vec<u8>> {
        let k = self.kernel.map_lookup(map, key).map_err(|e| e.to_string());
        for i in 0..self.emus.len() {
            let e = self.emus[i].map_lookup(map, key).map_err(|e| e.to_string());
            if k != e {
                let name = self.emus[i].backend_name().to_string();
                self.diff(format!("lookup {map}: kernel {k:?}, {name} {e:?}"));
            }
        }
        match k {
            Ok(v) => v,
            Err(e) => panic!("kernel lookup {map}: {e}"),
        }
    }
    fn run(&mut self, program: &str, packet: &[u8]) -> (u64, Vec<Vec<u8>>) {
        self.label = String::from("case");
        match self.run_all(program, packet) {
            Some(out) => out,
            None => panic!(
                "kernel refused the case frame ({} bytes): {:?}",
                packet.len(),
                self.diffs.last()
            ),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_events(evs: &[Vec<u8>]) -> String {
    let v: Vec<String> = evs.iter().map(|e| hex(e)).collect();
    format!("[{}]", v.join(", "))
}

type Dump = Result<Vec<(Vec<u8>, Vec<u8>)>, DatapathError>;

fn dump_diff(k: &Dump, e: &Dump) -> String {
    let (Ok(k), Ok(e)) = (k, e) else {
        return format!("    kernel {k:?}\n    emulator {e:?}");
    };
    let mut out = Vec::new();
    for (key, v) in k {
        match e.iter().find(|(ek, _)| ek == key) {
            None => out.push(format!("    only kernel: {} = {}", hex(key), hex(v))),
            Some((_, ev)) if ev != v => out.push(format!(
                "    {}: kernel {} emulator {}",
                hex(key),
                hex(v),
                hex(ev)
            )),
            _ => {}
        }
    }
    for (key, v) in e {
        if !k.iter().any(|(kk, _)| kk == key) {
            out.push(format!("    only emulator: {} = {}", hex(key), hex(v)));
        }
    }
    out.truncate(10);
    out.join("\n")
}

#[test]
fn kernel_and_emulator_agree_on_the_cases() {
    if !kernel_or_skip("kernel_and_emulator_agree_on_the_cases") {
        return;
    }
    let mut ls = Lockstep::new();
    ls.compare_maps("after load");
    let checked = cases::run_all(&mut ls);
    // The case expectations were checked against the kernel's answers.
    if let Err(failures) = &checked {
        ls.diff(format!("case expectations on the kernel:\n{failures}"));
    }
    let n = checked.unwrap_or(0);
    println!("{n} cases checked on the kernel's answers");
    ls.finish("cases");
}

/// A small deterministic generator (xorshift64*): the same frames on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Valid packets between the cases' endpoints with random bytes flipped, cut or
/// appended, and pure garbage behind IPv4/IPv6/ARP/other ethertypes, through both
/// programs: the backends must agree on every one the kernel accepts.
#[test]
fn kernel_and_emulator_agree_on_mutated_and_garbage_frames() {
    if !kernel_or_skip("kernel_and_emulator_agree_on_mutated_and_garbage_frames") {
        return;
    }
    let mut ls = Lockstep::new();
    cases::setup(&mut ls);
    let addrs = [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.10",
        "8.8.8.8",
    ];
    let addrs6 = ["fd00::1", "fd00::2", "fd00::99"];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut refused = 0;
    const FRAMES: usize = 1500;
    for i in 0..FRAMES {
        let pick = |rng: &mut Rng, set: &[&str]| -> std::net::IpAddr {
            set[rng.below(set.len() as u64) as usize]
                .parse()
                .expect("address")
        };
        let v6 = rng.below(3) == 0;
        let (s, d) = if v6 {
            (pick(&mut rng, &addrs6), pick(&mut rng, &addrs6))
        } else {
            (pick(&mut rng, &addrs), pick(&mut rng, &addrs))
        };
        let (sp, dp) = (
            rng.below(65536) as u16,
            [80u16, 53, 443, 8080, 22, 81][i % 6],
        );
        let base = match rng.below(5) {
            0 => packet::Packet::tcp(s, d, sp, dp, rng.below(64) as u8),
            1 => packet::Packet::udp(s, d, sp, dp),
            2 if !v6 => packet::Packet::echo_request(s, d, sp, 1),
            3 => packet::Packet::sctp(s, d, sp, dp),
            _ => packet::Packet::tcp(s, d, sp, dp, packet::tcp_flags::SYN),
        };
        let mut f = base.build();
        match rng.below(6) {
            // Flip a few bytes after the Ethernet header.
            0..=2 => {
                for _ in 0..1 + rng.below(4) {
                    let at = 14 + rng.below((f.len() - 14) as u64) as usize;
                    f[at] ^= 1 << rng.below(8);
                }
            }
            // Cut, staying at or above what the kernel's test run accepts.
            3 => {
                let min = if v6 { 54 } else { 34 };
                let len = min + rng.below((f.len() - min + 1) as u64) as usize;
                f.truncate(len);
            }
            // Trailing bytes.
            4 => f.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
            // Garbage under some ethertype.
            _ => {
                let et = [
                    packet::ETH_P_IP,
                    packet::ETH_P_IPV6,
                    packet::ETH_P_ARP,
                    0x88cc,
                    0x0100,
                ][rng.below(5) as usize];
                let len = 40 + rng.below(80) as usize;
                let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                f = packet::ethernet(et, &body);
            }
        }
        let program = if rng.below(2) == 0 {
            abi::programs::FROM_CONTAINER
        } else {
            abi::programs::TO_CONTAINER
        };
        ls.label = format!("frame {i}");
        // Advance the clock now and then so conntrack expiry paths run too.
        if i % 100 == 99 {
            let now = 1_000_000_000u64 + i as u64 * 1_000_000_000;
            cases::Harness::update(
                &mut ls,
                abi::maps::CLOCK,
                &0u32.to_ne_bytes(),
                &now.to_ne_bytes(),
            );
        }
        let before = ls.diffs.len();
        if ls.run_all(program, &f).is_none() {
            // The kernel refuses some frames outright (-EINVAL); drop that "difference".
            ls.diffs.truncate(before);
            refused += 1;
        }
    }
    println!("{FRAMES} frames, {refused} refused by BPF_PROG_TEST_RUN");
    ls.finish("mutated and garbage frames");
}

/// The emulator's own test object (LPM trie, per-CPU array, hash, ring buffer, bpf-to-bpf
/// calls, `skb->cb` across a tail call, the tail-call limit) in lockstep.
#[test]
fn kernel_and_emulator_agree_on_the_emulator_test_object() {
    if !kernel_or_skip("kernel_and_emulator_agree_on_the_emulator_test_object") {
        return;
    }
    let mut ls = Lockstep::with_object(&emu_test_object());
    let lpm = |plen: u32, a: [u8; 4]| {
        let mut k = plen.to_ne_bytes().to_vec();
        k.extend_from_slice(&a);
        k
    };
    for (plen, addr, verdict) in [
        (8u32, [10, 0, 0, 0], 1u32),
        (24, [10, 1, 2, 0], 2),
        (32, [10, 1, 2, 3], 7),
        (16, [192, 168, 0, 0], 5),
    ] {
        cases::Harness::update(
            &mut ls,
            "cidr_map",
            &lpm(plen, addr),
            &verdict.to_ne_bytes(),
        );
    }
    let frame = |daddr: [u8; 4], proto: u16, len: usize| {
        let mut p = vec![0u8; len.max(34)];
        p[12..14].copy_from_slice(&proto.to_be_bytes());
        p[14] = 0x45;
        p[23] = 6;
        p[26..30].copy_from_slice(&[192, 168, 0, 1]);
        p[30..34].copy_from_slice(&daddr);
        p.truncate(len);
        p
    };
    let mut frames = Vec::new();
    for daddr in [
        [10, 0, 0, 1],
        [10, 1, 2, 3],
        [10, 1, 2, 4],
        [192, 168, 7, 7],
        [172, 16, 0, 1],
    ] {
        for len in [34, 60, 200] {
            frames.push(frame(daddr, 0x0800, len));
        }
        frames.push(frame(daddr, 0x86dd, 60));
    }
    // Short, but not an IPv4 ethertype: the kernel refuses IPv4 frames under 34 bytes.
    frames.push(frame([10, 0, 0, 1], 0x88cc, 20));
    for (i, f) in frames.iter().enumerate() {
        ls.label = format!("emu_test frame {i}");
        ls.run_all("entry", f);
        ls.run_all("stage2", f);
    }
    // The tail-call limit: loop_forever through slot 0.
    for emu in &mut ls.emus {
        emu.prog_array_set("jumps", 0, Some("loop_forever"))
            .expect("emu prog_array_set");
    }
    ls.kernel
        .prog_array_set("jumps", 0, Some("loop_forever"))
        .expect("kernel prog_array_set");
    ls.label = "tail-call limit".into();
    let out = ls.run_all("loop_forever", &frames[0]);
    println!("loop_forever returned {:?}", out.map(|o| o.0));
    ls.finish("emu_test.bpf.o");
}

/// One operation on a backend, rendered for comparison.
type MapOp = Box<dyn FnMut(&mut dyn Datapath) -> String>;

/// Map-operation semantics and errnos, and prog-array changes, on both backends.
#[test]
fn kernel_and_emulator_agree_on_map_operations() {
    if !kernel_or_skip("kernel_and_emulator_agree_on_map_operations") {
        return;
    }
    let mut k = load_kernel();
    let mut e = load_emulator(ExecMode::Interpreter);
    let mut compared = 0;
    let mut diffs = Vec::new();
    let mut both = |what: &str,
                    f: &mut dyn FnMut(&mut dyn Datapath) -> String,
                    k: &mut KernelDatapath,
                    e: &mut Emulator| {
        // The error texts name the backend; that is the one expected difference.
        let a = f(k).replace("\"kernel\"", "<backend>");
        let b = f(e).replace("\"rbpf-interp\"", "<backend>");
        compared += 1;
        if a != b {
            diffs.push(format!("{what}:\n    kernel   {a}\n    emulator {b}"));
        }
    };
    let ep = abi::EndpointKey::new("10.1.2.3".parse().expect("ip"));
    let info = abi::EndpointInfo {
        ep_id: 9,
        sec_identity: 9009,
        flags: 0,
        pad: 0,
    };
    use abi::Pod as _;
    let (key, val) = (ep.as_bytes().to_vec(), info.as_bytes().to_vec());
    let ops: Vec<(&str, MapOp)> = vec![
        (
            "update NOEXIST on absent",
            Box::new({
                let (key, val) = (key.clone(), val.clone());
                move |d| {
                    format!(
                        "{:?}",
                        d.map_update_flags(abi::maps::LXC, &key, &val, UpdateFlags::NoExist)
                    )
                }
            }),
        ),
        (
            "update NOEXIST on present",
            Box::new({
                let (key, val) = (key.clone(), val.clone());
                move |d| {
                    format!(
                        "{:?}",
                        d.map_update_flags(abi::maps::LXC, &key, &val, UpdateFlags::NoExist)
                    )
                }
            }),
        ),
        (
            "update EXIST on present",
            Box::new({
                let (key, val) = (key.clone(), val.clone());
                move |d| {
                    format!(
                        "{:?}",
                        d.map_update_flags(abi::maps::LXC, &key, &val, UpdateFlags::Exist)
                    )
                }
            }),
        ),
        (
            "lookup present",
            Box::new({
                let key = key.clone();
                move |d| format!("{:?}", d.map_lookup(abi::maps::LXC, &key))
            }),
        ),
        (
            "delete present",
            Box::new({
                let key = key.clone();
                move |d| format!("{:?}", d.map_delete(abi::maps::LXC, &key))
            }),
        ),
        (
            "delete absent",
            Box::new({
                let key = key.clone();
                move |d| format!("{:?}", d.map_delete(abi::maps::LXC, &key))
            }),
        ),
        (
            "update EXIST on absent",
            Box::new({
                let (key, val) = (key.clone(), val.clone());
                move |d| {
                    format!(
                        "{:?}",
                        d.map_update_flags(abi::maps::LXC, &key, &val, UpdateFlags::Exist)
                    )
                }
            }),
        ),
        (
            "array index beyond max_entries",
            Box::new(|d| {
                format!(
                    "{:?}",
                    d.map_update(abi::maps::CLOCK, &1u32.to_ne_bytes(), &5u64.to_ne_bytes())
                )
            }),
        ),
        (
            "array NOEXIST",
            Box::new(|d| {
                format!(
                    "{:?}",
                    d.map_update_flags(
                        abi::maps::CLOCK,
                        &0u32.to_ne_bytes(),
                        &5u64.to_ne_bytes(),
                        UpdateFlags::NoExist
                    )
                )
            }),
        ),
        (
            "array delete",
            Box::new(|d| format!("{:?}", d.map_delete(abi::maps::CLOCK, &0u32.to_ne_bytes()))),
        ),
        (
            "wrong key size",
            Box::new(|d| format!("{:?}", d.map_lookup(abi::maps::LXC, &[0; 3]))),
        ),
        (
            "unknown map",
            Box::new(|d| format!("{:?}", d.map_lookup("no_such_map", &[0; 4]))),
        ),
        (
            "ring buffer lookup",
            Box::new(|d| format!("{:?}", d.map_lookup(abi::maps::EVENTS, &[]))),
        ),
        (
            "ring buffer dump",
            Box::new(|d| format!("{:?}", d.map_dump(abi::maps::EVENTS))),
        ),
        (
            "LPM prefix beyond the key",
            Box::new(|d| {
                let mut k = abi::IpcacheKey::new("10.0.0.0".parse().expect("ip"), 8)
                    .as_bytes()
                    .to_vec();
                k[..4].copy_from_slice(&500u32.to_ne_bytes());
                let v = abi::RemoteEndpointInfo::default();
                format!("{:?}", d.map_update(abi::maps::IPCACHE, &k, v.as_bytes()))
            }),
        ),
        (
            "LPM longest-prefix lookup",
            Box::new(|d| {
                let put = |d: &mut dyn Datapath, a: &str, plen: u8, id: u32| {
                    let k = abi::IpcacheKey::new(a.parse().expect("ip"), plen);
                    let v = abi::RemoteEndpointInfo {
                        sec_identity: id,
                        ..Default::default()
                    };
                    d.map_update(abi::maps::IPCACHE, k.as_bytes(), v.as_bytes())
                };
                let r1 = put(d, "10.0.0.0", 8, 100);
                let r2 = put(d, "10.1.0.0", 16, 200);
                let q = abi::IpcacheKey::new("10.1.2.3".parse().expect("ip"), 32);
                let hit = d.map_lookup(abi::maps::IPCACHE, q.as_bytes());
                let q = abi::IpcacheKey::new("10.2.2.3".parse().expect("ip"), 32);
                let hit2 = d.map_lookup(abi::maps::IPCACHE, q.as_bytes());
                format!(
                    "{r1:?} {r2:?} {hit:?} {hit2:?} {:?}",
                    d.map_dump(abi::maps::IPCACHE)
                )
            }),
        ),
        (
            "per-CPU metrics update, lookup, dump",
            Box::new(|d| {
                let mk = abi::MetricsKey {
                    reason: 7,
                    dir: abi::DIR_EGRESS,
                    pad: [0; 6],
                };
                let mv = abi::MetricsValue {
                    count: 3,
                    bytes: 99,
                };
                let r = d.map_update(abi::maps::METRICS, mk.as_bytes(), mv.as_bytes());
                format!(
                    "{r:?} {:?} {:?}",
                    d.map_lookup(abi::maps::METRICS, mk.as_bytes()),
                    d.map_dump(abi::maps::METRICS)
                )
            }),
        ),
        (
            "prog array: empty the verdict slot, run, dump",
            Box::new(|d| {
                let r = d.prog_array_set(abi::maps::CALLS, abi::calls::VERDICT, None);
                let r2 = d.prog_array_set(abi::maps::CALLS, abi::calls::VERDICT, None);
                let f = packet::ethernet(0x88cc, &[0; 46]);
                let run = d.run(abi::programs::FROM_CONTAINER, &f);
                format!("{r:?} {r2:?} {run:?} {:?}", d.map_dump(abi::maps::CALLS))
            }),
        ),
        (
            "prog array: restore, slot beyond, unknown program",
            Box::new(|d| {
                let r =
                    d.prog_array_set(abi::maps::CALLS, abi::calls::VERDICT, Some("tail_verdict"));
                let r2 = d.prog_array_set(abi::maps::CALLS, 99, Some("tail_verdict"));
                let r3 = d.prog_array_set(abi::maps::CALLS, 0, Some("nope"));
                let f = packet::ethernet(0x88cc, &[0; 46]);
                let run = d.run(abi::programs::FROM_CONTAINER, &f);
                format!(
                    "{r:?} {r2:?} {r3:?} {run:?} {:?}",
                    d.map_dump(abi::maps::CALLS)
                )
            }),
        ),
        (
            "unknown program",
            Box::new(|d| format!("{:?}", d.run("nope", &[0; 60]))),
        ),
    ];
    for (what, mut f) in ops {
        both(what, &mut *f, &mut k, &mut e);
    }
    println!(
        "{compared} map operations compared, {} differences",
        diffs.len()
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// The ring is drained after every run, so it never fills: many runs each get exactly
/// their own records; after `run_repeat` the leftovers are gone too.
#[test]
fn ring_buffer_is_drained_per_run() {
    if !kernel_or_skip("ring_buffer_is_drained_per_run") {
        return;
    }
    let mut h = cases::Single(load_kernel());
    cases::setup(&mut h);
    // Denied every time (no CT entry is made): a verdict and a drop record per run.
    let f = packet::Packet::tcp(
        "10.0.0.4".parse().expect("ip"),
        "10.0.0.2".parse().expect("ip"),
        5000,
        80,
        packet::tcp_flags::SYN,
    )
    .build();
    let first = h.0.run(abi::programs::TO_CONTAINER, &f).expect("run");
    assert_eq!(first.events.len(), 2);
    // 20000 runs x 2 records is several times the 1 MiB ring.
    for i in 0..20_000 {
        let out = h.0.run(abi::programs::TO_CONTAINER, &f).expect("run");
        assert_eq!(out, first, "run {i}");
    }
    let rep =
        h.0.run_repeat(abi::programs::TO_CONTAINER, &f, 1000)
            .expect("run_repeat");
    assert_eq!(rep.retval, abi::TC_ACT_SHOT);
    assert_eq!(rep.repeat, 1000);
    assert_eq!(
        rep.events, 2000,
        "1000 runs' records fit the ring and are drained"
    );
    let after = h.0.run(abi::programs::TO_CONTAINER, &f).expect("run");
    assert_eq!(after, first, "no leftovers from run_repeat");
    let mk = abi::MetricsKey {
        reason: 181,
        dir: abi::DIR_INGRESS,
        pad: [0; 6],
    };
    use abi::Pod as _;
    let m =
        h.0.map_lookup(abi::maps::METRICS, mk.as_bytes())
            .expect("lookup")
            .and_then(|v| abi::MetricsValue::from_bytes(&v))
            .expect("metrics entry");
    assert_eq!(m.count, 1 + 20_000 + 1000 + 1, "per-CPU counts summed");
}

/// A program the verifier rejects names itself and carries the verifier's log: a copy of
/// verdict.bpf.o whose `tail_verdict` reads above the frame pointer.
#[test]
fn verifier_rejection_carries_the_log() {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    if !kernel_or_skip("verifier_rejection_carries_the_log") {
        return;
    }
    let mut data = std::fs::read(verdict_object()).expect("read verdict.bpf.o");
    let at = {
        let file = object::File::parse(&*data).expect("ELF");
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok("tail_verdict"))
            .expect("tail_verdict symbol");
        let section = file
            .section_by_index(sym.section_index().expect("section"))
            .expect("section");
        let (offset, _) = section.file_range().expect("file range");
        let code = &data[(offset + sym.address()) as usize..][..sym.size() as usize];
        // The first register move: no relocation can sit on it.
        let insn = code
            .chunks_exact(8)
            .position(|i| i[0] == 0xbf)
            .expect("a mov64 in tail_verdict");
        (offset + sym.address()) as usize + insn * 8
    };
    // ldxdw r0, [r10 + 8]: above the stack frame, which the verifier never allows.
    data[at..at + 8].copy_from_slice(&[0x79, 0xa0, 8, 0, 0, 0, 0, 0]);
    match KernelDatapath::load_bytes("verdict.bpf.o (broken tail_verdict)", &data) {
        Ok(_) => panic!("the verifier accepted a read above the frame pointer"),
        Err(DatapathError::Rejected {
            program,
            insn,
            message,
        }) => {
            println!("rejected {program} at {insn:?}: {message}");
            assert_eq!(program, "tail_verdict");
            assert_eq!(insn, Some(2), "the verifier stopped at the broken load");
            assert!(
                message.contains("-- BEGIN PROG LOAD LOG --") && message.contains("R10"),
                "no verifier log in: {message}"
            );
        }
        Err(e) => panic!("expected a verifier rejection, got: {e}"),
    }
}

/// The test-run interface's frame limits (`verdict_datapath::kernel::TEST_RUN_MAX_FRAME`):
/// the largest frame runs, one byte more is refused with a message that says why (captures
/// taken with GRO/TSO hold such frames), and so is an IPv4 frame cut inside its header.
#[test]
fn test_run_frame_limits_are_explained() {
    use verdict_datapath::kernel::TEST_RUN_MAX_FRAME;
    if !kernel_or_skip("test_run_frame_limits_are_explained") {
        return;
    }
    let mut k = load_kernel();
    let frame = |len: usize| {
        let mut f = vec![0u8; len];
        f[12] = 0x08; // IPv4 ethertype, zero header: a drop, not an error
        f
    };
    let prog = abi::programs::FROM_CONTAINER;
    k.run(prog, &frame(TEST_RUN_MAX_FRAME))
        .expect("the largest frame the kernel takes runs");
    match k.run(prog, &frame(TEST_RUN_MAX_FRAME + 1)) {
        Ok(o) => panic!("the kernel ran a frame over its limit: {o:?}; update TEST_RUN_MAX_FRAME"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("GRO/TSO"), "{msg}");
        }
    }
    match k.run(prog, &frame(33)) {
        Ok(o) => panic!("the kernel ran an IPv4 frame without a full header: {o:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("shorter than 34 bytes"), "{msg}");
        }
    }
}

/// Without privileges the backend says what is missing (checked in a child process that
/// drops every capability with util-linux `setpriv`).
#[test]
fn unprivileged_process_is_told_what_is_missing() {
    if std::env::var("VERDICT_KERNEL_PROBE_CHILD").is_ok() {
        // The child: report and exit.
        match kernel::kernel_available() {
            Ok(()) => println!("PROBE available"),
            Err(why) => println!("PROBE unavailable: {why}"),
        }
        match KernelDatapath::load(&verdict_object()) {
            Ok(_) => println!("PROBE loaded"),
            Err(e) => println!("PROBE load error: {e}"),
        }
        return;
    }
    if !kernel_or_skip("unprivileged_process_is_told_what_is_missing") {
        return;
    }
    // The test binary again, as nobody with no capabilities; `None` without setpriv.
    let child = |test: &str, require: bool| -> Option<(bool, String)> {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all"])
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("VERDICT_KERNEL_PROBE_CHILD", "1")
            .env_remove(kernel::REQUIRE_ENV);
        if require {
            cmd.env(kernel::REQUIRE_ENV, "1");
        }
        match cmd.output() {
            Ok(o) => Some((
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )),
            Err(e) => {
                println!("SKIP unprivileged probe: cannot run setpriv: {e}");
                None
            }
        }
    };
    let Some((_, said)) = child("unprivileged_process_is_told_what_is_missing", false) else {
        return;
    };
    println!("{said}");
    assert!(
        said.contains("PROBE unavailable: not root (euid 65534) and missing CAP_BPF (39)"),
        "child said:\n{said}"
    );
    assert!(
        said.contains("PROBE load error: kernel backend: unavailable: not root"),
        "child said:\n{said}"
    );
    // A kernel test skips loudly without the variable and fails with it.
    let Some((ok, said)) = child("cases_in_the_kernel", false) else {
        return;
    };
    assert!(
        ok && said.contains("SKIP cases_in_the_kernel (kernel backend unavailable: not root"),
        "unprivileged child without {}:\n{said}",
        kernel::REQUIRE_ENV
    );
    let Some((ok, said)) = child("cases_in_the_kernel", true) else {
        return;
    };
    assert!(
        !ok && said.contains("kernel backend unavailable")
            && said.contains("VERDICT_REQUIRE_KERNEL=1"),
        "unprivileged child with {}=1 must fail:\n{said}",
        kernel::REQUIRE_ENV
    );
}

#[test]
fn repeat_runs_report_kernel_time() {
    if !kernel_or_skip("repeat_runs_report_kernel_time") {
        return;
    }
    let mut k = load_kernel();
    let f = packet::ethernet(packet::ETH_P_ARP, &[0; 28]);
    let rep = k
        .run_repeat(abi::programs::FROM_CONTAINER, &f, 100)
        .expect("run_repeat");
    assert_eq!(rep.retval, abi::TC_ACT_OK);
    assert_eq!(rep.events, 0);
    assert!(rep.wall >= rep.per_run);
}
