//! `trellis explain --tcp` / `--sni`: the L4 chain a connection takes, from the real binary, as
//! a user scripts it (text and `--json`). The chain is chosen by the engine's own filter-chain
//! match after the sidecar translation (matchTCP/matchTLS in pilot/pkg/networking/core/tls.go).

use std::process::Command;

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
"#;

fn explain(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("explain")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("trellis runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn explain_reports_tcp_and_tls_chains() {
    let dir = std::env::temp_dir().join(format!("trellis-explain-l4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("l4.yaml"), YAML).expect("yaml");

    let (ok, text) = explain(&dir, &["--host", "tcp-echo:9000", "--tcp"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("Chain: tcp-echo.default from VirtualService tcp-echo.default tcp[0]"),
        "{text}"
    );
    assert!(text.contains("weight 80 (subset v1)"), "{text}");

    let (ok, json) = explain(
        &dir,
        &[
            "--host",
            "db.example.com",
            "--port",
            "443",
            "--sni",
            "db.example.com",
            "--json",
        ],
    );
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["outcome"], "matched", "{json}");
    assert_eq!(v["chain"]["rule"], "tls[0]", "{json}");
    assert_eq!(v["needs_sni"], true, "{json}");

    let (_, text) = explain(
        &dir,
        &[
            "--host",
            "db.example.com",
            "--port",
            "443",
            "--sni",
            "x.example.com",
        ],
    );
    assert!(text.contains("the connection is closed (NR)"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A workload behind `trellis init` with a Service naming its ports, a STRICT
/// PeerAuthentication with a PERMISSIVE port and an ALLOW policy.
const INBOUND_YAML: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports:
  - {name: tcp-mysql, port: 3306}
  - {name: web, port: 80, targetPort: 8080, appProtocol: http}
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
    9999: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: clients, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]
"#;

/// `explain --tcp --inbound`: the capture inbound listener's protocol per workload port, as
/// pilot's `buildInboundChainConfigs` (pilot/pkg/networking/core/listener_inbound.go) picks it
/// from the Service port (`kube.ConvertProtocol`: appProtocol, else the name's prefix); an
/// undeclared port goes to the passthrough chains and is sniffed, with its own
/// `portLevelMtls` mode (`Builder.ForPassthrough`, pilot/pkg/networking/plugin/authn/
/// authentication.go: a per-port passthrough chain for each port-level setting).
#[test]
fn explain_inbound_reports_the_capture_protocol_per_port() {
    let dir = std::env::temp_dir().join(format!("trellis-explain-in-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("db.yaml"), INBOUND_YAML).expect("yaml");
    let inbound = |port: &str, json: bool| {
        let mut args = vec![
            "--tcp",
            "--inbound",
            "--namespace",
            "shop",
            "--labels",
            "app=db",
            "--port",
            port,
        ];
        if json {
            args.push("--json");
        }
        explain(&dir, &args)
    };

    let (ok, text) = inbound("3306", false);
    assert!(ok, "{text}");
    assert!(text.contains("Protocol: TCP"), "{text}");
    assert!(text.contains("port name \"tcp-mysql\""), "{text}");
    assert!(text.contains("Chain: inbound|3306||"), "{text}");
    assert!(text.contains("mTLS: STRICT"), "{text}");
    assert!(
        text.contains("ALLOW: ns[shop]-policy[clients]-rule[0]"),
        "{text}"
    );

    let (ok, json) = inbound("8080", true);
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["protocol"], "http", "{json}");
    assert_eq!(v["declared_by"]["app_protocol"], "http", "{json}");
    assert_eq!(v["declared_by"]["port"], 80, "{json}");
    assert_eq!(v["chain"], serde_json::Value::Null, "{json}");

    let (ok, json) = inbound("9999", true);
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["protocol"], "detect", "{json}");
    assert_eq!(v["chain"], "InboundPassthroughCluster", "{json}");
    assert_eq!(v["mtls"], "DISABLE", "{json}");

    // --inbound without --tcp is refused by the argument parser.
    let (ok, _) = explain(&dir, &["--inbound", "--labels", "app=db", "--port", "3306"]);
    assert!(!ok);
    let _ = std::fs::remove_dir_all(&dir);
}
