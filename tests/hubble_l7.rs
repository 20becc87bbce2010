//! Hubble L7 flows (issue 10 item 5): the records `verdict::hubble` writes for the L7
//! proxies' access-log entries, checked against what Hubble documents and does:
//! the compact lines of Cilium's docs (`Documentation/observability/visibility.rst`,
//! `Documentation/network/servicemesh/default-deny-ingress-policy.rst`,
//! `Documentation/observability/hubble/hubble-cli.rst`), the JSON of
//! `pkg/hubble/parser/seven` (`Decode`, `decodeHTTP`, `decodeDNS`, the summaries), and every
//! printed field against flow.proto's field list (`tests/common/flowproto.rs`: `Layer7`,
//! `HTTP`, `HTTPHeader`, `DNS`).

mod common;

use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;
use verdict::hubble::{
    dns_exchange, http_exchange, l7_flow_record, DnsExchange, HttpExchange, L7Event,
};
use verdict_sim::cluster::Protocol;
use verdict_sim::engine::{self, FlowRecord, World};
use verdict_sim::scenario;
use verdict_sim::verdict::Direction;

/// The pods of the docs' examples, with the docs' names.
const CLUSTER: &str = r#"name: hubble-l7-docs
description: Test input of tests/hubble_l7.rs.
cluster:
  namespaces:
    - {name: default}
    - {name: kube-system}
  pods:
    - {name: default/testapp-5b9cc645cb-4slbs, ip: 10.0.0.10, labels: {app: testapp}}
    - {name: kube-system/coredns-787d4945fb-bdmdq, ip: 10.0.0.53, labels: {k8s-app: kube-dns}}
    - {name: default/echo-594485b8dc-fp57l, ip: 10.0.0.20, labels: {app: echo}}
    - {name: default/tiefighter, ip: 10.0.0.30, labels: {org: empire, class: tiefighter}}
    - {name: default/deathstar-c74d84667-cx5kp, ip: 10.0.0.40, labels: {org: empire, class: deathstar}}
steps: []
"#;

fn world() -> World {
    let loaded =
        scenario::parse(Path::new("hubble-l7.yaml"), CLUSTER).unwrap_or_else(|e| panic!("{e}"));
    engine::world_after(&loaded, Some(0)).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A compact line without its timestamp (`Jan  1 00:00:00.000: `), as the docs print them.
fn untimed(r: &FlowRecord) -> &str {
    r.compact
        .split_once(": ")
        .map(|(_, l)| l)
        .unwrap_or(&r.compact)
}

fn render(w: &World, evs: &[L7Event]) -> Vec<FlowRecord> {
    evs.iter().map(|e| l7_flow_record(w, None, e)).collect()
}

fn dns_lookup(w: &World, allowed: bool) -> Vec<FlowRecord> {
    render(
        w,
        &dns_exchange(&DnsExchange {
            time_ns: 1_000_000_000,
            node: "node-1".into(),
            protocol: Protocol::Udp,
            client: (ip("10.0.0.10"), 45240, 26450),
            server: (ip("10.0.0.53"), 53, 9313),
            query: "web.default.svc.cluster.local.".into(),
            qtype: 1,
            allowed,
            rcode: 0,
            ips: vec![ip("10.96.118.37")],
            ttl: 30,
            cnames: Vec::new(),
        }),
    )
}

fn http_get(
    w: &World,
    allowed: bool,
    code: u16,
    headers: Vec<(String, String)>,
) -> Vec<FlowRecord> {
    render(
        w,
        &http_exchange(&HttpExchange {
            time_ns: 2_000_000_000,
            node: "node-1".into(),
            direction: Direction::Ingress,
            client: (ip("10.0.0.10"), 33044, 26450),
            server: (ip("10.0.0.20"), 8080, 32531),
            method: "GET".into(),
            url: "http://web/".into(),
            headers,
            allowed,
            code,
        }),
    )
}

/// Documentation/observability/visibility.rst, lines 80-81 (a DNS lookup through the DNS
/// proxy) and 82 (an HTTP request; the docs' response took 4 ms, the simulation has no
/// latency, so that line reads 0ms here).
#[test]
fn compact_lines_match_the_visibility_docs() {
    let w = world();
    let dns = dns_lookup(&w, true);
    assert_eq!(
        dns.iter().map(untimed).collect::<Vec<_>>(),
        [
            "default/testapp-5b9cc645cb-4slbs:45240 (ID:26450) -> kube-system/coredns-787d4945fb-bdmdq:53 (ID:9313) dns-request proxy FORWARDED (DNS Query web.default.svc.cluster.local. A)",
            "default/testapp-5b9cc645cb-4slbs:45240 (ID:26450) <- kube-system/coredns-787d4945fb-bdmdq:53 (ID:9313) dns-response proxy FORWARDED (DNS Answer \"10.96.118.37\" TTL: 30 (Proxy web.default.svc.cluster.local. A))",
        ]
    );
    let http = http_get(&w, true, 200, Vec::new());
    assert_eq!(
        http.iter().map(untimed).collect::<Vec<_>>(),
        [
            "default/testapp-5b9cc645cb-4slbs:33044 (ID:26450) -> default/echo-594485b8dc-fp57l:8080 (ID:32531) http-request FORWARDED (HTTP/1.1 GET http://web/)",
            "default/testapp-5b9cc645cb-4slbs:33044 (ID:26450) <- default/echo-594485b8dc-fp57l:8080 (ID:32531) http-response FORWARDED (HTTP/1.1 200 0ms (GET http://web/))",
        ]
    );
}

/// A denied request: the request DROPPED, then the proxy's own 403 FORWARDED
/// (default-deny-ingress-policy.rst lines 44-45; cilium/proxy l7policy.cc
/// AccessFilter::decodeHeaders sends the 403 and logs the request as Denied; the Star Wars
/// demo in hubble-cli.rst line 72 shows the request line:
/// `default/tiefighter:42742 -> default/deathstar-c74d84667-cx5kp:80 http-request DROPPED
/// (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)`).
#[test]
fn a_denied_request_is_dropped_with_a_403_response() {
    let w = world();
    let r = render(
        &w,
        &http_exchange(&HttpExchange {
            time_ns: 3_000_000_000,
            node: "node-1".into(),
            direction: Direction::Ingress,
            client: (ip("10.0.0.30"), 42742, 258),
            server: (ip("10.0.0.40"), 80, 259),
            method: "PUT".into(),
            url: "http://deathstar.default.svc.cluster.local/v1/exhaust-port".into(),
            headers: Vec::new(),
            allowed: false,
            code: 0,
        }),
    );
    assert_eq!(
        r.iter().map(untimed).collect::<Vec<_>>(),
        [
            "default/tiefighter:42742 (ID:258) -> default/deathstar-c74d84667-cx5kp:80 (ID:259) http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)",
            "default/tiefighter:42742 (ID:258) <- default/deathstar-c74d84667-cx5kp:80 (ID:259) http-response FORWARDED (HTTP/1.1 403 0ms (PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port))",
        ]
    );
    let (req, resp) = (&r[0].json["flow"], &r[1].json["flow"]);
    assert_eq!(req["verdict"], "DROPPED");
    // An L7 drop has no drop reason (Decode sets DropReason 0, DROP_REASON_UNKNOWN).
    assert_eq!(req.get("drop_reason"), None);
    assert_eq!(req.get("drop_reason_desc"), None);
    assert_eq!(resp["verdict"], "FORWARDED");
    assert_eq!(resp["l7"]["http"]["code"], 403);
    assert_eq!(
        req["l7"]["http"].get("code"),
        None,
        "requests carry no code"
    );
}

/// A DNS query the rules refuse: one request record, DROPPED (pkg/fqdn/dnsproxy/proxy.go
/// answers REFUSED and calls NotifyOnDNSMsg once, for the request).
#[test]
fn a_refused_lookup_is_one_dropped_request() {
    let w = world();
    let r = dns_lookup(&w, false);
    assert_eq!(r.len(), 1);
    assert_eq!(
        untimed(&r[0]),
        "default/testapp-5b9cc645cb-4slbs:45240 (ID:26450) -> kube-system/coredns-787d4945fb-bdmdq:53 (ID:9313) dns-request proxy DROPPED (DNS Query web.default.svc.cluster.local. A)"
    );
}

/// The JSON as pkg/hubble/parser/seven builds it, field by field.
#[test]
fn json_records_follow_the_seven_parser() {
    let w = world();
    let headers = vec![
        ("x-token".to_string(), "abc".to_string()),
        ("accept".to_string(), "*/*".to_string()),
    ];
    let http = http_get(&w, true, 200, headers);
    let req = &http[0].json;
    assert_eq!(req["node_name"], "node-1");
    let f = &req["flow"];
    assert_eq!(f["Type"], "L7");
    assert_eq!(f["event_type"], serde_json::json!({"type": 129}));
    assert_eq!(f["traffic_direction"], "INGRESS");
    assert_eq!(f["is_reply"], false);
    assert_eq!(f.get("reply"), None, "false is omitted");
    assert_eq!(
        f["l4"],
        serde_json::json!({"TCP": {"source_port": 33044, "destination_port": 8080}})
    );
    assert_eq!(f["source"]["pod_name"], "testapp-5b9cc645cb-4slbs");
    assert_eq!(f["destination"]["namespace"], "default");
    // decodeHTTP: headers sorted by key, in net/http's canonical form.
    assert_eq!(
        f["l7"],
        serde_json::json!({"type": "REQUEST", "http": {"method": "GET", "url": "http://web/", "protocol": "HTTP/1.1",
            "headers": [{"key": "Accept", "value": "*/*"}, {"key": "X-Token", "value": "abc"}]}})
    );
    assert_eq!(f["Summary"], "HTTP/1.1 GET http://web/");
    let resp = &http[1].json["flow"];
    assert_eq!(resp["is_reply"], true);
    assert_eq!(resp["reply"], true);
    assert_eq!(
        resp["IP"]["source"], "10.0.0.20",
        "a response's source is the server"
    );
    assert_eq!(resp["l7"]["type"], "RESPONSE");
    assert_eq!(resp["l7"]["http"]["code"], 200);

    let dns = dns_lookup(&w, true);
    let q = &dns[0].json["flow"];
    assert_eq!(q["traffic_direction"], "EGRESS");
    assert_eq!(
        q["l4"],
        serde_json::json!({"UDP": {"source_port": 45240, "destination_port": 53}})
    );
    // decodeDNS: only query, observation_source and qtypes on a request.
    assert_eq!(
        q["l7"],
        serde_json::json!({"type": "REQUEST", "dns": {"query": "web.default.svc.cluster.local.", "observation_source": "proxy", "qtypes": ["A"]}})
    );
    let a = &dns[1].json["flow"];
    assert_eq!(
        a["l7"],
        serde_json::json!({"type": "RESPONSE", "dns": {"query": "web.default.svc.cluster.local.", "ips": ["10.96.118.37"],
            "ttl": 30, "observation_source": "proxy", "qtypes": ["A"], "rrtypes": ["A"]}})
    );
    // A NOERROR response prints no rcode (protojson omits 0).
    assert_eq!(a["l7"]["dns"].get("rcode"), None);
}

/// Every L7 record is a valid GetFlowsResponse by flow.proto's field list: names, types,
/// no zero values, declaration order, including the `l7` message and its `http`, `headers`
/// and `dns` sub-messages; and every field the docs promise for L7 shows up.
#[test]
fn every_l7_field_is_flow_proto_s() {
    let w = world();
    let p = common::flowproto::proto();
    let mut all = dns_lookup(&w, true);
    all.extend(dns_lookup(&w, false));
    all.extend(http_get(
        &w,
        true,
        200,
        vec![("X-Token".into(), "abc".into())],
    ));
    all.extend(http_get(&w, false, 0, Vec::new()));
    all.extend(odd_answers(&w));
    let mut seen = std::collections::BTreeSet::new();
    for r in &all {
        let line = serde_json::to_string(&r.json).unwrap();
        let problems = common::flowproto::check_line(&p, &line);
        assert!(problems.is_empty(), "{problems:?}\n  in {line}");
        collect(&r.json["flow"], "", &mut seen);
    }
    for f in [
        "Type",
        "l7.type",
        "l7.http.code",
        "l7.http.method",
        "l7.http.url",
        "l7.http.protocol",
        "l7.http.headers.key",
        "l7.http.headers.value",
        "l7.dns.query",
        "l7.dns.ips",
        "l7.dns.ttl",
        "l7.dns.cnames",
        "l7.dns.observation_source",
        "l7.dns.rcode",
        "l7.dns.qtypes",
        "l7.dns.rrtypes",
        "is_reply",
        "reply",
        "traffic_direction",
        "event_type.type",
        "Summary",
    ] {
        assert!(seen.contains(f), "{f} never printed: {seen:?}");
    }
}

/// An answer through a CNAME and an NXDOMAIN.
fn odd_answers(w: &World) -> Vec<FlowRecord> {
    let base = DnsExchange {
        time_ns: 4_000_000_000,
        node: "node-1".into(),
        protocol: Protocol::Udp,
        client: (ip("10.0.0.10"), 45241, 26450),
        server: (ip("10.0.0.53"), 53, 9313),
        query: "www.example.com.".into(),
        qtype: 1,
        allowed: true,
        rcode: 0,
        ips: vec![ip("93.184.216.34")],
        ttl: 60,
        cnames: vec!["example.com.".into()],
    };
    let nx = DnsExchange {
        query: "nope.example.com.".into(),
        rcode: 3,
        ips: Vec::new(),
        ttl: 0,
        cnames: Vec::new(),
        ..base.clone()
    };
    let mut v = render(w, &dns_exchange(&base));
    v.extend(render(w, &dns_exchange(&nx)));
    v
}

/// dnsSummary: CNAMEs after the IPs; a non-zero rcode by gopacket's name.
#[test]
fn dns_summaries_for_cnames_and_errors() {
    let w = world();
    let r = odd_answers(&w);
    assert_eq!(
        r[1].json["flow"]["Summary"],
        "DNS Answer \"93.184.216.34\" CNAMEs: \"example.com.\" TTL: 60 (Proxy www.example.com. A)"
    );
    assert_eq!(
        r[1].json["flow"]["l7"]["dns"]["rrtypes"],
        serde_json::json!(["CNAME", "A"])
    );
    assert_eq!(
        r[3].json["flow"]["Summary"],
        "DNS Answer RCode: Non-Existent Domain TTL: 0 (Proxy nope.example.com. A)"
    );
    assert_eq!(r[3].json["flow"]["l7"]["dns"]["rcode"], 3);
}

/// The dotted paths of every field in `v`.
fn collect(v: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                collect(x, &p, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, prefix, out)),
        _ => {}
    }
}

/// The records the engine emits: `verdict run --flows` on a datapath backend reports the
/// proxies' access-log records of every `http:`/`dns:` probe between the programs' events.
fn scenario_flows(file: &str) -> Vec<FlowRecord> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = engine::run_file(
        &root.join(file),
        &["rbpf".to_string()],
        &verdict::backends::factory,
    );
    assert!(r.passed(), "{}", verdict_sim::report::text(&r));
    r.steps
        .iter()
        .flat_map(|s| s.flows.iter())
        .filter(|(b, _)| b == "rbpf")
        .flat_map(|(_, f)| f.iter().cloned())
        .filter(|f| f.json["flow"]["Type"] == "L7")
        .collect()
}

/// The Star Wars demo at L7 (`Documentation/gettingstarted/demo.rst`): the landing request is
/// forwarded with the server's response; the exhaust-port request is dropped by the ingress
/// proxy, which answers 403 itself (`Documentation/network/servicemesh/default-deny-ingress-policy.rst`
/// shows that pair); a probe without a request and the xwing's drop at L3/L4 log nothing at L7.
#[test]
fn the_engine_emits_l7_records_for_http_probes() {
    let flows = scenario_flows("scenarios/l7/starwars-http.yaml");
    let lines: Vec<&str> = flows.iter().map(untimed).collect();
    assert_eq!(
        lines,
        [
            "default/tiefighter:33000 (ID:257) -> default/deathstar:80 (ID:256) http-request FORWARDED (HTTP/1.1 POST http://default%2Fdeathstar/v1/request-landing)",
            "default/tiefighter:33000 (ID:257) <- default/deathstar:80 (ID:256) http-response FORWARDED (HTTP/1.1 200 0ms (POST http://default%2Fdeathstar/v1/request-landing))",
            "default/tiefighter:33001 (ID:257) -> default/deathstar:80 (ID:256) http-request DROPPED (HTTP/1.1 PUT http://default%2Fdeathstar/v1/exhaust-port)",
            "default/tiefighter:33001 (ID:257) <- default/deathstar:80 (ID:256) http-response FORWARDED (HTTP/1.1 403 0ms (PUT http://default%2Fdeathstar/v1/exhaust-port))",
        ],
        "{lines:#?}"
    );
    let f = &flows[2].json["flow"];
    assert_eq!(f["traffic_direction"], "INGRESS");
    assert_eq!(f["event_type"]["type"], 129);
    assert_eq!(f["l7"]["type"], "REQUEST");
    assert_eq!(f["l7"]["http"]["method"], "PUT");
    assert!(f["l7"]["http"].get("code").is_none(), "{f}");
    assert!(f.get("drop_reason_desc").is_none(), "{f}");
    assert_eq!(flows[3].json["flow"]["l7"]["http"]["code"], 403);
    assert_eq!(flows[3].json["flow"]["is_reply"], true);
    let p = common::flowproto::proto();
    for r in &flows {
        let mut problems = Vec::new();
        p.check("GetFlowsResponse", &r.json, "", &mut problems);
        assert!(problems.is_empty(), "{problems:?}\n{}", r.json);
    }
}

/// DNS probes: an allowed lookup is a forwarded request and the zone's answer (NOERROR, its
/// addresses and TTL), a refused one only a dropped request (`pkg/fqdn/messagehandler`
/// `NotifyOnDNSMsg`), as `dns_exchange` writes them; the egress proxy is the observation point.
#[test]
fn the_engine_emits_l7_records_for_dns_probes() {
    let flows = scenario_flows("scenarios/l7/dns-egress.yaml");
    let lines: Vec<&str> = flows.iter().map(untimed).take(3).collect();
    assert_eq!(
        lines,
        [
            "default/mediabot:33000 (ID:256) -> kube-system/kube-dns:53 (ID:257) dns-request proxy FORWARDED (DNS Query api.github.com. A)",
            "default/mediabot:33000 (ID:256) <- kube-system/kube-dns:53 (ID:257) dns-response proxy FORWARDED (DNS Answer \"140.82.112.5\" TTL: 60 (Proxy api.github.com. A))",
            "default/mediabot:33001 (ID:256) -> kube-system/kube-dns:53 (ID:257) dns-request proxy FORWARDED (DNS Query api.github.com. A)",
        ],
        "{lines:#?}"
    );
    let refused: Vec<&str> = flows
        .iter()
        .map(untimed)
        .filter(|l| l.contains("github.com. A") && l.contains("DROPPED"))
        .collect();
    assert_eq!(
        refused,
        [
            "default/mediabot:33003 (ID:256) -> kube-system/kube-dns:53 (ID:257) dns-request proxy DROPPED (DNS Query github.com. A)",
            "default/mediabot:33004 (ID:256) -> kube-system/kube-dns:53 (ID:257) dns-request proxy DROPPED (DNS Query a.b.github.com. A)",
        ],
        "{refused:#?}"
    );
    let answer = &flows[1].json["flow"]["l7"]["dns"];
    assert_eq!(answer["ips"][0], "140.82.112.5");
    assert_eq!(answer["ttl"], 60);
    assert_eq!(answer["rrtypes"][0], "A");
    assert_eq!(flows[1].json["flow"]["traffic_direction"], "EGRESS");
}

/// `verdict replay` of L7 flows (issue 12): the flows `verdict run --flows json` writes for
/// the Star Wars demo at L7, HTTP records included, replay against the same scenario with no
/// disagreement; each HTTP request record is replayed as an `http:` probe carrying that
/// request (method, path and host from the record's url), the dropped one (the proxy's 403)
/// included, and every response is counted as not replayed. Likewise the DNS records of the
/// DNS-rules scenario, the refused lookups included.
#[test]
fn l7_flows_replay_as_l7_probes() {
    for (file, kind, requests) in [
        ("scenarios/l7/starwars-http.yaml", "http-request", 2),
        ("scenarios/l7/dns-egress.yaml", "dns-request", 6),
    ] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root.join(file);
        let r = engine::run_file(&path, &["rbpf".to_string()], &verdict::backends::factory);
        assert!(r.passed(), "{}", verdict_sim::report::text(&r));
        // The flows up to the first policy change (the replay's cluster is the scenario's
        // after step 1).
        let mut text = String::new();
        for (_, fl) in r.steps[0].flows.iter().filter(|(b, _)| b == "rbpf") {
            for f in fl {
                text.push_str(&serde_json::to_string(&f.json).unwrap());
                text.push('\n');
            }
        }
        let dir = std::env::temp_dir().join(format!("verdict-l7-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flows = dir.join(format!("{kind}.jsonl"));
        std::fs::write(&flows, text).unwrap();
        let names: Vec<String> = ["oracle", "model", "rbpf"].map(String::from).to_vec();
        let mut prep =
            verdict::replay::prepare(&path, Some(1), vec![], &names, &verdict::diff::contender)
                .unwrap_or_else(|e| panic!("{e}"));
        let rep =
            verdict::replay::replay_file(&flows, &mut prep, true).unwrap_or_else(|e| panic!("{e}"));
        let bad: Vec<String> = rep
            .rows
            .iter()
            .filter(|row| row.disagrees())
            .map(|row| {
                format!(
                    "line {} {} {}: {:?}",
                    row.line, row.observed, row.recorded, row.results
                )
            })
            .collect();
        assert_eq!(rep.counts.disagreements, 0, "{file}: {bad:#?}");
        assert_eq!(rep.backend_disagreements, 0, "{file}");
        let l7: Vec<_> = rep
            .rows
            .iter()
            .filter(|row| row.observed.starts_with(kind))
            .collect();
        assert_eq!(l7.len(), requests, "{file}: {:?}", rep.skipped);
        assert!(l7.iter().all(|row| row.scope.is_some()), "{file}");
        assert!(
            l7.iter().any(|row| row.recorded == "DROPPED"),
            "{file}: no refused request replayed"
        );
        assert!(
            rep.skipped
                .iter()
                .all(|s| s.why.contains("its request is the replayed line")),
            "{file}: {:?}",
            rep.skipped
        );
    }
}
