//! Two TLS transforms talking to each other through memory: the handshake at any segmentation,
//! the identities each side verified, close_notify, and handshakes that replay from a seed.

use std::net::SocketAddr;

use bytes::BytesMut;

use super::testca::{Leaf, TestCa, UNIX_BASE};
use super::*;
use crate::time::Instant;
use crate::transport::policy::{InboundMode, ResolvedUpstreamTls};
use crate::transport::{ByteTransform, Endpoint, TransformError, Transport, TransportFactory};

pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

pub(super) fn settings(randomness: Randomness) -> MtlsSettings {
    MtlsSettings {
        unix_base: UNIX_BASE,
        randomness,
    }
}

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

pub(super) fn transform(t: Transport) -> Box<dyn ByteTransform> {
    match t {
        Transport::Transformed(t) | Transport::Sniffing { tls: t, .. } => t,
        other => panic!("not a transform: {other:?}"),
    }
}

/// A client transform and a server transform, both issued by one CA.
fn pair(randomness: Randomness) -> (Box<dyn ByteTransform>, Box<dyn ByteTransform>) {
    let ca = TestCa::new("root", 1);
    let client_creds = ca.issue(Leaf::valid(CLIENT_ID, 2), vec![ca.root()], "cluster.local");
    let server_creds = ca.issue(Leaf::valid(SERVER_ID, 3), vec![ca.root()], "cluster.local");
    let mut client = MtlsTransports::new(&client_creds, settings(randomness)).unwrap();
    let mut server = MtlsTransports::new(&server_creds, settings(randomness)).unwrap();
    let c = client.transport(
        Instant::ZERO,
        Endpoint::Upstream {
            cluster: "reviews",
            addr: addr("10.0.0.2:9080"),
            tls: ResolvedUpstreamTls::Mesh {
                subject_alt_names: &[],
                sni: None,
            },
        },
        None,
    );
    let s = server.transport(
        Instant::ZERO,
        Endpoint::Downstream {
            terminate: None,
            listener: "inbound",
            peer: addr("10.0.0.1:40000"),
            local: addr("10.0.0.2:9080"),
            mode: InboundMode::Strict,
        },
        None,
    );
    (transform(c.unwrap()), transform(s.unwrap()))
}

/// What a conversation put on the wire, and the plaintext each side received.
pub(super) struct Conversation {
    pub(super) transcript: Vec<u8>,
    pub(super) at_client: Vec<u8>,
    pub(super) at_server: Vec<u8>,
}

/// Which side failed, and how.
pub(super) type Failure = (&'static str, TransformError);

/// What `from` wants sent, into `to`, `step` bytes at a time.
fn carry(
    from: &mut dyn ByteTransform,
    to: &mut dyn ByteTransform,
    step: usize,
    transcript: &mut Vec<u8>,
    plain: &mut BytesMut,
) -> Result<(), TransformError> {
    let mut wire = BytesMut::new();
    from.poll_wire(&mut wire);
    transcript.extend_from_slice(&wire);
    for chunk in wire.chunks(step) {
        to.receive(Instant::from_millis(5), chunk, plain)?;
    }
    Ok(())
}

/// Move bytes both ways, `step` bytes at a time, until neither side has anything to send.
/// Returns the wire transcript and the plaintext each side received.
pub(super) fn converse(
    client: &mut dyn ByteTransform,
    server: &mut dyn ByteTransform,
    step: usize,
) -> Result<Conversation, Failure> {
    let (mut transcript, mut at_client, mut at_server) =
        (Vec::new(), BytesMut::new(), BytesMut::new());
    while client.wants_write() || server.wants_write() {
        carry(client, server, step, &mut transcript, &mut at_server).map_err(|e| ("server", e))?;
        carry(server, client, step, &mut transcript, &mut at_client).map_err(|e| ("client", e))?;
    }
    Ok(Conversation {
        transcript,
        at_client: at_client.to_vec(),
        at_server: at_server.to_vec(),
    })
}

#[test]
fn a_handshake_completes_at_any_segmentation_and_names_both_peers() {
    for step in [1, 2, 5, 100, 1 << 16] {
        let (mut c, mut s) = pair(Randomness::System);
        c.seal(b"GET / HTTP/1.1\r\n\r\n");
        assert!(c.held() > 0, "early plaintext is held");
        let Conversation {
            at_client,
            at_server,
            ..
        } = converse(&mut *c, &mut *s, step).unwrap();
        assert!(c.is_established() && s.is_established(), "step {step}");
        assert_eq!(c.held(), 0, "step {step}: nothing held once sent");
        assert!(at_client.is_empty());
        assert_eq!(at_server, b"GET / HTTP/1.1\r\n\r\n", "step {step}");
        assert_eq!(c.peer_identity(), Some(SERVER_ID));
        assert_eq!(s.peer_identity(), Some(CLIENT_ID));
        s.seal(b"HTTP/1.1 200 OK\r\n\r\n");
        s.close();
        let at_client = converse(&mut *c, &mut *s, step).unwrap().at_client;
        assert_eq!(at_client, b"HTTP/1.1 200 OK\r\n\r\n", "step {step}");
        assert!(c.is_peer_closed(), "step {step}: close_notify arrived");
        assert!(!s.is_peer_closed());
    }
}

#[test]
fn large_bodies_cross_in_many_records() {
    let (mut c, mut s) = pair(Randomness::System);
    converse(&mut *c, &mut *s, 4096).unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.seal(&body);
    let at_server = converse(&mut *c, &mut *s, 1500).unwrap().at_server;
    assert_eq!(at_server, body);
}

fn seeded_transcript(seed: u64) -> Vec<u8> {
    let (mut c, mut s) = pair(Randomness::Seeded(seed));
    c.seal(b"GET / HTTP/1.1\r\n\r\n");
    let mut transcript = converse(&mut *c, &mut *s, 7).unwrap().transcript;
    s.seal(b"HTTP/1.1 204 No Content\r\n\r\n");
    let more = converse(&mut *c, &mut *s, 7).unwrap();
    transcript.extend(more.transcript);
    assert_eq!(more.at_client, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(c.peer_identity(), Some(SERVER_ID));
    transcript
}

#[test]
fn seeded_handshakes_replay_byte_for_byte_and_seeds_differ() {
    let a = seeded_transcript(42);
    assert!(a.len() > 1000, "a whole handshake with certificates");
    assert_eq!(a, seeded_transcript(42), "same seed, same wire bytes");
    assert_ne!(
        a,
        seeded_transcript(43),
        "another seed, other randoms and keys"
    );
    let (mut c1, mut s1) = pair(Randomness::System);
    let (mut c2, mut s2) = pair(Randomness::System);
    let t1 = converse(&mut *c1, &mut *s1, 4096).unwrap().transcript;
    let t2 = converse(&mut *c2, &mut *s2, 4096).unwrap().transcript;
    assert_ne!(t1, t2, "the production provider is random");
}

#[test]
fn plaintext_is_a_protocol_error_with_an_alert() {
    let (_, mut s) = pair(Randomness::System);
    let err = s
        .receive(
            Instant::ZERO,
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
            &mut BytesMut::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind, crate::transport::TransformErrorKind::Protocol);
    assert!(err.to_string().contains("client 10.0.0.1:40000"), "{err}");
    assert!(s.wants_write(), "an alert goes out");
}

#[test]
fn a_certificate_not_yet_valid_is_refused_by_name() {
    let ca = TestCa::new("root", 1);
    let mut leaf = Leaf::valid(CLIENT_ID, 2);
    leaf.not_before = UNIX_BASE + std::time::Duration::from_secs(3600);
    let client_creds = ca.issue(leaf, vec![ca.root()], "cluster.local");
    let server_creds = ca.issue(Leaf::valid(SERVER_ID, 3), vec![ca.root()], "cluster.local");
    let mut client = MtlsTransports::new(&client_creds, settings(Randomness::System)).unwrap();
    let mut server = MtlsTransports::new(&server_creds, settings(Randomness::System)).unwrap();
    let endpoint = Endpoint::Upstream {
        cluster: "reviews",
        addr: addr("10.0.0.2:9080"),
        tls: ResolvedUpstreamTls::Mesh {
            subject_alt_names: &[],
            sni: None,
        },
    };
    let mut c = transform(client.transport(Instant::ZERO, endpoint, None).unwrap());
    let endpoint = Endpoint::Downstream {
        terminate: None,
        listener: "inbound",
        peer: addr("10.0.0.1:40000"),
        local: addr("10.0.0.2:9080"),
        mode: InboundMode::Strict,
    };
    let mut s = transform(server.transport(Instant::ZERO, endpoint, None).unwrap());
    let (side, err) = converse(&mut *c, &mut *s, 4096).err().expect("refused");
    assert_eq!(side, "server");
    let text = err.to_string();
    assert!(
        text.contains("certificate not yet valid") && text.contains(CLIENT_ID),
        "{text}"
    );
}

/// Whatever bytes arrive, the server transform answers with an error or waits for more; it
/// never panics, and after an error it has its alert ready.
#[quickcheck_macros::quickcheck]
fn arbitrary_bytes_never_panic_a_server(chunks: Vec<Vec<u8>>) -> bool {
    let (_, mut s) = pair(Randomness::System);
    let mut plain = BytesMut::new();
    for chunk in &chunks {
        if s.receive(Instant::ZERO, chunk, &mut plain).is_err() {
            return plain.is_empty() && s.wants_write();
        }
    }
    plain.is_empty()
}

/// A gateway port's `ISTIO_MUTUAL` termination: one server for every host.
fn istio_mutual_tls(
    subject_alt_names: &[&str],
) -> std::sync::Arc<crate::transport::policy::TerminatedTls> {
    use crate::transport::policy::{ClientCertificates, ServerCertificate, TerminatedTls};
    std::sync::Arc::new(TerminatedTls {
        servers: vec![ServerCertificate {
            hosts: vec!["*".into()],
            chain_pem: String::new(),
            key_pem: String::new(),
            client_ca_pem: None,
            subject_alt_names: subject_alt_names.iter().map(|s| s.to_string()).collect(),
            route_table: None,
            clients: ClientCertificates::Mesh,
            pins: Default::default(),
            plaintext: Default::default(),
        }],
        passthrough: Vec::new(),
    })
}

/// A gateway port terminating `ISTIO_MUTUAL` with the credentials `gateway` holds, and the
/// transform it gives a client.
fn istio_mutual_port(
    gateway: &MeshCredentials,
    subject_alt_names: &[&str],
) -> Box<dyn ByteTransform> {
    let tls = istio_mutual_tls(subject_alt_names);
    let mut factory = MtlsTransports::new(gateway, settings(Randomness::System)).unwrap();
    let endpoint = Endpoint::Downstream {
        terminate: Some(&tls),
        listener: "0.0.0.0_443",
        peer: addr("10.0.0.1:40000"),
        local: addr("10.0.0.9:443"),
        mode: InboundMode::Disable,
    };
    transform(factory.transport(Instant::ZERO, endpoint, None).unwrap())
}

/// Gateway `ISTIO_MUTUAL` (pilot's BuildListenerTLSContext: the workload certificate, the
/// mesh roots, a client certificate required): a mesh client verifies the gateway's SPIFFE
/// certificate and the gateway names the client's verified id, the peer principal; a server
/// `subjectAltNames` list that names another id refuses it; a client with no certificate is
/// refused.
#[test]
fn a_gateway_istio_mutual_port_is_a_mesh_server_with_the_gateway_identity() {
    const GATEWAY_ID: &str = "spiffe://cluster.local/ns/istio-system/sa/ingress";
    let ca = TestCa::new("root", 1);
    let gateway = ca.issue(Leaf::valid(GATEWAY_ID, 4), vec![ca.root()], "cluster.local");
    let client_creds = ca.issue(Leaf::valid(CLIENT_ID, 2), vec![ca.root()], "cluster.local");
    let mut client = MtlsTransports::new(&client_creds, settings(Randomness::System)).unwrap();
    let mesh_client = |client: &mut MtlsTransports| {
        let endpoint = Endpoint::Upstream {
            cluster: "gateway",
            addr: addr("10.0.0.9:443"),
            tls: ResolvedUpstreamTls::Mesh {
                subject_alt_names: &[],
                sni: None,
            },
        };
        transform(client.transport(Instant::ZERO, endpoint, None).unwrap())
    };
    let mut c = mesh_client(&mut client);
    let mut s = istio_mutual_port(&gateway, &[]);
    c.seal(b"GET / HTTP/1.1\r\n\r\n");
    let talk = converse(&mut *c, &mut *s, 1500).unwrap();
    assert_eq!(talk.at_server, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        c.peer_identity(),
        Some(GATEWAY_ID),
        "the gateway's own identity"
    );
    assert_eq!(
        s.peer_identity(),
        Some(CLIENT_ID),
        "the principal policies see"
    );

    let mut c = mesh_client(&mut client);
    let mut s = istio_mutual_port(&gateway, &["spiffe://cluster.local/ns/default/sa/other"]);
    let (side, err) = converse(&mut *c, &mut *s, 1500).err().expect("refused");
    assert_eq!(side, "server");
    assert!(err.to_string().contains("unexpected identity"), "{err}");

    let anonymous = std::sync::Arc::new(crate::transport::policy::OriginationTls {
        sni: "gateway.example".into(),
        subject_alt_names: Vec::new(),
        ca_pem: None,
        insecure_skip_verify: true,
        client_cert: None,
    });
    let endpoint = Endpoint::Upstream {
        cluster: "gateway",
        addr: addr("10.0.0.9:443"),
        tls: ResolvedUpstreamTls::Origination(&anonymous),
    };
    let mut c = transform(client.transport(Instant::ZERO, endpoint, None).unwrap());
    let mut s = istio_mutual_port(&gateway, &[]);
    c.seal(b"GET / HTTP/1.1\r\n\r\n");
    let (side, err) = converse(&mut *c, &mut *s, 1500).err().expect("refused");
    assert_eq!(side, "server");
    assert!(err.to_string().contains("no client certificate"), "{err}");
}

/// Without credentials (no fixed ones, no identity in the snapshot) an ISTIO_MUTUAL port
/// cannot be set up: the connection is refused with a setup error saying why.
#[test]
fn a_gateway_istio_mutual_port_without_an_identity_is_a_setup_error() {
    let tls = istio_mutual_tls(&[]);
    let mut factory = MtlsTransports::from_config(settings(Randomness::System));
    let endpoint = Endpoint::Downstream {
        terminate: Some(&tls),
        listener: "0.0.0.0_443",
        peer: addr("10.0.0.1:40000"),
        local: addr("10.0.0.9:443"),
        mode: InboundMode::Disable,
    };
    let Err(err) = factory.transport(Instant::ZERO, endpoint, None) else {
        panic!("an ISTIO_MUTUAL port without an identity must not be set up");
    };
    assert!(err.to_string().contains("no mesh identity"), "{err}");
}
