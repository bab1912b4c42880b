//! Client certificates for the gateway TLS tests, made with real OpenSSL: a client CA, client
//! certificates it signs, and the pins Envoy's `verify_certificate_spki` and
//! `verify_certificate_hash` compare (as the openssl recipes in Envoy's
//! `CertificateValidationContext` documentation compute them).

// Every test binary compiles `common`; only the gateway TLS ones use these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A client CA in `dir`: (cert, key).
pub fn client_ca(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("client-ca.pem"), dir.join("client-ca.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=client-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-keyout",
        key.to_str().expect("utf-8"),
        "-out",
        cert.to_str().expect("utf-8"),
    ]);
    (cert, key)
}

/// A client certificate named `name` with DNS SAN `san`, signed by the client CA.
pub fn client_cert(dir: &Path, ca: &(PathBuf, PathBuf), name: &str, san: &str) -> (String, String) {
    let path = |ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &path("key"),
        "-out",
        &path("csr"),
    ]);
    std::fs::write(
        path("ext"),
        format!("subjectAltName=DNS:{san}\nextendedKeyUsage=clientAuth\n"),
    )
    .expect("extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("csr"),
        "-CA",
        ca.0.to_str().expect("utf-8"),
        "-CAkey",
        ca.1.to_str().expect("utf-8"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &path("ext"),
        "-out",
        &path("pem"),
    ]);
    (path("pem"), path("key"))
}

/// `verifyCertificateSpki` for the certificate at `cert`: base64 of the SHA-256 of its DER
/// SubjectPublicKeyInfo (`openssl x509 -pubkey | openssl pkey -pubin -outform DER | openssl
/// dgst -sha256 -binary | base64`).
pub fn spki_pin(cert: &str) -> String {
    let script = format!(
        "openssl x509 -in '{cert}' -noout -pubkey | openssl pkey -pubin -outform DER \
         | openssl dgst -sha256 -binary | openssl base64 -A"
    );
    shell(&script)
}

/// `verifyCertificateHash` for the certificate at `cert`, as openssl's fingerprint prints it:
/// colon-separated upper-case hex (`openssl x509 -noout -fingerprint -sha256`).
pub fn hash_pin(cert: &str) -> String {
    let out = shell(&format!(
        "openssl x509 -in '{cert}' -noout -fingerprint -sha256"
    ));
    out.rsplit('=')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn shell(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
