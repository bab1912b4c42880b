//! A deterministic in-memory world around one engine: a virtual clock, scripted upstream
//! servers, and client connections whose bytes go straight into the engine.
//!
//! This is the first piece of the mesh simulator: no sockets, no threads, no wall clock. Time
//! only moves when a test says so ([`World::advance`]), and then every engine timer and server
//! event due in between fires in order. Servers are plain closures from a parsed request to a
//! [`Reply`], so a scenario reads as a script.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{self, BodyReader, Head};
use bytes::{Bytes, BytesMut};
use trellis_engine::config::Config;
use trellis_engine::proxy::{Accepted, RequestLog};
use trellis_engine::{ConnId, Engine, Input, Instant, Output};

/// A request as an upstream server saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub server: SocketAddr,
    pub method: String,
    pub target: String,
    pub authority: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// What a scripted server does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer after `delay` with this status, extra headers and body (content-length framed).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
        delay: Duration,
    },
    /// Send these raw bytes (for malformed responses) after `delay`.
    Raw { bytes: Bytes, delay: Duration },
    /// Close the connection without answering.
    Close,
    /// Never answer.
    Hang,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            headers: Vec::new(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(self, by: Duration) -> Reply {
        match self {
            Reply::Respond {
                status,
                headers,
                body,
                ..
            } => Reply::Respond {
                status,
                headers,
                body,
                delay: by,
            },
            Reply::Raw { bytes, .. } => Reply::Raw { bytes, delay: by },
            other => other,
        }
    }
}

type Handler = Box<dyn FnMut(&SeenRequest) -> Reply>;

/// How a server's address behaves at the TCP level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    Up,
    /// Connection refused right away.
    Refused,
    /// SYNs vanish: the connect never completes (the engine's connect timeout decides).
    Blackhole,
}

struct Server {
    handler: Handler,
    reachability: Reachability,
}

struct ServerConn {
    server: SocketAddr,
    recv: BytesMut,
    /// Head parsed, body being read.
    current: Option<(Head, BodyReader, Vec<u8>)>,
    /// After a 101, everything is raw bytes.
    upgraded: bool,
    raw: Vec<u8>,
}

/// A parsed response as a client received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<binary>")
    }
}

enum Event {
    Deliver { conn: ConnId, data: Bytes },
    CloseFromServer { conn: ConnId },
}

/// One engine in a world of scripted peers.
pub struct World {
    pub engine: Engine,
    pub now: Instant,
    servers: HashMap<SocketAddr, Server>,
    server_conns: BTreeMap<ConnId, ServerConn>,
    clients: BTreeMap<ConnId, BytesMut>,
    closed: BTreeMap<ConnId, bool>,
    events: BTreeMap<(Instant, u64), Event>,
    seq: u64,
    pub seen: Vec<SeenRequest>,
    pub logs: Vec<RequestLog>,
    /// Most connections ever open at once to each server address.
    pub peak_upstream_conns: usize,
    next_client_port: u16,
}

impl World {
    pub fn new(config: Config, seed: u64) -> World {
        World {
            engine: Engine::new(Arc::new(config), seed),
            now: Instant::ZERO,
            servers: HashMap::new(),
            server_conns: BTreeMap::new(),
            clients: BTreeMap::new(),
            closed: BTreeMap::new(),
            events: BTreeMap::new(),
            seq: 0,
            seen: Vec::new(),
            logs: Vec::new(),
            peak_upstream_conns: 0,
            next_client_port: 40000,
        }
    }

    /// A server at `addr` answering with `handler`.
    pub fn server(&mut self, addr: &str, handler: impl FnMut(&SeenRequest) -> Reply + 'static) {
        let addr: SocketAddr = addr.parse().expect("server address");
        self.servers.insert(
            addr,
            Server {
                handler: Box::new(handler),
                reachability: Reachability::Up,
            },
        );
    }

    pub fn set_reachability(&mut self, addr: &str, reachability: Reachability) {
        let addr: SocketAddr = addr.parse().expect("server address");
        if let Some(s) = self.servers.get_mut(&addr) {
            s.reachability = reachability;
        }
    }

    /// A client connects to `listener`.
    pub fn connect(&mut self, listener: &str) -> ConnId {
        let local: SocketAddr = listener.parse().expect("listener address");
        self.next_client_port += 1;
        let peer = SocketAddr::from(([127, 0, 0, 9], self.next_client_port));
        let id = self.engine.accept(self.now, Accepted::new(peer, local));
        self.clients.insert(id, BytesMut::new());
        self.pump();
        id
    }

    /// A client connects to `listener` after iptables-style redirection from `original_dst`.
    pub fn connect_redirected(&mut self, listener: &str, original_dst: &str) -> ConnId {
        let local: SocketAddr = listener.parse().expect("listener address");
        self.next_client_port += 1;
        let peer = SocketAddr::from(([127, 0, 0, 9], self.next_client_port));
        let mut accepted = Accepted::new(peer, local);
        accepted.original_dst = Some(original_dst.parse().expect("original destination"));
        let id = self.engine.accept(self.now, accepted);
        self.clients.insert(id, BytesMut::new());
        self.pump();
        id
    }

    /// A client connects to `listener` with workload labels.
    pub fn connect_labelled(&mut self, listener: &str, labels: &[(&str, &str)]) -> ConnId {
        let local: SocketAddr = listener.parse().expect("listener address");
        self.next_client_port += 1;
        let peer = SocketAddr::from(([127, 0, 0, 9], self.next_client_port));
        let mut accepted = Accepted::new(peer, local);
        accepted.source_labels = Arc::new(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let id = self.engine.accept(self.now, accepted);
        self.clients.insert(id, BytesMut::new());
        self.pump();
        id
    }

    /// The client writes raw bytes.
    pub fn send(&mut self, client: ConnId, bytes: &[u8]) {
        self.engine.handle(
            self.now,
            Input::Received {
                conn: client,
                data: Bytes::copy_from_slice(bytes),
            },
        );
        self.pump();
    }

    /// The client half-closes.
    pub fn client_eof(&mut self, client: ConnId) {
        self.engine
            .handle(self.now, Input::ReadClosed { conn: client });
        self.pump();
    }

    /// Everything the client has received so far (not consumed).
    pub fn received(&self, client: ConnId) -> &[u8] {
        self.clients.get(&client).map(|b| &b[..]).unwrap_or(&[])
    }

    /// Whether the engine closed the client's connection (`Some(graceful)`).
    pub fn client_closed(&self, client: ConnId) -> Option<bool> {
        self.closed.get(&client).copied()
    }

    /// Take one complete response from the client's buffer, if there is one.
    pub fn take_response(&mut self, client: ConnId, method: &str) -> Option<Response> {
        let buf = self.clients.get_mut(&client)?;
        loop {
            let head = codec::parse_response(buf, method).ok()??;
            let consumed = head.used;
            if (100..200).contains(&head.status) {
                let _ = buf.split_to(consumed);
                continue;
            }
            let mut rest = BytesMut::from(&buf[consumed..]);
            let mut reader = BodyReader::new(head.framing);
            let mut body = Vec::new();
            let closed = self.closed.contains_key(&client);
            match reader.read(&mut rest, &mut body) {
                Ok(true) => {}
                Ok(false) if closed && reader.finish_on_eof() => {}
                _ => return None,
            }
            let used = buf.len() - rest.len();
            let _ = buf.split_to(used);
            return Some(Response {
                status: head.status,
                headers: head.headers,
                body: Bytes::from(body),
            });
        }
    }

    /// Send `raw` on a fresh or given client and run until a response is complete (or
    /// `patience` of virtual time passes).
    pub fn exchange(&mut self, client: ConnId, raw: &str, patience: Duration) -> Option<Response> {
        let method = raw.split(' ').next().unwrap_or("GET").to_string();
        self.send(client, raw.as_bytes());
        let until = self.now + patience;
        loop {
            if let Some(r) = self.take_response(client, &method) {
                return Some(r);
            }
            let next = self.next_event_time();
            match next {
                Some(t) if t <= until => self.advance_to(t),
                _ => {
                    self.advance_to(until);
                    return self.take_response(client, &method);
                }
            }
        }
    }

    /// A simple GET through a new connection to `listener`.
    pub fn get(
        &mut self,
        listener: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<Response> {
        let client = self.connect(listener);
        let mut raw = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        self.exchange(client, &raw, Duration::from_secs(3600))
    }

    fn next_event_time(&self) -> Option<Instant> {
        let server = self.events.keys().next().map(|(t, _)| *t);
        let engine = self.engine.poll_timeout();
        [server, engine].into_iter().flatten().min()
    }

    /// Move the clock forward by `d`, firing everything due on the way.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.advance_to(until);
    }

    /// Move the clock to `until`, firing everything due on the way, in time order.
    pub fn advance_to(&mut self, until: Instant) {
        loop {
            let next = self.next_event_time();
            let Some(t) = next.filter(|t| *t <= until) else {
                break;
            };
            self.now = self.now.max(t);
            // Server events first at equal instants (they were scheduled earlier).
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let event = entry.remove();
                self.fire(event);
            }
            if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
                self.engine.handle_timeout(self.now);
            }
            self.pump();
        }
        self.now = self.now.max(until);
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    fn fire(&mut self, event: Event) {
        match event {
            Event::Deliver { conn, data } => {
                if self.server_conns.contains_key(&conn) {
                    self.engine.handle(self.now, Input::Received { conn, data });
                }
            }
            Event::CloseFromServer { conn } => {
                if self.server_conns.remove(&conn).is_some() {
                    self.engine.handle(self.now, Input::ReadClosed { conn });
                }
            }
        }
    }

    /// Carry out every pending engine output (connects, sends, closes) and every server event
    /// already due, until the world is quiet at the current instant.
    pub fn pump(&mut self) {
        loop {
            self.pump_outputs();
            let due = self
                .events
                .first_key_value()
                .is_some_and(|((t, _), _)| *t <= self.now);
            if !due {
                break;
            }
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let event = entry.remove();
                self.fire(event);
            }
        }
    }

    fn pump_outputs(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Connect { conn, addr } => {
                    let reach = self.servers.get(&addr).map(|s| s.reachability);
                    match reach {
                        Some(Reachability::Up) => {
                            self.server_conns.insert(
                                conn,
                                ServerConn {
                                    server: addr,
                                    recv: BytesMut::new(),
                                    current: None,
                                    upgraded: false,
                                    raw: Vec::new(),
                                },
                            );
                            let open = self
                                .server_conns
                                .values()
                                .filter(|c| c.server == addr)
                                .count();
                            self.peak_upstream_conns = self.peak_upstream_conns.max(open);
                            self.engine.handle(self.now, Input::Connected { conn });
                        }
                        Some(Reachability::Blackhole) => {}
                        Some(Reachability::Refused) | None => {
                            self.engine.handle(self.now, Input::ConnectFailed { conn });
                        }
                    }
                }
                Output::Send { conn, data } => {
                    if let Some(buf) = self.clients.get_mut(&conn) {
                        buf.extend_from_slice(&data);
                    } else if self.server_conns.contains_key(&conn) {
                        self.server_receive(conn, &data);
                    }
                    self.engine.handle(self.now, Input::WriteDrained { conn });
                }
                // Half-closes come from L4 (TCP) routes, which this world's configs never have.
                Output::Shutdown { .. } => {}
                Output::Close { conn, graceful } => {
                    if self.clients.contains_key(&conn) {
                        self.closed.insert(conn, graceful);
                    }
                    self.server_conns.remove(&conn);
                }
                Output::ReadInterest { .. } => {}
            }
        }
        self.logs.extend(self.engine.drain_logs());
    }

    fn server_receive(&mut self, conn: ConnId, data: &[u8]) {
        let Some(sc) = self.server_conns.get_mut(&conn) else {
            return;
        };
        if sc.upgraded {
            sc.raw.extend_from_slice(data);
            return;
        }
        sc.recv.extend_from_slice(data);
        loop {
            let Some(sc) = self.server_conns.get_mut(&conn) else {
                return;
            };
            if sc.current.is_none() {
                // The simulator's own reader, not the engine's codec (see `crate::codec`).
                match codec::parse_request(&sc.recv) {
                    Ok(Some(head)) => {
                        let _ = sc.recv.split_to(head.used);
                        let reader = BodyReader::new(head.framing);
                        sc.current = Some((head, reader, Vec::new()));
                    }
                    Ok(None) => return,
                    Err(err) => panic!("engine sent an unparsable request upstream: {err}"),
                }
            }
            let Some((_, reader, body)) = sc.current.as_mut() else {
                return;
            };
            let done = match reader.read(&mut sc.recv, body) {
                Ok(done) => done,
                Err(err) => panic!("engine sent a bad request body upstream: {err}"),
            };
            if !done {
                return;
            }
            let Some((head, _, body)) = sc.current.take() else {
                return;
            };
            let server = sc.server;
            let seen = SeenRequest {
                server,
                method: head.method.clone(),
                target: head.target.clone(),
                authority: head.authority(),
                headers: head.headers.clone(),
                body: Bytes::from(body),
                at: self.now,
            };
            self.seen.push(seen.clone());
            let reply = match self.servers.get_mut(&server) {
                Some(s) => (s.handler)(&seen),
                None => Reply::Close,
            };
            match reply {
                Reply::Respond {
                    status,
                    headers,
                    body,
                    delay,
                } => {
                    let mut out = format!(
                        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n",
                        codec::reason(status),
                        body.len()
                    );
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let mut bytes = BytesMut::from(out.as_bytes());
                    bytes.extend_from_slice(&body);
                    self.schedule(
                        self.now + delay,
                        Event::Deliver {
                            conn,
                            data: bytes.freeze(),
                        },
                    );
                }
                Reply::Raw { bytes, delay } => {
                    if bytes.starts_with(b"HTTP/1.1 101") {
                        if let Some(sc) = self.server_conns.get_mut(&conn) {
                            sc.upgraded = true;
                        }
                    }
                    self.schedule(self.now + delay, Event::Deliver { conn, data: bytes });
                }
                Reply::Close => self.schedule(self.now, Event::CloseFromServer { conn }),
                Reply::Hang => {}
            }
        }
    }

    /// Every upstream connection's server closes (EOF to the engine).
    pub fn close_upstreams(&mut self) {
        let conns: Vec<ConnId> = self.server_conns.keys().copied().collect();
        for conn in conns {
            self.schedule(self.now, Event::CloseFromServer { conn });
        }
        self.pump();
    }

    /// Bytes servers received outside of HTTP parsing (after an upgrade), in arrival order.
    pub fn upstream_received_raw(&self) -> Vec<u8> {
        self.server_conns
            .values()
            .flat_map(|c| c.raw.iter().copied())
            .collect()
    }

    /// Requests each server has seen.
    pub fn count_by_server(&self) -> BTreeMap<SocketAddr, usize> {
        let mut counts = BTreeMap::new();
        for s in &self.seen {
            *counts.entry(s.server).or_default() += 1;
        }
        counts
    }
}
