//! The certificate authority: a root of its own or an intermediate under a root given as
//! files (Istio's plug-in CA), issuing workload certificates from CSRs.
//!
//! Time is always passed in: the CA never reads a clock, so tests (and the simulator) can issue
//! a certificate that is already expired, or walk a root rotation through its overlap.
//! Workload certificates follow Istio's: an empty subject, one SPIFFE URI SAN chosen by the CA
//! (not by the CSR), server and client auth, 24 hours by default.

use std::time::{Duration, SystemTime};

use pem::LineEnding::LF;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::identity::WorkloadIdentity;
use super::rotation::renewal_due;
use super::CaError;

/// Istio's default workload certificate lifetime.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Istio's default `MAX_WORKLOAD_CERT_TTL`.
pub const MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Workload certificates start a minute early, for clocks a little behind the CA's.
const BACKDATE: Duration = Duration::from_secs(60);

/// Istio's plug-in CA files (`cacerts` secret): the signing CA's certificate and key, the chain
/// from it up to the root, and the root.
#[derive(Clone, Debug)]
pub struct PluginFiles {
    /// `ca-cert.pem`
    pub ca_cert: String,
    /// `ca-key.pem`
    pub ca_key: String,
    /// `cert-chain.pem`: `ca-cert.pem`, then any intermediates, optionally the root.
    pub cert_chain: String,
    /// `root-cert.pem`
    pub root_cert: String,
}

/// A workload certificate the CA issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The workload's certificate.
    pub cert_pem: String,
    /// The certificate, then every CA certificate up to (not including) the root: what the
    /// workload presents.
    pub chain_pem: String,
    pub identity: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Issued {
    /// When the workload should ask for a new certificate: half-way through this one's life.
    pub fn renewal_due(&self) -> SystemTime {
        renewal_due(self.not_before, self.not_after)
    }
}

/// A certificate authority for one trust domain.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    /// The signing CA's certificate, then any intermediates above it, not the root (empty when
    /// the CA is the root itself).
    chain: Vec<String>,
    root_pem: String,
    /// The signing certificate's notAfter: nothing it issues outlives it.
    not_after: SystemTime,
    /// Certificates issued so far (the low half of each serial number).
    issued: u64,
}

fn at(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn plugin(file: &str, why: impl std::fmt::Display) -> CaError {
    CaError::PlugIn(format!("{file}: {why}"))
}

/// The PEM blocks of a file, each re-encoded on its own (with LF line ends, as rcgen writes).
fn pem_blocks(file: &str, text: &str) -> Result<Vec<String>, CaError> {
    let blocks = pem::parse_many(text).map_err(|e| plugin(file, e))?;
    let certs: Vec<String> = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| pem::encode_config(b, pem::EncodeConfig::new().set_line_ending(LF)))
        .collect();
    if certs.is_empty() {
        return Err(plugin(file, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn der_of(file: &str, pem_text: &str) -> Result<Vec<u8>, CaError> {
    Ok(pem::parse(pem_text)
        .map_err(|e| plugin(file, e))?
        .into_contents())
}

impl CertificateAuthority {
    /// A new self-signed root for `trust_domain`, signing with `key`, valid from `now` for
    /// `validity` (Istio's self-signed root: 10 years).
    pub fn self_signed(
        trust_domain: &str,
        key: KeyPair,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Self, CaError> {
        let params = ca_params(trust_domain, "Trellis root CA", now, validity, None);
        let root = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            issuer: Issuer::new(params, key),
            chain: Vec::new(),
            root_pem: root.pem(),
            not_after: now + validity,
            issued: 0,
        })
    }

    /// The files of an intermediate CA signed by this one, as an operator would give them to
    /// [`CertificateAuthority::plug_in`] (tests, and `trellis ca` tooling later).
    pub fn intermediate_files(
        &mut self,
        key: KeyPair,
        now: SystemTime,
        validity: Duration,
    ) -> Result<PluginFiles, CaError> {
        let serial = self.next_serial(now);
        let params = ca_params(
            &self.trust_domain,
            "Trellis intermediate CA",
            now,
            validity,
            Some(serial),
        );
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut cert_chain = cert.pem();
        for above in &self.chain {
            cert_chain.push_str(above);
        }
        Ok(PluginFiles {
            ca_cert: cert.pem(),
            ca_key: key.serialize_pem(),
            cert_chain,
            root_cert: self.root_pem.clone(),
        })
    }

    /// An intermediate CA from Istio's plug-in files. Checked: the key belongs to `ca-cert.pem`,
    /// which is a CA; the chain's top is signed by the root.
    pub fn plug_in(trust_domain: &str, files: &PluginFiles) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(&files.ca_key).map_err(|e| plugin("ca-key.pem", e))?;
        let ca_der = der_of("ca-cert.pem", &files.ca_cert)?;
        let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| plugin("ca-cert.pem", e))?;
        if !ca.is_ca() {
            return Err(plugin("ca-cert.pem", "not a CA certificate"));
        }
        if ca.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(plugin("ca-key.pem", "does not match ca-cert.pem"));
        }
        let root_der = der_of("root-cert.pem", &files.root_cert)?;
        let (_, root) =
            X509Certificate::from_der(&root_der).map_err(|e| plugin("root-cert.pem", e))?;
        let root_pem = pem_blocks("root-cert.pem", &files.root_cert)?.remove(0);
        let chain: Vec<String> = pem_blocks("cert-chain.pem", &files.cert_chain)?
            .into_iter()
            .filter(|c| *c != root_pem)
            .collect();
        let top_der = match chain.last() {
            Some(top) => der_of("cert-chain.pem", top)?,
            None => return Err(plugin("cert-chain.pem", "holds only the root")),
        };
        let (_, top) =
            X509Certificate::from_der(&top_der).map_err(|e| plugin("cert-chain.pem", e))?;
        if top.issuer() != root.subject() || top.verify_signature(Some(root.public_key())).is_err()
        {
            return Err(plugin(
                "cert-chain.pem",
                format!(
                    "ends at {}, not issued by the root {}",
                    top.subject(),
                    root.subject()
                ),
            ));
        }
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(ca.validity().not_after.timestamp()).unwrap_or(0));
        let issuer =
            Issuer::from_ca_cert_der(&ca_der.into(), key).map_err(|e| plugin("ca-cert.pem", e))?;
        Ok(CertificateAuthority {
            trust_domain: trust_domain.to_string(),
            issuer,
            chain,
            root_pem,
            not_after,
            issued: 0,
        })
    }

    /// The root certificate (PEM): what this CA adds to the trust bundle.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Issue a certificate for `identity` to the key in `csr_pem`, valid from `now` for `ttl`
    /// (default 24 h). The CSR may name no URI, or this identity; anything else is refused.
    pub fn issue(
        &mut self,
        csr_pem: &str,
        identity: &WorkloadIdentity,
        now: SystemTime,
        ttl: Option<Duration>,
    ) -> Result<Issued, CaError> {
        if identity.trust_domain != self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                requested: identity.trust_domain.clone(),
                ca: self.trust_domain.clone(),
            });
        }
        let ttl = ttl.unwrap_or(DEFAULT_WORKLOAD_TTL);
        if ttl > MAX_WORKLOAD_TTL {
            return Err(CaError::TtlTooLong {
                ttl,
                max: MAX_WORKLOAD_TTL,
            });
        }
        if now >= self.not_after {
            return Err(CaError::CaExpired);
        }
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        let uri = identity.spiffe_uri();
        let requested: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::URI(u) => Some(u.as_str().to_string()),
                _ => None,
            })
            .collect();
        if requested.iter().any(|r| *r != uri) {
            return Err(CaError::CsrIdentityMismatch {
                requested,
                identity: uri,
            });
        }
        // A certificate cannot outlive the CA that signed it.
        let not_before = now - BACKDATE;
        let not_after = (now + ttl).min(self.not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|_| CaError::BadIdentity(uri.clone()))?,
        )];
        params.not_before = at(not_before);
        params.not_after = at(not_after);
        params.serial_number = Some(self.next_serial(now));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        csr.params = params;
        let cert = csr.signed_by(&self.issuer)?;
        let cert_pem = cert.pem();
        let mut chain_pem = cert_pem.clone();
        for above in &self.chain {
            chain_pem.push_str(above);
        }
        Ok(Issued {
            cert_pem,
            chain_pem,
            identity: uri,
            not_before: truncate_to_seconds(not_before),
            not_after: truncate_to_seconds(not_after),
        })
    }

    /// Sign a leaf certificate of `params` for `key`: this CA's serial, validity from a minute
    /// before `now` for `ttl` (never past the CA's own); the certificate and the chain above it.
    pub(super) fn sign(
        &mut self,
        mut params: CertificateParams,
        key: &KeyPair,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<(String, Vec<String>), CaError> {
        if now >= self.not_after {
            return Err(CaError::CaExpired);
        }
        params.not_before = at(now - BACKDATE);
        params.not_after = at((now + ttl).min(self.not_after));
        params.serial_number = Some(self.next_serial(now));
        let cert = params.signed_by(key, &self.issuer)?;
        Ok((cert.pem(), self.chain.clone()))
    }

    /// A serial number unique to this CA: the issue time's seconds, then a counter; positive.
    fn next_serial(&mut self, now: SystemTime) -> SerialNumber {
        self.issued += 1;
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&secs.to_be_bytes());
        bytes[8..].copy_from_slice(&self.issued.to_be_bytes());
        bytes[0] = (bytes[0] & 0x7f) | 0x01;
        SerialNumber::from_slice(&bytes)
    }
}

/// X.509 times have whole seconds.
fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// A CA certificate's parameters: `serial` when signed by another CA.
fn ca_params(
    trust_domain: &str,
    name: &str,
    now: SystemTime,
    validity: Duration,
    serial: Option<SerialNumber>,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(now);
    params.not_after = at(now + validity);
    params.use_authority_key_identifier_extension = serial.is_some();
    params.serial_number = serial;
    params
}
