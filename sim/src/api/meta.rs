//! Object metadata and label selectors, validated as the Kubernetes API server does
//! (`apimachinery` `ValidateLabelSelector`, `IsQualifiedName`, `IsValidLabelValue`), with
//! Cilium's `source:key` label keys for [`EndpointSelector`].

use super::de::{from_str_scalar, validated_map};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// `metadata` of a manifest. Only the fields a user would write (or `kubectl get -o yaml`
/// would print) are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    pub creation_timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawObjectMeta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<K8sMatchLabels>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    creation_timestamp: Option<String>,
    // The rest of `ObjectMeta` (apimachinery `types.go`): set by the API server or by
    // controllers, printed by `kubectl get -o yaml` (managedFields with
    // `--show-managed-fields`). Accepted so that exported manifests load; none of them
    // affects policy.
    #[serde(default, rename = "generateName")]
    _generate_name: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "selfLink")]
    _self_link: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "deletionTimestamp")]
    _deletion_timestamp: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "deletionGracePeriodSeconds")]
    _deletion_grace_period_seconds: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "ownerReferences")]
    _owner_references: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "finalizers")]
    _finalizers: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "managedFields")]
    _managed_fields: Option<serde::de::IgnoredAny>,
}

impl TryFrom<RawObjectMeta> for ObjectMeta {
    type Error = String;
    fn try_from(r: RawObjectMeta) -> Result<Self, String> {
        check_dns_subdomain(&r.name).map_err(|e| format!("invalid name {:?}: {e}", r.name))?;
        if let Some(ns) = &r.namespace {
            check_dns_label(ns).map_err(|e| format!("invalid namespace {ns:?}: {e}"))?;
        }
        Ok(ObjectMeta {
            name: r.name,
            namespace: r.namespace,
            labels: r.labels.map(|l| l.0).unwrap_or_default(),
            annotations: r.annotations,
            uid: r.uid,
            resource_version: r.resource_version,
            generation: r.generation,
            creation_timestamp: r.creation_timestamp,
        })
    }
}
validated_map!(
    ObjectMeta,
    RawObjectMeta,
    "object metadata (a mapping with a name)"
);

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        })
    }
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl fmt::Display for LabelSelectorRequirement {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            op => write!(f, "{} {op} ({})", self.key, self.values.join(",")),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRequirement {
    key: String,
    operator: Operator,
    #[serde(default)]
    values: Option<Vec<String>>,
}

/// Which label-key dialect a selector uses.
#[derive(Clone, Copy)]
enum KeyDialect {
    /// Kubernetes: a qualified name.
    K8s,
    /// Cilium: an optional `source:` prefix, then a qualified name.
    Cilium,
}

fn requirement(r: RawRequirement, dialect: KeyDialect) -> Result<LabelSelectorRequirement, String> {
    check_key(&r.key, dialect)?;
    let values = r.values.unwrap_or_default();
    match r.operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(format!(
                "values: must be specified when `operator` is 'In' or 'NotIn' (key {:?})",
                r.key
            ))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err(format!(
            "values: may not be specified when `operator` is 'Exists' or 'DoesNotExist' (key {:?})",
            r.key
        ))
        }
        _ => {}
    }
    for v in &values {
        check_label_value(v).map_err(|e| format!("invalid label value {v:?}: {e}"))?;
    }
    Ok(LabelSelectorRequirement {
        key: r.key,
        operator: r.operator,
        values,
    })
}

/// A Kubernetes label selector. `{}` (no requirements) selects everything.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// True when the selector has no requirement at all (selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.extend(self.match_expressions.iter().map(|r| r.to_string()));
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// `matchLabels` with keys checked as Kubernetes label keys.
struct K8sMatchLabels(BTreeMap<String, String>);
/// `matchLabels` with keys checked as Cilium label keys.
struct CiliumMatchLabels(BTreeMap<String, String>);
/// A `matchExpressions` entry with a Kubernetes key.
struct K8sRequirement(LabelSelectorRequirement);
/// A `matchExpressions` entry with a Cilium key.
struct CiliumRequirement(LabelSelectorRequirement);

/// Reads a label key, validating it at the key itself.
struct LabelKeySeed(KeyDialect);

impl<'de> serde::de::DeserializeSeed<'de> for LabelKeySeed {
    type Value = String;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct V(KeyDialect);
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                check_key(v, self.0).map_err(E::custom)?;
                Ok(v.to_string())
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// A label value, validated at the value. YAML numbers and booleans are taken as their text
/// (`version: 2`), which the API server would reject, but the meaning is unambiguous.
struct LabelValue(String);
impl std::str::FromStr for LabelValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_label_value(s).map_err(|e| format!("invalid label value {s:?}: {e}"))?;
        Ok(LabelValue(s.to_string()))
    }
}
from_str_scalar!(LabelValue, "a label value");

fn read_labels<'de, A: serde::de::MapAccess<'de>>(
    mut map: A,
    dialect: KeyDialect,
) -> Result<BTreeMap<String, String>, A::Error> {
    let mut out = BTreeMap::new();
    while let Some(k) = map.next_key_seed(LabelKeySeed(dialect))? {
        let v = map.next_value::<LabelValue>()?.0;
        if out.insert(k.clone(), v).is_some() {
            return Err(serde::de::Error::custom(format!(
                "duplicate label key {k:?}"
            )));
        }
    }
    Ok(out)
}

macro_rules! selector_parts {
    ($labels:ident, $req:ident, $dialect:expr) => {
        impl<'de> Deserialize<'de> for $labels {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $labels;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a mapping of label keys to values")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$labels, A::Error> {
                        read_labels(map, $dialect).map($labels)
                    }
                }
                d.deserialize_map(V)
            }
        }
        impl TryFrom<RawRequirement> for $req {
            type Error = String;
            fn try_from(r: RawRequirement) -> Result<Self, String> {
                requirement(r, $dialect).map($req)
            }
        }
        validated_map!($req, RawRequirement, "a label selector requirement");
    };
}
selector_parts!(K8sMatchLabels, K8sRequirement, KeyDialect::K8s);
selector_parts!(CiliumMatchLabels, CiliumRequirement, KeyDialect::Cilium);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawK8sSelector {
    #[serde(default)]
    match_labels: Option<K8sMatchLabels>,
    #[serde(default)]
    match_expressions: Option<Vec<K8sRequirement>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCiliumSelector {
    #[serde(default)]
    match_labels: Option<CiliumMatchLabels>,
    #[serde(default)]
    match_expressions: Option<Vec<CiliumRequirement>>,
}

impl TryFrom<RawK8sSelector> for LabelSelector {
    type Error = String;
    fn try_from(r: RawK8sSelector) -> Result<Self, String> {
        Ok(LabelSelector {
            match_labels: r.match_labels.map(|m| m.0).unwrap_or_default(),
            match_expressions: r
                .match_expressions
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.0)
                .collect(),
        })
    }
}
validated_map!(LabelSelector, RawK8sSelector, "a label selector");

/// A Cilium endpoint selector: a [`LabelSelector`] whose keys may carry a `source:` prefix
/// (`k8s:app`, `any:app`, `reserved:host`). Keys are kept as written; the `any:` default
/// source is applied by the policy layer, not here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EndpointSelector(pub LabelSelector);

impl std::ops::Deref for EndpointSelector {
    type Target = LabelSelector;
    fn deref(&self) -> &LabelSelector {
        &self.0
    }
}

impl fmt::Display for EndpointSelector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<RawCiliumSelector> for EndpointSelector {
    type Error = String;
    fn try_from(r: RawCiliumSelector) -> Result<Self, String> {
        Ok(EndpointSelector(LabelSelector {
            match_labels: r.match_labels.map(|m| m.0).unwrap_or_default(),
            match_expressions: r
                .match_expressions
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.0)
                .collect(),
        }))
    }
}
validated_map!(EndpointSelector, RawCiliumSelector, "an endpoint selector");

// ---- name and label syntax (k8s.io/apimachinery/pkg/util/validation) ----

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub(crate) fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let first_last_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !s.chars().all(ok_char)
        || !s.chars().next().is_some_and(first_last_ok)
        || !s.chars().last().is_some_and(first_last_ok)
    {
        return Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// DNS-1035 label (`IsDNS1035Label`, the rule of `ValidateServiceName`): a DNS-1123 label
/// that starts with a letter.
pub(crate) fn check_dns1035_label(s: &str) -> Result<(), String> {
    let rule = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
    check_dns_label(s).map_err(|e| {
        if e.starts_with("must be") {
            e
        } else {
            rule.to_string()
        }
    })?;
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(rule.into());
    }
    Ok(())
}

/// DNS-1123 subdomain: dot-separated DNS labels, ≤ 253.
pub(crate) fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    if s.split('.').all(|l| check_dns_label(l).is_ok()) {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into())
    }
}

const NAME_PART_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn check_name_part(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if s.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    let ok = s
        .chars()
        .all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.')
        && s.chars().next().is_some_and(is_alnum)
        && s.chars().last().is_some_and(is_alnum);
    if ok {
        Ok(())
    } else {
        Err(format!("name part {NAME_PART_RULE}"))
    }
}

/// `IsQualifiedName`: `[prefix/]name`, prefix a DNS subdomain.
pub(crate) fn check_qualified_name(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return Err("prefix part must be non-empty".into());
            }
            check_dns_subdomain(prefix).map_err(|e| format!("prefix part {e}"))?;
            check_name_part(name)
        }
        None => check_name_part(s),
    }
}

/// `IsValidLabelValue`: empty, or ≤ 63 characters shaped like a name part.
pub(crate) fn check_label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    check_name_part(s).map_err(|_| format!("a valid label value {NAME_PART_RULE}"))
}

fn check_key(key: &str, dialect: KeyDialect) -> Result<(), String> {
    let res = match dialect {
        KeyDialect::K8s => check_qualified_name(key),
        // Cilium turns `source:key` into the extended key `source.key` (and a bare key into
        // `any.key`) before Kubernetes validation (`labels.GetExtendedKeyFrom`).
        KeyDialect::Cilium => match key.split_once(':') {
            Some((source, rest)) => {
                if source.is_empty() {
                    Err("empty label source before ':'".to_string())
                } else {
                    check_qualified_name(&format!("{source}.{rest}"))
                }
            }
            None => check_qualified_name(&format!("any.{key}")),
        },
    };
    res.map_err(|e| format!("invalid label key {key:?}: {e}"))
}
