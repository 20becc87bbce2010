//! End-to-end checks of the `verdict` binary: malformed input gives an error naming the file,
//! the line and the field (never a panic), and output is byte-identical across runs.

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
    assert_eq!(out.status.code(), Some(1), "{text}");
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
    assert_eq!(out.status.code(), Some(1), "{text}");
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
    assert_eq!(out.status.code(), Some(1), "{text}");
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
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("x/zz"), "{text}");
    let out = verdict(&["run", "--backend", "teleporter", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("unknown backend"), "{text}");
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
    let good = Path::new("scenarios/k8s/default-deny-ingress.yaml");
    let out = verdict(&[
        "check",
        "--scenario",
        good.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    // A scenario file is not a policy file: check must say so rather than pass silently.
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn run_output_is_byte_identical_across_runs() {
    let a = verdict(&["run", "--format", "json", "scenarios/"]);
    let b = verdict(&["run", "--format", "json", "scenarios/"]);
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stdout)
    );
    assert_eq!(a.stdout, b.stdout);
    // The text report renders the same results; the suites with flows, propagation windows
    // and connections are enough to check its rendering is deterministic too (all of
    // `scenarios/` twice more costs minutes in a debug build).
    let text = [
        "run",
        "scenarios/cilium",
        "scenarios/propagation",
        "scenarios/conntrack",
    ];
    let a = verdict(&text);
    let b = verdict(&text);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(a.stdout, b.stdout);
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
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let flows: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each flow line is JSON"))
        .collect();
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
}

// spec §7 #10: the deny key (client, TCP/80) next to the L3-only allow; 80/TCP is 181 with
// match type L3-L4 and 81/TCP is allowed with L3-Only.
#[test]
fn policy_get_and_explain_show_the_deny_example() {
    let s = "scenarios/cilium/deny-l4-beats-l3-allow.yaml";
    let out = verdict(&["policy", "get", s, "x/a"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let deny = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Deny"))
        .expect("a deny row");
    assert!(
        deny.contains("Ingress") && deny.contains("80/TCP") && deny.trim_end().ends_with("24"),
        "{text}"
    );
    assert!(
        text.lines().map(str::trim).any(|l| l.starts_with("Allow")
            && l.contains("Ingress")
            && l.contains(" 257 ")
            && l.contains("ANY")),
        "{text}"
    );
    assert!(text.contains("entries of 16384"), "{text}");
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
