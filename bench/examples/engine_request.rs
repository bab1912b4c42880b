//! The criterion bench's in-memory request (`engine/whole request+1KiB response in memory`)
//! as a plain loop, for instruction counts that don't drift with machine load:
//! `valgrind --tool=callgrind target/release/examples/engine_request 20000`, then divide the
//! total by the count. Setup and warm-up are a fixed cost; compare two counts to cancel it.

use std::sync::Arc;

use bytes::Bytes;
use sim_tests::build::{self, add_vhost, cluster, route, LISTENER};
use trellis_engine::config::{RouteMatch, StringMatch};
use trellis_engine::proxy::Accepted;
use trellis_engine::{Engine, Input, Instant, Output};

const REQUEST: &[u8] = b"GET /api/v1/reviews/12345?lang=en HTTP/1.1\r\n\
host: reviews.default.svc.cluster.local:9080\r\n\
user-agent: curl/7.88.1\r\n\
accept: */*\r\n\
x-request-id: 6f1d8c4e-5a2b-4c3d-9e8f-0a1b2c3d4e5f\r\n\
end-user: jason\r\n\
content-length: 0\r\n\r\n";

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
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
    let mut engine = Engine::try_new(Arc::new(config), 1).expect("valid config");
    let now = Instant::from_millis(1);
    let down = engine.accept(
        now,
        Accepted::new(
            "127.0.0.1:5000".parse().expect("address"),
            LISTENER.parse().expect("address"),
        ),
    );
    let request = Bytes::from_static(REQUEST);
    let mut full =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1024\r\n\r\n"
            .to_vec();
    full.extend_from_slice(&[b'x'; 1024]);
    let full = Bytes::from(full);
    let mut up = None;
    let mut total = 0usize;
    let mut logs = Vec::new();
    for _ in 0..count {
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
        while let Some(o) = engine.poll_output() {
            if let Output::Send { conn, data } = o {
                total += data.len();
                engine.handle(now, Input::WriteDrained { conn });
            }
        }
        // As the drivers do (`io::event_loop`): into a buffer that keeps its capacity.
        engine.drain_logs_into(&mut logs);
        logs.clear();
    }
    println!("{count} requests, {total} bytes sent downstream");
}
