//! `verdict merge`: the results of the shards of one run ([`crate::shard`]) combined into the
//! result the unsharded run would have written.
//!
//! Two formats are merged: the JSON of `verdict run --format json`, and the JUnit XML of
//! `--junit` on `run`, `diff` and `fuzz`. Every input must be a sharded result of the same run:
//! the same number of shards, the same number of items (scenario files or fuzz cases), the
//! same file list (by fingerprint), backends and, for fuzz, seed; every shard exactly once;
//! each holding the number of items its index says. Anything else is refused with the file
//! and the field that differ: overlapping shards, shards of different runs, a missing shard.
//!
//! Items go back in the unsharded order (item `k` is item `k / N` of shard `k mod N + 1`), the
//! totals are recomputed, and the shard fields are dropped, so the merged JSON is
//! byte-identical to the unsharded run's and the merged JUnit is too once the `time`
//! attributes (real time, measured per machine) are left aside. One thing a shard cannot see
//! is a scenario name that another shard's file also uses (the unsharded run reports the
//! second as a duplicate): merge refuses it, naming both files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::junit::{self, TestCase, TestSuite};
use crate::shard::{self, Shard};

/// The suite name of a sharded JUnit report whose shard holds no item (its properties say
/// which shard it is); merge drops it.
pub const EMPTY_SHARD_SUITE: &str = "(empty shard)";

/// The largest result file merge reads (a run's JSON carries every probe with an expectation).
pub const MAX_RESULT_BYTES: usize = 1 << 30;

/// The suites of a report, as [`junit::group`] makes them; a shard that holds no case still
/// writes one, empty, named [`EMPTY_SHARD_SUITE`], so that its properties say which shard it is.
pub fn junit_suites(
    cases: Vec<(String, TestCase)>,
    properties: &[(String, String)],
    sharded: bool,
) -> Vec<TestSuite> {
    let mut suites = junit::group(cases, properties);
    if sharded && suites.is_empty() {
        suites.push(TestSuite {
            name: EMPTY_SHARD_SUITE.into(),
            cases: Vec::new(),
            properties: properties.to_vec(),
        });
    }
    suites
}

/// A merged result.
#[derive(Clone, Debug)]
pub struct Merged {
    /// The merged file's text.
    pub text: String,
    /// Whether every merged item passed.
    pub passed: bool,
    /// `json` or `junit`.
    pub format: &'static str,
    /// Items merged (scenarios or fuzz cases).
    pub items: usize,
    pub shards: usize,
}

/// What one input says about itself.
struct Header {
    path: PathBuf,
    shard: Shard,
    total: usize,
    /// Fields that must be equal across the shards of one run, by name.
    run: Vec<(String, String)>,
    items: usize,
}

/// Checks that `headers` are the shards of one run, each once; returns the order of the
/// inputs by shard index.
fn check_shards(headers: &[Header]) -> Result<Vec<usize>> {
    let first = &headers[0];
    for h in &headers[1..] {
        let differ = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "{} and {} are shards of different runs: {what} {a} in the first, {b} in the second",
                first.path.display(),
                h.path.display()
            )
        };
        if h.shard.count != first.shard.count {
            return Err(differ(
                "number of shards",
                &first.shard.count,
                &h.shard.count,
            ));
        }
        if h.total != first.total {
            return Err(differ("items in the whole run", &first.total, &h.total));
        }
        let all: BTreeMap<&str, ()> = first
            .run
            .iter()
            .chain(&h.run)
            .map(|(k, _)| (k.as_str(), ()))
            .collect();
        for k in all.keys() {
            let get = |hd: &Header| {
                hd.run
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or("(none)".to_string(), |(_, v)| format!("{v:?}"))
            };
            if get(first) != get(h) {
                return Err(differ(k, &get(first), &get(h)));
            }
        }
    }
    let mut by_index: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, h) in headers.iter().enumerate() {
        if let Some(&j) = by_index.get(&h.shard.index) {
            bail!(
                "{} and {} are both shard {}: overlapping shards",
                headers[j].path.display(),
                h.path.display(),
                h.shard
            );
        }
        by_index.insert(h.shard.index, i);
        let want = h.shard.len_of(h.total);
        if h.items != want {
            bail!(
                "{}: shard {} of a run of {} items should hold {want} of them, holds {}",
                h.path.display(),
                h.shard,
                h.total,
                h.items
            );
        }
    }
    let n = first.shard.count;
    let missing: Vec<String> = (1..=n)
        .filter(|i| !by_index.contains_key(i))
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard{} {} missing: merge needs the result of every shard of the run ({} given)",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            headers.len()
        );
    }
    Ok(by_index.into_values().collect())
}

/// Item `k` of the unsharded run from the shards' items (in shard order).
fn interleave<T>(shards: Vec<Vec<T>>) -> Vec<T> {
    let n = shards.len();
    let total: usize = shards.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = shards.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    for k in 0..total {
        if let Some(x) = iters[k % n].next() {
            out.push(x);
        }
    }
    out
}

/// Merges sharded results (all JSON or all JUnit, told apart by their first character).
pub fn merge(paths: &[PathBuf]) -> Result<Merged> {
    if paths.is_empty() {
        bail!("nothing to merge: name the shards' result files");
    }
    let mut texts = Vec::new();
    for p in paths {
        let bytes = verdict_sim::fsread::read_bounded(p, MAX_RESULT_BYTES, "result file")
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
        let t = String::from_utf8(bytes)
            .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text: {e}", p.display()))?;
        texts.push(t);
    }
    let kind = |t: &str| t.trim_start().chars().next();
    let first = kind(&texts[0]);
    for (p, t) in paths.iter().zip(&texts) {
        if kind(t) != first {
            bail!(
                "{} and {}: one is JSON and the other is not: merge files of one format",
                paths[0].display(),
                p.display()
            );
        }
    }
    match first {
        Some('{') => merge_json(paths, &texts),
        Some('<') => merge_junit(paths, &texts),
        _ => bail!(
            "{}: neither JSON (`verdict run --format json --shard I/N`) nor JUnit XML (`--junit FILE --shard I/N`)",
            paths[0].display()
        ),
    }
}

/// `verdict run --format json` results.
fn merge_json(paths: &[PathBuf], texts: &[String]) -> Result<Merged> {
    let mut headers = Vec::new();
    let mut scenarios = Vec::new();
    for (p, t) in paths.iter().zip(texts) {
        let v: Value = serde_json::from_str(t).with_context(|| {
            format!(
                "{}: not the JSON of `verdict run --format json`",
                p.display()
            )
        })?;
        let field = |v: &Value, k: &str| -> Result<Value> {
            v.get(k).cloned().with_context(|| {
                format!(
                    "{}: no {k:?} field: not the JSON of `verdict run --format json --shard I/N`",
                    p.display()
                )
            })
        };
        let s = field(&v, "shard")?;
        let index = s["index"].as_u64().unwrap_or(0) as usize;
        let count = s["count"].as_u64().unwrap_or(0) as usize;
        let shard = Shard::parse(&format!("{index}/{count}"))
            .map_err(|e| anyhow::anyhow!("{}: field shard: {e}", p.display()))?;
        let total = s["total"]
            .as_u64()
            .with_context(|| format!("{}: field shard.total: not a count", p.display()))?
            as usize;
        let Value::Array(list) = field(&v, "scenarios")? else {
            bail!("{}: field scenarios: not a list", p.display());
        };
        headers.push(Header {
            path: p.clone(),
            shard,
            total,
            run: vec![
                ("file list".into(), s["files"].to_string()),
                ("backends".into(), s["backends"].to_string()),
                ("golden directory".into(), s["golden"].to_string()),
            ],
            items: list.len(),
        });
        scenarios.push(list);
    }
    let order = check_shards(&headers)?;
    let ordered: Vec<Vec<Value>> = order.iter().map(|&i| scenarios[i].clone()).collect();
    let all = interleave(ordered);
    // Names are unique within a suite (the unsharded run fails the second of two files with
    // one name); a shard only sees its own files.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for s in &all {
        if !s["error"].is_null() {
            continue;
        }
        let name = s["name"].as_str().unwrap_or_default().to_string();
        let file = s["file"].as_str().unwrap_or_default().to_string();
        if let Some(other) = names.insert(name.clone(), file.clone()) {
            bail!(
                "scenario name {name:?} is used by {other} and by {file}, which ran in different \
                 shards: names must be unique within a suite (the unsharded run reports the \
                 second as a duplicate)"
            );
        }
    }
    let count = |k: &str| all.iter().filter(|s| s[k] == Value::Bool(true)).count();
    let sum = |k: &str| all.iter().map(|s| s[k].as_u64().unwrap_or(0)).sum::<u64>();
    let passed = count("passed");
    let failed = all.len() - passed;
    let errors = all.iter().filter(|s| !s["error"].is_null()).count();
    let (probes, disagreements) = (sum("probes"), sum("disagreements"));
    let items = all.len();
    // The key order of `verdict run --format json`.
    let merged = serde_json::json!({
        "scenarios": all,
        "passed": passed,
        "failed": failed,
        "errors": errors,
        "probes": probes,
        "disagreements": disagreements,
    });
    Ok(Merged {
        text: format!("{}\n", serde_json::to_string_pretty(&merged)?),
        passed: failed == 0,
        format: "json",
        items,
        shards: headers.len(),
    })
}

/// A scenario's (or a fuzz case's) test cases: the first, and those named after it
/// (`NAME: step 2`, `NAME: rbpf vs kernel state`).
fn units(suites: &[TestSuite]) -> Vec<Vec<(String, TestCase)>> {
    let mut out: Vec<Vec<(String, TestCase)>> = Vec::new();
    for s in suites {
        for c in &s.cases {
            let joins = out.last().and_then(|u| u.first()).is_some_and(|(_, head)| {
                head.classname == c.classname && c.name.starts_with(&format!("{}: ", head.name))
            });
            match out.last_mut() {
                Some(u) if joins => u.push((s.name.clone(), c.clone())),
                _ => out.push(vec![(s.name.clone(), c.clone())]),
            }
        }
    }
    out
}

/// JUnit reports of `run`, `diff` or `fuzz`.
fn merge_junit(paths: &[PathBuf], texts: &[String]) -> Result<Merged> {
    let mut headers = Vec::new();
    let mut reports = Vec::new();
    for (p, t) in paths.iter().zip(texts) {
        let r = junit::parse(t).with_context(|| format!("{}: not a JUnit report", p.display()))?;
        let Some(first) = r.suites.first() else {
            bail!(
                "{}: no test suites: not a sharded verdict report (`--junit FILE --shard I/N`)",
                p.display()
            );
        };
        let props = first.properties.clone();
        if let Some(s) = r.suites.iter().find(|s| s.properties != props) {
            bail!(
                "{}: suites {:?} and {:?} have different properties: not one verdict report",
                p.display(),
                first.name,
                s.name
            );
        }
        let prop = |k: &str| {
            props
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .with_context(|| {
                    format!(
                    "{}: no {k:?} property: not a sharded verdict report (run with --shard I/N)",
                    p.display()
                )
                })
        };
        let shard = Shard::parse(&prop("shard")?)
            .map_err(|e| anyhow::anyhow!("{}: property shard: {e}", p.display()))?;
        let total_s = prop("shard.total")?;
        let total: usize = total_s.parse().ok().with_context(|| {
            format!(
                "{}: property shard.total {total_s:?}: not a count",
                p.display()
            )
        })?;
        let mut run = vec![("report".to_string(), r.name.clone())];
        run.extend(
            props
                .iter()
                .filter(|(k, _)| k == "shard.files" || !shard::is_shard_property(k))
                .cloned(),
        );
        let u = units(&r.suites);
        headers.push(Header {
            path: p.clone(),
            shard,
            total,
            run,
            items: u.len(),
        });
        reports.push((r, u));
    }
    let order = check_shards(&headers)?;
    let name = reports[0].0.name.clone();
    let props: Vec<(String, String)> = reports[0].0.suites[0]
        .properties
        .iter()
        .filter(|(k, _)| !shard::is_shard_property(k))
        .cloned()
        .collect();
    let ordered: Vec<Vec<Vec<(String, TestCase)>>> =
        order.iter().map(|&i| reports[i].1.clone()).collect();
    let all = interleave(ordered);
    let items = all.len();
    let mut suites = junit::group(all.into_iter().flatten().collect(), &props);
    // A suite that held no case in any shard (a fuzz run of 0 cases) stays, as unsharded.
    for s in &reports[order[0]].0.suites {
        if s.cases.is_empty()
            && s.name != EMPTY_SHARD_SUITE
            && !suites.iter().any(|m| m.name == s.name)
        {
            suites.push(TestSuite {
                name: s.name.clone(),
                cases: Vec::new(),
                properties: props.clone(),
            });
        }
    }
    let passed = suites.iter().flat_map(|s| &s.cases).all(|c| {
        matches!(
            c.outcome,
            junit::Outcome::Passed | junit::Outcome::Skipped { .. }
        )
    });
    Ok(Merged {
        text: junit::render(&name, &suites),
        passed,
        format: "junit",
        items,
        shards: headers.len(),
    })
}

/// `verdict merge`: writes the merged result to `out` (or stdout); 0 when every merged item
/// passed, 1 when one failed, errors (exit 2) when the files cannot be merged.
pub fn run(paths: &[PathBuf], out: Option<&Path>) -> Result<u8> {
    let m = merge(paths)?;
    match out {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(p, &m.text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "merged {} shards ({} items, {}) into {}: {}",
                m.shards,
                m.items,
                m.format,
                p.display(),
                if m.passed { "all passed" } else { "failures" }
            );
        }
        None => print!("{}", m.text),
    }
    Ok(if m.passed { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_restores_the_order() {
        let items: Vec<usize> = (0..11).collect();
        for n in 1..6 {
            let shards: Vec<Vec<usize>> = (1..=n)
                .map(|index| Shard { index, count: n }.select(&items))
                .collect();
            assert_eq!(interleave(shards), items, "{n} shards");
        }
    }
}
