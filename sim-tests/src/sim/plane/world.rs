//! The control-plane world's loop: a discrete-event queue of frames in flight, connection
//! breaks noticed late, reconnects and the spec's steps, around one real `push::Server` and N
//! real `push::Client`s.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_control::plane::net::{Backoff, BackoffConfig};
use trellis_control::plane::push::delta::digest;
use trellis_control::plane::push::wire::{encode, FrameDecoder};
use trellis_control::plane::push::{
    Client, ClientMessage, ConnId, Event, Input, PushConfig, Server, ServerMessage, Version,
};
use trellis_control::plane::{scope, SidecarDocument, Snapshot};
use trellis_control::translate::Workload;
use trellis_engine::Instant;

use super::{PlaneOutcome, PlaneSpec, Step, BOUND};

/// The push tests' snapshots and apply step (shared with control's tests).
#[path = "../../../../control/src/plane/push/fixtures.rs"]
mod fixtures;
pub(super) use fixtures::BAD;
use fixtures::{apply, snapshots};

/// `plane::net`'s defaults: a dead connection is noticed after the keepalive timeout, a reset
/// one at the next keepalive, and a connect to a cut-off control plane gives up after its
/// timeout.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A restarted sidecar process connects this long after it starts.
const SIDECAR_START: Duration = Duration::from_millis(100);

enum Ev {
    Step(Step),
    Heal,
    ToServer { conn: ConnId, frame: Vec<u8> },
    ToSidecar { conn: ConnId, frame: Vec<u8> },
    SidecarNotices { i: usize, conn: ConnId },
    ServerNotices { incarnation: u32, conn: ConnId },
    Connect(usize),
    ServerTimer { incarnation: u32 },
}

struct Sidecar {
    node: String,
    client: Client,
    workload: Workload,
    conn: Option<ConnId>,
    link_up: bool,
    latency: Duration,
    backoff: Backoff,
    /// When the last frame each way on this link arrives (frames keep their order).
    last_up: Instant,
    last_down: Instant,
}

pub(super) struct World {
    now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    server: Server,
    incarnation: u32,
    hook: Option<fn(&mut Server)>,
    timer: Option<Instant>,
    sidecars: Vec<Sidecar>,
    /// Live connections: the sidecar and the control-plane incarnation at each end.
    alive: BTreeMap<ConnId, (usize, u32)>,
    next_conn: ConnId,
    latest: Option<usize>,
    nacked: Vec<usize>,
    heal_at: Instant,
    trace: u64,
}

impl World {
    pub(super) fn new(spec: &PlaneSpec, seed: u64, hook: Option<fn(&mut Server)>) -> Self {
        let sidecars = spec
            .namespaces
            .iter()
            .zip(&spec.latency_ms)
            .enumerate()
            .map(|(i, (ns, ms))| {
                let workload = Workload {
                    namespace: ns.clone(),
                    ..Workload::default()
                };
                Sidecar {
                    node: format!("{ns}-{i}"),
                    client: Client::new(format!("{ns}-{i}"), workload.clone()),
                    workload,
                    conn: None,
                    link_up: true,
                    latency: Duration::from_millis(*ms),
                    backoff: Backoff::new(BackoffConfig::default(), seed ^ i as u64),
                    last_up: Instant::ZERO,
                    last_down: Instant::ZERO,
                }
            })
            .collect();
        let mut w = World {
            now: Instant::ZERO,
            queue: BTreeMap::new(),
            seq: 0,
            server: Server::new(PushConfig::default()),
            incarnation: 0,
            hook,
            timer: None,
            sidecars,
            alive: BTreeMap::new(),
            next_conn: 1,
            latest: None,
            nacked: Vec::new(),
            heal_at: Instant::ZERO + spec.heal_at,
            trace: 0xcbf2_9ce4_8422_2325,
        };
        if let Some(plant) = hook {
            plant(&mut w.server);
        }
        for (at, step) in &spec.steps {
            w.at(Instant::ZERO + *at, Ev::Step(step.clone()));
        }
        w.at(w.heal_at, Ev::Heal);
        for i in 0..w.sidecars.len() {
            w.at(Instant::ZERO, Ev::Connect(i));
        }
        w
    }

    fn at(&mut self, t: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn note(&mut self, what: &str) {
        let line = format!("{} {what}", self.now.as_nanos());
        for b in line.bytes() {
            self.trace = (self.trace ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    pub(super) fn run(mut self) -> PlaneOutcome {
        let end = self.heal_at + BOUND + Duration::from_secs(1);
        let mut outcome = PlaneOutcome::default();
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > end {
                break;
            }
            self.now = t;
            self.handle(ev);
            if self.now >= self.heal_at
                && outcome.converged_after.is_none()
                && self.lagging().is_empty()
            {
                outcome.converged_after = Some(self.now.saturating_since(self.heal_at));
            }
        }
        if outcome.converged_after.is_none_or(|d| d > BOUND) {
            outcome.violations = self.lagging();
            if outcome.violations.is_empty() {
                outcome
                    .violations
                    .push(format!("converged only after {outcome:?}"));
            }
        }
        outcome.trace = self.trace;
        outcome
    }

    /// The sidecars that do not hold the latest document for them, and why.
    fn lagging(&self) -> Vec<String> {
        let Some(k) = self.latest else {
            return Vec::new();
        };
        let snapshot: &Snapshot = &snapshots()[k];
        let mut out = Vec::new();
        for (i, s) in self.sidecars.iter().enumerate() {
            let target = scope(snapshot, &s.workload).document;
            let held = s.client.held().map(|(h, _)| *h);
            let ok = if apply(0, &target).is_ok() {
                held.map(|h| h.digest) == Some(digest(&target))
            } else {
                self.nacked.contains(&i)
            };
            if !ok {
                out.push(format!(
                    "sidecar {i} holds {held:?}, not snapshot {k}'s document {:016x}",
                    digest(&target)
                ));
            }
        }
        out
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Step(step) => self.step(step),
            Ev::Heal => {
                self.note("heal");
                for s in &mut self.sidecars {
                    s.link_up = true;
                }
            }
            Ev::Connect(i) => self.connect(i),
            Ev::ToServer { conn, frame } => {
                if self
                    .alive
                    .get(&conn)
                    .is_some_and(|(_, inc)| *inc == self.incarnation)
                {
                    let message: ClientMessage = decode(&frame);
                    self.note(&format!("conn {conn} up {message:?}"));
                    self.server.handle(self.now, Input::Message(conn, message));
                    self.pump();
                }
            }
            Ev::ToSidecar { conn, frame } => {
                let Some(&(i, _)) = self.alive.get(&conn) else {
                    return;
                };
                let push: ServerMessage = decode(&frame);
                let answer = self.sidecars[i].client.handle(push, apply);
                self.note(&format!("conn {conn} down, answered {answer:?}"));
                self.send_up(i, conn, &answer);
            }
            Ev::SidecarNotices { i, conn } => {
                if self.sidecars[i].conn == Some(conn) {
                    self.sidecars[i].conn = None;
                    let delay = self.sidecars[i].backoff.delay();
                    self.at(self.now + delay, Ev::Connect(i));
                }
            }
            Ev::ServerNotices { incarnation, conn } => {
                if incarnation == self.incarnation {
                    self.server.handle(self.now, Input::Disconnected(conn));
                    self.pump();
                }
            }
            Ev::ServerTimer { incarnation } => {
                if incarnation == self.incarnation && self.timer == Some(self.now) {
                    self.timer = None;
                    self.server.handle_timeout(self.now);
                    self.pump();
                }
            }
        }
    }

    fn step(&mut self, step: Step) {
        self.note(&format!("{step:?}"));
        match step {
            Step::Publish(k) => {
                self.latest = Some(k);
                self.server
                    .handle(self.now, Input::Snapshot(snapshots()[k].clone()));
                self.pump();
            }
            Step::Partition(i) => {
                self.sidecars[i].link_up = false;
                if let Some(conn) = self.sidecars[i].conn {
                    // Whatever is in flight is lost; each end finds out when it has heard
                    // nothing for the keepalive timeout.
                    self.alive.remove(&conn);
                    self.at(self.now + KEEPALIVE_TIMEOUT, Ev::SidecarNotices { i, conn });
                    let incarnation = self.incarnation;
                    self.at(
                        self.now + KEEPALIVE_TIMEOUT,
                        Ev::ServerNotices { incarnation, conn },
                    );
                }
            }
            Step::Repair(i) => self.sidecars[i].link_up = true,
            Step::RestartControl => {
                self.incarnation += 1;
                self.timer = None;
                self.server = Server::new(PushConfig::default());
                if let Some(plant) = self.hook {
                    plant(&mut self.server);
                }
                // Every connection is reset; a sidecar sees it at its next keepalive.
                for (conn, (i, _)) in std::mem::take(&mut self.alive) {
                    let latency = self.sidecars[i].latency;
                    self.at(
                        self.now + KEEPALIVE_INTERVAL + latency,
                        Ev::SidecarNotices { i, conn },
                    );
                }
                if let Some(k) = self.latest {
                    self.server
                        .handle(self.now, Input::Snapshot(snapshots()[k].clone()));
                }
                self.pump();
            }
            Step::RestartSidecar(i) => {
                let s = &mut self.sidecars[i];
                s.client = Client::new(s.node.clone(), s.workload.clone());
                s.backoff.reset();
                if let Some(conn) = s.conn.take() {
                    self.alive.remove(&conn);
                    let incarnation = self.incarnation;
                    self.at(
                        self.now + KEEPALIVE_INTERVAL,
                        Ev::ServerNotices { incarnation, conn },
                    );
                }
                self.nacked.retain(|n| *n != i);
                self.at(self.now + SIDECAR_START, Ev::Connect(i));
            }
        }
    }

    fn connect(&mut self, i: usize) {
        if self.sidecars[i].conn.is_some() {
            return;
        }
        if !self.sidecars[i].link_up {
            let delay = CONNECT_TIMEOUT + self.sidecars[i].backoff.delay();
            self.at(self.now + delay, Ev::Connect(i));
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.alive.insert(conn, (i, self.incarnation));
        let s = &mut self.sidecars[i];
        s.conn = Some(conn);
        s.backoff.reset();
        // The handshake's round trip, then the hello.
        let hello = s.client.hello();
        s.last_up = s.last_up.max(self.now + s.latency * 2);
        self.note(&format!("sidecar {i} connects as {conn}"));
        self.send_up(i, conn, &hello);
    }

    fn send_up(&mut self, i: usize, conn: ConnId, message: &ClientMessage) {
        let s = &mut self.sidecars[i];
        let arrive = s.last_up.max(self.now + s.latency);
        s.last_up = arrive;
        let frame = encode(message).expect("a client message encodes");
        self.at(arrive, Ev::ToServer { conn, frame });
    }

    /// Move what the server sends onto the network; keep its timer.
    fn pump(&mut self) {
        while let Some((conn, message)) = self.server.poll_transmit() {
            let Some(&(i, _)) = self.alive.get(&conn) else {
                continue;
            };
            let s = &mut self.sidecars[i];
            let arrive = s.last_down.max(self.now + s.latency);
            s.last_down = arrive;
            let frame = encode(&message).expect("a push encodes");
            self.at(arrive, Ev::ToSidecar { conn, frame });
        }
        while let Some(event) = self.server.poll_event() {
            if let Event::Nacked { conn, .. } = &event {
                if let Some(&(i, _)) = self.alive.get(conn) {
                    self.nacked.push(i);
                }
            }
            self.note(&format!("{event:?}"));
        }
        if let Some(t) = self.server.poll_timeout() {
            let t = t.max(self.now);
            if self.timer != Some(t) {
                self.timer = Some(t);
                let incarnation = self.incarnation;
                self.at(t, Ev::ServerTimer { incarnation });
            }
        }
    }
}

fn decode<M: for<'de> serde::Deserialize<'de>>(frame: &[u8]) -> M {
    let mut decoder = FrameDecoder::default();
    decoder.push(frame);
    match decoder.next_message() {
        Ok(Some(m)) => m,
        Ok(None) => panic!("a frame the world encoded is incomplete"),
        Err(e) => panic!("a frame the world encoded does not decode: {e}"),
    }
}
