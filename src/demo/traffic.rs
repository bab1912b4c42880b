//! The traffic generator: a few requests a second to productpage through its sidecar's inbound
//! listener (the mesh's edge), every fourth one as `end-user: jason`, every twentieth as
//! `end-user: tester`, each answer counted in a [`Tally`]; a short summary every few seconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use trellis_io::ControlHandle;
use trellis_local_mesh::client::HttpClient;

use super::tally::{Tally, JASON, OTHERS, TESTER};

/// When to stop, and how fast to go.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    /// Requests per second.
    pub rate: f64,
    /// How often to print the last few seconds' summary (`None`: never).
    pub summary_every: Option<Duration>,
}

/// Who sends request `i`: 1 in 4 jason, 1 in 20 tester, the rest nobody in particular.
pub fn user_of(i: u64) -> &'static str {
    if i % 4 == 3 {
        JASON
    } else if i % 20 == 9 {
        TESTER
    } else {
        OTHERS
    }
}

/// A keep-alive client to productpage's ingress.
pub struct Traffic {
    ingress: SocketAddr,
    client: Option<HttpClient>,
}

impl Traffic {
    pub fn new(ingress: SocketAddr) -> Self {
        Traffic {
            ingress,
            client: None,
        }
    }

    /// One request for the product page, as `user`.
    pub fn send(&mut self, user: &str) -> Result<(u16, Vec<u8>), String> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self
                .client
                .insert(HttpClient::connect(self.ingress).map_err(|e| e.to_string())?),
        };
        let headers: &[(&str, &str)] = match user {
            JASON => &[("end-user", "jason")],
            TESTER => &[("end-user", "tester")],
            _ => &[],
        };
        match client.request("GET", "/productpage", "productpage:9080", headers, b"") {
            Ok(r) => Ok((r.status, r.body)),
            Err(e) => {
                self.client = None;
                Err(e.to_string())
            }
        }
    }

    /// Wait until the mesh answers whole paths: every sidecar has its first push by then
    /// (before it, an outbound listener has no routes). Five good answers in a row, or fail
    /// after `timeout` (or on Ctrl-C) with the last answer.
    pub fn warm_up(&mut self, timeout: Duration, stop: &ControlHandle) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut good = 0;
        let mut last = String::new();
        for i in 0u64.. {
            let user = if i % 2 == 0 { JASON } else { OTHERS };
            match self.send(user) {
                Ok((200, body)) if !String::from_utf8_lossy(&body).contains('✗') => good += 1,
                Ok((status, body)) => {
                    good = 0;
                    last = format!("{status} {}", String::from_utf8_lossy(&body));
                }
                Err(e) => {
                    good = 0;
                    last = e;
                }
            }
            if good >= 5 {
                return Ok(());
            }
            if Instant::now() > deadline || stop.is_shutdown() {
                bail!("the mesh is not answering; last answer: {last}");
            }
            stop.wait_shutdown(Some(Duration::from_millis(100)));
        }
        Ok(())
    }

    /// Send until a limit is reached or `stop` is asked; the whole run's tally.
    pub fn run(&mut self, limits: Limits, stop: &ControlHandle) -> Tally {
        let start = Instant::now();
        let period = Duration::from_secs_f64(1.0 / limits.rate.max(0.01));
        let mut total = Tally::default();
        let mut window = Tally::default();
        let mut next_summary = limits.summary_every.map(|every| start + every);
        let mut next_send = start;
        for i in 0u64.. {
            if limits.requests.is_some_and(|n| i >= n)
                || limits.duration.is_some_and(|d| start.elapsed() >= d)
                || stop.is_shutdown()
            {
                break;
            }
            let user = user_of(i);
            let answer = self.send(user);
            total.record(user, answer.clone());
            window.record(user, answer);
            if let (Some(due), Some(every)) = (next_summary, limits.summary_every) {
                if Instant::now() >= due {
                    println!(
                        "[{:>4}s] last {}s: {}",
                        start.elapsed().as_secs(),
                        every.as_secs(),
                        window.short()
                    );
                    window = Tally::default();
                    next_summary = Some(due + every);
                }
            }
            next_send += period;
            let now = Instant::now();
            if next_send > now {
                // Wakes early on Ctrl-C.
                stop.wait_shutdown(Some(next_send - now));
            } else {
                next_send = now;
            }
        }
        total
    }
}
