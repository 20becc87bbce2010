//! The backends `verdict` can run, by name, as `engine::Backend`s.

use verdict_sim::engine::{Backend, Change, OracleBackend, World};
use verdict_sim::model::Model;
use verdict_sim::oracle::Flow;
use verdict_sim::verdict::Outcome;

/// Names accepted by `--backend`.
pub const BACKENDS: &[&str] = &["oracle", "model"];

/// What `verdict run` and the tests use when no backend is named.
pub const DEFAULT_BACKENDS: &[&str] = &["oracle", "model"];

/// The policy compiler and the model datapath: resolves policy into per-endpoint map state,
/// incrementally, and decides with Cilium's lookup sequence.
#[derive(Default)]
pub struct ModelBackend {
    model: Option<Model>,
}

impl ModelBackend {
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }
}

/// Applies one world change to a model (shared by every backend built on the model).
pub fn update_model(model: &mut Option<Model>, world: &World, change: &Change<'_>) {
    let c = &world.cluster;
    let Some(m) = model.as_mut() else {
        *model = Some(Model::new(c, &world.repo));
        return;
    };
    match change {
        Change::Initial => *model = Some(Model::new(c, &world.repo)),
        Change::Identities(ch) => m.identities_changed(c, ch),
        Change::PodAdded(name) => m.pod_added(c, name),
        Change::PodRemoved(pod) => m.pod_removed(c, &pod.name),
        Change::PodsRelabelled(moved) => {
            for (name, _) in moved.iter() {
                m.pod_updated(c, name);
            }
        }
        Change::PolicyApplied(r) => m.policy_applied(&world.repo, r),
        Change::PolicyDeleted(r) => m.policy_deleted(r),
    }
}

impl Backend for ModelBackend {
    fn name(&self) -> &str {
        "model"
    }
    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        update_model(&mut self.model, world, change);
        Ok(())
    }
    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        let m = self.model.as_ref().ok_or("model backend used before the initial sync")?;
        Ok(m.decide(&world.cluster, flow))
    }
}

pub fn factory(name: &str) -> Result<Box<dyn Backend>, String> {
    match name {
        "oracle" => Ok(Box::new(OracleBackend)),
        "model" => Ok(Box::new(ModelBackend::default())),
        other => Err(format!(
            "unknown backend {other:?}: available backends are {}",
            BACKENDS.join(", ")
        )),
    }
}
