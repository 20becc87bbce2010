//! Kubernetes validation of a scenario's cluster and timeline: the names, labels and addresses
//! a scenario declares must be ones the API server would take for the objects they stand for,
//! and every error names the file, line, column and field.
//!
//! Sources: k8s.io/apimachinery `pkg/util/validation` (`IsDNS1123Label`,
//! `IsDNS1123Subdomain`, `IsDNS1035Label`, `IsQualifiedName`, `IsValidLabelValue`,
//! `IsValidPortName`) and k8s.io/kubernetes `pkg/apis/core/validation` (which name rule each
//! kind uses: `ValidateNamespaceName` a label, `ValidatePodName`, `ValidateNodeName` and
//! `ValidateServiceAccountName` a subdomain, `ValidateServiceName` a DNS-1035 label;
//! `ValidateNonSpecialIP` for the addresses that back endpoints).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::api;
use crate::scenario::{PodDecl, Scenario, ScenarioError, ServiceDecl, Step, TargetPortDecl};
use crate::yaml::{Mark, Node};

/// Why an address cannot be a pod's or a node's: `ValidateNonSpecialIP` (unspecified,
/// loopback, link-local, as for every Endpoints/EndpointSlice address, which is what a pod
/// IP becomes), plus multicast and broadcast, which no IPAM hands out and no host sends from
/// (RFC 1122 3.2.1.3), and IPv4-mapped IPv6, which Kubernetes' IP validation refuses
/// (KEP-4858).
pub fn check_endpoint_ip(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() {
        return Err(format!("may not be unspecified ({ip})"));
    }
    if ip.is_loopback() {
        return Err("may not be in the loopback range (127.0.0.0/8, ::1/128)".into());
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Err("may not be in the link-local range (169.254.0.0/16, fe80::/10)".into());
    }
    if ip.is_multicast() {
        return Err(
            "may not be a multicast address (224.0.0.0/4, ff00::/8): no host sends from one".into(),
        );
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Err("may not be the broadcast address 255.255.255.255".into());
        }
    }
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(format!(
                "may not be an IPv4-mapped IPv6 address: write the IPv4 address {v4}"
            ));
        }
    }
    Ok(())
}

/// Why an address cannot be an external endpoint's: only addresses that never leave a host.
pub fn check_external_ip(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() {
        return Err(format!("may not be unspecified ({ip})"));
    }
    if ip.is_loopback() {
        return Err(
            "may not be in the loopback range (127.0.0.0/8, ::1/128): it never leaves the pod"
                .into(),
        );
    }
    Ok(())
}

struct Checker<'a> {
    file: &'a Path,
    source: &'a Node,
}

impl Checker<'_> {
    /// An error at the node of `field` (or the closest enclosing node that exists).
    fn at(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        let mark = locate(self.source, field);
        self.at_mark(mark, field, message)
    }

    fn at_mark(&self, mark: Mark, field: &str, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Parse {
            file: self.file.to_path_buf(),
            line: mark.line,
            column: mark.column,
            field: format!("{field}: "),
            message: message.into(),
        }
    }

    fn labels(&self, parent: &str, labels: &BTreeMap<String, String>) -> Result<(), ScenarioError> {
        for (k, v) in labels {
            let entry = self.source.at_path(parent).and_then(|n| n.entry(k));
            let field = format!("{parent}.{k}");
            let key_mark = entry
                .map(|(k, _)| k.mark)
                .unwrap_or_else(|| locate(self.source, parent));
            let value_mark = entry.map(|(_, v)| v.mark).unwrap_or(key_mark);
            api::check_qualified_name(k).map_err(|e| {
                self.at_mark(key_mark, &field, format!("invalid label key {k:?}: {e}"))
            })?;
            api::check_label_value(v).map_err(|e| {
                self.at_mark(
                    value_mark,
                    &field,
                    format!("invalid label value {v:?}: {e}"),
                )
            })?;
        }
        Ok(())
    }

    fn label_keys(&self, parent: &str, keys: &[String]) -> Result<(), ScenarioError> {
        for (i, k) in keys.iter().enumerate() {
            api::check_qualified_name(k).map_err(|e| {
                self.at(
                    &format!("{parent}[{i}]"),
                    format!("invalid label key {k:?}: {e}"),
                )
            })?;
        }
        Ok(())
    }

    fn pod_name(&self, field: &str, name: &str) -> Result<(), ScenarioError> {
        let Some((ns, pod)) = name.split_once('/') else {
            return Err(self.at(
                field,
                format!("pod name {name:?} is not <namespace>/<name>"),
            ));
        };
        api::check_dns_label(ns)
            .map_err(|e| self.at(field, format!("invalid namespace {ns:?} in {name:?}: {e}")))?;
        api::check_dns_subdomain(pod)
            .map_err(|e| self.at(field, format!("invalid pod name {pod:?} in {name:?}: {e}")))
    }

    fn pod(&self, at: &str, p: &PodDecl) -> Result<(), ScenarioError> {
        self.pod_name(&format!("{at}.name"), &p.name)?;
        if let Some(node) = &p.node {
            api::check_dns_subdomain(node).map_err(|e| {
                self.at(
                    &format!("{at}.node"),
                    format!("invalid node name {node:?}: {e}"),
                )
            })?;
        }
        if let Some(ip) = p.ip {
            check_endpoint_ip(ip).map_err(|e| {
                self.at(
                    &format!("{at}.ip"),
                    format!("{ip} cannot be a pod's address: {e}"),
                )
            })?;
        }
        self.labels(&format!("{at}.labels"), &p.labels)?;
        if let Some(sa) = &p.service_account {
            api::check_dns_subdomain(sa).map_err(|e| {
                self.at(
                    &format!("{at}.serviceAccount"),
                    format!("invalid serviceAccount {sa:?}: {e}"),
                )
            })?;
        }
        let mut names = BTreeMap::new();
        for (j, port) in p.ports.iter().enumerate() {
            let f = format!("{at}.ports[{j}]");
            if !api::is_k8s_port_name(&port.name) {
                return Err(self.at(
                    &format!("{f}.name"),
                    format!("invalid port name {:?}: must be no more than 15 lowercase alphanumeric characters or '-', with at least one letter, without '--' or a leading or trailing '-' (IANA_SVC_NAME)", port.name),
                ));
            }
            if port.port == 0 {
                return Err(self.at(
                    &format!("{f}.port"),
                    "containerPort 0 must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(first) = names.insert(port.name.clone(), j) {
                return Err(self.at(
                    &format!("{f}.name"),
                    format!("duplicate port name {:?} (also ports[{first}])", port.name),
                ));
            }
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// A Service as `ValidateService` (k8s.io/kubernetes pkg/apis/core/validation) checks it.
    fn service(&self, at: &str, sv: &ServiceDecl) -> Result<(), ScenarioError> {
        let field = format!("{at}.name");
        let Some((ns, name)) = sv.name.split_once('/') else {
            return Err(self.at(
                &field,
                format!("service name {:?} is not <namespace>/<name>", sv.name),
            ));
        };
        api::check_dns_label(ns).map_err(|e| {
            self.at(
                &field,
                format!("invalid namespace {ns:?} in {:?}: {e}", sv.name),
            )
        })?;
        // ValidateServiceName: a DNS-1035 label.
        api::check_dns1035_label(name).map_err(|e| {
            self.at(
                &field,
                format!("invalid service name {name:?} in {:?}: {e}", sv.name),
            )
        })?;
        self.labels(&format!("{at}.labels"), &sv.labels)?;
        if let Some(sel) = &sv.selector {
            if sel.is_empty() {
                return Err(self.at(
                    &format!("{at}.selector"),
                    "an empty selector: leave `selector` out for a service without selector (fixed `endpoints`), or name at least one label",
                ));
            }
            self.labels(&format!("{at}.selector"), sel)?;
            if sv.endpoints.is_some() {
                return Err(self.at(
                    &format!("{at}.endpoints"),
                    "a service has a selector or fixed endpoints, not both (the EndpointSlice controller manages the endpoints of a service with a selector)",
                ));
            }
        }
        for (j, ip) in sv.endpoints.iter().flatten().enumerate() {
            check_endpoint_ip(*ip).map_err(|e| {
                self.at(
                    &format!("{at}.endpoints[{j}]"),
                    format!("{ip} cannot be an endpoint address: {e}"),
                )
            })?;
        }
        let headless = match sv.cluster_ip.as_deref() {
            None => false,
            Some("None") => true,
            Some(text) => {
                let f = format!("{at}.clusterIP");
                let ip: IpAddr = text.parse().map_err(|_| {
                    self.at(
                        &f,
                        format!("{text:?} must be a valid IP address or `None` (headless)"),
                    )
                })?;
                crate::service::check_cluster_ip(ip).map_err(|e| self.at(&f, e))?;
                false
            }
        };
        if sv.ports.is_empty() && !headless {
            return Err(self.at(
                &format!("{at}.ports"),
                "Required value: a service with a cluster IP needs at least one port",
            ));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut seen: BTreeMap<(u16, crate::cluster::Protocol), usize> = BTreeMap::new();
        for (j, p) in sv.ports.iter().enumerate() {
            let f = format!("{at}.ports[{j}]");
            match p.name.as_deref() {
                None | Some("") if sv.ports.len() > 1 => {
                    return Err(self.at(
                        &f,
                        "name: Required value: every port of a service with more than one port needs a name",
                    ))
                }
                None | Some("") => {}
                Some(n) => {
                    api::check_dns_label(n).map_err(|e| {
                        self.at(&format!("{f}.name"), format!("invalid port name {n:?}: {e}"))
                    })?;
                    if let Some(first) = names.insert(n, j) {
                        return Err(self.at(
                            &format!("{f}.name"),
                            format!("Duplicate value: port name {n:?} (also ports[{first}])"),
                        ));
                    }
                }
            }
            if p.port == 0 {
                return Err(self.at(
                    &format!("{f}.port"),
                    "port 0 must be between 1 and 65535, inclusive",
                ));
            }
            if p.protocol.0.is_icmp() {
                return Err(self.at(
                    &format!("{f}.protocol"),
                    format!(
                        "Unsupported value: {:?}: a service port is TCP, UDP or SCTP",
                        p.protocol.0.to_string()
                    ),
                ));
            }
            match &p.target_port {
                Some(TargetPortDecl::Name(n)) => {
                    if !api::is_k8s_port_name(n) {
                        return Err(self.at(
                            &format!("{f}.targetPort"),
                            format!("invalid targetPort {n:?}: a number (1-65535) or a container port name of no more than 15 lowercase alphanumeric characters or '-', with at least one letter (IANA_SVC_NAME)"),
                        ));
                    }
                    if sv.selector.is_none() {
                        return Err(self.at(
                            &format!("{f}.targetPort"),
                            format!("named targetPort {n:?} on a service without selector: its fixed endpoints have no container ports to look the name up in; give a number"),
                        ));
                    }
                }
                Some(TargetPortDecl::Number(_)) | None => {}
            }
            if let Some(first) = seen.insert((p.port, p.protocol.0), j) {
                return Err(self.at(
                    &f,
                    format!(
                        "Duplicate value: port {}/{} (also ports[{first}])",
                        p.port, p.protocol.0
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The position of a field path in the source, or of its closest enclosing node.
pub fn locate(source: &Node, field: &str) -> Mark {
    let mut p = field;
    loop {
        if let Some(n) = source.at_path(p) {
            return n.mark;
        }
        match p.rfind(['.', '[']) {
            Some(cut) => p = &p[..cut],
            None => return source.mark,
        }
    }
}

/// Checks a parsed scenario as the Kubernetes API server would check the objects it declares.
pub fn validate(file: &Path, s: &Scenario, source: &Node) -> Result<(), ScenarioError> {
    let c = Checker { file, source };
    for (i, n) in s.cluster.nodes.iter().enumerate() {
        let at = format!("cluster.nodes[{i}]");
        api::check_dns_subdomain(&n.name).map_err(|e| {
            c.at(
                &format!("{at}.name"),
                format!("invalid node name {:?}: {e}", n.name),
            )
        })?;
        if let Some(ip) = n.ip {
            check_endpoint_ip(ip).map_err(|e| {
                c.at(
                    &format!("{at}.ip"),
                    format!("{ip} cannot be a node's address: {e}"),
                )
            })?;
        }
        c.labels(&format!("{at}.labels"), &n.labels)?;
    }
    for (i, ns) in s.cluster.namespaces.iter().enumerate() {
        let at = format!("cluster.namespaces[{i}]");
        api::check_dns_label(&ns.name).map_err(|e| {
            c.at(
                &format!("{at}.name"),
                format!("invalid namespace name {:?}: {e}", ns.name),
            )
        })?;
        c.labels(&format!("{at}.labels"), &ns.labels)?;
    }
    for (i, p) in s.cluster.pods.iter().enumerate() {
        c.pod(&format!("cluster.pods[{i}]"), p)?;
    }
    for (i, e) in s.cluster.externals.iter().enumerate() {
        check_external_ip(e.ip).map_err(|err| {
            c.at(
                &format!("cluster.externals[{i}].ip"),
                format!("{} cannot be an external address: {err}", e.ip),
            )
        })?;
    }
    for (i, sv) in s.cluster.services.iter().enumerate() {
        c.service(&format!("cluster.services[{i}]"), sv)?;
    }
    for (i, step) in s.steps.iter().enumerate() {
        let at = format!("steps[{i}].{}", step.kind());
        match step {
            Step::CreatePod(p) => c.pod(&at, p)?,
            Step::DeletePod(name) => c.pod_name(&at, name)?,
            Step::LabelPod(l) => {
                c.pod_name(&format!("{at}.pod"), &l.pod)?;
                c.labels(&format!("{at}.set"), &l.set)?;
                c.label_keys(&format!("{at}.unset"), &l.unset)?;
            }
            Step::LabelNamespace(l) => {
                api::check_dns_label(&l.namespace).map_err(|e| {
                    c.at(
                        &format!("{at}.namespace"),
                        format!("invalid namespace name {:?}: {e}", l.namespace),
                    )
                })?;
                c.labels(&format!("{at}.set"), &l.set)?;
                c.label_keys(&format!("{at}.unset"), &l.unset)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario;
    use std::path::Path;

    fn err(text: &str) -> String {
        match scenario::parse(Path::new("t.yaml"), text) {
            Ok(_) => panic!("expected an error:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = "name: t\ncluster:\n  namespaces: [{name: x}]\n";

    #[test]
    fn names_follow_the_rule_of_their_kind() {
        let e = err("name: t\ncluster:\n  namespaces:\n  - name: Team_A\n");
        assert!(e.starts_with("t.yaml:4:11: cluster.namespaces[0].name: invalid namespace name \"Team_A\": a lowercase RFC 1123 label"), "{e}");
        // A namespace is a label (no dots); a pod name is a subdomain (dots allowed).
        assert!(err("name: t\ncluster:\n  namespaces: [{name: a.b}]\n").contains("RFC 1123 label"));
        assert!(scenario::parse(
            Path::new("t.yaml"),
            &format!("{HEAD}  pods: [{{name: x/web.v1}}]\n")
        )
        .is_ok());
        let e = err(&format!("{HEAD}  pods:\n  - name: x/Web\n"));
        assert!(
            e.starts_with("t.yaml:5:11: cluster.pods[0].name: invalid pod name \"Web\""),
            "{e}"
        );
        let e = err("name: t\ncluster:\n  nodes: [node_1]\n");
        assert!(
            e.starts_with("t.yaml:3:11: cluster.nodes[0].name: invalid node name"),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}  pods: [{{name: x/a, serviceAccount: Bad}}]\n"
        ));
        assert!(
            e.contains("cluster.pods[0].serviceAccount: invalid serviceAccount"),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}  pods: [{{name: x/a, ports: [{{name: HTTP, port: 80}}]}}]\n"
        ));
        assert!(
            e.contains("cluster.pods[0].ports[0].name: invalid port name \"HTTP\""),
            "{e}"
        );
        let e = err(&format!(
            "{HEAD}  pods: [{{name: x/a, ports: [{{name: http, port: 0}}]}}]\n"
        ));
        assert!(e.contains("containerPort 0"), "{e}");
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        let long = "v".repeat(64);
        let e = err(&format!(
            "{HEAD}  pods:\n  - name: x/a\n    labels:\n      app: {long}\n"
        ));
        assert!(
            e.starts_with("t.yaml:7:12: cluster.pods[0].labels.app: invalid label value"),
            "{e}"
        );
        assert!(e.contains("no more than 63 characters"), "{e}");
        let e = err(&format!(
            "{HEAD}  pods:\n  - name: x/a\n    labels:\n      example.com/a/b: v\n"
        ));
        assert!(
            e.starts_with("t.yaml:7:7: cluster.pods[0].labels.example.com/a/b: invalid label key"),
            "{e}"
        );
        let prefix = format!("{}io/app", format!("{}.", "p".repeat(63)).repeat(4));
        let e = err(&format!(
            "{HEAD}  pods: [{{name: x/a, labels: {{{prefix}: v}}}}]\n"
        ));
        assert!(e.contains("prefix part must be 1 to 253 characters"), "{e}");
        let e = err(&format!(
            "{HEAD}steps:\n- label-pod: {{pod: x/a, set: {{ok: fine}}, unset: [\"bad key\"]}}\n"
        ));
        assert!(
            e.contains("steps[0].label-pod.unset[0]: invalid label key \"bad key\""),
            "{e}"
        );
    }

    #[test]
    fn addresses_pods_cannot_have() {
        for (ip, why) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("127.0.0.2", "loopback"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("224.0.0.5", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
        ] {
            let e = err(&format!("{HEAD}  pods:\n  - {{name: x/a, ip: \"{ip}\"}}\n"));
            assert!(e.starts_with("t.yaml:5:"), "{e}");
            assert!(
                e.contains("cluster.pods[0].ip:") && e.contains(why),
                "{ip}: {e}"
            );
        }
        let e = err("name: t\ncluster:\n  nodes: [{name: n1, ip: 0.0.0.0}]\n");
        assert!(
            e.contains("cluster.nodes[0].ip: 0.0.0.0 cannot be a node's address"),
            "{e}"
        );
        // The metadata service is a legitimate external (policies block it by CIDR).
        assert!(scenario::parse(
            Path::new("t.yaml"),
            "name: t\ncluster:\n  externals: [{name: metadata, ip: 169.254.169.254}]\n"
        )
        .is_ok());
        assert!(
            err("name: t\ncluster:\n  externals: [{name: lo, ip: 127.0.0.1}]\n")
                .contains("loopback")
        );
    }

    #[test]
    fn duplicate_keys_in_scenarios() {
        let e = err(&format!(
            "{HEAD}  pods:\n  - name: x/a\n    labels: {{app: a, app: b}}\n"
        ));
        assert!(e.starts_with("t.yaml:6:22: cluster.pods[0].labels.app: duplicate key \"app\" (first at line 6 column 14"), "{e}");
    }

    #[test]
    fn probes_across_address_families_fail_at_load_naming_the_probe() {
        let text = format!(
            "{HEAD}  pods: [{{name: x/a}}, {{name: x/b, ip: \"fd00::10\"}}]\nsteps:\n- expect:\n  - {{from: x/a, to: x/a, port: 80, protocol: TCP, verdict: allow}}\n  - {{from: x/a, to: x/b, port: 80, protocol: TCP, verdict: allow}}\n"
        );
        let loaded = scenario::parse(Path::new("t.yaml"), &text).unwrap();
        let e = crate::engine::world_after(&loaded, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.yaml:8:5: steps[0].expect[1] (x/a -> x/b): mixes address families: x/a is IPv4 (10.244.0.10) and x/b is IPv6 (fd00::10)"),
            "{e}"
        );
        // And `verdict run` refuses it before any backend runs.
        let r = crate::engine::run(&loaded, &["oracle".to_string()], &|_| {
            Ok(Box::new(crate::engine::OracleBackend::default())
                as Box<dyn crate::engine::Backend>)
        });
        assert!(r.steps.is_empty(), "no step ran");
        assert!(r
            .error
            .as_deref()
            .is_some_and(|m| m.contains("mixes address families")));
    }

    #[test]
    fn engine_errors_are_located() {
        let text = format!("{HEAD}  pods: [{{name: x/a}}]\nsteps:\n- advance: 1s\n- expect:\n  - {{from: x/a, to: x/nope, port: 80, protocol: TCP, verdict: allow}}\n");
        let loaded = scenario::parse(Path::new("t.yaml"), &text).unwrap();
        let e = crate::engine::world_after(&loaded, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.yaml:8:5: steps[1].expect[0]: unknown endpoint \"x/nope\""),
            "{e}"
        );
        let text = format!("{HEAD}  pods: [{{name: y/a}}]\n");
        let loaded = scenario::parse(Path::new("t.yaml"), &text).unwrap();
        let e = crate::engine::build_world(&loaded).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "t.yaml:4:10: cluster.pods[0] (y/a): pod y/a: namespace y is not declared"
            ),
            "{e}"
        );
    }

    // Kubernetes ValidateService (pkg/apis/core/validation): name rules, ports, clusterIP.
    #[test]
    fn services_and_node_labels_are_validated() {
        let svc = |body: &str| format!("{HEAD}  services:\n  - {body}\n");
        let e = err(&svc("{name: x/Web, ports: [{port: 80}]}"));
        assert!(
            e.starts_with("t.yaml:5:12: cluster.services[0].name: invalid service name \"Web\""),
            "{e}"
        );
        // A DNS-1035 label starts with a letter.
        assert!(err(&svc("{name: x/1web, ports: [{port: 80}]}")).contains("DNS-1035"));
        let e = err(&svc("{name: x/web, selector: {app: a}}"));
        assert!(
            e.contains("cluster.services[0].ports: Required value"),
            "{e}"
        );
        let e = err(&svc(
            "{name: x/web, selector: {app: a}, ports: [{port: 80}, {port: 81}]}",
        ));
        assert!(
            e.contains("cluster.services[0].ports[0]: name: Required value"),
            "{e}"
        );
        let e = err(&svc(
            "{name: x/web, ports: [{name: a, port: 80}, {name: b, port: 80}]}",
        ));
        assert!(e.contains("ports[1]: Duplicate value: port 80/TCP"), "{e}");
        let e = err(&svc(
            "{name: x/web, ports: [{port: 80, targetPort: 70000}]}",
        ));
        assert!(
            e.contains("targetPort 70000 must be between 1 and 65535"),
            "{e}"
        );
        let e = err(&svc(
            "{name: x/web, ports: [{port: 80, targetPort: Web_Port}]}",
        ));
        assert!(e.contains("ports[0].targetPort: invalid targetPort"), "{e}");
        let e = err(&svc(
            "{name: x/web, endpoints: [10.1.1.1], ports: [{port: 80, targetPort: http}]}",
        ));
        assert!(
            e.contains("named targetPort \"http\" on a service without selector"),
            "{e}"
        );
        let e = err(&svc("{name: x/web, ports: [{port: 80, protocol: ICMP}]}"));
        assert!(e.contains("ports[0].protocol: Unsupported value"), "{e}");
        let e = err(&svc(
            "{name: x/web, clusterIP: 10.0.0.1, ports: [{port: 80}]}",
        ));
        assert!(
            e.contains("cluster.services[0].clusterIP: 10.0.0.1 is not in the valid range of the service CIDR 10.96.0.0/12"),
            "{e}"
        );
        let e = err(&svc("{name: x/web, clusterIP: nope, ports: [{port: 80}]}"));
        assert!(e.contains("must be a valid IP address or `None`"), "{e}");
        let e = err(&svc("{name: x/web, selector: {}, ports: [{port: 80}]}"));
        assert!(
            e.contains("cluster.services[0].selector: an empty selector"),
            "{e}"
        );
        let e = err(&svc(
            "{name: x/web, selector: {app: a}, endpoints: [10.1.1.1], ports: [{port: 80}]}",
        ));
        assert!(e.contains("selector or fixed endpoints, not both"), "{e}");
        let e = err(&svc(
            "{name: x/web, endpoints: [127.0.0.1], ports: [{port: 80}]}",
        ));
        assert!(
            e.contains("cluster.services[0].endpoints[0]: 127.0.0.1 cannot be an endpoint address"),
            "{e}"
        );
        let e = err(&svc(
            "{name: x/web, selector: {app: -bad}, ports: [{port: 80}]}",
        ));
        assert!(
            e.contains("cluster.services[0].selector.app: invalid label value"),
            "{e}"
        );
        let e = err(&svc("{name: x/web, ports: [{port: 80}], colour: red}"));
        assert!(e.contains("colour"), "{e}");
        // Headless services need no port.
        assert!(
            scenario::parse(Path::new("t.yaml"), &svc("{name: x/web, clusterIP: None}")).is_ok()
        );
        let e = err("name: t\ncluster:\n  nodes:\n  - {name: n1, labels: {zone: -a}}\n");
        assert!(
            e.starts_with("t.yaml:4:31: cluster.nodes[0].labels.zone: invalid label value"),
            "{e}"
        );
    }

    #[test]
    fn service_probe_errors_are_located() {
        let world = "name: t\ncluster:\n  namespaces: [{name: x}]\n  pods: [{name: x/a, labels: {app: a}}, {name: x/b, labels: {app: b}}]\n  services:\n  - {name: x/a, selector: {app: a}, ports: [{port: 80}]}\n  - {name: x/none, selector: {app: zz}, ports: [{port: 80}]}\n  - {name: x/hl, clusterIP: None, selector: {app: a}}\nsteps:\n- expect:\n";
        let probe = |p: &str| {
            let loaded =
                scenario::parse(Path::new("t.yaml"), &format!("{world}  - {p}\n")).unwrap();
            crate::engine::world_after(&loaded, None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = probe("{from: svc:x/a, to: x/b, port: 80, protocol: TCP, verdict: allow}");
        assert!(
            e.starts_with("t.yaml:11:5: steps[0].expect[0]: \"svc:x/a\" cannot be a source"),
            "{e}"
        );
        let e = probe("{from: x/b, to: svc:x/zz, port: 80, protocol: TCP, verdict: allow}");
        assert!(e.contains("svc:x/zz: no service x/zz"), "{e}");
        let e = probe("{from: x/b, to: svc:x/a, port: 81, protocol: TCP, verdict: allow}");
        assert!(
            e.contains("service x/a has no port 81/TCP (its ports: 80/TCP)"),
            "{e}"
        );
        let e = probe("{from: x/b, to: svc:x/none, port: 80, protocol: TCP, verdict: allow}");
        assert!(e.contains("DROP_NO_SERVICE"), "{e}");
        let e = probe("{from: x/b, to: svc:x/hl, port: 80, protocol: TCP, verdict: allow}");
        assert!(e.contains("headless"), "{e}");
        let e = probe("{from: x/a, to: svc:x/a, port: 80, protocol: TCP, verdict: allow}");
        assert!(e.contains("service loopback"), "{e}");
        let e = probe("{from: x/b, to: svc:x/a, protocol: ICMP, verdict: allow}");
        assert!(e.contains("not ICMP"), "{e}");
        assert_eq!(
            probe("{from: x/b, to: svc:x/a, port: 80, protocol: TCP, verdict: allow}"),
            ""
        );
    }
}
