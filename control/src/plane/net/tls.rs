//! The push channel over TLS (issue 13: "the push channel runs over mTLS"), as istiod serves
//! xDS on 15012 with a certificate from its own CA and the sidecar verifies it with the mesh
//! root (the `istio-ca-root-cert` ConfigMap).
//!
//! - The control plane presents a DNS serving certificate from the mesh CA
//!   ([`crate::ca::serving`]); sidecars verify it against the mesh's roots.
//! - A sidecar that holds a workload certificate presents it, and the server reads its SPIFFE
//!   id ([`peer_spiffe_id`]): that is who the connection is, for the CA. A sidecar without one
//!   connects all the same (client certificates are optional, verified when presented) and
//!   authenticates its first CSR another way ([`crate::plane::push::csr`]).
//!
//! [`ClientTls`] can be replaced while the client runs: after its first certificate arrives,
//! the next connection presents it.

use std::io;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::Connector;

/// The push protocol's ALPN (both sides offer only this one).
pub const ALPN: &[u8] = b"trellis-plane/1";

/// Why TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("the trust bundle holds no usable root: {0}")]
    Roots(String),
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0:?} is not a server name")]
    ServerName(String),
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn certs(
    what: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

pub(super) fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

pub(super) fn roots(bundle_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs("trust bundle", bundle_pem)? {
        store
            .add(cert)
            .map_err(|e| TlsError::Roots(e.to_string()))?;
    }
    Ok(Arc::new(store))
}

/// The control plane's TLS: `chain_pem` and `key_pem` presented; a client certificate is
/// optional and, when presented, must chain to `bundle_pem`.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    bundle_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(bundle_pem)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("certificate chain", chain_pem)?, key(key_pem)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // Session tickets would let a resumed connection skip the client certificate check's
    // freshness; reconnects are rare enough to pay a full handshake.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A sidecar's TLS: the control plane verified against `bundle_pem`, and `identity` (chain,
/// key) presented when it has one.
pub fn client_config(
    bundle_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(bundle_pem)?);
    let mut config = match identity {
        Some((chain, key_pem)) => {
            builder.with_client_auth_cert(certs("workload certificate", chain)?, key(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A sidecar's TLS settings, replaceable while the client runs (the next connection uses the
/// new ones).
#[derive(Clone, Debug)]
pub struct ClientTls {
    current: Arc<RwLock<Arc<rustls::ClientConfig>>>,
}

impl ClientTls {
    pub fn new(bundle_pem: &str, identity: Option<(&str, &str)>) -> Result<Self, TlsError> {
        Ok(ClientTls {
            current: Arc::new(RwLock::new(client_config(bundle_pem, identity)?)),
        })
    }

    /// New roots and/or a new certificate for the connections to come.
    pub fn update(&self, bundle_pem: &str, identity: Option<(&str, &str)>) -> Result<(), TlsError> {
        let config = client_config(bundle_pem, identity)?;
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    fn current(&self) -> Arc<rustls::ClientConfig> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A [`Connector`] that opens TLS over another one's streams, checking the server's
/// certificate names `server_name`.
pub struct TlsConnector<C> {
    inner: C,
    tls: ClientTls,
    server_name: ServerName<'static>,
}

impl<C> TlsConnector<C> {
    /// `server_name`: the host sidecars dial (a DNS name or an IP address).
    pub fn new(inner: C, tls: ClientTls, server_name: &str) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
        Ok(TlsConnector {
            inner,
            tls,
            server_name,
        })
    }
}

impl<C: Connector> Connector for TlsConnector<C> {
    type Stream = tokio_rustls::client::TlsStream<C::Stream>;
    async fn connect(&mut self) -> io::Result<Self::Stream> {
        let stream = self.inner.connect().await?;
        tokio_rustls::TlsConnector::from(self.tls.current())
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// The host part of `HOST:PORT` (brackets of an IPv6 address removed): the name the server's
/// certificate must carry.
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The SPIFFE id (`spiffe://…` URI SAN) of a verified peer certificate, if it has one.
pub fn peer_spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let sans = parsed.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
            Some((*uri).to_string())
        }
        _ => None,
    })
}

/// The SPIFFE id the client of a server-side TLS stream presented (verified by the handshake).
pub fn client_spiffe_id<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<String> {
    let certs = stream.get_ref().1.peer_certificates()?;
    peer_spiffe_id(certs.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port_and_brackets() {
        assert_eq!(host_of("127.0.0.1:15012"), "127.0.0.1");
        assert_eq!(
            host_of("trellis-control.trellis-system.svc:15012"),
            "trellis-control.trellis-system.svc"
        );
        assert_eq!(host_of("[::1]:15012"), "::1");
    }
}
