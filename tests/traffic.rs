//! The traffic commands on the demo capture (tests/data/hubble/demo-shop.jsonl, whose README
//! says what it holds) and the demo scenario (scenarios/traffic/demo-shop.yaml): `verdict
//! replay`, `impact`, `suggest` and `audit`, their golden outputs under golden/traffic/ (bless
//! with `VERDICT_BLESS=1 cargo test --test traffic`, after reading the diff), exit statuses and
//! errors. The expected verdicts are the scenario's, whose description cites their sources; the
//! recorded verdicts are the capture's.

mod common;

use common::{root, text, verdict};

const FLOWS: &str = "tests/data/hubble/demo-shop.jsonl";
const SCENARIO: &str = "scenarios/traffic/demo-shop.yaml";

/// Compares a command's stdout with golden/traffic/NAME (or writes it with VERDICT_BLESS=1).
fn golden(name: &str, got: &str) {
    let path = root().join("golden/traffic").join(name);
    if std::env::var_os("VERDICT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        println!("blessed {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; bless it with VERDICT_BLESS=1 cargo test --test traffic",
            path.display()
        )
    });
    assert!(
        want == got,
        "{} differs:\n--- golden\n{want}\n--- actual\n{got}",
        path.display()
    );
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Validates a JUnit report with xmllint against tests/data/junit.xsd (a loud SKIP without it).
fn validate_junit(path: &std::path::Path) {
    match std::process::Command::new("xmllint")
        .args(["--noout", "--schema", "tests/data/junit.xsd"])
        .arg(path)
        .current_dir(root())
        .output()
    {
        Ok(o) => assert!(o.status.success(), "{}: {}", path.display(), text(&o)),
        Err(e) => {
            println!(
                "SKIP JUnit schema validation of {} (xmllint: {e})",
                path.display()
            );
            eprintln!(
                "SKIP JUnit schema validation of {} (xmllint: {e})",
                path.display()
            );
        }
    }
}

/// At step 1 the scenario's policies are the capture's: every compared flow agrees on every
/// backend, the L7 DNS request included (replayed as a lookup); its response is counted as not
/// replayed, the debug pod's seven flows as
/// unresolvable (the scenario has no such pod), each listed.
#[test]
fn replay_agrees_with_the_capture_at_step_1() {
    let o = verdict(&[
        "replay",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.starts_with("OK   "), "{out}");
    assert!(
        out.contains("135 lines, 127 flows replayed: 127 compared (127 agree, 0 disagree)"),
        "{out}"
    );
    assert!(out.contains("not replayed: 1 L7, 7 unresolvable"), "{out}");
    assert!(
        out.contains("unresolvable: source pod shop/debug-shell-5b7f9 is not in the scenario"),
        "{out}"
    );
    assert!(
        out.contains("L7: DNS response (its request is the replayed line): 1 (lines 44)"),
        "{out}"
    );
    golden("replay-step-1.txt", &out);
}

/// After step 2 (the api's egress to the external API removed) the capture's calls to
/// 140.82.112.5:443 disagree, grouped under (shop/api, world (api.github.com), 443, TCP), with
/// the api's egress default deny as the deciding rule; exit status 1.
#[test]
fn replay_reports_disagreements_by_workload_pair() {
    let o = verdict(&["replay", "--flows", FLOWS, "--scenario", SCENARIO]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.starts_with("DIFF "), "{out}");
    assert!(
        out.contains("shop/api -> world (api.github.com) 443/TCP:"),
        "{out}"
    );
    assert!(out.contains("egress default deny (POLICY_DENIED): selected by CiliumNetworkPolicy shop/api, no rule allows"), "{out}");
    golden("replay.txt", &out);
    let j = verdict(&[
        "replay",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "-o",
        "json",
    ]);
    assert_eq!(j.status.code(), Some(1), "{}", text(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    assert_eq!(v["disagreement_groups"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v["disagreement_groups"][0]["destination_workload"],
        "world (api.github.com)"
    );
    assert_eq!(v["not_replayed"]["L7"], 1);
    assert_eq!(v["flows"].as_array().unwrap().len(), 127);
    // Replies pass by conntrack, not by a rule.
    let reply = v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["is_reply"] == true && f["source_workload"] == "shop/db")
        .expect("a reply from the db");
    assert_eq!(
        reply["rule"],
        "conntrack: reply of a tracked connection (no policy lookup)"
    );
    golden("replay.json", &serde_json::to_string_pretty(&v).unwrap());
    let c = verdict(&[
        "replay",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "-o",
        "compact",
    ]);
    golden("replay-compact.txt", &stdout(&c));
}

/// The legacy `-o json` shape (a bare Flow per line) and protojson's JSON names replay the same.
#[test]
fn replay_reads_bare_flows_and_json_names() {
    let src = std::fs::read_to_string(root().join(FLOWS)).unwrap();
    let dir = std::env::temp_dir().join(format!("verdict-traffic-bare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = String::new();
    for l in src.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let flow = serde_json::to_string(&v["flow"]).unwrap();
        out.push_str(
            &flow
                .replace("\"source_port\"", "\"sourcePort\"")
                .replace("\"destination_port\"", "\"destinationPort\"")
                .replace("\"is_reply\"", "\"isReply\""),
        );
        out.push('\n');
    }
    let bare = dir.join("bare.json");
    std::fs::write(&bare, out).unwrap();
    let a = verdict(&[
        "replay",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "-o",
        "json",
    ]);
    let b = verdict(&[
        "replay",
        "--flows",
        bare.to_str().unwrap(),
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "-o",
        "json",
    ]);
    let mut va: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let mut vb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    va["flows_file"] = serde_json::Value::Null;
    vb["flows_file"] = serde_json::Value::Null;
    assert_eq!(va, vb);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input: a clear error naming file, line and field, exit status 2.
#[test]
fn replay_errors_name_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("verdict-traffic-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "garbage.json",
            "{\"flow\":{}}\n{oops\n",
            "garbage.json:2: column",
        ),
        (
            "verdict.json",
            "{\"flow\":{\"verdict\":\"PERHAPS\"}}\n",
            "verdict.json:1: field flow.verdict: unknown verdict \"PERHAPS\"",
        ),
        (
            "time.json",
            "{\"flow\":{\"time\":\"noon\",\"verdict\":\"FORWARDED\"}}\n",
            "time.json:1: field flow.time",
        ),
        ("empty.json", "\n", "no flows (an empty file)"),
        (
            "port.json",
            "{\"flow\":{\"l4\":{\"TCP\":{\"source_port\":70000}}}}\n",
            "port.json:1: column",
        ),
    ];
    for (name, body, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let o = verdict(&[
            "replay",
            "--flows",
            p.to_str().unwrap(),
            "--scenario",
            SCENARIO,
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.starts_with("error: ") && e.contains(want), "{name}: {e}");
    }
    let o = verdict(&[
        "replay",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "9",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A change that breaks a flow: removing the api's egress to the external API newly drops the
/// capture's api -> api.github.com:443 packets (the SYN and the rest of the connection), with
/// the rule before and after; exit status 1 (a CI gate) unless --allow-new-drops.
#[test]
fn impact_of_a_change_that_breaks_a_flow() {
    let dir = std::env::temp_dir().join(format!("verdict-traffic-impact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("impact.xml");
    let o = verdict(&[
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--apply",
        "scenarios/traffic/policies/api-no-github.yaml",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("newly DROPPED (by source workload"), "{out}");
    assert!(
        out.contains("shop/api -> world (api.github.com) 443/TCP:"),
        "{out}"
    );
    assert!(out.contains(" 0 newly FORWARDED"), "{out}");
    golden("impact-breaks.txt", &out);
    validate_junit(&junit);
    let x = std::fs::read_to_string(&junit).unwrap();
    assert!(x.contains("failures=\"1\""), "{x}");
    let o = verdict(&[
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--apply",
        "scenarios/traffic/policies/api-no-github.yaml",
        "--allow-new-drops",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A change that opens a flow: the front may read the db; the capture's denied front -> db
/// SYNs (and their drop events) become newly FORWARDED; nothing is newly dropped: exit 0.
#[test]
fn impact_of_a_change_that_opens_a_flow() {
    let o = verdict(&[
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--apply",
        "scenarios/traffic/policies/front-db.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    assert!(
        out.contains(": 0 newly DROPPED, 6 newly FORWARDED"),
        "{out}"
    );
    assert!(
        out.contains("shop/front -> shop/db 5432/TCP: 6 flows"),
        "{out}"
    );
    golden("impact-opens.txt", &out);
    let j = verdict(&[
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--apply",
        "scenarios/traffic/policies/front-db.yaml",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    assert_eq!(v["newly_forwarded"], 6);
    assert_eq!(v["newly_dropped"], 0);
}

/// --delete: a policy named by kind, namespace and name; one the scenario lacks is an error.
#[test]
fn impact_of_deletes() {
    // Without the db's policy the db enforces no ingress, but the front's egress still denies
    // front -> db: nothing changes.
    let o = verdict(&[
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--delete",
        "cnp/shop/db",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("0 newly DROPPED, 0 newly FORWARDED"),
        "{}",
        text(&o)
    );
    // Without the front's and the db's, front -> db is open.
    let o = verdict(&[
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--delete",
        "CiliumNetworkPolicy/shop/db",
        "cnp/shop/front",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("0 newly DROPPED, 6 newly FORWARDED"),
        "{}",
        text(&o)
    );
    for (arg, want) in [
        ("cnp/shop/nope", "--delete cnp/shop/nope: the scenario has no CiliumNetworkPolicy shop/nope after step 1"),
        ("ccnp/shop/x", "a CiliumClusterwideNetworkPolicy has no namespace"),
        ("pod/shop/x", "unknown kind \"pod\""),
        ("cnp/x", "is namespaced"),
    ] {
        let o = verdict(&[
            "impact", "--flows", FLOWS, "--scenario", SCENARIO, "--after-step", "1", "--delete", arg,
        ]);
        assert_eq!(o.status.code(), Some(2), "{arg}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(want), "{arg}: {}", text(&o));
    }
}

/// suggest: one policy per workload with stable labels only (no pod-template-hash or
/// controller-revision-hash), proven by replay: with the suggestion in place of the scenario's
/// policies every flow the capture shows forwarded stays allowed (the "Done means").
#[test]
fn suggest_writes_least_privilege_that_replays_clean() {
    let dir = std::env::temp_dir().join(format!("verdict-traffic-suggest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = verdict(&[
        "suggest",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o).replace(dir.to_str().unwrap(), "OUT");
    assert!(out.contains(", 0 newly dropped"), "{out}");
    golden("suggest.txt", &out);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}"); // shop: api, db, front; kube-system: coredns; monitoring: prometheus-k8s
    let mut all = String::new();
    for f in &files {
        let y = std::fs::read_to_string(f).unwrap();
        assert!(
            !y.contains("pod-template-hash")
                && !y.contains("controller-revision-hash")
                && !y.contains("statefulset.kubernetes.io/pod-name"),
            "{}: {y}",
            f.display()
        );
        // Each file is a valid manifest.
        let c = verdict(&["check", f.to_str().unwrap()]);
        assert_eq!(c.status.code(), Some(0), "{}: {}", f.display(), text(&c));
        all.push_str(&format!(
            "# {}\n{y}",
            f.file_name().unwrap().to_string_lossy()
        ));
    }
    golden("suggest-policies.yaml", &all);
    // Applied on top of the scenario's policies, nothing the capture shows forwarded is dropped.
    let mut args = vec![
        "impact",
        "--flows",
        FLOWS,
        "--scenario",
        SCENARIO,
        "--after-step",
        "1",
        "--apply",
    ];
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let o = verdict(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains(": 0 newly DROPPED"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// audit: the evidence table. The demo shop is not isolated: the internet reaches the front on
/// 8080 and Prometheus the api on 9090 (counterexamples, with the rules that allow them, after
/// the initial state and after the step); the world never reaches the db and Prometheus may
/// always scrape the api: pass. Exit status 1. JSON and JUnit carry the same.
#[test]
fn audit_evidence_table_and_counterexamples() {
    let s = "tests/data/audit/isolated-shop.yaml";
    let o = verdict(&["audit", s]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(
        out.contains("internet-client -> shop/front-6f9d8b7c4d-7xk2p 8080/TCP"),
        "{out}"
    );
    assert!(
        out.contains("monitoring/prometheus-k8s-0 -> shop/api-7b5c9d6f8-2jw4n 9090/TCP"),
        "{out}"
    );
    assert!(
        out.contains("ingress allowed by CiliumNetworkPolicy shop/front rule 0 ingress[0]"),
        "{out}"
    );
    golden("audit.txt", &out);
    let j = verdict(&["audit", "--format", "json", s]);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("JSON");
    let invs = v[0]["invariants"].as_array().unwrap();
    assert_eq!(invs.len(), 3);
    assert_eq!(invs[0]["passed"], false);
    assert_eq!(invs[1]["passed"], true);
    assert_eq!(invs[2]["passed"], true);
    // Checked after the initial state and after the one step.
    assert_eq!(invs[1]["instants"], 2);
    let dir = std::env::temp_dir().join(format!("verdict-traffic-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = verdict(&["audit", "--format", "junit", s]);
    let p = dir.join("audit.xml");
    std::fs::write(&p, &x.stdout).unwrap();
    validate_junit(&p);
    let xml = String::from_utf8_lossy(&x.stdout).to_string();
    assert!(
        xml.contains("tests=\"3\"") && xml.contains("failures=\"1\""),
        "{xml}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // The demo scenario's own invariants hold at every step.
    let o = verdict(&["audit", SCENARIO]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A violation that only a lagging datapath shows, in a propagation window, is reported as
/// transient: the stale ipcache of node-2 lets x/other reach y/b on rbpf at 1s and 2s, while
/// the oracle and the model (the eventual answer) hold the invariant at every instant.
#[test]
fn audit_reports_a_transient_violation_in_a_propagation_window() {
    let s = "tests/data/audit/stale-ipcache.yaml";
    let o = verdict(&["audit", "--backend", "oracle,model,rbpf", s]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("all transient"), "{out}");
    assert!(out.contains("TRANSIENT (propagation window) after step 3 at 1s on rbpf: x/other -> y/b 80/TCP (nodes node-1 -> node-2): allow"), "{out}");
    assert!(
        !out.contains(" on oracle:") && !out.contains(" on model:"),
        "{out}"
    );
    golden("audit-transient.txt", &out);
    // Without a lagging backend there is nothing to see.
    let o = verdict(&["audit", "--backend", "oracle,model", s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A bad invariant: file, line and field; exit status 2.
#[test]
fn audit_errors_are_located() {
    let o = verdict(&["audit", "tests/data/audit/bad-invariant.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("tests/data/audit/bad-invariant.yaml:10:")
            && out.contains("invariants[0].isolated: namespace \"paymnets\" is not in the cluster"),
        "{out}"
    );
}
