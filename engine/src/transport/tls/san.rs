//! A gateway server's `subjectAltNames`: which client certificates a `MUTUAL` or
//! `OPTIONAL_MUTUAL` server accepts beyond the chain to its `caCertificates`.
//!
//! pilot turns `ServerTLSSettings.subjectAltNames` into Envoy's `match_subject_alt_names`, one
//! exact `StringMatcher` per name (`ApplyToCommonTLSContext` and
//! `ApplyCredentialSDSToServerCommonTLSContext` in pilot/pkg/security/model/authentication.go,
//! with `util.StringToExactMatch`). Envoy's default validator then accepts a certificate when
//! any of its SANs of type DNS, URI, email or IP matches any of the names
//! (`DefaultCertValidator::matchSubjectAltName`, with the backwards-compatible SAN matchers of
//! source/common/tls/cert_validator/san_matcher.cc): URI, email and IP by string equality (an
//! IP SAN in its printed form), and a DNS SAN with DNS semantics, `Utility::dnsNameMatch`
//! (source/common/tls/utility.cc), so a certificate for `*.example.com` satisfies the name
//! `api.example.com`.
//!
//! The check runs inside the handshake, after the chain (a [`SanClientVerifier`] wraps the
//! chain verifier), so a refused client gets the TLS alert, as from Envoy, and the log line
//! names the names expected and the names presented.

use std::net::IpAddr;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::verify::PeerRefusal;

/// Envoy's `Utility::dnsNameMatch(dns_name, pattern)`: `pattern` is the certificate's DNS SAN,
/// which may carry one `*` in its left-most label (not an A-label, `xn--`); case-insensitive.
pub fn dns_name_match(dns_name: &str, pattern: &str) -> bool {
    let dns_name = dns_name.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    if dns_name == pattern {
        return true;
    }
    let (Some((pattern_label, pattern_rest)), Some((name_label, name_rest))) =
        (pattern.split_once('.'), dns_name.split_once('.'))
    else {
        // Both need more than one label.
        return false;
    };
    pattern_label.contains('*')
        && !pattern_rest.contains('*')
        && !pattern_label.starts_with("xn--")
        && name_rest == pattern_rest
        && label_wildcard_match(name_label, pattern_label)
}

/// Envoy's `Utility::labelWildcardMatch`: `*` alone matches any label; one `*` inside a label
/// matches what lies between its prefix and suffix (possibly nothing); two or more never match.
fn label_wildcard_match(label: &str, pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern.matches('*').count() != 1 {
        return false;
    }
    let Some((prefix, suffix)) = pattern.split_once('*') else {
        return false;
    };
    pattern.len() <= label.len() + 1 && label.starts_with(prefix) && label.ends_with(suffix)
}

/// A SAN of a certificate, as Envoy prints it for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Uri(String),
    Email(String),
    Ip(String),
}

impl San {
    /// Whether the exact name `expected` matches this SAN.
    fn matches(&self, expected: &str) -> bool {
        match self {
            San::Dns(pattern) => dns_name_match(expected, pattern),
            San::Uri(s) | San::Email(s) | San::Ip(s) => s == expected,
        }
    }

    fn text(&self) -> &str {
        match self {
            San::Dns(s) | San::Uri(s) | San::Email(s) | San::Ip(s) => s,
        }
    }
}

/// The DNS, URI, email and IP SANs of a DER certificate (none when it does not parse: the
/// chain check, which runs first, has refused such a certificate already).
pub fn sans_of(certificate: &CertificateDer<'_>) -> Vec<San> {
    let Ok((_, cert)) = X509Certificate::from_der(certificate.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(s) => Some(San::Dns((*s).to_string())),
            GeneralName::URI(s) => Some(San::Uri((*s).to_string())),
            GeneralName::RFC822Name(s) => Some(San::Email((*s).to_string())),
            GeneralName::IPAddress(bytes) => ip_text(bytes).map(San::Ip),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip: IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => <[u8; 16]>::try_from(bytes).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// `Ok` when one of the certificate's SANs matches one of `expected` (which is not empty).
pub fn check(end_entity: &CertificateDer<'_>, expected: &[String]) -> Result<(), PeerRefusal> {
    debug_assert!(!expected.is_empty(), "no names: nothing to check");
    let sans = sans_of(end_entity);
    if sans
        .iter()
        .any(|san| expected.iter().any(|e| san.matches(e)))
    {
        return Ok(());
    }
    Err(PeerRefusal::UnexpectedSubjectAltNames {
        presented: sans.iter().map(|s| s.text().to_string()).collect(),
        expected: expected.to_vec(),
    })
}

/// A server's `subjectAltNames`: one of them must be among a presented certificate's SANs.
#[derive(Debug)]
pub struct ExpectedSans(pub Vec<String>);

impl super::checked::EndEntityCheck for ExpectedSans {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), PeerRefusal> {
        check(end_entity, &self.0)
    }
}

/// The chain (webpki against the server's `caCertificates`), then the `subjectAltNames`.
pub type SanClientVerifier = super::checked::CheckedClientVerifier<ExpectedSans>;

#[cfg(test)]
mod tests {
    use super::*;

    /// `dnsNameMatch`'s rules (source/common/tls/utility.cc): the dns name first, the
    /// certificate's pattern second.
    #[test]
    fn dns_names_match_as_envoy_does() {
        assert!(dns_name_match("lyft.com", "lyft.com"));
        assert!(dns_name_match("a.lyft.com", "*.lyft.com"));
        assert!(dns_name_match("a.LYFT.com", "*.lyft.COM"));
        assert!(!dns_name_match("a.b.lyft.com", "*.lyft.com"));
        assert!(!dns_name_match("foo.test.com", "*.lyft.com"));
        assert!(!dns_name_match("lyft.com", "*.lyft.com"));
        assert!(!dns_name_match("alyft.com", "*.lyft.com"));
        // A wildcard inside the label may match nothing: `*lyft` covers `lyft`.
        assert!(dns_name_match("alyft.com", "*lyft.com"));
        assert!(dns_name_match("lyft.com", "*lyft.com"));
        assert!(!dns_name_match("", "*lyft.com"));
        assert!(!dns_name_match("lyft.com", ""));
        assert!(dns_name_match("foo.lyft.com", "foo*.lyft.com"));
        assert!(dns_name_match("foobar.lyft.com", "foo*.lyft.com"));
        assert!(dns_name_match("afoo.lyft.com", "*foo.lyft.com"));
        assert!(dns_name_match("a-foo.lyft.com", "a*foo.lyft.com"));
        assert!(!dns_name_match("xn--foo.lyft.com", "xn--*.lyft.com"));
        assert!(!dns_name_match("foo.lyft.com", "*.*.com"));
        assert!(!dns_name_match("foo.lyft.com", "f**.lyft.com"));
    }

    #[test]
    fn label_wildcards_need_room_for_prefix_and_suffix() {
        assert!(label_wildcard_match("abc", "a*c"));
        assert!(label_wildcard_match("ac", "a*c"));
        assert!(!label_wildcard_match("c", "a*c"));
        assert!(!label_wildcard_match("abc", "a**"));
    }

    #[test]
    fn san_kinds_match_by_their_own_rule() {
        assert!(San::Dns("*.example.com".into()).matches("api.example.com"));
        assert!(!San::Uri("spiffe://td/ns/a/sa/b".into()).matches("spiffe://td/ns/a/sa/c"));
        assert!(San::Uri("spiffe://td/ns/a/sa/b".into()).matches("spiffe://td/ns/a/sa/b"));
        assert!(San::Ip("10.0.0.1".into()).matches("10.0.0.1"));
        assert_eq!(ip_text(&[0u8; 16]).as_deref(), Some("::"));
        assert_eq!(ip_text(&[10, 0, 0, 1]).as_deref(), Some("10.0.0.1"));
        assert_eq!(ip_text(&[1, 2, 3]), None);
    }
}
