//! Free ports for the demo's listeners, below the kernel's ephemeral range, held until used.
//!
//! The seed names each sidecar's inbound port before anything binds it, and the control
//! plane's port is picked before it listens: between the pick and the bind, a port in the
//! ephemeral range could be taken by a `bind(0)` (the workloads' servers) or as the source port
//! of a connection (every client here), and the bind would fail. Ports under the range are
//! never handed out that way. A picked port is held by a listener (a [`Reserved`]) until just
//! before its real owner binds it, so another demo starting at the same time skips it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// Where the search starts (ports under it are often well known).
const LOWEST: u16 = 20_000;

/// The low end of `net.ipv4.ip_local_port_range` (Linux's default: 32768).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port held by a listener until [`Reserved::release`] (or drop).
pub struct Reserved {
    pub port: u16,
    _holder: TcpListener,
}

impl Reserved {
    /// Let the port go, for its owner to bind at once.
    pub fn release(self) -> u16 {
        self.port
    }
}

/// `addr`, held (fails when something else has it).
pub fn hold(addr: std::net::SocketAddr) -> std::io::Result<Reserved> {
    Ok(Reserved {
        port: addr.port(),
        _holder: TcpListener::bind(addr)?,
    })
}

/// A port on 127.0.0.1 nothing listens on now, held: a random one under the ephemeral range, or
/// one the kernel picks when none of a few hundred tries is free (or the range starts too low).
pub fn reserve() -> Result<Reserved> {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let top = ephemeral_start();
    if top > LOWEST + 100 {
        let span = u64::from(top - LOWEST);
        let mut x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            ^ u64::from(std::process::id()).rotate_left(32)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        for _ in 0..300 {
            // xorshift64*: spread over the span.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            // The product's high bits: its low ones depend only on x's low bits.
            let port = LOWEST + ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % span) as u16;
            if let Ok(holder) = TcpListener::bind(("127.0.0.1", port)) {
                return Ok(Reserved {
                    port,
                    _holder: holder,
                });
            }
        }
    }
    let holder = TcpListener::bind(("127.0.0.1", 0)).context("no free port on 127.0.0.1")?;
    Ok(Reserved {
        port: holder.local_addr()?.port(),
        _holder: holder,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_below_the_ephemeral_range_held_then_released() {
        let reserved = reserve().expect("a port");
        let port = reserved.port;
        if ephemeral_start() > LOWEST + 100 {
            assert!((LOWEST..ephemeral_start()).contains(&port), "{port}");
        }
        assert!(TcpListener::bind(("127.0.0.1", port)).is_err(), "held");
        reserved.release();
        TcpListener::bind(("127.0.0.1", port)).expect("free once released");
    }
}
