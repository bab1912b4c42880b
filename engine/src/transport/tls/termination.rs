//! A gateway's TLS termination (Gateway `servers[].tls` `SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`,
//! `ISTIO_MUTUAL`): one rustls server config per listener, whose certificate is chosen by the
//! client's SNI.
//!
//! Envoy gives each Gateway server a filter chain matched on `server_names` (istiod's
//! `buildGatewayListenerTLSContext` and the filter chain match in
//! pilot/pkg/networking/core/gateway.go); here one config holds every server of the port and
//! a resolver picks the first whose hosts match the SNI: an exact name, a `*.suffix` wildcard
//! (one label or more, as Envoy's server_names wildcards), or `*`. Without SNI (a client that
//! dials by IP) the first server answers, as Envoy's chain without `server_names` would.
//!
//! `MUTUAL` servers verify the client against their `caCertificates`; `OPTIONAL_MUTUAL` ones
//! ask for a certificate, accept a client without one, and verify one that is presented
//! (Envoy's `require_client_certificate: false` with a validation context). One rustls config
//! has one client verifier, so the CAs of every such server of the port are trusted together;
//! translation refuses a port that mixes modes rather than let a SIMPLE host ask for
//! certificates.
//!
//! `ISTIO_MUTUAL` servers present the proxy's own mesh certificate (pilot's SDS `default`
//! secret) and verify clients as a sidecar's inbound does: a chain to the mesh trust bundle and
//! a SPIFFE id of the trust domain (and one of the server's `subjectAltNames` when given),
//! pilot's `ROOTCA` validation context in `BuildListenerTLSContext`
//! (pilot/pkg/networking/core/tls.go). ALPN then offers the mesh's own protocol id first.
//!
//! Versions are TLS 1.2 and 1.3 (Envoy's server default), ALPN `http/1.1`, and no session
//! tickets (rustls's ticketer reads the wall clock; the engine's time is its own).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::clock::EngineClock;
use super::factory::{certificates, private_key, setup, MeshCredentials};
use super::verify::{IdentityCheck, MeshClientVerifier};
use super::{HTTP1, MESH_HTTP1};
use crate::transport::policy::{ClientCertificates, TerminatedTls};
use crate::transport::TransformError;

/// The mesh credentials an `ISTIO_MUTUAL` port presents and verifies with.
pub struct MeshTrust<'a> {
    pub credentials: &'a MeshCredentials,
    pub roots: &'a Arc<RootCertStore>,
}

/// The server config for `tls`; `mesh` is required under [`ClientCertificates::Mesh`].
pub fn server_config(
    tls: &TerminatedTls,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
    mesh: Option<MeshTrust<'_>>,
) -> Result<ServerConfig, TransformError> {
    debug_assert!(
        !tls.servers.is_empty(),
        "translation gives at least one server"
    );
    let mesh = match (&tls.clients, mesh) {
        (ClientCertificates::Mesh { .. }, None) => {
            return Err(setup(
                "ISTIO_MUTUAL is configured but the proxy has no mesh identity (certificate, \
                 key and trust bundle)",
            ))
        }
        (ClientCertificates::Mesh { .. }, Some(m)) => Some(m),
        _ => None,
    };
    let mut servers = Vec::with_capacity(tls.servers.len());
    let mut client_roots = RootCertStore::empty();
    for server in &tls.servers {
        let (chain, key) = match &mesh {
            Some(m) => (m.credentials.chain.clone(), m.credentials.key.clone_key()),
            None => (
                certificates(&server.chain_pem, "serverCertificate")?,
                private_key(&server.key_pem)?,
            ),
        };
        let key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| setup(format!("privateKey: {e}")))?;
        let hosts: Vec<String> = server
            .hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        servers.push((hosts, Arc::new(CertifiedKey::new(chain, key))));
        if let Some(ca) = &server.client_ca_pem {
            let (added, _) =
                client_roots.add_parsable_certificates(certificates(ca, "caCertificates")?);
            if added == 0 {
                return Err(setup("caCertificates: no usable certificate"));
            }
        }
    }
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match (&tls.clients, &mesh) {
        (ClientCertificates::Mesh { subject_alt_names }, Some(m)) => {
            let check = IdentityCheck {
                trust_domain: m.credentials.trust_domain.clone(),
                expected: subject_alt_names.clone(),
            };
            let verifier = MeshClientVerifier::new(m.roots.clone(), provider.clone(), check)
                .map_err(|e| setup(format!("client verifier: {e}")))?;
            Some(Arc::new(verifier))
        }
        (ClientCertificates::NotRequested, _) => None,
        (required, _) => {
            if client_roots.is_empty() {
                return Err(setup("a mutual TLS port has no caCertificates"));
            }
            let builder = WebPkiClientVerifier::builder_with_provider(
                Arc::new(client_roots),
                provider.clone(),
            );
            let builder = if *required == ClientCertificates::Optional {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            Some(
                builder
                    .build()
                    .map_err(|e| setup(format!("client verifier: {e}")))?,
            )
        }
    };
    let builder = ServerConfig::builder_with_details(provider.clone(), clock.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(setup)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(BySni { servers }));
    config.alpn_protocols = match mesh {
        Some(_) => vec![MESH_HTTP1.to_vec(), HTTP1.to_vec()],
        None => vec![HTTP1.to_vec()],
    };
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}

/// Certificates by server name, in the Gateway's server order.
#[derive(Debug)]
struct BySni {
    servers: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = match hello.server_name() {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                self.servers
                    .iter()
                    .find(|(hosts, _)| hosts.iter().any(|h| sni_matches(h, &name)))
            }
            None => self.servers.first(),
        };
        chosen.map(|(_, key)| key.clone())
    }
}

/// Whether a server host accepts an SNI name: `*` any, `*.suffix` names ending in `.suffix`,
/// otherwise equal (both lowercase).
fn sni_matches(host: &str, name: &str) -> bool {
    match host.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => host == name,
    }
}

#[cfg(test)]
mod tests {
    use super::sni_matches;

    #[test]
    fn sni_follows_gateway_host_forms() {
        assert!(sni_matches("*", "anything.example"));
        assert!(sni_matches("*.example.com", "a.example.com"));
        assert!(sni_matches("*.example.com", "a.b.example.com"));
        assert!(!sni_matches("*.example.com", "example.com"));
        assert!(!sni_matches("*.example.com", ".example.com"));
        assert!(sni_matches("bookinfo.example", "bookinfo.example"));
        assert!(!sni_matches("bookinfo.example", "other.example"));
    }
}
