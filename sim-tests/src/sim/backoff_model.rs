//! Envoy's outlier backoff, as the ejection model computes it from first principles (never
//! from the engine's multiplier): the cap's room, the multiplier's growth and each ejection's
//! length, decay on the sweep grid, and where that grid falls. Pure functions of the model's
//! per-host state ([`HostWatch`]), used by [`super::ejection`].

use std::time::Duration;

use trellis_engine::Instant;

use super::ejection::HostWatch;

/// Whether one more ejection fits under the cap.
pub(crate) fn room(ejected: usize, hosts: usize, cap: u32) -> bool {
    (ejected as u64 + 1) * 100 <= u64::from(cap.min(100)) * hosts as u64
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The sweep interval the engine honours (at least 1 ms).
pub(crate) fn sweep_interval(interval: Duration) -> Duration {
    interval.max(Duration::from_millis(1))
}

/// Envoy's backoff: the multiplier after one more ejection, and that ejection's length.
pub(crate) fn backoff(multiplier: u32, base: Duration, max: Duration) -> (u32, Duration) {
    let max = max.max(base);
    let grows = base.as_nanos() * u128::from(multiplier) < max.as_nanos() + base.as_nanos();
    let m = if grows {
        multiplier.saturating_add(1)
    } else {
        multiplier
    };
    let length = base.checked_mul(m).unwrap_or(Duration::MAX).min(max);
    (m, length)
}

/// The multiplier of a host that is not ejected, after every sweep up to `through`: a sweep at
/// `s` decrements it (floor 0) if the host came back at or before `s - interval`.
pub(crate) fn decayed(w: &HostWatch, through: Instant, interval: Duration) -> u32 {
    let Some(back) = w.last_return else {
        return w.multiplier;
    };
    let iv = nanos(sweep_interval(interval));
    let from = (w.decayed_to.as_nanos() + 1).max(back.as_nanos().saturating_add(iv));
    let first = from.div_ceil(iv);
    let last = through.as_nanos() / iv;
    let sweeps = (last + 1).saturating_sub(first);
    w.multiplier
        .saturating_sub(u32::try_from(sweeps).unwrap_or(u32::MAX))
}

/// The first sweep instant (a multiple of `interval` from time zero) at or after `t`.
pub(crate) fn first_sweep_at_or_after(t: Instant, interval: Duration) -> Instant {
    let iv = u64::try_from(interval.max(Duration::from_millis(1)).as_nanos()).unwrap_or(u64::MAX);
    Instant::from_nanos(t.as_nanos().div_ceil(iv).saturating_mul(iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_on_the_grid() {
        let iv = Duration::from_millis(100);
        assert_eq!(
            first_sweep_at_or_after(Instant::from_millis(250), iv),
            Instant::from_millis(300)
        );
        assert_eq!(
            first_sweep_at_or_after(Instant::from_millis(300), iv),
            Instant::from_millis(300)
        );
    }

    #[test]
    fn backoff_grows_until_past_max_plus_base() {
        let ms = Duration::from_millis;
        let (base, max) = (ms(100), Duration::from_secs(300));
        assert_eq!(backoff(0, base, max), (1, ms(100)));
        assert_eq!(backoff(1, base, max), (2, ms(200)));
        // max = base: the multiplier stops at 2, every ejection lasts one base time.
        assert_eq!(backoff(0, base, base), (1, ms(100)));
        assert_eq!(backoff(1, base, base), (2, ms(100)));
        assert_eq!(backoff(2, base, base), (2, ms(100)));
        // max = 2.5 base: grows while base × m < 3.5 base, so up to 4.
        assert_eq!(backoff(3, base, ms(250)), (4, ms(250)));
        assert_eq!(backoff(4, base, ms(250)), (4, ms(250)));
        // A max below the base is read as the base.
        assert_eq!(backoff(1, base, ms(10)), (2, ms(100)));
    }

    #[test]
    fn decay_on_the_grid_after_an_interval_back() {
        let iv = Duration::from_millis(100);
        let back = Instant::from_millis(100);
        let w = HostWatch {
            multiplier: 3,
            last_return: Some(back),
            decayed_to: back,
            ..HostWatch::default()
        };
        // The sweep that returned it and those within an interval do not decay it.
        assert_eq!(decayed(&w, Instant::from_millis(199), iv), 3);
        assert_eq!(decayed(&w, Instant::from_millis(200), iv), 2);
        assert_eq!(decayed(&w, Instant::from_millis(450), iv), 0);
        // Sweeps already applied are not applied twice.
        let w = HostWatch {
            multiplier: 2,
            decayed_to: Instant::from_millis(200),
            ..w
        };
        assert_eq!(decayed(&w, Instant::from_millis(300), iv), 1);
        // Never back (never ejected): nothing to decay.
        let w = HostWatch::default();
        assert_eq!(decayed(&w, Instant::from_millis(900), iv), 0);
    }

    #[test]
    fn cap_room() {
        assert!(room(0, 5, 20));
        assert!(!room(1, 5, 20));
        assert!(room(0, 1, 100));
        assert!(!room(0, 3, 10));
    }
}
