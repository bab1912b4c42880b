//! The sidecar's admin port (Envoy's 15000) and status port (pilot-agent's 15020), served
//! next to the runtime, each on a thread of its own with a thread per request (an application
//! probe may take its whole timeout; readiness must not wait behind it).
//!
//! - `GET /healthz/ready` (both) and `GET /ready` (admin, Envoy's): relay the proxy's own
//!   readiness endpoint ([`crate::health`], 15021), as pilot-agent asks Envoy;
//! - `POST /quitquitquit` (both): answer 200 "OK", then shut the proxy down, draining
//!   in-flight requests (the same path as SIGTERM). Only from loopback (403 otherwise) and
//!   only POST (405), as pilot-agent's `handleQuit`. An application container calls it when
//!   it is done, so a Job's pod completes on clusters without native sidecars;
//! - `POST /drain` (status, pilot-agent's, what a native sidecar's preStop hook calls) and
//!   `POST /drain_listeners?inboundonly&graceful&skip_exit` (admin, Envoy's, what pilot-agent
//!   calls for it): drain the inbound listeners and keep running ([`ControlHandle::drain_inbound`]):
//!   the pod's shutdown has begun, its endpoints are being withdrawn, and the application may
//!   still call out while it finishes. Loopback and POST only, as `/quitquitquit`. Envoy's
//!   other forms (no `inboundonly`, or no `skip_exit`: drain, then exit) are the shutdown
//!   `/quitquitquit` starts;
//! - `GET /app-health/<container>/livez|readyz|startupz` (status): the application's own
//!   probe, run by the sidecar ([`crate::app_probe`]).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app_probe::AppProbers;
use crate::control::ControlHandle;
use crate::health::{read_request, respond, ProbeRequest, READY_PATH};

/// Envoy's admin path for the same readiness.
pub const ADMIN_READY_PATH: &str = "/ready";
/// Envoy's and pilot-agent's exit path.
pub const QUIT_PATH: &str = "/quitquitquit";
/// pilot-agent's drain path (status port).
pub const DRAIN_PATH: &str = "/drain";
/// Envoy's drain path (admin port).
pub const DRAIN_LISTENERS_PATH: &str = "/drain_listeners";
/// Requests served at once (each on its own thread); more are answered 503 at once.
const MAX_IN_FLIGHT: usize = 64;
/// How long the relayed readiness check may take.
const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Which endpoints a server offers.
#[derive(Clone, Debug, Default)]
pub struct StatusRoutes {
    /// The proxy's readiness endpoint to relay (`None`: readiness answers 503).
    pub readiness: Option<SocketAddr>,
    /// Serve `POST /quitquitquit`.
    pub quit: bool,
    /// Serve a drain: pilot-agent's `POST /drain` (status) or Envoy's `POST /drain_listeners`
    /// (admin).
    pub drain: Option<&'static str>,
    /// Serve Envoy's `GET /ready` too.
    pub admin_ready: bool,
    /// Serve `/app-health/...` and `/app-lifecycle/...` from these probes.
    pub app_probes: Option<Arc<AppProbers>>,
}

impl StatusRoutes {
    /// Envoy's admin port: readiness and `/quitquitquit`.
    pub fn admin(readiness: Option<SocketAddr>) -> StatusRoutes {
        StatusRoutes {
            readiness,
            quit: true,
            drain: Some(DRAIN_LISTENERS_PATH),
            admin_ready: true,
            app_probes: None,
        }
    }

    /// pilot-agent's status port: readiness, `/quitquitquit` and the application's probes.
    pub fn status(readiness: Option<SocketAddr>, app_probes: Arc<AppProbers>) -> StatusRoutes {
        StatusRoutes {
            readiness,
            quit: true,
            drain: Some(DRAIN_PATH),
            admin_ready: false,
            app_probes: Some(app_probes),
        }
    }
}

/// A running admin or status server; stops when dropped.
pub struct StatusServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// Bind `addr` and serve `routes`; `name` goes in the log.
    pub fn start(
        name: &'static str,
        addr: SocketAddr,
        routes: StatusRoutes,
        control: ControlHandle,
    ) -> io::Result<StatusServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let routes = Arc::new(routes);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("trellis-{name}"))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let Ok(mut stream) = stream else { continue };
                        // The status port is reachable from the network: bound the threads.
                        if in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                            let _ = respond(&mut stream, 503, "too many requests in flight\n");
                            continue;
                        }
                        let (routes, control) = (routes.clone(), control.clone());
                        let mine = in_flight.clone();
                        let spawned = std::thread::Builder::new()
                            .name(format!("trellis-{name}-req"))
                            .spawn(move || {
                                if let Err(e) = answer(stream, &routes, &control) {
                                    tracing::debug!(error = %e, "status request failed");
                                }
                                mine.fetch_sub(1, Ordering::AcqRel);
                            });
                        if let Err(e) = spawned {
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                            tracing::warn!(error = %e, "cannot serve a status request");
                        }
                    }
                })?
        };
        tracing::info!(%addr, server = name, "serving");
        Ok(StatusServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock the accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut stream: TcpStream, routes: &StatusRoutes, control: &ControlHandle) -> io::Result<()> {
    let Some(req) = read_request(&mut stream)? else {
        return Ok(());
    };
    let ready_path = req.path == READY_PATH || (routes.admin_ready && req.path == ADMIN_READY_PATH);
    if ready_path {
        if req.method != "GET" {
            return respond(&mut stream, 405, "method not allowed\n");
        }
        let (code, body) = relay_readiness(routes.readiness);
        return respond(&mut stream, code, &body);
    }
    if routes.quit && req.path == QUIT_PATH {
        return quit(stream, &req, control);
    }
    if routes.drain == Some(req.path.as_str()) {
        return drain(stream, &req, control);
    }
    let probe_path =
        req.path.starts_with("/app-health/") || req.path.starts_with("/app-lifecycle/");
    match &routes.app_probes {
        Some(probes) if probe_path => {
            let outcome = probes.probe(&req.path, &req.headers);
            respond(&mut stream, outcome.status, &outcome.body)
        }
        _ => respond(&mut stream, 404, "not found\n"),
    }
}

/// pilot-agent's guard on its lifecycle endpoints (`handleQuit`, `handleDrain`): loopback
/// only, POST only. `Err` holds the answer already written.
fn local_post(stream: &mut TcpStream, req: &ProbeRequest) -> Result<(), io::Result<()>> {
    let local = stream.peer_addr().is_ok_and(|p| p.ip().is_loopback());
    if !local {
        return Err(respond(
            stream,
            403,
            "Only requests from localhost are allowed\n",
        ));
    }
    if req.method != "POST" {
        return Err(respond(stream, 405, "Method Not Allowed\n"));
    }
    Ok(())
}

fn quit(mut stream: TcpStream, req: &ProbeRequest, control: &ControlHandle) -> io::Result<()> {
    if let Err(answered) = local_post(&mut stream, req) {
        return answered;
    }
    // Draining starts before the answer leaves: whoever asked sees "not ready" from then on.
    tracing::info!(path = QUIT_PATH, "shutting down on request, draining");
    control.shutdown();
    respond(&mut stream, 200, "OK\n")
}

/// `/drain` (pilot-agent's `handleDrain`, then its `DrainNow`: Envoy's
/// `drain_listeners?inboundonly&graceful&skip_exit`), or Envoy's `/drain_listeners` itself.
fn drain(mut stream: TcpStream, req: &ProbeRequest, control: &ControlHandle) -> io::Result<()> {
    if let Err(answered) = local_post(&mut stream, req) {
        return answered;
    }
    let flags: Vec<&str> = req
        .query
        .split('&')
        .map(|f| f.split('=').next().unwrap_or(f))
        .collect();
    let keeps_running =
        req.path == DRAIN_PATH || (flags.contains(&"inboundonly") && flags.contains(&"skip_exit"));
    if keeps_running {
        tracing::info!(path = %req.path, "draining inbound listeners on request");
        control.drain_inbound();
    } else {
        // Envoy drains, then exits: the shutdown /quitquitquit starts.
        tracing::info!(path = %req.path, query = %req.query, "draining and exiting on request");
        control.shutdown();
    }
    respond(&mut stream, 200, "OK\n")
}

/// Ask the proxy's health endpoint, as pilot-agent asks Envoy's.
fn relay_readiness(readiness: Option<SocketAddr>) -> (u16, String) {
    let Some(addr) = readiness else {
        return (503, "no readiness endpoint (--health-port 0)\n".into());
    };
    match crate::health::get(addr, READY_PATH, READINESS_TIMEOUT) {
        Ok((code, body)) => (code, body),
        Err(e) => (
            503,
            format!("the proxy's readiness endpoint {addr} failed: {e}\n"),
        ),
    }
}
