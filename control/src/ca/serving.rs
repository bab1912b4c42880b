//! TLS serving certificates for the control plane's own endpoints (the admission webhook), as
//! istiod serves its webhook with a DNS certificate from its own CA
//! (`istiod.istio-system.svc`, security/pkg/pki and pilot/pkg/bootstrap/istio_ca.go).
//!
//! Unlike a workload certificate (one SPIFFE URI, chosen by the CA from the caller), a serving
//! certificate names DNS names (the Service's `<name>.<namespace>.svc` the API server dials)
//! and is for server authentication only. It is signed by the same CA, so the webhook
//! configuration's `caBundle` is the mesh's root.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256,
};

use super::{CaError, CertificateAuthority};

/// A serving certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct ServingFiles {
    /// The certificate, then the intermediates above it (what the server presents).
    pub cert_chain: String,
    pub key: String,
    /// The root a client trusts (the webhook configuration's `caBundle`).
    pub root_cert: String,
}

/// The webhook's DNS names: `<service>.<namespace>.svc` (what the API server dials), and the
/// shorter and longer forms of the same Service.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}"),
        service.to_string(),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

impl CertificateAuthority {
    /// A serving certificate for `dns_names` (and, when a name is an IP address, that address),
    /// with a fresh ECDSA P-256 key, valid from `now` for `ttl`.
    pub fn issue_serving(
        &mut self,
        dns_names: &[String],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<ServingFiles, CaError> {
        if dns_names.is_empty() {
            return Err(CaError::BadIdentity(
                "a serving certificate needs a name".into(),
            ));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, dns_names[0].as_str());
        params.subject_alt_names = dns_names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| CaError::BadIdentity(format!("{name:?} is not a DNS name"))),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let (cert_pem, chain) = self.sign(params, &key, now, ttl)?;
        let mut cert_chain = cert_pem;
        for above in chain {
            cert_chain.push_str(&above);
        }
        Ok(ServingFiles {
            cert_chain,
            key: key.serialize_pem(),
            root_cert: self.root_pem().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::bootstrap::new_plugin_ca;

    #[test]
    fn a_serving_certificate_names_the_service_and_chains_to_the_root() {
        let now = SystemTime::now();
        let (files, _) = new_plugin_ca("cluster.local", now).unwrap();
        let mut ca = CertificateAuthority::plug_in("cluster.local", &files).unwrap();
        let names = service_dns_names("trellis-control", "trellis-system");
        let serving = ca
            .issue_serving(&names, now, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(serving.root_cert, files.root_cert);
        let der = pem::parse(&serving.cert_chain).unwrap().into_contents();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let dns: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            dns.contains(&"DNSName(trellis-control.trellis-system.svc)".to_string()),
            "{dns:?}"
        );
        assert!(ca.issue_serving(&[], now, Duration::from_secs(1)).is_err());
    }
}
