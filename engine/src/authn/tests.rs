//! Unit tests of the JWT filter, one behaviour of Envoy's `jwt_authn` (or of the Istio
//! configuration driving it) per test. Tokens are signed with `jsonwebtoken`'s encoder (HS256
//! and EdDSA keys made here) and, for RS256, Istio's own sample token and JWKS
//! (`../shared/istio/security/jwt`).

use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderName;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use quickcheck_macros::quickcheck;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};

use super::extract::{first_query_value, remove_query_param, token_in_header};
use super::*;

const SECRET: &[u8] = b"trellis-test-secret-of-32-bytes!";
const ISSUER: &str = "https://issuer.example";
/// 2030-01-01T00:00:00Z.
const NOW: u64 = 1_893_456_000;

fn shared() -> PathBuf {
    match std::env::var_os("TRELLIS_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

fn hs_jwks() -> Jwks {
    Jwks::parse(
        &json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256",
                          "k": URL_SAFE_NO_PAD.encode(SECRET)}]})
        .to_string(),
    )
    .unwrap()
}

fn hs_token(claims: Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 3600, "aud": "shop",
           "scope": "read write", "groups": ["admins", "dev"], "org": {"team": "a"}})
}

fn provider(jwks: Jwks) -> JwtProvider {
    JwtProvider {
        name: "origins-0".into(),
        issuer: ISSUER.into(),
        audiences: vec![],
        jwks,
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        forward: false,
        forward_payload_header: None,
        claim_to_headers: vec![],
        space_delimited_claims: vec!["permission".into(), "scope".into()],
        clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
    }
}

/// Istio's single-rule requirement: the provider or nothing.
fn istio(providers: Vec<JwtProvider>) -> JwtAuthentication {
    let n = providers.len();
    let optional = |i| Requirement::Any {
        of: vec![Requirement::Provider(i)],
        allow_missing: true,
    };
    let requirement = if n == 1 {
        optional(0)
    } else {
        let mut of: Vec<Requirement> = (0..n).map(Requirement::Provider).collect();
        of.push(Requirement::All((0..n).map(optional).collect()));
        Requirement::Any {
            of,
            allow_missing: false,
        }
    };
    JwtAuthentication::new(providers, requirement, true).unwrap()
}

struct Req {
    method: &'static str,
    target: crate::http1::Target,
    headers: crate::http1::Fields,
    now: u64,
}

impl Req {
    fn get(target: &str) -> Req {
        Req {
            method: "GET",
            target: target.to_string().into(),
            headers: crate::http1::Fields::new(),
            now: NOW,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Req {
        assert!(self.headers.append_text(name, value));
        self
    }

    fn bearer(self, token: &str) -> Req {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn run(&mut self, authn: &JwtAuthentication) -> Result<Authenticated, Status> {
        authn.authenticate(&mut AuthnRequest {
            method: self.method,
            target: &mut self.target,
            headers: &mut self.headers,
            unix_now: self.now,
        })
    }
}

#[test]
fn istio_sample_demo_jwt_verifies_with_istio_sample_jwks() {
    let dir = shared().join("istio/security/jwt");
    let jwks = Jwks::parse(&std::fs::read_to_string(dir.join("jwks.json")).unwrap()).unwrap();
    let token = std::fs::read_to_string(dir.join("demo.jwt")).unwrap();
    let mut p = provider(jwks);
    p.issuer = "testing@secure.istio.io".into();
    let out = Req::get("/")
        .bearer(token.trim())
        .run(&istio(vec![p]))
        .unwrap();
    let payload = out.payload().expect("verified");
    assert_eq!(
        payload.principal(),
        "testing@secure.istio.io/testing@secure.istio.io"
    );
    assert_eq!(payload.get(&["foo"]), Some(&json!("bar")));
}

#[test]
fn istio_sample_token_with_a_changed_payload_fails_verification() {
    let dir = shared().join("istio/security/jwt");
    let jwks = Jwks::parse(&std::fs::read_to_string(dir.join("jwks.json")).unwrap()).unwrap();
    let token = std::fs::read_to_string(dir.join("demo.jwt")).unwrap();
    let parts: Vec<&str> = token.trim().split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(
        br#"{"exp":4685989700,"foo":"bar","iat":1532389700,"iss":"testing@secure.istio.io","sub":"admin"}"#,
    );
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    let mut p = provider(jwks);
    p.issuer = "testing@secure.istio.io".into();
    let err = Req::get("/")
        .bearer(&tampered)
        .run(&istio(vec![p]))
        .unwrap_err();
    assert_eq!(err, Status::JwtVerificationFail);
    assert_eq!(err.message(), "Jwt verification fails");
    assert_eq!(err.http_status(), 401);
}

#[test]
fn envoy_allow_missing_a_request_without_token_passes_anonymous() {
    let out = Req::get("/")
        .run(&istio(vec![provider(hs_jwks())]))
        .unwrap();
    assert_eq!(out, Authenticated::Anonymous);
}

#[test]
fn envoy_a_present_but_invalid_token_is_refused_even_with_allow_missing() {
    let err = Req::get("/")
        .bearer("not-a-jwt")
        .run(&istio(vec![provider(hs_jwks())]))
        .unwrap_err();
    assert_eq!(err, Status::JwtBadFormat);
}

#[test]
fn envoy_exp_is_checked_at_engine_time_with_60s_skew() {
    let authn = istio(vec![provider(hs_jwks())]);
    let token = hs_token(json!({"iss": ISSUER, "sub": "a", "exp": NOW}));
    let at = |now| {
        let mut r = Req::get("/").bearer(&token);
        r.now = now;
        r.run(&authn)
    };
    assert!(at(NOW + 60).is_ok(), "within the skew");
    assert_eq!(at(NOW + 61), Err(Status::JwtExpired));
    assert_eq!(Status::JwtExpired.message(), "Jwt is expired");
}

#[test]
fn envoy_nbf_in_the_future_is_not_yet_valid() {
    let authn = istio(vec![provider(hs_jwks())]);
    let token = hs_token(json!({"iss": ISSUER, "sub": "a", "nbf": NOW + 61}));
    assert_eq!(
        Req::get("/").bearer(&token).run(&authn),
        Err(Status::JwtNotYetValid)
    );
    let token = hs_token(json!({"iss": ISSUER, "sub": "a", "nbf": NOW + 60}));
    assert!(Req::get("/").bearer(&token).run(&authn).is_ok());
}

#[test]
fn envoy_unknown_issuer_is_refused() {
    let token = hs_token(json!({"iss": "https://other.example", "sub": "a"}));
    assert_eq!(
        Req::get("/")
            .bearer(&token)
            .run(&istio(vec![provider(hs_jwks())])),
        Err(Status::JwtUnknownIssuer)
    );
}

#[test]
fn envoy_audiences_compare_without_scheme_and_a_wrong_one_is_403() {
    let mut p = provider(hs_jwks());
    p.audiences = vec!["https://shop/".into()];
    let authn = istio(vec![p]);
    assert!(Req::get("/")
        .bearer(&hs_token(claims()))
        .run(&authn)
        .is_ok());
    let token = hs_token(json!({"iss": ISSUER, "aud": ["billing"]}));
    let err = Req::get("/").bearer(&token).run(&authn).unwrap_err();
    assert_eq!(err, Status::JwtAudienceNotAllowed);
    assert_eq!(err.http_status(), 403);
    let token = hs_token(json!({"iss": ISSUER}));
    assert_eq!(
        Req::get("/").bearer(&token).run(&authn),
        Err(Status::JwtAudienceNotAllowed),
        "no aud at all while audiences are configured"
    );
}

#[test]
fn jwt_verify_lib_kid_selection_mismatch_and_failure() {
    let authn = istio(vec![provider(hs_jwks())]);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("other".into());
    let token = encode(&header, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(
        Req::get("/").bearer(&token).run(&authn),
        Err(Status::JwksKidAlgMismatch)
    );
    let token = hs_token(claims());
    // Another character inside the signature (not its last, whose spare bits must be 0).
    let at = token.len() - 10;
    let other = if &token[at..at + 1] == "A" { "B" } else { "A" };
    let wrong = format!("{}{other}{}", &token[..at], &token[at + 1..]);
    assert_eq!(
        Req::get("/").bearer(&wrong).run(&authn),
        Err(Status::JwtVerificationFail)
    );
}

#[test]
fn eddsa_keys_from_a_jwks_verify_and_a_key_without_kid_matches_any_kid() {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwks = Jwks::parse(
        &json!({"keys": [
            {"kty": "RSA", "n": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}
        ]})
        .to_string(),
    )
    .unwrap();
    assert_eq!(jwks.skipped().len(), 2, "{:?}", jwks.skipped());
    assert_eq!(jwks.len(), 1);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("whatever".into());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_ed_der(pkcs8.as_ref()),
    )
    .unwrap();
    let out = Req::get("/")
        .bearer(&token)
        .run(&istio(vec![provider(jwks)]));
    assert!(matches!(out, Ok(Authenticated::Verified(_))), "{out:?}");
}

#[test]
fn envoy_an_empty_jwks_fails_every_token() {
    let err = Req::get("/")
        .bearer(&hs_token(claims()))
        .run(&istio(vec![provider(Jwks::empty())]))
        .unwrap_err();
    assert_eq!(err.message(), "Jwks doesn't have any valid public key");
}

#[test]
fn envoy_forward_false_removes_the_token_and_payload_header_is_written() {
    let mut p = provider(hs_jwks());
    p.forward_payload_header = Some(HeaderName::from_static("x-jwt-payload"));
    p.claim_to_headers = vec![
        ClaimToHeader {
            header: HeaderName::from_static("x-sub"),
            claim: "sub".into(),
        },
        ClaimToHeader {
            header: HeaderName::from_static("x-team"),
            claim: "org.team".into(),
        },
        ClaimToHeader {
            header: HeaderName::from_static("x-groups"),
            claim: "groups".into(),
        },
        ClaimToHeader {
            header: HeaderName::from_static("x-exp"),
            claim: "exp".into(),
        },
    ];
    let token = hs_token(claims());
    let mut req = Req::get("/").bearer(&token).header("x-sub", "forged");
    req.run(&istio(vec![p])).unwrap();
    assert!(req.headers.get("authorization").is_none(), "forward: false");
    let payload_b64 = token.split('.').nth(1).unwrap();
    let field = |name: &str| String::from_utf8_lossy(req.headers.get(name).unwrap()).into_owned();
    assert_eq!(field("x-jwt-payload"), payload_b64);
    let subs: Vec<_> = req.headers.get_all("x-sub").collect();
    assert_eq!(subs, [b"alice"], "the client's x-sub was removed first");
    assert_eq!(field("x-team"), "a");
    assert_eq!(
        field("x-groups"),
        base64::engine::general_purpose::STANDARD.encode(r#"["admins","dev"]"#)
    );
    assert_eq!(field("x-exp"), (NOW + 3600).to_string());
}

#[test]
fn istio_forward_original_token_keeps_the_header() {
    let mut p = provider(hs_jwks());
    p.forward = true;
    let mut req = Req::get("/").bearer(&hs_token(claims()));
    req.run(&istio(vec![p])).unwrap();
    assert!(req.headers.get("authorization").is_some());
}

#[test]
fn envoy_default_locations_include_the_access_token_param_which_is_then_removed() {
    let target = format!("/x?a=1&access_token={}&b=2", hs_token(claims()));
    let mut req = Req::get(&target);
    assert!(matches!(
        req.run(&istio(vec![provider(hs_jwks())])),
        Ok(Authenticated::Verified(_))
    ));
    assert_eq!(req.target, "/x?a=1&b=2");
    let target = format!("/x?b=2&access_token={}&a=1", hs_token(claims()));
    let mut req = Req::get(&target);
    req.run(&istio(vec![provider(hs_jwks())])).unwrap();
    assert_eq!(
        req.target, "/x?a=1&b=2",
        "Envoy writes back what is left sorted by name"
    );
}

#[test]
fn istio_from_headers_and_cookies_replace_the_defaults() {
    let mut p = provider(hs_jwks());
    p.from_headers = vec![JwtHeader {
        name: HeaderName::from_static("x-jwt"),
        value_prefix: "".into(),
    }];
    p.from_cookies = vec!["session".into()];
    let authn = istio(vec![p]);
    let token = hs_token(claims());
    // Authorization is no longer looked at: an invalid token there is simply not seen.
    let out = Req::get("/").bearer("garbage").run(&authn);
    assert_eq!(out, Ok(Authenticated::Anonymous));
    let out = Req::get("/").header("x-jwt", &token).run(&authn);
    assert!(matches!(out, Ok(Authenticated::Verified(_))));
    let mut req = Req::get("/").header("cookie", &format!("a=b; session=\"{token}\""));
    assert!(matches!(req.run(&authn), Ok(Authenticated::Verified(_))));
    assert!(req.headers.get("cookie").is_some(), "Envoy leaves cookies");
}

#[test]
fn envoy_every_token_must_be_valid_a_good_one_does_not_cover_a_bad_one() {
    let mut p = provider(hs_jwks());
    p.from_headers = vec![
        JwtHeader {
            name: HeaderName::from_static("x-a"),
            value_prefix: "".into(),
        },
        JwtHeader {
            name: HeaderName::from_static("x-b"),
            value_prefix: "".into(),
        },
    ];
    let authn = istio(vec![p]);
    let good = hs_token(claims());
    let out = Req::get("/")
        .header("x-a", &good)
        .header("x-b", "YWJj.YWJj.YWJj")
        .run(&authn);
    assert_eq!(out, Err(Status::JwtHeaderParseErrorBadJson));
}

#[test]
fn pilot_two_issuers_each_token_is_checked_by_its_own_provider() {
    let mut other = provider(hs_jwks());
    other.issuer = "https://other.example".into();
    other.name = "origins-1".into();
    let authn = istio(vec![provider(hs_jwks()), other]);
    let out = Req::get("/")
        .bearer(&hs_token(
            json!({"iss": "https://other.example", "sub": "bob"}),
        ))
        .run(&authn)
        .unwrap();
    assert_eq!(
        out.payload().unwrap().principal(),
        "https://other.example/bob"
    );
    assert_eq!(
        Req::get("/")
            .bearer(&hs_token(json!({"iss": "https://third.example"})))
            .run(&authn),
        Err(Status::JwtUnknownIssuer)
    );
    assert_eq!(Req::get("/").run(&authn), Ok(Authenticated::Anonymous));
    let expired = hs_token(json!({"iss": ISSUER, "exp": 1}));
    assert_eq!(
        Req::get("/").bearer(&expired).run(&authn),
        Err(Status::JwtExpired),
        "the telling failure wins over the other provider's unknown issuer"
    );
}

#[test]
fn envoy_cors_preflight_bypasses_authentication() {
    let mut req = Req::get("/")
        .bearer("garbage")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST");
    req.method = "OPTIONS";
    assert_eq!(
        req.run(&istio(vec![provider(hs_jwks())])),
        Ok(Authenticated::CorsPreflight)
    );
}

#[test]
fn envoy_space_delimited_claims_become_lists_in_the_metadata() {
    let out = Req::get("/")
        .bearer(&hs_token(claims()))
        .run(&istio(vec![provider(hs_jwks())]))
        .unwrap();
    assert_eq!(
        out.payload().unwrap().get(&["scope"]),
        Some(&json!(["read", "write"]))
    );
}

#[test]
fn jwt_verify_lib_claim_types_are_checked() {
    let authn = istio(vec![provider(hs_jwks())]);
    for (claims, status) in [
        (json!({"iss": 1}), Status::JwtPayloadParseErrorIssNotString),
        (
            json!({"iss": ISSUER, "exp": "x"}),
            Status::JwtPayloadParseErrorExpNotInteger,
        ),
        (
            json!({"iss": ISSUER, "exp": -5}),
            Status::JwtPayloadParseErrorExpNotPositive,
        ),
        (
            json!({"iss": ISSUER, "aud": [1]}),
            Status::JwtPayloadParseErrorAudNotString,
        ),
    ] {
        assert_eq!(
            Req::get("/").bearer(&hs_token(claims.clone())).run(&authn),
            Err(status),
            "{claims}"
        );
    }
}

#[test]
fn unknown_provider_index_is_refused_at_construction() {
    let err = JwtAuthentication::new(vec![], Requirement::Provider(0), true).unwrap_err();
    assert_eq!(err, UnknownProvider(0, 0));
}

/// Extraction: a token put after the prefix anywhere in a header value is found whole, and a
/// value without the prefix yields nothing.
#[quickcheck]
fn header_extraction_finds_the_token_after_the_prefix(lead: String, token: Vec<u8>) -> bool {
    let token: String = token
        .iter()
        .map(|b| {
            let alphabet = b"abcXYZ019-_.";
            alphabet[usize::from(*b) % alphabet.len()] as char
        })
        .collect();
    let lead: String = lead.chars().filter(|c| !c.is_control()).collect();
    if lead.contains("Bearer ") || token.is_empty() {
        return true;
    }
    let value = format!("{lead}Bearer {token}");
    let found = token_in_header(&value, "Bearer ") == Some(token.as_str());
    let absent = token_in_header(&lead, "Bearer ").is_none();
    found && absent
}

/// Extraction: a parameter's value survives percent-encoding, and removing the parameter
/// leaves the others sorted by name, each name's values in order (Envoy's
/// `QueryParamsMulti`, a `btree_map` of name to values, written back by `toString`).
#[quickcheck]
fn query_param_extraction_round_trips_and_removal_sorts_the_others(
    value: String,
    others: Vec<(u8, u8)>,
) -> bool {
    let encoded: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let written: Vec<String> = others.iter().map(|(k, v)| format!("k{k}=v{v}")).collect();
    let mut pairs = written.clone();
    pairs.insert(written.len() / 2, format!("access_token={encoded}"));
    let target = format!("/p?{}", pairs.join("&"));
    let mut sorted: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in &others {
        sorted
            .entry(format!("k{k}"))
            .or_default()
            .push(format!("v{v}"));
    }
    let rest: Vec<String> = (sorted.iter())
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    let expected = if rest.is_empty() {
        "/p".to_string()
    } else {
        format!("/p?{}", rest.join("&"))
    };
    first_query_value(&target, "access_token").as_deref() == Some(value.as_str())
        && remove_query_param(&target, "access_token") == expected
}

/// Envoy's `JwtParamLocation::removeJwt` (jwt_authn/extractor.cc) rewrites the query it
/// leaves: `parseAndDecodeQueryString` decodes names and values (`PercentEncoding::decode`:
/// `%XX` only, `+` stays), the `btree_map` sorts them, `toString` writes `?k=v&...` without
/// encoding; a name without `=` gets one, an empty segment is an empty name.
#[test]
fn envoy_rewrites_the_query_it_removes_a_token_from() {
    let rm = |t: &str| remove_query_param(t, "access_token");
    assert_eq!(rm("/p?z=1&access_token=t&a=%7E2"), "/p?a=~2&z=1");
    assert_eq!(rm("/p?b=1&access_token=t&b=0&a"), "/p?a=&b=1&b=0");
    assert_eq!(rm("/p?x=a+b&access_token=t"), "/p?x=a+b");
    assert_eq!(rm("/p?x=%4&y=%zz&access_token=t"), "/p?x=%4&y=%zz");
    assert_eq!(rm("/p?a=1&&access_token=t"), "/p?=&a=1");
    assert_eq!(rm("/p?access_token=t&access_token=u"), "/p");
    assert_eq!(
        rm("/p?acc%65ss_token=t&k=v"),
        "/p?k=v",
        "names are decoded first"
    );
    // Where Envoy would write a decoded space raw and break the request line, it stays encoded.
    assert_eq!(rm("/p?q=a%20b&access_token=t"), "/p?q=a%20b");
    assert_eq!(rm("/p"), "/p");
}

/// `PercentEncoding::decode` (source/common/http/utility.cc): two hex digits after `%`, or
/// the bytes as written; `+` is not a space.
#[test]
fn query_values_decode_as_envoy_does() {
    let t = |q: &str| first_query_value(&format!("/p?{q}"), "t");
    assert_eq!(t("t=a+b").as_deref(), Some("a+b"));
    assert_eq!(t("t=%2Bx").as_deref(), Some("+x"));
    assert_eq!(
        t("t=%+1").as_deref(),
        Some("%+1"),
        "`+1` is not two hex digits"
    );
    assert_eq!(t("t=%41").as_deref(), Some("A"));
    assert_eq!(t("t=%4").as_deref(), Some("%4"));
}
