//! A route's CORS policy: Istio's `HTTPRoute.corsPolicy` as pilot writes it into Envoy's
//! per-route `envoy.filters.http.cors` config (TranslateCORSPolicy in
//! pilot/pkg/networking/core/route/route.go). The engine answers preflights and decorates
//! responses with it (`route::cors`), as Envoy's CORS filter does (cors_filter.cc).

use std::time::Duration;

use super::StringMatch;

/// Istio `CorsPolicy`, already in Envoy's shape: `allowOrigins`, or else the deprecated
/// `allowOrigin` as exact matches, in one list; the header lists joined with `,` when sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorsPolicy {
    /// `allowOrigins` (or `allowOrigin` as exact matches). An origin is allowed when any of these
    /// matches it, or matches the literal `*` (so `exact: "*"` allows every origin).
    pub allow_origins: Vec<StringMatch>,
    /// `allowMethods`: sent as `access-control-allow-methods`; a lone `*` echoes the preflight's
    /// `access-control-request-method`.
    pub allow_methods: Vec<String>,
    /// `allowHeaders`: sent as `access-control-allow-headers`; a lone `*` echoes the preflight's
    /// `access-control-request-headers`.
    pub allow_headers: Vec<String>,
    /// `exposeHeaders`: sent as `access-control-expose-headers` on actual responses.
    pub expose_headers: Vec<String>,
    /// `maxAge`, whole seconds as pilot formats it (`access-control-max-age`).
    pub max_age: Option<Duration>,
    /// `allowCredentials`: `access-control-allow-credentials: true` when `Some(true)`.
    pub allow_credentials: Option<bool>,
    /// `unmatchedPreflights`: what a preflight from an origin that is not allowed gets.
    pub unmatched_preflights: UnmatchedPreflights,
}

/// Istio `CorsPolicy.UnmatchedPreflights` (Envoy's `forward_not_matching_preflights`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnmatchedPreflights {
    /// `UNSPECIFIED` or `FORWARD`: the preflight goes to the upstream like any request.
    #[default]
    Forward,
    /// `IGNORE`: the proxy answers 200 itself, without `access-control-allow-origin`.
    Ignore,
}
