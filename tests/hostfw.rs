//! Host firewall and node-label identities through the CLI (issue 11): the agent refuses
//! `fromNodes` without `--enable-node-selector-labels`, `policy get` and `explain` show the
//! host endpoint, and Hubble names the host's trace points.

mod common;

use std::path::PathBuf;

fn tmp(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("verdict-hostfw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write scenario");
    p
}

/// `pkg/policy/api/rule_validation.go` `ErrFromToNodesRequiresNodeSelectorOption`: the
/// agent refuses fromNodes/toNodes unless `--enable-node-selector-labels` is set; the error
/// names the file, the policy and the flag.
#[test]
fn from_nodes_needs_enable_node_selector_labels() {
    let body = "name: t
cluster:
  namespaces: [{name: x}]
  pods: [{name: x/a, labels: {app: a}}]
policies:
- apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: p, namespace: x}
  spec:
    endpointSelector: {}
    ingress:
    - fromNodes: [{matchLabels: {role: cp}}]
";
    let p = tmp("from-nodes.yaml", body);
    let out = common::verdict(&["run", "--backend", "oracle", p.to_str().unwrap()]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("from-nodes.yaml"), "{text}");
    assert!(text.contains("policies[0]"), "{text}");
    assert!(
        text.contains("FromNodes/ToNodes rules can only be applied when the \"enable-node-selector-labels\" flag is set"),
        "{text}"
    );
    // With the flag the same file loads and runs.
    let p = tmp(
        "from-nodes-on.yaml",
        &body.replacen(
            "cluster:",
            "agent: {enable-node-selector-labels: true}\ncluster:",
            1,
        ),
    );
    let out = common::verdict(&["run", "--backend", "oracle", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
}

/// `policy get SCENARIO host:<node>` prints the host endpoint's map (no localhost allow);
/// with the host firewall off there is none, and the error says how to turn it on.
#[test]
fn policy_get_and_explain_show_the_host_endpoint() {
    let demo = "scenarios/host/demo-host-policy.yaml";
    let out = common::verdict(&["policy", "get", demo, "host:node-1"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "(host:node-1) identity 1 on node-1: ingress policy enabled, egress policy disabled"
        ),
        "{text}"
    );
    assert!(text.contains("22/TCP"), "{text}");
    let out = common::verdict(&[
        "policy",
        "get",
        "scenarios/host/host-firewall-off.yaml",
        "host:node-1",
    ]);
    let text = common::text(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("enable-host-firewall: true"), "{text}");
    let out = common::verdict(&[
        "explain",
        demo,
        "--from",
        "admin",
        "--to",
        "host:node-1",
        "--port",
        "21",
    ]);
    let text = common::text(&out);
    assert!(
        text.contains("ingress on host:node-1 (endpoint 32768)"),
        "{text}"
    );
    assert!(text.contains("=> deny POLICY_DENIED ingress"), "{text}");
}

/// Hubble flows of the host programs: TO_HOST / FROM_HOST trace points (flow.proto
/// TraceObservationPoint 2 and 7), "to-host" / "from-host" in the compact form.
#[test]
fn hubble_names_the_host_trace_points() {
    let out = common::verdict(&[
        "run",
        "--backend",
        "rbpf",
        "--flows",
        "json",
        "scenarios/host/host-egress.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"trace_observation_point\":\"FROM_HOST\""),
        "{text}"
    );
    assert!(
        text.contains("\"trace_observation_point\":\"TO_HOST\""),
        "{text}"
    );
}
