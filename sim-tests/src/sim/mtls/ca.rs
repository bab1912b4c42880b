//! The simulated mesh CA: a root and workload certificates made with rcgen from the seed.
//!
//! Ed25519 everywhere: RFC 8032 signatures have no randomness, so with keys drawn from the
//! seed every certificate, and every handshake signed with it, is the same on each run (the
//! engine's seeded crypto provider covers the rest of the handshake). Certificates carry the
//! workload's SPIFFE id as their URI SAN, as istiod's CA issues them, and their validity is in
//! simulated time: engine instant zero is [`UNIX_BASE`].

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, PKCS_ED25519,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use trellis_engine::config::MeshIdentity;

/// The UNIX time of simulated instant zero.
pub const UNIX_BASE: Duration = Duration::from_secs(1_700_000_000);

/// The mesh's trust domain.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// Why the simulated CA could not issue (only a bug in the simulator itself can cause one).
#[derive(Debug, thiserror::Error)]
#[error("simulated CA: {0}")]
pub struct CaError(String);

pub(crate) fn ca_err(e: impl std::fmt::Display) -> CaError {
    CaError(e.to_string())
}

/// One certificate the CA issued, and what the checks need to know of it.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
    pub spiffe: String,
    /// notAfter, UNIX seconds.
    pub not_after: u64,
    /// SHA-256 of the DER, lower-case hex: the `Hash=` of Envoy's XFCC element.
    pub hash: String,
    /// The root it chains to, as a bit of [`Roots`] (0: a root outside the mesh's trust).
    pub root: Roots,
    pub identity: Arc<MeshIdentity>,
}

/// A set of the mesh's roots, one bit each: which a bundle holds, or which a certificate
/// chains to.
pub type Roots = u8;
/// The root the mesh starts with.
pub const FIRST_ROOT: Roots = 1;
/// The root a rotation introduces ([`super::rotation`]).
pub const NEXT_ROOT: Roots = 2;

/// A root and its key, drawn from the seed.
pub struct SimCa {
    issuer: Issuer<'static, KeyPair>,
    rng: fastrand::Rng,
    serial: u64,
    /// The bundle its workloads trust: its own root, or (an impostor's CA) the mesh's.
    bundle_pem: String,
    /// Its root's bit (0 for an impostor's).
    root: Roots,
    /// Its root certificate, PEM.
    root_pem: String,
}

/// An Ed25519 key whose secret is 32 bytes from `rng` (PKCS#8 v1).
pub(crate) fn ed25519_key(rng: &mut fastrand::Rng) -> Result<KeyPair, CaError> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend((0..32).map(|_| rng.u8(..)));
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &PKCS_ED25519)
        .map_err(ca_err)
}

pub(crate) fn at(unix_secs: u64) -> Result<time::OffsetDateTime, CaError> {
    let secs = i64::try_from(unix_secs).map_err(ca_err)?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(ca_err)
}

/// UNIX seconds of a simulated instant given in ms.
pub fn unix_secs(sim_ms: u64) -> u64 {
    UNIX_BASE.as_secs() + sim_ms / 1000
}

impl SimCa {
    pub fn new(seed: u64) -> Result<SimCa, CaError> {
        SimCa::with_stream(
            seed ^ 0xca5e_ed00_0000_0005,
            "simulated mesh root",
            FIRST_ROOT,
        )
    }

    /// The CA a root rotation moves the mesh to: a new root and key, from a stream of its own.
    pub fn successor(seed: u64) -> Result<SimCa, CaError> {
        SimCa::with_stream(seed ^ 0x2007_0a7e_0000_0025, "next mesh root", NEXT_ROOT)
    }

    /// Its root certificate, PEM (what a trust bundle lists).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A CA outside the mesh's trust whose workloads trust `mesh`'s root: what an impostor
    /// with a certificate of its own making looks like.
    pub fn impostor(seed: u64, mesh: &SimCa) -> Result<SimCa, CaError> {
        let mut ca = SimCa::with_stream(seed ^ 0x1b05_7e00_0000_0007, "impostor root", 0)?;
        ca.bundle_pem = mesh.bundle_pem.clone();
        Ok(ca)
    }

    fn with_stream(stream: u64, name: &str, bit: Roots) -> Result<SimCa, CaError> {
        let mut rng = fastrand::Rng::with_seed(stream);
        let key = ed25519_key(&mut rng)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(UNIX_BASE.as_secs() - 86_400)?;
        params.not_after = at(UNIX_BASE.as_secs() + 3650 * 86_400)?;
        params.serial_number = Some(SerialNumber::from(1u64));
        let root = params.self_signed(&key).map_err(ca_err)?;
        Ok(SimCa {
            bundle_pem: root.pem(),
            root_pem: root.pem(),
            issuer: Issuer::new(params, key),
            rng,
            serial: 1,
            root: bit,
        })
    }

    /// A workload certificate for `ns`/`sa`, valid from `from_ms` (less an hour, for clock
    /// skew as istiod allows) until `until_ms` (simulated ms, whole seconds).
    pub fn issue(
        &mut self,
        ns: &str,
        sa: &str,
        from_ms: u64,
        until_ms: u64,
    ) -> Result<IssuedCert, CaError> {
        let spiffe = format!("spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}");
        let key = ed25519_key(&mut self.rng)?;
        self.serial += 1;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(spiffe.as_str().try_into().map_err(ca_err)?)];
        params.not_before = at(unix_secs(from_ms).saturating_sub(3600))?;
        let not_after = unix_secs(until_ms);
        params.not_after = at(not_after)?;
        params.serial_number = Some(SerialNumber::from(self.serial));
        // Ed25519 keys sign; they never encipher.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).map_err(ca_err)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
        let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(IssuedCert {
            spiffe,
            not_after,
            hash,
            root: self.root,
            identity: Arc::new(MeshIdentity {
                chain_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                bundle_pem: self.bundle_pem.clone(),
                trust_domain: TRUST_DOMAIN.to_string(),
            }),
        })
    }
}
