//! The CA behind the push channel: a connection's certificate requests are answered here
//! (istiod's `IstioCertificateService`, security/pkg/server/ca/server.go), with the caller
//! established by the transport (the TLS client certificate) or by a TokenReview, and the rules
//! of [`crate::plane::push::csr`].
//!
//! The trust bundle lives on a `watch` channel: every connection that has asked for a
//! certificate is sent the new roots when they change (a root rotation), as istiod rewrites the
//! `istio-ca-root-cert` ConfigMap in every namespace.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::ca::serving::ServingFiles;
use crate::ca::{CaError, CertificateAuthority, RotatingCa};
use crate::plane::push::csr::{sign, Caller, CsrRefusal, Signed};
use crate::plane::push::wire::{Secret, ServerMessage};

/// A token's review by the API server (Kubernetes' TokenReview): the namespace and service
/// account it authenticates, or why it does not.
pub type Review = Pin<Box<dyn Future<Output = Result<(String, String), String>> + Send>>;

/// Who checks tokens.
pub trait TokenReviewer: Send + Sync {
    fn review(&self, token: String) -> Review;
}

/// How a request ended, for the reports.
#[derive(Debug)]
pub enum Outcome {
    Issued {
        identity: String,
        not_after: SystemTime,
    },
    Refused {
        /// Who asked: the certificate's id, the token's account, or what was claimed.
        caller: String,
        refusal: CsrRefusal,
    },
}

/// The CA's settings on the channel.
pub struct Issuer {
    ca: Mutex<RotatingCa>,
    bundle: watch::Sender<String>,
    ttl: Duration,
    trust_node_claims: bool,
    reviewer: Option<Arc<dyn TokenReviewer>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("ttl", &self.ttl)
            .field("trust_node_claims", &self.trust_node_claims)
            .field("reviews_tokens", &self.reviewer.is_some())
            .finish()
    }
}

impl Issuer {
    /// Workload certificates from `ca`, valid `ttl`; tokens checked by `reviewer` when there is
    /// one; unproven claims signed only when `trust_node_claims`.
    pub fn new(
        ca: CertificateAuthority,
        ttl: Duration,
        trust_node_claims: bool,
        reviewer: Option<Arc<dyn TokenReviewer>>,
    ) -> Self {
        let (bundle, _) = watch::channel(ca.root_pem().to_string());
        Issuer {
            ca: Mutex::new(RotatingCa::new(ca)),
            bundle,
            ttl,
            trust_node_claims,
            reviewer,
        }
    }

    /// The roots sidecars trust now.
    pub fn bundle(&self) -> watch::Receiver<String> {
        self.bundle.subscribe()
    }

    /// New roots (a rotation's overlap: both), pushed to every sidecar that asked for a
    /// certificate.
    pub fn set_bundle(&self, bundle_pem: String) {
        self.bundle.send_if_modified(|current| {
            let changed = *current != bundle_pem;
            *current = bundle_pem;
            changed
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RotatingCa> {
        match self.ca.lock() {
            Ok(ca) => ca,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Sign with `new` from `now` on (a root rotation when its root is new: both roots are
    /// trusted for `overlap`, and pushed at once).
    pub fn rotate(
        &self,
        new: CertificateAuthority,
        now: SystemTime,
        overlap: Duration,
    ) -> Result<(), CaError> {
        let bundle = {
            let mut ca = self.lock();
            ca.rotate(new, now, overlap)?;
            ca.bundle_pem(now)
        };
        self.set_bundle(bundle);
        Ok(())
    }

    /// Publish the roots trusted at `now` (an overlap may have ended); when they next change.
    pub fn refresh(&self, now: SystemTime) -> Option<SystemTime> {
        let (bundle, next) = {
            let mut ca = self.lock();
            (ca.bundle_pem(now), ca.next_change(now))
        };
        self.set_bundle(bundle);
        next
    }

    /// The root the serving certificates chain to at `now`.
    pub fn serving_root(&self, now: SystemTime) -> String {
        self.lock().serving_root(now)
    }

    /// A serving certificate for `names`, valid from `now` for `ttl`.
    pub fn issue_serving(
        &self,
        names: &[String],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<ServingFiles, CaError> {
        self.lock().issue_serving(names, now, ttl)
    }

    /// Answer one request. `peer` is the connection's verified client certificate's SPIFFE id.
    pub async fn answer(
        &self,
        peer: Option<&str>,
        csr: &str,
        namespace: &str,
        service_account: &str,
        token: Option<Secret>,
    ) -> (ServerMessage, Outcome) {
        let caller = match (peer, token, &self.reviewer) {
            (Some(id), _, _) => Caller::Certificate(id.to_string()),
            (None, Some(token), Some(reviewer)) => match reviewer.review(token.0).await {
                Ok((namespace, service_account)) => Caller::Token {
                    namespace,
                    service_account,
                },
                Err(reason) => Caller::TokenRefused(reason),
            },
            (None, Some(_), None) => Caller::TokenUncheckable,
            (None, None, _) => Caller::Anonymous,
        };
        let bundle = self.bundle.borrow().clone();
        let signed = {
            let mut ca = self.lock();
            sign(
                ca.current(),
                &caller,
                self.trust_node_claims,
                (csr, namespace, service_account),
                &bundle,
                SystemTime::now(),
                self.ttl,
            )
        };
        match signed {
            Ok(Signed {
                identity,
                not_after,
                answer,
            }) => (
                answer,
                Outcome::Issued {
                    identity,
                    not_after,
                },
            ),
            Err(refusal) => (
                ServerMessage::CertificateRefused {
                    reason: refusal.to_string(),
                },
                Outcome::Refused {
                    caller: describe(&caller, namespace, service_account),
                    refusal,
                },
            ),
        }
    }
}

fn describe(caller: &Caller, namespace: &str, service_account: &str) -> String {
    match caller {
        Caller::Certificate(id) => id.clone(),
        Caller::Token {
            namespace,
            service_account,
        } => format!("token of {namespace}/{service_account}"),
        Caller::TokenRefused(_) => format!("token claiming {namespace}/{service_account}"),
        Caller::TokenUncheckable => {
            format!("unchecked token claiming {namespace}/{service_account}")
        }
        Caller::Anonymous => format!("unproven claim of {namespace}/{service_account}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::bootstrap::new_plugin_ca;

    /// Knows one token, for shop/cart.
    struct OneToken;

    impl TokenReviewer for OneToken {
        fn review(&self, token: String) -> Review {
            Box::pin(async move {
                match token.as_str() {
                    "cart-token" => Ok(("shop".to_string(), "cart".to_string())),
                    _ => Err("the token is not authenticated".to_string()),
                }
            })
        }
    }

    fn issuer(trust_node_claims: bool, reviewer: Option<Arc<dyn TokenReviewer>>) -> Issuer {
        let (files, _) = new_plugin_ca("cluster.local", SystemTime::now()).unwrap();
        let ca = CertificateAuthority::plug_in("cluster.local", &files).unwrap();
        Issuer::new(ca, Duration::from_secs(3600), trust_node_claims, reviewer)
    }

    fn csr() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    }

    /// Ask for shop/cart as `peer` with `token`; the caller reported on a refusal, or `None`.
    fn ask(issuer: &Issuer, peer: Option<&str>, token: Option<&str>) -> Option<String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let token = token.map(|t| Secret(t.to_string()));
        let (answer, outcome) =
            runtime.block_on(issuer.answer(peer, &csr(), "shop", "cart", token));
        match outcome {
            Outcome::Issued { identity, .. } => {
                assert_eq!(identity, "spiffe://cluster.local/ns/shop/sa/cart");
                assert!(matches!(answer, ServerMessage::Certificate { .. }));
                None
            }
            Outcome::Refused { caller, refusal } => {
                let ServerMessage::CertificateRefused { reason } = answer else {
                    panic!("refused without saying so");
                };
                assert_eq!(reason, refusal.to_string());
                Some(caller)
            }
        }
    }

    #[test]
    fn the_client_certificate_comes_first_then_the_reviewed_token() {
        let with_kube = issuer(false, Some(Arc::new(OneToken)));
        assert_eq!(ask(&with_kube, None, Some("cart-token")), None);
        assert_eq!(
            ask(&with_kube, None, Some("stolen")),
            Some("token claiming shop/cart".into())
        );
        assert_eq!(
            ask(&with_kube, None, None),
            Some("unproven claim of shop/cart".into())
        );
        // A certificate decides, whatever token comes with it.
        let other = "spiffe://cluster.local/ns/shop/sa/payments";
        assert_eq!(
            ask(&with_kube, Some(other), Some("cart-token")),
            Some(other.into())
        );
        assert_eq!(
            ask(
                &with_kube,
                Some("spiffe://cluster.local/ns/shop/sa/cart"),
                None
            ),
            None
        );
    }

    #[test]
    fn without_a_reviewer_tokens_are_claims_and_the_bundle_is_pushed_when_it_changes() {
        let strict = issuer(false, None);
        assert_eq!(
            ask(&strict, None, Some("cart-token")),
            Some("unchecked token claiming shop/cart".into())
        );
        let development = issuer(true, None);
        assert_eq!(ask(&development, None, Some("anything")), None);
        let mut roots = development.bundle();
        roots.borrow_and_update();
        let current = roots.borrow().clone();
        development.set_bundle(current.clone());
        assert!(
            !roots.has_changed().unwrap(),
            "the same roots are no change"
        );
        development.set_bundle(format!("{current}second root"));
        assert!(roots.has_changed().unwrap());
    }
}
