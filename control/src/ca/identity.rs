//! Workload identities as the CA issues them: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
//!
//! The CA decides the identity from who is asking (in Kubernetes, the pod's service account
//! token), never from what the CSR says, so this is the one place the URI is written.

use std::fmt;

use super::CaError;

/// A workload's identity: trust domain, namespace, service account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadIdentity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

/// A DNS label (RFC 1123), as Kubernetes requires of namespaces and service accounts.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

impl WorkloadIdentity {
    /// Checked: the trust domain, namespace and service account are DNS names.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, CaError> {
        for (what, value) in [
            ("trust domain", trust_domain),
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if !is_label(value) {
                return Err(CaError::BadIdentity(format!(
                    "{what} {value:?} is not a lower-case DNS name"
                )));
            }
        }
        Ok(WorkloadIdentity {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })
    }

    /// The SPIFFE URI.
    pub fn spiffe_uri(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe_uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_form_and_refusals() {
        let id = WorkloadIdentity::new("cluster.local", "default", "bookinfo-reviews").unwrap();
        assert_eq!(
            id.spiffe_uri(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
        );
        assert!(WorkloadIdentity::new("cluster.local", "Default", "x").is_err());
        assert!(WorkloadIdentity::new("cluster.local", "ns", "a/b").is_err());
        assert!(WorkloadIdentity::new("", "ns", "sa").is_err());
    }
}
