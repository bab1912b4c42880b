//! SO_ORIGINAL_DST for real: in a private network namespace, an iptables REDIRECT rule (what
//! Istio's `istio-iptables` installs) sends connections meant for 127.0.0.1:ORIG to the
//! outbound listener. The engine routes by the destination port (VirtualService `port`
//! match), so a redirected connection must reach the route for ORIG's port, and a direct one
//! the default route — on both backends.
//!
//! Needs root (to create the namespace) and `iptables` (scripts/test.sh installs it); without
//! either the test fails with a message rather than skipping.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::config::{Route, RouteAction, RouteMatch, WeightedCluster};
use trellis_io::runtime::RuntimeOptions;
use trellis_io::{BackendChoice, ControlHandle, RunOptions, Runtime};
use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::config::{cluster_name, reviews_config};
use trellis_local_mesh::upstream::Upstream;

/// The port clients think they connect to; nothing listens there.
const ORIG_PORT: u16 = 18099;

/// Move the calling thread (and the threads and processes it starts) into a fresh network
/// namespace with its loopback up.
fn enter_private_netns() {
    // SAFETY: plain syscall; affects only the calling thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed ({}): this test needs root, as CI runs",
        std::io::Error::last_os_error()
    );
    // SAFETY: an ioctl on a fresh datagram socket with a zeroed, named ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr), 0, "lo up");
        libc::close(fd);
    }
}

fn iptables(args: &[&str]) {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .expect("iptables is required (apt-get install iptables; scripts/test.sh does it)");
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn body(client: &mut HttpClient) -> String {
    let r = client
        .request("GET", "/", "anything", &[], b"")
        .expect("answered");
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).into_owned()
}

fn redirected_connections_route_by_their_original_port(backend: BackendChoice) {
    enter_private_netns();
    let ups: Vec<Upstream> = ["default", "by-port", "unused"]
        .iter()
        .map(|n| Upstream::start(n).unwrap())
        .collect();
    let mut config = reviews_config(
        "127.0.0.1:0".parse().unwrap(),
        [ups[0].addr(), ups[1].addr(), ups[2].addr()],
    );
    let forward = |version: &str| {
        RouteAction::Forward(vec![WeightedCluster {
            cluster: cluster_name(version),
            weight: 100,
            ..WeightedCluster::default()
        }])
    };
    config.route_tables[0].virtual_hosts[0].routes = vec![
        Route {
            name: "by-port".into(),
            matches: vec![RouteMatch {
                port: Some(ORIG_PORT),
                ..RouteMatch::default()
            }],
            action: forward("v2"),
            ..Route::default()
        },
        Route {
            name: "default".into(),
            action: forward("v1"),
            ..Route::default()
        },
    ];
    let control = ControlHandle::new();
    let runtime = Runtime::start(
        Arc::new(config),
        RuntimeOptions {
            cores: 2,
            backend,
            run: RunOptions {
                seed: 1,
                shutdown_grace: Duration::from_secs(2),
                ..RunOptions::default()
            },
            health: None,
            pin: false,
        },
        control.clone(),
    )
    .unwrap();
    let proxy = runtime.local_addrs()[0].1;
    iptables(&[
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "127.0.0.1",
        "--dport",
        &ORIG_PORT.to_string(),
        "-j",
        "REDIRECT",
        "--to-ports",
        &proxy.port().to_string(),
    ]);
    let orig: SocketAddr = ([127, 0, 0, 1], ORIG_PORT).into();
    let mut redirected = HttpClient::connect(orig).expect("redirected to the proxy");
    assert_eq!(body(&mut redirected), "by-port\n");
    let mut direct = HttpClient::connect(proxy).unwrap();
    assert_eq!(
        body(&mut direct),
        "default\n",
        "not redirected: no original dst"
    );
    control.shutdown();
    runtime.join().unwrap();
}

fn in_own_thread(backend: BackendChoice) {
    // The namespace is per thread: a dedicated one keeps the test harness's threads out.
    std::thread::spawn(move || redirected_connections_route_by_their_original_port(backend))
        .join()
        .expect("test thread");
}

#[test]
fn epoll() {
    in_own_thread(BackendChoice::Epoll);
}

#[test]
fn io_uring() {
    in_own_thread(BackendChoice::IoUring);
}
