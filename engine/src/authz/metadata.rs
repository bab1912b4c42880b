//! Envoy's metadata matcher (`type.matcher.v3.MetadataMatcher` with its `ValueMatcher`) as
//! the RBAC filter evaluates it against a request's dynamic metadata. The only metadata a
//! Trellis request carries is what the JWT filter leaves: under `envoy.filters.http.jwt_authn`,
//! key `payload`, the verified token's payload ([`crate::authn::JwtPayload`]). pilot matches
//! `requestPrincipals`, `request.auth.audiences`, `.presenter` and `.claims[...]` there
//! (`pilot/pkg/security/authz/model/generator.go`, `util.go` `MetadataStringMatcherForJWTClaim`
//! and `MetadataListValueMatcherForJWTClaims`); the `experimental.envoy.filters.*` keys match
//! other filters' metadata, which Trellis never has, so they never match.
//!
//! A path that does not lead to a value never matches (Envoy matches the null value, and no
//! matcher pilot writes accepts null).

use serde_json::Value;

use super::matchers::StringMatcher;
use crate::authn::JwtPayload;

/// The filter name the JWT metadata lives under.
pub const JWT_AUTHN_FILTER: &str = "envoy.filters.http.jwt_authn";
/// pilot's `filters.EnvoyJwtFilterPayload`: the metadata key of the payload.
pub const JWT_PAYLOAD_KEY: &str = "payload";

/// `ValueMatcher`, the forms pilot writes.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueMatcher {
    /// `string_match`: the value is a string and matches.
    String(StringMatcher),
    /// `list_match.one_of`: the value is a list and one element matches.
    ListOneOf(Box<ValueMatcher>),
    /// `or_match`.
    Or(Vec<ValueMatcher>),
}

impl ValueMatcher {
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            ValueMatcher::String(m) => value.as_str().is_some_and(|s| m.matches(s)),
            ValueMatcher::ListOneOf(inner) => value
                .as_array()
                .is_some_and(|list| list.iter().any(|v| inner.matches(v))),
            ValueMatcher::Or(any) => any.iter().any(|m| m.matches(value)),
        }
    }
}

/// `MetadataMatcher`: the value at `path` under `filter`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataMatcher {
    pub filter: Box<str>,
    pub path: Vec<Box<str>>,
    pub value: ValueMatcher,
}

impl MetadataMatcher {
    /// A matcher on a JWT claim path (`payload` first, then the claim names).
    pub fn jwt_claim<S: AsRef<str>>(claims: &[S], value: ValueMatcher) -> MetadataMatcher {
        MetadataMatcher {
            filter: JWT_AUTHN_FILTER.into(),
            path: std::iter::once(JWT_PAYLOAD_KEY)
                .chain(claims.iter().map(AsRef::as_ref))
                .map(Box::from)
                .collect(),
            value,
        }
    }

    /// Match against the request's JWT metadata (`None`: no verified token).
    pub fn matches(&self, jwt: Option<&JwtPayload>) -> bool {
        if &*self.filter != JWT_AUTHN_FILTER {
            return false;
        }
        let Some((JWT_PAYLOAD_KEY, claims)) = self
            .path
            .split_first()
            .map(|(first, rest)| (&**first, rest))
        else {
            return false;
        };
        jwt.and_then(|p| p.get(claims))
            .is_some_and(|v| self.value.matches(v))
    }
}
