//! `trellis explain --gateway`: how the gateway proxy would serve a request, from the real
//! binary against Istio's own bookinfo networking samples (`../shared/istio`): the Gateway
//! server that takes the port, the bound VirtualService rule (buildGatewayHTTPRouteConfig in
//! pilot/pkg/networking/core/gateway.go, decided by the engine's router), or 404 NR.

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
