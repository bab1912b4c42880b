//! SPIFFE identities: `spiffe://<trust-domain>/<path>`, read from a certificate's URI SAN.
//!
//! A mesh certificate (an X.509 SVID) names its workload in exactly one URI SAN; Istio's form is
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`. The chain check (webpki)
//! proves the CA issued the certificate; this module reads who it was issued to, which webpki
//! does not expose, with x509-parser.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A parsed SPIFFE id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: String,
    /// Length of `spiffe://<trust-domain>`.
    domain_end: usize,
}

const SCHEME: &str = "spiffe://";

/// Why a string or a certificate does not name a SPIFFE identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    #[error("{0:?} is not a spiffe:// URI with a trust domain and a path")]
    Malformed(String),
    #[error("the certificate cannot be parsed: {0}")]
    BadCertificate(String),
    #[error("the certificate has no spiffe:// URI SAN (subject {subject})")]
    NoSpiffeSan { subject: String },
    #[error("the certificate has {count} spiffe:// URI SANs; an SVID has exactly one")]
    SeveralSpiffeSans { count: usize },
}

impl SpiffeId {
    /// Parse `spiffe://<trust-domain>/<path>`: the trust domain is lower-case letters, digits,
    /// `.`, `-` and `_`; the path is not empty and has no empty, `.` or `..` segment.
    pub fn parse(uri: &str) -> Result<SpiffeId, SpiffeError> {
        let malformed = || SpiffeError::Malformed(uri.to_string());
        let rest = uri.strip_prefix(SCHEME).ok_or_else(malformed)?;
        let (domain, path) = rest.split_once('/').ok_or_else(malformed)?;
        let domain_ok = !domain.is_empty()
            && domain.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            });
        let path_ok = path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && !uri.contains(['?', '#']);
        if !domain_ok || !path_ok {
            return Err(malformed());
        }
        Ok(SpiffeId {
            uri: uri.to_string(),
            domain_end: SCHEME.len() + domain.len(),
        })
    }

    /// The trust domain, without the scheme.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.domain_end]
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// Read the one SPIFFE id of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Result<SpiffeId, SpiffeError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| SpiffeError::BadCertificate(e.to_string()))?;
        let mut found = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with(SCHEME) {
                        found.push(*uri);
                    }
                }
            }
        }
        match found.as_slice() {
            [one] => SpiffeId::parse(one),
            [] => Err(SpiffeError::NoSpiffeSan {
                subject: match cert.subject().to_string() {
                    s if s.is_empty() => "empty".to_string(),
                    s => format!("{s:?}"),
                },
            }),
            many => Err(SpiffeError::SeveralSpiffeSans { count: many.len() }),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_ids_parse_and_name_their_trust_domain() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/reviews").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/default/sa/reviews");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "http://cluster.local/ns/a",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe:///ns/a",
            "spiffe://Cluster.local/ns/a",
            "spiffe://td/ns//sa",
            "spiffe://td/ns/../sa",
            "spiffe://td/ns/a?x=1",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
    }
}
