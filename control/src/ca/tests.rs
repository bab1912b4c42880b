//! The CA: what it writes into a workload certificate, what it refuses, the plug-in CA, and a
//! real peer nobody here wrote (OpenSSL) verifying what it issued.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

const TD: &str = "cluster.local";

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const NOW: u64 = 1_700_000_000;
const TEN_YEARS: Duration = Duration::from_secs(3650 * 86_400);

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn root_ca() -> CertificateAuthority {
    CertificateAuthority::self_signed(TD, key(), t(NOW), TEN_YEARS).unwrap()
}

/// A CSR for `key`, asking for `uri` if given.
fn csr(key: &KeyPair, uri: Option<&str>) -> String {
    let mut params = CertificateParams::default();
    params.subject_alt_names = uri
        .map(|u| SanType::URI(u.try_into().unwrap()))
        .into_iter()
        .collect();
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn reviews() -> WorkloadIdentity {
    WorkloadIdentity::new(TD, "default", "reviews").unwrap()
}

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

fn uris(cert_der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_workload_certificate_names_its_spiffe_id_and_lasts_a_day() {
    let mut ca = root_ca();
    let k = key();
    let issued = ca
        .issue(&csr(&k, None), &reviews(), t(NOW + 10), None)
        .unwrap();
    let cert = der(&issued.cert_pem);
    assert_eq!(
        uris(&cert),
        ["spiffe://cluster.local/ns/default/sa/reviews"]
    );
    assert_eq!(
        issued.identity,
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
    assert!(!parsed.is_ca());
    assert_eq!(
        parsed.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&k)
    );
    assert_eq!(issued.not_after, t(NOW + 10 + 86_400));
    assert_eq!(issued.not_before, t(NOW + 10 - 60), "backdated a minute");
    assert_eq!(issued.renewal_due(), t(NOW + 10 - 60 + (86_400 + 60) / 2));
    assert_eq!(issued.chain_pem, issued.cert_pem, "a root CA adds nothing");
    // A CSR may also name the caller's own identity.
    let own = csr(&k, Some("spiffe://cluster.local/ns/default/sa/reviews"));
    ca.issue(&own, &reviews(), t(NOW), None).unwrap();
    let again = ca
        .issue(&csr(&k, None), &reviews(), t(NOW + 10), None)
        .unwrap();
    assert_ne!(der(&again.cert_pem), cert, "serial numbers differ");
}

#[test]
fn the_ca_refuses_what_it_must() {
    let mut ca = root_ca();
    let k = key();
    let other = csr(&k, Some("spiffe://cluster.local/ns/default/sa/admin"));
    let err = ca.issue(&other, &reviews(), t(NOW), None).unwrap_err();
    assert!(matches!(err, CaError::CsrIdentityMismatch { .. }), "{err}");
    let foreign = WorkloadIdentity::new("other.example", "default", "reviews").unwrap();
    let err = ca
        .issue(&csr(&k, None), &foreign, t(NOW), None)
        .unwrap_err();
    assert!(matches!(err, CaError::WrongTrustDomain { .. }), "{err}");
    let year = Some(Duration::from_secs(365 * 86_400));
    let err = ca
        .issue(&csr(&k, None), &reviews(), t(NOW), year)
        .unwrap_err();
    assert!(matches!(err, CaError::TtlTooLong { .. }), "{err}");
    let err = ca.issue("not a CSR", &reviews(), t(NOW), None).unwrap_err();
    assert!(matches!(err, CaError::BadCsr(_)), "{err}");
    let late = t(NOW) + TEN_YEARS;
    let err = ca
        .issue(&csr(&k, None), &reviews(), late, None)
        .unwrap_err();
    assert!(matches!(err, CaError::CaExpired), "{err}");
    // Near its end the CA still issues, but nothing outlives it.
    let near_end = late - Duration::from_secs(3600);
    let issued = ca
        .issue(&csr(&k, None), &reviews(), near_end, None)
        .unwrap();
    assert_eq!(issued.not_after, late);
}

#[test]
fn a_plug_in_intermediate_issues_under_the_given_root() {
    let mut root = root_ca();
    let files = root
        .intermediate_files(key(), t(NOW), TEN_YEARS / 2)
        .unwrap();
    let mut ca = CertificateAuthority::plug_in(TD, &files).unwrap();
    assert_eq!(ca.root_pem(), root.root_pem());
    let issued = ca
        .issue(&csr(&key(), None), &reviews(), t(NOW), None)
        .unwrap();
    assert_eq!(
        issued.chain_pem,
        format!("{}{}", issued.cert_pem, files.ca_cert)
    );
    // A key that is not ca-cert.pem's.
    let mut wrong_key = files.clone();
    wrong_key.ca_key = key().serialize_pem();
    let err = CertificateAuthority::plug_in(TD, &wrong_key).err().unwrap();
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
    // A chain that does not lead to the given root.
    let mut wrong_root = files.clone();
    wrong_root.root_cert = root_ca().root_pem().to_string();
    let err = CertificateAuthority::plug_in(TD, &wrong_root)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not issued by the root"), "{err}");
    // A workload certificate is not a CA.
    let mut not_ca = files.clone();
    not_ca.ca_cert = issued.cert_pem.clone();
    let err = CertificateAuthority::plug_in(TD, &not_ca).err().unwrap();
    assert!(err.to_string().contains("not a CA"), "{err}");
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trellis-ca-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run openssl; a missing binary fails the test, loudly.
fn openssl(dir: &PathBuf, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed for this test (apt-get install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_verifies_what_the_ca_issued_and_reads_the_spiffe_san() {
    let dir = scratch("verify");
    let mut root = root_ca();
    let files = root
        .intermediate_files(key(), t(NOW), TEN_YEARS / 2)
        .unwrap();
    let mut ca = CertificateAuthority::plug_in(TD, &files).unwrap();
    // Issued now, by the real clock, so that openssl's own clock finds it valid.
    let now = SystemTime::now();
    let issued = ca.issue(&csr(&key(), None), &reviews(), now, None).unwrap();
    std::fs::write(dir.join("root.pem"), root.root_pem()).unwrap();
    std::fs::write(dir.join("chain.pem"), &issued.chain_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &issued.cert_pem).unwrap();
    for purpose in ["sslserver", "sslclient"] {
        let (ok, text) = openssl(
            &dir,
            &[
                "verify",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "chain.pem",
                "-purpose",
                purpose,
                "cert.pem",
            ],
        );
        assert!(ok && text.contains("cert.pem: OK"), "{purpose}: {text}");
    }
    // Without the intermediate the chain is broken; after notAfter it is expired.
    let (ok, text) = openssl(&dir, &["verify", "-CAfile", "root.pem", "cert.pem"]);
    assert!(!ok, "{text}");
    let after = issued
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let (ok, text) = openssl(
        &dir,
        &[
            "verify",
            "-attime",
            &after.to_string(),
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "cert.pem",
        ],
    );
    assert!(!ok && text.contains("expired"), "{text}");
    let (ok, text) = openssl(
        &dir,
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
            "cert.pem",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("URI:spiffe://cluster.local/ns/default/sa/reviews"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication")
            && text.contains("TLS Web Client Authentication"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
