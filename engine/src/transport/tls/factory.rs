//! The mTLS transport factory: every downstream connection a TLS server, every upstream one a
//! TLS client, with the local workload's certificate and the mesh's trust bundle.
//!
//! It is configuration-free for now (the control plane's PeerAuthentication and DestinationRule
//! TLS settings will choose per port and per cluster later): one set of [`MeshCredentials`],
//! and optionally the SPIFFE ids each upstream cluster must present (a DestinationRule's
//! `subjectAltNames`). The rustls configs are built once, here; a connection costs one
//! `Connection::new`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ServerConnection;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};

use super::clock::EngineClock;
use super::seeded::{self, with_rng};
use super::transform::TlsTransform;
use super::verify::{IdentityCheck, MeshClientVerifier, MeshServerVerifier};
use super::{HTTP1, MESH_HTTP1};
use crate::time::Instant;
use crate::transport::{Endpoint, TransformError, TransformErrorKind, Transport, TransportFactory};

/// The local workload's credentials and the mesh's trust.
#[derive(Debug)]
pub struct MeshCredentials {
    /// The workload's certificate first, then any intermediates up to (not including) a root.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Every root the mesh trusts (two during a root rotation).
    pub bundle: Vec<CertificateDer<'static>>,
    /// Peers must have SPIFFE ids in this trust domain.
    pub trust_domain: String,
}

fn setup(detail: impl std::fmt::Display) -> TransformError {
    TransformError::new(TransformErrorKind::Setup, detail.to_string())
}

impl MeshCredentials {
    /// Credentials from PEM: the chain, a PKCS#8 (or SEC1, PKCS#1) key, and the bundle.
    pub fn from_pem(
        chain: &str,
        key: &str,
        bundle: &str,
        trust_domain: &str,
    ) -> Result<Self, TransformError> {
        let certs = |pem: &str, what: &str| {
            let list = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setup(format!("{what}: {e}")))?;
            if list.is_empty() {
                return Err(setup(format!("{what}: no certificate in the PEM")));
            }
            Ok(list)
        };
        Ok(MeshCredentials {
            chain: certs(chain, "certificate chain")?,
            key: PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| setup(format!("private key: {e}")))?,
            bundle: certs(bundle, "trust bundle")?,
            trust_domain: trust_domain.to_string(),
        })
    }
}

/// Where handshakes draw their randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Randomness {
    /// The operating system's, through ring: production.
    System,
    /// From this seed, through [`seeded::provider`]: the simulator (Ed25519 certificates).
    Seeded(u64),
}

/// How the factory runs, beside the credentials.
#[derive(Clone, Debug)]
pub struct MtlsSettings {
    /// The UNIX time of engine instant zero (certificate validity is checked at
    /// `unix_base + now`).
    pub unix_base: Duration,
    pub randomness: Randomness,
    /// Per upstream cluster, the SPIFFE ids its hosts may present; clusters not named accept
    /// any identity in the trust domain.
    pub expected: HashMap<String, Vec<String>>,
}

/// mTLS on every connection of an engine.
pub struct MtlsTransports {
    clock: Arc<EngineClock>,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    per_cluster: HashMap<String, Arc<ClientConfig>>,
    /// Seeds each connection's RNG when handshakes are seeded.
    seeds: Option<fastrand::Rng>,
}

impl MtlsTransports {
    pub fn new(creds: &MeshCredentials, settings: MtlsSettings) -> Result<Self, TransformError> {
        let clock = EngineClock::new(settings.unix_base);
        let provider = Arc::new(match settings.randomness {
            Randomness::System => rustls::crypto::ring::default_provider(),
            Randomness::Seeded(_) => seeded::provider(),
        });
        let mut roots = RootCertStore::empty();
        for root in &creds.bundle {
            roots
                .add(root.clone())
                .map_err(|e| setup(format!("trust bundle: {e}")))?;
        }
        let roots = Arc::new(roots);
        let domain_only = IdentityCheck {
            trust_domain: creds.trust_domain.clone(),
            expected: Vec::new(),
        };
        let server = Arc::new(server_config(
            creds,
            &provider,
            &clock,
            &roots,
            &domain_only,
        )?);
        let client = Arc::new(client_config(
            creds,
            &provider,
            &clock,
            &roots,
            domain_only,
        )?);
        let mut per_cluster = HashMap::new();
        for (cluster, expected) in settings.expected {
            let check = IdentityCheck {
                trust_domain: creds.trust_domain.clone(),
                expected,
            };
            let config = client_config(creds, &provider, &clock, &roots, check)?;
            per_cluster.insert(cluster, Arc::new(config));
        }
        let seeds = match settings.randomness {
            Randomness::System => None,
            Randomness::Seeded(seed) => Some(fastrand::Rng::with_seed(seed)),
        };
        Ok(MtlsTransports {
            clock,
            server,
            client,
            per_cluster,
            seeds,
        })
    }
}

/// TLS 1.3 only: both ends of a mesh hop are ours, and 1.3 saves a round trip.
static VERSIONS: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    &VERSIONS
}

fn alpn() -> Vec<Vec<u8>> {
    vec![MESH_HTTP1.to_vec(), HTTP1.to_vec()]
}

fn server_config(
    creds: &MeshCredentials,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
    roots: &Arc<RootCertStore>,
    check: &IdentityCheck,
) -> Result<ServerConfig, TransformError> {
    let verifier = MeshClientVerifier::new(roots.clone(), provider.clone(), check.clone())
        .map_err(|e| setup(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_details(provider.clone(), clock.clone())
        .with_protocol_versions(versions())
        .map_err(setup)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| setup(format!("server certificate: {e}")))?;
    config.alpn_protocols = alpn();
    // No tickets: rustls's ticketer reads the wall clock, and resumption is not worth it
    // between sidecars that keep connections open.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

fn client_config(
    creds: &MeshCredentials,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
    roots: &Arc<RootCertStore>,
    check: IdentityCheck,
) -> Result<ClientConfig, TransformError> {
    let algorithms = provider.signature_verification_algorithms;
    let verifier = MeshServerVerifier::new(roots.clone(), algorithms, check);
    let mut config = ClientConfig::builder_with_details(provider.clone(), clock.clone())
        .with_protocol_versions(versions())
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| setup(format!("client certificate: {e}")))?;
    config.alpn_protocols = alpn();
    config.resumption = Resumption::disabled();
    // Upstreams are dialled by address; the SPIFFE id, not a name, is what gets checked.
    config.enable_sni = false;
    Ok(config)
}

impl TransportFactory for MtlsTransports {
    fn transport(
        &mut self,
        now: Instant,
        endpoint: Endpoint<'_>,
    ) -> Result<Transport, TransformError> {
        self.clock.set(now);
        let mut rng = self
            .seeds
            .as_mut()
            .map(|s| fastrand::Rng::with_seed(s.u64(..)));
        let (conn, peer) = match endpoint {
            Endpoint::Downstream { peer, .. } => {
                let conn = ServerConnection::new(self.server.clone())
                    .map_err(|e| setup(format!("server connection: {e}")))?;
                (Connection::Server(conn), format!("client {peer}"))
            }
            Endpoint::Upstream { cluster, addr } => {
                let config = self
                    .per_cluster
                    .get(cluster)
                    .unwrap_or(&self.client)
                    .clone();
                let name = ServerName::IpAddress(addr.ip().into());
                let conn = with_rng(&mut rng, || ClientConnection::new(config, name))
                    .map_err(|e| setup(format!("client connection to {cluster}: {e}")))?;
                (
                    Connection::Client(conn),
                    format!("upstream {cluster} at {addr}"),
                )
            }
        };
        let clock = self.clock.clone();
        Ok(Transport::Transformed(Box::new(TlsTransform::new(
            conn, clock, rng, peer,
        ))))
    }
}
