//! A Trellis proxy for a test: the text of a `trellis proxy --config` file is loaded exactly as
//! the CLI loads it (`trellis_control::parse_proxy_config`) and served by the thread-per-core
//! [`Runtime`] (one core). Listeners are configured on port 0; the bound address is read back
//! from the runtime, so tests run in parallel without port clashes.
//!
//! This is the one place that decides which backend the end-to-end suite runs on:
//! `TRELLIS_E2E_BACKEND=io-uring|epoll|auto` (default `auto`, which is io_uring where it works).
//! `scripts/test.sh` runs the suite once per backend.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use trellis_control::proxy_config::parse_proxy_config;
use trellis_engine::config::Config;
use trellis_io::{
    Backend, BackendChoice, ControlHandle, IoError, RunOptions, Runtime, RuntimeOptions,
};

/// A running proxy; shut down (and joined) on drop.
pub struct Proxy {
    addr: SocketAddr,
    control: ControlHandle,
    thread: Option<JoinHandle<Result<(), IoError>>>,
}

/// Parse config text the way `trellis proxy --config` does; warnings are fatal in tests so a
/// typo in a test config cannot silently change what is tested.
pub fn load(yaml: &str) -> Arc<Config> {
    let loaded = parse_proxy_config(yaml, "e2e.yaml", Path::new(".")).expect("config loads");
    let serious: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.severity != trellis_control::Severity::Info)
        .collect();
    assert!(serious.is_empty(), "config warnings: {serious:#?}");
    Arc::new(loaded.config)
}

impl Proxy {
    /// Start a proxy whose first listener is the one tests talk to.
    pub fn start(yaml: &str) -> Proxy {
        let config = load(yaml);
        let control = ControlHandle::new();
        let opts = RunOptions {
            seed: 7,
            shutdown_grace: Duration::from_secs(2),
            ..RunOptions::default()
        };
        let backend: BackendChoice = std::env::var("TRELLIS_E2E_BACKEND")
            .unwrap_or_else(|_| "auto".into())
            .parse()
            .expect("TRELLIS_E2E_BACKEND is io-uring, epoll or auto");
        let runtime = Runtime::start(
            config,
            RuntimeOptions {
                cores: 1,
                backend,
                run: opts,
                health: None,
                pin: false,
            },
            control.clone(),
        )
        .expect("proxy binds");
        // A forced backend must really be the one serving, or the suite proves nothing.
        let serving = runtime.backend().backend;
        match backend {
            BackendChoice::IoUring => assert_eq!(serving, Backend::IoUring),
            BackendChoice::Epoll => assert_eq!(serving, Backend::Epoll),
            BackendChoice::Auto => {}
        }
        let addr = runtime
            .local_addrs()
            .first()
            .map(|(_, a)| *a)
            .expect("a listener");
        let thread = std::thread::Builder::new()
            .name("trellis-proxy".into())
            .spawn(move || runtime.join())
            .expect("proxy thread");
        Proxy {
            addr,
            control,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Push a new configuration (as a file change or SIGHUP would).
    pub fn reload(&self, yaml: &str) {
        self.control.update_config(load(yaml));
    }

    /// Whether the driver thread is still running (it must not die on bad traffic).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Graceful shutdown; returns the driver's result.
    pub fn shutdown(mut self) -> Result<(), IoError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), IoError> {
        self.control.shutdown();
        match self.thread.take() {
            Some(t) => t.join().expect("proxy thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // No panic here: a test that already failed is unwinding through this.
        self.control.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
