//! An upstream written in Python (`python3 -c SCRIPT`), an HTTP implementation nobody here
//! wrote: the script listens on 127.0.0.1, prints its port on the first line, and serves
//! until the test drops it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::tools::require;

pub struct PythonServer {
    child: Child,
    pub addr: SocketAddr,
}

impl PythonServer {
    pub fn start(script: &str) -> PythonServer {
        require("python3");
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("upstream stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("upstream prints its port");
        let port: u16 = line.trim().parse().expect("a port");
        PythonServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
