//! Distribution tests for decisions the engine makes with its RNG (weighted splits, random
//! balancing, fault percentages): Pearson's chi-square goodness of fit, with its p-value from
//! the regularized incomplete gamma function, at a stated false-alarm rate.
//!
//! A correct engine fails one test with probability [`FALSE_ALARM`]; a swarm of 10,000 seeds
//! runs a few tens of thousands of tests, so a false alarm in a soak is a few percent likely
//! at most, while a destination that gets one unit of weight too many out of a handful (the
//! generator's small weights) fails within a few hundred requests. Cells whose expected count
//! is below [`MIN_EXPECTED`] make the chi-square approximation unreliable; such tests are not
//! run (their counts still go into the cross-seed aggregate of [`Aggregate`]).

/// The chance a correct engine fails one test.
pub const FALSE_ALARM: f64 = 1e-6;

/// The least expected count per cell for the chi-square approximation to hold.
pub const MIN_EXPECTED: f64 = 5.0;

/// Pearson's statistic and degrees of freedom of `observed` counts against `weights`
/// (positive weights only; cells with weight 0 are the caller's exact check). `None` when
/// there is nothing to test (one cell, or too few observations for the approximation).
pub fn chi_square(observed: &[u64], weights: &[f64]) -> Option<(f64, u32)> {
    debug_assert_eq!(observed.len(), weights.len());
    let n: u64 = observed.iter().sum();
    let total: f64 = weights.iter().sum();
    if observed.len() < 2 || n == 0 || total <= 0.0 {
        return None;
    }
    let mut stat = 0.0;
    for (&o, &w) in observed.iter().zip(weights) {
        let expected = n as f64 * w / total;
        if expected < MIN_EXPECTED {
            return None;
        }
        let d = o as f64 - expected;
        stat += d * d / expected;
    }
    Some((stat, observed.len() as u32 - 1))
}

/// The p-value of a chi-square statistic with `df` degrees of freedom: P(X ≥ stat).
pub fn chi_square_p(stat: f64, df: u32) -> f64 {
    if df == 0 {
        return 1.0;
    }
    upper_gamma_regularized(f64::from(df) / 2.0, stat / 2.0)
}

/// Q(a, x) = Γ(a, x) / Γ(a), by the series for x < a + 1 and Lentz's continued fraction
/// otherwise (Numerical Recipes §6.2).
fn upper_gamma_regularized(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_front.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Chi-square statistics summed across tests (and across seeds): independent statistics add,
/// and so do their degrees of freedom, so a bias too small to fail any one run fails the sum.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Aggregate {
    pub stat: f64,
    pub df: u64,
}

impl Aggregate {
    pub fn add(&mut self, stat: f64, df: u32) {
        self.stat += stat;
        self.df += u64::from(df);
    }

    pub fn merge(&mut self, other: Aggregate) {
        self.stat += other.stat;
        self.df += other.df;
    }

    /// The p-value of the sum (Wilson–Hilferty's normal approximation past 1,000 degrees of
    /// freedom, where the gamma series is slow and the approximation exact enough).
    pub fn p_value(&self) -> f64 {
        if self.df == 0 {
            return 1.0;
        }
        if self.df <= 1000 {
            return chi_square_p(self.stat, self.df as u32);
        }
        let k = self.df as f64;
        let z = ((self.stat / k).cbrt() - (1.0 - 2.0 / (9.0 * k))) / (2.0 / (9.0 * k)).sqrt();
        0.5 * erfc(z / std::f64::consts::SQRT_2)
    }
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_chi_square_quantiles() {
        // Tables: P(X >= 3.841 | 1) = 0.05, P(X >= 9.210 | 2) = 0.01, P(X >= 23.209 | 10) = 0.01.
        assert!((chi_square_p(3.841, 1) - 0.05).abs() < 1e-3);
        assert!((chi_square_p(9.210, 2) - 0.01).abs() < 1e-4);
        assert!((chi_square_p(23.209, 10) - 0.01).abs() < 1e-4);
        assert!((chi_square_p(0.0, 3) - 1.0).abs() < 1e-12);
        // 1e-6 false alarm with 1 df is at 23.93.
        assert!(chi_square_p(23.93, 1) < 1.1e-6 && chi_square_p(23.93, 1) > 0.9e-6);
    }

    #[test]
    fn a_fair_split_passes_and_a_one_unit_slip_fails() {
        // Weights 1:1 seen 2:0 (a cumulative-weight off-by-one) over 200 requests.
        let (stat, df) = chi_square(&[200, 0], &[1.0, 1.0]).unwrap();
        assert!(chi_square_p(stat, df) < FALSE_ALARM);
        let (stat, df) = chi_square(&[104, 96], &[1.0, 1.0]).unwrap();
        assert!(chi_square_p(stat, df) > 0.1);
        // Weights 2:1 seen as 3:0 and as 1:2.
        let (stat, df) = chi_square(&[300, 0], &[2.0, 1.0]).unwrap();
        assert!(chi_square_p(stat, df) < FALSE_ALARM);
        assert!(
            chi_square(&[1, 1], &[1.0, 1.0]).is_none(),
            "too few to test"
        );
    }

    #[test]
    fn aggregate_matches_the_gamma_tail_near_the_switch() {
        let mut a = Aggregate::default();
        a.add(1000.0, 1000);
        let exact = chi_square_p(1000.0, 1000);
        a.add(2.0, 2);
        let approx = a.p_value();
        assert!((exact - approx).abs() < 0.02, "{exact} {approx}");
        let biased = Aggregate {
            stat: 1500.0,
            df: 1200,
        };
        assert!(biased.p_value() < 1e-6);
    }
}
