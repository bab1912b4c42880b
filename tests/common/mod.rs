//! What the binary's end-to-end tests share: waiting for a listener, and running real curl
//! (which must be installed: a missing curl fails the test, it never skips).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Wait until something accepts on `addr` (at most 20 s).
pub fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl -sS --max-time 20 ARGS`.
pub fn curl(args: &[&str]) -> Output {
    let found = Command::new("sh")
        .args(["-c", "command -v curl"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "curl is required (scripts/test.sh installs it)");
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs")
}
