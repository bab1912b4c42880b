//! Peer verification for mesh TLS: the chain (webpki, at engine time), then the SPIFFE id.
//!
//! rustls's own verifiers check a chain and, for servers, a DNS name. Mesh certificates carry
//! no DNS name: a workload is named by its SPIFFE URI SAN, as in Istio. So both verifiers
//! here run webpki's chain check (trust anchors, validity at the time rustls passes in, which
//! is engine time through [`super::clock::EngineClock`], key usage) and then read the SPIFFE
//! id and check its trust domain and, when the caller expects particular identities (the
//! `subjectAltNames` of a destination), that it is one of them.
//!
//! Every refusal is a [`PeerRefusal`] naming the one check that failed and the identity the
//! peer claimed, carried through rustls as `CertificateError::Other` so the transform can
//! turn it back into one log line.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};

use super::spiffe::{SpiffeError, SpiffeId};

/// Why a peer's certificate was refused: one check, and who the certificate claimed to be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error(
        "certificate expired: {claimed} was valid until {not_after} (UNIX s); engine time is {now}"
    )]
    Expired {
        claimed: String,
        not_after: u64,
        now: u64,
    },
    #[error("certificate not yet valid: {claimed} is valid from {not_before} (UNIX s); engine time is {now}")]
    NotYetValid {
        claimed: String,
        not_before: u64,
        now: u64,
    },
    #[error("unknown CA: {claimed} does not chain to the trust bundle")]
    UnknownCa { claimed: String },
    #[error("invalid certificate: {claimed}: {reason}")]
    Invalid { claimed: String, reason: String },
    #[error("no SPIFFE SAN: {0}")]
    NoSpiffeId(SpiffeError),
    #[error("wrong trust domain: {claimed} is not in trust domain {expected}")]
    WrongTrustDomain { claimed: String, expected: String },
    #[error("unexpected identity: {claimed} is not one of {expected:?}")]
    UnexpectedIdentity {
        claimed: String,
        expected: Vec<String>,
    },
    #[error(
        "unexpected subject alt names: the certificate names {presented:?}, none of subjectAltNames {expected:?}"
    )]
    UnexpectedSubjectAltNames {
        presented: Vec<String>,
        expected: Vec<String>,
    },
    /// A gateway server's `verifyCertificateSpki`/`verifyCertificateHash` ([`super::pin`]).
    #[error(
        "certificate not pinned: its SPKI SHA-256 {spki} (base64) and certificate SHA-256 {hash} \
         (hex) match none of verifyCertificateSpki ({pinned_spki} pins) and \
         verifyCertificateHash ({pinned_hash} pins)"
    )]
    UnpinnedCertificate {
        spki: String,
        hash: String,
        pinned_spki: usize,
        pinned_hash: usize,
    },
}

/// The identity checks both verifiers make after the chain.
#[derive(Clone, Debug)]
pub struct IdentityCheck {
    /// Only identities in this trust domain are accepted.
    pub trust_domain: String,
    /// When not empty, only these SPIFFE ids are accepted.
    pub expected: Vec<String>,
}

impl IdentityCheck {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<SpiffeId, PeerRefusal> {
        let id = SpiffeId::of_certificate(end_entity).map_err(PeerRefusal::NoSpiffeId)?;
        if id.trust_domain() != self.trust_domain {
            return Err(PeerRefusal::WrongTrustDomain {
                claimed: id.to_string(),
                expected: self.trust_domain.clone(),
            });
        }
        if !self.expected.is_empty() && !self.expected.iter().any(|e| e == id.as_str()) {
            return Err(PeerRefusal::UnexpectedIdentity {
                claimed: id.to_string(),
                expected: self.expected.clone(),
            });
        }
        Ok(id)
    }
}

/// How a certificate names itself in a refusal before its identity is verified.
fn claimed(end_entity: &CertificateDer<'_>) -> String {
    match SpiffeId::of_certificate(end_entity) {
        Ok(id) => id.to_string(),
        Err(e) => format!("a certificate with no usable SPIFFE id ({e})"),
    }
}

/// Turn webpki's chain verdict into a refusal that names the check.
fn chain_refusal(end_entity: &CertificateDer<'_>, error: Error) -> PeerRefusal {
    let claimed = claimed(end_entity);
    match error {
        Error::InvalidCertificate(CertificateError::ExpiredContext { time, not_after }) => {
            PeerRefusal::Expired {
                claimed,
                not_after: not_after.as_secs(),
                now: time.as_secs(),
            }
        }
        Error::InvalidCertificate(CertificateError::NotValidYetContext { time, not_before }) => {
            PeerRefusal::NotYetValid {
                claimed,
                not_before: not_before.as_secs(),
                now: time.as_secs(),
            }
        }
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => PeerRefusal::UnknownCa { claimed },
        other => PeerRefusal::Invalid {
            claimed,
            reason: other.to_string(),
        },
    }
}

/// The planted bugs `verify_ignores_expiry` (an expired chain passes) and
/// `verify_ignores_issuer` (a chain to no root of the bundle passes).
#[cfg(feature = "mutants")]
fn planted_pass<T>(verdict: Result<T, Error>, pass: impl FnOnce() -> T) -> Result<T, Error> {
    let m = crate::mutants::route();
    match verdict {
        Err(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) if m.verify_ignores_expiry => Ok(pass()),
        Err(Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) if m.verify_ignores_issuer => Ok(pass()),
        other => other,
    }
}

/// A refusal as rustls carries it (and alerts `bad_certificate`).
pub(super) fn refuse(refusal: PeerRefusal) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refusal))))
}

/// The handshake-signature methods both verifier traits require, checked with the
/// provider's algorithms (`self.algorithms`), as rustls's own verifiers do.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// The client side's verifier of servers: chain to the bundle, then the SPIFFE id.
#[derive(Debug)]
pub struct MeshServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    identity: IdentityCheck,
}

impl MeshServerVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        algorithms: WebPkiSupportedAlgorithms,
        identity: IdentityCheck,
    ) -> Self {
        MeshServerVerifier {
            roots,
            algorithms,
            identity,
        }
    }
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // The name a client dialled is an address or a service host, never the SPIFFE id: the
        // identity check below replaces the DNS name check, as in Istio.
        let parsed = ParsedCertificate::try_from(end_entity)
            .map_err(|e| refuse(chain_refusal(end_entity, e)))?;
        let verdict = rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        );
        #[cfg(feature = "mutants")]
        let verdict = planted_pass(verdict, || ());
        verdict.map_err(|e| refuse(chain_refusal(end_entity, e)))?;
        self.identity.check(end_entity).map_err(refuse)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The server side's verifier of clients: a certificate is mandatory, chains to the bundle,
/// and names an identity in the trust domain. Which identities may call is policy
/// (AuthorizationPolicy), decided on the verified identity after the handshake.
#[derive(Debug)]
pub struct MeshClientVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    identity: IdentityCheck,
}

impl MeshClientVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<rustls::crypto::CryptoProvider>,
        identity: IdentityCheck,
    ) -> Result<Self, rustls::server::VerifierBuilderError> {
        let algorithms = provider.signature_verification_algorithms;
        let chain = WebPkiClientVerifier::builder_with_provider(roots, provider).build()?;
        Ok(MeshClientVerifier {
            chain,
            algorithms,
            identity,
        })
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verdict = self
            .chain
            .verify_client_cert(end_entity, intermediates, now);
        #[cfg(feature = "mutants")]
        let verdict = planted_pass(verdict, ClientCertVerified::assertion);
        verdict.map_err(|e| refuse(chain_refusal(end_entity, e)))?;
        self.identity.check(end_entity).map_err(refuse)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The verifier of a server outside the mesh (DestinationRule `SIMPLE`/`MUTUAL`): the chain
/// to the configured roots, then the name: one of `subject_alt_names` (a DNS or URI SAN)
/// when given, else the SNI the client sent, as Envoy's auto SAN validation does. With
/// `insecureSkipVerify` nothing is checked.
#[derive(Debug)]
pub struct OriginationVerifier {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
    subject_alt_names: Vec<String>,
}

impl OriginationVerifier {
    /// `roots: None` is `insecureSkipVerify`.
    pub fn new(
        roots: Option<Arc<RootCertStore>>,
        algorithms: WebPkiSupportedAlgorithms,
        subject_alt_names: Vec<String>,
    ) -> Self {
        OriginationVerifier {
            roots,
            algorithms,
            subject_alt_names,
        }
    }

    /// Whether the certificate names one of the expected SANs.
    fn names_expected(
        &self,
        parsed: &ParsedCertificate<'_>,
        end_entity: &CertificateDer<'_>,
    ) -> bool {
        let uris = super::xfcc::uri_sans(end_entity);
        self.subject_alt_names.iter().any(|san| {
            uris.iter().any(|u| u == san)
                || ServerName::try_from(san.as_str())
                    .is_ok_and(|name| rustls::client::verify_server_name(parsed, &name).is_ok())
        })
    }
}

impl ServerCertVerifier for OriginationVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let parsed = ParsedCertificate::try_from(end_entity)
            .map_err(|e| refuse(chain_refusal(end_entity, e)))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )
        .map_err(|e| refuse(chain_refusal(end_entity, e)))?;
        if self.subject_alt_names.is_empty() {
            rustls::client::verify_server_name(&parsed, server_name).map_err(|_| {
                refuse(PeerRefusal::Invalid {
                    claimed: claimed(end_entity),
                    reason: format!("the certificate does not name {server_name:?}"),
                })
            })?;
        } else if !self.names_expected(&parsed, end_entity) {
            return Err(refuse(PeerRefusal::Invalid {
                claimed: claimed(end_entity),
                reason: format!(
                    "the certificate names none of subjectAltNames {:?}",
                    self.subject_alt_names
                ),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}
