use super::*;
use crate::istio::parse_str;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{port: 9000, sourceLabels: {app: canary}}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9000}]
    route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db.example.com]
  tls:
  - match: [{port: 443, sniHosts: [db.example.com]}]
    route: [{destination: {host: db-primary}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web}}]}]
"#;

fn explain(req: ConnectionRequest) -> ConnectionReport {
    let set = parse_str(YAML, "l4.yaml").expect("yaml");
    explain_connection(&set, &req).expect("explain")
}

fn conn(host: &str, port: u16, sni: Option<&str>) -> ConnectionRequest {
    ConnectionRequest {
        host: host.into(),
        port,
        sni: sni.map(str::to_string),
        ..ConnectionRequest::default()
    }
}

/// matchTCP (pilot/pkg/networking/core/tls.go): the first `tcp` rule whose static predicates
/// hold for the client is the port's chain; its weighted destinations are reported.
#[test]
fn a_tcp_connection_takes_the_first_applying_rule() {
    let r = explain(conn("tcp-echo", 9000, None));
    assert_eq!(r.outcome, ConnectionOutcome::Matched, "{r}");
    let chain = r.chain.as_ref().expect("chain");
    assert_eq!(chain.virtual_service.as_deref(), Some("tcp-echo.default"));
    assert_eq!(chain.rule.as_deref(), Some("tcp[1]"));
    let weights: Vec<(Option<&str>, u32)> = (chain.destinations.iter())
        .map(|d| (d.subset.as_deref(), d.weight))
        .collect();
    assert_eq!(weights, vec![(Some("v1"), 80), (Some("v2"), 20)]);
    assert!(
        r.to_string()
            .contains("from VirtualService tcp-echo.default tcp[1]"),
        "{r}"
    );

    let mut canary = conn("tcp-echo", 9000, None);
    canary.source_labels.insert("app".into(), "canary".into());
    let r = explain(canary);
    let chain = r.chain.expect("chain");
    assert_eq!(chain.rule.as_deref(), Some("tcp[0]"));
    assert_eq!(chain.destinations[0].subset.as_deref(), Some("v2"));
}

/// buildSidecarOutboundTLSFilterChainOpts: a `tls` rule is a chain for its `sniHosts`; a name
/// no chain serves finds none (Envoy closes the connection), and an HTTP port is not L4.
#[test]
fn tls_by_sni_no_chain_and_http() {
    let r = explain(conn("db.example.com", 443, Some("db.example.com")));
    assert_eq!(r.outcome, ConnectionOutcome::Matched, "{r}");
    assert!(r.needs_sni);
    let chain = r.chain.expect("chain");
    assert_eq!(chain.rule.as_deref(), Some("tls[0]"));
    assert_eq!(chain.sni_hosts, vec!["db.example.com".to_string()]);
    assert_eq!(
        chain.destinations[0].host.as_deref(),
        Some("db-primary.default.svc.cluster.local")
    );

    let r = explain(conn("db.example.com", 443, Some("other.example.com")));
    assert_eq!(r.outcome, ConnectionOutcome::NoChain, "{r}");
    assert!(r.to_string().contains("closed (NR)"), "{r}");

    let r = explain(conn("web", 80, None));
    assert_eq!(r.outcome, ConnectionOutcome::NotL4, "{r}");
}
