//! A reload under load loses no request: client threads send continuously through the proxy
//! while new configurations are pushed every few milliseconds (alternating weights, and
//! subsets whose endpoints move between servers), and every request sent is answered 2xx.
//! Keep-alive connections must also survive: a config change drops no connection (DESIGN.md).
//!
//! Configs are pushed through the driver's `ControlHandle`, the path a file-change or SIGHUP
//! reload takes once it has read the file.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mesh;
use common::proxy::Proxy;
use common::server::Server;
use common::tools::curl_output;
use trellis_local_mesh::client::HttpClient;

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    ok: u64,
    failures: Vec<String>,
    connects: u64,
}

#[test]
fn reload_under_load_loses_no_request() {
    let (v1, v2, v3) = (Server::app("v1"), Server::app("v2"), Server::app("v3"));
    let configs = [
        mesh::app(v1.addr(), v2.addr(), v3.addr(), 80),
        mesh::app(v1.addr(), v2.addr(), v3.addr(), 20),
        // Subsets move: "v1" is now served by v3's server and the other way round.
        mesh::app(v3.addr(), v2.addr(), v1.addr(), 50),
    ];
    let proxy = Proxy::start(&configs[0]);
    let addr = proxy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    // Requests sent so far by every worker: the run lasts until enough requests overlapped
    // enough reloads, however slow this machine is (a count, never a rate).
    let sent_so_far = Arc::new(AtomicU64::new(0));

    // Keep-alive clients: GETs and POSTs with bodies, so reloads land mid-request too.
    let mut workers = Vec::new();
    for t in 0..3 {
        let stop = stop.clone();
        let sent_so_far = sent_so_far.clone();
        workers.push(std::thread::spawn(move || {
            let mut tally = Tally::default();
            let mut client = HttpClient::connect(addr).expect("connect");
            let body = vec![b'x'; 3000 + t * 1000];
            let user = if t == 2 { "jason" } else { "someone" };
            while !stop.load(Ordering::Relaxed) {
                let (method, payload): (&str, &[u8]) = if tally.sent % 2 == 0 {
                    ("GET", b"")
                } else {
                    ("POST", &body)
                };
                tally.sent += 1;
                sent_so_far.fetch_add(1, Ordering::Relaxed);
                match client.request(method, "/load", "app", &[("end-user", user)], payload) {
                    Ok(r) if (200..300).contains(&r.status) => tally.ok += 1,
                    Ok(r) => tally.failures.push(format!(
                        "{method}: {} {:?}",
                        r.status,
                        r.header("x-trellis-response-flags")
                    )),
                    Err(e) => tally.failures.push(format!("{method}: {e}")),
                }
            }
            tally.connects = client.connects();
            tally
        }));
    }
    // And curl, a new connection per request.
    {
        let stop = stop.clone();
        let sent_so_far = sent_so_far.clone();
        let url = proxy.url("/curl");
        workers.push(std::thread::spawn(move || {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                tally.sent += 1;
                sent_so_far.fetch_add(1, Ordering::Relaxed);
                tally.connects += 1;
                let out = curl_output(&[
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-H",
                    "host: app",
                    &url,
                ]);
                let code = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.status.success() && code.starts_with('2') {
                    tally.ok += 1;
                } else {
                    tally.failures.push(format!(
                        "curl: {code} {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            tally
        }));
    }

    // At least 3 s, 100 reloads and 300 requests; the ceiling only ends a proxy that stalled.
    let started = Instant::now();
    let mut reloads = 0usize;
    while started.elapsed() < Duration::from_secs(3)
        || reloads < 100
        || sent_so_far.load(Ordering::Relaxed) < 300
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "stalled: {} requests sent over {reloads} reloads in 120 s",
            sent_so_far.load(Ordering::Relaxed)
        );
        reloads += 1;
        proxy.reload(&configs[reloads % configs.len()]);
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();

    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let failures: Vec<&String> = tallies.iter().flat_map(|t| &t.failures).collect();
    assert!(
        reloads >= 100 && sent >= 300,
        "{reloads} reloads, {sent} requests"
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(sent, ok, "sent {sent}, answered 2xx {ok}");
    // No keep-alive connection was dropped by a reload.
    for t in &tallies[..3] {
        assert_eq!(t.connects, 1, "a keep-alive client had to reconnect: {t:?}");
    }
    assert_eq!(
        v1.requests() + v2.requests() + v3.requests(),
        sent,
        "upstreams saw every request exactly once"
    );

    // The last push is in force: all three subsets on v2's server now.
    proxy.reload(&mesh::app(v2.addr(), v2.addr(), v2.addr(), 50));
    std::thread::sleep(Duration::from_millis(100));
    let mut client = HttpClient::connect(addr).expect("connect");
    for _ in 0..20 {
        let r = client
            .request("GET", "/after", "app", &[], b"")
            .expect("request");
        assert_eq!(r.body, b"v2\n");
    }
    eprintln!("reload under load: {reloads} reloads, {sent} requests, all 2xx");
}
