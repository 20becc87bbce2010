//! `BPF_MAP_TYPE_LPM_TRIE` keys and lookups with the kernel's rules.
//!
//! A key is `struct { u32 prefixlen (host order); u8 data[N] }`; bits of `data` are
//! compared most-significant first (big-endian bit order). The trie is the kernel's own
//! (`kernel/bpf/lpm_trie.c`): a path-compressed binary trie whose nodes hold a prefix,
//! with intermediate nodes where two prefixes diverge, and the same insert, delete and
//! lookup walks, so a lookup visits a handful of nodes rather than one per bit. The trie
//! maps keys to value slots; storing the values is the caller's business.

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    prefixlen: u32,
    /// Full key data as given (bits past `prefixlen` are kept, as the kernel keeps them).
    data: Box<[u8]>,
    child: [u32; 2],
    /// The value slot; `None` for an intermediate node (`LPM_TREE_NODE_FLAG_IM`).
    slot: Option<u32>,
}

/// Where a node hangs: the root pointer or a child pointer of a node.
#[derive(Debug, Clone, Copy)]
enum Link {
    Root,
    Child(u32, usize),
}

#[derive(Debug, Clone)]
pub(crate) struct LpmTrie {
    data_len: usize,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    root: u32,
    len: usize,
}

/// Bit `i` of `data`, most significant bit of byte 0 first (`extract_bit`).
fn bit(data: &[u8], i: u32) -> usize {
    let i = i as usize;
    ((data[i / 8] >> (7 - i % 8)) & 1) as usize
}

impl LpmTrie {
    /// `key_size` includes the 4-byte prefix length; the caller checked it is 5..=260.
    pub(crate) fn new(key_size: usize) -> LpmTrie {
        LpmTrie {
            data_len: key_size - 4,
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            root: NONE,
            len: 0,
        }
    }

    pub(crate) fn max_prefixlen(&self) -> u32 {
        (self.data_len * 8) as u32
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Splits a key into (prefixlen, data). The caller checked the key length.
    fn split(key: &[u8]) -> (u32, &[u8]) {
        let (p, data) = key.split_at(4);
        (u32::from_ne_bytes([p[0], p[1], p[2], p[3]]), data)
    }

    /// `longest_prefix_match`: leading bits `node` and the key share, at most
    /// `min(node.prefixlen, prefixlen)`.
    fn match_len(&self, n: u32, prefixlen: u32, data: &[u8]) -> u32 {
        let node = &self.nodes[n as usize];
        let limit = node.prefixlen.min(prefixlen);
        let mut bits = 0u32;
        for (a, b) in node.data.chunks(8).zip(data.chunks(8)) {
            if bits >= limit {
                break;
            }
            let mut wa = [0u8; 8];
            let mut wb = [0u8; 8];
            wa[..a.len()].copy_from_slice(a);
            wb[..b.len()].copy_from_slice(b);
            let diff = u64::from_be_bytes(wa) ^ u64::from_be_bytes(wb);
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
            Link::Child(n, b) => self.nodes[n as usize].child[b],
        }
    }

    fn set(&mut self, link: Link, to: u32) {
        match link {
            Link::Root => self.root = to,
            Link::Child(n, b) => self.nodes[n as usize].child[b] = to,
        }
    }

    fn alloc(&mut self, prefixlen: u32, data: &[u8], slot: Option<u32>) -> u32 {
        let node = Node {
            prefixlen,
            data: data.into(),
            child: [NONE, NONE],
            slot,
        };
        match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// The walk shared by update and delete: stops at the node whose prefix the key
    /// diverges from or equals. Returns (link to it, its parent's link, parent, node,
    /// matchlen); node is NONE when the walk fell off the trie.
    fn walk(&self, prefixlen: u32, data: &[u8]) -> (Link, Link, u32, u32, u32) {
        let mut link = Link::Root;
        let mut parent_link = Link::Root;
        let mut parent = NONE;
        let mut matchlen = 0;
        let mut n = self.root;
        while n != NONE {
            matchlen = self.match_len(n, prefixlen, data);
            let node = &self.nodes[n as usize];
            if node.prefixlen != matchlen || node.prefixlen == prefixlen {
                break;
            }
            parent_link = link;
            parent = n;
            let b = bit(data, node.prefixlen);
            link = Link::Child(n, b);
            n = node.child[b];
        }
        (link, parent_link, parent, n, matchlen)
    }

    /// The slot stored for exactly this prefix (same length, same leading bits).
    pub(crate) fn get_exact(&self, key: &[u8]) -> Option<u32> {
        let (p, data) = Self::split(key);
        if p > self.max_prefixlen() {
            return None;
        }
        let (_, _, _, n, matchlen) = self.walk(p, data);
        if n == NONE {
            return None;
        }
        let node = &self.nodes[n as usize];
        if node.prefixlen == p && matchlen == p {
            node.slot
        } else {
            None
        }
    }

    /// Longest-prefix match (`trie_lookup_elem`): the longest stored prefix, no longer
    /// than the key's own prefix length, whose bits match the key's data.
    pub(crate) fn longest_match(&self, key: &[u8]) -> Option<u32> {
        let (p, data) = Self::split(key);
        let max = self.max_prefixlen();
        let mut found = None;
        let mut n = self.root;
        while n != NONE {
            let matchlen = self.match_len(n, p, data);
            let node = &self.nodes[n as usize];
            if matchlen == max {
                return node.slot.or(found);
            }
            if matchlen < node.prefixlen {
                break;
            }
            if node.slot.is_some() {
                found = node.slot;
            }
            n = node.child[bit(data, node.prefixlen)];
        }
        found
    }

    /// Stores `slot` under the key's prefix, replacing (and returning) an existing slot
    /// (`trie_update_elem`). The caller checked the prefix length and the capacity.
    pub(crate) fn insert(&mut self, key: &[u8], slot: u32) -> Option<u32> {
        let (p, data) = Self::split(key);
        let (link, _, _, n, matchlen) = self.walk(p, data);
        if n == NONE {
            let new = self.alloc(p, data, Some(slot));
            self.set(link, new);
            self.len += 1;
            return None;
        }
        if self.nodes[n as usize].prefixlen == matchlen {
            // Same prefix: the kernel swaps in a new node with the new key's data.
            let node = &mut self.nodes[n as usize];
            node.data = data.into();
            let old = node.slot.replace(slot);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        self.len += 1;
        let new = self.alloc(p, data, Some(slot));
        if matchlen == p {
            // The new prefix is an ancestor of `n`.
            let b = bit(&self.nodes[n as usize].data, matchlen);
            self.nodes[new as usize].child[b] = n;
            self.set(link, new);
            return None;
        }
        let n_data = self.nodes[n as usize].data.clone();
        let im = self.alloc(matchlen, &n_data, None);
        self.nodes[im as usize].child = if bit(data, matchlen) == 1 {
            [n, new]
        } else {
            [new, n]
        };
        self.set(link, im);
        None
    }

    /// Removes exactly this prefix and returns its slot (`trie_delete_elem`).
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<u32> {
        let (p, data) = Self::split(key);
        if p > self.max_prefixlen() {
            return None;
        }
        let (link, parent_link, parent, n, matchlen) = self.walk(p, data);
        if n == NONE {
            return None;
        }
        let node = &self.nodes[n as usize];
        if node.prefixlen != p || matchlen != p {
            return None;
        }
        let slot = node.slot?;
        let child = node.child;
        self.len -= 1;
        if child[0] != NONE && child[1] != NONE {
            self.nodes[n as usize].slot = None;
            return Some(slot);
        }
        if parent != NONE && self.nodes[parent as usize].slot.is_none() && child == [NONE, NONE] {
            // A childless node under an intermediate one: both go, the sibling moves up.
            let pc = self.nodes[parent as usize].child;
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
            let node = &self.nodes[n as usize];
            if let Some(s) = node.slot {
                let mut k = node.prefixlen.to_ne_bytes().to_vec();
                k.extend_from_slice(&node.data);
                out.push((k, s));
            }
            stack.extend(node.child);
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
        (0..len).all(|i| bit(a, i) == bit(b, i))
    }

    fn reference_lookup(entries: &[(u32, Vec<u8>, u32)], k: &[u8], max: u32) -> Option<u32> {
        let (p, data) = LpmTrie::split(k);
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
            prop_assert_eq!(t.longest_match(&k), reference_lookup(&reference, &k, max));
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
    }
}
