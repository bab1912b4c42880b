//! A client-certificate verifier with one more check after the chain: what a gateway server's
//! `subjectAltNames` ([`super::san`]) and pins ([`super::pin`]) add to the chain to its
//! `caCertificates`, in the order Envoy's `DefaultCertValidator` runs them.
//!
//! The wrapped verifier decides everything else (which roots it hints, whether a certificate
//! is required: `OPTIONAL_MUTUAL` lets a client without one in, and then there is nothing to
//! check), and its refusal comes first, so the log names the first check that failed.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::verify::{refuse, PeerRefusal};

/// A check of a presented end-entity certificate that has already chained to a root.
pub trait EndEntityCheck: std::fmt::Debug + Send + Sync {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), PeerRefusal>;
}

/// Runs `inner`, then `check` on the certificate `inner` accepted.
#[derive(Debug)]
pub struct CheckedClientVerifier<C> {
    inner: Arc<dyn ClientCertVerifier>,
    check: C,
}

impl<C: EndEntityCheck> CheckedClientVerifier<C> {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, check: C) -> Self {
        CheckedClientVerifier { inner, check }
    }
}

impl<C: EndEntityCheck> ClientCertVerifier for CheckedClientVerifier<C> {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check.check(end_entity).map_err(refuse)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
