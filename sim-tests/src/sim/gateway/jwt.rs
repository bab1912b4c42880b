//! RequestAuthentication at the gateway: drawn for a share of the gateway worlds (one
//! RequestAuthentication in `istio-system`, one or two `jwtRules` with their own issuers,
//! token locations, audiences and `forwardOriginalToken`), the one token a client may send
//! (minted here from the seed: Ed25519, whose signatures are deterministic), translated by the
//! control plane as `trellis proxy --gateway` does (`secure_listeners`), and decided here by a
//! reference written from pilot's and Envoy's code, not from Trellis's:
//!
//! - **Which rules.** pilot's `convertToEnvoyJwtConfig` (pilot/pkg/security/authn/
//!   policy_applier.go) makes each `jwtRule` a provider `origins-<i>` (issuer, audiences,
//!   `fromHeaders`/`fromParams`, `forward` = `forwardOriginalToken`) and requires
//!   `requires_any: [origins-0, …, allow_missing]`. A policy in the root namespace without a
//!   selector applies to every workload, the gateway included; one selecting another
//!   workload does not.
//! - **Where a token is looked for.** Envoy's `ExtractorImpl::addProvider`
//!   (jwt_authn/extractor.cc): a provider naming no location gets `Authorization: Bearer` and
//!   the `access_token` parameter; one naming any gets only those. A location remembers the
//!   issuers of every provider naming it.
//! - **What one token decides.** pilot requires, for one rule, `requires_any: [origins-0,
//!   allow_missing]`; for more, `requires_any: [origins-0, …, origins-n, requires_all:
//!   [requires_any: [origins-i, allow_missing] for each i]]` (the outer alternatives for
//!   rules sharing a location). Envoy's `AnyVerifierImpl` (verifier.cc) passes on the first
//!   passing child, else reports the last failure that is neither `JwtMissed` nor
//!   `JwtUnknownIssuer`, else `JwtUnknownIssuer`, else `JwtMissed` (which `allow_missing`
//!   lets through); `AllVerifierImpl` stops at the first failure. A provider sees only the
//!   tokens in its locations (`ExtractorImpl::addProvider`, extractor.cc), and a token whose
//!   `iss` is not that provider's is `JwtUnknownIssuer` (`AuthenticatorImpl::startVerify`,
//!   authenticator.cc), which checks, in this order, the expiry (60 s of skew; the tokens here
//!   are an hour and more either way), that the token's `aud` has one of the provider's
//!   `audiences` when it lists any, then the signature. So for one token: where no rule looks
//!   it is never seen (anonymous, and it travels on); where some do, the rule of its issuer
//!   decides, and a token no such rule names is `JwtUnknownIssuer`. A failure is answered
//!   before authorization and routing (the jwt_authn filter precedes RBAC and the router):
//!   403 for `JwtAudienceNotAllowed`, 401 for the others (`Filter::onComplete`, filter.cc).
//!   Success makes `request.auth.principal` `<iss>/<sub>` and, unless the provider forwards,
//!   removes the token from its header, or from the query ([`super::edge::without_param`],
//!   Envoy's `JwtParamLocation::removeJwt`).
//! - **What reaches the backend.** Each provider verifier first removes the headers its
//!   provider writes (`outputPayloadToHeader`, `outputClaimToHeaders`: `sanitizeHeaders`),
//!   so a client cannot forge them; the verifying provider then writes the token's payload
//!   segment and its `sub` claim there (`handleGoodJwt`). Children run in order (pilot sorts
//!   the rules by issuer first) and a passing one ends the requirement, so when the first
//!   rule verifies, the second rule's verifier never runs and a client's copy of its header
//!   stays.
//! - **CORS preflights** (`OPTIONS` with `origin` and `access-control-request-method`) pass
//!   the filter untouched ([`applied`]).
//! - **Request principals** (`requestPrincipalGenerator.extendedPrincipal`,
//!   pilot/pkg/security/authz/model/generator.go): a value is split at its last `/` into
//!   issuer and subject, each matched on its claim; `*` is any (non-empty) value, a leading `*`
//!   a suffix of the issuer (or, without `/`, of the subject), a trailing `*` a prefix of the
//!   subject (or, without `/`, of the issuer).

use serde::{Deserialize, Serialize};

use crate::sim::mtls::ca::UNIX_BASE;
use crate::sim::mtls::jwt::JwtKeys;

/// The issuers of the world's two possible rules.
pub const ISSUERS: [&str; 2] = ["https://issuer.sim", "https://login.gw.test"];
/// The header an `outputPayloadToHeader` rule writes.
pub const PAYLOAD_HEADER: &str = "x-jwt-payload";
/// The header an `outputClaimToHeaders` rule writes the `sub` claim to.
pub const SUB_HEADER: &str = "x-jwt-sub";
/// What a forging client writes in both.
pub const FORGED: &str = "forged";
/// An issuer no rule names.
const STRANGER: &str = "https://other.sim";
pub const SUBJECTS: [&str; 3] = ["alice", "bob", "carol"];
/// The header a `fromHeaders` rule reads (no prefix: the whole value is the token).
pub const ASSERTION_HEADER: &str = "x-jwt-assertion";
/// The parameter a `fromParams` rule reads.
pub const TOKEN_PARAM: &str = "token";
/// Envoy's default parameter.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";
/// The audience an `audiences` rule asks for.
const AUDIENCE: &str = "web";

/// Where the client puts its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAt {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `?access_token=<token>`.
    AccessTokenParam,
    /// `x-jwt-assertion: <token>`.
    AssertionHeader,
    /// `?token=<token>`.
    TokenParam,
}

impl TokenAt {
    /// The query parameter it is in, if it is in the query.
    pub fn param(self) -> Option<&'static str> {
        match self {
            TokenAt::AccessTokenParam => Some(ACCESS_TOKEN_PARAM),
            TokenAt::TokenParam => Some(TOKEN_PARAM),
            TokenAt::Bearer | TokenAt::AssertionHeader => None,
        }
    }
}

/// The locations a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Locations {
    /// None: Envoy's defaults.
    Default,
    /// `fromHeaders: [{name: x-jwt-assertion}]`.
    AssertionHeader,
    /// `fromParams: [token]`.
    TokenParam,
}

impl Locations {
    fn has(self, at: TokenAt) -> bool {
        matches!(
            (self, at),
            (
                Locations::Default,
                TokenAt::Bearer | TokenAt::AccessTokenParam
            ) | (Locations::AssertionHeader, TokenAt::AssertionHeader)
                | (Locations::TokenParam, TokenAt::TokenParam)
        )
    }
}

/// One `jwtRules` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GwJwtRule {
    /// An index into [`ISSUERS`] (the rules of a world name different ones).
    pub issuer: usize,
    pub locations: Locations,
    /// `audiences: [web]`.
    pub audiences: bool,
    /// `forwardOriginalToken`.
    pub forward: bool,
    /// `outputPayloadToHeader: x-jwt-payload`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub payload_header: bool,
    /// `outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claim_header: bool,
}

/// Which workloads the RequestAuthentication selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtSelector {
    /// `app: istio-ingressgateway`.
    Gateway,
    /// No selector, in the root namespace: every workload.
    Everyone,
    /// Another workload's label.
    Other,
}

/// The world's RequestAuthentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GwJwt {
    pub selector: JwtSelector,
    pub rules: Vec<GwJwtRule>,
}

/// The token a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GwToken {
    /// An index into [`ISSUERS`]; past it, an issuer no rule names.
    pub issuer: usize,
    /// An index into [`SUBJECTS`].
    pub sub: usize,
    /// Signed with the key the JWKS publishes; else with an impostor's under the same `kid`.
    pub key_ok: bool,
    /// Expired an hour before the run began; else valid for a day after it.
    pub expired: bool,
    /// `aud`: none, `web` (`true`) or another.
    pub audience: Option<bool>,
    pub at: TokenAt,
    /// The query carries two more parameters around the token (`z=9` before it, `a=%7E1`
    /// after), which Envoy writes back sorted and decoded when it removes the token.
    pub more_params: bool,
}

impl GwToken {
    pub fn iss(&self) -> &'static str {
        ISSUERS.get(self.issuer).copied().unwrap_or(STRANGER)
    }

    /// The compact JWT.
    pub fn mint(&self, keys: &JwtKeys) -> String {
        let base = UNIX_BASE.as_secs();
        let exp = if self.expired {
            base - 3_600
        } else {
            base + 86_400
        };
        let mut payload = serde_json::json!({
            "iss": self.iss(),
            "sub": SUBJECTS[self.sub % SUBJECTS.len()],
            "iat": base - 7_200,
            "exp": exp,
        });
        if let Some(web) = self.audience {
            payload["aud"] = serde_json::Value::from(if web { AUDIENCE } else { "mobile" });
        }
        keys.sign(&JwtKeys::header(), &payload, self.key_ok)
    }
}

impl GwJwt {
    /// Whether it applies to the gateway proxy.
    pub fn applies(&self) -> bool {
        self.selector != JwtSelector::Other
    }

    /// The RequestAuthentication as Istio YAML.
    pub fn to_yaml(&self, keys: &JwtKeys) -> String {
        let selector = match self.selector {
            JwtSelector::Gateway => format!(
                "  selector: {{matchLabels: {{app: {}}}}}\n",
                super::authz::GATEWAY_APP
            ),
            JwtSelector::Everyone => String::new(),
            JwtSelector::Other => "  selector: {matchLabels: {app: productpage}}\n".into(),
        };
        let mut out = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: gw-jwt, namespace: istio-system}}\nspec:\n{selector}  jwtRules:\n"
        );
        for rule in &self.rules {
            out += &format!(
                "  - issuer: {}\n    jwks: {:?}\n",
                ISSUERS[rule.issuer],
                keys.jwks()
            );
            match rule.locations {
                Locations::Default => {}
                Locations::AssertionHeader => {
                    out += &format!("    fromHeaders: [{{name: {ASSERTION_HEADER}}}]\n");
                }
                Locations::TokenParam => out += &format!("    fromParams: [{TOKEN_PARAM}]\n"),
            }
            if rule.audiences {
                out += &format!("    audiences: [{AUDIENCE}]\n");
            }
            if rule.forward {
                out += "    forwardOriginalToken: true\n";
            }
            if rule.payload_header {
                out += &format!("    outputPayloadToHeader: {PAYLOAD_HEADER}\n");
            }
            if rule.claim_header {
                out +=
                    &format!("    outputClaimToHeaders: [{{header: {SUB_HEADER}, claim: sub}}]\n");
            }
        }
        out
    }
}

/// What the jwt_authn filter made of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authn {
    /// No token it looks for: anonymous, on to authorization.
    Anonymous,
    /// A valid token: its claims, and where it was removed from (`None`: forwarded).
    Verified {
        iss: &'static str,
        sub: &'static str,
        removed: Option<TokenAt>,
        /// The index of the rule that verified it.
        rule: usize,
    },
    /// Refused, with this status: 401, or 403 for an audience the provider does not allow.
    Rejected(u16),
}

/// The RequestAuthentication the jwt_authn filter applies to `req`: none for a CORS preflight
/// (pilot sets `bypass_cors_preflight`, and Envoy's `Filter::decodeHeaders` then runs no
/// verifier at all: nothing is checked, nothing removed, not even forged output headers).
pub fn applied<'s>(
    spec: &'s super::spec::GatewaySpec,
    req: &super::spec::GwRequest,
) -> Option<&'s GwJwt> {
    spec.jwt.as_ref().filter(|_| !req.preflight)
}

/// The jwt_authn filter's decision on `token` (see the module's documentation).
pub fn authenticate(jwt: Option<&GwJwt>, token: Option<&GwToken>) -> Authn {
    let (Some(jwt), Some(token)) = (jwt.filter(|j| j.applies()), token) else {
        return Authn::Anonymous;
    };
    if !jwt.rules.iter().any(|r| r.locations.has(token.at)) {
        return Authn::Anonymous;
    }
    let Some(index) = (0..jwt.rules.len()).find(|&i| {
        jwt.rules[i].locations.has(token.at) && ISSUERS[jwt.rules[i].issuer] == token.iss()
    }) else {
        return Authn::Rejected(401);
    };
    let rule = &jwt.rules[index];
    if token.expired {
        return Authn::Rejected(401);
    }
    if rule.audiences && token.audience != Some(true) {
        return Authn::Rejected(403);
    }
    if !token.key_ok {
        return Authn::Rejected(401);
    }
    Authn::Verified {
        iss: token.iss(),
        sub: SUBJECTS[token.sub % SUBJECTS.len()],
        removed: (!rule.forward).then_some(token.at),
        rule: index,
    }
}

/// The `x-jwt-payload` and `x-jwt-sub` a backend receives: written by the verifying rule,
/// removed by every rule whose verifier ran, else what the client forged.
pub fn output_headers(
    jwt: Option<&GwJwt>,
    token: Option<&GwToken>,
    forged: bool,
    authn: &Authn,
    keys: &JwtKeys,
) -> (Option<String>, Option<String>) {
    let sent = forged.then(|| FORGED.to_string());
    let Some(jwt) = jwt.filter(|j| j.applies()) else {
        return (sent.clone(), sent);
    };
    // pilot sorts the rules by issuer (`NewPolicyApplier`: "to make the later-on generated
    // filter config deterministic"); the first one's verifier always runs, the others' only
    // when it did not verify.
    let mut order: Vec<usize> = (0..jwt.rules.len()).collect();
    order.sort_by_key(|&i| ISSUERS[jwt.rules[i].issuer]);
    let ran: Vec<&GwJwtRule> = match authn {
        Authn::Verified { rule, .. } if Some(rule) == order.first() => vec![&jwt.rules[*rule]],
        _ => jwt.rules.iter().collect(),
    };
    let payload_gone = ran.iter().any(|r| r.payload_header);
    let sub_gone = ran.iter().any(|r| r.claim_header);
    let mut payload = sent.clone().filter(|_| !payload_gone);
    let mut sub = sent.filter(|_| !sub_gone);
    if let (
        Authn::Verified {
            rule, sub: claim, ..
        },
        Some(t),
    ) = (authn, token)
    {
        let by = &jwt.rules[*rule];
        if by.payload_header {
            let jwt = t.mint(keys);
            payload = jwt.split('.').nth(1).map(str::to_string);
        }
        if by.claim_header {
            sub = Some(claim.to_string());
        }
    }
    (payload, sub)
}

/// A `requestPrincipals` value against a verified token's claims.
pub fn request_principal_matches(value: &str, iss: &str, sub: &str) -> bool {
    let any = |v: &str| !v.is_empty();
    let (claimed_iss, claimed_sub) = match value.rfind('/') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    if value == "*" {
        return any(iss) && any(sub);
    }
    if let Some(rest) = value.strip_prefix('*') {
        return match claimed_sub {
            Some(s) => {
                let iss_ok = claimed_iss == "*" || iss.ends_with(&claimed_iss[1..]);
                iss_ok && sub == s
            }
            None => any(iss) && sub.ends_with(rest),
        };
    }
    if let Some(rest) = value.strip_suffix('*') {
        return match claimed_sub {
            Some(s) => {
                let sub_ok = if s == "*" {
                    any(sub)
                } else {
                    sub.starts_with(&s[..s.len() - 1])
                };
                iss == claimed_iss && sub_ok
            }
            None => iss.starts_with(rest) && any(sub),
        };
    }
    iss == claimed_iss && sub == claimed_sub.unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(issuer: usize, locations: Locations) -> GwJwtRule {
        GwJwtRule {
            issuer,
            locations,
            audiences: false,
            forward: false,
            payload_header: false,
            claim_header: false,
        }
    }

    fn token(issuer: usize, at: TokenAt) -> GwToken {
        GwToken {
            issuer,
            sub: 0,
            key_ok: true,
            expired: false,
            audience: None,
            at,
            more_params: false,
        }
    }

    /// Envoy's extractor and `requires_any [.., allow_missing]`: a token where no provider
    /// looks is not seen; where one looks, only that location's issuers may sign it.
    #[test]
    fn a_token_is_judged_by_the_providers_of_its_location() {
        let jwt = GwJwt {
            selector: JwtSelector::Gateway,
            rules: vec![
                rule(0, Locations::Default),
                rule(1, Locations::AssertionHeader),
            ],
        };
        let verified = |at| Authn::Verified {
            iss: ISSUERS[0],
            sub: "alice",
            removed: Some(at),
            rule: 0,
        };
        assert_eq!(
            authenticate(Some(&jwt), Some(&token(0, TokenAt::Bearer))),
            verified(TokenAt::Bearer)
        );
        assert_eq!(
            authenticate(Some(&jwt), Some(&token(0, TokenAt::AccessTokenParam))),
            verified(TokenAt::AccessTokenParam)
        );
        assert_eq!(
            authenticate(Some(&jwt), Some(&token(0, TokenAt::TokenParam))),
            Authn::Anonymous,
            "nobody reads ?token="
        );
        assert_eq!(
            authenticate(Some(&jwt), Some(&token(0, TokenAt::AssertionHeader))),
            Authn::Rejected(401),
            "x-jwt-assertion is the second issuer's: JwtUnknownIssuer"
        );
        assert_eq!(
            authenticate(Some(&jwt), Some(&token(2, TokenAt::Bearer))),
            Authn::Rejected(401)
        );
        let other = GwJwt {
            selector: JwtSelector::Other,
            ..jwt.clone()
        };
        assert_eq!(
            authenticate(Some(&other), Some(&token(2, TokenAt::Bearer))),
            Authn::Anonymous
        );
        let mut aud = jwt;
        aud.rules[0].audiences = true;
        aud.rules[0].forward = true;
        let mut web = token(0, TokenAt::Bearer);
        web.key_ok = false;
        assert_eq!(
            authenticate(Some(&aud), Some(&web)),
            Authn::Rejected(403),
            "the audience is checked before the signature"
        );
        web.expired = true;
        assert_eq!(
            authenticate(Some(&aud), Some(&web)),
            Authn::Rejected(401),
            "the expiry before the audience"
        );
        web.expired = false;
        web.key_ok = true;
        web.audience = Some(true);
        assert!(matches!(
            authenticate(Some(&aud), Some(&web)),
            Authn::Verified { removed: None, .. }
        ));
    }

    /// pilot's `requestPrincipalGenerator` cases (generator_test.go, in kind).
    #[test]
    fn request_principals_split_at_the_last_slash() {
        let m = |v| request_principal_matches(v, "https://issuer.sim", "alice");
        assert!(m("*"));
        assert!(m("https://issuer.sim/alice"));
        assert!(!m("https://issuer.sim/bob"));
        assert!(m("https://issuer.sim/*"));
        assert!(m("https://issuer.sim/al*"));
        assert!(m("*/alice"));
        assert!(m("*issuer.sim/alice"));
        assert!(!m("*other.sim/alice"));
        assert!(m("*ice"), "no slash: a suffix of the subject");
        // A value whose only slashes are the scheme's splits there: issuer `https:/`, exact.
        assert!(!m("https://*") && !m("https://issuer*"));
        assert!(request_principal_matches("https:/*", "https:", "x"));
    }

    /// A client's copies of the output headers are removed by the verifiers that ran; the
    /// first rule verifying leaves the second rule's header as the client wrote it.
    #[test]
    fn output_headers_are_sanitized_by_the_verifiers_that_ran() {
        let keys = JwtKeys::new(3);
        // ISSUERS[0] sorts first.
        let mut first = rule(0, Locations::Default);
        first.payload_header = true;
        let mut second = rule(1, Locations::AssertionHeader);
        second.claim_header = true;
        let jwt = GwJwt {
            selector: JwtSelector::Gateway,
            rules: vec![first, second],
        };
        let by_first = token(0, TokenAt::Bearer);
        let authn = authenticate(Some(&jwt), Some(&by_first));
        let (payload, sub) = output_headers(Some(&jwt), Some(&by_first), true, &authn, &keys);
        assert_eq!(payload.as_deref(), by_first.mint(&keys).split('.').nth(1));
        assert_eq!(
            sub.as_deref(),
            Some(FORGED),
            "the second verifier never ran"
        );
        let by_second = token(1, TokenAt::AssertionHeader);
        let authn = authenticate(Some(&jwt), Some(&by_second));
        let (payload, sub) = output_headers(Some(&jwt), Some(&by_second), true, &authn, &keys);
        assert_eq!((payload, sub.as_deref()), (None, Some("alice")));
        let (payload, sub) = output_headers(Some(&jwt), None, true, &Authn::Anonymous, &keys);
        assert_eq!((payload, sub), (None, None), "both verifiers ran");
    }
}
