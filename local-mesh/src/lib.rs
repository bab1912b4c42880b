//! # trellis-local-mesh: the single-sidecar demo of `trellis mesh`
//!
//! A whole mesh on loopback in one process: three tiny HTTP/1.1 upstream servers play
//! `reviews` v1, v2 and v3; an [`EpollDriver`] runs in its own thread as the sidecar, with a
//! configuration built in code (see [`config`]): `end-user: jason` goes to v2, everyone else
//! is split 80/20 between v1 and v3. It prints curl commands to try, runs a
//! self-check through the proxy with a keep-alive client (counts per version, and where jason
//! landed), then serves until Ctrl-C or the chosen duration.
//!
//! `trellis` with no command now runs `trellis demo` (the binary's `src/demo/`: bookinfo with a
//! control plane and a sidecar per workload), which reuses [`client`] and [`http`].
//!
//! Why a crate of its own: the demo brings its own HTTP client and server (deliberately
//! independent of the engine's codec), which the runtime crate has no use for. The runtime's
//! end-to-end tests borrow them as a dev-dependency, so the runtime (`trellis-io`) stays what
//! DESIGN.md says it is: glue between the engine and the sockets.
//!
//! Modules, one concept each:
//! - [`config`]: the demo's routes and clusters, as an engine [`Config`](trellis_engine::config::Config).
//! - [`upstream`]: the demo upstream server (echo, `/status/NNN`, `/delay/MS`).
//! - [`client`]: a blocking keep-alive client (the self-check's, and the tests').
//! - [`http`]: the little HTTP/1.1 framing both of them share.

pub mod client;
pub mod config;
pub mod http;
pub mod upstream;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use client::HttpClient;
use trellis_io::{ControlHandle, EpollDriver, IoError, RunOptions};
use upstream::Upstream;

/// What to run.
#[derive(Clone, Debug)]
pub struct LocalMeshOptions {
    /// Proxy listener port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Send `requests` requests through the proxy after start-up and print the counts.
    pub selfcheck: bool,
    pub requests: usize,
    /// Serve this long after the self-check, then exit; `None` = until Ctrl-C.
    pub duration: Option<Duration>,
    /// Engine seed; `None` = random.
    pub seed: Option<u64>,
    /// Install the Ctrl-C / SIGTERM handler (off in tests, which stop the mesh themselves).
    pub handle_signals: bool,
}

impl Default for LocalMeshOptions {
    fn default() -> Self {
        LocalMeshOptions {
            port: 15001,
            selfcheck: true,
            requests: 100,
            duration: None,
            seed: None,
            handle_signals: true,
        }
    }
}

/// Why the local mesh could not run.
#[derive(Debug, thiserror::Error)]
pub enum LocalMeshError {
    #[error("cannot start upstream {name}: {source}")]
    Upstream {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("proxy: {0}")]
    Driver(#[from] IoError),
    #[error("proxy listener missing after bind")]
    NoListener,
    #[error("cannot start the proxy thread: {0}")]
    Thread(#[source] io::Error),
    #[error("the proxy thread panicked")]
    DriverPanicked,
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] io::Error),
    #[error("self-check client: {0}")]
    Client(#[source] io::Error),
}

/// Result of the self-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfCheck {
    /// Successful (200) responses per upstream name (`x-upstream`).
    pub per_upstream: BTreeMap<String, usize>,
    /// Other outcomes: `status NNN` or `error: ...`, with counts.
    pub failures: BTreeMap<String, usize>,
    /// Which upstream answered the `end-user: jason` request, or what went wrong.
    pub jason: Result<String, String>,
    /// Connections the keep-alive client opened for all of it.
    pub client_connections: u64,
}

/// A running local mesh: upstreams plus the proxy thread.
pub struct LocalMesh {
    proxy_addr: SocketAddr,
    upstreams: Vec<Upstream>,
    control: ControlHandle,
    driver: Option<JoinHandle<Result<(), IoError>>>,
}

impl LocalMesh {
    /// Start the three upstreams and the proxy.
    pub fn start(opts: &LocalMeshOptions) -> Result<Self, LocalMeshError> {
        let mut upstreams = Vec::new();
        for name in ["reviews-v1", "reviews-v2", "reviews-v3"] {
            let up = Upstream::start(name).map_err(|source| LocalMeshError::Upstream {
                name: name.to_string(),
                source,
            })?;
            upstreams.push(up);
        }
        let endpoints = [
            upstreams[0].addr(),
            upstreams[1].addr(),
            upstreams[2].addr(),
        ];
        let listen = SocketAddr::from(([127, 0, 0, 1], opts.port));
        let cfg = Arc::new(config::reviews_config(listen, endpoints));
        let mut run_opts = RunOptions::default();
        if let Some(seed) = opts.seed {
            run_opts.seed = seed;
        }
        let control = ControlHandle::new();
        let driver = EpollDriver::new(cfg, run_opts, control.clone())?;
        let proxy_addr = driver
            .local_addrs()
            .first()
            .map(|(_, a)| *a)
            .ok_or(LocalMeshError::NoListener)?;
        let thread = std::thread::Builder::new()
            .name("trellis-proxy".into())
            .spawn(move || driver.run())
            .map_err(LocalMeshError::Thread)?;
        Ok(LocalMesh {
            proxy_addr,
            upstreams,
            control,
            driver: Some(thread),
        })
    }

    /// Where the proxy listens.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// One upstream, to stop or inspect it (0 = v1, 1 = v2, 2 = v3).
    pub fn upstream_mut(&mut self, i: usize) -> Option<&mut Upstream> {
        self.upstreams.get_mut(i)
    }

    /// The proxy's control handle (push configs, request shutdown).
    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// Commands a person can paste to try the mesh.
    pub fn curl_commands(&self) -> Vec<String> {
        let base = format!("http://{}", self.proxy_addr);
        vec![
            format!("curl -s -H 'host: reviews' {base}/reviews/1"),
            format!("curl -s -H 'host: reviews' -H 'end-user: jason' {base}/reviews/1"),
            format!(
                "curl -s -H 'host: reviews' -H 'transfer-encoding: chunked' --data-binary 'hello mesh' {base}/echo"
            ),
            format!("curl -s -v -H 'host: reviews' {base}/a {base}/b   # one connection, reused"),
        ]
    }

    /// Send `requests` plain requests and one `end-user: jason` request through the proxy with
    /// one keep-alive client. Stops early at the first transport error (recorded in
    /// `failures`).
    pub fn selfcheck(&self, requests: usize) -> Result<SelfCheck, LocalMeshError> {
        let mut client = HttpClient::connect(self.proxy_addr).map_err(LocalMeshError::Client)?;
        let mut check = SelfCheck {
            per_upstream: BTreeMap::new(),
            failures: BTreeMap::new(),
            jason: Err("not sent".to_string()),
            client_connections: 0,
        };
        for i in 0..requests {
            match client.request("GET", &format!("/reviews/{i}"), "reviews", &[], b"") {
                Ok(r) if r.status == 200 => {
                    let who = r.header("x-upstream").unwrap_or("unknown").to_string();
                    *check.per_upstream.entry(who).or_default() += 1;
                }
                Ok(r) => {
                    *check
                        .failures
                        .entry(format!("status {}", r.status))
                        .or_default() += 1
                }
                Err(e) => {
                    *check.failures.entry(format!("error: {e}")).or_default() += 1;
                    break;
                }
            }
        }
        check.jason = match client.request(
            "GET",
            "/reviews/jason",
            "reviews",
            &[("end-user", "jason")],
            b"",
        ) {
            Ok(r) if r.status == 200 => Ok(r.header("x-upstream").unwrap_or("unknown").to_string()),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(format!("error: {e}")),
        };
        check.client_connections = client.connects();
        Ok(check)
    }

    /// Stop the proxy (graceful) and the upstreams.
    pub fn shutdown(mut self) -> Result<(), LocalMeshError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), LocalMeshError> {
        self.control.shutdown();
        let result = match self.driver.take() {
            Some(t) => match t.join() {
                Ok(r) => r.map_err(LocalMeshError::from),
                Err(_) => Err(LocalMeshError::DriverPanicked),
            },
            None => Ok(()),
        };
        for up in self.upstreams.iter_mut() {
            up.stop();
        }
        result
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "local mesh did not stop cleanly");
        }
    }
}

/// Run the local mesh: start it, print how to use it, self-check, serve until Ctrl-C or
/// `opts.duration`, then stop. Returns the self-check (if run).
pub fn run_local_mesh(opts: LocalMeshOptions) -> Result<Option<SelfCheck>, LocalMeshError> {
    let mesh = LocalMesh::start(&opts)?;
    if opts.handle_signals {
        trellis_io::install_ctrl_c(mesh.control().clone()).map_err(LocalMeshError::Signal)?;
    }
    println!("trellis local mesh: proxy on {}", mesh.proxy_addr());
    for up in mesh.upstreams() {
        println!("  upstream {} on {}", up.name(), up.addr());
    }
    println!("routes: end-user: jason -> v2; everyone else 80% v1 / 20% v3");
    println!("try:");
    for cmd in mesh.curl_commands() {
        println!("  {cmd}");
    }
    let check = if opts.selfcheck {
        let check = mesh.selfcheck(opts.requests)?;
        print_selfcheck(&check, opts.requests);
        Some(check)
    } else {
        None
    };
    match opts.duration {
        Some(d) => println!("serving for {d:?} (Ctrl-C to stop earlier)"),
        None => println!("serving until Ctrl-C"),
    }
    mesh.control().wait_shutdown(opts.duration);
    mesh.shutdown()?;
    Ok(check)
}

fn print_selfcheck(check: &SelfCheck, requests: usize) {
    println!("self-check: {requests} requests through the proxy");
    for (who, n) in &check.per_upstream {
        println!("  {who}: {n}");
    }
    for (what, n) in &check.failures {
        println!("  {what}: {n}");
    }
    match &check.jason {
        Ok(who) => println!("  end-user: jason -> {who}"),
        Err(e) => println!("  end-user: jason -> failed ({e})"),
    }
    println!("  client connections used: {}", check.client_connections);
}
