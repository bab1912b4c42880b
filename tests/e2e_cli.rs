//! The `trellis proxy --config FILE` binary itself, end to end: started as a user starts it,
//! driven by curl, stopped with SIGTERM. The library-level suites (`io/tests/e2e_*.rs`) cover
//! traffic in depth; this one checks what only the process shows: it serves from the file, it
//! drains an in-flight request on SIGTERM (answering it, refusing new connections), and exits 0.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trellis_local_mesh::upstream::Upstream;

mod common;
use common::{curl, wait_for};

/// A free port on 127.0.0.1 (bound, then released for the proxy to take).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

/// The proxy process; killed if the test ends early.
struct ProxyProcess(Option<Child>);

impl ProxyProcess {
    fn signal(&self, name: &str) {
        let pid = self.0.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("trellis proxy did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn proxy_binary_serves_from_its_file_and_drains_on_sigterm() {
    let upstream = Upstream::start("reviews-v1").expect("upstream");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("trellis-cli-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("proxy.yaml");
    let mut f = std::fs::File::create(&config).expect("config file");
    write!(
        f,
        r#"listeners:
  - {{name: outbound, address: "127.0.0.1:{port}", direction: outbound}}
services:
  - host: reviews
    ports: [9080]
    endpoints:
      - {{address: "{}", labels: {{version: v1}}}}
"#,
        upstream.addr()
    )
    .expect("write config");
    drop(f);

    let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["proxy", "--config"])
        .arg(&config)
        .args(["--seed", "1", "--drain-seconds", "10"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("trellis proxy starts");
    let proxy = ProxyProcess(Some(child));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    wait_for(addr);
    let base = format!("http://{addr}");

    let out = curl(&["-H", "host: reviews", &format!("{base}/reviews/1")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reviews-v1\n");

    // A request that takes a second is in flight when SIGTERM arrives: it is answered.
    let slow = {
        let url = format!("{base}/delay/1000");
        std::thread::spawn(move || curl(&["-i", "-H", "host: reviews", &url]))
    };
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    proxy.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    // No longer accepting.
    assert!(
        TcpStream::connect(addr).is_err(),
        "listener still open while draining"
    );
    let slow = slow.join().expect("slow client");
    let text = String::from_utf8_lossy(&slow.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.ends_with("reviews-v1\n"), "{text}");
    let status = proxy.wait(Duration::from_secs(8));
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "drain took {:?}",
        signalled.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
