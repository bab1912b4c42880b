//! Who may have which certificate: the CA's side of [`ClientMessage::CertificateRequest`],
//! sans-IO (the caller's credentials arrive already checked by the transport: a verified
//! client certificate, or a token the API server reviewed).
//!
//! Istio's rule (security/pkg/server/ca/server.go, `CreateCertificate`): the certificate
//! names the identity the caller authenticated as, never one it merely asks for. Its
//! authenticators (security/pkg/server/ca/authenticate/) are, in order, the client certificate
//! of the connection (`ClientCertAuthenticator`: the SPIFFE URIs of a verified chain) and the
//! Kubernetes JWT (`KubeJWTAuthenticator`: a TokenReview, whose answer gives the namespace and
//! service account). Here, likewise:
//!
//! 1. a connection with a client certificate is that certificate's SPIFFE id, and may renew
//!    only that identity;
//! 2. otherwise a token reviewed by the API server names the namespace and service account,
//!    which must be the ones asked for;
//! 3. otherwise, only a control plane started with `--trust-node-claims` (development: the
//!    local demo mesh, where every process is the user's) signs what the sidecar claims.
//!
//! Anything else is refused with a [`CsrRefusal`] naming the check.
//!
//! [`ClientMessage::CertificateRequest`]: super::wire::ClientMessage::CertificateRequest

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wire::ServerMessage;
use crate::ca::{CaError, CertificateAuthority, WorkloadIdentity};

/// Who is asking, as the transport established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The connection's verified client certificate, by its SPIFFE id.
    Certificate(String),
    /// A token the API server's TokenReview accepted, for this service account.
    Token {
        namespace: String,
        service_account: String,
    },
    /// A token the API server refused (its reason).
    TokenRefused(String),
    /// A token, but nothing to check it with (no Kubernetes source).
    TokenUncheckable,
    /// No certificate, no token.
    Anonymous,
}

/// Why a CSR was refused: each names the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum CsrRefusal {
    #[error("client certificate is {presented}, which may not ask for {asked}")]
    CertificateMismatch { presented: String, asked: String },
    #[error("token is for {namespace}/{service_account}, which may not ask for {asked}")]
    TokenMismatch {
        namespace: String,
        service_account: String,
        asked: String,
    },
    #[error("token refused by the TokenReview: {0}")]
    TokenRefused(String),
    #[error("a token cannot be checked without the Kubernetes source (--kube), and node claims are not trusted (--trust-node-claims)")]
    TokenUncheckable,
    #[error(
        "no client certificate and no token, and node claims are not trusted (--trust-node-claims)"
    )]
    NoCredential,
    #[error("the identity asked for is invalid: {0}")]
    BadIdentity(CaError),
    #[error("the CA did not sign: {0}")]
    Ca(CaError),
    /// The channel cannot issue (plaintext, or no CA behind it).
    #[error("{0}")]
    Unavailable(String),
}

/// Whether `caller` may have a certificate for `asked`.
pub fn authorize(
    caller: &Caller,
    asked: &WorkloadIdentity,
    trust_node_claims: bool,
) -> Result<(), CsrRefusal> {
    match caller {
        Caller::Certificate(presented) if *presented == asked.spiffe_uri() => Ok(()),
        Caller::Certificate(presented) => Err(CsrRefusal::CertificateMismatch {
            presented: presented.clone(),
            asked: asked.spiffe_uri(),
        }),
        Caller::Token {
            namespace,
            service_account,
        } if *namespace == asked.namespace && *service_account == asked.service_account => Ok(()),
        Caller::Token {
            namespace,
            service_account,
        } => Err(CsrRefusal::TokenMismatch {
            namespace: namespace.clone(),
            service_account: service_account.clone(),
            asked: asked.spiffe_uri(),
        }),
        // A token the API server refused is refused whatever the mode: it is a lie, not a
        // missing credential.
        Caller::TokenRefused(reason) => Err(CsrRefusal::TokenRefused(reason.clone())),
        Caller::TokenUncheckable | Caller::Anonymous if trust_node_claims => Ok(()),
        Caller::TokenUncheckable => Err(CsrRefusal::TokenUncheckable),
        Caller::Anonymous => Err(CsrRefusal::NoCredential),
    }
}

/// A certificate issued, as the answer and for the reports.
#[derive(Clone, Debug)]
pub struct Signed {
    pub identity: String,
    pub not_after: SystemTime,
    pub answer: ServerMessage,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Check `caller` against the identity asked for, then sign `csr` with `ca` at `now`, valid for
/// `ttl`; the answer carries `bundle` (the roots sidecars trust).
pub fn sign(
    ca: &mut CertificateAuthority,
    caller: &Caller,
    trust_node_claims: bool,
    request: (&str, &str, &str),
    bundle: &str,
    now: SystemTime,
    ttl: Duration,
) -> Result<Signed, CsrRefusal> {
    let (csr, namespace, service_account) = request;
    let asked = WorkloadIdentity::new(ca.trust_domain(), namespace, service_account)
        .map_err(CsrRefusal::BadIdentity)?;
    authorize(caller, &asked, trust_node_claims)?;
    let issued = ca
        .issue(csr, &asked, now, Some(ttl))
        .map_err(CsrRefusal::Ca)?;
    Ok(Signed {
        identity: issued.identity,
        not_after: issued.not_after,
        answer: ServerMessage::Certificate {
            chain: issued.chain_pem,
            bundle: bundle.to_string(),
            not_before: unix(issued.not_before),
            not_after: unix(issued.not_after),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::bootstrap::new_plugin_ca;

    fn asked() -> WorkloadIdentity {
        WorkloadIdentity::new("cluster.local", "shop", "cart").unwrap()
    }

    fn token(ns: &str, sa: &str) -> Caller {
        Caller::Token {
            namespace: ns.into(),
            service_account: sa.into(),
        }
    }

    /// Istio's `CreateCertificate` signs `caller.Identities`: a client certificate renews
    /// itself only.
    #[test]
    fn a_client_certificate_may_renew_its_own_identity_only() {
        let me = Caller::Certificate("spiffe://cluster.local/ns/shop/sa/cart".into());
        assert!(authorize(&me, &asked(), false).is_ok());
        let other = Caller::Certificate("spiffe://cluster.local/ns/shop/sa/payments".into());
        // Even in development mode: a certificate is a proof, not a claim.
        let refused = authorize(&other, &asked(), true).unwrap_err();
        assert!(matches!(refused, CsrRefusal::CertificateMismatch { .. }));
        assert_eq!(
            refused.to_string(),
            "client certificate is spiffe://cluster.local/ns/shop/sa/payments, which may not \
             ask for spiffe://cluster.local/ns/shop/sa/cart"
        );
    }

    /// `KubeJWTAuthenticator` takes the namespace and service account from the TokenReview.
    #[test]
    fn a_reviewed_token_must_name_the_namespace_and_service_account_asked_for() {
        assert!(authorize(&token("shop", "cart"), &asked(), false).is_ok());
        for caller in [token("shop", "payments"), token("blog", "cart")] {
            assert!(matches!(
                authorize(&caller, &asked(), true),
                Err(CsrRefusal::TokenMismatch { .. })
            ));
        }
        assert!(matches!(
            authorize(&Caller::TokenRefused("expired".into()), &asked(), true),
            Err(CsrRefusal::TokenRefused(_))
        ));
    }

    #[test]
    fn claims_without_proof_pass_only_when_node_claims_are_trusted() {
        for caller in [Caller::Anonymous, Caller::TokenUncheckable] {
            assert!(authorize(&caller, &asked(), true).is_ok());
        }
        assert!(matches!(
            authorize(&Caller::Anonymous, &asked(), false),
            Err(CsrRefusal::NoCredential)
        ));
        assert!(matches!(
            authorize(&Caller::TokenUncheckable, &asked(), false),
            Err(CsrRefusal::TokenUncheckable)
        ));
    }

    #[test]
    fn sign_issues_the_identity_asked_for_with_the_ttl_and_bundle() {
        let now = SystemTime::now();
        let (files, _) = new_plugin_ca("cluster.local", now).unwrap();
        let mut ca = CertificateAuthority::plug_in("cluster.local", &files).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let ttl = Duration::from_secs(60);
        let signed = sign(
            &mut ca,
            &token("shop", "cart"),
            false,
            (&csr, "shop", "cart"),
            &files.root_cert,
            now,
            ttl,
        )
        .unwrap();
        assert_eq!(signed.identity, "spiffe://cluster.local/ns/shop/sa/cart");
        let ServerMessage::Certificate {
            bundle,
            not_before,
            not_after,
            ..
        } = signed.answer
        else {
            panic!("not a certificate");
        };
        assert_eq!(bundle, files.root_cert);
        // Backdated a minute, as every workload certificate.
        assert_eq!(not_after - not_before, 60 + 60);
        let refused = sign(
            &mut ca,
            &Caller::Anonymous,
            false,
            (&csr, "shop", "cart"),
            &files.root_cert,
            now,
            ttl,
        );
        assert!(matches!(refused, Err(CsrRefusal::NoCredential)));
        let bad = sign(
            &mut ca,
            &Caller::Anonymous,
            true,
            (&csr, "Shop", "cart"),
            &files.root_cert,
            now,
            ttl,
        );
        assert!(matches!(bad, Err(CsrRefusal::BadIdentity(_))));
    }
}
