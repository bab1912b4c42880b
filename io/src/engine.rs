//! The driver's view of an engine.
//!
//! The driver is written against this trait rather than the concrete
//! [`trellis_engine::Engine`] so its socket handling can be exercised with small scripted
//! engines (an echo server, a TCP relay) while the real engine evolves, and so a future engine
//! wrapper (metrics, tracing) can slot in. The methods mirror `Engine`'s own one for one.

use std::sync::Arc;
use std::time::SystemTime;

use trellis_engine::config::Config;
use trellis_engine::proxy::{Accepted, RequestLog};
use trellis_engine::transport::tls::{MtlsSettings, MtlsTransports, Randomness};
use trellis_engine::{ConnId, Engine, Event, Input, Instant, Output};

/// The engine a production driver runs: TLS as the configuration asks, with the operating
/// system's randomness, and certificate validity checked against wall-clock time (engine time
/// zero is taken as now; the driver's clock starts within moments of it).
pub fn production_engine(config: Arc<Config>, seed: u64) -> Engine {
    let mut engine = Engine::new(config, seed);
    let unix_base = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    // JWT `exp`/`nbf` are checked at the same engine-derived UNIX time as certificates.
    engine.set_unix_base(unix_base);
    engine.set_transports(Box::new(MtlsTransports::from_config(MtlsSettings {
        unix_base,
        randomness: Randomness::System,
    })));
    engine
}

/// A sans-IO proxy state machine a driver can run.
pub trait ProxyEngine {
    /// A listener accepted a connection; returns the id the engine will use for it.
    fn accept(&mut self, now: Instant, conn: Accepted) -> ConnId;
    /// Feed one input.
    fn handle(&mut self, now: Instant, input: Input);
    /// The time returned by [`ProxyEngine::poll_timeout`] has come.
    fn handle_timeout(&mut self, now: Instant);
    /// The next output to perform, if any.
    fn poll_output(&mut self) -> Option<Output>;
    /// When the engine next wants [`ProxyEngine::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Move the access-log records of requests finished since the last call into `into`
    /// (a buffer the driver reuses, so logging allocates nothing per batch once warm).
    fn drain_logs_into(&mut self, into: &mut Vec<RequestLog>);
    /// Requests in flight, if the engine knows. During shutdown the driver stops waiting once
    /// this is zero and every write is flushed (idle keep-alive connections are then closed);
    /// `None` makes it wait for the downstream connections to close or the grace period.
    fn requests_in_flight(&self) -> Option<usize> {
        None
    }
}

impl ProxyEngine for Engine {
    fn accept(&mut self, now: Instant, conn: Accepted) -> ConnId {
        let id = Engine::accept(self, now, conn);
        log_events(self);
        id
    }

    fn handle(&mut self, now: Instant, input: Input) {
        Engine::handle(self, now, input);
        log_events(self);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Engine::handle_timeout(self, now);
        log_events(self);
    }

    fn poll_output(&mut self) -> Option<Output> {
        Engine::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Engine::poll_timeout(self)
    }

    fn drain_logs_into(&mut self, into: &mut Vec<RequestLog>) {
        Engine::drain_logs_into(self, into)
    }

    fn requests_in_flight(&self) -> Option<usize> {
        Some(self.live().1)
    }
}

/// One log line for each thing the engine reported.
fn log_events(engine: &mut Engine) {
    // Mirrored requests are shadows: never access-log lines (one per client request), but a
    // line of their own, target `trellis::shadow`, so a mirror's failures are seen.
    for m in engine.drain_mirror_logs() {
        tracing::info!(
            target: "trellis::shadow",
            shadow = true,
            cluster = %m.cluster,
            upstream = %m.upstream_host,
            authority = %m.authority,
            path = %m.path,
            status = m.status,
            outcome = ?m.outcome,
            ms = m.duration.as_millis() as u64,
            "mirrored request"
        );
    }
    while let Some(event) = engine.poll_event() {
        match event {
            Event::ConfigRejected { version, error } => tracing::error!(
                %version,
                %error,
                "configuration refused by the engine; the last good one keeps serving"
            ),
            Event::TransportFailed {
                conn,
                peer,
                upstream,
                error,
            } => tracing::warn!(
                %conn,
                %peer,
                side = if upstream { "upstream" } else { "downstream" },
                %error,
                "connection ended by its transport"
            ),
            Event::AuthzDenied {
                conn,
                peer,
                details,
            } => tracing::info!(%conn, %peer, %details, "request denied by authorization policy"),
            Event::AuthnDenied {
                conn,
                peer,
                status,
                details,
            } => tracing::info!(
                %conn,
                %peer,
                %status,
                %details,
                "request refused by request authentication (JWT)"
            ),
            Event::AuthzAudited { conn, peer, policy } => {
                tracing::info!(%conn, %peer, %policy, "request audited by authorization policy")
            }
        }
    }
}
