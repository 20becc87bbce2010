//! L7 and DNS parts of a CiliumNetworkPolicy: `toPorts[].rules` (`http`, `dns`), `toFQDNs`,
//! `serverNames` and the TLS contexts, validated as the CRD schema
//! (`pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml`) and Cilium's
//! sanitizers do: `PortRuleHTTP.Sanitize` (`pkg/policy/api/http.go`), `FQDNSelector.sanitize`
//! and `PortRuleDNS.Sanitize` (`pkg/policy/api/fqdn.go`), `matchpattern.Validate`
//! (`pkg/fqdn/matchpattern/matchpattern.go`), `L7Rules.sanitize` and `PortRule.sanitize`
//! (`pkg/policy/api/rule_validation.go`, applied in `cnp.rs`).
//!
//! Kafka rules, generic `l7proto` rules and header-match secrets are "not supported yet".

use super::de::{not_supported, validated_map, Never};
use serde::Deserialize;
use std::fmt;

/// `maxLength` of `matchName` / `matchPattern` in the CRD (`matchpattern.MaxFQDNLength`).
pub const MAX_FQDN_LENGTH: usize = 255;
/// The CRD pattern of `matchName` (`FQDNMatchNameRegexString`).
pub const FQDN_MATCH_NAME_PATTERN: &str = r"^([-a-zA-Z0-9_]+[.]?)+$";
/// The CRD pattern of `matchPattern` (`FQDNMatchPatternRegexString`).
pub const FQDN_MATCH_PATTERN_PATTERN: &str = r"^([-a-zA-Z0-9_*]+[.]?)+$";

/// `toPorts[].rules`: at most one L7 protocol's rules. `None` and `Some(vec![])` differ as
/// Go's nil and empty slices do (`L7Rules.sanitize` counts a non-nil list as a type).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct L7Rules {
    pub http: Option<Vec<HttpRule>>,
    pub dns: Option<Vec<FqdnSelector>>,
}

impl L7Rules {
    /// `L7Rules.IsEmpty`: no rule of any protocol (empty lists count as none).
    pub fn is_empty(&self) -> bool {
        self.http.as_ref().is_none_or(Vec::is_empty) && self.dns.as_ref().is_none_or(Vec::is_empty)
    }
    pub fn has_dns(&self) -> bool {
        self.dns.as_ref().is_some_and(|d| !d.is_empty())
    }
}

not_supported!(ns_kafka, "rules.kafka (Kafka L7 rules)");
not_supported!(ns_l7proto, "rules.l7proto (generic L7 parsers)");
not_supported!(ns_l7, "rules.l7 (generic L7 rules)");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawL7Rules {
    #[serde(default)]
    http: Option<Vec<HttpRule>>,
    #[serde(default)]
    dns: Option<Vec<FqdnSelector>>,
    #[serde(default, deserialize_with = "ns_kafka")]
    kafka: Option<Never>,
    #[serde(default, deserialize_with = "ns_l7proto")]
    l7proto: Option<Never>,
    #[serde(default, deserialize_with = "ns_l7")]
    l7: Option<Never>,
}

impl TryFrom<RawL7Rules> for L7Rules {
    type Error = String;
    fn try_from(r: RawL7Rules) -> Result<Self, String> {
        debug_assert!(r.kafka.is_none() && r.l7proto.is_none() && r.l7.is_none());
        // The checks across fields (`L7Rules.sanitize`) need the ports: `PortRule`.
        Ok(L7Rules {
            http: r.http,
            dns: r.dns,
        })
    }
}
validated_map!(L7Rules, RawL7Rules, "L7 rules");

/// `PortRuleHTTP`: every field optional; `path`, `method` and `host` are RE2 regexes that
/// must match the whole value (Envoy `safe_regex`); an empty rule matches every request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRule {
    pub path: String,
    pub method: String,
    pub host: String,
    /// `Name` (presence) or `Name value` / `Name: value` (exact value).
    pub headers: Vec<String>,
    pub header_matches: Vec<HeaderMatch>,
}

impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.method.is_empty() {
            parts.push(format!("method={:?}", self.method));
        }
        if !self.path.is_empty() {
            parts.push(format!("path={:?}", self.path));
        }
        if !self.host.is_empty() {
            parts.push(format!("host={:?}", self.host));
        }
        for h in &self.headers {
            parts.push(format!("header={h:?}"));
        }
        for m in &self.header_matches {
            parts.push(format!("headerMatch={m}"));
        }
        if parts.is_empty() {
            f.write_str("{} (every request)")
        } else {
            write!(f, "{{{}}}", parts.join(", "))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHttpRule {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: Option<Vec<String>>,
    #[serde(default)]
    header_matches: Option<Vec<HeaderMatch>>,
}

/// Compiles `re` as Cilium's `regexp.Compile` would accept it (Go's RE2 syntax; the regex
/// crate implements the same syntax, without look-around and backreferences).
pub fn check_regex(field: &str, re: &str) -> Result<(), String> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("{field}: error parsing regexp {re:?}: {e}"))
}

impl TryFrom<RawHttpRule> for HttpRule {
    type Error = String;
    fn try_from(r: RawHttpRule) -> Result<Self, String> {
        let path = r.path.unwrap_or_default();
        let method = r.method.unwrap_or_default();
        // `PortRuleHTTP.Sanitize` compiles path and method; the host is only used by Envoy
        // (where an invalid regex would reject the listener), so it is checked too.
        if !path.is_empty() {
            check_regex("path", &path)?;
        }
        if !method.is_empty() {
            check_regex("method", &method)?;
        }
        let host = r.host.unwrap_or_default();
        if !host.is_empty() {
            check_regex("host", &host)?;
        }
        Ok(HttpRule {
            path,
            method,
            host,
            headers: r.headers.unwrap_or_default(),
            header_matches: r.header_matches.unwrap_or_default(),
        })
    }
}
validated_map!(HttpRule, RawHttpRule, "an HTTP rule");

/// `HeaderMatch.Mismatch`: what the proxy does when the header does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MismatchAction {
    #[serde(rename = "LOG")]
    Log,
    #[serde(rename = "ADD")]
    Add,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "REPLACE")]
    Replace,
}

/// `headerMatches[]`: a header and its value (empty: presence only). Without `mismatch` a
/// mismatch fails the rule; with one the rule still matches (the proxy logs, adds, deletes or
/// replaces the header), as `getHTTPRule` in `pkg/envoy/policy/envoy_l7_rules_translator.go`
/// hands it to cilium-envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
    pub mismatch: Option<MismatchAction>,
}

impl fmt::Display for HeaderMatch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:?}={:?}", self.name, self.value)?;
        if let Some(m) = self.mismatch {
            write!(f, " mismatch={m:?}")?;
        }
        Ok(())
    }
}

not_supported!(
    ns_secret,
    "headerMatches.secret (header values from Kubernetes Secrets)"
);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHeaderMatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    mismatch: Option<MismatchAction>,
    #[serde(default, deserialize_with = "ns_secret")]
    secret: Option<Never>,
}

impl TryFrom<RawHeaderMatch> for HeaderMatch {
    type Error = String;
    fn try_from(r: RawHeaderMatch) -> Result<Self, String> {
        debug_assert!(r.secret.is_none());
        // CRD: `name` is required with minLength 1; `Sanitize`: "Header name missing".
        let name = r.name.unwrap_or_default();
        if name.is_empty() {
            return Err("Header name missing".into());
        }
        Ok(HeaderMatch {
            name,
            value: r.value.unwrap_or_default(),
            mismatch: r.mismatch,
        })
    }
}
validated_map!(HeaderMatch, RawHeaderMatch, "a header match");

/// `FQDNSelector` (`toFQDNs[]`) and `PortRuleDNS` (`rules.dns[]`): exactly one of `matchName`
/// (a literal name) and `matchPattern` (wildcards, `pkg/fqdn/matchpattern`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FqdnSelector {
    MatchName(String),
    MatchPattern(String),
}

impl fmt::Display for FqdnSelector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FqdnSelector::MatchName(n) => write!(f, "matchName: {n}"),
            FqdnSelector::MatchPattern(p) => write!(f, "matchPattern: {p}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFqdnSelector {
    #[serde(default)]
    match_name: Option<String>,
    #[serde(default)]
    match_pattern: Option<String>,
}

/// Full-match of a CRD `pattern` (the API server uses Go's RE2 with the pattern as written).
fn crd_pattern(field: &str, value: &str, pattern: &str) -> Result<(), String> {
    let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
    if value.chars().count() > MAX_FQDN_LENGTH {
        return Err(format!(
            "{field}: Too long: may not be more than {MAX_FQDN_LENGTH} bytes"
        ));
    }
    if !re.is_match(value) {
        return Err(format!(
            "{field}: Invalid value: {value:?}: {field} in body should match '{pattern}'"
        ));
    }
    Ok(())
}

impl TryFrom<RawFqdnSelector> for FqdnSelector {
    type Error = String;
    fn try_from(r: RawFqdnSelector) -> Result<Self, String> {
        // CRD: oneOf [required matchName, required matchPattern].
        match (r.match_name, r.match_pattern) {
            (Some(_), Some(_)) => Err("must validate one and only one schema (oneOf): \
                 only one of MatchName or MatchPattern is allowed in an FQDNSelector"
                .into()),
            (None, None) => Err("must validate one and only one schema (oneOf): \
                 one of matchName or matchPattern is required"
                .into()),
            (Some(n), None) => {
                crd_pattern("matchName", &n, FQDN_MATCH_NAME_PATTERN)?;
                Ok(FqdnSelector::MatchName(n))
            }
            (None, Some(p)) => {
                crd_pattern("matchPattern", &p, FQDN_MATCH_PATTERN_PATTERN)?;
                Ok(FqdnSelector::MatchPattern(p))
            }
        }
    }
}
validated_map!(FqdnSelector, RawFqdnSelector, "an FQDN selector");

/// A `terminatingTLS` / `originatingTLS` context (`TLSContext`): parsed so that the
/// `serverNames` rules of `PortRule.sanitize` can be checked; simulating TLS is not supported
/// yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsContext;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // read for validation only
struct RawSecret {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // read for validation only
struct RawTlsContext {
    #[serde(default)]
    secret: Option<RawSecret>,
    #[serde(default, rename = "trustedCA")]
    trusted_ca: Option<String>,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    private_key: Option<String>,
}

impl TryFrom<RawTlsContext> for TlsContext {
    type Error = String;
    fn try_from(r: RawTlsContext) -> Result<Self, String> {
        // CRD: `secret` is required.
        if r.secret.is_none() {
            return Err("secret: Required value".into());
        }
        Ok(TlsContext)
    }
}
validated_map!(TlsContext, RawTlsContext, "a TLS context");

/// The compiled form of a DNS name pattern: `matchpattern.ToAnchoredRegexp` after
/// `FQDNSelector.ToRegex` (a `matchName` is the literal FQDN, a `matchPattern` is
/// `Sanitize`d). Names are compared lower-case and fully qualified (trailing dot).
pub fn fqdn_regex(sel: &FqdnSelector) -> regex::Regex {
    let src = match sel {
        FqdnSelector::MatchName(n) => {
            format!("^{}$", regex::escape(&fqdn(&n.to_lowercase())))
        }
        FqdnSelector::MatchPattern(p) => anchored_pattern(p),
    };
    // Built from validated characters only; a failure would be a bug here.
    regex::Regex::new(&src).unwrap_or_else(|e| panic!("matchpattern regex {src:?}: {e}"))
}

/// Whether a name can be asked for in a DNS query: labels of letters, digits, `-` and `_`
/// (the characters `matchName` allows), optionally fully qualified.
pub fn is_dns_query_name(name: &str) -> bool {
    name.len() <= MAX_FQDN_LENGTH
        && regex::Regex::new(FQDN_MATCH_NAME_PATTERN)
            .map(|re| re.is_match(name))
            .unwrap_or(false)
}

/// `dns.FQDN`: the name with a trailing dot.
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

const DNS_CHARS: &str = "[-a-zA-Z0-9_]";

/// `matchpattern.ToAnchoredRegexp(matchpattern.Sanitize(p))`.
fn anchored_pattern(p: &str) -> String {
    let p = p.trim().to_lowercase();
    // dnsWildcardRegex `^[*]{1,}[.]?$`: a lone `*` (or `**`, `*.`) matches every name.
    let lone = !p.is_empty()
        && p.trim_end_matches('.').chars().all(|c| c == '*')
        && p.matches('.').count() <= 1
        && !p.starts_with('.');
    if lone {
        return format!("(^({DNS_CHARS}+[.])+$)|(^[.]$)");
    }
    let p = fqdn(&p);
    let mut out = p.replace('.', "[.]");
    // subdomainWildcardSpecifierPrefix `^[*]{2,}\[\.\]`: `**.` matches one or more labels.
    if out.starts_with("**") {
        let stars = out.chars().take_while(|&c| c == '*').count();
        if out[stars..].starts_with("[.]") {
            out = format!(
                "({DNS_CHARS}+([.]{DNS_CHARS}+){{0,}})[.]{}",
                &out[stars + 3..]
            );
        }
    }
    // wildcardSpecifier `[*]{1,}` → `[-a-zA-Z0-9_]*`: within one label.
    let mut res = String::new();
    let mut prev_star = false;
    for c in out.chars() {
        if c == '*' {
            if !prev_star {
                res.push_str(DNS_CHARS);
                res.push('*');
            }
            prev_star = true;
        } else {
            res.push(c);
            prev_star = false;
        }
    }
    format!("^{res}$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str, name: &str) -> bool {
        fqdn_regex(&FqdnSelector::MatchPattern(p.into())).is_match(&fqdn(&name.to_lowercase()))
    }

    /// The examples of the CRD's `matchPattern` description and of
    /// `pkg/fqdn/matchpattern/matchpattern_test.go`.
    #[test]
    fn match_pattern_examples_from_cilium() {
        // 1. `*.cilium.io` matches subdomains at that level only.
        assert!(pat("*.cilium.io", "www.cilium.io"));
        assert!(pat("*.cilium.io", "blog.cilium.io"));
        assert!(!pat("*.cilium.io", "cilium.io"));
        assert!(!pat("*.cilium.io", "google.com"));
        assert!(!pat("*.cilium.io", "a.b.cilium.io"));
        // 2. `*cilium.io`: cilium.io and names ending in it without a dot.
        assert!(pat("*cilium.io", "cilium.io"));
        assert!(pat("*cilium.io", "sub-cilium.io"));
        assert!(!pat("*cilium.io", "www.cilium.io"));
        // 3. `sub*.cilium.io`.
        assert!(pat("sub*.cilium.io", "sub.cilium.io"));
        assert!(pat("sub*.cilium.io", "subdomain.cilium.io"));
        assert!(!pat("sub*.cilium.io", "www.cilium.io"));
        // 4. `**.cilium.io`: every multilevel subdomain, not cilium.io itself.
        assert!(pat("**.cilium.io", "app.cilium.io"));
        assert!(pat("**.cilium.io", "test.app.cilium.io"));
        assert!(!pat("**.cilium.io", "cilium.io"));
        // A lone `*` matches every name.
        assert!(pat("*", "api.github.com"));
        assert!(pat("*", "x"));
        // Case-insensitive, trailing dot optional.
        assert!(pat("*.GitHub.com", "API.github.com."));
    }

    #[test]
    fn match_name_is_literal_and_case_insensitive() {
        let re = fqdn_regex(&FqdnSelector::MatchName("API.github.com".into()));
        assert!(re.is_match("api.github.com."));
        assert!(!re.is_match("apixgithub.com."));
        assert!(!re.is_match("www.api.github.com."));
    }
}
