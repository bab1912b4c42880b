//! The floor reference: Trellis's own runtime (the same event loop, backends, send queues and
//! timers) relaying bytes between each downstream connection and one upstream connection of
//! its own, without parsing anything. What Trellis spends above this is the cost of being an
//! HTTP proxy; what this spends is the runtime's. `bench/e2e.sh` runs it next to Trellis,
//! HAProxy and nginx (issue 10: "within 1.2× of the floor relay").
//!
//! It is not a proxy anyone should run: no HTTP, no keep-alive pooling (one upstream connection
//! per downstream one, opened at accept), no backpressure (writes queue without bound).
//!
//! Usage: `floor_relay --listen 127.0.0.1:18084 --upstream 127.0.0.1:18080 [--io-uring]`

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use trellis_engine::config::{Config, Direction, Listener};
use trellis_engine::proxy::{Accepted, RequestLog};
use trellis_engine::{ConnId, Input, Instant, Output};
use trellis_io::{ControlHandle, EpollDriver, ProxyEngine, RunOptions, UringDriver};

#[derive(Parser)]
#[command(about = "Relay bytes through Trellis's runtime without parsing: the floor reference")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Where every accepted connection is relayed.
    #[arg(long)]
    upstream: SocketAddr,
    /// Use the io_uring backend instead of epoll.
    #[arg(long)]
    io_uring: bool,
}

/// One side of a relayed pair.
struct Side {
    peer: ConnId,
    /// Upstream side only: bytes from downstream that arrived before the connect finished.
    early: Option<Vec<Bytes>>,
}

/// The relay "engine": every accepted connection gets an upstream connection, and bytes are
/// forwarded as they come.
struct Relay {
    upstream: SocketAddr,
    next: u64,
    sides: BTreeMap<ConnId, Side>,
    out: VecDeque<Output>,
}

impl Relay {
    fn id(&mut self) -> ConnId {
        self.next += 1;
        ConnId(self.next)
    }

    fn close_pair(&mut self, conn: ConnId, graceful: bool) {
        if let Some(side) = self.sides.remove(&conn) {
            self.out.push_back(Output::Close { conn, graceful });
            if self.sides.remove(&side.peer).is_some() {
                self.out.push_back(Output::Close {
                    conn: side.peer,
                    graceful,
                });
            }
        }
    }
}

impl ProxyEngine for Relay {
    fn accept(&mut self, _now: Instant, _conn: Accepted) -> ConnId {
        let down = self.id();
        let up = self.id();
        self.sides.insert(
            down,
            Side {
                peer: up,
                early: None,
            },
        );
        self.sides.insert(
            up,
            Side {
                peer: down,
                early: Some(Vec::new()),
            },
        );
        self.out.push_back(Output::Connect {
            conn: up,
            addr: self.upstream,
        });
        down
    }

    fn handle(&mut self, _now: Instant, input: Input) {
        match input {
            Input::Received { conn, data } => {
                let Some(peer) = self.sides.get(&conn).map(|s| s.peer) else {
                    return;
                };
                match self.sides.get_mut(&peer).and_then(|p| p.early.as_mut()) {
                    Some(early) => early.push(data),
                    None => self.out.push_back(Output::Send { conn: peer, data }),
                }
            }
            Input::Connected { conn } => {
                let early = self.sides.get_mut(&conn).and_then(|s| s.early.take());
                for data in early.into_iter().flatten() {
                    self.out.push_back(Output::Send { conn, data });
                }
            }
            Input::ReadClosed { conn } | Input::ConnectFailed { conn } => {
                self.close_pair(conn, true)
            }
            Input::Closed { conn } => self.close_pair(conn, false),
            Input::WriteDrained { .. } | Input::Config(_) | Input::DrainListeners { .. } => {}
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn drain_logs_into(&mut self, _into: &mut Vec<RequestLog>) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = Arc::new(Config {
        version: "floor-relay".into(),
        listeners: vec![Listener {
            tls: None,
            mtls: Default::default(),
            name: "relay".into(),
            address: args.listen,
            route_table: String::new(),
            direction: Direction::Outbound,
            passthrough: false,
            authorization: None,
            local_forward: None,
            inbound_protocols: None,
            outbound_capture: None,
            authentication: None,
            edge: None,
        }],
        ..Config::default()
    });
    let control = ControlHandle::new();
    trellis_io::install_ctrl_c(control.clone())?;
    let relay = |_: Arc<Config>| Relay {
        upstream: args.upstream,
        next: 0,
        sides: BTreeMap::new(),
        out: VecDeque::new(),
    };
    let opts = RunOptions::default();
    if args.io_uring {
        UringDriver::with_engine(config, opts, control, relay)?.run()?;
    } else {
        EpollDriver::with_engine(config, opts, control, relay)?.run()?;
    }
    Ok(())
}
