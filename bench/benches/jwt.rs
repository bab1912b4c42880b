//! What RequestAuthentication costs per request: the engine's JWT filter
//! (`trellis_engine::authn`) on Istio's sample RS256 token and JWKS
//! (`../shared/istio/security/jwt`), a tampered token (signature checked and refused), and a
//! request without a token (Istio's allow_missing: only the extraction runs).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use trellis_engine::authn::{
    AuthnRequest, Jwks, JwtAuthentication, JwtProvider, Requirement, DEFAULT_CLOCK_SKEW_SECS,
};
use trellis_engine::http1::Fields;

fn shared() -> PathBuf {
    match std::env::var_os("TRELLIS_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

fn authentication() -> JwtAuthentication {
    let text = std::fs::read_to_string(shared().join("istio/security/jwt/jwks.json"))
        .expect("Istio's sample JWKS");
    let provider = JwtProvider {
        name: "origins-0".into(),
        issuer: "testing@secure.istio.io".into(),
        audiences: vec![],
        jwks: Jwks::parse(&text).expect("a JWKS"),
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        forward: false,
        forward_payload_header: None,
        claim_to_headers: vec![],
        space_delimited_claims: vec!["permission".into(), "scope".into()],
        clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
    };
    let requirement = Requirement::Any {
        of: vec![Requirement::Provider(0)],
        allow_missing: true,
    };
    JwtAuthentication::new(vec![provider], requirement, true).expect("one provider")
}

fn run(authn: &JwtAuthentication, token: Option<&str>) -> bool {
    let mut headers = Fields::new();
    if let Some(t) = token {
        assert!(headers.append_text("authorization", &format!("Bearer {t}")));
    }
    let mut target = trellis_engine::http1::Target::from("/headers?x=1");
    authn
        .authenticate(&mut AuthnRequest {
            method: "GET",
            target: &mut target,
            headers: &mut headers,
            unix_now: 1_893_456_000,
        })
        .is_ok()
}

fn bench_jwt(c: &mut Criterion) {
    let authn = authentication();
    let demo = std::fs::read_to_string(shared().join("istio/security/jwt/demo.jwt"))
        .expect("Istio's demo token");
    let demo = demo.trim();
    let at = demo.len() - 10;
    let other = if &demo[at..at + 1] == "A" { "B" } else { "A" };
    let tampered = format!("{}{other}{}", &demo[..at], &demo[at + 1..]);
    assert!(run(&authn, Some(demo)) && !run(&authn, Some(&tampered)) && run(&authn, None));
    let mut group = c.benchmark_group("jwt_authn");
    group.bench_function("rs256_valid", |b| b.iter(|| run(&authn, Some(demo))));
    group.bench_function("rs256_bad_signature", |b| {
        b.iter(|| run(&authn, Some(&tampered)))
    });
    group.bench_function("no_token", |b| b.iter(|| run(&authn, None)));
    group.finish();
}

criterion_group!(benches, bench_jwt);
criterion_main!(benches);
