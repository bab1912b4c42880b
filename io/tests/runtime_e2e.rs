//! The thread-per-core runtime end to end, with the real engine between a keep-alive HTTP
//! client and the local mesh's upstream servers (Istio's bookinfo `reviews` routes), on both
//! backends: every test body runs as `<name>::epoll` and `<name>::io_uring`.
//!
//! What is checked: both backends serve the same requests and bodies; every core accepts
//! (SO_REUSEPORT); the health endpoint's 200/503/404; a reload through the control handle does
//! not drop a keep-alive connection; a shutdown drains in-flight requests and stops accepting.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_engine::config::Config;
use trellis_io::runtime::RuntimeOptions;
use trellis_io::{BackendChoice, ControlHandle, RunOptions, Runtime};
use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::config::reviews_config;
use trellis_local_mesh::upstream::Upstream;

const HOST: &str = "reviews";

struct Mesh {
    runtime: Runtime,
    control: ControlHandle,
    upstreams: Vec<Upstream>,
}

impl Mesh {
    fn start(backend: BackendChoice, cores: usize) -> Mesh {
        let upstreams: Vec<Upstream> = ["reviews-v1", "reviews-v2", "reviews-v3"]
            .iter()
            .map(|n| Upstream::start(n).expect("upstream starts"))
            .collect();
        let control = ControlHandle::new();
        let runtime = Runtime::start(
            Arc::new(config(&upstreams, 0)),
            options(backend, cores),
            control.clone(),
        )
        .expect("runtime starts");
        Mesh {
            runtime,
            control,
            upstreams,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.runtime.local_addrs()[0].1
    }

    fn stop(self) {
        self.control.shutdown();
        self.runtime.join().expect("clean shutdown");
    }
}

fn options(backend: BackendChoice, cores: usize) -> RuntimeOptions {
    RuntimeOptions {
        cores,
        backend,
        run: RunOptions {
            seed: 11,
            shutdown_grace: Duration::from_secs(5),
            ..RunOptions::default()
        },
        health: Some("127.0.0.1:0".parse().unwrap()),
        pin: true,
    }
}

/// The reviews config; `rotate` shifts which server backs which version (a visible change).
fn config(upstreams: &[Upstream], rotate: usize) -> Config {
    let at = |i: usize| upstreams[(i + rotate) % 3].addr();
    let mut c = reviews_config("127.0.0.1:0".parse().unwrap(), [at(0), at(1), at(2)]);
    c.version = format!("rotate-{rotate}");
    c
}

fn get_jason(client: &mut HttpClient) -> String {
    let r = client
        .request("GET", "/reviews/1", HOST, &[("end-user", "jason")], b"")
        .expect("request answered");
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A raw GET to the health endpoint: (status, body).
fn health(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("health endpoint reachable");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Listening sockets on `port` in /proc/net/tcp (state 0A = LISTEN).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp readable");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1).is_some_and(|a| a.ends_with(&local)) && f.get(3) == Some(&"0A")
        })
        .count()
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[test]
            fn epoll() {
                super::$name(BackendChoice::Epoll);
            }
            #[test]
            fn io_uring() {
                super::$name(BackendChoice::IoUring);
            }
        }
    };
}

both!(serves_routes_and_bodies_over_keep_alive);
both!(every_core_listens_and_accepts);
both!(health_endpoint_reports_ready_then_draining);
both!(reload_keeps_keep_alive_connections);
both!(shutdown_drains_in_flight_requests_and_stops_accepting);
both!(reloads_under_load_lose_no_request);

fn serves_routes_and_bodies_over_keep_alive(backend: BackendChoice) {
    let mesh = Mesh::start(backend, 1);
    let mut client = HttpClient::connect(mesh.addr()).unwrap();
    assert_eq!(get_jason(&mut client), "reviews-v2\n");
    // 1 MiB of every byte value, echoed by the upstream: many reads and partial writes.
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let r = client
        .request("POST", "/echo", HOST, &[("end-user", "jason")], &body)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
    for _ in 0..20 {
        let r = client.request("GET", "/x", HOST, &[], b"").unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(text == "reviews-v1\n" || text == "reviews-v3\n", "{text}");
    }
    assert_eq!(client.connects(), 1, "one keep-alive connection throughout");
    // A route with no upstream answering: the mesh's own error, and the proxy goes on.
    let r = client
        .request("GET", "/status/503", HOST, &[], b"")
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(get_jason(&mut client), "reviews-v2\n");
    mesh.stop();
}

fn every_core_listens_and_accepts(backend: BackendChoice) {
    let cores = 4;
    let mesh = Mesh::start(backend, cores);
    assert_eq!(mesh.runtime.cores(), cores);
    assert_eq!(
        listening_sockets(mesh.addr().port()),
        cores,
        "one SO_REUSEPORT socket per core"
    );
    // The kernel hashes each connection to one core's socket: if any core did not accept,
    // about a quarter of these would hang until the client's timeout.
    let t0 = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = mesh.addr();
            std::thread::spawn(move || {
                for _ in 0..8 {
                    let mut c = HttpClient::connect(addr).unwrap();
                    assert_eq!(get_jason(&mut c), "reviews-v2\n");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("every connection answered");
    }
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // Each core has its own upstream pool: several upstream connections, not one.
    assert!(mesh.upstreams[1].connections() >= 2);
    mesh.stop();
}

fn health_endpoint_reports_ready_then_draining(backend: BackendChoice) {
    let mesh = Mesh::start(backend, 2);
    let h = mesh.runtime.health_addr().expect("health served");
    assert_eq!(health(h, "/healthz/ready"), (200, "ready\n".to_string()));
    assert_eq!(health(h, "/nope").0, 404);
    // A request in flight keeps the drain going while the probe looks.
    let addr = mesh.addr();
    let slow = std::thread::spawn(move || {
        let mut c = HttpClient::connect(addr).unwrap();
        c.request("GET", "/delay/800", HOST, &[("end-user", "jason")], b"")
            .unwrap()
            .status
    });
    std::thread::sleep(Duration::from_millis(200));
    mesh.control.shutdown();
    assert_eq!(health(h, "/healthz/ready"), (503, "draining\n".to_string()));
    assert_eq!(slow.join().unwrap(), 200);
    mesh.runtime.join().unwrap();
    assert!(TcpStream::connect(h).is_err(), "health endpoint closed");
}

fn reload_keeps_keep_alive_connections(backend: BackendChoice) {
    let mesh = Mesh::start(backend, 2);
    let mut client = HttpClient::connect(mesh.addr()).unwrap();
    assert_eq!(get_jason(&mut client), "reviews-v2\n");
    // v2 is now served by the v3 server: the next request on the same connection shows it.
    mesh.control
        .update_config(Arc::new(config(&mesh.upstreams, 1)));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get_jason(&mut client);
        if got == "reviews-v3\n" {
            break;
        }
        assert_eq!(got, "reviews-v2\n");
        assert!(Instant::now() < deadline, "new config never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.connects(), 1, "the keep-alive connection survived");
    // The listener (configured on port 0) was kept, not rebound elsewhere.
    let mut fresh = HttpClient::connect(mesh.addr()).unwrap();
    assert_eq!(get_jason(&mut fresh), "reviews-v3\n");
    mesh.stop();
}

fn shutdown_drains_in_flight_requests_and_stops_accepting(backend: BackendChoice) {
    let mesh = Mesh::start(backend, 2);
    let addr = mesh.addr();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpClient::connect(addr).unwrap();
                let r = c
                    .request("GET", "/delay/600", HOST, &[("end-user", "jason")], b"")
                    .unwrap();
                (r.status, String::from_utf8_lossy(&r.body).into_owned())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    mesh.control.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
    for t in slow {
        assert_eq!(t.join().unwrap(), (200, "reviews-v2\n".to_string()));
    }
    mesh.runtime.join().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain ended when nothing was in flight: {:?}",
        t0.elapsed()
    );
}

fn reloads_under_load_lose_no_request(backend: BackendChoice) {
    let mesh = Mesh::start(backend, 2);
    let addr = mesh.addr();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = HttpClient::connect(addr).unwrap();
                let (mut sent, mut ok) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sent += 1;
                    let r = c.request("GET", "/r", HOST, &[("end-user", "jason")], b"");
                    if r.is_ok_and(|r| r.status == 200) {
                        ok += 1;
                    }
                }
                (sent, ok, c.connects())
            })
        })
        .collect();
    for i in 1..=20 {
        mesh.control
            .update_config(Arc::new(config(&mesh.upstreams, i % 3)));
        std::thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in clients {
        let (sent, ok, connects) = t.join().unwrap();
        assert_eq!(ok, sent, "every request answered 200 across 20 reloads");
        assert_eq!(connects, 1, "no connection dropped");
        total += sent;
    }
    assert!(total >= 20, "the load ran: {total} requests");
    mesh.stop();
}
