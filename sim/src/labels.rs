//! Labels and label sets as Cilium models them: `source:key=value`, with the sources of
//! `pkg/labels` (spec §1.4), the pod label construction of `SanitizePodLabels` (spec §2.4),
//! and the identity-relevant label filter of `pkg/labelsfilter` (spec §3.3).

use std::collections::BTreeMap;
use std::fmt;

/// A label source (`pkg/labels/labels.go`). Selector keys without a source get [`Source::Any`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Any,
    K8s,
    Reserved,
    Cidr,
    Unspec,
    Fqdn,
    CidrGroup,
    Node,
    Cni,
    Gen,
    Directory,
}

impl Source {
    pub const ALL: [Source; 11] = [
        Source::Any,
        Source::K8s,
        Source::Reserved,
        Source::Cidr,
        Source::Unspec,
        Source::Fqdn,
        Source::CidrGroup,
        Source::Node,
        Source::Cni,
        Source::Gen,
        Source::Directory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Any => "any",
            Source::K8s => "k8s",
            Source::Reserved => "reserved",
            Source::Cidr => "cidr",
            Source::Unspec => "unspec",
            Source::Fqdn => "fqdn",
            Source::CidrGroup => "cidrgroup",
            Source::Node => "node",
            Source::Cni => "cni",
            Source::Gen => "gen",
            Source::Directory => "directory",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|src| src.as_str() == s)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A label key with its source.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelKey {
    pub source: Source,
    pub key: String,
}

impl LabelKey {
    pub fn new(source: Source, key: impl Into<String>) -> Self {
        LabelKey {
            source,
            key: key.into(),
        }
    }

    /// Parses a selector key as Cilium's sanitize does: `source:key` when the prefix before
    /// the first `:` is a known source, `$host` as `reserved:host`, anything else `any:key`
    /// (`EndpointSelector.Sanitize`, `labels.NewSourceEncodedLabelKey`).
    pub fn parse_selector_key(raw: &str) -> LabelKey {
        if raw == "$host" {
            return LabelKey::new(Source::Reserved, "host");
        }
        if let Some((src, key)) = raw.split_once(':') {
            if let Some(source) = Source::parse(src) {
                return LabelKey::new(source, key);
            }
        }
        LabelKey::new(Source::Any, raw)
    }
}

impl fmt::Display for LabelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.key)
    }
}

/// One label: `source:key=value` (reserved labels have an empty value).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub source: Source,
    pub key: String,
    pub value: String,
}

impl Label {
    pub fn new(source: Source, key: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            source,
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn k8s(key: impl Into<String>, value: impl Into<String>) -> Self {
        Label::new(Source::K8s, key, value)
    }
    pub fn reserved(name: &str) -> Self {
        Label::new(Source::Reserved, name, "")
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.source, self.key)
        } else {
            write!(f, "{}:{}={}", self.source, self.key, self.value)
        }
    }
}

/// A sorted set of labels: the label set of a security identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<Label>);

impl LabelSet {
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.sort();
        labels.dedup();
        LabelSet(labels)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Labels matching a selector key: same key, and the same source unless the selector's
    /// source is `any` (`Label.HasKey`).
    pub fn get<'a>(&'a self, key: &'a LabelKey) -> impl Iterator<Item = &'a Label> + 'a {
        self.0.iter().filter(move |l| {
            l.key == key.key && (key.source == Source::Any || key.source == l.source)
        })
    }
    pub fn has_reserved(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|l| l.source == Source::Reserved && l.key == name)
    }
    /// The value of a `k8s:` label.
    pub fn k8s_value(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|l| l.source == Source::K8s && l.key == key)
            .map(|l| l.value.as_str())
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Well-known label keys (spec §2.4).
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";
pub const POLICY_CLUSTER: &str = "io.cilium.k8s.policy.cluster";
pub const SERVICE_ACCOUNT: &str = "io.cilium.k8s.policy.serviceaccount";
/// Cilium's default cluster name.
pub const DEFAULT_CLUSTER: &str = "default";
/// `api.LabelPrefixGroupName`: the prefix of a CIDR group's name label.
pub const CIDR_GROUP_NAME_PREFIX: &str = "io.cilium.policy.cidrgroupname";
/// Labels under this prefix are Cilium's own and never copied from objects
/// (`k8sConst.LabelPrefix`, `utils.RemoveCiliumLabels`).
pub const CILIUM_LABEL_PREFIX: &str = "io.cilium.k8s";

/// The label every prefix of the CiliumCIDRGroup `name` carries:
/// `cidrgroup:io.cilium.policy.cidrgroupname/<name>` (`api.LabelForCIDRGroupRef`).
pub fn cidr_group_name_key(name: &str) -> LabelKey {
    LabelKey::new(
        Source::CidrGroup,
        format!("{CIDR_GROUP_NAME_PREFIX}/{name}"),
    )
}

/// The labels a CiliumCIDRGroup gives each of its prefixes in the ipcache, before the world
/// label (`cidrsAndLabelsForCIDRGroup`, `pkg/policy/k8s/cilium_cidr_group.go`): the name
/// label, and for each of the object's labels (Cilium's own removed) `cidrgroup:<k>=<v>`
/// plus the encoded `cidrgroup:<k>+<v>` that `cidrGroupSelector` matches.
pub fn cidr_group_labels(name: &str, object_labels: &BTreeMap<String, String>) -> LabelSet {
    let key = cidr_group_name_key(name);
    let mut out = vec![Label::new(key.source, key.key, "")];
    for (k, v) in object_labels {
        if k.starts_with(CILIUM_LABEL_PREFIX) {
            continue;
        }
        out.push(Label::new(Source::CidrGroup, k.clone(), v.clone()));
        out.push(Label::new(
            Source::CidrGroup,
            format!("{k}{}{v}", crate::selector::CIDR_GROUP_ENCODED_SEP),
            "",
        ));
    }
    LabelSet::new(out)
}

/// Builds a pod's identity labels as Cilium does (`SanitizePodLabels`, spec §2.4), filtered to
/// identity-relevant labels (spec §3.3).
pub fn pod_identity_labels(
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
    service_account: &str,
) -> LabelSet {
    let mut out = Vec::new();
    for (k, v) in pod_labels {
        if !k.starts_with("io.cilium.k8s") {
            out.push(Label::k8s(k.clone(), v.clone()));
        }
    }
    for (k, v) in namespace_labels {
        out.push(Label::k8s(
            format!("{NAMESPACE_LABELS_PREFIX}{k}"),
            v.clone(),
        ));
    }
    out.push(Label::k8s(POD_NAMESPACE, namespace));
    if !service_account.is_empty() {
        out.push(Label::k8s(SERVICE_ACCOUNT, service_account));
    }
    out.push(Label::k8s(POLICY_CLUSTER, DEFAULT_CLUSTER));
    out.retain(|l| is_identity_relevant(&l.key));
    LabelSet::new(out)
}

/// Cilium's default identity-relevant label filter (`pkg/labelsfilter/filter.go`, spec §3.3).
/// Patterns match at the start of the key. A label is kept when no ignore pattern matches, or
/// when the longest matching include is longer than the shortest matching ignore.
pub fn is_identity_relevant(key: &str) -> bool {
    const INCLUDE: &[&str] = &[
        "io.kubernetes.pod.namespace",
        "io.cilium.k8s.namespace.labels",
        "app.kubernetes.io",
        "io.cilium.k8s.policy.cluster",
        "io.cilium.k8s.policy.serviceaccount",
    ];
    let include = INCLUDE
        .iter()
        .filter(|p| key.starts_with(**p))
        .map(|p| p.len())
        .max();
    let ignore = ignore_match_lengths(key).min();
    match (include, ignore) {
        (_, None) => true,
        (Some(inc), Some(ign)) => inc > ign,
        (None, Some(_)) => false,
    }
}

/// Lengths of the ignore patterns matching at the start of `key` (the pattern length as
/// written in Cilium, which is what the filter compares).
fn ignore_match_lengths(key: &str) -> impl Iterator<Item = usize> + '_ {
    // (pattern as written in filter.go, how it matches)
    const IGNORE_PREFIX: &[(&str, &str)] = &[
        ("io\\.kubernetes", "io.kubernetes"),
        ("kubernetes\\.io", "kubernetes.io"),
        (
            "statefulset.kubernetes.io/pod-name",
            "statefulset.kubernetes.io/pod-name",
        ),
        (
            "apps.kubernetes.io/pod-index",
            "apps.kubernetes.io/pod-index",
        ),
        (
            "batch.kubernetes.io/job-completion-index",
            "batch.kubernetes.io/job-completion-index",
        ),
        (
            "batch.kubernetes.io/controller-uid",
            "batch.kubernetes.io/controller-uid",
        ),
        ("k8s\\.io", "k8s.io"),
        ("pod-template-generation", "pod-template-generation"),
        ("pod-template-hash", "pod-template-hash"),
        ("controller-revision-hash", "controller-revision-hash"),
        ("controller-uid", "controller-uid"),
        ("etcd_node", "etcd_node"),
        ("topology\\.kubernetes\\.io", "topology.kubernetes.io"),
    ];
    let fixed = IGNORE_PREFIX
        .iter()
        .filter(move |(_, m)| key.starts_with(m))
        .map(|(p, _)| p.len());
    // `.*beta\.kubernetes\.io` matches any key containing beta.kubernetes.io;
    // `annotation.*` any key starting with "annotation".
    let beta = key
        .contains("beta.kubernetes.io")
        .then_some(".*beta\\.kubernetes\\.io".len());
    let annotation = key
        .starts_with("annotation")
        .then_some("annotation.*".len());
    fixed.chain(beta).chain(annotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec §3.3 examples, from pkg/labelsfilter/filter.go.
    #[test]
    fn labelsfilter_examples() {
        assert!(is_identity_relevant("app"));
        assert!(!is_identity_relevant("io.kubernetes.pod.name"));
        assert!(is_identity_relevant("io.kubernetes.pod.namespace"));
        assert!(!is_identity_relevant("pod-template-hash"));
        assert!(is_identity_relevant(
            "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"
        ));
        assert!(is_identity_relevant("app.kubernetes.io/name"));
        assert!(!is_identity_relevant("kubernetes.io/hostname"));
        assert!(!is_identity_relevant(
            "failure-domain.beta.kubernetes.io/zone"
        ));
    }

    #[test]
    fn selector_key_sources() {
        assert_eq!(LabelKey::parse_selector_key("app").source, Source::Any);
        assert_eq!(LabelKey::parse_selector_key("k8s:app").source, Source::K8s);
        assert_eq!(
            LabelKey::parse_selector_key("$host"),
            LabelKey::new(Source::Reserved, "host")
        );
        assert_eq!(
            LabelKey::parse_selector_key("io.kubernetes.pod.namespace"),
            LabelKey::new(Source::Any, "io.kubernetes.pod.namespace")
        );
    }

    #[test]
    fn pod_labels_follow_sanitize_pod_labels() {
        let ns: BTreeMap<_, _> =
            [("kubernetes.io/metadata.name".to_string(), "x".to_string())].into();
        let pod: BTreeMap<_, _> = [
            ("pod".to_string(), "a".to_string()),
            ("pod-template-hash".to_string(), "abc".to_string()),
            (
                "io.cilium.k8s.policy.cluster".to_string(),
                "evil".to_string(),
            ),
        ]
        .into();
        let set = pod_identity_labels("x", &ns, &pod, "default");
        let s = set.to_string();
        assert_eq!(
            s,
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x \
             k8s:io.cilium.k8s.policy.cluster=default k8s:io.cilium.k8s.policy.serviceaccount=default \
             k8s:io.kubernetes.pod.namespace=x k8s:pod=a"
        );
    }
}
