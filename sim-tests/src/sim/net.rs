//! The network between sidecars and servers: TCP-like byte streams with latency, jitter,
//! bandwidth, loss, resets and partitions.
//!
//! Each connection direction is a FIFO stream: a segment is never delivered before one sent
//! earlier on the same stream (TCP orders bytes), but different connections reorder freely
//! through jitter. Loss is what TCP makes of it, a retransmission delay (`rto`), not missing
//! bytes. A partition is either a blackhole (segments wait in retransmission until the link
//! heals, connection attempts go unanswered so the engine's connect timeout decides) or a
//! reset (the network answers with RST). Partitions can be one-way. Client ↔ own sidecar is
//! loopback and not modelled here.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_engine::{ConnId, Instant};

use super::scenario::NetSpec;

/// Direction of travel on a sidecar ↔ server link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// Sidecar to server.
    Out,
    /// Server to sidecar.
    In,
}

/// What becomes of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It arrives at this instant.
    Arrives(Instant),
    /// It (and the connection) is reset; the sender's side learns at this instant.
    Reset(Instant),
    /// It vanishes (a connection attempt into a blackhole).
    Lost,
}

/// A partition in force between `[from, until)`.
#[derive(Clone, Copy, Debug)]
struct Cut {
    sidecar: usize,
    service: usize,
    outbound: bool,
    inbound: bool,
    reset: bool,
    from: Instant,
    until: Instant,
}

/// The network state of one run.
#[derive(Debug)]
pub struct Network {
    spec: NetSpec,
    cuts: Vec<Cut>,
    /// Last arrival per (sidecar, connection, direction): FIFO per stream.
    last: BTreeMap<(usize, ConnId, Dir), Instant>,
}

impl Network {
    pub fn new(spec: NetSpec) -> Self {
        Network {
            spec,
            cuts: Vec::new(),
            last: BTreeMap::new(),
        }
    }

    /// Schedule a partition (known in advance from the fault plan).
    #[allow(clippy::too_many_arguments)]
    pub fn add_partition(
        &mut self,
        sidecar: usize,
        service: usize,
        outbound: bool,
        inbound: bool,
        reset: bool,
        from: Instant,
        until: Instant,
    ) {
        self.cuts.push(Cut {
            sidecar,
            service,
            outbound,
            inbound,
            reset,
            from,
            until,
        });
    }

    /// The partition cutting this direction now, if any (latest-ending first).
    fn cut(&self, now: Instant, sidecar: usize, service: usize, dir: Dir) -> Option<Cut> {
        self.cuts
            .iter()
            .filter(|c| c.sidecar == sidecar && c.service == service)
            .filter(|c| c.from <= now && now < c.until)
            .filter(|c| match dir {
                Dir::Out => c.outbound,
                Dir::In => c.inbound,
            })
            .max_by_key(|c| (c.reset, c.until))
            .copied()
    }

    /// Whether a partition is in force on this link in either direction (for reports).
    pub fn partitioned(&self, now: Instant, sidecar: usize, service: usize) -> bool {
        self.cut(now, sidecar, service, Dir::Out).is_some()
            || self.cut(now, sidecar, service, Dir::In).is_some()
    }

    fn one_way(&self, rng: &mut fastrand::Rng) -> Duration {
        let jitter = if self.spec.jitter_us > 0 {
            rng.u64(0..=self.spec.jitter_us)
        } else {
            0
        };
        Duration::from_micros(self.spec.latency_us + jitter)
    }

    /// A connection attempt from `sidecar` to a server of `service`: when and how the
    /// handshake ends, seen from the sidecar. `listening` is whether the server accepts.
    pub fn connect(
        &mut self,
        rng: &mut fastrand::Rng,
        now: Instant,
        sidecar: usize,
        service: usize,
        listening: bool,
    ) -> Fate {
        let there = self.one_way(rng);
        let back = self.one_way(rng);
        match self.cut(now, sidecar, service, Dir::Out) {
            Some(c) if c.reset => return Fate::Reset(now + there),
            Some(_) => return Fate::Lost,
            None => {}
        }
        match self.cut(now + there, sidecar, service, Dir::In) {
            Some(c) if c.reset => return Fate::Reset(now + there + back),
            Some(_) => return Fate::Lost,
            None => {}
        }
        if listening {
            Fate::Arrives(now + there + back)
        } else {
            // RST from the server's kernel: connection refused.
            Fate::Reset(now + there + back)
        }
    }

    /// `len` bytes sent on a stream: when they arrive (FIFO after earlier segments), or the
    /// reset that kills the connection.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        rng: &mut fastrand::Rng,
        now: Instant,
        sidecar: usize,
        service: usize,
        conn: ConnId,
        dir: Dir,
        len: usize,
    ) -> Fate {
        let mut depart = now;
        if let Some(c) = self.cut(now, sidecar, service, dir) {
            if c.reset {
                return Fate::Reset(now + self.one_way(rng));
            }
            // Blackhole: TCP keeps retransmitting; the bytes go through once the link heals.
            depart = c.until + Duration::from_millis(self.spec.rto_ms);
        }
        if self.spec.reset_permille > 0 && rng.u16(0..1000) < self.spec.reset_permille {
            return Fate::Reset(now + self.one_way(rng));
        }
        let mut t = depart + self.one_way(rng);
        let bw = self.spec.bandwidth_bpms.max(1);
        t += Duration::from_nanos((len as u64).saturating_mul(1_000_000) / bw);
        if self.spec.loss_percent > 0 && rng.u8(0..100) < self.spec.loss_percent {
            t += Duration::from_millis(self.spec.rto_ms);
        }
        let last = self.last.entry((sidecar, conn, dir)).or_insert(t);
        if *last > t {
            t = *last;
        }
        *last = t;
        Fate::Arrives(t)
    }

    /// Forget a closed connection's streams.
    pub fn forget(&mut self, sidecar: usize, conn: ConnId) {
        self.last.remove(&(sidecar, conn, Dir::Out));
        self.last.remove(&(sidecar, conn, Dir::In));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NetSpec {
        NetSpec {
            latency_us: 1000,
            jitter_us: 900,
            bandwidth_bpms: 1000,
            loss_percent: 0,
            rto_ms: 50,
            reset_permille: 0,
            client_read_bpms: 0,
            buffer_bytes: 0,
        }
    }

    #[test]
    fn streams_are_fifo_despite_jitter() {
        let mut net = Network::new(spec());
        let mut rng = fastrand::Rng::with_seed(3);
        let mut prev = Instant::ZERO;
        for i in 0..200 {
            let now = Instant::from_nanos(i * 10_000);
            match net.send(&mut rng, now, 0, 0, ConnId(1), Dir::Out, 10) {
                Fate::Arrives(t) => {
                    assert!(t >= prev && t > now);
                    prev = t;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn partitions_blackhole_or_reset_and_heal() {
        let mut net = Network::new(spec());
        let mut rng = fastrand::Rng::with_seed(1);
        let (a, b) = (Instant::from_millis(100), Instant::from_millis(200));
        net.add_partition(0, 1, true, false, false, a, b);
        net.add_partition(1, 1, false, true, true, a, b);
        let mid = Instant::from_millis(150);
        assert_eq!(net.connect(&mut rng, mid, 0, 1, true), Fate::Lost);
        assert!(matches!(
            net.connect(&mut rng, mid, 1, 1, true),
            Fate::Reset(_)
        ));
        // One-way: sidecar 0's inbound direction is fine.
        assert!(matches!(
            net.send(&mut rng, mid, 0, 1, ConnId(1), Dir::In, 1),
            Fate::Arrives(t) if t < b
        ));
        // Blackholed bytes arrive after the heal plus a retransmission.
        assert!(matches!(
            net.send(&mut rng, mid, 0, 1, ConnId(2), Dir::Out, 1),
            Fate::Arrives(t) if t >= b + Duration::from_millis(50)
        ));
        assert!(matches!(
            net.connect(&mut rng, b, 0, 1, true),
            Fate::Arrives(_)
        ));
        assert!(matches!(
            net.connect(&mut rng, mid, 0, 1, false),
            Fate::Lost
        ));
        assert!(matches!(
            net.connect(&mut rng, b, 0, 1, false),
            Fate::Reset(_)
        ));
    }
}
