//! `--shard I/N` on `verdict run`, `diff` and `fuzz`: which part of the work one machine does.
//!
//! Shards count from 1, as Playwright's and Jest's `--shard` do: `1/4` .. `4/4`. (A Kubernetes
//! Indexed Job's `JOB_COMPLETION_INDEX` counts from 0: pass `$((JOB_COMPLETION_INDEX + 1))/N`.)
//!
//! The partition is round-robin over a sorted list: item `k` (0-based) of the unsharded run
//! belongs to shard `k mod N + 1`. For `run` and `diff` the items are the scenario files in
//! the order [`crate::scenario_files`] lists them (sorted, directories walked in name order),
//! so every machine with the same checkout and arguments computes the same partition; for
//! `fuzz` they are the case indexes `0..cases`, and case `k` is generated from the run's seed
//! and `k` whichever shard runs it. Round-robin keeps the shards balanced when neighbouring
//! files cost alike (a directory of large worlds is spread over every shard) and lets
//! `verdict merge` put the results back in the unsharded order from the indexes alone.
//!
//! Each sharded result records the shard, the number of items of the whole run, and for
//! scenario files a fingerprint of the whole file list, so `verdict merge` can refuse shards
//! of different runs, overlapping shards and missing ones ([`crate::merge`]).

use std::fmt;
use std::path::PathBuf;

/// One shard of a run: `index` of `count`, counting from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// At most this many shards (a typo such as `1/40000000000` is an error, not a run that
/// spends its time skipping).
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    /// `I/N`, with the reason in words when it is not a shard.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let usage =
            "expected I/N: the shard's index, counting from 1, and the number of shards (e.g. 2/4)";
        let (i, n) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: {usage}"))?;
        let num = |t: &str, what: &str| -> Result<usize, String> {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?}: {what} {t:?} is not a whole number; {usage}"))
        };
        let (index, count) = (num(i, "the index")?, num(n, "the number of shards")?);
        if count == 0 {
            return Err(format!("{s:?}: the number of shards must be at least 1"));
        }
        if count > MAX_SHARDS {
            return Err(format!("{s:?}: at most {MAX_SHARDS} shards (got {count})"));
        }
        if index == 0 {
            return Err(format!(
                "{s:?}: shards count from 1 (1/{count} .. {count}/{count}); a Kubernetes \
                 Indexed Job's JOB_COMPLETION_INDEX counts from 0: pass \
                 $((JOB_COMPLETION_INDEX + 1))/{count}"
            ));
        }
        if index > count {
            return Err(format!(
                "{s:?}: there is no shard {index} of {count}: the index must be 1 to {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether item `k` (0-based, in the unsharded run's order) is this shard's.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index - 1
    }

    /// This shard's items of `items`, in order.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .enumerate()
            .filter(|(k, _)| self.owns(*k))
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// How many of `total` items this shard holds.
    pub fn len_of(&self, total: usize) -> usize {
        if total < self.index {
            0
        } else {
            (total - self.index) / self.count + 1
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The clap value parser of `--shard`.
pub fn parse_arg(s: &str) -> Result<Shard, String> {
    Shard::parse(s)
}

/// A fingerprint of the unsharded run's file list (FNV-1a, 64 bits, over the paths as given,
/// one per line): shards of one run carry the same one.
pub fn fingerprint(files: &[PathBuf]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        for b in f
            .display()
            .to_string()
            .bytes()
            .chain(std::iter::once(b'\n'))
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The JUnit properties a sharded report carries (`shard`, `shard.total`, and for scenario
/// files `shard.files`), read back by `verdict merge`.
pub fn junit_properties(shard: Shard, total: usize, files: Option<&str>) -> Vec<(String, String)> {
    let mut p = vec![
        ("shard".to_string(), shard.to_string()),
        ("shard.total".to_string(), total.to_string()),
    ];
    if let Some(f) = files {
        p.push(("shard.files".to_string(), f.to_string()));
    }
    p
}

/// Whether a JUnit property is one of [`junit_properties`] (or the empty-shard marker).
pub fn is_shard_property(name: &str) -> bool {
    name == "shard" || name.starts_with("shard.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::parse("1/1").unwrap().to_string(), "1/1");
        for (bad, why) in [
            ("0/4", "count from 1"),
            ("5/4", "no shard 5 of 4"),
            ("1/0", "at least 1"),
            ("2", "expected I/N"),
            ("a/4", "not a whole number"),
            ("-1/4", "not a whole number"),
            ("1/100001", "at most 100000"),
        ] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(Shard::parse("0/4")
            .unwrap_err()
            .contains("JOB_COMPLETION_INDEX + 1"));
    }

    /// Every item is in exactly one shard, and `len_of` counts what `select` picks.
    #[test]
    fn shards_partition() {
        for total in 0..12 {
            let items: Vec<usize> = (0..total).collect();
            for count in 1..7 {
                let mut seen = vec![0; total];
                for index in 1..=count {
                    let s = Shard { index, count };
                    let got = s.select(&items);
                    assert_eq!(got.len(), s.len_of(total), "{s} of {total}");
                    for k in got {
                        seen[k] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{count} shards of {total}");
            }
        }
    }

    #[test]
    fn fingerprint_depends_on_the_list() {
        let a = [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")];
        let b = [PathBuf::from("a.yamlb.yaml")];
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_eq!(fingerprint(&a).len(), 16);
    }
}
