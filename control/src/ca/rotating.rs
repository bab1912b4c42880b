//! The mesh CA through a root rotation: which CA signs what, and which roots are trusted.
//!
//! At a rotation the new CA signs every workload certificate from then on, and its root joins
//! the [`TrustBundle`] at once; the old root stays trusted for the overlap. Serving
//! certificates (the push channel's, the webhook's) stay signed by the old CA while its root
//! is still trusted: a sidecar that was disconnected when the new bundle was pushed, or that
//! started from an old copy of the roots, still recognises the control plane, reconnects and
//! is sent the new bundle. When the overlap ends the old root leaves the bundle and the
//! serving certificates move to the new CA (the caller re-issues them at
//! [`RotatingCa::next_change`]).
//!
//! A new intermediate under the same root (Istio's plug-in CA files replaced with another
//! intermediate) is not a rotation: it simply signs from then on.

use std::time::{Duration, SystemTime};

use super::serving::ServingFiles;
use super::{CaError, CertificateAuthority, TrustBundle};

/// The CAs of a mesh over time.
pub struct RotatingCa {
    current: CertificateAuthority,
    /// The CA replaced by the last rotation, while its root is trusted.
    previous: Option<CertificateAuthority>,
    bundle: TrustBundle,
}

impl RotatingCa {
    pub fn new(ca: CertificateAuthority) -> Self {
        let bundle = TrustBundle::new(ca.root_pem());
        RotatingCa {
            current: ca,
            previous: None,
            bundle,
        }
    }

    /// The CA that signs workload certificates.
    pub fn current(&mut self) -> &mut CertificateAuthority {
        &mut self.current
    }

    /// Sign with `new` from `now` on; when its root is a new one, trust the roots trusted
    /// until now for `overlap` more.
    pub fn rotate(
        &mut self,
        new: CertificateAuthority,
        now: SystemTime,
        overlap: Duration,
    ) -> Result<(), CaError> {
        if new.trust_domain() != self.current.trust_domain() {
            return Err(CaError::WrongTrustDomain {
                requested: new.trust_domain().to_string(),
                ca: self.current.trust_domain().to_string(),
            });
        }
        if new.root_pem() == self.current.root_pem() {
            self.current = new;
            return Ok(());
        }
        self.bundle.rotate(new.root_pem(), now, overlap)?;
        let old = std::mem::replace(&mut self.current, new);
        // Of two rotations within one overlap, the serving certificates stay with the oldest
        // CA still trusted: every sidecar has had its root the longest.
        if self.previous.is_none() {
            self.previous = Some(old);
        }
        self.expire(now);
        Ok(())
    }

    /// Forget the previous CA once its root is no longer trusted.
    fn expire(&mut self, now: SystemTime) {
        let trusted = self.bundle.roots(now);
        if let Some(previous) = &self.previous {
            if !trusted.contains(&previous.root_pem()) {
                self.previous = None;
            }
        }
    }

    /// The roots trusted at `now`, PEM (what sidecars and the ConfigMaps get).
    pub fn bundle_pem(&mut self, now: SystemTime) -> String {
        self.expire(now);
        self.bundle.pem(now)
    }

    /// When the bundle (and so the serving certificates' signer) next changes by itself.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        self.bundle.next_change(now)
    }

    /// The root the serving certificates chain to at `now`.
    pub fn serving_root(&mut self, now: SystemTime) -> String {
        self.expire(now);
        match &self.previous {
            Some(previous) => previous.root_pem().to_string(),
            None => self.current.root_pem().to_string(),
        }
    }

    /// A serving certificate for `names` from the CA that signs them at `now`.
    pub fn issue_serving(
        &mut self,
        names: &[String],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<ServingFiles, CaError> {
        self.expire(now);
        match &mut self.previous {
            Some(previous) => previous.issue_serving(names, now, ttl),
            None => self.current.issue_serving(names, now, ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::bootstrap::new_plugin_ca;

    fn ca(now: SystemTime) -> CertificateAuthority {
        let (files, _) = new_plugin_ca("cluster.local", now).unwrap();
        CertificateAuthority::plug_in("cluster.local", &files).unwrap()
    }

    #[test]
    fn serving_stays_with_the_old_root_for_the_overlap_workloads_move_at_once() {
        let t0 = SystemTime::now();
        let old = ca(t0);
        let old_root = old.root_pem().to_string();
        let mut cas = RotatingCa::new(old);
        assert_eq!(cas.bundle_pem(t0), old_root);
        let new = ca(t0);
        let new_root = new.root_pem().to_string();
        let overlap = Duration::from_secs(60);
        cas.rotate(new, t0, overlap).unwrap();
        assert_eq!(cas.current().root_pem(), new_root);
        assert_eq!(cas.bundle_pem(t0), format!("{old_root}{new_root}"));
        assert_eq!(cas.serving_root(t0), old_root);
        assert_eq!(cas.next_change(t0), Some(t0 + overlap));
        let names = vec!["trellis-control.trellis-system.svc".to_string()];
        let during = cas
            .issue_serving(&names, t0, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(during.root_cert, old_root);
        let after = t0 + overlap;
        assert_eq!(cas.bundle_pem(after), new_root);
        assert_eq!(cas.serving_root(after), new_root);
        let moved = cas
            .issue_serving(&names, after, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(moved.root_cert, new_root);
        assert_eq!(cas.next_change(after), None);
    }

    #[test]
    fn a_new_intermediate_under_the_same_root_is_no_rotation() {
        let t0 = SystemTime::now();
        let (files, root_key) = new_plugin_ca("cluster.local", t0).unwrap();
        let mut cas =
            RotatingCa::new(CertificateAuthority::plug_in("cluster.local", &files).unwrap());
        // Another intermediate signed by the same root.
        let root_key = rcgen::KeyPair::from_pem(&root_key).unwrap();
        let root_der = pem::parse(&files.root_cert).unwrap().into_contents();
        let issuer = rcgen::Issuer::from_ca_cert_der(&root_der.into(), root_key).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let second = crate::ca::PluginFiles {
            ca_cert: cert.pem(),
            ca_key: key.serialize_pem(),
            cert_chain: cert.pem(),
            root_cert: files.root_cert.clone(),
        };
        let second = CertificateAuthority::plug_in("cluster.local", &second).unwrap();
        cas.rotate(second, t0, Duration::from_secs(60)).unwrap();
        assert_eq!(cas.bundle_pem(t0), files.root_cert);
        assert_eq!(cas.next_change(t0), None);
        let other = CertificateAuthority::plug_in(
            "example.org",
            &new_plugin_ca("example.org", t0).unwrap().0,
        )
        .unwrap();
        assert!(matches!(
            cas.rotate(other, t0, Duration::from_secs(60)),
            Err(CaError::WrongTrustDomain { .. })
        ));
    }
}
