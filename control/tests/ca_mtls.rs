//! The CA's certificates in the engine's TLS: a plug-in intermediate's chain verifies, a root
//! rotation keeps old certificates trusted through the overlap and not after, and a renewed
//! certificate under the new root is trusted once the old root is gone.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use trellis_control::ca::{CertificateAuthority, Issued, TrustBundle, WorkloadIdentity};
use trellis_engine::time::Instant;
use trellis_engine::transport::policy::{InboundMode, ResolvedUpstreamTls};
use trellis_engine::transport::tls::{MeshCredentials, MtlsSettings, MtlsTransports, Randomness};
use trellis_engine::transport::{
    ByteTransform, Endpoint, TransformError, Transport, TransportFactory,
};

const TD: &str = "cluster.local";
const DAY: Duration = Duration::from_secs(86_400);

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const T0: u64 = 1_700_000_000;

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

/// A workload: its key, and a certificate for `sa` from `ca` at `now` (24 h).
fn workload(ca: &mut CertificateAuthority, sa: &str, now: SystemTime) -> (KeyPair, Issued) {
    workload_for(ca, sa, now, None)
}

fn workload_for(
    ca: &mut CertificateAuthority,
    sa: &str,
    now: SystemTime,
    ttl: Option<Duration>,
) -> (KeyPair, Issued) {
    let key = key();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let id = WorkloadIdentity::new(TD, "default", sa).unwrap();
    let issued = ca.issue(&csr.pem().unwrap(), &id, now, ttl).unwrap();
    (key, issued)
}

fn creds(w: &(KeyPair, Issued), bundle: &str) -> MeshCredentials {
    MeshCredentials::from_pem(&w.1.chain_pem, &w.0.serialize_pem(), bundle, TD).unwrap()
}

fn transform(
    creds: &MeshCredentials,
    at: SystemTime,
    endpoint: Endpoint<'_>,
) -> Box<dyn ByteTransform> {
    let settings = MtlsSettings {
        unix_base: at.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
        randomness: Randomness::System,
    };
    let mut factory = MtlsTransports::new(creds, settings).unwrap();
    match factory.transport(Instant::ZERO, endpoint, None).unwrap() {
        Transport::Transformed(t) | Transport::Sniffing { tls: t, .. } => t,
        other => panic!("{other:?}"),
    }
}

/// What `from` wants sent, into `to`.
fn pass(
    from: &mut dyn ByteTransform,
    to: &mut dyn ByteTransform,
    plain: &mut BytesMut,
) -> Result<(), TransformError> {
    let mut wire = BytesMut::new();
    from.poll_wire(&mut wire);
    if wire.is_empty() {
        return Ok(());
    }
    to.receive(Instant::ZERO, &wire, plain)
}

/// A full handshake at `at` between a client and a server; each side's view of the other.
fn handshake(
    client: &MeshCredentials,
    server: &MeshCredentials,
    at: SystemTime,
) -> Result<(String, String), TransformError> {
    let addr = "10.0.0.2:80".parse().unwrap();
    let mut c = transform(
        client,
        at,
        Endpoint::Upstream {
            cluster: "c",
            addr,
            tls: ResolvedUpstreamTls::Mesh {
                subject_alt_names: &[],
                sni: None,
            },
        },
    );
    let mut s = transform(
        server,
        at,
        Endpoint::Downstream {
            terminate: None,
            listener: "in",
            peer: "10.0.0.1:5000".parse().unwrap(),
            local: addr,
            mode: InboundMode::Strict,
        },
    );
    let mut plain = BytesMut::new();
    while c.wants_write() || s.wants_write() {
        pass(&mut *c, &mut *s, &mut plain)?;
        pass(&mut *s, &mut *c, &mut plain)?;
    }
    assert!(c.is_established() && s.is_established());
    Ok((
        c.peer_identity().unwrap().to_string(),
        s.peer_identity().unwrap().to_string(),
    ))
}

#[test]
fn a_plug_in_intermediates_workloads_talk_mtls() {
    let mut root = CertificateAuthority::self_signed(TD, key(), t(T0), 3650 * DAY).unwrap();
    let files = root.intermediate_files(key(), t(T0), 365 * DAY).unwrap();
    let mut ca = CertificateAuthority::plug_in(TD, &files).unwrap();
    let bundle = TrustBundle::new(ca.root_pem());
    let a = workload(&mut ca, "productpage", t(T0));
    let b = workload(&mut ca, "reviews", t(T0));
    let now = t(T0 + 3600);
    let (seen_by_client, seen_by_server) = handshake(
        &creds(&a, &bundle.pem(now)),
        &creds(&b, &bundle.pem(now)),
        now,
    )
    .unwrap();
    assert_eq!(
        seen_by_client,
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    assert_eq!(
        seen_by_server,
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
    // Past its 24 hours the server's certificate is refused by the client.
    let late = t(T0 + 25 * 3600);
    let err = handshake(
        &creds(&a, &bundle.pem(late)),
        &creds(&b, &bundle.pem(late)),
        late,
    )
    .unwrap_err();
    assert!(err.to_string().contains("certificate expired"), "{err}");
}

#[test]
fn a_root_rotation_trusts_both_roots_through_the_overlap_only() {
    let mut old = CertificateAuthority::self_signed(TD, key(), t(T0), 3650 * DAY).unwrap();
    let mut new = CertificateAuthority::self_signed(TD, key(), t(T0), 3650 * DAY).unwrap();
    let mut bundle = TrustBundle::new(old.root_pem());
    // a's certificate from the old root lasts a week (renewal due after 3.5 days).
    let a_old = workload_for(&mut old, "productpage", t(T0), Some(7 * DAY));
    // Rotation an hour later with a four-day overlap; b is issued under the new root.
    let rotated = t(T0 + 3600);
    bundle.rotate(new.root_pem(), rotated, 4 * DAY).unwrap();
    let b_new = workload(&mut new, "reviews", rotated);
    let during = rotated + Duration::from_secs(600);
    let pem = bundle.pem(during);
    assert_eq!(bundle.roots(during).len(), 2);
    handshake(&creds(&a_old, &pem), &creds(&b_new, &pem), during)
        .expect("old and new roots are both trusted during the overlap");
    // a renews under the new root when due, inside the overlap.
    let due = a_old.1.renewal_due();
    assert!(due < rotated + 4 * DAY, "renewal falls inside the overlap");
    let a_renewed = workload(&mut new, "productpage", due);
    // After the overlap the old root is gone: a's old certificate, still within its validity,
    // is refused as from an unknown CA; the renewed one passes.
    let after = rotated + 4 * DAY + Duration::from_secs(1);
    let pem = bundle.pem(after);
    assert_eq!(bundle.roots(after), [new.root_pem()]);
    let b_now = workload(&mut new, "reviews", after);
    let err = handshake(&creds(&a_old, &pem), &creds(&b_now, &pem), after).unwrap_err();
    assert!(err.to_string().contains("unknown CA"), "{err}");
    let (_, seen) = handshake(&creds(&a_renewed, &pem), &creds(&b_now, &pem), after).unwrap();
    assert_eq!(seen, "spiffe://cluster.local/ns/default/sa/productpage");
}
