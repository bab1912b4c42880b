//! A gateway's TCP and TLS servers (createGatewayTCPFilterChainOpts,
//! buildGatewayNetworkFiltersFromTCPRoutes and buildGatewayNetworkFiltersFromTLSRoutes in
//! pilot/pkg/networking/core/gateway.go): which rule becomes each L4 chain.

use std::collections::BTreeMap;

use super::*;
use crate::istio::parse_str;
use crate::translate::Service;

fn registry() -> Registry {
    Registry {
        services: ["tcp-a", "tcp-b", "db-a", "db-b"]
            .iter()
            .map(|n| Service::kubernetes(n, "default", &[9000]))
            .collect(),
        ..Default::default()
    }
}

fn run(yaml: &str) -> Translation {
    let set = parse_str(yaml, "test.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    };
    translate_gateway(&set, &registry(), &opts)
}

const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*.example.com"]
    tls: {mode: PASSTHROUGH}
---
"#;

fn chains_on(t: &Translation, port: u16) -> Vec<(Vec<String>, Vec<String>)> {
    let listener = format!("0.0.0.0_{port}");
    (t.config.tcp_routes.iter())
        .filter(|r| r.listener.as_deref() == Some(listener.as_str()))
        .map(|r| {
            let dests = r.destinations.iter().map(|d| d.cluster.clone()).collect();
            (r.sni_hosts.clone(), dests)
        })
        .collect()
}

/// TCP: the first bound VirtualService with an applying `tcp` rule makes the one chain (the
/// loop returns at the first match); a rule for another port does not apply (isPortMatch).
#[test]
fn a_tcp_server_takes_the_first_applying_rule() {
    let yaml = format!(
        "{GATEWAY}{}",
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - match: [{port: 9999}]
    route: [{destination: {host: tcp-b}}]
  - route: [{destination: {host: tcp-a}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - route: [{destination: {host: tcp-b}}]
"#
    );
    let t = run(&yaml);
    assert_eq!(
        chains_on(&t, 31400),
        vec![(
            vec![],
            vec!["outbound|9000||tcp-a.default.svc.cluster.local".to_string()]
        )]
    );
    let origin = &t.tcp_routes[0];
    assert_eq!(origin.rule, Some(("tcp".to_string(), 1)));
}

/// PASSTHROUGH: a chain per applying `tls` match, by its sniHosts; a later match repeating an
/// SNI host is skipped (CheckDuplicates) and reported; a port with no bound rule gets a
/// catch-all without destinations, so its connections are closed, never parsed as HTTP.
#[test]
fn passthrough_chains_by_sni_and_duplicates_skipped() {
    let yaml = format!(
        "{GATEWAY}{}",
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: dbs, namespace: default}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [edge]
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: db-a}}]
  - match: [{sniHosts: [b.example.com, a.example.com]}]
    route: [{destination: {host: db-b}}]
  - match: [{sniHosts: [b.example.com]}]
    route: [{destination: {host: db-b}}]
"#
    );
    let t = run(&yaml);
    let chains = chains_on(&t, 443);
    let snis: Vec<&Vec<String>> = chains.iter().map(|(s, _)| s).collect();
    assert_eq!(
        snis,
        vec![
            &vec!["a.example.com".to_string()],
            &vec!["b.example.com".to_string()]
        ]
    );
    assert!(
        t.diagnostics
            .iter()
            .any(|d| d.message.contains("duplicate SNI")),
        "{:?}",
        t.diagnostics
    );
    // No VirtualService has tcp rules: the TCP server has no chain, so pilot omits the port's
    // listener ("must have more than 0 chains", MutableGatewayListener::build) and nothing
    // listens there (Envoy would refuse a listener without chains anyway).
    assert!(chains_on(&t, 31400).is_empty());
    assert!(!t.config.listeners.iter().any(|l| l.address.port() == 31400));
    assert!(
        (t.diagnostics.iter()).any(|d| d.message.contains("nothing listens on the port")),
        "{:?}",
        t.diagnostics
    );
}

/// buildCompleteNetworkFilters: a gateway's L4 chains carry its AuthorizationPolicies compiled
/// for TCP (a DENY on `paths` loses them and denies every connection).
#[test]
fn gateway_chains_carry_tcp_rbac() {
    let yaml = format!(
        "{GATEWAY}{}",
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: ["*"]
  gateways: [edge]
  tcp:
  - route: [{destination: {host: tcp-a}}]
"#
    );
    let set = parse_str(&yaml, "test.yaml").expect("parses");
    let opts = GatewayOptions {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..GatewayOptions::default()
    };
    let mut config = translate_gateway(&set, &registry(), &opts).config;
    security::secure_listeners(
        &mut config,
        &set,
        &opts,
        None,
        &crate::jwks_resolver::NoFetch,
    );
    assert!(!config.tcp_routes.is_empty());
    for chain in &config.tcp_routes {
        let authz = chain.authorization.as_ref().expect("network RBAC");
        let deny = authz.filters[0].rules.as_ref().expect("rules");
        assert_eq!(
            deny.policies[0].permissions,
            vec![trellis_engine::authz::Permission::And(vec![
                trellis_engine::authz::Permission::Any
            ])]
        );
    }
}
