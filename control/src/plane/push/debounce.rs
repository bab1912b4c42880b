//! Push debouncing, as istiod's `debounce` (pilot/pkg/xds/discovery.go): the first change
//! arms a timer `after` (PILOT_DEBOUNCE_AFTER, 100 ms) ahead; when it fires, the changes so far
//! are released if none came for `after` or the first came `max` (PILOT_DEBOUNCE_MAX, 10 s)
//! ago; otherwise the timer is re-armed for the rest of the quiet period. So a release comes no
//! sooner than `after` past the last change (unless `max` ran out) and no later than `max +
//! after` past the first. Istio also waits for the previous push to finish; pushes here are
//! computed synchronously, so there is nothing to wait for.

use std::time::Duration;

use trellis_engine::Instant;

/// PILOT_DEBOUNCE_AFTER's default.
pub const DEBOUNCE_AFTER: Duration = Duration::from_millis(100);
/// PILOT_DEBOUNCE_MAX's default.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(10);

/// The debouncer's state: no clock inside, times are handed in.
#[derive(Clone, Debug)]
pub struct Debounce {
    after: Duration,
    max: Duration,
    /// First and last change of the pending batch, and the armed timer.
    pending: Option<Pending>,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    first: Instant,
    last: Instant,
    timer: Instant,
}

impl Debounce {
    pub fn new(after: Duration, max: Duration) -> Self {
        debug_assert!(
            after <= max,
            "debounce quiet period longer than its maximum"
        );
        Debounce {
            after,
            max,
            pending: None,
        }
    }

    /// A change arrived at `now`.
    pub fn change(&mut self, now: Instant) {
        match &mut self.pending {
            Some(p) => p.last = now,
            None => {
                self.pending = Some(Pending {
                    first: now,
                    last: now,
                    timer: now + self.after,
                })
            }
        }
    }

    /// When the debouncer wants to be woken.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.map(|p| p.timer)
    }

    /// Time has reached `now`: whether the pending changes are released.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(p) = &mut self.pending else {
            return false;
        };
        if now < p.timer {
            return false;
        }
        let quiet = now.saturating_since(p.last);
        if now.saturating_since(p.first) >= self.max || quiet >= self.after {
            self.pending = None;
            return true;
        }
        p.timer = now + (self.after - quiet);
        false
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce::new(DEBOUNCE_AFTER, DEBOUNCE_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Drive `changes` (times in ms) through a debouncer, waking exactly when it asks; the
    /// release times.
    fn releases(changes: &[u64], until: u64) -> Vec<u64> {
        let mut d = Debounce::default();
        let mut out = Vec::new();
        let mut next = changes.iter().peekable();
        loop {
            let timer = d.poll_timeout().map(|t| t.as_nanos() / 1_000_000);
            match (next.peek(), timer) {
                (Some(&&c), Some(t)) if t < c => {
                    if d.handle_timeout(ms(t)) {
                        out.push(t);
                    }
                }
                (Some(&&c), _) => {
                    if d.handle_timeout(ms(c)) {
                        out.push(c);
                    }
                    d.change(ms(c));
                    next.next();
                }
                (None, Some(t)) if t <= until => {
                    if d.handle_timeout(ms(t)) {
                        out.push(t);
                    }
                }
                _ => return out,
            }
        }
    }

    #[test]
    fn one_change_is_released_after_the_quiet_period() {
        assert_eq!(releases(&[0], 1_000), vec![100]);
    }

    #[test]
    fn a_burst_is_one_release_after_its_last_change() {
        assert_eq!(releases(&[0, 30, 60, 90, 120], 1_000), vec![220]);
    }

    #[test]
    fn a_steady_stream_is_released_by_the_maximum() {
        let changes: Vec<u64> = (0..300).map(|i| i * 50).collect(); // 15 s, every 50 ms
        let out = releases(&changes, 20_000);
        assert!(!out.is_empty());
        assert!(out[0] >= 10_000 && out[0] <= 10_100, "{out:?}");
    }

    #[quickcheck_macros::quickcheck]
    fn releases_respect_both_bounds(gaps: Vec<u16>) -> bool {
        let mut t = 0u64;
        let changes: Vec<u64> = gaps
            .iter()
            .map(|g| {
                t += u64::from(*g % 400);
                t
            })
            .collect();
        let out = releases(&changes, t + 20_000);
        // Every change is released once, at or after the quiet period past the last change
        // before it (unless the maximum ran out), and within max + after of the batch's first.
        let mut first = 0usize;
        for r in &out {
            let batch: Vec<u64> = changes[first..]
                .iter()
                .copied()
                .take_while(|c| c < r)
                .collect();
            let (Some(&start), Some(&last)) = (batch.first(), batch.last()) else {
                return false;
            };
            let quiet = r - last >= 100;
            let maxed = r - start >= 10_000;
            if !(quiet || maxed) || r - start > 10_100 {
                return false;
            }
            first += batch.len();
        }
        changes.is_empty() == out.is_empty() && first == changes.len()
    }
}
