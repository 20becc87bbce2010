//! The BPF helpers the emulator provides, and the per-thread state they work on.
//!
//! rbpf calls helpers as plain `fn(u64, u64, u64, u64, u64) -> u64` pointers with no
//! context argument, so the state of the run in progress (maps, events, a pending tail
//! call) is reached through a thread-local pointer that `install` sets for the duration
//! of one run: one VM runs per thread at a time. A helper never panics into the VM and
//! never fails silently: a misuse the kernel verifier would have rejected is recorded as a
//! fault that ends the run with an error.
//!
//! For the x86 JIT each helper also gets a naked trampoline: the JIT calls helpers with a
//! stack that is not 16-byte aligned, which breaks any helper touching SSE state, so the
//! trampoline realigns `rsp` around the real call.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::maps::Maps;
use crate::backend::Errno;

pub const HELPER_MAP_LOOKUP_ELEM: u32 = 1;
pub const HELPER_MAP_UPDATE_ELEM: u32 = 2;
pub const HELPER_MAP_DELETE_ELEM: u32 = 3;
pub const HELPER_GET_SMP_PROCESSOR_ID: u32 = 8;
pub const HELPER_TAIL_CALL: u32 = 12;
pub const HELPER_RINGBUF_OUTPUT: u32 = 130;

/// The kernel's `MAX_TAIL_CALL_CNT`: the 34th tail call of a chain fails.
pub const MAX_TAIL_CALL_CNT: u32 = 33;

/// What a map `lddw` loads in the emulator: this base plus the map index. It only has to
/// be recognisable by the helpers; programs never dereference map pointers.
pub const MAP_TOKEN_BASE: u64 = 0x7e6d_6170_0000_0000;

/// The state of the run in progress on this thread.
pub(crate) struct RunState<'m> {
    pub maps: &'m mut Maps,
    pub events: Vec<Vec<u8>>,
    /// Program index recorded by a successful `bpf_tail_call`, run when the caller returns.
    pub tail_call: Option<usize>,
    pub tail_calls: u32,
    /// (helper id, what went wrong): the first misuse seen.
    pub fault: Option<(u32, String)>,
}

impl<'m> RunState<'m> {
    pub(crate) fn new(maps: &'m mut Maps) -> RunState<'m> {
        RunState {
            maps,
            events: Vec::new(),
            tail_call: None,
            tail_calls: 0,
            fault: None,
        }
    }
}

thread_local! {
    static CURRENT: Cell<*mut RunState<'static>> = const { Cell::new(std::ptr::null_mut()) };
}

/// Keeps a run's state reachable by helpers until dropped (also on unwind).
pub(crate) struct Installed {
    prev: *mut RunState<'static>,
}

/// Makes `state` the current run state of this thread.
///
/// # Safety
/// `state` must stay valid, and be accessed only through this pointer, until the returned
/// guard is dropped.
pub(crate) unsafe fn install(state: *mut RunState<'_>) -> Installed {
    let prev = CURRENT.with(|c| c.replace(state.cast()));
    Installed { prev }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

fn with_state(helper: u32, f: impl FnOnce(&mut RunState<'_>) -> Result<u64, String>) -> u64 {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return Errno::EINVAL.helper_ret();
    }
    // SAFETY: `install` guarantees the pointer is valid while the VM runs, and the run
    // loop does not touch the state while a helper executes.
    let st = unsafe { &mut *p };
    if st.fault.is_some() {
        return 0;
    }
    if st.tail_call.is_some() {
        st.fault = Some((
            helper,
            "called after a successful bpf_tail_call; in the kernel the code after a tail \
             call only runs when it fails, so it must have no side effects"
                .into(),
        ));
        return 0;
    }
    match catch_unwind(AssertUnwindSafe(|| f(&mut *st))) {
        Ok(Ok(v)) => v,
        Ok(Err(msg)) => {
            st.fault = Some((helper, msg));
            0
        }
        Err(_) => {
            st.fault = Some((helper, "panicked".into()));
            0
        }
    }
}

fn map_index(st: &RunState<'_>, token: u64) -> Result<usize, String> {
    let idx = token.wrapping_sub(MAP_TOKEN_BASE);
    if token < MAP_TOKEN_BASE || idx >= st.maps.maps.len() as u64 {
        return Err(format!("{token:#x} is not a map pointer"));
    }
    Ok(idx as usize)
}

/// Borrows `len` bytes the program passed by pointer. The kernel verifier guarantees such
/// pointers in the programs we run (the same objects are verified by the kernel backend);
/// the emulator can only reject NULL.
fn bytes<'x>(ptr: u64, len: usize, what: &str) -> Result<&'x [u8], String> {
    if ptr == 0 {
        return Err(format!("{what} pointer is NULL"));
    }
    // SAFETY: see above; the memory is the program's stack, packet, ctx or a map value.
    Ok(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
}

fn errno_ret(r: Result<(), Errno>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.helper_ret(),
    }
}

pub(crate) fn map_lookup_elem(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    with_state(HELPER_MAP_LOOKUP_ELEM, |st| {
        let m = map_index(st, map)?;
        let def = &st.maps.maps[m].def;
        if st.maps.is_prog_array(m) || def.key_size == 0 {
            return Err(format!(
                "map {} cannot be looked up from a program",
                def.name
            ));
        }
        let key = bytes(key, def.key_size as usize, "key")?;
        Ok(st.maps.lookup_ptr(m, key))
    })
}

pub(crate) fn map_update_elem(map: u64, key: u64, value: u64, flags: u64, _: u64) -> u64 {
    with_state(HELPER_MAP_UPDATE_ELEM, |st| {
        let m = map_index(st, map)?;
        let def = &st.maps.maps[m].def;
        if st.maps.is_prog_array(m) || def.key_size == 0 {
            return Err(format!("map {} cannot be updated from a program", def.name));
        }
        let key = bytes(key, def.key_size as usize, "key")?;
        let value = bytes(value, def.value_size as usize, "value")?;
        Ok(errno_ret(st.maps.update(m, key, value, flags)))
    })
}

pub(crate) fn map_delete_elem(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    with_state(HELPER_MAP_DELETE_ELEM, |st| {
        let m = map_index(st, map)?;
        let def = &st.maps.maps[m].def;
        if st.maps.is_prog_array(m) || def.key_size == 0 {
            return Err(format!(
                "map {} cannot be deleted from in a program",
                def.name
            ));
        }
        let key = bytes(key, def.key_size as usize, "key")?;
        Ok(errno_ret(st.maps.delete(m, key)))
    })
}

pub(crate) fn get_smp_processor_id(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    with_state(HELPER_GET_SMP_PROCESSOR_ID, |_| Ok(0))
}

/// Records the target; the run loop starts it with the same ctx once the caller returns.
/// A failed tail call (empty slot, index out of range, chain limit) falls through, as in
/// the kernel.
pub(crate) fn tail_call(_ctx: u64, map: u64, index: u64, _: u64, _: u64) -> u64 {
    with_state(HELPER_TAIL_CALL, |st| {
        let m = map_index(st, map)?;
        if !st.maps.is_prog_array(m) {
            return Err(format!(
                "map {} is not a prog array",
                st.maps.maps[m].def.name
            ));
        }
        if st.tail_calls >= MAX_TAIL_CALL_CNT {
            return Ok(Errno::ENOENT.helper_ret());
        }
        match st.maps.prog_array_get(m, index as u32) {
            Some(p) => {
                st.tail_call = Some(p);
                st.tail_calls += 1;
                Ok(0)
            }
            None => Ok(Errno::ENOENT.helper_ret()),
        }
    })
}

pub(crate) fn ringbuf_output(map: u64, data: u64, size: u64, flags: u64, _: u64) -> u64 {
    with_state(HELPER_RINGBUF_OUTPUT, |st| {
        let m = map_index(st, map)?;
        let cap = st.maps.maps[m].def.max_entries as u64;
        if size > cap {
            return Ok(Errno::E2BIG.helper_ret());
        }
        let data = bytes(data, size as usize, "data")?;
        let RunState { maps, events, .. } = st;
        Ok(errno_ret(maps.ringbuf_output(m, data, flags, events)))
    })
}

/// Helper id, the function the interpreter calls, and the name for messages.
pub(crate) const HELPERS: [(u32, rbpf::Helper, &str); 6] = [
    (
        HELPER_MAP_LOOKUP_ELEM,
        map_lookup_elem,
        "bpf_map_lookup_elem",
    ),
    (
        HELPER_MAP_UPDATE_ELEM,
        map_update_elem,
        "bpf_map_update_elem",
    ),
    (
        HELPER_MAP_DELETE_ELEM,
        map_delete_elem,
        "bpf_map_delete_elem",
    ),
    (
        HELPER_GET_SMP_PROCESSOR_ID,
        get_smp_processor_id,
        "bpf_get_smp_processor_id",
    ),
    (HELPER_TAIL_CALL, tail_call, "bpf_tail_call"),
    (HELPER_RINGBUF_OUTPUT, ringbuf_output, "bpf_ringbuf_output"),
];

pub(crate) fn is_provided(id: u32) -> bool {
    HELPERS.iter().any(|(h, _, _)| *h == id)
}

#[cfg(target_arch = "x86_64")]
mod trampolines {
    macro_rules! trampoline {
        ($name:ident, $target:path) => {
            #[unsafe(naked)]
            pub(super) extern "sysv64" fn $name() {
                extern "sysv64" fn call(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
                    $target(a, b, c, d, e)
                }
                // Save rbp, align rsp down to 16, call, restore. Argument registers are
                // untouched, so the five BPF arguments pass straight through.
                core::arch::naked_asm!(
                    "push rbp",
                    "mov rbp, rsp",
                    "and rsp, -16",
                    "call {f}",
                    "mov rsp, rbp",
                    "pop rbp",
                    "ret",
                    f = sym call,
                )
            }
        };
    }
    trampoline!(map_lookup_elem, super::map_lookup_elem);
    trampoline!(map_update_elem, super::map_update_elem);
    trampoline!(map_delete_elem, super::map_delete_elem);
    trampoline!(get_smp_processor_id, super::get_smp_processor_id);
    trampoline!(tail_call, super::tail_call);
    trampoline!(ringbuf_output, super::ringbuf_output);
}

/// The helper table for the x86 JIT: the same helpers behind stack-aligning trampolines.
#[cfg(target_arch = "x86_64")]
pub(crate) fn jit_helpers() -> [(u32, rbpf::Helper); 6] {
    let cast = |f: extern "sysv64" fn()| -> rbpf::Helper {
        // SAFETY: only JIT-compiled code calls these pointers, with the System V
        // convention and five integer arguments, which is what each trampoline forwards
        // to its extern "sysv64" target. The interpreter never gets them.
        unsafe { std::mem::transmute::<extern "sysv64" fn(), rbpf::Helper>(f) }
    };
    [
        (HELPER_MAP_LOOKUP_ELEM, cast(trampolines::map_lookup_elem)),
        (HELPER_MAP_UPDATE_ELEM, cast(trampolines::map_update_elem)),
        (HELPER_MAP_DELETE_ELEM, cast(trampolines::map_delete_elem)),
        (
            HELPER_GET_SMP_PROCESSOR_ID,
            cast(trampolines::get_smp_processor_id),
        ),
        (HELPER_TAIL_CALL, cast(trampolines::tail_call)),
        (HELPER_RINGBUF_OUTPUT, cast(trampolines::ringbuf_output)),
    ]
}
