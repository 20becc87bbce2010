//! L7 probes (issue 10) that must be errors. The L7 scenarios themselves live in scenarios/l7/
//! and run in tests/scenarios.rs on every backend (oracle, model, rbpf, kernel), now that the
//! BPF programs report proxy redirects; each file cites the Cilium source of its verdicts.

use std::path::Path;

use verdict::backends;
use verdict_sim::engine;

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
