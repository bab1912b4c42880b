//! The TLS transport factory: each connection protected as the configuration asks.
//!
//! The engine resolves what a connection needs (see [`crate::transport::policy`]) and asks
//! here: an inbound connection under PERMISSIVE or STRICT gets a TLS server behind a sniffer
//! ([`Transport::Sniffing`]); an upstream one gets a mesh client (ISTIO_MUTUAL, the peer's
//! SPIFFE id checked against the cluster's `subjectAltNames`) or an origination client
//! (SIMPLE/MUTUAL); DISABLE gets plaintext.
//!
//! Credentials are the configuration's [`MeshIdentity`] (so renewal and root rotation are a
//! config push), or fixed at construction for tests. rustls configs are built when the
//! credentials change and cached per distinct upstream setting; a connection costs one
//! `Connection::new`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ServerConnection;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};

use super::accept::SniTermination;
use super::clock::EngineClock;
use super::seeded::{self, with_rng};
use super::termination::FilterChains;
use super::transform::TlsTransform;
use super::verify::{IdentityCheck, MeshClientVerifier, MeshServerVerifier, OriginationVerifier};
use super::{termination, xfcc};
use super::{HTTP1, ISTIO, MESH_HTTP1};
use crate::time::Instant;
use crate::transport::policy::{
    mesh_sni, InboundMode, MeshIdentity, OriginationTls, ResolvedUpstreamTls, TerminatedTls,
};
use crate::transport::sniff::{ForeignTls, Sniffer};
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

pub(super) fn setup(detail: impl std::fmt::Display) -> TransformError {
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
        Ok(MeshCredentials {
            chain: certificates(chain, "certificate chain")?,
            key: private_key(key)?,
            bundle: certificates(bundle, "trust bundle")?,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// Credentials from the configuration's identity.
    pub fn from_identity(identity: &MeshIdentity) -> Result<Self, TransformError> {
        MeshCredentials::from_pem(
            &identity.chain_pem,
            &identity.key_pem,
            &identity.bundle_pem,
            &identity.trust_domain,
        )
    }
}

pub(super) fn certificates(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TransformError> {
    let list = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| setup(format!("{what}: {e}")))?;
    if list.is_empty() {
        return Err(setup(format!("{what}: no certificate in the PEM")));
    }
    Ok(list)
}

pub(super) fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, TransformError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| setup(format!("private key: {e}")))
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
}

/// The rustls configs built from one set of mesh credentials.
struct MeshConfigs {
    /// What they were built from (`None`: credentials fixed at construction).
    source: Option<MeshIdentity>,
    server: Arc<ServerConfig>,
    /// Per `subjectAltNames` list (empty: any identity of the trust domain).
    clients: BTreeMap<Vec<String>, Arc<ClientConfig>>,
    credentials: Arc<MeshCredentials>,
    roots: Arc<RootCertStore>,
    /// Our own URI SANs, for the XFCC elements of inbound connections.
    local_uris: Arc<[String]>,
    /// `ISTIO_MUTUAL` gateway termination configs, per listener setting: built from these
    /// credentials, so a renewal drops them with the rest.
    terminations: Vec<(Arc<TerminatedTls>, Arc<FilterChains>)>,
}

/// Connections protected as the configuration asks (see the module docs).
pub struct MtlsTransports {
    clock: Arc<EngineClock>,
    provider: Arc<CryptoProvider>,
    /// Credentials given at construction, which win over the configuration's.
    fixed: Option<Arc<MeshCredentials>>,
    mesh: Option<MeshConfigs>,
    /// Origination configs, per distinct setting (few: one per DestinationRule).
    origination: Vec<(Arc<OriginationTls>, Arc<ClientConfig>)>,
    /// Seeds each connection's RNG when handshakes are seeded.
    seeds: Option<fastrand::Rng>,
    /// Gateway termination configs, per listener setting (few: one per TLS port).
    termination: Vec<(Arc<TerminatedTls>, Arc<FilterChains>)>,
}

/// Origination settings kept at most; past it the cache starts over.
const ORIGINATION_CACHE: usize = 64;

impl MtlsTransports {
    /// A factory with fixed credentials (the configuration's identity is ignored).
    pub fn new(creds: &MeshCredentials, settings: MtlsSettings) -> Result<Self, TransformError> {
        let mut factory = MtlsTransports::from_config(settings);
        let creds = Arc::new(MeshCredentials {
            chain: creds.chain.clone(),
            key: creds.key.clone_key(),
            bundle: creds.bundle.clone(),
            trust_domain: creds.trust_domain.clone(),
        });
        factory.mesh = Some(factory.build_mesh(creds.clone(), None)?);
        factory.fixed = Some(creds);
        Ok(factory)
    }

    /// A factory whose credentials come from each configuration snapshot's identity.
    pub fn from_config(settings: MtlsSettings) -> Self {
        let provider = Arc::new(match settings.randomness {
            Randomness::System => rustls::crypto::ring::default_provider(),
            Randomness::Seeded(_) => seeded::provider(),
        });
        let seeds = match settings.randomness {
            Randomness::System => None,
            Randomness::Seeded(seed) => Some(fastrand::Rng::with_seed(seed)),
        };
        MtlsTransports {
            clock: EngineClock::new(settings.unix_base),
            provider,
            fixed: None,
            mesh: None,
            origination: Vec::new(),
            seeds,
            termination: Vec::new(),
        }
    }

    fn build_mesh(
        &self,
        credentials: Arc<MeshCredentials>,
        source: Option<MeshIdentity>,
    ) -> Result<MeshConfigs, TransformError> {
        let mut roots = RootCertStore::empty();
        let bundle = &credentials.bundle[..];
        #[cfg(feature = "mutants")]
        let bundle = match bundle {
            [.., newest] if crate::mutants::route().bundle_newest_root_only => {
                std::slice::from_ref(newest)
            }
            all => all,
        };
        for root in bundle {
            roots
                .add(root.clone())
                .map_err(|e| setup(format!("trust bundle: {e}")))?;
        }
        let roots = Arc::new(roots);
        let domain_only = IdentityCheck {
            trust_domain: credentials.trust_domain.clone(),
            expected: Vec::new(),
        };
        let server = Arc::new(server_config(
            &credentials,
            &self.provider,
            &self.clock,
            &roots,
            &domain_only,
        )?);
        let local_uris: Arc<[String]> = credentials
            .chain
            .first()
            .map(xfcc::uri_sans)
            .unwrap_or_default()
            .into();
        Ok(MeshConfigs {
            source,
            server,
            clients: BTreeMap::new(),
            credentials,
            roots,
            local_uris,
            terminations: Vec::new(),
        })
    }

    /// The mesh configs for the current credentials: the fixed ones, else the snapshot's
    /// identity (rebuilt when it changed: a renewal or a root rotation).
    fn mesh(
        &mut self,
        identity: Option<&MeshIdentity>,
    ) -> Result<&mut MeshConfigs, TransformError> {
        if self.fixed.is_none() {
            let Some(identity) = identity else {
                return Err(setup(
                    "mTLS is configured but the proxy has no mesh identity (certificate, key \
                     and trust bundle)",
                ));
            };
            let stale = self
                .mesh
                .as_ref()
                .is_none_or(|m| m.source.as_ref() != Some(identity));
            if stale {
                let credentials = Arc::new(MeshCredentials::from_identity(identity)?);
                self.mesh = Some(self.build_mesh(credentials, Some(identity.clone()))?);
            }
        }
        self.mesh
            .as_mut()
            .ok_or_else(|| setup("no mesh credentials"))
    }

    fn mesh_client(
        &mut self,
        identity: Option<&MeshIdentity>,
        subject_alt_names: &[String],
    ) -> Result<Arc<ClientConfig>, TransformError> {
        let provider = self.provider.clone();
        let clock = self.clock.clone();
        let mesh = self.mesh(identity)?;
        if let Some(config) = mesh.clients.get(subject_alt_names) {
            return Ok(config.clone());
        }
        let check = IdentityCheck {
            trust_domain: mesh.credentials.trust_domain.clone(),
            expected: subject_alt_names.to_vec(),
        };
        let config = Arc::new(client_config(
            &mesh.credentials,
            &provider,
            &clock,
            &mesh.roots,
            check,
        )?);
        mesh.clients
            .insert(subject_alt_names.to_vec(), config.clone());
        Ok(config)
    }

    fn origination_client(
        &mut self,
        tls: &Arc<OriginationTls>,
    ) -> Result<Arc<ClientConfig>, TransformError> {
        if let Some((_, config)) = self
            .origination
            .iter()
            .find(|(t, _)| Arc::ptr_eq(t, tls) || **t == **tls)
        {
            return Ok(config.clone());
        }
        let config = Arc::new(origination_config(tls, &self.provider, &self.clock)?);
        if self.origination.len() >= ORIGINATION_CACHE {
            self.origination.clear();
        }
        self.origination.push((tls.clone(), config.clone()));
        Ok(config)
    }

    /// The gateway filter chains for `tls`, built on first use (`ISTIO_MUTUAL`: from the
    /// current mesh credentials).
    fn termination_chains(
        &mut self,
        tls: &Arc<TerminatedTls>,
        identity: Option<&MeshIdentity>,
    ) -> Result<Arc<FilterChains>, TransformError> {
        let same = |t: &Arc<TerminatedTls>| Arc::ptr_eq(t, tls) || **t == **tls;
        if tls.uses_mesh_identity() {
            let (provider, clock) = (self.provider.clone(), self.clock.clone());
            let mesh = self.mesh(identity)?;
            if let Some((_, config)) = mesh.terminations.iter().find(|(t, _)| same(t)) {
                return Ok(config.clone());
            }
            let trust = termination::MeshTrust {
                credentials: &mesh.credentials,
                roots: &mesh.roots,
            };
            let config = Arc::new(termination::filter_chains(
                tls,
                &provider,
                &clock,
                Some(trust),
            )?);
            if mesh.terminations.len() >= ORIGINATION_CACHE {
                mesh.terminations.clear();
            }
            mesh.terminations.push((tls.clone(), config.clone()));
            return Ok(config);
        }
        if let Some((_, config)) = self.termination.iter().find(|(t, _)| same(t)) {
            return Ok(config.clone());
        }
        let config = Arc::new(termination::filter_chains(
            tls,
            &self.provider,
            &self.clock,
            None,
        )?);
        if self.termination.len() >= ORIGINATION_CACHE {
            self.termination.clear();
        }
        self.termination.push((tls.clone(), config.clone()));
        Ok(config)
    }

    fn next_rng(&mut self) -> Option<fastrand::Rng> {
        self.seeds
            .as_mut()
            .map(|s| fastrand::Rng::with_seed(s.u64(..)))
    }
}

/// TLS 1.3 only: both ends of a mesh hop are ours, and 1.3 saves a round trip.
static VERSIONS: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    &VERSIONS
}

/// Both versions, for servers outside the mesh.
fn all_versions() -> &'static [&'static rustls::SupportedProtocolVersion] {
    rustls::ALL_VERSIONS
}

/// What a mesh server accepts: Trellis's own id, Istio's in-mesh `istio` (what Envoy sidecars
/// and Trellis clients offer), plain HTTP/1.1.
fn alpn() -> Vec<Vec<u8>> {
    vec![MESH_HTTP1.to_vec(), ISTIO.to_vec(), HTTP1.to_vec()]
}

/// What a sidecar offers another: pilot's `ALPNInMesh` (`istio`, in-mesh traffic, the value
/// AUTO_PASSTHROUGH gateway chains and Istio's inbound chains match; Trellis has no metadata
/// exchange, so not `istio-peer-exchange`, as pilot when `DisableMxALPN`), then Trellis's id
/// for servers that predate `istio`.
fn client_alpn() -> Vec<Vec<u8>> {
    vec![ISTIO.to_vec(), MESH_HTTP1.to_vec()]
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
    config.alpn_protocols = client_alpn();
    config.resumption = Resumption::disabled();
    // The server name is pilot's cluster SNI (for gateways that route on it); the SPIFFE id,
    // not a name, is what gets checked.
    config.enable_sni = true;
    Ok(config)
}

/// A client for SIMPLE/MUTUAL origination: the configured roots (none with
/// `insecureSkipVerify`), the SNI, and a client certificate for MUTUAL.
fn origination_config(
    tls: &OriginationTls,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
) -> Result<ClientConfig, TransformError> {
    let roots = if tls.insecure_skip_verify {
        None
    } else {
        let pem = tls.ca_pem.as_deref().ok_or_else(|| {
            setup(format!(
                "TLS origination to {} has no CA certificates to verify the server with",
                tls.sni
            ))
        })?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certificates(pem, "caCertificates")?);
        if added == 0 {
            return Err(setup("caCertificates: no usable certificate"));
        }
        Some(Arc::new(roots))
    };
    let verifier = OriginationVerifier::new(
        roots,
        provider.signature_verification_algorithms,
        tls.subject_alt_names.clone(),
    );
    let builder = ClientConfig::builder_with_details(provider.clone(), clock.clone())
        .with_protocol_versions(all_versions())
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &tls.client_cert {
        Some(cert) => builder
            .with_client_auth_cert(
                certificates(&cert.chain_pem, "clientCertificate")?,
                private_key(&cert.key_pem)?,
            )
            .map_err(|e| setup(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![HTTP1.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_sni = true;
    Ok(config)
}

impl TransportFactory for MtlsTransports {
    fn transport(
        &mut self,
        now: Instant,
        endpoint: Endpoint<'_>,
        identity: Option<&MeshIdentity>,
    ) -> Result<Transport, TransformError> {
        self.clock.set(now);
        match endpoint {
            Endpoint::Downstream {
                peer,
                terminate: Some(tls),
                ..
            } => {
                let chains = self.termination_chains(tls, identity)?;
                // Whether the client is a mesh peer (ISTIO_MUTUAL) is the chosen chain's.
                let rng = self.next_rng();
                let transform =
                    SniTermination::new(chains, self.clock.clone(), rng, format!("client {peer}"));
                Ok(Transport::Transformed(Box::new(transform)))
            }
            Endpoint::Downstream { mode, peer, .. } => {
                if mode == InboundMode::Disable {
                    return Ok(Transport::Plain);
                }
                let rng = self.next_rng();
                let clock = self.clock.clone();
                let mesh = self.mesh(identity)?;
                let conn = ServerConnection::new(mesh.server.clone())
                    .map_err(|e| setup(format!("server connection: {e}")))?;
                let tls = TlsTransform::new(
                    Connection::Server(conn),
                    clock,
                    rng,
                    format!("client {peer}"),
                )
                .with_client_cert_details(mesh.local_uris.clone());
                // Pilot's STRICT chains terminate any TLS; PERMISSIVE ones only a sidecar's,
                // and the engine relays another client's once the port turns out to be TCP.
                let foreign_tls = if mode == InboundMode::Strict {
                    ForeignTls::Terminate
                } else {
                    ForeignTls::Refuse
                };
                Ok(Transport::Sniffing {
                    tls: Box::new(tls),
                    sniffer: Sniffer::new(foreign_tls),
                    plaintext_allowed: mode == InboundMode::Permissive,
                })
            }
            Endpoint::Upstream { cluster, addr, tls } => {
                let peer = format!("upstream {cluster} at {addr}");
                let transform = match tls {
                    ResolvedUpstreamTls::Plain => return Ok(Transport::Plain),
                    ResolvedUpstreamTls::Mesh {
                        subject_alt_names,
                        sni,
                    } => {
                        let config = self.mesh_client(identity, subject_alt_names)?;
                        let mut rng = self.next_rng();
                        let sni = sni.map(str::to_string).or_else(|| mesh_sni(cluster));
                        // A name rustls cannot send is left out: the upstream is dialled by
                        // address and its SPIFFE id, not a name, is what gets checked.
                        let name = (sni.and_then(|s| ServerName::try_from(s).ok()))
                            .unwrap_or(ServerName::IpAddress(addr.ip().into()));
                        let conn = with_rng(&mut rng, || ClientConnection::new(config, name))
                            .map_err(|e| setup(format!("client connection to {cluster}: {e}")))?;
                        TlsTransform::new(Connection::Client(conn), self.clock.clone(), rng, peer)
                    }
                    ResolvedUpstreamTls::Origination(o) => {
                        let config = self.origination_client(o)?;
                        let mut rng = self.next_rng();
                        let name = ServerName::try_from(o.sni.clone())
                            .map_err(|e| setup(format!("sni {:?}: {e}", o.sni)))?;
                        let conn = with_rng(&mut rng, || ClientConnection::new(config, name))
                            .map_err(|e| setup(format!("client connection to {cluster}: {e}")))?;
                        TlsTransform::new(Connection::Client(conn), self.clock.clone(), rng, peer)
                            .outside_mesh()
                    }
                };
                Ok(Transport::Transformed(Box::new(transform)))
            }
        }
    }
}
