//! Consistent hashing through the whole proxy: the same key reaches the same host, and a
//! cookie policy with a ttl sets the cookie it hashed on the response (Envoy's ring hash and
//! Maglev balancers with the route hash policy pilot writes; see `cluster::hash_policy`).

use std::sync::Arc;

use bytes::Bytes;

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::config::{Endpoint, HashCookie, HashKey, LbPolicy};

fn hashing(lb: LbPolicy, key: HashKey) -> crate::config::Config {
    let mut c = config();
    let cluster = &mut c.clusters[0];
    cluster.endpoints = (1..=5)
        .map(|i| Endpoint {
            sidecar: false,
            address: format!("10.0.0.{i}:80").parse().expect("addr"),
            weight: 1,
            labels: Default::default(),
        })
        .collect();
    cluster.lb = lb;
    cluster.hash_key = Some(key);
    c
}

/// An engine and the upstream connections it opened (pooled ones are reused).
struct Harness {
    engine: Engine,
    upstreams: std::collections::BTreeMap<ConnId, std::net::SocketAddr>,
}

impl Harness {
    fn new(config: crate::config::Config, seed: u64) -> Self {
        Harness {
            engine: Engine::try_new(Arc::new(config), seed).expect("config"),
            upstreams: Default::default(),
        }
    }

    /// Sends `request` on a new client connection; returns the host it reached and the
    /// response the client got once that host answered 200.
    fn host_for(&mut self, request: &[u8]) -> (std::net::SocketAddr, String) {
        let engine = &mut self.engine;
        let down = accept(engine);
        let t = Instant::from_millis(1);
        engine.handle(
            t,
            Input::Received {
                conn: down,
                data: Bytes::copy_from_slice(request),
            },
        );
        let mut out = drain(engine);
        if let Some((up, addr)) = out.iter().find_map(|o| match o {
            Output::Connect { conn, addr } => Some((*conn, *addr)),
            _ => None,
        }) {
            self.upstreams.insert(up, addr);
            engine.handle(t, Input::Connected { conn: up });
            out.extend(drain(engine));
        }
        let Some((up, addr)) = out.iter().find_map(|o| match o {
            Output::Send { conn, .. } => self.upstreams.get(conn).map(|a| (*conn, *a)),
            _ => None,
        }) else {
            panic!("nothing sent upstream: {out:?}")
        };
        engine.handle(
            t,
            Input::Received {
                conn: up,
                data: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            },
        );
        let out = drain(engine);
        (
            addr,
            String::from_utf8_lossy(&sent_to(&out, down)).into_owned(),
        )
    }
}

/// Istio: `consistentHash.httpHeaderName` pins a header value to a host (Envoy's
/// HeaderHashMethod with the RING_HASH or MAGLEV cluster pilot's ApplyRingHashLoadBalancer
/// configures): every request with the same value reaches the same host, over fresh
/// connections and whatever the balancer did in between.
#[test]
fn the_same_header_value_reaches_the_same_host() {
    for lb in [
        LbPolicy::RingHash {
            minimum_ring_size: 1024,
        },
        LbPolicy::Maglev { table_size: 65537 },
    ] {
        let mut engine = Harness::new(hashing(lb, HashKey::Header("x-user".into())), 7);
        let jason_asks = b"GET / HTTP/1.1\r\nhost: svc\r\nx-user: jason\r\n\r\n";
        let (jason, _) = engine.host_for(jason_asks);
        let mut others = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let (again, _) = engine.host_for(jason_asks);
            assert_eq!(again, jason, "{lb:?}");
            let (other, _) = engine.host_for(b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
            others.insert(other);
        }
        // Without the header the hash is random: requests spread.
        assert!(others.len() > 1, "{lb:?}: {others:?}");
    }
}

/// Istio: `httpCookie` with a `ttl` makes Envoy generate the cookie when the request lacks it,
/// hash on it, and set it on the response (`Set-Cookie: name="…"; Max-Age=…; Path=…;
/// HttpOnly`, CookieHashMethod and Filter::addDownstreamSetCookie); a request that sends the
/// cookie back reaches the same host and gets no new cookie.
#[test]
fn a_generated_cookie_is_set_and_then_pins_the_host() {
    let key = HashKey::Cookie(HashCookie {
        name: "user".into(),
        path: Some("/".into()),
        ttl: Some(std::time::Duration::from_secs(10)),
        attributes: Vec::new(),
    });
    let ring = LbPolicy::RingHash {
        minimum_ring_size: 1024,
    };
    let mut engine = Harness::new(hashing(ring, key), 3);
    let (first, response) = engine.host_for(b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n");
    let line = response
        .lines()
        .find(|l| l.starts_with("set-cookie: "))
        .unwrap_or_else(|| panic!("no set-cookie in {response}"));
    assert!(line.ends_with("; Max-Age=10; Path=/; HttpOnly"), "{line}");
    let value = line
        .trim_start_matches("set-cookie: user=\"")
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(value.len(), 16, "{line}");
    let request = format!("GET / HTTP/1.1\r\nhost: svc\r\ncookie: user=\"{value}\"\r\n\r\n");
    for _ in 0..4 {
        let (again, response) = engine.host_for(request.as_bytes());
        assert_eq!(again, first);
        assert!(!response.contains("set-cookie"), "{response}");
    }
}
