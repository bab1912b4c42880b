//! The sidecar's life cycle around the proxy, as Istio's pilot-agent runs Envoy's:
//!
//! - the admin port (`--admin-port`, Envoy's 15000) and the status port (`--status-port`,
//!   pilot-agent's 15020) with `/healthz/ready`, `POST /quitquitquit` and, on the status port,
//!   the application's rewritten probes from `ISTIO_KUBE_APP_PROBERS`
//!   ([`trellis_io::status`]);
//! - `trellis wait-ready`, Istio's `pilot-agent wait`: the sidecar container's postStart hook.
//!   With the sidecar first in the pod's containers, the kubelet starts the next container only
//!   once that hook returns, so the application starts after its sidecar is ready
//!   (`holdApplicationUntilProxyStarts`). A native sidecar (`trellis inject
//!   --native-sidecars`) needs no hook: the kubelet starts the application containers once
//!   the sidecar's startupProbe passes;
//! - shutdown: SIGTERM and `/quitquitquit` both drain in-flight requests for `--drain-seconds`
//!   and exit 0. The sidecar leaves with the application through Kubernetes' native sidecars
//!   (an init container with `restartPolicy: Always` gets its SIGTERM once the application
//!   containers have exited, so a Job completes), and on clusters without them the
//!   application calls `curl -XPOST localhost:15020/quitquitquit` when it is done — Istio's
//!   two answers to "the sidecar keeps my Job running".

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use trellis_io::app_probe::AppProbers;
use trellis_io::status::{StatusRoutes, StatusServer};
use trellis_io::ControlHandle;

/// The environment variable the injector puts the application's original probes in.
pub const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

/// Start the admin and status servers that are asked for (a port of 0 is off). They stop
/// when the returned servers are dropped.
pub fn start_status_servers(
    admin_port: u16,
    status_port: u16,
    health_port: u16,
    control: &ControlHandle,
) -> Result<Vec<StatusServer>> {
    let readiness = (health_port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], health_port)));
    let mut servers = Vec::new();
    if admin_port != 0 {
        // Envoy's admin listens on localhost only: /quitquitquit is not for the network.
        let addr = SocketAddr::from(([127, 0, 0, 1], admin_port));
        servers.push(
            StatusServer::start(
                "admin",
                addr,
                StatusRoutes::admin(readiness),
                control.clone(),
            )
            .with_context(|| format!("cannot serve the admin port on {addr}"))?,
        );
    }
    if status_port != 0 {
        let json = std::env::var(APP_PROBERS_ENV).unwrap_or_default();
        let probers = AppProbers::parse(&json)?;
        if !probers.is_empty() {
            tracing::info!(
                env = APP_PROBERS_ENV,
                "application probes served on the status port"
            );
        }
        // The kubelet probes the pod's IP: all interfaces, as pilot-agent's 15020.
        let addr = SocketAddr::from(([0, 0, 0, 0], status_port));
        servers.push(
            StatusServer::start(
                "status",
                addr,
                StatusRoutes::status(readiness, Arc::new(probers)),
                control.clone(),
            )
            .with_context(|| format!("cannot serve the status port on {addr}"))?,
        );
    }
    Ok(servers)
}

#[derive(Args, Debug)]
pub struct WaitReadyArgs {
    /// The readiness URL to poll (plain http://HOST:PORT/PATH).
    #[arg(long, default_value = "http://localhost:15021/healthz/ready")]
    url: String,
    /// Give up after this long (Istio duration: 60s, 2m, 500ms).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Time between attempts.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    period: Duration,
    /// Time one attempt may take.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    request_timeout: Duration,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    trellis_control::istio::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// `http://host:port/path` → the address to connect to and the path.
fn parse_url(url: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--url {url:?}: only http:// URLs are supported");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("--url {url:?} names no host");
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// Poll until the URL answers 200: exit 0, or fail after `--timeout` with the last answer.
pub fn wait_ready(args: WaitReadyArgs) -> Result<ExitCode> {
    use std::net::ToSocketAddrs;
    let (authority, path) = parse_url(&args.url)?;
    let start = Instant::now();
    loop {
        let attempt = authority
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority}: {e}"))
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| format!("{authority} has no address"))
            })
            .and_then(|addr| {
                trellis_io::health::get(addr, &path, args.request_timeout)
                    .map_err(|e| e.to_string())
            });
        let last = match attempt {
            Ok((200, _)) => {
                tracing::info!(url = %args.url, elapsed = ?start.elapsed(), "sidecar ready");
                return Ok(ExitCode::SUCCESS);
            }
            Ok((code, body)) => format!("{code} {}", body.trim()),
            Err(e) => e,
        };
        if start.elapsed() + args.period > args.timeout {
            bail!(
                "the sidecar was not ready after {:?}: {} last answered {last}",
                args.timeout,
                args.url
            );
        }
        std::thread::sleep(args.period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://localhost:15021/healthz/ready").unwrap(),
            ("localhost:15021".into(), "/healthz/ready".into())
        );
        assert_eq!(
            parse_url("http://10.0.0.1").unwrap(),
            ("10.0.0.1:80".into(), "/".into())
        );
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http:///x").is_err());
    }
}
