#!/usr/bin/env python3
"""Runs every policy document of a Cilium source tree through `verdict check`.

Usage: tools/upstream-policies.py CILIUM_GIT_DIR [VERDICT_BINARY] [--list] [--paths=A,B] [--l7]

CILIUM_GIT_DIR is a Cilium checkout or bare git directory (read with `git show`, at HEAD).
Documents come from the .yaml/.yml files under examples/ and Documentation/ (or the
directories --paths names, such as cilium-cli/connectivity), and from the
`.. code-block:: yaml` blocks of Documentation/**/*.rst. Each YAML document that declares a
policy kind (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy, or a list
that holds them) is checked on its own, so one refusal does not hide the documents after it.

Prints how many load, and how many are refused and why, grouped by reason: "not supported
yet: <field>" by field, anything else by message. With --list, one line per refused
document. With --l7, only the documents that use issue 10's features (toFQDNs, HTTP rules,
DNS rules) are counted, and each one that loads is also simulated: put in a scenario (its
namespace, a pod per endpointSelector's matchLabels, kube-dns in kube-system with its DNS
server entry) and run with `verdict run` on oracle, model and rbpf (policy resolved, maps
written, no probes). Needs only Python 3 and git.
"""

import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict

POLICY_KIND = re.compile(
    r"^\s*kind:\s*[\"']?(CiliumNetworkPolicy|CiliumClusterwideNetworkPolicy|NetworkPolicy"
    r"|List|CiliumNetworkPolicyList|CiliumClusterwideNetworkPolicyList|NetworkPolicyList)[\"']?\s*$",
    re.M,
)
POLICY_ITEM = re.compile(
    r"kind:\s*[\"']?(CiliumNetworkPolicy|CiliumClusterwideNetworkPolicy|NetworkPolicy)\b"
)


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def rst_yaml_blocks(text):
    """The bodies of `.. code-block:: yaml` directives, dedented, with their start line."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. code-block::\s*yaml\s*$", lines[i])
        if not m:
            i += 1
            continue
        base = len(m.group(1))
        j = i + 1
        # Directive options (:caption: ...) and the blank line before the body.
        while j < len(lines) and (
            lines[j].strip() == "" or re.match(r"^\s+:\w[\w-]*:", lines[j])
        ):
            j += 1
        if j >= len(lines):
            break
        indent = len(lines[j]) - len(lines[j].lstrip())
        if indent <= base:
            i = j
            continue
        body = []
        start = j + 1
        while j < len(lines) and (
            lines[j].strip() == "" or len(lines[j]) - len(lines[j].lstrip()) >= indent
        ):
            body.append(lines[j][indent:])
            j += 1
        yield start, "\n".join(body).rstrip() + "\n"
        i = j


def documents(text):
    """Splits a YAML stream on `---` lines; yields (first line, text)."""
    start, cur = 1, []
    for n, line in enumerate(text.split("\n"), 1):
        if re.match(r"^---(\s|$)", line):
            if cur:
                yield start, "\n".join(cur) + "\n"
            start, cur = n + 1, []
        else:
            cur.append(line)
    if cur:
        yield start, "\n".join(cur) + "\n"


def classify(out):
    """`verdict check` output -> (outcome, reason)."""
    first = out.strip().split("\n")[0] if out.strip() else "no output"
    m = re.match(r"ok .*: (\d+) manifest", first)
    if m:
        return ("load", int(m.group(1))) if int(m.group(1)) > 0 else ("none", 0)
    m = re.search(r"not supported yet: ([^\n(]+?)(?: \(|$|\n)", out)
    if m:
        return "unsupported", m.group(1).strip()
    msg = re.sub(r"^error: \S+?:(\d+:\d+: )?(document \d+: )?", "", first)
    msg = re.sub(r'"[^"]*"', '"…"', msg)
    return "refused", msg[:140]


L7_FEATURE = re.compile(r"^\s*-?\s*(toFQDNs|http|dns):", re.M)


def simulate(binary, tmp, doc):
    """Runs one loaded policy document in a small scenario; returns None or the error."""
    import json

    try:
        import yaml  # PyYAML, to read the selectors; without it the pods get no labels
    except ImportError:
        yaml = None
    pods, namespace = [], "default"
    if yaml is not None:
        try:
            d = yaml.safe_load(doc) or {}
        except Exception:
            d = {}
        namespace = (d.get("metadata") or {}).get("namespace") or "default"
        specs = [d.get("spec")] if d.get("spec") else []
        specs += d.get("specs") or []
        for i, spec in enumerate(s for s in specs if isinstance(s, dict)):
            sel = spec.get("endpointSelector") or {}
            labels = {
                str(k).split(":", 1)[-1]: str(v)
                for k, v in (sel.get("matchLabels") or {}).items()
                if not str(k).split(":", 1)[-1].startswith("io.kubernetes.pod.namespace")
            }
            pods.append({"name": f"{namespace}/p{i}", "labels": labels})
    namespaces = sorted({namespace, "kube-system"})
    pods.append({"name": "kube-system/kube-dns", "labels": {"k8s-app": "kube-dns"}})
    policy = os.path.join(tmp, "policy.yaml")
    with open(policy, "w") as fh:
        fh.write(doc)
    scenario = {
        "name": "upstream-l7",
        "cluster": {
            "namespaces": [{"name": n} for n in namespaces],
            "pods": pods,
            "dns": [{"name": "kube-dns", "pod": "kube-system/kube-dns"}],
        },
        "policies": [{"file": policy}],
        "steps": [],
    }
    path = os.path.join(tmp, "scenario.yaml")
    with open(path, "w") as fh:
        json.dump(scenario, fh)
    out = subprocess.run(
        [binary, "run", "--backend", "oracle,model,rbpf", path],
        capture_output=True,
        text=True,
    )
    if out.returncode == 0:
        return None
    text = (out.stdout + out.stderr).strip().split("\n")
    return next((l for l in text if "error" in l.lower() or "FAIL" in l), text[0])[:160]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        print(__doc__)
        sys.exit(2)
    repo = args[0]
    binary = args[1] if len(args) > 1 else "verdict"
    listing = "--list" in sys.argv
    l7 = "--l7" in sys.argv
    simulated, sim_failed = 0, []
    paths = ["examples", "Documentation"]
    for a in sys.argv[1:]:
        if a.startswith("--paths="):
            paths = a[len("--paths="):].split(",")
    files = git(repo, "ls-tree", "-r", "--name-only", "HEAD", "--", *paths)
    sources = []
    for f in files.split():
        if f.endswith((".yaml", ".yml")):
            sources.append((f, 1, git(repo, "show", f"HEAD:{f}")))
        elif f.endswith(".rst"):
            text = git(repo, "show", f"HEAD:{f}")
            if "code-block:: yaml" in text:
                for line, body in rst_yaml_blocks(text):
                    sources.append((f, line, body))
    counts = Counter()
    policies = 0
    reasons = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "doc.yaml")
        for name, base, text in sources:
            for line, doc in documents(text):
                if not (POLICY_KIND.search(doc) and POLICY_ITEM.search(doc)):
                    continue
                if l7 and not L7_FEATURE.search(doc):
                    continue
                with open(path, "w") as fh:
                    fh.write(doc)
                out = subprocess.run(
                    [binary, "check", path], capture_output=True, text=True
                )
                outcome, detail = classify(out.stdout + out.stderr)
                where = f"{name}:{base + line - 1}"
                counts[outcome] += 1
                if outcome == "load":
                    policies += detail
                    if l7:
                        err = simulate(binary, tmp, doc)
                        if err is None:
                            simulated += 1
                        else:
                            sim_failed.append((where, err))
                elif outcome != "none":
                    reasons[(outcome, detail)].append(where)
    total = sum(v for k, v in counts.items() if k != "none")
    what = "policy documents using toFQDNs, HTTP or DNS rules" if l7 else "policy documents"
    print(f"{total} {what} in {', '.join(paths)}")
    print(f"  load: {counts['load']} ({policies} policies)")
    if l7:
        print(f"  of those, simulate (verdict run on oracle,model,rbpf): {simulated}")
        for w, e in sim_failed:
            print(f"    does not simulate: {w}: {e}")
    print(f"  refused, not supported yet: {counts['unsupported']}")
    for (o, d), ws in sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if o == "unsupported":
            print(f"    {len(ws):4} {d}")
    print(f"  refused, other: {counts['refused']}")
    for (o, d), ws in sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if o == "refused":
            print(f"    {len(ws):4} {d}")
    if listing:
        for (o, d), ws in sorted(reasons.items()):
            for w in ws:
                print(f"{o}\t{w}\t{d}")


if __name__ == "__main__":
    main()
