//! The mesh world: sidecars (real engines), server workloads, client workloads, the network,
//! a virtual clock and one seeded RNG, advanced by a discrete-event queue.
//!
//! The loop is: take the earliest of (the next queued event, the earliest engine timer), move
//! the clock there, fire it, then carry out every output the touched engine produced (connects,
//! sends, closes) by scheduling their consequences on the network. Engine timers fire before
//! queued events at the same instant; queued events fire in scheduling order. Nothing reads a
//! wall clock or iterates a hash map, so a seed replays exactly.
//!
//! Server behaviour lives in [`super::server`], clients in [`super::client`], the invariant
//! checks done after each engine call in [`super::observe`].
//!
//! The parts of the world are in [`super::state`], config pushes reaching sidecars in
//! [`super::churn`], workloads' calls in [`super::calls`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use trellis_engine::proxy::CompiledConfig;
use trellis_engine::{ConnId, Engine, Input, Instant, Output};

use super::check::{Invariant, Violations};
use super::ejection::{HostNow, HostWatch};
use super::model::{self, endpoint_addr};
use super::net::Network;
use super::queue::EventQueue;
use super::report::{RunReport, Timeline, TimelineFault, TraceHash};
use super::scenario::{FaultKind, Scenario};
pub(crate) use super::state::{
    ClientRequest, ClusterInfo, Endpoint, Piece, Serve, ServerSide, Sidecar, UpConn,
};

/// A run that needs more events than this is stuck (time no longer advancing) or absurd.
const MAX_EVENTS: u64 = 5_000_000;

pub(crate) use super::events::Ev;
pub use super::events::RunOptions;

/// The whole simulated mesh of one scenario.
pub struct Mesh<'s> {
    pub(crate) scn: &'s Scenario,
    pub(crate) opts: RunOptions,
    pub(crate) now: Instant,
    pub(crate) rng: fastrand::Rng,
    pub(crate) queue: EventQueue<Ev>,
    pub(crate) net: Network,
    pub(crate) sidecars: Vec<Sidecar>,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) ep_by_addr: BTreeMap<SocketAddr, usize>,
    /// Cluster names, and per cluster: (service, version, max connections, outlier cap %).
    pub(crate) cluster_names: Vec<String>,
    pub(crate) cluster_info: Vec<ClusterInfo>,
    pub(crate) requests: Vec<ClientRequest>,
    pub(crate) violations: Violations,
    pub(crate) trace: TraceHash,
    pub(crate) events: u64,
    pub(crate) ejections: u64,
    pub(crate) timeline: Option<Timeline>,
    /// (service, generation, rule, cluster) → requests the engine sent there, for weight
    /// convergence.
    pub(crate) split_counts: BTreeMap<(usize, usize, usize, usize), u64>,
    /// (service, generation, rule) → [delay draws, delays, abort draws, aborts] of fault
    /// injection.
    pub(crate) fault_counts: BTreeMap<(usize, usize, usize), [u64; 4]>,
    /// Dispatches to (cluster, endpoint) in the current engine call.
    pub(crate) dispatches: Vec<(usize, usize)>,
    pub(crate) touched_pools: Vec<usize>,
    /// Clusters whose outlier state the current engine call may have changed (all of them
    /// after a timer call).
    pub(crate) scan: Vec<usize>,
    pub(crate) scan_all: bool,
    /// Requests not yet ended.
    pub(crate) open_requests: usize,
    pub(crate) cluster_by_name: BTreeMap<String, usize>,
    /// Engine route names per service and rule of generation 0 (`model::rule_name`), made once.
    pub(crate) rule_names: Vec<Vec<String>>,
    /// Request heads sent in the current engine call to clusters with a pool limit:
    /// (cluster, endpoint, request id).
    pub(crate) picks: Vec<(usize, usize, usize)>,
    /// Hosts whose failure streak reached `consecutive_5xx` in the current call:
    /// (cluster, host, streak).
    pub(crate) must_eject: Vec<(usize, usize, u32)>,
    /// The outlier model's per-call bookkeeping.
    pub(crate) outlier_calls: super::ejection::OutlierCalls,
    pub(crate) host_buf: Vec<HostNow>,
    /// Requests being served by calling workloads.
    pub(crate) serves: Vec<Serve>,
    /// Every sidecar's next engine deadline as of the end of its last engine call, and the
    /// same as an ordered set: with a sidecar per calling workload a mesh can run hundreds of
    /// engines, and asking each for its deadline at every event was most of such a run.
    pub(crate) deadlines: Vec<Option<Instant>>,
    pub(crate) by_deadline: std::collections::BTreeSet<(Instant, usize)>,
    /// The current engine call hands over a config snapshot (what it may output is checked).
    pub(crate) config_call: bool,
    pub(crate) pushes_delivered: u64,
    /// Requests in flight on a sidecar when a push reached it, summed over pushes.
    pub(crate) in_flight_at_push: u64,
    /// Access-log records being checked (kept for its capacity).
    pub(crate) log_buf: Vec<trellis_engine::proxy::RequestLog>,
    /// Each sidecar's workload labels (what `sourceLabels` match), as a list for the
    /// reference model and as the map handed to the engine with each connection.
    pub(crate) labels: Vec<Vec<(String, String)>>,
    /// Snapshots compiled so far, by version (config pushes reuse them across sidecars).
    pub(crate) compiled: BTreeMap<String, CompiledConfig>,
    /// The weighted-split chi-square statistics of this run, summed (see `stats::Aggregate`).
    pub(crate) split_aggregate: super::stats::Aggregate,
    pub(crate) label_maps: Vec<Arc<BTreeMap<String, String>>>,
    /// Attempts and balancer picks as the driver sees them ([`super::attempts`]).
    pub(crate) att: super::attempts::Observed,
}

impl<'s> Mesh<'s> {
    /// Build the world of `scn`: engines, servers, the network and the fault plan.
    pub fn new(scn: &'s Scenario, opts: RunOptions) -> Self {
        let config = Arc::new(model::engine_config(scn));
        // Compiled once for every sidecar (an invalid config goes to each engine raw, which
        // refuses it with its error).
        let compiled = CompiledConfig::compile(config.clone()).ok();
        let mut cluster_names = Vec::new();
        let mut cluster_info = Vec::new();
        let mut endpoints = Vec::new();
        let mut ep_by_addr = BTreeMap::new();
        for (s, svc) in scn.services.iter().enumerate() {
            for (v, ver) in svc.versions.iter().enumerate() {
                let cluster = cluster_names.len();
                cluster_names.push(model::cluster_name(s, v));
                let mut eps = Vec::new();
                for (i, spec) in ver.endpoints.iter().enumerate() {
                    ep_by_addr.insert(endpoint_addr((s, v, i)), endpoints.len());
                    eps.push(endpoints.len());
                    endpoints.push(Endpoint {
                        service: s,
                        cluster,
                        spec: spec.clone(),
                        up: true,
                        epoch: 0,
                        hung: 0,
                        slow: Duration::ZERO,
                        sidecar: None,
                    });
                }
                cluster_info.push(ClusterInfo {
                    service: s,
                    version: v,
                    max_connections: ver.pool.as_ref().map(|p| p.max_connections),
                    max_requests: (ver.pool.as_ref())
                        .map(|p| p.max_requests)
                        .filter(|m| *m > 0),
                    max_ejection_percent: ver.outlier.as_ref().map(|o| o.max_ejection_percent),
                    consecutive_5xx: ver.outlier.as_ref().map(|o| o.consecutive_5xx),
                    gateway: ver
                        .outlier
                        .as_ref()
                        .map_or(0, |o| o.consecutive_gateway_errors),
                    local: ver.outlier.as_ref().and_then(|o| o.split_local_origin),
                    base_ejection: Duration::from_millis(
                        ver.outlier.as_ref().map_or(0, |o| o.base_ejection_ms),
                    ),
                    interval: Duration::from_millis(
                        ver.outlier.as_ref().map_or(0, |o| o.interval_ms),
                    ),
                    max_ejection: ver.outlier.as_ref().map_or(Duration::ZERO, |o| {
                        Duration::from_millis(o.max_ejection_ms.unwrap_or(300_000))
                    }),
                    endpoints: eps,
                });
            }
        }
        // Client sidecars first, then one per calling workload, in endpoint order.
        let mut n_sidecars = scn.clients.len();
        for caller in scn.callers() {
            if let Some(&ep) = ep_by_addr.get(&endpoint_addr(caller)) {
                let e: &mut Endpoint = &mut endpoints[ep];
                e.sidecar = Some(n_sidecars);
                n_sidecars += 1;
            }
        }
        let sidecars = (0..n_sidecars)
            .map(|k| {
                let seed = scn
                    .seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(k as u64 + 1);
                let mut engine = match &compiled {
                    Some(c) => Engine::with_compiled(c.clone(), seed),
                    None => Engine::new(config.clone(), seed),
                };
                if let Some(hook) = opts.engine_hook {
                    hook(k, &mut engine);
                }
                Sidecar {
                    engine,
                    up: BTreeMap::new(),
                    refused: Default::default(),
                    down: BTreeMap::new(),
                    open: vec![0; cluster_names.len()],
                    hosts: cluster_info
                        .iter()
                        .map(|c| vec![HostWatch::default(); c.endpoints.len()])
                        .collect(),
                    panic: vec![(false, None); cluster_names.len()],
                    log_req: BTreeMap::new(),
                    generations: vec![0; scn.services.len()],
                    stream_idle: None,
                    slots: Vec::new(),
                    slots_for: None,
                    watched_ejected: 0,
                }
            })
            .collect();
        let mut mesh = Mesh {
            scn,
            opts,
            now: Instant::ZERO,
            rng: fastrand::Rng::with_seed(scn.seed),
            queue: EventQueue::default(),
            net: Network::new(scn.net.clone()),
            sidecars,
            endpoints,
            ep_by_addr,
            cluster_names,
            cluster_info,
            requests: Vec::new(),
            violations: Violations::default(),
            trace: TraceHash::default(),
            events: 0,
            ejections: 0,
            timeline: opts.timeline.then(Timeline::default),
            split_counts: BTreeMap::new(),
            fault_counts: BTreeMap::new(),
            dispatches: Vec::new(),
            touched_pools: Vec::new(),
            scan: Vec::new(),
            scan_all: false,
            open_requests: 0,
            cluster_by_name: BTreeMap::new(),
            rule_names: (scn.services.iter().enumerate())
                .map(|(s, svc)| {
                    (0..svc.rules.len())
                        .map(|r| model::rule_name(s, 0, r))
                        .collect()
                })
                .collect(),
            picks: Vec::new(),
            must_eject: Vec::new(),
            outlier_calls: Default::default(),
            host_buf: Vec::new(),
            serves: Vec::new(),
            deadlines: Vec::new(),
            by_deadline: Default::default(),
            config_call: false,
            pushes_delivered: 0,
            in_flight_at_push: 0,
            log_buf: Vec::new(),
            labels: (0..n_sidecars)
                .map(|sc| super::gen_routes::sidecar_labels(scn, sc))
                .collect(),
            label_maps: Vec::new(),
            split_aggregate: Default::default(),
            compiled: BTreeMap::new(),
            att: Default::default(),
        };
        mesh.label_maps = (mesh.labels.iter())
            .map(|l| Arc::new(l.iter().cloned().collect()))
            .collect();
        mesh.cluster_by_name = (mesh.cluster_names.iter().cloned())
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        for (i, f) in scn.faults.iter().enumerate() {
            let from = Instant::from_millis(f.at_ms);
            let until = from + Duration::from_millis(f.for_ms);
            mesh.queue.push(from, Ev::FaultStart(i));
            mesh.queue.push(until, Ev::FaultEnd(i));
            if let FaultKind::Partition {
                sidecar,
                service,
                outbound,
                inbound,
                reset,
            } = f.kind
            {
                mesh.net
                    .add_partition(sidecar, service, outbound, inbound, reset, from, until);
            }
            if let FaultKind::CallerPartition {
                caller,
                service,
                outbound,
                inbound,
                reset,
            } = f.kind
            {
                let sidecar = (mesh.ep_by_addr.get(&endpoint_addr(caller)))
                    .and_then(|&ep| mesh.endpoints[ep].sidecar);
                if let Some(sidecar) = sidecar {
                    mesh.net
                        .add_partition(sidecar, service, outbound, inbound, reset, from, until);
                }
            }
            if let Some(t) = mesh.timeline.as_mut() {
                t.faults.push(TimelineFault {
                    from,
                    until,
                    label: format!("{:?}", f.kind),
                });
            }
        }
        // Each sidecar gets its pushes in sending order, as on one xDS stream: a push that
        // would arrive before an earlier one waits for it.
        let mut last_arrival = vec![Instant::ZERO; scn.clients.len()];
        for (p, push) in scn.config_pushes.iter().enumerate() {
            for &(sc, delay) in &push.deliveries {
                let Some(last) = last_arrival.get_mut(sc) else {
                    continue;
                };
                let at = Instant::from_millis(push.at_ms.saturating_add(delay)).max(*last);
                *last = at;
                mesh.queue.push(at, Ev::ConfigPush { sc, push: p });
            }
        }
        mesh.deadlines = vec![None; mesh.sidecars.len()];
        for sc in 0..mesh.sidecars.len() {
            mesh.note_deadline(sc);
        }
        mesh.start_clients();
        mesh
    }

    /// Run to the end: the workload's duration, then until every request has ended.
    pub fn run(mut self) -> RunReport {
        let workload_end = Instant::from_millis(self.scn.duration_ms);
        let max_deadline = self
            .scn
            .clients
            .iter()
            .map(|c| c.deadline_ms)
            .max()
            .unwrap_or(0);
        let hard_stop = workload_end + Duration::from_millis(max_deadline + 60_000);
        loop {
            let tq = self.queue.next_time();
            let te = self.by_deadline.first().map(|(t, _)| *t);
            let Some(next) = [tq, te].into_iter().flatten().min() else {
                break;
            };
            let quiet = next > workload_end && self.open_requests == 0;
            if quiet || next > hard_stop {
                break;
            }
            if self.events >= MAX_EVENTS {
                let msg = format!("runaway run: {MAX_EVENTS} events by {next}");
                self.violation(Invariant::EndsOnce, msg);
                break;
            }
            self.now = self.now.max(next);
            self.events += 1;
            if te == Some(next) {
                // Every sidecar due now, in index order. Handling one engine's timers never
                // calls another engine (what crosses between them goes through the queue),
                // so the set due is fixed before the first is handled.
                let mut due: Vec<usize> = (self.by_deadline.iter())
                    .take_while(|(t, _)| *t <= self.now)
                    .map(|(_, sc)| *sc)
                    .collect();
                due.sort_unstable();
                for sc in due {
                    if self.sidecars[sc]
                        .engine
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                    {
                        self.trace.u64(0x7111 ^ sc as u64);
                        self.before_timer(sc);
                        self.sidecars[sc].engine.handle_timeout(self.now);
                        self.scan_all = true;
                        self.after_engine(sc);
                    }
                }
                continue;
            }
            if let Some((_, ev)) = self.queue.pop() {
                self.fire(ev);
            }
        }
        self.finish()
    }

    fn fire(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival { client } => self.on_arrival(client),
            Ev::LoopStart { client, loop_id } => self.start_request(client, Some(loop_id)),
            Ev::GiveUp { req } => self.give_up(req),
            Ev::ConnectDone { sc, conn, ok } => {
                if self.sidecars[sc].refused.remove(&conn) {
                    self.engine_input(sc, Input::ConnectFailed { conn });
                    return;
                }
                if !self.sidecars[sc].up.contains_key(&conn) {
                    return;
                }
                self.note_connect_done(sc, conn);
                if ok {
                    self.att.connected = Some((sc, conn));
                    self.engine_input(sc, Input::Connected { conn });
                    self.att.connected = None;
                } else {
                    self.note_connect_failed(sc, conn);
                    self.drop_up(sc, conn);
                    self.engine_input(sc, Input::ConnectFailed { conn });
                }
            }
            Ev::ToServer { sc, conn, data } => self.server_receive(sc, conn, data),
            Ev::ServerReply {
                sc,
                conn,
                epoch,
                data,
                after,
                status,
                more,
            } => self.server_reply(sc, conn, epoch, data, after, status, more),
            Ev::ToEngine {
                sc,
                conn,
                data,
                completes,
                status,
            } => self.arrive_up(sc, conn, data, completes, status),
            Ev::EngineEof { sc, conn } => {
                if let Some(up) = self.sidecars[sc].up.get_mut(&conn) {
                    up.held_eof = true;
                    self.deliver_up(sc, conn);
                }
            }
            Ev::Resume { sc, conn } if self.sidecars[sc].down.contains_key(&conn) => {
                self.deliver_down(sc, conn)
            }
            Ev::Resume { sc, conn } => self.deliver_up(sc, conn),
            Ev::CloseCheck { sc, conn } => self.close_check(sc, conn),
            Ev::IdleCheck { sc, conn, since } => self.idle_check(sc, conn, since),
            Ev::ClientRead { req, bytes } => self.client_read(req, bytes),
            Ev::EngineReset { sc, conn } => {
                if self.sidecars[sc].up.contains_key(&conn) {
                    self.note_conn_failure(sc, conn, true);
                    self.drop_up(sc, conn);
                    self.engine_input(sc, Input::Closed { conn });
                }
            }
            Ev::ServeDone { serve } => self.serve_done(serve),
            Ev::FaultStart(i) => self.fault(i, true),
            Ev::FaultEnd(i) => self.fault(i, false),
            Ev::ConfigPush { sc, push } => self.deliver_push(sc, push),
        }
    }

    /// The driver's socket for an upstream connection is gone.
    pub(crate) fn drop_up(&mut self, sc: usize, conn: ConnId) {
        self.attempt_conn_gone(sc, conn);
        self.note_connect_done(sc, conn);
        if let Some(u) = self.sidecars[sc].up.remove(&conn) {
            let open = &mut self.sidecars[sc].open[u.cluster];
            *open = open.saturating_sub(1);
            self.net.forget(sc, conn);
        }
    }

    /// Hand one input to a sidecar's engine and carry out what follows.
    pub(crate) fn engine_input(&mut self, sc: usize, input: Input) {
        let conn = match &input {
            Input::Received { conn, .. }
            | Input::ReadClosed { conn }
            | Input::Closed { conn }
            | Input::Connected { conn }
            | Input::ConnectFailed { conn }
            | Input::WriteDrained { conn } => Some(*conn),
            Input::Config(_) | Input::DrainListeners { .. } => None,
        };
        match conn.and_then(|c| self.sidecars[sc].up.get(&c)) {
            Some(u) => self.scan.push(u.cluster),
            // An upstream connection the driver already dropped: its cluster is unknown here.
            None if conn.is_some_and(|c| !self.sidecars[sc].down.contains_key(&c)) => {
                self.scan_all = true
            }
            None => {}
        }
        self.sidecars[sc].engine.handle(self.now, input);
        self.after_engine(sc);
    }

    /// Carry out every output of `sc`'s engine, then run the per-call checks.
    pub(crate) fn after_engine(&mut self, sc: usize) {
        while let Some(output) = self.sidecars[sc].engine.poll_output() {
            match output {
                Output::Connect { conn, addr } => self.on_connect(sc, conn, addr),
                Output::Send { conn, data } => {
                    self.trace.u64(conn.0);
                    self.trace.bytes(&data);
                    if let Some(d) = self.sidecars[sc].down.get(&conn) {
                        // The bytes start the front request's response (or go on with it).
                        let front = d.waiting.front().copied();
                        if let (true, Some(req)) = (self.config_call, front) {
                            self.config_disturbed(sc, req, "wrote to its client");
                        }
                        let len = data.len();
                        self.client_conn_receive(sc, conn, &data);
                        if let (true, Some(req)) = (self.scn.net.client_read_bpms > 0, front) {
                            // Drained only once the slow client has read it.
                            self.client_written(req, len);
                            continue;
                        }
                    } else if self.sidecars[sc].up.contains_key(&conn) {
                        self.upstream_send(sc, conn, data);
                    }
                    self.sidecars[sc]
                        .engine
                        .handle(self.now, Input::WriteDrained { conn });
                }
                // Half-closes come from L4 (TCP) routes, which this world's configs never have.
                Output::Shutdown { .. } => {}
                Output::Close { conn, graceful } => {
                    self.trace.u64(conn.0 ^ (u64::from(graceful) << 63));
                    if self.sidecars[sc].down.contains_key(&conn) {
                        self.client_conn_closed(sc, conn, graceful);
                    } else {
                        if self.config_call
                            && self.sidecars[sc].up.get(&conn).is_some_and(|u| u.busy)
                        {
                            let msg = format!(
                                "sidecar {sc} closed upstream {conn} with a request outstanding on it while applying a config push"
                            );
                            self.violation(Invariant::ConfigSwap, msg);
                        }
                        // The server sees the FIN/RST and drops its end: replies it still
                        // has in preparation find the connection gone.
                        self.sidecars[sc].refused.remove(&conn);
                        self.attempt_engine_closed(sc, conn);
                        self.note_close(sc, conn, graceful);
                        self.drop_up(sc, conn);
                    }
                }
                Output::ReadInterest { conn, enabled } => self.read_interest(sc, conn, enabled),
            }
        }
        let mut logs = std::mem::take(&mut self.log_buf);
        self.sidecars[sc].engine.drain_logs_into(&mut logs);
        for log in logs.drain(..) {
            self.on_log(sc, log);
        }
        self.log_buf = logs;
        self.check_retry_budgets();
        self.observe(sc);
        self.note_deadline(sc);
    }

    /// Record sidecar `sc`'s next engine deadline after a call into its engine.
    fn note_deadline(&mut self, sc: usize) {
        let next = self.sidecars[sc].engine.poll_timeout();
        let cached = &mut self.deadlines[sc];
        if *cached != next {
            if let Some(t) = cached.take() {
                self.by_deadline.remove(&(t, sc));
            }
            if let Some(t) = next {
                self.by_deadline.insert((t, sc));
            }
            *cached = next;
        }
    }

    pub(crate) fn violation(&mut self, invariant: Invariant, detail: impl Into<String>) {
        self.violations.report(invariant, self.now, detail);
    }
}
