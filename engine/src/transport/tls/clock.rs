//! Engine time for rustls: certificate validity follows the engine's clock, so a simulated
//! run can age a certificate past its notAfter in a few simulated seconds.
//!
//! rustls asks a [`TimeProvider`] for the time whenever it verifies a certificate (and for
//! ticket lifetimes, which Trellis turns off). The engine never reads a clock; it hands `now`
//! to every input, so each TLS transform stores that `now` here before it lets rustls process
//! bytes, and the provider maps it onto a UNIX time: a configured base (the UNIX time at the
//! engine's instant zero) plus the engine instant. A runtime sets the base from the wall clock
//! once at start; the simulator sets it to a fixed date.
//!
//! One clock belongs to one factory, and so to one engine (one core): the stored instant is
//! only read by rustls calls that the same engine makes, right after storing it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::UnixTime;
use rustls::time_provider::TimeProvider;

use crate::time::Instant;

/// Engine instants seen as UNIX time, for rustls.
#[derive(Debug)]
pub struct EngineClock {
    /// The UNIX time of engine instant zero.
    unix_base: Duration,
    /// The engine instant of the call in progress, in nanoseconds.
    now: AtomicU64,
}

impl EngineClock {
    /// A clock whose instant zero is `unix_base` after the UNIX epoch.
    pub fn new(unix_base: Duration) -> Arc<Self> {
        Arc::new(EngineClock {
            unix_base,
            now: AtomicU64::new(0),
        })
    }

    /// The engine instant rustls sees until the next call.
    pub fn set(&self, now: Instant) {
        self.now.store(now.as_nanos(), Ordering::Relaxed);
    }

    /// `at` as a UNIX time.
    pub fn unix_time(&self, at: Instant) -> UnixTime {
        UnixTime::since_unix_epoch(self.unix_base + Duration::from_nanos(at.as_nanos()))
    }
}

impl TimeProvider for EngineClock {
    fn current_time(&self) -> Option<UnixTime> {
        let now = Instant::from_nanos(self.now.load(Ordering::Relaxed));
        Some(self.unix_time(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_reports_the_base_plus_the_last_instant() {
        let clock = EngineClock::new(Duration::from_secs(1_700_000_000));
        assert_eq!(
            clock.current_time().map(|t| t.as_secs()),
            Some(1_700_000_000)
        );
        clock.set(Instant::from_millis(90_500));
        assert_eq!(
            clock.current_time().map(|t| t.as_secs()),
            Some(1_700_000_090)
        );
    }
}
