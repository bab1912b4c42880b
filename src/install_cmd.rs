//! `trellis install` / `trellis uninstall`: the cluster manifests, printed or applied with
//! kubectl, like `istioctl install` / `istioctl uninstall`. The objects are
//! `trellis_control::install`'s; this picks the CA, renders YAML and runs kubectl.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::Args;
use trellis_control::install::{
    install_objects, kustomize_base, render, uninstall_objects, InstallSettings,
};

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Only the CustomResourceDefinitions of the Istio kinds Trellis reads.
    #[arg(long)]
    crds: bool,
    /// The mesh CA (plug-in CA files, as `trellis ca init` writes them): installed as the
    /// `cacerts` secret, its root as the webhook's caBundle. Made there when the directory has
    /// no CA yet, so a second install keeps the same CA. Without: a new CA for this install.
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Write the Kustomize base (deploy/base: no CA; deploy/kustomization.yaml adds it) to DIR
    /// instead of printing the install.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["apply", "crds"])]
    kustomize_base: Option<PathBuf>,
    /// Apply with `kubectl apply -f -` instead of printing.
    #[arg(long)]
    apply: bool,
    /// The image of the control plane and of the sidecars it injects.
    #[arg(long, value_name = "IMAGE", default_value = trellis_control::inject::settings::DEFAULT_IMAGE)]
    image: String,
}

#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Also delete the CRDs, and with them every Istio resource in the cluster.
    #[arg(long)]
    purge: bool,
    /// Delete with `kubectl delete --ignore-not-found -f -` instead of printing.
    #[arg(long)]
    apply: bool,
}

fn settings(image: &str) -> InstallSettings {
    InstallSettings {
        image: image.to_string(),
        ..InstallSettings::default()
    }
}

/// Pipe `yaml` into `kubectl ARGS -f -`; a missing kubectl is an error saying so.
fn kubectl(args: &[&str], yaml: &str) -> Result<()> {
    let mut child = Command::new("kubectl")
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "kubectl is not on PATH: install it, or leave out --apply and pipe the printed manifests to your own tool"
            ),
            _ => anyhow::Error::new(e).context("cannot run kubectl"),
        })?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(yaml.as_bytes())
        .context("cannot write to kubectl")?;
    let status = child.wait().context("kubectl")?;
    if !status.success() {
        bail!("kubectl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn install(args: InstallArgs) -> Result<()> {
    let settings = settings(&args.image);
    if let Some(dir) = &args.kustomize_base {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in kustomize_base(&settings)? {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        eprintln!("Kustomize base written to {}", dir.display());
        return Ok(());
    }
    let ca = match &args.ca_dir {
        Some(dir) if dir.join("ca-key.pem").exists() => crate::ca_cmd::read_plugin_files(dir)?,
        Some(dir) => {
            eprintln!("no CA in {}: making one there", dir.display());
            crate::ca_cmd::write_new_ca(dir, "cluster.local")?
        }
        None => {
            eprintln!(
                "no --ca-dir: a new mesh CA for this install (its key is in the cacerts secret)"
            );
            trellis_control::ca::bootstrap::new_plugin_ca(
                "cluster.local",
                std::time::SystemTime::now(),
            )?
            .0
        }
    };
    let yaml = render(&install_objects(&settings, &ca, args.crds))?;
    if args.apply {
        return kubectl(&["apply"], &yaml);
    }
    print!("{yaml}");
    Ok(())
}

pub fn uninstall(args: UninstallArgs) -> Result<()> {
    let yaml = render(&uninstall_objects(&InstallSettings::default(), args.purge))?;
    if args.apply {
        return kubectl(&["delete", "--ignore-not-found"], &yaml);
    }
    print!("{yaml}");
    Ok(())
}
