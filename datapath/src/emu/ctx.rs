//! The fake `__sk_buff` context and the bytecode pass that makes its packet pointers work.
//!
//! In the kernel, `skb->data`, `skb->data_end` and `skb->data_meta` are 32-bit fields in
//! the UAPI struct that the verifier rewrites into 64-bit pointer loads. rbpf does no such
//! thing, so [`rewrite_ctx_loads`] does it: a data-flow pass tracks which registers and
//! stack slots hold the context pointer (across bpf-to-bpf calls too) and turns
//! `ldxw rX, [ctx + 76|80|140]` into `ldxdw rX, [ctx + EXT_*]`, where the fake context
//! keeps real 64-bit pointers after the UAPI fields. The instruction size does not change,
//! so no jump needs fixing.

use std::collections::BTreeMap;

/// `sizeof(struct __sk_buff)` in the UAPI headers this project builds against.
pub const SKB_SIZE: usize = 192;
pub const OFF_LEN: usize = 0;
pub const OFF_PKT_TYPE: usize = 4;
pub const OFF_PROTOCOL: usize = 16;
pub const OFF_IFINDEX: usize = 40;
pub const OFF_DATA: i16 = 76;
pub const OFF_DATA_END: i16 = 80;
pub const OFF_DATA_META: i16 = 140;
/// 64-bit pointers after the UAPI struct.
pub const EXT_DATA: i16 = 192;
pub const EXT_DATA_END: i16 = 200;
pub const EXT_DATA_META: i16 = 208;
pub const CTX_SIZE: usize = 216;

/// `ifindex` under `BPF_PROG_TEST_RUN`: the skb is attached to the loopback device.
/// Fields not filled here (mark, priority, hash, cb, vlan, ...) are zero, as test_run
/// leaves them without a ctx_in.
const TEST_RUN_IFINDEX: u32 = 1;

/// `skb->pkt_type` as `eth_type_trans` sets it on the loopback device (MAC all zero):
/// PACKET_BROADCAST 1, PACKET_MULTICAST 2, PACKET_OTHERHOST 3, PACKET_HOST 0.
fn pkt_type(packet: &[u8]) -> u32 {
    let Some(dst) = packet.get(..6) else {
        return 0;
    };
    if dst[0] & 1 == 1 {
        if dst.iter().all(|&b| b == 0xff) {
            1
        } else {
            2
        }
    } else if dst.iter().any(|&b| b != 0) {
        3
    } else {
        0
    }
}

/// Fills a context for one run on `packet`, which lives at address `data`.
pub fn fill_ctx(ctx: &mut [u8; CTX_SIZE], packet: &[u8], data: u64) {
    ctx.fill(0);
    let put32 = |ctx: &mut [u8; CTX_SIZE], off: usize, v: u32| {
        ctx[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    };
    // test_run: skb->len is the whole frame, Ethernet header included.
    put32(ctx, OFF_LEN, packet.len() as u32);
    // skb->protocol is the EtherType as eth_type_trans stores it: big-endian bytes.
    if packet.len() >= 14 {
        put32(
            ctx,
            OFF_PROTOCOL,
            u16::from_ne_bytes([packet[12], packet[13]]) as u32,
        );
    }
    put32(ctx, OFF_PKT_TYPE, pkt_type(packet));
    put32(ctx, OFF_IFINDEX, TEST_RUN_IFINDEX);
    let end = data + packet.len() as u64;
    let put64 = |ctx: &mut [u8; CTX_SIZE], off: i16, v: u64| {
        let off = off as usize;
        ctx[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    };
    put64(ctx, EXT_DATA, data);
    put64(ctx, EXT_DATA_END, end);
    // No metadata under test_run: data_meta == data.
    put64(ctx, EXT_DATA_META, data);
}

/// A bytecode position the pass could not handle soundly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteError {
    pub insn: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Ctx,
    Other,
    /// Ctx on some paths only: a packet-pointer load through it cannot be rewritten.
    Mixed,
}

impl Tag {
    fn join(self, other: Tag) -> Tag {
        if self == other {
            self
        } else {
            Tag::Mixed
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    regs: [Tag; 11],
    /// Spilled 8-byte stack slots, by offset from r10; absent means Other.
    slots: BTreeMap<i16, Tag>,
}

impl State {
    fn entry(args: [Tag; 5]) -> State {
        let mut regs = [Tag::Other; 11];
        regs[1..6].copy_from_slice(&args);
        State {
            regs,
            slots: BTreeMap::new(),
        }
    }

    /// Joins `other` into `self`; true when `self` changed.
    fn join(&mut self, other: &State) -> bool {
        let before = self.clone();
        for (a, b) in self.regs.iter_mut().zip(other.regs) {
            *a = a.join(b);
        }
        let keys: Vec<i16> = self
            .slots
            .keys()
            .chain(other.slots.keys())
            .copied()
            .collect();
        for k in keys {
            let a = self.slots.get(&k).copied().unwrap_or(Tag::Other);
            let b = other.slots.get(&k).copied().unwrap_or(Tag::Other);
            self.slots.insert(k, a.join(b));
        }
        self.slots.retain(|_, t| *t != Tag::Other);
        *self != before
    }

    fn clobber_caller_saved(&mut self) {
        for r in &mut self.regs[0..6] {
            *r = Tag::Other;
        }
    }

    fn invalidate_stack(&mut self, off: i16, size: i16) {
        let lo = off as i32;
        let hi = lo + size as i32;
        self.slots
            .retain(|&k, _| (k as i32 + 8) <= lo || (k as i32) >= hi);
    }
}

struct Insn {
    op: u8,
    dst: usize,
    src: usize,
    off: i16,
    imm: i32,
}

fn insn_at(code: &[u8], pc: usize) -> Insn {
    let b = &code[pc * 8..pc * 8 + 8];
    Insn {
        op: b[0],
        dst: (b[1] & 0x0f) as usize,
        src: (b[1] >> 4) as usize,
        off: i16::from_le_bytes([b[2], b[3]]),
        imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    }
}

fn size_bytes(op: u8) -> i16 {
    match op & 0x18 {
        0x00 => 4,
        0x08 => 2,
        0x10 => 1,
        _ => 8,
    }
}

fn ext_for(off: i16) -> Option<i16> {
    match off {
        OFF_DATA => Some(EXT_DATA),
        OFF_DATA_END => Some(EXT_DATA_END),
        OFF_DATA_META => Some(EXT_DATA_META),
        _ => None,
    }
}

const LDXW: u8 = 0x61;
const LDXDW: u8 = 0x79;

/// Rewrites the packet-pointer loads of a program whose r1 is the context on entry.
/// Returns how many loads were rewritten.
pub fn rewrite_ctx_loads(code: &mut [u8]) -> Result<usize, RewriteError> {
    let n = code.len() / 8;
    let mut states: Vec<Option<State>> = vec![None; n];
    let mut work = vec![0usize];
    states[0] = Some(State::entry([
        Tag::Ctx,
        Tag::Other,
        Tag::Other,
        Tag::Other,
        Tag::Other,
    ]));
    let err = |insn: usize, message: String| RewriteError { insn, message };

    let propagate = |states: &mut Vec<Option<State>>,
                     work: &mut Vec<usize>,
                     to: i64,
                     s: &State,
                     from: usize|
     -> Result<(), RewriteError> {
        if to < 0 || to as usize >= n {
            return Err(err(
                from,
                format!("jump or call to {to} leaves the program"),
            ));
        }
        let to = to as usize;
        match &mut states[to] {
            Some(existing) => {
                if existing.join(s) {
                    work.push(to);
                }
            }
            slot @ None => {
                *slot = Some(s.clone());
                work.push(to);
            }
        }
        Ok(())
    };

    while let Some(pc) = work.pop() {
        let Some(mut s) = states[pc].clone() else {
            continue;
        };
        let i = insn_at(code, pc);
        let class = i.op & 0x07;
        match class {
            // ALU64 / ALU
            0x07 | 0x04 => {
                s.regs[i.dst] = if i.op == 0xbf {
                    s.regs[i.src]
                } else {
                    Tag::Other
                };
                propagate(&mut states, &mut work, pc as i64 + 1, &s, pc)?;
            }
            // LD: lddw (two slots) or legacy packet loads (clobber r0-r5).
            0x00 => {
                if i.op == 0x18 {
                    s.regs[i.dst] = Tag::Other;
                    propagate(&mut states, &mut work, pc as i64 + 2, &s, pc)?;
                } else {
                    s.clobber_caller_saved();
                    propagate(&mut states, &mut work, pc as i64 + 1, &s, pc)?;
                }
            }
            // LDX
            0x01 => {
                let loaded = if i.src == 10 && i.op == LDXDW {
                    s.slots.get(&i.off).copied().unwrap_or(Tag::Other)
                } else {
                    Tag::Other
                };
                s.regs[i.dst] = loaded;
                propagate(&mut states, &mut work, pc as i64 + 1, &s, pc)?;
            }
            // ST / STX
            0x02 | 0x03 => {
                if i.dst == 10 {
                    s.invalidate_stack(i.off, size_bytes(i.op));
                    if i.op == 0x7b && s.regs[i.src] != Tag::Other {
                        s.slots.insert(i.off, s.regs[i.src]);
                    }
                }
                // Atomics with BPF_FETCH write their source register.
                if i.op & 0xe0 == 0xc0 {
                    s.regs[i.src] = Tag::Other;
                }
                propagate(&mut states, &mut work, pc as i64 + 1, &s, pc)?;
            }
            // JMP / JMP32
            0x05 | 0x06 => match i.op & 0xf0 {
                0x00 => propagate(&mut states, &mut work, pc as i64 + 1 + i.off as i64, &s, pc)?,
                0x80 => {
                    if i.src == 1 {
                        let mut args = [Tag::Other; 5];
                        args.copy_from_slice(&s.regs[1..6]);
                        let callee = State::entry(args);
                        propagate(
                            &mut states,
                            &mut work,
                            pc as i64 + 1 + i.imm as i64,
                            &callee,
                            pc,
                        )?;
                    }
                    s.clobber_caller_saved();
                    propagate(&mut states, &mut work, pc as i64 + 1, &s, pc)?;
                }
                0x90 => {}
                _ => {
                    propagate(&mut states, &mut work, pc as i64 + 1, &s, pc)?;
                    propagate(&mut states, &mut work, pc as i64 + 1 + i.off as i64, &s, pc)?;
                }
            },
            _ => return Err(err(pc, format!("unknown instruction class {class}"))),
        }
    }

    // Rewrite with the final (fixpoint) states only.
    let mut rewritten = 0;
    for (pc, state) in states.iter().enumerate() {
        let Some(s) = state else { continue };
        let i = insn_at(code, pc);
        let class = i.op & 0x07;
        let (base, is_load) = match class {
            0x01 => (i.src, true),
            0x02 | 0x03 => (i.dst, false),
            _ => continue,
        };
        let Some(ext) = ext_for(i.off) else { continue };
        match s.regs[base] {
            Tag::Other => {}
            Tag::Mixed => {
                return Err(err(
                    pc,
                    format!(
                        "r{base} holds the context on some paths only; cannot rewrite its \
                         access at offset {}",
                        i.off
                    ),
                ));
            }
            Tag::Ctx if !is_load => {
                return Err(err(pc, format!("store to __sk_buff offset {}", i.off)));
            }
            Tag::Ctx if i.op != LDXW => {
                return Err(err(
                    pc,
                    format!("__sk_buff offset {} must be read as a 32-bit load", i.off),
                ));
            }
            Tag::Ctx => {
                let at = pc * 8;
                code[at] = LDXDW;
                code[at + 2..at + 4].copy_from_slice(&ext.to_le_bytes());
                rewritten += 1;
            }
        }
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctx_fields_follow_test_run() {
        let mut ctx = [0u8; CTX_SIZE];
        let mut frame = vec![0u8; 60];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&[0x86, 0xdd]);
        fill_ctx(&mut ctx, &frame, 0x1000);
        let u32_at = |o: usize| u32::from_ne_bytes(ctx[o..o + 4].try_into().expect("4"));
        let u64_at =
            |o: i16| u64::from_ne_bytes(ctx[o as usize..o as usize + 8].try_into().expect("8"));
        assert_eq!(u32_at(OFF_LEN), 60);
        assert_eq!(u32_at(OFF_PKT_TYPE), 3);
        assert_eq!(
            u32_at(OFF_PROTOCOL),
            u16::from_ne_bytes([0x86, 0xdd]) as u32
        );
        assert_eq!(u32_at(OFF_IFINDEX), 1);
        assert_eq!(
            (
                u64_at(EXT_DATA),
                u64_at(EXT_DATA_END),
                u64_at(EXT_DATA_META)
            ),
            (0x1000, 0x1000 + 60, 0x1000)
        );
        assert_eq!(pkt_type(&[0xff; 14]), 1);
        assert_eq!(pkt_type(&[0x01, 0, 0x5e, 0, 0, 1]), 2);
        assert_eq!(pkt_type(&[0; 14]), 0);
    }

    fn asm(src: &str) -> Vec<u8> {
        rbpf::assembler::assemble(src).expect("assemble")
    }

    fn off_at(code: &[u8], pc: usize) -> (u8, i16) {
        (
            code[pc * 8],
            i16::from_le_bytes([code[pc * 8 + 2], code[pc * 8 + 3]]),
        )
    }

    #[test]
    fn rewrites_direct_and_copied_ctx() {
        let mut code = asm("ldxw r2, [r1+76]
             mov64 r6, r1
             ldxw r3, [r6+80]
             ldxw r4, [r6+0]
             ldxw r5, [r6+140]
             mov64 r1, r2
             ldxw r0, [r1+76]
             exit");
        assert_eq!(rewrite_ctx_loads(&mut code), Ok(3));
        assert_eq!(off_at(&code, 0), (LDXDW, EXT_DATA));
        assert_eq!(off_at(&code, 2), (LDXDW, EXT_DATA_END));
        assert_eq!(off_at(&code, 3), (LDXW, 0));
        assert_eq!(off_at(&code, 4), (LDXDW, EXT_DATA_META));
        // r1 was overwritten with a non-ctx value: left alone.
        assert_eq!(off_at(&code, 6), (LDXW, 76));
    }

    #[test]
    fn follows_spills_and_subprogram_arguments() {
        let mut code = asm("stxdw [r10-8], r1
             mov64 r1, 0
             ldxdw r7, [r10-8]
             ldxw r2, [r7+76]
             mov64 r1, r7
             call 1
             mov64 r0, 0
             exit
             ldxw r0, [r1+80]
             exit");
        // Turn `call 1` (insn 5) into a bpf-to-bpf call to insn 8: imm = 8 - 6.
        code[5 * 8 + 1] = 0x10;
        code[5 * 8 + 4..5 * 8 + 8].copy_from_slice(&2i32.to_le_bytes());
        assert_eq!(rewrite_ctx_loads(&mut code), Ok(2));
        assert_eq!(off_at(&code, 3), (LDXDW, EXT_DATA));
        assert_eq!(off_at(&code, 8), (LDXDW, EXT_DATA_END));
    }

    #[test]
    fn rejects_ambiguous_and_wrong_width_access() {
        let mut code = asm("jeq r2, 0, +1
             mov64 r1, r10
             ldxw r0, [r1+76]
             exit");
        let e = rewrite_ctx_loads(&mut code).expect_err("mixed");
        assert_eq!(e.insn, 2);
        let mut code = asm("ldxdw r0, [r1+76]\nexit");
        assert_eq!(rewrite_ctx_loads(&mut code).expect_err("width").insn, 0);
        let mut code = asm("stxw [r1+80], r2\nexit");
        assert_eq!(rewrite_ctx_loads(&mut code).expect_err("store").insn, 0);
    }

    #[test]
    fn helper_calls_clobber_r1() {
        let mut code = asm("mov64 r6, r1
             call 8
             ldxw r0, [r1+76]
             ldxw r0, [r6+76]
             exit");
        // r1 after a helper call is scratch: still ambiguous-free, just not ctx.
        assert_eq!(rewrite_ctx_loads(&mut code), Ok(1));
        assert_eq!(off_at(&code, 2), (LDXW, 76));
        assert_eq!(off_at(&code, 3), (LDXDW, EXT_DATA));
    }
}
