//! DestinationRule `trafficPolicy.tls` and auto mTLS → how a cluster's connections are
//! protected ([`UpstreamTls`]), as istiod decides it.
//!
//! pilot's `buildAutoMtlsSettings` (pilot/pkg/networking/core/cluster_tls.go):
//! - a rule that sets `tls` is used as written. `tls` with no `mode` is DISABLE (the enum's
//!   zero value). ISTIO_MUTUAL uses the sidecar's own certificate and expects the
//!   destination's identities (`subjectAltNames`, else any identity of the trust domain).
//!   SIMPLE and MUTUAL originate TLS with the files given: `caCertificates` (else the
//!   system's bundle), `clientCertificate` and `privateKey` for MUTUAL, `sni` (else the
//!   service host), `subjectAltNames`, `insecureSkipVerify`.
//! - no `tls`: auto mTLS. ISTIO_MUTUAL to every endpoint that runs a sidecar (the
//!   `security.istio.io/tlsMode: istio` label) and plaintext to the others, unless the
//!   destination namespace's PeerAuthentication is DISABLE
//!   (`BestEffortInferServiceMTLSMode`), which means plaintext.
//!
//! Files that cannot be read, or `credentialName` (a Kubernetes Secret Trellis cannot fetch
//! yet), make an origination that fails every connection with a clear reason, never one that
//! silently goes out in plaintext.

use std::sync::Arc;

use trellis_engine::config::{ClientCertificate, InboundMode, OriginationTls, UpstreamTls};

use super::peer_authn;
use super::workload::DEFAULT_TRUST_DOMAIN;
use crate::diag::Diagnostic;
use crate::istio::destination_rule::{ClientTlsSettings, TlsMode};
use crate::istio::ResourceSet;

/// The endpoint label Istio's injector puts on pods that run a sidecar.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Where the operating system keeps its trusted roots (Debian's bundle), used for SIMPLE
/// origination without `caCertificates`, as Envoy falls back to the system's roots.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What translation knows about the destination beside the rule.
pub struct Destination<'a> {
    pub host: &'a str,
    pub namespace: &'a str,
    /// The SPIFFE ids of the service's workloads (pilot's `push.ServiceAccounts`), in the
    /// default trust domain; what ISTIO_MUTUAL expects when the rule names no
    /// `subjectAltNames`. Empty: any identity of the trust domain.
    pub service_accounts: &'a [String],
}

/// The SPIFFE ids of the accounts `endpoints` run as, sorted and unique, in the default
/// trust domain (a proxy with another one rewrites them: [`in_trust_domain`]).
pub fn service_accounts(endpoints: &[super::ServiceEndpoint], namespace: &str) -> Vec<String> {
    let ids: std::collections::BTreeSet<String> = endpoints
        .iter()
        .filter_map(|e| e.service_account.as_deref())
        .map(|sa| format!("spiffe://{DEFAULT_TRUST_DOMAIN}/ns/{namespace}/sa/{sa}"))
        .collect();
    ids.into_iter().collect()
}

/// Move expected identities of the default trust domain into `trust_domain` (the proxy's
/// own), as pilot builds them with the mesh's trust domain.
pub fn in_trust_domain(config: &mut trellis_engine::config::Config, trust_domain: &str) {
    if trust_domain == DEFAULT_TRUST_DOMAIN {
        return;
    }
    let from = format!("spiffe://{DEFAULT_TRUST_DOMAIN}/");
    let to = format!("spiffe://{trust_domain}/");
    for c in &mut config.clusters {
        if let UpstreamTls::Auto { subject_alt_names }
        | UpstreamTls::IstioMutual {
            subject_alt_names, ..
        } = &mut c.tls
        {
            for san in subject_alt_names.iter_mut() {
                if let Some(rest) = san.strip_prefix(&from) {
                    *san = format!("{to}{rest}");
                }
            }
        }
    }
}

/// The cluster's TLS. `has_identity`: the proxy has a mesh certificate (without one, auto
/// mTLS cannot be offered and stays plaintext).
pub fn upstream_tls(
    tls: Option<&ClientTlsSettings>,
    destination: &Destination<'_>,
    resources: &ResourceSet,
    has_identity: bool,
    diags: &mut Vec<Diagnostic>,
) -> UpstreamTls {
    let Some(tls) = tls else {
        if !has_identity
            || peer_authn::service_mode(resources, destination.namespace) == InboundMode::Disable
        {
            return UpstreamTls::Disable;
        }
        return UpstreamTls::Auto {
            subject_alt_names: destination.service_accounts.to_vec(),
        };
    };
    match tls.mode.unwrap_or(TlsMode::DISABLE) {
        TlsMode::DISABLE => UpstreamTls::Disable,
        TlsMode::ISTIO_MUTUAL => {
            if !has_identity {
                diags.push(Diagnostic::error(format!(
                    "ISTIO_MUTUAL to {} needs the proxy's mesh identity (`identity:`); its \
                     connections will fail",
                    destination.host
                )));
            }
            // pilot: "Use Service Accounts if Subject Alt names are not specified".
            let subject_alt_names = if tls.subject_alt_names.is_empty() {
                destination.service_accounts.to_vec()
            } else {
                tls.subject_alt_names.clone()
            };
            // pilot: "Use client provided SNI if set. Otherwise, overwrite with the auto
            // generated SNI" (buildUpstreamTLSSettings): the engine's default is that one.
            let sni = sendable_sni(tls.sni.as_deref(), destination, "the generated", diags);
            UpstreamTls::IstioMutual {
                subject_alt_names,
                sni,
            }
        }
        mode @ (TlsMode::SIMPLE | TlsMode::MUTUAL) => {
            UpstreamTls::Origination(Arc::new(origination(tls, mode, destination, diags)))
        }
    }
}

fn origination(
    tls: &ClientTlsSettings,
    mode: TlsMode,
    destination: &Destination<'_>,
    diags: &mut Vec<Diagnostic>,
) -> OriginationTls {
    if tls.credential_name.is_some() {
        diags.push(Diagnostic::error(format!(
            "tls.credentialName (a Kubernetes Secret) is not supported yet; connections to {} \
             will fail. Give caCertificates/clientCertificate/privateKey as files",
            destination.host
        )));
    }
    let insecure = tls.insecure_skip_verify.unwrap_or(false);
    let ca_pem = match (&tls.ca_certificates, insecure) {
        (_, true) => None,
        (Some(path), false) => read_pem(path, "tls.caCertificates", diags),
        (None, false) => std::fs::read_to_string(SYSTEM_CA_BUNDLE).ok(),
    };
    let client_cert = if mode == TlsMode::MUTUAL {
        match (&tls.client_certificate, &tls.private_key) {
            (Some(cert), Some(key)) => {
                match (
                    read_pem(cert, "tls.clientCertificate", diags),
                    read_pem(key, "tls.privateKey", diags),
                ) {
                    (Some(chain_pem), Some(key_pem)) => {
                        Some(ClientCertificate { chain_pem, key_pem })
                    }
                    _ => None,
                }
            }
            _ => {
                diags.push(
                    Diagnostic::error(
                        "MUTUAL needs both clientCertificate and privateKey; connections will \
                         be made without a client certificate and refused by the server",
                    )
                    .field("tls"),
                );
                None
            }
        }
    } else {
        None
    };
    if tls.ca_crl.is_some() {
        diags.push(
            Diagnostic::warning("tls.caCrl is not supported yet; ignored").field("tls.caCrl"),
        );
    }
    OriginationTls {
        sni: sendable_sni(tls.sni.as_deref(), destination, "the host's", diags)
            .unwrap_or_else(|| destination.host.to_string()),
        subject_alt_names: tls.subject_alt_names.clone(),
        ca_pem,
        insecure_skip_verify: insecure,
        client_cert,
    }
}

/// `tls.sni` when a TLS client can send it: a DNS name. Envoy sends whatever string the rule
/// gives (pilot validates none); rustls sends only DNS names in a ClientHello (RFC 6066 §3: a
/// `HostName` is a DNS name, never an IP literal), so another value is reported and the name
/// used without `sni` (`fallback` says which) goes out instead, rather than failing every
/// connection or silently sending none.
fn sendable_sni(
    sni: Option<&str>,
    destination: &Destination<'_>,
    fallback: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let sni = sni.filter(|s| !s.is_empty())?;
    match rustls::pki_types::ServerName::try_from(sni) {
        Ok(rustls::pki_types::ServerName::DnsName(_)) => Some(sni.to_string()),
        _ => {
            diags.push(
                Diagnostic::warning(format!(
                    "tls.sni {sni:?} for {} is not a DNS name, which is all a TLS ClientHello                      can carry (RFC 6066); {fallback} SNI is sent instead",
                    destination.host
                ))
                .field("tls.sni"),
            );
            None
        }
    }
}

fn read_pem(path: &str, field: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Some(pem),
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("cannot read {path}: {e}; connections will fail"))
                    .field(field),
            );
            None
        }
    }
}

/// A proxy without a mesh identity cannot offer auto mTLS: those clusters stay plaintext
/// (an explicit ISTIO_MUTUAL is kept, and fails closed).
pub fn without_identity(config: &mut trellis_engine::config::Config) {
    auto_mtls_off(config);
}

/// MeshConfig `enableAutoMtls: false`: a cluster whose DestinationRule sets no `tls` is
/// plaintext (`buildUpstreamTLSSettings` in pilot/pkg/networking/core/cluster_tls.go returns
/// no TLS settings when `!autoMTLSEnabled`); a rule's explicit `tls` is kept.
pub fn auto_mtls_off(config: &mut trellis_engine::config::Config) {
    for c in &mut config.clusters {
        if matches!(c.tls, UpstreamTls::Auto { .. }) {
            c.tls = UpstreamTls::Disable;
        }
    }
}

/// Whether a registry endpoint runs a sidecar (auto mTLS dials it with ISTIO_MUTUAL).
pub fn endpoint_has_sidecar(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(TLS_MODE_LABEL).is_some_and(|v| v == "istio")
}

#[cfg(test)]
mod tests;
