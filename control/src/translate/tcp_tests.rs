//! L4 chains as pilot builds them for a sidecar (tls.go, networkfilter.go), on Istio's
//! tcp-echo sample and on inline rules.

use std::time::Duration;

use trellis_engine::config::{TcpDestination, DEFAULT_TCP_IDLE_TIMEOUT};

use super::super::registry::{Registry, Service, ServiceEndpoint, ServicePort};
use super::super::{translate, translate_for, Translation, Workload};
use crate::istio::{load_file, parse_str};

fn registry() -> Registry {
    let ip = |n: u8| std::net::IpAddr::from([10, 0, 1, n]);
    let mut echo = Service::kubernetes("tcp-echo", "default", &[]);
    // Ports as tcp-echo-services.yaml declares them: names say TCP.
    echo.ports = vec![
        ServicePort {
            number: 9000,
            name: "tcp".into(),
            protocol: Some("TCP".into()),
        },
        ServicePort {
            number: 9001,
            name: "tcp-other".into(),
            protocol: Some("TCP".into()),
        },
    ];
    echo = echo
        .with_endpoint(ServiceEndpoint::new(
            ip(1),
            &[("app", "tcp-echo"), ("version", "v1")],
        ))
        .with_endpoint(ServiceEndpoint::new(
            ip(2),
            &[("app", "tcp-echo"), ("version", "v2")],
        ));
    let mut db = Service::kubernetes("db", "default", &[]);
    db.ports = vec![ServicePort {
        number: 443,
        name: "tls".into(),
        protocol: Some("TLS".into()),
    }];
    db = db.with_endpoint(ServiceEndpoint::new(ip(3), &[]));
    let web = Service::kubernetes("web", "default", &[80])
        .with_endpoint(ServiceEndpoint::new(ip(4), &[]));
    Registry {
        services: vec![echo, db, web],
        ..Default::default()
    }
}

const SUBSETS: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  trafficPolicy:
    connectionPool: {tcp: {idleTimeout: 30s}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

fn run(yaml: &str) -> Translation {
    let set = parse_str(&format!("{SUBSETS}\n---\n{yaml}"), "test.yaml").unwrap();
    translate(&set, &registry())
}

fn dests(pairs: &[(&str, u32)]) -> Vec<TcpDestination> {
    pairs
        .iter()
        .map(|(c, w)| TcpDestination {
            cluster: c.to_string(),
            weight: *w,
        })
        .collect()
}

/// buildSidecarOutboundTCPFilterChainOpts with no VirtualService: each TCP port gets its
/// service's cluster (buildOutboundNetworkFiltersWithSingleDestination), with the
/// DestinationRule's `tcp.idleTimeout`; HTTP ports get none, and the TLS port is matched by
/// the service's host name as SNI (no service address).
#[test]
fn tcp_ports_without_rules_go_to_their_own_cluster() {
    let t = run("");
    let routes = &t.config.tcp_routes;
    let echo: Vec<_> = routes
        .iter()
        .filter(|r| r.name.contains("tcp-echo"))
        .collect();
    assert_eq!(echo.len(), 2, "{routes:#?}");
    assert_eq!(echo[0].port, Some(9000));
    assert_eq!(
        echo[0].destinations,
        dests(&[("outbound|9000||tcp-echo.default.svc.cluster.local", 100)])
    );
    assert_eq!(echo[0].idle_timeout, Some(Duration::from_secs(30)));
    let db = routes
        .iter()
        .find(|r| r.port == Some(443))
        .expect("db's chain");
    assert_eq!(
        db.sni_hosts,
        vec!["db.default.svc.cluster.local".to_string()]
    );
    assert_eq!(db.idle_timeout, Some(DEFAULT_TCP_IDLE_TIMEOUT));
    assert!(routes.iter().all(|r| r.port != Some(80)), "HTTP stays HTTP");
    assert!(
        !t.diagnostics
            .iter()
            .any(|d| d.message.contains("not supported")),
        "{:?}",
        t.diagnostics
    );
}

/// The tcp-echo sample's weighted rule, bound to sidecars: buildOutboundNetworkFiltersWith
/// WeightedClusters keeps both subsets with their weights; `port: 9000` applies on 9000
/// only (matchTCP), and 9001 keeps the default.
#[test]
fn weighted_tcp_rule_on_its_port() {
    let sample = "/work/shared/istio/samples/tcp-echo/tcp-echo-20-v2.yaml";
    let original = std::fs::read_to_string(sample).expect("the tcp-echo sample");
    let mesh = original
        .replace("- tcp-echo-gateway", "- mesh")
        .replace("- port: 31400", "- port: 9000")
        .replace("- \"*\"", "- tcp-echo");
    let t = run(&mesh);
    let on_9000: Vec<_> = t
        .config
        .tcp_routes
        .iter()
        .filter(|r| r.port == Some(9000))
        .collect();
    assert_eq!(on_9000.len(), 1, "the rule is the catch-all: {on_9000:#?}");
    assert_eq!(on_9000[0].name, "tcp-echo.default");
    assert_eq!(
        on_9000[0].destinations,
        dests(&[
            ("outbound|9000|v1|tcp-echo.default.svc.cluster.local", 80),
            ("outbound|9000|v2|tcp-echo.default.svc.cluster.local", 20),
        ])
    );
    let on_9001: Vec<_> = t
        .config
        .tcp_routes
        .iter()
        .filter(|r| r.port == Some(9001))
        .collect();
    assert_eq!(
        on_9001[0].name,
        "outbound|9001||tcp-echo.default.svc.cluster.local"
    );
    // As shipped, the rule is bound to a gateway only: sidecars keep their defaults.
    let set = load_file(std::path::Path::new(sample)).unwrap();
    let t = translate(&set, &registry());
    assert!(t
        .config
        .tcp_routes
        .iter()
        .all(|r| r.name.starts_with("outbound|")));
}

/// Subnet-only matches make chains for their subnets ahead of the default; a later catch-all
/// ends the list (the `break TcpLoop` in pilot); a sourceLabels match is decided per proxy.
#[test]
fn subnets_catch_all_and_source_labels() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{destinationSubnets: [10.0.1.2/32]}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{sourceLabels: {app: canary}}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - route: [{destination: {host: tcp-echo, subset: v1}}]
  - route: [{destination: {host: tcp-echo, subset: v2}}]
"#;
    let set = parse_str(&format!("{SUBSETS}\n---\n{vs}"), "t.yaml").unwrap();
    let plain = translate(&set, &registry());
    let on_9000: Vec<_> = plain
        .config
        .tcp_routes
        .iter()
        .filter(|r| r.port == Some(9000))
        .collect();
    assert_eq!(on_9000.len(), 2, "{on_9000:#?}");
    assert_eq!(on_9000[0].destination_subnets[0].to_string(), "10.0.1.2/32");
    assert!(
        on_9000[1].destinations[0].cluster.contains("|v1|"),
        "third rule ends the list"
    );
    let canary = Workload::new("default", &[("app", "canary")]);
    let t = translate_for(&set, &registry(), &canary);
    let on_9000: Vec<_> = t
        .config
        .tcp_routes
        .iter()
        .filter(|r| r.port == Some(9000))
        .collect();
    assert!(
        on_9000[1].destinations[0].cluster.contains("|v2|"),
        "{on_9000:#?}"
    );
}

/// buildSidecarOutboundTLSFilterChainOpts: a chain per match with its sniHosts; once a TLS
/// rule applies, the service's own SNI chain is not added.
#[test]
fn tls_rules_route_by_sni() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db]
  tls:
  - match: [{port: 443, sniHosts: [a.db.example]}, {port: 443, sniHosts: ["*.db.example"]}]
    route: [{destination: {host: tcp-echo, port: {number: 9001}}}]
  - match: [{port: 443, sniHosts: [a.db.example]}]
    route: [{destination: {host: db}}]
"#;
    let t = run(vs);
    let on_443: Vec<_> = t
        .config
        .tcp_routes
        .iter()
        .filter(|r| r.port == Some(443))
        .collect();
    assert_eq!(
        on_443.len(),
        2,
        "the repeated SNI set is handled once: {on_443:#?}"
    );
    assert_eq!(on_443[0].sni_hosts, vec!["a.db.example".to_string()]);
    assert_eq!(on_443[1].sni_hosts, vec!["*.db.example".to_string()]);
    assert_eq!(
        on_443[0].destinations,
        dests(&[("outbound|9001||tcp-echo.default.svc.cluster.local", 100)])
    );
    assert_eq!(
        on_443[0].idle_timeout,
        Some(Duration::from_secs(30)),
        "the DR of the first destination"
    );
}

#[test]
fn unknown_destinations_and_bad_rules_are_reported() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - route: [{destination: {host: nowhere}}]
  - match: "not a list"
    route: []
"#;
    let t = run(vs);
    let text: Vec<String> = t.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|d| d.contains("nowhere") && d.contains("IST0101")),
        "{text:#?}"
    );
    assert!(text.iter().any(|d| d.contains("spec.tcp[1]")), "{text:#?}");
    // The catch-all rule still takes port 9000, with nowhere to go (pilot's chain to a
    // missing cluster): its connections are closed.
    let on_9000: Vec<_> = t
        .config
        .tcp_routes
        .iter()
        .filter(|r| r.port == Some(9000))
        .collect();
    assert_eq!(on_9000.len(), 1, "{on_9000:#?}");
    assert!(on_9000[0].destinations.is_empty());
}
