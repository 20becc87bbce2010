//! The FQDN cache: what each node's DNS proxy has seen, and so which IPs `toFQDNs` selectors
//! hold (`pkg/fqdn`).
//!
//! Per node (every agent runs its own DNS proxy and name manager), as Cilium main keeps it:
//! - each endpoint's `DNSHistory` (`pkg/fqdn/cache.go` `DNSCache`, one per endpoint,
//!   `pkg/endpoint/endpoint.go`): name → IP → the lookup that provides it, the latest-expiring
//!   one per IP (`updateWithEntryIPs`); TTL raised to `--tofqdns-min-ttl` (`DNSCache.Update`);
//! - each endpoint's `DNSZombies` (`DNSZombieMappings`): IPs whose lookups expired, kept while
//!   a connection may still use them;
//! - the name manager's global cache (`pkg/fqdn/namemanager/manager.go`, cleanup tracking
//!   disabled: nothing in it expires by time). Its (name, IP) pairs are what the ipcache
//!   labels with `fqdn:` selector labels (`updateDNSIPs`, `deriveLabelsForName`), hence what
//!   `toFQDNs` selects. It is rebuilt for the affected names by the DNS garbage collector
//!   (`pkg/fqdn/namemanager/gc.go` `doGC`, every `DNSGCJobInterval`) from the endpoints'
//!   histories and their alive zombies.
//!
//! Only the DNS proxy teaches the cache (`pkg/fqdn/messagehandler/message_handler.go`
//! `NotifyOnDNSMsg` → `UpdateOnDNSMsg`, for a response with rcode success and addresses): a
//! lookup that no L7 DNS rule redirects to the proxy, or that the proxy refused, teaches
//! nothing.
//!
//! Virtual time: the agent starts at time 0; the DNS garbage collector runs every 60 s from
//! then (`job.Timer`, first run one interval after start), the conntrack garbage collector at
//! start and every `ConntrackGCStartingInterval` (5 min, `pkg/defaults`; Cilium's dynamic
//! interval stays there when a run deletes nothing, `calculateIntervalWithConfig`, which
//! verdict does not model otherwise). At one instant the CT GC runs before the DNS GC.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use crate::cluster::PodName;

const NS: u64 = 1_000_000_000;

/// `defaults.ToFQDNsMinTTL` (`pkg/defaults/defaults.go`): 0 seconds.
pub const DEFAULT_MIN_TTL: u32 = 0;
/// `defaults.ToFQDNsIdleConnectionGracePeriod`: 0.
pub const DEFAULT_IDLE_CONNECTION_GRACE_NS: u64 = 0;
/// `namemanager.DNSGCJobInterval` (`pkg/fqdn/namemanager/gc.go`): 1 minute.
pub const DNS_GC_INTERVAL_NS: u64 = 60 * NS;
/// `defaults.ConntrackGCStartingInterval`: 5 minutes.
pub const CT_GC_INTERVAL_NS: u64 = 300 * NS;
/// The TTL `doGC` gives alive zombies' synthetic lookups (`2 * DNSGCJobInterval`).
pub const ACTIVE_CONNECTIONS_TTL: u32 = 120;

/// The agent options the cache depends on (`--tofqdns-min-ttl`,
/// `--tofqdns-idle-connection-grace-period`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FqdnConfig {
    pub min_ttl: u32,
    pub idle_grace_ns: u64,
}

impl Default for FqdnConfig {
    fn default() -> Self {
        FqdnConfig {
            min_ttl: DEFAULT_MIN_TTL,
            idle_grace_ns: DEFAULT_IDLE_CONNECTION_GRACE_NS,
        }
    }
}

/// One lookup (`cacheEntry`): name (lower case, fully qualified), when it was seen, its TTL
/// (after the minimum) and expiry, and every address of the answer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lookup {
    pub name: String,
    pub lookup_ns: u64,
    pub expires_ns: u64,
    pub ttl: u32,
    pub ips: Vec<IpAddr>,
}

impl Lookup {
    /// `cacheEntry.isExpiredBy`: strictly after the expiration time.
    pub fn expired_by(&self, t: u64) -> bool {
        t > self.expires_ns
    }
}

/// name → IP → the lookup providing it (`map[string]ipEntries`).
pub type Forward = BTreeMap<String, BTreeMap<IpAddr, Arc<Lookup>>>;

/// `DNSCache.updateWithEntryIPs`: each IP points at the later-expiring lookup. Returns
/// whether some IP was new for the name (`UpdateStatus.Upserted`).
fn update(forward: &mut Forward, entry: &Arc<Lookup>) -> bool {
    let ips = forward.entry(entry.name.clone()).or_default();
    let mut upserted = false;
    for ip in &entry.ips {
        match ips.get(ip) {
            None => {
                ips.insert(*ip, entry.clone());
                upserted = true;
            }
            Some(old) if old.expired_by(entry.expires_ns) => {
                ips.insert(*ip, entry.clone());
            }
            Some(_) => {}
        }
    }
    upserted
}

/// `DNSZombieMapping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zombie {
    pub names: BTreeSet<String>,
    pub alive_at: u64,
    pub delete_pending_at: u64,
    revision_added: u64,
}

/// One endpoint's DNS state.
#[derive(Clone, Debug, Default)]
pub struct EndpointDns {
    /// `ep.DNSHistory`.
    pub history: Forward,
    /// `ep.DNSZombies`, by IP.
    pub zombies: BTreeMap<IpAddr, Zombie>,
}

/// One node's DNS state (its agent's).
#[derive(Clone, Debug, Default)]
pub struct NodeDns {
    pub endpoints: BTreeMap<PodName, EndpointDns>,
    /// The name manager's global cache.
    pub global: Forward,
    /// `DNSZombieMappings.lastCTGCUpdate` and `ctGCRevision` (the same for every endpoint:
    /// one CT GC run marks them all).
    last_ct_gc: u64,
    ct_gc_revision: u64,
}

impl NodeDns {
    /// The (name, IP) pairs of the global cache: what `toFQDNs` selects on this node.
    pub fn names_of(&self, ip: IpAddr) -> impl Iterator<Item = &str> {
        self.global
            .iter()
            .filter(move |(_, ips)| ips.contains_key(&ip))
            .map(|(n, _)| n.as_str())
    }

    /// Every address of the global cache with its names.
    pub fn addresses(&self) -> BTreeMap<IpAddr, BTreeSet<&str>> {
        let mut out: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
        for (name, ips) in &self.global {
            for ip in ips.keys() {
                out.entry(*ip).or_default().insert(name.as_str());
            }
        }
        out
    }

    /// `DNSZombieMappings.isConnectionAlive`.
    fn connection_alive(&self, z: &Zombie, grace: u64) -> bool {
        self.last_ct_gc <= z.delete_pending_at.saturating_add(grace)
            || self.last_ct_gc <= z.alive_at
            || self.ct_gc_revision < z.revision_added + 2
    }
}

/// The cache of every node (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct FqdnCache {
    pub config: FqdnConfig,
    pub nodes: BTreeMap<String, NodeDns>,
    /// Garbage-collector runs done up to this virtual time (ns).
    gc_done_until: u64,
    /// The CT GC run at start (time 0) was done.
    started: bool,
}

/// One row of `cilium-dbg fqdn cache list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheRow {
    pub node: String,
    pub endpoint: u32,
    pub pod: PodName,
    /// `lookup` (a DNS answer) or `connection` (an alive zombie).
    pub source: &'static str,
    pub fqdn: String,
    pub ttl: u32,
    pub lookup_ns: u64,
    pub expires_ns: u64,
    pub ips: Vec<IpAddr>,
}

impl FqdnCache {
    pub fn new(config: FqdnConfig) -> Self {
        FqdnCache {
            config,
            ..Default::default()
        }
    }

    pub fn node(&self, node: &str) -> Option<&NodeDns> {
        self.nodes.get(node)
    }

    /// An answer the DNS proxy on `node` allowed for `pod` at `now`: `UpdateOnDNSMsg`
    /// (`ep.DNSHistory.Update`, then the name manager's `UpdateGenerateDNS`). The TTL is
    /// raised to the minimum. Returns whether the global cache gained a (name, IP) pair.
    pub fn learn(
        &mut self,
        node: &str,
        pod: &PodName,
        name: &str,
        ips: &[IpAddr],
        ttl: u32,
        now: u64,
    ) -> bool {
        if ips.is_empty() {
            return false;
        }
        let ttl = ttl.max(self.config.min_ttl);
        let mut uniq: Vec<IpAddr> = ips.to_vec();
        uniq.sort();
        uniq.dedup();
        let entry = Arc::new(Lookup {
            name: crate::api::fqdn(&name.to_lowercase()),
            lookup_ns: now,
            expires_ns: now.saturating_add(u64::from(ttl) * NS),
            ttl,
            ips: uniq,
        });
        let n = self.nodes.entry(node.to_string()).or_default();
        update(
            &mut n.endpoints.entry(pod.clone()).or_default().history,
            &entry,
        );
        update(&mut n.global, &entry)
    }

    /// An endpoint went away: its history and zombies go with it; the next DNS GC drops
    /// the names only it provided (`leakedNames` in `doGC`).
    pub fn remove_endpoint(&mut self, pod: &PodName) {
        for n in self.nodes.values_mut() {
            n.endpoints.remove(pod);
        }
    }

    /// Runs the garbage collectors due in `(gc_done_until, now]` (and the CT GC at start),
    /// in time order. `alive(pod, ip, t)`: whether a connection from `pod` to `ip` is in
    /// conntrack at `t`. Returns whether some node's global cache changed.
    pub fn advance(&mut self, now: u64, alive: &dyn Fn(&PodName, IpAddr, u64) -> bool) -> bool {
        let mut changed = false;
        if !self.started {
            self.started = true;
            self.ct_gc(0, alive);
        }
        let from = self.gc_done_until;
        if now <= from {
            return false;
        }
        let mut ticks: Vec<(u64, u8)> = Vec::new();
        let mut t = (from / CT_GC_INTERVAL_NS + 1) * CT_GC_INTERVAL_NS;
        while t <= now {
            ticks.push((t, 0));
            t += CT_GC_INTERVAL_NS;
        }
        let mut t = (from / DNS_GC_INTERVAL_NS + 1) * DNS_GC_INTERVAL_NS;
        while t <= now {
            ticks.push((t, 1));
            t += DNS_GC_INTERVAL_NS;
        }
        ticks.sort();
        for (t, kind) in ticks {
            if kind == 0 {
                self.ct_gc(t, alive);
            } else {
                changed |= self.dns_gc(t);
            }
        }
        self.gc_done_until = now;
        changed
    }

    /// One CT GC run at `t` (`pkg/maps/ctmap/gc/gc.go`): zombies of IPs with a connection
    /// from their endpoint are marked alive at `t` + the idle grace (`MarkDNSCTEntry`), then
    /// every endpoint records the run (`MarkCTGCTime` → `SetCTGCTime`).
    fn ct_gc(&mut self, t: u64, alive: &dyn Fn(&PodName, IpAddr, u64) -> bool) {
        let grace = self.config.idle_grace_ns;
        for n in self.nodes.values_mut() {
            for (pod, ep) in n.endpoints.iter_mut() {
                for (ip, z) in ep.zombies.iter_mut() {
                    if alive(pod, *ip, t) {
                        z.alive_at = t.saturating_add(grace);
                    }
                }
            }
            n.last_ct_gc = t;
            n.ct_gc_revision += 1;
        }
    }

    /// One DNS GC run at `t` (`doGC`), on every node. Returns whether a global cache changed.
    fn dns_gc(&mut self, t: u64) -> bool {
        let grace = self.config.idle_grace_ns;
        let mut changed = false;
        for n in self.nodes.values_mut() {
            let mut to_clean: BTreeSet<String> = BTreeSet::new();
            let mut active = Forward::new();
            let mut ep_names: BTreeSet<String> = BTreeSet::new();
            let (last_ct, revision) = (n.last_ct_gc, n.ct_gc_revision);
            let mut eps = std::mem::take(&mut n.endpoints);
            for ep in eps.values_mut() {
                ep_names.extend(ep.history.keys().cloned());
                // DNSHistory.GC(GCStart, ep.DNSZombies): expired IPs become zombies, pending
                // deletion at the later of now and their expiry.
                for (name, ips) in ep.history.iter_mut() {
                    let expired: Vec<(IpAddr, Arc<Lookup>)> = ips
                        .iter()
                        .filter(|(_, e)| e.expired_by(t))
                        .map(|(ip, e)| (*ip, e.clone()))
                        .collect();
                    if expired.is_empty() {
                        continue;
                    }
                    to_clean.insert(name.clone());
                    for (ip, e) in expired {
                        ips.remove(&ip);
                        let pending = t.max(e.expires_ns);
                        match ep.zombies.get_mut(&ip) {
                            None => {
                                ep.zombies.insert(
                                    ip,
                                    Zombie {
                                        names: [name.clone()].into(),
                                        alive_at: last_ct,
                                        delete_pending_at: pending,
                                        revision_added: revision,
                                    },
                                );
                            }
                            Some(z) => {
                                z.names.insert(name.clone());
                                z.delete_pending_at = z.delete_pending_at.max(pending);
                                z.alive_at = z.alive_at.max(last_ct);
                            }
                        }
                    }
                }
                ep.history.retain(|_, ips| !ips.is_empty());
                // DNSZombies.GC(): a zombie is alive when its connection is, or when one
                // of its names is (`getAliveNames`, `isZombieAlive`; no per-host limit
                // applies below the default 1000 IPs per name).
                let alive_names: BTreeSet<String> = ep
                    .zombies
                    .values()
                    .filter(|z| n.connection_alive(z, grace))
                    .flat_map(|z| z.names.iter().cloned())
                    .collect();
                let mut dead = Vec::new();
                for (ip, z) in &ep.zombies {
                    let alive = n.connection_alive(z, grace)
                        || z.names.iter().any(|nm| alive_names.contains(nm));
                    to_clean.extend(z.names.iter().cloned());
                    if alive {
                        for name in &z.names {
                            let e = Arc::new(Lookup {
                                name: name.clone(),
                                lookup_ns: t,
                                expires_ns: t + u64::from(ACTIVE_CONNECTIONS_TTL) * NS,
                                ttl: ACTIVE_CONNECTIONS_TTL,
                                ips: vec![*ip],
                            });
                            update(&mut active, &e);
                        }
                    } else {
                        dead.push(*ip);
                    }
                }
                for ip in dead {
                    ep.zombies.remove(&ip);
                }
            }
            n.endpoints = eps;
            // Names only departed endpoints provided (`leakedNames`).
            for name in n.global.keys() {
                if !ep_names.contains(name) {
                    to_clean.insert(name.clone());
                }
            }
            // ReplaceFromCacheByNames: those names are rebuilt from the alive zombies and
            // every endpoint's history.
            for name in &to_clean {
                let mut rebuilt: BTreeMap<IpAddr, Arc<Lookup>> = BTreeMap::new();
                let sources =
                    std::iter::once(&active).chain(n.endpoints.values().map(|e| &e.history));
                for f in sources {
                    if let Some(ips) = f.get(name) {
                        for (ip, e) in ips {
                            match rebuilt.get(ip) {
                                Some(old) if !old.expired_by(e.expires_ns) => {}
                                _ => {
                                    rebuilt.insert(*ip, e.clone());
                                }
                            }
                        }
                    }
                }
                let before: BTreeSet<IpAddr> = n
                    .global
                    .get(name)
                    .map(|m| m.keys().copied().collect())
                    .unwrap_or_default();
                let after: BTreeSet<IpAddr> = rebuilt.keys().copied().collect();
                changed |= before != after;
                if rebuilt.is_empty() {
                    n.global.remove(name);
                } else {
                    n.global.insert(name.clone(), rebuilt);
                }
            }
        }
        changed
    }

    /// `cilium-dbg fqdn cache list` on every node: per endpoint its history's lookups
    /// (`Source` lookup) and its alive zombies (`Source` connection, TTL 0, expiring at the
    /// next CT GC), as `dnsHistoryModel` lists them. Rows are sorted by node, endpoint,
    /// source, name, lookup time.
    pub fn rows(&self, endpoint_id: &dyn Fn(&PodName) -> u32) -> Vec<CacheRow> {
        let mut out = Vec::new();
        for (node, n) in &self.nodes {
            for (pod, ep) in &n.endpoints {
                let id = endpoint_id(pod);
                // Dump(): every lookup once, whichever IPs still point at it.
                let mut seen: Vec<&Arc<Lookup>> = Vec::new();
                for ips in ep.history.values() {
                    for e in ips.values() {
                        if !seen.iter().any(|s| Arc::ptr_eq(s, e)) {
                            seen.push(e);
                        }
                    }
                }
                let mut lookups: Vec<&Lookup> = seen.into_iter().map(|a| a.as_ref()).collect();
                lookups.sort_by(|a, b| {
                    (&a.name, a.lookup_ns, &a.ips).cmp(&(&b.name, b.lookup_ns, &b.ips))
                });
                for l in lookups {
                    out.push(CacheRow {
                        node: node.clone(),
                        endpoint: id,
                        pod: pod.clone(),
                        source: "lookup",
                        fqdn: l.name.clone(),
                        ttl: l.ttl,
                        lookup_ns: l.lookup_ns,
                        expires_ns: l.expires_ns,
                        ips: l.ips.clone(),
                    });
                }
                let grace = self.config.idle_grace_ns;
                let next_ct = (n.last_ct_gc / CT_GC_INTERVAL_NS + 1) * CT_GC_INTERVAL_NS;
                let alive_names: BTreeSet<&String> = ep
                    .zombies
                    .values()
                    .filter(|z| n.connection_alive(z, grace))
                    .flat_map(|z| z.names.iter())
                    .collect();
                let mut zrows = Vec::new();
                for (ip, z) in &ep.zombies {
                    // DumpAlive: zombies alive by connection or by name.
                    if !(n.connection_alive(z, grace)
                        || z.names.iter().any(|nm| alive_names.contains(nm)))
                    {
                        continue;
                    }
                    for name in &z.names {
                        zrows.push(CacheRow {
                            node: node.clone(),
                            endpoint: id,
                            pod: pod.clone(),
                            source: "connection",
                            fqdn: name.clone(),
                            ttl: 0,
                            lookup_ns: z.alive_at,
                            expires_ns: next_ct,
                            ips: vec![*ip],
                        });
                    }
                }
                zrows.sort_by(|a, b| (&a.fqdn, &a.ips).cmp(&(&b.fqdn, &b.ips)));
                out.extend(zrows);
            }
        }
        out
    }
}

/// The compiled regex of an `fqdn:` selector label key (the `matchName` or `matchPattern` it
/// came from, `FQDNSelector.IdentityLabel`): a key without `*` compiles the same whether it
/// was a name or a pattern (`FQDNSelector.ToRegex`), so the key is enough. Cached: the same
/// few keys are matched again and again.
pub fn key_matches(key: &str, name: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = match cache.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if guard.len() > 4096 {
        guard.clear();
    }
    let re = guard.entry(key.to_string()).or_insert_with(|| {
        crate::api::fqdn_regex(&crate::api::FqdnSelector::MatchPattern(key.to_string()))
    });
    re.is_match(name)
}

/// The `fqdn:` label keys `deriveLabelsForName` gives the IPs of `names`: every key among
/// `keys` whose selector matches one of the names.
pub fn labels_for_names<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    names: &BTreeSet<&str>,
) -> BTreeSet<String> {
    keys.into_iter()
        .filter(|k| names.iter().any(|n| key_matches(k, n)))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn pod(s: &str) -> PodName {
        PodName::parse(s).unwrap()
    }
    fn no_conn(_: &PodName, _: IpAddr, _: u64) -> bool {
        false
    }
    fn global_ips(c: &FqdnCache, node: &str, name: &str) -> Vec<IpAddr> {
        c.node(node)
            .and_then(|n| n.global.get(name))
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    // DNSCache.Update: TTL raised to the minimum; names lower case and fully qualified.
    #[test]
    fn learn_applies_min_ttl_and_fqdn() {
        let mut c = FqdnCache::new(FqdnConfig {
            min_ttl: 3600,
            ..Default::default()
        });
        assert!(c.learn(
            "n1",
            &pod("x/a"),
            "API.github.com",
            &[ip("1.1.1.1")],
            60,
            5 * NS
        ));
        let rows = c.rows(&|_| 7);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].fqdn, "api.github.com.");
        assert_eq!(rows[0].ttl, 3600);
        assert_eq!(rows[0].expires_ns, 3605 * NS);
        // The same answer again adds nothing new.
        assert!(!c.learn(
            "n1",
            &pod("x/a"),
            "api.github.com",
            &[ip("1.1.1.1")],
            60,
            6 * NS
        ));
        // Default minimum is 0: the answer's TTL stands.
        let mut d = FqdnCache::default();
        d.learn("n1", &pod("x/a"), "a.com", &[ip("1.1.1.1")], 30, 0);
        assert_eq!(d.rows(&|_| 1)[0].ttl, 30);
    }

    // The global cache does not expire by time: the IP stays selected until the DNS GC
    // (every 60 s) finds the lookup expired, and then, as a zombie, until two CT GC runs
    // have passed without a connection (isConnectionAlive).
    #[test]
    fn expiry_goes_through_gc_and_zombies() {
        let mut c = FqdnCache::default();
        c.advance(0, &no_conn);
        c.learn("n1", &pod("x/a"), "a.com", &[ip("1.1.1.1")], 60, 0);
        // t=60: not yet expired (isExpiredBy is strictly after).
        assert!(!c.advance(60 * NS, &no_conn));
        assert_eq!(global_ips(&c, "n1", "a.com."), vec![ip("1.1.1.1")]);
        // t=120: expired in the history, a zombie, alive (no CT GC since): still selected.
        assert!(!c.advance(120 * NS, &no_conn));
        assert_eq!(global_ips(&c, "n1", "a.com."), vec![ip("1.1.1.1")]);
        assert_eq!(c.rows(&|_| 1)[0].source, "connection");
        // CT GC at 300 (revision 2): not two runs since the zombie came (revision 1).
        assert!(!c.advance(300 * NS, &no_conn));
        assert_eq!(global_ips(&c, "n1", "a.com."), vec![ip("1.1.1.1")]);
        // CT GC at 600 (revision 3): dead, removed at the DNS GC at 600.
        assert!(c.advance(600 * NS, &no_conn));
        assert!(global_ips(&c, "n1", "a.com.").is_empty());
        assert!(c.rows(&|_| 1).is_empty());
    }

    // A connection marked alive by every CT GC keeps its zombie, hence its IP, selected.
    #[test]
    fn live_connection_keeps_zombie() {
        let mut c = FqdnCache::default();
        c.advance(0, &no_conn);
        c.learn(
            "n1",
            &pod("x/a"),
            "a.com",
            &[ip("1.1.1.1"), ip("1.1.1.2")],
            60,
            0,
        );
        let conn = |_: &PodName, ip: IpAddr, _: u64| ip == "1.1.1.1".parse::<IpAddr>().unwrap();
        c.advance(900 * NS, &conn);
        // 1.1.1.2 shares the name with a live zombie: alive by name (getAliveNames).
        assert_eq!(
            global_ips(&c, "n1", "a.com."),
            vec![ip("1.1.1.1"), ip("1.1.1.2")]
        );
        // Without the connection both die two CT GC runs later.
        c.advance(1500 * NS, &no_conn);
        assert!(global_ips(&c, "n1", "a.com.").is_empty());
    }

    // A new lookup before the GC renews the expiry: no zombie.
    #[test]
    fn renewed_lookup_keeps_ip() {
        let mut c = FqdnCache::default();
        c.advance(0, &no_conn);
        c.learn("n1", &pod("x/a"), "a.com", &[ip("1.1.1.1")], 60, 0);
        c.advance(50 * NS, &no_conn);
        c.learn("n1", &pod("x/a"), "a.com", &[ip("1.1.1.1")], 60, 50 * NS);
        // The GC at 60 finds the renewed lookup (expiring at 110) unexpired.
        c.advance(100 * NS, &no_conn);
        let rows = c.rows(&|_| 1);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].source, rows[0].lookup_ns), ("lookup", 50 * NS));
    }

    // Caches are per node: one node's lookups teach nothing elsewhere.
    #[test]
    fn per_node() {
        let mut c = FqdnCache::default();
        c.learn("n1", &pod("x/a"), "a.com", &[ip("1.1.1.1")], 60, 0);
        assert!(c.node("n2").is_none());
        assert_eq!(
            c.node("n1")
                .unwrap()
                .names_of(ip("1.1.1.1"))
                .collect::<Vec<_>>(),
            vec!["a.com."]
        );
    }

    // deriveLabelsForName: every selector matching the name labels its IPs.
    #[test]
    fn labels_for_matching_selectors() {
        let names: BTreeSet<&str> = ["api.github.com."].into();
        let keys = [
            "api.github.com",
            "*.github.com",
            "*",
            "*.cilium.io",
            "github.com",
        ];
        let got = labels_for_names(keys, &names);
        let want: BTreeSet<String> = ["*", "*.github.com", "api.github.com"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(got, want);
    }
}
