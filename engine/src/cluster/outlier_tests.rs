//! Outlier detection timelines with explicit instants, and the cap as a property.

use super::*;
use quickcheck::{Arbitrary, Gen};
use quickcheck_macros::quickcheck;

fn s(secs: u64) -> Instant {
    Instant::from_millis(secs * 1000)
}

fn cfg() -> OutlierDetection {
    OutlierDetection {
        max_ejection_percent: 100,
        ..OutlierDetection::default()
    }
}

fn feed(d: &mut OutlierDetector, at: Instant, host: usize, outcome: Outcome, n: usize) -> Verdict {
    let mut last = Verdict::Fine;
    for _ in 0..n {
        last = d.report(at, host, outcome);
    }
    last
}

#[test]
fn five_consecutive_5xx_eject_at_the_fifth_and_return_after_base_time() {
    let mut d = OutlierDetector::new(&cfg(), 4, s(0));
    assert_eq!(d.next_timer(), None, "idle detector needs no wake-ups");
    assert_eq!(
        feed(&mut d, s(1), 2, Outcome::Response(500), 4),
        Verdict::Fine
    );
    assert!(!d.is_ejected(2));
    assert_eq!(
        d.report(s(1), 2, Outcome::Response(503)),
        Verdict::Ejected(Detector::Consecutive5xx)
    );
    assert!(d.is_ejected(2));
    assert_eq!(d.ejected_count(), 1);
    assert_eq!(d.ejection_ends(2), Some(s(31)));
    // Sweeps stay on the grid anchored at creation: 10, 20, 30, 40 s.
    assert_eq!(d.next_timer(), Some(s(10)));
    assert!(d.on_timer(s(30)).is_empty());
    assert_eq!(d.next_timer(), Some(s(40)));
    assert_eq!(d.on_timer(s(40)), vec![2]);
    assert!(!d.is_ejected(2));
    assert_eq!(d.multiplier(2), 1);
}

/// Skipped idle sweeps are equivalent to sweeps that change nothing, so a config swap that
/// finds the detector idle must keep the sweep grid of the old one too (it used to restart
/// the grid at the swap: a host ejected later came back on the new grid).
#[test]
fn a_config_swap_keeps_the_sweep_phase_of_an_idle_detector() {
    let old = OutlierDetector::new(&cfg(), 2, s(0));
    assert_eq!(old.next_timer(), None);
    let mut new = OutlierDetector::new(&cfg(), 2, s(3));
    new.carry_over(&old, &[Some(0), Some(1)]);
    assert_eq!(new.next_timer(), None);
    feed(&mut new, s(12), 0, Outcome::Response(500), 5);
    assert!(new.is_ejected(0));
    // Sweeps stay on the grid of the first detector (10, 20, ... s), not at 13, 23, ... s.
    assert_eq!(new.next_timer(), Some(s(20)));
    assert!(new.on_timer(s(40)).is_empty());
    assert_eq!(new.on_timer(s(50)), vec![0]);
}

#[test]
fn success_resets_the_run() {
    let mut d = OutlierDetector::new(&cfg(), 2, s(0));
    feed(&mut d, s(1), 0, Outcome::Response(500), 4);
    d.report(s(1), 0, Outcome::Response(404));
    assert_eq!(
        feed(&mut d, s(1), 0, Outcome::Response(500), 4),
        Verdict::Fine
    );
    assert!(!d.is_ejected(0));
}

#[test]
fn second_ejection_is_twice_as_long_and_multiplier_decays_on_healthy_sweeps() {
    let mut d = OutlierDetector::new(&cfg(), 4, s(0));
    feed(&mut d, s(1), 0, Outcome::Response(500), 5);
    assert_eq!(d.on_timer(s(40)), vec![0]);
    // Ejected again before any decay: 2 × 30 s.
    assert_eq!(
        feed(&mut d, s(41), 0, Outcome::Response(500), 5),
        Verdict::Ejected(Detector::Consecutive5xx)
    );
    assert_eq!(d.multiplier(0), 2);
    assert_eq!(d.ejection_ends(0), Some(s(101)));
    assert!(d.on_timer(s(100)).is_empty());
    assert_eq!(d.on_timer(s(110)), vec![0]);
    // The returning sweep does not decay; each later healthy sweep takes one off.
    assert_eq!(d.multiplier(0), 2);
    d.on_timer(s(120));
    assert_eq!(d.multiplier(0), 1);
    assert_eq!(d.next_timer(), Some(s(130)));
    d.on_timer(s(130));
    assert_eq!(d.multiplier(0), 0);
    assert_eq!(d.next_timer(), None);
    // Fully decayed: the next ejection is back to one base time.
    feed(&mut d, s(131), 0, Outcome::Response(500), 5);
    assert_eq!(d.ejection_ends(0), Some(s(161)));
    assert_eq!(d.next_timer(), Some(s(140)));
}

#[test]
fn ejection_time_is_capped_at_max() {
    let c = OutlierDetection {
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(50),
        interval: Duration::from_secs(1),
        ..cfg()
    };
    let mut d = OutlierDetector::new(&c, 2, s(0));
    let mut t = 0;
    let mut lengths = Vec::new();
    for _ in 0..4 {
        t += 1;
        feed(&mut d, s(t), 0, Outcome::Response(500), 5);
        let ends = d.ejection_ends(0).unwrap();
        lengths.push((ends.as_nanos() - s(t).as_nanos()) / 1_000_000_000);
        t = ends.as_nanos() / 1_000_000_000;
        assert_eq!(d.on_timer(s(t)), vec![0]);
    }
    assert_eq!(lengths, vec![30, 50, 50, 50]);
    // The multiplier stopped growing (Envoy: once base × m reaches max + base): 0→1→2→3→3.
    assert_eq!(d.multiplier(0), 3);
}

#[test]
fn gateway_only_detector_ignores_500() {
    let c = OutlierDetection {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 3,
        ..cfg()
    };
    let mut d = OutlierDetector::new(&c, 2, s(0));
    assert_eq!(
        feed(&mut d, s(1), 0, Outcome::Response(500), 20),
        Verdict::Fine
    );
    d.report(s(1), 0, Outcome::Response(502));
    d.report(s(1), 0, Outcome::Response(503));
    d.report(s(1), 0, Outcome::Response(500)); // resets the gateway run
    d.report(s(1), 0, Outcome::Response(504));
    d.report(s(1), 0, Outcome::Response(502));
    assert!(!d.is_ejected(0));
    assert_eq!(
        d.report(s(1), 0, Outcome::Response(503)),
        Verdict::Ejected(Detector::ConsecutiveGatewayFailure)
    );
}

#[test]
fn local_origin_unsplit_counts_as_5xx_and_gateway() {
    let c = OutlierDetection {
        consecutive_5xx: 3,
        ..cfg()
    };
    let mut d = OutlierDetector::new(&c, 2, s(0));
    d.report(s(1), 0, Outcome::ConnectFailed);
    d.report(s(1), 0, Outcome::Reset);
    assert_eq!(
        d.report(s(1), 0, Outcome::Timeout),
        Verdict::Ejected(Detector::Consecutive5xx)
    );
    let g = OutlierDetection {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 2,
        ..cfg()
    };
    let mut d = OutlierDetector::new(&g, 2, s(0));
    d.report(s(1), 1, Outcome::Timeout);
    assert_eq!(
        d.report(s(1), 1, Outcome::ConnectFailed),
        Verdict::Ejected(Detector::ConsecutiveGatewayFailure)
    );
}

#[test]
fn local_origin_split_counts_only_local_failures() {
    let c = OutlierDetection {
        consecutive_5xx: 3,
        consecutive_local_origin_failures: 2,
        split_external_local_origin_errors: true,
        ..cfg()
    };
    let mut d = OutlierDetector::new(&c, 2, s(0));
    // A response in between (even a 5xx) shows the connection works: the local run restarts.
    d.report(s(1), 0, Outcome::ConnectFailed);
    d.report(s(1), 0, Outcome::Response(500));
    d.report(s(1), 0, Outcome::Reset);
    assert!(!d.is_ejected(0));
    assert_eq!(
        d.report(s(1), 0, Outcome::Timeout),
        Verdict::Ejected(Detector::ConsecutiveLocalOriginFailure)
    );
    // Local failures never feed the 5xx detector when split.
    let off = OutlierDetection {
        consecutive_local_origin_failures: 0,
        ..c
    };
    let mut d = OutlierDetector::new(&off, 2, s(0));
    assert_eq!(
        feed(&mut d, s(1), 1, Outcome::ConnectFailed, 50),
        Verdict::Fine
    );
    assert_eq!(
        feed(&mut d, s(1), 1, Outcome::Response(500), 2),
        Verdict::Fine
    );
    assert_eq!(
        d.report(s(1), 1, Outcome::Response(500)),
        Verdict::Ejected(Detector::Consecutive5xx)
    );
}

#[test]
fn max_ejection_percent_is_strict() {
    // Ten hosts at the default 10 %: one may be ejected, not two.
    let mut d = OutlierDetector::new(&OutlierDetection::default(), 10, s(0));
    assert!(matches!(
        feed(&mut d, s(1), 0, Outcome::Response(500), 5),
        Verdict::Ejected(_)
    ));
    assert_eq!(
        feed(&mut d, s(1), 1, Outcome::Response(500), 5),
        Verdict::Overflow(Detector::Consecutive5xx)
    );
    // The counter that fired was reset: four more errors are not yet another detection.
    assert_eq!(
        feed(&mut d, s(1), 1, Outcome::Response(500), 4),
        Verdict::Fine
    );
    // Three hosts at 10 %: none (old Envoy would have ejected one anyway).
    let mut d = OutlierDetector::new(&OutlierDetection::default(), 3, s(0));
    assert!(matches!(
        feed(&mut d, s(1), 0, Outcome::Response(500), 5),
        Verdict::Overflow(_)
    ));
    assert_eq!(d.ejected_count(), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Report {
        host: u8,
        outcome: Outcome,
        after_ms: u16,
    },
    Timer {
        after_ms: u16,
    },
}

impl Arbitrary for Outcome {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 6 {
            0 => Outcome::Response(200),
            1 => Outcome::Response(500),
            2 => Outcome::Response(*g.choose(&[502, 503, 504]).unwrap_or(&503)),
            3 => Outcome::ConnectFailed,
            4 => Outcome::Reset,
            _ => Outcome::Timeout,
        }
    }
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        if u8::arbitrary(g) % 4 == 0 {
            Op::Timer {
                after_ms: u16::arbitrary(g),
            }
        } else {
            Op::Report {
                host: u8::arbitrary(g),
                outcome: Outcome::arbitrary(g),
                after_ms: u16::arbitrary(g) % 200,
            }
        }
    }
}

fn small_cfg(percent: u8, split: bool) -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: 2,
        consecutive_gateway_errors: 2,
        consecutive_local_origin_failures: 2,
        split_external_local_origin_errors: split,
        interval: Duration::from_millis(100),
        base_ejection_time: Duration::from_millis(300),
        max_ejection_time: Duration::from_millis(1000),
        max_ejection_percent: u32::from(percent % 120),
        min_health_percent: 0,
    }
}

/// Over arbitrary reports and sweeps, ejected × 100 never exceeds max_ejection_percent × hosts,
/// and the ejected count always matches the hosts marked ejected.
#[quickcheck]
fn cap_is_never_exceeded(hosts: u8, percent: u8, split: bool, ops: Vec<Op>) -> bool {
    let n = usize::from(hosts % 20) + 1;
    let c = small_cfg(percent, split);
    let cap = u64::from(c.max_ejection_percent.min(100)) * n as u64;
    let mut d = OutlierDetector::new(&c, n, s(0));
    let mut now = s(0);
    for op in ops {
        match op {
            Op::Report {
                host,
                outcome,
                after_ms,
            } => {
                now += Duration::from_millis(u64::from(after_ms));
                d.report(now, usize::from(host) % n, outcome);
            }
            Op::Timer { after_ms } => {
                now += Duration::from_millis(u64::from(after_ms));
                d.on_timer(now);
            }
        }
        let marked = (0..n).filter(|&h| d.is_ejected(h)).count();
        if marked != d.ejected_count() || (d.ejected_count() as u64) * 100 > cap {
            return false;
        }
    }
    true
}

/// A driver that wakes once, long after many sweeps were due, ends in the same state as one that
/// ran every sweep on time.
#[quickcheck]
fn late_wake_equals_every_sweep(hosts: u8, ops: Vec<Op>, gap_ms: u32) -> bool {
    let n = usize::from(hosts % 8) + 1;
    let c = small_cfg(100, false);
    let mut eager = OutlierDetector::new(&c, n, s(0));
    let mut now = s(0);
    for op in ops.iter().take(60) {
        if let Op::Report {
            host,
            outcome,
            after_ms,
        } = *op
        {
            now += Duration::from_millis(u64::from(after_ms));
            eager.on_timer(now);
            eager.report(now, usize::from(host) % n, outcome);
        }
    }
    let mut lazy = eager.clone();
    let end = now + Duration::from_millis(u64::from(gap_ms % 5_000_000));
    while let Some(t) = eager.next_timer().filter(|&t| t <= end) {
        eager.on_timer(t);
    }
    lazy.on_timer(end);
    (0..n).all(|h| {
        eager.is_ejected(h) == lazy.is_ejected(h) && eager.multiplier(h) == lazy.multiplier(h)
    }) && eager.next_timer() == lazy.next_timer()
}
