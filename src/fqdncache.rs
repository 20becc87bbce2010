//! `verdict fqdn cache`: the name managers' DNS caches as `cilium-dbg fqdn cache list` prints
//! them (`cilium-dbg/cmd/fqdn.go` `listFQDNCache`: a tabwriter with minimum width 5, padding
//! 3, columns `Endpoint Source FQDN TTL ExpirationTime IPs`, every cell tab-terminated), one
//! table per node, since each agent lists only its own endpoints.

use std::fmt::Write as _;

use verdict_sim::engine::World;
use verdict_sim::fqdn::CacheRow;

/// `strfmt.DateTime.String()`: RFC 3339 with milliseconds (`RFC3339Millis`), virtual time
/// counted from the epoch.
pub fn datetime(ns: u64) -> String {
    let whole = crate::hubble::rfc3339(ns / 1_000_000_000 * 1_000_000_000);
    let base = whole.trim_end_matches('Z');
    format!("{base}.{:03}Z", (ns / 1_000_000) % 1000)
}

/// Go's `text/tabwriter` with `NewWriter(w, 5, 0, 3, ' ', 0)` over tab-terminated cells.
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![5usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            let _ = write!(out, "{c:<w$}", w = widths[i]);
        }
        out.push('\n');
    }
    out
}

/// The rows of the world's cache, optionally of one node and one endpoint (ns/name or ID).
pub fn rows(world: &World, node: Option<&str>, endpoint: Option<&str>) -> Vec<CacheRow> {
    let c = &world.cluster;
    c.fqdn
        .rows(&|pn| c.pods.get(pn).map_or(0, |p| p.endpoint_id))
        .into_iter()
        .filter(|r| node.is_none_or(|n| r.node == n))
        .filter(|r| endpoint.is_none_or(|e| r.pod.to_string() == e || r.endpoint.to_string() == e))
        .collect()
}

/// The listing: per node a `# node <name>` line, then the table.
pub fn render(world: &World, node: Option<&str>, endpoint: Option<&str>) -> String {
    let rows = rows(world, node, endpoint);
    let mut nodes: Vec<&str> = world
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| node.is_none_or(|x| x == *n))
        .collect();
    nodes.dedup();
    let mut out = String::new();
    for n in nodes {
        let _ = writeln!(out, "# node {n}");
        let mut table = vec![
            ["Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        ];
        for r in rows.iter().filter(|r| r.node == n) {
            let ips: Vec<String> = r.ips.iter().map(|i| i.to_string()).collect();
            table.push(vec![
                r.endpoint.to_string(),
                r.source.to_string(),
                r.fqdn.clone(),
                r.ttl.to_string(),
                datetime(r.expires_ns),
                ips.join(","),
            ]);
        }
        out.push_str(&tabwrite(&table));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_has_millis() {
        assert_eq!(datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(datetime(61_500_000_000), "1970-01-01T00:01:01.500Z");
    }

    #[test]
    fn tabwriter_pads_every_cell() {
        let t = tabwrite(&[
            vec!["Endpoint".into(), "IPs".into()],
            vec!["12".into(), "1.2.3.4".into()],
        ]);
        assert_eq!(t, "Endpoint   IPs       \n12         1.2.3.4   \n");
    }
}
