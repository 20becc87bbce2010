//! verdict's enforcement programs (`datapath/bpf/verdict.bpf.o`, the committed object):
//! the behaviour cases of `cases/mod.rs` on every backend available here, the objects'
//! reproducibility, and the per-program size budget of rbpf's JIT.

use std::path::{Path, PathBuf};
use std::process::Command;

use verdict_datapath::backend::Datapath;
use verdict_datapath::emu::{Emulator, ExecMode};
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
fn run_cases_on_emulator(mode: ExecMode) {
    let emu = match Emulator::from_file(&verdict_object(), mode) {
        Ok(emu) => emu,
        Err(e) => panic!("load verdict.bpf.o ({mode:?}): {e}"),
    };
    let mut backend = cases::Single(emu);
    match cases::run_all(&mut backend) {
        Ok(n) => println!("{mode:?}: {n} cases passed"),
        Err(failures) => panic!("{mode:?}:\n{failures}"),
    }
}

#[test]
fn cases_under_the_emulator_interpreter() {
    run_cases_on_emulator(ExecMode::Interpreter);
}

#[test]
fn cases_under_the_emulator_jit() {
    run_cases_on_emulator(ExecMode::Jit);
}

/// The same cases in the kernel (`--features kernel`, as root); a loud SKIP elsewhere.
#[cfg(feature = "kernel")]
#[test]
fn cases_in_the_kernel() {
    use verdict_datapath::kernel::{gate, KernelDatapath};
    match gate("cases_in_the_kernel") {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => panic!("{e}"),
    }
    let kernel = match KernelDatapath::load(&verdict_object()) {
        Ok(k) => k,
        Err(e) => panic!("load verdict.bpf.o into the kernel: {e}"),
    };
    match cases::run_all(&mut cases::Single(kernel)) {
        Ok(n) => println!("kernel: {n} cases passed"),
        Err(failures) => panic!("kernel:\n{failures}"),
    }
}

/// rbpf's x86 JIT compiles into one 4 KiB page per program; past roughly 500 linked
/// instructions it panics. Keep every program (subprograms included) well below.
#[test]
fn every_program_fits_the_jit_budget() {
    const BUDGET: usize = 400;
    let obj = Object::from_file(&verdict_object()).expect("parse verdict.bpf.o");
    let mut names: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    let mut want = vec![
        abi::programs::FROM_CONTAINER,
        abi::programs::TO_CONTAINER,
        abi::programs::FROM_HOST,
        abi::programs::TO_HOST,
    ];
    want.extend(abi::calls::PROGRAMS.iter().map(|(_, n)| *n));
    want.sort_unstable();
    assert_eq!(names, want, "programs in verdict.bpf.o");
    for p in &obj.programs {
        println!("{}: {} instructions", p.name, p.insn_count());
        assert!(
            p.insn_count() <= BUDGET,
            "{} has {} instructions, budget {BUDGET}",
            p.name,
            p.insn_count()
        );
    }
    let calls = obj
        .maps
        .iter()
        .find(|m| m.name == abi::maps::CALLS)
        .expect("cilium_calls map");
    let slots: Vec<(u32, &str)> = calls
        .initial_programs
        .iter()
        .map(|(i, n)| (*i, n.as_str()))
        .collect();
    assert_eq!(
        slots,
        abi::calls::PROGRAMS.to_vec(),
        "cilium_calls initialisers"
    );
}

/// Map definitions as the object's BTF declares them, against the Rust mirrors: a
/// layout change on one side only fails here (and the C side's abi_check.h asserts the
/// field offsets at compile time).
#[test]
fn maps_match_the_rust_mirrors() {
    use std::mem::size_of;
    let obj = Object::from_file(&verdict_object()).expect("parse verdict.bpf.o");
    let want: [(&str, MapType, usize, usize, u32); 10] = [
        (
            abi::maps::IPCACHE,
            MapType::LpmTrie,
            size_of::<abi::IpcacheKey>(),
            size_of::<abi::RemoteEndpointInfo>(),
            512_000,
        ),
        (
            abi::maps::LXC,
            MapType::Hash,
            size_of::<abi::EndpointKey>(),
            size_of::<abi::EndpointInfo>(),
            65_535,
        ),
        (
            abi::maps::POLICY,
            MapType::LpmTrie,
            size_of::<policy_abi::EndpointPolicyKey>(),
            size_of::<policy_abi::PolicyEntry>(),
            1 << 24,
        ),
        (
            abi::maps::CT,
            MapType::Hash,
            size_of::<abi::CtKey>(),
            size_of::<abi::CtEntry>(),
            262_144,
        ),
        (
            abi::maps::AUTH,
            MapType::Hash,
            size_of::<abi::AuthKey>(),
            size_of::<abi::AuthInfo>(),
            524_288,
        ),
        (abi::maps::CLOCK, MapType::Array, 4, 8, 1),
        (abi::maps::EVENTS, MapType::RingBuf, 0, 0, 1 << 20),
        (
            abi::maps::METRICS,
            MapType::PerCpuHash,
            size_of::<abi::MetricsKey>(),
            size_of::<abi::MetricsValue>(),
            1024,
        ),
        (
            abi::maps::SCRATCH,
            MapType::PerCpuArray,
            4,
            size_of::<abi::VerdictState>(),
            1,
        ),
        (
            abi::maps::CALLS,
            MapType::ProgArray,
            4,
            4,
            abi::calls::PROGRAMS.len() as u32,
        ),
    ];
    assert_eq!(obj.maps.len(), want.len(), "maps in verdict.bpf.o");
    for (name, ty, key, value, max) in want {
        let m = obj
            .maps
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no map {name}"));
        assert_eq!(
            (
                m.map_type,
                m.key_size as usize,
                m.value_size as usize,
                m.max_entries
            ),
            (ty, key, value, max),
            "map {name}: (type, key size, value size, max entries)"
        );
    }
}

/// The committed objects must be what tools/build-bpf.sh makes from the sources. Only
/// a clang of the same version as the one recorded in the objects can reproduce them:
/// with none, or another version, the check is skipped loudly.
#[test]
fn committed_objects_match_their_sources() {
    let skip = |why: &str| {
        println!("SKIP committed_objects_match_their_sources: {why}");
        eprintln!("SKIP committed_objects_match_their_sources: {why}");
    };
    let clang = match Command::new("clang").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).to_string(),
        _ => {
            return skip(
                "clang is not on PATH, so the committed BPF objects cannot be rebuilt and \
                 compared (apt-get install -y --no-install-recommends clang libelf-dev libbpf-dev)",
            )
        }
    };
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        return skip("bpf/bpf_helpers.h is missing (apt-get install -y libbpf-dev)");
    }
    let committed_clang = clang_ident(&read(&verdict_object()));
    match &committed_clang {
        Some(ident) if clang.contains(ident.as_str()) => {}
        _ => {
            return skip(&format!(
                "the objects were built by {committed_clang:?}, this machine has {:?}",
                clang.lines().next().unwrap_or("")
            ))
        }
    }
    let root = manifest_dir().join("..");
    let out = std::env::temp_dir().join(format!("verdict-build-bpf-{}", std::process::id()));
    let status = Command::new("bash")
        .arg(root.join("tools/build-bpf.sh"))
        .arg(&out)
        .status()
        .expect("run tools/build-bpf.sh");
    assert!(status.success(), "tools/build-bpf.sh failed");
    let mut checked = 0;
    for dir in ["datapath/bpf", "datapath/tests/bpf"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.ends_with(".bpf.c") {
                continue;
            }
            let obj = format!("{dir}/{}", name.replace(".bpf.c", ".bpf.o"));
            let committed = read(&root.join(&obj));
            let rebuilt = read(&out.join(&obj));
            assert!(
                committed == rebuilt,
                "{obj} differs from a fresh build of its source: run tools/build-bpf.sh and commit the object"
            );
            checked += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(checked > 0, "no BPF sources found");
}

/// The "... clang version X.Y.Z" string clang leaves in an object's .comment section.
fn clang_ident(obj: &[u8]) -> Option<String> {
    obj.split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .find(|s| s.contains("clang version"))
        .map(|s| s.trim().to_string())
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn events_decode_into_hubble_like_lines() {
    // One real record from the interpreter, printed.
    let emu = Emulator::from_file(&verdict_object(), ExecMode::Interpreter).expect("load");
    let mut backend = cases::Single(emu);
    cases::setup(&mut backend);
    let frame = packet::Packet::tcp(
        "10.0.0.4".parse().expect("ip"),
        "10.0.0.2".parse().expect("ip"),
        5000,
        80,
        packet::tcp_flags::SYN,
    )
    .build();
    let out = backend
        .0
        .run(abi::programs::TO_CONTAINER, &frame)
        .expect("run");
    let lines: Vec<String> = out
        .events
        .iter()
        .map(|r| events::Event::decode(r).expect("decode").to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "policy-verdict:L3-L4 INGRESS DENIED ep 2 identity 1006->1002: 10.0.0.4:5000 -> 10.0.0.2:80 TCP Flags: SYN",
            "drop (Policy denied by denylist (181)) INGRESS ep 2 identity 1006->1002: 10.0.0.4:5000 -> 10.0.0.2:80 TCP Flags: SYN",
        ]
    );
}
