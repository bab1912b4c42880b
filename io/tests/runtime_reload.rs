//! Reloads from the config file: a change of the file (mtime/size, polled) or SIGHUP loads it
//! again and pushes it to every core; a bad file is refused and the last good config keeps
//! serving; a keep-alive connection opened before the reloads is still the one in use after.
//!
//! The "file format" here is a one-line stand-in (`rotate=N` or anything else = invalid): the
//! loader is the caller's, and the binary's real one (`trellis_control::load_proxy_config`)
//! is exercised by the CLI tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trellis_engine::config::Config;
use trellis_io::reload::{ConfigWatcher, Loader, WatchOptions};
use trellis_io::runtime::RuntimeOptions;
use trellis_io::{BackendChoice, ControlHandle, RunOptions, Runtime};
use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::config::reviews_config;
use trellis_local_mesh::upstream::Upstream;

fn config(addrs: &[std::net::SocketAddr; 3], rotate: usize) -> Config {
    let at = |i: usize| addrs[(i + rotate) % 3];
    let mut c = reviews_config("127.0.0.1:0".parse().unwrap(), [at(0), at(1), at(2)]);
    c.version = format!("rotate-{rotate}");
    c
}

fn loader(addrs: [std::net::SocketAddr; 3]) -> Loader {
    Box::new(move |path: &Path| {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let n = text
            .trim()
            .strip_prefix("rotate=")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("cannot parse {text:?}"))?;
        Ok(Arc::new(config(&addrs, n)))
    })
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trellis-reload-{}-{name}", std::process::id()))
}

fn jason(c: &mut HttpClient) -> String {
    let r = c
        .request("GET", "/r", "reviews", &[("end-user", "jason")], b"")
        .expect("answered");
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).into_owned()
}

fn wait_for(c: &mut HttpClient, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if jason(c) == want {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {want:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct Setup {
    _ups: Vec<Upstream>,
    addrs: [std::net::SocketAddr; 3],
    control: ControlHandle,
    runtime: Runtime,
}

fn setup(backend: BackendChoice) -> Setup {
    let ups: Vec<Upstream> = ["reviews-v1", "reviews-v2", "reviews-v3"]
        .iter()
        .map(|n| Upstream::start(n).unwrap())
        .collect();
    let addrs = [ups[0].addr(), ups[1].addr(), ups[2].addr()];
    let control = ControlHandle::new();
    let runtime = Runtime::start(
        Arc::new(config(&addrs, 0)),
        RuntimeOptions {
            cores: 2,
            backend,
            run: RunOptions {
                seed: 5,
                ..RunOptions::default()
            },
            health: None,
            pin: false,
        },
        control.clone(),
    )
    .unwrap();
    Setup {
        _ups: ups,
        addrs,
        control,
        runtime,
    }
}

#[test]
fn file_change_reloads_and_a_bad_file_is_refused() {
    for backend in [BackendChoice::Epoll, BackendChoice::IoUring] {
        let s = setup(backend);
        let path = temp_file(&format!("file-{backend}"));
        std::fs::write(&path, "rotate=0\n").unwrap();
        let watcher = ConfigWatcher::start(
            path.clone(),
            loader(s.addrs),
            s.control.clone(),
            WatchOptions {
                poll: Some(Duration::from_millis(100)),
                sighup: false,
                also: Vec::new(),
                probe: None,
            },
        )
        .unwrap();
        let mut c = HttpClient::connect(s.runtime.local_addrs()[0].1).unwrap();
        assert_eq!(jason(&mut c), "reviews-v2\n");

        std::fs::write(&path, "rotate=1\n").unwrap();
        wait_for(&mut c, "reviews-v3\n");
        assert_eq!(watcher.stats().applied(), 1);

        std::fs::write(&path, "this is not a config\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while watcher.stats().refused() == 0 {
            assert!(Instant::now() < deadline, "bad file never looked at");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(jason(&mut c), "reviews-v3\n", "the last good config serves");

        std::fs::write(&path, "rotate=2\n").unwrap();
        wait_for(&mut c, "reviews-v1\n");
        assert_eq!(
            c.connects(),
            1,
            "{backend}: no connection dropped by reloads"
        );

        s.control.shutdown();
        s.runtime.join().unwrap();
        watcher.stop();
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn sighup_reloads() {
    let s = setup(BackendChoice::Auto);
    let path = temp_file("hup");
    std::fs::write(&path, "rotate=0\n").unwrap();
    let watcher = ConfigWatcher::start(
        path.clone(),
        loader(s.addrs),
        s.control.clone(),
        WatchOptions {
            poll: None,
            sighup: true,
            also: Vec::new(),
            probe: None,
        },
    )
    .unwrap();
    let mut c = HttpClient::connect(s.runtime.local_addrs()[0].1).unwrap();
    assert_eq!(jason(&mut c), "reviews-v2\n");
    std::fs::write(&path, "rotate=1\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        jason(&mut c),
        "reviews-v2\n",
        "no polling: nothing until SIGHUP"
    );
    // SAFETY: raising a signal this process handles (signal-hook's flag).
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
    wait_for(&mut c, "reviews-v3\n");
    assert_eq!(watcher.stats().applied(), 1);
    s.control.shutdown();
    s.runtime.join().unwrap();
    // The watcher ends by itself once shutdown is requested.
    watcher.stop();
    let _ = std::fs::remove_file(&path);
}

/// An input that is not a file (the binary's DNS answers) reloads through a probe: nothing
/// happens while it says "unchanged", one reload when it says "changed".
#[test]
fn a_probe_that_sees_a_change_reloads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = setup(BackendChoice::Auto);
    let path = temp_file("probe");
    std::fs::write(&path, "rotate=0\n").unwrap();
    let moved = Arc::new(AtomicBool::new(false));
    let flag = moved.clone();
    let watcher = ConfigWatcher::start(
        path.clone(),
        loader(s.addrs),
        s.control.clone(),
        WatchOptions {
            poll: None,
            sighup: false,
            also: Vec::new(),
            probe: Some(trellis_io::reload::Probe {
                every: Duration::from_millis(50),
                what: "test input",
                changed: Box::new(move || flag.swap(false, Ordering::AcqRel)),
            }),
        },
    )
    .unwrap();
    let mut c = HttpClient::connect(s.runtime.local_addrs()[0].1).unwrap();
    std::fs::write(&path, "rotate=1\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(jason(&mut c), "reviews-v2\n", "the probe saw no change yet");
    moved.store(true, Ordering::Release);
    wait_for(&mut c, "reviews-v3\n");
    assert_eq!(watcher.stats().applied(), 1);
    s.control.shutdown();
    s.runtime.join().unwrap();
    watcher.stop();
    let _ = std::fs::remove_file(&path);
}
