//! Making a mesh CA and workload credentials from nothing, for `trellis ca` and tests: a
//! self-signed root with an intermediate under it, laid out as Istio's plug-in CA files
//! (what Istio's `Makefile.selfsigned.mk` produces), and a workload's files as Istio mounts
//! them (`cert-chain.pem`, `key.pem`, `root-cert.pem`).
//!
//! Keys are ECDSA P-256, as istiod's. Pure functions: the caller writes the files.

use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};

use super::{CaError, CertificateAuthority, PluginFiles, WorkloadIdentity};

/// Istio's self-signed root lives 10 years; the intermediate here 5.
const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(5 * 365 * 86_400);

/// A new root and an intermediate under it, as plug-in CA files, and the root's key.
pub fn new_plugin_ca(
    trust_domain: &str,
    now: SystemTime,
) -> Result<(PluginFiles, String), CaError> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let root_key_pem = root_key.serialize_pem();
    let mut root = CertificateAuthority::self_signed(trust_domain, root_key, now, ROOT_VALIDITY)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let files = root.intermediate_files(key, now, INTERMEDIATE_VALIDITY)?;
    Ok((files, root_key_pem))
}

/// A workload's credentials, PEM.
#[derive(Clone, Debug)]
pub struct WorkloadFiles {
    /// `cert-chain.pem`: the workload certificate, then the intermediates.
    pub cert_chain: String,
    /// `key.pem`
    pub key: String,
    /// `root-cert.pem`
    pub root_cert: String,
    pub identity: String,
    pub not_after: SystemTime,
}

/// Issue `identity` a certificate from the plug-in CA `ca`, valid from `now` for `ttl`
/// (default 24 h), with a fresh key and a CSR, as a workload's agent would.
pub fn issue_workload(
    trust_domain: &str,
    ca: &PluginFiles,
    identity: &WorkloadIdentity,
    now: SystemTime,
    ttl: Option<Duration>,
) -> Result<WorkloadFiles, CaError> {
    let mut authority = CertificateAuthority::plug_in(trust_domain, ca)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names =
        vec![SanType::URI(identity.spiffe_uri().try_into().map_err(
            |e: rcgen::Error| CaError::BadIdentity(e.to_string()),
        )?)];
    let csr = params.serialize_request(&key)?.pem()?;
    let issued = authority.issue(&csr, identity, now, ttl)?;
    Ok(WorkloadFiles {
        cert_chain: issued.chain_pem,
        key: key.serialize_pem(),
        root_cert: authority.root_pem().to_string(),
        identity: issued.identity,
        not_after: issued.not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ca_issues_workload_files_that_chain_to_its_root() {
        let now = SystemTime::now();
        let (ca, root_key) = new_plugin_ca("cluster.local", now).unwrap();
        assert!(root_key.contains("PRIVATE KEY"));
        let id = WorkloadIdentity::new("cluster.local", "bookinfo", "reviews").unwrap();
        let files = issue_workload("cluster.local", &ca, &id, now, None).unwrap();
        assert_eq!(
            files.identity,
            "spiffe://cluster.local/ns/bookinfo/sa/reviews"
        );
        assert_eq!(files.root_cert, ca.root_cert);
        // The workload presents its certificate and the intermediate.
        assert_eq!(files.cert_chain.matches("BEGIN CERTIFICATE").count(), 2);
        let creds = trellis_engine::transport::tls::MeshCredentials::from_pem(
            &files.cert_chain,
            &files.key,
            &files.root_cert,
            "cluster.local",
        );
        assert!(creds.is_ok(), "{:?}", creds.err());
    }
}
