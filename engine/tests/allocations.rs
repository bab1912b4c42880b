//! Heap allocations per proxied request inside the engine alone (no driver): a keep-alive
//! client, a pooled upstream connection, a routed GET and a 1 KiB response, after warm-up.
//! The figure is printed (RESEARCH.md and bench/RESULTS.md quote it) and guarded against
//! regressions; allocation is the largest cost on the in-memory path after parsing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use trellis_engine::config::{
    Cluster, Config, Direction, Endpoint, HeaderMatch, Listener, RetryPolicy, Route, RouteAction,
    RouteMatch, RouteTable, StringMatch, VirtualHost, WeightedCluster,
};
use trellis_engine::proxy::Accepted;
use trellis_engine::{Engine, Input, Instant, Output};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn config() -> Config {
    Config {
        version: "allocs".into(),
        listeners: vec![Listener {
            name: "out".into(),
            address: "127.0.0.1:15001".parse().unwrap(),
            route_table: "rt".into(),
            direction: Direction::Outbound,
            passthrough: false,
        }],
        route_tables: vec![RouteTable {
            name: "rt".into(),
            virtual_hosts: vec![VirtualHost {
                name: "reviews".into(),
                domains: vec!["reviews".into(), "reviews:9080".into()],
                routes: vec![Route {
                    name: "jason".into(),
                    matches: vec![RouteMatch {
                        headers: vec![HeaderMatch {
                            name: "end-user".into(),
                            value: Some(StringMatch::Exact("jason".into())),
                        }],
                        ..Default::default()
                    }],
                    action: RouteAction::Forward(vec![WeightedCluster {
                        cluster: "v2".into(),
                        weight: 100,
                        ..Default::default()
                    }]),
                    retries: RetryPolicy::default(),
                    ..Default::default()
                }],
            }],
        }],
        clusters: vec![Cluster {
            name: "v2".into(),
            endpoints: vec![Endpoint {
                address: "10.0.0.2:9080".parse().unwrap(),
                weight: 1,
                labels: BTreeMap::new(),
            }],
            ..Default::default()
        }],
        http: Default::default(),
    }
}

#[test]
fn allocations_per_request_stay_bounded() {
    let mut engine = Engine::try_new(Arc::new(config()), 1).unwrap();
    let now = Instant::from_millis(1);
    let down = engine.accept(
        now,
        Accepted::new(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:15001".parse().unwrap(),
        ),
    );
    let request = Bytes::from_static(
        b"GET /reviews/1 HTTP/1.1\r\nhost: reviews:9080\r\nuser-agent: curl/7.88.1\r\naccept: */*\r\nend-user: jason\r\n\r\n",
    );
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1024\r\n\r\n"
            .to_vec();
    response.extend_from_slice(&[b'x'; 1024]);
    let response = Bytes::from(response);
    let mut up = None;
    let mut logs = Vec::new();
    let mut one = |engine: &mut Engine| {
        engine.handle(
            now,
            Input::Received {
                conn: down,
                data: request.clone(),
            },
        );
        while let Some(o) = engine.poll_output() {
            match o {
                Output::Connect { conn, .. } => {
                    up = Some(conn);
                    engine.handle(now, Input::Connected { conn });
                }
                Output::Send { conn, .. } => engine.handle(now, Input::WriteDrained { conn }),
                _ => {}
            }
        }
        let upc = up.expect("upstream connection");
        engine.handle(
            now,
            Input::Received {
                conn: upc,
                data: response.clone(),
            },
        );
        let mut sent = 0;
        while let Some(o) = engine.poll_output() {
            if let Output::Send { conn, data } = o {
                sent += data.len();
                engine.handle(now, Input::WriteDrained { conn });
            }
        }
        engine.drain_logs_into(&mut logs);
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].status, 200);
        logs.clear();
        sent
    };
    for _ in 0..100 {
        assert!(one(&mut engine) > 1024);
    }
    const N: u64 = 1000;
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..N {
        one(&mut engine);
    }
    COUNTING.store(false, Ordering::Relaxed);
    let per = ALLOCS.load(Ordering::Relaxed) as f64 / N as f64;
    println!("engine allocations per request: {per:.2}");
    assert!(per <= 12.0, "{per:.2} allocations per request");
}
