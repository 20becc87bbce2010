#!/usr/bin/env python3
"""Writes tests/data/hubble/demo-shop.jsonl: the Hubble capture of the three-tier demo
(scenarios/traffic/demo-shop.yaml), as `hubble observe -o json` prints it (one
GetFlowsResponse per line, protojson with UseProtoNames: flow.proto field names and order,
enums by name, zero values omitted). See tests/data/hubble/README.md for what each part is and
where its shape comes from. Deterministic: run it again and the file is byte-identical."""
import json, sys, uuid, hashlib

NODES = {"kind-worker": "172.18.0.2", "kind-worker2": "172.18.0.3"}
# name -> (namespace, node, ip, identity, labels, workload (name, kind))
PODS = {
    "front-6f9d8b7c4d-7xk2p": ("shop", "kind-worker", "10.244.1.17", 21437, {"app": "front", "tier": "web", "pod-template-hash": "6f9d8b7c4d"}, ("front", "Deployment")),
    "front-6f9d8b7c4d-q9zmt": ("shop", "kind-worker2", "10.244.2.31", 21437, {"app": "front", "tier": "web", "pod-template-hash": "6f9d8b7c4d"}, ("front", "Deployment")),
    "api-7b5c9d6f8-2jw4n": ("shop", "kind-worker", "10.244.1.42", 8841, {"app": "api", "tier": "backend", "pod-template-hash": "7b5c9d6f8"}, ("api", "Deployment")),
    "api-7b5c9d6f8-hx8vr": ("shop", "kind-worker2", "10.244.2.58", 8841, {"app": "api", "tier": "backend", "pod-template-hash": "7b5c9d6f8"}, ("api", "Deployment")),
    "db-0": ("shop", "kind-worker2", "10.244.2.77", 60112, {"app": "db", "tier": "data", "controller-revision-hash": "db-5f7c8d9b6", "statefulset.kubernetes.io/pod-name": "db-0"}, ("db", "StatefulSet")),
    "coredns-5d78c9869d-8mtxb": ("kube-system", "kind-worker", "10.244.1.3", 3512, {"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"}, ("coredns", "Deployment")),
    "coredns-5d78c9869d-tbnwl": ("kube-system", "kind-worker2", "10.244.2.4", 3512, {"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"}, ("coredns", "Deployment")),
    "prometheus-k8s-0": ("monitoring", "kind-worker", "10.244.1.90", 40968, {"app.kubernetes.io/name": "prometheus", "controller-revision-hash": "prometheus-k8s-7c9b8f6d5", "statefulset.kubernetes.io/pod-name": "prometheus-k8s-0"}, ("prometheus-k8s", "StatefulSet")),
    # A pod the scenario does not have (someone's debug shell): its flows cannot be resolved.
    "debug-shell-5b7f9": ("shop", "kind-worker", "10.244.1.250", 33871, {"run": "debug-shell"}, None),
}
SA = {"shop": "default", "kube-system": "coredns", "monitoring": "prometheus-k8s"}
GITHUB = "140.82.112.5"
CLIENT = "198.51.100.23"
GITHUB_ID = 16777217  # a CIDR/FQDN identity, as toFQDNs allocates one (local scope 1<<24 | n)

T0 = 1781082843_000000000  # 2026-06-10T09:14:03Z


def rfc3339(ns):
    import datetime
    s, frac = divmod(ns, 1_000_000_000)
    t = datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return t + "Z"
    digits = f"{frac:09d}"
    for n in (3, 6, 9):
        if digits[n:] == "0" * (9 - n):
            return f"{t}.{digits[:n]}Z"
    return f"{t}.{digits}Z"


def pod_endpoint(name):
    ns, node, ip, ident, labels, wl = PODS[name]
    ls = [f"k8s:{k}={v}" for k, v in labels.items()]
    ls += [
        f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={ns}",
        "k8s:io.cilium.k8s.policy.cluster=kind-kind",
        f"k8s:io.cilium.k8s.policy.serviceaccount={SA[ns]}",
        f"k8s:io.kubernetes.pod.namespace={ns}",
    ]
    ep = {"ID": 100 + (int(hashlib.sha1(name.encode()).hexdigest(), 16) % 3900), "identity": ident,
          "cluster_name": "kind-kind", "namespace": ns, "labels": sorted(ls), "pod_name": name}
    if wl:
        ep["workloads"] = [{"name": wl[0], "kind": wl[1]}]
    return ep


def ip_of(peer):
    if peer in PODS:
        return PODS[peer][2]
    if peer.startswith("host:"):
        return NODES[peer[5:]]
    return peer


def endpoint(peer):
    if peer in PODS:
        return pod_endpoint(peer)
    if peer.startswith("host:"):
        return {"identity": 1, "labels": ["reserved:host"]}
    if peer == GITHUB:
        return {"identity": GITHUB_ID, "labels": ["fqdn:api.github.com", "reserved:world"]}
    return {"identity": 2, "labels": ["reserved:world"]}


def node_of(peer):
    if peer in PODS:
        return PODS[peer][1]
    if peer.startswith("host:"):
        return peer[5:]
    return None


FLAG_ORDER = ["FIN", "SYN", "RST", "PSH", "ACK"]
SUMMARY_ORDER = ["SYN", "ACK", "RST", "FIN", "PSH"]
TRACE_SUB = {"TO_ENDPOINT": 0, "TO_PROXY": 1, "TO_HOST": 2, "TO_STACK": 3, "TO_OVERLAY": 4, "FROM_ENDPOINT": 5}
TRACE_NAME = {"TO_ENDPOINT": "to-endpoint", "TO_STACK": "to-stack", "TO_OVERLAY": "to-overlay", "TO_PROXY": "to-proxy"}

lines = []
n = 0


def emit(t, node, f):
    global n
    n += 1
    u = uuid.UUID(hashlib.sha1(f"demo-shop/{n}".encode()).hexdigest()[:32], version=4)
    flow = {"time": rfc3339(t), "uuid": str(u)}
    flow.update(f)
    flow["node_name"] = node
    # protojson order: node_labels comes right after node_name (flow.proto field order).
    ordered = {}
    order = ["time", "uuid", "verdict", "drop_reason", "ethernet", "IP", "l4", "source", "destination",
             "Type", "node_name", "node_labels", "source_names", "destination_names", "l7", "event_type",
             "traffic_direction", "policy_match_type", "trace_observation_point", "trace_reason",
             "drop_reason_desc", "is_reply", "interface", "proxy_port", "Summary",
             "egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by"]
    flow["node_labels"] = [f"kubernetes.io/hostname={node}", "kubernetes.io/os=linux"]
    for k in order:
        if k in flow:
            ordered[k] = flow[k]
    assert set(ordered) == set(flow), set(flow) - set(ordered)
    lines.append(json.dumps({"flow": ordered, "node_name": node, "time": ordered["time"]},
                            separators=(",", ":")))


POLICY = {
    "front": "front", "api": "api", "db": "db",
}


def policy_ref(name):
    return [{"name": name, "namespace": "shop", "labels": [
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
        f"k8s:io.cilium.k8s.policy.name={name}",
        "k8s:io.cilium.k8s.policy.namespace=shop"], "revision": "14", "kind": "CiliumNetworkPolicy"}]


def l4(proto, sport, dport, flags):
    if proto == "TCP":
        return {"TCP": {"source_port": sport, "destination_port": dport,
                        "flags": {k: True for k in FLAG_ORDER if k in flags}}}
    return {"UDP": {"source_port": sport, "destination_port": dport}}


def summary(proto, flags):
    if proto == "TCP":
        return "TCP Flags: " + ", ".join(k for k in SUMMARY_ORDER if k in flags)
    return "UDP"


def base(src, dst, proto, sport, dport, flags):
    return {"IP": {"source": ip_of(src), "destination": ip_of(dst), "ipVersion": "IPv4"},
            "l4": l4(proto, sport, dport, flags), "source": endpoint(src), "destination": endpoint(dst),
            "Type": "L3_L4"}


def trace(t, node, src, dst, proto, sport, dport, flags, point, direction, reply, dst_names=None):
    f = {"verdict": "FORWARDED"}
    f.update(base(src, dst, proto, sport, dport, flags))
    if dst_names:
        f["destination_names"] = dst_names
    f["event_type"] = {"type": 4, "sub_type": TRACE_SUB[point]}
    f["traffic_direction"] = direction
    f["trace_observation_point"] = point
    if reply:
        f["trace_reason"] = "REPLY"
    elif proto == "TCP" and flags == ["SYN"] or proto == "UDP":
        f["trace_reason"] = "NEW"
    else:
        f["trace_reason"] = "ESTABLISHED"
    f["is_reply"] = reply
    f["Summary"] = summary(proto, flags)
    emit(t, node, f)


def verdict_event(t, node, src, dst, proto, sport, dport, flags, direction, allowed, match, policy, dst_names=None):
    f = {"verdict": "FORWARDED" if allowed else "DROPPED"}
    if not allowed:
        f["drop_reason"] = 133
    f.update(base(src, dst, proto, sport, dport, flags))
    if dst_names:
        f["destination_names"] = dst_names
    f["event_type"] = {"type": 5}
    f["traffic_direction"] = direction
    f["policy_match_type"] = match
    if not allowed:
        f["drop_reason_desc"] = "POLICY_DENIED"
    else:
        f["is_reply"] = False
    f["Summary"] = summary(proto, flags)
    if allowed and policy:
        f["egress_allowed_by" if direction == "EGRESS" else "ingress_allowed_by"] = policy_ref(policy)
    emit(t, node, f)


def drop(t, node, src, dst, proto, sport, dport, flags, direction):
    f = {"verdict": "DROPPED", "drop_reason": 133}
    f.update(base(src, dst, proto, sport, dport, flags))
    f["event_type"] = {"type": 1, "sub_type": 133}
    f["traffic_direction"] = direction
    f["drop_reason_desc"] = "POLICY_DENIED"
    f["Summary"] = summary(proto, flags)
    emit(t, node, f)


def out_point(src, dst):
    """Where a packet leaving src's node towards dst is traced."""
    if dst in PODS and node_of(dst) == node_of(src):
        return None  # delivered locally: only to-endpoint
    if dst in PODS or dst.startswith("host:"):
        return "TO_OVERLAY"
    return "TO_STACK"


def tcp_conn(t, client, server, sport, dport, eg_policy, in_policy, dst_names=None, data=True):
    """A whole TCP connection, as a node with monitor aggregation 'medium' reports it:
    policy verdicts on the first packet, traces where packets leave or reach a pod."""
    def hop(t, src, dst, s, d, flags, reply):
        # decodeTrafficDirection: EGRESS when "the local endpoint is the source" differs
        # from "it is a reply"; the local endpoint of to-overlay/to-stack is the sender, of
        # to-endpoint the receiver.
        def way(local_is_src):
            return "EGRESS" if local_is_src != reply else "INGRESS"
        if not reply and flags == ["SYN"] and client in PODS and eg_policy:
            verdict_event(t, node_of(client), client, server, "TCP", s, d, flags, "EGRESS", True, 2, eg_policy, dst_names)
        if src in PODS:
            p = out_point(src, dst)
            if p:
                trace(t + 30_000, node_of(src), src, dst, "TCP", s, d, flags, p, way(True), reply,
                      None if reply else dst_names)
        if dst in PODS:
            if not reply and flags == ["SYN"] and in_policy:
                verdict_event(t + 180_000, node_of(dst), src, dst, "TCP", s, d, flags, "INGRESS", True, 2, in_policy)
            trace(t + 210_000, node_of(dst), src, dst, "TCP", s, d, flags, "TO_ENDPOINT", way(False), reply)
    steps = [(["SYN"], False), (["SYN", "ACK"], True), (["ACK"], False)]
    if data:
        steps += [(["PSH", "ACK"], False), (["PSH", "ACK"], True)]
    steps += [(["FIN", "ACK"], False), (["FIN", "ACK"], True), (["ACK"], False)]
    for i, (flags, reply) in enumerate(steps):
        at = t + i * 1_250_000
        if reply:
            hop(at, server, client, dport, sport, flags, True)
        else:
            hop(at, client, server, sport, dport, flags, False)


def dns_lookup(t, client, server, sport, name, ips, l7):
    """A DNS lookup over UDP. With l7 (the client's policy has a DNS rule), the DNS proxy
    sees it: to-proxy, then the proxy's dns-request/dns-response L7 records."""
    pol = PODS[client][5][0] if PODS[client][5] else None
    verdict_event(t, node_of(client), client, server, "UDP", sport, 53, [], "EGRESS", True, 2, pol)
    if l7:
        trace(t + 20_000, node_of(client), client, server, "UDP", sport, 53, [], "TO_PROXY", "EGRESS", False)
        q = {"query": name + ".", "observation_source": "proxy", "qtypes": ["A"]}
        f = {"verdict": "FORWARDED", "IP": {"source": ip_of(client), "destination": ip_of(server), "ipVersion": "IPv4"},
             "l4": {"UDP": {"source_port": sport, "destination_port": 53}},
             "source": endpoint(client), "destination": endpoint(server), "Type": "L7",
             "l7": {"type": "REQUEST", "dns": q}, "event_type": {"type": 129},
             "traffic_direction": "EGRESS", "is_reply": False, "Summary": f"DNS Query {name}. A"}
        emit(t + 60_000, node_of(client), f)
        r = {"query": name + ".", "ips": ips, "ttl": 60, "observation_source": "proxy", "qtypes": ["A"], "rrtypes": ["A"]}
        f2 = {"verdict": "FORWARDED", "IP": {"source": ip_of(server), "destination": ip_of(client), "ipVersion": "IPv4"},
              "l4": {"UDP": {"source_port": 53, "destination_port": sport}},
              "source": endpoint(server), "destination": endpoint(client), "Type": "L7",
              "l7": {"type": "RESPONSE", "latency_ns": "1843210", "dns": r}, "event_type": {"type": 129},
              "traffic_direction": "EGRESS", "is_reply": True,
              "Summary": f"DNS Answer \"{','.join(ips)}\" TTL: 60 (Proxy {name}. A)"}
        emit(t + 1_903_210, node_of(client), f2)
    else:
        p = out_point(client, server)
        if p:
            trace(t + 20_000, node_of(client), client, server, "UDP", sport, 53, [], p, "EGRESS", False)
        trace(t + 190_000, node_of(server), client, server, "UDP", sport, 53, [], "TO_ENDPOINT", "INGRESS", False)
        trace(t + 900_000, node_of(client), server, client, "UDP", 53, sport, [], "TO_ENDPOINT", "EGRESS", True)


S = 1_000_000_000
# 1. A client on the internet reaches the shop front (its LoadBalancer keeps the client IP).
tcp_conn(T0, CLIENT, "front-6f9d8b7c4d-7xk2p", 51514, 8080, None, "front")
# 2. The front resolves the api Service name, then calls the api on the other node.
dns_lookup(T0 + 20_000_000, "front-6f9d8b7c4d-7xk2p", "coredns-5d78c9869d-8mtxb", 40112, "api.shop.svc.cluster.local", ["10.96.41.7"], False)
tcp_conn(T0 + 25_000_000, "front-6f9d8b7c4d-7xk2p", "api-7b5c9d6f8-hx8vr", 43512, 8080, "front", "api")
# 3. The api reads the database.
tcp_conn(T0 + 40_000_000, "api-7b5c9d6f8-hx8vr", "db-0", 38220, 5432, "api", "db")
# 4. The api looks up the external payments API through the DNS proxy (its policy has a DNS
#    rule), then calls it.
dns_lookup(T0 + 60_000_000, "api-7b5c9d6f8-2jw4n", "coredns-5d78c9869d-8mtxb", 51877, "api.github.com", [GITHUB], True)
tcp_conn(T0 + 70_000_000, "api-7b5c9d6f8-2jw4n", GITHUB, 44790, 443, "api", None, dst_names=["api.github.com"])
# 5. The second front replica calls the api on its own node, and the api on the first node
#    reads the database across nodes.
tcp_conn(T0 + 2 * S, "front-6f9d8b7c4d-q9zmt", "api-7b5c9d6f8-hx8vr", 35002, 8080, "front", "api")
tcp_conn(T0 + 2 * S + 30_000_000, "api-7b5c9d6f8-2jw4n", "db-0", 38400, 5432, "api", "db")
# 6. Prometheus scrapes both api replicas' metrics port.
tcp_conn(T0 + 3 * S, "prometheus-k8s-0", "api-7b5c9d6f8-2jw4n", 56010, 9090, None, "api")
tcp_conn(T0 + 3 * S + 4_000_000, "prometheus-k8s-0", "api-7b5c9d6f8-hx8vr", 56012, 9090, None, "api")
# 7. The kubelet's readiness probe of the api on its node (the host identity).
tcp_conn(T0 + 4 * S, "host:kind-worker", "api-7b5c9d6f8-2jw4n", 60344, 8080, None, None, data=False)
# 8. A front tries the database directly: its egress policy denies it; the SYN is retried.
for i, dt in enumerate([0, 1 * S, 3 * S]):
    t = T0 + 5 * S + dt
    verdict_event(t, "kind-worker2", "front-6f9d8b7c4d-q9zmt", "db-0", "TCP", 47002, 5432, ["SYN"], "EGRESS", False, 0, None)
    drop(t + 15_000, "kind-worker2", "front-6f9d8b7c4d-q9zmt", "db-0", "TCP", 47002, 5432, ["SYN"], "EGRESS")
# 9. Someone's debug pod, which the scenario does not have, calls the api.
tcp_conn(T0 + 6 * S, "debug-shell-5b7f9", "api-7b5c9d6f8-2jw4n", 41000, 8080, None, "api", data=False)
# 10. A second internet client request, to the other front replica.
tcp_conn(T0 + 9 * S, "203.0.113.77", "front-6f9d8b7c4d-q9zmt", 60001, 8080, None, "front")

out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/hubble/demo-shop.jsonl"
with open(out, "w") as fh:
    fh.write("\n".join(lines) + "\n")
print(f"wrote {len(lines)} flows to {out}", file=sys.stderr)
