//! `verdict fuzz --packets` and `--manifests`, bounded: a few hundred mutated frames through
//! the datapaths (rbpf's interpreter and JIT, the kernel when usable) and a hundred mutated
//! scenario files through the loader and the oracle, clean; the campaigns are deterministic
//! and shard like the generated cases. The long runs (10^6 packets, 10^4 scenarios) are
//! release-build commands in benchmarks and the README.

mod common;

use common::{text, verdict};

fn out_dir(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("verdict-fuzzscale-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.to_str().unwrap().to_string()
}

#[test]
fn mutated_packets_agree_on_every_datapath() {
    let d = out_dir("packets");
    let o = verdict(&["fuzz", "--packets", "500", "--seed", "1", "--out-dir", &d]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("summary: 2 cases, 500 packets:"), "{t}");
    assert!(t.contains("0 finding(s)"), "{t}");
    // The in-flight marker is gone once the run ends.
    assert!(
        std::fs::read_dir(&d).map_or(true, |r| r.count() == 0),
        "{d} not empty"
    );
    // Frames other than datapaths cannot take are refused up front.
    let o = verdict(&[
        "fuzz",
        "--packets",
        "10",
        "--backend",
        "oracle,rbpf",
        "--out-dir",
        &d,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("oracle does not take frames"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn malformed_scenarios_load_or_fail_located() {
    let d = out_dir("manifests");
    let args = ["fuzz", "--manifests", "60", "--seed", "3", "--out-dir", &d];
    let o = verdict(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("summary: 60 cases, 60 manifests:"), "{t}");
    assert!(t.contains("0 finding(s)"), "{t}");
    assert_eq!(text(&verdict(&args)), t, "deterministic");
    // Shards of the campaign run the cases of the whole run.
    let mut total = 0;
    for i in 1..=2 {
        let o = verdict(&[
            "fuzz",
            "--manifests",
            "60",
            "--seed",
            "3",
            "--out-dir",
            &d,
            "--shard",
            &format!("{i}/2"),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(text(&o).contains("30 cases (shard"), "{}", text(&o));
        total += 1;
    }
    assert_eq!(total, 2);
    let _ = std::fs::remove_dir_all(&d);
}
