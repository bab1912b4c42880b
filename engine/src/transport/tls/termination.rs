//! A gateway's TLS termination (Gateway `servers[].tls` `SIMPLE` / `MUTUAL`): one rustls
//! server config per listener, whose certificate is chosen by the client's SNI.
//!
//! Envoy gives each Gateway server a filter chain matched on `server_names` (istiod's
//! `buildGatewayListenerTLSContext` and the filter chain match in
//! pilot/pkg/networking/core/gateway.go); here one config holds every server of the port and
//! a resolver picks the first whose hosts match the SNI: an exact name, a `*.suffix` wildcard
//! (one label or more, as Envoy's server_names wildcards), or `*`. Without SNI (a client that
//! dials by IP) the first server answers, as Envoy's chain without `server_names` would.
//!
//! `MUTUAL` servers verify the client against their `caCertificates`. One rustls config has
//! one client verifier, so the CAs of every MUTUAL server of the port are trusted together;
//! translation refuses a port that mixes SIMPLE and MUTUAL servers rather than let a SIMPLE
//! host ask for certificates.
//!
//! Versions are TLS 1.2 and 1.3 (Envoy's server default), ALPN `http/1.1`, and no session
//! tickets (rustls's ticketer reads the wall clock; the engine's time is its own).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::clock::EngineClock;
use super::factory::{certificates, private_key, setup};
use super::HTTP1;
use crate::transport::policy::TerminatedTls;
use crate::transport::TransformError;

/// The server config for `tls`.
pub fn server_config(
    tls: &TerminatedTls,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
) -> Result<ServerConfig, TransformError> {
    debug_assert!(
        !tls.servers.is_empty(),
        "translation gives at least one server"
    );
    let mut servers = Vec::with_capacity(tls.servers.len());
    let mut client_roots = RootCertStore::empty();
    for server in &tls.servers {
        let chain = certificates(&server.chain_pem, "serverCertificate")?;
        let key = provider
            .key_provider
            .load_private_key(private_key(&server.key_pem)?)
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
    let builder = ServerConfig::builder_with_details(provider.clone(), clock.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(setup)?;
    let builder = if client_roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
                .build()
                .map_err(|e| setup(format!("client verifier: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(Arc::new(BySni { servers }));
    config.alpn_protocols = vec![HTTP1.to_vec()];
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
