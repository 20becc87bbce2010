//! Proxy redirects through the real BPF programs on every datapath backend (rbpf, rbpf-jit,
//! kernel), as `/work/coord/iface-redirect.md` and `docs/model.md` describe them and as Cilium
//! main's `bpf/bpf_lxc.c` does them: a policy entry with a proxy port sends the packet to the
//! proxy (`TRACE_TO_PROXY`, Hubble `to-proxy` with `proxy_port`), the CT entry remembers it
//! (`proxy_redirect`), replies go back to the proxy, and an egress redirect stops the packet at
//! the source's proxy until `Backend::proxy_upstream` sends it on.
//!
//! The model does not give policy entries proxy ports yet (issue 10's L7 side is another
//! lane), so the datapaths here get hand-written ones: [`Proxied`] puts proxy port 15001 into
//! every allow entry for TCP/8080 of one direction that the map writer writes.

mod common;

use std::path::PathBuf;

use common::with_kernel;
use serde_json::Value;
use verdict::diff::{self, Contender};
use verdict::dpbackend::{DatapathBackend, Maker};
use verdict_datapath::abi;
use verdict_datapath::backend::{Datapath, DatapathError, MapEntries, RunOutcome, UpdateFlags};
use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::object::{MapDef, Object};
use verdict_datapath::{VERDICT_OBJECT, VERDICT_OBJECT_NAME};
use verdict_sim::cluster::{Peer, PodName, Protocol};
use verdict_sim::conntrack::{ConnPacket, TCP_ACK, TCP_SYN};
use verdict_sim::engine::{self, Backend, Change, FlowRecord, ScenarioReport, StepOutcome, World};
use verdict_sim::oracle::Flow;
use verdict_sim::scenario::{self, LoadedScenario};
use verdict_sim::verdict::{Direction, Outcome, Redirects};

const PROXY_PORT: u16 = 15001;

/// Client on node-1, server on node-2; the server admits the client on TCP/8080 and the
/// client may send there (both directions enforce, so both have an entry to redirect).
const SCENARIO: &str = r#"name: redirect-handwritten-proxy-port
description: >-
  Test input of tests/redirect.rs (not a scenario of the suite): the datapaths get proxy port
  15001 on the TCP/8080 allow entries by hand.
cluster:
  nodes:
    - {name: node-1, ip: 172.18.0.2}
    - {name: node-2, ip: 172.18.0.3}
  namespaces:
    - {name: x, labels: {ns: x}}
  pods:
    - {name: x/client, node: node-1, ip: 10.0.1.11, labels: {app: client}}
    - {name: x/server, node: node-2, ip: 10.0.1.10, labels: {app: server}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: server-from-client, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: server}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
          toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: client-to-server, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      egress:
        - toEndpoints: [{matchLabels: {app: server}}]
          toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
steps:
  - expect:
      - {from: x/client, to: x/server, port: 8080, protocol: TCP, verdict: allow}
  - connect: {id: c1, from: x/client, to: x/server, port: 8080, protocol: TCP}
  - send: {id: c1, direction: reply, verdict: allow}
  - send: {id: c1, direction: forward, verdict: allow}
"#;

/// The scenario, written to a file of the test's own (tests run in parallel threads).
fn load(test: &str) -> LoadedScenario {
    let dir = std::env::temp_dir().join(format!("verdict-redirect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!("{test}.yaml"));
    std::fs::write(&path, SCENARIO).unwrap();
    scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A datapath whose policy map gets proxy port 15001 on every allow entry for TCP/8080 in
/// direction `egress` (key: `egress` byte 12, protocol 13, dport 14..16; entry: proxy_port
/// 0..2, flags 2 with bit 0 deny; `sim/src/abi.rs`).
struct Proxied {
    inner: Box<dyn Datapath>,
    egress: bool,
}

impl Datapath for Proxied {
    fn backend_name(&self) -> &str {
        self.inner.backend_name()
    }
    fn map_defs(&self) -> &[MapDef] {
        self.inner.map_defs()
    }
    fn map_update_flags(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
        flags: UpdateFlags,
    ) -> Result<(), DatapathError> {
        if map == abi::maps::POLICY && key.len() == 16 && value.len() == 12 {
            let dport = u16::from_be_bytes([key[14], key[15]]);
            if key[12] == u8::from(self.egress)
                && key[13] == 6
                && dport == 8080
                && value[2] & 1 == 0
            {
                let mut v = value.to_vec();
                v[..2].copy_from_slice(&PROXY_PORT.to_be_bytes());
                return self.inner.map_update_flags(map, key, &v, flags);
            }
        }
        self.inner.map_update_flags(map, key, value, flags)
    }
    fn map_delete(&mut self, map: &str, key: &[u8]) -> Result<bool, DatapathError> {
        self.inner.map_delete(map, key)
    }
    fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>, DatapathError> {
        self.inner.map_lookup(map, key)
    }
    fn map_dump(&self, map: &str) -> Result<MapEntries, DatapathError> {
        self.inner.map_dump(map)
    }
    fn prog_array_set(
        &mut self,
        map: &str,
        index: u32,
        program: Option<&str>,
    ) -> Result<(), DatapathError> {
        self.inner.prog_array_set(map, index, program)
    }
    fn run(&mut self, program: &str, packet: &[u8]) -> Result<RunOutcome, DatapathError> {
        self.inner.run(program, packet)
    }
}

fn maker(name: &str, egress: bool) -> Maker {
    let name = name.to_string();
    Box::new(move || {
        let inner: Box<dyn Datapath> = match name.as_str() {
            "rbpf" | "rbpf-jit" => {
                let mode = if name == "rbpf" {
                    ExecMode::Interpreter
                } else {
                    ExecMode::Jit
                };
                let obj = Object::parse(VERDICT_OBJECT_NAME, VERDICT_OBJECT)
                    .map_err(|e| e.to_string())?;
                Box::new(Emulator::new(&obj, mode).map_err(|e| e.to_string())?)
            }
            #[cfg(feature = "kernel")]
            "kernel" => Box::new(
                verdict_datapath::kernel::KernelDatapath::load_bytes(
                    VERDICT_OBJECT_NAME,
                    VERDICT_OBJECT,
                )
                .map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("no datapath {other}")),
        };
        Ok(Box::new(Proxied { inner, egress }) as Box<dyn Datapath>)
    })
}

/// The datapath backends this machine has: rbpf, rbpf-jit and, when usable, kernel.
fn datapaths(what: &str) -> Vec<String> {
    with_kernel(vec!["rbpf".into(), "rbpf-jit".into()], what)
}

/// A datapath backend with hand-written proxy ports, and a stand-in for the engine's
/// hand-off to the proxy model (the l7 lane's): when `upstream`, a packet held at the
/// egress proxy is let through (`proxy_upstream`), as a proxy that allows the request would.
struct Proxy {
    inner: DatapathBackend,
    upstream: bool,
}

impl Proxy {
    fn on(&mut self, world: &World, o: Outcome) -> Result<Outcome, String> {
        if self.upstream && o.redirect.egress.is_some() {
            return self.inner.proxy_upstream(world);
        }
        Ok(o)
    }
}

impl Backend for Proxy {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        self.inner.sync(world, change)
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        let o = self.inner.probe(world, flow)?;
        self.on(world, o)
    }
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        let o = self.inner.packet(world, pkt)?;
        self.on(world, o)
    }
    fn take_flows(&mut self, world: &World) -> Vec<FlowRecord> {
        self.inner.take_flows(world)
    }
}

fn replay(test: &str, names: &[String], egress: bool, upstream: bool) -> ScenarioReport {
    let loaded = load(test);
    let factory = |name: &str| -> Result<Box<dyn Backend>, String> {
        Ok(Box::new(Proxy {
            inner: DatapathBackend::new(name, maker(name, egress)),
            upstream,
        }))
    };
    let r = engine::run(&loaded, names, &factory);
    assert!(r.error.is_none(), "{:?}", r.error);
    r
}

/// Every backend's outcome of every probe or packet, step by step: `(step, context, backend,
/// outcome)`.
fn outcomes(r: &ScenarioReport) -> Vec<(usize, String, String, Outcome)> {
    let mut v = Vec::new();
    for s in &r.steps {
        if let StepOutcome::Probes(ps) = &s.outcome {
            for p in ps {
                for (b, o) in &p.results {
                    let o = o.clone().unwrap_or_else(|e| panic!("{b}: {e}"));
                    v.push((s.index, p.context.clone().unwrap_or_default(), b.clone(), o));
                }
            }
        }
    }
    v
}

/// The flows one backend reported in step `step`, as (node, compact line, json flow).
fn flows(r: &ScenarioReport, step: usize, backend: &str) -> Vec<(String, String, Value)> {
    let s = r.steps.iter().find(|s| s.index == step).expect("step");
    let (_, fl) = s.flows.iter().find(|(b, _)| b == backend).expect("backend");
    fl.iter()
        .map(|f| {
            let flow = f.json["flow"].clone();
            (
                flow["node_name"].as_str().unwrap_or("").to_string(),
                f.compact.clone(),
                flow,
            )
        })
        .collect()
}

fn redirects(egress: Option<u16>, ingress: Option<u16>) -> Redirects {
    Redirects { egress, ingress }
}

/// Ingress L7 on the server (bpf_lxc.c ipv4_policy): the SYN goes to the server's ingress
/// proxy (policy verdict REDIRECTED, to-proxy with proxy_port 15001 instead of to-endpoint),
/// the server's reply goes back to that proxy from its egress (handle_ipv4_from_lxc, CT_REPLY
/// with proxy_redirect: port 0), and an established packet is redirected again.
#[test]
fn ingress_redirect_on_every_datapath() {
    let names = datapaths("ingress_redirect_on_every_datapath");
    let r = replay("ingress", &names, false, false);
    let got = outcomes(&r);
    assert_eq!(got.len(), 4 * names.len(), "{got:?}");
    for (step, ctx, b, o) in &got {
        let want = match *step {
            // the probe and the connect: new connections
            1 | 2 => redirects(None, Some(PROXY_PORT)),
            // the server's reply, at its own egress: back to the ingress proxy
            3 => redirects(Some(0), None),
            // established, forward
            _ => redirects(None, Some(PROXY_PORT)),
        };
        assert!(o.allowed, "step {step} {ctx} {b}: {o}");
        assert_eq!(o.redirect, want, "step {step} {ctx} {b}: {o}");
    }
    for b in &names {
        let fl = flows(&r, 1, b);
        let lines: Vec<&str> = fl.iter().map(|(_, c, _)| c.as_str()).collect();
        // The client's egress: policy verdict and from-endpoint on node-1; the server's
        // ingress on node-2: the verdict REDIRECTED (compact: ALLOWED, printer getVerdict)
        // and to-proxy (Hubble decodeProxyPort: proxy_port = the trace's dst_id).
        let proxy: Vec<&Value> = fl
            .iter()
            .filter(|(_, _, j)| j["trace_observation_point"] == "TO_PROXY")
            .map(|(n, _, j)| {
                assert_eq!(n, "node-2", "{b}: {lines:?}");
                j
            })
            .collect();
        assert_eq!(proxy.len(), 1, "{b}: {lines:?}");
        assert_eq!(proxy[0]["proxy_port"], PROXY_PORT, "{b}: {}", proxy[0]);
        assert_eq!(proxy[0]["verdict"], "FORWARDED", "{b}: {}", proxy[0]);
        assert_eq!(
            proxy[0]["traffic_direction"], "INGRESS",
            "{b}: {}",
            proxy[0]
        );
        assert!(
            lines.iter().any(|l| l.contains("to-proxy FORWARDED")),
            "{b}: {lines:?}"
        );
        assert!(
            fl.iter().any(|(n, _, j)| n == "node-2"
                && j["verdict"] == "REDIRECTED"
                && j["event_type"]["type"] == 5),
            "{b}: {lines:?}"
        );
        assert!(
            !fl.iter()
                .any(|(_, _, j)| j["trace_observation_point"] == "TO_ENDPOINT"),
            "the redirected SYN reached the server: {b}: {lines:?}"
        );
    }
}

/// Egress L7 on the client (bpf_lxc.c ipv4_forward_to_destination): the SYN goes to the
/// client's egress proxy and nothing reaches the server's node; once the proxy lets it
/// through (`proxy_upstream`, what the engine calls after the proxy model passes a request)
/// the server's ingress decides, and the server's reply, at the client's ingress, goes back
/// to the egress proxy (ipv4_policy, CT_REPLY with proxy_redirect). The backend is driven
/// directly, probe by probe, because the engine always hands an egress redirect on to the
/// proxy's upstream, so the held state between the two calls is visible only here.
#[test]
fn egress_redirect_stops_at_the_proxy_until_upstream() {
    let names = datapaths("egress_redirect_stops_at_the_proxy_until_upstream");
    let loaded = load("egress");
    let world = engine::world_after(&loaded, Some(0)).unwrap_or_else(|e| panic!("{e}"));
    let client = Peer::Pod(PodName::parse("x/client").unwrap());
    let server = Peer::Pod(PodName::parse("x/server").unwrap());
    let flow = Flow {
        src: client.clone(),
        dst: server.clone(),
        protocol: Protocol::Tcp,
        dport: 8080,
    };
    let nodes = |fl: &[FlowRecord]| -> Vec<(String, Value)> {
        fl.iter()
            .map(|f| {
                let j = f.json["flow"].clone();
                (j["node_name"].as_str().unwrap_or("").to_string(), j)
            })
            .collect()
    };
    for b in &names {
        let mut dp = DatapathBackend::new(b, maker(b, true));
        dp.sync(&world, &Change::Initial)
            .unwrap_or_else(|e| panic!("{b}: {e}"));

        // Held at the client's egress proxy.
        let o = dp
            .probe(&world, &flow)
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        assert!(o.allowed, "{b}: {o}");
        assert_eq!(o.redirect, redirects(Some(PROXY_PORT), None), "{b}: {o}");
        assert_eq!(o.direction, Some(Direction::Egress), "{b}: {o}");
        let fl = nodes(&dp.take_flows(&world));
        assert!(
            fl.iter().all(|(n, _)| n == "node-1"),
            "{b}: the held SYN showed up on the server's node: {fl:?}"
        );
        let point = |p: &str| -> Vec<&Value> {
            fl.iter()
                .filter(|(_, j)| j["trace_observation_point"] == p)
                .map(|(_, j)| j)
                .collect()
        };
        let to_proxy = point("TO_PROXY");
        assert_eq!(to_proxy.len(), 1, "{b}: {fl:?}");
        // Cilium's egress TO_PROXY trace names no destination identity (UNKNOWN_ID); Hubble
        // takes the ipcache's (ResolveEndpoint), the server's identity.
        let from_ep = point("FROM_ENDPOINT");
        assert_eq!(
            to_proxy[0]["destination"]["identity"], from_ep[0]["destination"]["identity"],
            "{b}"
        );
        assert_ne!(to_proxy[0]["destination"]["identity"], Value::Null, "{b}");
        assert_eq!(to_proxy[0]["proxy_port"], PROXY_PORT, "{b}");
        assert_eq!(to_proxy[0]["traffic_direction"], "EGRESS", "{b}");

        // The proxy's upstream connection: the server's ingress decides, on node-2.
        let o = dp
            .proxy_upstream(&world)
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        assert!(o.allowed, "{b}: {o}");
        assert_eq!(o.redirect, redirects(Some(PROXY_PORT), None), "{b}: {o}");
        assert_eq!(o.direction, Some(Direction::Ingress), "{b}: {o}");
        let fl = nodes(&dp.take_flows(&world));
        assert!(
            fl.iter()
                .any(|(n, j)| n == "node-2" && j["trace_observation_point"] == "TO_ENDPOINT"),
            "{b}: the upstream did not reach the server: {fl:?}"
        );
        // Nothing waits at the proxy any more.
        assert!(dp.proxy_upstream(&world).is_err(), "{b}");

        // A connection: its SYN is held and let through the same way; the server's SYN-ACK,
        // at the client's ingress, goes back to the egress proxy (port 0).
        let syn = ConnPacket {
            src: client.clone(),
            dst: server.clone(),
            protocol: Protocol::Tcp,
            sport: 40000,
            dport: 8080,
            tcp_flags: TCP_SYN,
            icmp_type: 0,
        };
        let o = dp
            .packet(&world, &syn)
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!(o.redirect, redirects(Some(PROXY_PORT), None), "{b}: {o}");
        assert_eq!(o.direction, Some(Direction::Egress), "{b}: {o}");
        let o = dp
            .proxy_upstream(&world)
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        assert!(o.allowed, "{b}: {o}");
        let reply = ConnPacket {
            src: server.clone(),
            dst: client.clone(),
            sport: 8080,
            dport: 40000,
            tcp_flags: TCP_SYN | TCP_ACK,
            ..syn.clone()
        };
        let o = dp
            .packet(&world, &reply)
            .unwrap_or_else(|e| panic!("{b}: {e}"));
        assert!(o.allowed, "{b}: {o}");
        assert_eq!(o.redirect, redirects(None, Some(0)), "{b}: {o}");
    }
}

/// `verdict diff`: a datapath that redirects and a model that forwards disagree; datapaths
/// that all redirect agree, their maps and records byte for byte.
#[test]
fn diff_compares_redirects() {
    let loaded = load("diff");
    let make = |n: &str| -> Result<Contender, String> {
        match n {
            "model" => diff::contender(n),
            dp => Ok(Contender::Datapath(Box::new(DatapathBackend::new(
                dp,
                maker(dp, false),
            )))),
        }
    };
    let names: Vec<String> = vec!["model".into(), "rbpf".into()];
    let d = diff::diff_scenario(&loaded, &names, &make);
    let out = diff::render(&d);
    assert_eq!(d.verdicts.len(), 4, "{out}");
    assert!(out.contains("redirect=ingress:15001"), "{out}");

    let names = datapaths("diff_compares_redirects");
    let d = diff::diff_scenario(&loaded, &names, &make);
    let out = diff::render(&d);
    assert!(d.clean(), "{out}");
    assert!(
        d.pairs.iter().all(|p| p.records > 0 && p.map_entries > 0),
        "{out}"
    );
}
