//! A gateway port whose servers differ in mode, each a filter chain with its own client
//! requirement (pilot's `buildGatewayListeners` builds one `DownstreamTlsContext` per server,
//! `BuildListenerTLSContext` setting `require_client_certificate` from that server's mode),
//! and the certificate pins of `MUTUAL` servers (Envoy's `verify_certificate_spki` and
//! `verify_certificate_hash`, `DefaultCertValidator::verifyCertificate`).

use std::sync::Arc;

use base64::Engine as _;
use ring::digest::{digest, SHA256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::pin::CertificatePins;
use super::testca::TestCa;
use super::tests::{addr, converse, settings, transform};
use super::*;
use crate::time::Instant;
use crate::transport::policy::{
    ClientCertificate, ClientCertificates, InboundMode, OriginationTls, ResolvedUpstreamTls,
    ServerCertificate, TerminatedTls,
};
use crate::transport::{ByteTransform, ChainKind, Endpoint, TransportFactory};
use bytes::BytesMut;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

/// One server of the port: its host, its mode, the CA its clients chain to, and its pins.
fn server(
    ca: &TestCa,
    host: &str,
    clients: ClientCertificates,
    pins: CertificatePins,
) -> ServerCertificate {
    let (_, chain_pem, key_pem) = ca.issue_pem(host, 10);
    let mutual = clients != ClientCertificates::NotRequested;
    ServerCertificate {
        hosts: vec![host.to_string()],
        chain_pem,
        key_pem,
        client_ca_pem: mutual.then(|| ca.root_pem().to_string()),
        subject_alt_names: Vec::new(),
        route_table: None,
        clients,
        pins,
        plaintext: Default::default(),
    }
}

/// The server side of a connection to the port `tls`.
fn gateway(tls: &Arc<TerminatedTls>) -> Box<dyn ByteTransform> {
    let mut factory = MtlsTransports::from_config(settings(Randomness::System));
    let endpoint = Endpoint::Downstream {
        terminate: Some(tls),
        listener: "0.0.0.0_443",
        peer: addr("10.0.0.1:40000"),
        local: addr("10.0.0.9:443"),
        mode: InboundMode::Disable,
    };
    transform(factory.transport(Instant::ZERO, endpoint, None).unwrap())
}

/// A client outside the mesh asking for `sni`, with a certificate (`(chain, key)` PEM) or none;
/// it does not check the gateway's certificate (only the gateway's checks are under test).
fn client(sni: &str, cert: Option<(&str, &str)>) -> Box<dyn ByteTransform> {
    let tls = Arc::new(OriginationTls {
        sni: sni.to_string(),
        subject_alt_names: Vec::new(),
        ca_pem: None,
        insecure_skip_verify: true,
        client_cert: cert.map(|(chain, key)| ClientCertificate {
            chain_pem: chain.to_string(),
            key_pem: key.to_string(),
        }),
    });
    let mut factory = MtlsTransports::from_config(settings(Randomness::System));
    let endpoint = Endpoint::Upstream {
        cluster: "gateway",
        addr: addr("10.0.0.9:443"),
        tls: ResolvedUpstreamTls::Origination(&tls),
    };
    transform(factory.transport(Instant::ZERO, endpoint, None).unwrap())
}

/// Whether a request reaches the gateway; `Err` with the server's refusal.
fn request(
    port: &Arc<TerminatedTls>,
    sni: &str,
    cert: Option<(&str, &str)>,
) -> Result<Box<dyn ByteTransform>, String> {
    let mut c = client(sni, cert);
    let mut s = gateway(port);
    c.seal(REQUEST);
    match converse(&mut *c, &mut *s, 1 << 16) {
        Ok(talk) if talk.at_server == REQUEST => Ok(s),
        Ok(_) => Err("the request did not arrive".into()),
        Err((side, e)) => Err(format!("{side}: {e}")),
    }
}

/// `SIMPLE` for a.example.com and `MUTUAL` for b.example.com on one port: a client of `a`
/// needs no certificate, and one that has a certificate is not asked for it (no XFCC `Cert`);
/// a client of `b` without one is refused, with one it is served and its certificate seen.
#[test]
fn each_chain_asks_for_client_certificates_by_its_own_mode() {
    let ca = TestCa::new("clients", 1);
    let port = Arc::new(TerminatedTls {
        servers: vec![
            server(
                &ca,
                "a.example.com",
                ClientCertificates::NotRequested,
                CertificatePins::default(),
            ),
            server(
                &ca,
                "b.example.com",
                ClientCertificates::Required,
                CertificatePins::default(),
            ),
        ],
        passthrough: Vec::new(),
    });
    let (_, chain, key) = ca.issue_pem("client.example.com", 20);
    let mine = Some((chain.as_str(), key.as_str()));

    let s = request(&port, "a.example.com", None)
        .expect("SIMPLE serves a client without a certificate");
    assert_eq!(s.client_cert_details(), None);
    let s = request(&port, "a.example.com", mine).expect("SIMPLE serves any client");
    assert!(
        s.client_cert_details().is_none_or(|x| !x.contains("Cert=")),
        "SIMPLE never asked for the certificate: {:?}",
        s.client_cert_details()
    );

    let refused = request(&port, "b.example.com", None)
        .err()
        .expect("MUTUAL refuses");
    assert!(refused.contains("no client certificate"), "{refused}");
    let s =
        request(&port, "b.example.com", mine).expect("MUTUAL serves a client with a certificate");
    let details = s
        .client_cert_details()
        .expect("the verified certificate is forwarded");
    assert!(details.contains("Cert="), "{details}");
}

/// `OPTIONAL_MUTUAL` next to `SIMPLE`: a client without a certificate is served, one with a
/// certificate from another CA is refused (a presented certificate must verify).
#[test]
fn an_optional_mutual_chain_verifies_only_what_is_presented() {
    let ca = TestCa::new("clients", 1);
    let other = TestCa::new("other", 2);
    let port = Arc::new(TerminatedTls {
        servers: vec![
            server(
                &ca,
                "a.example.com",
                ClientCertificates::NotRequested,
                CertificatePins::default(),
            ),
            server(
                &ca,
                "c.example.com",
                ClientCertificates::Optional,
                CertificatePins::default(),
            ),
        ],
        passthrough: Vec::new(),
    });
    request(&port, "c.example.com", None).expect("no certificate: served");
    let (_, chain, key) = other.issue_pem("client.example.com", 21);
    let refused = request(&port, "c.example.com", Some((&chain, &key)))
        .err()
        .expect("wrong CA");
    assert!(
        refused.contains("unknown CA") || refused.contains("certificate"),
        "{refused}"
    );
}

fn spki_pin(der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(der).expect("parses");
    let d = digest(&SHA256, cert.tbs_certificate.subject_pki.raw);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

fn hash_pin(der: &[u8], upper_with_colons: bool) -> String {
    let d = digest(&SHA256, der);
    let bytes: Vec<String> = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if upper_with_colons {
        bytes.join(":").to_ascii_uppercase()
    } else {
        bytes.concat()
    }
}

/// `verifyCertificateSpki` and `verifyCertificateHash` (`DefaultCertValidator::
/// verifyCertificate`): a certificate that chains but matches no pin is refused with one line
/// naming the check and its digests; matching either list is enough (the lists are
/// alternatives); the pins add to the chain check, never replace it.
#[test]
fn pins_refuse_a_chaining_certificate_they_do_not_name() {
    let ca = TestCa::new("clients", 1);
    let (pinned_der, pinned_chain, pinned_key) = ca.issue_pem("pinned.example.com", 30);
    let (other_der, other_chain, other_key) = ca.issue_pem("other.example.com", 31);
    let pinned = Some((pinned_chain.as_str(), pinned_key.as_str()));
    let other = Some((other_chain.as_str(), other_key.as_str()));
    let port = |pins: CertificatePins| {
        Arc::new(TerminatedTls {
            servers: vec![
                server(
                    &ca,
                    "a.example.com",
                    ClientCertificates::NotRequested,
                    CertificatePins::default(),
                ),
                server(&ca, "b.example.com", ClientCertificates::Required, pins),
            ],
            passthrough: Vec::new(),
        })
    };

    let by_spki = port(CertificatePins::parse(&[spki_pin(&pinned_der)], &[]).unwrap());
    request(&by_spki, "b.example.com", pinned).expect("the pinned key is served");
    let refused = request(&by_spki, "b.example.com", other)
        .err()
        .expect("an unpinned key is refused");
    assert!(refused.contains("certificate not pinned"), "{refused}");
    assert!(
        refused.contains(&spki_pin(&other_der)),
        "names the digest: {refused}"
    );
    // The SIMPLE neighbour is not pinned.
    request(&by_spki, "a.example.com", other).expect("SIMPLE: no pins");

    let by_hash = port(CertificatePins::parse(&[], &[hash_pin(&pinned_der, true)]).unwrap());
    request(&by_hash, "b.example.com", pinned).expect("the pinned certificate is served");
    let refused = request(&by_hash, "b.example.com", other)
        .err()
        .expect("refused");
    assert!(refused.contains(&hash_pin(&other_der, false)), "{refused}");

    // Either list may match.
    let either = port(
        CertificatePins::parse(&[spki_pin(&other_der)], &[hash_pin(&pinned_der, false)]).unwrap(),
    );
    request(&either, "b.example.com", pinned).expect("by hash");
    request(&either, "b.example.com", other).expect("by SPKI");

    // A pinned certificate that does not chain is still refused.
    let stranger = TestCa::new("stranger", 3);
    let (stranger_der, chain, key) = stranger.issue_pem("pinned.example.com", 32);
    let pinned_stranger = port(CertificatePins::parse(&[spki_pin(&stranger_der)], &[]).unwrap());
    let refused = request(&pinned_stranger, "b.example.com", Some((&chain, &key)))
        .err()
        .expect("no chain");
    assert!(
        !refused.contains("certificate not pinned"),
        "the chain check comes first: {refused}"
    );
}

/// A SIMPLE server and a PASSTHROUGH server on one port (pilot's
/// buildGatewayTCPBasedFilterChains builds both kinds of chain on one listener): a ClientHello
/// for the passthrough host is not terminated; its bytes come out as they went in, whatever
/// their segmentation, and bytes flow both ways untouched; one for the SIMPLE host is
/// terminated.
#[test]
fn a_passthrough_chain_hands_the_client_hello_on_untouched() {
    let ca = TestCa::new("clients", 1);
    let port = Arc::new(TerminatedTls {
        servers: vec![server(
            &ca,
            "a.example.com",
            ClientCertificates::NotRequested,
            CertificatePins::default(),
        )],
        passthrough: vec![vec![
            "p.example.com".to_string(),
            "*.p.example.com".to_string(),
        ]],
    });
    for (sni, step) in [("p.example.com", 7), ("x.p.example.com", 1 << 16)] {
        let mut c = client(sni, None);
        let mut s = gateway(&port);
        let mut hello = BytesMut::new();
        c.poll_wire(&mut hello);
        let mut plain = BytesMut::new();
        for (i, chunk) in hello.chunks(step).enumerate() {
            assert_eq!(
                s.chain(),
                None,
                "{sni}: undecided before the whole ClientHello ({i})"
            );
            s.receive(Instant::ZERO, chunk, &mut plain)
                .expect("not refused");
        }
        assert_eq!(s.chain(), Some(ChainKind::PassedThrough), "{sni}");
        assert_eq!(
            &plain[..],
            &hello[..],
            "{sni}: the very bytes the client sent"
        );
        assert_eq!(s.server_name(), Some(sni));
        assert!(s.is_established() && !s.wants_write());
        s.receive(Instant::ZERO, b"more", &mut plain)
            .expect("copied");
        assert!(plain.ends_with(b"more"));
        s.seal(b"from upstream");
        let mut wire = BytesMut::new();
        s.poll_wire(&mut wire);
        assert_eq!(&wire[..], b"from upstream");
    }
    let mut c = client("a.example.com", None);
    let mut s = gateway(&port);
    c.seal(REQUEST);
    let talk = converse(&mut *c, &mut *s, 1 << 16).expect("terminated");
    assert_eq!(talk.at_server, REQUEST);
    assert_eq!(s.chain(), Some(ChainKind::Terminated));
    let mut c = client("other.example.com", None);
    let mut s = gateway(&port);
    let refused = converse(&mut *c, &mut *s, 1 << 16).err().expect("no chain");
    assert!(
        refused.1.to_string().contains("no Gateway server"),
        "{}",
        refused.1
    );
}

/// A `TLS` server terminating then relaying TCP next to an `HTTPS` one (pilot's
/// createGatewayTCPFilterChainOpts and createGatewayHTTPFilterChainOpts on one listener): the
/// SNI picks the chain, and the chain says what its plaintext is, so the engine hands an
/// HTTPS connection to the HTTP codec and a TCP one to the L4 chain of the same SNI.
#[test]
fn a_terminating_chain_says_whether_its_plaintext_is_http_or_tcp() {
    use crate::transport::policy::Plaintext;
    let ca = TestCa::new("clients", 1);
    let tcp = ServerCertificate {
        plaintext: Plaintext::Tcp,
        ..server(
            &ca,
            "db.example.com",
            ClientCertificates::NotRequested,
            CertificatePins::default(),
        )
    };
    let port = Arc::new(TerminatedTls {
        servers: vec![
            server(
                &ca,
                "a.example.com",
                ClientCertificates::NotRequested,
                CertificatePins::default(),
            ),
            tcp,
        ],
        passthrough: Vec::new(),
    });
    assert!(port.serves_more_than_tcp());
    for (sni, kind) in [
        ("a.example.com", ChainKind::Terminated),
        ("db.example.com", ChainKind::TerminatedTcp),
    ] {
        let mut c = client(sni, None);
        let mut s = gateway(&port);
        c.seal(b"ping\n");
        let talk = converse(&mut *c, &mut *s, 1 << 16).expect("terminated");
        assert_eq!(talk.at_server, b"ping\n", "{sni}");
        assert_eq!(s.chain(), Some(kind), "{sni}");
        assert_eq!(s.server_name(), Some(sni));
    }
    let only_tcp = TerminatedTls {
        servers: vec![port.servers[1].clone()],
        passthrough: Vec::new(),
    };
    assert!(!only_tcp.serves_more_than_tcp());
}
