//! Runtime state of every upstream cluster: balancer, outlier detector, circuit breaker (all in
//! [`ClusterState`]) plus this engine's connection pool for it (idle connections per host and the
//! queue of requests waiting for a connection).
//!
//! Slots are stable across configuration swaps: a cluster keeps its slot (and, through
//! `ClusterState::carry_over`, its ejections and counters) while its name stays in the config.
//! Slots of removed clusters are retired and freed once nothing refers to them.

use std::collections::VecDeque;

use crate::hash::FastMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::cluster::ClusterState;
use crate::config::Config;
use crate::time::Instant;

use super::ids::{RequestId, UpstreamId};

pub(crate) struct ClusterSlot {
    pub name: String,
    pub state: ClusterState,
    /// Bumped whenever `state` is rebuilt, which may renumber hosts.
    pub generation: u32,
    /// Idle pooled connections per host index, most recently used last.
    pub idle: Vec<Vec<UpstreamId>>,
    /// Requests waiting for a connection (bounded by `http1MaxPendingRequests`).
    pub pending: VecDeque<RequestId>,
    pub retired: bool,
    /// A passthrough cluster (Istio ALLOW_ANY), made on demand for one original destination;
    /// not in any config, freed when unused.
    pub passthrough: bool,
    /// Instant of the armed outlier sweep timer, if any.
    pub sweep_at: Option<Instant>,
}

impl ClusterSlot {
    /// The cluster's name as Envoy would log it: a passthrough pool's cluster
    /// (`PassthroughCluster`, `InboundPassthroughCluster`), without the address it serves.
    pub fn log_name(&self) -> &str {
        if self.passthrough {
            self.name.split('|').next().unwrap_or(&self.name)
        } else {
            &self.name
        }
    }

    fn new(name: String, state: ClusterState) -> Self {
        let hosts = state.host_count();
        ClusterSlot {
            name,
            state,
            generation: 0,
            idle: vec![Vec::new(); hosts],
            pending: VecDeque::new(),
            retired: false,
            passthrough: false,
            sweep_at: None,
        }
    }

    /// The current index of a host remembered as `host` under `generation`: the same index if
    /// the cluster state was not rebuilt since, else looked up by address (None if it is gone).
    pub fn resolve_host(&self, generation: u32, host: usize, addr: SocketAddr) -> Option<usize> {
        if self.generation == generation {
            Some(host)
        } else {
            self.host_by_addr(addr)
        }
    }

    /// The current index of the host at `addr`, if it is still in the cluster.
    pub fn host_by_addr(&self, addr: SocketAddr) -> Option<usize> {
        (0..self.state.host_count()).find(|&h| self.state.host_address(h) == addr)
    }
}

#[derive(Default)]
pub(crate) struct Clusters {
    pub slots: Vec<Option<ClusterSlot>>,
    /// Current (non-retired) cluster name → slot. Only looked up, never iterated.
    pub by_name: FastMap<String, usize>,
}

/// What a config swap changed, for the engine to act on.
#[derive(Default)]
pub(crate) struct SwapResult {
    /// Idle connections that no longer belong to any host and must be closed.
    pub orphaned_idle: Vec<UpstreamId>,
    /// Slots whose outlier sweep timer must be (re)armed.
    pub rearm: Vec<usize>,
}

impl Clusters {
    pub fn slot(&self, slot: usize) -> Option<&ClusterSlot> {
        self.slots.get(slot).and_then(|s| s.as_ref())
    }

    pub fn slot_mut(&mut self, slot: usize) -> Option<&mut ClusterSlot> {
        self.slots.get_mut(slot).and_then(|s| s.as_mut())
    }

    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Brings the slots in line with `config`. `addr_of` resolves an idle connection id to the
    /// address it is connected to.
    pub fn apply(
        &mut self,
        config: &Config,
        now: Instant,
        addr_of: impl Fn(UpstreamId) -> Option<SocketAddr>,
    ) -> SwapResult {
        let mut result = SwapResult::default();
        let mut seen = vec![false; self.slots.len()];
        for cluster in &config.clusters {
            match self.by_name.get(&cluster.name).copied() {
                Some(index) => {
                    if let Some(flag) = seen.get_mut(index) {
                        *flag = true;
                    }
                    let Some(slot) = self.slot_mut(index) else {
                        continue;
                    };
                    if slot.state.config().as_ref() == cluster {
                        continue;
                    }
                    let mut state = ClusterState::new(Arc::new(cluster.clone()), now);
                    state.carry_over(&slot.state);
                    let old_idle = std::mem::take(&mut slot.idle);
                    slot.state = state;
                    slot.generation = slot.generation.wrapping_add(1);
                    slot.idle = vec![Vec::new(); slot.state.host_count()];
                    for conn in old_idle.into_iter().flatten() {
                        match addr_of(conn).and_then(|a| slot.host_by_addr(a)) {
                            Some(host) => slot.idle[host].push(conn),
                            None => result.orphaned_idle.push(conn),
                        }
                    }
                    slot.sweep_at = None;
                    result.rearm.push(index);
                }
                None => {
                    let state = ClusterState::new(Arc::new(cluster.clone()), now);
                    let slot = ClusterSlot::new(cluster.name.clone(), state);
                    let index = match self.slots.iter().position(|s| s.is_none()) {
                        Some(free) => {
                            self.slots[free] = Some(slot);
                            free
                        }
                        None => {
                            self.slots.push(Some(slot));
                            self.slots.len() - 1
                        }
                    };
                    self.by_name.insert(cluster.name.clone(), index);
                    result.rearm.push(index);
                }
            }
        }
        // Retire what the new config no longer names.
        for (index, was_seen) in seen.into_iter().enumerate() {
            if was_seen {
                continue;
            }
            if let Some(slot) = self.slot_mut(index) {
                if !slot.retired && !slot.passthrough {
                    slot.retired = true;
                    result
                        .orphaned_idle
                        .extend(std::mem::take(&mut slot.idle).into_iter().flatten());
                    let name = slot.name.clone();
                    self.by_name.remove(&name);
                }
            }
        }
        result
    }

    /// The slot of passthrough cluster `cluster`'s pool for `addr`, created on first use. No
    /// config names passthrough slots; garbage collection frees them once unused.
    pub fn passthrough(&mut self, addr: SocketAddr, cluster: &str, now: Instant) -> (usize, bool) {
        let name = format!("{cluster}|{addr}");
        if let Some(index) = self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.passthrough && s.name == name))
        {
            return (index, false);
        }
        let cluster = crate::config::Cluster {
            name: name.clone(),
            service: addr.to_string(),
            endpoints: vec![crate::config::Endpoint {
                address: addr,
                weight: 1,
                labels: Default::default(),
                sidecar: false,
            }],
            ..Default::default()
        };
        let mut slot = ClusterSlot::new(name, ClusterState::new(Arc::new(cluster), now));
        slot.passthrough = true;
        let index = match self.slots.iter().position(|s| s.is_none()) {
            Some(free) => {
                self.slots[free] = Some(slot);
                free
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        (index, true)
    }

    /// Live slots no config names (retired or passthrough): what garbage collection frees.
    pub fn unconfigured_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.retired || s.passthrough))
            .count()
    }

    /// Frees retired and passthrough slots that no live request or connection refers to.
    pub fn collect_garbage(&mut self, referenced: &[bool]) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let free = matches!(slot, Some(s) if (s.retired || s.passthrough) && s.pending.is_empty())
                && !referenced.get(index).copied().unwrap_or(false);
            if free {
                *slot = None;
            }
        }
    }
}
