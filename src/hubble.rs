//! Hubble-style flows from datapath events: the `hubble observe -o json` line (a
//! GetFlowsResponse, protojson with proto field names, zero values omitted, spec §6.1) and the
//! compact one-line form.
//!
//! Derivation as `pkg/hubble/parser/threefour/parser.go` does it: a drop is DROPPED with its
//! reason; a trace is FORWARDED; a policy verdict is DROPPED when its verdict is negative,
//! REDIRECTED when positive, AUDIT when audited, else FORWARDED. Endpoint names and labels come
//! from the cluster and the identities of the moment.

use std::net::IpAddr;

use serde_json::{json, Map, Value};
use verdict_datapath::abi;
use verdict_datapath::events::{self, CtStatus, Event};
use verdict_sim::cluster::Peer;
use verdict_sim::engine::{FlowRecord, World};
use verdict_sim::identity::Identity;
use verdict_sim::model::Model;
use verdict_sim::verdict::DropReason;

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

/// Virtual time as RFC 3339 with nanoseconds (the simulated world starts at the epoch).
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

fn compact_time(ns: u64) -> String {
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

fn labels_of(world: &World, model: Option<&Model>, id: u32) -> Vec<String> {
    let id = Identity(id);
    let set = model
        .and_then(|m| m.identity_labels(id).cloned())
        .or_else(|| world.cluster.identities.labels(id).cloned())
        .or_else(|| id.reserved_labels());
    set.map(|s| s.iter().map(|l| l.to_string()).collect())
        .unwrap_or_default()
}

/// Hubble's Endpoint message for one side of a flow.
fn endpoint(world: &World, model: Option<&Model>, ip: IpAddr, identity: u32) -> Value {
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
        if identity != 0 {
            m.insert("identity".into(), json!(identity));
        }
        m.insert("labels".into(), json!(labels_of(world, model, identity)));
    }
    Value::Object(m)
}

fn name_of(world: &World, ip: IpAddr, port: Option<u16>) -> String {
    let base = match world.cluster.peer_of_ip(ip) {
        Peer::Pod(p) => p.to_string(),
        _ => ip.to_string(),
    };
    match port {
        Some(p) => format!("{base}:{p}"),
        None => base,
    }
}

fn icmp_name(v6: bool, t: u8) -> String {
    let name = match (v6, t) {
        (false, 0) => "EchoReply",
        (false, 3) => "DestinationUnreachable",
        (false, 8) => "EchoRequest",
        (false, 11) => "TimeExceeded",
        (true, 1) => "DestinationUnreachable",
        (true, 128) => "EchoRequest",
        (true, 129) => "EchoReply",
        _ => return format!("{}({t})", if v6 { "ICMPv6" } else { "ICMPv4" }),
    };
    format!("{} {name}", if v6 { "ICMPv6" } else { "ICMPv4" })
}

fn tcp_flags(bits: u8) -> (Value, String) {
    let names = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    let mut m = Map::new();
    let mut set = Vec::new();
    for (b, n) in names {
        if bits & b != 0 {
            m.insert(n.into(), json!(true));
            set.push(n);
        }
    }
    (Value::Object(m), format!("TCP Flags: {}", set.join(", ")))
}

/// Renders one event observed on `node`.
pub fn flow_record(world: &World, model: Option<&Model>, node: &str, ev: &Event) -> FlowRecord {
    let c = ev.common();
    let f = &c.flow;
    let v6 = f.src.is_ipv6();
    let mut flow = Map::new();
    let time = rfc3339(c.timestamp);
    flow.insert("time".into(), json!(time));
    let (verdict, reason): (&str, Option<DropReason>) = match ev {
        Event::Drop(d) => ("DROPPED", Some(DropReason::from_code(d.reason.0))),
        Event::Trace(_) => ("FORWARDED", None),
        Event::PolicyVerdict(pv) if pv.verdict < 0 => {
            ("DROPPED", Some(DropReason::from_code((-pv.verdict) as u8)))
        }
        Event::PolicyVerdict(pv) if pv.audited => ("AUDIT", None),
        Event::PolicyVerdict(pv) if pv.verdict > 0 => ("REDIRECTED", None),
        Event::PolicyVerdict(_) => ("FORWARDED", None),
    };
    flow.insert("verdict".into(), json!(verdict));
    if let Some(r) = reason {
        flow.insert("drop_reason".into(), json!(r.code()));
    }
    flow.insert(
        "IP".into(),
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
            icmp_name(false, f.icmp_type),
            false,
        ),
        58 => (
            json!({"ICMPv6": {"type": f.icmp_type, "code": f.icmp_code}}),
            icmp_name(true, f.icmp_type),
            false,
        ),
        p => (json!({}), format!("IP protocol {p}"), false),
    };
    flow.insert("l4".into(), l4);
    flow.insert(
        "source".into(),
        endpoint(world, model, f.src, c.src_identity),
    );
    flow.insert(
        "destination".into(),
        endpoint(world, model, f.dst, c.dst_identity),
    );
    flow.insert("Type".into(), json!("L3_L4"));
    flow.insert("node_name".into(), json!(node));
    let direction = match c.direction {
        events::Direction::Ingress => Some("INGRESS"),
        events::Direction::Egress => Some("EGRESS"),
        events::Direction::Unknown(_) => None,
    };
    match ev {
        Event::Drop(d) => {
            flow.insert(
                "event_type".into(),
                json!({"type": abi::CILIUM_NOTIFY_DROP, "sub_type": d.reason.0}),
            );
        }
        Event::Trace(t) => {
            flow.insert(
                "event_type".into(),
                json!({"type": abi::CILIUM_NOTIFY_TRACE, "sub_type": t.obs_point}),
            );
        }
        Event::PolicyVerdict(_) => {
            flow.insert(
                "event_type".into(),
                json!({"type": abi::CILIUM_NOTIFY_POLICY_VERDICT}),
            );
        }
    }
    if let Some(d) = direction {
        flow.insert("traffic_direction".into(), json!(d));
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
        if mt != 0 {
            flow.insert("policy_match_type".into(), json!(mt));
        }
    }
    if let Event::Trace(t) = ev {
        let point = match t.obs_point {
            abi::TRACE_TO_LXC => "TO_ENDPOINT",
            abi::TRACE_FROM_LXC => "FROM_ENDPOINT",
            _ => "UNKNOWN_POINT",
        };
        flow.insert("trace_observation_point".into(), json!(point));
        let reason = match f.ct_status {
            CtStatus::New => "NEW",
            CtStatus::Established => "ESTABLISHED",
            CtStatus::Reply => "REPLY",
            CtStatus::Related => "RELATED",
            CtStatus::Reopened => "REOPENED",
            CtStatus::Unknown(_) => "TRACE_REASON_UNKNOWN",
        };
        flow.insert("trace_reason".into(), json!(reason));
    }
    // flow.proto field order: drop_reason_desc (25) comes after the trace fields.
    if let Some(r) = reason {
        flow.insert("drop_reason_desc".into(), json!(r.hubble_name()));
    }
    // is_reply: false on policy verdicts, from conntrack on traces, absent on drops.
    match ev {
        Event::PolicyVerdict(_) => {
            flow.insert("is_reply".into(), json!(false));
        }
        Event::Trace(_) => {
            flow.insert("is_reply".into(), json!(f.is_reply));
        }
        Event::Drop(_) => {}
    }
    flow.insert("Summary".into(), json!(summary));
    let json = json!({"flow": Value::Object(flow), "node_name": node, "time": time});

    let (sp, dp) = if ports {
        (Some(f.sport), Some(f.dport))
    } else {
        (None, None)
    };
    let src = format!("{} (ID:{})", name_of(world, f.src, sp), c.src_identity);
    let dst = format!("{} (ID:{})", name_of(world, f.dst, dp), c.dst_identity);
    let what = match ev {
        Event::PolicyVerdict(pv) => format!(
            "policy-verdict:{} {} {}",
            pv.match_type,
            direction.unwrap_or("UNKNOWN"),
            match verdict {
                "DROPPED" => "DENIED",
                "FORWARDED" => "ALLOWED",
                v => v,
            }
        ),
        Event::Drop(d) => format!("{} DROPPED", DropReason::from_code(d.reason.0).text()),
        Event::Trace(t) => format!(
            "{} FORWARDED",
            if t.obs_point == abi::TRACE_TO_LXC {
                "to-endpoint"
            } else {
                "from-endpoint"
            }
        ),
    };
    let arrow = if matches!(ev, Event::Drop(_)) {
        "<>"
    } else {
        "->"
    };
    let compact = format!(
        "{}: {src} {arrow} {dst} {what} ({summary})",
        compact_time(c.timestamp)
    );
    FlowRecord { json, compact }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_renders_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_234_567_800_000), "1970-01-01T00:20:34.567800000Z");
        assert_eq!(
            rfc3339(86_400 * 1_000_000_000 * 59),
            "1970-03-01T00:00:00.000000000Z"
        );
        assert_eq!(compact_time(1_234_567_800_000), "Jan  1 00:20:34.567");
    }
}
