//! Backend selection as the runtime does it: an injected io_uring setup failure (what
//! seccomp's EPERM, `io_uring_disabled` or an old kernel look like) makes `auto` fall back to
//! epoll and still serve; `io-uring` forced where it is unavailable is a start-up error; and
//! on this machine the real probe's verdict is what `auto` picks.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use trellis_io::backend::{probe_io_uring, Unavailable};
use trellis_io::runtime::RuntimeOptions;
use trellis_io::{Backend, BackendChoice, ControlHandle, IoError, RunOptions, Runtime};
use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::config::reviews_config;
use trellis_local_mesh::upstream::Upstream;

fn options(backend: BackendChoice) -> RuntimeOptions {
    RuntimeOptions {
        cores: 2,
        backend,
        run: RunOptions {
            seed: 3,
            shutdown_grace: Duration::from_secs(2),
            ..RunOptions::default()
        },
        health: None,
        pin: false,
    }
}

fn seccomp_says_no() -> Result<(), Unavailable> {
    Err(Unavailable::Setup(io::Error::from_raw_os_error(
        libc::EPERM,
    )))
}

#[test]
fn auto_falls_back_to_epoll_and_serves() {
    let up = Upstream::start("reviews-v2").unwrap();
    let a = up.addr();
    let config = Arc::new(reviews_config("127.0.0.1:0".parse().unwrap(), [a, a, a]));
    let control = ControlHandle::new();
    let rt = Runtime::start_with_probe(
        config,
        options(BackendChoice::Auto),
        control.clone(),
        seccomp_says_no,
    )
    .expect("falls back instead of failing");
    assert_eq!(rt.backend().backend, Backend::Epoll);
    assert!(
        rt.backend().reason.contains("falling back to epoll"),
        "{}",
        rt.backend().reason
    );
    let mut c = HttpClient::connect(rt.local_addrs()[0].1).unwrap();
    let r = c.request("GET", "/", "reviews", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"reviews-v2\n");
    control.shutdown();
    rt.join().unwrap();
}

#[test]
fn forced_io_uring_where_unavailable_is_an_error() {
    let config = Arc::new(reviews_config(
        "127.0.0.1:0".parse().unwrap(),
        ["127.0.0.1:9".parse().unwrap(); 3],
    ));
    let result = Runtime::start_with_probe(
        config,
        options(BackendChoice::IoUring),
        ControlHandle::new(),
        || Err(Unavailable::DisabledBySysctl),
    );
    match result {
        Err(IoError::Backend(e)) => {
            let text = e.to_string();
            assert!(text.contains("--backend io-uring"), "{text}");
            assert!(text.contains("io_uring_disabled"), "{text}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started without io_uring"),
    }
}

#[test]
fn auto_follows_the_real_probe() {
    let config = Arc::new(reviews_config(
        "127.0.0.1:0".parse().unwrap(),
        ["127.0.0.1:9".parse().unwrap(); 3],
    ));
    let control = ControlHandle::new();
    let rt = Runtime::start(config, options(BackendChoice::Auto), control.clone()).unwrap();
    let expected = match probe_io_uring() {
        Ok(()) => Backend::IoUring,
        Err(_) => Backend::Epoll,
    };
    assert_eq!(rt.backend().backend, expected);
    control.shutdown();
    rt.join().unwrap();
}
