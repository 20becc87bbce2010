//! The policy API layer: typed, validated Kubernetes `NetworkPolicy` (networking.k8s.io/v1),
//! `CiliumNetworkPolicy` and `CiliumClusterwideNetworkPolicy` (cilium.io/v2) manifests, read
//! from YAML exactly as a user would `kubectl apply` them.
//!
//! This module owns parsing and validation only: what the API server (CRD schema, Kubernetes
//! validation) and Cilium's `Rule.Sanitize` would reject is rejected here, with the file, the
//! absolute line and column, and the field path (`spec.ingress[0].toPorts[0].ports[0].port`).
//! It gives no meaning to a policy: turning rules into policy entries belongs to the next step
//! of the flow (policy resolution).
//!
//! Fields that Cilium supports but this project does not model yet (`toFQDNs`, L7 `rules`,
//! `toServices`, `nodeSelector`, `fromNodes`/`toNodes`, groups, `fromRequires`/`toRequires`,
//! `authentication`, CIDR groups, TLS/SNI/listener, extended IP protocols) are errors
//! ("not supported yet: <field>"), never silently ignored.
//!
//! # Entry points
//! - [`parse_manifests`] / [`load_manifests`]: a multi-document YAML file; empty documents
//!   are skipped, the first error stops parsing.
//! - `Manifest` implements [`serde::Deserialize`] (a mapping whose `apiVersion` and `kind`
//!   come before `spec`/`specs`), so a manifest can sit inside a larger YAML document: deriving
//!   `Deserialize` for a struct with a `Manifest` field keeps serde_yaml's locations and paths.
//! - [`manifest_from_map`]: for a hand-written visitor that has already read the first key of
//!   a mapping (for example to tell `{file: ...}` from an inline manifest): pass that key and
//!   the `MapAccess`, the rest of the mapping is read as a manifest.
//!
//! Errors are raised while serde_yaml reads the offending node (validation happens inside
//! the visitors, not after them), which is what keeps their line and path precise; see
//! `de.rs`. The line and column are where the offending node starts: a scalar's own position;
//! for a block value, the line after its key; for a rule that breaks a cross-field check
//! (`Combining X and Y`, `endPort` below `port`), the first key of that mapping, whose path
//! is the error's field. An unknown field is reported at its key.
//!
//! Deliberate leniencies (the API server would reject these, but their meaning is plain): a
//! YAML number where the CRD wants a string (`port: 80`, a label value `version: 2`).

mod cnp;
mod de;
mod error;
mod knp;
mod meta;
mod net;
#[cfg(test)]
mod tests;

pub use cnp::{
    CidrRule, CiliumClusterwideNetworkPolicy, CiliumNetworkPolicy, DefaultDenyConfig,
    EgressDenyRule, EgressRule, IcmpField, IcmpRule, IngressDenyRule, IngressRule, Label,
    LogConfig, PortProtocol, PortRule, Rule, MAX_ICMP_FIELDS, MAX_PORTS,
};
pub use error::ManifestError;
pub use knp::{
    IpBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec, PolicyType,
};
pub(crate) use meta::check_dns_subdomain;
pub use meta::{EndpointSelector, LabelSelector, LabelSelectorRequirement, ObjectMeta, Operator};
pub use net::{icmp_type_code, Cidr, Entity, IcmpFamily, KnpProtocol, Port, Protocol};

use de::{Never, RejectSeed};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// One policy object from a manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    NetworkPolicy(NetworkPolicy),
    CiliumNetworkPolicy(CiliumNetworkPolicy),
    CiliumClusterwideNetworkPolicy(CiliumClusterwideNetworkPolicy),
}

impl Manifest {
    /// The `kind` as written in the manifest.
    pub fn kind(&self) -> &'static str {
        self.manifest_kind().as_str()
    }

    /// The kind as a type.
    pub fn manifest_kind(&self) -> ManifestKind {
        match self {
            Manifest::NetworkPolicy(_) => ManifestKind::NetworkPolicy,
            Manifest::CiliumNetworkPolicy(_) => ManifestKind::CiliumNetworkPolicy,
            Manifest::CiliumClusterwideNetworkPolicy(_) => {
                ManifestKind::CiliumClusterwideNetworkPolicy
            }
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::NetworkPolicy(p) => &p.metadata,
            Manifest::CiliumNetworkPolicy(p) => &p.metadata,
            Manifest::CiliumClusterwideNetworkPolicy(p) => &p.metadata,
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The namespace: `metadata.namespace`, or `"default"` when absent, for the namespaced
    /// kinds; `None` for a CiliumClusterwideNetworkPolicy (a namespace written on it is
    /// ignored, as the API server does for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Manifest::CiliumClusterwideNetworkPolicy(_) => None,
            _ => Some(self.metadata().namespace.as_deref().unwrap_or("default")),
        }
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.namespace() {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind(), self.name()),
            None => write!(f, "{} {}", self.kind(), self.name()),
        }
    }
}

/// The kinds this layer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ManifestKind {
    NetworkPolicy,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
}

impl ManifestKind {
    pub const ALL: [ManifestKind; 3] = [
        ManifestKind::NetworkPolicy,
        ManifestKind::CiliumNetworkPolicy,
        ManifestKind::CiliumClusterwideNetworkPolicy,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ManifestKind::NetworkPolicy => "NetworkPolicy",
            ManifestKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            ManifestKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
        }
    }

    /// The only `apiVersion` that serves this kind.
    pub fn api_version(&self) -> &'static str {
        match self {
            ManifestKind::NetworkPolicy => "networking.k8s.io/v1",
            _ => "cilium.io/v2",
        }
    }

    pub fn is_namespaced(&self) -> bool {
        !matches!(self, ManifestKind::CiliumClusterwideNetworkPolicy)
    }
}

impl fmt::Display for ManifestKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ManifestKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ManifestKind::ALL
            .iter()
            .find(|k| k.as_str() == s)
            .copied()
            .ok_or_else(|| {
                format!(
                    "unsupported kind {s} (expected NetworkPolicy, CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy)"
                )
            })
    }
}

fn wrong_api_version(api_version: &str, kind: ManifestKind) -> String {
    format!(
        "apiVersion {api_version:?} does not serve kind {kind}: expected {}",
        kind.api_version()
    )
}

// `status` is part of every kind's schema and is written by the cluster, never by the policy
// author: Cilium's `CiliumNetworkPolicy`/`CiliumClusterwideNetworkPolicy` declare
// `Status CiliumNetworkPolicyStatus `json:"status"`` without `omitempty`
// (`pkg/k8s/apis/cilium.io/v2/cnp_types.go`, `ccnp_types.go`), so every CNP that Go serializes
// or `kubectl get -o yaml` prints carries `status:`, and `networking.k8s.io/v1` NetworkPolicy
// had a `status` (NetworkPolicyStatus) from Kubernetes 1.24 to 1.26. It is accepted and
// ignored, as the API server ignores it on create; it does not affect policy.
//
// A top-level `description` is not in the Cilium CRDs (the rule's is `spec.description`), but
// some of Cilium's own example files carry one there (`examples/policies/l3/
// wildcard-from-endpoints`, the Star Wars demo's `sw_l3_l4_policy.yaml`); API servers before
// strict field validation pruned it silently. Accepted on the Cilium kinds when it is a
// string, and ignored.
const FIELDS_CILIUM: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "specs",
    "status",
    "description",
];
const FIELDS_KNP: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

fn known_fields(kind: Option<ManifestKind>) -> &'static [&'static str] {
    match kind {
        Some(ManifestKind::NetworkPolicy) => FIELDS_KNP,
        _ => FIELDS_CILIUM,
    }
}

/// Reads a manifest key, rejecting unknown ones at the key itself.
struct KeySeed(Option<ManifestKind>);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct V(Option<ManifestKind>);
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a manifest field name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                let fields = known_fields(self.0);
                if fields.contains(&v) {
                    Ok(v.to_string())
                } else {
                    Err(E::unknown_field(v, fields))
                }
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// Reads `kind`, checking it against an `apiVersion` read before it.
struct KindSeed<'a>(Option<&'a str>);

impl<'de> DeserializeSeed<'de> for KindSeed<'_> {
    type Value = ManifestKind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ManifestKind, D::Error> {
        struct V<'a>(Option<&'a str>);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = ManifestKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a kind")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ManifestKind, E> {
                let kind: ManifestKind = v.parse().map_err(E::custom)?;
                match self.0 {
                    Some(av) if av != kind.api_version() => {
                        Err(E::custom(wrong_api_version(av, kind)))
                    }
                    _ => Ok(kind),
                }
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// Reads `apiVersion`, checking it against a `kind` read before it.
struct ApiVersionSeed(Option<ManifestKind>);

impl<'de> DeserializeSeed<'de> for ApiVersionSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct V(Option<ManifestKind>);
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an apiVersion")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                match self.0 {
                    Some(kind) if v != kind.api_version() => {
                        Err(E::custom(wrong_api_version(v, kind)))
                    }
                    _ => Ok(v.to_string()),
                }
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// Fails at the next value of `map` (so the error carries that value's line and path).
fn fail_at_value<'de, A: MapAccess<'de>, T>(map: &mut A, message: String) -> Result<T, A::Error> {
    let never: Never = map.next_value_seed(RejectSeed(message))?;
    match never {}
}

fn check_manifest_key<E: serde::de::Error>(key: &str, kind: Option<ManifestKind>) -> Result<(), E> {
    let fields = known_fields(kind);
    if fields.contains(&key) {
        Ok(())
    } else {
        Err(E::unknown_field(key, fields))
    }
}

/// Reads the rest of a manifest mapping whose first key (already consumed by the caller's
/// visitor) is `first_key`; the value of that key is the next thing `map` yields.
///
/// Use it from a visitor over a mapping that may be an inline manifest:
/// ```text
/// fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
///     let Some(key) = map.next_key::<String>()? else { return Err(A::Error::custom("empty")) };
///     if key == "file" { /* read {file: path} */ }
///     api::manifest_from_map(key, map).map(Entry::Inline)
/// }
/// ```
pub fn manifest_from_map<'de, A: MapAccess<'de>>(
    first_key: String,
    map: A,
) -> Result<Manifest, A::Error> {
    read_manifest(Some(first_key), map)
}

fn read_manifest<'de, A: MapAccess<'de>>(
    first_key: Option<String>,
    mut map: A,
) -> Result<Manifest, A::Error> {
    let mut api_version: Option<String> = None;
    let mut kind: Option<ManifestKind> = None;
    let mut metadata: Option<ObjectMeta> = None;
    let mut knp_spec: Option<NetworkPolicySpec> = None;
    let mut spec: Option<Rule> = None;
    let mut specs: Option<Vec<Rule>> = None;
    let mut status_seen = false;
    let mut description_seen = false;

    let mut next = match first_key {
        Some(k) => {
            check_manifest_key::<A::Error>(&k, kind)?;
            Some(k)
        }
        None => map.next_key_seed(KeySeed(kind))?,
    };
    while let Some(key) = next {
        match key.as_str() {
            "apiVersion" => {
                if api_version.is_some() {
                    return fail_at_value(&mut map, "duplicate field `apiVersion`".into());
                }
                api_version = Some(map.next_value_seed(ApiVersionSeed(kind))?);
            }
            "kind" => {
                if kind.is_some() {
                    return fail_at_value(&mut map, "duplicate field `kind`".into());
                }
                kind = Some(map.next_value_seed(KindSeed(api_version.as_deref()))?);
            }
            "metadata" => {
                if metadata.is_some() {
                    return fail_at_value(&mut map, "duplicate field `metadata`".into());
                }
                metadata = Some(map.next_value()?);
            }
            "spec" | "specs" => {
                let (Some(k), Some(_)) = (kind, &api_version) else {
                    return fail_at_value(
                        &mut map,
                        format!("apiVersion and kind must come before {key}"),
                    );
                };
                let duplicate = match (k, key.as_str()) {
                    (ManifestKind::NetworkPolicy, "spec") => knp_spec.is_some(),
                    (ManifestKind::NetworkPolicy, _) => {
                        return Err(A::Error::unknown_field(&key, FIELDS_KNP))
                    }
                    (_, "spec") => spec.is_some(),
                    _ => specs.is_some(),
                };
                if duplicate {
                    return fail_at_value(&mut map, format!("duplicate field `{key}`"));
                }
                match (k, key.as_str()) {
                    (ManifestKind::NetworkPolicy, _) => knp_spec = Some(map.next_value()?),
                    (_, "spec") => spec = Some(map.next_value()?),
                    _ => specs = Some(map.next_value()?),
                }
            }
            "description" => {
                if description_seen {
                    return fail_at_value(&mut map, "duplicate field `description`".into());
                }
                description_seen = true;
                // Ignored (see FIELDS_CILIUM); a KNP is refused below once its kind is known.
                map.next_value::<String>()?;
            }
            "status" => {
                if status_seen {
                    return fail_at_value(&mut map, "duplicate field `status`".into());
                }
                status_seen = true;
                // Written by the cluster; ignored (see FIELDS_CILIUM).
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            other => return Err(A::Error::unknown_field(other, known_fields(kind))),
        }
        next = map.next_key_seed(KeySeed(kind))?;
    }

    let kind = kind.ok_or_else(|| A::Error::missing_field("kind"))?;
    if description_seen && kind == ManifestKind::NetworkPolicy {
        return Err(A::Error::unknown_field("description", FIELDS_KNP));
    }
    if api_version.is_none() {
        return Err(A::Error::missing_field("apiVersion"));
    }
    let metadata = metadata.ok_or_else(|| A::Error::missing_field("metadata"))?;
    if kind != ManifestKind::NetworkPolicy && spec.is_none() && specs.is_none() {
        return Err(A::Error::custom(format!(
            "Invalid {kind} spec(s): empty policy (neither spec nor specs is set)"
        )));
    }
    Ok(match kind {
        ManifestKind::NetworkPolicy => Manifest::NetworkPolicy(NetworkPolicy {
            metadata,
            spec: knp_spec.unwrap_or_default(),
        }),
        ManifestKind::CiliumNetworkPolicy => Manifest::CiliumNetworkPolicy(CiliumNetworkPolicy {
            metadata,
            spec,
            specs,
        }),
        ManifestKind::CiliumClusterwideNetworkPolicy => {
            Manifest::CiliumClusterwideNetworkPolicy(CiliumClusterwideNetworkPolicy {
                metadata,
                spec,
                specs,
            })
        }
    })
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Manifest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a Kubernetes manifest (a mapping with apiVersion, kind, metadata and spec)",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Manifest, A::Error> {
                read_manifest(None, map)
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses every document of a multi-document YAML text; empty documents are skipped.
/// `file` is only used in errors. Documents are numbered from 1, as they appear in the file.
pub fn parse_manifests(file: &Path, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Option::<Manifest>::deserialize(document) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(e) => {
                // serde_yaml reports the first error it meets while reading the document's
                // events; a YAML syntax error later in the same document is the better report.
                let syntax = serde_yaml::Deserializer::from_str(text)
                    .nth(i)
                    .and_then(|doc| serde::de::IgnoredAny::deserialize(doc).err());
                return Err(ManifestError::from_yaml(
                    file,
                    i + 1,
                    syntax.as_ref().unwrap_or(&e),
                ));
            }
        }
    }
    Ok(out)
}

/// Reads `path` and parses it with [`parse_manifests`].
pub fn load_manifests(path: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::io(path, &e))?;
    parse_manifests(path, &text)
}
