#!/usr/bin/env python3
"""Writes a synthetic cluster dump for the `verdict import` benchmark.

The files look like `kubectl get -A -o yaml` output (`kind: List`, `managedFields`,
`resourceVersion`, `uid`, `status`), so the importer reads as much text as it would from a real
cluster of that size. Everything is derived from the arguments: the same arguments give the
same bytes.

    tools/gen-import-dump.py --pods 5000 --policies 500 --services 200 --out /tmp/dump
    /usr/bin/time -v target/release/verdict import --out /tmp/dump.scenario.yaml /tmp/dump

Files: namespaces.yaml, nodes.yaml, pods.yaml, services.yaml, endpointslices.yaml,
networkpolicies.yaml, ciliumnetworkpolicies.yaml (CNPs and CCNPs, one document each).
"""

import argparse
import hashlib
import os


def uid(*parts):
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def managed_fields(manager, indent):
    pad = " " * indent
    return [
        f"{pad}managedFields:",
        f"{pad}- apiVersion: v1",
        f"{pad}  fieldsType: FieldsV1",
        f"{pad}  fieldsV1:",
        f"{pad}    f:metadata:",
        f"{pad}      f:labels:",
        f"{pad}        .: {{}}",
        f"{pad}        f:app: {{}}",
        f"{pad}    f:spec:",
        f"{pad}      f:containers: {{}}",
        f"{pad}  manager: {manager}",
        f"{pad}  operation: Update",
        f'{pad}  time: "2026-12-01T10:00:00Z"',
    ]


def write_list(path, items):
    with open(path, "w") as f:
        f.write("apiVersion: v1\nitems:\n")
        for item in items:
            f.write("\n".join(item))
            f.write("\n")
        f.write('kind: List\nmetadata:\n  resourceVersion: ""\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--policies", type=int, default=500)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--apps-per-namespace", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    nss = [f"team-{i:03d}" for i in range(a.namespaces)]
    nodes = [f"worker-{i:03d}" for i in range(a.nodes)]
    rv = [100000]

    def next_rv():
        rv[0] += 1
        return rv[0]

    write_list(
        os.path.join(a.out, "namespaces.yaml"),
        [
            [
                "- apiVersion: v1",
                "  kind: Namespace",
                "  metadata:",
                '    creationTimestamp: "2026-11-02T09:14:07Z"',
                "    labels:",
                f"      kubernetes.io/metadata.name: {ns}",
                f"      team: t{i % 10}",
                f"      env: {'prod' if i % 3 else 'staging'}",
                *managed_fields("kubectl-create", 4),
                f"    name: {ns}",
                f'    resourceVersion: "{next_rv()}"',
                f"    uid: {uid('ns', ns)}",
                "  spec:",
                "    finalizers:",
                "    - kubernetes",
                "  status:",
                "    phase: Active",
            ]
            for i, ns in enumerate(nss)
        ],
    )
    write_list(
        os.path.join(a.out, "nodes.yaml"),
        [
            [
                "- apiVersion: v1",
                "  kind: Node",
                "  metadata:",
                "    labels:",
                "      kubernetes.io/arch: amd64",
                f"      kubernetes.io/hostname: {n}",
                "      kubernetes.io/os: linux",
                f"      topology.kubernetes.io/zone: zone-{i % 3}",
                f"    name: {n}",
                f'    resourceVersion: "{next_rv()}"',
                f"    uid: {uid('node', n)}",
                "  spec:",
                f"    podCIDR: 10.{64 + i // 256}.{i % 256}.0/24",
                "    podCIDRs:",
                f"    - 10.{64 + i // 256}.{i % 256}.0/24",
                "  status:",
                "    addresses:",
                f"    - address: 172.20.{i // 250}.{i % 250 + 2}",
                "      type: InternalIP",
                f"    - address: {n}",
                "      type: Hostname",
                "    conditions:",
                "    - status: \"True\"",
                "      type: Ready",
            ]
            for i, n in enumerate(nodes)
        ],
    )
    # Pods: spread over namespaces and apps; each app a Deployment's replicas.
    pods = []
    next_host = {n: 10 for n in nodes}
    for i in range(a.pods):
        ns = nss[i % a.namespaces]
        app = f"app-{(i // a.namespaces) % a.apps_per_namespace}"
        node = nodes[i % a.nodes]
        ni = i % a.nodes
        host = next_host[node]
        next_host[node] += 1
        ip = f"10.{64 + ni // 256}.{ni % 256}.{host}"
        h = hashlib.sha256(f"{ns}/{app}".encode()).hexdigest()[:10]
        name = f"{app}-{h}-{i:05d}"
        pods.append(
            [
                "- apiVersion: v1",
                "  kind: Pod",
                "  metadata:",
                f"    generateName: {app}-{h}-",
                "    labels:",
                f"      app: {app}",
                f"      tier: {['web', 'api', 'data'][i % 3]}",
                f"      pod-template-hash: \"{h}\"",
                *managed_fields("kube-controller-manager", 4),
                f"    name: {name}",
                f"    namespace: {ns}",
                "    ownerReferences:",
                "    - apiVersion: apps/v1",
                "      controller: true",
                "      kind: ReplicaSet",
                f"      name: {app}-{h}",
                f"      uid: {uid('rs', ns, app)}",
                f'    resourceVersion: "{next_rv()}"',
                f"    uid: {uid('pod', ns, name)}",
                "  spec:",
                "    containers:",
                f"    - image: registry.example.com/{app}:1.0",
                f"      name: {app}",
                "      ports:",
                "      - containerPort: 8080",
                "        name: http",
                "        protocol: TCP",
                "      - containerPort: 9090",
                "        name: metrics",
                "        protocol: TCP",
                "      resources: {}",
                f"    nodeName: {node}",
                f"    serviceAccountName: {app}",
                "  status:",
                "    conditions:",
                "    - status: \"True\"",
                "      type: Ready",
                f"    hostIP: 172.20.{ni // 250}.{ni % 250 + 2}",
                "    phase: Running",
                f"    podIP: {ip}",
                "    podIPs:",
                f"    - ip: {ip}",
                "    qosClass: BestEffort",
            ]
        )
    write_list(os.path.join(a.out, "pods.yaml"), pods)
    services = []
    slices = []
    for i in range(a.services):
        ns = nss[i % a.namespaces]
        app = f"app-{(i // a.namespaces) % a.apps_per_namespace}"
        services.append(
            [
                "- apiVersion: v1",
                "  kind: Service",
                "  metadata:",
                f"    name: svc-{i:03d}",
                f"    namespace: {ns}",
                f'    resourceVersion: "{next_rv()}"',
                f"    uid: {uid('svc', ns, i)}",
                "  spec:",
                f"    clusterIP: 10.96.{i // 250}.{i % 250 + 2}",
                "    ports:",
                "    - name: http",
                "      port: 80",
                "      protocol: TCP",
                "      targetPort: http",
                "    selector:",
                f"      app: {app}",
                "    type: ClusterIP",
                "  status:",
                "    loadBalancer: {}",
            ]
        )
        slices.append(
            [
                "- addressType: IPv4",
                "  apiVersion: discovery.k8s.io/v1",
                "  endpoints: []",
                "  kind: EndpointSlice",
                "  metadata:",
                "    labels:",
                f"      kubernetes.io/service-name: svc-{i:03d}",
                f"    name: svc-{i:03d}-abcde",
                f"    namespace: {ns}",
                "  ports:",
                "  - name: http",
                "    port: 8080",
                "    protocol: TCP",
            ]
        )
    write_list(os.path.join(a.out, "services.yaml"), services)
    write_list(os.path.join(a.out, "endpointslices.yaml"), slices)
    # Policies: a third NetworkPolicies, the rest CiliumNetworkPolicies, every tenth a CCNP.
    knps = []
    docs = []
    for i in range(a.policies):
        ns = nss[i % a.namespaces]
        app = f"app-{(i // a.namespaces) % a.apps_per_namespace}"
        peer = f"app-{(i // a.namespaces + 1) % a.apps_per_namespace}"
        if i % 3 == 0:
            knps.append(
                [
                    "- apiVersion: networking.k8s.io/v1",
                    "  kind: NetworkPolicy",
                    "  metadata:",
                    f"    name: knp-{i:03d}",
                    f"    namespace: {ns}",
                    f'    resourceVersion: "{next_rv()}"',
                    f"    uid: {uid('knp', i)}",
                    "  spec:",
                    "    podSelector:",
                    "      matchLabels:",
                    f"        app: {app}",
                    "    ingress:",
                    "    - from:",
                    "      - podSelector:",
                    "          matchLabels:",
                    f"            app: {peer}",
                    "      - namespaceSelector:",
                    "          matchLabels:",
                    f"            team: t{i % 10}",
                    "      ports:",
                    "      - port: http",
                    "        protocol: TCP",
                    "    policyTypes:",
                    "    - Ingress",
                ]
            )
        elif i % 10 == 1:
            docs.append(
                [
                    "apiVersion: cilium.io/v2",
                    "kind: CiliumClusterwideNetworkPolicy",
                    "metadata:",
                    f"  name: ccnp-{i:03d}",
                    f'  resourceVersion: "{next_rv()}"',
                    "spec:",
                    "  endpointSelector:",
                    "    matchLabels:",
                    f"      tier: {['web', 'api', 'data'][i % 3]}",
                    "  ingress:",
                    "  - fromEntities:",
                    "    - cluster",
                    "    toPorts:",
                    "    - ports:",
                    '      - port: "9090"',
                    "        protocol: TCP",
                    "status:",
                    "  conditions:",
                    "  - message: Policy validation succeeded",
                    '    status: "True"',
                    "    type: Valid",
                ]
            )
        else:
            docs.append(
                [
                    "apiVersion: cilium.io/v2",
                    "kind: CiliumNetworkPolicy",
                    "metadata:",
                    f"  name: cnp-{i:03d}",
                    f"  namespace: {ns}",
                    f'  resourceVersion: "{next_rv()}"',
                    "spec:",
                    "  endpointSelector:",
                    "    matchLabels:",
                    f"      app: {app}",
                    "  ingress:",
                    "  - fromEndpoints:",
                    "    - matchLabels:",
                    f"        app: {peer}",
                    "    toPorts:",
                    "    - ports:",
                    '      - port: "8080"',
                    "        protocol: TCP",
                    "  egress:",
                    "  - toEndpoints:",
                    "    - matchLabels:",
                    f"        app: {peer}",
                    "  - toCIDRSet:",
                    f"    - cidr: 192.0.{i % 256}.0/24",
                    "status:",
                    "  conditions:",
                    "  - message: Policy validation succeeded",
                    '    status: "True"',
                    "    type: Valid",
                ]
            )
    write_list(os.path.join(a.out, "networkpolicies.yaml"), knps)
    with open(os.path.join(a.out, "ciliumnetworkpolicies.yaml"), "w") as f:
        f.write("---\n".join("\n".join(d) + "\n" for d in docs))


if __name__ == "__main__":
    main()
