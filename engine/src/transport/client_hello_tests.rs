//! The SNI peek against real ClientHellos (written by rustls' client), split every way the
//! record layer and the network may split them, and against arbitrary bytes.

use std::sync::Arc;

use quickcheck_macros::quickcheck;

use super::*;

/// The first flight of a rustls client dialling `name`.
fn client_hello(name: &str) -> Vec<u8> {
    client_hello_offering(name, &[])
}

/// The first flight of a rustls client dialling `name` and offering the ALPN `protocols`.
pub(crate) fn client_hello_offering(name: &str, protocols: &[&str]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("a name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("a client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("written to memory");
    }
    out
}

/// The same ClientHello re-framed into records of at most `size` bytes of handshake each.
fn refragment(hello: &[u8], size: usize) -> Vec<u8> {
    let body = &hello[5..];
    let mut out = Vec::new();
    for chunk in body.chunks(size.max(1)) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn a_real_client_hello_names_its_server() {
    let hello = client_hello("Ratings.Example.COM");
    assert_eq!(
        peek(&hello),
        Peek::ClientHello {
            sni: Some("ratings.example.com".into()),
            alpn: Vec::new(),
        }
    );
}

/// Envoy's tls_inspector hands on the ALPN list in the client's order
/// (`setRequestedApplicationProtocols`), what an AUTO_PASSTHROUGH chain matches on.
#[test]
fn a_real_client_hello_offers_its_alpn_protocols_in_order() {
    let hello = client_hello_offering("outbound_.80_._.a.local", &["istio-http/1.1", "istio"]);
    assert_eq!(
        peek(&refragment(&hello, 40)),
        Peek::ClientHello {
            sni: Some("outbound_.80_._.a.local".into()),
            alpn: vec!["istio-http/1.1".into(), "istio".into()],
        }
    );
}

#[test]
fn every_prefix_of_a_client_hello_needs_more() {
    let hello = client_hello("a.example");
    for cut in 0..hello.len() {
        assert_eq!(peek(&hello[..cut]), Peek::NeedMore, "cut at {cut}");
    }
}

#[test]
fn an_ip_literal_sends_no_sni_and_plaintext_is_not_tls() {
    // rustls sends no server_name for an IP address (RFC 6066 §3 forbids literals).
    let hello = client_hello("127.0.0.1");
    assert_eq!(
        peek(&hello),
        Peek::ClientHello {
            sni: None,
            alpn: Vec::new()
        }
    );
    assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls);
    assert_eq!(peek(b"\x16\x02"), Peek::NotTls);
    assert_eq!(peek(&[22, 3, 1, 0, 0]), Peek::NotTls);
    // A handshake that does not start with a ClientHello (type 2 is ServerHello).
    assert_eq!(peek(&[22, 3, 3, 0, 4, 2, 0, 0, 0]), Peek::NotTls);
}

#[quickcheck]
fn fragmented_hellos_read_the_same(size: u16, name_len: u8) -> bool {
    let name = format!("{}.svc.example", "x".repeat(1 + usize::from(name_len % 60)));
    let hello = refragment(&client_hello(&name), 1 + usize::from(size % 700));
    peek(&hello)
        == Peek::ClientHello {
            sni: Some(name),
            alpn: Vec::new(),
        }
}

#[quickcheck]
fn arbitrary_bytes_never_panic(data: Vec<u8>, tls_prefix: bool) -> bool {
    let mut bytes = if tls_prefix {
        vec![22, 3, 1, 0, data.len().min(255) as u8, 1]
    } else {
        Vec::new()
    };
    bytes.extend_from_slice(&data);
    let _ = peek(&bytes);
    true
}
