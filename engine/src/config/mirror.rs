//! Traffic mirroring on a route: Istio's `mirror`/`mirrors`, as pilot writes them into Envoy's
//! `RouteAction.request_mirror_policies` (TranslateRequestMirrorPolicy in
//! pilot/pkg/networking/core/route/route.go).

/// One mirror of a route (Envoy's `RequestMirrorPolicy`): a copy of each sampled request goes to
/// `cluster`, and its answer is thrown away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorPolicy {
    /// Name of a [`super::Cluster`] in the same snapshot. A cluster the snapshot lacks is
    /// skipped at request time, as Envoy's ShadowWriterImpl skips one CDS removed.
    pub cluster: String,
    /// Which requests are mirrored (`runtime_fraction.default_value`).
    pub fraction: MirrorFraction,
    /// Append `-shadow` to the mirrored request's host (Envoy's behaviour unless
    /// `disable_shadow_host_suffix_append`; pilot disables it by default since Istio 1.28,
    /// DISABLE_SHADOW_HOST_SUFFIX in pilot/pkg/features/pilot.go).
    pub host_suffix: bool,
}

/// Envoy's `FractionalPercent`: `numerator` out of `denominator` (100 or 1,000,000 as pilot
/// writes them: `mirrorPercent` and the 100% default per hundred, `mirrorPercentage` and a
/// mirror's `percentage` per million as `uint32(value * 10000)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorFraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl MirrorFraction {
    /// Every request (pilot's default when no percentage is given).
    pub const ALL: MirrorFraction = MirrorFraction {
        numerator: 100,
        denominator: 100,
    };

    /// Whether the request whose stable random value is `draw` is mirrored: Envoy's
    /// `ProtobufPercentHelper::evaluateFractionalPercent`, `draw % denominator < numerator`
    /// (a numerator above the denominator mirrors everything). Every policy of a route is
    /// decided on the same draw, as Envoy decides each on the stream id.
    pub fn selects(self, draw: u64) -> bool {
        let denominator = u64::from(self.denominator.max(1));
        draw % denominator < u64::from(self.numerator)
    }
}

impl Default for MirrorFraction {
    fn default() -> Self {
        MirrorFraction::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_select_as_envoy_evaluates_them() {
        let half = MirrorFraction {
            numerator: 500_000,
            denominator: 1_000_000,
        };
        assert!(half.selects(0) && half.selects(499_999) && !half.selects(500_000));
        assert!(half.selects(1_000_000 + 3), "modulo the denominator");
        let none = MirrorFraction {
            numerator: 0,
            denominator: 100,
        };
        assert!((0..1000).all(|d| !none.selects(d)));
        assert!((0..1000).all(|d| MirrorFraction::ALL.selects(d)));
        let over = MirrorFraction {
            numerator: 150,
            denominator: 100,
        };
        assert!((0..1000).all(|d| over.selects(d)));
    }
}
