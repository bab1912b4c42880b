//! The JWT authentication configuration of an inbound listener: Envoy's `jwt_authn` filter
//! config (`extensions.filters.http.jwt_authn.v3.JwtAuthentication`) as pilot writes it for a
//! workload's RequestAuthentications (`pilot/pkg/security/authn/policy_applier.go`
//! `convertToEnvoyJwtConfig`): one provider per JWT rule and a requirement over them.

use http::HeaderName;

use super::extract::Extractor;
use super::jwks::Jwks;

/// Envoy's default `clock_skew_seconds` (`jwt_verify_lib` `kClockSkewInSecond`); pilot never
/// sets another.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;

/// `JwtHeader`: a header carrying a token after `value_prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtHeader {
    pub name: HeaderName,
    pub value_prefix: String,
}

/// `JwtClaimToHeader`: copy a claim (`a.b` for a nested one) of a verified token into a
/// request header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToHeader {
    pub header: HeaderName,
    pub claim: String,
}

/// `JwtProvider`: one issuer, its keys, and where its tokens are read and what is written.
#[derive(Clone, Debug, PartialEq)]
pub struct JwtProvider {
    /// pilot's `origins-<i>`.
    pub name: String,
    /// `iss` a token must carry ("": any).
    pub issuer: String,
    /// `aud` a token must carry one of (empty: any).
    pub audiences: Vec<String>,
    /// The public keys (inline, or fetched by the control plane from `jwksUri`).
    pub jwks: Jwks,
    pub from_headers: Vec<JwtHeader>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// `forward`: keep the token in the request (Istio's `forwardOriginalToken`, default off:
    /// the header or parameter that carried it is removed).
    pub forward: bool,
    /// `forward_payload_header` (Istio's `outputPayloadToHeader`): the payload, base64url as
    /// in the token.
    pub forward_payload_header: Option<HeaderName>,
    /// `claim_to_headers` (Istio's `outputClaimToHeaders`).
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// `normalize_payload_in_metadata.space_delimited_claims`: claims whose string value is a
    /// space-separated list for authorization (pilot always adds `scope` and `permission`).
    pub space_delimited_claims: Vec<String>,
    pub clock_skew_secs: u64,
}

/// `JwtRequirement`, the forms pilot uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `provider_name`: a valid token of this provider (index into the providers).
    Provider(usize),
    /// `requires_any`, with `allow_missing` among its alternatives when the flag is set.
    Any {
        of: Vec<Requirement>,
        allow_missing: bool,
    },
    /// `requires_all`.
    All(Vec<Requirement>),
}

/// A requirement naming a provider that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the JWT requirement names provider #{0}, but there are {1} providers")]
pub struct UnknownProvider(pub usize, pub usize);

/// The whole filter: providers, the requirement every request must meet, and the extractors
/// derived from them (built once here, not per request).
#[derive(Clone, Debug, PartialEq)]
pub struct JwtAuthentication {
    providers: Vec<JwtProvider>,
    requirement: Requirement,
    /// `bypass_cors_preflight` (pilot: always on): a CORS preflight carries no credentials.
    bypass_cors_preflight: bool,
    /// Per provider, parallel to `providers`.
    pub(super) extractors: Vec<Extractor>,
    /// Over every provider, for an `allow_missing` with no provider beside it.
    pub(super) all: Extractor,
}

impl JwtAuthentication {
    pub fn new(
        providers: Vec<JwtProvider>,
        requirement: Requirement,
        bypass_cors_preflight: bool,
    ) -> Result<Self, UnknownProvider> {
        fn check(r: &Requirement, n: usize) -> Result<(), UnknownProvider> {
            match r {
                Requirement::Provider(i) if *i >= n => Err(UnknownProvider(*i, n)),
                Requirement::Provider(_) => Ok(()),
                Requirement::Any { of, .. } | Requirement::All(of) => {
                    of.iter().try_for_each(|r| check(r, n))
                }
            }
        }
        check(&requirement, providers.len())?;
        let extractors = providers
            .iter()
            .map(|p| Extractor::new(std::iter::once(p)))
            .collect();
        let all = Extractor::new(providers.iter());
        Ok(JwtAuthentication {
            providers,
            requirement,
            bypass_cors_preflight,
            extractors,
            all,
        })
    }

    pub fn providers(&self) -> &[JwtProvider] {
        &self.providers
    }

    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    pub fn bypass_cors_preflight(&self) -> bool {
        self.bypass_cors_preflight
    }
}
