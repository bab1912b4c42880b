//! Config churn in the mesh: each delivery of a [`super::scenario::ConfigPush`] is an event
//! that hands one sidecar's engine the whole snapshot for its new generation vector
//! (`Input::Config`). The mesh tracks every sidecar's generation per service (and its stream
//! idle timeout); a request records the generation in effect when its head went in, and is
//! checked against that generation's rules to its end. The engine call that takes a snapshot
//! must leave requests in flight alone ([`Invariant::ConfigSwap`]), and must run what it was
//! handed ([`Invariant::ConfigApplied`]).

use std::sync::Arc;
use std::time::Duration;

use trellis_engine::proxy::CompiledConfig;
use trellis_engine::Input;

use super::check::Invariant;
use super::mesh::Mesh;
use super::model;

impl Mesh<'_> {
    /// Push `p` reaches sidecar `sc`: its engine gets the snapshot of its new generations.
    pub(crate) fn deliver_push(&mut self, sc: usize, p: usize) {
        let push = &self.scn.config_pushes[p];
        let generation = self.scn.push_generation(p);
        let Some(g) = self.sidecars[sc].generations.get_mut(push.service) else {
            return;
        };
        *g = generation;
        if let Some(ms) = push.stream_idle_ms {
            self.sidecars[sc].stream_idle = Some(Duration::from_millis(ms));
        }
        let config = Arc::new(model::engine_config_at(
            self.scn,
            &self.sidecars[sc].generations,
            self.sidecars[sc].stream_idle,
        ));
        let version = config.version.clone();
        if let Some(t) = self.timeline.as_mut() {
            t.pushes
                .push((self.now, format!("push {p} to sidecar {sc}: {version}")));
        }
        let in_flight = (self.sidecars[sc].down.values())
            .flat_map(|d| &d.waiting)
            .filter(|&&r| self.requests[r].end.is_none())
            .count();
        self.in_flight_at_push += in_flight as u64;
        self.pushes_delivered += 1;
        self.trace.u64(0xc0f1_0000 ^ ((p as u64) << 8) ^ sc as u64);
        let applied_before = self.sidecars[sc].engine.stats().config_applied;
        self.config_call = true;
        // Each distinct snapshot is compiled once and shared by every sidecar it reaches, as
        // a runtime shares one compiled snapshot between its cores.
        match self.compiled_config(&config) {
            Some(compiled) => {
                self.sidecars[sc].engine.apply_compiled(self.now, compiled);
                self.after_engine(sc);
            }
            None => self.engine_input(sc, Input::Config(config)),
        }
        self.config_call = false;
        let engine = &self.sidecars[sc].engine;
        let applied = engine.stats().config_applied == applied_before + 1;
        if !applied || engine.config().version != version {
            let msg = format!(
                "sidecar {sc} did not apply push {p} (snapshot {version}): runs {}, error {:?}",
                engine.config().version,
                engine.last_config_error()
            );
            self.violation(Invariant::ConfigApplied, msg);
        }
    }

    /// `config` compiled, from the run's cache of compiled snapshots (by version, which names
    /// the generation vector and idle timeout it was built from); `None` if it does not
    /// compile (the engine then refuses it itself, with its error).
    fn compiled_config(
        &mut self,
        config: &Arc<trellis_engine::config::Config>,
    ) -> Option<CompiledConfig> {
        if let Some(c) = self.compiled.get(&config.version) {
            return Some(c.clone());
        }
        let compiled = CompiledConfig::compile(config.clone()).ok()?;
        self.compiled
            .insert(config.version.clone(), compiled.clone());
        Some(compiled)
    }

    /// The engine touched a request's downstream connection in the call that handed it a
    /// config snapshot: a config swap must leave requests in flight alone.
    pub(crate) fn config_disturbed(&mut self, sc: usize, req: usize, what: &str) {
        let r = &self.requests[req];
        let msg = format!(
            "sidecar {sc} {what} for request {req} (service {}, generation {}, started {}) while applying a config push",
            r.service, r.generation, r.start
        );
        self.violation(Invariant::ConfigSwap, msg);
    }
}
