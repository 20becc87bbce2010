//! verdict-datapath: the BPF enforcement programs (C, in `bpf/`) and everything that runs
//! them. `object` parses the committed object once (programs, relocations, BTF map
//! definitions); `emu` runs it in userspace on rbpf with kernel map semantics; `kernel` (the
//! `kernel` feature) runs the same file in the kernel with BPF_PROG_TEST_RUN; both implement
//! `backend::Datapath`. `abi` mirrors the C structs, `events` decodes ring-buffer records,
//! `packet` builds test packets.

pub mod abi;
pub mod backend;
pub mod control;
pub mod emu;
pub mod events;
#[cfg(feature = "kernel")]
pub mod kernel;
pub mod object;
pub mod packet;

/// The committed enforcement object, embedded so the `verdict` binary runs anywhere.
pub const VERDICT_OBJECT: &[u8] = include_bytes!("../bpf/verdict.bpf.o");
/// The name the embedded object goes by in errors.
pub const VERDICT_OBJECT_NAME: &str = "verdict.bpf.o";
