//! A mirror's second half: its response read and thrown away, its deadlines, and its end
//! (accounting, the shadow log record, the connection pooled or closed).

use crate::cluster::Outcome;
use crate::http1::{self, BodyDecoder, BodyEvent};
use crate::time::Instant;

use super::super::ids::UpstreamId;
use super::super::Engine;
use super::{MirrorLog, MirrorOutcome, MirrorResponse, MAX_MIRROR_LOGS};

/// What to do after looking at a mirror's response bytes.
enum Step {
    Again,
    Wait,
    Head {
        slot: usize,
        host: Option<usize>,
        status: u16,
    },
    End(MirrorOutcome),
}

impl Engine {
    /// Response bytes (or EOF) on a mirror's connection: read and throw them away.
    pub(crate) fn on_mirror_data(&mut self, now: Instant, up: UpstreamId) {
        loop {
            match self.mirror_step(now, up) {
                Step::Again => {}
                Step::Wait => return,
                Step::Head { slot, host, status } => {
                    // The status feeds the mirror cluster's outlier detector, as any answer.
                    if let (Some(s), Some(h)) = (self.clusters.slot_mut(slot), host) {
                        s.state.report(now, h, Outcome::Response(status));
                        self.arm_sweep(slot);
                    }
                }
                Step::End(outcome) => return self.end_mirror(now, up, outcome),
            }
        }
    }

    fn mirror_step(&mut self, now: Instant, up: UpstreamId) -> Step {
        let Some(u) = self.conns.open_up_mut(up) else {
            return Step::Wait;
        };
        let read_closed = u.read_closed;
        let (slot, host, host_gen, addr) = (u.slot, u.host, u.host_gen, u.addr);
        let Some(m) = u.mirror.as_mut() else {
            return Step::Wait;
        };
        if !m.connected {
            return match read_closed {
                true => Step::End(MirrorOutcome::ConnectFailed),
                false => Step::Wait,
            };
        }
        let Some(response) = m.response.as_mut() else {
            let head = match http1::take_response_head(&mut u.recv, &m.limits, &m.head.method) {
                Ok(Some(head)) => head,
                Ok(None) if read_closed => return Step::End(MirrorOutcome::Reset),
                Ok(None) => return Step::Wait,
                Err(_) => return Step::End(MirrorOutcome::ProtocolError),
            };
            match head.status {
                101 => return Step::End(MirrorOutcome::ProtocolError),
                100..=199 => return Step::Again,
                status => {
                    m.idle_deadline = now + m.idle_timeout;
                    m.response = Some(MirrorResponse {
                        status,
                        decoder: BodyDecoder::new(head.framing, &m.limits),
                        keep_alive: head.keep_alive,
                    });
                    let host = self
                        .clusters
                        .slot(slot)
                        .and_then(|s| s.resolve_host(host_gen, host, addr));
                    return Step::Head { slot, host, status };
                }
            }
        };
        let (event, truncated) = match response.decoder.decode(&mut u.recv) {
            Ok(BodyEvent::NeedMore) if read_closed => (response.decoder.finish_on_eof(), true),
            other => (other, false),
        };
        match event {
            Ok(BodyEvent::Data(_)) => {
                m.idle_deadline = now + m.idle_timeout;
                Step::Again
            }
            Ok(BodyEvent::Done { .. }) => Step::End(MirrorOutcome::Completed),
            Ok(BodyEvent::NeedMore) => Step::Wait,
            Err(_) if truncated => Step::End(MirrorOutcome::Reset),
            Err(_) => Step::End(MirrorOutcome::ProtocolError),
        }
    }

    /// A mirror's connection timer fired: its connect, route or idle deadline may have passed.
    pub(crate) fn on_mirror_timer(&mut self, now: Instant, up: UpstreamId) {
        let Some(u) = self.conns.open_up_mut(up) else {
            return;
        };
        let Some(m) = u.mirror.as_ref() else {
            return;
        };
        let connect_due = !m.connected && u.connect_deadline.is_some_and(|d| d <= now);
        if connect_due {
            self.stats.upstream_cx_connect_fail += 1;
            return self.end_mirror(now, up, MirrorOutcome::ConnectFailed);
        }
        if m.deadline.is_some_and(|d| d <= now) || m.idle_deadline <= now {
            return self.end_mirror(now, up, MirrorOutcome::Timeout);
        }
        self.arm_mirror_timer(up);
    }

    pub(super) fn arm_mirror_timer(&mut self, up: UpstreamId) {
        let next = self
            .conns
            .up(up)
            .and_then(|u| Some(u.mirror.as_ref()?.next_deadline(u.connect_deadline)));
        if let Some(at) = next {
            self.arm_conn_timer(up, at);
        }
    }

    /// The mirror on `up` is over: account for it, log it, and pool or close its connection.
    pub(crate) fn end_mirror(&mut self, now: Instant, up: UpstreamId, outcome: MirrorOutcome) {
        let Some(u) = self.conns.open_up_mut(up) else {
            return;
        };
        let Some(m) = u.mirror.take() else {
            return;
        };
        let (slot, host, host_gen, addr) = (u.slot, u.host, u.host_gen, u.addr);
        let response = m.response.as_ref();
        let reusable = outcome == MirrorOutcome::Completed
            && m.end_sent
            && response.is_some_and(|r| r.keep_alive && r.decoder.is_done())
            && !u.read_closed
            && u.recv.is_empty();
        let status = response.map_or(0, |r| r.status);
        if let Some(r) = m.primary.and_then(|p| self.requests.get_mut(p)) {
            r.mirrors.retain(|&x| x != up);
        }
        // Failures before any answer count against the host, as the primary's do.
        let failure = match outcome {
            MirrorOutcome::ConnectFailed => Some(Outcome::ConnectFailed),
            MirrorOutcome::Reset | MirrorOutcome::ProtocolError if status == 0 => {
                Some(Outcome::Reset)
            }
            MirrorOutcome::Timeout if status == 0 => Some(Outcome::Timeout),
            _ => None,
        };
        if let Some(s) = self.clusters.slot_mut(slot) {
            s.state.breaker_mut().request_done();
            if let Some(h) = s.resolve_host(host_gen, host, addr) {
                s.state.request_finished(h);
                if let Some(failure) = failure {
                    s.state.report(now, h, failure);
                }
            }
        }
        if failure.is_some() {
            self.arm_sweep(slot);
        }
        match outcome {
            MirrorOutcome::Completed => self.stats.mirror_rq_completed += 1,
            MirrorOutcome::Abandoned => self.stats.mirror_rq_abandoned += 1,
            _ => self.stats.mirror_rq_failed += 1,
        }
        if let Some(n) = self
            .stats
            .mirror_rq_by_class
            .get_mut(usize::from(status / 100))
        {
            if status != 0 {
                *n += 1;
            }
        }
        if self.mirror_logs.len() < MAX_MIRROR_LOGS {
            self.mirror_logs.push(MirrorLog {
                cluster: m.cluster,
                upstream_host: addr,
                authority: m.head.authority,
                path: m.head.target.into_str(),
                start: m.start,
                duration: now - m.start,
                status,
                outcome,
            });
        }
        if reusable {
            self.release_upstream(now, up);
        } else {
            self.close_upstream(now, up, outcome == MirrorOutcome::Completed);
        }
    }
}
