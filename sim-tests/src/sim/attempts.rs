//! Retries held to Envoy's promises by observations that do not come from engine state. This
//! file records the observations; the per-request checks listed below run after the run, in
//! [`super::retry_checks`].
//!
//! Every attempt that leaves a sidecar is a request head carrying the request's `x-sim-id`;
//! the driver sees it go out (which connection, so which host: `Output::Connect` gave the
//! address), sees what came back to the engine on that connection (a response head and its
//! status, garbage, an EOF, a reset), sees what the server did with it (answered, hung), and
//! sees the engine close the connection. From these alone, per request:
//!
//! - **count**: heads sent ≤ 1 + `attempts`;
//! - **retry-on**: after a response whose status `retryOn` does not cover reached the engine,
//!   no further attempt;
//! - **must retry**: a response whose status `retryOn` covers, reaching the engine with
//!   attempts left, time left before the route deadline and a replayable body (the engine's
//!   retry buffer), is not what the client gets, unless the cluster has a retry budget
//!   (`maxRetries`, [`super::retry_budget`]), which other requests may have spent unseen;
//! - **previous hosts** ([`Invariant::RetryHosts`]): a retry does not go to a host the request
//!   already tried while the cluster had a host not yet tried that was surely eligible (not
//!   ejected before or after the engine call that picked, in the driver's watch and in the
//!   engine's cluster state, which is where ejections are *located*);
//! - **per-try timeout** ([`Invariant::PerTryTimeout`]): the engine abandons an attempt (closes
//!   its connection with nothing back, and the request goes on) no sooner than the per-try
//!   timeout after the attempt began, and an attempt whose server hung is ended no later than
//!   the per-try timeout after its last bytes went out.
//!
//! Exactness: an attempt can also fail before sending anything (a connect refused, lost, or
//! slower than a per-try timeout; a wait in a pool's pending queue), and such an attempt uses
//! up a retry and a tried host without a head on the wire. Requests during whose lifetime
//! their sidecar had such a connect to their service, or whose cluster has a pool limit, are
//! "troubled": the exact checks (must retry, previous hosts) skip them; the bounds (count,
//! retry-on, per-try) hold for them too. The tried list of the engine holds the last 8 hosts;
//! at most 6 attempts are generated, so it never forgets one here.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use trellis_engine::{ConnId, Instant};

use super::check::Invariant;
use super::mesh::Mesh;

/// The exact retry checks (must retry, previous hosts). They raised alarms on a clean engine in
/// a few seeds until requests with attempts the driver cannot see (a connect still pending
/// when the per-try timeout fired sends no head, yet uses a retry and a tried host) were
/// located through the access log's attempt count and marked troubled; seeds 0..2000 are clean
/// since.
pub(crate) const EXACT: bool = true;

/// The exact balancing checks (round robin's cycle, least request's busiest host in
/// [`super::balance`]). They raised alarms on a clean engine in about a fifth of the seeds until
/// two gaps in the driver's view were closed: request heads were recognised by `GET ` and
/// `POST ` only, so every `PUT` and `DELETE` attempt (the routing vocabulary's methods) went
/// unseen, a pick missing from round robin's cycle and a request missing from the in-flight
/// counts; and the weighted round-robin schedule is out of step for a while after a retry's
/// pick (avoided hosts keep their turn, the host picked takes its turn early) and restarts
/// after a config swap, both now located and skipped (see `check_round_robin`). Seeds 0..3000
/// are clean since. Every least-request alarm was the first gap.
pub(crate) const EXACT_BALANCING: bool = true;

/// One attempt that sent its head upstream.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub sent: Instant,
    /// A lower bound on when the engine began the attempt (the connect of a fresh connection
    /// may have been opened for it, earlier than the head went out).
    pub began_by: Instant,
    pub last_send: Instant,
    pub cluster: usize,
    pub host: usize,
    /// A response head reached the engine: when, and its status.
    pub status: Option<(Instant, u16)>,
    /// Anything came back on the connection (a head, garbage, an EOF, a reset).
    pub answered: bool,
    /// The server chose never to answer.
    pub hung: bool,
    /// An interim answer (103) came before its response: no attempt may follow it.
    pub interim: bool,
    /// The engine closed the connection with nothing back.
    pub abandoned: Option<Instant>,
    /// The attempt ended on the wire: its response complete, or its connection gone.
    pub ended: Option<Instant>,
    /// A retry to an already tried host while another was surely eligible (reported at the
    /// end unless the request turns out troubled).
    pub avoid_breach: Option<String>,
}

/// The driver's view of one upstream connection, for attempts.
#[derive(Clone, Debug)]
struct ConnObs {
    cluster: usize,
    host: usize,
    service: usize,
    connect_at: Instant,
    /// Index of its connect's pick in the cluster's pick list.
    connect_pick: Option<usize>,
    /// Hosts surely eligible in the call that opened it (bit per host).
    eligible_at_connect: u64,
    heads: u32,
    /// The attempt on it now: (request, index into its attempts).
    current: Option<(usize, usize)>,
}

/// One pick of a host by a sidecar's balancer, as the driver sees it.
#[derive(Clone, Debug)]
pub(crate) struct Pick {
    /// The event during which it was made (picks of one event are unordered).
    pub group: u64,
    pub host: usize,
    /// The request and its attempt index, once known.
    pub req: Option<(usize, usize)>,
    /// (epoch, eligible hosts) of the cluster after the call: the epoch mixes the ejections
    /// so far with the hosts not ejected, so a new key is a rebuilt balancer.
    pub key: (u64, u64),
    /// The eligible set was the same before and after the call.
    pub stable: bool,
    /// Least request: requests in flight per host (driver's view) when it was picked.
    pub active: Option<Vec<u32>>,
    /// Config snapshots the sidecar had applied by then. A swap gives every cluster a new
    /// balancer (round robin restarts at a random phase) without changing `key`; the count is
    /// the engine's, used only to *locate* the restart, never to set an expectation.
    pub swaps: u64,
}

/// Everything observed about attempts and picks in one run.
#[derive(Default)]
pub(crate) struct Observed {
    pub per_req: Vec<Vec<Attempt>>,
    conns: BTreeMap<(usize, ConnId), ConnObs>,
    /// (sidecar, service) → when a connect of it went wrong.
    trouble: BTreeMap<(usize, usize), Vec<Instant>>,
    /// The connection whose `Connected` the engine is being handed now.
    pub connected: Option<(usize, ConnId)>,
    /// Connects slower than this may have outlived a per-try timeout.
    slow_connect: Option<Duration>,
    /// (sidecar, cluster) → picks in order.
    pub picks: BTreeMap<(usize, usize), Vec<Pick>>,
    /// Request → the attempts its access-log record claims. An engine claim, used only to
    /// *locate* requests with attempts the driver could not see (a connect still pending when
    /// its per-try timeout fired sends no head): those are troubled, and the exact checks skip
    /// them. It never sets an expectation.
    pub logged_attempts: BTreeMap<usize, u32>,
    /// Weighted random picks' chi-square statistics, summed ([`super::balance`]).
    pub random_aggregate: super::stats::Aggregate,
    /// Requests holding a unit of a retry budget ([`super::retry_budget`]).
    pub retrying: super::retry_budget::Retrying,
}

/// The `x-sim-id` of a request head at the start of `data`; `Some(None)` for a head without
/// one.
fn head_id(data: &[u8]) -> Option<Option<usize>> {
    // Any method the clients use (GET, POST, PUT, DELETE): an upper-case token, a space, a
    // path, and ` HTTP/1.1` ending the first line. (Reading only GET and POST once left every
    // PUT and DELETE attempt unseen: picks missing from round robin's cycle, retries and
    // requests in flight missing from the exact checks.)
    let method = data.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let line_end = data.windows(2).position(|w| w == b"\r\n")?;
    if !(1..=10).contains(&method)
        || !data[method..].starts_with(b" /")
        || !data[..line_end].ends_with(b" HTTP/1.1")
    {
        return None;
    }
    const NAME: &[u8] = b"x-sim-id: ";
    let Some(at) = data.windows(NAME.len()).position(|w| w == NAME) else {
        return Some(None);
    };
    let at = at + NAME.len();
    let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    Some(
        std::str::from_utf8(&data[at..at + digits])
            .ok()
            .and_then(|s| s.parse().ok()),
    )
}

impl Mesh<'_> {
    fn slow_connect(&mut self) -> Duration {
        if let Some(d) = self.att.slow_connect {
            return d;
        }
        let scn = self.scn;
        let per_try = (scn.services.iter().flat_map(|s| s.rules.iter()))
            .chain(scn.config_pushes.iter().flat_map(|p| p.rules.iter()))
            .filter_map(|r| r.retries.as_ref()?.per_try_ms)
            .min()
            .unwrap_or(u64::MAX / 4);
        let connect = (scn.services.iter().flat_map(|s| s.versions.iter()))
            .filter_map(|v| v.pool.as_ref().map(|p| p.connect_timeout_ms))
            .min()
            .unwrap_or(1000)
            .min(1000);
        let d = Duration::from_millis(per_try.min(connect));
        self.att.slow_connect = Some(d);
        d
    }

    fn trouble(&mut self, sc: usize, service: usize) {
        let now = self.now;
        self.att.trouble.entry((sc, service)).or_default().push(now);
    }

    /// Which hosts of cluster `c` are surely eligible in sidecar `sc`'s current call: not
    /// ejected in the driver's watch before it nor in the engine's state after it, or every
    /// host when the cluster is in panic mode (bit per host); and (epoch, eligible after) as the balancer's key; and whether
    /// the eligible set stayed the same through the call.
    fn eligibility(&mut self, sc: usize, c: usize) -> (u64, (u64, u64), bool) {
        let hosts = self.cluster_info[c].endpoints.len().min(64);
        let all = if hosts == 64 {
            u64::MAX
        } else {
            (1u64 << hosts) - 1
        };
        if self.cluster_info[c].max_ejection_percent.is_none() {
            return (all, (0, all), true);
        }
        self.sidecars[sc].resolve_slots(&self.cluster_names);
        let side = &self.sidecars[sc];
        let Some(state) = (side.slots.get(c).copied().flatten())
            .and_then(|s| side.engine.inspect().cluster_state_at(s))
        else {
            return (0, (u64::MAX, 0), false);
        };
        let (mut before, mut after) = (0u64, 0u64);
        for h in 0..hosts {
            if !side.hosts[c].get(h).is_some_and(|w| w.ejected) {
                before |= 1 << h;
            }
            if !state.is_ejected(h) {
                after |= 1 << h;
            }
        }
        // The epoch: a change of health is a membership change for the balancer (Envoy
        // rebuilds its schedulers), panic mode or not, so the hosts not ejected go into it
        // even when panic mode makes every host eligible.
        let epoch = state.stats().ejections_total.rotate_left(32) ^ after;
        // Panic mode (`minHealthPercent`): the balancer picks among every host of each level
        // in panic. A locality layout's key keeps the hosts not ejected: its checks derive the
        // levels in panic from them (`check_locality`).
        let stable = before == after;
        let up_after = after;
        before = self.pickable(c, before);
        after = self.pickable(c, after);
        let key_set = if self.version_of(c).locality.is_some() {
            up_after
        } else {
            after
        };
        (before & after, (epoch, key_set), stable)
    }

    /// Sidecar `sc` opened `conn` to `addr`'s endpoint `ep` (a pick by its balancer).
    pub(crate) fn attempt_connect(&mut self, sc: usize, conn: ConnId, ep: Option<usize>) {
        let Some(ep) = ep else {
            return;
        };
        let (c, service) = (self.endpoints[ep].cluster, self.endpoints[ep].service);
        let host = self.cluster_info[c]
            .endpoints
            .iter()
            .position(|e| *e == ep)
            .unwrap_or(0);
        let (eligible, key, stable) = self.eligibility(sc, c);
        let active = self
            .least_request_uniform(c)
            .then(|| self.in_flight(sc, c, conn));
        let picks = self.att.picks.entry((sc, c)).or_default();
        picks.push(Pick {
            group: self.events,
            host,
            req: None,
            key,
            stable,
            active,
            swaps: self.sidecars[sc].engine.stats().config_applied,
        });
        let connect_pick = Some(picks.len() - 1);
        self.att.conns.insert(
            (sc, conn),
            ConnObs {
                cluster: c,
                host,
                service,
                connect_at: self.now,
                connect_pick,
                eligible_at_connect: eligible,
                heads: 0,
                current: None,
            },
        );
    }

    /// How a connect of `sc` will end: `Some(t)` arrives at `t`, `None` fails or is lost.
    pub(crate) fn attempt_connect_fate(
        &mut self,
        sc: usize,
        service: usize,
        arrives: Option<Instant>,
    ) {
        let slow = self.slow_connect();
        let bad = match arrives {
            None => true,
            Some(t) => t - self.now >= slow,
        };
        if bad {
            self.trouble(sc, service);
        }
    }

    /// Whether a request head went out on `conn` and its response has not come back whole.
    pub(crate) fn request_outstanding(&self, sc: usize, conn: ConnId) -> bool {
        self.att
            .conns
            .get(&(sc, conn))
            .is_some_and(|c| c.current.is_some())
    }

    /// Bytes sidecar `sc` sends upstream on `conn`.
    pub(crate) fn attempt_send(&mut self, sc: usize, conn: ConnId, data: &Bytes) {
        let now = self.now;
        let Some(co) = self.att.conns.get(&(sc, conn)) else {
            return;
        };
        let Some(id) = head_id(data) else {
            if let Some((r, k)) = co.current {
                if let Some(a) = self.att.per_req.get_mut(r).and_then(|v| v.get_mut(k)) {
                    a.last_send = now;
                }
            }
            return;
        };
        let Some(r) = id.filter(|&r| r < self.requests.len()) else {
            let service = co.service;
            self.trouble(sc, service);
            return;
        };
        let co = co.clone();
        let fresh = co.heads == 0;
        let at_connect = self.att.connected == Some((sc, conn)) && fresh;
        let c = co.cluster;
        let (eligible_now, key, stable) = self.eligibility(sc, c);
        // The pick: the connect's (a request attached to a connection opened for it), else
        // this very call (an idle connection reused).
        let k = self.att.per_req.get(r).map_or(0, Vec::len);
        let picks = self.att.picks.entry((sc, c)).or_default();
        if at_connect {
            if let Some(p) = co.connect_pick.and_then(|i| picks.get_mut(i)) {
                p.req = Some((r, k));
            }
        } else {
            picks.push(Pick {
                group: self.events,
                host: co.host,
                req: Some((r, k)),
                key,
                stable,
                active: None,
                swaps: self.sidecars[sc].engine.stats().config_applied,
            });
        }
        if !at_connect && k == 0 && self.least_request_uniform(c) {
            let active = self.in_flight(sc, c, conn);
            let picks = self.att.picks.entry((sc, c)).or_default();
            if let Some(p) = picks.last_mut() {
                p.active = Some(active);
            }
        }
        // Previous hosts: the pick was in this call or in the call that opened a fresh
        // connection; a host surely eligible in both was eligible at the pick.
        let mut eligible = eligible_now;
        if fresh {
            eligible &= co.eligible_at_connect;
        }
        // Over a locality layout the retry's balancer avoids tried hosts within the level (or
        // weighted locality) it drew, not across them.
        eligible &= self.locality_peers(c, co.host);
        if self.att.per_req.len() <= r {
            self.att.per_req.resize_with(r + 1, Vec::new);
        }
        let before = &self.att.per_req[r];
        let mut tried = 0u64;
        for a in before.iter().filter(|a| a.cluster == c) {
            tried |= 1 << a.host.min(63);
        }
        // A consistent-hash cluster keeps its host on retries: pilot leaves out the
        // previous-hosts predicate when the route hashes (ConvertPolicy in
        // pilot/pkg/networking/core/route/retry/retry.go).
        let hashed = self.cluster_info.get(c).is_some_and(|info| {
            matches!(
                self.scn.services[info.service].versions[info.version].lb,
                4 | 5
            )
        });
        let avoid_breach = (!hashed
            && tried & (1 << co.host.min(63)) != 0
            && eligible & !tried != 0)
            .then(|| {
                let hosts: Vec<usize> = before.iter().map(|a| a.host).collect();
                let free: Vec<usize> = (0..64).filter(|h| eligible & !tried & (1 << h) != 0).collect();
                format!(
                    "request {r}: attempt {} of sidecar {sc} went to host {} of {} again (tried {hosts:?}) while hosts {free:?} were eligible and untried",
                    k + 1,
                    co.host,
                    self.cluster_names[c]
                )
            });
        self.note_attempt_for_budget(sc, c, r, k);
        let began_by = if fresh { co.connect_at } else { now };
        self.att.per_req[r].push(Attempt {
            sent: now,
            began_by,
            last_send: now,
            cluster: c,
            host: co.host,
            status: None,
            answered: false,
            hung: false,
            interim: false,
            abandoned: None,
            ended: None,
            avoid_breach,
        });
        if let Some(co) = self.att.conns.get_mut(&(sc, conn)) {
            co.heads += 1;
            co.current = Some((r, k));
            // `maxRequestsPerConnection`: no connection carries more.
            let limit = self.scn.services[self.cluster_info[c].service].versions
                [self.cluster_info[c].version]
                .pool
                .as_ref()
                .map_or(0, |p| p.max_requests_per_connection);
            if limit > 0 && co.heads > limit {
                let msg = format!(
                    "sidecar {sc} sent request {} on connection {conn} to {}, its request #{} there (maxRequestsPerConnection {limit})",
                    r, self.cluster_names[c], co.heads
                );
                self.violation(Invariant::PoolLimit, msg);
            }
        }
    }

    /// Requests in flight per host of cluster `c` on sidecar `sc`'s connections (other than
    /// `except`), as the driver sees them: a head sent, the response not whole yet, the
    /// connection still there.
    pub(crate) fn in_flight(&self, sc: usize, c: usize, except: ConnId) -> Vec<u32> {
        let mut active = vec![0u32; self.cluster_info[c].endpoints.len()];
        for (&(_, conn), co) in self.att.conns.range((sc, ConnId(0))..(sc + 1, ConnId(0))) {
            if co.cluster == c && co.current.is_some() && conn != except {
                if let Some(a) = active.get_mut(co.host) {
                    *a += 1;
                }
            }
        }
        active
    }

    /// What the server did with request `id` that came on `(sc, conn)`.
    pub(crate) fn attempt_served(&mut self, sc: usize, conn: ConnId, id: usize, hung: bool) {
        let Some(&(r, k)) = self
            .att
            .conns
            .get(&(sc, conn))
            .and_then(|c| c.current.as_ref())
        else {
            return;
        };
        if r == id && hung {
            if let Some(a) = self.att.per_req.get_mut(r).and_then(|v| v.get_mut(k)) {
                a.hung = true;
            }
        }
    }

    fn current_attempt(&mut self, sc: usize, conn: ConnId) -> Option<&mut Attempt> {
        let (r, k) = self.att.conns.get(&(sc, conn))?.current?;
        self.att.per_req.get_mut(r)?.get_mut(k)
    }

    /// The response head handed to the engine on `conn` came after an interim answer.
    pub(crate) fn attempt_interim(&mut self, sc: usize, conn: ConnId) {
        if let Some(a) = self.current_attempt(sc, conn) {
            a.interim = true;
        }
    }

    /// A piece of a response (or garbage, `status` 0) is handed to the engine on `conn`;
    /// `eof`: the server's FIN.
    pub(crate) fn attempt_back(&mut self, sc: usize, conn: ConnId, status: u16, completes: bool) {
        let now = self.now;
        if let Some(a) = self.current_attempt(sc, conn) {
            a.answered = true;
            if status != 0 && a.status.is_none() {
                a.status = Some((now, status));
            }
            if completes {
                a.ended.get_or_insert(now);
            }
        }
        if completes {
            if let Some(co) = self.att.conns.get_mut(&(sc, conn)) {
                co.current = None;
            }
        }
    }

    /// The engine closed upstream `conn`.
    pub(crate) fn attempt_engine_closed(&mut self, sc: usize, conn: ConnId) {
        let now = self.now;
        if let Some(a) = self.current_attempt(sc, conn) {
            if !a.answered && a.ended.is_none() {
                a.abandoned = Some(now);
            }
        }
    }

    /// The driver's socket for `conn` is gone (closed by either side, or reset).
    pub(crate) fn attempt_conn_gone(&mut self, sc: usize, conn: ConnId) {
        let now = self.now;
        if let Some(a) = self.current_attempt(sc, conn) {
            a.ended.get_or_insert(now);
        }
        // A connection gone before any head went out on it may have been an attempt (a
        // connect refused, reset or timed out).
        if let Some(co) = self.att.conns.remove(&(sc, conn)) {
            if co.heads == 0 {
                self.trouble(sc, co.service);
            }
        }
    }

    /// Sidecar `sc` had a connect towards `service` go wrong at some point.
    pub(crate) fn att_troubled(&self, sc: usize, service: usize) -> bool {
        self.att.trouble.contains_key(&(sc, service))
    }

    pub(crate) fn troubled_request(&self, r: usize) -> bool {
        self.troubled(r)
    }

    pub(crate) fn troubled(&self, r: usize) -> bool {
        let req = &self.requests[r];
        let end = req.end.unwrap_or(self.now);
        if let Some(times) = self.att.trouble.get(&(req.sidecar, req.service)) {
            let from = times.partition_point(|t| *t < req.start);
            if times.get(from).is_some_and(|t| *t <= end) {
                return true;
            }
        }
        let attempts = self.att.per_req.get(r).map_or(&[][..], Vec::as_slice);
        let unseen =
            (self.att.logged_attempts.get(&r)).is_some_and(|&n| n as usize > attempts.len());
        unseen
            || attempts
                .iter()
                .any(|a| self.cluster_info[a.cluster].max_connections.is_some())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn heads_and_ids() {
        assert_eq!(
            super::head_id(b"GET /x HTTP/1.1\r\nx-sim-id: 42\r\n"),
            Some(Some(42))
        );
        assert_eq!(super::head_id(b"POST /x HTTP/1.1\r\n\r\n"), Some(None));
        assert_eq!(super::head_id(b"abcdef"), None);
        assert_eq!(
            super::head_id(b"DELETE /r HTTP/1.1\r\nx-sim-id: 7\r\n"),
            Some(Some(7))
        );
        assert_eq!(super::head_id(b"GET abc HTTP/1.1\r\n"), None);
    }
}
