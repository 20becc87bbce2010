//! The loader and the rbpf emulator on real clang-built objects (`tests/bpf/*.bpf.o`) and
//! on small assembled programs, in both execution modes.

use std::path::PathBuf;

use verdict_datapath::backend::{Datapath, DatapathError, Errno, RunOutcome, UpdateFlags};
use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::object::{MapDef, MapType, Object, Program};

const MODES: [ExecMode; 2] = [ExecMode::Interpreter, ExecMode::Jit];

fn test_object() -> Object {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/emu_test.bpf.o");
    Object::from_file(&path).expect("parse emu_test.bpf.o")
}

/// Ethernet + IPv4 header, destination `daddr`, EtherType `proto`.
fn frame(daddr: [u8; 4], proto: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(34)];
    p[12..14].copy_from_slice(&proto.to_be_bytes());
    p[14] = 0x45;
    p[23] = 6;
    p[26..30].copy_from_slice(&[192, 168, 0, 1]);
    p[30..34].copy_from_slice(&daddr);
    p.truncate(len);
    p
}

fn lpm_key(prefixlen: u32, addr: [u8; 4]) -> Vec<u8> {
    let mut k = prefixlen.to_ne_bytes().to_vec();
    k.extend_from_slice(&addr);
    k
}

/// struct event { daddr, verdict, len, stage } as bytes.
fn event(daddr: u32, verdict: u32, len: u32, stage: u32) -> Vec<u8> {
    [daddr, verdict, len, stage]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
}

fn counter(dp: &dyn Datapath, slot: u32) -> u64 {
    let v = dp
        .map_lookup("counters", &slot.to_ne_bytes())
        .expect("lookup")
        .expect("array slot");
    u64::from_ne_bytes(v.try_into().expect("8 bytes"))
}

#[test]
fn loader_reads_maps_programs_and_prog_array_initialisers() {
    let obj = test_object();
    assert_eq!(obj.license, "GPL");
    let names: Vec<(&str, &str)> = obj
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.section.as_str()))
        .collect();
    for want in ["entry", "stage2", "uses_unknown_helper", "loop_forever"] {
        assert!(names.contains(&(want, "tc")), "{want} in {names:?}");
    }
    let def = |name: &str| obj.map(name).expect(name).clone();
    assert_eq!(
        def("cidr_map"),
        MapDef {
            name: "cidr_map".into(),
            map_type: MapType::LpmTrie,
            key_size: 8,
            value_size: 4,
            max_entries: 64,
            map_flags: 1,
            initial_programs: vec![],
        }
    );
    let c = def("counters");
    assert_eq!(
        (c.map_type, c.key_size, c.value_size, c.max_entries),
        (MapType::PerCpuArray, 4, 8, 4)
    );
    let r = def("events");
    assert_eq!(
        (r.map_type, r.key_size, r.value_size, r.max_entries),
        (MapType::RingBuf, 0, 0, 4096)
    );
    let j = def("jumps");
    assert_eq!(
        (j.map_type, j.key_size, j.value_size, j.max_entries),
        (MapType::ProgArray, 4, 4, 4)
    );
    assert_eq!(j.initial_programs, vec![(1, "stage2".to_string())]);

    // Every map lddw is marked and carries its map index.
    let entry = obj.program("entry").expect("entry");
    for r in &entry.map_refs {
        let at = r.insn * 8;
        assert_eq!(entry.bytecode[at], 0x18);
        assert_eq!(entry.bytecode[at + 1] >> 4, 1, "BPF_PSEUDO_MAP_FD");
        let imm = u32::from_le_bytes(entry.bytecode[at + 4..at + 8].try_into().expect("imm"));
        assert_eq!(imm as usize, r.map);
    }
    let used: Vec<&str> = entry
        .map_refs
        .iter()
        .map(|r| obj.maps[r.map].name.as_str())
        .collect();
    for m in ["cidr_map", "counters", "seen", "events", "jumps"] {
        assert!(used.contains(&m), "{m} referenced by entry (via bump too)");
    }
}

#[test]
fn loader_links_subprograms_with_libbpf_rule() {
    let obj = test_object();
    let entry = obj.program("entry").expect("entry");
    let code = &entry.bytecode;
    let n = entry.insn_count();
    let mut calls = 0;
    for pc in 0..n {
        let at = pc * 8;
        if code[at] == 0x85 && code[at + 1] >> 4 == 1 {
            calls += 1;
            let imm = i32::from_le_bytes(code[at + 4..at + 8].try_into().expect("imm"));
            let target = pc as i64 + 1 + imm as i64;
            assert!(target > 0 && (target as usize) < n, "call {pc} -> {target}");
            // Each subprogram starts right after an exit (they are appended whole).
            assert_eq!(
                code[(target as usize - 1) * 8],
                0x95,
                "call {pc} -> {target}"
            );
        }
    }
    assert_eq!(
        calls, 3,
        "load_daddr once, bump twice (clang merges the third)"
    );
    // stage2 only calls bump: appended once, so its call lands after stage2's own exit.
    let s2 = obj.program("stage2").expect("stage2");
    assert!(s2.insn_count() > 20 && s2.insn_count() < entry.insn_count());
}

#[test]
fn loader_errors_name_object_and_section() {
    let e = Object::parse("junk.o", b"not an elf").expect_err("junk");
    assert!(e.to_string().contains("junk.o"), "{e}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/global_data.bpf.o");
    let e = Object::from_file(&path).expect_err("global data");
    assert_eq!(e.section, "tc");
    assert!(e.object.ends_with("global_data.bpf.o"), "{e}");
    assert!(
        e.message.contains("count_hits") && e.message.contains(".bss"),
        "{e}"
    );
}

#[test]
fn runs_lookup_counters_ringbuf_and_packet_access() {
    for mode in MODES {
        let mut emu = Emulator::new(&test_object(), mode).expect("emulator");
        assert!(emu.load_errors().len() == 1, "{:?}", emu.load_errors());
        emu.map_update("cidr_map", &lpm_key(8, [10, 0, 0, 0]), &5u32.to_ne_bytes())
            .expect("lpm /8");
        emu.map_update("cidr_map", &lpm_key(24, [10, 1, 2, 0]), &6u32.to_ne_bytes())
            .expect("lpm /24");

        let pkt = frame([10, 1, 2, 3], 0x0800, 60);
        let daddr = u32::from_ne_bytes([10, 1, 2, 3]);
        let out = emu.run("entry", &pkt).expect("run");
        assert_eq!(
            out,
            RunOutcome {
                retval: 6,
                events: vec![event(daddr, 6, 60, 1)],
            },
            "{mode:?}"
        );
        let out = emu
            .run("entry", &frame([10, 9, 9, 9], 0x0800, 42))
            .expect("run");
        assert_eq!(out.retval, 5);
        let out = emu
            .run("entry", &frame([11, 9, 9, 9], 0x0800, 42))
            .expect("run");
        assert_eq!(out.retval, 0);
        assert_eq!(out.events[0][4..8], 0xffff_ffffu32.to_ne_bytes());
        emu.run("entry", &pkt).expect("run again");
        // Not IPv4, and too short: dropped before any lookup.
        assert_eq!(
            emu.run("entry", &frame([10, 1, 2, 3], 0x86dd, 60))
                .expect("v6")
                .retval,
            2
        );
        assert_eq!(emu.run("entry", &pkt[..20]).expect("short").retval, 2);

        assert_eq!(counter(&emu, 0), 2);
        assert_eq!(counter(&emu, 1), 3);
        assert_eq!(counter(&emu, 2), 1);
        let seen = emu.map_dump("seen").expect("dump");
        assert_eq!(seen.len(), 3);
        assert_eq!(
            emu.map_lookup("seen", &daddr.to_ne_bytes())
                .expect("lookup"),
            Some(2u64.to_ne_bytes().to_vec())
        );
    }
}

#[test]
fn tail_calls_run_the_target_with_the_same_ctx() {
    for mode in MODES {
        let mut emu = Emulator::new(&test_object(), mode).expect("emulator");
        emu.map_update("cidr_map", &lpm_key(32, [10, 0, 0, 7]), &7u32.to_ne_bytes())
            .expect("lpm");
        let pkt = frame([10, 0, 0, 7], 0x0800, 64);
        let daddr = u32::from_ne_bytes([10, 0, 0, 7]);
        let out = emu.run("entry", &pkt).expect("run");
        // stage2 sees cb[0] = 42 written before the tail call, and the packet pointers.
        assert_eq!(out.retval, 142, "{mode:?}");
        assert_eq!(
            out.events,
            vec![event(daddr, 7, 64, 1), event(64, 42, 64, 2)]
        );
        assert_eq!(counter(&emu, 3), 1);

        // An empty slot: the tail call fails and the caller's fallthrough runs.
        emu.prog_array_set("jumps", 1, None).expect("clear");
        let out = emu.run("entry", &pkt).expect("run");
        assert_eq!(out.retval, 3);
        assert_eq!(out.events.len(), 1);
        assert_eq!(
            emu.map_dump("jumps").expect("dump"),
            Vec::<(Vec<u8>, Vec<u8>)>::new()
        );
    }
}

#[test]
fn tail_call_chain_stops_at_the_kernel_limit() {
    for mode in MODES {
        let mut emu = Emulator::new(&test_object(), mode).expect("emulator");
        emu.prog_array_set("jumps", 0, Some("loop_forever"))
            .expect("set");
        let out = emu
            .run("loop_forever", &frame([1, 2, 3, 4], 0x0800, 60))
            .expect("run");
        // The first run plus MAX_TAIL_CALL_CNT (33) tail calls.
        assert_eq!(out.retval, 34, "{mode:?}");
    }
}

#[test]
fn unknown_helper_is_an_error_naming_program_and_helper() {
    let mut emu = Emulator::new(&test_object(), ExecMode::Interpreter).expect("emulator");
    match emu.run("uses_unknown_helper", &frame([1, 2, 3, 4], 0x0800, 60)) {
        Err(DatapathError::UnknownHelper {
            program, helper, ..
        }) => {
            assert_eq!(program, "uses_unknown_helper");
            assert_eq!(helper, 7, "bpf_get_prandom_u32");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn map_api_errors_follow_the_kernel() {
    let mut emu = Emulator::new(&test_object(), ExecMode::Interpreter).expect("emulator");
    let k = 1u32.to_ne_bytes();
    let v = 1u64.to_ne_bytes();
    emu.map_update_flags("seen", &k, &v, UpdateFlags::NoExist)
        .expect("new");
    match emu.map_update_flags("seen", &k, &v, UpdateFlags::NoExist) {
        Err(DatapathError::Map { errno, .. }) => assert_eq!(errno, Errno::EEXIST),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        emu.map_update("seen", &[1, 2], &v),
        Err(DatapathError::Size { what: "key", .. })
    ));
    assert!(matches!(
        emu.map_lookup("nope", &k),
        Err(DatapathError::UnknownMap { .. })
    ));
    assert!(matches!(
        emu.map_update("events", &[], &[]),
        Err(DatapathError::UnsupportedMap { .. })
    ));
    assert!(emu.map_delete("seen", &k).expect("delete"));
    assert!(!emu.map_delete("seen", &k).expect("delete again"));
    for i in 0..16u32 {
        emu.map_update("seen", &i.to_ne_bytes(), &v).expect("fill");
    }
    match emu.map_update("seen", &99u32.to_ne_bytes(), &v) {
        Err(DatapathError::Map { errno, .. }) => assert_eq!(errno, Errno::E2BIG),
        other => panic!("{other:?}"),
    }
}

fn asm_object(name: &str, src: &str) -> Object {
    Object {
        name: format!("{name}.asm"),
        license: "GPL".into(),
        programs: vec![Program {
            name: name.into(),
            section: "tc".into(),
            bytecode: rbpf::assembler::assemble(src).expect("assemble"),
            map_refs: vec![],
        }],
        maps: vec![],
    }
}

#[test]
fn vm_errors_name_program_and_instruction() {
    // Reads past the end of the packet: the interpreter's bounds check stops it.
    let obj = asm_object(
        "oob",
        "ldxw r2, [r1+76]
         mov64 r0, 0
         ldxdw r0, [r2+4000]
         exit",
    );
    let mut emu = Emulator::new(&obj, ExecMode::Interpreter).expect("emulator");
    match emu.run("oob", &[0u8; 60]) {
        Err(DatapathError::Vm { program, insn, .. }) => {
            assert_eq!(program, "oob");
            assert_eq!(insn, Some(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn v4_instructions_are_rejected() {
    // `sdiv64 r0, r1` is encoded as div64 with off = 1.
    let mut obj = asm_object("sdiv", "mov64 r0, 7\nmov64 r1, 2\ndiv64 r0, r1\nexit");
    obj.programs[0].bytecode[2 * 8 + 2] = 1;
    let mut emu = Emulator::new(&obj, ExecMode::Interpreter).expect("emulator");
    match emu.run("sdiv", &[0u8; 60]) {
        Err(DatapathError::Rejected { insn, message, .. }) => {
            assert_eq!(insn, Some(2));
            assert!(message.contains("v4"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn jit_buffer_overflow_is_a_rejection_not_a_crash() {
    let mut src = String::new();
    for i in 0..3000 {
        src.push_str(&format!("mov64 r0, {i}\n"));
    }
    src.push_str("exit\n");
    let obj = asm_object("huge", &src);
    let mut emu = Emulator::new(&obj, ExecMode::Jit).expect("emulator");
    match emu.run("huge", &[0u8; 60]) {
        Err(DatapathError::Rejected {
            program, message, ..
        }) => {
            assert_eq!(program, "huge");
            assert!(message.contains("4 KiB"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The interpreter runs it.
    let mut emu = Emulator::new(&obj, ExecMode::Interpreter).expect("emulator");
    assert_eq!(emu.run("huge", &[0u8; 60]).expect("run").retval, 2999);
}

#[test]
fn ctx_len_and_protocol_match_test_run() {
    let obj = asm_object(
        "ctx",
        "ldxw r2, [r1+0]
         ldxw r3, [r1+16]
         lsh64 r3, 32
         or64 r2, r3
         mov64 r0, r2
         exit",
    );
    for mode in MODES {
        let mut emu = Emulator::new(&obj, mode).expect("emulator");
        let out = emu
            .run("ctx", &frame([1, 1, 1, 1], 0x0800, 98))
            .expect("run");
        // len = whole frame; protocol = htons(ETH_P_IP) as stored by eth_type_trans.
        assert_eq!(out.retval, (0x0008u64 << 32) | 98, "{mode:?}");
    }
}

/// The interpreter and the JIT agree on everything observable over a varied trace.
#[test]
fn interpreter_and_jit_agree() {
    let obj = test_object();
    let mut interp = Emulator::new(&obj, ExecMode::Interpreter).expect("interp");
    let mut jit = Emulator::new(&obj, ExecMode::Jit).expect("jit");
    let mut trace = Vec::new();
    for i in 0..200u32 {
        let a = [10, (i % 3) as u8, (i % 5) as u8, (i % 7) as u8];
        let proto = if i % 11 == 0 { 0x86dd } else { 0x0800 };
        trace.push(frame(a, proto, 34 + (i as usize % 40)));
    }
    for dp in [&mut interp as &mut dyn Datapath, &mut jit] {
        dp.map_update("cidr_map", &lpm_key(8, [10, 0, 0, 0]), &1u32.to_ne_bytes())
            .expect("lpm");
        dp.map_update("cidr_map", &lpm_key(16, [10, 1, 0, 0]), &7u32.to_ne_bytes())
            .expect("lpm");
        dp.map_update("cidr_map", &lpm_key(24, [10, 2, 3, 0]), &9u32.to_ne_bytes())
            .expect("lpm");
    }
    for pkt in &trace {
        let a = interp.run("entry", pkt);
        let b = jit.run("entry", pkt);
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (a, b) => panic!("diverged: {a:?} vs {b:?}"),
        }
    }
    for m in obj.maps.iter().map(|m| m.name.as_str()) {
        assert_eq!(
            interp.map_dump(m).expect("dump"),
            jit.map_dump(m).expect("dump"),
            "{m}"
        );
    }
}

/// `cargo test --release -p verdict-datapath --test emulator -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn bench_ns_per_packet() {
    let obj = test_object();
    let only = std::env::var("VERDICT_BENCH_MODE").unwrap_or_default();
    for mode in MODES {
        if (only == "jit" && mode != ExecMode::Jit)
            || (only == "interp" && mode != ExecMode::Interpreter)
        {
            continue;
        }
        let mut emu = Emulator::new(&obj, mode).expect("emulator");
        emu.map_update("cidr_map", &lpm_key(8, [10, 0, 0, 0]), &1u32.to_ne_bytes())
            .expect("lpm");
        let pkts: Vec<Vec<u8>> = (0..1024u32)
            .map(|i| frame([10, (i >> 8) as u8, i as u8, 1], 0x0800, 64))
            .collect();
        let n = 200_000;
        let start = std::time::Instant::now();
        for i in 0..n {
            emu.run("entry", &pkts[i % pkts.len()]).expect("run");
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "{mode:?}: {ns:.0} ns/packet ({} insns)",
            obj.program("entry").expect("entry").insn_count()
        );
    }
}

// ---- The project's own object, datapath/bpf/verdict.bpf.o ----

fn verdict_object() -> Object {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bpf/verdict.bpf.o");
    Object::from_file(&path).expect("parse verdict.bpf.o")
}

fn v4(a: [u8; 4]) -> std::net::IpAddr {
    std::net::IpAddr::from(a)
}

/// One endpoint 10.0.0.1 (ep 1, identity 1000, egress policy on), 10.0.1.0/24 as
/// identity 2000, and an egress allow to 2000 on TCP/80. Raw bytes per lib/maps.h and
/// lib/policy_abi.h.
fn setup_verdict(dp: &mut dyn Datapath) {
    let mut lxc_key = [0u8; 20];
    lxc_key[..4].copy_from_slice(&[10, 0, 0, 1]);
    lxc_key[16] = 1; // FAMILY_IPV4
    let lxc_val: Vec<u8> = [1u32, 1000, 0x2, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    dp.map_update("cilium_lxc", &lxc_key, &lxc_val)
        .expect("lxc");
    let mut ipc_key = vec![];
    ipc_key.extend_from_slice(&(32u32 + 24).to_ne_bytes());
    ipc_key.extend_from_slice(&[0, 0, 0, 1]); // cluster_id, pad, family
    ipc_key.extend_from_slice(&[10, 0, 1, 0]);
    ipc_key.extend_from_slice(&[0; 12]);
    let mut ipc_val = 2000u32.to_ne_bytes().to_vec();
    ipc_val.extend_from_slice(&[0; 8]);
    dp.map_update("cilium_ipcache_v2", &ipc_key, &ipc_val)
        .expect("ipcache");
    let mut pol_key = (32u32 + 64).to_ne_bytes().to_vec();
    pol_key.extend_from_slice(&1u32.to_be_bytes());
    pol_key.extend_from_slice(&2000u32.to_ne_bytes());
    pol_key.extend_from_slice(&[1, 6]);
    pol_key.extend_from_slice(&80u16.to_be_bytes());
    let mut pol_val = vec![0, 0, 0, 0];
    pol_val.extend_from_slice(&1u32.to_ne_bytes());
    pol_val.extend_from_slice(&7u32.to_ne_bytes());
    dp.map_update("cilium_policy_v2", &pol_key, &pol_val)
        .expect("policy");
    dp.map_update(
        "verdict_clock",
        &0u32.to_ne_bytes(),
        &1_000_000u64.to_ne_bytes(),
    )
    .expect("clock");
}

fn verdict_trace() -> Vec<Vec<u8>> {
    use verdict_datapath::packet::Packet;
    let mut trace = Vec::new();
    for i in 0..120u16 {
        let src = if i % 4 == 3 {
            [10, 0, 0, 9]
        } else {
            [10, 0, 0, 1]
        };
        let dst = [10, 0, (i % 3) as u8, 5 + (i % 7) as u8];
        let dport = if i % 2 == 0 { 80 } else { 443 };
        let flags = if i % 5 == 0 { 0x02 } else { 0x10 };
        trace.push(Packet::tcp(v4(src), v4(dst), 30000 + i, dport, flags).build());
        if i % 10 == 0 {
            trace.push(Packet::udp(v4(src), v4(dst), 5353, 53).build());
        }
    }
    trace.push(vec![0u8; 10]);
    trace
}

#[test]
fn verdict_object_loads_and_enforces_in_both_modes() {
    use verdict_datapath::packet::Packet;
    let obj = verdict_object();
    let calls = obj.map("cilium_calls").expect("cilium_calls");
    assert_eq!(calls.map_type, MapType::ProgArray);
    assert!(!calls.initial_programs.is_empty());
    for mode in MODES {
        let mut emu = Emulator::new(&obj, mode).expect("emulator");
        assert!(
            emu.load_errors().is_empty(),
            "{mode:?}: {:?}",
            emu.load_errors()
        );
        setup_verdict(&mut emu);
        let allowed = Packet::tcp(v4([10, 0, 0, 1]), v4([10, 0, 1, 7]), 40000, 80, 0x02).build();
        let denied = Packet::tcp(v4([10, 0, 0, 1]), v4([10, 0, 1, 7]), 40000, 22, 0x02).build();
        let ok = emu.run("cil_from_container", &allowed).expect("allowed");
        let drop = emu.run("cil_from_container", &denied).expect("denied");
        assert_eq!((ok.retval, drop.retval), (0, 2), "{mode:?}");
        assert!(!drop.events.is_empty(), "a drop emits an event");
    }
}

#[test]
fn verdict_object_interpreter_and_jit_agree() {
    let obj = verdict_object();
    let mut interp = Emulator::new(&obj, ExecMode::Interpreter).expect("interp");
    let mut jit = Emulator::new(&obj, ExecMode::Jit).expect("jit");
    setup_verdict(&mut interp);
    setup_verdict(&mut jit);
    for (i, pkt) in verdict_trace().iter().enumerate() {
        let prog = if i % 2 == 0 {
            "cil_from_container"
        } else {
            "cil_to_container"
        };
        let a = interp.run(prog, pkt).expect("interp");
        let b = jit.run(prog, pkt).expect("jit");
        assert_eq!(a, b, "packet {i}");
    }
    for m in obj.maps.iter().map(|m| m.name.as_str()) {
        assert_eq!(
            interp.map_dump(m).expect("dump"),
            jit.map_dump(m).expect("dump"),
            "{m}"
        );
    }
}

/// `cargo test --release -p verdict-datapath --test emulator bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn bench_verdict_ns_per_packet() {
    let obj = verdict_object();
    let trace = verdict_trace();
    // VERDICT_BENCH_MODE=jit|interp narrows the run (for perf).
    let only = std::env::var("VERDICT_BENCH_MODE").unwrap_or_default();
    for mode in MODES {
        if (only == "jit" && mode != ExecMode::Jit)
            || (only == "interp" && mode != ExecMode::Interpreter)
        {
            continue;
        }
        let mut emu = Emulator::new(&obj, mode).expect("emulator");
        setup_verdict(&mut emu);
        let n = 100_000;
        let start = std::time::Instant::now();
        for i in 0..n {
            emu.run("cil_from_container", &trace[i % trace.len()])
                .expect("run");
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("verdict.bpf.o cil_from_container {mode:?}: {ns:.0} ns/packet (wall)");
    }
}

/// Fixed per-run cost: an empty program, no maps.
#[test]
#[ignore = "benchmark"]
fn bench_empty_program() {
    let obj = asm_object("nop", "mov64 r0, 0\nexit");
    for mode in MODES {
        let mut emu = Emulator::new(&obj, mode).expect("emulator");
        let pkt = frame([1, 2, 3, 4], 0x0800, 64);
        let n = 1_000_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            emu.run("nop", &pkt).expect("run");
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("empty program {mode:?}: {ns:.0} ns/run");
    }
}
