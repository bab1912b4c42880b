//! Heap allocations per proxied request on a core thread (engine + driver), counted by a
//! global allocator that only counts on threads named `trellis-core-*`: a keep-alive GET
//! with a small body, after warm-up, on both backends. Prints the figure (RESEARCH.md quotes
//! it) and guards against regressions. The same run reads the runtime's I/O counters
//! (`Runtime::io_stats`) for the backend's syscalls and loop turns (wake-ups) per request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trellis_io::runtime::RuntimeOptions;
use trellis_io::{BackendChoice, ControlHandle, IoStats, RunOptions, Runtime};
use trellis_local_mesh::client::HttpClient;
use trellis_local_mesh::config::reviews_config;
use trellis_local_mesh::upstream::Upstream;

struct Counting;

static CORE_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// None: not yet known; Some(false) also while being computed (no recursion).
    static IS_CORE: Cell<Option<bool>> = const { Cell::new(None) };
}

fn on_core_thread() -> bool {
    IS_CORE
        .try_with(|c| match c.get() {
            Some(v) => v,
            None => {
                c.set(Some(false));
                let v = std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("trellis-core-"));
                c.set(Some(v));
                v
            }
        })
        .unwrap_or(false)
}

// SAFETY: forwards to the system allocator; counting has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_core_thread() {
            CORE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_core_thread() {
            CORE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Per proxied request, after warm-up.
struct PerRequest {
    allocations: f64,
    syscalls: f64,
    ring_operations: f64,
    turns: f64,
}

fn per_request(backend: BackendChoice, direct_sends: bool) -> PerRequest {
    let up = Upstream::start("reviews-v2").unwrap();
    let a = up.addr();
    let control = ControlHandle::new();
    let rt = Runtime::start(
        Arc::new(reviews_config("127.0.0.1:0".parse().unwrap(), [a, a, a])),
        RuntimeOptions {
            cores: 1,
            backend,
            run: RunOptions {
                seed: 9,
                direct_sends,
                shutdown_grace: Duration::from_secs(2),
                ..RunOptions::default()
            },
            health: None,
            pin: false,
        },
        control.clone(),
    )
    .unwrap();
    let mut c = HttpClient::connect(rt.local_addrs()[0].1).unwrap();
    let mut go = |n: usize| {
        for _ in 0..n {
            let r = c
                .request(
                    "GET",
                    "/reviews/1",
                    "reviews",
                    &[("end-user", "jason")],
                    b"",
                )
                .unwrap();
            assert_eq!(r.status, 200);
        }
    };
    go(200);
    let before = CORE_ALLOCS.load(Ordering::Relaxed);
    let io_before = rt.io_stats();
    let n = 1000;
    go(n);
    let after = CORE_ALLOCS.load(Ordering::Relaxed);
    // The core publishes its counters at the end of each turn, and the last turn (the one
    // that sent the last response) may still be finishing: wait for it.
    let mut io_after: IoStats = rt.io_stats();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(10));
        let now = rt.io_stats();
        if now == io_after {
            break;
        }
        io_after = now;
    }
    assert_eq!(c.connects(), 1);
    control.shutdown();
    rt.join().unwrap();
    let per = |a: u64, b: u64| (a - b) as f64 / n as f64;
    PerRequest {
        allocations: per(after, before),
        syscalls: per(io_after.backend_syscalls, io_before.backend_syscalls),
        ring_operations: per(io_after.ring_operations, io_before.ring_operations),
        turns: per(io_after.turns, io_before.turns),
    }
}

#[test]
fn allocations_per_request_on_the_core_thread() {
    // The third: io_uring with ring sends only (each send's completion a wake-up), printed
    // beside the defaults for the before/after figures in bench/RESULTS.md. One test, one
    // at a time: the allocation counter sees every core thread of the process.
    let paths = [
        (BackendChoice::Epoll, true),
        (BackendChoice::IoUring, true),
        (BackendChoice::IoUring, false),
    ];
    for (backend, direct_sends) in paths {
        let PerRequest {
            allocations,
            syscalls,
            ring_operations,
            turns,
        } = per_request(backend, direct_sends);
        println!(
            "{backend} (direct sends: {direct_sends}): {allocations:.2} allocations, \
             {syscalls:.2} backend syscalls, \
             {ring_operations:.2} ring operations and {turns:.2} loop turns per proxied \
             request on the core thread"
        );
        assert!(allocations > 0.0, "the counter sees the core thread");
        // Regression guard, with headroom over what was measured when it was written
        // (epoll 33, io_uring 29: nearly all of them the engine's; 7 and 5 since).
        assert!(
            allocations < 45.0,
            "{backend}: {allocations:.2} allocations per request"
        );
        if !direct_sends {
            assert!(
                ring_operations >= 1.0,
                "every send is a ring operation: {ring_operations:.2}"
            );
            continue;
        }
        // Each request crosses two connections: at least a read (or a receive's wake-up)
        // per side. Measured when written (bench/RESULTS.md, "Fewer wake-ups per request"):
        // epoll 6 (2 reads that stop short of EAGAIN, 2 writevs, 2 epoll_waits), io_uring 4
        // (2 io_uring_enters, 2 direct sendmsgs); 2 loop turns on both, and no ring
        // operation per request on io_uring (the receives stay armed, the sends fit).
        assert!(syscalls >= 2.0, "{backend}: the counters see the requests");
        assert!(
            syscalls < 7.0,
            "{backend}: {syscalls:.2} syscalls per request"
        );
        assert!(
            turns < 3.0,
            "{backend}: {turns:.2} loop turns (wake-ups) per request: a send's completion \
             wakes the loop again?"
        );
        if backend == BackendChoice::IoUring {
            assert!(
                ring_operations < 1.0,
                "{backend}: {ring_operations:.2} ring operations per request"
            );
        }
    }
}
