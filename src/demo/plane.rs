//! The demo's control plane, in-process: `trellis control --dir DIR --listen ADDR`, the same
//! code (its arguments parsed as the command line would), on a thread of its own. It watches
//! the directory, so an edited file is pushed to the sidecars it concerns within a second.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use super::ports::reserve;
use crate::control_cmd::{control, ControlArgs};

/// `trellis control`'s arguments, parsed from words.
#[derive(Parser, Debug)]
struct ControlCommand {
    #[command(flatten)]
    args: ControlArgs,
}

/// Start the control plane on `dir`; returns where sidecars connect, once it accepts.
pub fn start(dir: &Path) -> Result<SocketAddr> {
    let reserved = reserve()?;
    let listen = SocketAddr::from(([127, 0, 0, 1], reserved.port));
    let words = [
        "trellis control".to_string(),
        "--dir".into(),
        dir.display().to_string(),
        "--listen".into(),
        listen.to_string(),
        "--poll-ms".into(),
        "200".into(),
    ];
    let command = ControlCommand::try_parse_from(words).context("control plane arguments")?;
    reserved.release();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            if let Err(e) = control(command.args) {
                tracing::error!("the control plane stopped: {e:#}");
            }
        })
        .context("cannot start the control plane thread")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(listen).is_err() {
        if Instant::now() > deadline {
            bail!("the control plane did not start listening on {listen}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(listen)
}
