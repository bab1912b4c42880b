//! RequestAuthentication → the engine's JWT authentication for one workload's inbound
//! listeners: pilot's `pilot/pkg/security/authn` (`policy_applier.go` `newPolicyApplier` and
//! `convertToEnvoyJwtConfig`), step for step:
//! - selection as for every security policy (`attached_to`): the root namespace's and the
//!   workload's namespace's RequestAuthentications whose selector matches; ALL of them apply,
//!   their JWT rules merged into one list sorted by issuer;
//! - one provider per rule, named `origins-<i>`: `issuer`, `audiences`, the JWKS (inline
//!   `jwks`, else `jwksUri` or OpenID discovery resolved on the control side, failing closed,
//!   see `crate::jwks_resolver`), `fromHeaders` / `fromParams` / `fromCookies` (none given:
//!   Envoy's `Authorization: Bearer` and `access_token`), `forwardOriginalToken`,
//!   `outputPayloadToHeader`, `outputClaimToHeaders`, and `spaceDelimitedClaims` plus `scope`
//!   and `permission` (`buildSpaceDelimitedClaims`);
//! - the requirement: one provider is "it or nothing" (`requires_any [provider,
//!   allow_missing]`); several are "any one of them, or each of them or nothing"
//!   (`requires_any [p0, p1, ..., requires_all [any[p0, missing], any[p1, missing], ...]]`),
//!   so a request without a token passes (authorization's `requestPrincipals` decide) and a
//!   request with an invalid token is refused.
//!
//! Istio's validating webhook refuses a rule without `issuer`, an empty header name, a bad
//! `jwksUri`; without that webhook, translation reports them as errors (which the sidecar
//! NACKs) and leaves the rule out.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use trellis_engine::authn::{
    ClaimToHeader, Jwks, JwtAuthentication, JwtHeader, JwtProvider, Requirement,
    DEFAULT_CLOCK_SKEW_SECS,
};

use super::authz::attached_to;
use super::workload::Workload;
use crate::diag::Diagnostic;
use crate::istio::request_authentication::{JwtRule, RequestAuthenticationSpec};
use crate::istio::{Resource, ResourceSet};
use crate::jwks_resolver::{JwksSource, DEFAULT_TIMEOUT, PUBLIC_ONLY_JWKS};

/// pilot's default space-delimited claims.
const DEFAULT_SPACE_DELIMITED: [&str; 2] = ["permission", "scope"];

/// The JWT authentication for a workload, and what translation noticed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthnTranslation {
    /// `None` when no RequestAuthentication selects the workload (no JWT is looked at).
    pub authentication: Option<Arc<JwtAuthentication>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The JWT authentication of the RequestAuthentications that select `workload`; `jwks`
/// resolves rules that name a URI (the control plane's resolver, or `NoFetch` in a sidecar).
pub fn authentication_for(
    resources: &ResourceSet,
    workload: &Workload,
    jwks: &dyn JwksSource,
) -> AuthnTranslation {
    let mut diagnostics = Vec::new();
    let policies = attached_to(
        &resources.request_authentications,
        workload,
        &mut diagnostics,
    );
    let mut rules: Vec<(&Resource<RequestAuthenticationSpec>, usize, &JwtRule)> = policies
        .iter()
        .flat_map(|p| {
            p.spec
                .jwt_rules
                .iter()
                .enumerate()
                .map(move |(i, r)| (*p, i, r))
        })
        .collect();
    // pilot sorts by issuer so the filter config is deterministic (stable here: equal issuers
    // keep their policy order).
    rules.sort_by(|a, b| a.2.issuer.cmp(&b.2.issuer));
    let mut providers = Vec::new();
    for (policy, index, rule) in rules {
        let field = format!("spec.jwtRules[{index}]");
        let mut report = |d: Diagnostic| diagnostics.push(policy.diag(d.field(field.clone())));
        if let Some(p) = provider(providers.len(), rule, jwks, &mut report) {
            providers.push(p);
        }
    }
    if providers.is_empty() {
        return AuthnTranslation {
            authentication: None,
            diagnostics,
        };
    }
    let optional = |i: usize| Requirement::Any {
        of: vec![Requirement::Provider(i)],
        allow_missing: true,
    };
    let requirement = if providers.len() == 1 {
        optional(0)
    } else {
        let mut of: Vec<Requirement> = (0..providers.len()).map(Requirement::Provider).collect();
        of.push(Requirement::All(
            (0..providers.len()).map(optional).collect(),
        ));
        Requirement::Any {
            of,
            allow_missing: false,
        }
    };
    let authentication = match JwtAuthentication::new(providers, requirement, true) {
        Ok(a) => Some(Arc::new(a)),
        Err(e) => {
            debug_assert!(false, "the requirement names only built providers: {e}");
            None
        }
    };
    AuthnTranslation {
        authentication,
        diagnostics,
    }
}

fn header_name(name: &str, what: &str, report: &mut impl FnMut(Diagnostic)) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) if !name.starts_with(':') => Some(h),
        _ => {
            report(Diagnostic::error(format!(
                "{what} {name:?} is not a valid header name; the rule is left out"
            )));
            None
        }
    }
}

/// One JWT rule → provider `origins-<index>`, or `None` (reported) when Istio's validation
/// would refuse the rule.
fn provider(
    index: usize,
    rule: &JwtRule,
    jwks_source: &dyn JwksSource,
    report: &mut impl FnMut(Diagnostic),
) -> Option<JwtProvider> {
    if rule.issuer.is_empty() {
        report(Diagnostic::error(
            "issuer must be set (Istio's validation); the rule is left out",
        ));
        return None;
    }
    if rule.audiences.iter().any(String::is_empty) {
        report(Diagnostic::error(
            "audiences must not be empty strings; the rule is left out",
        ));
        return None;
    }
    let mut from_headers = Vec::new();
    for h in &rule.from_headers {
        from_headers.push(JwtHeader {
            name: header_name(&h.name, "fromHeaders name", report)?,
            value_prefix: h.prefix.clone().unwrap_or_default(),
        });
    }
    if rule.from_params.iter().any(String::is_empty)
        || rule.from_cookies.iter().any(String::is_empty)
    {
        report(Diagnostic::error(
            "fromParams / fromCookies must not be empty strings; the rule is left out",
        ));
        return None;
    }
    let forward_payload_header = match rule.output_payload_to_header.as_deref() {
        None | Some("") => None,
        Some(name) => Some(header_name(name, "outputPayloadToHeader", report)?),
    };
    let mut claim_to_headers = Vec::new();
    for c in &rule.output_claim_to_headers {
        if c.claim.is_empty() {
            report(Diagnostic::error(
                "outputClaimToHeaders claim must be set; the rule is left out",
            ));
            return None;
        }
        claim_to_headers.push(ClaimToHeader {
            header: header_name(&c.header, "outputClaimToHeaders header", report)?,
            claim: c.claim.clone(),
        });
    }
    let mut space_delimited_claims: Vec<String> = rule
        .space_delimited_claims
        .iter()
        .cloned()
        .chain(DEFAULT_SPACE_DELIMITED.iter().map(|s| s.to_string()))
        .collect();
    space_delimited_claims.sort();
    space_delimited_claims.dedup();
    Some(JwtProvider {
        name: format!("origins-{index}"),
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        jwks: jwks_for(rule, jwks_source, report)?,
        from_headers,
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward: rule.forward_original_token,
        forward_payload_header,
        claim_to_headers,
        space_delimited_claims,
        clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
    })
}

/// The rule's keys: inline `jwks`, else the URI (or the issuer's discovery) resolved by
/// `source`; a failed resolution fails closed (pilot's `BuildLocalJwks`).
fn jwks_for(
    rule: &JwtRule,
    source: &dyn JwksSource,
    report: &mut impl FnMut(Diagnostic),
) -> Option<Jwks> {
    let uri = rule
        .jwks_uri
        .as_deref()
        .or(rule.jwks_uri_deprecated.as_deref())
        .unwrap_or("");
    if !(uri.is_empty() || uri.starts_with("http://") || uri.starts_with("https://")) {
        report(Diagnostic::error(format!(
            "jwksUri {uri:?} must be an http:// or https:// URL; the rule is left out"
        )));
        return None;
    }
    let text = match rule.jwks.as_deref().filter(|j| !j.is_empty()) {
        Some(inline) => inline.to_string(),
        None => {
            let timeout = rule.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
            match source.resolve(&rule.issuer, uri, timeout.max(Duration::from_millis(1))) {
                Ok(text) => text,
                Err(e) => {
                    report(Diagnostic::warning(format!(
                        "JWKS for issuer {:?} could not be fetched ({e}): every token of this \
                         issuer is refused until it can",
                        rule.issuer
                    )));
                    PUBLIC_ONLY_JWKS.to_string()
                }
            }
        }
    };
    match Jwks::parse(&text) {
        Ok(jwks) => {
            for skipped in jwks.skipped() {
                report(Diagnostic::warning(format!(
                    "JWKS key not usable, skipped: {skipped}"
                )));
            }
            if jwks.is_empty() {
                report(Diagnostic::warning(
                    "the JWKS has no usable key: every token of this issuer is refused \
                     (Jwks doesn't have any valid public key)",
                ));
            }
            Some(jwks)
        }
        Err(e) => {
            report(Diagnostic::warning(format!(
                "invalid JWKS ({e}): every token of this issuer is refused"
            )));
            Some(Jwks::empty())
        }
    }
}

#[cfg(test)]
#[path = "request_authn_tests.rs"]
mod tests;
