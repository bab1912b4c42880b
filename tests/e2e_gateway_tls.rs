//! HTTPS at the ingress gateway, end to end: a Gateway server with `tls.mode: SIMPLE` and
//! certificate files terminates TLS (the certificate chosen by SNI), a plain-text server with
//! `tls.httpsRedirect` answers 301 to https, and real curl and openssl are the clients.
//!
//! Istio's "Secure Gateways" task with file-mounted certificates: the certificate and key are
//! made by `openssl req` here; curl trusts it through `--cacert` and reaches the host by name
//! with `--resolve`. A third server takes its certificate from a `kubernetes.io/tls` Secret
//! named by `credentialName` (pilot/pkg/credentials/kube/secrets.go).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl, free_offset, spawn_gateway, wait_for};

/// A self-signed certificate for `name`, by openssl.
fn certificate(dir: &Path, name: &str) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl req: {out:?}");
}

/// A file's bytes as base64, as a Secret's `data` holds them (`base64 -w0`).
fn base64_file(path: &Path) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .arg(path)
        .output()
        .expect("base64 (coreutils) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("base64 text")
}

#[test]
fn https_servers_terminate_tls_and_http_redirects() {
    let dir = std::env::temp_dir().join(format!("trellis-e2e-gwtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    certificate(&dir, "bookinfo.example");
    let productpage = Upstream::start("productpage").expect("upstream");
    let offset = free_offset(&[80, 443, 8443]);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: productpage
    ports: [9080]
    endpoints: [{{address: "{upstream}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: secure}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https, protocol: HTTPS}}
            hosts: [bookinfo.example]
            tls:
              mode: SIMPLE
              serverCertificate: {cert}
              privateKey: {key}
          - port: {{number: 80, name: http, protocol: HTTP}}
            hosts: [bookinfo.example]
            tls: {{httpsRedirect: true}}
          - port: {{number: 8443, name: https-credential, protocol: HTTPS}}
            hosts: [bookinfo.example]
            tls: {{mode: SIMPLE, credentialName: bookinfo-credential}}
    - apiVersion: v1
      kind: Secret
      metadata: {{name: bookinfo-credential, namespace: istio-system}}
      type: kubernetes.io/tls
      data: {{tls.crt: {cert_b64}, tls.key: {key_b64}}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: bookinfo}}
      spec:
        hosts: [bookinfo.example]
        gateways: [secure]
        http:
          - match: [{{uri: {{prefix: /productpage}}, scheme: {{exact: https}}}}]
            route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
"#,
            upstream = productpage.addr(),
            cert = dir.join("cert.pem").display(),
            key = dir.join("key.pem").display(),
            cert_b64 = base64_file(&dir.join("cert.pem")),
            key_b64 = base64_file(&dir.join("key.pem")),
        ),
    )
    .expect("config");
    let _gateway = spawn_gateway(&config, offset, &dir.join("gateway.log"));
    let https = offset + 443;
    let http = offset + 80;
    wait_for(SocketAddr::from(([127, 0, 0, 1], https)));
    wait_for(SocketAddr::from(([127, 0, 0, 1], http)));
    let logged = || std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();

    // TLS terminated with the server's certificate; the route sees scheme https.
    let resolve = format!("bookinfo.example:{https}:127.0.0.1");
    let url = format!("https://bookinfo.example:{https}/productpage");
    let cacert = dir.join("cert.pem").display().to_string();
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "--cacert",
        &cacert,
        "--resolve",
        &resolve,
        &url,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with("\n200") && text.starts_with("productpage"),
        "{text:?} {out:?}\nlog:\n{}",
        logged()
    );

    // A client that does not trust the certificate fails the handshake.
    let out = curl(&["-s", "--resolve", &resolve, &url]);
    assert!(!out.status.success(), "an untrusted certificate must fail");

    // openssl s_client sees the certificate chosen for the SNI name.
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{https}")])
        .args(["-servername", "bookinfo.example", "-CAfile", &cacert])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let shown = String::from_utf8_lossy(&s_client.stdout);
    assert!(
        shown.contains("CN = bookinfo.example") || shown.contains("CN=bookinfo.example"),
        "{shown}"
    );
    assert!(shown.contains("Verify return code: 0"), "{shown}");

    // `credentialName`: the certificate comes from the `kubernetes.io/tls` Secret of the
    // gateway's namespace (pilot's SDS `kubernetes://bookinfo-credential`).
    let secured = offset + 8443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], secured)));
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "--cacert",
        &cacert,
        "--resolve",
        &format!("bookinfo.example:{secured}:127.0.0.1"),
        &format!("https://bookinfo.example:{secured}/productpage"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with("\n200") && text.starts_with("productpage"),
        "{text:?} {out:?}\nlog:\n{}",
        logged()
    );

    // The plain-text server redirects to https.
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: bookinfo.example",
        &format!("http://127.0.0.1:{http}/productpage?x=1"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text == "301 https://bookinfo.example/productpage?x=1",
        "{text:?}\nlog:\n{}",
        logged()
    );
    assert_eq!(
        productpage.requests(),
        2,
        "the redirect did not reach the upstream"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
