//! The backends `verdict` can run, by name, as `engine::Backend`s.

use verdict_datapath::emu::{Emulator, ExecMode};
use verdict_datapath::object::Object;
use verdict_datapath::{VERDICT_OBJECT, VERDICT_OBJECT_NAME};
use verdict_sim::conntrack::{ConnPacket, Conntrack, SideVerdict};
use verdict_sim::engine::{
    process_with_conntrack, upstream_with_conntrack, Backend, Change, LastRedirect, OracleBackend,
    World,
};
use verdict_sim::model::DirectionExplanation;
use verdict_sim::verdict::Direction;

use crate::dpbackend::{DatapathBackend, Maker};
use verdict_sim::model::Model;
use verdict_sim::oracle::Flow;
use verdict_sim::verdict::Outcome;

/// Names accepted by `--backend`.
pub const BACKENDS: &[&str] = &["oracle", "model", "rbpf", "rbpf-jit", "kernel"];

/// What `verdict run` and the tests use when no backend is named: every backend that needs no
/// privileges. The JIT is opt-in (it has no bounds checks).
pub const DEFAULT_BACKENDS: &[&str] = &["oracle", "model", "rbpf"];

/// The policy compiler and the model datapath: resolves policy into per-endpoint map state,
/// incrementally, and decides with Cilium's lookup sequence.
#[derive(Default)]
pub struct ModelBackend {
    model: Option<Model>,
    /// The reference conntrack for connections (shared logic with the oracle backend).
    ct: Conntrack,
    last: LastRedirect,
}

fn model_side(d: &DirectionExplanation) -> SideVerdict {
    SideVerdict {
        enforced: d.endpoint.is_some() && d.enforced,
        allowed: d.allowed,
        reason: d.reason,
        match_type: Some(d.match_type),
        proxy_port: d
            .chosen
            .as_ref()
            .map(|(_, _, e)| e.proxy_port)
            .filter(|&p| d.allowed && p != 0),
    }
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
        Change::PodsRelabelled(moved) => m.pods_updated(c, moved.iter().map(|(n, _)| n)),
        Change::PolicyApplied(r) => m.policy_applied(&world.repo, r),
        Change::PolicyDeleted(r) => m.policy_deleted(r),
        Change::CidrGroupChanged(name) => m.cidr_group_changed(c, name),
        Change::Fqdn => m.fqdn_changed(c),
        Change::Clock => {}
        Change::Authenticated(_) => m.set_auth(&c.auth),
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
        let m = self
            .model
            .as_ref()
            .ok_or("model backend used before the initial sync")?;
        let o = m.decide(&world.cluster, flow);
        self.last.note_probe(flow, &o);
        Ok(o)
    }
    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        let m = self
            .model
            .as_ref()
            .ok_or("model backend used before the initial sync")?;
        let e = m.explain(&world.cluster, &pkt.flow());
        let (eg, ing) = (model_side(&e.egress), model_side(&e.ingress));
        let o = process_with_conntrack(&mut self.ct, world, pkt, |dir| match dir {
            Direction::Egress => eg,
            Direction::Ingress => ing,
        })?;
        self.last.note_packet(pkt, &o);
        Ok(o)
    }
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: Direction,
        proxy_port: u16,
    ) -> Result<Vec<verdict_sim::proxy::ProxyRule>, String> {
        let m = self
            .model
            .as_ref()
            .ok_or("model backend used before the initial sync")?;
        m.proxy_rules(&world.cluster, flow, dir, proxy_port)
    }
    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        let m = self
            .model
            .as_ref()
            .ok_or("model backend used before the initial sync")?;
        match std::mem::take(&mut self.last) {
            LastRedirect::None => Err("model: no redirected probe or packet".into()),
            LastRedirect::Probe(flow) => Ok(m.decide_upstream(&world.cluster, &flow)),
            LastRedirect::Packet(pkt, at_proxy) => {
                let e = m.explain(&world.cluster, &pkt.flow());
                upstream_with_conntrack(
                    &mut self.ct,
                    world,
                    &pkt,
                    &at_proxy,
                    model_side(&e.ingress),
                )
            }
        }
    }
}

/// The rbpf backends as their concrete type (tests drive raw frames through them).
pub fn datapath_backend(name: &str) -> Result<DatapathBackend, String> {
    match name {
        "rbpf" => Ok(DatapathBackend::new(
            "rbpf",
            emulator(ExecMode::Interpreter),
        )),
        "rbpf-jit" => Ok(DatapathBackend::new("rbpf-jit", emulator(ExecMode::Jit))),
        other => Err(format!("{other:?} is not an rbpf backend")),
    }
}

pub fn factory(name: &str) -> Result<Box<dyn Backend>, String> {
    match name {
        "oracle" => Ok(Box::new(OracleBackend::default())),
        "model" => Ok(Box::new(ModelBackend::default())),
        "rbpf" => Ok(Box::new(DatapathBackend::new(
            "rbpf",
            emulator(ExecMode::Interpreter),
        ))),
        "rbpf-jit" => Ok(Box::new(DatapathBackend::new(
            "rbpf-jit",
            emulator(ExecMode::Jit),
        ))),
        "kernel" => kernel_backend(),
        other => Err(format!(
            "unknown backend {other:?}: available backends are {}",
            BACKENDS.join(", ")
        )),
    }
}

/// A maker of emulator datapaths (one per node).
pub fn emulator(mode: ExecMode) -> Maker {
    Box::new(move || {
        let obj = Object::parse(VERDICT_OBJECT_NAME, VERDICT_OBJECT).map_err(|e| e.to_string())?;
        let emu = Emulator::new(&obj, mode).map_err(|e| e.to_string())?;
        Ok(Box::new(emu) as Box<dyn verdict_datapath::backend::Datapath>)
    })
}

#[cfg(feature = "kernel")]
fn kernel_backend() -> Result<Box<dyn Backend>, String> {
    use verdict_datapath::kernel::{kernel_available, KernelDatapath};
    kernel_available().map_err(|why| format!("kernel backend unavailable: {why}"))?;
    let make: Maker = Box::new(|| {
        KernelDatapath::load_bytes(VERDICT_OBJECT_NAME, VERDICT_OBJECT)
            .map(|k| Box::new(k) as Box<dyn verdict_datapath::backend::Datapath>)
            .map_err(|e| e.to_string())
    });
    Ok(Box::new(DatapathBackend::new("kernel", make)))
}

#[cfg(not(feature = "kernel"))]
fn kernel_backend() -> Result<Box<dyn Backend>, String> {
    Err("the kernel backend is not built in: rebuild with `--features kernel` (needs libelf-dev and root to run)".into())
}

/// Checks a `--backend` list once, before anything runs: every name known, none empty, none
/// twice, and each one constructible here (the kernel backend says why it is unavailable).
/// Returns the list as given, in order.
pub fn validate(list: &[String]) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Err("--backend: the list is empty".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in list {
        if n.is_empty() {
            return Err("--backend: empty name in the list (a stray comma?)".into());
        }
        if !BACKENDS.contains(&n.as_str()) {
            return Err(format!(
                "--backend: unknown backend {:?}: available backends are {}",
                verdict_sim::report::clip(n),
                BACKENDS.join(", ")
            ));
        }
        if !seen.insert(n.as_str()) {
            return Err(format!("--backend: {n:?} is named twice"));
        }
    }
    for n in list {
        factory(n).map_err(|e| format!("--backend: {e}"))?;
    }
    Ok(list.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_lists_are_checked_once_up_front() {
        let l = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(validate(&l("oracle,model")).unwrap(), l("oracle,model"));
        assert!(validate(&l("oracle,oracle"))
            .unwrap_err()
            .contains("named twice"));
        assert!(validate(&l("oracle,")).unwrap_err().contains("empty name"));
        let long = "x".repeat(5000);
        let e = validate(&[long]).unwrap_err();
        assert!(e.contains("unknown backend") && e.len() < 400, "{e}");
    }
}
