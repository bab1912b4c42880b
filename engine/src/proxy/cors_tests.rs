//! A route's CORS policy on the bytes the engine sends: a preflight answered by the proxy
//! never opens an upstream connection, an actual request's response is decorated, and an
//! origin the policy does not allow changes nothing. Envoy's semantics from
//! source/extensions/filters/http/cors/cors_filter.cc (`decodeHeaders`, `encodeHeaders`), the
//! policy as pilot's TranslateCORSPolicy (pilot/pkg/networking/core/route/route.go) writes it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{accept, config, drain, sent_to};
use super::*;
use crate::config::{CorsPolicy, RouteAction, StringMatch, UnmatchedPreflights};

fn cors_policy() -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec![StringMatch::Exact("https://app.example".into())],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["x-token".into()],
        expose_headers: vec!["x-trace".into()],
        max_age: Some(Duration::from_secs(600)),
        allow_credentials: Some(true),
        unmatched_preflights: UnmatchedPreflights::Forward,
    }
}

fn engine_with(policy: CorsPolicy, action: Option<RouteAction>) -> Engine {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.cors = Some(policy);
    if let Some(action) = action {
        route.action = action;
    }
    Engine::try_new(Arc::new(c), 1).expect("the config compiles")
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A client sends `request`: its connection and the outputs.
fn open(engine: &mut Engine, request: &'static [u8]) -> (ConnId, Vec<Output>) {
    let down = accept(engine);
    let data = Bytes::from_static(request);
    engine.handle(at(1), Input::Received { conn: down, data });
    (down, drain(engine))
}

fn upstream(out: &[Output]) -> Option<ConnId> {
    out.iter().find_map(|o| match o {
        Output::Connect { conn, .. } => Some(*conn),
        _ => None,
    })
}

const PREFLIGHT: &[u8] = b"OPTIONS /api HTTP/1.1\r\nhost: svc\r\norigin: https://app.example\r\n\
access-control-request-method: POST\r\naccess-control-request-headers: x-token\r\n\r\n";
const OTHER_PREFLIGHT: &[u8] =
    b"OPTIONS /api HTTP/1.1\r\nhost: svc\r\norigin: https://evil.example\r\n\
access-control-request-method: POST\r\n\r\n";
const GET: &[u8] = b"GET /api HTTP/1.1\r\nhost: svc\r\norigin: https://app.example\r\n\r\n";
const OTHER_GET: &[u8] = b"GET /api HTTP/1.1\r\nhost: svc\r\norigin: https://evil.example\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// The client's response to `request` when the upstream answers [`OK`].
fn through_upstream(engine: &mut Engine, request: &'static [u8]) -> String {
    let (down, mut out) = open(engine, request);
    let up = upstream(&out).expect("the request is forwarded");
    engine.handle(at(1), Input::Connected { conn: up });
    out.extend(drain(engine));
    let data = Bytes::from_static(OK);
    engine.handle(at(2), Input::Received { conn: up, data });
    out.extend(drain(engine));
    String::from_utf8(sent_to(&out, down)).expect("ascii response")
}

#[test]
fn an_allowed_preflight_is_answered_by_the_proxy_and_never_reaches_the_upstream() {
    // decodeHeaders: OPTIONS + origin + access-control-request-method from an allowed origin →
    // a local 200 with the allow headers (OptionsRequestMatchingOriginByWildcard).
    let mut engine = engine_with(cors_policy(), None);
    let (down, out) = open(&mut engine, PREFLIGHT);
    assert_eq!(upstream(&out), None, "no upstream connection: {out:?}");
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    for line in [
        "access-control-allow-origin: https://app.example\r\n",
        "access-control-allow-credentials: true\r\n",
        "access-control-allow-methods: GET,POST\r\n",
        "access-control-allow-headers: x-token\r\n",
        "access-control-max-age: 600\r\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    // The preflight answer carries no expose-headers (only encodeHeaders adds them).
    assert!(!text.contains("access-control-expose-headers"), "{text}");
}

#[test]
fn a_preflight_from_another_origin_is_forwarded_undecorated() {
    // forwardNotMatchingPreflights (pilot's default FORWARD): the upstream answers it.
    let mut engine = engine_with(cors_policy(), None);
    let text = through_upstream(&mut engine, OTHER_PREFLIGHT);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("access-control-"), "{text}");
}

#[test]
fn with_ignore_a_preflight_from_another_origin_gets_200_without_allow_origin() {
    let mut policy = cors_policy();
    policy.unmatched_preflights = UnmatchedPreflights::Ignore;
    let mut engine = engine_with(policy, None);
    let (down, out) = open(&mut engine, OTHER_PREFLIGHT);
    assert_eq!(upstream(&out), None, "no upstream connection: {out:?}");
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("access-control-allow-origin"), "{text}");
    assert!(
        text.contains("access-control-allow-methods: GET,POST\r\n"),
        "{text}"
    );
}

#[test]
fn an_actual_request_from_an_allowed_origin_gets_its_response_decorated() {
    // encodeHeaders: allow-origin is the request's origin, credentials, expose headers.
    let mut engine = engine_with(cors_policy(), None);
    let text = through_upstream(&mut engine, GET);
    for line in [
        "access-control-allow-origin: https://app.example\r\n",
        "access-control-allow-credentials: true\r\n",
        "access-control-expose-headers: x-trace\r\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    assert!(!text.contains("access-control-allow-methods"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}

#[test]
fn an_actual_request_from_another_origin_is_left_alone() {
    let mut engine = engine_with(cors_policy(), None);
    let text = through_upstream(&mut engine, OTHER_GET);
    assert!(!text.contains("access-control-"), "{text}");
}

#[test]
fn a_direct_response_is_decorated_too() {
    // The router's own answers pass the CORS filter's encodeHeaders as well.
    let action = RouteAction::DirectResponse {
        status: 204,
        body: None,
    };
    let mut engine = engine_with(cors_policy(), Some(action));
    let (down, out) = open(&mut engine, GET);
    assert_eq!(upstream(&out), None);
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://app.example\r\n"),
        "{text}"
    );
}

#[test]
fn a_bad_origin_regex_rejects_the_snapshot() {
    let mut c = config();
    c.route_tables[0].virtual_hosts[0].routes[0].cors = Some(CorsPolicy {
        allow_origins: vec![StringMatch::Regex("(".into())],
        ..CorsPolicy::default()
    });
    assert!(Engine::try_new(Arc::new(c), 1).is_err());
}

#[test]
fn a_fault_abort_comes_before_the_preflight_answer_and_carries_no_cors_headers() {
    // pilot's filter order is fault, CORS, router (listener_builder.go): the abort answers
    // first and the CORS filter never sees the request.
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.cors = Some(cors_policy());
    route.fault = Some(crate::config::FaultPolicy {
        delay: None,
        abort: Some(crate::config::FaultAbort {
            status: 418,
            percent: 100.0,
            grpc_status: None,
        }),
    });
    let mut engine = Engine::try_new(Arc::new(c), 1).expect("the config compiles");
    for request in [PREFLIGHT, GET] {
        let (down, out) = open(&mut engine, request);
        assert_eq!(upstream(&out), None);
        let text = String::from_utf8(sent_to(&out, down)).unwrap();
        assert!(text.starts_with("HTTP/1.1 418"), "{text}");
        assert!(!text.contains("access-control-"), "{text}");
    }
}

/// The router's own failures pass the CORS filter's `encodeHeaders` (Envoy sends local replies
/// through the encoder filters): an upstream that cannot be reached gives a 503 that still
/// carries the allowed origin, so a browser can read the error.
#[test]
fn a_router_503_after_the_cors_filter_is_decorated() {
    let mut engine = engine_with(cors_policy(), None);
    let (down, mut out) = open(&mut engine, GET);
    let mut sent = Vec::new();
    for _ in 0..10 {
        let Some(up) = upstream(&out) else { break };
        engine.handle(at(2), Input::ConnectFailed { conn: up });
        out = drain(&mut engine);
        sent.extend(sent_to(&out, down));
    }
    let text = String::from_utf8(sent).unwrap();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://app.example\r\n"),
        "{text}"
    );
    assert!(
        text.contains("access-control-allow-credentials: true\r\n"),
        "{text}"
    );
    // Another origin's request gets the same 503 without CORS fields.
    let (down, mut out) = open(&mut engine, OTHER_GET);
    let mut sent = Vec::new();
    for _ in 0..10 {
        let Some(up) = upstream(&out) else { break };
        engine.handle(at(3), Input::ConnectFailed { conn: up });
        out = drain(&mut engine);
        sent.extend(sent_to(&out, down));
    }
    let text = String::from_utf8(sent).unwrap();
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(!text.contains("access-control-"), "{text}");
}

/// The CORS filter encodes its preflight answer itself (`decoder_callbacks_->encodeHeaders`
/// in cors_filter.cc), not through the filter manager's local-reply path that finalizes the
/// route's response headers (`sendLocalReplyViaFilterChain` in
/// source/common/http/filter_manager.cc): the route's `headers.response` edits are on an
/// actual request's answer, never on the preflight's. Found by the simulator's CORS stream.
#[test]
fn a_preflight_answer_carries_no_route_response_edits() {
    let mut c = config();
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.cors = Some(cors_policy());
    route.response_headers.set = vec![("x-route".into(), "edited".into())];
    let mut engine = Engine::try_new(Arc::new(c), 1).expect("the config compiles");
    let (down, out) = open(&mut engine, PREFLIGHT);
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("x-route"), "{text}");
    let answer = through_upstream(&mut engine, GET);
    assert!(answer.contains("x-route: edited\r\n"), "{answer}");
}

/// Envoy resolves the route, and with it a weighted cluster drawn by weight, before any filter
/// runs, and names that cluster in the access log (`ActiveStream::refreshCachedRoute` sets
/// the stream's upstream cluster info from the route entry's `clusterName()`): a preflight the
/// CORS filter answers is logged with a destination drawn by weight, not always the first.
/// Found by the simulator (seed 3661: weights 1 and 99, 23 of 23 preflights logged for the
/// weight-1 destination).
#[test]
fn a_preflight_is_logged_with_a_destination_drawn_by_weight() {
    let mut c = config();
    let mut second = c.clusters[0].clone();
    second.name = "d".into();
    c.clusters.push(second);
    let route = &mut c.route_tables[0].virtual_hosts[0].routes[0];
    route.cors = Some(cors_policy());
    route.action = RouteAction::Forward(vec![
        crate::config::WeightedCluster {
            cluster: "c".into(),
            weight: 1,
            ..Default::default()
        },
        crate::config::WeightedCluster {
            cluster: "d".into(),
            weight: 99,
            ..Default::default()
        },
    ]);
    let mut engine = Engine::try_new(Arc::new(c), 1).expect("the config compiles");
    for _ in 0..200 {
        let (_, out) = open(&mut engine, PREFLIGHT);
        assert_eq!(upstream(&out), None, "answered by the proxy: {out:?}");
    }
    let logs = engine.drain_logs();
    assert_eq!(logs.len(), 200);
    let heavy = logs
        .iter()
        .filter(|l| l.cluster.as_deref() == Some("d"))
        .count();
    assert!(
        heavy >= 180,
        "{heavy} of 200 preflights logged for the weight-99 destination"
    );
}
