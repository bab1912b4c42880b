//! The retry budget (`connectionPool.http.maxRetries`, Envoy's `max_retries` circuit breaker)
//! held to its promise by what the driver sees: a request holds one unit of its cluster's
//! budget from its first retry to its end, as Envoy's retry resource is held from a retry's
//! start to the next retry decision or the request's end. Per sidecar and cluster, the
//! requests that have sent a retry and not yet ended never outnumber `maxRetries`.
//!
//! The driver's count is a lower bound of the engine's: a retry waiting out its backoff or its
//! connect holds a unit before its head goes out. Ends are located by the access-log record,
//! which the engine writes in the call that frees the unit; the count is checked once a call's
//! records are read, so a request ending and another's retry starting in one call are not a
//! false alarm.

use std::collections::BTreeMap;

use super::check::Invariant;
use super::mesh::Mesh;

/// Requests of each sidecar that have sent a retry and not ended.
#[derive(Debug, Default)]
pub(crate) struct Retrying {
    /// Request → (sidecar, cluster) of its latest retry.
    holders: BTreeMap<usize, (usize, usize)>,
    /// (sidecar, cluster) that gained a holder in the engine call being carried out.
    touched: Vec<(usize, usize)>,
}

impl Mesh<'_> {
    /// The budget of cluster `c`, if the scenario limits it.
    fn max_retries(&self, c: usize) -> Option<u32> {
        let info = &self.cluster_info[c];
        self.scn.services[info.service].versions[info.version].max_retries
    }

    /// Attempt `k` (0: the first try) of request `r` went out from sidecar `sc` to cluster `c`.
    pub(crate) fn note_attempt_for_budget(&mut self, sc: usize, c: usize, r: usize, k: usize) {
        if k == 0 || self.max_retries(c).is_none() {
            return;
        }
        self.att.retrying.holders.insert(r, (sc, c));
        self.att.retrying.touched.push((sc, c));
    }

    /// The engine logged request `r`: it has ended and holds no budget.
    pub(crate) fn note_end_for_budget(&mut self, r: usize) {
        self.att.retrying.holders.remove(&r);
    }

    /// After an engine call and its access-log records: no budget exceeded.
    pub(crate) fn check_retry_budgets(&mut self) {
        if self.att.retrying.touched.is_empty() {
            return;
        }
        let mut touched = std::mem::take(&mut self.att.retrying.touched);
        touched.sort_unstable();
        touched.dedup();
        for &(sc, c) in &touched {
            let Some(max) = self.max_retries(c) else {
                continue;
            };
            let holders: Vec<usize> = (self.att.retrying.holders.iter())
                .filter(|(_, at)| **at == (sc, c))
                .map(|(r, _)| *r)
                .collect();
            if holders.len() as u64 > u64::from(max) {
                let msg = format!(
                    "sidecar {sc}: requests {holders:?} are retrying to {} at once, maxRetries {max}",
                    self.cluster_names[c]
                );
                self.violation(Invariant::PoolLimit, msg);
            }
        }
        touched.clear();
        self.att.retrying.touched = touched;
    }
}
