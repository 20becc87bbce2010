#!/usr/bin/env python3
# A copy of ../shared/tools/genworld.py (the world the issue 14 scale targets are measured on), so
# that tests/cli.rs can compare `verdict gen world` (sim/src/genworld.rs) with it.
"""Generate a synthetic world (probe.json) + N NetworkPolicies for Policy Assistant's simulated probe."""
import json, os, random, sys, shutil
NS, PODS, NPOL, OUT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rnd = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
shutil.rmtree(OUT, ignore_errors=True); os.makedirs(os.path.join(OUT, 'policies'))
nss = ['n%02d' % i for i in range(NS)]
ports = [(80, 'TCP', 'serve-80-tcp'), (80, 'UDP', 'serve-80-udp'), (81, 'TCP', 'serve-81-tcp'), (81, 'UDP', 'serve-81-udp')]
res = {'Namespaces': {n: {'ns': n, 'kubernetes.io/metadata.name': n, 'team': 't%d' % (i % 4)} for i, n in enumerate(nss)}, 'Pods': []}
for i, n in enumerate(nss):
    for j in range(PODS):
        res['Pods'].append({'Namespace': n, 'Name': 'p%02d' % j,
            'Labels': {'pod': 'p%02d' % j, 'app': 'app%d' % (j % 5), 'tier': ['web', 'api', 'db'][j % 3]},
            'IP': '10.%d.%d.%d' % (100 + i // 200, i % 200, j + 10),
            'Containers': [{'Name': 'c-%d-%s' % (p, pr.lower()), 'Port': p, 'Protocol': pr, 'PortName': nm} for p, pr, nm in ports]})
json.dump({'Probes': [{'Port': 80, 'Protocol': 'TCP'}], 'Resources': res}, open(os.path.join(OUT, 'probe.json'), 'w'))
def sel():
    c = rnd.random()
    if c < 0.4: return {'matchLabels': {'app': 'app%d' % rnd.randrange(5)}}
    if c < 0.7: return {'matchLabels': {'tier': rnd.choice(['web', 'api', 'db'])}}
    if c < 0.85: return {'matchExpressions': [{'key': 'tier', 'operator': rnd.choice(['In', 'NotIn']), 'values': rnd.sample(['web', 'api', 'db'], 2)}]}
    return {}
def nssel():
    c = rnd.random()
    if c < 0.5: return {'matchLabels': {'team': 't%d' % rnd.randrange(4)}}
    if c < 0.8: return {'matchExpressions': [{'key': 'kubernetes.io/metadata.name', 'operator': 'In', 'values': rnd.sample(nss, min(3, len(nss)))}]}
    return {}
def peer():
    c = rnd.random()
    if c < 0.35: return {'podSelector': sel()}
    if c < 0.65: return {'namespaceSelector': nssel()}
    if c < 0.9: return {'namespaceSelector': nssel(), 'podSelector': sel()}
    b = 100 + rnd.randrange(2)
    return {'ipBlock': {'cidr': '10.%d.0.0/16' % b, 'except': ['10.%d.%d.0/24' % (b, rnd.randrange(max(1, NS)))]}}
def portlist():
    c = rnd.random()
    if c < 0.4: return None
    if c < 0.7: return [{'port': rnd.choice([80, 81]), 'protocol': 'TCP'}]
    if c < 0.85: return [{'port': 'serve-80-tcp', 'protocol': 'TCP'}]
    return [{'port': 80, 'endPort': 81, 'protocol': 'TCP'}]
def rules(dirn):
    out = []
    for _ in range(rnd.randint(1, 3)):
        r = {}
        pl = portlist()
        if pl: r['ports'] = pl
        r['from' if dirn == 'ingress' else 'to'] = [peer() for _ in range(rnd.randint(1, 3))]
        out.append(r)
    return out
for k in range(NPOL):
    ns = rnd.choice(nss); c = rnd.random()
    spec = {'podSelector': sel()}
    if c < 0.1: spec.update(podSelector={}, policyTypes=['Ingress'])
    elif c < 0.2: spec.update(podSelector={}, policyTypes=['Egress'])
    elif c < 0.55: spec.update(policyTypes=['Ingress'], ingress=rules('ingress'))
    elif c < 0.8: spec.update(policyTypes=['Egress'], egress=rules('egress'))
    else: spec.update(policyTypes=['Ingress', 'Egress'], ingress=rules('ingress'), egress=rules('egress'))
    pol = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy', 'metadata': {'name': 'gen-%03d' % k, 'namespace': ns}, 'spec': spec}
    json.dump(pol, open(os.path.join(OUT, 'policies', 'gen-%03d.json' % k), 'w'))
print(OUT, NS, 'ns x', PODS, 'pods =', NS * PODS, 'pods;', NPOL, 'policies')
