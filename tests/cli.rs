//! End-to-end checks of the `verdict` binary: malformed input gives an error naming the file,
//! the line and the field (never a panic), exit statuses are 0 pass / 1 failure / 2 usage or
//! input error, flags are consistent across commands, and output is byte-identical across
//! runs.

mod common;

use common::verdict;

use std::path::{Path, PathBuf};

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("verdict-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const CLUSTER: &str = "name: bad
cluster:
  namespaces: [{name: x}]
  pods: [{name: x/a, labels: {pod: a}}, {name: x/b}]
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x}
    spec:
      endpointSelector: {matchLabels: {pod: a}}
";

/// Runs a scenario whose policy ends with `tail` (lines 11 onwards) and returns stdout+stderr.
fn run_bad_policy(name: &str, tail: &str) -> String {
    let p = tmp(name, &format!("{CLUSTER}{tail}"));
    let out = verdict(&["run", "--backend", "oracle", p.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A scenario that cannot be loaded is an input error: exit status 2.
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

fn assert_located(text: &str, file: &str, line: usize, field: &str, what: &str) {
    let loc = format!("{file}:{line}:");
    assert!(text.contains(&loc), "expected {loc} in:\n{text}");
    assert!(text.contains(field), "expected field {field} in:\n{text}");
    assert!(text.contains(what), "expected {what:?} in:\n{text}");
}

#[test]
fn bad_cidr_is_located() {
    let t = run_bad_policy(
        "cidr.yaml",
        "      egress:\n        - toCIDR: [10.0.0.0/33]\n",
    );
    assert_located(
        &t,
        "cidr.yaml",
        12,
        "spec.egress[0].toCIDR[0]",
        "10.0.0.0/33",
    );
}

#[test]
fn port_70000_is_located() {
    let t = run_bad_policy(
        "port.yaml",
        "      ingress:\n        - toPorts:\n            - ports: [{port: \"70000\", protocol: TCP}]\n",
    );
    assert_located(
        &t,
        "port.yaml",
        13,
        "spec.ingress[0].toPorts[0].ports[0]",
        "70000",
    );
}

#[test]
fn end_port_below_port_is_located() {
    let t = run_bad_policy(
        "endport.yaml",
        "      ingress:\n        - toPorts:\n            - ports: [{port: \"80\", endPort: 79, protocol: TCP}]\n",
    );
    assert_located(
        &t,
        "endport.yaml",
        13,
        "spec.ingress[0].toPorts[0].ports[0]",
        "endPort",
    );
}

#[test]
fn unknown_entity_is_located() {
    let t = run_bad_policy(
        "entity.yaml",
        "      ingress:\n        - fromEntities: [everyone]\n",
    );
    assert_located(
        &t,
        "entity.yaml",
        12,
        "spec.ingress[0].fromEntities[0]",
        "everyone",
    );
}

#[test]
fn bad_operator_is_located() {
    let t = run_bad_policy(
        "operator.yaml",
        "      ingress:\n        - fromEndpoints:\n            - matchExpressions: [{key: pod, operator: Near, values: [b]}]\n",
    );
    assert_located(&t, "operator.yaml", 13, "matchExpressions[0]", "Near");
}

#[test]
fn unknown_policy_field_is_located() {
    let t = run_bad_policy("field.yaml", "      ingres:\n        - {}\n");
    assert_located(&t, "field.yaml", 11, "spec", "ingres");
}

#[test]
fn bad_yaml_is_located() {
    let p = tmp("syntax.yaml", "name: bad\nsteps:\n  - expect: [unclosed\n");
    let out = verdict(&["run", "--backend", "oracle", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("syntax.yaml:"), "{text}");
}

#[test]
fn unknown_scenario_field_is_located() {
    let p = tmp(
        "probe.yaml",
        "name: bad\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}]\nsteps:\n  - expect:\n      - {from: x/a, to: x/a, port: 80, protocol: TCP, verdict: allow, colour: red}\n",
    );
    let out = verdict(&["run", "--backend", "oracle", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_located(&text, "probe.yaml", 7, "steps[0]", "colour");
}

#[test]
fn unknown_endpoint_and_backend_are_errors() {
    let p = tmp(
        "ep.yaml",
        "name: bad\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}]\nsteps:\n  - expect:\n      - {from: x/a, to: x/zz, port: 80, protocol: TCP, verdict: allow}\n",
    );
    let out = verdict(&["run", "--backend", "oracle", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("x/zz"), "{text}");
    let out = verdict(&["run", "--backend", "teleporter", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: --backend: unknown backend"),
        "{err}"
    );
}

#[test]
fn check_reports_bad_manifests_and_selection() {
    let bad = tmp(
        "bad-knp.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress:\n    - ports: [{port: 80, endPort: 70}]\n",
    );
    let out = verdict(&["check", bad.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad-knp.yaml:7:"), "{text}");
    // A scenario file is checked with its own policies, matched against its own cluster.
    let good = Path::new("scenarios/k8s/default-deny-ingress.yaml");
    let out = verdict(&["check", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("ok scenarios/k8s/default-deny-ingress.yaml: scenario "),
        "{text}"
    );
    assert!(text.contains("      selects: "), "{text}");
    // A directory: every manifest and scenario below it (policies/ directories included).
    let out = verdict(&["check", "scenarios/cilium"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines().filter(|l| l.starts_with("ok ")).count() > 40,
        "{text}"
    );
    // An empty file is an error, in check and in run.
    let empty = tmp("empty.yaml", "# nothing here\n");
    let out = verdict(&["check", empty.to_str().unwrap()]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("empty.yaml:1:1: empty file"), "{text}");
    let out = verdict(&["run", "--backend", "oracle", empty.to_str().unwrap()]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("empty.yaml:1:1: empty file"), "{text}");
}

#[test]
fn run_output_is_byte_identical_across_runs() {
    // Every scenario on the default backends, twice: the JSON report (on stderr with --flows)
    // and every flow record (stdout) must be byte-identical. The text report renders the same
    // results, and tests/scenarios.rs compares its golden form byte for byte on every run.
    let args = ["run", "--format", "json", "--flows", "json", "scenarios/"];
    let a = verdict(&args);
    let b = verdict(&args);
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(a.stdout.len() > 1000 && a.stderr.len() > 1000);
    assert!(a.stdout == b.stdout, "flow records differ between runs");
    assert!(a.stderr == b.stderr, "JSON reports differ between runs");
    check_flows_against_flow_proto(&String::from_utf8_lossy(&a.stdout));
}

/// Every flow line of every scenario: each field name is flow.proto's JSON name, of its
/// type's JSON form, non-zero, in declaration order; and `jq -c .flow.verdict` reads them all
/// (as users pipe `hubble observe -o json`).
fn check_flows_against_flow_proto(out: &str) {
    let p = common::flowproto::proto();
    let mut problems = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    let mut lines = 0;
    for l in out.lines() {
        lines += 1;
        for pr in common::flowproto::check_line(&p, l) {
            if problems.len() < 20 {
                problems.push(format!("{pr}\n  in {l}"));
            }
        }
        if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(l) {
            if let Some(serde_json::Value::Object(f)) = o.get("flow") {
                names.extend(f.keys().cloned());
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The fields verdict promises (README): every one of them shows up somewhere.
    for f in [
        "time",
        "uuid",
        "emitter",
        "verdict",
        "drop_reason",
        "ethernet",
        "IP",
        "l4",
        "source",
        "destination",
        "Type",
        "node_name",
        "node_labels",
        "reply",
        "event_type",
        "traffic_direction",
        "policy_match_type",
        "trace_observation_point",
        "trace_reason",
        "drop_reason_desc",
        "is_reply",
        "Summary",
        "ingress_allowed_by",
        "egress_allowed_by",
        "ingress_denied_by",
        "egress_denied_by",
    ] {
        assert!(names.contains(f), "no flow prints {f}; printed: {names:?}");
    }
    match std::process::Command::new("jq")
        .args(["-c", ".flow.verdict"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let input = out.to_string();
            let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
            let o = child.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(
                o.status.success(),
                "jq failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let verdicts = String::from_utf8_lossy(&o.stdout).to_string();
            assert_eq!(verdicts.lines().count(), lines);
            assert!(
                verdicts.lines().all(|v| matches!(
                    v,
                    "\"FORWARDED\"" | "\"DROPPED\"" | "\"REDIRECTED\"" | "\"AUDIT\""
                )),
                "{}",
                &verdicts[..verdicts.len().min(500)]
            );
        }
        Err(e) => {
            println!("SKIP the jq check of --flows json (jq: {e}; tools/test.sh installs it)");
            eprintln!("SKIP the jq check of --flows json (jq: {e}; tools/test.sh installs it)");
        }
    }
}

// spec §6.1: a denied new TCP connection gives a policy-verdict (type 5, DROPPED, the drop
// reason, INGRESS, the match type) and then a drop event (type 1, sub_type 181).
#[test]
fn flows_read_like_hubble_json() {
    let out = verdict(&[
        "run",
        "--backend",
        "rbpf",
        "--flows",
        "json",
        "scenarios/cilium/deny-l4-beats-l3-allow.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0));
    // stdout is the flows and nothing else: every line is one JSON object.
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let flows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each flow line is JSON"))
        .collect();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PASS cilium-deny-l4-beats-l3-allow"));
    let verdict_ev = flows
        .iter()
        .find(|f| f["flow"]["event_type"]["type"] == 5 && f["flow"]["verdict"] == "DROPPED")
        .expect("a dropped policy verdict");
    assert_eq!(verdict_ev["flow"]["drop_reason_desc"], "POLICY_DENY");
    assert_eq!(verdict_ev["flow"]["traffic_direction"], "INGRESS");
    assert_eq!(verdict_ev["flow"]["policy_match_type"], 2);
    assert_eq!(verdict_ev["flow"]["source"]["pod_name"], "b");
    assert_eq!(verdict_ev["flow"]["l4"]["TCP"]["destination_port"], 80);
    let drop = flows
        .iter()
        .find(|f| f["flow"]["event_type"]["type"] == 1)
        .expect("a drop event");
    assert_eq!(drop["flow"]["event_type"]["sub_type"], 181);
    assert!(drop["flow"].get("is_reply").is_none());
    // parser.go decodeIsReply: a denied policy verdict's is_reply is unknown (absent); an
    // allowed one is false. CorrelatePolicy names the denying policy.
    assert!(verdict_ev["flow"].get("is_reply").is_none(), "{verdict_ev}");
    assert_eq!(
        verdict_ev["flow"]["ingress_denied_by"][0]["name"],
        "client-l3-allow-deny-80"
    );
    assert_eq!(
        verdict_ev["flow"]["ingress_denied_by"][0]["kind"],
        "CiliumNetworkPolicy"
    );
    let allowed = flows
        .iter()
        .find(|f| f["flow"]["event_type"]["type"] == 5 && f["flow"]["verdict"] == "FORWARDED")
        .expect("an allowed policy verdict");
    assert_eq!(allowed["flow"]["is_reply"], false);
    // protojson: zero values omitted, Timestamps without a zero fraction.
    assert_eq!(
        verdict_ev["flow"]["event_type"],
        serde_json::json!({"type": 5})
    );
    assert_eq!(verdict_ev["flow"]["time"], "1970-01-01T00:00:00Z");
    // The compact form (printer.go): `<>` where is_reply is unknown.
    let out = verdict(&[
        "run",
        "--backend",
        "rbpf",
        "--flows",
        "compact",
        "scenarios/cilium/deny-l4-beats-l3-allow.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines().any(|l| l.ends_with(
            "x/b:33000 (ID:257) <> x/a:80 (ID:256) policy-verdict:L3-L4 INGRESS DENIED (TCP Flags: SYN)"
        )),
        "{text}"
    );
}

/// Replies (parser.go decodeTrafficDirection, printer.go): a reply keeps its connection's
/// direction with `trace_reason: REPLY` and `is_reply: true`, and the compact line swaps the
/// sides with `<-`; traffic from outside the cluster shows reserved identities by name.
#[test]
fn reply_flows_and_reserved_identities_read_as_hubble_prints_them() {
    let out = verdict(&[
        "run",
        "--backend",
        "rbpf",
        "--flows",
        "json",
        "scenarios/conntrack/replies-skip-egress-default-deny.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let reply = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|f| f["flow"]["trace_reason"] == "REPLY")
        .expect("a reply trace");
    assert_eq!(reply["flow"]["is_reply"], true, "{reply}");
    assert_eq!(reply["flow"]["reply"], true, "{reply}");
    assert_eq!(reply["flow"]["traffic_direction"], "INGRESS", "{reply}");
    let out = verdict(&[
        "run",
        "--backend",
        "rbpf",
        "--flows",
        "compact",
        "scenarios/conntrack/replies-skip-egress-default-deny.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.lines().any(|l| l.contains(" <- ")), "{text}");
    let out = verdict(&[
        "run",
        "--backend",
        "rbpf",
        "--flows",
        "compact",
        "scenarios/cilium/",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("(world)"), "no world identity by name");
    assert!(
        !text.contains("(ID:2)") && !text.contains("(ID:1)"),
        "reserved identities by number"
    );
}

// spec §7 #10: the deny key (client, TCP/80) next to the L3-only allow; 80/TCP is 181 with
// match type L3-L4 and 81/TCP is allowed with L3-Only.
#[test]
fn policy_get_and_explain_show_the_deny_example() {
    let s = "scenarios/cilium/deny-l4-beats-l3-allow.yaml";
    let out = verdict(&["policy", "get", s, "x/a"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // cilium-dbg/cmd/bpf_policy_get.go formatMap through tabwriter(5, 0, 3, ' '): no leading
    // space, ten columns, denies first (PolicyEntriesDump.Less), one label per line.
    let header = text.lines().next().unwrap();
    assert_eq!(
        header,
        "POLICY   DIRECTION   LABELS (source:key[=value])                                        PORT/PROTO   PROXY PORT   AUTH TYPE   BYTES   PACKETS   PREFIX   COOKIE"
    );
    let deny = text.lines().nth(1).expect("a first row");
    let cells: Vec<&str> = deny.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "Deny",
            "Ingress",
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x",
            "80/TCP",
            "NONE",
            "disabled",
            "-",
            "-",
            "24",
            "0"
        ],
        "{text}"
    );
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .trim_start()
            .starts_with("k8s:io.cilium.k8s.namespace.labels.ns=x"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("entries of 16384"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -n: the IDENTITY column; the endpoint by its ID (x/a is endpoint 1).
    let out = verdict(&["policy", "get", s, "1", "-n"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("POLICY   DIRECTION   IDENTITY   PORT/PROTO   PROXY PORT"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["Allow", "Ingress", "257", "ANY", "NONE", "disabled", "-", "-", "0", "0"]),
        "{text}"
    );
    // -o json: the PolicyEntriesDump fields, ports in network byte order.
    let out = verdict(&["policy", "get", s, "x/a", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let deny = &v[0];
    assert_eq!(deny["Key"]["Identity"], 257);
    assert_eq!(deny["Key"]["Nexthdr"], 6);
    assert_eq!(deny["Key"]["Prefixlen"], 64);
    assert_eq!(
        deny["Key"]["DestPortNetwork"],
        u16::from_ne_bytes(80u16.to_be_bytes())
    );
    assert_eq!(deny["Flags"], 1 | (24 << 3));
    assert_eq!(deny["Packets"], u64::MAX);
    let out = verdict(&["explain", s, "--from", "x/b", "--to", "x/a", "--port", "80"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("the L3 lookup found a deny"), "{text}");
    assert!(
        text.contains("=> deny POLICY_DENY ingress match=L3-L4"),
        "{text}"
    );
    let out = verdict(&["explain", s, "--from", "x/b", "--to", "x/a", "--port", "81"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("=> allow ingress match=L3-Only"), "{text}");
    let out = verdict(&["policy", "get", s, "x/a", "--after-step", "9"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Scenario names are unique within a suite (scenario format); `verdict run` fails the second
/// file with a duplicate name rather than letting both share one golden file.
#[test]
fn duplicate_scenario_names_fail() {
    let dir = std::env::temp_dir().join(format!("verdict-cli-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "name: same\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}, {name: x/b}]\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: allow}\n";
    std::fs::write(dir.join("one.yaml"), text).unwrap();
    std::fs::write(dir.join("two.yaml"), text).unwrap();
    let out = verdict(&["run", "--backend", "oracle", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("duplicate scenario name \"same\""), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// One flag name for the backend list everywhere (`--backends` its alias); a bad list is a
/// usage error reported once, before any scenario runs, and duplicates are refused.
#[test]
fn backend_lists_are_checked_once_before_anything_runs() {
    let o = verdict(&["run", "--backend", "foo,oracle", "scenarios/cilium"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "", "nothing ran");
    assert_eq!(
        stderr(&o).matches("unknown backend").count(),
        1,
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    for args in [
        &["run", "--backends", "oracle,oracle", "scenarios/cilium"][..],
        &[
            "diff",
            "--backend",
            "oracle,model,oracle",
            "scenarios/cilium",
        ],
        &["fuzz", "--backends", "model,model", "--cases", "1"],
        &["churn", "--backend", "oracle,oracle", "--events", "1"],
    ] {
        let o = verdict(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("is named twice"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// `--flows`: the flows alone on stdout (any report format on stderr), and a clear usage
/// error when no backend emits flows.
#[test]
fn flows_alone_on_stdout_and_refused_without_a_datapath() {
    let s = "scenarios/cilium/deny-l4-beats-l3-allow.yaml";
    let o = verdict(&["run", "--format", "json", "--flows", "json", s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.lines().count() >= 10, "{out}");
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a flow per line");
        assert!(v["flow"]["verdict"].is_string(), "{l}");
    }
    let report: serde_json::Value = serde_json::from_str(&stderr(&o)).expect("JSON report");
    assert_eq!(report["passed"], 1);
    let o = verdict(&["run", "--backend", "oracle", "--flows", "json", s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --flows needs a datapath backend"),
        "{}",
        stderr(&o)
    );
}

/// Errors never echo more than 200 characters of a bad value.
#[test]
fn long_bad_values_are_clipped_in_errors() {
    let long = "A".repeat(5000);
    let t = run_bad_policy(
        "long-entity.yaml",
        &format!("      ingress:\n        - fromEntities: [{long}]\n"),
    );
    assert!(t.contains("long-entity.yaml:12:"), "{t}");
    assert!(t.contains("(4800 more characters)"), "{t}");
    assert!(t.lines().all(|l| l.len() < 600), "{t}");
    let o = verdict(&[
        "explain",
        "scenarios/cilium/deny-l4-beats-l3-allow.yaml",
        "--from",
        &long,
        "--to",
        "x/a",
        "--port",
        "80",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: unknown endpoint"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).len() < 600, "{}", stderr(&o));
}

/// A missing or differing golden file fails the run in text and JSON alike, says how to
/// bless; `--bless` says what it wrote.
#[test]
fn golden_status_is_reported_and_bless_says_what_it_wrote() {
    let dir = std::env::temp_dir().join(format!("verdict-cli-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let g = dir.to_str().unwrap();
    let s = "scenarios/cilium/deny-l4-beats-l3-allow.yaml";
    let o = verdict(&["run", "--backend", "oracle", "--golden", g, s]);
    assert_eq!(o.status.code(), Some(1));
    let t = stdout(&o);
    assert!(t.starts_with("FAIL cilium-deny-l4-beats-l3-allow"), "{t}");
    assert!(
        t.contains(&format!(
            "create it with: verdict run --backend oracle --golden {g} --bless {s}"
        )),
        "{t}"
    );
    let o = verdict(&[
        "run",
        "--backend",
        "oracle",
        "--format",
        "json",
        "--golden",
        g,
        s,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["failed"], 1);
    assert_eq!(v["scenarios"][0]["passed"], false);
    assert_eq!(v["scenarios"][0]["golden"]["status"], "missing");
    let o = verdict(&["run", "--backend", "oracle", "--golden", g, "--bless", s]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    assert!(
        t.contains(&format!(
            "  wrote {g}/cilium-deny-l4-beats-l3-allow.txt (new)"
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "blessed 1 golden files in {g}: 1 new, 0 updated, 0 unchanged"
        )),
        "{t}"
    );
    let path = dir.join("cilium-deny-l4-beats-l3-allow.txt");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("extra line\n");
    std::fs::write(&path, text).unwrap();
    let o = verdict(&[
        "run",
        "--backend",
        "oracle",
        "--format",
        "json",
        "--golden",
        g,
        s,
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["scenarios"][0]["golden"]["status"], "differs");
    assert!(v["scenarios"][0]["golden"]["diff"]
        .as_str()
        .unwrap()
        .contains("-extra line"));
    let o = verdict(&["run", "--backend", "oracle", "--golden", g, s]);
    assert!(
        stdout(&o).contains("bless it after reading the diff: verdict run"),
        "{}",
        stdout(&o)
    );
    // Structured expectations and outcomes; an ICMP probe's type is not a port.
    let o = verdict(&[
        "run",
        "--backend",
        "oracle",
        "--format",
        "json",
        "scenarios/cilium/icmp-type-rules.yaml",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let p = &v["scenarios"][0]["steps"][0]["probes"][0];
    assert!(
        p.get("icmp_type").is_some() && p.get("port").is_none(),
        "{p}"
    );
    assert!(p["expected"]["verdict"].is_string(), "{p}");
    assert!(p["results"]["oracle"]["verdict"].is_string(), "{p}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Validates a JUnit report against tests/data/junit.xsd with xmllint (loudly skipped when
/// xmllint is missing; tools/test.sh installs it).
fn validate_junit(path: &Path) {
    match std::process::Command::new("xmllint")
        .args(["--noout", "--schema", "tests/data/junit.xsd"])
        .arg(path)
        .current_dir(common::root())
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "{}: {}",
            path.display(),
            common::text(&o)
        ),
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

/// `--junit` on run, diff and fuzz: valid against the JUnit schema, a case per scenario and
/// per failing step, and byte-identical across runs once the times are blanked.
#[test]
fn junit_reports_are_valid_and_deterministic() {
    let dir = std::env::temp_dir().join(format!("verdict-cli-junit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let failing = dir.join("failing.yaml");
    std::fs::write(
        &failing,
        "name: wrong\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a}, {name: x/b}]\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: deny}\n",
    )
    .unwrap();
    let blank = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap();
        let re_time = |s: &str| {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find(" time=\"") {
                out.push_str(&rest[..i + 7]);
                rest = &rest[i + 7..];
                let j = rest.find('"').unwrap();
                rest = &rest[j..];
            }
            out.push_str(rest);
            out
        };
        re_time(&t)
    };
    let run_xml = dir.join("run.xml");
    let args = [
        "run",
        "--backend",
        "oracle,model",
        "--junit",
        run_xml.to_str().unwrap(),
        "scenarios/cilium/deny-l4-beats-l3-allow.yaml",
        failing.to_str().unwrap(),
    ];
    let o = verdict(&args);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    validate_junit(&run_xml);
    let first = blank(&run_xml);
    assert!(
        first.contains(r#"<testsuites name="verdict run" tests="3" failures="2" errors="0""#),
        "{first}"
    );
    assert!(
        first.contains(r#"<testcase name="wrong: step 1 expect" classname=""#),
        "{first}"
    );
    assert!(
        first.contains(r#"<failure message="1 probes failed or disagree" type="expectation">"#),
        "{first}"
    );
    verdict(&args);
    assert_eq!(blank(&run_xml), first, "deterministic apart from times");

    let diff_xml = dir.join("diff.xml");
    let o = verdict(&[
        "diff",
        "--backend",
        "oracle,model",
        "--junit",
        diff_xml.to_str().unwrap(),
        "scenarios/cilium/deny-l4-beats-l3-allow.yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    validate_junit(&diff_xml);
    assert!(blank(&diff_xml)
        .contains(r#"<testsuites name="verdict diff" tests="1" failures="0" errors="0""#));

    let fuzz_xml = dir.join("fuzz.xml");
    let o = verdict(&[
        "fuzz",
        "--seed",
        "3",
        "--cases",
        "2",
        "--backend",
        "oracle,model",
        "--out-dir",
        dir.to_str().unwrap(),
        "--junit",
        fuzz_xml.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    validate_junit(&fuzz_xml);
    assert!(blank(&fuzz_xml).contains(r#"<testsuites name="verdict fuzz" tests="2""#));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs verdict with a deadline: a hang is a test failure, not a stuck suite.
fn verdict_within(args: &[&str], secs: u64) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running verdict");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("waiting").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("verdict {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Issue 14: `file:` references were read without limit (`/dev/zero` took 4 GB, a FIFO
/// blocked forever). Only regular files are read, up to a cap; anything else is an error
/// naming the scenario, the field and the path.
#[test]
fn file_references_read_regular_files_only_with_a_size_cap() {
    let dir = std::env::temp_dir().join(format!("verdict-fileref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("policy.fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = dir.join("big.yaml");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&big).unwrap();
        let line = "# padding padding padding padding padding padding padding padding\n";
        let n = verdict_sim::fsread::MAX_MANIFEST_BYTES / line.len() + 1;
        for _ in 0..n {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    for (target, what) in [
        (
            "/dev/zero",
            "/dev/zero is a character device: only regular files are read",
        ),
        (
            fifo.to_str().unwrap(),
            "is a FIFO: only regular files are read",
        ),
        (
            dir.to_str().unwrap(),
            "is a directory: only regular files are read",
        ),
        (big.to_str().unwrap(), "more than the limit of 16777216"),
    ] {
        let scenario = dir.join("s.yaml");
        std::fs::write(
            &scenario,
            format!(
                "name: fileref\ncluster:\n  nodes: [node-1]\n  namespaces: [{{name: x}}]\n  pods: [{{name: x/a, labels: {{pod: a}}}}]\npolicies:\n- file: {target}\nsteps: []\n"
            ),
        )
        .unwrap();
        let o = verdict_within(
            &["run", "--backend", "oracle", scenario.to_str().unwrap()],
            60,
        );
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(2), "{target}: {t}");
        assert!(t.contains(what) && t.contains("s.yaml"), "{target}: {t}");
        assert!(!t.contains("panicked"), "{t}");
        // `verdict check` on the path itself.
        let o = verdict_within(&["check", target], 60);
        let t = common::text(&o);
        assert_ne!(o.status.code(), Some(0), "{target}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14: 16 or more nodes under a 4 GB address-space limit aborted (`memory allocation
/// of 286146688 bytes failed`, SIGABRT): rbpf laid out every map's values up front. They
/// are laid out on demand now (and failing to grow them is an error naming the map), so 20
/// nodes run under `setrlimit(RLIMIT_AS, 4 GiB)`.
#[test]
fn twenty_nodes_run_on_rbpf_under_a_4_gb_address_space_limit() {
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    let mut s = String::from("name: twenty-nodes\ncluster:\n  nodes: [");
    s.push_str(
        &(1..=20)
            .map(|i| format!("node-{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n  namespaces: [{name: x}]\n  pods:\n");
    for i in 1..=20 {
        s.push_str(&format!(
            "  - {{name: x/p{i}, node: node-{i}, labels: {{pod: p{i}}}}}\n"
        ));
    }
    // Default allow without policies (Kubernetes NetworkPolicy docs: "By default, pods are
    // non-isolated; they accept traffic from any source").
    s.push_str("steps:\n- expect:\n  - {from: x/p1, to: x/p20, port: 80, protocol: TCP, verdict: allow}\n  - {from: x/p20, to: x/p1, port: 80, protocol: TCP, verdict: allow}\n");
    let p = tmp("twenty-nodes.yaml", &s);
    let limited = |bytes: u64| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_verdict"));
        c.args(["run", "--backend", "rbpf", p.to_str().unwrap()])
            .current_dir(common::root());
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            c.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.output().expect("running verdict")
    };
    let o = limited(4 << 30);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("1 passed"), "{t}");
}

/// The genworld twin (issue 14): `verdict gen world NS PODS NPOL DIR SEED` writes the objects
/// tools/genworld.py (a copy of ../shared/tools/genworld.py) writes for the same arguments,
/// compared as JSON values; its world.yaml replays on oracle, model and rbpf, and they agree.
#[test]
fn gen_world_is_the_twin_of_genworld_py() {
    use std::process::Command;
    if Command::new("python3").arg("--version").output().is_err() {
        println!("SKIP genworld twin: python3 is not on PATH");
        eprintln!("SKIP genworld twin: python3 is not on PATH");
        return;
    }
    let dir = std::env::temp_dir().join(format!("verdict-genworld-{}", std::process::id()));
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    // Small pools (sample's pool path) and 30 namespaces (its set path, n > 21).
    for (ns, pods, npol, seed) in [(3, 7, 25, 5), (30, 2, 60, 1)] {
        let args = [ns.to_string(), pods.to_string(), npol.to_string()];
        let py = dir.join(format!("py-{seed}"));
        let rs = dir.join(format!("rs-{seed}"));
        let o = Command::new("python3")
            .arg(common::root().join("tools/genworld.py"))
            .args(&args)
            .arg(&py)
            .arg(seed.to_string())
            .output()
            .expect("running genworld.py");
        assert!(o.status.success(), "{}", common::text(&o));
        let mut a: Vec<&str> = vec!["gen", "world"];
        a.extend(args.iter().map(String::as_str));
        let rs_s = rs.to_str().unwrap().to_string();
        let seed_s = seed.to_string();
        a.push(&rs_s);
        a.push(&seed_s);
        let o = verdict(&a);
        assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
        assert_eq!(read(&py.join("probe.json")), read(&rs.join("probe.json")));
        let names = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d.join("policies"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&py), names(&rs));
        assert_eq!(names(&rs).len(), npol);
        for f in names(&py) {
            assert_eq!(
                read(&py.join("policies").join(&f)),
                read(&rs.join("policies").join(&f)),
                "{f} (seed {seed})"
            );
        }
    }
    let o = verdict(&[
        "run",
        "--backend",
        "oracle,model,rbpf",
        dir.join("rs-5/world.yaml").to_str().unwrap(),
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("441 unchecked compared") && t.contains("0 disagreements"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
