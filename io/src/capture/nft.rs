//! The [`RuleSet`] as an `nft -f -` script: one table of our own, `trellis-proxy-nat`, holding
//! Istio's chains under the names Istio's native nftables mode gives them
//! (tools/istio-nftables/pkg/capture/run.go: `istio-inbound`, `istio-output`, ...).
//!
//! The table is `inet` (IPv4 and IPv6 in one) when IPv6 rules are wanted, as Istio's, and `ip`
//! otherwise: an `inet` table's protocol-only rules (`meta l4proto tcp jump istio-redirect`)
//! would capture IPv6 traffic toward a proxy that only listens on IPv4.
//!
//! A script is one kernel transaction: it first deletes whatever table of that name exists
//! (`add` then `delete` is the idiom for "delete if present"), then creates the new one, so
//! running `trellis init` twice leaves one copy, and a failing script changes nothing.
//! Cleanup deletes the table, and with it every rule `trellis init` added, nothing else.

use std::fmt::Write;

use super::rules::{Chain, Family, Match, Position, Protocol, Rule, RuleSet, Target};

/// The table `trellis init` owns.
pub const TABLE: &str = "trellis-proxy-nat";

/// The table family for a rule set.
pub fn family(ipv6: bool) -> &'static str {
    if ipv6 {
        "inet"
    } else {
        "ip"
    }
}

/// Deletes our table in either family, if present.
pub fn cleanup_script() -> String {
    let mut out = String::new();
    for family in ["ip", "inet"] {
        let _ = writeln!(out, "add table {family} {TABLE}");
        let _ = writeln!(out, "delete table {family} {TABLE}");
    }
    out
}

/// The whole script: remove an earlier table, then build the new one.
pub fn script(rules: &RuleSet) -> String {
    let fam = family(rules.ipv6);
    let mut out = cleanup_script();
    let _ = writeln!(out, "add table {fam} {TABLE}");
    for (chain, hook) in [(Chain::Prerouting, "prerouting"), (Chain::Output, "output")] {
        // -100: the dstnat priority, where iptables' nat table sits.
        let _ = writeln!(
            out,
            "add chain {fam} {TABLE} {} {{ type nat hook {hook} priority -100 ; policy accept ; }}",
            chain.nft_name()
        );
    }
    for chain in Chain::OWN {
        let _ = writeln!(out, "add chain {fam} {TABLE} {}", chain.nft_name());
    }
    for rule in &rules.rules {
        let _ = writeln!(out, "{}", rule_line(fam, rule));
    }
    out
}

fn rule_line(fam: &str, rule: &Rule) -> String {
    let verb = match rule.position {
        Position::Append => "add",
        Position::Insert => "insert",
    };
    let mut line = format!("{verb} rule {fam} {TABLE} {}", rule.chain.nft_name());
    let protocol = rule.matches.iter().find_map(|m| match m {
        Match::Protocol(p) => Some(*p),
        _ => None,
    });
    debug_assert!(
        rule.family == Family::Any
            || rule
                .matches
                .iter()
                .any(|m| matches!(m, Match::Source(_) | Match::Destination { .. })),
        "a family-specific rule says which family by an address"
    );
    for m in &rule.matches {
        line.push(' ');
        line.push_str(&expression(m, protocol.unwrap_or(Protocol::Tcp)));
    }
    line.push_str(" counter ");
    line.push_str(&match rule.target {
        Target::Return => "return".to_string(),
        Target::Jump(chain) => format!("jump {}", chain.nft_name()),
        Target::Redirect(port) => format!("redirect to :{port}"),
    });
    line
}

fn op(negate: bool) -> &'static str {
    if negate {
        "!= "
    } else {
        ""
    }
}

fn expression(m: &Match, protocol: Protocol) -> String {
    let ip = |cidr: &super::spec::Cidr| if cidr.is_ipv6() { "ip6" } else { "ip" };
    match m {
        Match::Protocol(p) => format!("meta l4proto {}", p.name()),
        Match::DstPort { port, negate } => {
            format!("{} dport {}{port}", protocol.name(), op(*negate))
        }
        Match::InInterface(nic) => format!("iifname \"{nic}\""),
        Match::OutInterface(nic) => format!("oifname \"{nic}\""),
        Match::Source(cidr) => format!("{} saddr {cidr}", ip(cidr)),
        Match::Destination { cidr, negate } => {
            format!("{} daddr {}{cidr}", ip(cidr), op(*negate))
        }
        Match::Uid { id, negate } => format!("meta skuid {}{id}", op(*negate)),
        Match::Gid { id, negate } => format!("meta skgid {}{id}", op(*negate)),
    }
}
