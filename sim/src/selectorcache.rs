//! The selector cache: every distinct peer selector in force → the identities it selects
//! (Cilium's `SelectorCache`, `pkg/policy/selectorcache.go`).
//!
//! It owns the identity universe the policy sees (reserved identities 1–10, cluster
//! identities, node-local CIDR identities) and keeps each selector's selections up to date
//! incrementally: an identity appearing or vanishing is matched against every selector once
//! (`UpdateIdentities`), and a selector added is matched against every identity once
//! (`AddIdentitySelector`). Selectors are reference-counted by the policy entries using them.
//! Nothing is ever recomputed for the whole world on a single change.

use std::collections::{BTreeMap, BTreeSet};

use crate::identity::Identity;
use crate::labels::LabelSet;
use crate::selector::Selector;

#[derive(Clone, Debug, Default)]
struct CachedSelector {
    refs: usize,
    selections: BTreeSet<Identity>,
}

/// See the module doc.
#[derive(Clone, Debug, Default)]
pub struct SelectorCache {
    identities: BTreeMap<Identity, LabelSet>,
    selectors: BTreeMap<Selector, CachedSelector>,
}

impl SelectorCache {
    pub fn new() -> Self {
        SelectorCache::default()
    }

    /// Takes a reference on `sel`; returns true when the selector is new (its selections were
    /// just computed).
    pub fn add_selector(&mut self, sel: &Selector) -> bool {
        if let Some(c) = self.selectors.get_mut(sel) {
            c.refs += 1;
            return false;
        }
        let selections = self
            .identities
            .iter()
            .filter(|(_, labels)| sel.matches_labels(labels))
            .map(|(id, _)| *id)
            .collect();
        self.selectors.insert(
            sel.clone(),
            CachedSelector {
                refs: 1,
                selections,
            },
        );
        true
    }

    /// Drops a reference; returns true when the selector is gone.
    pub fn remove_selector(&mut self, sel: &Selector) -> bool {
        let Some(c) = self.selectors.get_mut(sel) else {
            return false;
        };
        c.refs -= 1;
        if c.refs > 0 {
            return false;
        }
        self.selectors.remove(sel);
        true
    }

    /// Adds (or relabels) an identity; returns the selectors whose selections changed.
    pub fn add_identity(&mut self, id: Identity, labels: &LabelSet) -> Vec<Selector> {
        if self.identities.get(&id) == Some(labels) {
            return Vec::new();
        }
        self.identities.insert(id, labels.clone());
        let mut changed = Vec::new();
        for (sel, c) in self.selectors.iter_mut() {
            let selects = sel.matches_labels(labels);
            let had = c.selections.contains(&id);
            if selects && !had {
                c.selections.insert(id);
                changed.push(sel.clone());
            } else if !selects && had {
                c.selections.remove(&id);
                changed.push(sel.clone());
            }
        }
        changed
    }

    /// Removes an identity; returns the selectors whose selections changed.
    pub fn remove_identity(&mut self, id: Identity) -> Vec<Selector> {
        if self.identities.remove(&id).is_none() {
            return Vec::new();
        }
        let mut changed = Vec::new();
        for (sel, c) in self.selectors.iter_mut() {
            if c.selections.remove(&id) {
                changed.push(sel.clone());
            }
        }
        changed
    }

    /// The identities `sel` selects (`None` when the selector is not in the cache).
    pub fn selections(&self, sel: &Selector) -> Option<&BTreeSet<Identity>> {
        self.selectors.get(sel).map(|c| &c.selections)
    }

    pub fn labels(&self, id: Identity) -> Option<&LabelSet> {
        self.identities.get(&id)
    }

    pub fn knows(&self, id: Identity) -> bool {
        self.identities.contains_key(&id)
    }

    /// Every known identity, in numeric order.
    pub fn identities(&self) -> impl Iterator<Item = (Identity, &LabelSet)> {
        self.identities.iter().map(|(id, l)| (*id, l))
    }

    /// Every selector in force with its reference count and selections.
    pub fn selectors(&self) -> impl Iterator<Item = (&Selector, usize, &BTreeSet<Identity>)> {
        self.selectors
            .iter()
            .map(|(s, c)| (s, c.refs, &c.selections))
    }

    pub fn len(&self) -> usize {
        self.selectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{Label, LabelKey, Source};
    use crate::selector::Requirement;

    fn app(v: &str) -> Selector {
        Selector::new(vec![Requirement::equals(
            LabelKey::new(Source::Any, "app"),
            v,
        )])
    }
    fn labels(v: &str) -> LabelSet {
        LabelSet::new(vec![Label::k8s("app", v)])
    }

    #[test]
    fn selections_follow_identities_and_selectors_incrementally() {
        let mut sc = SelectorCache::new();
        for id in 1..=10 {
            let id = Identity(id);
            sc.add_identity(id, &id.reserved_labels().unwrap());
        }
        sc.add_identity(Identity(256), &labels("a"));
        assert!(sc.add_selector(&app("a")));
        assert!(!sc.add_selector(&app("a")));
        assert!(sc.add_selector(&Selector::wildcard()));
        assert_eq!(sc.selections(&app("a")).unwrap().len(), 1);
        assert_eq!(sc.selections(&Selector::wildcard()).unwrap().len(), 11);
        // A new identity changes the selectors that select it.
        let changed = sc.add_identity(Identity(257), &labels("a"));
        assert_eq!(changed, vec![Selector::wildcard(), app("a")]);
        let changed = sc.add_identity(Identity(258), &labels("b"));
        assert_eq!(changed, vec![Selector::wildcard()]);
        let changed = sc.remove_identity(Identity(256));
        assert_eq!(changed.len(), 2);
        assert_eq!(
            sc.selections(&app("a"))
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![Identity(257)]
        );
        // Reference counts.
        assert!(!sc.remove_selector(&app("a")));
        assert!(sc.remove_selector(&app("a")));
        assert!(sc.selections(&app("a")).is_none());
    }

    // spec §3.5: the world entity selects world and CIDR identities (they carry the world label).
    #[test]
    fn world_selector_selects_cidr_identities() {
        let mut sc = SelectorCache::new();
        let world = Selector::new(vec![Requirement::equals(
            LabelKey::new(Source::Reserved, "world"),
            "",
        )]);
        sc.add_selector(&world);
        sc.add_identity(Identity::WORLD, &Identity::WORLD.reserved_labels().unwrap());
        let cidr = crate::ipcache::cidr_identity_labels(&"8.8.8.8/32".parse().unwrap());
        sc.add_identity(Identity((1 << 24) | 1), &cidr);
        assert_eq!(sc.selections(&world).unwrap().len(), 2);
    }
}
