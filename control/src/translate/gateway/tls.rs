//! A gateway port's TLS: which servers terminate TLS (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`,
//! `ISTIO_MUTUAL`), their certificate files read into the engine's [`TerminatedTls`], and what
//! cannot be served.
//!
//! istiod gives each HTTPS server its own filter chain, matched on SNI, with the certificate
//! from `serverCertificate`/`privateKey` files mounted in the gateway or from a Kubernetes
//! Secret named by `credentialName` (buildGatewayListenerTLSContext in
//! pilot/pkg/networking/core/gateway.go, and pilot/pkg/networking/util/tls for the modes).
//! Trellis reads the files (relative paths against the proxy config's directory are the
//! caller's business: the paths are used as given), or, for `credentialName`, the Secret of
//! that name in the gateway's namespace among the YAML it reads (`crate::istio::secret`).
//! `TCP` servers and `TLS` servers (`PASSTHROUGH`, `AUTO_PASSTHROUGH`, or a terminating mode
//! then TCP) are served at L4 (`super::l4`, `super::auto_passthrough`).
//!
//! The modes, as pilot's `BuildListenerTLSContext` (pilot/pkg/networking/core/listener.go) sets
//! Envoy's `DownstreamTlsContext` for each server (servers of one port may differ in mode:
//! `super::sharing`):
//!
//! - `SIMPLE`: the files' certificate, no client certificate asked;
//! - `MUTUAL`: and a client certificate chaining to `caCertificates` is required;
//! - `OPTIONAL_MUTUAL`: the same validation context with `require_client_certificate: false`:
//!   a client without a certificate is served, a presented one must verify; for both,
//!   `verifyCertificateSpki`/`verifyCertificateHash` pin the certificates accepted (`pins`);
//! - `ISTIO_MUTUAL`: the proxy's own workload certificate (SDS `default`) and the mesh's roots
//!   (`ROOTCA`), the client's certificate required; `subjectAltNames` restrict the client ids.
//!   istiod's validation refuses the file fields on such a server
//!   (validateTLSOptions in pkg/config/validation/validation.go), and so does Trellis; a proxy
//!   without an identity cannot serve it, and says so naming the Gateway.

use std::sync::Arc;

use trellis_engine::transport::policy::{
    ClientCertificates, Plaintext, ServerCertificate, TerminatedTls,
};
use trellis_engine::transport::tls::pin::CertificatePins;

use crate::diag::Diagnostic;
use crate::istio::gateway::{Server, ServerTls};
use crate::istio::secret::Credentials;

/// How a terminating server treats clients (its `tls.mode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Termination {
    /// `SIMPLE`.
    Simple,
    /// `MUTUAL`.
    Mutual,
    /// `OPTIONAL_MUTUAL`.
    OptionalMutual,
    /// `ISTIO_MUTUAL`, with the server's `subjectAltNames` (empty: any mesh identity).
    IstioMutual { subject_alt_names: Vec<String> },
}

impl Termination {
    /// What the engine asks of clients.
    pub fn clients(&self) -> ClientCertificates {
        match self {
            Termination::Simple => ClientCertificates::NotRequested,
            Termination::Mutual => ClientCertificates::Required,
            Termination::OptionalMutual => ClientCertificates::Optional,
            Termination::IstioMutual { .. } => ClientCertificates::Mesh,
        }
    }

    /// Whether `caCertificates` are read.
    fn verifies_with_files(&self) -> bool {
        matches!(self, Termination::Mutual | Termination::OptionalMutual)
    }
}

/// How one server is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMode {
    /// Plain-text HTTP.
    Http,
    /// TLS terminated here, then HTTP.
    Https(Termination),
    /// Opaque TCP (a `TCP`, `MONGO`, `MYSQL` or `REDIS` server without `tls`): `tcp` routes.
    Tcp,
    /// TLS terminated here, then `tcp` routes (a `TLS` or TCP server with a terminating mode).
    TlsTcp(Termination),
    /// `PASSTHROUGH`: routed by the ClientHello's SNI with `tls` routes, never terminated.
    Passthrough,
    /// `AUTO_PASSTHROUGH`: the SNI `outbound_.<port>_.<subset>_.<host>` names the cluster, no
    /// VirtualService needed, never terminated (east-west gateways).
    AutoPassthrough,
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
    let termination = match tls_mode.as_deref() {
        Some("SIMPLE") => Some(Termination::Simple),
        Some("MUTUAL") => Some(Termination::Mutual),
        Some("OPTIONAL_MUTUAL") => Some(Termination::OptionalMutual),
        Some("ISTIO_MUTUAL") => Some(Termination::IstioMutual {
            subject_alt_names: server
                .tls
                .as_ref()
                .map(|t| t.subject_alt_names.clone())
                .unwrap_or_default(),
        }),
        _ => None,
    };
    match (protocol.as_str(), tls_mode.as_deref(), termination) {
        (_, _, Some(t)) if http || protocol == "HTTPS" => ServerMode::Https(t),
        // createGatewayTCPFilterChainOpts: a non-passthrough TLS server terminates, then TCP.
        (_, _, Some(t)) if tcp || protocol == "TLS" => ServerMode::TlsTcp(t),
        ("TLS" | "HTTPS", Some("PASSTHROUGH"), _) => ServerMode::Passthrough,
        // gateway.IsPassThroughServer: AUTO_PASSTHROUGH is a passthrough server too.
        ("TLS" | "HTTPS", Some("AUTO_PASSTHROUGH"), _) => ServerMode::AutoPassthrough,
        ("TLS", None, _) => ServerMode::Refused(
            "a TLS server needs tls.mode (PASSTHROUGH, AUTO_PASSTHROUGH, SIMPLE, MUTUAL, \
             OPTIONAL_MUTUAL or ISTIO_MUTUAL)"
                .into(),
        ),
        _ if tcp && tls_mode.is_none() => ServerMode::Tcp,
        ("HTTPS", None, _) => ServerMode::Refused(
            "an HTTPS server needs tls.mode (SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL)"
                .into(),
        ),
        (_, Some(m @ ("PASSTHROUGH" | "AUTO_PASSTHROUGH")), _) => ServerMode::Refused(format!(
            "tls.mode {m} needs protocol TLS or HTTPS, not {protocol:?}"
        )),
        (_, Some(m), _) if !http => {
            ServerMode::Refused(format!("tls.mode {m} on protocol {protocol:?}"))
        }
        (_, Some(m), _) => ServerMode::Refused(format!("unknown tls.mode {m}")),
        _ if http => ServerMode::Http,
        _ => ServerMode::Refused(format!(
            "protocol {protocol:?} is not served by Trellis's gateway (HTTP, HTTPS, TCP and TLS only)"
        )),
    }
}

/// The certificate of a terminating `server`, its files (or its `credentialName` Secret) read;
/// `Err` says why it cannot be served. `has_identity`: the gateway proxy holds a mesh identity
/// (for `ISTIO_MUTUAL`); `credentials`: the Secrets of the gateway's namespace.
pub fn certificate(
    server: &Server,
    termination: &Termination,
    has_identity: bool,
    credentials: Credentials<'_>,
) -> Result<ServerCertificate, String> {
    let plaintext = match mode(server) {
        ServerMode::TlsTcp(_) => Plaintext::Tcp,
        _ => Plaintext::Http,
    };
    let read = read_certificate(server, termination, has_identity, credentials)?;
    Ok(ServerCertificate { plaintext, ..read })
}

fn read_certificate(
    server: &Server,
    termination: &Termination,
    has_identity: bool,
    credentials: Credentials<'_>,
) -> Result<ServerCertificate, String> {
    let tls: &ServerTls = server
        .tls
        .as_ref()
        .ok_or_else(|| "a TLS-terminating server needs a tls section".to_string())?;
    let hosts = server
        .hosts
        .iter()
        .map(|h| {
            h.rsplit_once('/')
                .map_or(h.as_str(), |(_, h)| h)
                .to_string()
        })
        .collect();
    if let Termination::IstioMutual { .. } = termination {
        return istio_mutual(tls, hosts, has_identity);
    }
    let named = |v: &Option<String>| v.clone().filter(|n| !n.is_empty());
    let credential = match (named(&tls.credential_name), tls.credential_names.as_slice()) {
        (Some(name), _) => Some(name),
        (None, [one]) => Some(one.clone()),
        (None, []) => None,
        (None, _) => {
            return Err(
                "tls.credentialNames with several Secrets (an RSA and an ECDSA \
                        certificate) is not supported: name one"
                    .into(),
            )
        }
    };
    if let Some(name) = credential {
        return from_secret(tls, termination, hosts, &name, credentials);
    }
    let read = |field: &str, path: &Option<String>| -> Result<String, String> {
        let path = path
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("tls.{field} is required"))?;
        std::fs::read_to_string(path).map_err(|e| format!("tls.{field} {path:?}: {e}"))
    };
    Ok(ServerCertificate {
        hosts,
        chain_pem: read("serverCertificate", &tls.server_certificate)?,
        key_pem: read("privateKey", &tls.private_key)?,
        client_ca_pem: if termination.verifies_with_files() {
            Some(read("caCertificates", &tls.ca_certificates)?)
        } else {
            None
        },
        // Only a server that validates clients matches their SANs (pilot passes them to the
        // validation context of MUTUAL and OPTIONAL_MUTUAL servers only).
        subject_alt_names: if termination.verifies_with_files() {
            tls.subject_alt_names.clone()
        } else {
            Vec::new()
        },
        // Set by the translator once the server's route table is built.
        route_table: None,
        clients: termination.clients(),
        pins: pins(tls, termination)?,
        plaintext: Plaintext::Http,
    })
}

/// A server whose certificate is the Secret `name` of the gateway's namespace (pilot's SDS
/// `kubernetes://<name>`); for MUTUAL and OPTIONAL_MUTUAL the clients' CA is
/// `caCertCredentialName`'s, else `<name>-cacert`'s, else the Secret's own
/// (`ApplyCredentialSDSToServerCommonTLSContext` and `GetCaCert` in pilot).
fn from_secret(
    tls: &ServerTls,
    termination: &Termination,
    hosts: Vec<String>,
    name: &str,
    credentials: Credentials<'_>,
) -> Result<ServerCertificate, String> {
    let refused = |e: String| format!("tls.credentialName {name:?}: {e}");
    let info = credentials.cert_info(name).map_err(refused)?;
    let client_ca_pem = if termination.verifies_with_files() {
        let ca_name = tls
            .ca_cert_credential_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(name);
        Some(credentials.ca_cert(ca_name).map_err(refused)?)
    } else {
        None
    };
    Ok(ServerCertificate {
        hosts,
        chain_pem: info.chain_pem,
        key_pem: info.key_pem,
        client_ca_pem,
        subject_alt_names: if termination.verifies_with_files() {
            tls.subject_alt_names.clone()
        } else {
            Vec::new()
        },
        route_table: None,
        clients: termination.clients(),
        pins: pins(tls, termination)?,
        plaintext: Plaintext::Http,
    })
}

/// An `ISTIO_MUTUAL` server: no files of its own (istiod's validation refuses them), the
/// proxy's identity presented.
fn istio_mutual(
    tls: &ServerTls,
    hosts: Vec<String>,
    has_identity: bool,
) -> Result<ServerCertificate, String> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    let own = [
        ("serverCertificate", set(&tls.server_certificate)),
        ("privateKey", set(&tls.private_key)),
        ("caCertificates", set(&tls.ca_certificates)),
        ("tlsCertificates", !tls.tls_certificates.is_empty()),
        ("credentialName", set(&tls.credential_name)),
        ("credentialNames", !tls.credential_names.is_empty()),
    ];
    if let Some((field, _)) = own.iter().find(|(_, given)| *given) {
        return Err(format!(
            "ISTIO_MUTUAL TLS cannot have tls.{field}: it presents the gateway's mesh certificate"
        ));
    }
    if !has_identity {
        return Err(
            "tls.mode ISTIO_MUTUAL presents the gateway proxy's own mesh certificate, and this proxy has none: give it an `identity:` (certChain, key, rootCert)".into(),
        );
    }
    Ok(ServerCertificate {
        hosts,
        chain_pem: String::new(),
        key_pem: String::new(),
        client_ca_pem: None,
        subject_alt_names: tls.subject_alt_names.clone(),
        route_table: None,
        clients: ClientCertificates::Mesh,
        pins: CertificatePins::default(),
        plaintext: Plaintext::Http,
    })
}

/// A `MUTUAL` or `OPTIONAL_MUTUAL` server's `verifyCertificateSpki` and
/// `verifyCertificateHash`, decoded as Envoy loads them; a pin that does not decode refuses the
/// server, as Envoy refuses the listener ("Invalid base64-encoded SHA-256"). pilot copies the
/// lists into the validation context of a `credentialName` server
/// (ApplyCredentialSDSToServerCommonTLSContext in pilot/pkg/security/model/authentication.go);
/// its path for mounted files (ApplyToCommonTLSContext) drops them, which would let in a
/// client the author pinned out, so Trellis enforces them for both sources. Other modes ask
/// for no certificate to pin ([`ignored_pins`]).
fn pins(tls: &ServerTls, termination: &Termination) -> Result<CertificatePins, String> {
    if !termination.verifies_with_files() {
        return Ok(CertificatePins::default());
    }
    CertificatePins::parse(&tls.verify_certificate_spki, &tls.verify_certificate_hash)
        .map_err(|e| format!("tls.{e}"))
}

/// A warning when `server` sets pins its mode never checks (`SIMPLE` asks for no client
/// certificate; `ISTIO_MUTUAL`'s validation context, from ApplyToCommonTLSContext, has none).
pub fn ignored_pins(server: &Server, termination: &Termination) -> Option<String> {
    let tls = server.tls.as_ref()?;
    let given = !tls.verify_certificate_spki.is_empty() || !tls.verify_certificate_hash.is_empty();
    (given && !termination.verifies_with_files()).then(|| {
        "tls.verifyCertificateSpki/verifyCertificateHash are checked only by MUTUAL and \
         OPTIONAL_MUTUAL servers (pilot sets them on no other mode's validation context); \
         ignored here"
            .to_string()
    })
}

/// The termination of a port from its servers' certificates and the hosts of its
/// `PASSTHROUGH` servers (`super::mixed`); `None` when it has no certificate, or when `mode`
/// does not terminate.
pub fn termination(
    mode: &ServerMode,
    certificates: Vec<ServerCertificate>,
    passthrough: Vec<Vec<String>>,
) -> Option<Arc<TerminatedTls>> {
    // Each certificate carries its own server's client requirement: the port's servers may
    // differ in mode (`super::sharing`).
    let (ServerMode::Https(_) | ServerMode::TlsTcp(_)) = mode else {
        return None;
    };
    (!certificates.is_empty()).then(|| {
        Arc::new(TerminatedTls {
            servers: certificates,
            passthrough,
        })
    })
}

/// Reported against a server that is left out.
pub fn refused(label: &str, number: u16, why: &str) -> Diagnostic {
    Diagnostic::error(format!(
        "{label} on port {number}: {why}; not served (never as plain text)"
    ))
}
