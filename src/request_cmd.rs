//! `trellis request METHOD PATH [BODY]`: Istio's `pilot-agent request`, an HTTP request to one
//! of the sidecar's own local ports. Its use in a pod: the native sidecar's preStop hook,
//! `trellis request --debug-port 15020 POST drain`, which starts draining the inbound side
//! as soon as the pod's shutdown begins (pilot/cmd/pilot-agent/app/request.go and
//! pilot/pkg/request/command.go: the path without its leading `/` is joined to
//! `http://localhost:PORT/`, the body is printed, and an answer of 400 or more other than 404
//! is an error).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

/// The ports pilot-agent lets `request` reach: Envoy's admin, the status port, readiness, and
/// the agent's debug port.
const ALLOWED_PORTS: [u16; 4] = [15000, 15004, 15020, 15021];
/// pilot-agent's client timeout.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The local port: the admin port (15000), the status port (15020), readiness (15021) or
    /// 15004, as pilot-agent allows.
    #[arg(long, default_value_t = 15000)]
    debug_port: u16,
    /// HTTP method, e.g. POST.
    method: String,
    /// Path, e.g. `drain` or `/quitquitquit`.
    path: String,
    /// Request body.
    body: Option<String>,
}

pub fn request(args: RequestArgs) -> Result<ExitCode> {
    if !ALLOWED_PORTS.contains(&args.debug_port) {
        bail!(
            "debug port {} is not in allowed list {ALLOWED_PORTS:?}",
            args.debug_port
        );
    }
    if args.method.is_empty() || !args.method.bytes().all(|b| b.is_ascii_alphabetic()) {
        bail!("{:?} is not an HTTP method", args.method);
    }
    let path = format!("/{}", args.path.trim_start_matches('/'));
    if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        bail!("{:?} is not a request path", args.path);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], args.debug_port));
    let body = args.body.unwrap_or_default();
    let (code, answer) = trellis_io::health::request(addr, &args.method, &path, &body, TIMEOUT)
        .with_context(|| format!("{} http://localhost:{}{path}", args.method, args.debug_port))?;
    if code > 399 && code != 404 {
        bail!(
            "received unsuccessful status code {code}: {}",
            answer.trim_end()
        );
    }
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}
