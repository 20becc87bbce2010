//! HTTP decisions per second in the proxy model (issue 10): the rules Envoy would hold for
//! x/client -> x/api on 80/TCP in `scenarios/l7/http-header-matches.yaml` (five HTTP rules:
//! method and path regexes, a presence header, header matches with and without a mismatch
//! action, a host regex), taken from the oracle, and a fixed mix of requests that pass and
//! fail each of them.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use verdict_sim::cluster::{Peer, PodName, Protocol};
use verdict_sim::oracle::{self, Flow};
use verdict_sim::proxy::{self, HttpRequest, L7Request};
use verdict_sim::{engine, scenario};

fn bench_http(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let loaded = scenario::load(&root.join("scenarios/l7/http-header-matches.yaml"))
        .expect("scenario loads");
    let world = engine::build_world(&loaded).expect("world builds");
    let flow = Flow {
        src: Peer::Pod(PodName::parse("x/client").unwrap()),
        dst: Peer::Pod(PodName::parse("x/api").unwrap()),
        protocol: Protocol::Tcp,
        dport: 80,
    };
    let d = oracle::decide(&world.cluster, &world.repo, &flow);
    let rules = d
        .redirects()
        .into_iter()
        .map(|(_, _, r)| r.to_vec())
        .next()
        .expect("the flow is redirected");
    let req = |method: &str, path: &str, host: &str, headers: &[(&str, &str)]| {
        L7Request::Http(HttpRequest {
            method: method.into(),
            path: path.into(),
            host: host.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    };
    let requests = [
        req("GET", "/traced", "x/api", &[("X-Trace", "1")]),
        req("GET", "/traced", "x/api", &[]),
        req("GET", "/tenant", "x/api", &[("X-Tenant", "blue")]),
        req("GET", "/tenant", "x/api", &[("X-Tenant", "red")]),
        req("POST", "/logged", "x/api", &[]),
        req("GET", "/hosted", "api.example.com", &[("Accept", "*/*")]),
        req("GET", "/hosted", "apixexample.com", &[]),
        req(
            "DELETE",
            "/admin/users/42",
            "x/api",
            &[("Authorization", "Bearer t")],
        ),
    ];
    let allowed = requests
        .iter()
        .filter(|r| proxy::decide(&rules, r).allowed())
        .count();
    assert_eq!(allowed, 4, "the scenario's verdicts");
    let mut g = c.benchmark_group("proxy");
    g.throughput(Throughput::Elements(requests.len() as u64));
    g.bench_function("http_decide", |b| {
        b.iter(|| {
            for r in &requests {
                black_box(proxy::decide(black_box(&rules), black_box(r)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_http);
criterion_main!(benches);
