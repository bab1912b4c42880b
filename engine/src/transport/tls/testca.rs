//! A certificate authority for the engine's tests (the real one lives in trellis-control,
//! which the engine cannot depend on): Ed25519 keys from seeds, so certificates and handshakes
//! are reproducible, and any validity window or SAN a test needs, including wrong ones.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::factory::MeshCredentials;

/// The UNIX time of engine instant zero in these tests (2023-11-14T22:13:20Z).
pub const UNIX_BASE: Duration = Duration::from_secs(1_700_000_000);

/// An Ed25519 key whose secret is `seed` repeated (PKCS#8 v1).
pub fn ed25519_key(seed: u8) -> KeyPair {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &PKCS_ED25519)
        .expect("a valid Ed25519 PKCS#8 document")
}

fn at(unix: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix.as_secs() as i64).expect("a representable time")
}

/// A self-signed root.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    root: CertificateDer<'static>,
    root_pem: String,
}

/// What a workload certificate says, and when it is valid (UNIX times).
pub struct Leaf<'a> {
    pub san: Option<&'a str>,
    pub not_before: Duration,
    pub not_after: Duration,
    pub key_seed: u8,
}

impl<'a> Leaf<'a> {
    /// A certificate for `spiffe` valid from an hour before engine time zero for a day.
    pub fn valid(spiffe: &'a str, key_seed: u8) -> Self {
        Leaf {
            san: Some(spiffe),
            not_before: UNIX_BASE - Duration::from_secs(3600),
            not_after: UNIX_BASE + Duration::from_secs(86_400),
            key_seed,
        }
    }
}

impl TestCa {
    pub fn new(name: &str, key_seed: u8) -> Self {
        let key = ed25519_key(key_seed);
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(UNIX_BASE - Duration::from_secs(86_400));
        params.not_after = at(UNIX_BASE + Duration::from_secs(3650 * 86_400));
        let root = params.self_signed(&key).expect("self-signed root");
        TestCa {
            issuer: Issuer::new(params, key),
            root: root.der().clone(),
            root_pem: root.pem(),
        }
    }

    pub fn root(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// The root, PEM (a gateway server's `caCertificates`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A certificate outside the mesh for the DNS name `dns` (a gateway server's, or a client
    /// of one), valid as [`Leaf::valid`]: its DER, and its chain and key as PEM.
    pub fn issue_pem(&self, dns: &str, key_seed: u8) -> (CertificateDer<'static>, String, String) {
        let key = ed25519_key(key_seed);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::DnsName(dns.try_into().expect("a DNS name"))];
        params.not_before = at(UNIX_BASE - Duration::from_secs(3600));
        params.not_after = at(UNIX_BASE + Duration::from_secs(86_400));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        (cert.der().clone(), cert.pem(), key.serialize_pem())
    }

    /// A workload's credentials, trusting `bundle`, in `trust_domain`.
    pub fn issue(
        &self,
        leaf: Leaf<'_>,
        bundle: Vec<CertificateDer<'static>>,
        trust_domain: &str,
    ) -> MeshCredentials {
        let key = ed25519_key(leaf.key_seed);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = leaf
            .san
            .map(|s| SanType::URI(s.try_into().expect("an IA5 URI")))
            .into_iter()
            .collect();
        params.not_before = at(leaf.not_before);
        params.not_after = at(leaf.not_after);
        // Ed25519 keys sign; they never encipher.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        MeshCredentials {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            bundle,
            trust_domain: trust_domain.to_string(),
        }
    }
}
