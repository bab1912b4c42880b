//! `trellis ca`: make a mesh CA and workload credentials as files.
//!
//! `trellis ca rotate --dir D` replaces them with a new root and intermediate (a root
//! rotation a running `trellis control --ca-dir D` applies; src/ca_reload.rs).
//! `trellis ca init --dir D` writes Istio's plug-in CA layout (`ca-cert.pem`, `ca-key.pem`,
//! `cert-chain.pem`, `root-cert.pem`, plus `root-key.pem`): a new root with an intermediate
//! under it. `trellis ca issue --dir D --namespace N --service-account SA --out O` writes a
//! workload's `cert-chain.pem`, `key.pem` and `root-cert.pem` (what a proxy's `identity:`
//! section names, and what Istio mounts for file-based certificates).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use trellis_control::ca::bootstrap::{issue_workload, new_plugin_ca};
use trellis_control::ca::{PluginFiles, WorkloadIdentity};

#[derive(Args, Debug)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create a root and an intermediate CA in DIR (Istio's plug-in CA files).
    ///
    /// Example: trellis ca init --dir /tmp/mesh-ca
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The mesh's trust domain.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Replace the CA in DIR with a new root and intermediate: a root rotation. The old files
    /// move to DIR/previous/. A running `trellis control --ca-dir DIR` picks the new files up
    /// and trusts both roots for its --root-overlap.
    ///
    /// Example: trellis ca rotate --dir /tmp/mesh-ca
    Rotate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Issue a workload certificate for spiffe://<trust-domain>/ns/<namespace>/sa/<sa>.
    ///
    /// Example: trellis ca issue --dir /tmp/mesh-ca --namespace default --service-account reviews --out /tmp/reviews-certs
    Issue {
        /// A CA directory made by `trellis ca init` (or Istio's plug-in CA files).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, default_value = "default")]
        service_account: String,
        /// Where to write cert-chain.pem, key.pem and root-cert.pem.
        #[arg(long)]
        out: PathBuf,
        /// Certificate lifetime in seconds (Istio's default: 24 h).
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
    },
}

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> Result<()> {
    let path = dir.join(name);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The plug-in CA files of `dir` (`trellis ca init`'s, or Istio's `cacerts` secret mounted).
pub fn read_plugin_files(dir: &Path) -> Result<PluginFiles> {
    Ok(PluginFiles {
        ca_cert: read(dir, "ca-cert.pem")?,
        ca_key: read(dir, "ca-key.pem")?,
        cert_chain: read(dir, "cert-chain.pem")?,
        root_cert: read(dir, "root-cert.pem")?,
    })
}

/// The files of a CA directory, in the order they are written (the root last, so a reader
/// that sees the new root sees the rest new too).
const CA_FILES: [&str; 5] = [
    "ca-cert.pem",
    "ca-key.pem",
    "cert-chain.pem",
    "root-key.pem",
    "root-cert.pem",
];

/// A new root and intermediate written to `dir` as plug-in CA files (keys private), each file
/// replaced whole (written aside, then renamed over the old one).
pub fn write_new_ca(dir: &Path, trust_domain: &str) -> Result<PluginFiles> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (files, root_key) = new_plugin_ca(trust_domain, SystemTime::now())?;
    for name in CA_FILES {
        let (text, secret) = match name {
            "ca-cert.pem" => (&files.ca_cert, false),
            "ca-key.pem" => (&files.ca_key, true),
            "cert-chain.pem" => (&files.cert_chain, false),
            "root-key.pem" => (&root_key, true),
            _ => (&files.root_cert, false),
        };
        let aside = format!(".{name}.new");
        write(dir, &aside, text, secret)?;
        fs::rename(dir.join(&aside), dir.join(name))
            .with_context(|| format!("replacing {}", dir.join(name).display()))?;
    }
    Ok(files)
}

/// `trellis ca rotate`: the old files kept under `dir/previous/`, then a new CA.
pub fn rotate(dir: &Path, trust_domain: &str) -> Result<()> {
    read_plugin_files(dir).context("no CA to rotate (trellis ca init makes one)")?;
    let previous = dir.join("previous");
    fs::create_dir_all(&previous).with_context(|| format!("creating {}", previous.display()))?;
    for name in CA_FILES {
        if dir.join(name).exists() {
            fs::copy(dir.join(name), previous.join(name))
                .with_context(|| format!("keeping {}", dir.join(name).display()))?;
        }
    }
    write_new_ca(dir, trust_domain)?;
    Ok(())
}

pub fn ca(args: CaArgs) -> Result<()> {
    match args.command {
        CaCommand::Init { dir, trust_domain } => {
            write_new_ca(&dir, &trust_domain)?;
            println!(
                "CA for trust domain {trust_domain} written to {}",
                dir.display()
            );
        }
        CaCommand::Rotate { dir, trust_domain } => {
            rotate(&dir, &trust_domain)?;
            println!(
                "new root and intermediate for {trust_domain} in {} (the old ones in previous/)",
                dir.display()
            );
        }
        CaCommand::Issue {
            dir,
            trust_domain,
            namespace,
            service_account,
            out,
            ttl_secs,
        } => {
            let files = read_plugin_files(&dir)?;
            let identity = WorkloadIdentity::new(&trust_domain, &namespace, &service_account)?;
            let issued = issue_workload(
                &trust_domain,
                &files,
                &identity,
                SystemTime::now(),
                Some(Duration::from_secs(ttl_secs)),
            )?;
            fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            write(&out, "cert-chain.pem", &issued.cert_chain, false)?;
            write(&out, "key.pem", &issued.key, true)?;
            write(&out, "root-cert.pem", &issued.root_cert, false)?;
            println!("{} written to {}", issued.identity, out.display());
        }
    }
    Ok(())
}
