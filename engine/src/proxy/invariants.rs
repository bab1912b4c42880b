//! The engine's cross-structure invariants, checked after every call in debug builds (tests
//! and the simulator), so a run trips at the call that broke one rather than at the end.
//!
//! Local invariants are asserted where they are relied on (phase steps in
//! [`super::request::Phase::may_become`], breaker give-backs, slab lengths); this file checks
//! what no single line owns:
//! - links: a downstream's active request points back at it, an attached attempt and its
//!   connection name each other, a pending request is queued exactly once, tunnels pair up;
//! - pool and pending counts: each cluster's breaker counts exactly the open connections,
//!   queued requests, attempts and retries that hold its tokens, and its idle lists hold
//!   exactly its idle connections;
//! - timer ownership: every deadline an owner keeps is covered by a heap entry at or before
//!   it, so nothing waits for a wake-up that never comes.

use super::conn::{DownState, Side, UpState};
use super::ids::{DownstreamId, UpstreamId};
use super::request::Phase;
use super::timers::TimerOwner;
use super::Engine;
use crate::time::Instant;

impl Engine {
    /// Panics naming the first invariant that does not hold. Allocates nothing once warm
    /// (the engine's allocation budget is measured in a debug build too).
    pub(crate) fn check_invariants(&mut self) {
        let mut armed = std::mem::take(&mut self.armed_scratch);
        armed.clear();
        armed.extend(self.timers.entries());
        armed.sort_unstable();
        let armed_view = Armed(&armed);
        self.check_requests(&armed_view);
        self.check_connections(&armed_view);
        self.check_clusters(&armed_view);
        self.armed_scratch = armed;
    }

    fn check_requests(&self, armed: &Armed<'_>) {
        for (id, req) in self.requests.iter() {
            let down = self.conns.get(req.down.conn());
            if let Some(c) = down.filter(|c| c.is_open()) {
                let Side::Down(d) = &c.side else {
                    panic!("{id}: its downstream {} is an upstream", req.down.conn());
                };
                assert_eq!(d.state, DownState::Active(id), "{id}: downstream state");
            }
            match req.phase {
                Phase::Upstream { up, .. } => {
                    let u = self
                        .conns
                        .up(up)
                        .expect("an attached attempt's connection lives");
                    assert_eq!(u.state, UpState::Busy(id), "{id}: its connection {up:?}");
                }
                Phase::Connecting(up) => {
                    let u = self
                        .conns
                        .up(up)
                        .expect("a connecting attempt's connection lives");
                    assert_eq!(u.state, UpState::Connecting(Some(id)), "{id}: {up:?}");
                }
                Phase::Pending => {
                    let slot = req.slot.and_then(|s| self.clusters.slot(s));
                    let queued = slot.map_or(0, |s| s.pending.iter().filter(|&&r| r == id).count());
                    assert_eq!(queued, 1, "{id}: pending, queued {queued} times");
                }
                Phase::FaultDelay { .. } | Phase::Backoff { .. } | Phase::Done => {}
            }
            let attempting = matches!(
                req.phase,
                Phase::Pending | Phase::Connecting(_) | Phase::Upstream { .. }
            );
            // The breaker's request token is held exactly while an attempt is under way.
            assert_eq!(
                req.tries.holds_request, attempting,
                "{id}: request token in {:?}",
                req.phase
            );
            if !attempting {
                assert!(
                    req.timers.try_deadline.is_none(),
                    "{id}: a per-try deadline, no try"
                );
            }
            assert_eq!(
                req.body.unsent_bytes,
                req.body.unsent.iter().map(|b| b.len()).sum::<usize>(),
                "{id}: unsent byte count"
            );
            if req.body.replay.is_some() {
                let limit = req.snapshot.config.http.retry_buffer_bytes;
                assert!(
                    req.body.replay_bytes <= limit,
                    "{id}: replay buffer over its bound"
                );
            }
            covered(
                armed,
                req.earliest_wake(),
                req.timers.wake,
                TimerOwner::Request(id),
            );
        }
    }

    fn check_connections(&self, armed: &Armed<'_>) {
        for (conn, c) in self.conns.iter() {
            assert_eq!(c.dirty, self.dirty.contains(&conn), "{conn}: dirty flag");
            if !c.is_open() {
                continue;
            }
            match &c.side {
                Side::Down(d) => {
                    let id = DownstreamId::new(conn);
                    match d.state {
                        DownState::Active(r) => {
                            let req = self.requests.get(r).expect("an active request lives");
                            assert_eq!(req.down, id, "{conn}: its request {r}");
                        }
                        DownState::Tunnel(up) => {
                            let u = self.conns.up(up).expect("a tunnel's upstream lives");
                            assert_eq!(u.state, UpState::Tunnel(id), "{conn}: its tunnel");
                        }
                        DownState::Tcp => {
                            let t = d.tcp.as_ref().expect("an L4 connection's session");
                            if let Some(up) = t.upstream() {
                                let u = self.conns.up(up).expect("an L4 session's upstream");
                                assert_eq!(u.state, UpState::Tcp(id), "{conn}: its upstream");
                            }
                        }
                        DownState::Idle | DownState::ReadingHead => {}
                    }
                    let tcp_deadline = d.tcp.as_ref().and_then(|t| t.deadline);
                    let next = [d.head_deadline, d.idle_deadline, tcp_deadline]
                        .into_iter()
                        .flatten()
                        .min();
                    covered(armed, next, c.wake, TimerOwner::Conn(conn));
                }
                Side::Up(u) => {
                    let id = UpstreamId::new(conn);
                    match u.state {
                        UpState::Busy(r) => {
                            let req = self.requests.get(r).expect("a busy connection's request");
                            assert_eq!(req.phase.upstream(), Some(id), "{conn}: busy for {r}");
                        }
                        UpState::Connecting(Some(r)) => {
                            let req = self.requests.get(r).expect("a claimed connect's request");
                            assert_eq!(req.phase, Phase::Connecting(id), "{conn}: for {r}");
                        }
                        UpState::Tunnel(down) => {
                            let d = self.conns.down(down).expect("a tunnel's downstream lives");
                            assert_eq!(d.state, DownState::Tunnel(id), "{conn}: its tunnel");
                        }
                        UpState::Shadow => {
                            let m = u.mirror.as_ref().expect("a shadow connection's mirror");
                            if let Some(r) = m.primary {
                                let req = self.requests.get(r).expect("a mirror's primary");
                                assert!(req.mirrors.contains(&id), "{conn}: mirror of {r}");
                            }
                        }
                        UpState::Tcp(down) => {
                            let d = self.conns.down(down).expect("an L4 upstream's client");
                            let t = d.tcp.as_ref().expect("an L4 upstream's session");
                            assert_eq!(t.upstream(), Some(id), "{conn}: upstream of {down:?}");
                        }
                        UpState::Connecting(None) | UpState::Idle => {}
                    }
                    assert_eq!(
                        u.mirror.is_some(),
                        u.state == UpState::Shadow,
                        "{conn}: a mirror only on a shadow connection"
                    );
                    let next = match u.state {
                        UpState::Connecting(_) | UpState::Tcp(_) => u.connect_deadline,
                        UpState::Idle => u.idle_deadline,
                        UpState::Shadow => u
                            .mirror
                            .as_ref()
                            .map(|m| m.next_deadline(u.connect_deadline)),
                        _ => None,
                    };
                    covered(armed, next, c.wake, TimerOwner::Conn(conn));
                }
            }
        }
    }

    fn check_clusters(&self, armed: &Armed<'_>) {
        for (index, slot) in self.clusters.slots.iter().enumerate() {
            let Some(s) = slot else { continue };
            let open_ups = || {
                self.conns
                    .iter()
                    .filter_map(move |(conn, c)| match &c.side {
                        Side::Up(u) if c.is_open() && u.slot == index => Some((conn, u)),
                        _ => None,
                    })
            };
            let breaker = s.state.breaker();
            let connections = open_ups().count();
            assert_eq!(
                breaker.connections() as usize,
                connections,
                "{}: connections",
                s.name
            );
            assert_eq!(
                breaker.pending() as usize,
                s.pending.len(),
                "{}: pending",
                s.name
            );
            let on_slot = |f: fn(&super::request::Request) -> bool| {
                (self.requests.iter())
                    .filter(|(_, r)| r.slot == Some(index) && f(r))
                    .count()
            };
            // Every mirror in flight holds a request token of its cluster too.
            let mirrors = open_ups()
                .filter(|(_, u)| u.state == UpState::Shadow)
                .count();
            let requests = on_slot(|r| r.tries.holds_request) + mirrors;
            assert_eq!(
                breaker.requests() as usize,
                requests,
                "{}: requests",
                s.name
            );
            let retries = on_slot(|r| r.tries.holds_retry);
            assert_eq!(breaker.retries() as usize, retries, "{}: retries", s.name);
            for &r in &s.pending {
                let req = self.requests.get(r).expect("a queued request lives");
                assert_eq!(req.phase, Phase::Pending, "{}: queued {r}", s.name);
            }
            let pooled = s.idle.iter().flatten().count();
            let idle = open_ups().filter(|(_, u)| u.state == UpState::Idle).count();
            assert_eq!(pooled, idle, "{}: idle connections pooled", s.name);
            for &up in s.idle.iter().flatten() {
                let u = self.conns.up(up).expect("a pooled connection lives");
                assert_eq!(u.state, UpState::Idle, "{}: pooled {up:?}", s.name);
            }
            if let Some(at) = s.sweep_at {
                let owner = TimerOwner::ClusterSweep(index);
                assert!(armed.contains(&(at, owner)), "{}: sweep timer", s.name);
            }
        }
    }
}

/// The timer heap's entries, sorted.
struct Armed<'a>(&'a [(Instant, TimerOwner)]);

impl Armed<'_> {
    fn contains(&self, entry: &(Instant, TimerOwner)) -> bool {
        self.0.binary_search(entry).is_ok()
    }
}

/// An owner's earliest deadline is covered: its armed instant is in the heap and not later.
fn covered(armed: &Armed<'_>, deadline: Option<Instant>, wake: Option<Instant>, owner: TimerOwner) {
    if let Some(wake) = wake {
        assert!(
            armed.contains(&(wake, owner)),
            "{owner:?}: armed at {wake:?}, not in the heap"
        );
    }
    if let Some(deadline) = deadline {
        assert!(
            wake.is_some_and(|w| w <= deadline),
            "{owner:?}: deadline {deadline:?} but woken at {wake:?}"
        );
    }
}
