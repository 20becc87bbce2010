//! `--shard I/N` and `verdict merge`: the union of all shards is the unsharded run. The merged
//! `verdict run --format json` is byte-identical to the unsharded JSON; merged JUnit reports
//! of run, diff and fuzz are byte-identical once the `time` attributes (real time, per
//! machine) are blanked. Overlapping, missing and foreign shards are refused with the file
//! and the field; bad `--shard` values are usage errors naming the rule.

mod common;

use common::{text, verdict};

use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("verdict-shard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Seven scenario files in two directories: passing ones, a failing expectation and one that
/// does not load, so failures, errors and suites per directory all go through the merge.
fn suite(d: &Path) -> PathBuf {
    let root = d.join("suite");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (i, f) in [
        "deny-l4-beats-l3-allow",
        "fromentities-world",
        "port-range",
        "l4-only-allows-any-source",
    ]
    .iter()
    .enumerate()
    {
        let sub = if i % 2 == 0 { "a" } else { "b" };
        std::fs::copy(
            common::root().join(format!("scenarios/cilium/{f}.yaml")),
            root.join(sub).join(format!("{f}.yaml")),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("a/wrong.yaml"),
        "name: wrong\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}, {name: x/b}]\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: deny}\n",
    )
    .unwrap();
    std::fs::write(root.join("b/broken.yaml"), "name: broken\ncluster: [1\n").unwrap();
    std::fs::write(
        root.join("b/zz-second-wrong.yaml"),
        "name: second-wrong\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}, {name: x/b}]\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 81, protocol: UDP, verdict: deny}\n",
    )
    .unwrap();
    root
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The report with every `time="..."` attribute emptied.
fn blank_times(p: &Path) -> String {
    let t = std::fs::read_to_string(p).unwrap();
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(i) = rest.find(" time=\"") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        rest = &rest[rest.find('"').unwrap()..];
    }
    out.push_str(rest);
    out
}

fn merge(files: &[PathBuf], out: &Path) -> std::process::Output {
    let mut args = vec!["merge", "--out", s(out)];
    args.extend(files.iter().map(|f| s(f)));
    verdict(&args)
}

#[test]
fn run_shards_merge_into_the_unsharded_run() {
    let d = dir("run");
    let root = suite(&d);
    let run = |json: &Path, xml: &Path, shard: Option<String>| {
        let mut a: Vec<String> = ["run", "--backend", "oracle,model", "--format", "json"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(["--junit".to_string(), s(xml).into(), s(&root).into()]);
        if let Some(sh) = shard {
            a.push("--shard".into());
            a.push(sh);
        }
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = verdict(&refs);
        std::fs::write(json, &o.stdout).unwrap();
        o
    };
    let (all_json, all_xml) = (d.join("all.json"), d.join("all.xml"));
    let o = run(&all_json, &all_xml, None);
    // A scenario that does not load: exit 2, sharded or not.
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // 7 files in 3 shards (3, 2, 2 files) and in 9 (two empty shards).
    for n in [3usize, 9] {
        let mut jsons = Vec::new();
        let mut xmls = Vec::new();
        for i in 1..=n {
            let (j, x) = (
                d.join(format!("{i}of{n}.json")),
                d.join(format!("{i}of{n}.xml")),
            );
            let o = run(&j, &x, Some(format!("{i}/{n}")));
            assert!(
                matches!(o.status.code(), Some(0..=2)),
                "{i}/{n}: {}",
                text(&o)
            );
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap())
                .unwrap_or_else(|e| panic!("{i}/{n}: {e}: {}", text(&o)));
            assert_eq!(v["shard"]["index"], i, "{v}");
            assert_eq!(
                v["scenarios"].as_array().unwrap().len(),
                (7 + n - i) / n,
                "{i}/{n}"
            );
            jsons.push(j);
            xmls.push(x);
        }
        // Given in any order.
        jsons.reverse();
        let mj = d.join(format!("merged{n}.json"));
        let o = merge(&jsons, &mj);
        // The merged results hold failures: exit 1.
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(
            std::fs::read_to_string(&mj).unwrap(),
            std::fs::read_to_string(&all_json).unwrap(),
            "{n} shards: merged JSON differs from the unsharded run's"
        );
        let mx = d.join(format!("merged{n}.xml"));
        let o = merge(&xmls, &mx);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert_eq!(
            blank_times(&mx),
            blank_times(&all_xml),
            "{n} shards: merged JUnit differs"
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&all_json).unwrap()).unwrap();
    assert_eq!(v["scenarios"].as_array().unwrap().len(), 7);
    assert_eq!(
        (v["failed"].clone(), v["errors"].clone()),
        (3.into(), 1.into())
    );
    assert!(v.get("shard").is_none(), "{v}");

    // Refusals.
    let sh = |i: usize, n: usize, ext: &str| d.join(format!("{i}of{n}.{ext}"));
    let refuse = |files: &[PathBuf], what: &str| {
        let o = merge(files, &d.join("refused"));
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains(what), "expected {what:?} in: {t}");
        assert!(!t.contains("panicked"), "{t}");
    };
    refuse(
        &[
            sh(1, 3, "json"),
            sh(2, 3, "json"),
            sh(2, 3, "json"),
            sh(3, 3, "json"),
        ],
        "are both shard 2/3: overlapping shards",
    );
    refuse(&[sh(1, 3, "json"), sh(3, 3, "json")], "shard 2/3 missing");
    refuse(
        &[sh(1, 3, "json"), sh(2, 9, "json")],
        "shards of different runs: number of shards 3 in the first, 9 in the second",
    );
    refuse(&[sh(1, 3, "xml"), sh(2, 3, "xml")], "shard 3/3 missing");
    refuse(
        &[sh(1, 3, "xml"), sh(1, 9, "xml")],
        "shards of different runs",
    );
    refuse(
        &[sh(1, 3, "json"), sh(2, 3, "xml")],
        "merge files of one format",
    );
    refuse(std::slice::from_ref(&all_json), "no \"shard\" field");
    refuse(std::slice::from_ref(&all_xml), "no \"shard\" property");
    // A shard of another file list (another checkout, other paths).
    let other = d.join("other.json");
    let o = verdict(&[
        "run",
        "--backend",
        "oracle,model",
        "--format",
        "json",
        "--shard",
        "2/3",
        s(&root.join("a")),
        s(&root.join("b")),
        "scenarios/cilium/port-range.yaml",
    ]);
    std::fs::write(&other, &o.stdout).unwrap();
    refuse(
        &[sh(1, 3, "json"), other.clone(), sh(3, 3, "json")],
        "shards of different runs",
    );
    // A shard run with other backends.
    let o = verdict(&[
        "run",
        "--backend",
        "oracle",
        "--format",
        "json",
        "--shard",
        "2/3",
        s(&root),
    ]);
    std::fs::write(&other, &o.stdout).unwrap();
    refuse(
        &[sh(1, 3, "json"), other, sh(3, 3, "json")],
        "shards of different runs: backends",
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A scenario name used by files in two shards: the unsharded run fails the second as a
/// duplicate; merge cannot rebuild that, so it refuses, naming both files.
#[test]
fn merge_refuses_a_name_two_shards_use() {
    let d = dir("dup");
    let scen = "name: same\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}]\n";
    std::fs::write(d.join("one.yaml"), scen).unwrap();
    std::fs::write(d.join("two.yaml"), scen).unwrap();
    let mut files = Vec::new();
    for i in 1..=2 {
        let o = verdict(&[
            "run",
            "--backend",
            "oracle",
            "--format",
            "json",
            "--shard",
            &format!("{i}/2"),
            s(&d),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let f = d.join(format!("{i}.json"));
        std::fs::write(&f, &o.stdout).unwrap();
        files.push(f);
    }
    let o = merge(&files, &d.join("m.json"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("scenario name \"same\" is used by")
            && t.contains("one.yaml")
            && t.contains("two.yaml"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn diff_and_fuzz_shards_merge_into_the_unsharded_run() {
    let d = dir("difffuzz");
    let root = suite(&d);
    std::fs::remove_file(root.join("b/broken.yaml")).unwrap();
    let diff = |xml: &Path, shard: Option<&str>| {
        let mut a = vec!["diff", "--backend", "oracle,model,rbpf", "--junit", s(xml)];
        if let Some(sh) = shard {
            a.extend(["--shard", sh]);
        }
        a.push(s(&root));
        verdict(&a)
    };
    let all = d.join("diff.xml");
    let o = diff(&all, None);
    // The two wrong expectations are not diff's business: everything agrees.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let parts: Vec<PathBuf> = (1..=2)
        .map(|i| {
            let x = d.join(format!("diff{i}.xml"));
            let o = diff(&x, Some(&format!("{i}/2")));
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            assert!(
                text(&o).contains(&format!("(shard {i}/2 of 6)")),
                "{}",
                text(&o)
            );
            x
        })
        .collect();
    let m = d.join("diff-merged.xml");
    let o = merge(&parts, &m);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(blank_times(&m), blank_times(&all));

    let fuzz = |xml: &Path, shard: Option<&str>| {
        let mut a = vec![
            "fuzz",
            "--seed",
            "5",
            "--cases",
            "5",
            "--backend",
            "oracle,model",
            "--out-dir",
            s(&d),
            "--junit",
            s(xml),
        ];
        if let Some(sh) = shard {
            a.extend(["--shard", sh]);
        }
        verdict(&a)
    };
    let all = d.join("fuzz.xml");
    let o = fuzz(&all, None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let parts: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let x = d.join(format!("fuzz{i}.xml"));
            let o = fuzz(&x, Some(&format!("{i}/3")));
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            x
        })
        .collect();
    // Shard 1/3 runs cases 0 and 3, from the run's seed, as the unsharded run does.
    let one = std::fs::read_to_string(&parts[0]).unwrap();
    assert!(
        one.contains("case 0 (seed") && one.contains("case 3 (seed"),
        "{one}"
    );
    assert!(!one.contains("case 1 (seed"), "{one}");
    let m = d.join("fuzz-merged.xml");
    let o = merge(&parts, &m);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(blank_times(&m), blank_times(&all));
    // Fuzz shards of another seed are another run.
    let other = d.join("fuzz-other.xml");
    let o = verdict(&[
        "fuzz",
        "--seed",
        "6",
        "--cases",
        "5",
        "--backend",
        "oracle,model",
        "--out-dir",
        s(&d),
        "--junit",
        s(&other),
        "--shard",
        "2/3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = merge(&[parts[0].clone(), other, parts[2].clone()], &m);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("shards of different runs: seed \"5\" in the first, \"6\" in the second"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Bad `--shard` values are usage errors (exit 2) that say what a shard is.
#[test]
fn bad_shard_values_are_usage_errors() {
    for (cmd, value, why) in [
        ("run", "0/4", "shards count from 1"),
        ("run", "5/4", "there is no shard 5 of 4"),
        ("diff", "1/0", "at least 1"),
        ("fuzz", "3", "expected I/N"),
        ("fuzz", "x/2", "not a whole number"),
    ] {
        let mut args = vec![cmd, "--shard", value];
        if cmd != "fuzz" {
            args.push("scenarios/cilium/port-range.yaml");
        }
        let o = verdict(&args);
        assert_eq!(o.status.code(), Some(2), "{cmd} {value}: {}", text(&o));
        assert!(text(&o).contains(why), "{cmd} {value}: {}", text(&o));
    }
    let o = verdict(&[
        "diff",
        "--pcap",
        "x.pcap",
        "--scenario",
        "scenarios/cilium/port-range.yaml",
        "--shard",
        "1/2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cannot be used with"), "{}", text(&o));
}
