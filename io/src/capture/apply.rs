//! Loading the rules: which tool (nft or iptables), the permission check, running it, and
//! turning its failures into errors that say what to do. Thin on purpose: everything that
//! decides *what* is loaded is pure ([`super::rules`], [`super::iptables`], [`super::nft`]).
//!
//! **Which tool.** `auto` prefers `nft` and falls back to `iptables-legacy-restore` (then to
//! whatever `iptables-restore` is installed). Istio 1.24+ detects iptables first and keeps
//! native nftables opt-in, because on a *node* the pod's rules must not fight kube-proxy's
//! and the CNI's. Inside a pod's network namespace the sidecar's rules are the only nat rules,
//! and nft gives what a sidecar wants: IPv4 and IPv6 in one atomic transaction, no xtables
//! lock, and a table of our own, so cleanup is "delete the table" and can touch nothing else.
//! `--backend iptables` forces the Istio-identical path (same chain names and rules, loaded
//! with `iptables-restore --noflush`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use super::iptables;
use super::nft;
use super::rules::RuleSet;
use super::CaptureError;

/// `--backend`: which tool loads the rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// nft when installed, else iptables.
    #[default]
    Auto,
    Nft,
    Iptables,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "nft" | "nftables" => Ok(BackendChoice::Nft),
            "iptables" | "iptables-legacy" => Ok(BackendChoice::Iptables),
            other => Err(format!("unknown backend {other:?} (auto, nft or iptables)")),
        }
    }
}

/// The tool found, with the paths it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tool {
    Nft(PathBuf),
    Iptables(IptablesTools),
}

/// `iptables-restore`/`-save` for IPv4 and, where installed, IPv6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptablesTools {
    pub restore: PathBuf,
    pub save: PathBuf,
    pub restore6: Option<PathBuf>,
    pub save6: Option<PathBuf>,
}

impl Tool {
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Nft(_) => "nft",
            Tool::Iptables(_) => "iptables",
        }
    }
}

/// Find `name` in `PATH` (and the sbin directories, which a non-root `PATH` may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn iptables_tools() -> Option<IptablesTools> {
    // The legacy binaries by name first: the task of `--backend iptables` is iptables-legacy.
    for (suffix4, suffix6) in [("legacy-", "legacy-"), ("", "")] {
        let restore = find_program(&format!("iptables-{suffix4}restore"));
        let save = find_program(&format!("iptables-{suffix4}save"));
        if let (Some(restore), Some(save)) = (restore, save) {
            return Some(IptablesTools {
                restore,
                save,
                restore6: find_program(&format!("ip6tables-{suffix6}restore")),
                save6: find_program(&format!("ip6tables-{suffix6}save")),
            });
        }
    }
    None
}

/// The tool `choice` means on this host.
pub fn choose(choice: BackendChoice) -> Result<Tool, CaptureError> {
    let nft = || find_program("nft").map(Tool::Nft);
    let ipt = || iptables_tools().map(Tool::Iptables);
    match choice {
        BackendChoice::Nft => nft().ok_or(CaptureError::MissingTool {
            wanted: "nft (Debian package `nftables`)",
        }),
        BackendChoice::Iptables => ipt().ok_or(CaptureError::MissingTool {
            wanted: "iptables-legacy-restore and iptables-legacy-save, or iptables-restore and \
                     iptables-save (Debian package `iptables`)",
        }),
        BackendChoice::Auto => nft().or_else(ipt).ok_or(CaptureError::MissingTool {
            wanted: "nft (package `nftables`) or iptables-restore (package `iptables`)",
        }),
    }
}

/// Whether the host (the pod) has an IPv6 address of global scope, Istio's sign that the pod
/// is IPv6 or dual-stack (istio-iptables enables its IPv6 rules from the pod's IPs).
pub fn host_has_ipv6() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|text| has_global_ipv6(&text))
        .unwrap_or(false)
}

/// `/proc/net/if_inet6` lines: address, ifindex, prefix length, scope, flags, name. Scope 00
/// is global.
fn has_global_ipv6(if_inet6: &str) -> bool {
    if_inet6
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .any(|scope| scope == "00")
}

/// CAP_NET_ADMIN, bit 12 of the effective capability set.
const CAP_NET_ADMIN: u32 = 12;

/// Fail early, and clearly, when the process cannot change netfilter rules.
pub fn check_net_admin() -> Result<(), CaptureError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match effective {
        Some(caps) if caps & (1 << CAP_NET_ADMIN) == 0 => Err(CaptureError::Permission {
            detail: "this process lacks CAP_NET_ADMIN".into(),
        }),
        _ => Ok(()),
    }
}

/// Run `program args` with `stdin`, returning its stdout, or an error carrying its stderr.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, CaptureError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    tracing::debug!(%command, input = stdin.unwrap_or(""), "running");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CaptureError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| CaptureError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| CaptureError::Spawn {
            command: command.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let denied = ["Operation not permitted", "Permission denied"]
        .iter()
        .any(|s| stderr.contains(s));
    if denied {
        return Err(CaptureError::Permission {
            detail: format!("{command}: {stderr}"),
        });
    }
    Err(CaptureError::ToolFailed {
        command,
        status: out.status.to_string(),
        stderr,
    })
}

/// What `--dry-run` prints: exactly what would be loaded into an empty namespace.
pub fn render(rules: &RuleSet, tool: &Tool) -> String {
    match tool {
        Tool::Nft(_) => format!("# nft -f -\n{}", nft::script(rules)),
        Tool::Iptables(_) => {
            let none = iptables::Existing::default();
            let mut out = format!(
                "# iptables-restore --noflush\n{}",
                iptables::restore_input(rules, false, &none)
            );
            if rules.ipv6 {
                out.push_str("# ip6tables-restore --noflush\n");
                out.push_str(&iptables::restore_input(rules, true, &none));
            }
            out
        }
    }
}

/// Load `rules`, replacing what an earlier run left. Returns the resulting state (the table
/// listing, or `iptables-save` output) for the log.
pub fn apply(rules: &RuleSet, tool: &Tool) -> Result<String, CaptureError> {
    check_net_admin()?;
    match tool {
        Tool::Nft(nft) => {
            run(nft, &["-f", "-"], Some(&nft::script(rules)))?;
            run(
                nft,
                &["list", "table", nft::family(rules.ipv6), nft::TABLE],
                None,
            )
        }
        Tool::Iptables(t) => {
            let mut state = apply_iptables(&t.restore, &t.save, rules, false)?;
            match (&t.restore6, &t.save6) {
                (Some(restore6), Some(save6)) if rules.ipv6 => {
                    state.push_str(&apply_iptables(restore6, save6, rules, true)?);
                }
                _ if rules.ipv6 => {
                    return Err(CaptureError::MissingTool {
                        wanted: "ip6tables-restore and ip6tables-save (IPv6 rules were asked for)",
                    })
                }
                // IPv6 not wanted: remove what an earlier IPv6 run left.
                (Some(restore6), Some(save6)) => cleanup_iptables(restore6, save6, true)?,
                _ => {}
            }
            Ok(state)
        }
    }
}

fn apply_iptables(
    restore: &Path,
    save: &Path,
    rules: &RuleSet,
    v6: bool,
) -> Result<String, CaptureError> {
    let before = iptables::existing(&run(save, &["-t", "nat"], None)?);
    run(
        restore,
        &["--noflush"],
        Some(&iptables::restore_input(rules, v6, &before)),
    )?;
    run(save, &["-t", "nat"], None)
}

/// Remove every rule and chain `trellis init` added, with either tool; idempotent.
pub fn cleanup(tool: &Tool) -> Result<(), CaptureError> {
    check_net_admin()?;
    match tool {
        Tool::Nft(nft) => run(nft, &["-f", "-"], Some(&nft::cleanup_script())).map(|_| ()),
        Tool::Iptables(t) => {
            cleanup_iptables(&t.restore, &t.save, false)?;
            if let (Some(restore6), Some(save6)) = (&t.restore6, &t.save6) {
                cleanup_iptables(restore6, save6, true)?;
            }
            Ok(())
        }
    }
}

fn cleanup_iptables(restore: &Path, save: &Path, v6: bool) -> Result<(), CaptureError> {
    let saved = match run(save, &["-t", "nat"], None) {
        Ok(saved) => saved,
        // A kernel without IPv6 netfilter has nothing of ours to remove.
        Err(e) if v6 => {
            tracing::debug!(error = %e, "no IPv6 nat table");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if let Some(input) = iptables::cleanup_input(&iptables::existing(&saved)) {
        run(restore, &["--noflush"], Some(&input))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ipv6_is_told_from_loopback_and_link_local() {
        let lo_only = "00000000000000000000000000000001 01 80 10 80       lo\n\
                       fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n";
        assert!(!has_global_ipv6(lo_only));
        let global = "fd000000000000000000000000000002 04 40 00 82     eth0\n";
        assert!(has_global_ipv6(global));
    }

    #[test]
    fn backend_names() {
        assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("nftables".parse(), Ok(BackendChoice::Nft));
        assert_eq!("iptables-legacy".parse(), Ok(BackendChoice::Iptables));
        assert!("ebtables".parse::<BackendChoice>().is_err());
    }

    #[test]
    fn a_failing_tool_reports_its_stderr() {
        let sh = find_program("sh").expect("sh");
        let err = run(&sh, &["-c", "echo 'bad rule at line 3' >&2; exit 2"], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad rule at line 3"), "{err}");
        let err = run(
            &sh,
            &["-c", "echo 'Operation not permitted' >&2; exit 1"],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, CaptureError::Permission { .. }), "{err}");
        let err = run(Path::new("/nonexistent/nft"), &[], None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/nft"), "{err}");
    }
}
