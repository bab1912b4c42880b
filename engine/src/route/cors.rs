//! A route's CORS policy, compiled, and the decisions of Envoy's CORS filter
//! (source/extensions/filters/http/cors/cors_filter.cc) taken with it.
//!
//! Per request ([`CompiledCors::on_request`], Envoy's `decodeHeaders`):
//! - no `origin` (or an empty one): not a CORS request, nothing happens;
//! - a preflight (`OPTIONS` with `origin` and a non-empty `access-control-request-method`) is
//!   answered here with 200 and the allow headers when the origin is allowed; from an origin that
//!   is not allowed it is forwarded (`unmatchedPreflights: FORWARD`, the default) or answered 200
//!   without `access-control-allow-origin` (`IGNORE`);
//! - any other request is forwarded, and remembers the origin when it is allowed.
//!
//! Per response ([`CompiledCors::decorate`], Envoy's `encodeHeaders`): for an allowed origin,
//! `access-control-allow-origin` is the request's origin, `-allow-credentials: true` when set,
//! `-expose-headers` when set; for any other origin the response is left alone.
//!
//! Everything that can fail (regexes, header values) is checked when the snapshot is compiled,
//! and the header values are rendered once then; a request without `origin` costs one lookup.

use bytes::Bytes;

use crate::config::{CorsPolicy, UnmatchedPreflights};
use crate::http1::{valid_value, FieldName, Fields};

use super::error::{Location, RouteError};
use super::matcher::StrMatcher;

const ORIGIN: &str = "origin";
const REQUEST_METHOD: &str = "access-control-request-method";
const REQUEST_HEADERS: &str = "access-control-request-headers";
/// Response header names, as Envoy's `CustomHeaders`.
pub const ALLOW_ORIGIN: FieldName = FieldName::from_static("access-control-allow-origin");
pub const ALLOW_CREDENTIALS: FieldName = FieldName::from_static("access-control-allow-credentials");
pub const ALLOW_METHODS: FieldName = FieldName::from_static("access-control-allow-methods");
pub const ALLOW_HEADERS: FieldName = FieldName::from_static("access-control-allow-headers");
pub const MAX_AGE: FieldName = FieldName::from_static("access-control-max-age");
pub const EXPOSE_HEADERS: FieldName = FieldName::from_static("access-control-expose-headers");

/// A [`CorsPolicy`] ready to use: origin matchers compiled, header values rendered.
#[derive(Debug)]
pub struct CompiledCors {
    origins: Vec<StrMatcher>,
    allow_methods: Option<Bytes>,
    allow_headers: Option<Bytes>,
    expose_headers: Option<Bytes>,
    max_age: Option<Bytes>,
    credentials: bool,
    forward_unmatched: bool,
}

/// What the CORS policy does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum CorsVerdict {
    /// Route it as usual; with `Some(origin)`, [`CompiledCors::decorate`] its response.
    Forward(Option<Bytes>),
    /// A preflight the proxy answers: 200 with these headers, never reaching the upstream.
    Preflight(Vec<(FieldName, Bytes)>),
}

impl CompiledCors {
    pub(crate) fn compile(policy: &CorsPolicy, at: &Location) -> Result<CompiledCors, RouteError> {
        let origins = policy
            .allow_origins
            .iter()
            .map(|m| {
                StrMatcher::compile(m, false).map_err(|reason| RouteError::BadRegex {
                    at: Box::new(at.clone()),
                    field: "corsPolicy.allowOrigins".to_owned(),
                    pattern: match m {
                        crate::config::StringMatch::Regex(p) => p.clone(),
                        _ => String::new(),
                    },
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let joined = |list: &[String], name: &FieldName| -> Result<Option<Bytes>, RouteError> {
            if list.is_empty() {
                return Ok(None);
            }
            let value = list.join(",");
            if !valid_value(value.as_bytes()) {
                return Err(RouteError::InvalidHeaderValue {
                    at: Box::new(at.clone()),
                    field: "corsPolicy".to_owned(),
                    name: name.as_str().to_owned(),
                    value,
                });
            }
            Ok(Some(Bytes::from(value)))
        };
        Ok(CompiledCors {
            origins,
            allow_methods: joined(&policy.allow_methods, &ALLOW_METHODS)?,
            allow_headers: joined(&policy.allow_headers, &ALLOW_HEADERS)?,
            expose_headers: joined(&policy.expose_headers, &EXPOSE_HEADERS)?,
            // pilot: strconv.FormatInt(maxAge.GetSeconds(), 10).
            max_age: policy.max_age.map(|d| Bytes::from(d.as_secs().to_string())),
            credentials: policy.allow_credentials == Some(true),
            forward_unmatched: policy.unmatched_preflights == UnmatchedPreflights::Forward,
        })
    }

    /// Envoy's `isOriginAllowed`: some matcher accepts the literal `*` or the origin.
    pub fn origin_allowed(&self, origin: &[u8]) -> bool {
        self.origins
            .iter()
            .any(|m| m.matches(b"*") || m.matches(origin))
    }

    /// Envoy's `decodeHeaders` for a request with `method` and `headers`.
    pub fn on_request(&self, method: &str, headers: &Fields) -> CorsVerdict {
        let origin = match headers.get_shared(ORIGIN) {
            Some(o) if !o.is_empty() => o,
            _ => return CorsVerdict::Forward(None),
        };
        let allowed = self.origin_allowed(&origin);
        let request_method = headers.get(REQUEST_METHOD).unwrap_or_default();
        let preflight = method == "OPTIONS" && !request_method.is_empty();
        #[cfg(feature = "mutants")]
        let allowed_or_planted =
            allowed || crate::mutants::route().cors_unmatched_preflight_answered;
        #[cfg(not(feature = "mutants"))]
        let allowed_or_planted = allowed;
        if !preflight || (!allowed_or_planted && self.forward_unmatched) {
            return CorsVerdict::Forward(allowed.then_some(origin));
        }
        let mut out = Vec::with_capacity(5);
        if allowed {
            out.push((ALLOW_ORIGIN, origin));
        }
        if self.credentials {
            out.push((ALLOW_CREDENTIALS, Bytes::from_static(b"true")));
        }
        #[cfg(feature = "mutants")]
        let literal = crate::mutants::route().cors_star_methods_literal;
        #[cfg(not(feature = "mutants"))]
        let literal = false;
        if let (true, Some(v)) = (literal, &self.allow_methods) {
            out.push((ALLOW_METHODS, v.clone()));
        }
        let echo = |configured: &Option<Bytes>, asked: &[u8]| {
            configured.as_ref().map(|v| match &v[..] {
                b"*" => Bytes::copy_from_slice(asked),
                _ => v.clone(),
            })
        };
        if let (false, Some(v)) = (literal, echo(&self.allow_methods, request_method)) {
            out.push((ALLOW_METHODS, v));
        }
        let asked_headers = headers.get(REQUEST_HEADERS).unwrap_or_default();
        if let Some(v) = echo(&self.allow_headers, asked_headers) {
            out.push((ALLOW_HEADERS, v));
        }
        if let Some(v) = &self.max_age {
            out.push((MAX_AGE, v.clone()));
        }
        CorsVerdict::Preflight(out)
    }

    /// Envoy's `encodeHeaders` for a request whose allowed `origin` was latched.
    pub fn decorate(&self, origin: &Bytes, headers: &mut Fields) {
        headers.insert(ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(ALLOW_CREDENTIALS, Bytes::from_static(b"true"));
        }
        if let Some(v) = &self.expose_headers {
            headers.insert(EXPOSE_HEADERS, v.clone());
        }
    }
}

#[cfg(test)]
#[path = "cors_tests.rs"]
mod tests;
