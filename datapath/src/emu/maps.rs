//! The emulator's maps, with the kernel's semantics and errno values.
//!
//! Every map value lives in one arena (`Vec<u64>`, so values are 8-byte aligned) that is
//! registered with rbpf as allowed memory: the pointers a program gets from
//! `bpf_map_lookup_elem` point straight into it. The arena grows on demand: array maps are
//! laid out whole when created (as the kernel preallocates them), hash and LPM maps get
//! their slots in chunks that double in size as the map fills, so a map declared with
//! millions of entries costs nothing until used (the policy, ipcache and conntrack maps
//! reserved 286 MB per node up front, and 16 nodes aborted under a 4 GB address-space
//! limit). The arena only grows outside program runs (map writes from the harness, or
//! before a run, which keeps [`RUN_HEADROOM`] free slots in every growable map), so no
//! pointer a running program holds ever moves; when the arena moves, [`Maps::take_moved`]
//! tells the emulator to register the new range with its programs. Failing to grow is an
//! error naming the map (`DatapathError::OutOfMemory`), never an abort. A deleted slot is only reused after
//! the current run ends, so a pointer a program still holds stays valid, as RCU keeps it
//! valid in the kernel. Per-CPU maps behave as on a one-CPU machine. The arena ends with
//! room for the packet of the run in progress ([`PACKET_ROOM`]), so that values and packet
//! form one range for rbpf's interpreter (see `vm::LoadedProgram::execute`).
//!
//! Lookups are what a JIT-compiled run spends its time on, so hash maps keep short keys
//! inline (`KeyBytes`) and hash them a word at a time (`WordHasher`), and LPM tries answer
//! lookups from a hash index per prefix length (`lpm`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::lpm::LpmTrie;
use crate::backend::{DatapathError, Errno, MapEntries};
use crate::object::{MapDef, MapType};

#[cfg(test)]
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;
/// `BPF_F_NO_PREALLOC`, which the kernel requires of LPM tries.
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_RINGBUF_HDR_SZ: usize = 8;
/// `BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP`: the only flags `bpf_ringbuf_output` accepts.
const RINGBUF_OUTPUT_FLAGS: u64 = 3;

/// An Fx-style word-at-a-time hash: keys are short fixed-size structs and hashing speed
/// matters more than flood resistance here (inputs come from our own scenarios).
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl WordHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::K).rotate_left(26);
    }
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        // hashbrown takes control bits from the top: fold the low bits up.
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
}

/// Keys up to this many bytes are stored inline in the hash index (every key of the
/// project's maps is: the conntrack key, the longest, has 40).
const INLINE_KEY: usize = 48;

/// A hash-map key, inline when short: a lookup then compares against bytes in the table
/// itself instead of chasing a `Box` per probe (one cache miss fewer per lookup).
#[derive(Clone)]
enum KeyBytes {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    fn new(key: &[u8]) -> KeyBytes {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            KeyBytes::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBytes::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..*len as usize],
            KeyBytes::Heap(b) => b,
        }
    }
}

impl std::borrow::Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

// Hash and Eq as the byte slice, as `Borrow<[u8]>` requires.
impl std::hash::Hash for KeyBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &KeyBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for KeyBytes {}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// Slot bookkeeping for hash-like maps (HASH, PERCPU_HASH, LRU_HASH, LPM_TRIE). Slots
/// are handed out lowest-first and never pre-listed, so a huge `max_entries` costs nothing
/// until used.
#[derive(Debug)]
struct Slots {
    /// Slots never used yet: `next..cap`.
    next: u32,
    cap: u32,
    /// Freed slots, reused before fresh ones, lowest first (a deterministic order). A heap:
    /// churn replays delete one entry at a time, and re-sorting a list per delete made the
    /// map writer quadratic in the number of freed slots.
    free: BinaryHeap<Reverse<u32>>,
    /// Slots freed during the current run, reusable once it ends.
    pending_free: Vec<u32>,
}

impl Slots {
    fn new(cap: u32) -> Slots {
        Slots {
            next: 0,
            cap,
            free: BinaryHeap::new(),
            pending_free: Vec::new(),
        }
    }

    /// The slot `alloc` would hand out next.
    fn peek(&self) -> Option<u32> {
        match self.free.peek() {
            Some(Reverse(s)) => Some(*s),
            None => (self.next < self.cap).then_some(self.next),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(Reverse(s)) = self.free.pop() {
            return Some(s);
        }
        (self.next < self.cap).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

#[derive(Debug)]
enum Store {
    Array,
    Hash {
        index: FastMap<KeyBytes, u32>,
        slots: Slots,
        /// LRU only: last-use tick per slot (deterministic stand-in for the kernel's lists).
        lru: Option<(u64, Vec<u64>)>,
        /// Key per slot, for LRU eviction (empty for other maps).
        keys: Vec<Option<Box<[u8]>>>,
    },
    Lpm {
        trie: LpmTrie,
        slots: Slots,
    },
    RingBuf {
        used: usize,
    },
    ProgArray(Vec<Option<usize>>),
}

#[derive(Debug)]
pub(crate) struct EmuMap {
    pub(crate) def: MapDef,
    store: Store,
    /// Byte offsets in the arena of the map's value chunks: chunk 0 holds slots
    /// `0..first_chunk`, chunk k (k >= 1) slots `first_chunk << (k-1) .. first_chunk << k`.
    chunks: Vec<usize>,
    /// Slots in chunk 0 (a power of two).
    first_chunk: u32,
    /// The distance between slots (the value size rounded up to 8).
    stride: usize,
}

impl EmuMap {
    /// Slots the chunks hold.
    fn covered(&self) -> u64 {
        match self.chunks.len() {
            0 => 0,
            n => u64::from(self.first_chunk) << (n - 1),
        }
    }

    /// (chunk, index in chunk) of `slot`.
    fn chunk_of(&self, slot: u32) -> (usize, usize) {
        let c0 = self.first_chunk;
        if slot < c0 {
            return (0, slot as usize);
        }
        // slot in [c0 << (k-1), c0 << k): k = log2(slot / c0) + 1.
        let k = (31 - (slot / c0).leading_zeros()) as usize + 1;
        (k, (slot - (c0 << (k - 1))) as usize)
    }
}

/// Free slots every growable map keeps laid out in the arena when a program run starts:
/// a run may insert this many entries into one map before an insert fails with -ENOMEM
/// (and the run with an error saying so). The programs insert at most a few per run.
pub(crate) const RUN_HEADROOM: u32 = 64;

/// The first chunk of a growable map holds about this many bytes of values.
const FIRST_CHUNK_BYTES: usize = 16 * 1024;

/// Room for the packet right after the map values, in the same allocation (bigger packets
/// get their own buffer; see [`Maps::packet_room`]).
pub(crate) const PACKET_ROOM: usize = 64 * 1024;

/// All maps of one object and the arena holding their values.
#[derive(Debug)]
pub(crate) struct Maps {
    pub(crate) maps: Vec<EmuMap>,
    /// Map values (`values_len` bytes), then `PACKET_ROOM` bytes for the packet.
    arena: Vec<u64>,
    values_len: usize,
    /// The arena's address changed since [`Maps::take_moved`] was last called.
    moved: bool,
    /// A program run is in progress: the arena must not grow.
    in_run: bool,
    /// A map that could not lay out a slot during a run (see [`RUN_HEADROOM`]).
    run_overflow: Option<usize>,
    /// Whether a run left work for `end_run` (a freed slot or ring-buffer space); most
    /// runs do not, and then `end_run` skips visiting every map.
    dirty: bool,
}

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl Maps {
    /// Creates every map as `BPF_MAP_CREATE` would, or fails naming the first map the
    /// emulator cannot create.
    pub(crate) fn new(defs: &[MapDef], backend: &str) -> Result<Maps, DatapathError> {
        let unsupported = |d: &MapDef, what: String| DatapathError::UnsupportedMap {
            backend: backend.into(),
            map: d.name.clone(),
            what,
        };
        let invalid = |d: &MapDef| DatapathError::Map {
            map: d.name.clone(),
            op: "create",
            errno: Errno::EINVAL,
        };
        let mut maps = Vec::with_capacity(defs.len());
        for d in defs {
            if d.max_entries == 0 {
                return Err(invalid(d));
            }
            let stride = round8(d.value_size as usize);
            let n = d.max_entries;
            let (store, slots) = match d.map_type {
                MapType::Array | MapType::PerCpuArray => {
                    if d.key_size != 4 || d.value_size == 0 {
                        return Err(invalid(d));
                    }
                    // Laid out whole, in one chunk.
                    (Store::Array, n)
                }
                MapType::Hash | MapType::PerCpuHash | MapType::LruHash => {
                    if d.key_size == 0 || d.value_size == 0 {
                        return Err(invalid(d));
                    }
                    // LRU bookkeeping grows with the slots in use (see `update`).
                    let lru = (d.map_type == MapType::LruHash).then(|| (0, Vec::new()));
                    (
                        Store::Hash {
                            index: FastMap::default(),
                            slots: Slots::new(n),
                            lru,
                            keys: Vec::new(),
                        },
                        0,
                    )
                }
                MapType::LpmTrie => {
                    // lpm_trie.c: data 1..=256 bytes, BPF_F_NO_PREALLOC mandatory.
                    if d.key_size < 5
                        || d.key_size > 4 + 256
                        || d.value_size == 0
                        || d.map_flags & BPF_F_NO_PREALLOC == 0
                    {
                        return Err(invalid(d));
                    }
                    (
                        Store::Lpm {
                            trie: LpmTrie::new(d.key_size as usize),
                            slots: Slots::new(n),
                        },
                        0,
                    )
                }
                MapType::RingBuf => {
                    if d.key_size != 0 || d.value_size != 0 || !d.max_entries.is_power_of_two() {
                        return Err(invalid(d));
                    }
                    (Store::RingBuf { used: 0 }, 0)
                }
                MapType::ProgArray => {
                    if d.key_size != 4 || d.value_size != 4 {
                        return Err(invalid(d));
                    }
                    (Store::ProgArray(vec![None; n as usize]), 0)
                }
                other => return Err(unsupported(d, format!("type {other}"))),
            };
            (slots as usize)
                .checked_mul(stride)
                .ok_or_else(|| unsupported(d, "size".into()))?;
            // Arrays: one chunk of every slot. Others: chunks from FIRST_CHUNK_BYTES up.
            let first_chunk = if slots > 0 {
                slots
            } else {
                let want = (FIRST_CHUNK_BYTES / stride.max(1)).max(1) as u32;
                want.next_power_of_two().min(n.next_power_of_two())
            };
            maps.push(EmuMap {
                def: d.clone(),
                store,
                chunks: Vec::new(),
                first_chunk,
                stride,
            });
        }
        let mut out = Maps {
            maps,
            arena: Vec::new(),
            values_len: 8,
            moved: false,
            in_run: false,
            run_overflow: None,
            dirty: false,
        };
        out.arena
            .try_reserve_exact((8 + PACKET_ROOM) / 8)
            .map_err(|_| DatapathError::OutOfMemory {
                backend: backend.into(),
                map: "(arena)".into(),
                bytes: 8 + PACKET_ROOM,
            })?;
        out.arena.resize((8 + PACKET_ROOM) / 8, 0);
        for m in 0..out.maps.len() {
            let is_array = matches!(out.maps[m].store, Store::Array);
            let want = if is_array {
                out.maps[m].def.max_entries
            } else {
                RUN_HEADROOM
            };
            out.ensure_slots(m, want)
                .map_err(|bytes| DatapathError::OutOfMemory {
                    backend: backend.into(),
                    map: out.maps[m].def.name.clone(),
                    bytes,
                })?;
        }
        out.moved = false;
        Ok(out)
    }

    /// Lays out chunks until map `m` has its first `slots` slots (capped at its
    /// `max_entries`) in the arena. Err: the bytes that could not be allocated.
    fn ensure_slots(&mut self, m: usize, slots: u32) -> Result<(), usize> {
        let want = u64::from(slots.min(self.maps[m].def.max_entries));
        while self.maps[m].covered() < want {
            let map = &self.maps[m];
            let n = match map.chunks.len() {
                0 => u64::from(map.first_chunk),
                k => u64::from(map.first_chunk) << (k - 1),
            };
            let bytes = (n as usize).checked_mul(map.stride).ok_or(usize::MAX)?;
            let off = self.grow_values(bytes)?;
            self.maps[m].chunks.push(off);
        }
        Ok(())
    }

    /// Appends `bytes` (a multiple of 8) of zeroed values to the arena, keeping the packet
    /// room after them; returns their offset. Never during a run.
    fn grow_values(&mut self, bytes: usize) -> Result<usize, usize> {
        debug_assert!(!self.in_run && bytes.is_multiple_of(8));
        let off = self.values_len;
        let new_values = off.checked_add(bytes).ok_or(bytes)?;
        let words = new_values.checked_add(PACKET_ROOM).ok_or(bytes)? / 8;
        let before = self.arena.as_ptr();
        let before_len = self.arena.len();
        if words > self.arena.capacity() {
            // Amortized doubling, without aborting on failure.
            let target = words.max(self.arena.capacity().saturating_mul(2));
            let extra = target - self.arena.len();
            if self.arena.try_reserve_exact(extra).is_err() {
                let extra = words - self.arena.len();
                self.arena.try_reserve_exact(extra).map_err(|_| bytes)?;
            }
        }
        // The old packet room becomes values: zero it along with the new words.
        self.arena[off / 8..].fill(0);
        self.arena.resize(words, 0);
        self.values_len = new_values;
        // Moved or grown in place (realloc may extend without moving): either way the range
        // registered with the programs is stale.
        if self.arena.as_ptr() != before || self.arena.len() != before_len {
            self.moved = true;
        }
        Ok(off)
    }

    /// Whether the arena moved (or grew) since the last call: its range must be registered
    /// again with every program.
    pub(crate) fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// Before a run: every growable map gets [`RUN_HEADROOM`] free slots laid out, so the
    /// run never has to grow the arena. Err: (map name, bytes) that could not be allocated.
    pub(crate) fn begin_run(&mut self) -> Result<(), (String, usize)> {
        for m in 0..self.maps.len() {
            let next = match &self.maps[m].store {
                Store::Hash { slots, .. } | Store::Lpm { slots, .. } => slots.next,
                _ => continue,
            };
            let want = next.saturating_add(RUN_HEADROOM);
            if self.maps[m].covered() < u64::from(want.min(self.maps[m].def.max_entries)) {
                self.ensure_slots(m, want)
                    .map_err(|b| (self.maps[m].def.name.clone(), b))?;
            }
        }
        self.in_run = true;
        self.run_overflow = None;
        Ok(())
    }

    /// The map whose slots ran out of layout during the last run, if any.
    pub(crate) fn take_run_overflow(&mut self) -> Option<String> {
        self.run_overflow
            .take()
            .map(|m| self.maps[m].def.name.clone())
    }

    /// Makes sure `slot` of map `m` is laid out: grows the arena outside runs; during a
    /// run, past the headroom, fails with -ENOMEM (a kernel NO_PREALLOC hash map fails the
    /// same way when its element allocation fails) and records the map.
    fn lay_out(&mut self, m: usize, slot: u32) -> Result<(), Errno> {
        if u64::from(slot) < self.maps[m].covered() {
            return Ok(());
        }
        if self.in_run {
            self.run_overflow = Some(m);
            return Err(Errno::ENOMEM);
        }
        self.ensure_slots(m, slot.saturating_add(1))
            .map_err(|_| Errno::ENOMEM)
    }

    /// The address range of the map values, for rbpf's allowed memory (the packet room
    /// after it is not included: the packet is checked by its own length). It changes
    /// when the arena grows ([`Maps::take_moved`]).
    pub(crate) fn arena_range(&self) -> std::ops::Range<u64> {
        let start = self.arena.as_ptr() as u64;
        start..start + self.values_len as u64
    }

    /// The packet room, right after the map values: a packet copied here makes map values
    /// and packet one contiguous range, which the interpreter can be given as its `mem`
    /// (see `LoadedProgram::execute`).
    pub(crate) fn packet_room(&mut self) -> *mut [u8] {
        // SAFETY: the room is the tail of the arena, PACKET_ROOM bytes, disjoint from the
        // values that `arena_bytes(_mut)` cover.
        unsafe {
            let start = self.arena.as_mut_ptr().cast::<u8>().add(self.values_len);
            std::ptr::slice_from_raw_parts_mut(start, PACKET_ROOM)
        }
    }

    /// Map values and the first `packet_len` bytes of the packet room, as one range.
    pub(crate) fn values_and_packet(&self, packet_len: usize) -> *const [u8] {
        std::ptr::slice_from_raw_parts(
            self.arena.as_ptr().cast::<u8>(),
            self.values_len + packet_len.min(PACKET_ROOM),
        )
    }

    pub(crate) fn arena_base(&self) -> u64 {
        self.arena.as_ptr() as u64
    }

    fn arena_bytes(&self) -> &[u8] {
        // SAFETY: u64 storage viewed as bytes; same length in bytes, alignment only drops.
        unsafe { std::slice::from_raw_parts(self.arena.as_ptr().cast(), self.values_len) }
    }

    fn arena_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, with a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.arena.as_mut_ptr().cast(), self.values_len) }
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.def.name == name)
    }

    /// Byte offset in the arena of `slot` of map `m` (laid out: see [`Maps::lay_out`]).
    fn slot_off(&self, m: usize, slot: u32) -> usize {
        let map = &self.maps[m];
        let (chunk, i) = map.chunk_of(slot);
        map.chunks[chunk] + i * map.stride
    }

    fn value(&self, m: usize, slot: u32) -> &[u8] {
        let off = self.slot_off(m, slot);
        &self.arena_bytes()[off..off + self.maps[m].def.value_size as usize]
    }

    fn write_value(&mut self, m: usize, slot: u32, value: &[u8]) {
        let off = self.slot_off(m, slot);
        let stride = self.maps[m].stride;
        let bytes = self.arena_bytes_mut();
        bytes[off..off + value.len()].copy_from_slice(value);
        // Padding up to the 8-byte stride is zeroed, as the kernel zeroes it.
        bytes[off + value.len()..off + stride].fill(0);
    }

    /// Finds the slot holding `key`'s value; `touch` marks LRU use (program lookups do,
    /// syscall lookups do not). For LPM tries this is the longest-prefix match.
    /// The caller checked the key length.
    pub(crate) fn find(&mut self, m: usize, key: &[u8], touch: bool) -> Option<u32> {
        let map = &mut self.maps[m];
        match &mut map.store {
            Store::Array => {
                let i = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
                (i < map.def.max_entries).then_some(i)
            }
            Store::Hash { index, lru, .. } => {
                let slot = *index.get(key)?;
                if let (true, Some((tick, used))) = (touch, lru) {
                    *tick += 1;
                    used[slot as usize] = *tick;
                }
                Some(slot)
            }
            Store::Lpm { trie, .. } => trie.longest_match(key),
            Store::RingBuf { .. } | Store::ProgArray(_) => None,
        }
    }

    /// `find` without side effects, for `&self` callers.
    fn find_ro(&self, m: usize, key: &[u8]) -> Option<u32> {
        let map = &self.maps[m];
        match &map.store {
            Store::Array => {
                let i = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
                (i < map.def.max_entries).then_some(i)
            }
            Store::Hash { index, .. } => index.get(key).copied(),
            Store::Lpm { trie, .. } => trie.longest_match(key),
            Store::RingBuf { .. } | Store::ProgArray(_) => None,
        }
    }

    /// The address of the value for a program lookup, or 0 (NULL).
    pub(crate) fn lookup_ptr(&mut self, m: usize, key: &[u8]) -> u64 {
        match self.find(m, key, true) {
            Some(slot) => self.arena_base() + self.slot_off(m, slot) as u64,
            None => 0,
        }
    }

    pub(crate) fn lookup(&self, m: usize, key: &[u8]) -> Option<Vec<u8>> {
        self.find_ro(m, key).map(|s| self.value(m, s).to_vec())
    }

    /// `BPF_MAP_UPDATE_ELEM` / `bpf_map_update_elem`. Sizes were checked by the caller.
    pub(crate) fn update(
        &mut self,
        m: usize,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<(), Errno> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let max_entries = self.maps[m].def.max_entries;
        // The slot a new key would take must be laid out in the arena first.
        let next_slot = match &self.maps[m].store {
            Store::Hash { slots, .. } | Store::Lpm { slots, .. } => slots.peek(),
            _ => None,
        };
        let room = match next_slot {
            Some(slot) => self.lay_out(m, slot),
            None => Ok(()),
        };
        let max_prefixlen_ok = match &self.maps[m].store {
            Store::Lpm { trie, .. } => {
                u32::from_ne_bytes([key[0], key[1], key[2], key[3]]) <= trie.max_prefixlen()
            }
            _ => true,
        };
        if room.is_err() && flags != BPF_EXIST && max_prefixlen_ok {
            let new_key = match &self.maps[m].store {
                Store::Hash { index, .. } => !index.contains_key(key),
                Store::Lpm { trie, .. } => trie.get_exact(key).is_none(),
                _ => false,
            };
            if new_key {
                if self.in_run {
                    self.run_overflow = Some(m);
                }
                return Err(Errno::ENOMEM);
            }
        }
        let map = &mut self.maps[m];
        let slot = match &mut map.store {
            Store::Array => {
                let i = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
                if i >= max_entries {
                    return Err(Errno::E2BIG);
                }
                if flags == BPF_NOEXIST {
                    return Err(Errno::EEXIST);
                }
                i
            }
            Store::Hash {
                index,
                slots,
                lru,
                keys,
            } => match index.get(key) {
                Some(&slot) => {
                    if flags == BPF_NOEXIST {
                        return Err(Errno::EEXIST);
                    }
                    if let Some((tick, used)) = lru {
                        *tick += 1;
                        used[slot as usize] = *tick;
                    }
                    slot
                }
                None => {
                    if flags == BPF_EXIST {
                        return Err(Errno::ENOENT);
                    }
                    let slot = match slots.alloc() {
                        Some(s) => s,
                        None => match lru {
                            // LRU maps evict the least recently used entry instead of
                            // failing; the victim's slot is reused at once, as the kernel
                            // recycles the evicted element.
                            Some((_, used)) => {
                                let victim = (0..keys.len())
                                    .filter(|&s| keys[s].is_some())
                                    .min_by_key(|&s| used[s])
                                    .ok_or(Errno::E2BIG)?;
                                if let Some(k) = keys[victim].take() {
                                    index.remove(&*k);
                                }
                                victim as u32
                            }
                            None => return Err(Errno::E2BIG),
                        },
                    };
                    index.insert(KeyBytes::new(key), slot);
                    if let Some((tick, used)) = lru {
                        if used.len() <= slot as usize {
                            used.resize(slot as usize + 1, 0);
                            keys.resize(slot as usize + 1, None);
                        }
                        keys[slot as usize] = Some(key.into());
                        *tick += 1;
                        used[slot as usize] = *tick;
                    }
                    slot
                }
            },
            Store::Lpm { trie, slots } => {
                if !max_prefixlen_ok {
                    return Err(Errno::EINVAL);
                }
                match trie.get_exact(key) {
                    Some(slot) => {
                        if flags == BPF_NOEXIST {
                            return Err(Errno::EEXIST);
                        }
                        // Replace the stored key bytes too, as the kernel swaps the node.
                        trie.insert(key, slot);
                        slot
                    }
                    None => {
                        if flags == BPF_EXIST {
                            return Err(Errno::ENOENT);
                        }
                        if trie.len() >= max_entries as usize {
                            return Err(Errno::ENOSPC);
                        }
                        let slot = slots.alloc().ok_or(Errno::ENOSPC)?;
                        trie.insert(key, slot);
                        slot
                    }
                }
            }
            Store::RingBuf { .. } | Store::ProgArray(_) => return Err(Errno::EINVAL),
        };
        self.write_value(m, slot, value);
        Ok(())
    }

    /// `BPF_MAP_DELETE_ELEM` / `bpf_map_delete_elem`.
    pub(crate) fn delete(&mut self, m: usize, key: &[u8]) -> Result<(), Errno> {
        let map = &mut self.maps[m];
        match &mut map.store {
            Store::Array => Err(Errno::EINVAL),
            Store::Hash {
                index, slots, keys, ..
            } => {
                let slot = index.remove(key).ok_or(Errno::ENOENT)?;
                if let Some(k) = keys.get_mut(slot as usize) {
                    *k = None;
                }
                slots.pending_free.push(slot);
                self.dirty = true;
                Ok(())
            }
            Store::Lpm { trie, slots } => {
                if u32::from_ne_bytes([key[0], key[1], key[2], key[3]]) > trie.max_prefixlen() {
                    return Err(Errno::EINVAL);
                }
                let slot = trie.remove(key).ok_or(Errno::ENOENT)?;
                slots.pending_free.push(slot);
                self.dirty = true;
                Ok(())
            }
            Store::RingBuf { .. } | Store::ProgArray(_) => Err(Errno::EINVAL),
        }
    }

    /// Every entry, sorted by key bytes. One CPU, so per-CPU "sums" are the value itself.
    pub(crate) fn dump(&self, m: usize) -> MapEntries {
        let map = &self.maps[m];
        let mut out: MapEntries = match &map.store {
            Store::Array => (0..map.def.max_entries)
                .map(|i| (i.to_ne_bytes().to_vec(), self.value(m, i).to_vec()))
                .collect(),
            Store::Hash { index, .. } => index
                .iter()
                .map(|(k, &s)| (k.as_slice().to_vec(), self.value(m, s).to_vec()))
                .collect(),
            Store::Lpm { trie, .. } => trie
                .entries()
                .into_iter()
                .map(|(k, s)| (k, self.value(m, s).to_vec()))
                .collect(),
            Store::RingBuf { .. } => Vec::new(),
            Store::ProgArray(slots) => slots
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.map(|p| {
                        (
                            (i as u32).to_ne_bytes().to_vec(),
                            (p as u32).to_ne_bytes().to_vec(),
                        )
                    })
                })
                .collect(),
        };
        out.sort();
        out
    }

    /// `bpf_ringbuf_output`: appends a record unless the ring would overflow (-EAGAIN).
    /// The harness drains the ring after every run, so only this run's records count.
    pub(crate) fn ringbuf_output(
        &mut self,
        m: usize,
        data: &[u8],
        flags: u64,
        events: &mut Vec<Vec<u8>>,
    ) -> Result<(), Errno> {
        if flags & !RINGBUF_OUTPUT_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        let size = self.maps[m].def.max_entries as usize;
        let Store::RingBuf { used } = &mut self.maps[m].store else {
            return Err(Errno::EINVAL);
        };
        let len = round8(data.len() + BPF_RINGBUF_HDR_SZ);
        // ringbuf.c: the producer may run at most (size - 1) bytes ahead of the consumer.
        if *used + len > size - 1 {
            return Err(Errno::EAGAIN);
        }
        *used += len;
        self.dirty = true;
        events.push(data.to_vec());
        Ok(())
    }

    pub(crate) fn prog_array_get(&self, m: usize, index: u32) -> Option<usize> {
        match &self.maps[m].store {
            Store::ProgArray(slots) => slots.get(index as usize).copied().flatten(),
            _ => None,
        }
    }

    pub(crate) fn prog_array_set(
        &mut self,
        m: usize,
        index: u32,
        program: Option<usize>,
    ) -> Result<(), Errno> {
        match &mut self.maps[m].store {
            Store::ProgArray(slots) => {
                let slot = slots.get_mut(index as usize).ok_or(Errno::E2BIG)?;
                *slot = program;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    pub(crate) fn is_prog_array(&self, m: usize) -> bool {
        matches!(self.maps[m].store, Store::ProgArray(_))
    }

    /// Ends a run: slots deleted during it become reusable, the ring buffer is drained.
    pub(crate) fn end_run(&mut self) {
        self.in_run = false;
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        for map in &mut self.maps {
            match &mut map.store {
                Store::Hash { slots, .. } | Store::Lpm { slots, .. }
                    if !slots.pending_free.is_empty() =>
                {
                    // Deterministic reuse order: the lowest freed slot goes first.
                    let pending = std::mem::take(&mut slots.pending_free);
                    slots.free.extend(pending.into_iter().map(Reverse));
                }
                Store::RingBuf { used } => *used = 0,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, t: MapType, k: u32, v: u32, n: u32, flags: u32) -> MapDef {
        MapDef {
            name: name.into(),
            map_type: t,
            key_size: k,
            value_size: v,
            max_entries: n,
            map_flags: flags,
            initial_programs: Vec::new(),
        }
    }

    fn one(d: MapDef) -> Maps {
        Maps::new(&[d], "test").expect("create")
    }

    #[test]
    fn hash_flags_and_capacity() {
        let mut m = one(def("h", MapType::Hash, 4, 8, 2, 0));
        let k = |i: u32| i.to_ne_bytes();
        let v = |i: u64| i.to_ne_bytes();
        assert_eq!(m.update(0, &k(1), &v(10), BPF_EXIST), Err(Errno::ENOENT));
        assert_eq!(m.update(0, &k(1), &v(10), BPF_NOEXIST), Ok(()));
        assert_eq!(m.update(0, &k(1), &v(11), BPF_NOEXIST), Err(Errno::EEXIST));
        assert_eq!(m.update(0, &k(1), &v(12), BPF_EXIST), Ok(()));
        assert_eq!(m.update(0, &k(2), &v(20), BPF_ANY), Ok(()));
        assert_eq!(m.update(0, &k(3), &v(30), BPF_ANY), Err(Errno::E2BIG));
        // Replacing an existing key still works when full.
        assert_eq!(m.update(0, &k(2), &v(21), BPF_ANY), Ok(()));
        assert_eq!(m.update(0, &k(2), &v(21), 4), Err(Errno::EINVAL));
        assert_eq!(m.lookup(0, &k(1)), Some(v(12).to_vec()));
        assert_eq!(m.delete(0, &k(3)), Err(Errno::ENOENT));
        assert_eq!(m.delete(0, &k(1)), Ok(()));
        // The freed slot is only reusable once the run ends.
        assert_eq!(m.update(0, &k(3), &v(30), BPF_ANY), Err(Errno::E2BIG));
        m.end_run();
        assert_eq!(m.update(0, &k(3), &v(30), BPF_ANY), Ok(()));
        assert_eq!(
            m.dump(0),
            vec![
                (k(2).to_vec(), v(21).to_vec()),
                (k(3).to_vec(), v(30).to_vec())
            ]
        );
    }

    #[test]
    fn array_semantics() {
        let mut m = one(def("a", MapType::PerCpuArray, 4, 4, 3, 0));
        let k = |i: u32| i.to_ne_bytes();
        assert_eq!(m.lookup(0, &k(2)), Some(vec![0; 4]));
        assert_eq!(m.lookup(0, &k(3)), None);
        assert_eq!(m.update(0, &k(3), &[1; 4], BPF_ANY), Err(Errno::E2BIG));
        assert_eq!(m.update(0, &k(0), &[1; 4], BPF_NOEXIST), Err(Errno::EEXIST));
        assert_eq!(m.update(0, &k(0), &[1; 4], BPF_EXIST), Ok(()));
        assert_eq!(m.delete(0, &k(0)), Err(Errno::EINVAL));
        assert_eq!(m.dump(0).len(), 3);
        assert_eq!(m.dump(0)[0].1, vec![1; 4]);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut m = one(def("l", MapType::LruHash, 4, 8, 2, 0));
        let k = |i: u32| i.to_ne_bytes();
        m.update(0, &k(1), &[1; 8], BPF_ANY).expect("1");
        m.update(0, &k(2), &[2; 8], BPF_ANY).expect("2");
        // A program lookup refreshes key 1, so key 2 is the victim.
        assert_ne!(m.lookup_ptr(0, &k(1)), 0);
        m.update(0, &k(3), &[3; 8], BPF_ANY).expect("3");
        assert_eq!(m.lookup(0, &k(2)), None);
        assert!(m.lookup(0, &k(1)).is_some());
        assert!(m.lookup(0, &k(3)).is_some());
    }

    #[test]
    fn lpm_rules() {
        assert!(matches!(
            Maps::new(&[def("t", MapType::LpmTrie, 8, 4, 2, 0)], "test"),
            Err(DatapathError::Map {
                errno: Errno::EINVAL,
                ..
            })
        ));
        let mut m = one(def("t", MapType::LpmTrie, 8, 4, 2, BPF_F_NO_PREALLOC));
        let key = |p: u32, d: [u8; 4]| {
            let mut k = p.to_ne_bytes().to_vec();
            k.extend_from_slice(&d);
            k
        };
        assert_eq!(
            m.update(0, &key(33, [0; 4]), &[0; 4], BPF_ANY),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            m.update(0, &key(8, [10, 0, 0, 0]), &[1; 4], BPF_EXIST),
            Err(Errno::ENOENT)
        );
        m.update(0, &key(8, [10, 0, 0, 0]), &[1; 4], BPF_ANY)
            .expect("/8");
        m.update(0, &key(16, [10, 1, 0, 0]), &[2; 4], BPF_ANY)
            .expect("/16");
        assert_eq!(
            m.update(0, &key(8, [10, 9, 9, 9]), &[3; 4], BPF_NOEXIST),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            m.update(0, &key(24, [1, 1, 1, 0]), &[4; 4], BPF_ANY),
            Err(Errno::ENOSPC)
        );
        assert_eq!(m.lookup(0, &key(32, [10, 1, 7, 7])), Some(vec![2; 4]));
        assert_eq!(m.lookup(0, &key(32, [10, 2, 7, 7])), Some(vec![1; 4]));
        assert_eq!(m.lookup(0, &key(32, [11, 1, 7, 7])), None);
        assert_eq!(m.delete(0, &key(33, [0; 4])), Err(Errno::EINVAL));
        assert_eq!(m.delete(0, &key(24, [10, 1, 0, 0])), Err(Errno::ENOENT));
        assert_eq!(m.delete(0, &key(16, [10, 1, 0, 0])), Ok(()));
        assert_eq!(m.dump(0), vec![(key(8, [10, 0, 0, 0]), vec![1; 4])]);
    }

    #[test]
    fn ringbuf_capacity_and_flags() {
        let mut m = one(def("r", MapType::RingBuf, 0, 0, 4096, 0));
        let mut ev = Vec::new();
        assert_eq!(m.ringbuf_output(0, &[1; 8], 4, &mut ev), Err(Errno::EINVAL));
        // 255 records of 16 bytes fill 4080 bytes; the 256th would reach 4096 > 4095.
        for _ in 0..255 {
            assert_eq!(m.ringbuf_output(0, &[1; 8], 0, &mut ev), Ok(()));
        }
        assert_eq!(m.ringbuf_output(0, &[1; 8], 0, &mut ev), Err(Errno::EAGAIN));
        assert_eq!(ev.len(), 255);
        m.end_run();
        assert_eq!(m.ringbuf_output(0, &[1; 3], 0, &mut ev), Ok(()));
    }

    #[test]
    fn values_are_aligned_and_padding_zeroed() {
        let mut m = Maps::new(
            &[
                def("a", MapType::Array, 4, 3, 3, 0),
                def("h", MapType::Hash, 2, 12, 4, 0),
            ],
            "test",
        )
        .expect("create");
        m.update(1, &[1, 2], &[7; 12], BPF_ANY).expect("update");
        let p = m.lookup_ptr(1, &[1, 2]);
        assert_eq!(p % 8, 0);
        assert_eq!(m.lookup_ptr(0, &[1, 0, 0, 0]) % 8, 0);
        assert!(m.arena_range().contains(&p));
    }

    /// Issue 14: maps are laid out on demand. A 16M-entry map costs its first chunk, and
    /// filling it keeps every value where the key says, through chunk growth.
    #[test]
    fn values_are_laid_out_on_demand() {
        let mut m = Maps::new(
            &[
                def("big", MapType::Hash, 4, 8, 1 << 24, 0),
                def("lpm", MapType::LpmTrie, 8, 8, 1 << 24, BPF_F_NO_PREALLOC),
            ],
            "test",
        )
        .expect("create");
        assert!(
            m.arena.capacity() * 8 < 1 << 20,
            "{}",
            m.arena.capacity() * 8
        );
        for i in 0..20_000u32 {
            m.update(0, &i.to_ne_bytes(), &u64::from(i).to_ne_bytes(), BPF_ANY)
                .expect("update");
        }
        for i in (0..20_000u32).step_by(997) {
            assert_eq!(
                m.lookup(0, &i.to_ne_bytes()),
                Some(u64::from(i).to_ne_bytes().to_vec())
            );
        }
        assert!(m.take_moved());
        // A run may not grow the arena: past the headroom, inserts fail with -ENOMEM and
        // the overflow is recorded.
        m.begin_run().expect("headroom");
        let mut n = 0u32;
        let err = loop {
            match m.update(0, &(1_000_000 + n).to_ne_bytes(), &[0; 8], BPF_ANY) {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, Errno::ENOMEM);
        assert!(n >= RUN_HEADROOM, "{n}");
        m.end_run();
        assert_eq!(m.take_run_overflow().as_deref(), Some("big"));
        // Outside a run the same insert lays out more room.
        m.update(0, &(1_000_000 + n).to_ne_bytes(), &[1; 8], BPF_ANY)
            .expect("update after the run");
        let key = [32u8, 0, 0, 0, 10, 0, 0, 1];
        m.update(1, &key, &[9; 8], BPF_ANY).expect("lpm update");
        assert_eq!(m.lookup(1, &key), Some(vec![9; 8]));
    }
}
