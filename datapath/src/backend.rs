//! The contract every datapath backend implements: the rbpf emulator ([`crate::emu`]) and
//! the in-kernel backend (libbpf + `BPF_PROG_TEST_RUN`). The differential harness drives
//! both through `dyn Datapath` and compares what they return, so every method is defined
//! by the kernel's behaviour, and errors carry the kernel's errno where the kernel has one.

use std::fmt;

use crate::object::{MapDef, MapType, ObjectError};

/// A map's entries as (key, value) byte pairs, sorted by key.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// What one `run` produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOutcome {
    /// The program's return value (after any tail calls: the last program's).
    pub retval: u64,
    /// Ring-buffer records emitted during this run, in order.
    pub events: Vec<Vec<u8>>,
}

/// `BPF_ANY` / `BPF_NOEXIST` / `BPF_EXIST` for map updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateFlags {
    #[default]
    Any,
    NoExist,
    Exist,
}

impl UpdateFlags {
    pub fn raw(self) -> u64 {
        match self {
            UpdateFlags::Any => 0,
            UpdateFlags::NoExist => 1,
            UpdateFlags::Exist => 2,
        }
    }
}

/// A kernel error number, shown by name (`-EEXIST`), as the kernel returns it negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(2);
    pub const E2BIG: Errno = Errno(7);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EEXIST: Errno = Errno(17);
    pub const EINVAL: Errno = Errno(22);
    pub const ENOSPC: Errno = Errno(28);
    pub const ENOTSUPP: Errno = Errno(524);

    /// The value a BPF helper returns for this error (`-errno` as u64).
    pub fn helper_ret(self) -> u64 {
        (-(self.0 as i64)) as u64
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            2 => "ENOENT",
            7 => "E2BIG",
            11 => "EAGAIN",
            12 => "ENOMEM",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            524 => "ENOTSUPP",
            n => return write!(f, "-{n}"),
        };
        write!(f, "-{name}")
    }
}

/// Everything a backend can fail with. VM-level errors name the program and, when the VM
/// reported one, the instruction index (into the linked bytecode of that program).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DatapathError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("no map named {map}")]
    UnknownMap { map: String },
    #[error("no program named {program}")]
    UnknownProgram { program: String },
    #[error("map {map}: {what} is {got} bytes, the map expects {expected}")]
    Size {
        map: String,
        what: &'static str,
        expected: u32,
        got: usize,
    },
    /// The kernel would have returned `-errno` for this map operation.
    #[error("map {map}: {op} failed with {errno}")]
    Map {
        map: String,
        op: &'static str,
        errno: Errno,
    },
    #[error("map {map}: {what} is not supported by the {backend} backend")]
    UnsupportedMap {
        backend: String,
        map: String,
        what: String,
    },
    /// The program was rejected before it ran (VM verifier, context rewrite, JIT).
    #[error("program {program}: rejected{}: {message}", insn_suffix(*insn))]
    Rejected {
        program: String,
        insn: Option<usize>,
        message: String,
    },
    #[error("program {program}: calls helper {helper} at instruction {insn}, which the {backend} backend does not provide")]
    UnknownHelper {
        backend: String,
        program: String,
        helper: u32,
        insn: usize,
    },
    /// The VM stopped the program (out-of-bounds access, bad call, ...).
    #[error("program {program}: VM error{}: {message}", insn_suffix(*insn))]
    Vm {
        program: String,
        insn: Option<usize>,
        message: String,
    },
    /// A helper was called with arguments the kernel's verifier would not have allowed.
    #[error("program {program}: helper {helper}: {message}")]
    Helper {
        program: String,
        helper: u32,
        message: String,
    },
    /// Memory for map values could not be allocated (an address-space or memory limit).
    #[error("{backend} backend: map {map}: cannot allocate {bytes} more bytes for its values (out of memory: is the address space limited, `ulimit -v`?)")]
    OutOfMemory {
        backend: String,
        map: String,
        bytes: usize,
    },
    /// A program run inserted more entries into one map than the emulator lays out ahead
    /// of a run (`emu::maps::RUN_HEADROOM`).
    #[error("{backend} backend: program {program}: inserted more than {headroom} entries into map {map} in one run, more than the emulator lays out ahead; the insert failed with -ENOMEM")]
    RunHeadroom {
        backend: String,
        program: String,
        map: String,
        headroom: u32,
    },
    /// Anything else a backend reports (syscall failures and the like).
    #[error("{backend} backend: {message}")]
    Backend { backend: String, message: String },
}

fn insn_suffix(insn: Option<usize>) -> String {
    insn.map(|i| format!(" at instruction {i}"))
        .unwrap_or_default()
}

/// A place where the BPF programs of one object run, with their maps.
///
/// Map keys and values are raw bytes in the layout the C side declares. For per-CPU maps,
/// `map_lookup` and `map_dump` return the lane-wise u64 sum over CPUs (when `value_size %
/// 8 == 0`; otherwise CPU 0's value) and updates write the value to CPU 0 and zero to the
/// others, so one-CPU and many-CPU backends compare equal.
///
/// `PROG_ARRAY` maps are not updated with `map_update` (their values are fds in the kernel):
/// use [`Datapath::prog_array_set`]; `map_dump` of a prog array gives (slot as u32, program
/// index in the object's program order as u32) pairs.
pub trait Datapath {
    /// A short name for reports ("rbpf-interp", "rbpf-jit", "kernel").
    fn backend_name(&self) -> &str;

    /// The map definitions this backend created, in the object's order.
    fn map_defs(&self) -> &[MapDef];

    /// Updates one entry with `flags`, failing as the kernel's `BPF_MAP_UPDATE_ELEM` would.
    fn map_update_flags(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), DatapathError>;

    /// Updates one entry with `BPF_ANY`.
    fn map_update(&mut self, map: &str, key: &[u8], value: &[u8]) -> Result<(), DatapathError> {
        self.map_update_flags(map, key, value, UpdateFlags::Any)
    }

    /// Deletes one entry; `Ok(false)` when it was absent (the kernel's -ENOENT).
    fn map_delete(&mut self, map: &str, key: &[u8]) -> Result<bool, DatapathError>;

    /// Looks one entry up (for LPM tries: longest-prefix match, as the kernel does).
    fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, DatapathError>;

    /// Every entry sorted by key bytes; per-CPU values summed lane-wise as u64 when
    /// `value_size % 8 == 0`.
    fn map_dump(&self, map: &str) -> Result<MapEntries, DatapathError>;

    /// Points slot `index` of a `PROG_ARRAY` at `program`, or empties it with `None`.
    fn prog_array_set(
        &mut self,
        map: &str,
        index: u32,
        program: Option<&str>,
    ) -> Result<(), DatapathError>;

    /// Runs `program` once on an Ethernet frame as a `__sk_buff` (`BPF_PROG_TEST_RUN`
    /// semantics: `skb->len` is the whole frame), following tail calls.
    fn run(&mut self, program: &str, packet: &[u8]) -> Result<RunOutcome, DatapathError>;
}

/// Refuses userspace key/value access to maps that only programs use (prog arrays, ring
/// buffers), the same way on every backend.
pub fn check_kv_access(backend: &str, d: &MapDef) -> Result<(), DatapathError> {
    if matches!(d.map_type, MapType::ProgArray | MapType::RingBuf) {
        return Err(DatapathError::UnsupportedMap {
            backend: backend.into(),
            map: d.name.clone(),
            what: format!("key/value access to a {}", d.map_type),
        });
    }
    Ok(())
}

/// Checks a userspace key (`what == "key"`) or value against the map's definition.
pub fn check_size(d: &MapDef, what: &'static str, got: usize) -> Result<(), DatapathError> {
    let expected = if what == "key" {
        d.key_size
    } else {
        d.value_size
    };
    if got != expected as usize {
        return Err(DatapathError::Size {
            map: d.name.clone(),
            what,
            expected,
            got,
        });
    }
    Ok(())
}
