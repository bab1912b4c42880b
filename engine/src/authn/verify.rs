//! Running a [`JwtAuthentication`] on one request: Envoy's requirement verifiers
//! (`verifier.cc`) over its authenticator (`authenticator.cc`), synchronously, since the keys
//! are always local here (a `jwksUri` is fetched by the control plane, never by the sidecar).
//!
//! - a provider requirement extracts the provider's tokens; none is `Jwt is missing`; every
//!   token must verify (checked last-extracted first, the first failure is the answer), so a
//!   request cannot pair a good token with a bad one;
//! - one token: form, issuer (the location's issuers), time at the ENGINE's clock with the
//!   provider's skew, audiences, then the signature against the JWKS;
//! - a verified token writes `forward_payload_header` and `claim_to_headers`, is removed from
//!   its header or query parameter unless `forward`, and its payload becomes the request's
//!   JWT metadata (the last verified token's, as Envoy's metadata key is shared);
//! - `requires_any` passes on the first passing alternative; otherwise its status is the most
//!   telling failure (anything but `missing`/`unknown issuer`, then `unknown issuer`), and with
//!   `allow_missing` a `missing` passes;
//! - `requires_all` fails on the first failure.
//!
//! Headers and the request target are edited in place as each step runs, in Envoy's order,
//! so a later alternative sees what an earlier one did.

use http::HeaderName;

use crate::http1::{valid_value, FieldName, Fields, Target};

use super::extract::{remove_query_param, Origin, Token};
use super::model::{JwtAuthentication, JwtProvider, Requirement};
use super::payload::{claim_header_value, JwtPayload};
use super::status::Status;
use super::token::Jwt;

/// The parts of a request JWT authentication reads and edits.
pub struct AuthnRequest<'a> {
    pub method: &'a str,
    /// The request target (`path?query`); a verified token's parameter is removed from it.
    pub target: &'a mut Target,
    pub headers: &'a mut Fields,
    /// Now, as seconds since the UNIX epoch of the ENGINE's clock (never the wall clock).
    pub unix_now: u64,
}

/// A request that passed.
#[derive(Clone, Debug, PartialEq)]
pub enum Authenticated {
    /// A CORS preflight, let through without looking at tokens.
    CorsPreflight,
    /// No token was required and none was given (or every given token passed, see below).
    Anonymous,
    /// A token was verified: its payload, for authorization.
    Verified(JwtPayload),
}

impl Authenticated {
    pub fn payload(&self) -> Option<&JwtPayload> {
        match self {
            Authenticated::Verified(p) => Some(p),
            _ => None,
        }
    }
}

fn is_cors_preflight(req: &AuthnRequest<'_>) -> bool {
    let present = |name: &str| req.headers.get(name).is_some_and(|v| !v.is_empty());
    req.method == "OPTIONS" && present("origin") && present("access-control-request-method")
}

impl JwtAuthentication {
    /// Check `req`'s tokens against the requirement; `Err` is the refusal (see
    /// [`Status::http_status`]).
    pub fn authenticate(&self, req: &mut AuthnRequest<'_>) -> Result<Authenticated, Status> {
        if self.bypass_cors_preflight() && is_cors_preflight(req) {
            return Ok(Authenticated::CorsPreflight);
        }
        let mut verified = None;
        self.eval(self.requirement(), req, &mut verified)?;
        Ok(verified.map_or(Authenticated::Anonymous, Authenticated::Verified))
    }

    fn eval(
        &self,
        requirement: &Requirement,
        req: &mut AuthnRequest<'_>,
        verified: &mut Option<JwtPayload>,
    ) -> Result<(), Status> {
        match requirement {
            Requirement::Provider(i) => self.verify_provider(*i, req, verified),
            Requirement::All(list) => list.iter().try_for_each(|r| self.eval(r, req, verified)),
            Requirement::Any { of, allow_missing } if of.is_empty() => {
                if *allow_missing {
                    self.verify_any_provider(req, verified)
                } else {
                    Err(Status::JwtMissed)
                }
            }
            Requirement::Any { of, allow_missing } => {
                let mut status = Status::JwtMissed;
                for alternative in of {
                    match self.eval(alternative, req, verified) {
                        Ok(()) => return Ok(()),
                        Err(s) => {
                            let weak = matches!(s, Status::JwtMissed | Status::JwtUnknownIssuer);
                            if !weak || status == Status::JwtMissed {
                                status = s;
                            }
                        }
                    }
                }
                #[allow(unused_mut)]
                let mut allow_missing = *allow_missing;
                #[cfg(feature = "mutants")]
                if crate::mutants::route().jwt_missing_token_rejected {
                    allow_missing = false;
                }
                if allow_missing && status == Status::JwtMissed {
                    Ok(())
                } else {
                    Err(status)
                }
            }
        }
    }

    /// `ProviderVerifierImpl`: every token in provider `index`'s locations must verify.
    fn verify_provider(
        &self,
        index: usize,
        req: &mut AuthnRequest<'_>,
        verified: &mut Option<JwtPayload>,
    ) -> Result<(), Status> {
        let (Some(provider), Some(extractor)) =
            (self.providers().get(index), self.extractors.get(index))
        else {
            debug_assert!(false, "JwtAuthentication::new checked the provider indexes");
            return Err(Status::JwtUnknownIssuer);
        };
        extractor.sanitize(req.headers);
        let tokens = extractor.extract(req.target, req.headers);
        if tokens.is_empty() {
            return Err(Status::JwtMissed);
        }
        for token in tokens.iter().rev() {
            self.verify_token(Some(provider), token, req, verified)?;
        }
        Ok(())
    }

    /// `AllowMissingVerifierImpl` (an `allow_missing` with no provider beside it): the tokens of
    /// every provider's locations, each checked by the provider of its issuer; no token passes;
    /// otherwise the last one checked decides.
    fn verify_any_provider(
        &self,
        req: &mut AuthnRequest<'_>,
        verified: &mut Option<JwtPayload>,
    ) -> Result<(), Status> {
        self.all.sanitize(req.headers);
        let tokens = self.all.extract(req.target, req.headers);
        let mut last = Ok(());
        for token in tokens.iter().rev() {
            last = self.verify_token(None, token, req, verified);
        }
        last
    }

    /// One token (`AuthenticatorImpl::startVerify` .. `handleGoodJwt`). `provider: None` picks
    /// the provider by the token's issuer (the first with that issuer, else one without).
    fn verify_token(
        &self,
        provider: Option<&JwtProvider>,
        token: &Token<'_>,
        req: &mut AuthnRequest<'_>,
        verified: &mut Option<JwtPayload>,
    ) -> Result<(), Status> {
        let jwt = Jwt::parse(&token.value)?;
        if !token.issuers.allows(&jwt.iss) {
            return Err(Status::JwtUnknownIssuer);
        }
        let provider = match provider {
            Some(p) => p,
            None => self
                .providers()
                .iter()
                .find(|p| p.issuer == jwt.iss)
                .or_else(|| self.providers().iter().find(|p| p.issuer.is_empty()))
                .ok_or(Status::JwtUnknownIssuer)?,
        };
        #[cfg(feature = "mutants")]
        let expiry_ignored = crate::mutants::route().jwt_expiry_ignored;
        #[cfg(not(feature = "mutants"))]
        let expiry_ignored = false;
        if !expiry_ignored {
            jwt.check_time(req.unix_now, provider.clock_skew_secs)?;
        }
        if !jwt.audience_allowed(&provider.audiences) {
            return Err(Status::JwtAudienceNotAllowed);
        }
        provider.jwks.verify(&jwt)?;

        // Names from the configuration (already `HeaderName`s: valid, lower-case).
        let append = |headers: &mut Fields, name: &HeaderName, value: &str| {
            if let Some(name) = FieldName::new(name.as_str()) {
                if valid_value(value.as_bytes()) {
                    headers.append(name, bytes::Bytes::copy_from_slice(value.as_bytes()));
                }
            }
        };
        if let Some(header) = &provider.forward_payload_header {
            append(req.headers, header, jwt.payload_b64);
        }
        for c in &provider.claim_to_headers {
            if let Some(value) = claim_header_value(&jwt.payload, &c.claim) {
                append(req.headers, &c.header, &value);
            }
        }
        if !provider.forward {
            match &token.origin {
                Origin::Header(name) => {
                    req.headers.remove(name);
                }
                Origin::Param(name) => {
                    *req.target = remove_query_param(req.target, name).into();
                }
                // Envoy leaves cookies in place.
                Origin::Cookie => {}
            }
        }
        *verified = Some(JwtPayload::normalized(
            jwt.payload,
            &provider.space_delimited_claims,
        ));
        Ok(())
    }
}
