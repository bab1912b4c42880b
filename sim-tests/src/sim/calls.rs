//! Two-tier meshes: a workload of a service with `calls` serves a request by calling each of
//! the services it depends on, in parallel, through its own sidecar (an engine of its own, like
//! every pod's in Istio), then answers once they have all ended: 200 with the body its client
//! expects, or 502 when any call did not end in a 2xx. Calls carry the caller's `x-user` on
//! (header propagation). If the workload crashes, the requests it was serving are gone and its
//! calls still in flight are cancelled: their connections to its sidecar close under them.
//! Every call is a request like any other to the invariants (ends once, within its route's
//! bound, only to allowed endpoints, byte-exact).

use std::time::Duration;

use super::client::Call;
use super::mesh::{Ev, Mesh};
use super::server::Answer;

/// How long a calling workload waits for a call whose route promises no bound (its HTTP
/// client's timeout), shorter than a client's patience so that the request it serves can still
/// answer in time.
const CALL_PATIENCE: Duration = Duration::from_secs(2);
/// The largest response a call asks for.
const CALL_MAX_RESPONSE: usize = 1024;

impl Mesh<'_> {
    /// One of a serve's calls ended; when it was the last, the workload finishes its own
    /// service time and answers.
    pub(crate) fn call_ended(&mut self, serve: usize, ok: bool) {
        let sv = &mut self.serves[serve];
        sv.waiting = sv.waiting.saturating_sub(1);
        sv.failed |= !ok;
        if sv.waiting == 0 && sv.alive {
            let at = self.now + sv.delay;
            self.queue.push(at, Ev::ServeDone { serve });
        }
    }

    /// A serve's calls are done and its service time is over: answer 200 with the body its
    /// client expects, or 502 when a dependency failed.
    pub(crate) fn serve_done(&mut self, serve: usize) {
        let sv = &self.serves[serve];
        if !sv.alive {
            return;
        }
        let (sc, conn, epoch, ep, req, failed) =
            (sv.sc, sv.conn, sv.epoch, sv.ep, sv.req, sv.failed);
        let answer = if failed {
            Answer::Respond {
                status: 502,
                pattern: None,
                text: b"a dependency failed",
            }
        } else {
            Answer::Respond {
                status: 200,
                pattern: Some(self.requests[req].resp_len),
                text: b"",
            }
        };
        self.answer((sc, conn, epoch), ep, req, self.now, answer);
    }

    /// A calling workload's process died: the requests it was serving are gone, and so are
    /// its calls still in flight (their connections to its sidecar close under them).
    pub(crate) fn cancel_serves(&mut self, ep: usize) {
        for serve in 0..self.serves.len() {
            if self.serves[serve].ep != ep || !self.serves[serve].alive {
                continue;
            }
            self.serves[serve].alive = false;
            for i in 0..self.serves[serve].calls.len() {
                let call = self.serves[serve].calls[i];
                self.cancel_call(call);
            }
        }
    }

    /// A call from a workload serving request `serve`'s request: a GET to `service` through
    /// the workload's own sidecar, carrying the caller's `x-user` on (header propagation, as
    /// bookinfo's services do with `end-user`).
    pub(crate) fn start_call(&mut self, sidecar: usize, serve: usize, service: usize) {
        let parent = self.serves[serve].req;
        let user = self.requests[parent].user.clone();
        let resp_len = self.rng.usize(0..=CALL_MAX_RESPONSE);
        let shape = self.draw_shape(service, false, true);
        let call = Call {
            service,
            user,
            body_len: None,
            resp_len,
            patience: CALL_PATIENCE,
            shape,
        };
        let id = self.open_request(sidecar, call, None, Some(serve));
        self.serves[serve].calls.push(id);
    }
}
