//! Mutual authentication (`authentication: {mode}`, the `authenticate` step) that must be an
//! error: each names the file and says why. The scenarios themselves live in scenarios/auth/
//! and run in tests/scenarios.rs on every backend.

use std::path::Path;

use verdict::backends;
use verdict_sim::engine;

#[test]
fn bad_authenticate_steps_are_located_errors() {
    let head = "name: t\ncluster:\n  nodes: [node-1]\n  namespaces: [{name: x}]\n  pods:\n    - {name: x/a}\n    - {name: x/b}\n  externals:\n    - {name: dns-google, ip: 8.8.8.8}\nsteps:\n";
    // Errors at run time (the engine's), naming the step.
    let run_cases = [
        ("  - authenticate: {from: x/a, to: x/nope}\n", "x/nope"),
        (
            "  - authenticate: {from: x/a, to: 8.8.8.8}\n",
            "not a pod: only pods have identities the auth manager authenticates",
        ),
        (
            "  - authenticate: {from: host:node-1, to: x/b}\n",
            "not a pod",
        ),
        (
            "  - authenticate: {from: dns-google, to: x/b}\n",
            "not a pod",
        ),
    ];
    for (step, want) in run_cases {
        let text = format!("{head}{step}");
        let loaded = verdict_sim::scenario::parse(Path::new("t.yaml"), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = engine::run(&loaded, &["oracle".to_string()], &backends::factory);
        let err = r
            .error
            .clone()
            .unwrap_or_else(|| panic!("no error for:\n{text}"));
        assert!(err.contains(want), "{err}\nexpected: {want}");
        assert!(err.contains("t.yaml"), "{err}");
    }
    // Errors at load time (the format's), with the line.
    let load_cases = [
        ("  - authenticate: {from: x/a}\n", "missing field `to`"),
        (
            "  - authenticate: {from: x/a, to: x/b, lifetime: forever}\n",
            "bad duration",
        ),
        (
            "  - authenticate: {from: x/a, to: x/b, mode: required}\n",
            "unknown field `mode`",
        ),
    ];
    for (step, want) in load_cases {
        let text = format!("{head}{step}");
        let e = verdict_sim::scenario::parse(Path::new("t.yaml"), &text)
            .err()
            .unwrap_or_else(|| panic!("no error for:\n{text}"))
            .to_string();
        assert!(e.contains(want), "{e}\nexpected: {want}");
        assert!(e.contains("t.yaml:11"), "{e}");
    }
}

/// The auth map entries an `authenticate` step writes (`pkg/auth` writes one per side): on
/// each pod's node, keyed by the two identities, the other pod's node id and auth type spire;
/// they expire with the lifetime, as `auth_lookup` compares them.
#[test]
fn authenticate_writes_both_sides_and_expires() {
    let text = "name: t\ncluster:\n  nodes: [node-1, node-2]\n  namespaces: [{name: x}]\n  pods:\n    - {name: x/a, node: node-1, labels: {app: a}}\n    - {name: x/b, node: node-2, labels: {app: b}}\npolicies:\n  - apiVersion: cilium.io/v2\n    kind: CiliumNetworkPolicy\n    metadata: {name: p, namespace: x}\n    spec:\n      endpointSelector: {matchLabels: {app: b}}\n      ingress:\n      - fromEndpoints: [{matchLabels: {app: a}}]\n        authentication: {mode: required}\nsteps:\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: deny, reason: AUTH_REQUIRED, direction: ingress}\n  - authenticate: {from: x/a, to: x/b, lifetime: 30s}\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: allow}\n      - {from: x/b, to: x/a, port: 80, protocol: TCP, verdict: allow}\n  - advance: 29s\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: allow}\n  - advance: 1s\n  - expect:\n      - {from: x/a, to: x/b, port: 80, protocol: TCP, verdict: deny, reason: AUTH_REQUIRED}\n";
    let loaded =
        verdict_sim::scenario::parse(Path::new("t.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    let backends: Vec<String> = ["oracle", "model", "rbpf"].map(String::from).to_vec();
    let r = engine::run(&loaded, &backends, &backends::factory);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.passed(), "{}", verdict_sim::report::golden(&r));
    let world = engine::world_after(&loaded, None).expect("world");
    let c = &world.cluster;
    let pod = |n: &str| c.pods.values().find(|p| p.name.to_string() == n).expect(n);
    let (a, b) = (pod("x/a"), pod("x/b"));
    let on = |node: &str| {
        c.auth
            .entries(node)
            .map(|(k, e)| (*k, e))
            .collect::<Vec<_>>()
    };
    use verdict_sim::auth::AuthKey;
    use verdict_sim::policy::AuthType;
    let exp = (30_000_000_000u64) >> 9;
    assert_eq!(
        on("node-1"),
        vec![(
            AuthKey {
                local: a.identity,
                remote: b.identity,
                remote_node_id: 2,
                auth_type: AuthType::Spire
            },
            exp
        )]
    );
    assert_eq!(
        on("node-2"),
        vec![(
            AuthKey {
                local: b.identity,
                remote: a.identity,
                remote_node_id: 1,
                auth_type: AuthType::Spire
            },
            exp
        )]
    );
}
