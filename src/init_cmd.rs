//! `trellis init`: program a pod's network namespace so its TCP traffic goes through the
//! sidecar (Istio's `istio-iptables`, run by the istio-init container). The flags are
//! istio-iptables' own (tools/istio-iptables/pkg/cmd/root.go), short and long, so an injection
//! template reads as Istio's does; the rules come from `trellis_io::capture`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use trellis_io::capture::{self, apply, BackendChoice, CaptureOptions, CaptureSpec};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Port all outbound TCP is redirected to (the sidecar's outbound listener).
    #[arg(short = 'p', long = "envoy-port", value_name = "PORT")]
    envoy_port: Option<u16>,
    /// Port all inbound TCP is redirected to (the sidecar's inbound listener).
    #[arg(short = 'z', long = "inbound-capture-port", value_name = "PORT")]
    inbound_capture_port: Option<u16>,
    /// The tunnel port, never redirected inbound (Istio's HBONE 15008).
    #[arg(short = 'e', long = "inbound-tunnel-port", value_name = "PORT")]
    inbound_tunnel_port: Option<u16>,
    /// UID(s) whose traffic is never redirected: the proxy's (comma-separated; default 1337).
    #[arg(short = 'u', long = "proxy-uid", value_name = "UIDS")]
    proxy_uid: Option<String>,
    /// GID(s) whose traffic is never redirected (default: the same as --proxy-uid).
    #[arg(short = 'g', long = "proxy-gid", value_name = "GIDS")]
    proxy_gid: Option<String>,
    /// Inbound interception mode; only REDIRECT is supported.
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        value_name = "MODE"
    )]
    interception_mode: Option<String>,
    /// Inbound ports to redirect, comma-separated, or "*" for all (default "*"); an empty
    /// value captures no inbound traffic. Annotation traffic.sidecar.istio.io/includeInboundPorts.
    #[arg(short = 'b', long = "istio-inbound-ports", value_name = "PORTS")]
    inbound_ports: Option<String>,
    /// Inbound ports not redirected when -b is "*" (15090, 15021 and 15020 always are not).
    /// Annotation traffic.sidecar.istio.io/excludeInboundPorts.
    #[arg(short = 'd', long = "istio-local-exclude-ports", value_name = "PORTS")]
    inbound_exclude_ports: Option<String>,
    /// Outbound CIDRs to redirect, comma-separated, or "*" for all (default "*"); an empty
    /// value redirects none by address. Annotation traffic.sidecar.istio.io/includeOutboundIPRanges.
    #[arg(short = 'i', long = "istio-service-cidr", value_name = "CIDRS")]
    outbound_include_ranges: Option<String>,
    /// Outbound CIDRs never redirected. Annotation traffic.sidecar.istio.io/excludeOutboundIPRanges.
    #[arg(short = 'x', long = "istio-service-exclude-cidr", value_name = "CIDRS")]
    outbound_exclude_ranges: Option<String>,
    /// Outbound ports always redirected, whatever the destination. Annotation
    /// traffic.sidecar.istio.io/includeOutboundPorts.
    #[arg(short = 'q', long = "istio-outbound-ports", value_name = "PORTS")]
    outbound_include_ports: Option<String>,
    /// Outbound ports never redirected. Annotation traffic.sidecar.istio.io/excludeOutboundPorts.
    #[arg(
        short = 'o',
        long = "istio-local-outbound-ports-exclude",
        value_name = "PORTS"
    )]
    outbound_exclude_ports: Option<String>,
    /// Interfaces whose traffic is never captured, either way. Annotation
    /// traffic.sidecar.istio.io/excludeInterfaces.
    #[arg(short = 'c', long = "istio-exclude-interfaces", value_name = "NICS")]
    exclude_interfaces: Option<String>,
    /// Virtual interfaces whose inbound traffic is treated as outbound. Annotation
    /// traffic.sidecar.istio.io/kubevirtInterfaces.
    #[arg(short = 'k', long = "kube-virt-interfaces", value_name = "NICS")]
    reroute_interfaces: Option<String>,
    /// A pod annotations file in the Kubernetes downward API format (key="value" per line);
    /// the traffic.sidecar.istio.io/* annotations fill in the settings no flag gave.
    #[arg(long, value_name = "FILE")]
    pod_annotations: Option<PathBuf>,
    /// Also program IPv6: auto (when the pod has a global IPv6 address), on or off.
    #[arg(long, value_name = "auto|on|off", default_value = "auto")]
    ipv6: Ipv6Choice,
    /// Which tool loads the rules: auto (nft when installed, else iptables-legacy), nft or
    /// iptables.
    #[arg(long, value_name = "auto|nft|iptables", default_value = "auto")]
    backend: BackendChoice,
    /// Print the exact rules that would be loaded, and change nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Remove every rule and chain `trellis init` added (and only those): with --backend auto,
    /// with each of nft and iptables that is installed. Succeeds when there is nothing to remove.
    #[arg(long, visible_alias = "cleanup-only")]
    cleanup: bool,
    /// istio-iptables' logging flag (`scope:level,...`), which Istio's injection template
    /// passes: accepted so injected pods run unchanged; the level is taken from its
    /// `default` scope when RUST_LOG does not set one.
    #[arg(long = "log_output_level", value_name = "SCOPE:LEVEL,...")]
    pub log_output_level: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ipv6Choice {
    Auto,
    On,
    Off,
}

impl std::str::FromStr for Ipv6Choice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Ipv6Choice::Auto),
            "on" | "true" => Ok(Ipv6Choice::On),
            "off" | "false" => Ok(Ipv6Choice::Off),
            other => Err(format!("unknown --ipv6 value {other:?} (auto, on or off)")),
        }
    }
}

impl InitArgs {
    fn options(&self) -> Result<CaptureOptions> {
        let opts = CaptureOptions {
            proxy_port: self.envoy_port,
            inbound_capture_port: self.inbound_capture_port,
            inbound_tunnel_port: self.inbound_tunnel_port,
            proxy_uid: self.proxy_uid.clone(),
            proxy_gid: self.proxy_gid.clone(),
            inbound_interception_mode: self.interception_mode.clone(),
            inbound_ports: self.inbound_ports.clone(),
            inbound_exclude_ports: self.inbound_exclude_ports.clone(),
            outbound_include_ranges: self.outbound_include_ranges.clone(),
            outbound_exclude_ranges: self.outbound_exclude_ranges.clone(),
            outbound_include_ports: self.outbound_include_ports.clone(),
            outbound_exclude_ports: self.outbound_exclude_ports.clone(),
            exclude_interfaces: self.exclude_interfaces.clone(),
            reroute_interfaces: self.reroute_interfaces.clone(),
        };
        let Some(path) = &self.pod_annotations else {
            return Ok(opts);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let annotations = capture::spec::parse_downward_api_annotations(&text)
            .with_context(|| path.display().to_string())?;
        Ok(opts.with_annotations(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }
}

pub fn init(args: InitArgs) -> Result<ExitCode> {
    // A dry run of `auto` on a machine with neither tool still shows the nft rules.
    let tool = match apply::choose(args.backend) {
        Ok(tool) => tool,
        Err(_) if args.dry_run && args.backend != BackendChoice::Iptables => {
            capture::Tool::Nft("nft".into())
        }
        Err(e) => return Err(e.into()),
    };
    if args.cleanup {
        // `auto` cleans with every tool installed: the rules may have been loaded by either
        // (an earlier run's fallback, or a forced backend).
        let tools: Vec<capture::Tool> = match args.backend {
            BackendChoice::Auto => [BackendChoice::Nft, BackendChoice::Iptables]
                .into_iter()
                .filter_map(|b| apply::choose(b).ok())
                .collect(),
            _ => vec![tool],
        };
        for tool in &tools {
            if args.dry_run {
                println!("{}", cleanup_plan(tool));
                continue;
            }
            apply::cleanup(tool).context("cannot remove the capture rules")?;
            tracing::info!(backend = tool.name(), "capture rules removed");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ipv6 = match args.ipv6 {
        Ipv6Choice::On => true,
        Ipv6Choice::Off => false,
        Ipv6Choice::Auto => apply::host_has_ipv6(),
    };
    let spec = CaptureSpec::from_options(&args.options()?, ipv6)?;
    let rules = capture::build(&spec);
    if args.dry_run {
        print!("{}", apply::render(&rules, &tool));
        return Ok(ExitCode::SUCCESS);
    }
    let (tool, state) = match apply::apply(&rules, &tool) {
        Ok(state) => (tool, state),
        Err(e @ capture::CaptureError::ToolFailed { .. }) => {
            let Some(other) = apply::fallback(args.backend, &tool) else {
                return Err(anyhow::Error::new(e).context("cannot install the capture rules"));
            };
            tracing::warn!(error = %e, "nft cannot load the rules here; trying iptables");
            let state = apply::apply(&rules, &other).context("cannot install the capture rules")?;
            (other, state)
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot install the capture rules")),
    };
    tracing::info!(
        backend = tool.name(),
        ipv6,
        rules = rules.rules.len(),
        "capture rules installed; final state:\n{state}"
    );
    Ok(ExitCode::SUCCESS)
}

fn cleanup_plan(tool: &capture::Tool) -> String {
    match tool {
        capture::Tool::Nft(_) => format!("# nft -f -\n{}", capture::nft::cleanup_script()),
        capture::Tool::Iptables(_) => format!(
            "# iptables-restore --noflush (and ip6tables-restore), for the rules found by \
             iptables-save:\n*nat\n-D PREROUTING|OUTPUT <each rule commented {}>\n\
             -F/-X ISTIO_INBOUND ISTIO_REDIRECT ISTIO_IN_REDIRECT ISTIO_OUTPUT\nCOMMIT",
            capture::iptables::COMMENT
        ),
    }
}
