//! A gateway server's certificate pins: `verifyCertificateSpki` and `verifyCertificateHash` of
//! Istio's `ServerTLSSettings`, enforced as Envoy's `CertificateValidationContext` enforces
//! `verify_certificate_spki` and `verify_certificate_hash`.
//!
//! pilot copies both lists into the default validation context of `MUTUAL` and
//! `OPTIONAL_MUTUAL` servers (`ApplyCredentialSDSToServerCommonTLSContext` in
//! pilot/pkg/security/model/authentication.go). Envoy decodes them when the context is built
//! (`DefaultCertValidator::initializeSslContexts` in
//! source/common/tls/cert_validator/default_validator.cc): an SPKI pin is the base64 of a
//! SHA-256 of the DER `SubjectPublicKeyInfo`, a certificate pin the hex of a SHA-256 of the DER
//! certificate, its colons removed when it is written as a 95-character fingerprint
//! (`AB:CD:…`); anything that does not decode to 32 bytes is a configuration error ("Invalid
//! hex-encoded SHA-256", "Invalid base64-encoded SHA-256"). Hex digits of either case decode
//! (`Hex::decode` parses each byte with base 16).
//!
//! At the handshake (`DefaultCertValidator::verifyCertificate`), after the chain and the
//! `subjectAltNames`: when either list is set, the leaf must match one pin of either list
//! (the two lists are alternatives), or it is refused. So the pins are ANDed with the chain and
//! the SAN check, and ORed with each other. [`PinnedClientVerifier`] runs the wrapped verifier
//! (chain, then SANs) first, so a refusal names the first check that failed, as Envoy's log
//! does ("verify cert failed: cert hash and spki").

use base64::Engine as _;
use ring::digest::{digest, SHA256};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::verify::PeerRefusal;

/// A SHA-256 digest.
pub type Sha256 = [u8; 32];

/// The decoded pins of one server; both empty: nothing is pinned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificatePins {
    /// `verifyCertificateSpki`: SHA-256 of the leaf's DER SubjectPublicKeyInfo.
    pub spki: Vec<Sha256>,
    /// `verifyCertificateHash`: SHA-256 of the leaf's DER encoding.
    pub hash: Vec<Sha256>,
}

/// A pin that Envoy would refuse to load.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("verifyCertificateSpki {0:?}: not a base64-encoded SHA-256 (32 bytes)")]
    Spki(String),
    #[error("verifyCertificateHash {0:?}: not a hex-encoded SHA-256 (64 hex digits, or 32 colon-separated pairs)")]
    Hash(String),
}

impl CertificatePins {
    /// Decode the two lists as Envoy does (see the module docs).
    pub fn parse(spki: &[String], hash: &[String]) -> Result<Self, PinError> {
        let spki = (spki.iter())
            .map(|s| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|_| PinError::Spki(s.clone()))?;
                Sha256::try_from(bytes.as_slice()).map_err(|_| PinError::Spki(s.clone()))
            })
            .collect::<Result<_, _>>()?;
        let hash = (hash.iter())
            .map(|h| decode_hex_sha256(h).ok_or_else(|| PinError::Hash(h.clone())))
            .collect::<Result<_, _>>()?;
        Ok(CertificatePins { spki, hash })
    }

    /// Whether nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.spki.is_empty() && self.hash.is_empty()
    }

    /// `Ok` when `end_entity` matches a pin of either list (`verifyCertificate`'s hash and
    /// SPKI step); the refusal carries what the certificate's digests are, so an operator
    /// can compare them with the configuration.
    pub fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), PeerRefusal> {
        debug_assert!(!self.is_empty(), "no pins: nothing to check");
        let hash = sha256(end_entity.as_ref());
        let spki = spki_of(end_entity).map(|s| sha256(&s));
        let by_hash = self.hash.contains(&hash);
        let by_spki = spki.is_some_and(|s| self.spki.contains(&s));
        if by_hash || by_spki {
            return Ok(());
        }
        Err(PeerRefusal::UnpinnedCertificate {
            spki: spki.map_or_else(
                || "(no public key)".to_string(),
                |s| base64::engine::general_purpose::STANDARD.encode(s),
            ),
            hash: hex(&hash),
            pinned_spki: self.spki.len(),
            pinned_hash: self.hash.len(),
        })
    }
}

/// Envoy's certificate-hash decoding: colons dropped from the 95-character fingerprint form,
/// then 64 hex digits of either case.
fn decode_hex_sha256(text: &str) -> Option<Sha256> {
    let digits: String = if text.len() == 95 {
        text.chars().filter(|&c| c != ':').collect()
    } else {
        text.to_string()
    };
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = digits.get(2 * i..2 * i + 2)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn sha256(bytes: &[u8]) -> Sha256 {
    let d = digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The DER SubjectPublicKeyInfo of a certificate (`None` when it does not parse: the chain
/// check, which runs first, has refused such a certificate already).
fn spki_of(certificate: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(certificate.as_ref()).ok()?;
    Some(cert.tbs_certificate.subject_pki.raw.to_vec())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl super::checked::EndEntityCheck for CertificatePins {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), PeerRefusal> {
        CertificatePins::check(self, end_entity)
    }
}

/// The chain (then the `subjectAltNames`), then the pins.
pub type PinnedClientVerifier = super::checked::CheckedClientVerifier<CertificatePins>;

#[cfg(test)]
mod tests {
    use super::*;

    const ZEROS_B64: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    /// `initializeSslContexts` (default_validator.cc): base64 of 32 bytes for SPKI; 64 hex
    /// digits of either case, or the 95-character colon fingerprint, for the hash; anything
    /// else is refused with the pin named.
    #[test]
    fn pins_decode_as_envoy_loads_them() {
        let hex64 = "0A".repeat(32);
        let colons = vec!["0a"; 32].join(":");
        assert_eq!(colons.len(), 95);
        let pins = CertificatePins::parse(&[ZEROS_B64.into()], &[hex64.clone(), colons.clone()])
            .expect("valid pins");
        assert_eq!(pins.spki, vec![[0u8; 32]]);
        assert_eq!(pins.hash, vec![[0x0a; 32], [0x0a; 32]]);

        let short = "AAAA".to_string();
        assert_eq!(
            CertificatePins::parse(std::slice::from_ref(&short), &[]),
            Err(PinError::Spki(short))
        );
        for bad in [
            "0a".repeat(31),
            "zz".repeat(32),
            // Colons are dropped only from the full fingerprint form.
            vec!["0a"; 31].join(":"),
            format!("{}:", "0a".repeat(32)),
        ] {
            assert_eq!(
                CertificatePins::parse(&[], std::slice::from_ref(&bad)),
                Err(PinError::Hash(bad.clone())),
                "{bad}"
            );
        }
    }
}
