//! One JWT taken apart: `header.payload.signature`, each part checked the way
//! `jwt_verify_lib`'s `Jwt::parseFromString` checks it (`jwt_verify_lib/jwt.cc`), so that a
//! malformed token is refused with the same [`Status`] Envoy gives; then the two checks that
//! need the provider but no key: time (`Jwt::verifyTimeConstraint`, with Envoy's default 60 s
//! clock skew) and audiences (`CheckAudience`).
//!
//! The signature itself is checked by [`super::jwks`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::status::Status;

/// A JWT whose form is valid (its signature is not checked yet).
#[derive(Clone, Debug, PartialEq)]
pub struct Jwt<'t> {
    pub alg: Algorithm,
    /// The header's `kid` ("" when absent, as jwt_verify_lib).
    pub kid: String,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'t str,
    /// The payload part as it was in the token (base64url): Envoy's `forward_payload_header`.
    pub payload_b64: &'t str,
    /// The signature part (base64url).
    pub signature_b64: &'t str,
    pub payload: Map<String, Value>,
    pub iss: String,
    pub sub: String,
    pub audiences: Vec<String>,
    /// 0 when absent.
    pub exp: u64,
    pub nbf: u64,
}

/// Decode base64url with or without padding (jwt_verify_lib's `Base64UrlDecode` takes both).
fn b64url(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

/// The algorithms Trellis verifies: what `jsonwebtoken` implements of jwt_verify_lib's list
/// (ES512 is the one jwt_verify_lib has and the crate lacks; such tokens are refused as an
/// unsupported algorithm).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A numeric date claim (`StructUtils::GetUInt64`): absent is 0.
fn numeric_date(
    payload: &Map<String, Value>,
    name: &str,
    not_integer: Status,
    not_positive: Status,
) -> Result<u64, Status> {
    match payload.get(name) {
        None => Ok(0),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(v),
            (None, Some(f)) if f >= 0.0 => Ok(f as u64),
            (None, Some(_)) => Err(not_positive),
            (None, None) => Err(not_integer),
        },
        Some(_) => Err(not_integer),
    }
}

fn optional_string(
    payload: &Map<String, Value>,
    name: &str,
    err: Status,
) -> Result<String, Status> {
    match payload.get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(err),
    }
}

impl<'t> Jwt<'t> {
    /// Take `token` apart, or say what is wrong with its form.
    pub fn parse(token: &'t str) -> Result<Jwt<'t>, Status> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Status::JwtBadFormat);
        };
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

        let header = b64url(header_b64).ok_or(Status::JwtHeaderParseErrorBadBase64)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header).map_err(|_| Status::JwtHeaderParseErrorBadJson)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => {
                algorithm(name).ok_or(Status::JwtHeaderNotImplementedAlg)?
            }
            _ => return Err(Status::JwtHeaderBadAlg),
        };
        let kid = match header.get("kid") {
            None => String::new(),
            Some(Value::String(kid)) => kid.clone(),
            Some(_) => return Err(Status::JwtHeaderBadKid),
        };

        let payload = b64url(payload_b64).ok_or(Status::JwtPayloadParseErrorBadBase64)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| Status::JwtPayloadParseErrorBadJson)?;
        let iss = optional_string(&payload, "iss", Status::JwtPayloadParseErrorIssNotString)?;
        let sub = optional_string(&payload, "sub", Status::JwtPayloadParseErrorSubNotString)?;
        numeric_date(
            &payload,
            "iat",
            Status::JwtPayloadParseErrorIatNotInteger,
            Status::JwtPayloadParseErrorIatNotPositive,
        )?;
        let nbf = numeric_date(
            &payload,
            "nbf",
            Status::JwtPayloadParseErrorNbfNotInteger,
            Status::JwtPayloadParseErrorNbfNotPositive,
        )?;
        let exp = numeric_date(
            &payload,
            "exp",
            Status::JwtPayloadParseErrorExpNotInteger,
            Status::JwtPayloadParseErrorExpNotPositive,
        )?;
        optional_string(&payload, "jti", Status::JwtPayloadParseErrorJtiNotString)?;
        let audiences = match payload.get("aud") {
            None => Vec::new(),
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Status::JwtPayloadParseErrorAudNotString)?,
            Some(_) => return Err(Status::JwtPayloadParseErrorAudNotString),
        };

        b64url(signature_b64).ok_or(Status::JwtSignatureParseErrorBadBase64)?;
        Ok(Jwt {
            alg,
            kid,
            signing_input,
            payload_b64,
            signature_b64,
            payload,
            iss,
            sub,
            audiences,
            exp,
            nbf,
        })
    }

    /// `Jwt::verifyTimeConstraint(now, clock_skew)`: not before `nbf - skew`, not after
    /// `exp + skew` (an absent `exp` never expires).
    pub fn check_time(&self, unix_now: u64, clock_skew_secs: u64) -> Result<(), Status> {
        if unix_now.saturating_add(clock_skew_secs) < self.nbf {
            return Err(Status::JwtNotYetValid);
        }
        if self.exp != 0 && unix_now > self.exp.saturating_add(clock_skew_secs) {
            return Err(Status::JwtExpired);
        }
        Ok(())
    }

    /// `CheckAudience::areAudiencesAllowed`: with no configured audience every token passes;
    /// otherwise one of the token's audiences must be configured, both sides compared without
    /// an `http://`/`https://` scheme and a trailing `/`.
    pub fn audience_allowed(&self, configured: &[String]) -> bool {
        if configured.is_empty() {
            return true;
        }
        self.audiences.iter().any(|aud| {
            let aud = normalize_audience(aud);
            configured.iter().any(|c| normalize_audience(c) == aud)
        })
    }
}

/// jwt_verify_lib's `sanitizeAudience`.
fn normalize_audience(aud: &str) -> &str {
    let aud = aud
        .strip_prefix("http://")
        .or_else(|| aud.strip_prefix("https://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}
