//! The local mesh as a whole: the self-check through the real engine, config pushes through the
//! control handle, an upstream going away, and shutdown.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_engine::config::{RouteAction, WeightedCluster};
use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::config::{cluster_name, reviews_config};
use trellis_local_mesh::{LocalMesh, LocalMeshOptions};

fn start() -> LocalMesh {
    LocalMesh::start(&LocalMeshOptions {
        port: 0,
        selfcheck: false,
        seed: Some(11),
        handle_signals: false,
        ..LocalMeshOptions::default()
    })
    .expect("local mesh starts")
}

#[test]
fn selfcheck_splits_80_20_and_sends_jason_to_v2_over_one_connection() {
    let mesh = start();
    let check = mesh.selfcheck(400).unwrap();
    assert!(check.failures.is_empty(), "{:?}", check.failures);
    let v1 = check.per_upstream.get("reviews-v1").copied().unwrap_or(0);
    let v3 = check.per_upstream.get("reviews-v3").copied().unwrap_or(0);
    assert_eq!(v1 + v3, 400, "{:?}", check.per_upstream);
    assert!(!check.per_upstream.contains_key("reviews-v2"));
    // 80% of 400 = 320; binomial sd = 8, allow 5 sd.
    assert!((280..=360).contains(&v1), "v1 got {v1} of 400");
    assert_eq!(check.jason, Ok("reviews-v2".to_string()));
    assert_eq!(check.client_connections, 1, "keep-alive held");
    mesh.shutdown().unwrap();
}

#[test]
fn pushed_config_applies_to_new_requests_without_dropping_the_connection() {
    let mesh = start();
    let mut client = HttpClient::connect(mesh.proxy_addr()).unwrap();
    let r = client
        .request("GET", "/", "reviews", &[("end-user", "jason")], b"")
        .unwrap();
    assert_eq!(r.header("x-upstream"), Some("reviews-v2"));

    // Same listener (port 0 as configured before), but everyone now goes to v3.
    let ups = mesh.upstreams();
    let mut config = reviews_config(
        "127.0.0.1:0".parse().unwrap(),
        [ups[0].addr(), ups[1].addr(), ups[2].addr()],
    );
    config.version = "all-v3".into();
    for route in &mut config.route_tables[0].virtual_hosts[0].routes {
        route.action = RouteAction::Forward(vec![WeightedCluster {
            cluster: cluster_name("v3"),
            weight: 100,
            ..WeightedCluster::default()
        }]);
    }
    mesh.control().update_config(Arc::new(config));

    // The push is asynchronous: poll on the same connection until it takes effect.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client
            .request("GET", "/", "reviews", &[("end-user", "jason")], b"")
            .unwrap();
        if r.header("x-upstream") == Some("reviews-v3") {
            break;
        }
        assert!(Instant::now() < deadline, "config push never applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        client.connects(),
        1,
        "the downstream connection survived the push"
    );
    mesh.shutdown().unwrap();
}

#[test]
fn upstream_down_is_a_mesh_generated_503() {
    let mut mesh = start();
    let v2 = mesh.upstreams()[1].addr();
    // Stop v2 (jason's only endpoint): connects to it are refused.
    stop_upstream(&mut mesh, 1);
    assert!(TcpStream::connect(v2).is_err(), "v2 still accepting");
    let mut client = HttpClient::connect(mesh.proxy_addr()).unwrap();
    let r = client
        .request("GET", "/", "reviews", &[("end-user", "jason")], b"")
        .unwrap();
    assert_eq!(r.status, 503, "{:?}", String::from_utf8_lossy(&r.body));
    // The others still work, on the same downstream connection.
    let r = client.request("GET", "/", "reviews", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    mesh.shutdown().unwrap();
}

fn stop_upstream(mesh: &mut LocalMesh, i: usize) {
    mesh.upstream_mut(i).expect("upstream exists").stop();
}

#[test]
fn shutdown_stops_accepting_and_returns() {
    let mesh = start();
    let addr = mesh.proxy_addr();
    let check = mesh.selfcheck(3).unwrap();
    assert!(check.failures.is_empty());
    let started = Instant::now();
    mesh.shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no open downstreams: quick exit"
    );
    assert!(TcpStream::connect(addr).is_err(), "listener closed");
}

#[test]
fn shutdown_lets_a_request_in_flight_finish() {
    let mesh = start();
    let addr = mesh.proxy_addr();
    let slow = std::thread::spawn(move || {
        let mut client = HttpClient::connect(addr).unwrap();
        client.request(
            "GET",
            "/delay/400",
            "reviews",
            &[("end-user", "jason")],
            b"",
        )
    });
    // Let the request reach the upstream, then ask the proxy to stop.
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    mesh.shutdown().unwrap();
    let waited = started.elapsed();
    let response = slow
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"reviews-v2\n");
    assert!(
        waited >= Duration::from_millis(200),
        "shutdown returned before the request finished ({waited:?})"
    );
    assert!(
        waited < Duration::from_secs(4),
        "then it exits promptly ({waited:?})"
    );
}
