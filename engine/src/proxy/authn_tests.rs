//! Request authentication through the whole engine: an inbound listener with a compiled
//! RequestAuthentication answers an invalid token 401 with Envoy's body and
//! `www-authenticate`, checks `exp` at the ENGINE's clock (an engine started at a UNIX base
//! ages a token in engine time), strips the token and writes the payload header before the
//! request goes upstream, and hands the verified payload to authorization, where a
//! `requestPrincipals`-style policy allows the token's principal and denies a request without
//! one.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use super::tests::{accept, config, drain, sent_to};
use super::transport_tests::{connect_in, events, feed_at};
use super::*;
use crate::authn::{Jwks, JwtAuthentication, JwtProvider, Requirement, DEFAULT_CLOCK_SKEW_SECS};
use crate::authz::{
    Action, Authorization, MetadataMatcher, Permission, Policy, Principal, Rbac, RbacFilter,
    StringMatcher, ValueMatcher,
};
use crate::config::Direction;

const SECRET: &[u8] = b"another-test-secret-32-bytes-ok!";
const ISSUER: &str = "https://issuer.example";
const BASE: u64 = 1_800_000_000;

fn token(sub: &str, exp: u64) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": ISSUER, "sub": sub, "exp": exp}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn authentication() -> JwtAuthentication {
    let jwks = Jwks::parse(
        &json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET)}]}).to_string(),
    )
    .unwrap();
    let provider = JwtProvider {
        name: "origins-0".into(),
        issuer: ISSUER.into(),
        audiences: vec![],
        jwks,
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        forward: false,
        forward_payload_header: Some(http::HeaderName::from_static("x-jwt-payload")),
        claim_to_headers: vec![],
        space_delimited_claims: vec![],
        clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
    };
    let requirement = Requirement::Any {
        of: vec![Requirement::Provider(0)],
        allow_missing: true,
    };
    JwtAuthentication::new(vec![provider], requirement, true).unwrap()
}

/// ALLOW only `<ISSUER>/alice` (pilot's requestPrincipals: iss AND sub metadata matchers).
fn allow_alice() -> Authorization {
    let claim = |name: &str, value: &str| {
        Principal::Metadata(MetadataMatcher::jwt_claim(
            &[name],
            ValueMatcher::String(StringMatcher::Exact(value.into())),
        ))
    };
    Authorization {
        filters: vec![RbacFilter {
            rules: Some(Rbac {
                action: Action::Allow,
                policies: vec![Policy {
                    name: "ns[default]-policy[alice]-rule[0]".into(),
                    permissions: vec![Permission::Any],
                    principals: vec![Principal::And(vec![
                        claim("iss", ISSUER),
                        claim("sub", "alice"),
                    ])],
                }],
            }),
            shadow: None,
        }],
    }
}

fn engine(authz: Option<Authorization>) -> Engine {
    let mut config = config();
    config.listeners[0].direction = Direction::Inbound;
    config.listeners[0].authentication = Some(Arc::new(authentication()));
    config.listeners[0].authorization = authz.map(Arc::new);
    let mut engine = Engine::try_new(Arc::new(config), 1).unwrap();
    engine.set_unix_base(Duration::from_secs(BASE));
    engine
}

fn get(token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!("GET /x?q=1 HTTP/1.1\r\nhost: svc\r\n{auth}\r\n").into_bytes()
}

#[test]
fn envoy_expired_at_engine_time_is_401_with_www_authenticate() {
    let mut engine = engine(None);
    let down = accept(&mut engine);
    let t = token("alice", BASE + 100);
    // At engine time 0 (UNIX BASE) the token is good: the request goes upstream.
    let out = feed_at(&mut engine, Instant::ZERO, down, &get(Some(&t)), 1 << 16);
    assert!(connect_in(&out).is_some());
    let mut engine = self::engine(None);
    let down = accept(&mut engine);
    // 161 s later (100 s of validity + 60 s of skew, plus one), in engine time only.
    let later = Instant::from_millis(161_000);
    let out = feed_at(&mut engine, later, down, &get(Some(&t)), 1 << 16);
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(
        text.contains(
            "www-authenticate: Bearer realm=\"http://svc/x?q=1\", error=\"invalid_token\"\r\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nJwt is expired"), "{text}");
    assert!(connect_in(&out).is_none());
    assert!(matches!(
        events(&mut engine).as_slice(),
        [Event::AuthnDenied { details, .. }] if details == "jwt_authn_access_denied{Jwt_is_expired}"
    ));
    assert_eq!(engine.stats().jwt_authn_denied, 1);
}

#[test]
fn istio_valid_token_is_stripped_payload_forwarded_and_principal_allowed() {
    let mut engine = engine(Some(allow_alice()));
    let down = accept(&mut engine);
    let t = token("alice", BASE + 3600);
    let out = feed_at(&mut engine, Instant::ZERO, down, &get(Some(&t)), 1 << 16);
    let up = connect_in(&out).expect("allowed: goes upstream");
    engine.handle(Instant::ZERO, Input::Connected { conn: up });
    let sent = String::from_utf8(sent_to(&drain(&mut engine), up)).unwrap();
    assert!(
        !sent.to_ascii_lowercase().contains("authorization:"),
        "{sent}"
    );
    let payload = t.split('.').nth(1).unwrap();
    assert!(
        sent.contains(&format!("x-jwt-payload: {payload}\r\n")),
        "{sent}"
    );
    assert_eq!(
        (
            engine.stats().jwt_authn_verified,
            engine.stats().rbac_allowed
        ),
        (1, 1)
    );
}

#[test]
fn istio_no_token_passes_authentication_and_authorization_decides() {
    let mut engine = engine(Some(allow_alice()));
    let down = accept(&mut engine);
    let out = feed_at(&mut engine, Instant::ZERO, down, &get(None), 1 << 16);
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 403 "),
        "no principal: RBAC denies: {text}"
    );
    assert_eq!(
        (engine.stats().jwt_authn_allowed, engine.stats().rbac_denied),
        (1, 1)
    );
    // Another principal's valid token: authenticated, and still denied by the policy.
    let out = feed_at(
        &mut engine,
        Instant::ZERO,
        down,
        &get(Some(&token("bob", BASE + 3600))),
        1 << 16,
    );
    let text = String::from_utf8(sent_to(&out, down)).unwrap();
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
    // Without any policy the anonymous request goes through.
    let mut engine = self::engine(None);
    let down = accept(&mut engine);
    let out = feed_at(&mut engine, Instant::ZERO, down, &get(None), 1 << 16);
    assert!(connect_in(&out).is_some());
}
