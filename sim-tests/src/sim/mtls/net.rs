//! The pod network of the security world: connections between a caller (or its sidecar) and
//! a service's inbound sidecar, and the faults on them. Connects take a latency, or fail
//! at once into a partition; each write arrives after a latency drawn per write, plus a
//! retransmission timeout when lost, in order per direction, cut in two when the seed splits
//! writes (TLS records then arrive in fragments), held until a partition ends; a reset
//! reaches both ends. Both ends of a handshake therefore run under delay, loss and
//! partitions.

use std::time::Duration;

use bytes::Bytes;
use trellis_engine::{ConnId, Input, Instant};

use super::checks::Link;
use super::world::{caller_addr, pod, Ev, Side, World, RETRANSMIT};

impl World<'_> {
    fn partitioned_until(&self, service: usize) -> Option<Instant> {
        let now_ms = self.now.as_nanos() / 1_000_000;
        (self.spec.net.partitions.iter())
            .filter(|p| {
                p.service == service && p.from_ms <= now_ms && now_ms < p.from_ms + p.for_ms
            })
            .map(|p| Instant::from_millis(p.from_ms + p.for_ms))
            .max()
    }

    fn latency(&mut self) -> Duration {
        let mut d = Duration::from_millis(self.rng.u64(0..=self.spec.net.latency_ms));
        if self.rng.u8(0..100) < self.spec.net.loss_percent {
            d += RETRANSMIT;
        }
        d
    }

    /// A connection from caller `c` (its sidecar's `out` end, or the caller itself) toward
    /// service `s`'s pod.
    pub(crate) fn open_link(
        &mut self,
        c: usize,
        service: usize,
        out: Option<(usize, ConnId)>,
        req: Option<usize>,
    ) -> usize {
        let link = self.links.len();
        let client_cert = out.map(|(e, _)| self.current_cert[e]);
        let mut new = Link::new(c, service, self.now, out, req, client_cert);
        new.client_roots = out.map_or(0, |(e, _)| self.roots_of(e));
        self.links.push(new);
        if let Some(end) = out {
            self.ends.insert(end, (link, Side::Client));
        }
        let (at, ok) = match self.partitioned_until(service) {
            Some(_) => (self.now + Duration::from_millis(1), false),
            None => (self.now + self.latency(), true),
        };
        self.queue.push(at, Ev::ConnectDone { link, ok });
        link
    }

    pub(crate) fn connect_done(&mut self, link: usize, ok: bool) {
        let out = self.links[link].out;
        if let Some(end) = out {
            if !self.ends.contains_key(&end) {
                return; // the sidecar gave up on it first
            }
        }
        if !ok {
            self.links[link].closed_at = Some(self.now);
            match out {
                Some((e, conn)) => {
                    self.ends.remove(&(e, conn));
                    self.engine_input(e, Input::ConnectFailed { conn });
                }
                None => {
                    if let Some(req) = self.links[link].req {
                        self.finish(req, "connect-failed");
                    }
                }
            }
            return;
        }
        let s = self.links[link].service;
        let c = self.links[link].caller;
        let peer = caller_addr(c, 30_000 + (link % 30_000) as u16);
        let accepted = trellis_engine::proxy::Accepted::new(peer, pod(s));
        let inb = self.engines[s].accept(self.now, accepted);
        self.ends.insert((s, inb), (link, Side::Server));
        let server_roots = self.roots_of(s);
        let l = &mut self.links[link];
        l.inb = Some(inb);
        l.accepted_mode = Some(self.modes[s]);
        l.server_cert = Some(self.current_cert[s]);
        l.server_roots = server_roots;
        self.after_engine(s);
        match out {
            Some((e, conn)) => self.engine_input(e, Input::Connected { conn }),
            None => {
                if let Some(req) = self.links[link].req {
                    if let Some(data) = self.requests[req].pending.take() {
                        self.net_send(link, true, data);
                    }
                }
            }
        }
    }

    /// Bytes written into a link by one end: to the other end after the network's delay.
    pub(crate) fn net_send(&mut self, link: usize, to_server: bool, data: Bytes) {
        self.trace.u64(link as u64 ^ (u64::from(to_server) << 40));
        self.trace.bytes(&data);
        if to_server {
            self.links[link].observe_client_bytes(&data);
        }
        if self.rng.u16(0..1000) < self.spec.net.reset_permille {
            self.reset_link(link);
            return;
        }
        let mut at = self.now + self.latency();
        if let Some(until) = self.partitioned_until(self.links[link].service) {
            at = at.max(until + self.latency());
        }
        let l = &mut self.links[link];
        let last = if to_server {
            &mut l.c2s_last
        } else {
            &mut l.s2c_last
        };
        at = at.max(*last);
        *last = at;
        if self.spec.net.split && data.len() > 1 {
            let cut = self.rng.usize(1..data.len());
            self.queue.push(
                at,
                Ev::Deliver {
                    link,
                    to_server,
                    data: data.slice(..cut),
                },
            );
            self.queue.push(
                at,
                Ev::Deliver {
                    link,
                    to_server,
                    data: data.slice(cut..),
                },
            );
        } else {
            self.queue.push(
                at,
                Ev::Deliver {
                    link,
                    to_server,
                    data,
                },
            );
        }
    }

    /// The network resets a link: both ends see it.
    pub(crate) fn reset_link(&mut self, link: usize) {
        self.trace.u64(0x4e5e7 ^ link as u64);
        let at = self.now + Duration::from_millis(1);
        self.queue.push(
            at,
            Ev::Eof {
                link,
                to_server: true,
                reset: true,
            },
        );
        self.queue.push(
            at,
            Ev::Eof {
                link,
                to_server: false,
                reset: true,
            },
        );
    }

    pub(crate) fn deliver(&mut self, link: usize, to_server: bool, data: Bytes) {
        if to_server {
            let Some(inb) = self.links[link].inb else {
                return;
            };
            let s = self.links[link].service;
            if !self.ends.contains_key(&(s, inb)) {
                return;
            }
            self.links[link].note_c2s(self.now);
            self.engine_input(s, Input::Received { conn: inb, data });
            return;
        }
        self.links[link].note_s2c(self.now);
        match (self.links[link].out, self.links[link].req) {
            (Some(end), _) => {
                if self.ends.contains_key(&end) {
                    self.engine_input(end.0, Input::Received { conn: end.1, data });
                }
            }
            (None, Some(req)) => self.requests[req].response.extend_from_slice(&data),
            (None, None) => {}
        }
    }

    pub(crate) fn eof(&mut self, link: usize, to_server: bool, reset: bool) {
        if to_server && self.links[link].closed_at.is_none() {
            self.links[link].closed_at = Some(self.now);
        }
        let end = if to_server {
            self.links[link].inb.map(|c| (self.links[link].service, c))
        } else {
            self.links[link].out
        };
        match end {
            Some(end) => {
                let open = self.ends.remove(&end).is_some();
                let input = if reset {
                    Input::Closed { conn: end.1 }
                } else {
                    Input::ReadClosed { conn: end.1 }
                };
                if open {
                    self.engine_input(end.0, input);
                }
            }
            None if !to_server => {
                if let Some(req) = self.links[link].req {
                    self.links[link].req = None;
                    let outcome = if reset { "reset" } else { "closed" };
                    self.finish(req, outcome);
                }
            }
            None => {}
        }
    }
}
