//! A JSON Web Key Set (RFC 7517) turned into public keys, and the signature check of a JWT
//! against it with `jwt_verify_lib`'s key selection (`verify.cc`
//! `verifyJwtWithoutTimeChecking`):
//! - a key whose `kid` differs from the token's is skipped (a key or token without `kid`
//!   matches any);
//! - a key whose `alg` differs from the token's is skipped (a key without `alg` matches any);
//! - the key type must suit the algorithm (RSA for RS*/PS*, EC P-256/P-384 for ES256/ES384,
//!   OKP Ed25519 for EdDSA, oct for HS*);
//! - the first key that verifies wins; if some key was tried and none verified the token
//!   fails with `Jwt verification fails`, if no key was even eligible with `Jwks doesn't have
//!   key to match kid or alg from Jwt`.
//!
//! Keys come from `jsonwebtoken`'s JWK support ([`DecodingKey::from_jwk`]) and are checked
//! with its `crypto::verify` (ring underneath). A key the crate cannot read (another `kty`, an
//! unsupported curve, missing parameters) is skipped and reported in [`Jwks::skipped`]; a set
//! without one usable key fails every token with `Jwks doesn't have any valid public key`, as
//! Envoy does for an invalid local JWKS.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::status::Status;
use super::token::Jwt;

/// What kind of key a JWK holds, as far as algorithm compatibility goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Hmac,
}

impl KeyKind {
    fn suits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

struct Key {
    kid: String,
    /// The JWK's `alg`, `None` when absent.
    alg: Option<Algorithm>,
    kind: KeyKind,
    key: DecodingKey,
}

/// A parsed JWKS. Compared by its source text (the keys are derived from it).
#[derive(Clone)]
pub struct Jwks {
    source: Arc<str>,
    keys: Arc<[Key]>,
    skipped: Arc<[String]>,
}

/// A JWKS whose structure is wrong (not JSON, no `keys` array).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("Jwks is an invalid JSON: {0}")]
    Json(String),
    #[error("Jwks does not have [keys] field")]
    NoKeys,
    #[error("[keys] in Jwks is not an array")]
    BadKeys,
}

impl Jwks {
    /// Read a JWKS document. Keys that cannot be used are skipped (see [`Jwks::skipped`]).
    pub fn parse(text: &str) -> Result<Jwks, JwksError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| JwksError::Json(e.to_string()))?;
        let list = match doc.get("keys") {
            None => return Err(JwksError::NoKeys),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(JwksError::BadKeys),
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            match read_key(raw) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("keys[{i}]: {why}")),
            }
        }
        Ok(Jwks {
            source: text.into(),
            keys: keys.into(),
            skipped: skipped.into(),
        })
    }

    /// A set with no key: every token fails with `Jwks doesn't have any valid public key`.
    pub fn empty() -> Jwks {
        Jwks {
            source: "".into(),
            keys: Arc::new([]),
            skipped: Arc::new([]),
        }
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Why some keys of the document were not taken.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Check `jwt`'s signature (see the module docs for the key selection).
    pub fn verify(&self, jwt: &Jwt<'_>) -> Result<(), Status> {
        if self.keys.is_empty() {
            return Err(Status::JwksNoValidKeys);
        }
        let mut eligible = false;
        for key in self.keys.iter() {
            if !jwt.kid.is_empty() && !key.kid.is_empty() && key.kid != jwt.kid {
                continue;
            }
            if key.alg.is_some_and(|alg| alg != jwt.alg) {
                continue;
            }
            if !key.kind.suits(jwt.alg) {
                continue;
            }
            eligible = true;
            // `suits` guarantees the key's family matches the algorithm, which the crate
            // requires (it cannot verify an HMAC with an RSA key, and vice versa).
            let ok = jsonwebtoken::crypto::verify(
                jwt.signature_b64,
                jwt.signing_input.as_bytes(),
                &key.key,
                jwt.alg,
            )
            .unwrap_or(false);
            if ok {
                return Ok(());
            }
        }
        Err(if eligible {
            Status::JwtVerificationFail
        } else {
            Status::JwksKidAlgMismatch
        })
    }
}

/// One JWK → a usable key, or why not.
fn read_key(raw: &Value) -> Result<Key, String> {
    let text = |name: &str| raw.get(name).and_then(Value::as_str).unwrap_or("");
    let kind = match (text("kty"), text("crv")) {
        ("", _) => return Err("[kty] is missing".into()),
        ("RSA", _) => KeyKind::Rsa,
        ("EC", "P-256") => KeyKind::EcP256,
        ("EC", "P-384") => KeyKind::EcP384,
        ("EC", crv) => return Err(format!("EC curve {crv:?} is not supported")),
        ("OKP", "Ed25519") => KeyKind::Ed25519,
        ("OKP", crv) => return Err(format!("OKP curve {crv:?} is not supported")),
        ("oct", _) => KeyKind::Hmac,
        (kty, _) => return Err(format!("[kty] {kty:?} is not supported")),
    };
    let alg = match text("alg") {
        "" => None,
        name => match super::token::algorithm(name) {
            Some(alg) if kind.suits(alg) => Some(alg),
            _ => return Err(format!("[alg] {name:?} does not suit a {kind:?} key")),
        },
    };
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Key {
        kid: text("kid").to_string(),
        alg,
        kind,
        key,
    })
}

impl PartialEq for Jwks {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("Jwks")
            .field("kids", &kids)
            .field("skipped", &self.skipped)
            .finish()
    }
}
