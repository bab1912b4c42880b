//! The [`RuleSet`] as `iptables-restore --noflush` input (the iptables-legacy backend, also
//! fed to an nf_tables-backed `iptables-restore` when that is the only one present).
//!
//! istio-iptables loads its rules the same way (`executeIptablesRestoreCommand`). Two
//! differences make `trellis init` idempotent and its cleanup exact without remembering the
//! flags it ran with:
//! - Istio's chains are declared with `:CHAIN - [0:0]`, which under `--noflush` creates a
//!   missing chain and empties an existing one (where istio-iptables' `-N` would fail);
//! - every rule put in a built-in chain (PREROUTING, OUTPUT) carries the comment
//!   `trellis-init`, so the rules of an earlier run are found in `iptables-save` output and
//!   deleted (`-D`) in the same transaction, and `--cleanup` deletes exactly those.

use std::fmt::Write;

use super::rules::{Chain, Match, Position, Rule, RuleSet, Target};

/// The comment on every rule `trellis init` adds to a built-in chain.
pub const COMMENT: &str = "trellis-init";

/// One rule as an `iptables` argument line (`-A CHAIN ...`), the form `iptables-restore`
/// reads. Rules in built-in chains carry [`COMMENT`].
pub fn rule_line(rule: &Rule) -> String {
    let mut line = match rule.position {
        Position::Append => format!("-A {}", rule.chain.iptables_name()),
        Position::Insert => format!("-I {} 1", rule.chain.iptables_name()),
    };
    for m in &rule.matches {
        line.push(' ');
        line.push_str(&match_args(m));
    }
    if rule.chain.is_builtin() {
        let _ = write!(line, " -m comment --comment {COMMENT}");
    }
    line.push_str(" -j ");
    line.push_str(&match rule.target {
        Target::Return => "RETURN".to_string(),
        Target::Jump(chain) => chain.iptables_name().to_string(),
        Target::Redirect(port) => format!("REDIRECT --to-ports {port}"),
    });
    line
}

fn not(negate: bool) -> &'static str {
    if negate {
        "! "
    } else {
        ""
    }
}

fn match_args(m: &Match) -> String {
    match m {
        Match::Protocol(p) => format!("-p {}", p.name()),
        Match::DstPort { port, negate } => format!("{}--dport {port}", not(*negate)),
        Match::InInterface(nic) => format!("-i {nic}"),
        Match::OutInterface(nic) => format!("-o {nic}"),
        Match::Source(cidr) => format!("-s {cidr}"),
        Match::Destination { cidr, negate } => format!("{}-d {cidr}", not(*negate)),
        Match::Uid { id, negate } => format!("-m owner {}--uid-owner {id}", not(*negate)),
        Match::Gid { id, negate } => format!("-m owner {}--gid-owner {id}", not(*negate)),
    }
}

/// What an `iptables-save` of the nat table shows of an earlier `trellis init`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    /// Our rules in built-in chains, as `-A ...` lines.
    pub builtin_rules: Vec<String>,
    /// Istio's chains that exist.
    pub chains: Vec<Chain>,
}

impl Existing {
    pub fn is_empty(&self) -> bool {
        self.builtin_rules.is_empty() && self.chains.is_empty()
    }
}

/// Read `iptables-save` output (all tables or `-t nat`) for what an earlier run left.
pub fn existing(save: &str) -> Existing {
    let mut found = Existing::default();
    let mut in_nat = false;
    for line in save.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table.trim() == "nat";
            continue;
        }
        if !in_nat {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if let Some(chain) = Chain::OWN.iter().find(|c| c.iptables_name() == name) {
                found.chains.push(*chain);
            }
            continue;
        }
        let ours = line
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "--comment" && w[1].trim_matches('"') == COMMENT);
        let builtin = line.starts_with("-A PREROUTING ") || line.starts_with("-A OUTPUT ");
        if ours && builtin {
            found.builtin_rules.push(line.to_string());
        }
    }
    found
}

/// `iptables-restore --noflush` input that installs `rules` for one family (`v6`), replacing
/// what an earlier run left (`before`) in the same transaction.
pub fn restore_input(rules: &RuleSet, v6: bool, before: &Existing) -> String {
    let mut out = String::from("*nat\n");
    for chain in Chain::OWN {
        let _ = writeln!(out, ":{} - [0:0]", chain.iptables_name());
    }
    for line in &before.builtin_rules {
        let _ = writeln!(out, "-D{}", line.trim_start_matches("-A"));
    }
    for rule in rules.for_family(v6) {
        let _ = writeln!(out, "{}", rule_line(rule));
    }
    out.push_str("COMMIT\n");
    out
}

/// `iptables-restore --noflush` input that removes everything an earlier run left; `None`
/// when there is nothing to remove.
pub fn cleanup_input(before: &Existing) -> Option<String> {
    if before.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    for line in &before.builtin_rules {
        let _ = writeln!(out, "-D{}", line.trim_start_matches("-A"));
    }
    // Empty every chain first: they jump to each other.
    for chain in &before.chains {
        let _ = writeln!(out, "-F {}", chain.iptables_name());
    }
    for chain in &before.chains {
        let _ = writeln!(out, "-X {}", chain.iptables_name());
    }
    out.push_str("COMMIT\n");
    Some(out)
}
