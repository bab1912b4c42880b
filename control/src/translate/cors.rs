//! VirtualService `corsPolicy` → the engine's [`CorsPolicy`], as pilot's TranslateCORSPolicy
//! (pilot/pkg/networking/core/route/route.go) writes Envoy's per-route CORS config:
//! `allowOrigins` as string matchers, or else the deprecated `allowOrigin` as exact ones;
//! the header lists kept as lists (joined with `,` when sent); `maxAge` in whole seconds;
//! `unmatchedPreflights: IGNORE` as `forward_not_matching_preflights: false`, anything else
//! forwarding.
//!
//! What Istio's validation rejects (validateCORSPolicy in pkg/config/validation/validation.go:
//! an origin match that is empty or a bad regex, a method outside its list, a bad header name)
//! is reported as an error and the rule's CORS policy is left out: without it no CORS header is
//! added, so browsers keep refusing cross-origin calls rather than being allowed by a policy
//! read differently from what was written.

use trellis_engine::config::{CorsPolicy, StringMatch, UnmatchedPreflights};

use crate::diag::Diagnostic;
use crate::istio::virtual_service::CorsPolicy as CorsSpec;

use super::matches::string_match;

/// validateCORSHTTPMethod's list (supportedCORSMethods).
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// Translates `spec` found at `at` (the rule's path); `None` after an error diagnostic.
pub fn cors_policy(spec: &CorsSpec, at: &str, diags: &mut Vec<Diagnostic>) -> Option<CorsPolicy> {
    let at = format!("{at}.corsPolicy");
    let mut invalid = false;
    let mut allow_origins = Vec::with_capacity(spec.allow_origins.len());
    for (i, m) in spec.allow_origins.iter().enumerate() {
        let here = format!("{at}.allowOrigins[{i}]");
        match string_match(m, &here, diags) {
            Ok(Some(StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Regex(v)))
                if v.is_empty() =>
            {
                invalid = true;
                diags.push(Diagnostic::error("empty origin match").field(here));
            }
            Ok(Some(m)) => allow_origins.push(m),
            Ok(None) => {
                invalid = true;
                diags.push(
                    Diagnostic::error("origin match without exact, prefix or regex").field(here),
                );
            }
            Err(_) => invalid = true,
        }
    }
    if spec.allow_origins.is_empty() {
        // pilot: `else if in.AllowOrigin != nil` → StringToExactMatch.
        allow_origins = spec
            .allow_origin
            .iter()
            .map(|o| StringMatch::Exact(o.clone()))
            .collect();
        if !spec.allow_origin.is_empty() {
            diags.push(
                Diagnostic::warning("allowOrigin is deprecated; use allowOrigins")
                    .field(format!("{at}.allowOrigin")),
            );
        }
    }
    for (i, method) in spec.allow_methods.iter().enumerate() {
        if !METHODS.contains(&method.as_str()) {
            invalid = true;
            diags.push(
                Diagnostic::error(format!("{method:?} is not a supported HTTP method"))
                    .field(format!("{at}.allowMethods[{i}]")),
            );
        }
    }
    for (field, names) in [
        ("allowHeaders", &spec.allow_headers),
        ("exposeHeaders", &spec.expose_headers),
    ] {
        for (i, name) in names.iter().enumerate() {
            if !valid_header_name(name) {
                invalid = true;
                diags.push(
                    Diagnostic::error(format!("{name:?} is not a valid header name"))
                        .field(format!("{at}.{field}[{i}]")),
                );
            }
        }
    }
    let max_age = spec.max_age.map(|d| d.0);
    if max_age.is_some_and(|d| d.subsec_nanos() > 0) {
        invalid = true;
        diags.push(
            Diagnostic::error("max_age duration is accurate only to seconds precision")
                .field(format!("{at}.maxAge")),
        );
    }
    let unmatched_preflights = match spec.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED" | "FORWARD") => UnmatchedPreflights::Forward,
        Some("IGNORE") => UnmatchedPreflights::Ignore,
        Some(other) => {
            invalid = true;
            diags.push(
                Diagnostic::error(format!(
                    "unknown unmatchedPreflights {other:?} (UNSPECIFIED, FORWARD or IGNORE)"
                ))
                .field(format!("{at}.unmatchedPreflights")),
            );
            UnmatchedPreflights::Forward
        }
    };
    if invalid {
        diags.push(Diagnostic::error("CORS policy left out: it is invalid").field(at));
        return None;
    }
    Some(CorsPolicy {
        allow_origins,
        allow_methods: spec.allow_methods.clone(),
        allow_headers: spec.allow_headers.clone(),
        expose_headers: spec.expose_headers.clone(),
        max_age,
        allow_credentials: spec.allow_credentials,
        unmatched_preflights,
    })
}

/// ValidateCORSHTTPHeaderName: `*`, or an RFC 9110 token (validHeaderNameRegex of `tchars`).
fn valid_header_name(name: &str) -> bool {
    name == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
}

#[cfg(test)]
#[path = "cors_tests.rs"]
mod tests;
