//! Envoy's `x-forwarded-client-cert` element for a client certificate.
//!
//! Istio's inbound sidecar listener sets Envoy's `forward_client_cert_details: APPEND_FORWARD`
//! with `set_current_client_cert_details {subject, uri, dns}` (pilot,
//! `listener_inbound.go` `buildSidecarInboundHTTPOpts`). For an mTLS client Envoy then appends
//! one element to the header (`ConnectionManagerUtility::mutateXfccRequestHeader`):
//!
//! ```text
//! By=<each URI SAN of our certificate>;Hash=<hex SHA-256 of the peer's DER>;
//! Subject="<peer subject, RFC 2253>";URI=<each peer URI SAN>;DNS=<each peer DNS SAN>
//! ```
//!
//! `Subject` and `URI` appear even when empty (`Subject=""`, `URI=`). The element depends
//! only on the connection, so it is built once, when the handshake completes.
//!
//! A gateway's connection manager (pilot's `buildGatewayConnectionManager`, gateway.go) also
//! sets `cert: true`: the element then carries `Cert="<the peer's PEM, URL-encoded>"` after
//! `Hash`, encoded as Envoy's `urlEncodedPemEncodedPeerCertificate` does (newline, space,
//! `+`, `/` and `=` percent-encoded).

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid2abbrev, oid_registry};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

/// What a peer certificate names, parsed once at the handshake's end for both the XFCC element
/// and RBAC principals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerNames {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    /// The subject in RFC 2253 form.
    pub subject: String,
}

impl PeerNames {
    /// The names of `cert`; `None` when it does not parse.
    pub fn of(cert: &CertificateDer<'_>) -> Option<PeerNames> {
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
        let (uris, dns) = sans(&parsed);
        Some(PeerNames {
            uris,
            dns,
            subject: rfc2253(parsed.subject()),
        })
    }

    /// The names Envoy's RBAC `authenticated` matcher tries, in its order
    /// (`AuthenticatedMatcher::matches`, source/extensions/filters/common/rbac/matchers.cc):
    /// each URI SAN, each DNS SAN, then the subject.
    pub fn principals(&self) -> Vec<String> {
        let sans = self.uris.iter().chain(&self.dns);
        sans.chain(std::iter::once(&self.subject))
            .cloned()
            .collect()
    }
}

/// The XFCC element for a connection whose peer presented `peer` (named `names`; `None`: it
/// did not parse), where our own certificate's URI SANs are `local_uris`; `with_cert`: the
/// element carries the certificate itself.
pub fn client_cert_details(
    local_uris: &[String],
    peer: &CertificateDer<'_>,
    names: Option<&PeerNames>,
    with_cert: bool,
) -> String {
    let mut parts: Vec<String> = local_uris.iter().map(|u| format!("By={u}")).collect();
    let digest = ring::digest::digest(&ring::digest::SHA256, peer.as_ref());
    parts.push(format!("Hash={}", hex(digest.as_ref())));
    if with_cert {
        parts.push(format!("Cert=\"{}\"", url_encoded_pem(peer)));
    }
    let unparsed = PeerNames::default();
    let names = names.unwrap_or(&unparsed);
    parts.push(format!("Subject=\"{}\"", names.subject));
    if names.uris.is_empty() {
        parts.push("URI=".to_string());
    }
    parts.extend(names.uris.iter().map(|u| format!("URI={u}")));
    parts.extend(names.dns.iter().map(|d| format!("DNS={d}")));
    parts.join(";")
}

/// The URI SANs of a certificate given as DER (our own, for `By=`).
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    match X509Certificate::from_der(cert.as_ref()) {
        Ok((_, cert)) => sans(&cert).0,
        Err(_) => Vec::new(),
    }
}

fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    (uris, dns)
}

/// A distinguished name as OpenSSL's RFC 2253 form prints it (what Envoy shows): the last RDN
/// first, `,` between RDNs, `+` inside one.
fn rfc2253(name: &X509Name<'_>) -> String {
    let registry = oid_registry();
    let mut rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = oid2abbrev(attr.attr_type(), registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| attr.attr_type().to_id_string());
                    format!("{key}={}", escape(attr.as_str().unwrap_or("")))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

/// RFC 2253 §2.4 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.len() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The certificate as PEM (64 base64 characters a line, as OpenSSL's `PEM_write_bio_X509`
/// writes it), with Envoy's replacements: `\n` `%0A`, space `%20`, `+` `%2B`, `/` `%2F`,
/// `=` `%3D`.
fn url_encoded_pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() + pem.len() / 8);
    for c in pem.chars() {
        match c {
            '\n' => out.push_str("%0A"),
            ' ' => out.push_str("%20"),
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_hex() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }

    #[test]
    fn pem_is_url_encoded_as_envoy_does() {
        let der = CertificateDer::from(vec![0xfbu8; 60]);
        let encoded = url_encoded_pem(&der);
        assert!(encoded.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
        assert!(encoded.ends_with("%0A-----END%20CERTIFICATE-----%0A"));
        // 0xfb bytes encode to `+` and `/`; 60 bytes need `=`-free padding; all are escaped.
        assert!(!encoded.contains(['+', '/', '=', ' ', '\n']));
        assert!(encoded.contains("%2B") && encoded.contains("%2F"));
    }

    /// The names RBAC principals are matched against, in Envoy's order
    /// (`AuthenticatedMatcher::matches`): URI SANs, DNS SANs, then the RFC 2253 subject.
    #[test]
    fn principals_are_uris_then_dns_names_then_the_subject() {
        let key = super::super::testca::ed25519_key(7);
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client.gw.test");
        params.subject_alt_names = vec![
            rcgen::SanType::DnsName("client.gw.test".try_into().expect("a DNS name")),
            rcgen::SanType::URI("spiffe://td/ns/a/sa/b".try_into().expect("a URI")),
            rcgen::SanType::DnsName("alt.gw.test".try_into().expect("a DNS name")),
        ];
        let cert = params.self_signed(&key).expect("self-signed");
        let der = CertificateDer::from(cert.der().to_vec());
        assert_eq!(
            PeerNames::of(&der).expect("parses").principals(),
            [
                "spiffe://td/ns/a/sa/b",
                "client.gw.test",
                "alt.gw.test",
                "CN=client.gw.test"
            ]
        );
        assert_eq!(PeerNames::of(&CertificateDer::from(vec![1u8, 2, 3])), None);
    }
}
