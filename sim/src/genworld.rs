//! The twin of `tools/genworld.py` (a copy of `../shared/tools/genworld.py`): the synthetic
//! world the scale targets are measured on (issue 14), built in Rust, draw for draw.
//!
//! `genworld.py NS PODS NPOL OUTDIR SEED` writes `probe.json` (namespaces, pods with labels,
//! addresses and named ports, in Policy Assistant's simulated-probe format) and
//! `policies/gen-NNN.json` (Kubernetes NetworkPolicies). [`generate`] makes the same objects
//! from the same arguments: [`PyRandom`] is CPython's `random.Random` (MT19937 seeded with
//! `init_by_array`, `random()`, `_randbelow` by rejection of `getrandbits`, `choice`,
//! `randint`, `randrange` and 3.11's `sample`), and the generator makes its draws in the
//! order the script does. [`GenWorld::scenario_yaml`] turns the world into a scenario: the
//! namespaces and pods, the policies by `file:`, and one all-`?` truth table of every pod to
//! every pod on 80/TCP (the script's one probe), which every backend runs and compares.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

/// CPython's `random.Random`, for the calls genworld.py makes.
#[derive(Clone)]
pub struct PyRandom {
    mt: Box<[u32; 624]>,
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed (`random_seed` in
    /// Modules/_randommodule.c: the absolute value's 32-bit words, least significant first,
    /// through `init_by_array`).
    pub fn new(seed: u64) -> PyRandom {
        let key: Vec<u32> = if seed >> 32 == 0 {
            vec![seed as u32]
        } else {
            vec![seed as u32, (seed >> 32) as u32]
        };
        let mut r = PyRandom {
            mt: Box::new([0; 624]),
            index: 624,
        };
        r.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r.index = 624;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    /// `genrand_uint32`.
    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random()`: 53 random bits in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = u64::from(self.next_u32() >> 5);
        let b = u64::from(self.next_u32() >> 6);
        (a as f64 * 67_108_864.0 + b as f64) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `getrandbits(k)` for 1 <= k <= 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)` (`_randbelow_with_getrandbits`): `n > 0`.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u32;
        let k = 32 - n.leading_zeros();
        let mut r = self.getrandbits(k);
        while r >= n {
            r = self.getrandbits(k);
        }
        r as usize
    }

    /// `randint(a, b)`: `a + _randbelow(b - a + 1)`.
    pub fn randint(&mut self, a: usize, b: usize) -> usize {
        a + self.below(b - a + 1)
    }

    /// `choice(seq)`.
    pub fn choice<'a, T>(&mut self, seq: &'a [T]) -> &'a T {
        &seq[self.below(seq.len())]
    }

    /// `sample(population, k)` as CPython 3.11 draws it (a pool for small populations, a
    /// set of picked indices for large ones).
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Vec<T> {
        let n = population.len();
        let mut setsize = 21usize;
        if k > 5 {
            // 4 ** ceil(log(3k, 4))
            let mut p = 1usize;
            while p < 3 * k {
                p *= 4;
            }
            setsize += p;
        }
        let mut out = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool = population.to_vec();
            for i in 0..k {
                let j = self.below(n - i);
                out.push(pool[j].clone());
                pool[j] = pool[n - i - 1].clone();
            }
        } else {
            let mut picked = std::collections::BTreeSet::new();
            for _ in 0..k {
                let mut j = self.below(n);
                while picked.contains(&j) {
                    j = self.below(n);
                }
                picked.insert(j);
                out.push(population[j].clone());
            }
        }
        out
    }
}

/// A generated world: the script's `probe.json` and its policies, as JSON values.
#[derive(Clone, Debug, PartialEq)]
pub struct GenWorld {
    pub namespaces: usize,
    pub pods_per_namespace: usize,
    pub seed: u64,
    /// `probe.json`.
    pub probe: Value,
    /// `(file name, policy)` in order: `gen-000.json`, ...
    pub policies: Vec<(String, Value)>,
}

/// The script's limits: addresses `10.<100 + i/200>.<i%200>.<j+10>` need `j + 10 <= 255`.
pub const MAX_PODS_PER_NAMESPACE: usize = 245;

struct Gen<'a> {
    rnd: PyRandom,
    nss: &'a [String],
}

impl Gen<'_> {
    fn sel(&mut self) -> Value {
        let c = self.rnd.random();
        if c < 0.4 {
            json!({"matchLabels": {"app": format!("app{}", self.rnd.below(5))}})
        } else if c < 0.7 {
            json!({"matchLabels": {"tier": *self.rnd.choice(&["web", "api", "db"])}})
        } else if c < 0.85 {
            let op = *self.rnd.choice(&["In", "NotIn"]);
            let values = self.rnd.sample(&["web", "api", "db"], 2);
            json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]})
        } else {
            json!({})
        }
    }

    fn nssel(&mut self) -> Value {
        let c = self.rnd.random();
        if c < 0.5 {
            json!({"matchLabels": {"team": format!("t{}", self.rnd.below(4))}})
        } else if c < 0.8 {
            let values = self.rnd.sample(self.nss, self.nss.len().min(3));
            json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": values}]})
        } else {
            json!({})
        }
    }

    fn peer(&mut self) -> Value {
        let c = self.rnd.random();
        if c < 0.35 {
            json!({"podSelector": self.sel()})
        } else if c < 0.65 {
            json!({"namespaceSelector": self.nssel()})
        } else if c < 0.9 {
            // A dict display evaluates in order: the namespace selector first.
            let ns = self.nssel();
            let pod = self.sel();
            json!({"namespaceSelector": ns, "podSelector": pod})
        } else {
            let b = 100 + self.rnd.below(2);
            let x = self.rnd.below(self.nss.len().max(1));
            json!({"ipBlock": {"cidr": format!("10.{b}.0.0/16"), "except": [format!("10.{b}.{x}.0/24")]}})
        }
    }

    fn portlist(&mut self) -> Option<Value> {
        let c = self.rnd.random();
        if c < 0.4 {
            None
        } else if c < 0.7 {
            Some(json!([{"port": *self.rnd.choice(&[80, 81]), "protocol": "TCP"}]))
        } else if c < 0.85 {
            Some(json!([{"port": "serve-80-tcp", "protocol": "TCP"}]))
        } else {
            Some(json!([{"port": 80, "endPort": 81, "protocol": "TCP"}]))
        }
    }

    fn rules(&mut self, ingress: bool) -> Value {
        let mut out = Vec::new();
        for _ in 0..self.rnd.randint(1, 3) {
            let mut r = Map::new();
            if let Some(pl) = self.portlist() {
                r.insert("ports".into(), pl);
            }
            let n = self.rnd.randint(1, 3);
            let peers: Vec<Value> = (0..n).map(|_| self.peer()).collect();
            r.insert(
                if ingress { "from" } else { "to" }.into(),
                Value::Array(peers),
            );
            out.push(Value::Object(r));
        }
        Value::Array(out)
    }
}

/// Builds the world `genworld.py NS PODS NPOL OUT SEED` writes.
pub fn generate(ns: usize, pods: usize, npol: usize, seed: u64) -> Result<GenWorld, String> {
    if ns == 0 {
        return Err("genworld: NS must be at least 1 (policies are placed in namespaces)".into());
    }
    if pods > MAX_PODS_PER_NAMESPACE {
        return Err(format!(
            "genworld: PODS is at most {MAX_PODS_PER_NAMESPACE} (pod addresses end in PODS + 9)"
        ));
    }
    let nss: Vec<String> = (0..ns).map(|i| format!("n{i:02}")).collect();
    let ports = [
        (80, "TCP", "serve-80-tcp"),
        (80, "UDP", "serve-80-udp"),
        (81, "TCP", "serve-81-tcp"),
        (81, "UDP", "serve-81-udp"),
    ];
    let mut namespaces = Map::new();
    for (i, n) in nss.iter().enumerate() {
        namespaces.insert(
            n.clone(),
            json!({"ns": n, "kubernetes.io/metadata.name": n, "team": format!("t{}", i % 4)}),
        );
    }
    let mut pod_list = Vec::new();
    for (i, n) in nss.iter().enumerate() {
        for j in 0..pods {
            let containers: Vec<Value> = ports
                .iter()
                .map(|(p, pr, nm)| {
                    json!({"Name": format!("c-{p}-{}", pr.to_lowercase()), "Port": p, "Protocol": pr, "PortName": nm})
                })
                .collect();
            let tier = ["web", "api", "db"][j % 3];
            pod_list.push(json!({
                "Namespace": n,
                "Name": format!("p{j:02}"),
                "Labels": {"pod": format!("p{j:02}"), "app": format!("app{}", j % 5), "tier": tier},
                "IP": format!("10.{}.{}.{}", 100 + i / 200, i % 200, j + 10),
                "Containers": containers,
            }));
        }
    }
    let probe = json!({
        "Probes": [{"Port": 80, "Protocol": "TCP"}],
        "Resources": {"Namespaces": namespaces, "Pods": pod_list},
    });
    let mut g = Gen {
        rnd: PyRandom::new(seed),
        nss: &nss,
    };
    let mut policies = Vec::new();
    for k in 0..npol {
        let ns = g.rnd.choice(&nss).clone();
        let c = g.rnd.random();
        let mut spec = Map::new();
        spec.insert("podSelector".into(), g.sel());
        let types = |t: &[&str]| Value::Array(t.iter().map(|s| json!(s)).collect());
        if c < 0.1 {
            spec.insert("podSelector".into(), json!({}));
            spec.insert("policyTypes".into(), types(&["Ingress"]));
        } else if c < 0.2 {
            spec.insert("podSelector".into(), json!({}));
            spec.insert("policyTypes".into(), types(&["Egress"]));
        } else if c < 0.55 {
            spec.insert("policyTypes".into(), types(&["Ingress"]));
            spec.insert("ingress".into(), g.rules(true));
        } else if c < 0.8 {
            spec.insert("policyTypes".into(), types(&["Egress"]));
            spec.insert("egress".into(), g.rules(false));
        } else {
            spec.insert("policyTypes".into(), types(&["Ingress", "Egress"]));
            let ingress = g.rules(true);
            let egress = g.rules(false);
            spec.insert("ingress".into(), ingress);
            spec.insert("egress".into(), egress);
        }
        let name = format!("gen-{k:03}");
        policies.push((
            format!("{name}.json"),
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": Value::Object(spec),
            }),
        ));
    }
    Ok(GenWorld {
        namespaces: ns,
        pods_per_namespace: pods,
        seed,
        probe,
        policies,
    })
}

fn yaml_str(s: &str) -> String {
    // Every generated name and label is plain ([a-z0-9./-]); quote anyway for safety.
    serde_json::to_string(s).unwrap_or_default()
}

impl GenWorld {
    /// The world as a scenario: namespaces and their labels, pods with labels, addresses and
    /// named ports on one node, the policies by `file: policies/gen-NNN.json` (JSON is YAML),
    /// and one all-`?` truth table, every pod to every pod on 80/TCP.
    pub fn scenario_yaml(&self) -> String {
        let mut s = String::new();
        let npol = self.policies.len();
        let _ = writeln!(
            s,
            "name: genworld-{}ns-{}pods-{}npol-seed{}",
            self.namespaces, self.pods_per_namespace, npol, self.seed
        );
        let _ = writeln!(
            s,
            "description: >-\n  The world of tools/genworld.py {} {} {} OUT {} (Policy Assistant's simulated probe, issue 14), built by verdict gen world draw for draw. The truth table is all '?': no verdict is expected, every backend runs every cell and they are compared.",
            self.namespaces, self.pods_per_namespace, npol, self.seed
        );
        s.push_str("cluster:\n  nodes: [node-1]\n  namespaces:\n");
        let res = &self.probe["Resources"];
        if let Some(nss) = res["Namespaces"].as_object() {
            let mut names: Vec<&String> = nss.keys().collect();
            names.sort();
            for n in names {
                let l = &nss[n];
                let _ = writeln!(
                    s,
                    "  - {{name: {}, labels: {{ns: {}, team: {}}}}}",
                    yaml_str(n),
                    yaml_str(l["ns"].as_str().unwrap_or_default()),
                    yaml_str(l["team"].as_str().unwrap_or_default())
                );
            }
        }
        s.push_str("  pods:\n");
        let mut names = Vec::new();
        for p in res["Pods"].as_array().into_iter().flatten() {
            let name = format!(
                "{}/{}",
                p["Namespace"].as_str().unwrap_or_default(),
                p["Name"].as_str().unwrap_or_default()
            );
            let labels: Vec<String> = ["pod", "app", "tier"]
                .iter()
                .map(|k| {
                    format!(
                        "{k}: {}",
                        yaml_str(p["Labels"][k].as_str().unwrap_or_default())
                    )
                })
                .collect();
            let ports: Vec<String> = p["Containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{{name: {}, port: {}, protocol: {}}}",
                        yaml_str(c["PortName"].as_str().unwrap_or_default()),
                        c["Port"],
                        c["Protocol"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  - {{name: {}, ip: {}, labels: {{{}}}, ports: [{}]}}",
                yaml_str(&name),
                p["IP"].as_str().unwrap_or_default(),
                labels.join(", "),
                ports.join(", ")
            );
            names.push(name);
        }
        if self.policies.is_empty() {
            s.push_str("policies: []\n");
        } else {
            s.push_str("policies:\n");
            for (f, _) in &self.policies {
                let _ = writeln!(s, "- file: policies/{f}");
            }
        }
        s.push_str("steps:\n- expect-matrix:\n    port: 80\n    protocol: TCP\n    table: |2\n");
        let width = names.iter().map(String::len).max().unwrap_or(1);
        let _ = write!(s, "      {:width$}", "");
        for n in &names {
            let _ = write!(s, " {n}");
        }
        s.push('\n');
        let cells: String = names
            .iter()
            .map(|n| format!(" {:>w$}", "?", w = n.len()))
            .collect();
        for n in &names {
            let _ = writeln!(s, "      {n:width$}{cells}");
        }
        s
    }

    /// Writes `probe.json`, `policies/gen-NNN.json` and `world.yaml` (the scenario) under
    /// `dir`, creating it. Files of an earlier run are overwritten; nothing is deleted.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), String> {
        let pdir = dir.join("policies");
        std::fs::create_dir_all(&pdir).map_err(|e| format!("creating {}: {e}", pdir.display()))?;
        let write = |p: std::path::PathBuf, text: String| {
            std::fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))
        };
        write(dir.join("probe.json"), self.probe.to_string())?;
        for (f, v) in &self.policies {
            write(pdir.join(f), v.to_string())?;
        }
        write(dir.join("world.yaml"), self.scenario_yaml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from CPython 3.11: `r = random.Random(1)`; `[r.random() for _ in
    /// range(3)]` then `[r.randrange(5) for _ in range(5)]`, `r.sample(['web','api','db'],
    /// 2)`, `r.choice(list(range(30)))`, `r.randint(1, 3)`.
    #[test]
    fn pyrandom_matches_cpython() {
        let mut r = PyRandom::new(1);
        let f: Vec<f64> = (0..3).map(|_| r.random()).collect();
        assert_eq!(
            f,
            vec![
                0.134_364_244_112_401_22,
                0.847_433_736_937_232_7,
                0.763_774_618_976_614
            ]
        );
        let b: Vec<usize> = (0..5).map(|_| r.below(5)).collect();
        assert_eq!(b, vec![2, 0, 3, 3, 3]);
        assert_eq!(r.sample(&["web", "api", "db"], 2), vec!["db", "api"]);
        let thirty: Vec<usize> = (0..30).collect();
        assert_eq!(*r.choice(&thirty), 25);
        assert_eq!(r.randint(1, 3), 1);
        let nss: Vec<String> = (0..30).map(|i| format!("n{i:02}")).collect();
        assert_eq!(r.sample(&nss, 3), vec!["n03", "n15", "n00"]);
        // A seed wider than 32 bits: random.Random(2**40 + 5).random(), .randrange(1000).
        let mut r = PyRandom::new((1 << 40) + 5);
        assert_eq!(r.random(), 0.504_380_297_041_844_3);
        assert_eq!(r.below(1000), 275);
    }
}
