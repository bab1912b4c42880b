//! Ctrl-C and SIGTERM → graceful shutdown.
//!
//! Signal handlers may only do async-signal-safe work, so `signal-hook` turns signals into
//! messages read on a small dedicated thread, which calls [`ControlHandle::shutdown`] (the
//! driver then stops accepting and drains). A second signal while draining exits the process
//! at once with status 130, as people expect of a second Ctrl-C.

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::control::ControlHandle;

/// Route SIGINT and SIGTERM to `handle.shutdown()`. Call once per process.
pub fn install_ctrl_c(handle: ControlHandle) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("trellis-signals".into())
        .spawn(move || {
            let mut seen = 0u32;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    tracing::warn!(signal, "second signal: exiting now");
                    std::process::exit(130);
                }
                tracing::info!(signal, "signal received: shutting down");
                handle.shutdown();
            }
        })?;
    Ok(())
}
