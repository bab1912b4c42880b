//! Authorization through the whole engine: requests on an inbound listener with compiled
//! AuthorizationPolicies are answered 403 `RBAC: access denied` or forwarded, the connection
//! lives on after a denial, stats and events say why; principals and namespaces match only a
//! peer whose certificate the mutual-TLS layer verified (real rustls handshakes, in memory).

use std::sync::Arc;

use super::tests::{accept, config, drain, sent_to};
use super::transport_tests::{connect_in, events, feed, open, wire_of, T};
use super::*;
use crate::authz::{
    Action, Authorization, HeaderMatcher, Permission, Policy, Principal, Rbac, RbacFilter,
    StringMatcher,
};
use crate::config::Direction;
use crate::transport::policy::{InboundMode, InboundMtls, ResolvedUpstreamTls};
use crate::transport::tls::testca::{Leaf, TestCa, UNIX_BASE};
use crate::transport::tls::{MtlsSettings, MtlsTransports, Randomness};
use crate::transport::{ByteTransform, Endpoint, Transport, TransportFactory};

const TD: &str = "cluster.local";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const ENGINE_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

fn rbac(action: Action, policies: Vec<Policy>) -> RbacFilter {
    RbacFilter {
        rules: Some(Rbac { action, policies }),
        shadow: None,
    }
}

fn policy(name: &str, permission: Permission, principal: Principal) -> Policy {
    Policy {
        name: name.into(),
        permissions: vec![permission],
        principals: vec![principal],
    }
}

/// The test config with its listener inbound, with these RBAC filters.
fn inbound_config(filters: Vec<RbacFilter>) -> crate::config::Config {
    let mut config = config();
    config.listeners[0].direction = Direction::Inbound;
    config.listeners[0].authorization = Some(Arc::new(Authorization { filters }));
    config
}

/// An engine whose listener is inbound, with these RBAC filters.
fn inbound_engine(filters: Vec<RbacFilter>) -> Engine {
    Engine::try_new(Arc::new(inbound_config(filters)), 1).unwrap()
}

/// The status line and body the client got on `conn`, and whether the request went upstream.
fn answer(engine: &mut Engine, conn: ConnId, request: &[u8]) -> (String, bool) {
    let out = feed(engine, conn, request, request.len());
    let text = String::from_utf8(sent_to(&out, conn)).unwrap();
    (text, connect_in(&out).is_some())
}

fn denied(text: &str) -> bool {
    text.starts_with("HTTP/1.1 403 ") && text.ends_with("\r\n\r\nRBAC: access denied")
}

#[test]
fn allow_by_path_denies_the_rest_and_keeps_the_connection() {
    let mut engine = inbound_engine(vec![rbac(
        Action::Allow,
        vec![policy(
            "ns[default]-policy[public]-rule[0]",
            Permission::Path(StringMatcher::istio("/public*")),
            Principal::Any,
        )],
    )]);
    let down = accept(&mut engine);
    let (text, upstream) = answer(
        &mut engine,
        down,
        b"GET /secret HTTP/1.1\r\nhost: svc\r\n\r\n",
    );
    assert!(denied(&text), "{text}");
    assert!(!upstream);
    assert!(matches!(
        events(&mut engine).as_slice(),
        [Event::AuthzDenied { details, .. }] if details == "rbac_access_denied_matched_policy[none]"
    ));
    // Same connection, an allowed path: routed upstream.
    let (text, upstream) = answer(
        &mut engine,
        down,
        b"GET /public/x?q=1 HTTP/1.1\r\nhost: svc\r\n\r\n",
    );
    assert!(upstream, "{text}");
    assert_eq!(
        (engine.stats().rbac_denied, engine.stats().rbac_allowed),
        (1, 1)
    );
    let logs = engine.drain_logs();
    assert_eq!(logs[0].status, 403);
}

#[test]
fn deny_wins_and_names_its_policy_audit_is_reported() {
    let post = Permission::Header(HeaderMatcher::istio(":method", "POST"));
    let mut engine = inbound_engine(vec![
        rbac(
            Action::Log,
            vec![policy(
                "ns[default]-policy[audit]-rule[0]",
                Permission::Any,
                Principal::Any,
            )],
        ),
        rbac(
            Action::Deny,
            vec![policy(
                "ns[default]-policy[no-post]-rule[0]",
                post,
                Principal::Any,
            )],
        ),
        rbac(
            Action::Allow,
            vec![policy(
                "ns[default]-policy[all]-rule[0]",
                Permission::Any,
                Principal::Any,
            )],
        ),
    ]);
    let down = accept(&mut engine);
    let (text, _) = answer(
        &mut engine,
        down,
        b"POST /x HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\n\r\n",
    );
    assert!(denied(&text), "{text}");
    let events = events(&mut engine);
    assert!(
        matches!(&events[..], [
        Event::AuthzAudited { policy, .. },
        Event::AuthzDenied { details, .. },
    ] if &**policy == "ns[default]-policy[audit]-rule[0]"
        && details == "rbac_access_denied_matched_policy[ns[default]-policy[no-post]-rule[0]]"),
        "{events:?}"
    );
    // A denied request whose body was not read closes its connection (the engine's local
    // replies do): the next request comes on a new one.
    let down = accept(&mut engine);
    let (text, upstream) = answer(&mut engine, down, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(upstream, "{text:?}");
    assert_eq!(engine.stats().rbac_audited, 2);
}

#[test]
fn outbound_listeners_ignore_authorization() {
    let mut config = config();
    config.listeners[0].authorization = Some(Arc::new(Authorization {
        filters: vec![rbac(Action::Allow, vec![])],
    }));
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    let down = accept(&mut engine);
    let (_, upstream) = answer(&mut engine, down, b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n");
    assert!(upstream);
    assert_eq!(engine.stats().rbac_denied + engine.stats().rbac_allowed, 0);
}

/// The plaintext answer to a request on an engine whose downstream side is mutual TLS with
/// the client certificate `client_id` (`None`: the request goes in plaintext).
fn over_mtls(filters: Vec<RbacFilter>, client_id: Option<&str>) -> (String, bool) {
    let ca = TestCa::new("mesh root", 1);
    let settings = || MtlsSettings {
        unix_base: UNIX_BASE,
        randomness: Randomness::Seeded(7),
    };
    let request = b"GET /x HTTP/1.1\r\nhost: svc\r\n\r\n";
    let Some(client_id) = client_id else {
        let mut engine = inbound_engine(filters);
        let down = accept(&mut engine);
        return answer(&mut engine, down, request);
    };
    let mut config = inbound_config(filters);
    config.listeners[0].mtls = InboundMtls::uniform(InboundMode::Strict);
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    let creds = ca.issue(Leaf::valid(ENGINE_ID, 10), vec![ca.root()], TD);
    let factory = MtlsTransports::new(&creds, settings()).unwrap();
    engine.set_transports(Box::new(factory));
    let creds = ca.issue(Leaf::valid(client_id, 11), vec![ca.root()], TD);
    let mut factory = MtlsTransports::new(&creds, settings()).unwrap();
    let endpoint = Endpoint::Upstream {
        cluster: "svc",
        addr: "127.0.0.1:15001".parse().unwrap(),
        tls: ResolvedUpstreamTls::Mesh {
            subject_alt_names: &[],
            sni: None,
        },
    };
    let mut client: Box<dyn ByteTransform> = match factory.transport(T, endpoint, None).unwrap() {
        Transport::Transformed(t) | Transport::Sniffing { tls: t, .. } => t,
        other => panic!("{other:?}"),
    };
    let down = accept(&mut engine);
    client.seal(request);
    let out = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    assert!(open(&mut *client, &out, down).unwrap().is_empty());
    let out = feed(&mut engine, down, &wire_of(&mut *client), 4096);
    drain(&mut engine);
    let text = String::from_utf8(open(&mut *client, &out, down).unwrap()).unwrap();
    (text, connect_in(&out).is_some())
}

fn allow_from(principal: Principal) -> Vec<RbacFilter> {
    vec![rbac(
        Action::Allow,
        vec![policy(
            "ns[default]-policy[p]-rule[0]",
            Permission::Any,
            principal,
        )],
    )]
}

#[test]
fn principals_match_only_a_verified_mtls_peer() {
    // pilot: principals → authenticated.principal_name with the `spiffe://` prefix.
    let principal = || {
        Principal::Authenticated(StringMatcher::istio_with_prefix(
            "cluster.local/ns/default/sa/productpage",
            "spiffe://",
        ))
    };
    let (text, upstream) = over_mtls(allow_from(principal()), Some(CLIENT_ID));
    assert!(upstream && text.is_empty(), "{text}");
    let (text, upstream) = over_mtls(allow_from(principal()), None);
    assert!(
        denied(&text) && !upstream,
        "plaintext has no principal: {text}"
    );
    let (text, _) = over_mtls(
        allow_from(principal()),
        Some("spiffe://cluster.local/ns/default/sa/other"),
    );
    assert!(denied(&text), "{text}");
}

#[test]
fn namespaces_match_the_peer_principals_ns_part() {
    // pilot's srcNamespaceGenerator: regex `.*/ns/<ns>/.*` on the authenticated principal.
    let ns = |n: &str| {
        Principal::Authenticated(StringMatcher::Regex(
            crate::authz::matchers::FullRegex::new(&format!(".*/ns/{n}/.*")).unwrap(),
        ))
    };
    let (_, upstream) = over_mtls(allow_from(ns("default")), Some(CLIENT_ID));
    assert!(upstream);
    let (text, _) = over_mtls(allow_from(ns("other")), Some(CLIENT_ID));
    assert!(denied(&text), "{text}");
    let (text, _) = over_mtls(allow_from(ns("default")), None);
    assert!(denied(&text), "plaintext has no namespace: {text}");
}

#[test]
fn dot_segments_do_not_slip_past_a_deny() {
    // Istio's default path normalization (BASE) resolves dot segments before RBAC sees them.
    let mut engine = inbound_engine(vec![rbac(
        Action::Deny,
        vec![policy(
            "ns[default]-policy[admin]-rule[0]",
            Permission::Path(StringMatcher::istio("/admin*")),
            Principal::Any,
        )],
    )]);
    for target in ["/./admin", "/public/../admin/x", "/%2e%2e/admin"] {
        let down = accept(&mut engine);
        let request = format!("GET {target} HTTP/1.1\r\nhost: svc\r\n\r\n");
        let (text, upstream) = answer(&mut engine, down, request.as_bytes());
        assert!(denied(&text) && !upstream, "{target}: {text}");
    }
}
