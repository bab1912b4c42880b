//! Gateway servers of different TLS modes on one port, with real curl and openssl as the
//! clients: each server is its own filter chain, chosen by SNI, with its own client
//! requirement, `MUTUAL` servers pin client certificates by SPKI or hash, and a `PASSTHROUGH`
//! server's SNI reaches an `openssl s_server` behind the gateway untouched
//! (buildGatewayTCPBasedFilterChains builds terminating and passthrough chains on one
//! listener).
//!
//! pilot merges every TLS server of a port (MergeGateways in pilot/pkg/model/gateway.go) and
//! gives each its own filter chain and `DownstreamTlsContext` (buildGatewayListeners →
//! createGatewayHTTPFilterChainOpts in pilot/pkg/networking/core/gateway.go, with
//! BuildListenerTLSContext setting `require_client_certificate` by the server's mode). A
//! `MUTUAL` server's `verifyCertificateSpki`/`verifyCertificateHash` become the chain's
//! `verify_certificate_spki`/`verify_certificate_hash`
//! (ApplyCredentialSDSToServerCommonTLSContext in pilot/pkg/security/model/authentication.go),
//! which Envoy checks after the chain, a certificate matching either list passing
//! (DefaultCertValidator::verifyCertificate in
//! source/common/tls/cert_validator/default_validator.cc).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::client_certs::{client_ca, client_cert, hash_pin, spki_pin};
use common::l4_peers::{certificate, s_client_line, s_server, scratch, subject_for, wait_for_log};
use common::{curl, free_offset, spawn_gateway, wait_for};

/// curl to `https://<host>:<port>/` trusting `ca`, with the client certificate `cert` if any:
/// the body and the status (`000`: no answer, the handshake was refused).
fn fetch(host: &str, port: u16, ca: &Path, cert: Option<&(String, String)>) -> String {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/");
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
    if let Some((pem, key)) = cert {
        args.extend(["--cert", pem, "--key", key]);
    }
    args.push(&url);
    String::from_utf8_lossy(&curl(&args).stdout).into_owned()
}

/// What `openssl s_client` prints about the server's certificate request for `sni`, sending
/// no certificate itself.
fn certificate_request(port: u16, sni: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", sni])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("No client certificate CA names sent") {
        "not requested".into()
    } else if text.contains("Acceptable client certificate CA names") {
        "requested".into()
    } else {
        format!("unclear: {text}")
    }
}

/// What `openssl s_client` reports of ALPN for a ClientHello naming `sni` and offering
/// `protocol`: its `ALPN protocol: …` or `No ALPN negotiated` line.
fn alpn_at(port: u16, sni: &str, protocol: &str) -> String {
    s_client_line(
        port,
        sni,
        &[protocol],
        &["ALPN protocol:", "No ALPN negotiated"],
    )
}

/// A `tls` section's certificate files: `cert` (certificate, key) and the client CA `ca`.
fn tls_files(cert: &(PathBuf, PathBuf), ca: &(PathBuf, PathBuf)) -> String {
    format!(
        "serverCertificate: {}, privateKey: {}, caCertificates: {}",
        cert.0.display(),
        cert.1.display(),
        ca.0.display()
    )
}

#[test]
fn simple_mutual_and_passthrough_servers_share_a_port_and_mutual_ones_pin_certificates() {
    let dir = scratch("gw-mixed", "servers");
    let certs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|h| certificate(&dir, &format!("{h}.example.com")))
        .collect();
    let ca = client_ca(&dir);
    let good = client_cert(&dir, &ca, "good", "good.client.example");
    let other = client_cert(&dir, &ca, "other", "other.client.example");
    let alpha = Upstream::start("alpha").expect("upstream");
    // A TLS server behind the gateway, reached through a PASSTHROUGH server of the same port.
    let (backend, _backend, backend_cert) = s_server(&dir, "p.example.com");
    let offset = free_offset(&[443]);
    let config = dir.join("gateway.yaml");
    let files = |i: usize| tls_files(&certs[i], &ca);
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: alpha
    ports: [8080]
    endpoints: [{{address: "{alpha}"}}]
  - host: p-backend
    ports: [{{number: 8443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{backend}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: mixed}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https-a, protocol: HTTPS}}
            hosts: [a.example.com]
            tls: {{mode: SIMPLE, {a}}}
          - port: {{number: 443, name: https-b, protocol: HTTPS}}
            hosts: [b.example.com]
            tls: {{mode: MUTUAL, {b}}}
          - port: {{number: 443, name: https-c, protocol: HTTPS}}
            hosts: [c.example.com]
            tls: {{mode: MUTUAL, {c}, verifyCertificateSpki: ["{spki}"]}}
          - port: {{number: 443, name: https-d, protocol: HTTPS}}
            hosts: [d.example.com]
            tls: {{mode: MUTUAL, {d}, verifyCertificateHash: ["{hash}"]}}
          - port: {{number: 443, name: tls-p, protocol: TLS}}
            hosts: [p.example.com]
            tls: {{mode: PASSTHROUGH}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: all}}
      spec:
        hosts: [a.example.com, b.example.com, c.example.com, d.example.com]
        gateways: [mixed]
        http: [{{route: [{{destination: {{host: alpha}}}}]}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: p}}
      spec:
        hosts: [p.example.com]
        gateways: [mixed]
        tls:
          - match: [{{port: 443, sniHosts: [p.example.com]}}]
            route: [{{destination: {{host: p-backend, port: {{number: 8443}}}}}}]
"#,
            alpha = alpha.addr(),
            a = files(0),
            b = files(1),
            c = files(2),
            d = files(3),
            spki = spki_pin(&good.0),
            hash = hash_pin(&good.0),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let port = offset + 443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let served = |got: &str| got.starts_with("alpha") && got.ends_with("\n200");
    let refused = |got: &str| got.ends_with("\n000");

    // SIMPLE: served without a client certificate, and none is asked for, though its
    // neighbour on the port requires one.
    let got = fetch("a.example.com", port, &certs[0].0, None);
    assert!(served(&got), "{got:?}\n{}", logged());
    assert_eq!(certificate_request(port, "a.example.com"), "not requested");
    assert_eq!(certificate_request(port, "b.example.com"), "requested");

    // MUTUAL: refused without a certificate, served with one of the client CA.
    let got = fetch("b.example.com", port, &certs[1].0, None);
    assert!(refused(&got), "{got:?}\n{}", logged());
    wait_for_log(&log, "no client certificate");
    let got = fetch("b.example.com", port, &certs[1].0, Some(&other));
    assert!(served(&got), "{got:?}\n{}", logged());

    // MUTUAL with verifyCertificateSpki: only the pinned key; another certificate of the same
    // CA is refused, and the log names the check.
    let got = fetch("c.example.com", port, &certs[2].0, Some(&good));
    assert!(served(&got), "{got:?}\n{}", logged());
    let got = fetch("c.example.com", port, &certs[2].0, Some(&other));
    assert!(refused(&got), "{got:?}\n{}", logged());
    let line = wait_for_log(&log, "certificate not pinned");
    assert!(line.contains(&spki_pin(&other.0)), "{line}");

    // MUTUAL with verifyCertificateHash in openssl's fingerprint form (colons, upper case).
    let got = fetch("d.example.com", port, &certs[3].0, Some(&good));
    assert!(served(&got), "{got:?}\n{}", logged());
    let got = fetch("d.example.com", port, &certs[3].0, Some(&other));
    assert!(refused(&got), "{got:?}\n{}", logged());

    // PASSTHROUGH on the same port: the SNI p.example.com is not terminated; the backend's own
    // certificate answers, and curl gets openssl's `-www` page through the gateway.
    let subject = subject_for(port, "p.example.com");
    assert!(subject.contains("p.example.com"), "{subject}\n{}", logged());
    let got = fetch("p.example.com", port, &backend_cert, None);
    assert!(got.ends_with("\n200"), "{got:?}\n{}", logged());
    // ...while a terminated SNI still gets the gateway's certificate.
    assert!(subject_for(port, "a.example.com").contains("a.example.com"));

    assert_eq!(alpha.requests(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `HTTPS` server, two `TLS` servers terminated then relayed as TCP (`SIMPLE` and
/// `MUTUAL`) and a `PASSTHROUGH` server, all on port 443 (pilot's
/// buildGatewayTCPBasedFilterChains: createGatewayHTTPFilterChainOpts for the first,
/// createGatewayTCPFilterChainOpts for the others, one listener, the chain chosen by SNI):
/// curl gets its HTTP answer, Python's `ssl` reaches each TCP server's own backend through its
/// own certificate and client requirement, and openssl's handshake for the passthrough name
/// completes with the backend behind the gateway.
#[test]
fn https_terminated_tcp_and_passthrough_servers_share_a_port() {
    use common::l4_peers::{line_echo, tls_exchange_named};
    let dir = scratch("gw-mixed", "tcp");
    let certs: Vec<_> = ["a", "db", "mq"]
        .iter()
        .map(|h| certificate(&dir, &format!("{h}.example.com")))
        .collect();
    let ca = client_ca(&dir);
    let client = client_cert(&dir, &ca, "client", "client.example");
    let alpha = Upstream::start("alpha").expect("upstream");
    let (db, db_seen) = line_echo("127.0.0.1", "db");
    let (mq, mq_seen) = line_echo("127.0.0.1", "mq");
    let (backend, _backend, _) = s_server(&dir, "p.example.com");
    let offset = free_offset(&[443]);
    let config = dir.join("gateway.yaml");
    let files = |i: usize| tls_files(&certs[i], &ca);
    std::fs::write(
        &config,
        format!(
            r#"services:
  - host: alpha
    ports: [8080]
    endpoints: [{{address: "{alpha}"}}]
  - host: db-backend
    ports: [{{number: 9000, name: tcp}}]
    endpoints: [{{address: "{db}"}}]
  - host: mq-backend
    ports: [{{number: 9000, name: tcp}}]
    endpoints: [{{address: "{mq}"}}]
  - host: p-backend
    ports: [{{number: 8443, name: tls}}]
    endpoints: [{{address: "127.0.0.1:{backend}"}}]
istio:
  resources:
    - apiVersion: networking.istio.io/v1
      kind: Gateway
      metadata: {{name: mixed}}
      spec:
        selector: {{istio: ingressgateway}}
        servers:
          - port: {{number: 443, name: https-a, protocol: HTTPS}}
            hosts: [a.example.com]
            tls: {{mode: SIMPLE, {a_files}}}
          - port: {{number: 443, name: tls-db, protocol: TLS}}
            hosts: [db.example.com]
            tls: {{mode: SIMPLE, {db_files}}}
          - port: {{number: 443, name: tls-mq, protocol: TLS}}
            hosts: [mq.example.com]
            tls: {{mode: MUTUAL, {mq_files}}}
          - port: {{number: 443, name: tls-p, protocol: TLS}}
            hosts: [p.example.com]
            tls: {{mode: PASSTHROUGH}}
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: web}}
      spec:
        hosts: [a.example.com]
        gateways: [mixed]
        http: [{{route: [{{destination: {{host: alpha}}}}]}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: db}}
      spec:
        hosts: [db.example.com]
        gateways: [mixed]
        tcp: [{{route: [{{destination: {{host: db-backend, port: {{number: 9000}}}}}}]}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: mq}}
      spec:
        hosts: [mq.example.com]
        gateways: [mixed]
        tcp: [{{route: [{{destination: {{host: mq-backend, port: {{number: 9000}}}}}}]}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata: {{name: p}}
      spec:
        hosts: [p.example.com]
        gateways: [mixed]
        tls:
          - match: [{{port: 443, sniHosts: [p.example.com]}}]
            route: [{{destination: {{host: p-backend, port: {{number: 8443}}}}}}]
"#,
            alpha = alpha.addr(),
            a_files = files(0),
            db_files = files(1),
            mq_files = files(2),
        ),
    )
    .expect("config");
    let log = dir.join("gateway.log");
    let _gateway = spawn_gateway(&config, offset, &log);
    let port = offset + 443;
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged().contains("does not yet serve"),
        "every server is served:\n{}",
        logged()
    );

    // HTTPS: terminated, then HTTP.
    let got = fetch("a.example.com", port, &certs[0].0, None);
    assert!(
        got.starts_with("alpha") && got.ends_with("\n200"),
        "{got:?}\n{}",
        logged()
    );

    // TLS SIMPLE: terminated with db's certificate, then the bytes to db's backend.
    let got = tls_exchange_named(port, Some("db.example.com"), &certs[1].0, None, "ping\n");
    assert_eq!(got, "db:ping", "{}", logged());

    // TLS MUTUAL: a client without a certificate never reaches mq's backend; one with a
    // certificate of the client CA does.
    let got = tls_exchange_named(port, Some("mq.example.com"), &certs[2].0, None, "sneak\n");
    assert!(got == "REFUSED" || got == "CLOSED", "{got}\n{}", logged());
    let (pem, key) = (Path::new(&client.0), Path::new(&client.1));
    let got = tls_exchange_named(
        port,
        Some("mq.example.com"),
        &certs[2].0,
        Some((pem, key)),
        "hello\n",
    );
    assert_eq!(got, "mq:hello", "{}", logged());
    assert_eq!(*mq_seen.lock().expect("lock"), ["hello"]);
    assert_eq!(*db_seen.lock().expect("lock"), ["ping"]);

    // ALPN on a TCP chain: `h2, http/1.1` offered (pilot's ALPNHttp), and a client offering
    // none of them is served without ALPN (Envoy's NOACK), not refused.
    assert_eq!(alpn_at(port, "db.example.com", "h2"), "ALPN protocol: h2");
    assert_eq!(
        alpn_at(port, "db.example.com", "postgresql"),
        "No ALPN negotiated"
    );
    // ...and on the HTTPS chain (HTTP/1.1 only), an h2-only client is served without ALPN.
    assert_eq!(alpn_at(port, "a.example.com", "h2"), "No ALPN negotiated");

    // PASSTHROUGH: the backend's own certificate answers p.example.com.
    let subject = subject_for(port, "p.example.com");
    assert!(subject.contains("p.example.com"), "{subject}\n{}", logged());
    // An SNI no server takes finds no chain.
    assert!(subject_for(port, "other.example.com").starts_with("no handshake"));

    // One access-log record per TCP connection, under its VirtualService's chain.
    let text = wait_for_log(&log, "db.default");
    assert!(text.contains("mq.default"), "{text}");
    assert_eq!(alpha.requests(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
