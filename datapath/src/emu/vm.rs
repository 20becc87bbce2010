//! One program loaded into its own rbpf VM, interpreted or JIT-compiled.
//!
//! Each program (tail-call targets included) gets its own VM, so the JIT's 4 KiB code
//! buffer limits one program, not a chain. rbpf signals an overflowing JIT buffer by
//! panicking: the compile is wrapped in `catch_unwind` and reported as a rejection.

use std::mem::ManuallyDrop;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::helpers;
use crate::backend::DatapathError;

/// How the emulator executes bytecode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecMode {
    /// rbpf's interpreter: every memory access is bounds-checked.
    #[default]
    Interpreter,
    /// rbpf's x86-64 JIT: fast, no bounds checks. Opt-in.
    Jit,
}

pub(crate) struct LoadedProgram {
    /// Borrows `code`; dropped first in `Drop`.
    vm: ManuallyDrop<rbpf::EbpfVmMbuff<'static>>,
    code: *mut [u8],
    mode: ExecMode,
    /// Whether the program has legacy packet loads (`LD_ABS`/`LD_IND`), which rbpf bases
    /// on the start of `mem`: such a program gets exactly the packet as `mem`.
    legacy_loads: bool,
}

/// Whether `code` has an `LD_ABS` or `LD_IND` instruction (class LD, mode ABS or IND).
fn has_legacy_loads(code: &[u8]) -> bool {
    let mut pc = 0;
    while pc * 8 < code.len() {
        let op = code[pc * 8];
        if op & 0x07 == 0x00 && matches!(op & 0xe0, 0x20 | 0x40) {
            return true;
        }
        pc += if op == 0x18 { 2 } else { 1 };
    }
    false
}

// SAFETY: the VM and its code are owned by this value and only used through `&self`
// from the thread that runs it; nothing in them is tied to a thread.
unsafe impl Send for LoadedProgram {}

/// The instruction index in an rbpf message ("... (insn #12) ...").
fn insn_in(msg: &str) -> Option<usize> {
    let at = msg.find("insn #")? + "insn #".len();
    let digits: String = msg[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl LoadedProgram {
    pub(crate) fn load(
        program: &str,
        code: Vec<u8>,
        mode: ExecMode,
        allowed: Range<u64>,
    ) -> Result<LoadedProgram, DatapathError> {
        let rejected = |insn: Option<usize>, message: String| DatapathError::Rejected {
            program: program.into(),
            insn,
            message,
        };
        let code: *mut [u8] = Box::into_raw(code.into_boxed_slice());
        // SAFETY: `code` is freed only in `Drop`, after the VM that borrows it.
        let code_ref: &'static [u8] = unsafe { &*code };
        let free = |code: *mut [u8]| {
            // SAFETY: from Box::into_raw above, freed once.
            drop(unsafe { Box::from_raw(code) });
        };
        let mut vm = match rbpf::EbpfVmMbuff::new(Some(code_ref)) {
            Ok(vm) => vm,
            Err(e) => {
                free(code);
                let msg = e.to_string();
                return Err(rejected(insn_in(&msg), msg));
            }
        };
        let mut registered = Ok(());
        match mode {
            ExecMode::Interpreter => {
                for (id, f, _) in helpers::HELPERS {
                    registered = registered.and(vm.register_helper(id, f));
                }
            }
            ExecMode::Jit =>
            {
                #[cfg(target_arch = "x86_64")]
                for (id, f) in helpers::jit_helpers() {
                    registered = registered.and(vm.register_helper(id, f));
                }
            }
        }
        vm.register_allowed_memory(allowed);
        let mut loaded = LoadedProgram {
            vm: ManuallyDrop::new(vm),
            code,
            mode,
            legacy_loads: has_legacy_loads(code_ref),
        };
        registered.map_err(|e| rejected(None, e.to_string()))?;
        if mode == ExecMode::Jit {
            if !cfg!(target_arch = "x86_64") {
                return Err(rejected(None, "rbpf's JIT only targets x86-64".into()));
            }
            let vm = &mut *loaded.vm;
            match catch_unwind(AssertUnwindSafe(|| vm.jit_compile())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    return Err(rejected(insn_in(&msg), format!("JIT: {msg}")));
                }
                Err(_) => {
                    return Err(rejected(
                        None,
                        format!(
                            "JIT: the program ({} instructions) overflows rbpf's 4 KiB code \
                             buffer; split it with tail calls",
                            code_ref.len() / 8
                        ),
                    ));
                }
            }
        }
        Ok(loaded)
    }

    /// Runs once. `ctx` and `packet` must point to live buffers for the whole call.
    ///
    /// `checked`, when given, is one range holding the map values and then the packet,
    /// ending where the packet ends. The interpreter gets it as `mem` instead of the packet
    /// alone: rbpf 0.4's bounds check tries ctx, `mem` and the stack before it scans the
    /// registered allowed-memory set (a hash-set iteration), so map-value accesses, which
    /// the programs make all the time (the per-CPU scratch state), pass at the second test
    /// instead of the last. What is accepted stays the same for the packet (the range ends
    /// with it) and the values (registered anyway); only an access just before the packet
    /// start would now land in the values and pass, which the kernel verifier rules out.
    pub(crate) fn execute(
        &self,
        program: &str,
        packet: *mut [u8],
        checked: Option<*const [u8]>,
        ctx: *mut [u8],
    ) -> Result<u64, DatapathError> {
        let vm_error = |e: std::io::Error| {
            let message = e.to_string();
            // The interpreter reports memory faults with the already-advanced pc.
            let insn = insn_in(&message).map(|i| {
                if message.contains("out of bounds memory") {
                    i.saturating_sub(1)
                } else {
                    i
                }
            });
            DatapathError::Vm {
                program: program.into(),
                insn,
                message: message.trim_start_matches("Error: ").to_owned(),
            }
        };
        // rbpf's interpreter indexes and adds without checks in places (jump targets):
        // a panic there is a VM error of this program, not a crash of the harness.
        let run = || match self.mode {
            ExecMode::Interpreter => {
                // SAFETY: the caller keeps `ctx`, `packet` and `checked` alive during the
                // call; the interpreter only reads through these slices (it writes through
                // the raw addresses in its registers, as the program does).
                let (ctx, mem) = unsafe {
                    let mem: &[u8] = match checked {
                        Some(c) if !self.legacy_loads => &*c,
                        _ => &*packet,
                    };
                    (&*ctx, mem)
                };
                self.vm.execute_program(mem, ctx)
            }
            ExecMode::Jit => {
                // SAFETY: as above; the JIT has no bounds checks, which is why it is
                // opt-in and the interpreter is the default.
                unsafe {
                    let ctx: &'static mut [u8] = &mut *ctx;
                    self.vm.execute_program_jit(&mut *packet, ctx)
                }
            }
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(r) => r.map_err(vm_error),
            Err(_) => Err(DatapathError::Vm {
                program: program.into(),
                insn: None,
                message: "rbpf panicked while running the program".into(),
            }),
        }
    }
}

impl Drop for LoadedProgram {
    fn drop(&mut self) {
        // SAFETY: the VM goes first, then the code it borrowed; neither is used again.
        unsafe {
            ManuallyDrop::drop(&mut self.vm);
            drop(Box::from_raw(self.code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{has_legacy_loads, insn_in};

    #[test]
    fn finds_legacy_packet_loads() {
        let asm = |s: &str| rbpf::assembler::assemble(s).expect("assemble");
        assert!(has_legacy_loads(&asm("ldabsh 12\nexit")));
        assert!(has_legacy_loads(&asm("ldindw r1, 4\nexit")));
        // An lddw's second half is not decoded as an instruction of its own.
        assert!(!has_legacy_loads(&asm(
            "lddw r0, 0x2000000000\nldxw r0, [r1+0]\nexit"
        )));
    }

    #[test]
    fn reads_instruction_index() {
        assert_eq!(
            insn_in("Error: out of bounds memory load (insn #12), addr"),
            Some(12)
        );
        assert_eq!(insn_in("no index"), None);
    }
}
