//! A gateway's TLS termination (Gateway `servers[].tls` `SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`,
//! `ISTIO_MUTUAL`): one rustls server config per Gateway server, the filter chain the client's
//! SNI selects ([`FilterChains::select`], driven by [`super::accept`]).
//!
//! istiod gives each server of a port its own filter chain whose `server_names` are the
//! server's hosts, or none when a host is `*` (`GetSNIHostsForServer` in
//! pilot/pkg/model/gateway.go, `toFilterChainMatch` in pilot/pkg/networking/core/listener.go).
//! Envoy picks the chain by the SNI: an exact name first, then the longest `*.suffix` wildcard
//! (one label or more), then a chain without `server_names`; a client without SNI gets only
//! the last kind, and a client that matches nothing is disconnected (no filter chain match).
//! So each server's certificate, `caCertificates` and `subjectAltNames` apply to its own hosts
//! only.
//!
//! Each chain has its own client requirement, decided after the SNI chose it: servers of
//! different modes share a port (pilot builds one `DownstreamTlsContext` per server, each with
//! its own `require_client_certificate`), so a `SIMPLE` server never asks a client for a
//! certificate even when a `MUTUAL` one on the same port requires it. `MUTUAL` servers verify
//! the client against their `caCertificates`; `OPTIONAL_MUTUAL` ones ask for a certificate,
//! accept a client without one, and verify one that is presented (Envoy's
//! `require_client_certificate: false` with a validation context). A server's
//! `subjectAltNames` then restrict the certificates accepted ([`super::san`]), and its
//! `verifyCertificateSpki`/`verifyCertificateHash` pin them ([`super::pin`]).
//!
//! `ISTIO_MUTUAL` servers present the proxy's own mesh certificate (pilot's SDS `default`
//! secret) and verify clients as a sidecar's inbound does: a chain to the mesh trust bundle and
//! a SPIFFE id of the trust domain (and one of the server's `subjectAltNames` when given),
//! pilot's `ROOTCA` validation context in `BuildListenerTLSContext`
//! (pilot/pkg/networking/core/tls.go). ALPN then offers the mesh's own protocol id first.
//!
//! A chain's decrypted bytes are HTTP (an `HTTPS` server) or a byte stream for the L4 chain
//! pilot builds for a `TLS` or TCP server with a terminating mode ([`Plaintext`]); servers of
//! both kinds share a port, each chain carrying its own.
//!
//! A port may also hold `PASSTHROUGH` servers ([`TerminatedTls::passthrough`]): their hosts
//! are filter chains like the others in the SNI match, and a ClientHello that selects one is
//! not terminated ([`Choice::PassThrough`]; [`super::accept`] hands its bytes on untouched).
//!
//! Versions are TLS 1.2 and 1.3 (Envoy's server default), ALPN `http/1.1` on HTTP chains (no
//! HTTP/2 yet) and `h2, http/1.1` on TCP ones (pilot's ALPNHttp: the bytes are relayed, so
//! whatever the client negotiates reaches the upstream), no ALPN at all for a client that offers
//! none of them (Envoy's NOACK, [`Selected::config_for`]), and no session tickets (rustls's
//! ticketer reads the wall clock; the engine's time is its own).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::clock::EngineClock;
use super::factory::{certificates, private_key, setup, MeshCredentials};
use super::pin::PinnedClientVerifier;
use super::san::{ExpectedSans, SanClientVerifier};
use super::verify::{IdentityCheck, MeshClientVerifier};
use super::xfcc;
use super::{H2, HTTP1, ISTIO, MESH_HTTP1};
use crate::transport::policy::{ClientCertificates, Plaintext, ServerCertificate, TerminatedTls};
use crate::transport::TransformError;

/// The mesh credentials an `ISTIO_MUTUAL` port presents and verifies with.
pub struct MeshTrust<'a> {
    pub credentials: &'a MeshCredentials,
    pub roots: &'a Arc<RootCertStore>,
}

/// One Gateway server's chain: the SNI names it serves and its config.
struct FilterChain {
    /// Lower-case hosts; empty: the server has host `*` and matches any SNI, or none.
    server_names: Vec<String>,
    config: Arc<ServerConfig>,
    /// The same without ALPN, for a client that offers none of the chain's protocols.
    without_alpn: Arc<ServerConfig>,
    /// The URI SANs of the certificate it presents (`By=` in the XFCC element).
    local_uris: Arc<[String]>,
    /// Its own route table ([`ServerCertificate::route_table`]).
    route_table: Option<Arc<str>>,
    /// It verifies mesh identities (`ISTIO_MUTUAL`).
    mesh: bool,
    /// What its decrypted bytes are.
    plaintext: Plaintext,
}

/// The chain a ClientHello selected.
pub struct Selected<'a> {
    config: &'a Arc<ServerConfig>,
    without_alpn: &'a Arc<ServerConfig>,
    pub local_uris: &'a Arc<[String]>,
    pub route_table: Option<&'a Arc<str>>,
    /// The chain verifies mesh identities (`ISTIO_MUTUAL`): its client's id is a peer
    /// principal.
    pub mesh: bool,
    /// HTTP (its route table's) or bytes for its L4 chain.
    pub plaintext: Plaintext,
}

impl Selected<'_> {
    /// The chain's config for a client offering the ALPN protocols `offered` (`None`: no ALPN
    /// extension). Envoy's ALPN callback answers a client that offers none of the chain's
    /// protocols with `SSL_TLSEXT_ERR_NOACK` and the handshake goes on without ALPN, where
    /// rustls would refuse it (`no_application_protocol`): such a client gets the chain's
    /// config without ALPN.
    pub fn config_for(&self, offered: Option<&[&[u8]]>) -> Arc<ServerConfig> {
        let agrees = |offered: &[&[u8]]| {
            (offered.iter()).any(|p| self.config.alpn_protocols.iter().any(|a| a == p))
        };
        match offered {
            Some(offered) if !agrees(offered) => self.without_alpn.clone(),
            _ => self.config.clone(),
        }
    }
}

/// What a ClientHello's SNI selected.
pub enum Choice<'a> {
    /// A terminating server's chain.
    Terminate(Selected<'a>),
    /// A `PASSTHROUGH` server's: the connection is not terminated.
    PassThrough,
}

/// A terminating port's filter chains, in the Gateway's server order, and the chains of its
/// `PASSTHROUGH` servers.
pub struct FilterChains {
    chains: Vec<FilterChain>,
    /// Each passthrough server's `server_names`.
    passthrough: Vec<Vec<String>>,
}

impl FilterChains {
    /// The chain Envoy would pick for `sni` among all the port's chains, terminating or not
    /// (see the module docs); `None`: the connection is closed.
    pub fn select(&self, sni: Option<&str>) -> Option<Choice<'_>> {
        let names: Vec<&[String]> = (self.chains.iter().map(|c| &c.server_names[..]))
            .chain(self.passthrough.iter().map(Vec::as_slice))
            .collect();
        #[cfg(feature = "mutants")]
        let names = if crate::mutants::route().gateway_passthrough_after_catch_all
            && pick(&names[..self.chains.len()], sni).is_some()
        {
            names[..self.chains.len()].to_vec()
        } else {
            names
        };
        let i = pick(&names, sni)?;
        let Some(c) = self.chains.get(i) else {
            debug_assert!(i - self.chains.len() < self.passthrough.len());
            return Some(Choice::PassThrough);
        };
        Some(Choice::Terminate(Selected {
            config: &c.config,
            without_alpn: &c.without_alpn,
            local_uris: &c.local_uris,
            route_table: c.route_table.as_ref(),
            mesh: c.mesh,
            plaintext: c.plaintext,
        }))
    }

    /// How many chains (servers) the port has.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether the port has `PASSTHROUGH` chains (a ClientHello must then be kept whole).
    pub fn has_passthrough(&self) -> bool {
        !self.passthrough.is_empty()
    }

    /// Whether the port has no chain (translation never builds one).
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }
}

/// The server (an index into `servers`, each its `hosts`) whose filter chain a ClientHello
/// with `sni` selects, as [`FilterChains::select`] does: for `trellis explain`.
pub fn server_for_sni(servers: &[Vec<String>], sni: Option<&str>) -> Option<usize> {
    let names: Vec<Vec<String>> = servers.iter().map(|hosts| server_names(hosts)).collect();
    let names: Vec<&[String]> = names.iter().map(Vec::as_slice).collect();
    pick(&names, sni)
}

/// A server's `server_names`: its hosts lower-cased, or none (match-all) when one is `*`.
fn server_names(hosts: &[String]) -> Vec<String> {
    if hosts.iter().any(|h| h == "*") {
        Vec::new()
    } else {
        hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
    }
}

/// Which of the chains (their `server_names`, empty: catch-all) Envoy's filter chain match
/// picks for `sni`: exact, then the longest `*.suffix`, then the first catch-all.
fn pick(chains: &[&[String]], sni: Option<&str>) -> Option<usize> {
    let catch_all = || chains.iter().position(|names| names.is_empty());
    let Some(sni) = sni else {
        return catch_all();
    };
    let sni = sni.to_ascii_lowercase();
    let named = |name: &str| {
        chains
            .iter()
            .position(|names| names.iter().any(|n| n == name))
    };
    #[cfg(feature = "mutants")]
    let exact_first = !crate::mutants::route().gateway_sni_wildcard_first;
    #[cfg(not(feature = "mutants"))]
    let exact_first = true;
    if let Some(i) = named(&sni).filter(|_| exact_first) {
        return Some(i);
    }
    // `*.b.example.com`, then `*.example.com`, then `*.com`: the longest suffix first.
    let mut from = 1;
    while let Some(dot) = sni.get(from..).and_then(|rest| rest.find('.')) {
        let at = from + dot;
        if at + 1 >= sni.len() {
            break;
        }
        if let Some(i) = sni
            .get(at..)
            .and_then(|suffix| named(&format!("*{suffix}")))
        {
            return Some(i);
        }
        from = at + 1;
    }
    if let Some(i) = named(&sni).filter(|_| !exact_first) {
        return Some(i);
    }
    catch_all()
}

/// The filter chains for `tls`; `mesh` is required when a server is `ISTIO_MUTUAL`
/// ([`TerminatedTls::uses_mesh_identity`]).
pub fn filter_chains(
    tls: &TerminatedTls,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
    mesh: Option<MeshTrust<'_>>,
) -> Result<FilterChains, TransformError> {
    debug_assert!(
        !tls.servers.is_empty(),
        "translation gives at least one server"
    );
    if tls.uses_mesh_identity() && mesh.is_none() {
        return Err(setup(
            "ISTIO_MUTUAL is configured but the proxy has no mesh identity (certificate, \
             key and trust bundle)",
        ));
    }
    let mut chains = Vec::with_capacity(tls.servers.len());
    for server in &tls.servers {
        // Only an ISTIO_MUTUAL server presents the mesh identity; its neighbours on the port
        // present their own files.
        let is_mesh = server.clients == ClientCertificates::Mesh;
        let own_mesh = mesh.as_ref().filter(|_| is_mesh);
        let (config, local_uris) = server_config(server, provider, clock, own_mesh)?;
        let mut without_alpn = config.clone();
        without_alpn.alpn_protocols.clear();
        chains.push(FilterChain {
            server_names: server_names(&server.hosts),
            config: Arc::new(config),
            without_alpn: Arc::new(without_alpn),
            local_uris,
            route_table: server.route_table.as_deref().map(Arc::from),
            mesh: is_mesh,
            plaintext: server.plaintext,
        });
    }
    let passthrough = tls.passthrough.iter().map(|h| server_names(h)).collect();
    Ok(FilterChains {
        chains,
        passthrough,
    })
}

/// One server's config: its certificate (or the mesh's) and its own client verifier; and the
/// certificate's URI SANs.
fn server_config(
    server: &ServerCertificate,
    provider: &Arc<CryptoProvider>,
    clock: &Arc<EngineClock>,
    mesh: Option<&MeshTrust<'_>>,
) -> Result<(ServerConfig, Arc<[String]>), TransformError> {
    let (chain, key) = match mesh {
        Some(m) => (m.credentials.chain.clone(), m.credentials.key.clone_key()),
        None => (
            certificates(&server.chain_pem, "serverCertificate")?,
            private_key(&server.key_pem)?,
        ),
    };
    let local_uris: Arc<[String]> = chain.first().map(xfcc::uri_sans).unwrap_or_default().into();
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| setup(format!("privateKey: {e}")))?;
    let verifier = client_verifier(server, provider, mesh)?;
    let builder = ServerConfig::builder_with_details(provider.clone(), clock.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(setup)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(OneCertificate(Arc::new(
        CertifiedKey::new(chain, key),
    ))));
    config.alpn_protocols = match (mesh, server.plaintext) {
        // A TCP chain relays whatever the client speaks: pilot offers `h2, http/1.1`
        // (BuildListenerTLSContext: ALPNHttp, or for ISTIO_MUTUAL ALPNDownstreamWithMxc less
        // `istio-peer-exchange`, as Trellis has no metadata exchange).
        (_, Plaintext::Tcp) => vec![H2.to_vec(), HTTP1.to_vec()],
        (Some(_), Plaintext::Http) => vec![MESH_HTTP1.to_vec(), ISTIO.to_vec(), HTTP1.to_vec()],
        (None, Plaintext::Http) => vec![HTTP1.to_vec()],
    };
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok((config, local_uris))
}

/// What `server` asks of a client, as its own `DownstreamTlsContext` does
/// (`BuildListenerTLSContext`): nothing (`SIMPLE`: no CertificateRequest is sent at all); a
/// certificate chaining to `caCertificates`, required (`MUTUAL`) or not (`OPTIONAL_MUTUAL`),
/// then its `subjectAltNames` ([`SanClientVerifier`]), then its pins
/// ([`PinnedClientVerifier`]), in `DefaultCertValidator`'s order; or a mesh identity
/// (`ISTIO_MUTUAL`).
fn client_verifier(
    server: &ServerCertificate,
    provider: &Arc<CryptoProvider>,
    mesh: Option<&MeshTrust<'_>>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TransformError> {
    let required = match (&server.clients, mesh) {
        (ClientCertificates::NotRequested, _) => return Ok(None),
        (ClientCertificates::Mesh, Some(m)) => {
            let check = IdentityCheck {
                trust_domain: m.credentials.trust_domain.clone(),
                expected: server.subject_alt_names.clone(),
            };
            let verifier = MeshClientVerifier::new(m.roots.clone(), provider.clone(), check)
                .map_err(|e| setup(format!("client verifier: {e}")))?;
            return Ok(Some(Arc::new(verifier)));
        }
        (ClientCertificates::Mesh, None) => {
            return Err(setup("an ISTIO_MUTUAL server has no mesh identity"))
        }
        #[cfg(feature = "mutants")]
        (ClientCertificates::Required, _) if crate::mutants::route().gateway_mutual_optional => {
            false
        }
        (ClientCertificates::Required, _) => true,
        (ClientCertificates::Optional, _) => false,
    };
    let ca = server
        .client_ca_pem
        .as_deref()
        .ok_or_else(|| setup("a mutual TLS server has no caCertificates"))?;
    let mut client_roots = RootCertStore::empty();
    let (added, _) = client_roots.add_parsable_certificates(certificates(ca, "caCertificates")?);
    if added == 0 {
        return Err(setup("caCertificates: no usable certificate"));
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let mut verifier = builder
        .build()
        .map_err(|e| setup(format!("client verifier: {e}")))?;
    if !server.subject_alt_names.is_empty() {
        let expected = ExpectedSans(server.subject_alt_names.clone());
        verifier = Arc::new(SanClientVerifier::new(verifier, expected));
    }
    if !server.pins.is_empty() {
        verifier = Arc::new(PinnedClientVerifier::new(verifier, server.pins.clone()));
    }
    Ok(Some(verifier))
}

/// A server's one certificate (the chain was chosen by SNI before the config).
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    fn names(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    /// Envoy's server_names match (FilterChainManagerImpl::findFilterChainForServerName in
    /// source/common/listener_manager/filter_chain_manager_impl.cc): exact, then the longest
    /// wildcard, then the chain without server names; pilot leaves `server_names` empty for a
    /// server with host `*` (toFilterChainMatch in pilot/pkg/networking/core/listener.go).
    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_catch_all() {
        let exact = names(&["api.example.com"]);
        let wide = names(&["*.example.com"]);
        let narrow = names(&["*.eu.example.com"]);
        let all: Vec<String> = Vec::new();
        let chains: Vec<&[String]> = vec![&wide, &exact, &narrow, &all];
        assert_eq!(pick(&chains, Some("api.example.com")), Some(1));
        assert_eq!(pick(&chains, Some("API.Example.com")), Some(1));
        assert_eq!(pick(&chains, Some("web.example.com")), Some(0));
        assert_eq!(pick(&chains, Some("a.b.example.com")), Some(0));
        assert_eq!(pick(&chains, Some("x.eu.example.com")), Some(2));
        assert_eq!(pick(&chains, Some("example.com")), Some(3));
        assert_eq!(pick(&chains, None), Some(3));
    }

    #[test]
    fn no_match_and_no_catch_all_closes() {
        let a = names(&["a.example.com"]);
        let wide = names(&["*.example.com"]);
        let chains: Vec<&[String]> = vec![&a, &wide];
        assert_eq!(pick(&chains, Some("other.test")), None);
        assert_eq!(pick(&chains, Some("example.com")), None);
        assert_eq!(pick(&chains, None), None);
        assert_eq!(pick(&chains, Some("b.example.com")), Some(1));
    }
}
