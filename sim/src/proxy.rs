//! The proxy model: what Cilium's L7 proxies (Envoy for HTTP, the agent's DNS proxy) decide
//! for a request on a connection the datapath redirected to them.
//!
//! It owns:
//! - the proxy (listener) ports, one per parser and direction as Cilium's
//!   `pkg/proxy/proxyports` `defaultProxyPortMap` has them ([`ProxyPorts`]);
//! - the requests a scenario sends ([`HttpRequest`], a DNS query name);
//! - the decision against the L7 policy the agent hands its proxies for the endpoint, port and
//!   remote identity: a list of [`ProxyRule`]s, one per policy entry that allows the remote on
//!   that port (Envoy's `PortNetworkPolicyRule`s from `pkg/envoy` NPDS, the DNS proxy's
//!   per-port allow list in `pkg/fqdn/dnsproxy`). A request passes when one rule passes it; a
//!   rule without L7 rules (an L3-only or L4-only allow of the same remote and port) passes
//!   everything.
//!
//! The oracle builds the rule list straight from the policy entries and labels, the model from
//! its selector cache and identities; both hand it to the same functions here.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;

use crate::api::{fqdn, fqdn_regex, FqdnSelector, HttpRule};
use crate::policy::{L7Parser, L7Policy, RuleOrigin};
use crate::verdict::Direction;

/// The proxy ports. Cilium allocates each listener a port from `--proxy-portrange-min` to
/// `--proxy-portrange-max` (10000-20000) when it is first needed, picking at random
/// (`ProxyPorts.allocatePort`, `rand.Perm`). verdict must be deterministic, so each listener
/// gets a fixed port in that range: 10000 plus its index in `defaultProxyPortMap`'s order
/// (`cilium-http-egress`, `cilium-http-ingress`, `cilium-tls-egress`, `cilium-tls-ingress`,
/// `cilium-dns-egress`).
pub struct ProxyPorts;

impl ProxyPorts {
    pub const RANGE_MIN: u16 = 10000;

    /// The listener name and port of a parser in a direction. DNS rules exist on egress only
    /// (validation refuses them on ingress); an ingress DNS listener is never asked for.
    pub fn listener(parser: L7Parser, dir: Direction) -> (&'static str, u16) {
        match (parser, dir) {
            (L7Parser::Http, Direction::Egress) => ("cilium-http-egress", Self::RANGE_MIN),
            (L7Parser::Http, Direction::Ingress) => ("cilium-http-ingress", Self::RANGE_MIN + 1),
            (L7Parser::Dns, _) => ("cilium-dns-egress", Self::RANGE_MIN + 4),
        }
    }

    pub fn port(parser: L7Parser, dir: Direction) -> u16 {
        Self::listener(parser, dir).1
    }

    /// The parser listening on a proxy port.
    pub fn parser_of(port: u16) -> Option<L7Parser> {
        match port.checked_sub(Self::RANGE_MIN)? {
            0 | 1 => Some(L7Parser::Http),
            4 => Some(L7Parser::Dns),
            _ => None,
        }
    }
}

/// One HTTP request as a scenario sends it. `path` is Envoy's `:path` (path and query),
/// `host` its `:authority`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Header names as written; matched case-insensitively, as HTTP and Envoy do.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request to a proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L7Request {
    Http(HttpRequest),
    /// A DNS query for this name (type A/AAAA).
    Dns(String),
}

impl L7Request {
    pub fn parser(&self) -> L7Parser {
        match self {
            L7Request::Http(_) => L7Parser::Http,
            L7Request::Dns(_) => L7Parser::Dns,
        }
    }
}

/// One rule the proxy has for the endpoint, port and remote: the L7 rules of one policy entry
/// (`None`: the entry allows the remote on the port without L7 rules, so every request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRule {
    pub l7: Option<L7Policy>,
    pub origin: RuleOrigin,
}

/// Whether an allow of the remote from an L4 filter other than the connection's own port
/// filter (the wildcard port of an L3-only rule, a port range containing the port) reaches
/// the proxy deciding the request. Envoy: yes, `cilium/network_policy.cc`
/// `PortPolicy::forRange` checks the port's rules (ranges included) and then the wildcard-port
/// rules, and an allow there without HTTP rules passes the request. The DNS proxy: no, it
/// holds only the L7 rules of the redirect's own port filter (`pkg/proxy/dns.go`
/// `dnsRedirect.setRules` -> `pkg/fqdn/dnsproxy/proxy.go` `UpdateAllowed`, looked up by
/// port and protocol in `CheckAllowed` / `getPortRulesForID`).
pub fn other_filters_reach(parser: L7Parser) -> bool {
    match parser {
        L7Parser::Http => true,
        L7Parser::Dns => false,
    }
}

/// What the proxy did with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L7Verdict {
    /// Forwarded; the rules that passed it (`Some(rule text)`: an L7 rule; `None`: a rule
    /// without L7 rules or the wildcard rule).
    Forwarded(Vec<(RuleOrigin, Option<String>)>),
    /// Denied: HTTP 403 Access denied / DNS REFUSED; nothing reaches the server.
    Denied,
}

impl L7Verdict {
    pub fn allowed(&self) -> bool {
        matches!(self, L7Verdict::Forwarded(_))
    }
}

thread_local! {
    static REGEXES: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// RE2 full match, as Envoy's `safe_regex` header matcher applies a rule's `path`, `method`
/// and `host`. Patterns were validated when the policy was read; one that does not compile
/// matches nothing.
fn full_match(pattern: &str, value: &str) -> bool {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(re) = cache.get(pattern) {
            return re.is_match(value);
        }
        let Ok(re) = Regex::new(&format!("^(?:{pattern})$")) else {
            return false;
        };
        let hit = re.is_match(value);
        cache.insert(pattern.to_string(), re);
        hit
    })
}

/// Whether one `PortRuleHTTP` passes a request, as `getHTTPRule`
/// (`pkg/envoy/policy/envoy_l7_rules_translator.go`) hands it to Envoy: `path` on `:path`,
/// `method` on `:method`, `host` on `:authority` (RE2 full matches); `headers` entries
/// `Name` (present) or `Name value` / `Name: value` (exact value); `headerMatches` without
/// `mismatch` exact (presence when the value is empty), with a `mismatch` action never
/// failing the rule (cilium-envoy logs, adds, deletes or replaces the header instead).
pub fn http_rule_matches(rule: &HttpRule, req: &HttpRequest) -> bool {
    if !rule.path.is_empty() && !full_match(&rule.path, &req.path) {
        return false;
    }
    if !rule.method.is_empty() && !full_match(&rule.method, &req.method) {
        return false;
    }
    if !rule.host.is_empty() && !full_match(&rule.host, &req.host) {
        return false;
    }
    for h in &rule.headers {
        let ok = match h.split_once(' ') {
            Some((name, value)) => req.header(name.trim_end_matches(':')) == Some(value),
            None => req.header(h).is_some(),
        };
        if !ok {
            return false;
        }
    }
    for m in &rule.header_matches {
        if m.mismatch.is_some() {
            continue;
        }
        let ok = match req.header(&m.name) {
            None => false,
            Some(v) => m.value.is_empty() || v == m.value,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a DNS rule passes a query (`matchName` / `matchPattern` regexes of
/// `pkg/fqdn/matchpattern`, against the fully qualified lower-case name).
pub fn dns_rule_matches(rule: &FqdnSelector, name: &str) -> bool {
    fqdn_regex(rule).is_match(&fqdn(&name.to_lowercase()))
}

/// Decides a request against the proxy's rules for the endpoint, port and remote.
pub fn decide(rules: &[ProxyRule], req: &L7Request) -> L7Verdict {
    let mut by = Vec::new();
    for r in rules {
        match &r.l7 {
            None => by.push((r.origin.clone(), None)),
            Some(p) if p.wildcard => by.push((r.origin.clone(), None)),
            Some(p) => {
                let hit = match req {
                    L7Request::Http(h) => p
                        .http
                        .iter()
                        .find(|rule| http_rule_matches(rule, h))
                        .map(|rule| format!("http {rule}")),
                    L7Request::Dns(n) => p
                        .dns
                        .iter()
                        .find(|rule| dns_rule_matches(rule, n))
                        .map(|rule| format!("dns {rule}")),
                };
                if let Some(text) = hit {
                    by.push((r.origin.clone(), Some(text)));
                }
            }
        }
    }
    if by.is_empty() {
        L7Verdict::Denied
    } else {
        L7Verdict::Forwarded(by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HeaderMatch;

    fn req(method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            host: "deathstar.default.svc.cluster.local".into(),
            headers: vec![("X-Token".into(), "abc".into())],
        }
    }

    /// Documentation/gettingstarted/demo.rst (Star Wars): `method: POST`,
    /// `path: "/v1/request-landing"` allows that request only; regexes match the whole value.
    #[test]
    fn method_and_path_are_anchored_regexes() {
        let r = HttpRule {
            method: "POST".into(),
            path: "/v1/request-landing".into(),
            ..Default::default()
        };
        assert!(http_rule_matches(&r, &req("POST", "/v1/request-landing")));
        assert!(!http_rule_matches(&r, &req("PUT", "/v1/exhaust-port")));
        assert!(!http_rule_matches(
            &r,
            &req("POST", "/v1/request-landing/x")
        ));
        assert!(!http_rule_matches(&r, &req("XPOST", "/v1/request-landing")));
        let r = HttpRule {
            path: "/public/.*".into(),
            ..Default::default()
        };
        assert!(http_rule_matches(&r, &req("GET", "/public/a/b")));
        assert!(!http_rule_matches(&r, &req("GET", "/private/public/a")));
        // An empty rule passes everything.
        assert!(http_rule_matches(&HttpRule::default(), &req("DELETE", "/")));
    }

    /// `getHTTPRule`: `headers: ["X-Token abc"]` is an exact match, `["X-Token"]` presence;
    /// header names are case-insensitive; a headerMatch with a mismatch action never fails.
    #[test]
    fn headers_and_header_matches() {
        let rule = |h: &str| HttpRule {
            headers: vec![h.into()],
            ..Default::default()
        };
        assert!(http_rule_matches(&rule("X-Token abc"), &req("GET", "/")));
        assert!(http_rule_matches(&rule("x-token: abc"), &req("GET", "/")));
        assert!(!http_rule_matches(&rule("X-Token abd"), &req("GET", "/")));
        assert!(http_rule_matches(&rule("X-Token"), &req("GET", "/")));
        assert!(!http_rule_matches(&rule("X-Other"), &req("GET", "/")));
        let hm = |value: &str, mismatch| HttpRule {
            header_matches: vec![HeaderMatch {
                name: "X-Token".into(),
                value: value.into(),
                mismatch,
            }],
            ..Default::default()
        };
        assert!(http_rule_matches(&hm("abc", None), &req("GET", "/")));
        assert!(!http_rule_matches(&hm("xyz", None), &req("GET", "/")));
        assert!(http_rule_matches(&hm("", None), &req("GET", "/")));
        assert!(http_rule_matches(
            &hm("xyz", Some(crate::api::MismatchAction::Log)),
            &req("GET", "/")
        ));
    }
}
