//! Internal endpoint selectors: the sanitized, namespaced form of a label selector that both
//! the oracle and the policy compiler evaluate (`pkg/policy/types/requirements.go`, spec §1.4).
//!
//! A selector is a conjunction of requirements; zero requirements select every identity.
//! CIDR selectors (spec §3.4) are requirements too: `cidr:P` ("has a CIDR label inside P")
//! and, for `except`, "has no CIDR label inside E".

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::labels::{Label, LabelKey, LabelSet, Source};

/// A selector operator (`In`, `NotIn`, `Exists`, `DoesNotExist`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    Label {
        key: LabelKey,
        op: Op,
    },
    /// The identity carries a `cidr:` label for a prefix contained in this one.
    Cidr(IpNet),
    /// The identity carries no `cidr:` label for a prefix contained in this one (`except`).
    NotCidr(IpNet),
    /// A `cidrGroupSelector` requirement, matched against the key+value encoded labels a
    /// CIDR group gives its prefixes (`matchesEncodedRequirement`,
    /// `pkg/policy/types/requirements.go`): `In`/`NotIn` ask whether a label
    /// `cidrgroup:<key>+<value>` exists for one of the values, so that two groups with
    /// different values for one key both match; `Exists`/`DoesNotExist` look at the plain key.
    Encoded {
        key: LabelKey,
        op: Op,
    },
}

/// The separator of key+value encoded CIDR-group labels (`labels.CIDRGroupEncodedSep`; safe,
/// as Kubernetes label keys and values cannot contain `+`).
pub const CIDR_GROUP_ENCODED_SEP: char = '+';

/// What a selector is matched against: an identity's labels, and for the oracle the address
/// of a peer outside the cluster (which Cilium would give a CIDR identity).
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub labels: &'a LabelSet,
    /// `Some(ip)` when the peer is outside the cluster and CIDR requirements should be decided
    /// from its address directly (the oracle's view); `None` to decide them from `cidr:` labels
    /// (the compiler's view of CIDR identities).
    pub world_ip: Option<IpAddr>,
}

impl Requirement {
    pub fn label(key: LabelKey, op: Op) -> Self {
        let op = match op {
            Op::In(mut v) => {
                v.sort();
                v.dedup();
                Op::In(v)
            }
            Op::NotIn(mut v) => {
                v.sort();
                v.dedup();
                Op::NotIn(v)
            }
            o => o,
        };
        Requirement::Label { key, op }
    }

    pub fn equals(key: LabelKey, value: impl Into<String>) -> Self {
        Requirement::label(key, Op::In(vec![value.into()]))
    }

    pub fn matches(&self, t: Target<'_>) -> bool {
        match self {
            Requirement::Label { key, op } => {
                let mut values = t.labels.get(key).map(|l| l.value.as_str());
                match op {
                    Op::In(set) => values.any(|v| set.iter().any(|s| s == v)),
                    Op::NotIn(set) => !values.any(|v| set.iter().any(|s| s == v)),
                    Op::Exists => values.next().is_some(),
                    Op::DoesNotExist => values.next().is_none(),
                }
            }
            Requirement::Cidr(net) => has_cidr_within(t, net),
            Requirement::NotCidr(net) => !has_cidr_within(t, net),
            Requirement::Encoded { key, op } => {
                let encoded_exists = |values: &[String]| {
                    values.iter().any(|v| {
                        let k = LabelKey::new(
                            key.source,
                            format!("{}{CIDR_GROUP_ENCODED_SEP}{v}", key.key),
                        );
                        let found = t.labels.get(&k).next().is_some();
                        found
                    })
                };
                match op {
                    Op::In(values) => encoded_exists(values),
                    Op::NotIn(values) => !encoded_exists(values),
                    Op::Exists => t.labels.get(key).next().is_some(),
                    Op::DoesNotExist => t.labels.get(key).next().is_none(),
                }
            }
        }
    }
}

fn has_cidr_within(t: Target<'_>, net: &IpNet) -> bool {
    match t.world_ip {
        Some(ip) => net.contains(&ip),
        None => t
            .labels
            .iter()
            .filter(|l| l.source == Source::Cidr)
            .filter_map(|l| parse_cidr_label(&l.key))
            .any(|p| net.contains(&p)),
    }
}

/// Parses a `cidr:` label key; IPv6 keys spell `:` as `-` (spec §1.4).
pub fn parse_cidr_label(key: &str) -> Option<IpNet> {
    if key.contains('.') {
        key.parse().ok()
    } else {
        key.replace('-', ":").parse().ok()
    }
}

/// The `cidr:` label of a prefix, with IPv6 `:` written as `-`.
pub fn cidr_label(net: &IpNet) -> Label {
    let key = match net {
        IpNet::V4(n) => n.to_string(),
        IpNet::V6(n) => n.to_string().replace(':', "-"),
    };
    Label::new(Source::Cidr, key, "")
}

/// A conjunction of requirements, kept sorted so equal selectors compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

impl Selector {
    /// The wildcard selector `{}`: every identity, reserved ones included.
    pub fn wildcard() -> Self {
        Selector::default()
    }
    pub fn new(mut reqs: Vec<Requirement>) -> Self {
        reqs.sort();
        reqs.dedup();
        Selector { reqs }
    }
    pub fn is_wildcard(&self) -> bool {
        self.reqs.is_empty()
    }
    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }
    /// Adds a requirement (AND).
    pub fn with(mut self, r: Requirement) -> Self {
        self.reqs.push(r);
        Selector::new(self.reqs)
    }
    /// Replaces every requirement on exactly this key with `key=value` (Cilium's `AddMatch`).
    pub fn with_match(mut self, key: LabelKey, value: &str) -> Self {
        self.reqs
            .retain(|r| !matches!(r, Requirement::Label { key: k, .. } if *k == key));
        self.with(Requirement::equals(key, value))
    }
    /// Whether any label requirement names this key (any source listed counts).
    pub fn has_key(&self, pred: impl Fn(&LabelKey) -> bool) -> bool {
        self.reqs
            .iter()
            .any(|r| matches!(r, Requirement::Label { key, .. } if pred(key)))
    }
    pub fn matches(&self, t: Target<'_>) -> bool {
        self.reqs.iter().all(|r| r.matches(t))
    }
    pub fn matches_labels(&self, labels: &LabelSet) -> bool {
        self.matches(Target {
            labels,
            world_ip: None,
        })
    }
    /// Whether the selector names a CIDR (it then only ever matches CIDR/world identities).
    pub fn is_cidr(&self) -> bool {
        self.reqs.iter().any(|r| matches!(r, Requirement::Cidr(_)))
    }
    /// Every prefix the selector names (CIDRs and excepts), for the ipcache.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.reqs.iter().filter_map(|r| match r {
            Requirement::Cidr(n) | Requirement::NotCidr(n) => Some(*n),
            _ => None,
        })
    }
    /// The `matchName`/`matchPattern` of a `toFQDNs` selector (`translate::fqdn_selector`:
    /// one requirement, `fqdn:<key>` exists); `None` for any other selector.
    pub fn fqdn_key(&self) -> Option<&str> {
        match self.reqs.as_slice() {
            [Requirement::Label {
                key,
                op: Op::Exists,
            }] if key.source == Source::Fqdn => Some(key.key.as_str()),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::In(v) if v.len() == 1 => write!(f, "={}", v[0]),
            Op::In(v) => write!(f, " in ({})", v.join(",")),
            Op::NotIn(v) => write!(f, " notin ({})", v.join(",")),
            Op::Exists => Ok(()),
            Op::DoesNotExist => f.write_str(" !exists"),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Label { key, op } => {
                if matches!(op, Op::DoesNotExist) {
                    write!(f, "!{key}")
                } else {
                    write!(f, "{key}{op}")
                }
            }
            Requirement::Encoded { key, op } => {
                if matches!(op, Op::DoesNotExist) {
                    write!(f, "!{key}")
                } else {
                    write!(f, "{key}{op}")
                }
            }
            Requirement::Cidr(n) => write!(f, "cidr:{n}"),
            Requirement::NotCidr(n) => write!(f, "!cidr:{n}"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reqs.is_empty() {
            return f.write_str("{}");
        }
        f.write_str("{")?;
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(labels: &[(&str, &str, &str)]) -> LabelSet {
        LabelSet::new(
            labels
                .iter()
                .map(|(s, k, v)| Label::new(Source::parse(s).unwrap(), *k, *v))
                .collect(),
        )
    }

    // spec §1.4: an `any:` selector key matches a label of any source with the same key;
    // other sources must be equal.
    #[test]
    fn source_matching_follows_label_has_key() {
        let l = set(&[("k8s", "app", "x")]);
        assert!(Selector::new(vec![Requirement::equals(
            LabelKey::new(Source::Any, "app"),
            "x"
        )])
        .matches_labels(&l));
        assert!(Selector::new(vec![Requirement::equals(
            LabelKey::new(Source::K8s, "app"),
            "x"
        )])
        .matches_labels(&l));
        assert!(!Selector::new(vec![Requirement::equals(
            LabelKey::new(Source::Unspec, "app"),
            "x"
        )])
        .matches_labels(&l));
    }

    // spec §1.4 / §7 #25: NotIn matches identities lacking the key.
    #[test]
    fn notin_matches_absent_key() {
        let world = set(&[("reserved", "world", "")]);
        let s = Selector::new(vec![Requirement::label(
            LabelKey::new(Source::Any, "io.kubernetes.pod.namespace"),
            Op::NotIn(vec!["kube-system".into()]),
        )]);
        assert!(s.matches_labels(&world));
    }

    // spec §1.4: `cidr:10.0.0.0/8` matches an identity labelled `cidr:10.1.0.0/16`.
    #[test]
    fn cidr_labels_match_by_containment() {
        let id = set(&[("cidr", "10.1.0.0/16", ""), ("reserved", "world", "")]);
        let s = Selector::new(vec![Requirement::Cidr("10.0.0.0/8".parse().unwrap())]);
        assert!(s.matches_labels(&id));
        let s = Selector::new(vec![Requirement::Cidr("10.2.0.0/16".parse().unwrap())]);
        assert!(!s.matches_labels(&id));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(parse_cidr_label(&cidr_label(&v6).key), Some(v6));
    }

    proptest! {
        // Label-view and address-view CIDR decisions agree: an address x inside the longest
        // policy prefix L containing it is in P exactly when L ⊆ P (prefixes are nested).
        #[test]
        fn cidr_address_view_equals_label_view(a in any::<u32>(), p1 in 0u8..=32, p2 in 0u8..=32, b in any::<u32>()) {
            let x = std::net::Ipv4Addr::from(a);
            let pa: IpNet = ipnet::Ipv4Net::new(x, p1).unwrap().trunc().into();
            let pb: IpNet = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(b), p2).unwrap().trunc().into();
            // The identity of x: the longest of the policy prefixes that contain it.
            let longest = [pa, pb].into_iter().filter(|n| n.contains(&IpAddr::V4(x))).max_by_key(|n| n.prefix_len());
            let labels = LabelSet::new(longest.iter().map(cidr_label).collect());
            for sel in [pa, pb] {
                let by_labels = Selector::new(vec![Requirement::Cidr(sel)]).matches_labels(&labels);
                let by_addr = Selector::new(vec![Requirement::Cidr(sel)]).matches(Target { labels: &LabelSet::default(), world_ip: Some(IpAddr::V4(x)) });
                prop_assert_eq!(by_labels, by_addr);
            }
        }

        // In/NotIn and Exists/DoesNotExist are complements on any label set.
        #[test]
        fn operators_are_complements(vals in proptest::collection::vec("[a-c]", 0..3), labels in proptest::collection::vec(("[a-c]", "[a-c]"), 0..4)) {
            let ls = LabelSet::new(labels.iter().map(|(k, v)| Label::k8s(k.clone(), v.clone())).collect());
            let key = LabelKey::new(Source::Any, "a");
            let r_in = Requirement::label(key.clone(), Op::In(vals.clone()));
            let r_notin = Requirement::label(key.clone(), Op::NotIn(vals));
            let t = Target { labels: &ls, world_ip: None };
            prop_assert_ne!(r_in.matches(t), r_notin.matches(t));
            prop_assert_ne!(Requirement::label(key.clone(), Op::Exists).matches(t), Requirement::label(key, Op::DoesNotExist).matches(t));
            prop_assert!(Selector::wildcard().matches(t));
        }
    }
}
