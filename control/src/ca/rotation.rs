//! When certificates are renewed, and which roots a sidecar trusts while a root is replaced.
//!
//! Renewal: a workload asks for a new certificate half-way through the current one's life
//! (Istio's default grace ratio, 0.5). Connections already established keep the certificate
//! they were made with; only new handshakes use the new one, so renewal drops nothing.
//!
//! Root rotation: the new root joins the bundle at once, and the old one stays for an overlap
//! period, long enough for every workload certificate issued under the old root to be renewed
//! under the new one (so at least the longest workload TTL). Then the old root leaves.

use std::time::{Duration, SystemTime};

use super::CaError;

/// When a certificate valid from `not_before` to `not_after` is due for renewal.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime / 2
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Root {
    pem: String,
    /// `None` for the current root; for a replaced one, the end of its overlap.
    trusted_until: Option<SystemTime>,
}

/// The roots a mesh trusts over time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<Root>,
}

impl TrustBundle {
    /// A bundle with one root.
    pub fn new(root_pem: &str) -> Self {
        TrustBundle {
            roots: vec![Root {
                pem: root_pem.to_string(),
                trusted_until: None,
            }],
        }
    }

    /// Replace the current root with `new_root_pem` at `now`; the roots trusted until now stay
    /// trusted for `overlap` more (or less, if they were leaving sooner already).
    pub fn rotate(
        &mut self,
        new_root_pem: &str,
        now: SystemTime,
        overlap: Duration,
    ) -> Result<(), CaError> {
        if self.roots.iter().any(|r| r.pem == new_root_pem) {
            return Err(CaError::RootAlreadyTrusted);
        }
        let until = now + overlap;
        for root in &mut self.roots {
            root.trusted_until = Some(root.trusted_until.map_or(until, |t| t.min(until)));
        }
        self.roots
            .retain(|r| r.trusted_until.is_none_or(|t| t > now));
        self.roots.push(Root {
            pem: new_root_pem.to_string(),
            trusted_until: None,
        });
        Ok(())
    }

    /// The roots trusted at `now`, oldest first.
    pub fn roots(&self, now: SystemTime) -> Vec<&str> {
        self.roots
            .iter()
            .filter(|r| r.trusted_until.is_none_or(|t| now < t))
            .map(|r| r.pem.as_str())
            .collect()
    }

    /// The bundle handed to sidecars at `now`: the trusted roots, concatenated PEM.
    pub fn pem(&self, now: SystemTime) -> String {
        self.roots(now).concat()
    }

    /// When the bundle next changes by itself (an old root's overlap ends), if it will.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        self.roots
            .iter()
            .filter_map(|r| r.trusted_until)
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_is_due_at_half_the_lifetime() {
        assert_eq!(renewal_due(t(1000), t(1000 + 86_400)), t(1000 + 43_200));
        assert_eq!(
            renewal_due(t(50), t(10)),
            t(50),
            "a backwards window is due at once"
        );
    }

    #[test]
    fn a_rotated_root_stays_for_the_overlap_then_leaves() {
        let mut bundle = TrustBundle::new("OLD");
        assert_eq!(bundle.pem(t(0)), "OLD");
        bundle
            .rotate("NEW", t(100), Duration::from_secs(50))
            .unwrap();
        assert_eq!(bundle.roots(t(100)), ["OLD", "NEW"]);
        assert_eq!(bundle.roots(t(149)), ["OLD", "NEW"]);
        assert_eq!(bundle.next_change(t(120)), Some(t(150)));
        assert_eq!(bundle.roots(t(150)), ["NEW"]);
        assert_eq!(bundle.next_change(t(150)), None);
        assert!(matches!(
            bundle.rotate("NEW", t(200), Duration::from_secs(1)),
            Err(CaError::RootAlreadyTrusted)
        ));
        // A second rotation during an overlap does not lengthen the oldest root's stay.
        let mut bundle = TrustBundle::new("A");
        bundle.rotate("B", t(0), Duration::from_secs(100)).unwrap();
        bundle.rotate("C", t(10), Duration::from_secs(500)).unwrap();
        assert_eq!(bundle.roots(t(99)), ["A", "B", "C"]);
        assert_eq!(bundle.roots(t(100)), ["B", "C"]);
        assert_eq!(bundle.roots(t(510)), ["C"]);
    }
}
