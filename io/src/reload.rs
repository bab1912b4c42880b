//! Configuration reloads: on SIGHUP, or when the config file or a file it names (the
//! sidecar's certificate and key: renewal rewrites them) changes (modification time or size,
//! polled every second — no inotify needed), load it again and push it to the runtime through
//! its [`ControlHandle`].
//!
//! Loading is the caller's (the binary parses and validates with `trellis-control`; this
//! crate knows nothing of YAML). A config that fails to load or validate is refused with one
//! log line and the last good one keeps serving; connections are never dropped by a reload,
//! because the engine applies a snapshot to new requests only.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use signal_hook::consts::SIGHUP;
use trellis_engine::config::Config;

use crate::control::ControlHandle;

/// Loads and validates the config file; an error is a message for the log.
pub type Loader = Box<dyn Fn(&Path) -> Result<Arc<Config>, String> + Send>;

/// How often the stop and SIGHUP flags are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Counts of what the watcher did, for logs and tests.
#[derive(Debug, Default)]
pub struct ReloadStats {
    applied: AtomicU64,
    refused: AtomicU64,
}

impl ReloadStats {
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }
}

/// What to watch and how.
pub struct WatchOptions {
    /// How often the file's metadata is compared (`None`: SIGHUP only).
    pub poll: Option<Duration>,
    /// Reload on SIGHUP.
    pub sighup: bool,
    /// Other files whose change means a reload (the identity's certificate, key and roots).
    pub also: Vec<PathBuf>,
    /// A check of inputs that are not files (DNS answers), run periodically; a reload follows
    /// when it says they changed.
    pub probe: Option<Probe>,
}

/// An input outside the files, looked at every `every`: `changed` answers whether it moved
/// since the last load (and may refresh what the loader will read).
pub struct Probe {
    pub every: Duration,
    pub what: &'static str,
    pub changed: Box<dyn FnMut() -> bool + Send>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("every", &self.every)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll: Some(Duration::from_secs(1)),
            sighup: true,
            also: Vec::new(),
            probe: None,
        }
    }
}

/// A running watcher; it stops by itself once shutdown is requested on its control handle,
/// or through [`ConfigWatcher::stop`].
pub struct ConfigWatcher {
    stats: Arc<ReloadStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConfigWatcher {
    /// Watch `path`; on a change or SIGHUP, `load` it and push the result to `control`.
    pub fn start(
        path: PathBuf,
        load: Loader,
        control: ControlHandle,
        opts: WatchOptions,
    ) -> io::Result<ConfigWatcher> {
        let hup = Arc::new(AtomicBool::new(false));
        if opts.sighup {
            signal_hook::flag::register(SIGHUP, hup.clone())?;
        }
        let stats = Arc::new(ReloadStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = Watch {
            seen: Vec::new(),
            path,
            also: opts.also,
            load,
            control,
            stats: stats.clone(),
        };
        state.seen = state.fingerprints();
        let (stop2, poll) = (stop.clone(), opts.poll);
        let mut probe = opts.probe;
        let thread = std::thread::Builder::new()
            .name("trellis-reload".into())
            .spawn(move || {
                let mut next_poll = Instant::now();
                let mut next_probe = probe.as_ref().map(|p| Instant::now() + p.every);
                while !stop2.load(Ordering::Acquire) && !state.control.is_shutdown() {
                    if hup.swap(false, Ordering::AcqRel) {
                        tracing::info!("SIGHUP: reloading the configuration");
                        state.seen = state.fingerprints();
                        state.reload();
                    }
                    if let Some(every) = poll {
                        if Instant::now() >= next_poll {
                            next_poll = Instant::now() + every;
                            let now = state.fingerprints();
                            if now != state.seen {
                                state.seen = now;
                                tracing::info!(path = %state.path.display(), "config file or a file it names changed: reloading");
                                state.reload();
                            }
                        }
                    }
                    if let (Some(p), Some(due)) = (probe.as_mut(), next_probe) {
                        if Instant::now() >= due {
                            next_probe = Some(Instant::now() + p.every);
                            if (p.changed)() {
                                tracing::info!(input = p.what, "an input of the configuration changed: reloading");
                                state.reload();
                            }
                        }
                    }
                    std::thread::sleep(TICK);
                }
            })?;
        Ok(ConfigWatcher {
            stats,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stats(&self) -> &ReloadStats {
        &self.stats
    }

    /// Stop watching and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Watch {
    path: PathBuf,
    also: Vec<PathBuf>,
    load: Loader,
    control: ControlHandle,
    stats: Arc<ReloadStats>,
    seen: Vec<Option<(SystemTime, u64)>>,
}

impl Watch {
    /// The fingerprints of the config file and the files it names, in order.
    fn fingerprints(&self) -> Vec<Option<(SystemTime, u64)>> {
        std::iter::once(&self.path)
            .chain(&self.also)
            .map(|p| fingerprint(p))
            .collect()
    }

    fn reload(&mut self) {
        match (self.load)(&self.path) {
            Ok(config) => {
                tracing::info!(version = %config.version, "configuration reloaded");
                self.control.update_config(config);
                self.stats.applied.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "configuration reload refused; the last good configuration keeps serving"
                );
                self.stats.refused.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// What identifies a version of the file: modification time and size.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
