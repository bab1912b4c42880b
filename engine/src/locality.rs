//! Envoy's priority levels and localities, as a cluster's configuration.
//!
//! Istio's `localityLbSetting` is not a balancing policy of its own: pilot turns it into
//! Envoy's endpoint layout (pilot/pkg/networking/core/loadbalancer/loadbalancer.go), computed
//! for each proxy from where the proxy runs. Endpoints are grouped by locality
//! (`LocalityLbEndpoints`); each group has a priority (0 is preferred; failover moves load to
//! the next priority as the preferred one loses healthy hosts) and a weight (used when
//! `weighted` is on: Envoy's `locality_weighted_lb_config`, set by pilot for `distribute` and
//! for explicit failover). The translation (control/) does that computation; the engine only
//! balances over the result, in [`crate::cluster`].

/// How a cluster's endpoints are layered into priorities and localities. A cluster without it
/// is one priority with every host pooled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalityLb {
    /// Every endpoint of the cluster belongs to exactly one group.
    pub groups: Vec<LocalityGroup>,
    /// Envoy's `locality_weighted_lb_config`: within a priority, first pick a locality by its
    /// weight scaled by its availability, then a host in it. Off: the hosts of the chosen
    /// priority are pooled.
    pub weighted: bool,
    /// Envoy's `overprovisioning_factor` in percent (140 by default, which pilot keeps): a
    /// priority or locality counts as fully available until fewer than 100/140 ≈ 72 % of its
    /// hosts are healthy.
    pub overprovisioning_factor: u32,
}

/// Envoy's default `overprovisioning_factor` (percent).
pub const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

/// One `LocalityLbEndpoints`: hosts of one locality at one priority.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalityGroup {
    /// `region/zone/subzone` (for `explain` and logs; the engine does not interpret it).
    pub locality: String,
    /// 0 is the most preferred.
    pub priority: u32,
    /// The locality's `load_balancing_weight` (only read when [`LocalityLb::weighted`]).
    pub weight: u32,
    /// Indices into the cluster's `endpoints`.
    pub hosts: Vec<usize>,
}

/// Why a [`LocalityLb`] cannot be used with its cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalityLbError {
    #[error("endpoint {host} is in no locality group")]
    Unplaced { host: usize },
    #[error("endpoint {host} is in more than one locality group")]
    PlacedTwice { host: usize },
    #[error("locality group {group} names endpoint {host}, but the cluster has {hosts}")]
    OutOfRange {
        group: usize,
        host: usize,
        hosts: usize,
    },
}

impl LocalityLb {
    /// Every endpoint in exactly one group: what the balancer relies on.
    pub fn validate(&self, hosts: usize) -> Result<(), LocalityLbError> {
        let mut seen = vec![false; hosts];
        for (group, g) in self.groups.iter().enumerate() {
            for &host in &g.hosts {
                let slot =
                    seen.get_mut(host)
                        .ok_or(LocalityLbError::OutOfRange { group, host, hosts })?;
                if *slot {
                    return Err(LocalityLbError::PlacedTwice { host });
                }
                *slot = true;
            }
        }
        match seen.iter().position(|s| !s) {
            Some(host) => Err(LocalityLbError::Unplaced { host }),
            None => Ok(()),
        }
    }

    /// The factor to use: the configured one, or Envoy's default when 0.
    pub fn factor(&self) -> u32 {
        if self.overprovisioning_factor == 0 {
            DEFAULT_OVERPROVISIONING_FACTOR
        } else {
            self.overprovisioning_factor
        }
    }
}
