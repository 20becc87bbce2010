//! Kubernetes Services in the cluster state: cluster IPs allocated from the service CIDR, the
//! backends of each port (the pods a selector picks, as the EndpointSlice controller lists
//! them, or fixed endpoints), and the backend a new connection to a cluster IP goes to.
//!
//! Cilium translates a connection to a service address before any policy sees it: in
//! `bpf/bpf_lxc.c` (`handle_ipv4_from_lxc` / `__per_packet_lb_svc_xlate_4`) the service lookup
//! and DNAT to the chosen backend come before the egress policy lookup, so both the source's
//! egress policy and the backend's ingress policy see the backend's address, identity and
//! target port. verdict does that translation once, in the harness, for every backend alike
//! (`docs/model.md`, "Services"): a probe to `svc:ns/name` (or to a cluster IP) becomes a
//! probe to the chosen backend on its target port.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cluster::{Cluster, ClusterError, Peer, PodName, Protocol};

/// `namespace/name` of a Service.
pub type ServiceName = PodName;

/// The IPv4 service CIDR (kubeadm's and kind's default `--service-cluster-ip-range`).
pub const SERVICE_CIDR_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// The IPv6 service CIDR (kind's default IPv6 service subnet).
pub const SERVICE_CIDR_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0), 112);
/// Allocation starts at this offset into the CIDR (10.96.0.10, kube-dns's customary address;
/// the lower addresses are left for fixed ones such as 10.96.0.1 of `default/kubernetes`).
pub const FIRST_ALLOCATED_OFFSET: u128 = 10;

/// A service port's `targetPort`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetPort {
    Number(u16),
    /// A container port name, resolved per backend pod.
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(n) => f.write_str(n),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: TargetPort,
    pub protocol: Protocol,
}

/// How a service's cluster IP is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClusterIpSpec {
    /// Allocated from the service CIDR.
    #[default]
    Auto,
    Fixed(IpAddr),
    /// `clusterIP: None`: no cluster IP, no load balancing.
    Headless,
}

/// A service as a scenario (or an import) declares it.
#[derive(Clone, Debug, Default)]
pub struct ServiceSpec {
    /// `namespace/name`.
    pub name: String,
    pub selector: Option<BTreeMap<String, String>>,
    /// Fixed backend addresses (a service without selector; ignored when there is a selector).
    pub endpoints: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub cluster_ip: ClusterIpSpec,
    /// The Service object's own labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: ServiceName,
    /// `None`: a service without selector, whose backends are `endpoints`.
    pub selector: Option<BTreeMap<String, String>>,
    pub endpoints: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `None` for a headless service.
    pub cluster_ip: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
}

/// One backend of one service port: an address and the port a connection reaches it on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceBackend {
    pub ip: IpAddr,
    pub port: u16,
    /// The pod behind the address, if a pod of the cluster has it.
    pub pod: Option<PodName>,
}

/// Why a connection to a service cannot be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    #[error("no service {0}")]
    UnknownService(String),
    #[error("service {0} is headless (clusterIP: None): it has no cluster IP to connect to")]
    Headless(ServiceName),
    #[error("service {0} carries TCP, UDP and SCTP, not {1}")]
    Protocol(ServiceName, Protocol),
    #[error("service {name} has no port {port}/{protocol} (its ports: {ports})")]
    NoPort {
        name: ServiceName,
        port: u16,
        protocol: Protocol,
        ports: String,
    },
    #[error("service {0} has no backend for port {1}/{2}: Cilium drops such a connection (DROP_NO_SERVICE, 158), which verdict does not model yet")]
    NoBackend(ServiceName, u16, Protocol),
}

fn cidr_contains(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let (net, len) = SERVICE_CIDR_V4;
            (u32::from(v4) ^ u32::from(net)) >> (32 - len) == 0
        }
        IpAddr::V6(v6) => {
            let (net, len) = SERVICE_CIDR_V6;
            (u128::from(v6) ^ u128::from(net)) >> (128 - len) == 0
        }
    }
}

/// Whether an address is one the service CIDR of its family can allocate: inside the CIDR,
/// neither its network address nor (IPv4) its broadcast address (the apiserver's allocator
/// reserves both).
pub fn check_cluster_ip(ip: IpAddr) -> Result<(), String> {
    let (range, first, last) = match ip {
        IpAddr::V4(_) => {
            let (net, len) = SERVICE_CIDR_V4;
            let n = u32::from(net);
            (
                format!("{net}/{len}"),
                IpAddr::V4(Ipv4Addr::from(n)),
                Some(IpAddr::V4(Ipv4Addr::from(n | (u32::MAX >> len)))),
            )
        }
        IpAddr::V6(_) => {
            let (net, len) = SERVICE_CIDR_V6;
            (format!("{net}/{len}"), IpAddr::V6(net), None)
        }
    };
    if !cidr_contains(ip) || ip == first || Some(ip) == last {
        return Err(format!(
            "{ip} is not in the valid range of the service CIDR {range}"
        ));
    }
    Ok(())
}

impl Service {
    fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Cluster {
    /// Adds a service (after the namespaces it lives in). Its cluster IP is allocated
    /// deterministically when not given: the first free address from offset 10 of the
    /// service CIDR of its family (IPv6 when its fixed endpoints are IPv6, else IPv4), in
    /// the order services are added.
    pub fn add_service(&mut self, spec: ServiceSpec) -> Result<(), ClusterError> {
        let name = PodName::parse(&spec.name)
            .ok_or_else(|| ClusterError::BadServiceName(spec.name.clone()))?;
        if !self.namespaces.contains_key(&name.namespace) {
            return Err(ClusterError::UnknownNamespace(
                format!("service {}", spec.name),
                name.namespace.clone(),
            ));
        }
        if self.services.contains_key(&name) {
            return Err(ClusterError::DuplicateService(spec.name.clone()));
        }
        let v6 = spec.endpoints.first().is_some_and(IpAddr::is_ipv6);
        let cluster_ip = match spec.cluster_ip {
            ClusterIpSpec::Headless => None,
            ClusterIpSpec::Fixed(ip) => {
                check_cluster_ip(ip)
                    .map_err(|e| ClusterError::BadClusterIp(spec.name.clone(), e))?;
                if let Some(owner) = self.owner_of(ip) {
                    return Err(ClusterError::AddressInUse(ip, owner));
                }
                Some(ip)
            }
            ClusterIpSpec::Auto => Some(self.allocate_cluster_ip(v6, &spec.name)?),
        };
        if let Some(cip) = cluster_ip {
            if let Some(e) = spec.endpoints.iter().find(|e| e.is_ipv4() != cip.is_ipv4()) {
                return Err(ClusterError::BadServiceEndpoint(
                    spec.name.clone(),
                    format!("endpoint {e} is not of the cluster IP {cip}'s address family"),
                ));
            }
        }
        let endpoints = if spec.selector.is_some() {
            Vec::new()
        } else {
            spec.endpoints
        };
        self.services.insert(
            name.clone(),
            Service {
                name,
                selector: spec.selector,
                endpoints,
                ports: spec.ports,
                cluster_ip,
                labels: spec.labels,
            },
        );
        Ok(())
    }

    fn allocate_cluster_ip(&self, v6: bool, name: &str) -> Result<IpAddr, ClusterError> {
        let (base, size): (u128, u128) = if v6 {
            let (net, len) = SERVICE_CIDR_V6;
            (u128::from(net), 1u128 << (128 - len))
        } else {
            let (net, len) = SERVICE_CIDR_V4;
            (u32::from(net) as u128, 1u128 << (32 - len))
        };
        for off in FIRST_ALLOCATED_OFFSET..size - 1 {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(base + off))
            } else {
                IpAddr::V4(Ipv4Addr::from((base + off) as u32))
            };
            if self.owner_of(ip).is_none() {
                return Ok(ip);
            }
        }
        Err(ClusterError::BadClusterIp(
            name.to_string(),
            "the service CIDR is exhausted".into(),
        ))
    }

    /// A service by `namespace/name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(&PodName::parse(name)?)
    }

    /// The service whose cluster IP this is.
    pub fn service_by_ip(&self, ip: IpAddr) -> Option<&Service> {
        self.services.values().find(|s| s.cluster_ip == Some(ip))
    }

    /// The service a probe endpoint names: `svc:ns/name`, or a cluster IP literal. `Err` for a
    /// `svc:` name with no such service.
    pub fn service_endpoint(&self, name: &str) -> Result<Option<&Service>, LbError> {
        if let Some(svc) = name.strip_prefix("svc:") {
            return self
                .service(svc)
                .map(Some)
                .ok_or_else(|| LbError::UnknownService(svc.to_string()));
        }
        Ok(name.parse().ok().and_then(|ip| self.service_by_ip(ip)))
    }

    /// Resolves a connection's destination as the connection reaches it: a service endpoint
    /// (`svc:ns/name`, or a cluster IP) is load-balanced to its backend ([`Cluster::lb_select`])
    /// and gives that backend's peer and target port; any other name resolves as
    /// [`Cluster::resolve`] does, on `port` itself. `Ok(None)`: no such endpoint.
    pub fn resolve_destination(
        &self,
        name: &str,
        protocol: Protocol,
        port: u16,
    ) -> Result<Option<(Peer, u16)>, LbError> {
        match self.service_endpoint(name)? {
            Some(svc) => {
                let b = self.lb_select(svc, protocol, port)?;
                Ok(Some((self.peer_of_ip(b.ip), b.port)))
            }
            None => Ok(self.resolve(name).map(|p| (p, port))),
        }
    }

    /// Whether a pod backs a selector service: same namespace, and its labels include every
    /// pair of the selector (`spec.selector` is a plain equality map).
    fn selects(svc: &Service, pod: &crate::cluster::Pod) -> bool {
        let Some(sel) = &svc.selector else {
            return false;
        };
        pod.name.namespace == svc.name.namespace
            && sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
    }

    /// The backends of one port of a service, sorted by address, as its EndpointSlices list
    /// them: for a selector, every pod of the namespace it selects whose address has the
    /// cluster IP's family (every pod of a scenario is running and ready), on the target
    /// port (a named target port is looked up in the pod's container ports by name and
    /// protocol; a pod without it is no backend of that port, as the EndpointSlice
    /// controller's `findPort` skips it); without a selector, the fixed endpoints on the
    /// numeric target port.
    pub fn service_backends(&self, svc: &Service, port: &ServicePort) -> Vec<ServiceBackend> {
        let family_ok = |ip: &IpAddr| svc.cluster_ip.is_none_or(|c| c.is_ipv4() == ip.is_ipv4());
        let mut out: Vec<ServiceBackend> = if svc.selector.is_some() {
            self.pods
                .values()
                .filter(|p| Self::selects(svc, p) && family_ok(&p.ip))
                .filter_map(|p| {
                    let tp = match &port.target_port {
                        TargetPort::Number(n) => *n,
                        TargetPort::Name(name) => {
                            p.ports
                                .iter()
                                .find(|cp| &cp.name == name && cp.protocol == port.protocol)?
                                .port
                        }
                    };
                    Some(ServiceBackend {
                        ip: p.ip,
                        port: tp,
                        pod: Some(p.name.clone()),
                    })
                })
                .collect()
        } else {
            let TargetPort::Number(tp) = port.target_port else {
                // Refused when the service is declared; nothing to list.
                return Vec::new();
            };
            svc.endpoints
                .iter()
                .filter(|ip| family_ok(ip))
                .map(|ip| ServiceBackend {
                    ip: *ip,
                    port: tp,
                    pod: match self.peer_of_ip(*ip) {
                        Peer::Pod(p) => Some(p),
                        _ => None,
                    },
                })
                .collect()
        };
        out.sort();
        out.dedup();
        out
    }

    /// Every backend address of a service, over all its ports, sorted.
    pub fn service_backend_ips(&self, svc: &Service) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = svc
            .ports
            .iter()
            .flat_map(|p| self.service_backends(svc, p))
            .map(|b| b.ip)
            .collect();
        if svc.ports.is_empty() {
            // A port-less (headless) service still has endpoints.
            ips.extend(
                self.pods
                    .values()
                    .filter(|p| Self::selects(svc, p))
                    .map(|p| p.ip),
            );
            if svc.selector.is_none() {
                ips.extend(svc.endpoints.iter().copied());
            }
        }
        ips.sort();
        ips.dedup();
        ips
    }

    /// The backend a new connection to `svc` on `port`/`protocol` goes to: of the port's
    /// backends, the one with the lowest address (verdict's deterministic stand-in for
    /// Cilium's random or Maglev choice, `docs/model.md`).
    pub fn lb_select(
        &self,
        svc: &Service,
        protocol: Protocol,
        port: u16,
    ) -> Result<ServiceBackend, LbError> {
        if svc.cluster_ip.is_none() {
            return Err(LbError::Headless(svc.name.clone()));
        }
        if protocol.is_icmp() {
            return Err(LbError::Protocol(svc.name.clone(), protocol));
        }
        let sp = svc
            .ports
            .iter()
            .find(|p| p.port == port && p.protocol == protocol)
            .ok_or_else(|| LbError::NoPort {
                name: svc.name.clone(),
                port,
                protocol,
                ports: svc.ports_text(),
            })?;
        self.service_backends(svc, sp)
            .into_iter()
            .next()
            .ok_or(LbError::NoBackend(svc.name.clone(), port, protocol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ContainerPort, PodSpec};

    fn cluster() -> Cluster {
        let mut c = Cluster::new();
        c.add_node("node-1", None).unwrap();
        c.add_namespace("x", BTreeMap::new()).unwrap();
        c.add_namespace("y", BTreeMap::new()).unwrap();
        for (name, app) in [
            ("x/b", "web"),
            ("x/a", "web"),
            ("y/c", "web"),
            ("x/d", "db"),
        ] {
            c.add_pod(PodSpec {
                name: name.into(),
                labels: [("app".to_string(), app.to_string())].into(),
                ports: if name == "x/a" {
                    vec![ContainerPort {
                        name: "http".into(),
                        port: 8080,
                        protocol: Protocol::Tcp,
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            })
            .unwrap();
        }
        c
    }

    fn web(target: TargetPort) -> ServiceSpec {
        ServiceSpec {
            name: "x/web".into(),
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: vec![ServicePort {
                name: None,
                port: 80,
                target_port: target,
                protocol: Protocol::Tcp,
            }],
            ..Default::default()
        }
    }

    // Kubernetes Service docs ("Defining a Service"): the selector picks pods of the
    // service's own namespace; targetPort may name a container port.
    #[test]
    fn backends_follow_selector_namespace_and_named_ports() {
        let mut c = cluster();
        c.add_service(web(TargetPort::Number(8080))).unwrap();
        let svc = c.service("x/web").unwrap().clone();
        assert_eq!(svc.cluster_ip, Some("10.96.0.10".parse().unwrap()));
        let b = c.service_backends(&svc, &svc.ports[0]);
        // x/b was created first (10.244.0.10), x/a second (10.244.0.11); y/c is elsewhere.
        let pods: Vec<String> = b
            .iter()
            .map(|b| b.pod.clone().unwrap().to_string())
            .collect();
        assert_eq!(pods, ["x/b", "x/a"]);
        let chosen = c.lb_select(&svc, Protocol::Tcp, 80).unwrap();
        assert_eq!(chosen.ip.to_string(), "10.244.0.10");
        assert_eq!(chosen.port, 8080);
        // Named targetPort: only x/a has a container port "http".
        let mut named = web(TargetPort::Name("http".into()));
        named.name = "x/named".into();
        c.add_service(named).unwrap();
        let svc = c.service("x/named").unwrap().clone();
        assert_eq!(svc.cluster_ip, Some("10.96.0.11".parse().unwrap()));
        let chosen = c.lb_select(&svc, Protocol::Tcp, 80).unwrap();
        assert_eq!(chosen.pod.unwrap().to_string(), "x/a");
        assert!(matches!(
            c.lb_select(&svc, Protocol::Udp, 80),
            Err(LbError::NoPort { .. })
        ));
        assert!(matches!(
            c.lb_select(&svc, Protocol::Icmp, 8),
            Err(LbError::Protocol(..))
        ));
    }

    #[test]
    fn fixed_endpoints_cluster_ips_and_errors() {
        let mut c = cluster();
        c.add_service(ServiceSpec {
            name: "x/ext".into(),
            endpoints: vec![
                "192.0.2.20".parse().unwrap(),
                "10.244.0.11".parse().unwrap(),
            ],
            ports: vec![ServicePort {
                name: None,
                port: 443,
                target_port: TargetPort::Number(8443),
                protocol: Protocol::Tcp,
            }],
            cluster_ip: ClusterIpSpec::Fixed("10.96.5.5".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        let svc = c.service_endpoint("10.96.5.5").unwrap().unwrap().clone();
        let b = c.lb_select(&svc, Protocol::Tcp, 443).unwrap();
        assert_eq!(b.ip.to_string(), "10.244.0.11");
        assert_eq!(b.pod.unwrap().to_string(), "x/a");
        assert!(matches!(
            c.service_endpoint("svc:x/nope"),
            Err(LbError::UnknownService(_))
        ));
        let mut dup = web(TargetPort::Number(80));
        dup.cluster_ip = ClusterIpSpec::Fixed("10.96.5.5".parse().unwrap());
        dup.name = "x/dup".into();
        assert!(matches!(
            c.add_service(dup.clone()),
            Err(ClusterError::AddressInUse(..))
        ));
        dup.cluster_ip = ClusterIpSpec::Fixed("10.112.0.1".parse().unwrap());
        assert!(matches!(
            c.add_service(dup.clone()),
            Err(ClusterError::BadClusterIp(..))
        ));
        dup.cluster_ip = ClusterIpSpec::Headless;
        c.add_service(dup).unwrap();
        let svc = c.service("x/dup").unwrap().clone();
        assert!(matches!(
            c.lb_select(&svc, Protocol::Tcp, 80),
            Err(LbError::Headless(_))
        ));
        assert_eq!(c.service_backend_ips(&svc).len(), 2);
        let mut none = web(TargetPort::Number(80));
        none.name = "x/empty".into();
        none.selector = Some([("app".to_string(), "nobody".to_string())].into());
        c.add_service(none).unwrap();
        let svc = c.service("x/empty").unwrap().clone();
        assert!(matches!(
            c.lb_select(&svc, Protocol::Tcp, 80),
            Err(LbError::NoBackend(..))
        ));
        assert!(check_cluster_ip("10.96.0.0".parse().unwrap()).is_err());
        assert!(check_cluster_ip("10.111.255.255".parse().unwrap()).is_err());
        assert!(check_cluster_ip("10.111.255.254".parse().unwrap()).is_ok());
        assert!(check_cluster_ip("fd00:10:96::a".parse().unwrap()).is_ok());
        assert!(check_cluster_ip("fd00:10:97::a".parse().unwrap()).is_err());
    }
}
