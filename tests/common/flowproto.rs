//! flow.proto as a list, for checking that every field verdict prints in `--flows json`
//! exists in Hubble's API under that JSON name (protojson with `UseProtoNames`), has the
//! proto type's JSON form, is not a zero value protojson would omit, and comes in declaration
//! order.
//!
//! The list below was extracted from cilium/cilium `api/v1/flow/flow.proto` (every message and
//! enum; field lines are `[repeated] TYPE NAME` in declaration order, enum lines `NAME=NUMBER`)
//! and `GetFlowsResponse` from `api/v1/observer/observer.proto`, at commit
//! 0abb991080ee09682d1c12f72e24662162e6745d (main, June 2026). The .proto files themselves
//! are not part of this repository.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;

use serde_json::Value;

pub const FLOW_PROTO: &str = r#"
message Flow
  google.protobuf.Timestamp time
  string uuid
  Emitter emitter
  Verdict verdict
  uint32 drop_reason
  AuthType auth_type
  Ethernet ethernet
  IP IP
  Layer4 l4
  Tunnel tunnel
  Endpoint source
  Endpoint destination
  FlowType Type
  string node_name
  repeated string node_labels
  repeated string source_names
  repeated string destination_names
  Layer7 l7
  bool reply
  CiliumEventType event_type
  Service source_service
  Service destination_service
  TrafficDirection traffic_direction
  uint32 policy_match_type
  TraceObservationPoint trace_observation_point
  TraceReason trace_reason
  FileInfo file
  IPTraceID ip_trace_id
  DropReason drop_reason_desc
  google.protobuf.BoolValue is_reply
  DebugCapturePoint debug_capture_point
  NetworkInterface interface
  uint32 proxy_port
  TraceContext trace_context
  SocketTranslationPoint sock_xlate_point
  uint64 socket_cookie
  uint64 cgroup_id
  string Summary
  google.protobuf.Any extensions
  repeated Policy egress_allowed_by
  repeated Policy ingress_allowed_by
  repeated Policy egress_denied_by
  repeated Policy ingress_denied_by
  repeated string policy_log
  Aggregate aggregate
message Emitter
  string name
  string version
enum FlowType
  UNKNOWN_TYPE=0
  L3_L4=1
  L7=2
  SOCK=3
enum AuthType
  DISABLED=0
  SPIRE=1
  TEST_ALWAYS_FAIL=2
enum TraceObservationPoint
  UNKNOWN_POINT=0
  TO_PROXY=1
  TO_HOST=2
  TO_STACK=3
  TO_OVERLAY=4
  TO_ENDPOINT=101
  FROM_ENDPOINT=5
  FROM_PROXY=6
  FROM_HOST=7
  FROM_STACK=8
  FROM_OVERLAY=9
  FROM_NETWORK=10
  TO_NETWORK=11
  FROM_CRYPTO=12
  TO_CRYPTO=13
enum TraceReason
  TRACE_REASON_UNKNOWN=0
  NEW=1
  ESTABLISHED=2
  REPLY=3
  RELATED=4
  REOPENED=5
  SRV6_ENCAP=6
  SRV6_DECAP=7
  ENCRYPT_OVERLAY=8
message FileInfo
  string name
  uint32 line
message Layer4
  TCP TCP
  UDP UDP
  ICMPv4 ICMPv4
  ICMPv6 ICMPv6
  SCTP SCTP
  VRRP VRRP
  IGMP IGMP
enum L7FlowType
  UNKNOWN_L7_TYPE=0
  REQUEST=1
  RESPONSE=2
  SAMPLE=3
message Layer7
  L7FlowType type
  uint64 latency_ns
  DNS dns
  HTTP http
  Kafka kafka
message TraceContext
  TraceParent parent
message TraceParent
  string trace_id
message Endpoint
  uint32 ID
  uint32 identity
  string cluster_name
  string namespace
  repeated string labels
  string pod_name
  repeated Workload workloads
message Workload
  string name
  string kind
message TCP
  uint32 source_port
  uint32 destination_port
  TCPFlags flags
message IP
  string source
  string source_xlated
  string destination
  IPVersion ipVersion
  bool encrypted
message Ethernet
  string source
  string destination
message TCPFlags
  bool FIN
  bool SYN
  bool RST
  bool PSH
  bool ACK
  bool URG
  bool ECE
  bool CWR
  bool NS
message UDP
  uint32 source_port
  uint32 destination_port
message SCTP
  uint32 source_port
  uint32 destination_port
  SCTPChunkType chunk_type
enum SCTPChunkType
  UNSUPPORTED=0
  INIT=1
  INIT_ACK=2
  SHUTDOWN=3
  SHUTDOWN_ACK=4
  SHUTDOWN_COMPLETE=5
  ABORT=6
message ICMPv4
  uint32 type
  uint32 code
message ICMPv6
  uint32 type
  uint32 code
message VRRP
  uint32 type
  uint32 vrid
  uint32 priority
message IGMP
  uint32 type
  string group_address
enum IPVersion
  IP_NOT_USED=0
  IPv4=1
  IPv6=2
message Tunnel
  Protocol protocol
  IP IP
  Layer4 l4
  uint32 vni
enum Tunnel.Protocol
  UNKNOWN=0
  VXLAN=1
  GENEVE=2
enum Verdict
  VERDICT_UNKNOWN=0
  FORWARDED=1
  DROPPED=2
  ERROR=3
  AUDIT=4
  REDIRECTED=5
  TRACED=6
  TRANSLATED=7
enum DropReason
  DROP_REASON_UNKNOWN=0
  INVALID_SOURCE_MAC=130
  INVALID_DESTINATION_MAC=131
  INVALID_SOURCE_IP=132
  POLICY_DENIED=133
  INVALID_PACKET_DROPPED=134
  CT_TRUNCATED_OR_INVALID_HEADER=135
  CT_MISSING_TCP_ACK_FLAG=136
  CT_UNKNOWN_L4_PROTOCOL=137
  CT_CANNOT_CREATE_ENTRY_FROM_PACKET=138
  UNSUPPORTED_L3_PROTOCOL=139
  MISSED_TAIL_CALL=140
  ERROR_WRITING_TO_PACKET=141
  UNKNOWN_L4_PROTOCOL=142
  UNKNOWN_ICMPV4_CODE=143
  UNKNOWN_ICMPV4_TYPE=144
  UNKNOWN_ICMPV6_CODE=145
  UNKNOWN_ICMPV6_TYPE=146
  ERROR_RETRIEVING_TUNNEL_KEY=147
  ERROR_RETRIEVING_TUNNEL_OPTIONS=148
  INVALID_GENEVE_OPTION=149
  UNKNOWN_L3_TARGET_ADDRESS=150
  STALE_OR_UNROUTABLE_IP=151
  NO_MATCHING_LOCAL_CONTAINER_FOUND=152
  ERROR_WHILE_CORRECTING_L3_CHECKSUM=153
  ERROR_WHILE_CORRECTING_L4_CHECKSUM=154
  CT_MAP_INSERTION_FAILED=155
  INVALID_IPV6_EXTENSION_HEADER=156
  IP_FRAGMENTATION_NOT_SUPPORTED=157
  SERVICE_BACKEND_NOT_FOUND=158
  NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT=160
  FAILED_TO_INSERT_INTO_PROXYMAP=161
  REACHED_EDT_RATE_LIMITING_DROP_HORIZON=162
  UNKNOWN_CONNECTION_TRACKING_STATE=163
  LOCAL_HOST_IS_UNREACHABLE=164
  NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION=165
  UNSUPPORTED_L2_PROTOCOL=166
  NO_MAPPING_FOR_NAT_MASQUERADE=167
  UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE=168
  FIB_LOOKUP_FAILED=169
  ENCAPSULATION_TRAFFIC_IS_PROHIBITED=170
  INVALID_IDENTITY=171
  UNKNOWN_SENDER=172
  NAT_NOT_NEEDED=173
  IS_A_CLUSTERIP=174
  FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND=175
  FORBIDDEN_ICMPV6_MESSAGE=176
  DENIED_BY_LB_SRC_RANGE_CHECK=177
  SOCKET_LOOKUP_FAILED=178
  SOCKET_ASSIGN_FAILED=179
  PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL=180
  POLICY_DENY=181
  VLAN_FILTERED=182
  INVALID_VNI=183
  INVALID_TC_BUFFER=184
  NO_SID=185
  MISSING_SRV6_STATE=186
  NAT46=187
  NAT64=188
  AUTH_REQUIRED=189
  CT_NO_MAP_FOUND=190
  SNAT_NO_MAP_FOUND=191
  INVALID_CLUSTER_ID=192
  UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP=193
  NO_EGRESS_GATEWAY=194
  UNENCRYPTED_TRAFFIC=195
  TTL_EXCEEDED=196
  NO_NODE_ID=197
  DROP_RATE_LIMITED=198
  IGMP_HANDLED=199
  IGMP_SUBSCRIBED=200
  MULTICAST_HANDLED=201
  DROP_HOST_NOT_READY=202
  DROP_EP_NOT_READY=203
  DROP_NO_EGRESS_IP=204
  DROP_PUNT_PROXY=205
enum TrafficDirection
  TRAFFIC_DIRECTION_UNKNOWN=0
  INGRESS=1
  EGRESS=2
enum DebugCapturePoint
  DBG_CAPTURE_POINT_UNKNOWN=0
  DBG_CAPTURE_DELIVERY=4
  DBG_CAPTURE_FROM_LB=5
  DBG_CAPTURE_AFTER_V46=6
  DBG_CAPTURE_AFTER_V64=7
  DBG_CAPTURE_PROXY_PRE=8
  DBG_CAPTURE_PROXY_POST=9
  DBG_CAPTURE_SNAT_PRE=10
  DBG_CAPTURE_SNAT_POST=11
message Policy
  string name
  string namespace
  repeated string labels
  uint64 revision
  string kind
message EventTypeFilter
  int32 type
  bool match_sub_type
  int32 sub_type
message CiliumEventType
  int32 type
  int32 sub_type
message FlowFilter
  repeated string uuid
  repeated string source_ip
  repeated string source_ip_xlated
  repeated string source_pod
  repeated string source_fqdn
  repeated string source_label
  repeated string source_service
  repeated Workload source_workload
  repeated string source_cluster_name
  repeated string destination_ip
  repeated string destination_pod
  repeated string destination_fqdn
  repeated string destination_label
  repeated string destination_service
  repeated Workload destination_workload
  repeated string destination_cluster_name
  repeated TrafficDirection traffic_direction
  repeated Verdict verdict
  repeated DropReason drop_reason_desc
  repeated NetworkInterface interface
  repeated EventTypeFilter event_type
  repeated string http_status_code
  repeated string protocol
  repeated string source_port
  repeated string destination_port
  repeated bool reply
  repeated string dns_query
  repeated uint32 source_identity
  repeated uint32 destination_identity
  repeated string http_method
  repeated string http_path
  repeated string http_url
  repeated HTTPHeader http_header
  repeated TCPFlags tcp_flags
  repeated string node_name
  repeated string node_labels
  repeated IPVersion ip_version
  repeated string trace_id
  repeated uint64 ip_trace_id
  repeated bool encrypted
  Experimental experimental
message FlowFilter.Experimental
  repeated string cel_expression
enum EventType
  UNKNOWN=0
  EventSample=9
  RecordLost=2
message DNS
  string query
  repeated string ips
  uint32 ttl
  repeated string cnames
  string observation_source
  uint32 rcode
  repeated string qtypes
  repeated string rrtypes
message HTTPHeader
  string key
  string value
message HTTP
  uint32 code
  string method
  string url
  string protocol
  repeated HTTPHeader headers
message Kafka
  int32 error_code
  int32 api_version
  string api_key
  int32 correlation_id
  string topic
message Service
  string name
  string namespace
message IPTraceID
  uint64 trace_id
  uint32 ip_option_type
enum LostEventSource
  UNKNOWN_LOST_EVENT_SOURCE=0
  PERF_EVENT_RING_BUFFER=1
  OBSERVER_EVENTS_QUEUE=2
  HUBBLE_RING_BUFFER=3
message LostEvent
  LostEventSource source
  uint64 num_events_lost
  google.protobuf.Int32Value cpu
  google.protobuf.Timestamp first
  google.protobuf.Timestamp last
enum AgentEventType
  AGENT_EVENT_UNKNOWN=0
  AGENT_STARTED=2
  POLICY_UPDATED=3
  POLICY_DELETED=4
  ENDPOINT_REGENERATE_SUCCESS=5
  ENDPOINT_REGENERATE_FAILURE=6
  ENDPOINT_CREATED=7
  ENDPOINT_DELETED=8
  IPCACHE_UPSERTED=9
  IPCACHE_DELETED=10
  SERVICE_UPSERTED=11
  SERVICE_DELETED=12
message AgentEvent
  AgentEventType type
  AgentEventUnknown unknown
  TimeNotification agent_start
  PolicyUpdateNotification policy_update
  EndpointRegenNotification endpoint_regenerate
  EndpointUpdateNotification endpoint_update
  IPCacheNotification ipcache_update
  ServiceUpsertNotification service_upsert
  ServiceDeleteNotification service_delete
message AgentEventUnknown
  string type
  string notification
message TimeNotification
  google.protobuf.Timestamp time
message PolicyUpdateNotification
  repeated string labels
  uint64 revision
  int64 rule_count
message EndpointRegenNotification
  uint64 id
  repeated string labels
  string error
message EndpointUpdateNotification
  uint64 id
  repeated string labels
  string error
  string pod_name
  string namespace
message IPCacheNotification
  string cidr
  uint32 identity
  google.protobuf.UInt32Value old_identity
  string host_ip
  string old_host_ip
  uint32 encrypt_key
  string namespace
  string pod_name
message ServiceUpsertNotificationAddr
  string ip
  uint32 port
message ServiceUpsertNotification
  uint32 id
  ServiceUpsertNotificationAddr frontend_address
  repeated ServiceUpsertNotificationAddr backend_addresses
  string type
  string traffic_policy
  string name
  string namespace
  string ext_traffic_policy
  string int_traffic_policy
message ServiceDeleteNotification
  uint32 id
message NetworkInterface
  uint32 index
  string name
enum SocketTranslationPoint
  SOCK_XLATE_POINT_UNKNOWN=0
  SOCK_XLATE_POINT_PRE_DIRECTION_FWD=1
  SOCK_XLATE_POINT_POST_DIRECTION_FWD=2
  SOCK_XLATE_POINT_PRE_DIRECTION_REV=3
  SOCK_XLATE_POINT_POST_DIRECTION_REV=4
message DebugEvent
  DebugEventType type
  Endpoint source
  google.protobuf.UInt32Value hash
  google.protobuf.UInt32Value arg1
  google.protobuf.UInt32Value arg2
  google.protobuf.UInt32Value arg3
  string message
  google.protobuf.Int32Value cpu
enum DebugEventType
  DBG_EVENT_UNKNOWN=0
  DBG_GENERIC=1
  DBG_LOCAL_DELIVERY=2
  DBG_ENCAP=3
  DBG_LXC_FOUND=4
  DBG_POLICY_DENIED=5
  DBG_CT_LOOKUP=6
  DBG_CT_LOOKUP_REV=7
  DBG_CT_MATCH=8
  DBG_CT_CREATED=9
  DBG_CT_CREATED2=10
  DBG_ICMP6_HANDLE=11
  DBG_ICMP6_REQUEST=12
  DBG_ICMP6_NS=13
  DBG_ICMP6_TIME_EXCEEDED=14
  DBG_CT_VERDICT=15
  DBG_DECAP=16
  DBG_PORT_MAP=17
  DBG_ERROR_RET=18
  DBG_TO_HOST=19
  DBG_TO_STACK=20
  DBG_PKT_HASH=21
  DBG_LB6_LOOKUP_FRONTEND=22
  DBG_LB6_LOOKUP_FRONTEND_FAIL=23
  DBG_LB6_LOOKUP_BACKEND_SLOT=24
  DBG_LB6_LOOKUP_BACKEND_SLOT_SUCCESS=25
  DBG_LB6_LOOKUP_BACKEND_SLOT_V2_FAIL=26
  DBG_LB6_LOOKUP_BACKEND_FAIL=27
  DBG_LB6_REVERSE_NAT_LOOKUP=28
  DBG_LB6_REVERSE_NAT=29
  DBG_LB4_LOOKUP_FRONTEND=30
  DBG_LB4_LOOKUP_FRONTEND_FAIL=31
  DBG_LB4_LOOKUP_BACKEND_SLOT=32
  DBG_LB4_LOOKUP_BACKEND_SLOT_SUCCESS=33
  DBG_LB4_LOOKUP_BACKEND_SLOT_V2_FAIL=34
  DBG_LB4_LOOKUP_BACKEND_FAIL=35
  DBG_LB4_REVERSE_NAT_LOOKUP=36
  DBG_LB4_REVERSE_NAT=37
  DBG_LB4_LOOPBACK_SNAT=38
  DBG_LB4_LOOPBACK_SNAT_REV=39
  DBG_CT_LOOKUP4=40
  DBG_RR_BACKEND_SLOT_SEL=41
  DBG_REV_PROXY_LOOKUP=42
  DBG_REV_PROXY_FOUND=43
  DBG_REV_PROXY_UPDATE=44
  DBG_L4_POLICY=45
  DBG_NETDEV_IN_CLUSTER=46
  DBG_NETDEV_ENCAP4=47
  DBG_CT_LOOKUP4_1=48
  DBG_CT_LOOKUP4_2=49
  DBG_CT_CREATED4=50
  DBG_CT_LOOKUP6_1=51
  DBG_CT_LOOKUP6_2=52
  DBG_CT_CREATED6=53
  DBG_SKIP_PROXY=54
  DBG_L4_CREATE=55
  DBG_IP_ID_MAP_FAILED4=56
  DBG_IP_ID_MAP_FAILED6=57
  DBG_IP_ID_MAP_SUCCEED4=58
  DBG_IP_ID_MAP_SUCCEED6=59
  DBG_LB_STALE_CT=60
  DBG_INHERIT_IDENTITY=61
  DBG_SK_LOOKUP4=62
  DBG_SK_LOOKUP6=63
  DBG_SK_ASSIGN=64
  DBG_L7_LB=65
  DBG_SKIP_POLICY=66
  DBG_LB6_LOOPBACK_SNAT=67
  DBG_LB6_LOOPBACK_SNAT_REV=68
message Aggregate
  uint32 ingress_flow_count
  uint32 egress_flow_count
  uint32 unknown_direction_flow_count
message GetFlowsResponse
  flow.Flow flow
  relay.NodeStatusEvent node_status
  flow.LostEvent lost_events
  string node_name
  google.protobuf.Timestamp time
"#;

#[derive(Debug, Default)]
pub struct Proto {
    /// message -> fields (repeated, type, name) in declaration order.
    pub messages: BTreeMap<String, Vec<(bool, String, String)>>,
    /// enum -> (name, number).
    pub enums: BTreeMap<String, Vec<(String, i64)>>,
}

pub fn proto() -> Proto {
    let mut p = Proto::default();
    let mut current: Option<(bool, String)> = None;
    for line in FLOW_PROTO.lines() {
        if let Some(name) = line.strip_prefix("message ") {
            p.messages.insert(name.to_string(), Vec::new());
            current = Some((true, name.to_string()));
        } else if let Some(name) = line.strip_prefix("enum ") {
            p.enums.insert(name.to_string(), Vec::new());
            current = Some((false, name.to_string()));
        } else if let (Some(item), Some((is_msg, name))) = (line.strip_prefix("  "), &current) {
            if *is_msg {
                let mut parts: Vec<&str> = item.split_whitespace().collect();
                let repeated = parts.first() == Some(&"repeated");
                if repeated {
                    parts.remove(0);
                }
                p.messages.get_mut(name).unwrap().push((
                    repeated,
                    parts[0].to_string(),
                    parts[1].to_string(),
                ));
            } else {
                let (n, v) = item.split_once('=').unwrap();
                p.enums
                    .get_mut(name)
                    .unwrap()
                    .push((n.to_string(), v.parse().unwrap()));
            }
        }
    }
    p
}

/// A protojson Timestamp: RFC 3339, UTC, with 0, 3, 6 or 9 fractional digits.
pub fn is_timestamp(s: &str) -> bool {
    let Some(body) = s.strip_suffix('Z') else {
        return false;
    };
    let (secs, frac) = match body.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (body, None),
    };
    let b = secs.as_bytes();
    let shape = b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':';
    shape
        && frac
            .is_none_or(|f| matches!(f.len(), 3 | 6 | 9) && f.bytes().all(|c| c.is_ascii_digit()))
}

impl Proto {
    /// The message or enum a field type names, from inside message `scope`.
    fn resolve(&self, scope: &str, ty: &str) -> Option<String> {
        let ty = ty.strip_prefix("flow.").unwrap_or(ty);
        let nested = format!("{scope}.{ty}");
        [nested, ty.to_string()]
            .into_iter()
            .find(|n| self.messages.contains_key(n) || self.enums.contains_key(n))
    }

    /// Checks one JSON object as message `msg`; returns every problem found, with its path.
    pub fn check(&self, msg: &str, v: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(fields) = self.messages.get(msg) else {
            problems.push(format!("{path}: unknown message {msg}"));
            return;
        };
        let Value::Object(o) = v else {
            problems.push(format!("{path}: {msg} is not an object: {v}"));
            return;
        };
        let mut last = None;
        for (k, val) in o {
            let Some(i) = fields.iter().position(|(_, _, n)| n == k) else {
                problems.push(format!("{path}.{k}: no field {k:?} in flow.proto's {msg}"));
                continue;
            };
            if last.is_some_and(|l| i < l) {
                problems.push(format!("{path}.{k}: out of flow.proto's declaration order"));
            }
            last = Some(i);
            let (repeated, ty, _) = &fields[i];
            let p = format!("{path}.{k}");
            if *repeated {
                match val {
                    Value::Array(a) if !a.is_empty() => {
                        for (j, x) in a.iter().enumerate() {
                            self.check_value(msg, ty, x, &format!("{p}[{j}]"), problems);
                        }
                    }
                    _ => problems.push(format!("{p}: repeated field is not a non-empty list")),
                }
            } else {
                self.check_value(msg, ty, val, &p, problems);
            }
        }
    }

    fn check_value(&self, scope: &str, ty: &str, v: &Value, p: &str, problems: &mut Vec<String>) {
        let bad = |problems: &mut Vec<String>, why: &str| {
            problems.push(format!("{p}: {why} ({ty}): {v}"))
        };
        match ty {
            "string" => match v.as_str() {
                Some(s) if !s.is_empty() => {}
                _ => bad(problems, "not a non-empty string"),
            },
            "bool" => {
                if v != &Value::Bool(true) {
                    bad(problems, "a bool is printed only when true")
                }
            }
            "uint32" | "int32" | "sint32" | "fixed32" => match v.as_i64() {
                Some(n) if n != 0 => {}
                _ => bad(problems, "not a non-zero integer"),
            },
            "uint64" | "int64" | "fixed64" => match v.as_str() {
                Some(s) if s != "0" && !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {}
                _ => bad(problems, "64-bit integers are non-zero decimal strings"),
            },
            "google.protobuf.Timestamp" => {
                if !v.as_str().is_some_and(is_timestamp) {
                    bad(problems, "not a protojson Timestamp")
                }
            }
            "google.protobuf.BoolValue" => {
                if !v.is_boolean() {
                    bad(problems, "not a bool")
                }
            }
            "google.protobuf.UInt32Value" | "google.protobuf.Int32Value" => {
                if !v.is_number() {
                    bad(problems, "not a number")
                }
            }
            "google.protobuf.Any" => {}
            other => match self.resolve(scope, other) {
                Some(e) if self.enums.contains_key(&e) => {
                    let values = &self.enums[&e];
                    let zero = values
                        .iter()
                        .find(|(_, n)| *n == 0)
                        .map(|(s, _)| s.as_str());
                    match v {
                        Value::String(s)
                            if values.iter().any(|(n, _)| n == s) && Some(s.as_str()) != zero => {}
                        Value::Number(n)
                            if n.as_i64().is_some_and(|n| {
                                n != 0 && !values.iter().any(|(_, x)| *x == n)
                            }) => {}
                        _ => bad(problems, &format!("not a non-zero value of enum {e}")),
                    }
                }
                Some(m) => self.check(&m, v, p, problems),
                None => bad(problems, "unknown type"),
            },
        }
    }
}

/// Checks one `--flows json` line: a GetFlowsResponse holding a Flow.
pub fn check_line(p: &Proto, line: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match serde_json::from_str::<Value>(line) {
        Ok(v) => {
            p.check("GetFlowsResponse", &v, "$", &mut problems);
            if v.get("flow").is_none() {
                problems.push("$: no flow".into());
            }
        }
        Err(e) => problems.push(format!("not JSON: {e}")),
    }
    problems
}
