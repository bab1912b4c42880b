//! The sidecar's side of certificates over the push channel (istio-agent's SDS/CSR loop,
//! pkg/istio-agent and security/pkg/nodeagent/cache: a key made locally, a CSR sent, the
//! answer installed, renewal at half the certificate's life), sans-IO: the transport asks
//! [`Renewal::due`] when to send a request, hands it the answers, and installs what
//! [`Renewal::held`] holds.
//!
//! A refused or unanswered request is tried again with a doubling delay (1 s up to 1 min), and
//! whatever certificate the sidecar holds stays installed meanwhile: established connections
//! never depend on the renewal, and new ones keep using the old certificate until it expires.
//! A trust bundle pushed on its own (a root rotation) replaces the roots and keeps the
//! certificate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ca::renewal_due;

/// The first delay after a refusal, and the longest.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// A workload certificate and its key, with the roots that go with it (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct HeldCertificate {
    pub chain_pem: String,
    pub key_pem: String,
    pub bundle_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for HeldCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("HeldCertificate")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Why an answer could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenewalError {
    #[error("a certificate arrived that no request of this connection asked for")]
    Unrequested,
    #[error("the certificate's validity ends before it starts")]
    BadValidity,
}

/// A sidecar's certificate state.
#[derive(Clone, Debug)]
pub struct Renewal {
    held: Option<HeldCertificate>,
    /// The key of the request in flight.
    pending: Option<String>,
    /// When to ask next.
    next: SystemTime,
    retry: Duration,
}

impl Default for Renewal {
    fn default() -> Self {
        Renewal {
            held: None,
            pending: None,
            next: UNIX_EPOCH,
            retry: RETRY_INITIAL,
        }
    }
}

fn at(unix_secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_secs)
}

impl Renewal {
    /// The certificate installed now, if any.
    pub fn held(&self) -> Option<&HeldCertificate> {
        self.held.as_ref()
    }

    /// When the next request is due (`None` while one is in flight).
    pub fn next_request(&self) -> Option<SystemTime> {
        self.pending.is_none().then_some(self.next)
    }

    /// Whether to send a request at `now`.
    pub fn due(&self, now: SystemTime) -> bool {
        self.next_request().is_some_and(|t| now >= t)
    }

    /// A request with a new key (`key_pem`) was sent.
    pub fn requested(&mut self, key_pem: String) {
        debug_assert!(self.pending.is_none(), "one request at a time");
        self.pending = Some(key_pem);
    }

    /// The connection ended: a request in flight is lost, and is sent again on the next
    /// connection (at once if it was due).
    pub fn disconnected(&mut self) {
        self.pending = None;
    }

    /// The control plane's certificate, received at `now`: installed, and renewal planned at
    /// half its life counted from `now` (istio-agent's `rotateTime`,
    /// security/pkg/nodeagent/cache/secretcache.go: `ExpireTime - ratio * (ExpireTime -
    /// CreatedTime)`, created when received). Counting from `not_before` instead would renew
    /// a short certificate at once: the CA backdates each by a minute.
    pub fn certificate(
        &mut self,
        now: SystemTime,
        chain_pem: String,
        bundle_pem: String,
        not_before: u64,
        not_after: u64,
    ) -> Result<&HeldCertificate, RenewalError> {
        if not_after <= not_before {
            self.pending = None;
            return Err(RenewalError::BadValidity);
        }
        let key_pem = self.pending.take().ok_or(RenewalError::Unrequested)?;
        let (not_before, not_after) = (at(not_before), at(not_after));
        self.next = renewal_due(now.max(not_before).min(not_after), not_after);
        self.retry = RETRY_INITIAL;
        Ok(self.held.insert(HeldCertificate {
            chain_pem,
            key_pem,
            bundle_pem,
            not_before,
            not_after,
        }))
    }

    /// The request was refused at `now`: the next one after the retry delay (doubling); what
    /// is held stays. Returns the delay.
    pub fn refused(&mut self, now: SystemTime) -> Duration {
        self.pending = None;
        let delay = self.retry;
        self.next = now + delay;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        delay
    }

    /// New roots: the held certificate with them (`None` when nothing is held yet, or the
    /// roots are the same).
    pub fn bundle(&mut self, bundle_pem: String) -> Option<&HeldCertificate> {
        let held = self.held.as_mut()?;
        if held.bundle_pem == bundle_pem {
            return None;
        }
        held.bundle_pem = bundle_pem;
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn asks_at_once_then_at_half_life_and_backs_off_on_refusals() {
        let mut r = Renewal::default();
        let now = at(T0);
        assert!(r.due(now), "nothing held: ask at once");
        r.requested("key-1".into());
        assert!(!r.due(now), "one request in flight at a time");
        // Backdated a minute: half of what is left from receipt, not of the whole validity.
        let held = r
            .certificate(now, "chain-1".into(), "roots".into(), T0 - 60, T0 + 100)
            .unwrap();
        assert_eq!(held.key_pem, "key-1");
        assert_eq!(r.next_request(), Some(at(T0 + 50)));
        assert!(!r.due(at(T0 + 49)));
        assert!(r.due(at(T0 + 50)));

        // Refusals: 1 s, 2 s, 4 s ... and the old certificate stays.
        r.requested("key-2".into());
        assert_eq!(r.refused(at(T0 + 50)), RETRY_INITIAL);
        r.requested("key-3".into());
        assert_eq!(r.refused(at(T0 + 51)), RETRY_INITIAL * 2);
        assert_eq!(r.next_request(), Some(at(T0 + 53)));
        assert_eq!(r.held().unwrap().chain_pem, "chain-1");
        for _ in 0..10 {
            r.requested("k".into());
            r.refused(at(T0 + 60));
        }
        assert_eq!(r.next_request(), Some(at(T0 + 60) + RETRY_MAX));

        // A success resets the delay.
        r.requested("key-4".into());
        r.certificate(
            at(T0 + 60),
            "chain-4".into(),
            "roots".into(),
            T0 + 60,
            T0 + 160,
        )
        .unwrap();
        r.requested("key-5".into());
        assert_eq!(r.refused(at(T0 + 110)), RETRY_INITIAL);
    }

    #[test]
    fn a_lost_request_is_sent_again_and_unrequested_answers_are_refused() {
        let mut r = Renewal::default();
        r.requested("key".into());
        r.disconnected();
        assert!(r.due(at(T0)));
        assert_eq!(
            r.certificate(at(T0), "chain".into(), "roots".into(), T0, T0 + 10)
                .unwrap_err(),
            RenewalError::Unrequested
        );
        r.requested("key".into());
        assert_eq!(
            r.certificate(at(T0), "chain".into(), "roots".into(), T0, T0)
                .unwrap_err(),
            RenewalError::BadValidity
        );
    }

    #[test]
    fn a_new_bundle_keeps_the_certificate() {
        let mut r = Renewal::default();
        assert!(r.bundle("roots-2".into()).is_none(), "nothing held yet");
        r.requested("key".into());
        r.certificate(at(T0), "chain".into(), "roots-1".into(), T0, T0 + 10)
            .unwrap();
        assert!(r.bundle("roots-1".into()).is_none(), "unchanged");
        let held = r.bundle("roots-1\nroots-2".into()).unwrap();
        assert_eq!(
            (held.chain_pem.as_str(), held.key_pem.as_str()),
            ("chain", "key")
        );
    }
}
