//! `trellis explain --gateway`: how the gateway proxy would serve a request, from the real
//! binary against Istio's own bookinfo networking samples (`../shared/istio`): the Gateway
//! server that takes the port, the bound VirtualService rule (buildGatewayHTTPRouteConfig in
//! pilot/pkg/networking/core/gateway.go, decided by the engine's router), or 404 NR.
//! On an AUTO_PASSTHROUGH port, the chain taken by the ClientHello's SNI and ALPN protocols.

use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::shared_dir;

fn explain(args: &[&str]) -> Output {
    let dir = shared_dir().join("istio/samples/bookinfo/networking");
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["explain", "--dir"])
        .arg(dir)
        .args(["--gateway", "--labels", "istio=ingressgateway"])
        .args(args)
        .output()
        .expect("trellis runs")
}

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = explain(&all);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn bookinfo_requests_at_the_ingress_gateway() {
    let page = ["--host", "bookinfo.example", "--port", "8080"];
    let r = json(&[&page[..], &["--path", "/productpage"]].concat());
    assert_eq!(r["server"]["gateway"], "default/bookinfo-gateway", "{r}");
    assert_eq!(r["server"]["index"], 0);
    assert_eq!(r["tls"], Value::Null);
    assert_eq!(r["request"]["outcome"], "matched", "{r}");
    assert_eq!(
        r["request"]["matched"]["action"]["destinations"][0]["cluster"],
        "outbound|9080||productpage.default.svc.cluster.local",
        "{r}"
    );
    assert_eq!(
        r["request"]["virtual_host"]["virtual_service"]["name"], "bookinfo",
        "{r}"
    );
    // A path none of bookinfo's matches takes: 404 NR at the gateway.
    let r = json(&[&page[..], &["--path", "/reviews/1"]].concat());
    assert_eq!(r["request"]["outcome"], "no_route", "{r}");
    // A port no Gateway server is on: refused.
    let r = json(&["--host", "bookinfo.example", "--port", "9999"]);
    assert_eq!(r["listener"], Value::Null, "{r}");
    // Text, as a user reads it.
    let out = explain(&[&page[..], &["--path", "/static/x.css"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("Server: default/bookinfo-gateway servers[0]"),
        "{text}"
    );
    assert!(text.contains("TLS: not terminated here"), "{text}");
}

/// An east-west gateway (Istio's `cross-network-gateway`: AUTO_PASSTHROUGH on 15443 for
/// `*.local`): `--sni outbound_.9080_._.<host>` with `--alpn istio` takes the service's chain;
/// the same SNI without a mesh ALPN is closed, and the report says which ALPNs the chain wants
/// (builtAutoPassthroughFilterChains' `applicationProtocols: allIstioMtlsALPNs`,
/// pilot/pkg/networking/core/gateway.go).
#[test]
fn auto_passthrough_connections_need_istio_alpns() {
    const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
"#;
    let dir = std::env::temp_dir().join(format!("trellis-explain-ew-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("ew.yaml"), YAML).expect("yaml");
    let sni = "outbound_.9080_._.reviews.default.svc.cluster.local";
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["explain", "--dir"])
            .arg(&dir)
            .args(["--gateway", "--labels", "istio=eastwestgateway"])
            .args([
                "--host",
                "reviews.default.svc.cluster.local",
                "--port",
                "15443",
            ])
            .args(["--sni", sni])
            .args(extra)
            .output()
            .expect("trellis runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let with_mesh_alpn = run(&["--alpn", "h2,istio", "--json"]);
    let r: Value = serde_json::from_str(&with_mesh_alpn).expect("JSON");
    assert_eq!(r["connection"]["outcome"], "matched", "{r}");
    assert_eq!(r["connection"]["chain"]["destinations"][0]["cluster"], sni);
    assert_eq!(r["connection"]["alpn"], serde_json::json!(["h2", "istio"]));
    let text = run(&[]);
    assert!(text.contains("no ALPN"), "{text}");
    assert!(
        text.contains("No chain takes it (by the ClientHello): the connection is closed (NR)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "chain {sni} takes this SNI but requires one of the ALPN protocols istio, istio-peer-exchange, istio-http/1.0, istio-http/1.1, istio-h2"
        )),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
