//! The proxy config file: the examples load, errors name the field, gateway mode.

use super::*;
use std::time::Duration;
use trellis_engine::config::PortProtocol;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/proxy.yaml")
}

#[test]
fn example_file_loads_cleanly() {
    let loaded = load_proxy_config(&example()).unwrap();
    assert!(
        loaded.warnings.iter().all(|w| w.severity == Severity::Info),
        "{:#?}",
        loaded.warnings
    );
    let c = &loaded.config;
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].address, "127.0.0.1:15001".parse().unwrap());
    assert_eq!(c.listeners[1].direction, Direction::Inbound);
    let v1 = c
        .cluster("outbound|9080|v1|reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(v1.endpoints[0].address, "127.0.0.1:9081".parse().unwrap());
    assert!(c.route_table("outbound").is_some());
}

#[test]
fn unknown_keys_warn_and_bad_values_fail_with_field() {
    let text = "listeners:\n  - {address: \"127.0.0.1:1\", colour: red}\nservices: []\n";
    let loaded = parse_proxy_config(text, "p.yaml", Path::new(".")).unwrap();
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.field.as_deref() == Some("listeners[0].colour")));
    let err = parse_proxy_config(
        "listeners:\n  - {address: nope}\n",
        "p.yaml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("p.yaml") && err.contains("listeners[0].address"),
        "{err}"
    );
    let err = parse_proxy_config("http: {idleTimeout: later}\n", "p.yaml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("http.idleTimeout") && err.contains("invalid duration"),
        "{err}"
    );
}

#[test]
fn inline_istio_resources_and_http_settings_apply() {
    let text = r#"
listeners: [{address: "127.0.0.1:15001"}]
services:
  - host: ratings
    ports: [9080]
    endpoints:
      - {address: 127.0.0.1, ports: {9080: 9181}, labels: {version: v1}}
http: {headerReadTimeout: 2s}
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {name: ratings}
      spec:
        host: ratings
        subsets: [{name: v1, labels: {version: v1}}]
"#;
    let loaded = parse_proxy_config(text, "p.yaml", Path::new(".")).unwrap();
    let c = &loaded.config;
    assert_eq!(c.http.header_read_timeout, Duration::from_secs(2));
    let v1 = c
        .cluster("outbound|9080|v1|ratings.default.svc.cluster.local")
        .unwrap();
    assert_eq!(v1.endpoints[0].address, "127.0.0.1:9181".parse().unwrap());
}

/// MeshConfig's `pathNormalization` values map as pilot's `listener_builder.go` switch does;
/// absent, Istio's default `BASE`.
#[test]
fn path_normalization_follows_mesh_config_values() {
    use trellis_engine::path::PathNormalization as P;
    let mode = |yaml: &str| {
        let text = format!("listeners: [{{address: \"127.0.0.1:15001\"}}]\n{yaml}");
        parse_proxy_config(&text, "p.yaml", Path::new("."))
            .map(|l| l.config.http.path_normalization)
            .map_err(|e| e.to_string())
    };
    assert_eq!(mode(""), Ok(P::Base));
    for (name, want) in [
        ("DEFAULT", P::Base),
        ("NONE", P::None),
        ("BASE", P::Base),
        ("MERGE_SLASHES", P::MergeSlashes),
        ("DECODE_AND_MERGE_SLASHES", P::DecodeAndMergeSlashes),
    ] {
        let yaml = format!("http: {{pathNormalization: {{normalization: {name}}}}}\n");
        assert_eq!(mode(&yaml), Ok(want), "{name}");
    }
    let err = mode("http: {pathNormalization: {normalization: SOMETIMES}}\n").unwrap_err();
    assert!(
        err.contains("http.pathNormalization.normalization"),
        "{err}"
    );
}

#[test]
fn gateway_example_file_loads_cleanly() {
    let path = example().with_file_name("gateway.yaml");
    let loaded = load_proxy_config(&path).unwrap();
    assert!(
        loaded.warnings.iter().all(|w| w.severity == Severity::Info),
        "{:#?}",
        loaded.warnings
    );
    let l = &loaded.config.listeners;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].address, "127.0.0.1:18080".parse().unwrap());
}

#[test]
fn gateway_section_and_overrides_make_a_gateway_proxy() {
    let text = r#"
services:
  - host: productpage
    ports: [9080]
    endpoints: [{address: "127.0.0.1:9081"}]
gateway: {labels: {istio: ingressgateway}, portOffset: 10000}
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {name: gw}
      spec:
        selector: {istio: ingressgateway}
        servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
"#;
    let loaded = parse_proxy_config(text, "p.yaml", Path::new(".")).unwrap();
    let c = &loaded.config;
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address, "0.0.0.0:18080".parse().unwrap());
    assert_eq!(c.listeners[0].route_table, "http.8080");
    assert!(c.route_table(OUTBOUND_ROUTE_TABLE).is_none());
    let overrides = ProxyOverrides {
        bind_address: Some(IpAddr::from([127, 0, 0, 1])),
        port_offset: Some(0),
        ..ProxyOverrides::default()
    };
    let loaded = parse_proxy_config_with(text, "p.yaml", Path::new("."), &overrides).unwrap();
    assert_eq!(
        loaded.config.listeners[0].address,
        "127.0.0.1:8080".parse().unwrap()
    );
    // Without the section, --gateway with other labels: nothing selected, said so.
    let sidecar_file = text.replace(
        "gateway: {labels: {istio: ingressgateway}, portOffset: 10000}\n",
        "",
    );
    let overrides = ProxyOverrides {
        gateway: true,
        labels: BTreeMap::from([("istio".to_string(), "egressgateway".to_string())]),
        ..ProxyOverrides::default()
    };
    let loaded =
        parse_proxy_config_with(&sidecar_file, "p.yaml", Path::new("."), &overrides).unwrap();
    assert!(loaded.config.listeners.is_empty());
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.message.contains("no Gateway server selects")));
    // And as a sidecar: the mesh table, no gateway listener.
    let loaded = parse_proxy_config(&sidecar_file, "p.yaml", Path::new(".")).unwrap();
    assert!(loaded.config.route_table(OUTBOUND_ROUTE_TABLE).is_some());
}

#[test]
fn authorization_policies_guard_inbound_listeners_only() {
    let text = r#"
listeners:
  - {name: out, address: "127.0.0.1:15001", direction: outbound}
  - {name: in, address: "127.0.0.1:15006", direction: inbound}
workload: {namespace: shop, labels: {app: web}}
istio:
  resources:
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: web-viewer, namespace: shop}
      spec:
        selector: {matchLabels: {app: web}}
        rules: [{to: [{operation: {methods: [GET]}}]}]
    - apiVersion: security.istio.io/v1
      kind: AuthorizationPolicy
      metadata: {name: ext, namespace: shop}
      spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
"#;
    let loaded = parse_proxy_config(text, "p.yaml", Path::new(".")).unwrap();
    let c = &loaded.config;
    assert!(c.listeners[0].authorization.is_none());
    let authz = c.listeners[1]
        .authorization
        .as_ref()
        .expect("inbound guarded");
    // CUSTOM's deny-everything-it-matches filter, then the ALLOW filter.
    assert_eq!(authz.filters.len(), 2);
    let custom: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.message.contains("CUSTOM is not supported"))
        .collect();
    assert_eq!(custom.len(), 1, "{:#?}", loaded.warnings);
    assert_eq!(
        custom[0].resource.as_deref(),
        Some("AuthorizationPolicy shop/ext")
    );
}

#[test]
fn captured_sidecar_example_has_virtual_listeners() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/captured-sidecar.yaml");
    let loaded = load_proxy_config(&path).unwrap();
    assert!(
        loaded.warnings.iter().all(|w| w.severity == Severity::Info),
        "{:#?}",
        loaded.warnings
    );
    let c = &loaded.config;
    let outbound = &c.listeners[0];
    assert_eq!(outbound.address, "0.0.0.0:15001".parse().unwrap());
    assert!(outbound.passthrough);
    assert_eq!(outbound.local_forward, None);
    let inbound = &c.listeners[1];
    assert_eq!(inbound.direction, Direction::Inbound);
    assert_eq!(inbound.local_forward, Some("127.0.0.1".parse().unwrap()));
    assert!(
        inbound.passthrough,
        "capture's inbound listener always passes through"
    );
    let table = c.route_table(&inbound.route_table).unwrap();
    assert!(
        table.virtual_hosts.is_empty(),
        "every inbound request takes the passthrough to the workload"
    );
}

#[test]
fn forward_to_is_ip_port_or_ip() {
    let listener = |forward: &str| {
        format!(
            "listeners:\n  - {{address: \"0.0.0.0:15006\", direction: inbound, forwardTo: \"{forward}\"}}\n"
        )
    };
    let one_port =
        parse_proxy_config(&listener("127.0.0.1:9080"), "p.yaml", Path::new(".")).unwrap();
    assert_eq!(one_port.config.listeners[0].local_forward, None);
    assert!(one_port.config.cluster("inbound|9080||").is_some());
    let capture = parse_proxy_config(&listener("::1"), "p.yaml", Path::new(".")).unwrap();
    assert_eq!(
        capture.config.listeners[0].local_forward,
        Some("::1".parse().unwrap())
    );
    let err = parse_proxy_config(&listener("localhost"), "p.yaml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("listeners[0].forwardTo"), "{err}");
    assert!(err.contains("original port"), "{err}");
}

/// Ports written out may name their protocol (or say it by name prefix, as Istio reads port
/// names): TCP/Mongo/TLS ports get L4 chains, bare numbers stay HTTP.
#[test]
fn ports_with_protocols_become_l4_chains() {
    let text = r#"
services:
  - host: mongodb
    ports: [{number: 27017, name: mongo}, 9080, {number: 8443, protocol: TLS}, {number: 81}]
    endpoints: [{address: "127.0.0.1"}]
"#;
    let loaded = parse_proxy_config(text, "p.yaml", Path::new(".")).unwrap();
    let ports: Vec<Option<u16>> = loaded.config.tcp_routes.iter().map(|r| r.port).collect();
    assert_eq!(ports, [Some(27017), Some(8443)]);
    let tls = &loaded.config.tcp_routes[1];
    assert_eq!(tls.sni_hosts, ["mongodb.default.svc.cluster.local"]);
    let err = parse_proxy_config(
        "services:\n  - {host: x, ports: [{number: 0, name: tcp}]}\n",
        "p.yaml",
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.to_string().contains("services[0].ports"), "{err}");
}

/// A capture listener's protocol table comes from the `services:` whose endpoints are the
/// `workload:` (pilot's getFilterChainsByServicePort, by target port), and its non-HTTP
/// ports get L4 chains (buildInboundChainConfigs) ahead of the passthrough chain.
#[test]
fn capture_listeners_carry_the_workload_ports_protocols() {
    let text = r#"
listeners:
  - {name: inbound, address: "127.0.0.1:15006", direction: inbound, forwardTo: "127.0.0.1", protocolDetectionTimeout: 5s}
workload: {labels: {app: db}}
services:
  - host: db
    ports: [{number: 3306, name: mysql}, 8080, {number: 9000, name: admin}]
    endpoints:
      - {address: "10.0.0.5", ports: {3306: 13306}, labels: {app: db}}
  - host: web
    ports: [{number: 7000, name: tcp-web}]
    endpoints:
      - {address: "10.0.0.6", labels: {app: web}}
"#;
    let loaded = parse_proxy_config(text, "p.yaml", Path::new(".")).unwrap();
    let c = &loaded.config;
    let table = c.listeners[0]
        .inbound_protocols
        .as_deref()
        .expect("a table");
    let want = std::collections::BTreeMap::from([
        (8080, PortProtocol::Http),
        (9000, PortProtocol::Detect),
        (13306, PortProtocol::Tcp),
    ]);
    assert_eq!(table.ports, want);
    assert_eq!(table.detection_timeout, Some(Duration::from_secs(5)));
    let chains: Vec<_> = (c.tcp_routes.iter())
        .filter(|r| r.listener.as_deref() == Some("inbound"))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        chains,
        [
            "inbound|9000||",
            "inbound|13306||",
            "InboundPassthroughCluster"
        ]
    );
    // An IP:PORT inbound listener has no table: its protocol is its own `protocol:`.
    let one_port = "listeners:\n  - {address: \"127.0.0.1:15006\", direction: inbound, forwardTo: \"127.0.0.1:9080\"}\n";
    let loaded = parse_proxy_config(one_port, "p.yaml", Path::new(".")).unwrap();
    assert!(loaded.config.listeners[0].inbound_protocols.is_none());
    assert!(loaded
        .config
        .tcp_routes
        .iter()
        .all(|r| r.listener.is_none()));
}
