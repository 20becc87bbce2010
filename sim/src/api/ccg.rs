//! CiliumCIDRGroup (cilium.io/v2, and the deprecated cilium.io/v2alpha1 that Cilium main still
//! serves): a named, labelled list of external CIDRs that `fromCIDRSet`/`toCIDRSet` entries
//! select with `cidrGroupRef` (by name) or `cidrGroupSelector` (by label).
//!
//! Validated as the CRD schema does (`pkg/k8s/apis/cilium.io/client/crds/v2/
//! ciliumcidrgroups.yaml`): cluster-scoped, `spec.externalCIDRs` required (it may be empty),
//! each item `format: cidr` (an address with a prefix length; host bits are masked, as Go's
//! `net.ParseCIDR` does).

use super::de::validated_map;
use super::meta::ObjectMeta;
use super::net::{Cidr, PrefixCidr};
use serde::Deserialize;

/// A CiliumCIDRGroup object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiliumCidrGroup {
    pub metadata: ObjectMeta,
    pub spec: CidrGroupSpec,
}

/// `spec` of a CiliumCIDRGroup (`CiliumCIDRGroupSpec`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CidrGroupSpec {
    /// `externalCIDRs`, in the order written.
    pub external_cidrs: Vec<Cidr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCidrGroupSpec {
    #[serde(rename = "externalCIDRs")]
    external_cidrs: Option<Vec<PrefixCidr>>,
}

impl TryFrom<RawCidrGroupSpec> for CidrGroupSpec {
    type Error = String;
    fn try_from(r: RawCidrGroupSpec) -> Result<Self, String> {
        // `+kubebuilder:validation:Required`: the key must be present (`null` is refused
        // too, as the structural schema has no `nullable`).
        let Some(cidrs) = r.external_cidrs else {
            return Err("spec.externalCIDRs: Required value".into());
        };
        Ok(CidrGroupSpec {
            external_cidrs: cidrs.into_iter().map(|p| p.0).collect(),
        })
    }
}
validated_map!(
    CidrGroupSpec,
    RawCidrGroupSpec,
    "a CiliumCIDRGroup spec (a mapping with externalCIDRs)"
);
