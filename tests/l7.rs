//! L7 scenarios (issue 10) on the backends that model the proxy redirect today: the oracle
//! (L7 decided straight from the rules) and the model (redirects from its map state, L7 rules
//! from its selector cache), both through the same proxy model. They live in tests/data/l7
//! rather than scenarios/ until the BPF programs report redirects (lane l7dp): scenarios/
//! must pass on every default backend. Each file cites the Cilium source of its verdicts.

use std::path::Path;

use verdict::backends;
use verdict_sim::engine;
use verdict_sim::report;

fn run(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/l7")
        .join(file);
    let names = vec!["oracle".to_string(), "model".to_string()];
    let r = engine::run_file(&path, &names, &backends::factory);
    assert!(r.passed(), "{}", report::text(&r));
    assert!(r.probe_count() > 0);
}

#[test]
fn starwars_http() {
    run("starwars-http.yaml");
}

#[test]
fn dns_egress() {
    run("dns-egress.yaml");
}

#[test]
fn http_rules_merge() {
    run("http-merge.yaml");
}

/// Bad L7 probes are errors naming the probe, never a silent pass.
#[test]
fn bad_l7_probes_are_located_errors() {
    let head = "name: t\ncluster:\n  namespaces: [{name: x}]\n  pods:\n    - {name: x/a}\n    - {name: x/b}\n";
    let cases = [
        (
            format!("{head}steps:\n  - expect:\n      - {{from: x/a, dns: a.com, verdict: allow}}\n"),
            "needs the cluster's DNS server",
        ),
        (
            format!("{head}  dns:\n    - {{name: dns, pod: x/b}}\nsteps:\n  - expect:\n      - {{from: x/a, to: x/b, dns: a.com, verdict: allow}}\n"),
            "leave out `to`",
        ),
        (
            format!("{head}steps:\n  - expect:\n      - {{from: x/a, to: x/b, port: 80, protocol: UDP, http: {{}}, verdict: allow}}\n"),
            "an http: probe is a TCP connection",
        ),
        (
            format!("{head}  dns:\n    - {{name: a.com, ips: [1.2.3.4], pod: x/b}}\nsteps: []\n"),
            "either `ips` or the server `pod`",
        ),
        (
            format!("{head}steps:\n  - expect:\n      - {{from: x/a, port: 80, protocol: TCP, verdict: allow}}\n"),
            "missing field `to`",
        ),
    ];
    for (text, want) in cases {
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
}
