//! Full mTLS handshakes per second through the engine's TLS transform, both ends in this one
//! thread (so one core does a client's and a server's work per handshake), with certificates
//! from the control plane's CA. No resumption: Trellis turns tickets and resumption off.
//!
//! `cargo run --release -p trellis-bench --example tls_handshakes [ecdsa|ed25519] [count]`

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use trellis_control::ca::{CertificateAuthority, WorkloadIdentity};
use trellis_engine::transport::policy::{InboundMode, ResolvedUpstreamTls};
use trellis_engine::transport::tls::{MeshCredentials, MtlsSettings, MtlsTransports, Randomness};
use trellis_engine::transport::{ByteTransform, Endpoint, Transport, TransportFactory};
use trellis_engine::Instant;

const TD: &str = "cluster.local";

fn credentials(
    ca: &mut CertificateAuthority,
    alg: &'static SignatureAlgorithm,
    sa: &str,
) -> MeshCredentials {
    let key = KeyPair::generate_for(alg).expect("key");
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .expect("csr");
    let id = WorkloadIdentity::new(TD, "default", sa).expect("identity");
    let csr = csr.pem().expect("pem");
    let issued = ca
        .issue(&csr, &id, SystemTime::now(), None)
        .expect("issued");
    MeshCredentials::from_pem(&issued.chain_pem, &key.serialize_pem(), ca.root_pem(), TD)
        .expect("credentials")
}

fn factory(creds: &MeshCredentials) -> MtlsTransports {
    let settings = MtlsSettings {
        unix_base: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970"),
        randomness: Randomness::System,
    };
    MtlsTransports::new(creds, settings).expect("factory")
}

fn transform(f: &mut MtlsTransports, endpoint: Endpoint<'_>) -> Box<dyn ByteTransform> {
    match f.transport(Instant::ZERO, endpoint, None) {
        Ok(Transport::Transformed(t) | Transport::Sniffing { tls: t, .. }) => t,
        other => panic!("{other:?}"),
    }
}

fn pass(from: &mut dyn ByteTransform, to: &mut dyn ByteTransform, wire: &mut BytesMut) {
    wire.clear();
    from.poll_wire(wire);
    if !wire.is_empty() {
        to.receive(Instant::ZERO, wire, &mut BytesMut::new())
            .expect("handshake");
    }
}

fn main() {
    let alg = match std::env::args().nth(1).as_deref() {
        Some("ed25519") => &PKCS_ED25519,
        _ => &PKCS_ECDSA_P256_SHA256,
    };
    let count: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let ca_key = KeyPair::generate_for(alg).expect("key");
    let ten_years = Duration::from_secs(3650 * 86_400);
    let mut ca =
        CertificateAuthority::self_signed(TD, ca_key, SystemTime::now(), ten_years).expect("root");
    let mut client = factory(&credentials(&mut ca, alg, "productpage"));
    let mut server = factory(&credentials(&mut ca, alg, "reviews"));
    let addr = "10.0.0.2:9080".parse().expect("addr");
    let peer = "10.0.0.1:40000".parse().expect("addr");
    let mut wire = BytesMut::new();
    let mut once = || {
        let mut c = transform(
            &mut client,
            Endpoint::Upstream {
                cluster: "reviews",
                addr,
                tls: ResolvedUpstreamTls::Mesh {
                    subject_alt_names: &[],
                    sni: None,
                },
            },
        );
        let down = Endpoint::Downstream {
            terminate: None,
            listener: "in",
            peer,
            local: addr,
            mode: InboundMode::Strict,
        };
        let mut s = transform(&mut server, down);
        while c.wants_write() || s.wants_write() {
            pass(&mut *c, &mut *s, &mut wire);
            pass(&mut *s, &mut *c, &mut wire);
        }
        assert!(c.is_established() && s.is_established());
    };
    for _ in 0..count / 10 {
        once();
    }
    let start = std::time::Instant::now();
    for _ in 0..count {
        once();
    }
    let per = start.elapsed() / count;
    let name = if alg == &PKCS_ED25519 {
        "Ed25519"
    } else {
        "ECDSA P-256"
    };
    println!(
        "{name}: {count} full mTLS handshakes (client + server work in one thread), {:.1} µs each, {:.0} per second",
        per.as_secs_f64() * 1e6,
        1.0 / per.as_secs_f64()
    );
}
