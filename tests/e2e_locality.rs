//! Locality load balancing end to end: the real `trellis proxy` with a workload in
//! `us-east/zone-a`, endpoints in two localities, DestinationRules as Istio users write them,
//! and curl as the client. What pilot and Envoy do (pilot/pkg/networking/core/loadbalancer/
//! loadbalancer.go, Envoy's priority levels):
//! - with outlier detection, the mesh default (`localityLbSetting.enabled: true`) sends every
//!   request to the proxy's own locality while it is healthy, and fails over to the other
//!   locality once the local endpoint is ejected;
//! - without outlier detection nothing changes: both localities share the load;
//! - `distribute` splits by the weights given for the proxy's locality (80/20 here).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl, spawn_proxy, wait_for};

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// Body (the upstream's name) and status of one request for `host`.
fn call(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let out = curl(&[
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        &format!("host: {host}"),
        &format!("http://{addr}{path}"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.trim().to_string())
}

fn tally(addr: SocketAddr, host: &str, n: usize) -> (usize, usize, usize) {
    let (mut near, mut far, mut other) = (0, 0, 0);
    for _ in 0..n {
        match call(addr, host, "/").1.as_str() {
            "near" => near += 1,
            "far" => far += 1,
            _ => other += 1,
        }
    }
    (near, far, other)
}

#[test]
fn requests_stay_local_fail_over_and_follow_distribute_weights() {
    let mut near = Upstream::start("near").expect("upstream");
    let far = Upstream::start("far").expect("upstream");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("trellis-locality-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("proxy.yaml");
    let endpoints = format!(
        r#"    endpoints:
      - {{address: "{}", locality: us-east/zone-a}}
      - {{address: "{}", labels: {{istio-locality: us-west.zone-b}}}}"#,
        near.addr(),
        far.addr()
    );
    let mut f = std::fs::File::create(&config).expect("config file");
    write!(
        f,
        r#"listeners:
  - {{name: outbound, address: "127.0.0.1:{port}", direction: outbound}}
workload: {{namespace: default, locality: us-east/zone-a}}
services:
  - host: failover
    ports: [80]
{endpoints}
  - host: spread
    ports: [80]
{endpoints}
  - host: weighted
    ports: [80]
{endpoints}
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: failover}}
      spec:
        host: failover
        trafficPolicy:
          outlierDetection:
            consecutive5xxErrors: 1
            interval: 1s
            baseEjectionTime: 60s
            maxEjectionPercent: 100
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {{name: weighted}}
      spec:
        host: weighted
        trafficPolicy:
          loadBalancer:
            localityLbSetting:
              distribute:
                - from: us-east/zone-a/*
                  to: {{"us-east/zone-a/*": 80, "us-west/zone-b/*": 20}}
"#,
    )
    .expect("write config");
    drop(f);
    let log_path = dir.join("proxy.log");
    let _proxy = spawn_proxy(&config, &[], &log_path);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    wait_for(addr);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Outlier detection on: the mesh default keeps traffic in us-east/zone-a.
    assert_eq!(tally(addr, "failover", 20), (20, 0, 0), "log:\n{}", log());
    // No outlier detection: no failover layout, both localities serve.
    let (n, f, o) = tally(addr, "spread", 40);
    assert!(n > 0 && f > 0 && o == 0, "spread {n}/{f}/{o}");
    // distribute 80/20 from the proxy's locality.
    let (n, f, o) = tally(addr, "weighted", 100);
    assert_eq!(o, 0);
    assert!((75..=85).contains(&n) && n + f == 100, "weighted {n}/{f}");

    // The local endpoint goes away: its connect failure ejects it (consecutive5xxErrors 1;
    // local-origin failures count), the retry and everything after go to us-west.
    near.stop();
    let mut served = Vec::new();
    for _ in 0..10 {
        served.push(call(addr, "failover", "/"));
    }
    let failed_over = served.iter().skip(1).all(|(s, b)| *s == 200 && b == "far");
    assert!(
        failed_over,
        "after ejection all to far: {served:?}\nlog:\n{}",
        log()
    );
    assert!(far.requests() > 0);
}
