//! Criterion benchmarks of the engine's hot paths.
//!
//! `cargo bench -p trellis-bench --bench engine` — figures are recorded in `bench/RESULTS.md`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sim_tests::build::{self, add_vhost, cluster, header_exact, route, LISTENER};
use trellis_engine::cluster::ClusterState;
use trellis_engine::config::{Config, LbPolicy, RouteMatch, StringMatch};
use trellis_engine::http1::{self, Limits};
use trellis_engine::proxy::Accepted;
use trellis_engine::rng::EngineRng;
use trellis_engine::route::{RouteOutcome, RouteRequest, Router};
use trellis_engine::{Engine, Input, Instant, Output};

const REQUEST: &[u8] = b"GET /api/v1/reviews/12345?lang=en HTTP/1.1\r\n\
host: reviews.default.svc.cluster.local:9080\r\n\
user-agent: curl/7.88.1\r\n\
accept: */*\r\n\
x-request-id: 6f1d8c4e-5a2b-4c3d-9e8f-0a1b2c3d4e5f\r\n\
end-user: jason\r\n\
content-length: 0\r\n\r\n";

fn thousand_vhosts() -> Config {
    let mut config = build::base();
    for v in 0..1000 {
        let host = format!("svc-{v}.default.svc.cluster.local");
        let cname = format!("c{v}");
        config
            .clusters
            .push(cluster(&cname, &[("10.0.0.1:80", &[])]));
        let routes = (0..10)
            .map(|r| {
                let mut m = header_exact("x-rule", &format!("r{r}"));
                m.uri = Some(StringMatch::Prefix(format!("/api/v{r}")));
                route(&format!("r{r}"), vec![m], &[(cname.as_str(), 100)])
            })
            .collect();
        add_vhost(
            &mut config,
            &host,
            &[&host, &format!("{host}:9080")],
            routes,
        );
    }
    config
}

fn bench_route(c: &mut Criterion) {
    let router = Router::new(Arc::new(thousand_vhosts())).unwrap();
    let table = router.table("outbound").unwrap();
    let headers: trellis_engine::http1::Fields = [("x-rule", "r9")].into_iter().collect();
    let labels = BTreeMap::new();
    let req = RouteRequest {
        authority: "svc-777.default.svc.cluster.local:9080",
        path: "/api/v9/items?x=1",
        method: "GET",
        scheme: "http",
        headers: &headers,
        port: 9080,
        source_labels: &labels,
    };
    c.bench_function("route/1000 vhosts x 10 rules, last rule", |b| {
        b.iter(|| {
            matches!(
                black_box(router.route(table, black_box(&req))),
                RouteOutcome::Matched(_)
            )
        })
    });
}

fn bench_balancers(c: &mut Criterion) {
    for (name, lb) in [
        ("round_robin", LbPolicy::RoundRobin),
        ("least_request", LbPolicy::LeastRequest { choice_count: 2 }),
        ("random", LbPolicy::Random),
    ] {
        let endpoints: Vec<String> = (0..100)
            .map(|i| format!("10.1.{}.{}:80", i / 250, i % 250 + 1))
            .collect();
        let eps: Vec<(&str, &[(&str, &str)])> =
            endpoints.iter().map(|e| (e.as_str(), &[][..])).collect();
        let mut cfg = cluster("c", &eps);
        cfg.lb = lb;
        for (i, e) in cfg.endpoints.iter_mut().enumerate() {
            e.weight = 1 + (i as u32 % 3);
        }
        let mut state = ClusterState::new(Arc::new(cfg), Instant::ZERO);
        let mut rng = EngineRng::with_seed(1);
        c.bench_function(
            &format!("balancer/{name} pick over 100 weighted endpoints"),
            |b| {
                b.iter(|| {
                    let pick = state.pick(&mut rng, &[]).unwrap();
                    state.request_started(pick.host);
                    state.request_finished(pick.host);
                    black_box(pick)
                })
            },
        );
    }
}

fn bench_parse(c: &mut Criterion) {
    let limits = Limits::default();
    c.bench_function("http1/parse request head (7 headers)", |b| {
        b.iter(|| black_box(http1::parse_request_head(black_box(REQUEST), &limits).unwrap()))
    });
}

/// One keep-alive client, one pooled upstream connection; each iteration is a whole
/// request/response through the engine: parse, route, pick, encode, parse response, relay.
fn bench_engine_request(c: &mut Criterion) {
    let mut config = build::base();
    config.clusters = vec![cluster("reviews-v2", &[("10.0.0.2:9080", &[])])];
    let m = RouteMatch {
        uri: Some(StringMatch::Prefix("/api".into())),
        ..Default::default()
    };
    add_vhost(
        &mut config,
        "reviews",
        &[
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
        ],
        vec![route("to-v2", vec![m], &[("reviews-v2", 100)])],
    );
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    let now = Instant::from_millis(1);
    let down = engine.accept(
        now,
        Accepted::new("127.0.0.1:5000".parse().unwrap(), LISTENER.parse().unwrap()),
    );
    let request = Bytes::from_static(REQUEST);
    let response = Bytes::from_static(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1024\r\n\r\n",
    );
    let body = Bytes::from(vec![b'x'; 1024]);
    let mut full = response.to_vec();
    full.extend_from_slice(&body);
    let full = Bytes::from(full);
    let mut up = None;
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
                data: full.clone(),
            },
        );
        let mut bytes_down = 0;
        while let Some(o) = engine.poll_output() {
            if let Output::Send { conn, data } = o {
                bytes_down += data.len();
                engine.handle(now, Input::WriteDrained { conn });
            }
        }
        engine.drain_logs();
        bytes_down
    };
    assert!(one(&mut engine) > 1024, "a response came back");
    c.bench_function("engine/whole request+1KiB response in memory", |b| {
        b.iter(|| black_box(one(&mut engine)))
    });
}

criterion_group!(
    benches,
    bench_route,
    bench_balancers,
    bench_parse,
    bench_engine_request
);
criterion_main!(benches);
