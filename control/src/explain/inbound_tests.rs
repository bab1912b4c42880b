//! The capture inbound listener's protocol, chain, mTLS and RBAC for one workload port, as
//! pilot builds the virtual inbound listener (`buildInboundChainConfigs`,
//! `buildInboundPassthroughChains` in pilot/pkg/networking/core/listener_inbound.go; the
//! port's protocol from `kube.ConvertProtocol`, pkg/config/kube/conversion.go).

use super::*;

const YAML: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports:
  - {name: mysql, port: 3306}
  - {name: admin, port: 8080, targetPort: 18080, appProtocol: http}
  - {name: metrics, port: 9090}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata:
      labels: {app: db}
      annotations: {trellis.dev/addresses: "10.0.0.9"}
    spec:
      serviceAccountName: db
      containers: [{name: db, image: example/db}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9090: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: clients, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]
  - to: [{operation: {methods: [GET]}}]
"#;

fn explain(port: u16) -> InboundReport {
    let snapshot = Snapshot::from_files(&[("db.yaml".into(), YAML.into())]).expect("yaml");
    let req = InboundRequest {
        namespace: "shop".into(),
        labels: BTreeMap::from([("app".to_string(), "db".to_string())]),
        port,
    };
    explain_inbound(&snapshot, &req).expect("explain")
}

/// ConvertProtocol reads `mysql` from the port name: the TCP family (`IsTCP`), a chain to
/// `inbound|3306||` behind the network RBAC of `BuildTCP`, which drops the ALLOW rule naming
/// an HTTP method (it never matches a connection); the workload policy's STRICT applies.
#[test]
fn a_tcp_port_by_name_takes_its_own_chain_with_network_rbac() {
    let r = explain(3306);
    assert_eq!(r.protocol, InboundProtocol::Tcp, "{r}");
    assert_eq!(r.workload.instance.as_deref(), Some("db-0"));
    assert_eq!(r.workload.service_account, "db");
    let by = r.declared_by.as_ref().expect("declared");
    assert_eq!(
        (by.service.as_str(), by.name.as_str()),
        ("db.shop.svc.cluster.local", "mysql")
    );
    assert!(r.why.contains("port name \"mysql\""), "{r}");
    assert_eq!(r.chain.as_deref(), Some("inbound|3306||"));
    assert_eq!(r.mtls, "STRICT");
    assert_eq!(r.network_rbac.len(), 1, "{r}");
    assert_eq!(r.network_rbac[0].action, "ALLOW");
    assert_eq!(
        r.network_rbac[0].policies,
        vec!["ns[shop]-policy[clients]-rule[0]".to_string()]
    );
    assert!(r.http_rbac.is_empty());
    let text = r.to_string();
    assert!(text.contains("Protocol: TCP"), "{text}");
    assert!(
        text.contains("Chain: inbound|3306|| (network RBAC"),
        "{text}"
    );
}

/// `appProtocol` wins over the port name, and chains are keyed by the target port: 18080 is
/// HTTP (the HTTP connection manager, both ALLOW rules), the service port 8080 is not declared.
#[test]
fn an_http_port_by_app_protocol_at_its_target_port() {
    let r = explain(18080);
    assert_eq!(r.protocol, InboundProtocol::Http, "{r}");
    assert!(r.why.contains("appProtocol \"http\""), "{r}");
    assert_eq!(r.chain, None);
    assert_eq!(r.http_rbac[0].policies.len(), 2, "{r}");
    assert!(r.to_string().contains("HTTP connection manager"), "{r}");

    let r = explain(8080);
    assert_eq!(r.protocol, InboundProtocol::Detect, "{r}");
    assert!(r.declared_by.is_none());
    assert_eq!(r.chain.as_deref(), Some("InboundPassthroughCluster"));
}

/// A port name that names no protocol is `UnsupportedProtocol`: sniffed, with both the TCP
/// chain and the HTTP RBAC possible; `portLevelMtls` keys on the target port.
#[test]
fn an_unknown_protocol_is_sniffed_and_port_level_mtls_applies() {
    let r = explain(9090);
    assert_eq!(r.protocol, InboundProtocol::Detect, "{r}");
    assert!(r.why.contains("names no protocol"), "{r}");
    assert_eq!(r.chain.as_deref(), Some("inbound|9090||"));
    assert_eq!(r.mtls, "PERMISSIVE");
    assert!(!r.network_rbac.is_empty() && !r.http_rbac.is_empty(), "{r}");
}

/// Labels no workload has: explained as a workload of just those labels (no Service selects
/// it: every port passes through, sniffed).
#[test]
fn labels_of_no_workload() {
    let snapshot = Snapshot::from_files(&[("db.yaml".into(), YAML.into())]).expect("yaml");
    let req = InboundRequest {
        namespace: "shop".into(),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        port: 3306,
    };
    let r = explain_inbound(&snapshot, &req).expect("explain");
    assert_eq!(r.workload.instance, None);
    assert_eq!(r.protocol, InboundProtocol::Detect);
    assert!(r.why.contains("no Service selecting the workload"), "{r}");
    assert!(r.to_string().contains("no Pod or Deployment"), "{r}");
}

/// A workload without an address is no Service's endpoint (the registry's endpoints are
/// addressed instances, as pilot finds a proxy's `ServiceTargets` by its IP), so the plane
/// pushes no port for it: every port passes through, sniffed, and the report says why.
#[test]
fn a_workload_without_an_address_is_no_endpoint() {
    let yaml = YAML.replace("annotations: {trellis.dev/addresses: \"10.0.0.9\"}", "");
    let snapshot = Snapshot::from_files(&[("db.yaml".into(), yaml)]).expect("yaml");
    let req = InboundRequest {
        namespace: "shop".into(),
        labels: BTreeMap::from([("app".to_string(), "db".to_string())]),
        port: 3306,
    };
    let r = explain_inbound(&snapshot, &req).expect("explain");
    assert_eq!(r.workload.instance.as_deref(), Some("db"), "{r}");
    assert_eq!(r.protocol, InboundProtocol::Detect, "{r}");
    assert!(r.why.contains("db has no address"), "{r}");
}
