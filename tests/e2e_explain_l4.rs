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
