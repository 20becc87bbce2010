//! Reading Hubble flows: `hubble observe -o json` (one `GetFlowsResponse` per line, which is
//! `-o jsonpb` too), the legacy `-o json` (one bare `Flow` per line), and either with the
//! JSON names protojson also accepts (`sourcePort` for `source_port`, ...).
//!
//! Only the fields replay, impact and suggest need are read; the rest are ignored, as
//! `protojson.UnmarshalOptions{DiscardUnknown: true}` does (what `hubble observe --input-file`
//! falls back to). Field names and enum spellings are flow.proto's (`api/v1/flow/flow.proto`);
//! enums are accepted by name or by number, as protojson accepts them.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A protobuf enum value as protojson writes or reads it: a name or a number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProtoEnum {
    #[default]
    Unset,
    Name(String),
    Number(i64),
}

impl ProtoEnum {
    /// The value's name, with `names[n]` giving the names of numbers (flow.proto's order).
    pub fn name<'a>(&'a self, names: &[(i64, &'a str)]) -> Option<&'a str> {
        match self {
            ProtoEnum::Unset => None,
            ProtoEnum::Name(s) => Some(s.as_str()),
            ProtoEnum::Number(n) => names.iter().find(|(v, _)| v == n).map(|(_, s)| *s),
        }
    }
}

impl<'de> Deserialize<'de> for ProtoEnum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ProtoEnum;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an enum name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProtoEnum, E> {
                Ok(ProtoEnum::Name(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ProtoEnum, E> {
                Ok(ProtoEnum::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ProtoEnum, E> {
                Ok(ProtoEnum::Number(v as i64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ProtoEnum, E> {
                Ok(ProtoEnum::Unset)
            }
        }
        d.deserialize_any(V)
    }
}

/// A uint64 field: protojson writes it as a string, and reads a string or a number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct U64(pub u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a uint64 (a number or a decimal string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v).map(U64).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64, E> {
                v.parse().map(U64).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Workload {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
}

/// flow.proto `Endpoint`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Endpoint {
    #[serde(default, rename = "ID")]
    pub id: u32,
    #[serde(default)]
    pub identity: u32,
    #[serde(default, alias = "clusterName")]
    pub cluster_name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default, alias = "podName")]
    pub pod_name: String,
    #[serde(default)]
    pub workloads: Vec<Workload>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Ip {
    #[serde(default)]
    pub source: Option<IpAddr>,
    #[serde(default)]
    pub destination: Option<IpAddr>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[allow(non_snake_case)]
pub struct TcpFlags {
    #[serde(default)]
    pub FIN: bool,
    #[serde(default)]
    pub SYN: bool,
    #[serde(default)]
    pub RST: bool,
    #[serde(default)]
    pub PSH: bool,
    #[serde(default)]
    pub ACK: bool,
    #[serde(default)]
    pub URG: bool,
}

impl TcpFlags {
    /// The flags as the TCP header's bits.
    pub fn bits(&self) -> u8 {
        (self.FIN as u8)
            | (self.SYN as u8) << 1
            | (self.RST as u8) << 2
            | (self.PSH as u8) << 3
            | (self.ACK as u8) << 4
            | (self.URG as u8) << 5
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Ports {
    #[serde(default, alias = "sourcePort")]
    pub source_port: u16,
    #[serde(default, alias = "destinationPort")]
    pub destination_port: u16,
    #[serde(default)]
    pub flags: Option<TcpFlags>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Icmp {
    #[serde(default, rename = "type")]
    pub icmp_type: u8,
    #[serde(default)]
    pub code: u8,
}

/// flow.proto `Layer4` (a oneof: one of these is set).
#[derive(Clone, Debug, Default, Deserialize)]
#[allow(non_snake_case)]
pub struct Layer4 {
    #[serde(default)]
    pub TCP: Option<Ports>,
    #[serde(default)]
    pub UDP: Option<Ports>,
    #[serde(default)]
    pub SCTP: Option<Ports>,
    #[serde(default)]
    pub ICMPv4: Option<Icmp>,
    #[serde(default)]
    pub ICMPv6: Option<Icmp>,
    #[serde(default)]
    pub VRRP: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub IGMP: Option<serde::de::IgnoredAny>,
}

/// flow.proto `DNS`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub rcode: u32,
}

/// flow.proto `HTTP` (the fields a replay reads).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Http {
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub headers: Vec<HttpHeader>,
}

/// flow.proto `HTTPHeader`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HttpHeader {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// flow.proto `L7FlowType`.
pub const L7_TYPES: &[(i64, &str)] = &[
    (0, "UNKNOWN_L7_TYPE"),
    (1, "REQUEST"),
    (2, "RESPONSE"),
    (3, "SAMPLE"),
];

/// flow.proto `Layer7`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Layer7 {
    #[serde(default, rename = "type")]
    pub l7_type: ProtoEnum,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub http: Option<Http>,
    #[serde(default)]
    pub kafka: Option<serde::de::IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventType {
    #[serde(default, rename = "type")]
    pub event_type: i32,
    #[serde(default, alias = "subType")]
    pub sub_type: i32,
}

/// The fields of flow.proto `Flow` that replay reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[allow(non_snake_case)]
pub struct Flow {
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub verdict: ProtoEnum,
    #[serde(default, alias = "dropReason")]
    pub drop_reason: u32,
    #[serde(default)]
    pub IP: Option<Ip>,
    #[serde(default)]
    pub l4: Option<Layer4>,
    #[serde(default)]
    pub source: Option<Endpoint>,
    #[serde(default)]
    pub destination: Option<Endpoint>,
    #[serde(default)]
    pub Type: ProtoEnum,
    #[serde(default, alias = "nodeName")]
    pub node_name: String,
    #[serde(default, alias = "sourceNames")]
    pub source_names: Vec<String>,
    #[serde(default, alias = "destinationNames")]
    pub destination_names: Vec<String>,
    #[serde(default)]
    pub l7: Option<Layer7>,
    #[serde(default, alias = "eventType")]
    pub event_type: Option<EventType>,
    #[serde(default, alias = "trafficDirection")]
    pub traffic_direction: ProtoEnum,
    #[serde(default, alias = "policyMatchType")]
    pub policy_match_type: u32,
    #[serde(default, alias = "traceObservationPoint")]
    pub trace_observation_point: ProtoEnum,
    #[serde(default, alias = "dropReasonDesc")]
    pub drop_reason_desc: ProtoEnum,
    #[serde(default, alias = "isReply")]
    pub is_reply: Option<bool>,
    #[serde(default)]
    pub Summary: String,
}

/// flow.proto `Verdict` names by number.
pub const VERDICTS: &[(i64, &str)] = &[
    (0, "VERDICT_UNKNOWN"),
    (1, "FORWARDED"),
    (2, "DROPPED"),
    (3, "ERROR"),
    (4, "AUDIT"),
    (5, "REDIRECTED"),
    (6, "TRACED"),
    (7, "TRANSLATED"),
];
/// flow.proto `FlowType`.
pub const FLOW_TYPES: &[(i64, &str)] = &[(0, "UNKNOWN_TYPE"), (1, "L3_L4"), (2, "L7"), (3, "SOCK")];
/// flow.proto `TrafficDirection`.
pub const DIRECTIONS: &[(i64, &str)] = &[
    (0, "TRAFFIC_DIRECTION_UNKNOWN"),
    (1, "INGRESS"),
    (2, "EGRESS"),
];
/// flow.proto `TraceObservationPoint`.
pub const OBSERVATION_POINTS: &[(i64, &str)] = &[
    (0, "UNKNOWN_POINT"),
    (1, "TO_PROXY"),
    (2, "TO_HOST"),
    (3, "TO_STACK"),
    (4, "TO_OVERLAY"),
    (101, "TO_ENDPOINT"),
    (5, "FROM_ENDPOINT"),
    (6, "FROM_PROXY"),
    (7, "FROM_HOST"),
    (8, "FROM_STACK"),
    (9, "FROM_OVERLAY"),
    (10, "FROM_NETWORK"),
    (11, "TO_NETWORK"),
    (12, "FROM_CRYPTO"),
    (13, "TO_CRYPTO"),
];

/// One line of a flow file.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    flow: Option<Flow>,
    // Other GetFlowsResponse payloads (node_status, lost_events) carry no flow.
    #[serde(default, alias = "nodeStatus")]
    node_status: Option<serde::de::IgnoredAny>,
    #[serde(default, alias = "lostEvents")]
    lost_events: Option<serde::de::IgnoredAny>,
    #[serde(default, alias = "nodeName")]
    node_name: Option<String>,
}

/// A flow read from a file, with where it was.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// 1-based line number.
    pub line: usize,
    pub flow: Flow,
    /// Nanoseconds since the epoch (0 when the flow has no time).
    pub time_ns: u64,
}

/// What a line of a flow file held.
#[derive(Debug)]
pub enum Entry {
    Flow(Box<Recorded>),
    /// A GetFlowsResponse without a flow (node status, lost events), and what it was.
    Other(usize, &'static str),
}

/// Parses an RFC 3339 timestamp (`2026-06-10T09:14:03.123Z`, offsets allowed) to
/// nanoseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut i = 19;
    let mut frac: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32);
    }
    let offset_s: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let sign = if *c == b'+' { 1 } else { -1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac)
}

/// Parses one line of a flow file. `Ok(None)` for a blank line.
pub fn parse_line(file: &Path, line: usize, text: &str) -> Result<Option<Entry>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let at = || format!("{}:{line}", file.display());
    let parsed: Line = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: column {}: not a Hubble flow (hubble observe -o json or jsonpb): {e}",
            at(),
            e.column()
        )
    })?;
    let flow = match parsed.flow {
        Some(mut f) => {
            if f.node_name.is_empty() {
                f.node_name = parsed.node_name.unwrap_or_default();
            }
            f
        }
        None if parsed.node_status.is_some() => return Ok(Some(Entry::Other(line, "node_status"))),
        None if parsed.lost_events.is_some() => return Ok(Some(Entry::Other(line, "lost_events"))),
        None => {
            // A bare Flow (legacy `-o json`): read the line again as one.
            let f: Flow = serde_json::from_str(text).map_err(|e| {
                anyhow::anyhow!("{}: column {}: not a Hubble flow: {e}", at(), e.column())
            })?;
            if f.IP.is_none()
                && f.l4.is_none()
                && f.source.is_none()
                && f.verdict == ProtoEnum::Unset
            {
                bail!(
                    "{}: not a Hubble flow: neither a GetFlowsResponse (`flow`) nor a Flow (`IP`, `l4`, `source`, `verdict`)",
                    at()
                );
            }
            f
        }
    };
    let time_ns = match &flow.time {
        None => 0,
        Some(t) => parse_rfc3339(t).with_context(|| {
            format!(
                "{}: field flow.time: {t:?} is not an RFC 3339 timestamp",
                at()
            )
        })?,
    };
    if let ProtoEnum::Name(v) = &flow.verdict {
        if !VERDICTS.iter().any(|(_, n)| n == v) {
            bail!(
                "{}: field flow.verdict: unknown verdict {v:?} (flow.proto Verdict: {})",
                at(),
                VERDICTS
                    .iter()
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(Some(Entry::Flow(Box::new(Recorded {
        line,
        flow,
        time_ns,
    }))))
}

/// Reads every line of a flow file.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(e) = parse_line(path, i + 1, l)? {
            out.push(e);
        }
    }
    if out.is_empty() {
        bail!("{}: no flows (an empty file)", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_as_protojson_writes_it() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-06-10T09:14:03.025180Z"),
            Some(1_781_082_843_025_180_000)
        );
        assert_eq!(
            parse_rfc3339("2026-06-10T11:14:03+02:00"),
            Some(1_781_082_843_000_000_000)
        );
        assert_eq!(parse_rfc3339("2026-06-10 09:14"), None);
        assert_eq!(parse_rfc3339("2026-13-10T09:14:03Z"), None);
    }

    #[test]
    fn the_three_shapes_and_json_names() {
        let p = Path::new("f.json");
        let wrapped = r#"{"flow":{"verdict":"DROPPED","IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"TCP":{"source_port":1,"destination_port":80,"flags":{"SYN":true}}}},"node_name":"n1","time":"1970-01-01T00:00:01Z"}"#;
        let bare = r#"{"time":"1970-01-01T00:00:01Z","verdict":2,"IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"TCP":{"sourcePort":1,"destinationPort":80,"flags":{"SYN":true}}},"nodeName":"n1"}"#;
        for text in [wrapped, bare] {
            let Some(Entry::Flow(r)) = parse_line(p, 3, text).unwrap() else {
                panic!("{text}")
            };
            assert_eq!(r.flow.verdict.name(VERDICTS), Some("DROPPED"), "{text}");
            let tcp = r.flow.l4.as_ref().unwrap().TCP.as_ref().unwrap();
            assert_eq!((tcp.source_port, tcp.destination_port), (1, 80));
            assert_eq!(tcp.flags.as_ref().unwrap().bits(), 0x02);
            assert_eq!(r.flow.node_name, "n1");
        }
        assert!(matches!(
            parse_line(p, 1, r#"{"lost_events":{"num_events_lost":"3"}}"#).unwrap(),
            Some(Entry::Other(1, "lost_events"))
        ));
        let e = parse_line(p, 7, r#"{"flow":{"verdict":"MAYBE"}}"#).unwrap_err();
        assert!(
            e.to_string().contains("f.json:7: field flow.verdict"),
            "{e}"
        );
        let e = parse_line(p, 2, "{not json").unwrap_err();
        assert!(e.to_string().starts_with("f.json:2: column"), "{e}");
        let e = parse_line(p, 2, r#"{"flow":{"time":"yesterday"}}"#).unwrap_err();
        assert!(e.to_string().contains("field flow.time"), "{e}");
    }
}
