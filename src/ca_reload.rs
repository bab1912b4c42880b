//! `trellis control`'s CA upkeep flags, and the watch on `--ca-dir` that turns new CA files
//! into a root rotation.
//!
//! Rotating the root: put the new plug-in CA files in the directory (`trellis ca rotate --dir
//! D` makes a new root and intermediate there, keeping the old files under `D/previous/`; in
//! Kubernetes, update the `cacerts` Secret, whose mounted files kubelet replaces). The control
//! plane reads the directory every `--ca-reload-interval`; when `root-cert.pem` or
//! `ca-cert.pem` changed and the files make a usable CA, it signs with the new CA from then
//! on, trusts both roots for `--root-overlap` (pushed to every sidecar and written to the
//! `istio-ca-root-cert` ConfigMaps at once), and moves its own serving certificates to the new
//! root when the overlap ends. Files caught half-written are read again at the next interval.
//! A control plane restarted within the overlap resumes it from `D/previous/` (written by
//! `trellis ca rotate`; its files' age is the rotation's).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio::sync::mpsc;
use trellis_control::ca::CertificateAuthority;
use trellis_control::plane::net::upkeep::Rotation;

/// The flags.
#[derive(Args, Debug)]
pub struct CaUpkeepArgs {
    /// Lifetime of the control plane's own serving certificates (the push channel's and the
    /// webhook's), re-issued at half of it, e.g. 24h, 10m.
    #[arg(long, value_name = "DURATION", value_parser = crate::plane_security::parse_duration,
          default_value = "24h")]
    pub serving_cert_ttl: Duration,
    /// How long the old root stays trusted after a root rotation (default: the workload
    /// certificate TTL, so every certificate under the old root has been renewed by then).
    #[arg(long, value_name = "DURATION", value_parser = crate::plane_security::parse_duration)]
    pub root_overlap: Option<Duration>,
    /// How often --ca-dir is read for new CA files (a root rotation).
    #[arg(long, value_name = "DURATION", value_parser = crate::plane_security::parse_duration,
          default_value = "10s")]
    pub ca_reload_interval: Duration,
}

/// What identifies a set of CA files: the root and the signing certificate.
fn fingerprint(files: &trellis_control::ca::PluginFiles) -> (String, String) {
    (files.root_cert.clone(), files.ca_cert.clone())
}

/// Watch `dir` on a thread of its own; each new usable CA goes to `rotations`. Ends when the
/// receiver is gone.
pub fn watch_ca_dir(
    dir: PathBuf,
    trust_domain: String,
    every: Duration,
    overlap: Duration,
    rotations: mpsc::Sender<Rotation>,
) -> anyhow::Result<()> {
    let mut seen = crate::ca_cmd::read_plugin_files(&dir).map(|f| fingerprint(&f))?;
    std::thread::Builder::new()
        .name("ca-dir".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if rotations.is_closed() {
                return;
            }
            let Ok(files) = crate::ca_cmd::read_plugin_files(&dir) else {
                continue;
            };
            if fingerprint(&files) == seen {
                continue;
            }
            match CertificateAuthority::plug_in(&trust_domain, &files) {
                Ok(ca) => {
                    seen = fingerprint(&files);
                    tracing::info!(dir = %dir.display(), "new CA files: rotating");
                    if rotations.blocking_send(Rotation { ca, overlap }).is_err() {
                        return;
                    }
                }
                // Half-written (a new root beside the old intermediate): read again later.
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "CA files changed but not usable yet: {e}")
                }
            }
        })?;
    Ok(())
}

/// The CA replaced by `trellis ca rotate` less than `overlap` ago (`dir/previous/`, whose
/// files' modification time is the rotation's), and when it was replaced; `None` when there is
/// none, it is the current root, or its overlap is over.
pub fn resumed_rotation(
    dir: &Path,
    trust_domain: &str,
    overlap: Duration,
) -> Option<(CertificateAuthority, SystemTime)> {
    let previous = dir.join("previous");
    let rotated_at = std::fs::metadata(previous.join("root-cert.pem"))
        .and_then(|m| m.modified())
        .ok()?;
    if rotated_at + overlap <= SystemTime::now() {
        return None;
    }
    let files = crate::ca_cmd::read_plugin_files(&previous).ok()?;
    let current = crate::ca_cmd::read_plugin_files(dir).ok()?;
    if files.root_cert == current.root_cert {
        return None;
    }
    match CertificateAuthority::plug_in(trust_domain, &files) {
        Ok(ca) => Some((ca, rotated_at)),
        Err(e) => {
            tracing::warn!(dir = %previous.display(), "the previous CA is not usable: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_is_resumed_within_its_overlap_only() {
        let dir = std::env::temp_dir().join(format!("trellis-ca-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let old = crate::ca_cmd::write_new_ca(&dir, "cluster.local").unwrap();
        assert!(resumed_rotation(&dir, "cluster.local", Duration::from_secs(60)).is_none());
        crate::ca_cmd::rotate(&dir, "cluster.local").unwrap();
        let (previous, at) =
            resumed_rotation(&dir, "cluster.local", Duration::from_secs(3600)).unwrap();
        assert_eq!(previous.root_pem(), old.root_cert);
        assert!(at <= SystemTime::now());
        assert!(resumed_rotation(&dir, "cluster.local", Duration::from_nanos(1)).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
