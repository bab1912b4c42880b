//! Istio RequestAuthentication enforcement on the inbound side, as Envoy's `jwt_authn` HTTP
//! filter does it with the configuration pilot generates.
//!
//! The control plane (`trellis-control`, `translate/request_authn.rs`) merges the
//! RequestAuthentications that select a workload into a [`JwtAuthentication`] the way
//! pilot's `pilot/pkg/security/authn/policy_applier.go` does (one provider per JWT rule, each
//! "this provider or nothing", so a request without a token passes and authorization's
//! `requestPrincipals` decides); JWKS URIs are fetched by the control plane and arrive here as
//! keys. This module is the Envoy half: finding tokens ([`extract`]), taking them apart
//! ([`token`]), checking signatures ([`jwks`], with the `jsonwebtoken` crate), the requirement
//! logic ([`verify`]) and what a verified token leaves for authorization ([`payload`]).
//!
//! Time is the engine's: the caller passes "now" as UNIX seconds derived from the engine's
//! instant (see `Engine::set_unix_base`), so the simulator can age a token past its `exp`
//! without waiting, and no wall clock is read here.

pub mod extract;
pub mod jwks;
pub mod model;
pub mod payload;
pub mod status;
pub mod token;
pub mod verify;

pub use jwks::{Jwks, JwksError};
pub use model::{
    ClaimToHeader, JwtAuthentication, JwtHeader, JwtProvider, Requirement, UnknownProvider,
    DEFAULT_CLOCK_SKEW_SECS,
};
pub use payload::JwtPayload;
pub use status::Status;
pub use verify::{Authenticated, AuthnRequest};

#[cfg(test)]
mod tests;
