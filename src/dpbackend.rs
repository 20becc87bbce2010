//! Backends that run the real BPF programs: `rbpf` (the emulator's bounds-checked
//! interpreter), `rbpf-jit` (its x86 JIT) and `kernel` (BPF_PROG_TEST_RUN, with the `kernel`
//! feature). All share this code: the model resolves policy, the control-plane map writer puts
//! each node's view into that node's datapath instance, and every probe becomes a real packet
//! that runs through the source pod's egress program on the source node and then the
//! destination pod's ingress program on the destination node.
//!
//! The control plane is incremental: the backend's model keeps a change journal
//! (`Model::enable_journal`), and after each change every node gets a [`NodeDelta`] of just the
//! entries the journal names. A node's first write, and the first after the model is rebuilt
//! (`Change::Initial`), is its whole view ([`NodeMaps::from_model`]).
//!
//! Each node also owns a pending-update queue (the `propagation:` extension,
//! `docs/propagation.md`): a control-plane change computes every node's update at once,
//! but a node whose update is not yet due keeps deciding with the maps it has; queued updates
//! are written, in order, once virtual time reaches them (on `advance` and before every probe
//! or packet).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use verdict_datapath::abi::{self, Pod as _, TC_ACT_OK};
use verdict_datapath::backend::Datapath;
use verdict_datapath::control::{MapWriter, NodeDelta, NodeMaps, WriteStats};
use verdict_datapath::events::{self, Event};
use verdict_datapath::packet::{Packet, L4};
use verdict_sim::cluster::{Peer, PodName, Protocol};
use verdict_sim::conntrack::ConnPacket;
use verdict_sim::engine::{Backend, Change, FlowRecord, World};
use verdict_sim::model::Model;
use verdict_sim::oracle::Flow;
use verdict_sim::verdict::{Direction, DropReason, MatchType, Outcome, Redirects};

use crate::backends::update_model;

/// Creates one datapath instance (one per node).
pub type Maker = Box<dyn Fn() -> Result<Box<dyn Datapath>, String>>;

/// One decoded event with where it happened.
#[derive(Clone, Debug)]
pub struct FlowEvent {
    pub node: String,
    pub event: Event,
}

/// One raw ring-buffer record as the program emitted it (kept for byte-for-byte comparison
/// between datapaths by `verdict diff`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    pub node: String,
    pub program: String,
    pub bytes: Vec<u8>,
}

/// One control-plane update of one node's maps.
enum Update {
    /// The node's whole view: its first write, or after the model was rebuilt.
    Full(NodeMaps),
    /// The entries one change touched, on top of the previous update.
    Delta(NodeDelta),
}

impl Update {
    /// `later` applied after `self`, as one update: due updates are written together, so a
    /// key two of them touch is written once, with its newest value (as writing only the
    /// newest whole view did).
    fn then(self, later: Update) -> Update {
        match (self, later) {
            (_, Update::Full(m)) => Update::Full(m),
            (Update::Full(mut m), Update::Delta(d)) => {
                m.patch(&d);
                Update::Full(m)
            }
            (Update::Delta(mut a), Update::Delta(b)) => {
                a.merge(b);
                Update::Delta(a)
            }
        }
    }
}

struct Node {
    dp: Box<dyn Datapath>,
    writer: MapWriter,
    /// Updates computed by the control plane but not yet due on this node:
    /// `(due_ns, update)`, oldest first (due times never decrease).
    pending: VecDeque<(u64, Update)>,
}

impl Node {
    /// Writes one update, then the clock.
    fn write(&mut self, update: Update, clock_ns: u64) -> Result<WriteStats, String> {
        let mut stats = match update {
            Update::Full(mut m) => {
                m.clock_ns = clock_ns;
                return self
                    .writer
                    .apply(self.dp.as_mut(), m)
                    .map_err(|e| format!("writing maps: {e}"));
            }
            Update::Delta(d) => self
                .writer
                .apply_delta(self.dp.as_mut(), &d)
                .map_err(|e| format!("writing maps: {e}"))?,
        };
        stats += self
            .writer
            .set_clock(self.dp.as_mut(), clock_ns)
            .map_err(|e| format!("writing the clock: {e}"))?;
        Ok(stats)
    }
}

pub struct DatapathBackend {
    name: String,
    make: Maker,
    model: Option<Model>,
    nodes: BTreeMap<String, Node>,
    /// Source ports (and ICMP ids) of probes: each probe is a new connection.
    next_port: u16,
    flows: Vec<Observed>,
    /// The last probe's addresses and source port, for the proxies' access-log records.
    last_probe: Option<(IpAddr, IpAddr, u16)>,
    writes: WriteStats,
    /// Raw records since the last `take_raw_records`, when kept (off by default, so runs
    /// that never look at them do not accumulate them).
    raw: Option<Vec<RawRecord>>,
    /// The last probe or packet, when the source's egress proxy holds it.
    upstream: Option<Upstream>,
}

const FIRST_PORT: u16 = 33000;
/// Probes stay below the connections' ports (`engine::CONN_FIRST_PORT`).
const LAST_PORT: u16 = verdict_sim::engine::CONN_FIRST_PORT - 1;

impl DatapathBackend {
    pub fn new(name: &str, make: Maker) -> Self {
        DatapathBackend {
            name: name.to_string(),
            make,
            model: None,
            nodes: BTreeMap::new(),
            next_port: FIRST_PORT,
            flows: Vec::new(),
            last_probe: None,
            writes: WriteStats::default(),
            raw: None,
            upstream: None,
        }
    }

    /// Keeps every raw ring-buffer record from now on, for [`Self::take_raw_records`].
    pub fn keep_raw_records(&mut self) {
        self.raw.get_or_insert_with(Vec::new);
    }

    /// Raw records kept since the last call, in emission order.
    pub fn take_raw_records(&mut self) -> Vec<RawRecord> {
        self.raw.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Each node's datapath instance, by node name.
    pub fn datapaths(&self) -> impl Iterator<Item = (&str, &dyn Datapath)> {
        self.nodes
            .iter()
            .map(|(n, node)| (n.as_str(), node.dp.as_ref()))
    }

    /// One node's datapath instance (tests use it to plant a difference).
    pub fn datapath_mut(&mut self, node: &str) -> Option<&mut (dyn Datapath + 'static)> {
        self.nodes.get_mut(node).map(|n| n.dp.as_mut())
    }

    /// Sets the virtual clock on every node through the map writer (so the writer's view
    /// stays true); a trace replay advances it with packet timestamps.
    pub fn set_clock(&mut self, clock_ns: u64) -> Result<(), String> {
        for (name, n) in self.nodes.iter_mut() {
            let stats = n
                .writer
                .set_clock(n.dp.as_mut(), clock_ns)
                .map_err(|e| format!("node {name}: writing the clock: {e}"))?;
            self.writes += stats;
        }
        Ok(())
    }

    /// What the map writer of `node` has written (tests compare it with the model), and how
    /// many updates the node has queued.
    pub fn written(&self, node: &str) -> Option<(&NodeMaps, usize)> {
        self.nodes
            .get(node)
            .map(|n| (n.writer.written(), n.pending.len()))
    }

    /// Nodes with an update pending, with when the last one is due.
    pub fn pending_until(&self) -> BTreeMap<String, u64> {
        self.nodes
            .iter()
            .filter_map(|(n, node)| node.pending.back().map(|(t, _)| (n.clone(), *t)))
            .collect()
    }

    /// Writes every queued update that is due at `clock_ns`, in order, as one (see
    /// [`Update::then`]), and the clock.
    fn flush(&mut self, clock_ns: u64) -> Result<(), String> {
        for (name, n) in self.nodes.iter_mut() {
            let mut due: Option<Update> = None;
            while n.pending.front().is_some_and(|(t, _)| *t <= clock_ns) {
                if let Some((_, u)) = n.pending.pop_front() {
                    due = Some(match due {
                        Some(d) => d.then(u),
                        None => u,
                    });
                }
            }
            let stats = match due {
                Some(u) => n.write(u, clock_ns),
                None => n
                    .writer
                    .set_clock(n.dp.as_mut(), clock_ns)
                    .map_err(|e| format!("writing the clock: {e}")),
            }
            .map_err(|e| format!("node {name}: {e}"))?;
            self.writes += stats;
        }
        Ok(())
    }

    /// Drops the flow events gathered so far without rendering them (runs that never look
    /// at flows, such as `verdict churn`).
    pub fn clear_flows(&mut self) {
        self.flows.clear();
    }

    /// Map writes issued so far, all nodes.
    pub fn writes(&self) -> WriteStats {
        self.writes
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    fn port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p >= LAST_PORT { FIRST_PORT } else { p + 1 };
        p
    }

    /// Computes every node's update from the model and writes it, or queues it on nodes
    /// where `due` says the change arrives later.
    fn write_maps(
        &mut self,
        world: &World,
        due: Option<&BTreeMap<String, u64>>,
    ) -> Result<(), String> {
        let model = self.model.as_mut().ok_or("no model")?;
        // A model without a journal was just built (first sync or `Change::Initial`): every
        // node gets its whole view, and the journal records from here on.
        let rebuilt = !model.journal_enabled();
        model.enable_journal();
        let journal = model.take_journal();
        let model = &*model;
        for n in &world.cluster.nodes {
            let new_node = !self.nodes.contains_key(&n.name);
            if new_node {
                let dp = (self.make)()?;
                self.nodes.insert(
                    n.name.clone(),
                    Node {
                        dp,
                        writer: MapWriter::new(),
                        pending: VecDeque::new(),
                    },
                );
            }
            let node = self.nodes.get_mut(&n.name).ok_or("node vanished")?;
            let update = if rebuilt || new_node {
                Update::Full(NodeMaps::from_model(model, &n.name, world.clock_ns))
            } else {
                Update::Delta(NodeDelta::from_journal(model, &n.name, &journal))
            };
            let when = due
                .and_then(|d| d.get(&n.name).copied())
                .unwrap_or(world.clock_ns);
            if when <= world.clock_ns && node.pending.is_empty() {
                let stats = node
                    .write(update, world.clock_ns)
                    .map_err(|e| format!("node {}: {e}", n.name))?;
                self.writes += stats;
            } else {
                node.pending.push_back((when, update));
            }
        }
        self.flush(world.clock_ns)
    }

    /// Runs one program on one node; returns whether the packet passed and the events.
    fn run(
        &mut self,
        node: &str,
        program: &str,
        frame: &[u8],
    ) -> Result<(bool, Vec<Event>), String> {
        let n = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| format!("no datapath for node {node}"))?;
        let out =
            n.dp.run(program, frame)
                .map_err(|e| format!("node {node}: {e}"))?;
        let mut evs = Vec::new();
        if let Some(raw) = self.raw.as_mut() {
            raw.extend(out.events.iter().map(|b| RawRecord {
                node: node.to_string(),
                program: program.to_string(),
                bytes: b.clone(),
            }));
        }
        for rec in &out.events {
            let ev = Event::decode(rec).map_err(|e| format!("node {node}: {program}: {e}"))?;
            self.flows.push(Observed::Datapath(FlowEvent {
                node: node.to_string(),
                event: ev,
            }));
            evs.push(ev);
        }
        Ok((out.retval == TC_ACT_OK, evs))
    }

    /// The probe's frame, and the source port (ICMP echo: identifier) it uses.
    fn packet(&mut self, src: IpAddr, dst: IpAddr, flow: &Flow) -> Result<(Vec<u8>, u16), String> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(format!("probe {src} -> {dst} mixes IPv4 and IPv6"));
        }
        let port = self.port();
        let p = match flow.protocol {
            Protocol::Tcp => Packet::tcp(
                src,
                dst,
                port,
                flow.dport,
                verdict_datapath::packet::tcp_flags::SYN,
            ),
            Protocol::Udp => Packet::udp(src, dst, port, flow.dport),
            Protocol::Sctp => Packet::sctp(src, dst, port, flow.dport),
            Protocol::Icmp | Protocol::Icmpv6 => {
                if (flow.protocol == Protocol::Icmpv6) != src.is_ipv6() {
                    return Err(format!(
                        "a {} probe needs {} addresses ({src} -> {dst})",
                        flow.protocol,
                        if flow.protocol == Protocol::Icmp {
                            "IPv4"
                        } else {
                            "IPv6"
                        }
                    ));
                }
                Packet::new(src, dst, L4::icmp(flow.dport as u8, 0, port, 1))
            }
        };
        Ok((p.build(), port))
    }

    /// Ends a probe's connection: deletes the conntrack entries its packet may have created
    /// (the egress hook's TUPLE_F_OUT entry on the source node, the ingress hook's TUPLE_F_IN
    /// entry on the destination node), keyed as `ct_create` in `bpf/lib/conntrack.h` keys
    /// them.
    ///
    /// A probe is one connection attempt, decided on its first packet; the oracle and the
    /// model keep no state for it. In Cilium the attempt's entry closes or times out
    /// (CT_SYN_TIMEOUT, 60 s; CT_CONNECTION_LIFETIME_NONTCP, 60 s) and the agent's
    /// conntrack GC (`pkg/maps/ctmap/gc`, `ctmap.GC` deleting expired entries) removes it.
    /// The harness makes every probe such an expired-and-collected attempt before the next
    /// one, so a truth table of any size never fills the CT map (a 900-pod table filled its
    /// 262,144 entries: drop 155), and a probe never meets the entry of an earlier probe
    /// that reused its source port.
    fn expire_probe(
        &mut self,
        world: &World,
        flow: &Flow,
        (src, dst): (IpAddr, IpAddr),
        sport: u16,
    ) -> Result<(), String> {
        let (nexthdr, sport, dport) = match flow.protocol {
            Protocol::Tcp => (6, sport, flow.dport),
            Protocol::Udp => (17, sport, flow.dport),
            Protocol::Sctp => (132, sport, flow.dport),
            // Echo requests carry the identifier in sport; other types no ports.
            Protocol::Icmp => (1, if flow.dport == 8 { sport } else { 0 }, 0),
            Protocol::Icmpv6 => (58, if flow.dport == 128 { sport } else { 0 }, 0),
        };
        let (saddr, family) = abi::addr_bytes(src);
        let (daddr, _) = abi::addr_bytes(dst);
        let key = |flags| abi::CtKey {
            saddr,
            daddr,
            sport: sport.to_be_bytes(),
            dport: dport.to_be_bytes(),
            nexthdr,
            flags,
            family,
            pad: 0,
        };
        let c = &world.cluster;
        let node_of = |p: &Peer| match p {
            Peer::Pod(p) => c.pods.get(p).map(|p| p.node.clone()),
            Peer::Host(n) if c.agent.host_firewall => Some(n.clone()),
            _ => None,
        };
        for (peer, flags) in [(&flow.src, abi::TUPLE_F_OUT), (&flow.dst, abi::TUPLE_F_IN)] {
            let Some(node) = node_of(peer) else {
                continue;
            };
            if let Some(n) = self.nodes.get_mut(&node) {
                n.dp.map_delete(abi::maps::CT, key(flags).as_bytes())
                    .map_err(|e| format!("node {node}: ending the probe's connection: {e}"))?;
            }
        }
        Ok(())
    }
}

impl DatapathBackend {
    /// Runs a frame through the source pod's egress program (on its node) and then the
    /// destination pod's ingress program (on its node), and reads the outcome from the events.
    ///
    /// A packet the egress program redirects to the proxy (a `TRACE_TO_PROXY` trace) went
    /// to the source's egress proxy, not to the destination (Cilium's bpf_lxc.c
    /// ipv4_forward_to_destination: `ctx_redirect_to_proxy4` instead of delivery): the run
    /// stops there, with `redirect.egress` set, and [`Backend::proxy_upstream`] continues it
    /// at the destination's ingress once the proxy lets it through.
    pub fn run_frame(
        &mut self,
        world: &World,
        src: &Peer,
        dst: &Peer,
        frame: &[u8],
    ) -> Result<Outcome, String> {
        self.upstream = None;
        let mut egress = None;
        if let Some((node, program)) = enforcing(world, src, Direction::Egress)? {
            let (passed, evs) = self.run(&node, program, frame)?;
            let s = side(passed, &evs);
            if !s.passed {
                self.ct_full(&node, &s)?;
                return Ok(deny(Direction::Egress, &s));
            }
            if s.redirect.is_some() {
                let out = combine(Some(&s), None);
                self.upstream = Some(Upstream {
                    dst: dst.clone(),
                    frame: frame.to_vec(),
                    egress: s,
                });
                return Ok(out);
            }
            egress = Some(s);
        }
        self.ingress_side(world, dst, frame, egress)
    }

    /// The destination pod's ingress program on `frame`, after `egress` passed.
    fn ingress_side(
        &mut self,
        world: &World,
        dst: &Peer,
        frame: &[u8],
        egress: Option<Side>,
    ) -> Result<Outcome, String> {
        let mut ingress = None;
        if let Some((node, program)) = enforcing(world, dst, Direction::Ingress)? {
            let (passed, evs) = self.run(&node, program, frame)?;
            let s = side(passed, &evs);
            if !s.passed {
                self.ct_full(&node, &s)?;
                let mut o = deny(Direction::Ingress, &s);
                o.redirect.egress = egress.and_then(|e| e.redirect);
                return Ok(o);
            }
            ingress = Some(s);
        }
        Ok(combine(egress.as_ref(), ingress.as_ref()))
    }
}

impl DatapathBackend {
    /// A drop because conntrack could not create the entry (DROP_CT_CREATE_FAILED, 155:
    /// the CT map is full) is the harness running out of room, not a policy verdict: an
    /// error naming the node and the map's size, so that no result silently reads "deny".
    fn ct_full(&self, node: &str, s: &Side) -> Result<(), String> {
        if s.drop
            != Some(DropReason::from_code(
                events::DropReason::CT_CREATE_FAILED.0,
            ))
        {
            return Ok(());
        }
        let size = self
            .nodes
            .get(node)
            .and_then(|n| {
                n.dp.map_defs()
                    .iter()
                    .find(|d| d.name == abi::maps::CT)
                    .map(|d| d.max_entries)
            })
            .unwrap_or(0);
        Err(format!(
            "node {node}: conntrack map {} is full ({size} entries): the datapath dropped the \
             packet with DROP_CT_CREATE_FAILED (155) instead of deciding it; the scenario \
             opens more connections than one node's CT map holds",
            abi::maps::CT
        ))
    }
}

/// Where a peer's side of a packet is enforced, and by which program: a pod's own programs
/// on its node; a node's host endpoint, with the host firewall on, by the host programs
/// (`bpf/bpf_host.c`; `datapath/bpf/lib/host_firewall.h`); nothing for the world.
fn enforcing(
    world: &World,
    peer: &Peer,
    dir: Direction,
) -> Result<Option<(String, &'static str)>, String> {
    Ok(match peer {
        Peer::Pod(p) => {
            let what = match dir {
                Direction::Egress => "source",
                Direction::Ingress => "destination",
            };
            let program = match dir {
                Direction::Egress => abi::programs::FROM_CONTAINER,
                Direction::Ingress => abi::programs::TO_CONTAINER,
            };
            Some((pod_node(world, p, what)?, program))
        }
        Peer::Host(n) if world.cluster.agent.host_firewall => {
            let program = match dir {
                Direction::Egress => abi::programs::FROM_HOST,
                Direction::Ingress => abi::programs::TO_HOST,
            };
            Some((n.clone(), program))
        }
        _ => None,
    })
}

/// The node a pod runs on.
fn pod_node(world: &World, pod: &PodName, what: &str) -> Result<String, String> {
    world
        .cluster
        .pods
        .get(pod)
        .map(|p| p.node.clone())
        .ok_or_else(|| format!("{what} pod vanished"))
}

/// A packet one side dropped.
fn deny(d: Direction, s: &Side) -> Outcome {
    Outcome {
        allowed: false,
        reason: s.drop,
        direction: Some(d),
        match_type: s.verdict_match.flatten(),
        redirect: Redirects::NONE,
    }
}

/// A packet both sides passed (a side outside the cluster, or not yet run, is `None`): the
/// deciding side is the enforcing ingress, else the enforcing egress.
fn combine(egress: Option<&Side>, ingress: Option<&Side>) -> Outcome {
    let enforced = |s: Option<&Side>| s.and_then(|s| s.verdict_match);
    let (direction, match_type) = if let Some(m) = enforced(ingress) {
        (Some(Direction::Ingress), m)
    } else if let Some(m) = enforced(egress) {
        (Some(Direction::Egress), m)
    } else {
        (None, None)
    };
    Outcome {
        allowed: true,
        reason: None,
        direction,
        match_type,
        redirect: Redirects {
            egress: egress.and_then(|s| s.redirect),
            ingress: ingress.and_then(|s| s.redirect),
        },
    }
}

/// A packet the source's egress proxy holds: what [`Backend::proxy_upstream`] sends on.
struct Upstream {
    dst: Peer,
    frame: Vec<u8>,
    egress: Side,
}

fn to_sim_match(m: events::MatchType) -> Option<MatchType> {
    Some(match m {
        events::MatchType::None => MatchType::None,
        events::MatchType::L3Only => MatchType::L3Only,
        events::MatchType::L3L4 => MatchType::L3L4,
        events::MatchType::L4Only => MatchType::L4Only,
        events::MatchType::All => MatchType::All,
        events::MatchType::L3Proto => MatchType::L3Proto,
        events::MatchType::ProtoOnly => MatchType::ProtoOnly,
        events::MatchType::Unknown(_) => return None,
    })
}

/// What one side (one program run) decided.
#[derive(Clone, Debug)]
struct Side {
    passed: bool,
    drop: Option<DropReason>,
    /// The policy-verdict notification's match type, when the direction enforces policy.
    verdict_match: Option<Option<MatchType>>,
    /// The proxy port of the side's `TRACE_TO_PROXY` trace (0 on a redirected
    /// connection's return path).
    redirect: Option<u16>,
}

fn side(passed: bool, evs: &[Event]) -> Side {
    let mut s = Side {
        passed,
        drop: None,
        verdict_match: None,
        redirect: None,
    };
    for e in evs {
        match e {
            Event::Drop(d) => s.drop = Some(DropReason::from_code(d.reason.0)),
            Event::PolicyVerdict(pv) => s.verdict_match = Some(to_sim_match(pv.match_type)),
            Event::Trace(t) => {
                if let Some(p) = t.proxy_port() {
                    s.redirect = Some(p);
                }
            }
        }
    }
    s
}

impl Backend for DatapathBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn sync(&mut self, world: &World, change: &Change<'_>) -> Result<(), String> {
        update_model(&mut self.model, world, change);
        match change {
            // The clock reaches queued updates; it changes nothing else.
            Change::Clock if !self.nodes.is_empty() => self.flush(world.clock_ns),
            _ => self.write_maps(world, None),
        }
    }

    fn sync_due(
        &mut self,
        world: &World,
        change: &Change<'_>,
        due: &BTreeMap<String, u64>,
    ) -> Result<(), String> {
        update_model(&mut self.model, world, change);
        match change {
            Change::Clock if !self.nodes.is_empty() => self.flush(world.clock_ns),
            _ => self.write_maps(world, Some(due)),
        }
    }

    fn lags(&self) -> bool {
        true
    }

    fn probe(&mut self, world: &World, flow: &Flow) -> Result<Outcome, String> {
        self.flush(world.clock_ns)?;
        let c = &world.cluster;
        let src = c
            .ip_of(&flow.src)
            .ok_or_else(|| format!("no address for {}", flow.src))?;
        let dst = c
            .ip_of(&flow.dst)
            .ok_or_else(|| format!("no address for {}", flow.dst))?;
        let (frame, sport) = self.packet(src, dst, flow)?;
        self.last_probe = Some((src, dst, sport));
        let out = self.run_frame(world, &flow.src, &flow.dst, &frame);
        self.expire_probe(world, flow, (src, dst), sport)?;
        out
    }

    fn packet(&mut self, world: &World, pkt: &ConnPacket) -> Result<Outcome, String> {
        self.flush(world.clock_ns)?;
        let c = &world.cluster;
        let src = c
            .ip_of(&pkt.src)
            .ok_or_else(|| format!("no address for {}", pkt.src))?;
        let dst = c
            .ip_of(&pkt.dst)
            .ok_or_else(|| format!("no address for {}", pkt.dst))?;
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(format!("packet {src} -> {dst} mixes IPv4 and IPv6"));
        }
        let l4 = match pkt.protocol {
            Protocol::Tcp => L4::tcp(pkt.sport, pkt.dport, pkt.tcp_flags),
            Protocol::Udp => L4::udp(pkt.sport, pkt.dport),
            Protocol::Sctp => L4::sctp(pkt.sport, pkt.dport),
            // Echo: the identifier is the request's sport or the reply's dport.
            Protocol::Icmp | Protocol::Icmpv6 => {
                L4::icmp(pkt.icmp_type, 0, pkt.sport.max(pkt.dport), 1)
            }
        };
        let frame = Packet::new(src, dst, l4).build();
        self.run_frame(world, &pkt.src, &pkt.dst, &frame)
    }

    /// The proxy's L7 rules come from the control plane that wrote this datapath's maps.
    fn proxy_rules(
        &mut self,
        world: &World,
        flow: &Flow,
        dir: Direction,
        proxy_port: u16,
    ) -> Result<Vec<verdict_sim::proxy::ProxyRule>, String> {
        let m = self
            .model()
            .ok_or_else(|| format!("{}: used before the initial sync", self.name()))?;
        m.proxy_rules(&world.cluster, flow, dir, proxy_port)
    }

    fn proxy_upstream(&mut self, world: &World) -> Result<Outcome, String> {
        let up = self.upstream.take().ok_or_else(|| {
            format!(
                "{}: no packet is waiting at an egress proxy (proxy_upstream follows an outcome with redirect.egress)",
                self.name
            )
        })?;
        self.flush(world.clock_ns)?;
        self.ingress_side(world, &up.dst, &up.frame, Some(up.egress))
    }

    fn take_flows(&mut self, world: &World) -> Vec<FlowRecord> {
        let model = self.model.as_ref();
        std::mem::take(&mut self.flows)
            .iter()
            .map(|f| match f {
                Observed::Datapath(f) => {
                    crate::hubble::flow_record(world, model, &f.node, &f.event)
                }
                Observed::L7(e) => crate::hubble::l7_flow_record(world, model, e),
            })
            .collect()
    }

    /// The proxies' access-log records, between the probe's datapath events, in the order
    /// the proxies logged them (`crate::hubble::exchange_events`). Identities are what each
    /// proxy's node resolves the addresses to (the ipcache, as Hubble's `ResolveEndpoint`).
    fn note_l7(&mut self, world: &World, x: &verdict_sim::engine::L7Exchange<'_>) {
        let (Some((src, dst, sport)), Some(model)) = (self.last_probe, self.model.as_ref()) else {
            return;
        };
        let c = &world.cluster;
        let node_of = |dir: Direction| {
            let peer = match dir {
                Direction::Egress => &x.flow.src,
                Direction::Ingress => &x.flow.dst,
            };
            c.node_of(peer)
                .or_else(|| c.nodes.first().map(|n| n.name.as_str()))
                .unwrap_or_default()
                .to_string()
        };
        let id = |node: &str, ip: IpAddr| model.ipcache().lookup(node, ip).identity.0;
        let events = crate::hubble::exchange_events(
            world,
            x,
            |dir| {
                let node = node_of(dir);
                let end = (src, sport, id(&node, src));
                (node, end)
            },
            |dir| (dst, x.flow.dport, id(&node_of(dir), dst)),
        );
        self.flows.extend(events.into_iter().map(Observed::L7));
    }
}

/// What a datapath backend observed, in order: the programs' events and the proxies'
/// access-log records.
enum Observed {
    Datapath(FlowEvent),
    L7(crate::hubble::L7Event),
}

impl DatapathBackend {
    /// Runs one Ethernet frame as the datapath sees a packet from `src` to `dst` (the source
    /// pod's egress program, then the destination pod's ingress program); `verdict diff
    /// --pcap` replays captured frames through it.
    pub fn decide_frame(
        &mut self,
        world: &World,
        src: &Peer,
        dst: &Peer,
        frame: &[u8],
    ) -> Result<Outcome, String> {
        self.run_frame(world, src, dst, frame)
    }
}
