//! JWT (RequestAuthentication) in the security world: which services have one and when it is
//! pushed on or off, the tokens callers send (minted here from the seed: Ed25519, whose
//! signatures are deterministic), the RequestAuthentication YAML the control plane translates
//! (`trellis_control::translate::authentication_for`, the path a real one takes), and the
//! reference, written from Istio's documented semantics and Envoy's `jwt_authn` filter as
//! pilot configures it (one rule: `requires_any [origins-0, allow_missing]`,
//! `convertToEnvoyJwtConfig` in pilot/pkg/security/authn/policy_applier.go; Envoy's
//! verifier.cc and jwt_verify_lib's `verifyTimeConstraint`):
//!
//! - a service without a RequestAuthentication in force reads no token: it never answers 401,
//!   and its requests have no `request.auth.principal`;
//! - with one, a request without a token passes with no principal (AuthorizationPolicy's
//!   `requestPrincipals` decide: "require JWT" is a DENY on `notRequestPrincipals: ["*"]`);
//! - a token that fails (an issuer no rule names, an expiry past, by the ENGINE's clock, i.e.
//!   simulated time, beyond the 60 s clock skew, a signature from another key) is answered
//!   401 and never reaches the workload;
//! - a valid token passes with `request.auth.principal` = `<iss>/<sub>`.

use std::sync::Arc;

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use trellis_engine::authn::JwtAuthentication;
use trellis_engine::Instant;

use super::ca::UNIX_BASE;

/// The issuer of every RequestAuthentication of the world.
pub const ISSUER: &str = "https://issuer.sim";
/// Envoy's default clock skew (`kClockSkewInSecond`), which pilot never changes.
const SKEW_SECS: u64 = 60;
const SUBJECTS: [&str; 3] = ["alice", "bob", "carol"];

/// A token a caller sends in `Authorization: Bearer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSpec {
    pub sub: String,
    /// `iss` is [`ISSUER`]; else another issuer's.
    pub issuer_ok: bool,
    /// Signed with the key the JWKS publishes; else with another key under the same `kid`.
    pub key_ok: bool,
    /// `exp`, in seconds after [`UNIX_BASE`] (negative: before the run started).
    pub exp_s: i64,
}

impl TokenSpec {
    fn exp(&self) -> u64 {
        UNIX_BASE.as_secs().saturating_add_signed(self.exp_s)
    }

    /// Whether the token verifies at `unix_now` (the inbound sidecar's clock).
    pub fn valid_at(&self, unix_now: u64) -> bool {
        self.issuer_ok && self.key_ok && unix_now <= self.exp() + SKEW_SECS
    }

    /// `request.auth.principal` of the token once verified.
    pub fn principal(&self) -> String {
        format!("{ISSUER}/{}", self.sub)
    }

    /// The compact JWT, signed with the world's key (or the impostor key).
    pub fn mint(&self, keys: &JwtKeys) -> String {
        let header = JwtKeys::header();
        let iss = if self.issuer_ok {
            ISSUER
        } else {
            "https://other.sim"
        };
        let payload = serde_json::json!({
            "iss": iss,
            "sub": self.sub,
            "iat": UNIX_BASE.as_secs() - 7_200,
            "exp": self.exp(),
        });
        keys.sign(&header, &payload, self.key_ok)
    }
}

/// Which services have a RequestAuthentication at the start, and when it is pushed on or off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSpec {
    pub initially: Vec<bool>,
}

/// The world's signing key and an impostor's, from the seed.
pub struct JwtKeys {
    good: Ed25519KeyPair,
    bad: Ed25519KeyPair,
}

impl JwtKeys {
    pub fn new(seed: u64) -> JwtKeys {
        let key = |salt: u64| {
            let mut bytes = [0u8; 32];
            let mut r = fastrand::Rng::with_seed(seed ^ salt);
            r.fill(&mut bytes);
            Ed25519KeyPair::from_seed_unchecked(&bytes).expect("any 32 bytes are an Ed25519 seed")
        };
        JwtKeys {
            good: key(0x1a7_0000_0016),
            bad: key(0xbad_0000_0016),
        }
    }

    /// The compact JWS of `payload` under `header` (base64url already), signed with the key
    /// the JWKS publishes (`good`) or the impostor's.
    pub fn sign(&self, header: &str, payload: &serde_json::Value, good: bool) -> String {
        let signed = format!("{header}.{}", b64(payload.to_string().as_bytes()));
        let key = if good { &self.good } else { &self.bad };
        let sig = key.sign(signed.as_bytes());
        format!("{signed}.{}", b64(sig.as_ref()))
    }

    /// The JOSE header of every token of the simulator (base64url).
    pub fn header() -> String {
        b64(br#"{"alg":"EdDSA","kid":"sim","typ":"JWT"}"#)
    }

    /// The JWKS a RequestAuthentication carries inline.
    pub fn jwks(&self) -> String {
        let x = b64(self.good.public_key().as_ref());
        format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"sim","alg":"EdDSA","x":"{x}"}}]}}"#
        )
    }
}

/// The world's JWT state: keys, which services' RequestAuthentication is in force, since when,
/// and each one's translation by the control plane.
pub struct JwtState {
    keys: JwtKeys,
    pub on: Vec<bool>,
    /// The `on` vector from each instant on (the first from zero).
    pub gens: Vec<(Instant, Vec<bool>)>,
    authn: Vec<Option<Arc<JwtAuthentication>>>,
}

impl JwtState {
    /// `services`: every service's `(app, namespace)`.
    pub fn new(seed: u64, spec: &JwtSpec, services: &[(&str, &str)]) -> Result<JwtState, String> {
        let keys = JwtKeys::new(seed);
        let mut authn = Vec::new();
        for (app, namespace) in services {
            let yaml = request_authentication_yaml(app, namespace, &keys);
            let set = trellis_control::istio::parse_str(&yaml, "sim-jwt.yaml")
                .map_err(|e| format!("the control plane refused a RequestAuthentication: {e}"))?;
            let workload = trellis_control::translate::workload::Workload {
                namespace: namespace.to_string(),
                service_account: app.to_string(),
                labels: [("app".to_string(), app.to_string())].into(),
                locality: None,
            };
            let t = trellis_control::translate::authentication_for(
                &set,
                &workload,
                &trellis_control::jwks_resolver::NoFetch,
            );
            authn.push(t.authentication);
        }
        Ok(JwtState {
            keys,
            on: spec.initially.clone(),
            gens: vec![(Instant::ZERO, spec.initially.clone())],
            authn,
        })
    }

    /// The JWT authentication of service `s`'s inbound listener now.
    pub fn authentication(&self, s: usize) -> Option<Arc<JwtAuthentication>> {
        match self.on.get(s) {
            Some(true) => self.authn.get(s).cloned().flatten(),
            _ => None,
        }
    }

    pub fn set(&mut self, now: Instant, s: usize, on: bool) {
        if let Some(v) = self.on.get_mut(s) {
            *v = on;
        }
        self.gens.push((now, self.on.clone()));
    }

    /// The request header carrying `token`.
    pub fn header(&self, token: &TokenSpec) -> String {
        format!("authorization: Bearer {}\r\n", token.mint(&self.keys))
    }

    /// Whether service `s` had its RequestAuthentication in force at some instant of
    /// `[from, to]`.
    pub fn on_during(&self, s: usize, from: Instant, to: Instant) -> bool {
        (0..self.gens.len()).any(|i| {
            let until = self.gens.get(i + 1).map_or(Instant::FAR_FUTURE, |g| g.0);
            self.gens[i].0 <= to && until > from && self.gens[i].1.get(s) == Some(&true)
        })
    }
}

/// Base64url without padding (RFC 7515's encoding of JWS parts).
fn b64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for k in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * k) & 63) as usize]));
        }
    }
    out
}

/// The RequestAuthentication of service `app` in `namespace`, as Istio YAML.
pub fn request_authentication_yaml(app: &str, namespace: &str, keys: &JwtKeys) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt-{app}, namespace: {namespace}}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  jwtRules:\n  - issuer: {ISSUER}\n    jwks: {:?}\n",
        keys.jwks()
    )
}

/// A token for a request, in the seeds whose world has JWT: none in a third of them, else
/// valid, long expired, expiring during the run (valid first, refused later), from another
/// issuer, or with a bad signature.
pub fn draw_token(r: &mut fastrand::Rng, duration_ms: u64) -> Option<TokenSpec> {
    let mut token = TokenSpec {
        sub: SUBJECTS[r.usize(0..SUBJECTS.len())].to_string(),
        issuer_ok: true,
        key_ok: true,
        exp_s: 3_600,
    };
    match r.u8(0..12) {
        0..=3 => return None,
        4..=6 => {}
        7 => token.exp_s = -3_600,
        8 => token.exp_s = -(SKEW_SECS as i64) + r.i64(0..(duration_ms / 1000) as i64),
        9 => token.issuer_ok = false,
        _ => token.key_ok = false,
    }
    Some(token)
}

/// The request principals policies name: each subject's, any (`*`), one no token carries.
pub fn principal_pool() -> Vec<String> {
    let mut pool: Vec<String> = SUBJECTS.iter().map(|s| format!("{ISSUER}/{s}")).collect();
    pool.push("*".into());
    pool.push(format!("{ISSUER}/mallory"));
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_without_padding() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg");
        assert_eq!(b64(b"fo"), "Zm8");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn the_control_plane_accepts_the_yaml_and_the_engine_the_tokens() {
        let keys = JwtKeys::new(7);
        let yaml = request_authentication_yaml("svc0", "shop", &keys);
        let set = trellis_control::istio::parse_str(&yaml, "t").expect("parses");
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let workload = trellis_control::translate::workload::Workload {
            namespace: "shop".into(),
            service_account: "svc0".into(),
            labels: [("app".to_string(), "svc0".to_string())].into(),
            locality: None,
        };
        let t = trellis_control::translate::authentication_for(
            &set,
            &workload,
            &trellis_control::jwks_resolver::NoFetch,
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        assert!(t.authentication.is_some());
        let token = TokenSpec {
            sub: "alice".into(),
            issuer_ok: true,
            key_ok: true,
            exp_s: 10,
        };
        assert_eq!(
            token.mint(&keys),
            token.mint(&JwtKeys::new(7)),
            "deterministic"
        );
        assert!(token.valid_at(UNIX_BASE.as_secs() + 70));
        assert!(!token.valid_at(UNIX_BASE.as_secs() + 71));
    }
}
