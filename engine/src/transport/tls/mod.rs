//! Mutual TLS inside the engine: rustls driven with bytes only, mesh identity checks, and
//! a deterministic crypto provider for the simulator.
//!
//! - [`transform`]: one TLS connection as a [`crate::transport::ByteTransform`].
//! - [`factory`]: [`MtlsTransports`], the factory that makes a server transform for every
//!   accepted connection and a client transform for every opened one, from the workload's
//!   [`MeshCredentials`].
//! - [`verify`]: peer verification (webpki chain at engine time, then the SPIFFE id: trust
//!   domain and expected identities), each refusal naming its check.
//! - [`spiffe`]: SPIFFE ids, read from a certificate's URI SAN.
//! - [`clock`]: engine time as rustls's `TimeProvider`.
//! - [`seeded`]: randomness and key exchange from a seed, so simulated handshakes replay.
//! - [`termination`] and [`accept`]: a gateway's TLS, one filter chain per Gateway server,
//!   chosen by the ClientHello's SNI; [`san`]: the servers' `subjectAltNames`; [`pin`]: their
//!   `verifyCertificateSpki` and `verifyCertificateHash`.
//! - [`xfcc`]: the `x-forwarded-client-cert` element an inbound sidecar gives its workload.
//!
//! TLS 1.3 only, no session tickets or resumption (rustls's ticketer reads the wall clock, and
//! sidecars keep their connections), no SNI (peers are named by SPIFFE id, not host name).

pub mod accept;
pub mod checked;
pub mod clock;
pub mod factory;
pub mod pin;
pub mod san;
pub mod seeded;
pub mod spiffe;
pub mod termination;
pub mod transform;
pub mod verify;
pub mod xfcc;

#[cfg(test)]
mod gateway_tests;
#[cfg(any(test, feature = "test-pki"))]
pub mod testca;
#[cfg(test)]
mod tests;

pub use factory::{MeshCredentials, MtlsSettings, MtlsTransports, Randomness};
pub use spiffe::SpiffeId;
pub use transform::TlsTransform;
pub use verify::PeerRefusal;

/// The ALPN id a sidecar offers to another sidecar: HTTP/1.1 inside a mesh hop. Like Istio's
/// `istio-http/1.1`, one negotiated value says both that the peer is a sidecar (so an inbound
/// sidecar can tell mesh traffic from a plain TLS client such as curl) and which protocol runs
/// inside; HTTP/2 will add `trellis-h2`.
pub const MESH_HTTP1: &[u8] = b"trellis-http/1.1";

/// Istio's in-mesh ALPN id (pilot's `ALPNInMesh`): Envoy sidecars offer it, AUTO_PASSTHROUGH
/// gateway chains and Istio's inbound chains match on it.
pub const ISTIO: &[u8] = b"istio";

/// Plain HTTP/1.1, for TLS clients that are not sidecars.
pub const HTTP1: &[u8] = b"http/1.1";

/// HTTP/2, offered by chains that relay their plaintext (a gateway's TLS-terminated TCP
/// servers), whatever the client then speaks.
pub const H2: &[u8] = b"h2";
