//! The mesh's certificate authority: workload identities, certificates and the trust bundle.
//!
//! Istio's istiod CA, in its two usual shapes: a self-signed root of its own, or an
//! intermediate under an organisation's root given as files (the "plug-in CA": `ca-cert.pem`,
//! `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`). It issues short-lived workload certificates
//! (24 h by default) from CSRs, each naming one SPIFFE identity
//! (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`) that the CA chooses from who asked; says when a
//! certificate is due for renewal (half its life); and keeps the trust bundle through a root
//! rotation, with an overlap during which both roots are trusted.
//!
//! Built with rcgen (writing certificates) and x509-parser (reading the plug-in files), and
//! sans-IO like the rest: no clock, no files read here; time and PEM text are passed in.
//!
//! - [`authority`]: [`CertificateAuthority`], issuing.
//! - [`identity`]: [`WorkloadIdentity`] and its SPIFFE URI.
//! - [`rotation`]: renewal time and [`TrustBundle`].
//! - [`rotating`]: [`RotatingCa`], which CA signs what through a root rotation.
//! - [`serving`]: DNS serving certificates for the control plane's webhook.
//! - [`bootstrap`]: a new root and intermediate, and workload files, for `trellis ca`.

pub mod authority;
pub mod bootstrap;
pub mod identity;
pub mod rotating;
pub mod rotation;
pub mod serving;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use authority::{
    CertificateAuthority, Issued, PluginFiles, DEFAULT_WORKLOAD_TTL, MAX_WORKLOAD_TTL,
};
pub use identity::WorkloadIdentity;
pub use rotating::RotatingCa;
pub use rotation::{renewal_due, TrustBundle};

/// Why the CA refused.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("bad identity: {0}")]
    BadIdentity(String),
    #[error("identity in trust domain {requested}, but this CA issues for {ca}")]
    WrongTrustDomain { requested: String, ca: String },
    #[error("bad CSR: {0}")]
    BadCsr(String),
    #[error("the CSR asks for {requested:?}, but the caller is {identity}")]
    CsrIdentityMismatch {
        requested: Vec<String>,
        identity: String,
    },
    #[error("requested TTL {ttl:?} is over the maximum {max:?}")]
    TtlTooLong { ttl: Duration, max: Duration },
    #[error("the CA's own certificate has expired")]
    CaExpired,
    #[error("plug-in CA file {0}")]
    PlugIn(String),
    #[error("the new root is already in the trust bundle")]
    RootAlreadyTrusted,
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}
