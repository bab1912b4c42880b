//! Why a JWT was refused, worded as Envoy's JWT filter words it.
//!
//! The variants are `google::jwt_verify::Status` (the library Envoy's `jwt_authn` filter is
//! built on, `jwt_verify_lib/status.cc` `getStatusString`) restricted to what Trellis can
//! produce; [`Status::message`] is the text Envoy puts in the 401 body, so a client or a test
//! written against Istio sees the same words (`Jwt verification fails`, `Jwt is expired` ...).

/// The outcome of verifying a request's JWTs (`Ok` is not a variant: success carries data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// No token in any location the requirement looks at.
    JwtMissed,
    JwtNotYetValid,
    JwtExpired,
    JwtBadFormat,
    JwtHeaderParseErrorBadBase64,
    JwtHeaderParseErrorBadJson,
    JwtHeaderBadAlg,
    JwtHeaderNotImplementedAlg,
    JwtHeaderBadKid,
    JwtPayloadParseErrorBadBase64,
    JwtPayloadParseErrorBadJson,
    JwtPayloadParseErrorIssNotString,
    JwtPayloadParseErrorSubNotString,
    JwtPayloadParseErrorIatNotInteger,
    JwtPayloadParseErrorIatNotPositive,
    JwtPayloadParseErrorNbfNotInteger,
    JwtPayloadParseErrorNbfNotPositive,
    JwtPayloadParseErrorExpNotInteger,
    JwtPayloadParseErrorExpNotPositive,
    JwtPayloadParseErrorJtiNotString,
    JwtPayloadParseErrorAudNotString,
    JwtSignatureParseErrorBadBase64,
    JwtUnknownIssuer,
    JwtAudienceNotAllowed,
    JwtVerificationFail,
    JwksNoValidKeys,
    JwksKidAlgMismatch,
}

impl Status {
    /// Envoy's text for the status (the body of its 401/403 local reply).
    pub fn message(self) -> &'static str {
        match self {
            Status::JwtMissed => "Jwt is missing",
            Status::JwtNotYetValid => "Jwt not yet valid",
            Status::JwtExpired => "Jwt is expired",
            Status::JwtBadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Status::JwtHeaderParseErrorBadBase64 => "Jwt header is an invalid Base64url encoded",
            Status::JwtHeaderParseErrorBadJson => "Jwt header is an invalid JSON",
            Status::JwtHeaderBadAlg => "Jwt header [alg] field is required and must be a string",
            Status::JwtHeaderNotImplementedAlg => "Jwt header [alg] is not supported",
            Status::JwtHeaderBadKid => "Jwt header [kid] field is not a string",
            Status::JwtPayloadParseErrorBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Status::JwtPayloadParseErrorBadJson => "Jwt payload is an invalid JSON",
            Status::JwtPayloadParseErrorIssNotString => "Jwt payload [iss] field is not a string",
            Status::JwtPayloadParseErrorSubNotString => "Jwt payload [sub] field is not a string",
            Status::JwtPayloadParseErrorIatNotInteger => {
                "Jwt payload [iat] field is not an integer"
            }
            Status::JwtPayloadParseErrorIatNotPositive => {
                "Jwt payload [iat] field is not a positive integer"
            }
            Status::JwtPayloadParseErrorNbfNotInteger => {
                "Jwt payload [nbf] field is not an integer"
            }
            Status::JwtPayloadParseErrorNbfNotPositive => {
                "Jwt payload [nbf] field is not a positive integer"
            }
            Status::JwtPayloadParseErrorExpNotInteger => {
                "Jwt payload [exp] field is not an integer"
            }
            Status::JwtPayloadParseErrorExpNotPositive => {
                "Jwt payload [exp] field is not a positive integer"
            }
            Status::JwtPayloadParseErrorJtiNotString => "Jwt payload [jti] field is not a string",
            Status::JwtPayloadParseErrorAudNotString => {
                "Jwt payload [aud] field is not a string or string list"
            }
            Status::JwtSignatureParseErrorBadBase64 => {
                "Jwt signature is an invalid Base64url encoded"
            }
            Status::JwtUnknownIssuer => "Jwt issuer is not configured",
            Status::JwtAudienceNotAllowed => "Audiences in Jwt are not allowed",
            Status::JwtVerificationFail => "Jwt verification fails",
            Status::JwksNoValidKeys => "Jwks doesn't have any valid public key",
            Status::JwksKidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
        }
    }

    /// The HTTP status Envoy answers with (`filter.cc` `onComplete`): 403 for a token whose
    /// audience is not allowed, 401 for everything else.
    pub fn http_status(self) -> u16 {
        if self == Status::JwtAudienceNotAllowed {
            403
        } else {
            401
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for the refusal: `jwt_authn_access_denied{<message
    /// with spaces as underscores>}`.
    pub fn details(self) -> String {
        format!(
            "jwt_authn_access_denied{{{}}}",
            self.message().replace(' ', "_")
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}
