//! A gateway port's TLS: which servers terminate TLS (`SIMPLE`, `MUTUAL`), their certificate
//! files read into the engine's [`TerminatedTls`], and what cannot be served.
//!
//! istiod gives each HTTPS server its own filter chain, matched on SNI, with the certificate
//! from `serverCertificate`/`privateKey` files mounted in the gateway or from a Kubernetes
//! Secret named by `credentialName` (buildGatewayListenerTLSContext in
//! pilot/pkg/networking/core/gateway.go, and pilot/pkg/networking/util/tls for the modes).
//! Trellis reads the files (relative paths against the proxy config's directory are the
//! caller's business: the paths are used as given). `credentialName` needs the Secret
//! Discovery Service of a cluster: refused with a message saying what to use instead.
//! `TCP` servers and `TLS` servers (`PASSTHROUGH`, or `SIMPLE`/`MUTUAL` then TCP) are served
//! at L4 (`super::l4`). `AUTO_PASSTHROUGH`, `ISTIO_MUTUAL` and `OPTIONAL_MUTUAL` route by SNI to
//! mesh clusters or use the mesh's own certificate at the edge: refused, never served as
//! plain text.

use std::sync::Arc;

use trellis_engine::transport::policy::{ServerCertificate, TerminatedTls};

use crate::diag::Diagnostic;
use crate::istio::gateway::{Server, ServerTls};

/// How one server is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// Plain-text HTTP.
    Http,
    /// TLS terminated here, then HTTP: `mutual` asks clients for a certificate.
    Https { mutual: bool },
    /// Opaque TCP (a `TCP`, `MONGO`, `MYSQL` or `REDIS` server without `tls`): `tcp` routes.
    Tcp,
    /// TLS terminated here, then `tcp` routes (a `TLS` or TCP server with `SIMPLE`/`MUTUAL`).
    TlsTcp { mutual: bool },
    /// `PASSTHROUGH`: routed by the ClientHello's SNI with `tls` routes, never terminated.
    Passthrough,
    /// Not served; the reason, for the diagnostic.
    Refused(String),
}

/// What `server` asks for (protocol and `tls.mode`).
pub fn mode(server: &Server) -> ServerMode {
    let protocol = server
        .port
        .as_ref()
        .map(|p| p.protocol.to_ascii_uppercase())
        .unwrap_or_default();
    let tls_mode = server
        .tls
        .as_ref()
        .and_then(|t| t.mode.as_deref())
        .map(str::to_ascii_uppercase);
    let http = matches!(
        protocol.as_str(),
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY"
    );
    // protocol.Parse's IsTCP family that is not HTTP (pkg/config/protocol/instance.go).
    let tcp = matches!(protocol.as_str(), "TCP" | "MONGO" | "MYSQL" | "REDIS");
    match (protocol.as_str(), tls_mode.as_deref()) {
        (_, Some("SIMPLE")) if http || protocol == "HTTPS" => ServerMode::Https { mutual: false },
        (_, Some("MUTUAL")) if http || protocol == "HTTPS" => ServerMode::Https { mutual: true },
        // createGatewayTCPFilterChainOpts: a non-passthrough TLS server terminates, then TCP.
        (_, Some("SIMPLE")) if tcp || protocol == "TLS" => ServerMode::TlsTcp { mutual: false },
        (_, Some("MUTUAL")) if tcp || protocol == "TLS" => ServerMode::TlsTcp { mutual: true },
        ("TLS" | "HTTPS", Some("PASSTHROUGH")) => ServerMode::Passthrough,
        ("TLS", None) => ServerMode::Refused(
            "a TLS server needs tls.mode (PASSTHROUGH, SIMPLE or MUTUAL)".into(),
        ),
        _ if tcp && tls_mode.is_none() => ServerMode::Tcp,
        (_, Some(m @ ("PASSTHROUGH" | "AUTO_PASSTHROUGH" | "ISTIO_MUTUAL" | "OPTIONAL_MUTUAL"))) => {
            ServerMode::Refused(format!("tls.mode {m} is not supported by Trellis's gateway"))
        }
        ("HTTPS", None) => {
            ServerMode::Refused("an HTTPS server needs tls.mode SIMPLE or MUTUAL".into())
        }
        (_, Some(m)) if !http => {
            ServerMode::Refused(format!("tls.mode {m} on protocol {protocol:?}"))
        }
        (_, Some(m)) => ServerMode::Refused(format!("unknown tls.mode {m}")),
        _ if http => ServerMode::Http,
        _ => ServerMode::Refused(format!(
            "protocol {protocol:?} is not served by Trellis's gateway (HTTP, HTTPS, TCP and TLS only)"
        )),
    }
}

/// The certificate of an HTTPS `server`, its files read; `Err` says why it cannot be served.
pub fn certificate(server: &Server, mutual: bool) -> Result<ServerCertificate, String> {
    let tls: &ServerTls = server
        .tls
        .as_ref()
        .ok_or_else(|| "an HTTPS server needs a tls section".to_string())?;
    if tls.credential_name.is_some() || !tls.credential_names.is_empty() {
        return Err(
            "tls.credentialName names a Kubernetes Secret, which needs a cluster; give serverCertificate and privateKey files instead".into(),
        );
    }
    let read = |field: &str, path: &Option<String>| -> Result<String, String> {
        let path = path
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("tls.{field} is required"))?;
        std::fs::read_to_string(path).map_err(|e| format!("tls.{field} {path:?}: {e}"))
    };
    Ok(ServerCertificate {
        hosts: server
            .hosts
            .iter()
            .map(|h| {
                h.rsplit_once('/')
                    .map_or(h.as_str(), |(_, h)| h)
                    .to_string()
            })
            .collect(),
        chain_pem: read("serverCertificate", &tls.server_certificate)?,
        key_pem: read("privateKey", &tls.private_key)?,
        client_ca_pem: if mutual {
            Some(read("caCertificates", &tls.ca_certificates)?)
        } else {
            None
        },
    })
}

/// The termination of a port from its HTTPS servers' certificates (`None` when it has none).
pub fn termination(certificates: Vec<ServerCertificate>) -> Option<Arc<TerminatedTls>> {
    (!certificates.is_empty()).then(|| {
        Arc::new(TerminatedTls {
            servers: certificates,
        })
    })
}

/// Reported against a server that is left out.
pub fn refused(label: &str, number: u16, why: &str) -> Diagnostic {
    Diagnostic::error(format!(
        "{label} on port {number}: {why}; not served (never as plain text)"
    ))
}
