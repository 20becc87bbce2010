//! Oracle verdicts per second on a generated cluster of 1,000 pods in 50 namespaces with 200
//! policies (issue: foundation). The cluster, the policies and the probe order come from the
//! seeded generator, so every run measures the same work.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use verdict_sim::cluster::{Peer, Protocol};
use verdict_sim::oracle::{self, Flow};
use verdict_sim::{engine, gen, scenario};

fn flows(world: &engine::World, n: usize) -> Vec<Flow> {
    let pods: Vec<Peer> = world
        .cluster
        .pods
        .keys()
        .map(|p| Peer::Pod(p.clone()))
        .collect();
    let protocols = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
    // A fixed LCG walk over pod pairs and ports: deterministic and spread out.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = (x >> 33) as usize % pods.len();
            let b = (x >> 13) as usize % pods.len();
            Flow {
                src: pods[a].clone(),
                dst: pods[b].clone(),
                protocol: protocols[(x >> 7) as usize % 3],
                dport: [80, 81, 443, 8080, 53][(x >> 3) as usize % 5],
            }
        })
        .collect()
}

fn bench_oracle(c: &mut Criterion) {
    let generated = gen::generate(1, &gen::GenConfig::bench(1_000, 50, 200));
    let yaml = generated.scenario.to_yaml();
    let loaded =
        scenario::parse(Path::new("bench.yaml"), &yaml).expect("generated scenario parses");
    let world = engine::build_world(&loaded).expect("generated world builds");
    assert_eq!(world.cluster.pods.len(), 1_000);
    assert_eq!(world.repo.len(), 200);
    let flows = flows(&world, 1_000);
    let mut g = c.benchmark_group("oracle");
    g.throughput(Throughput::Elements(flows.len() as u64));
    g.bench_function(
        "1000 verdicts, 1000 pods / 50 namespaces / 200 policies",
        |b| {
            b.iter(|| {
                for f in &flows {
                    black_box(oracle::decide(&world.cluster, &world.repo, f).outcome());
                }
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_oracle);
criterion_main!(benches);
