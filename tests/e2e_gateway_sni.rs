//! Several TLS servers on one gateway port, each its own filter chain chosen by SNI, and a
//! `MUTUAL` server's `subjectAltNames`, with real curl and openssl as the clients.
//!
//! Istio gives each server of a port a filter chain whose `server_names` are its hosts
//! (pilot/pkg/model/gateway.go `GetSNIHostsForServer`); Envoy picks the chain by SNI and closes
//! a connection that matches none. A `MUTUAL` server's `subjectAltNames` become the chain's
//! `match_subject_alt_names` (pilot/pkg/security/model/authentication.go); Envoy matches a
//! certificate's DNS SAN with DNS wildcard semantics (source/common/tls/utility.cc
//! `dnsNameMatch`). Each HTTPS server routes with its own table (pilot's gatewayRDSRouteName,
//! `https.<port>.<portName>.<gateway>.<namespace>`), so a request through one server's chain
//! cannot reach another server's VirtualService.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::client_certs::{client_ca, client_cert};
use common::l4_peers::{certificate, scratch, subject_for, wait_for_log};
use common::{curl, free_offset, spawn_gateway, wait_for};

/// curl to `https://<host>:<port>/` with `--resolve`, trusting `ca`: the body and the status.
fn fetch(host: &str, port: u16, ca: &Path, extra: &[&str]) -> String {
    fetch_path(host, port, "/", ca, extra)
}

fn fetch_path(host: &str, port: u16, path: &str, ca: &Path, extra: &[&str]) -> String {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let ca = ca.display().to_string();
    let mut args = vec![
        "-s",
        "-w",
        "\n%{http_code}",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    String::from_utf8_lossy(&curl(&args).stdout).into_owned()
}

/// What openssl sees when it sends no SNI at all.
fn without_sni(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-noservername")
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_server_on_a_port_is_its_own_filter_chain() {
    let dir = scratch("gw-sni", "servers");
    let (a_cert, a_key) = certificate(&dir, "a.example.com");
    let (b_cert, b_key) = certificate(&dir, "b.example.com");
    let ca = client_ca(&dir);
    let good = client_cert(&dir, &ca, "good", "good.client.example");
    let wild = client_cert(&dir, &ca, "wild", "*.client.example");
    let bad = client_cert(&dir, &ca, "bad", "other.example");
    let alpha = Upstream::start("alpha").expect("upstream");
    let beta = Upstream::start("beta").expect("upstream");
    let offset = free_offset(&[443]);
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: alpha
    ports: [8080]
    endpoints: [{{address: "{alpha}"}}]
  - host: beta
    ports: [8080]
    endpoints: [{{address: "{beta}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: shared}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https-a, protocol: HTTPS}}
            hosts: [a.example.com]
            tls: {{mode: MUTUAL, serverCertificate: {a_cert}, privateKey: {a_key}, caCertificates: {ca}}}
          - port: {{number: 443, name: https-b, protocol: HTTPS}}
            hosts: [b.example.com]
            tls:
              mode: MUTUAL
              serverCertificate: {b_cert}
              privateKey: {b_key}
              caCertificates: {ca}
              subjectAltNames: [good.client.example]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: a}}
      spec:
        hosts: [a.example.com]
        gateways: [shared]
        http: [{{route: [{{destination: {{host: alpha}}}}]}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: b}}
      spec:
        hosts: [b.example.com]
        gateways: [shared]
        http: [{{route: [{{destination: {{host: beta}}}}]}}]
"#,
            alpha = alpha.addr(),
            beta = beta.addr(),
            a_cert = a_cert.display(),
            a_key = a_key.display(),
            b_cert = b_cert.display(),
            b_key = b_key.display(),
            ca = ca.0.display(),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let port = offset + 443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    // Each SNI name gets its own server's certificate.
    assert!(
        subject_for(port, "a.example.com").contains("a.example.com"),
        "{}",
        logged()
    );
    assert!(subject_for(port, "b.example.com").contains("b.example.com"));

    // Server a takes any certificate of the client CA; b only one naming good.client.example,
    // which a wildcard DNS SAN `*.client.example` does (Envoy's dnsNameMatch).
    let cert_args = |c: &(String, String)| {
        [
            "--cert".to_string(),
            c.0.clone(),
            "--key".into(),
            c.1.clone(),
        ]
    };
    let with = |host: &str, ca_file: &Path, c: &(String, String)| {
        let args = cert_args(c);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fetch(host, port, ca_file, &args)
    };
    let a_with_bad = with("a.example.com", &a_cert, &bad);
    assert!(
        a_with_bad.starts_with("alpha") && a_with_bad.ends_with("\n200"),
        "{a_with_bad:?}\n{}",
        logged()
    );
    // Each HTTPS server routes with its own table (pilot's RDS
    // `https.<port>.<portName>.<gateway>.<namespace>`): b's VirtualService is not reachable
    // through a's chain, whatever Host the client sends: 404 NR.
    let args = cert_args(&bad);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["-H", "Host: b.example.com"]);
    let crossed = fetch("a.example.com", port, &a_cert, &args);
    assert!(crossed.ends_with("\n404"), "{crossed:?}\n{}", logged());
    for accepted in [&good, &wild] {
        let got = with("b.example.com", &b_cert, accepted);
        assert!(
            got.starts_with("beta") && got.ends_with("\n200"),
            "{accepted:?}: {got:?}\n{}",
            logged()
        );
    }
    // The gateway's XFCC is SANITIZE_SET with the certificate (pilot's gateway default): a
    // forged header is replaced by the element of the certificate the client proved.
    let args = cert_args(&good);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend([
        "-H",
        "x-forwarded-client-cert: By=spiffe://forged;URI=spiffe://forged",
    ]);
    let headers = fetch_path("b.example.com", port, "/headers", &b_cert, &args);
    let xfcc = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
        .unwrap_or_else(|| panic!("no XFCC in {headers}"));
    assert!(!xfcc.contains("forged"), "{xfcc}");
    assert!(
        xfcc.starts_with("Hash="),
        "no By= (a file certificate has no URI SAN): {xfcc}"
    );
    assert!(
        xfcc.contains(";Cert=\"-----BEGIN%20CERTIFICATE-----%0A")
            && xfcc.contains(";Subject=\"CN=good\";URI=;DNS=good.client.example"),
        "{xfcc}"
    );
    assert!(!xfcc.contains(','), "one element, not appended: {xfcc}");

    let refused = with("b.example.com", &b_cert, &bad);
    assert!(refused.ends_with("\n000"), "{refused:?}");
    wait_for_log(&log, "none of subjectAltNames");
    // Without a client certificate a MUTUAL server refuses too.
    assert!(fetch("b.example.com", port, &b_cert, &[]).ends_with("\n000"));

    // A name no server lists, and a client without SNI, match no filter chain: closed.
    let other = subject_for(port, "c.other.test");
    assert!(other.starts_with("no handshake"), "{other}");
    wait_for_log(&log, "no Gateway server on this port serves SNI");
    let bare = without_sni(port);
    assert!(!bare.contains("subject="), "{bare}");

    assert_eq!(alpha.requests(), 1);
    assert_eq!(beta.requests(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}
