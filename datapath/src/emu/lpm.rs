//! `BPF_MAP_TYPE_LPM_TRIE` keys and lookups with the kernel's rules.
//!
//! A key is `struct { u32 prefixlen (host order); u8 data[N] }`; bits of `data` are
//! compared most-significant first (big-endian bit order). The trie is the kernel's own
//! (`kernel/bpf/lpm_trie.c`): a path-compressed binary trie whose nodes hold a prefix,
//! with intermediate nodes where two prefixes diverge, and the same insert, delete and
//! lookup walks, so a lookup visits a handful of nodes rather than one per bit. The trie
//! maps keys to value slots; storing the values is the caller's business.

use super::maps::FastMap;

const NONE: u32 = u32::MAX;
/// Record words before a node's key data: [prefixlen | slot << 32, child0 | child1 << 32].
const HDR: usize = 2;
/// Key data words handled without a heap allocation (ipcache keys have 3, policy keys 2).
const INLINE_WORDS: usize = 4;
/// Above this many distinct prefix lengths a lookup walks the trie instead of probing the
/// hash index once per length.
const MAX_INDEXED_LENGTHS: usize = 32;

/// A stored prefix for the hash index: its length and its data words masked to that length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    len: u32,
    words: [u64; INLINE_WORDS],
}

impl std::hash::Hash for Prefix {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Word writes: WordHasher mixes each in one step.
        state.write_u32(self.len);
        for w in self.words {
            state.write_u64(w);
        }
    }
}

impl Prefix {
    /// `key` (at most INLINE_WORDS words) with every bit past `len` cleared.
    fn masked(key: &[u64], len: u32) -> Prefix {
        let mut words = [0u64; INLINE_WORDS];
        for (i, (out, w)) in words.iter_mut().zip(key).enumerate() {
            let start = i as u32 * 64;
            if len >= start + 64 {
                *out = *w;
            } else if len > start {
                *out = w & !(u64::MAX >> (len - start));
            }
        }
        Prefix { len, words }
    }
}

/// The lookup index: every stored prefix in one hash map, and the distinct prefix lengths
/// in use, longest first. A longest-prefix match is then one probe per length (a handful:
/// /32 pods and a few CIDRs in the ipcache, full and wildcard policy keys), each one cache
/// miss, instead of a dependent load per trie level (15-20 levels at 10,000 entries). The
/// trie stays the source of truth for updates, deletes and dumps.
#[derive(Debug, Clone, Default)]
struct Index {
    slots: FastMap<Prefix, u32>,
    /// Entries per prefix length.
    count: Vec<u32>,
    lengths_desc: Vec<u32>,
}

impl Index {
    fn add(&mut self, p: Prefix, slot: u32) {
        if self.slots.insert(p, slot).is_none() {
            let c = &mut self.count[p.len as usize];
            *c += 1;
            if *c == 1 {
                self.recount();
            }
        }
    }

    fn remove(&mut self, p: &Prefix) {
        if self.slots.remove(p).is_some() {
            let c = &mut self.count[p.len as usize];
            *c -= 1;
            if *c == 0 {
                self.recount();
            }
        }
    }

    fn recount(&mut self) {
        self.lengths_desc = (0..self.count.len() as u32)
            .rev()
            .filter(|&l| self.count[l as usize] > 0)
            .collect();
    }

    /// The longest stored prefix of at most `p` bits matching `key`, if the number of
    /// lengths in use keeps probing cheaper than the walk; `Err` means walk the trie.
    fn longest_match(&self, p: u32, key: &[u64]) -> Result<Option<u32>, ()> {
        if self.lengths_desc.len() > MAX_INDEXED_LENGTHS {
            return Err(());
        }
        for &len in self.lengths_desc.iter().filter(|&&l| l <= p) {
            if let Some(&s) = self.slots.get(&Prefix::masked(key, len)) {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }
}

/// Where a node hangs: the root pointer or a child pointer of a node.
#[derive(Debug, Clone, Copy)]
enum Link {
    Root,
    Child(u32, usize),
}

/// The trie. Nodes live in one flat `Vec<u64>`, one record of `HDR + words` words each:
/// the header (prefix length, value slot or NONE for an intermediate node, two children)
/// followed by the key data as big-endian u64 words, zero-padded. A lookup then touches one
/// or two cache lines per node and compares 64 bits at a time; with separately allocated
/// key bytes per node (the first version), two cache misses per node and a `memcpy` per
/// 8-byte chunk made this walk the largest cost of a JIT-compiled run.
#[derive(Debug, Clone)]
pub(crate) struct LpmTrie {
    data_len: usize,
    /// Data words per key: `data_len.div_ceil(8)`.
    words: usize,
    recs: Vec<u64>,
    free_nodes: Vec<u32>,
    root: u32,
    len: usize,
    /// The hash index for lookups, for keys of at most INLINE_WORDS words.
    index: Option<Index>,
}

/// Key data as big-endian u64 words (bit 0 of the key is bit 63 of word 0), zero-padded.
/// Inline for short keys, so a lookup allocates nothing.
enum KeyWords {
    Inline([u64; INLINE_WORDS], usize),
    Heap(Vec<u64>),
}

impl KeyWords {
    fn new(data: &[u8], words: usize) -> KeyWords {
        let fill = |out: &mut [u64]| {
            // Whole words straight from the bytes; only a short tail goes through a buffer
            // (a `copy_from_slice` of a variable length is a `memcpy` call per word).
            let mut chunks = data.chunks_exact(8);
            for (w, chunk) in out.iter_mut().zip(&mut chunks) {
                *w = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut b = [0u8; 8];
                b[..rest.len()].copy_from_slice(rest);
                out[data.len() / 8] = u64::from_be_bytes(b);
            }
        };
        if words <= INLINE_WORDS {
            let mut a = [0u64; INLINE_WORDS];
            fill(&mut a[..words]);
            KeyWords::Inline(a, words)
        } else {
            let mut v = vec![0u64; words];
            fill(&mut v);
            KeyWords::Heap(v)
        }
    }

    fn get(&self) -> &[u64] {
        match self {
            KeyWords::Inline(a, n) => &a[..*n],
            KeyWords::Heap(v) => v,
        }
    }
}

/// Bit `i` of the key data, most significant bit of byte 0 first (`extract_bit`).
fn bit(words: &[u64], i: u32) -> usize {
    ((words[(i / 64) as usize] >> (63 - i % 64)) & 1) as usize
}

impl LpmTrie {
    /// `key_size` includes the 4-byte prefix length; the caller checked it is 5..=260.
    pub(crate) fn new(key_size: usize) -> LpmTrie {
        let data_len = key_size - 4;
        LpmTrie {
            data_len,
            words: data_len.div_ceil(8),
            recs: Vec::new(),
            free_nodes: Vec::new(),
            root: NONE,
            len: 0,
            index: (data_len.div_ceil(8) <= INLINE_WORDS).then(|| Index {
                count: vec![0; data_len * 8 + 1],
                ..Index::default()
            }),
        }
    }

    pub(crate) fn max_prefixlen(&self) -> u32 {
        (self.data_len * 8) as u32
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Splits a key into (prefixlen, data words). The caller checked the key length.
    fn split(&self, key: &[u8]) -> (u32, KeyWords) {
        let (p, data) = key.split_at(4);
        (
            u32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
            KeyWords::new(&data[..self.data_len], self.words),
        )
    }

    fn rec(&self, n: u32) -> usize {
        n as usize * (HDR + self.words)
    }

    fn prefixlen(&self, n: u32) -> u32 {
        self.recs[self.rec(n)] as u32
    }

    /// The value slot, `None` for an intermediate node (`LPM_TREE_NODE_FLAG_IM`).
    fn slot(&self, n: u32) -> Option<u32> {
        let s = (self.recs[self.rec(n)] >> 32) as u32;
        (s != NONE).then_some(s)
    }

    fn set_slot(&mut self, n: u32, slot: Option<u32>) {
        let r = self.rec(n);
        let s = slot.unwrap_or(NONE);
        self.recs[r] = (self.recs[r] & 0xffff_ffff) | (u64::from(s) << 32);
    }

    fn child(&self, n: u32, b: usize) -> u32 {
        (self.recs[self.rec(n) + 1] >> (32 * b)) as u32
    }

    fn children(&self, n: u32) -> [u32; 2] {
        [self.child(n, 0), self.child(n, 1)]
    }

    fn set_child(&mut self, n: u32, b: usize, to: u32) {
        let r = self.rec(n) + 1;
        let shift = 32 * b;
        self.recs[r] = (self.recs[r] & !(0xffff_ffffu64 << shift)) | (u64::from(to) << shift);
    }

    fn data(&self, n: u32) -> &[u64] {
        let r = self.rec(n) + HDR;
        &self.recs[r..r + self.words]
    }

    /// `longest_prefix_match`: leading bits `node` and the key share, at most
    /// `min(node.prefixlen, prefixlen)`.
    fn match_len(&self, n: u32, prefixlen: u32, key: &[u64]) -> u32 {
        let limit = self.prefixlen(n).min(prefixlen);
        let mut bits = 0u32;
        for (a, b) in self.data(n).iter().zip(key) {
            if bits >= limit {
                break;
            }
            let diff = a ^ b;
            if diff != 0 {
                return (bits + diff.leading_zeros()).min(limit);
            }
            bits += 64;
        }
        limit
    }

    fn get(&self, link: Link) -> u32 {
        match link {
            Link::Root => self.root,
            Link::Child(n, b) => self.child(n, b),
        }
    }

    fn set(&mut self, link: Link, to: u32) {
        match link {
            Link::Root => self.root = to,
            Link::Child(n, b) => self.set_child(n, b, to),
        }
    }

    fn alloc(&mut self, prefixlen: u32, data: &[u64], slot: Option<u32>) -> u32 {
        let n = match self.free_nodes.pop() {
            Some(i) => i,
            None => {
                let n = (self.recs.len() / (HDR + self.words)) as u32;
                self.recs.resize(self.recs.len() + HDR + self.words, 0);
                n
            }
        };
        let r = self.rec(n);
        self.recs[r] = u64::from(prefixlen);
        self.recs[r + 1] = u64::from(NONE) | (u64::from(NONE) << 32);
        self.recs[r + HDR..r + HDR + self.words].copy_from_slice(data);
        self.set_slot(n, slot);
        n
    }

    /// The walk shared by update and delete: stops at the node whose prefix the key
    /// diverges from or equals. Returns (link to it, its parent's link, parent, node,
    /// matchlen); node is NONE when the walk fell off the trie.
    fn walk(&self, prefixlen: u32, key: &[u64]) -> (Link, Link, u32, u32, u32) {
        let mut link = Link::Root;
        let mut parent_link = Link::Root;
        let mut parent = NONE;
        let mut matchlen = 0;
        let mut n = self.root;
        while n != NONE {
            matchlen = self.match_len(n, prefixlen, key);
            let np = self.prefixlen(n);
            if np != matchlen || np == prefixlen {
                break;
            }
            parent_link = link;
            parent = n;
            let b = bit(key, np);
            link = Link::Child(n, b);
            n = self.child(n, b);
        }
        (link, parent_link, parent, n, matchlen)
    }

    /// The slot stored for exactly this prefix (same length, same leading bits).
    pub(crate) fn get_exact(&self, key: &[u8]) -> Option<u32> {
        let (p, kw) = self.split(key);
        if p > self.max_prefixlen() {
            return None;
        }
        let (_, _, _, n, matchlen) = self.walk(p, kw.get());
        if n == NONE {
            return None;
        }
        if self.prefixlen(n) == p && matchlen == p {
            self.slot(n)
        } else {
            None
        }
    }

    /// Longest-prefix match (`trie_lookup_elem`): the longest stored prefix, no longer
    /// than the key's own prefix length, whose bits match the key's data.
    pub(crate) fn longest_match(&self, key: &[u8]) -> Option<u32> {
        let (p, kw) = self.split(key);
        if let Some(index) = &self.index {
            // The walk stops at max_prefixlen however long the key's prefix claims to be.
            if let Ok(found) = index.longest_match(p.min(self.max_prefixlen()), kw.get()) {
                return found;
            }
        }
        self.walk_longest_match(p, kw.get())
    }

    /// The longest-prefix match by walking the trie, as the kernel does.
    fn walk_longest_match(&self, p: u32, kw: &[u64]) -> Option<u32> {
        let max = self.max_prefixlen();
        let mut found = None;
        let mut n = self.root;
        while n != NONE {
            let matchlen = self.match_len(n, p, kw);
            let slot = self.slot(n);
            if matchlen == max {
                return slot.or(found);
            }
            let np = self.prefixlen(n);
            if matchlen < np {
                break;
            }
            if slot.is_some() {
                found = slot;
            }
            n = self.child(n, bit(kw, np));
        }
        found
    }

    /// Stores `slot` under the key's prefix, replacing (and returning) an existing slot
    /// (`trie_update_elem`). The caller checked the prefix length and the capacity.
    pub(crate) fn insert(&mut self, key: &[u8], slot: u32) -> Option<u32> {
        let (p, kw) = self.split(key);
        if let Some(index) = &mut self.index {
            index.add(Prefix::masked(kw.get(), p), slot);
        }
        self.trie_insert(p, kw.get(), slot)
    }

    fn trie_insert(&mut self, p: u32, data: &[u64], slot: u32) -> Option<u32> {
        let (link, _, _, n, matchlen) = self.walk(p, data);
        if n == NONE {
            let new = self.alloc(p, data, Some(slot));
            self.set(link, new);
            self.len += 1;
            return None;
        }
        if self.prefixlen(n) == matchlen {
            // Same prefix: the kernel swaps in a new node with the new key's data.
            let r = self.rec(n) + HDR;
            self.recs[r..r + self.words].copy_from_slice(data);
            let old = self.slot(n);
            self.set_slot(n, Some(slot));
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        self.len += 1;
        let new = self.alloc(p, data, Some(slot));
        if matchlen == p {
            // The new prefix is an ancestor of `n`.
            let b = bit(self.data(n), matchlen);
            self.set_child(new, b, n);
            self.set(link, new);
            return None;
        }
        let n_data: KeyWords = KeyWords::Heap(self.data(n).to_vec());
        let im = self.alloc(matchlen, n_data.get(), None);
        let (c0, c1) = if bit(data, matchlen) == 1 {
            (n, new)
        } else {
            (new, n)
        };
        self.set_child(im, 0, c0);
        self.set_child(im, 1, c1);
        self.set(link, im);
        None
    }

    /// Removes exactly this prefix and returns its slot (`trie_delete_elem`).
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<u32> {
        let (p, kw) = self.split(key);
        if p > self.max_prefixlen() {
            return None;
        }
        let (link, parent_link, parent, n, matchlen) = self.walk(p, kw.get());
        if n == NONE {
            return None;
        }
        if self.prefixlen(n) != p || matchlen != p {
            return None;
        }
        let slot = self.slot(n)?;
        let child = self.children(n);
        self.len -= 1;
        if let Some(index) = &mut self.index {
            index.remove(&Prefix::masked(kw.get(), p));
        }
        if child[0] != NONE && child[1] != NONE {
            self.set_slot(n, None);
            return Some(slot);
        }
        if parent != NONE && self.slot(parent).is_none() && child == [NONE, NONE] {
            // A childless node under an intermediate one: both go, the sibling moves up.
            let pc = self.children(parent);
            let sibling = if pc[0] == n { pc[1] } else { pc[0] };
            self.set(parent_link, sibling);
            self.free_nodes.extend([parent, n]);
            return Some(slot);
        }
        let replacement = if child[0] != NONE { child[0] } else { child[1] };
        debug_assert_eq!(self.get(link), n);
        self.set(link, replacement);
        self.free_nodes.push(n);
        Some(slot)
    }

    /// Every stored (key, slot); keys rebuilt as prefixlen (host order) + data.
    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, u32)> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = vec![self.root];
        while let Some(n) = stack.pop() {
            if n == NONE {
                continue;
            }
            if let Some(s) = self.slot(n) {
                let mut k = self.prefixlen(n).to_ne_bytes().to_vec();
                for w in self.data(n) {
                    k.extend_from_slice(&w.to_be_bytes());
                }
                k.truncate(4 + self.data_len);
                out.push((k, s));
            }
            stack.extend(self.children(n));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(p: u32, data: &[u8]) -> Vec<u8> {
        let mut k = p.to_ne_bytes().to_vec();
        k.extend_from_slice(data);
        k
    }

    /// Brute force: compare the first `len` bits.
    fn prefix_eq(a: &[u8], b: &[u8], len: u32) -> bool {
        let byte_bit = |d: &[u8], i: u32| (d[i as usize / 8] >> (7 - i % 8)) & 1;
        (0..len).all(|i| byte_bit(a, i) == byte_bit(b, i))
    }

    fn reference_lookup(entries: &[(u32, Vec<u8>, u32)], k: &[u8], max: u32) -> Option<u32> {
        let (p, data) = (u32::from_ne_bytes([k[0], k[1], k[2], k[3]]), &k[4..]);
        let p = p.min(max);
        entries
            .iter()
            .filter(|(ep, ed, _)| *ep <= p && prefix_eq(ed, data, *ep))
            .max_by_key(|(ep, _, _)| *ep)
            .map(|(_, _, s)| *s)
    }

    #[test]
    fn longest_prefix_wins_and_bits_are_big_endian() {
        let mut t = LpmTrie::new(8);
        t.insert(&key(8, &[10, 0, 0, 0]), 1);
        t.insert(&key(24, &[10, 1, 2, 0]), 2);
        t.insert(&key(0, &[0, 0, 0, 0]), 3);
        assert_eq!(t.longest_match(&key(32, &[10, 1, 2, 3])), Some(2));
        assert_eq!(t.longest_match(&key(32, &[10, 1, 3, 3])), Some(1));
        assert_eq!(t.longest_match(&key(32, &[11, 1, 2, 3])), Some(3));
        // A shorter lookup prefix cannot match a longer stored one.
        assert_eq!(t.longest_match(&key(16, &[10, 1, 2, 3])), Some(1));
        // 0x80 is bit 0: /1 of 128.0.0.0 does not cover 64.0.0.0.
        t.insert(&key(1, &[0x80, 0, 0, 0]), 4);
        assert_eq!(t.longest_match(&key(32, &[0x40, 0, 0, 0])), Some(3));
        assert_eq!(t.longest_match(&key(32, &[0xc0, 0, 0, 0])), Some(4));
        assert_eq!(t.get_exact(&key(24, &[10, 1, 2, 99])), Some(2));
        assert_eq!(t.remove(&key(24, &[10, 1, 2, 7])), Some(2));
        assert_eq!(t.longest_match(&key(32, &[10, 1, 2, 3])), Some(1));
        assert_eq!(t.len(), 3);
    }

    type Op = (u32, [u8; 2], bool);

    /// Runs `ops` on a trie with `data_len` data bytes and on the brute-force reference.
    /// The two random bytes go last, after zeros, so long keys share long prefixes and
    /// the 64-bit chunk boundary of `match_len` is crossed.
    fn check(
        data_len: usize,
        ops: Vec<Op>,
        probes: Vec<(u32, [u8; 2])>,
    ) -> Result<(), TestCaseError> {
        let mk = |r: [u8; 2]| {
            let mut d = vec![0u8; data_len];
            d[data_len - 2..].copy_from_slice(&r);
            d
        };
        let max = (data_len * 8) as u32;
        let mut t = LpmTrie::new(data_len + 4);
        let mut reference: Vec<(u32, Vec<u8>, u32)> = Vec::new();
        for (slot, (p, r, insert)) in ops.into_iter().enumerate() {
            let p = p.min(max);
            let data = mk(r);
            let k = key(p, &data);
            let existing = reference
                .iter()
                .position(|(ep, ed, _)| *ep == p && prefix_eq(ed, &data, p));
            let old = if insert {
                t.insert(&k, slot as u32)
            } else {
                t.remove(&k)
            };
            prop_assert_eq!(old, existing.map(|i| reference[i].2));
            if let Some(i) = existing {
                reference.remove(i);
            }
            if insert {
                reference.push((p, data.clone(), slot as u32));
            }
            prop_assert_eq!(t.len(), reference.len());
            let probe = key(p, &mk([r[1], r[0]]));
            let want = reference
                .iter()
                .find(|(ep, ed, _)| *ep == p && prefix_eq(ed, &probe[4..], p))
                .map(|e| e.2);
            prop_assert_eq!(t.get_exact(&probe), want);
        }
        for (p, r) in probes {
            // Probe prefix lengths beyond max too: the kernel caps them at max.
            let k = key(p, &mk(r));
            let want = reference_lookup(&reference, &k, max);
            prop_assert_eq!(t.longest_match(&k), want);
            // The trie walk too, which the index bypasses for these key sizes.
            let (p, kw) = t.split(&k);
            prop_assert_eq!(t.walk_longest_match(p, kw.get()), want);
        }
        let mut got: Vec<(Vec<u8>, u32)> = t.entries();
        let mut want: Vec<(Vec<u8>, u32)> =
            reference.iter().map(|(p, d, s)| (key(*p, d), *s)).collect();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
        Ok(())
    }

    proptest! {
        #[test]
        fn matches_brute_force_short_keys(
            ops in proptest::collection::vec((0u32..=20, any::<[u8; 2]>(), any::<bool>()), 1..80),
            probes in proptest::collection::vec((0u32..=20, any::<[u8; 2]>()), 1..40),
        ) {
            check(2, ops, probes)?;
        }

        #[test]
        fn matches_brute_force_long_keys(
            ops in proptest::collection::vec((48u32..=100, any::<[u8; 2]>(), any::<bool>()), 1..80),
            probes in proptest::collection::vec((48u32..=100, any::<[u8; 2]>()), 1..40),
        ) {
            check(12, ops, probes)?;
        }

        /// Keys longer than the inline word buffer take the heap path.
        #[test]
        fn matches_brute_force_heap_keys(
            ops in proptest::collection::vec((300u32..=330, any::<[u8; 2]>(), any::<bool>()), 1..60),
            probes in proptest::collection::vec((300u32..=330, any::<[u8; 2]>()), 1..30),
        ) {
            check(42, ops, probes)?;
        }
    }
}
