//! `trellis inject`: add the Trellis sidecar to the workloads of a YAML file, like
//! `istioctl kube-inject`. Every decision is `trellis_control::inject`'s; this reads the file,
//! writes the result and reports, on stderr, each workload left alone and why.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use trellis_control::inject::{
    inject_file, native, InjectOptions, InjectSettings, NativeSidecarMode, Outcome,
};

/// The injector's configuration, shared by `trellis inject` and `trellis control`'s webhook.
#[derive(Args, Debug, Clone)]
pub struct InjectorArgs {
    /// The image of the injected init and sidecar containers (one `trellis` binary);
    /// `sidecar.istio.io/proxyImage` overrides it per pod.
    #[arg(long, value_name = "IMAGE", default_value = trellis_control::inject::settings::DEFAULT_IMAGE)]
    pub image: String,
    /// Where the injected sidecars reach the control plane (`trellis proxy --control-plane`).
    #[arg(long = "sidecar-control-plane", value_name = "HOST:PORT",
          default_value = trellis_control::inject::settings::DEFAULT_CONTROL_PLANE)]
    pub sidecar_control_plane: String,
    /// Start the application containers without waiting for the sidecar to be ready (Istio's
    /// default; Trellis holds them until the sidecar is ready unless this is given).
    #[arg(long)]
    pub no_hold_application: bool,
    /// imagePullPolicy of the injected containers (Always, IfNotPresent, Never).
    #[arg(long, value_name = "POLICY")]
    pub image_pull_policy: Option<String>,
    /// Inject the sidecar as a Kubernetes native sidecar (an init container with
    /// restartPolicy: Always, Kubernetes 1.29+; GA in 1.33): it is stopped once the
    /// application exits, so Jobs complete. true, false or auto; default: the
    /// ENABLE_NATIVE_SIDECARS environment variable as istiod reads it, else auto. `trellis
    /// inject` sees no nodes, so only true turns it on there (as istioctl kube-inject); the
    /// webhook in auto mode turns it on where the nodes' kubelets are 1.33 or later. A pod's
    /// sidecar.istio.io/nativeSidecar annotation overrides it.
    #[arg(long, value_name = "true|false|auto", value_parser = parse_native_mode)]
    pub native_sidecars: Option<NativeSidecarMode>,
}

fn parse_native_mode(text: &str) -> Result<NativeSidecarMode, String> {
    NativeSidecarMode::parse(text).ok_or_else(|| format!("{text:?}: expected true, false or auto"))
}

/// The flag, else `ENABLE_NATIVE_SIDECARS` read as `EnableNativeSidecars` in
/// pilot/pkg/features/pilot.go (unset: auto; an unknown value: false, with Istio's warning).
fn native_mode(flag: Option<NativeSidecarMode>) -> NativeSidecarMode {
    if let Some(mode) = flag {
        return mode;
    }
    let value = std::env::var_os(native::ENV).map(|v| v.to_string_lossy().into_owned());
    let (mode, warning) = NativeSidecarMode::from_env_value(value.as_deref());
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    mode
}

impl InjectorArgs {
    pub fn settings(&self) -> Result<InjectSettings> {
        if let Some(policy) = &self.image_pull_policy {
            if !["Always", "IfNotPresent", "Never"].contains(&policy.as_str()) {
                bail!("--image-pull-policy {policy:?}: expected Always, IfNotPresent or Never");
            }
        }
        Ok(InjectSettings {
            image: self.image.clone(),
            control_plane: self.sidecar_control_plane.clone(),
            hold_application_until_proxy_starts: !self.no_hold_application,
            image_pull_policy: self.image_pull_policy.clone(),
            native_sidecars: native_mode(self.native_sidecars),
            ..InjectSettings::default()
        })
    }
}

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// The YAML to inject (`-` for stdin): any mix of documents; Pods, Deployments,
    /// StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and v1 Lists are injected, the
    /// rest is copied unchanged.
    #[arg(long, short = 'f', value_name = "FILE")]
    filename: PathBuf,
    /// Where to write the result (default: stdout).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// The labels of the workloads' namespace, `key=value` (repeatable or comma-separated),
    /// e.g. istio-injection=enabled: with them (or a Namespace document in the file) the
    /// webhook configuration's selectors decide, as in a cluster; without, every workload not
    /// opting out is injected, as istioctl kube-inject.
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',')]
    namespace_labels: Option<Vec<String>>,
    /// The namespace of documents that name none.
    #[arg(long, short = 'n', value_name = "NS", default_value = "default")]
    namespace: String,
    #[command(flatten)]
    injector: InjectorArgs,
}

pub fn inject(args: InjectArgs) -> Result<()> {
    let input = if args.filename.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("cannot read {}", args.filename.display()))?
    };
    let namespace_labels = match &args.namespace_labels {
        None => None,
        Some(pairs) => {
            let mut labels = BTreeMap::new();
            for pair in pairs {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("--namespace-labels {pair:?} is not `key=value`");
                };
                labels.insert(k.trim().to_string(), v.trim().to_string());
            }
            Some(labels)
        }
    };
    let options = InjectOptions {
        settings: args.injector.settings()?,
        namespace_labels,
        default_namespace: args.namespace.clone(),
    };
    let injected = inject_file(&input, &options)
        .with_context(|| format!("cannot inject {}", args.filename.display()))?;
    for report in &injected.reports {
        if let Outcome::Skipped(reason) = &report.outcome {
            eprintln!(
                "===> Skipping injection of {} because {reason}",
                report.workload
            );
        }
    }
    match &args.output {
        Some(path) => std::fs::write(path, &injected.text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout()
            .write_all(injected.text.as_bytes())
            .context("cannot write stdout")?,
    }
    Ok(())
}
