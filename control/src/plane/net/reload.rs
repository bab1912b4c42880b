//! Server-side TLS whose certificate and trusted roots change while it serves, without a
//! restart and without touching established connections (issue 11: "renewal at half of the
//! certificate's lifetime without dropping established connections").
//!
//! rustls reads both per handshake: the certificate from a [`ResolvesServerCert`]
//! ([`ReloadableCert`]), the client-certificate check from a [`ClientCertVerifier`]
//! ([`ReloadableRoots`]). Replacing what they hold changes what the next handshake sees; a
//! connection already made keeps the keys it agreed. istiod does the same with its
//! `keycertbundle.Watcher` and `GetCertificate` callback (pilot/pkg/bootstrap/server.go,
//! `initSecureDiscoveryService`, and `istioCertBundleWatcher`).

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::tls::{certs, key, provider, roots, TlsError, ALPN};

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|e| e.into_inner()) = value;
}

/// A certificate chain and key, ready for rustls.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let signing = provider().key_provider.load_private_key(key(key_pem)?)?;
    let certified = CertifiedKey::new(certs("certificate chain", chain_pem)?, signing);
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

/// The certificate a server presents, replaceable.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(chain_pem: &str, key_pem: &str) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ReloadableCert {
            current: RwLock::new(certified_key(chain_pem, key_pem)?),
        }))
    }

    /// New handshakes present this one from now on.
    pub fn replace(&self, chain_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        write(&self.current, certified_key(chain_pem, key_pem)?);
        Ok(())
    }

    /// The leaf certificate presented now (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        read(&self.current).cert[0].clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.current).clone())
    }
}

/// Client certificates checked against roots that change (a root rotation's bundle);
/// optional, as the push channel's are (a sidecar without one authenticates its first CSR
/// with a token).
#[derive(Debug)]
pub struct ReloadableRoots {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

fn verifier(bundle_pem: &str) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(roots(bundle_pem)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))
}

impl ReloadableRoots {
    pub fn new(bundle_pem: &str) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ReloadableRoots {
            current: RwLock::new(verifier(bundle_pem)?),
        }))
    }

    /// New handshakes check client certificates against these roots.
    pub fn replace(&self, bundle_pem: &str) -> Result<(), TlsError> {
        write(&self.current, verifier(bundle_pem)?);
        Ok(())
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        read(&self.current).clone()
    }
}

impl ClientCertVerifier for ReloadableRoots {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: they would have to outlive a replacement. A client with one certificate
    /// (every sidecar) sends it whatever the hints say.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// The push channel's server TLS (as [`super::tls::server_config`]) with a certificate and
/// roots that can be replaced while it serves.
pub fn reloadable_server_config(
    cert: Arc<ReloadableCert>,
    roots: Arc<ReloadableRoots>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(roots)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN.to_vec()];
    // As server_config: every reconnect pays a full handshake, with the client check.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A server TLS without client certificates (the admission webhook), presenting `cert`.
pub fn reloadable_webhook_config(
    cert: Arc<ReloadableCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}
