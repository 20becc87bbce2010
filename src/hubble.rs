//! Hubble flows from datapath events: the `hubble observe -o json` line (a GetFlowsResponse
//! encoded by protojson with `UseProtoNames`, as `api/v1/flow/flow.pb.json.go` does) and the
//! compact line (`hubble/pkg/printer/printer.go`, `CompactOutput`).
//!
//! protojson rules followed here: fields in flow.proto's declaration order, zero values
//! omitted (0, false, "", empty lists; a set message prints even when empty, `{}`), enums by
//! name (a number the enum does not name prints as the number), uint64 as strings, wrapper
//! types (`is_reply`) as their bare value whenever set, and Timestamps with 0, 3, 6 or 9
//! fractional digits.
//!
//! Derivation as `pkg/hubble/parser/threefour/parser.go` does it:
//! - verdict (`decodeVerdict`): a drop is DROPPED; a trace FORWARDED; a policy verdict DROPPED
//!   when negative, REDIRECTED when positive, AUDIT when audited, else FORWARDED;
//! - `is_reply` (`decodeIsReply`): a trace with a known reason says whether it is a reply; an
//!   allowed policy verdict is never one (`false`); a denied one and a drop are unknown
//!   (absent, so the compact line shows `<>`);
//! - `traffic_direction` (`decodeTrafficDirection`): a drop is EGRESS when the dropping
//!   endpoint is the source; a trace is EGRESS when "the local endpoint is the source" differs
//!   from "it is a reply", so a reply keeps its connection's original direction (the server's
//!   reply to an ingress connection is INGRESS, `trace_reason: REPLY`); a policy verdict
//!   carries its own;
//! - `ingress_allowed_by`/`egress_allowed_by`/`*_denied_by` and `policy_log`
//!   (`pkg/policy/correlation` `CorrelatePolicy`): on policy verdicts that were allowed or
//!   denied by policy, the rules of the map-state entry that decided, looked up in the
//!   endpoint's current policy (as Hubble does it after the fact), one `Policy` per object with
//!   the labels `utils.GetPolicyLabels` gives it (derived-from, name, namespace) and the
//!   repository revision; `policy_log` the deciding rules' `log.value`s.
//!
//! Fields verdict knows and prints: `uuid` (see [`flow_uuid`]), `emitter` (`Verdict` and its
//! version), `ethernet` (the harness's probe frames carry fixed MACs,
//! `verdict_datapath::packet::{SRC_MAC, DST_MAC}`), `node_labels` (the labels the kubelet
//! always sets: `kubernetes.io/hostname` and `kubernetes.io/os=linux`). Fields it leaves
//! out, because nothing in a scenario determines them: `interface` (the lxc device's index and
//! name come from the CNI's container ID), `workloads` (scenario pods have no owner
//! references), `file` (the programs' drop notifications carry no source line), policy
//! `uid` labels (manifests are applied without one), DNS names and services.
//!
//! The JSON is built with [`FlowJson`], which orders and prunes fields by [`FLOW_FIELDS`].
//! L7 records ([`l7_flow_record`], from a typed [`L7Event`]) follow
//! `pkg/hubble/parser/seven/parser.go` `Decode`: `Type: L7`, `event_type` 129 (access log),
//! `l7: {type, latency_ns, http|dns}`, `is_reply`/`reply` true on responses, the proxy's
//! observation point as `traffic_direction`, FORWARDED/DROPPED/ERROR from the proxy's verdict
//! and no drop reason; [`http_exchange`] and [`dns_exchange`] give the records Cilium's
//! proxies log for one request (a denied HTTP request: request DROPPED, then the proxy's 403
//! response FORWARDED; a refused DNS query: the request DROPPED, nothing else).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{json, Map, Value};
use verdict_datapath::abi;
use verdict_datapath::events::{self, CtStatus, Event};
use verdict_datapath::packet::{DST_MAC, SRC_MAC};
use verdict_sim::cluster::{Peer, Protocol};
use verdict_sim::engine::{FlowRecord, World};
use verdict_sim::identity::Identity;
use verdict_sim::model::Model;
use verdict_sim::oracle::Flow;
use verdict_sim::policy::PolicyKind;
use verdict_sim::verdict::{hubble_drop_name, Direction, DropReason};

/// flow.proto's `Flow` fields in declaration order, which is protojson's output order.
pub const FLOW_FIELDS: &[&str] = &[
    "time",
    "uuid",
    "emitter",
    "verdict",
    "drop_reason",
    "auth_type",
    "ethernet",
    "IP",
    "l4",
    "tunnel",
    "source",
    "destination",
    "Type",
    "node_name",
    "node_labels",
    "source_names",
    "destination_names",
    "l7",
    "reply",
    "event_type",
    "source_service",
    "destination_service",
    "traffic_direction",
    "policy_match_type",
    "trace_observation_point",
    "trace_reason",
    "file",
    "ip_trace_id",
    "drop_reason_desc",
    "is_reply",
    "debug_capture_point",
    "interface",
    "proxy_port",
    "trace_context",
    "sock_xlate_point",
    "socket_cookie",
    "cgroup_id",
    "Summary",
    "extensions",
    "egress_allowed_by",
    "ingress_allowed_by",
    "egress_denied_by",
    "ingress_denied_by",
    "policy_log",
    "aggregate",
];

/// Fields whose type is a wrapper (`google.protobuf.BoolValue`): printed whenever set, even
/// when false.
const WRAPPER_FIELDS: &[&str] = &["is_reply"];

/// Removes what protojson omits: zero numbers, false, empty strings and empty lists, at
/// every level (a nested message that ends up empty stays, as `{}`).
fn prune(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) => {
            let a: Vec<Value> = a.into_iter().filter_map(prune).collect();
            (!a.is_empty()).then_some(Value::Array(a))
        }
        Value::Object(o) => Some(Value::Object(
            o.into_iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                .collect(),
        )),
        other => Some(other),
    }
}

/// A `Flow` message under construction: fields in any order, printed in flow.proto's.
#[derive(Debug, Default, Clone)]
pub struct FlowJson {
    fields: BTreeMap<usize, (&'static str, Value)>,
}

impl FlowJson {
    /// Sets a field of `Flow`; zero values are omitted when rendered. An unknown name is a
    /// bug in verdict (tests compare every printed name with flow.proto).
    pub fn set(&mut self, name: &'static str, value: Value) {
        let Some(i) = FLOW_FIELDS.iter().position(|f| *f == name) else {
            debug_assert!(false, "{name} is not a field of flow.Flow");
            return;
        };
        self.fields.insert(i, (name, value));
    }

    /// The message as protojson prints it.
    pub fn into_value(self) -> Value {
        let mut m = Map::new();
        for (_, (name, v)) in self.fields {
            let v = if WRAPPER_FIELDS.contains(&name) {
                Some(v).filter(|v| !v.is_null())
            } else {
                prune(v)
            };
            if let Some(v) = v {
                m.insert(name.to_string(), v);
            }
        }
        Value::Object(m)
    }
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Virtual time as a protojson Timestamp (the simulated world starts at the epoch): RFC 3339
/// in UTC with no fraction, or 3, 6 or 9 fractional digits, the fewest that hold the value.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let nanos = ns % 1_000_000_000;
    let frac = if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

/// Go's `time.StampMilli` (`Jan _2 15:04:05.000`), the compact form's default.
pub fn compact_time(ns: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ns / 1_000_000_000;
    let (_, mo, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{} {:>2} {:02}:{:02}:{:02}.{:03}",
        MONTHS[(mo - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ns % 1_000_000_000 / 1_000_000
    )
}

/// A flow's `uuid`: deterministic, so the same run prints the same flows. It is an RFC 9562
/// version-8 (custom) UUID whose 122 free bits are two FNV-1a-64 hashes of
/// `<scenario name>/<index of the flow in the scenario's output>`.
pub fn flow_uuid(scenario: &str, index: usize) -> String {
    let fnv = |seed: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in scenario
            .bytes()
            .chain(*b"/")
            .chain(index.to_string().into_bytes())
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let (hi, lo) = (fnv(0), fnv(0x9e37_79b9_7f4a_7c15));
    let hi = (hi & !0xf000) | 0x8000; // version 8
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // variant 10
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// A rendered GetFlowsResponse with its flow's `uuid` set (see [`flow_uuid`]).
pub fn with_uuid(response: &Value, scenario: &str, index: usize) -> Value {
    let mut out = response.clone();
    if let Some(Value::Object(flow)) = out.get_mut("flow") {
        let mut m = Map::new();
        for (k, v) in std::mem::take(flow) {
            let time = k == "time";
            m.insert(k, v);
            if time {
                m.insert("uuid".into(), json!(flow_uuid(scenario, index)));
            }
        }
        if !m.contains_key("uuid") {
            // No time field: uuid still comes first.
            let mut first = Map::new();
            first.insert("uuid".into(), json!(flow_uuid(scenario, index)));
            first.extend(m);
            m = first;
        }
        *flow = m;
    }
    out
}

/// The GetFlowsResponse around a flow (observer.proto: `flow`, `node_name`, `time`).
pub fn response(flow: Value, node: &str, time_ns: u64) -> Value {
    json!({"flow": flow, "node_name": node, "time": rfc3339(time_ns)})
}

fn labels_of(world: &World, model: Option<&Model>, id: u32) -> Vec<String> {
    let id = Identity(id);
    let set = model
        .and_then(|m| m.identity_labels(id).cloned())
        .or_else(|| world.cluster.identities.labels(id).cloned())
        .or_else(|| id.reserved_labels());
    set.map(|s| s.iter().map(|l| l.to_string()).collect())
        .unwrap_or_default()
}

/// Hubble's `Endpoint` message for one side of a flow.
pub fn endpoint_json(world: &World, model: Option<&Model>, ip: IpAddr, identity: u32) -> Value {
    let mut m = Map::new();
    if let Peer::Pod(p) = world.cluster.peer_of_ip(ip) {
        if let Some(pod) = world.cluster.pods.get(&p) {
            m.insert("ID".into(), json!(pod.endpoint_id));
        }
        m.insert("identity".into(), json!(identity));
        m.insert("cluster_name".into(), json!("default"));
        m.insert("namespace".into(), json!(p.namespace));
        m.insert("labels".into(), json!(labels_of(world, model, identity)));
        m.insert("pod_name".into(), json!(p.name));
    } else {
        m.insert("identity".into(), json!(identity));
        m.insert("labels".into(), json!(labels_of(world, model, identity)));
    }
    Value::Object(m)
}

/// The endpoint ID of the pod that owns `ip`, if any.
fn endpoint_id_of(world: &World, ip: IpAddr) -> Option<u32> {
    match world.cluster.peer_of_ip(ip) {
        Peer::Pod(p) => world.cluster.pods.get(&p).map(|p| p.endpoint_id),
        _ => None,
    }
}

/// `ns/pod:port`, or the address (`[v6]:port`), as `Printer.Hostname` joins them; a port of
/// 0 or none is left off.
pub fn host_port(world: &World, ip: IpAddr, port: Option<u16>) -> String {
    let base = match world.cluster.peer_of_ip(ip) {
        Peer::Pod(p) => p.to_string(),
        _ => ip.to_string(),
    };
    match port {
        Some(p) if p != 0 => {
            if base.contains(':') {
                format!("[{base}]:{p}")
            } else {
                format!("{base}:{p}")
            }
        }
        _ => base,
    }
}

/// `(host)`, `(world)`, ... for reserved identities, `(ID:N)` otherwise (`fmtIdentity`, with
/// `pkg/identity` `reservedIdentityNames`).
pub fn identity_text(id: u32) -> String {
    let name = match id {
        0 => "unknown",
        1 => "host",
        2 => "world",
        3 => "unmanaged",
        4 => "health",
        5 => "init",
        6 => "remote-node",
        7 => "kube-apiserver",
        8 => "ingress",
        9 => "world-ipv4",
        10 => "world-ipv6",
        _ => return format!("(ID:{id})"),
    };
    format!("({name})")
}

/// One compact line (`CompactOutput`): `TIME: SRC (ID) ARROW DST (ID) TYPE VERDICT
/// (SUMMARY)`. An unknown `is_reply` prints `<>`; a reply swaps the sides and prints `<-`.
#[allow(clippy::too_many_arguments)]
pub fn compact_line(
    time_ns: u64,
    src: &str,
    src_identity: u32,
    dst: &str,
    dst_identity: u32,
    is_reply: Option<bool>,
    flow_type: &str,
    verdict: &str,
    summary: &str,
) -> String {
    let (mut s, mut si, mut d, mut di) = (
        src.to_string(),
        identity_text(src_identity),
        dst.to_string(),
        identity_text(dst_identity),
    );
    let arrow = match is_reply {
        None => "<>",
        Some(false) => "->",
        Some(true) => {
            std::mem::swap(&mut s, &mut d);
            std::mem::swap(&mut si, &mut di);
            "<-"
        }
    };
    format!(
        "{}: {s} {si} {arrow} {d} {di} {flow_type} {verdict} ({summary})",
        compact_time(time_ns)
    )
}

fn icmp_name(v6: bool, t: u8, code: u8) -> String {
    // gopacket's ICMPv4TypeCode / ICMPv6TypeCode String(): the type's name, with the code's
    // name in parentheses for types that have codes.
    let fam = if v6 { "ICMPv6" } else { "ICMPv4" };
    let name = match (v6, t, code) {
        (false, 0, _) => "EchoReply".to_string(),
        (false, 8, _) => "EchoRequest".to_string(),
        (false, 3, 3) => "DestinationUnreachable(Port)".to_string(),
        (false, 3, _) => "DestinationUnreachable".to_string(),
        (false, 11, _) => "TimeExceeded".to_string(),
        (true, 1, 4) => "DestinationUnreachable(PortUnreachable)".to_string(),
        (true, 1, _) => "DestinationUnreachable".to_string(),
        (true, 128, _) => "EchoRequest".to_string(),
        (true, 129, _) => "EchoReply".to_string(),
        _ => format!("{t}({code})"),
    };
    format!("{fam} {name}")
}

/// TCP flags as `TCPFlags` and as the summary (`getTCPFlags`: SYN, ACK, RST, FIN, PSH, URG).
fn tcp_flags(bits: u8) -> (Value, String) {
    let json_order = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
    ];
    let summary_order = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x04, "RST"),
        (0x01, "FIN"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    let mut m = Map::new();
    for (b, n) in json_order {
        if bits & b != 0 {
            m.insert(n.into(), json!(true));
        }
    }
    let set: Vec<&str> = summary_order
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    (Value::Object(m), format!("TCP Flags: {}", set.join(", ")))
}

/// The labels `utils.GetPolicyLabels` gives a policy object (sorted by key; no `uid`, which a
/// scenario's manifests do not carry).
fn policy_json(kind: PolicyKind, namespace: Option<&str>, name: &str, revision: u64) -> Value {
    let mut labels = vec![
        format!("k8s:io.cilium.k8s.policy.derived-from={}", kind.as_str()),
        format!("k8s:io.cilium.k8s.policy.name={name}"),
    ];
    if let Some(ns) = namespace {
        labels.push(format!("k8s:io.cilium.k8s.policy.namespace={ns}"));
    }
    json!({
        "name": name,
        "namespace": namespace.unwrap_or(""),
        "labels": labels,
        // uint64: a string in protojson.
        "revision": revision.to_string(),
        "kind": kind.as_str(),
    })
}

/// The deciding rules of a policy verdict, as `CorrelatePolicy` reports them: `(policies,
/// log values)`, or nothing when no entry decided (default deny).
fn correlate(
    world: &World,
    model: &Model,
    f: &events::Flow,
    direction: Direction,
) -> Option<(Vec<Value>, Vec<String>)> {
    let protocol = Protocol::from_number(f.proto)?;
    let dport = if protocol.is_icmp() {
        f.icmp_type as u16
    } else {
        f.dport
    };
    if dport == 0 {
        return None;
    }
    let c = &world.cluster;
    let flow = Flow {
        src: c.peer_of_ip(f.src),
        dst: c.peer_of_ip(f.dst),
        protocol,
        dport,
    };
    let e = model.explain(c, &flow);
    let side = match direction {
        Direction::Ingress => &e.ingress,
        Direction::Egress => &e.egress,
    };
    let (_, _, entry) = side.chosen.as_ref()?;
    // Cilium's repository revision starts at 1 and every change bumps it.
    let revision = world.repo.revision() + 1;
    let mut seen = BTreeSet::new();
    let mut policies = Vec::new();
    let mut logs = BTreeSet::new();
    for o in &entry.origins {
        if seen.insert(o.policy.clone()) {
            policies.push(policy_json(
                o.policy.kind,
                o.policy.namespace.as_deref(),
                &o.policy.name,
                revision,
            ));
        }
        if let Some(l) = o.log.as_ref().filter(|l| !l.is_empty()) {
            logs.insert(l.clone());
        }
    }
    Some((policies, logs.into_iter().collect()))
}

/// The labels the kubelet always sets on a node, as `node_labels` lists them.
fn node_labels(node: &str) -> Vec<String> {
    vec![
        format!("kubernetes.io/hostname={node}"),
        "kubernetes.io/os=linux".to_string(),
    ]
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Renders one event observed on `node`.
pub fn flow_record(world: &World, model: Option<&Model>, node: &str, ev: &Event) -> FlowRecord {
    let c = ev.common();
    let f = &c.flow;
    let v6 = f.src.is_ipv6();
    let mut flow = FlowJson::default();
    flow.set("time", json!(rfc3339(c.timestamp)));
    flow.set(
        "emitter",
        json!({"name": "Verdict", "version": env!("CARGO_PKG_VERSION")}),
    );
    let (verdict, reason): (&str, Option<u8>) = match ev {
        Event::Drop(d) => ("DROPPED", Some(d.reason.0)),
        Event::Trace(_) => ("FORWARDED", None),
        Event::PolicyVerdict(pv) if pv.verdict < 0 => {
            ("DROPPED", Some((-pv.verdict).clamp(0, 255) as u8))
        }
        Event::PolicyVerdict(pv) if pv.verdict > 0 => ("REDIRECTED", None),
        Event::PolicyVerdict(pv) if pv.audited => ("AUDIT", None),
        Event::PolicyVerdict(_) => ("FORWARDED", None),
    };
    flow.set("verdict", json!(verdict));
    if let Some(r) = reason {
        flow.set("drop_reason", json!(r));
    }
    if let Event::PolicyVerdict(pv) = ev {
        let auth = match pv.auth_type {
            0 => json!(null),
            1 => json!("SPIRE"),
            2 => json!("TEST_ALWAYS_FAIL"),
            n => json!(n),
        };
        flow.set("auth_type", auth);
    }
    flow.set(
        "ethernet",
        json!({"source": mac(SRC_MAC), "destination": mac(DST_MAC)}),
    );
    flow.set(
        "IP",
        json!({"source": f.src.to_string(), "destination": f.dst.to_string(), "ipVersion": if v6 { "IPv6" } else { "IPv4" }}),
    );
    let (l4, summary, ports) = match f.proto {
        6 => {
            let (flags, summary) = tcp_flags(f.tcp_flags);
            (
                json!({"TCP": {"source_port": f.sport, "destination_port": f.dport, "flags": flags}}),
                summary,
                true,
            )
        }
        17 => (
            json!({"UDP": {"source_port": f.sport, "destination_port": f.dport}}),
            "UDP".to_string(),
            true,
        ),
        132 => (
            json!({"SCTP": {"source_port": f.sport, "destination_port": f.dport}}),
            "SCTP".to_string(),
            true,
        ),
        1 => (
            json!({"ICMPv4": {"type": f.icmp_type, "code": f.icmp_code}}),
            icmp_name(false, f.icmp_type, f.icmp_code),
            false,
        ),
        58 => (
            json!({"ICMPv6": {"type": f.icmp_type, "code": f.icmp_code}}),
            icmp_name(true, f.icmp_type, f.icmp_code),
            false,
        ),
        p => (json!(null), format!("IP protocol {p}"), false),
    };
    flow.set("l4", l4);
    // A record that names no identity (Cilium's egress TRACE_TO_PROXY: UNKNOWN_ID) gets the
    // ipcache's, as pkg/hubble/parser/common/endpoint.go ResolveEndpoint does when the
    // datapath identity is IdentityUnknown.
    let resolve = |ip: IpAddr, id: u32| -> u32 {
        match (id, model) {
            (0, Some(m)) => m.ipcache().lookup(node, ip).identity.0,
            _ => id,
        }
    };
    let (src_identity, dst_identity) = (
        resolve(f.src, c.src_identity),
        resolve(f.dst, c.dst_identity),
    );
    flow.set("source", endpoint_json(world, model, f.src, src_identity));
    flow.set(
        "destination",
        endpoint_json(world, model, f.dst, dst_identity),
    );
    flow.set("Type", json!("L3_L4"));
    flow.set("node_name", json!(node));
    flow.set("node_labels", json!(node_labels(node)));

    // decodeIsReply.
    let reason_known = !matches!(f.ct_status, CtStatus::Unknown(_));
    let is_reply: Option<bool> = match ev {
        Event::Trace(_) if reason_known => Some(f.ct_status == CtStatus::Reply),
        Event::PolicyVerdict(pv) if pv.verdict >= 0 => Some(false),
        _ => None,
    };
    flow.set("reply", json!(is_reply == Some(true)));
    let sub_type = match ev {
        Event::Drop(d) => d.reason.0,
        Event::Trace(t) => t.obs_point,
        Event::PolicyVerdict(_) => 0,
    };
    let event_type = match ev {
        Event::Drop(_) => abi::CILIUM_NOTIFY_DROP,
        Event::Trace(_) => abi::CILIUM_NOTIFY_TRACE,
        Event::PolicyVerdict(_) => abi::CILIUM_NOTIFY_POLICY_VERDICT,
    };
    flow.set(
        "event_type",
        json!({"type": event_type, "sub_type": sub_type}),
    );

    // decodeTrafficDirection.
    let src_ep = endpoint_id_of(world, f.src);
    let local_is_source = c.endpoint != 0 && src_ep == Some(c.endpoint as u32);
    let direction: Option<Direction> = match ev {
        Event::Drop(_) if c.endpoint != 0 => Some(if local_is_source {
            Direction::Egress
        } else {
            Direction::Ingress
        }),
        Event::Trace(_) if c.endpoint != 0 && reason_known => {
            Some(if local_is_source != (is_reply == Some(true)) {
                Direction::Egress
            } else {
                Direction::Ingress
            })
        }
        Event::PolicyVerdict(_) => match c.direction {
            events::Direction::Ingress => Some(Direction::Ingress),
            events::Direction::Egress => Some(Direction::Egress),
            events::Direction::Unknown(_) => None,
        },
        _ => None,
    };
    let direction_name = match direction {
        Some(Direction::Ingress) => "INGRESS",
        Some(Direction::Egress) => "EGRESS",
        None => "TRAFFIC_DIRECTION_UNKNOWN",
    };
    if direction.is_some() {
        flow.set("traffic_direction", json!(direction_name));
    }
    if let Event::PolicyVerdict(pv) = ev {
        let mt = match pv.match_type {
            events::MatchType::None => 0,
            events::MatchType::L3Only => 1,
            events::MatchType::L3L4 => 2,
            events::MatchType::L4Only => 3,
            events::MatchType::All => 4,
            events::MatchType::L3Proto => 5,
            events::MatchType::ProtoOnly => 6,
            events::MatchType::Unknown(v) => v as u32,
        };
        flow.set("policy_match_type", json!(mt));
    }
    if let Event::Trace(t) = ev {
        // flow.proto TraceObservationPoint: TO_PROXY 1, TO_HOST 2, FROM_ENDPOINT 5,
        // FROM_HOST 7, TO_ENDPOINT 101.
        let point = match t.obs_point {
            abi::TRACE_TO_LXC => json!("TO_ENDPOINT"),
            abi::TRACE_TO_PROXY => json!("TO_PROXY"),
            abi::TRACE_FROM_LXC => json!("FROM_ENDPOINT"),
            abi::TRACE_TO_HOST => json!("TO_HOST"),
            abi::TRACE_FROM_HOST => json!("FROM_HOST"),
            n => json!(n),
        };
        flow.set("trace_observation_point", point);
        let reason = match f.ct_status {
            CtStatus::New => "NEW",
            CtStatus::Established => "ESTABLISHED",
            CtStatus::Reply => "REPLY",
            CtStatus::Related => "RELATED",
            CtStatus::Reopened => "REOPENED",
            CtStatus::Unknown(_) => "",
        };
        flow.set("trace_reason", json!(reason));
    }
    if let Some(r) = reason {
        flow.set(
            "drop_reason_desc",
            hubble_drop_name(r).map_or(json!(r), |n| json!(n)),
        );
    }
    flow.set("is_reply", is_reply.map_or(Value::Null, |b| json!(b)));
    // decodeProxyPort: a TO_PROXY trace's dst_id (0, omitted, on a reply's way back).
    if let Event::Trace(t) = ev {
        if let Some(p) = t.proxy_port() {
            flow.set("proxy_port", json!(p));
        }
    }
    flow.set("Summary", json!(summary));

    // CorrelatePolicy: policy verdicts allowed, audited, or denied by policy.
    if let (Event::PolicyVerdict(_), Some(m), Some(d)) = (ev, model, direction) {
        let by_policy = matches!(reason, None | Some(133) | Some(181));
        if by_policy {
            if let Some((policies, logs)) = correlate(world, m, f, d) {
                let field = match (d, verdict) {
                    (Direction::Egress, "FORWARDED" | "REDIRECTED") => "egress_allowed_by",
                    (Direction::Ingress, "FORWARDED" | "REDIRECTED") => "ingress_allowed_by",
                    (Direction::Egress, _) => "egress_denied_by",
                    (Direction::Ingress, _) => "ingress_denied_by",
                };
                flow.set(field, json!(policies));
                flow.set("policy_log", json!(logs));
            }
        }
    }
    let json = response(flow.into_value(), node, c.timestamp);

    let (sp, dp) = if ports {
        (Some(f.sport), Some(f.dport))
    } else {
        (None, None)
    };
    // GetFlowType.
    let flow_type = match ev {
        Event::PolicyVerdict(pv) => format!(
            "policy-verdict:{} {direction_name}",
            match pv.match_type {
                events::MatchType::Unknown(_) => "unknown".to_string(),
                m => m.to_string(),
            }
        ),
        Event::Drop(d) => DropReason::from_code(d.reason.0).text(),
        // pkg/monitor/api/types.go TraceObservationPoints.
        Event::Trace(t) => match t.obs_point {
            abi::TRACE_TO_LXC
            | abi::TRACE_TO_PROXY
            | abi::TRACE_FROM_LXC
            | abi::TRACE_TO_HOST
            | abi::TRACE_FROM_HOST => t.point_name(),
            n => format!("{n}"),
        },
    };
    // getVerdict: policy verdicts read ALLOWED / DENIED / AUDITED.
    let verdict_text = match (ev, verdict) {
        (Event::PolicyVerdict(_), "FORWARDED" | "REDIRECTED") => "ALLOWED",
        (Event::PolicyVerdict(_), "DROPPED") => "DENIED",
        (Event::PolicyVerdict(_), "AUDIT") => "AUDITED",
        (_, v) => v,
    };
    let compact = compact_line(
        c.timestamp,
        &host_port(world, f.src, sp),
        src_identity,
        &host_port(world, f.dst, dp),
        dst_identity,
        is_reply,
        &flow_type,
        verdict_text,
        &summary,
    );
    FlowRecord { json, compact }
}

// --- L7 flows: the proxies' access-log records as Hubble prints them --------------------------

/// What an access-log record reports (`pkg/proxy/accesslog` `FlowType`; flow.proto
/// `L7FlowType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L7Kind {
    Request,
    Response,
}

/// The proxy's verdict on the record (`pkg/proxy/accesslog` `FlowVerdict`), as Hubble's
/// `seven` parser maps it (`decodeVerdict`: Denied → DROPPED, Forwarded → FORWARDED, Error →
/// ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L7Verdict {
    Forwarded,
    Denied,
    Error,
}

/// An HTTP record (`accesslog.LogRecordHTTP`; flow.proto `HTTP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRecord {
    /// The response's status; requests carry none (`decodeHTTP` leaves `code` unset on a
    /// request).
    pub code: u16,
    pub method: String,
    /// The URL as Cilium's Envoy access log builds it (`pkg/envoy` `ParseURL(scheme, host,
    /// path)`): `http://<host><path>`.
    pub url: String,
    /// `HTTP/1.1` (`pkg/envoy` `GetProtocol`).
    pub protocol: String,
    /// The request's headers, as `(name, value)`; printed sorted by name with Go's
    /// canonical form (`net/http` `Header`), one entry per value (`decodeHTTP`).
    pub headers: Vec<(String, String)>,
}

/// A DNS record (`accesslog.LogRecordDNS`; flow.proto `DNS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    /// The queried name, fully qualified with the trailing dot, as the DNS proxy logs it.
    pub query: String,
    pub ips: Vec<IpAddr>,
    pub ttl: u32,
    pub cnames: Vec<String>,
    /// `proxy` for the DNS proxy (`accesslog.DNSSourceProxy`).
    pub observation_source: String,
    /// The response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED, ...).
    pub rcode: u16,
    /// Question types by number (1 A, 28 AAAA, ...).
    pub qtypes: Vec<u16>,
    /// Answer record types by number.
    pub rrtypes: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L7Record {
    Http(HttpRecord),
    Dns(DnsRecord),
}

/// One access-log record of an L7 proxy, the input of [`l7_flow_record`]. Source and
/// destination are as the record names them: a response's source is the server
/// (`pkg/envoy/accesslog_server.go` `logRecord` swaps them for responses;
/// `pkg/fqdn/messagehandler` `NotifyOnDNSMsg` does the same for DNS answers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Event {
    /// Virtual time, ns.
    pub time_ns: u64,
    /// The node whose proxy logged it.
    pub node: String,
    pub kind: L7Kind,
    pub verdict: L7Verdict,
    /// The proxy's observation point (`accesslog.ObservationPoint`): an egress proxy of the
    /// source pod or an ingress proxy of the destination pod.
    pub direction: Direction,
    /// TCP for HTTP, UDP or TCP for DNS.
    pub protocol: Protocol,
    pub src: IpAddr,
    pub src_port: u16,
    pub src_identity: u32,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub dst_identity: u32,
    /// Response latency (`computeResponseTime`); 0 when unknown, as for requests without
    /// an `X-Request-Id`.
    pub latency_ns: u64,
    pub record: L7Record,
}

/// `MessageTypeAccessLog` (`pkg/monitor/api/types.go`): the `event_type.type` of L7 flows.
pub const MESSAGE_TYPE_ACCESS_LOG: u8 = 129;

/// Go's `textproto.CanonicalMIMEHeaderKey`: the first letter and every letter after a `-`
/// upper case, the rest lower case; a key with a byte that is not a token character stays as
/// it is.
pub fn canonical_header_key(k: &str) -> String {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if k.is_empty() || !k.bytes().all(token) {
        return k.to_string();
    }
    let mut upper = true;
    k.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// gopacket's `layers.DNSType.String()` for the types a policy simulator meets.
pub fn dns_type_name(t: u16) -> String {
    match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        _ => "Unknown",
    }
    .to_string()
}

/// gopacket's `layers.DNSResponseCode.String()` (used by Hubble's `dnsSummary` for a
/// non-zero code; "Server Failure " does end in a space there).
pub fn dns_rcode_name(rcode: u16) -> &'static str {
    match rcode {
        0 => "No Error",
        1 => "Format Error",
        2 => "Server Failure ",
        3 => "Non-Existent Domain",
        4 => "Not Implemented",
        5 => "Query Refused",
        _ => "Unknown",
    }
}

/// The `l7` message and the summary line of one record (`decodeLayer7`, `decodeHTTP`,
/// `decodeDNS`, `httpSummary`, `dnsSummary` in `pkg/hubble/parser/seven`).
fn l7_json(e: &L7Event) -> (Value, String) {
    let kind = match e.kind {
        L7Kind::Request => "REQUEST",
        L7Kind::Response => "RESPONSE",
    };
    let mut l7 = Map::new();
    l7.insert("type".into(), json!(kind));
    // uint64: a string in protojson (omitted when 0).
    l7.insert(
        "latency_ns".into(),
        if e.latency_ns == 0 {
            Value::Null
        } else {
            json!(e.latency_ns.to_string())
        },
    );
    let summary = match &e.record {
        L7Record::Http(h) => {
            let mut sorted: Vec<(String, &str)> = h
                .headers
                .iter()
                .map(|(k, v)| (canonical_header_key(k), v.as_str()))
                .collect();
            // slices.Sorted(maps.Keys(headers)), values of one key in order.
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let headers: Vec<Value> = sorted
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            let code = match e.kind {
                L7Kind::Request => Value::Null,
                L7Kind::Response => json!(h.code),
            };
            l7.insert(
                "http".into(),
                json!({"code": code, "method": h.method, "url": h.url, "protocol": h.protocol, "headers": headers}),
            );
            let request = format!("{} {}", h.method, h.url);
            match e.kind {
                L7Kind::Request => format!("{} {request}", h.protocol),
                L7Kind::Response => format!(
                    "{} {} {}ms ({request})",
                    h.protocol,
                    h.code,
                    e.latency_ns / 1_000_000
                ),
            }
        }
        L7Record::Dns(d) => {
            let qtypes: Vec<String> = d.qtypes.iter().map(|t| dns_type_name(*t)).collect();
            let dns = match e.kind {
                // decodeDNS: only query, observation_source and qtypes on a request.
                L7Kind::Request => json!({
                    "query": d.query,
                    "observation_source": d.observation_source,
                    "qtypes": qtypes,
                }),
                L7Kind::Response => json!({
                    "query": d.query,
                    "ips": d.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                    "ttl": d.ttl,
                    "cnames": d.cnames,
                    "observation_source": d.observation_source,
                    "rcode": d.rcode,
                    "qtypes": qtypes,
                    "rrtypes": d.rrtypes.iter().map(|t| dns_type_name(*t)).collect::<Vec<_>>(),
                }),
            };
            l7.insert("dns".into(), dns);
            let qtype_str = qtypes.join(",");
            match e.kind {
                L7Kind::Request => format!("DNS Query {} {qtype_str}", d.query),
                L7Kind::Response => {
                    let answer = if d.rcode != 0 {
                        format!("RCode: {}", dns_rcode_name(d.rcode))
                    } else {
                        let mut parts = Vec::new();
                        if !d.ips.is_empty() {
                            let ips: Vec<String> = d.ips.iter().map(|i| i.to_string()).collect();
                            parts.push(format!("{:?}", ips.join(",")));
                        }
                        if !d.cnames.is_empty() {
                            parts.push(format!("CNAMEs: {:?}", d.cnames.join(",")));
                        }
                        parts.join(" ")
                    };
                    let source = if d.observation_source == "proxy" {
                        "Proxy"
                    } else {
                        "Query"
                    };
                    format!(
                        "DNS Answer {answer} TTL: {} ({source} {} {qtype_str})",
                        d.ttl, d.query
                    )
                }
            }
        }
    };
    (Value::Object(l7), summary)
}

/// Renders one L7 record as `hubble observe` prints it, `-o json` and compact: the flow
/// `pkg/hubble/parser/seven/parser.go` `Decode` builds (`Type: L7`, `event_type` 129, `l7`,
/// `is_reply` and `reply` true for responses, the direction of the proxy's observation point,
/// no drop reason) and the line `hubble/pkg/printer` writes (`GetFlowType`: `http-request`,
/// `http-response`, `dns-request proxy`, `dns-response proxy`; the summary of `httpSummary` /
/// `dnsSummary`).
pub fn l7_flow_record(world: &World, model: Option<&Model>, e: &L7Event) -> FlowRecord {
    let v6 = e.src.is_ipv6();
    let mut flow = FlowJson::default();
    flow.set("time", json!(rfc3339(e.time_ns)));
    flow.set(
        "emitter",
        json!({"name": "Verdict", "version": env!("CARGO_PKG_VERSION")}),
    );
    let verdict = match e.verdict {
        L7Verdict::Forwarded => "FORWARDED",
        L7Verdict::Denied => "DROPPED",
        L7Verdict::Error => "ERROR",
    };
    flow.set("verdict", json!(verdict));
    flow.set(
        "IP",
        json!({"source": e.src.to_string(), "destination": e.dst.to_string(), "ipVersion": if v6 { "IPv6" } else { "IPv4" }}),
    );
    let ports = json!({"source_port": e.src_port, "destination_port": e.dst_port});
    let l4 = match e.protocol {
        Protocol::Udp => json!({ "UDP": ports }),
        Protocol::Sctp => json!({ "SCTP": ports }),
        _ => json!({ "TCP": ports }),
    };
    flow.set("l4", l4);
    flow.set("source", endpoint_json(world, model, e.src, e.src_identity));
    flow.set(
        "destination",
        endpoint_json(world, model, e.dst, e.dst_identity),
    );
    flow.set("Type", json!("L7"));
    flow.set("node_name", json!(e.node));
    flow.set("node_labels", json!(node_labels(&e.node)));
    let (l7, summary) = l7_json(e);
    flow.set("l7", l7);
    let is_reply = e.kind == L7Kind::Response;
    flow.set("reply", json!(is_reply));
    flow.set("event_type", json!({"type": MESSAGE_TYPE_ACCESS_LOG}));
    let direction = match e.direction {
        Direction::Ingress => "INGRESS",
        Direction::Egress => "EGRESS",
    };
    flow.set("traffic_direction", json!(direction));
    flow.set("is_reply", json!(is_reply));
    flow.set("Summary", json!(summary));
    let json = response(flow.into_value(), &e.node, e.time_ns);

    let flow_type = match &e.record {
        L7Record::Http(_) => format!("http-{}", if is_reply { "response" } else { "request" }),
        L7Record::Dns(d) => format!(
            "dns-{} {}",
            if is_reply { "response" } else { "request" },
            d.observation_source
        ),
    };
    let compact = compact_line(
        e.time_ns,
        &host_port(world, e.src, Some(e.src_port)),
        e.src_identity,
        &host_port(world, e.dst, Some(e.dst_port)),
        e.dst_identity,
        Some(is_reply),
        &flow_type,
        verdict,
        &summary,
    );
    FlowRecord { json, compact }
}

/// One HTTP request through an L7 proxy and what came back, for [`http_exchange`].
#[derive(Clone, Debug)]
pub struct HttpExchange {
    pub time_ns: u64,
    /// The node of the proxy (the client's for an egress proxy, the server's for ingress).
    pub node: String,
    pub direction: Direction,
    pub client: (IpAddr, u16, u32),
    pub server: (IpAddr, u16, u32),
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Whether the L7 policy allowed the request.
    pub allowed: bool,
    /// The server's status for an allowed request (the proxy answers 403 itself to a denied
    /// one).
    pub code: u16,
}

/// The records Cilium's Envoy filter logs for one request (cilium/proxy `cilium/l7policy.cc`
/// `AccessFilter::decodeHeaders` and `encodeHeaders`; `pkg/envoy/accesslog.go` `GetVerdict`):
/// allowed, a request FORWARDED and the server's response FORWARDED; denied, the request
/// DROPPED (`EntryType::Denied`) and the proxy's own 403 response, FORWARDED. Cilium's docs
/// show the pair (`Documentation/network/servicemesh/default-deny-ingress-policy.rst`:
/// `http-request DROPPED (HTTP/1.1 GET ...)`, then `http-response FORWARDED (HTTP/1.1 403 0ms
/// (GET ...))`).
pub fn http_exchange(x: &HttpExchange) -> Vec<L7Event> {
    let http = |code: u16| {
        L7Record::Http(HttpRecord {
            code,
            method: x.method.clone(),
            url: x.url.clone(),
            protocol: "HTTP/1.1".to_string(),
            headers: x.headers.clone(),
        })
    };
    let (c, s) = (x.client, x.server);
    let request = L7Event {
        time_ns: x.time_ns,
        node: x.node.clone(),
        kind: L7Kind::Request,
        verdict: if x.allowed {
            L7Verdict::Forwarded
        } else {
            L7Verdict::Denied
        },
        direction: x.direction,
        protocol: Protocol::Tcp,
        src: c.0,
        src_port: c.1,
        src_identity: c.2,
        dst: s.0,
        dst_port: s.1,
        dst_identity: s.2,
        latency_ns: 0,
        record: http(0),
    };
    let response = L7Event {
        kind: L7Kind::Response,
        verdict: L7Verdict::Forwarded,
        src: s.0,
        src_port: s.1,
        src_identity: s.2,
        dst: c.0,
        dst_port: c.1,
        dst_identity: c.2,
        record: http(if x.allowed { x.code } else { 403 }),
        ..request.clone()
    };
    vec![request, response]
}

/// One DNS query through the DNS proxy, for [`dns_exchange`].
#[derive(Clone, Debug)]
pub struct DnsExchange {
    pub time_ns: u64,
    pub node: String,
    pub protocol: Protocol,
    pub client: (IpAddr, u16, u32),
    pub server: (IpAddr, u16, u32),
    /// The name, fully qualified (trailing dot).
    pub query: String,
    pub qtype: u16,
    /// Whether the DNS rules allowed the query.
    pub allowed: bool,
    /// The server's answer to an allowed query.
    pub rcode: u16,
    pub ips: Vec<IpAddr>,
    pub ttl: u32,
    pub cnames: Vec<String>,
}

/// The records the DNS proxy logs for one query (`pkg/fqdn/dnsproxy/proxy.go` `ServeDNS`,
/// `pkg/fqdn/messagehandler` `NotifyOnDNSMsg`): allowed, the request FORWARDED and the
/// answer FORWARDED (observation point egress, source `proxy`); denied, only the request,
/// DROPPED (the proxy answers REFUSED without logging the answer).
pub fn dns_exchange(x: &DnsExchange) -> Vec<L7Event> {
    let (c, s) = (x.client, x.server);
    let request = L7Event {
        time_ns: x.time_ns,
        node: x.node.clone(),
        kind: L7Kind::Request,
        verdict: if x.allowed {
            L7Verdict::Forwarded
        } else {
            L7Verdict::Denied
        },
        direction: Direction::Egress,
        protocol: x.protocol,
        src: c.0,
        src_port: c.1,
        src_identity: c.2,
        dst: s.0,
        dst_port: s.1,
        dst_identity: s.2,
        latency_ns: 0,
        record: L7Record::Dns(DnsRecord {
            query: x.query.clone(),
            ips: Vec::new(),
            ttl: 0,
            cnames: Vec::new(),
            observation_source: "proxy".to_string(),
            rcode: 0,
            qtypes: vec![x.qtype],
            rrtypes: Vec::new(),
        }),
    };
    if !x.allowed {
        return vec![request];
    }
    // Answer types: one per answer record, CNAMEs first as a resolver returns them.
    let mut rrtypes: Vec<u16> = x.cnames.iter().map(|_| 5).collect();
    rrtypes.extend(x.ips.iter().map(|ip| if ip.is_ipv4() { 1 } else { 28 }));
    let response = L7Event {
        kind: L7Kind::Response,
        verdict: L7Verdict::Forwarded,
        src: s.0,
        src_port: s.1,
        src_identity: s.2,
        dst: c.0,
        dst_port: c.1,
        dst_identity: c.2,
        record: L7Record::Dns(DnsRecord {
            query: x.query.clone(),
            ips: x.ips.clone(),
            ttl: x.ttl,
            cnames: x.cnames.clone(),
            observation_source: "proxy".to_string(),
            rcode: x.rcode,
            qtypes: vec![x.qtype],
            rrtypes,
        }),
        ..request.clone()
    };
    vec![request, response]
}

/// The address and port of one end of a probe's connection, and its identity as the proxy's
/// node sees it (`ipcache`), for [`exchange_events`].
pub type L7End = (IpAddr, u16, u32);

/// The access-log records of one probe's L7 request ([`verdict_sim::engine::L7Exchange`]):
/// each proxy the request met logs its request record (FORWARDED when it let it through,
/// DROPPED when it refused it) in the order the request reached them; the responses come back
/// the other way. HTTP (`http_exchange`): a denied request gets the proxy's own 403, which the
/// egress proxy in front of a denying ingress proxy relays (FORWARDED, code 403); a request
/// every proxy passed gets the server's 200 when the connection reached the server, and
/// Envoy's local 503 reply when the upstream connection was dropped at L3/L4 (Envoy's router
/// answers an upstream connect failure with 503 Service Unavailable, "upstream connect error
/// or disconnect/reset before headers", which cilium/proxy's `AccessFilter::encodeHeaders`
/// logs like any response). DNS (`dns_exchange`, egress only): the zone's answer (NOERROR with
/// its addresses and TTL, or NXDOMAIN for a name the zone does not hold); an upstream
/// connection dropped at L3/L4 times out in the DNS proxy, which logs nothing for it
/// (`pkg/fqdn/messagehandler` `NotifyOnDNSMsg` returns early on `stat.IsTimeout()`), so only
/// the request record stays. `nodes` gives the node of each proxy (the client's for egress,
/// the server's for ingress).
pub fn exchange_events(
    world: &World,
    x: &verdict_sim::engine::L7Exchange<'_>,
    client: impl Fn(Direction) -> (String, L7End),
    server: impl Fn(Direction) -> L7End,
) -> Vec<L7Event> {
    let t = world.clock_ns;
    match x.request {
        verdict_sim::proxy::L7Request::Http(h) => {
            // The scenario format's default Host is the destination as written (`ns/pod`); a
            // `/` cannot stand in a URL's authority, so it is percent-encoded there (RFC 3986
            // reg-name), and `verdict replay` decodes it.
            let url = format!("http://{}{}", h.host.replace('/', "%2F"), h.path);
            let mut requests = Vec::new();
            let mut responses = Vec::new();
            // The code the innermost proxy hands back: the server's, Envoy's 503, or 403.
            let code = if x.proxies.iter().any(|(_, allowed)| !allowed) {
                403
            } else if x.delivered {
                200
            } else {
                503
            };
            for (dir, allowed) in &x.proxies {
                let (node, c) = client(*dir);
                let evs = http_exchange(&HttpExchange {
                    time_ns: t,
                    node,
                    direction: *dir,
                    client: c,
                    server: server(*dir),
                    method: h.method.clone(),
                    url: url.clone(),
                    headers: h.headers.clone(),
                    allowed: *allowed,
                    code,
                });
                let mut it = evs.into_iter();
                requests.extend(it.next());
                responses.extend(it.next());
                if !allowed {
                    break;
                }
            }
            responses.reverse();
            requests.extend(responses);
            requests
        }
        verdict_sim::proxy::L7Request::Dns(q) => {
            let Some((dir, allowed)) = x.proxies.first().copied() else {
                return Vec::new();
            };
            let (node, c) = client(dir);
            let s = server(dir);
            let answer = world.dns.lookup(q);
            let query = verdict_sim::api::fqdn(&q.to_lowercase());
            let mut evs = dns_exchange(&DnsExchange {
                time_ns: t,
                node,
                protocol: x.flow.protocol,
                client: c,
                server: s,
                query,
                qtype: if s.0.is_ipv6() { 28 } else { 1 },
                allowed,
                rcode: if answer.is_some() { 0 } else { 3 },
                ips: answer.map(|a| a.ips.clone()).unwrap_or_default(),
                ttl: answer.map_or(0, |a| a.ttl),
                cnames: Vec::new(),
            });
            if !x.delivered {
                evs.truncate(1);
            }
            evs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_take_go_s_canonical_form() {
        // textproto.CanonicalMIMEHeaderKey, as net/http.Header stores keys.
        assert_eq!(canonical_header_key("x-token"), "X-Token");
        assert_eq!(canonical_header_key("ACCEPT"), "Accept");
        assert_eq!(canonical_header_key("content-TYPE"), "Content-Type");
        assert_eq!(canonical_header_key("x token"), "x token");
        assert_eq!(dns_type_name(28), "AAAA");
        assert_eq!(dns_rcode_name(5), "Query Refused");
    }

    #[test]
    fn virtual_time_renders_as_protojson_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_234_567_000_000), "1970-01-01T00:20:34.567Z");
        assert_eq!(rfc3339(1_234_567_800_000), "1970-01-01T00:20:34.567800Z");
        assert_eq!(rfc3339(1_000_000_001), "1970-01-01T00:00:01.000000001Z");
        assert_eq!(rfc3339(86_400 * 1_000_000_000 * 59), "1970-03-01T00:00:00Z");
        assert_eq!(compact_time(1_234_567_800_000), "Jan  1 00:20:34.567");
    }

    #[test]
    fn zero_values_are_omitted_but_wrappers_and_messages_stay() {
        let mut f = FlowJson::default();
        f.set("Summary", json!("x"));
        f.set("verdict", json!("FORWARDED"));
        f.set("is_reply", json!(false));
        f.set("reply", json!(false));
        f.set("event_type", json!({"type": 5, "sub_type": 0}));
        f.set("l4", json!({"ICMPv4": {"type": 0, "code": 0}}));
        f.set("node_labels", json!([]));
        assert_eq!(
            serde_json::to_string(&f.into_value()).unwrap(),
            r#"{"verdict":"FORWARDED","l4":{"ICMPv4":{}},"event_type":{"type":5},"is_reply":false,"Summary":"x"}"#
        );
    }

    #[test]
    fn reserved_identities_are_named_and_replies_flipped() {
        assert_eq!(identity_text(1), "(host)");
        assert_eq!(identity_text(2), "(world)");
        assert_eq!(identity_text(6), "(remote-node)");
        assert_eq!(identity_text(257), "(ID:257)");
        let l = compact_line(
            0,
            "a:1",
            257,
            "b:2",
            258,
            Some(true),
            "to-endpoint",
            "FORWARDED",
            "s",
        );
        assert_eq!(
            l,
            "Jan  1 00:00:00.000: b:2 (ID:258) <- a:1 (ID:257) to-endpoint FORWARDED (s)"
        );
        let l = compact_line(0, "a:1", 257, "b:2", 258, None, "t", "DROPPED", "s");
        assert!(l.contains("a:1 (ID:257) <> b:2 (ID:258)"), "{l}");
    }

    #[test]
    fn uuids_are_deterministic_version_8() {
        let a = flow_uuid("s", 0);
        assert_eq!(a, flow_uuid("s", 0));
        assert_ne!(a, flow_uuid("s", 1));
        assert_ne!(a, flow_uuid("t", 0));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        let r = with_uuid(&json!({"flow": {"time": "t", "verdict": "X"}}), "s", 0);
        assert_eq!(
            r["flow"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["time", "uuid", "verdict"]
        );
    }
}
