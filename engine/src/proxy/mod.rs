//! The proxy engine: one instance is one core's worth of state (connections, requests,
//! upstream pools, balancer and outlier state), driven by inputs and drained of outputs.

mod api;
mod log;

pub use api::{Accepted, ConnId, Input, Output};
pub use log::{RequestLog, ResponseFlag};

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::Config;
use crate::rng::EngineRng;
use crate::time::Instant;

/// The sans-IO proxy engine.
pub struct Engine {
    config: Arc<Config>,
    rng: EngineRng,
    next_conn: u64,
    outputs: VecDeque<Output>,
    logs: Vec<RequestLog>,
}

impl Engine {
    /// An engine running `config`, whose random decisions all derive from `seed`.
    pub fn new(config: Arc<Config>, seed: u64) -> Self {
        Engine {
            config,
            rng: EngineRng::with_seed(seed),
            next_conn: 0,
            outputs: VecDeque::new(),
            logs: Vec::new(),
        }
    }

    /// A listener accepted a connection; returns the id the engine will use for it.
    pub fn accept(&mut self, _now: Instant, _conn: Accepted) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    /// Feed one input.
    pub fn handle(&mut self, _now: Instant, _input: Input) {}

    /// The time returned by [`Engine::poll_timeout`] has come (or passed).
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The next output to perform, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the engine next wants [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Take the access-log records of requests finished since the last call.
    pub fn drain_logs(&mut self) -> Vec<RequestLog> {
        std::mem::take(&mut self.logs)
    }

    /// The configuration new requests use.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    #[doc(hidden)]
    pub fn rng_mut(&mut self) -> &mut EngineRng {
        &mut self.rng
    }
}
