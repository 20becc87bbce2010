//! The userspace datapath backend: the object's programs on rbpf 0.4, with maps, helpers
//! and the `__sk_buff` context emulated with the kernel's semantics.
//!
//! - `maps`: every supported map type and its errno behaviour, values in one arena;
//! - `lpm`: the LPM trie, the kernel's path-compressed algorithm;
//! - [`ctx`]: the fake `__sk_buff` and the data/data_end load rewrite;
//! - [`helpers`]: the helpers, their thread-local run state and JIT trampolines;
//! - `vm`: one rbpf VM per program, interpreted or JIT-compiled.
//!
//! [`Emulator`] ties them together and implements [`Datapath`]. It is single-threaded by
//! construction (`run` takes `&mut self` and the helpers' state is thread-local); use one
//! emulator per thread to run in parallel.

pub mod ctx;
pub mod helpers;
mod lpm;
mod maps;
mod vm;

use std::path::Path;

use crate::backend::{Datapath, DatapathError, Errno, MapEntries, RunOutcome, UpdateFlags};
use crate::object::{MapDef, Object, INSN_SIZE};
use helpers::RunState;
use maps::{Maps, PACKET_ROOM};
use vm::LoadedProgram;

pub use vm::ExecMode;

/// An object's programs and maps, run under rbpf.
pub struct Emulator {
    object: Object,
    mode: ExecMode,
    maps: Maps,
    /// Per program, in object order: the loaded VM, or why it cannot run (reported when it
    /// is run or tail-called, so one unusable program does not block the others).
    programs: Vec<Result<LoadedProgram, DatapathError>>,
    /// The `__sk_buff` buffer, reused by every run (u64 storage for alignment).
    ctx: Box<[u64]>,
    /// The packet copy for packets larger than the room after the map values
    /// ([`PACKET_ROOM`]), reused by every run.
    packet: Vec<u8>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("object", &self.object.name)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn backend_name(mode: ExecMode) -> &'static str {
    match mode {
        ExecMode::Interpreter => "rbpf-interp",
        ExecMode::Jit => "rbpf-jit",
    }
}

/// Names an instruction that only `-mcpu=v4` emits. rbpf 0.4 decodes these as their v3
/// look-alikes (sdiv as div, movsx as mov) without complaint, so they are refused here.
fn v4_only(insn: &[u8]) -> Option<&'static str> {
    let op = insn[0];
    let off = i16::from_le_bytes([insn[2], insn[3]]);
    let class = op & 0x07;
    let alu = class == 0x04 || class == 0x07;
    match op & 0xf0 {
        0x30 | 0x90 if alu && off != 0 => Some("signed division or modulo"),
        0xb0 if alu && off != 0 => Some("sign-extending move"),
        _ if class == 0x01 && op & 0xe0 == 0x80 => Some("sign-extending load"),
        _ if op == 0xd7 => Some("unconditional byte swap"),
        _ if op == 0x06 => Some("32-bit-offset jump"),
        _ => None,
    }
}

/// Loads every program of `object`, with `allowed` (the map values) as allowed memory.
fn load_programs(
    object: &Object,
    mode: ExecMode,
    allowed: std::ops::Range<u64>,
) -> Vec<Result<LoadedProgram, DatapathError>> {
    (0..object.programs.len())
        .map(|i| {
            let code = prepare(object, i)?;
            LoadedProgram::load(&object.programs[i].name, code, mode, allowed.clone())
        })
        .collect()
}

/// Prepares one program's bytecode for rbpf: map tokens in, ctx loads rewritten, helper
/// calls checked.
fn prepare(object: &Object, index: usize) -> Result<Vec<u8>, DatapathError> {
    let p = &object.programs[index];
    let mut code = p.bytecode.clone();
    for r in &p.map_refs {
        let token = helpers::MAP_TOKEN_BASE + r.map as u64;
        let at = r.insn * INSN_SIZE;
        code[at + 1] &= 0x0f;
        code[at + 4..at + 8].copy_from_slice(&(token as u32).to_le_bytes());
        code[at + 12..at + 16].copy_from_slice(&((token >> 32) as u32).to_le_bytes());
    }
    let mut pc = 0;
    while pc < code.len() / INSN_SIZE {
        let at = pc * INSN_SIZE;
        if let Some(what) = v4_only(&code[at..at + INSN_SIZE]) {
            return Err(DatapathError::Rejected {
                program: p.name.clone(),
                insn: Some(pc),
                message: format!(
                    "{what} (clang -mcpu=v4): rbpf 0.4 would run it wrongly; build with -mcpu=v3"
                ),
            });
        }
        if code[at] == 0x85 && code[at + 1] >> 4 == 0 {
            let id = u32::from_le_bytes([code[at + 4], code[at + 5], code[at + 6], code[at + 7]]);
            if !helpers::is_provided(id) {
                return Err(DatapathError::UnknownHelper {
                    backend: "rbpf".into(),
                    program: p.name.clone(),
                    helper: id,
                    insn: pc,
                });
            }
        }
        pc += if code[at] == 0x18 { 2 } else { 1 };
    }
    ctx::rewrite_ctx_loads(&mut code).map_err(|e| DatapathError::Rejected {
        program: p.name.clone(),
        insn: Some(e.insn),
        message: format!("context rewrite: {}", e.message),
    })?;
    Ok(code)
}

impl Emulator {
    /// Creates the maps (filling statically initialised prog arrays) and loads every
    /// program. Fails only on maps it cannot create; a program that cannot load reports
    /// its error when run (see [`Emulator::load_errors`]).
    pub fn new(object: &Object, mode: ExecMode) -> Result<Emulator, DatapathError> {
        let mut maps = Maps::new(&object.maps, backend_name(mode))?;
        for (m, def) in object.maps.iter().enumerate() {
            for (slot, prog) in &def.initial_programs {
                let p = object
                    .programs
                    .iter()
                    .position(|p| &p.name == prog)
                    .ok_or_else(|| DatapathError::UnknownProgram {
                        program: prog.clone(),
                    })?;
                maps.prog_array_set(m, *slot, Some(p))
                    .map_err(|errno| DatapathError::Map {
                        map: def.name.clone(),
                        op: "initialise",
                        errno,
                    })?;
            }
        }
        let programs = load_programs(object, mode, maps.arena_range());
        maps.take_moved();
        Ok(Emulator {
            object: object.clone(),
            mode,
            maps,
            programs,
            ctx: vec![0u64; ctx::CTX_SIZE / 8].into_boxed_slice(),
            packet: Vec::new(),
        })
    }

    /// Parses `path` and creates an emulator for it.
    pub fn from_file(path: &Path, mode: ExecMode) -> Result<Emulator, DatapathError> {
        Emulator::new(&Object::from_file(path)?, mode)
    }

    pub fn mode(&self) -> ExecMode {
        self.mode
    }

    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The programs that could not be loaded, with why.
    pub fn load_errors(&self) -> Vec<&DatapathError> {
        self.programs
            .iter()
            .filter_map(|p| p.as_ref().err())
            .collect()
    }

    fn map(&self, name: &str) -> Result<usize, DatapathError> {
        self.maps
            .index_of(name)
            .ok_or_else(|| DatapathError::UnknownMap { map: name.into() })
    }

    fn program_index(&self, name: &str) -> Result<usize, DatapathError> {
        self.object
            .programs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| DatapathError::UnknownProgram {
                program: name.into(),
            })
    }

    fn def(&self, m: usize) -> &MapDef {
        &self.object.maps[m]
    }

    /// Maps that only programs use, with no userspace key/value interface.
    fn check_kv_map(&self, m: usize) -> Result<(), DatapathError> {
        crate::backend::check_kv_access(self.backend_name(), self.def(m))
    }

    fn check_size(&self, m: usize, what: &'static str, got: usize) -> Result<(), DatapathError> {
        crate::backend::check_size(self.def(m), what, got)
    }
}

/// Runs `first`, then every program it tail-calls, each in its own VM with the same ctx.
fn run_chain(
    object: &Object,
    programs: &[Result<LoadedProgram, DatapathError>],
    state: *mut RunState<'_>,
    mut current: usize,
    (packet, checked): (*mut [u8], Option<*const [u8]>),
    ctx: *mut [u8],
) -> Result<u64, DatapathError> {
    loop {
        let name = &object.programs[current].name;
        let prog = programs[current].as_ref().map_err(Clone::clone)?;
        let ret = prog.execute(name, packet, checked, ctx)?;
        // SAFETY: no helper runs now; `state` is valid for the whole run.
        let st = unsafe { &mut *state };
        if let Some((helper, message)) = st.fault.take() {
            return Err(DatapathError::Helper {
                program: name.clone(),
                helper,
                message,
            });
        }
        match st.tail_call.take() {
            Some(next) => current = next,
            None => return Ok(ret),
        }
    }
}

impl Datapath for Emulator {
    fn backend_name(&self) -> &str {
        backend_name(self.mode)
    }

    fn map_defs(&self) -> &[MapDef] {
        &self.object.maps
    }

    fn map_update_flags(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), DatapathError> {
        let m = self.map(map)?;
        self.check_kv_map(m)?;
        self.check_size(m, "key", key.len())?;
        self.check_size(m, "value", value.len())?;
        self.maps
            .update(m, key, value, flags.raw())
            .map_err(|errno| DatapathError::Map {
                map: map.into(),
                op: "update",
                errno,
            })
    }

    fn map_delete(&mut self, map: &str, key: &[u8]) -> Result<bool, DatapathError> {
        let m = self.map(map)?;
        self.check_kv_map(m)?;
        self.check_size(m, "key", key.len())?;
        let r = self.maps.delete(m, key);
        // Outside a run nothing can hold a pointer to the freed value.
        self.maps.end_run();
        match r {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(DatapathError::Map {
                map: map.into(),
                op: "delete",
                errno,
            }),
        }
    }

    fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, DatapathError> {
        let m = self.map(map)?;
        self.check_kv_map(m)?;
        self.check_size(m, "key", key.len())?;
        Ok(self.maps.lookup(m, key))
    }

    fn map_dump(&self, map: &str) -> Result<MapEntries, DatapathError> {
        let m = self.map(map)?;
        Ok(self.maps.dump(m))
    }

    fn prog_array_set(
        &mut self,
        map: &str,
        index: u32,
        program: Option<&str>,
    ) -> Result<(), DatapathError> {
        let m = self.map(map)?;
        let p = program.map(|p| self.program_index(p)).transpose()?;
        self.maps
            .prog_array_set(m, index, p)
            .map_err(|errno| DatapathError::Map {
                map: map.into(),
                op: "prog_array_set",
                errno,
            })
    }

    fn run(&mut self, program: &str, packet: &[u8]) -> Result<RunOutcome, DatapathError> {
        let first = self.program_index(program)?;
        // Lay out room for the run's inserts now: the arena must not move during it.
        self.maps
            .begin_run()
            .map_err(|(map, bytes)| DatapathError::OutOfMemory {
                backend: backend_name(self.mode).into(),
                map,
                bytes,
            })?;
        if self.maps.take_moved() {
            // The map values moved or grew: the programs get the new range (rbpf keeps
            // allowed memory per VM, fixed when the VM is made).
            self.programs = load_programs(&self.object, self.mode, self.maps.arena_range());
        }
        // The packet goes right after the map values when it fits (see
        // `LoadedProgram::execute`), else into a buffer of its own.
        let (pkt, checked): (*mut [u8], Option<*const [u8]>) = if packet.len() <= PACKET_ROOM {
            let room = self.maps.packet_room().cast::<u8>();
            // SAFETY: the room holds PACKET_ROOM bytes and nothing else points into it now.
            unsafe { std::ptr::copy_nonoverlapping(packet.as_ptr(), room, packet.len()) };
            (
                std::ptr::slice_from_raw_parts_mut(room, packet.len()),
                Some(self.maps.values_and_packet(packet.len())),
            )
        } else {
            self.packet.clear();
            self.packet.extend_from_slice(packet);
            (self.packet.as_mut_slice(), None)
        };
        // SAFETY: the u64 buffer is CTX_SIZE bytes; viewed as bytes for the fill.
        let ctx_bytes: &mut [u8; ctx::CTX_SIZE] =
            unsafe { &mut *self.ctx.as_mut_ptr().cast::<[u8; ctx::CTX_SIZE]>() };
        ctx::fill_ctx(ctx_bytes, packet, pkt.cast::<u8>() as u64);
        let ctx_ptr: *mut [u8] = ctx_bytes.as_mut_slice();

        let mut state = RunState::new(&mut self.maps);
        let state_ptr: *mut RunState<'_> = &mut state;
        // SAFETY: `state` outlives the guard and is only used through `state_ptr` below.
        let guard = unsafe { helpers::install(state_ptr) };
        let result = run_chain(
            &self.object,
            &self.programs,
            state_ptr,
            first,
            (pkt, checked),
            ctx_ptr,
        );
        drop(guard);
        let events = std::mem::take(&mut state.events);
        drop(state);
        self.maps.end_run();
        if let Some(map) = self.maps.take_run_overflow() {
            return Err(DatapathError::RunHeadroom {
                backend: backend_name(self.mode).into(),
                program: program.into(),
                map,
                headroom: maps::RUN_HEADROOM,
            });
        }
        result.map(|retval| RunOutcome { retval, events })
    }
}
