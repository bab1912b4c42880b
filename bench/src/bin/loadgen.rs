//! `loadgen`: a constant-rate, open-loop HTTP/1.1 load generator with coordinated-omission-free
//! latency, in the style of wrk2 and fortio, for `bench/e2e.sh`.
//!
//! Why our own: the comparison needs the same client for direct, Trellis, HAProxy and nginx,
//! with latency measured from when each request *should* have been sent. A closed-loop client
//! (wrk, ab) waits for a slow response before sending the next request and so never records
//! the requests that a stall delayed (coordinated omission); its percentiles look better the
//! worse the server stalls.
//!
//! How: `--connections` keep-alive connections on one thread (mio/epoll). Connection `k` of
//! `C` sends its `j`-th request at the intended time `t0 + (j·C + k) / rate`, so the whole
//! load is evenly spaced at `rate`. One request per connection is outstanding (HTTP/1.1
//! without pipelining, as the proxies see from real clients). Latency is response end minus:
//! - the intended time, when the connection was still busy with the previous response at that
//!   time (the server delayed us: the wait counts, as in wrk2);
//! - the actual send time, when the connection was free in time: the gap then is only this
//!   process's timer granularity (epoll waits in whole milliseconds), not the server's doing.
//!
//! `--rate 0` is closed-loop (each connection sends as soon as its previous response ends), for
//! maximum throughput. Output: a human summary on stderr and one JSON line on stdout.
//!
//! Responses must be framed by `content-length` (the benchmark's upstream is nginx serving a
//! static file, and every proxy keeps that framing).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Constant-rate HTTP/1.1 load with coordinated-omission-free latency percentiles.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// Server address, IP:PORT.
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Host header.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Requests per second across all connections; 0 = closed loop (as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds whose latencies are discarded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

/// One connection's state.
struct Conn {
    stream: TcpStream,
    connected: bool,
    /// Request bytes not yet written.
    unsent: usize,
    inbuf: Vec<u8>,
    /// The outstanding request: when latency counts from.
    started: Option<Instant>,
    /// The intended send time of this connection's next request.
    next_due: Instant,
    /// When the previous response ended.
    free_since: Instant,
}

#[derive(Default)]
struct Counts {
    ok: u64,
    non2xx: u64,
    errors: u64,
    reconnects: u64,
    /// Responses including the warm-up (what the server's CPU time was spent on).
    total: u64,
}

/// A complete response at the front of `buf`: (status, bytes it spans, keep-alive).
fn parse_response(buf: &[u8]) -> io::Result<Option<(u16, usize, bool)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("response head too large"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| io::Error::other("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut length = None;
    let mut keep_alive = status_line.starts_with("HTTP/1.1");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| io::Error::other("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other("chunked responses are not supported"));
        }
    }
    let total = head_end + 4 + length.unwrap_or(0);
    Ok((buf.len() >= total).then_some((status, total, keep_alive)))
}

fn connect(poll: &Poll, addr: SocketAddr, token: Token) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    poll.registry()
        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(stream)
}

struct Generator {
    args: Args,
    poll: Poll,
    conns: Vec<Conn>,
    request: Vec<u8>,
    /// Per-connection interval between intended sends (open loop).
    interval: Option<Duration>,
    histogram: Histogram<u64>,
    counts: Counts,
    measure_from: Instant,
    stop_sending: Instant,
}

impl Generator {
    fn new(args: Args) -> io::Result<Self> {
        let poll = Poll::new()?;
        let start = Instant::now();
        let connections = args.connections.max(1);
        let interval =
            (args.rate > 0).then(|| Duration::from_secs_f64(connections as f64 / args.rate as f64));
        let mut conns = Vec::with_capacity(connections);
        for k in 0..connections {
            let stream = connect(&poll, args.addr, Token(k))?;
            // Stagger the connections so sends are evenly spaced overall; start after a short
            // grace for the connects.
            let offset =
                interval.map_or(Duration::ZERO, |i| i.mul_f64(k as f64 / connections as f64));
            let first = start + Duration::from_millis(50) + offset;
            conns.push(Conn {
                stream,
                connected: false,
                unsent: 0,
                inbuf: Vec::with_capacity(8 * 1024),
                started: None,
                next_due: first,
                free_since: start,
            });
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: trellis-loadgen\r\n\r\n",
            args.path, args.host
        )
        .into_bytes();
        let measure_from = start + Duration::from_secs_f64(0.05 + args.warmup);
        let stop_sending = measure_from + Duration::from_secs_f64(args.duration);
        Ok(Generator {
            histogram: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)
                .map_err(|e| io::Error::other(e.to_string()))?,
            args,
            poll,
            conns,
            request,
            interval,
            counts: Counts::default(),
            measure_from,
            stop_sending,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let drain_deadline = self.stop_sending + Duration::from_secs(2);
        loop {
            let now = Instant::now();
            let sending = now < self.stop_sending;
            let in_flight = self.conns.iter().any(|c| c.started.is_some());
            if (!sending && !in_flight) || now >= drain_deadline {
                break;
            }
            let mut timeout = drain_deadline.saturating_duration_since(now);
            if sending {
                for k in 0..self.conns.len() {
                    let due = self.conns[k].next_due;
                    let c = &self.conns[k];
                    if c.connected && c.started.is_none() {
                        if self.interval.is_none() || due <= now {
                            self.send(k, now)?;
                        } else {
                            timeout = timeout.min(due - now);
                        }
                    }
                }
            }
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let k = event.token().0;
                if event.is_writable() {
                    self.writable(k)?;
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.readable(k)?;
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, k: usize, now: Instant) -> io::Result<()> {
        let interval = self.interval;
        let c = &mut self.conns[k];
        let intended = c.next_due;
        // Counted from the intended time only when the previous response held us past it.
        c.started = Some(if interval.is_some() && c.free_since > intended {
            intended
        } else {
            now
        });
        if let Some(i) = interval {
            c.next_due = intended + i;
        }
        c.unsent = self.request.len();
        self.writable(k)
    }

    fn writable(&mut self, k: usize) -> io::Result<()> {
        let c = &mut self.conns[k];
        if !c.connected {
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connected = true;
                    c.stream.set_nodelay(true)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        while c.unsent > 0 {
            let from = self.request.len() - c.unsent;
            match c.stream.write(&self.request[from..]) {
                Ok(n) => c.unsent -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.failed(k),
            }
        }
        Ok(())
    }

    fn readable(&mut self, k: usize) -> io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let c = &mut self.conns[k];
            match c.stream.read(&mut buf) {
                Ok(0) => return self.failed(k),
                Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.failed(k),
            }
        }
        let parsed = parse_response(&self.conns[k].inbuf);
        match parsed {
            Ok(Some((status, len, keep_alive))) => {
                let now = Instant::now();
                let c = &mut self.conns[k];
                c.inbuf.drain(..len);
                let started = c.started.take();
                c.free_since = now;
                self.counts.total += 1;
                if let Some(started) = started {
                    if started >= self.measure_from {
                        let ns = now.saturating_duration_since(started).as_nanos() as u64;
                        self.histogram.saturating_record(ns.max(1_000));
                        if (200..300).contains(&status) {
                            self.counts.ok += 1;
                        } else {
                            self.counts.non2xx += 1;
                        }
                    }
                }
                if !keep_alive {
                    self.reconnect(k)?;
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(_) => self.failed(k),
        }
    }

    /// The connection broke: count the outstanding request as an error and reconnect.
    fn failed(&mut self, k: usize) -> io::Result<()> {
        let c = &mut self.conns[k];
        if let Some(started) = c.started.take() {
            if started >= self.measure_from {
                self.counts.errors += 1;
            }
        }
        c.free_since = Instant::now();
        self.reconnect(k)
    }

    fn reconnect(&mut self, k: usize) -> io::Result<()> {
        self.counts.reconnects += 1;
        let c = &mut self.conns[k];
        let _ = self.poll.registry().deregister(&mut c.stream);
        c.stream = connect(&self.poll, self.args.addr, Token(k))?;
        c.connected = false;
        c.unsent = 0;
        c.inbuf.clear();
        Ok(())
    }

    fn report(&self) {
        let h = &self.histogram;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let done = self.counts.ok + self.counts.non2xx;
        let rps = done as f64 / self.args.duration;
        eprintln!(
            "{} rate={} conns={} : {} ok, {} non-2xx, {} errors, {:.0} rps; latency µs p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
            self.args.label,
            self.args.rate,
            self.args.connections,
            self.counts.ok,
            self.counts.non2xx,
            self.counts.errors,
            rps,
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1000.0
        );
        println!(
            "{{\"label\":\"{}\",\"rate\":{},\"connections\":{},\"duration_s\":{},\"ok\":{},\"non2xx\":{},\"errors\":{},\"reconnects\":{},\"total\":{},\"rps\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1}}}",
            self.args.label.replace(['"', '\\'], "_"),
            self.args.rate,
            self.args.connections,
            self.args.duration,
            self.counts.ok,
            self.counts.non2xx,
            self.counts.errors,
            self.counts.reconnects,
            self.counts.total,
            rps,
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1000.0
        );
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut generator = match Generator::new(args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = generator.run() {
        eprintln!("loadgen: {e}");
        return std::process::ExitCode::FAILURE;
    }
    generator.report();
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn parses_content_length_framed_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1";
        assert_eq!(parse_response(r).unwrap(), Some((200, 41, true)));
        assert_eq!(parse_response(&r[..40]).unwrap(), None);
        let close = b"HTTP/1.1 503 X\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parse_response(close).unwrap(),
            Some((503, close.len(), false))
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
