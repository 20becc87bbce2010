//! The in-kernel datapath backend: the committed object loaded by libbpf (libbpf-rs), maps
//! driven through the `bpf()` syscall, programs run with `BPF_PROG_TEST_RUN`.
//!
//! It implements [`Datapath`] with the same observable contract as the emulator
//! ([`crate::emu`]), so the differential harness can run one trace on both and compare
//! return values, ring-buffer bytes and map dumps:
//!
//! - ring-buffer records emitted during a run are drained right after it and returned in
//!   order; the ring is also drained before every run, so it never fills;
//! - per-CPU values are summed lane-wise as u64 (CPU 0's value when `value_size % 8 != 0`),
//!   and updates write lane 0 and zero the others;
//! - `map_dump` is sorted by key bytes; prog arrays dump (slot, program index) pairs;
//! - map-operation failures carry the kernel's errno exactly.
//!
//! Programs run on one CPU (the calling thread is pinned for the duration of each test
//! run, see [`KernelDatapath::set_run_cpu`]), because per-CPU maps that carry state between
//! runs (the tail-call scratch area) would otherwise be summed across whichever CPUs the
//! runs landed on, and the emulator is a one-CPU machine.
//!
//! Needs root, or CAP_BPF and CAP_NET_ADMIN ([`kernel_available`] says what is missing).

use std::cell::RefCell;
use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{
    MapCore, MapHandle, ObjectBuilder, PrintLevel, ProgramHandle, ProgramInput, RingBuffer,
    RingBufferBuilder,
};

use crate::backend::{Datapath, DatapathError, Errno, RunOutcome, UpdateFlags};
use crate::object::{MapDef, MapType, Object};

const BACKEND: &str = "kernel";

/// Set to `1` to turn "kernel backend unavailable" from a skip into a failure.
pub const REQUIRE_ENV: &str = "VERDICT_REQUIRE_KERNEL";

// Capability bits of /proc/self/status `CapEff` (include/uapi/linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The most CPUs a `cpu_set_t` of 1024 bits describes; sched_*affinity take it as u64s.
const CPU_SET_WORDS: usize = 1024 / 64;

// glibc, which std links anyway: declaring the few calls we need saves a `libc` dependency.
unsafe extern "C" {
    fn geteuid() -> u32;
    fn sched_getaffinity(pid: i32, cpusetsize: usize, mask: *mut u64) -> i32;
    fn sched_setaffinity(pid: i32, cpusetsize: usize, mask: *const u64) -> i32;
}

// ---------------------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------------------

/// Whether this process can load and test-run verdict's programs in the kernel; the error
/// says exactly what is missing (privileges, the `bpf()` syscall, a program or map type).
pub fn kernel_available() -> Result<(), String> {
    check_capabilities()?;
    install_print_capture();
    // The cheapest real syscall: create (and close) a one-entry array map.
    // SAFETY: a null opts pointer is allowed; no other pointers are passed.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_ARRAY,
            std::ptr::null(),
            4,
            4,
            1,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(format!("BPF syscall refused: {}", errno_text(-fd)));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });

    // SAFETY: a null opts pointer is allowed.
    let probe = unsafe {
        libbpf_sys::libbpf_probe_bpf_prog_type(
            libbpf_sys::BPF_PROG_TYPE_SCHED_CLS,
            std::ptr::null(),
        )
    };
    match probe {
        1 => {}
        0 => return Err("the kernel does not support BPF_PROG_TYPE_SCHED_CLS programs".into()),
        e => {
            return Err(format!(
                "probing BPF_PROG_TYPE_SCHED_CLS failed: {}",
                errno_text(-e)
            ))
        }
    }
    for (ty, name) in [
        (libbpf_sys::BPF_MAP_TYPE_RINGBUF, "BPF_MAP_TYPE_RINGBUF"),
        (libbpf_sys::BPF_MAP_TYPE_LPM_TRIE, "BPF_MAP_TYPE_LPM_TRIE"),
        (
            libbpf_sys::BPF_MAP_TYPE_PROG_ARRAY,
            "BPF_MAP_TYPE_PROG_ARRAY",
        ),
    ] {
        // SAFETY: a null opts pointer is allowed.
        match unsafe { libbpf_sys::libbpf_probe_bpf_map_type(ty, std::ptr::null()) } {
            1 => {}
            0 => return Err(format!("the kernel does not support {name} maps")),
            e => return Err(format!("probing {name} failed: {}", errno_text(-e))),
        }
    }
    Ok(())
}

fn check_capabilities() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status to check capabilities: {e}"))?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no parsable CapEff line in /proc/self/status")?;
    let has = |bit: u32| cap_eff >> bit & 1 == 1;
    // The kernel's bpf_capable() and bpf_net_capable(): CAP_SYS_ADMIN stands in for both.
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF (39)");
    }
    if !has(CAP_NET_ADMIN) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_NET_ADMIN (12, needed for tc programs)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { geteuid() };
    let who = if euid == 0 {
        "running as root but".to_string()
    } else {
        format!("not root (euid {euid}) and")
    };
    Err(format!(
        "{who} missing {} in the effective capabilities (CapEff {cap_eff:016x}); run as root \
         or grant CAP_BPF and CAP_NET_ADMIN",
        missing.join(" and ")
    ))
}

/// Whether `VERDICT_REQUIRE_KERNEL=1` is set.
pub fn kernel_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// The gate every kernel test and harness run goes through: `Ok(true)` when the kernel
/// backend is usable; `Ok(false)` after printing a loud `SKIP (kernel backend unavailable:
/// <why>)` line for `what`; `Err` when it is unavailable and `VERDICT_REQUIRE_KERNEL=1`.
pub fn gate(what: &str) -> Result<bool, String> {
    match kernel_available() {
        Ok(()) => Ok(true),
        Err(why) if kernel_required() => Err(format!(
            "{what}: kernel backend unavailable ({why}) and {REQUIRE_ENV}=1"
        )),
        Err(why) => {
            // Both streams: cargo test hides stdout of passing tests unless --nocapture.
            println!("SKIP {what} (kernel backend unavailable: {why})");
            eprintln!("SKIP {what} (kernel backend unavailable: {why})");
            Ok(false)
        }
    }
}

fn errno_text(errno: i32) -> String {
    format!(
        "{} ({})",
        Errno(errno),
        std::io::Error::from_raw_os_error(errno)
    )
}

// ---------------------------------------------------------------------------------------
// libbpf's log
// ---------------------------------------------------------------------------------------

thread_local! {
    /// While `Some`, libbpf messages on this thread are appended here instead of printed.
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// libbpf prints through one process-wide callback; loads happen on the caller's thread,
/// so a thread-local buffer separates concurrent loads (parallel tests).
fn print_to_capture(level: PrintLevel, msg: String) {
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some(buf) => {
            buf.push_str(&msg);
            true
        }
        None => false,
    });
    if !captured && level == PrintLevel::Warn {
        eprint!("{msg}");
    }
}

/// Installs [`print_to_capture`] as libbpf's print callback, once per process. This
/// replaces libbpf-rs's default (print everything at Info to stderr).
fn install_print_capture() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((PrintLevel::Info, print_to_capture)));
    });
}

/// Runs `f` with libbpf's messages on this thread captured; returns them with the result.
fn capture_log<T>(f: impl FnOnce() -> T) -> (T, String) {
    install_print_capture();
    let previous = CAPTURE.with(|c| c.borrow_mut().replace(String::new()));
    let out = f();
    let log = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
    (out, log.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// CPU pinning
// ---------------------------------------------------------------------------------------

type CpuSet = [u64; CPU_SET_WORDS];

fn get_affinity() -> Result<CpuSet, DatapathError> {
    let mut set: CpuSet = [0; CPU_SET_WORDS];
    // SAFETY: the mask buffer is exactly `size_of::<CpuSet>()` bytes.
    let r = unsafe { sched_getaffinity(0, std::mem::size_of::<CpuSet>(), set.as_mut_ptr()) };
    if r < 0 {
        return Err(backend_err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(set)
}

fn set_affinity(set: &CpuSet) -> Result<(), DatapathError> {
    // SAFETY: the mask buffer is exactly `size_of::<CpuSet>()` bytes.
    let r = unsafe { sched_setaffinity(0, std::mem::size_of::<CpuSet>(), set.as_ptr()) };
    if r < 0 {
        return Err(backend_err(format!(
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn only(cpu: usize) -> CpuSet {
    let mut set: CpuSet = [0; CPU_SET_WORDS];
    set[cpu / 64] |= 1 << (cpu % 64);
    set
}

/// Pins the calling thread to one CPU and restores its affinity when dropped; a thread
/// already pinned there costs one `sched_getaffinity`. See [`KernelDatapath::pin_thread`].
#[derive(Debug)]
#[must_use = "the thread is unpinned when the guard drops"]
pub struct ThreadPin {
    restore: Option<CpuSet>,
}

impl ThreadPin {
    fn new(cpu: usize) -> Result<ThreadPin, DatapathError> {
        let old = get_affinity()?;
        let want = only(cpu);
        if old == want {
            return Ok(ThreadPin { restore: None });
        }
        set_affinity(&want)?;
        Ok(ThreadPin { restore: Some(old) })
    }
}

impl Drop for ThreadPin {
    fn drop(&mut self) {
        if let Some(old) = &self.restore {
            // Nothing useful to do on failure: the thread just stays pinned.
            let _ = set_affinity(old);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------

fn backend_err(message: impl Into<String>) -> DatapathError {
    DatapathError::Backend {
        backend: BACKEND.into(),
        message: message.into(),
    }
}

fn map_err(map: &str, op: &'static str, errno: i32) -> DatapathError {
    DatapathError::Map {
        map: map.into(),
        op,
        errno: Errno(errno),
    }
}

/// What [`KernelDatapath::run_repeat`] measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatOutcome {
    /// The last run's return value.
    pub retval: u64,
    /// How many times the program ran.
    pub repeat: u32,
    /// The kernel's average per run (`BPF_PROG_TEST_RUN`'s `duration`, whole ns).
    pub per_run: Duration,
    /// Wall time of the whole syscall, as seen from userspace.
    pub wall: Duration,
    /// Ring-buffer records drained afterwards (and discarded). Fewer than the runs emitted
    /// when the ring filled up: `bpf_ringbuf_output` then fails and the record is lost.
    pub events: usize,
}

/// One object's programs and maps, loaded into the running kernel.
pub struct KernelDatapath {
    // Field order is drop order: the ring buffer's mmap goes before the maps' fds and
    // the libbpf object.
    ring: Option<RingBuffer<'static>>,
    /// Records the ring-buffer callback copied out, waiting for `run` to take them.
    events: Arc<Mutex<Vec<Vec<u8>>>>,
    /// One handle per map of [`Self::object`], in its order.
    maps: Vec<MapHandle>,
    /// The map definitions as libbpf created them (object order).
    defs: Vec<MapDef>,
    /// Kernel program ids, in the object's program order (prog-array dumps).
    prog_ids: Vec<u32>,
    bpf: libbpf_rs::Object,
    /// Our own parse of the same object: map and program order, prog-array initialisers.
    object: Object,
    ncpus: usize,
    run_cpu: Option<usize>,
}

impl std::fmt::Debug for KernelDatapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelDatapath")
            .field("object", &self.object.name)
            .field("run_cpu", &self.run_cpu)
            .finish_non_exhaustive()
    }
}

impl KernelDatapath {
    /// Loads the object at `path` into the kernel (maps created, programs verified, prog
    /// arrays filled by libbpf from their static initialisers).
    pub fn load(path: &Path) -> Result<KernelDatapath, DatapathError> {
        let data = std::fs::read(path).map_err(|e| {
            DatapathError::Object(crate::object::ObjectError {
                object: path.display().to_string(),
                section: "-".into(),
                message: format!("cannot read: {e}"),
            })
        })?;
        KernelDatapath::load_bytes(&path.display().to_string(), &data)
    }

    /// Loads an object from memory; `name` labels errors.
    pub fn load_bytes(name: &str, data: &[u8]) -> Result<KernelDatapath, DatapathError> {
        // Our loader first: a malformed object fails the same way on every backend, and
        // its order of maps and programs is the one the trait reports.
        let object = Object::parse(name, data)?;
        kernel_available().map_err(|why| backend_err(format!("unavailable: {why}")))?;

        let (loaded, log) = capture_log(|| -> libbpf_rs::Result<libbpf_rs::Object> {
            let mut builder = ObjectBuilder::default();
            // libbpf names an in-memory object after its address; use the file's stem.
            let stem: String = Path::new(name)
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.split('.').next())
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !stem.is_empty() {
                builder.name(stem)?;
            }
            let open = builder.open_memory(data)?;
            open.load()
        });
        let bpf = loaded.map_err(|e| load_error(name, &e, &log))?;

        let mut maps = Vec::with_capacity(object.maps.len());
        let mut defs = Vec::with_capacity(object.maps.len());
        for def in &object.maps {
            let Some(m) = bpf.maps().find(|m| m.name() == def.name.as_str()) else {
                return Err(backend_err(format!(
                    "{name}: libbpf created no map named {}",
                    def.name
                )));
            };
            // Flags as the kernel created the map (libbpf keeps them only before load).
            let info = libbpf_rs::MapInfo::new(m.as_fd())
                .map_err(|e| backend_err(format!("map {}: info: {e}", def.name)))?;
            defs.push(MapDef {
                name: def.name.clone(),
                map_type: MapType::from_raw(u32::from(m.map_type())),
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: m.max_entries(),
                map_flags: info.info.map_flags,
                initial_programs: def.initial_programs.clone(),
            });
            maps.push(
                MapHandle::try_from(&m)
                    .map_err(|e| backend_err(format!("map {}: dup fd: {e}", def.name)))?,
            );
        }
        let mut prog_ids = Vec::with_capacity(object.programs.len());
        for p in &object.programs {
            // Handles come from `ProgramMut` (libbpf-rs implements the conversion there).
            let Some(prog) = bpf.progs_mut().find(|q| q.name() == p.name.as_str()) else {
                return Err(backend_err(format!(
                    "{name}: libbpf loaded no program named {}",
                    p.name
                )));
            };
            let handle = ProgramHandle::try_from(&prog)
                .map_err(|e| backend_err(format!("program {}: info: {e}", p.name)))?;
            prog_ids.push(handle.id());
        }

        let events = Arc::new(Mutex::new(Vec::new()));
        let mut builder = RingBufferBuilder::new();
        let mut rings = 0;
        for (h, def) in maps.iter().zip(&defs) {
            if def.map_type != MapType::RingBuf {
                continue;
            }
            let sink = Arc::clone(&events);
            builder
                .add(h, move |record: &[u8]| {
                    // A poisoned lock only means another thread panicked mid-push.
                    let mut v = sink.lock().unwrap_or_else(|p| p.into_inner());
                    v.push(record.to_vec());
                    0
                })
                .map_err(|e| backend_err(format!("ring buffer {}: {e}", def.name)))?;
            rings += 1;
        }
        let ring = if rings > 0 {
            Some(
                builder
                    .build()
                    .map_err(|e| backend_err(format!("ring buffer: {e}")))?,
            )
        } else {
            None
        };

        // SAFETY: no arguments.
        let ncpus = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
        if ncpus <= 0 {
            return Err(backend_err(format!(
                "cannot count possible CPUs: {}",
                errno_text(-ncpus)
            )));
        }
        let run_cpu = get_affinity()?
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize);

        Ok(KernelDatapath {
            ring,
            events,
            maps,
            defs,
            prog_ids,
            bpf,
            object,
            ncpus: ncpus as usize,
            run_cpu,
        })
    }

    /// Our parse of the loaded object.
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The CPU test runs are pinned to (default: the lowest CPU the loading thread was
    /// allowed on), or `None` to run wherever the thread is. Unpinned, per-CPU maps that
    /// keep state between runs stop comparing equal with the emulator.
    ///
    /// Each run pins the calling thread and restores its affinity afterwards (about 3 µs
    /// with the migration); a thread already pinned to this CPU only pays one
    /// `sched_getaffinity`, so long traces should run on a pinned thread.
    pub fn set_run_cpu(&mut self, cpu: Option<usize>) {
        self.run_cpu = cpu.filter(|c| *c < CPU_SET_WORDS * 64);
    }

    /// Pins the calling thread to the run CPU until the guard drops, so the runs in
    /// between skip the per-run affinity change. `None` when runs are not pinned.
    pub fn pin_thread(&self) -> Result<Option<ThreadPin>, DatapathError> {
        self.run_cpu.map(ThreadPin::new).transpose()
    }

    pub fn run_cpu(&self) -> Option<usize> {
        self.run_cpu
    }

    /// The number of possible CPUs (the lanes of a per-CPU value).
    pub fn possible_cpus(&self) -> usize {
        self.ncpus
    }

    /// Runs `program` `n` times on the same frame in one `BPF_PROG_TEST_RUN` (for
    /// benchmarks). Maps change n times over (conntrack, metrics); the ring buffer is
    /// drained and its records discarded afterwards.
    pub fn run_repeat(
        &mut self,
        program: &str,
        packet: &[u8],
        n: u32,
    ) -> Result<RepeatOutcome, DatapathError> {
        let n = n.max(1);
        let start = Instant::now();
        let (retval, per_run) = self.test_run(program, packet, n)?;
        let wall = start.elapsed();
        let events = std::mem::take(&mut *self.lock_events()).len();
        Ok(RepeatOutcome {
            retval,
            repeat: n,
            per_run,
            wall,
            events,
        })
    }

    fn lock_events(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves every record in the ring into `self.events`.
    fn drain(&self) -> Result<(), DatapathError> {
        if let Some(ring) = &self.ring {
            let r = ring.consume_raw();
            if r < 0 {
                return Err(backend_err(format!(
                    "ring buffer consume: {}",
                    errno_text(-r)
                )));
            }
        }
        Ok(())
    }

    /// One `BPF_PROG_TEST_RUN` with the ring drained before (discarding leftovers) and
    /// after (records stay in `self.events`). Returns retval and the kernel's duration.
    fn test_run(
        &mut self,
        program: &str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(u64, Duration), DatapathError> {
        // `test_run` is only offered on the mutable program type.
        let prog = self
            .bpf
            .progs_mut()
            .find(|p| p.name() == program)
            .ok_or_else(|| DatapathError::UnknownProgram {
                program: program.into(),
            })?;
        self.drain()?;
        self.lock_events().clear();
        let pin = self.run_cpu.map(ThreadPin::new).transpose()?;
        let input = ProgramInput {
            data_in: Some(packet),
            repeat,
            ..Default::default()
        };
        let out = prog.test_run(input).map_err(|e| {
            backend_err(format!(
                "BPF_PROG_TEST_RUN of {program} on {} bytes: {e}{}",
                packet.len(),
                test_run_size_hint(packet)
            ))
        });
        drop(pin);
        let out = out?;
        self.drain()?;
        Ok((u64::from(out.return_value), out.duration))
    }

    fn map_index(&self, name: &str) -> Result<usize, DatapathError> {
        self.defs
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| DatapathError::UnknownMap { map: name.into() })
    }

    /// Maps that only programs use, with no userspace key/value interface (as the
    /// emulator refuses them).
    fn check_kv_map(&self, m: usize) -> Result<(), DatapathError> {
        crate::backend::check_kv_access(BACKEND, &self.defs[m])
    }

    fn check_size(&self, m: usize, what: &'static str, got: usize) -> Result<(), DatapathError> {
        crate::backend::check_size(&self.defs[m], what, got)
    }

    fn fd(&self, m: usize) -> BorrowedFd<'_> {
        self.maps[m].as_fd()
    }

    /// The bytes one lookup/update moves: value_size, or one 8-aligned lane per CPU.
    fn value_buf_len(&self, m: usize) -> usize {
        let d = &self.defs[m];
        if d.map_type.is_per_cpu() {
            (d.value_size as usize).div_ceil(8) * 8 * self.ncpus
        } else {
            d.value_size as usize
        }
    }

    /// `BPF_MAP_LOOKUP_ELEM`, per-CPU lanes folded. `Ok(None)` on -ENOENT.
    fn raw_lookup(&self, m: usize, key: &[u8]) -> Result<Option<Vec<u8>>, DatapathError> {
        let mut buf = vec![0u8; self.value_buf_len(m)];
        // SAFETY: `key` is key_size bytes (checked by callers) and `buf` is what the
        // kernel writes for this map type.
        let r = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.fd(m).as_raw_fd(),
                key.as_ptr().cast::<c_void>(),
                buf.as_mut_ptr().cast::<c_void>(),
            )
        };
        if r == -Errno::ENOENT.0 {
            return Ok(None);
        }
        if r < 0 {
            return Err(map_err(&self.defs[m].name, "lookup", -r));
        }
        let d = &self.defs[m];
        if !d.map_type.is_per_cpu() {
            return Ok(Some(buf));
        }
        let size = d.value_size as usize;
        if !size.is_multiple_of(8) {
            buf.truncate(size);
            return Ok(Some(buf));
        }
        let mut sum = vec![0u64; size / 8];
        for lane in buf.chunks_exact(size) {
            for (s, w) in sum.iter_mut().zip(lane.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                *s = s.wrapping_add(u64::from_ne_bytes(b));
            }
        }
        Ok(Some(sum.iter().flat_map(|v| v.to_ne_bytes()).collect()))
    }

    /// `BPF_MAP_GET_NEXT_KEY` from the start: every key, unsorted.
    fn raw_keys(&self, m: usize) -> Result<Vec<Vec<u8>>, DatapathError> {
        let ks = self.defs[m].key_size as usize;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; ks];
        loop {
            let prev = keys
                .last()
                .map_or(std::ptr::null(), |k| k.as_ptr().cast::<c_void>());
            // SAFETY: `prev` is null or a key_size buffer; `next` is key_size bytes.
            let r = unsafe {
                libbpf_sys::bpf_map_get_next_key(
                    self.fd(m).as_raw_fd(),
                    prev,
                    next.as_mut_ptr().cast::<c_void>(),
                )
            };
            if r == -Errno::ENOENT.0 {
                return Ok(keys);
            }
            if r < 0 {
                return Err(map_err(&self.defs[m].name, "get_next_key", -r));
            }
            keys.push(next.clone());
            // A map changing underneath can make the walk restart; bound it.
            if keys.len() > self.defs[m].max_entries as usize {
                return Err(backend_err(format!(
                    "map {}: key walk exceeded max_entries (map changed during the dump?)",
                    self.defs[m].name
                )));
            }
        }
    }

    fn program_index_by_id(&self, id: u32) -> Option<usize> {
        self.prog_ids.iter().position(|p| *p == id)
    }
}

/// A libbpf load failure: a verifier rejection names the program and carries the
/// verifier log; anything else keeps libbpf's whole log.
fn load_error(object: &str, err: &libbpf_rs::Error, log: &str) -> DatapathError {
    // libbpf: "prog 'NAME': BPF program load failed: ..." then the log between
    // "-- BEGIN PROG LOAD LOG --" and "-- END PROG LOAD LOG --".
    let program = log.lines().find_map(|l| {
        let rest = &l[l.find("prog '")? + 6..];
        let (name, tail) = rest.split_once('\'')?;
        tail.contains("BPF program load failed")
            .then(|| name.to_string())
    });
    // The verifier prints each instruction it checks as "N: (opcode) ..."; the last one
    // before the END marker is where it stopped.
    let insn = log
        .split("-- END PROG LOAD LOG --")
        .next()
        .and_then(|body| {
            body.lines().rev().find_map(|l| {
                let (n, _) = l.split_once(": (")?;
                n.trim().parse::<usize>().ok()
            })
        });
    match program {
        Some(program) => DatapathError::Rejected {
            program,
            insn,
            message: format!("kernel verifier: {err}\nlibbpf log:\n{log}"),
        },
        None => backend_err(format!("loading {object}: {err}\nlibbpf log:\n{log}")),
    }
}

impl Datapath for KernelDatapath {
    fn backend_name(&self) -> &str {
        BACKEND
    }

    fn map_defs(&self) -> &[MapDef] {
        &self.defs
    }

    fn map_update_flags(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), DatapathError> {
        let m = self.map_index(map)?;
        self.check_kv_map(m)?;
        self.check_size(m, "key", key.len())?;
        self.check_size(m, "value", value.len())?;
        // Per-CPU: the value in lane 0, zero in the others (the trait's convention).
        let mut lanes;
        let buf = if self.defs[m].map_type.is_per_cpu() {
            lanes = vec![0u8; self.value_buf_len(m)];
            lanes[..value.len()].copy_from_slice(value);
            &lanes[..]
        } else {
            value
        };
        // SAFETY: key and buffer sizes are what the kernel reads for this map.
        let r = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd(m).as_raw_fd(),
                key.as_ptr().cast::<c_void>(),
                buf.as_ptr().cast::<c_void>(),
                flags.raw(),
            )
        };
        if r < 0 {
            return Err(map_err(map, "update", -r));
        }
        Ok(())
    }

    fn map_delete(&mut self, map: &str, key: &[u8]) -> Result<bool, DatapathError> {
        let m = self.map_index(map)?;
        self.check_kv_map(m)?;
        self.check_size(m, "key", key.len())?;
        // SAFETY: `key` is key_size bytes.
        let r = unsafe {
            libbpf_sys::bpf_map_delete_elem(self.fd(m).as_raw_fd(), key.as_ptr().cast::<c_void>())
        };
        match r {
            0 => Ok(true),
            r if r == -Errno::ENOENT.0 => Ok(false),
            r => Err(map_err(map, "delete", -r)),
        }
    }

    fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, DatapathError> {
        let m = self.map_index(map)?;
        self.check_kv_map(m)?;
        self.check_size(m, "key", key.len())?;
        self.raw_lookup(m, key)
    }

    fn map_dump(&self, map: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DatapathError> {
        let m = self.map_index(map)?;
        let d = &self.defs[m];
        let mut out = Vec::new();
        match d.map_type {
            // No keys; records only flow through `run`.
            MapType::RingBuf => {}
            MapType::ProgArray => {
                // A userspace lookup on a prog array returns the program's kernel id.
                for slot in 0..d.max_entries {
                    let key = slot.to_ne_bytes();
                    let mut id = [0u8; 4];
                    // SAFETY: key and value are 4 bytes, as for every prog array.
                    let r = unsafe {
                        libbpf_sys::bpf_map_lookup_elem(
                            self.fd(m).as_raw_fd(),
                            key.as_ptr().cast::<c_void>(),
                            id.as_mut_ptr().cast::<c_void>(),
                        )
                    };
                    if r == -Errno::ENOENT.0 {
                        continue;
                    }
                    if r < 0 {
                        return Err(map_err(map, "lookup", -r));
                    }
                    let id = u32::from_ne_bytes(id);
                    let p = self.program_index_by_id(id).ok_or_else(|| {
                        backend_err(format!(
                            "map {map} slot {slot} holds program id {id}, not one of this object's"
                        ))
                    })?;
                    out.push((key.to_vec(), (p as u32).to_ne_bytes().to_vec()));
                }
            }
            _ => {
                for key in self.raw_keys(m)? {
                    // Deleted between the walk and the lookup: it is not in the map.
                    if let Some(v) = self.raw_lookup(m, &key)? {
                        out.push((key, v));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn prog_array_set(
        &mut self,
        map: &str,
        index: u32,
        program: Option<&str>,
    ) -> Result<(), DatapathError> {
        let m = self.map_index(map)?;
        if self.defs[m].map_type != MapType::ProgArray {
            return Err(map_err(map, "prog_array_set", Errno::EINVAL.0));
        }
        let key = index.to_ne_bytes();
        let fd = self.fd(m).as_raw_fd();
        let r = match program {
            Some(name) => {
                let prog = self.bpf.progs().find(|p| p.name() == name).ok_or_else(|| {
                    DatapathError::UnknownProgram {
                        program: name.into(),
                    }
                })?;
                let value = (prog.as_fd().as_raw_fd() as u32).to_ne_bytes();
                // SAFETY: 4-byte key and value (a program fd), as the kernel expects.
                unsafe {
                    libbpf_sys::bpf_map_update_elem(
                        fd,
                        key.as_ptr().cast::<c_void>(),
                        value.as_ptr().cast::<c_void>(),
                        0,
                    )
                }
            }
            None => {
                // SAFETY: 4-byte key.
                let r = unsafe { libbpf_sys::bpf_map_delete_elem(fd, key.as_ptr().cast()) };
                // Emptying an empty slot is not an error in the trait (nor the emulator).
                if r == -Errno::ENOENT.0 {
                    0
                } else {
                    r
                }
            }
        };
        if r < 0 {
            return Err(map_err(map, "prog_array_set", -r));
        }
        Ok(())
    }

    fn run(&mut self, program: &str, packet: &[u8]) -> Result<RunOutcome, DatapathError> {
        let (retval, _) = self.test_run(program, packet, 1)?;
        let events = std::mem::take(&mut *self.lock_events());
        Ok(RunOutcome { retval, events })
    }
}

/// Largest frame `BPF_PROG_TEST_RUN` takes for a tc program on x86-64 with 4 KiB pages:
/// one page minus the skb headroom (`NET_SKB_PAD`, 64) and the aligned `skb_shared_info`
/// (320) (`net/bpf/test_run.c` `bpf_test_init`). Measured on this project's machine kind:
/// 3,712 bytes run, 3,713 get EINVAL.
pub const TEST_RUN_MAX_FRAME: usize = 3712;

/// Why the kernel may have refused a frame for its size, for the error message: the emulator
/// runs such frames, so a capture replay shows them as kernel errors, and the reader should
/// know it is the test-run interface, not the programs.
fn test_run_size_hint(frame: &[u8]) -> String {
    let min = crate::packet::test_run_min_frame(frame);
    if frame.len() > TEST_RUN_MAX_FRAME {
        format!(
            " (the kernel's test run takes at most {TEST_RUN_MAX_FRAME} bytes of frame on \
             x86-64: GRO/TSO-coalesced or jumbo frames from a capture cannot be replayed in the \
             kernel; capture with offloads off, e.g. `ethtool -K <dev> gro off tso off`)"
        )
    } else if frame.len() < min {
        format!(
            " (the kernel's test run refuses frames shorter than {min} bytes for this \
             ethertype: it needs the Ethernet and network headers)"
        )
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------
// Measurement (for benches; no criterion)
// ---------------------------------------------------------------------------------------

/// What [`measure`] found, in ns per packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Distinct packets, one [`Datapath::run`] each (syscall, ring drain and copies
    /// included; the thread is pinned once for the whole pass): what a trace of distinct
    /// packets costs.
    pub single_shot_ns: f64,
    /// Packets in the single-shot pass (`packets.len() * rounds`).
    pub runs: usize,
    /// The kernel-reported in-program time of one packet replayed `repeat` times,
    /// averaged over the first (up to) [`REPEAT_SAMPLE`] packets.
    pub repeat_ns: f64,
    pub repeat: u32,
}

/// How many of [`measure`]'s packets get the repeat measurement.
pub const REPEAT_SAMPLE: usize = 8;

/// Measures `program` on `packets`: one warm-up pass, `rounds` timed passes of
/// single-shot runs, then each of the first [`REPEAT_SAMPLE`] packets replayed `repeat`
/// times in the kernel. Maps change as the packets dictate (conntrack entries, metrics):
/// measure on a datapath set up for it, not on one under comparison.
///
/// On a VM, a ring-buffer record written without `BPF_RB_NO_WAKEUP` costs a
/// self-IPI (irq_work) per run, about 13-20 µs here: it dominates single-shot numbers.
pub fn measure(
    dp: &mut KernelDatapath,
    program: &str,
    packets: &[Vec<u8>],
    rounds: usize,
    repeat: u32,
) -> Result<Measurement, DatapathError> {
    let rounds = rounds.max(1);
    // Pinned once here, each run finds the thread already on its CPU and skips the
    // affinity change (which would add a migration per run).
    let _pin = dp.pin_thread()?;
    for p in packets {
        dp.run(program, p)?;
    }
    let start = Instant::now();
    for _ in 0..rounds {
        for p in packets {
            dp.run(program, p)?;
        }
    }
    let runs = packets.len() * rounds;
    let single_shot_ns = start.elapsed().as_nanos() as f64 / runs.max(1) as f64;
    let sample = &packets[..packets.len().min(REPEAT_SAMPLE)];
    let mut total = 0u128;
    for p in sample {
        total += dp.run_repeat(program, p, repeat)?.per_run.as_nanos();
    }
    let repeat_ns = total as f64 / sample.len().max(1) as f64;
    Ok(Measurement {
        single_shot_ns,
        runs,
        repeat_ns,
        repeat,
    })
}
