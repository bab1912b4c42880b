//! `trellis control`'s push channel security: the mesh CA (`--ca-dir`, or a new one for the
//! run), the channel's TLS (a serving certificate from that CA for the control plane's
//! Service names and the listen host, renewed at half life by `plane::net::upkeep`), and the CA answering sidecars' CSRs on the channel
//! (workload TTL, who is believed: client certificates always, tokens through a TokenReview
//! with `--kube`, unproven claims only with `--trust-node-claims`).
//!
//! Plaintext stays possible with `--insecure-plaintext` (then no certificate is issued).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use clap::Args;
use trellis_control::ca::serving::service_dns_names;
use trellis_control::ca::CertificateAuthority;
use trellis_control::plane::net::reload::{reloadable_server_config, ReloadableRoots};
use trellis_control::plane::net::upkeep::Serving;
use trellis_control::plane::net::{Issuer, ServerConfig, TokenReviewer};

/// The push channel's security flags.
#[derive(Args, Debug)]
pub struct ChannelArgs {
    /// Serve sidecars over plain TCP (no TLS, no certificates issued). Development only;
    /// sidecars must say --insecure-plaintext too.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Sign the identity a sidecar claims (its namespace and service account) when it has
    /// neither a client certificate nor a token that can be checked. Development only (the
    /// local demo mesh, where every process is the user's); logged as a warning at start.
    #[arg(long, conflicts_with = "insecure_plaintext")]
    trust_node_claims: bool,
    /// Lifetime of the workload certificates issued to sidecars (Istio's default: 24h), e.g.
    /// 30s, 10m, 24h; they renew at half of it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          default_value = "24h")]
    pub workload_cert_ttl: Duration,
    /// The names sidecars dial the control plane by (repeatable; default: the trellis-control
    /// Service in --plane-namespace, its other forms, and the listen host).
    #[arg(long = "plane-dns-name", value_name = "NAME")]
    dns_names: Vec<String>,
    /// The namespace of the trellis-control Service (for the default names).
    #[arg(long, value_name = "NS", default_value = "trellis-system")]
    plane_namespace: String,
    /// The mesh's trust domain (SPIFFE ids spiffe://<domain>/ns/<ns>/sa/<sa>).
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Write the mesh's root certificate here (what sidecars give --control-plane-ca); useful
    /// when the CA is made for this run.
    #[arg(long, value_name = "FILE")]
    root_cert_out: Option<PathBuf>,
}

/// `30s`, `10m`, `24h`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 10m, 24h)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err("a duration must be positive".into());
    }
    Ok(d)
}

/// The mesh CA: the plug-in files of `dir`, or a new root and intermediate for this run.
impl ChannelArgs {
    /// Whether the channel is plain TCP (`--insecure-plaintext`).
    pub fn insecure_plaintext(&self) -> bool {
        self.insecure_plaintext
    }
}

pub fn mesh_ca(dir: Option<&Path>, args: &ChannelArgs) -> Result<CertificateAuthority> {
    let files = match dir {
        Some(dir) => crate::ca_cmd::read_plugin_files(dir)?,
        None => {
            tracing::warn!(
                "no --ca-dir: the mesh CA is new for this run (its root: --root-cert-out)"
            );
            trellis_control::ca::bootstrap::new_plugin_ca(&args.trust_domain, SystemTime::now())
                .context("cannot make a CA")?
                .0
        }
    };
    let ca = CertificateAuthority::plug_in(&args.trust_domain, &files)
        .context("the CA files are not a usable CA")?;
    if let Some(path) = &args.root_cert_out {
        std::fs::write(path, ca.root_pem())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ca)
}

/// The Kubernetes TokenReview client (`--kube`), made on the runtime that will serve (kube's
/// client starts its tasks there).
pub async fn token_reviewer(
    source: &crate::source_args::KubeArgs,
) -> Result<Arc<dyn TokenReviewer>> {
    use trellis_control::plane::kube_source::token_review::KubeTokenReviewer;
    let reviewer = KubeTokenReviewer::connect(&source.config())
        .await
        .context("cannot make the TokenReview client")?;
    Ok(Arc::new(reviewer))
}

/// The CA answering sidecars' certificate requests (and issuing the control plane's own
/// serving certificates), as the flags say.
pub fn issuer(
    args: &ChannelArgs,
    ca: CertificateAuthority,
    reviewer: Option<Arc<dyn TokenReviewer>>,
) -> Arc<Issuer> {
    Arc::new(Issuer::new(
        ca,
        args.workload_cert_ttl,
        args.trust_node_claims,
        reviewer,
    ))
}

/// TLS and the CA on `config`, as the flags say: the push channel's serving certificate (kept
/// current by `upkeep`) and the roots client certificates are checked with, or `None` with
/// `--insecure-plaintext`.
pub fn secure(
    config: &mut ServerConfig,
    args: &ChannelArgs,
    listen: SocketAddr,
    issuer: &Arc<Issuer>,
    serving_ttl: Duration,
) -> Result<Option<(Serving, Arc<ReloadableRoots>)>> {
    if args.insecure_plaintext {
        tracing::warn!(
            "--insecure-plaintext: the push channel is plain TCP, and no certificate is issued"
        );
        return Ok(None);
    }
    let mut names = if args.dns_names.is_empty() {
        service_dns_names("trellis-control", &args.plane_namespace)
    } else {
        args.dns_names.clone()
    };
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    let serving = Serving::issue(
        "push channel",
        issuer,
        names.clone(),
        serving_ttl,
        SystemTime::now(),
    )
    .context("cannot issue the push channel's certificate")?;
    let roots = ReloadableRoots::new(&issuer.bundle().borrow())
        .context("the push channel's client certificate roots")?;
    config.tls = Some(
        reloadable_server_config(serving.cert(), roots.clone())
            .context("the push channel's TLS settings")?,
    );
    if args.trust_node_claims {
        tracing::warn!(
            "--trust-node-claims: sidecars without a client certificate or a checkable token \
             get the identity they claim (development only)"
        );
    }
    tracing::info!(
        names = names.join(","),
        ttl_s = args.workload_cert_ttl.as_secs(),
        "push channel over mTLS; workload certificates issued on it"
    );
    config.issuer = Some(issuer.clone());
    Ok(Some((serving, roots)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_units_people_write() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
