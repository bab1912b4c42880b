//! Istio AuthorizationPolicy enforcement on the inbound side, as Envoy's RBAC HTTP filter does
//! it with the configuration pilot generates.
//!
//! The control plane (`trellis-control`, `translate/authz.rs`) turns the policies that select a
//! workload into an [`Authorization`] exactly as pilot's `pilot/pkg/security/authz/builder` and
//! `model` packages turn them into `envoy.config.rbac.v3.RBAC`; this module is the Envoy half:
//! the value matchers ([`matchers`]), the RBAC model ([`model`]) and its evaluation ([`eval`]).
//! Keeping the model shaped like Envoy's RBAC (permissions, principals, and/or/not) lets every
//! translation step be checked against pilot's code line by line, and keeps the evaluation a
//! small, allocation-free tree walk.

pub mod eval;
pub mod matchers;
pub mod metadata;
pub mod model;

pub use eval::{AuthzRequest, Note, Verdict};
pub use matchers::{
    quote_meta, Cidr, FullRegex, HeaderMatcher, PathTemplate, StringMatcher, ValueMatch,
};
pub use metadata::{MetadataMatcher, ValueMatcher, JWT_AUTHN_FILTER, JWT_PAYLOAD_KEY};
pub use model::{Action, Authorization, Permission, Policy, Principal, Rbac, RbacFilter};

/// The body Envoy's RBAC filter answers a denied request with (status 403).
pub const DENIED_BODY: &str = "RBAC: access denied";

#[cfg(test)]
mod tests;
