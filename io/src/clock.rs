//! The driver's clock: maps the OS monotonic clock onto engine time.
//!
//! The engine never reads a clock (see `trellis_engine::time`); the driver does, once per loop
//! turn, and hands the value in. Engine time is "nanoseconds since this driver started", so the
//! numbers in logs and timers are small and a fresh driver always starts near zero, like the
//! simulator does.

use std::time::{Duration, Instant as StdInstant};

use trellis_engine::Instant;

/// A monotonic clock whose epoch is the moment it was created.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: StdInstant,
}

impl Clock {
    /// A clock whose epoch (engine time zero) is now.
    pub fn new() -> Self {
        Clock::with_epoch(StdInstant::now())
    }

    /// A clock whose epoch is `epoch`.
    pub fn with_epoch(epoch: StdInstant) -> Self {
        Clock { epoch }
    }

    /// The current engine time.
    pub fn now(&self) -> Instant {
        self.to_engine(StdInstant::now())
    }

    /// The engine time of an OS instant; instants before the epoch map to zero, instants
    /// more than ~584 years after it saturate.
    pub fn to_engine(&self, at: StdInstant) -> Instant {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The OS instant of an engine time, `None` when it is too far away to represent (for
    /// example [`Instant::FAR_FUTURE`]).
    pub fn to_std(&self, at: Instant) -> Option<StdInstant> {
        self.epoch.checked_add(Duration::from_nanos(at.as_nanos()))
    }

    /// How long to sleep from `now` until `deadline` (zero when it has passed).
    pub fn until(now: Instant, deadline: Instant) -> Duration {
        deadline.saturating_since(now)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck_macros::quickcheck;

    #[test]
    fn epoch_is_zero_and_time_advances() {
        let epoch = StdInstant::now();
        let clock = Clock::with_epoch(epoch);
        assert_eq!(clock.to_engine(epoch), Instant::ZERO);
        assert_eq!(
            clock.to_engine(epoch + Duration::from_millis(1500)),
            Instant::from_millis(1500)
        );
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[test]
    fn before_epoch_clamps_to_zero() {
        let early = StdInstant::now();
        let clock = Clock::with_epoch(early + Duration::from_secs(5));
        assert_eq!(clock.to_engine(early), Instant::ZERO);
    }

    #[test]
    fn far_future_has_no_std_instant_or_a_late_one() {
        let clock = Clock::new();
        // Either unrepresentable or at least as late as a century from now; never a panic.
        if let Some(at) = clock.to_std(Instant::FAR_FUTURE) {
            assert!(at > StdInstant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        }
    }

    #[test]
    fn until_saturates() {
        assert_eq!(
            Clock::until(Instant::from_millis(10), Instant::from_millis(4)),
            Duration::ZERO
        );
        assert_eq!(
            Clock::until(Instant::from_millis(4), Instant::from_millis(10)),
            Duration::from_millis(6)
        );
    }

    #[quickcheck]
    fn round_trip(nanos: u32, secs: u16) -> bool {
        let clock = Clock::new();
        let t = Instant::from_nanos(u64::from(secs) * 1_000_000_000 + u64::from(nanos));
        match clock.to_std(t) {
            Some(std_at) => clock.to_engine(std_at) == t,
            None => false,
        }
    }
}
