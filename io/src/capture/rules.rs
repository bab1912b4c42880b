//! The capture rules as data: Istio's nat-table chains and rules, built in the order
//! istio-iptables builds them (tools/istio-iptables/pkg/capture/run.go,
//! `IptablesConfigurator.Run` in REDIRECT mode), independent of the tool that loads them.
//! [`super::iptables`] and [`super::nft`] render the same [`RuleSet`].
//!
//! What the chains do (run.go's comments, condensed):
//! - `PREROUTING → ISTIO_INBOUND`: inbound TCP, minus the excluded ports (and the tunnel port
//!   15008), goes to `ISTIO_IN_REDIRECT` → 15006.
//! - `OUTPUT → ISTIO_OUTPUT`: excluded outbound ports return; traffic from 127.0.0.6 (Envoy's
//!   inbound passthrough source) returns; the proxy's own connections over `lo` to a
//!   non-loopback address (the pod calling itself through a service VIP: app → outbound →
//!   inbound → app) go to `ISTIO_IN_REDIRECT`; the application's other `lo` traffic returns;
//!   everything else the proxy sends returns (no loop); loopback destinations return; the
//!   excluded CIDRs return; included ports and CIDRs (or everything, for `*`) go to
//!   `ISTIO_REDIRECT` → 15001.
//!
//! DNS capture (`--redirect-dns`), TPROXY, `--drop-invalid` and the owner-group filters are not
//! built: the Trellis sidecar has no DNS proxy and no transparent listener.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::spec::{CaptureSpec, Cidr, InboundPorts, OutboundRanges};

/// The chains the rules live in: the nat table's two hooks and Istio's four chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chain {
    Prerouting,
    Output,
    /// `ISTIO_INBOUND`: decides which inbound connections go to the proxy.
    Inbound,
    /// `ISTIO_REDIRECT`: to the outbound capture port (15001).
    Redirect,
    /// `ISTIO_IN_REDIRECT`: to the inbound capture port (15006).
    InRedirect,
    /// `ISTIO_OUTPUT`: decides which outbound connections go to the proxy.
    IstioOutput,
}

impl Chain {
    /// Istio's own chains, in the order istio-iptables declares them.
    pub const OWN: [Chain; 4] = [
        Chain::Inbound,
        Chain::Redirect,
        Chain::InRedirect,
        Chain::IstioOutput,
    ];

    /// The iptables name.
    pub fn iptables_name(self) -> &'static str {
        match self {
            Chain::Prerouting => "PREROUTING",
            Chain::Output => "OUTPUT",
            Chain::Inbound => "ISTIO_INBOUND",
            Chain::Redirect => "ISTIO_REDIRECT",
            Chain::InRedirect => "ISTIO_IN_REDIRECT",
            Chain::IstioOutput => "ISTIO_OUTPUT",
        }
    }

    /// The nftables name (Istio's native nftables mode spells them in lower case with dashes).
    pub fn nft_name(self) -> &'static str {
        match self {
            Chain::Prerouting => "prerouting",
            Chain::Output => "output",
            Chain::Inbound => "istio-inbound",
            Chain::Redirect => "istio-redirect",
            Chain::InRedirect => "istio-in-redirect",
            Chain::IstioOutput => "istio-output",
        }
    }

    /// PREROUTING and OUTPUT belong to the system; the rest are ours.
    pub fn is_builtin(self) -> bool {
        matches!(self, Chain::Prerouting | Chain::Output)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One condition of a rule. `negate` flips it (`!` in iptables, `!=` in nft).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    Protocol(Protocol),
    /// Destination port; the rule's [`Match::Protocol`] says of which protocol.
    DstPort {
        port: u16,
        negate: bool,
    },
    InInterface(String),
    OutInterface(String),
    Source(Cidr),
    Destination {
        cidr: Cidr,
        negate: bool,
    },
    /// The sending socket's owner (`-m owner --uid-owner`, nft `meta skuid`).
    Uid {
        id: u32,
        negate: bool,
    },
    Gid {
        id: u32,
        negate: bool,
    },
}

/// Where a matching packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Return,
    Jump(Chain),
    /// NAT to this port on the local host (`REDIRECT --to-ports`).
    Redirect(u16),
}

/// Which address family a rule is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Both (no address in the rule).
    Any,
    V4,
    V6,
}

impl Family {
    /// Whether a rule of this family belongs in a table of family `v6`.
    pub fn applies_to(self, v6: bool) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => !v6,
            Family::V6 => v6,
        }
    }
}

/// Appended at the end of its chain, or inserted at its head (istio-iptables'
/// `InsertRule(..., 1, ...)`, used for the virtual-interface rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    Append,
    Insert,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub chain: Chain,
    pub position: Position,
    pub family: Family,
    pub matches: Vec<Match>,
    pub target: Target,
}

/// Every rule, in the order they are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Whether IPv6 rules are wanted at all.
    pub ipv6: bool,
}

impl RuleSet {
    /// The rules of one family, in order.
    pub fn for_family(&self, v6: bool) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.family.applies_to(v6))
    }
}

/// The loopback prefix the proxy's self-calls are told apart with (Istio's
/// `ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR`, default 127.0.0.1/32; ::1/128 for IPv6).
fn loopback(v6: bool) -> Cidr {
    Cidr::host(if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    })
}

/// 127.0.0.6 / ::6: the source Envoy's inbound passthrough cluster binds to.
fn inbound_passthrough_source(v6: bool) -> Cidr {
    Cidr::host(if v6 {
        IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6))
    } else {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6))
    })
}

struct Builder {
    rules: Vec<Rule>,
    ipv6: bool,
}

impl Builder {
    fn push(
        &mut self,
        chain: Chain,
        position: Position,
        family: Family,
        matches: Vec<Match>,
        target: Target,
    ) {
        if family == Family::V6 && !self.ipv6 {
            return;
        }
        self.rules.push(Rule {
            chain,
            position,
            family,
            matches,
            target,
        });
    }

    fn append(&mut self, chain: Chain, matches: Vec<Match>, target: Target) {
        self.push(chain, Position::Append, Family::Any, matches, target);
    }

    /// istio-iptables' `AppendVersionedRule`: the same rule for each family, with an
    /// address that differs by family.
    fn append_versioned(
        &mut self,
        chain: Chain,
        matches: impl Fn(bool) -> Vec<Match>,
        target: Target,
    ) {
        self.push(chain, Position::Append, Family::V4, matches(false), target);
        self.push(chain, Position::Append, Family::V6, matches(true), target);
    }

    /// At the head of PREROUTING: everything arriving on `nics` goes to `target`.
    fn insert_from_interfaces(&mut self, nics: &[String], target: Target) {
        for nic in nics {
            self.push(
                Chain::Prerouting,
                Position::Insert,
                Family::Any,
                vec![Match::InInterface(nic.clone())],
                target,
            );
        }
    }

    fn for_cidr(&mut self, cidr: Cidr, position: Position, chain: Chain, m: Vec<Match>, t: Target) {
        let family = if cidr.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        };
        self.push(chain, position, family, m, t);
    }
}

fn tcp() -> Match {
    Match::Protocol(Protocol::Tcp)
}

fn dport(port: u16) -> Match {
    Match::DstPort {
        port,
        negate: false,
    }
}

fn lo() -> Match {
    Match::OutInterface("lo".into())
}

/// Build the rules for `spec`, in istio-iptables' order.
pub fn build(spec: &CaptureSpec) -> RuleSet {
    let mut b = Builder {
        rules: Vec::new(),
        ipv6: spec.ipv6,
    };
    use Chain::*;

    // Interfaces that are never captured, either way (shortCircuitExcludeInterfaces).
    for nic in &spec.exclude_interfaces {
        b.append(
            Prerouting,
            vec![Match::InInterface(nic.clone())],
            Target::Return,
        );
        b.append(
            Output,
            vec![Match::OutInterface(nic.clone())],
            Target::Return,
        );
    }
    // Virtual interfaces' inbound traffic is treated as outbound, decided below; nothing else
    // of theirs is captured (shortCircuitKubeInternalInterface).
    b.insert_from_interfaces(&spec.reroute_interfaces, Target::Return);
    b.append(
        Inbound,
        vec![tcp(), dport(spec.inbound_tunnel_port)],
        Target::Return,
    );
    b.append(Redirect, vec![tcp()], Target::Redirect(spec.proxy_port));
    b.append(
        InRedirect,
        vec![tcp()],
        Target::Redirect(spec.inbound_capture_port),
    );

    // Inbound (handleInboundPortsInclude, REDIRECT mode).
    let inbound_enabled = !matches!(&spec.inbound_ports, InboundPorts::Only(p) if p.is_empty());
    if inbound_enabled {
        b.append(Prerouting, vec![tcp()], Target::Jump(Inbound));
        match &spec.inbound_ports {
            InboundPorts::All => {
                for &port in &spec.inbound_exclude_ports {
                    b.append(Inbound, vec![tcp(), dport(port)], Target::Return);
                }
                b.append(Inbound, vec![tcp()], Target::Jump(InRedirect));
            }
            InboundPorts::Only(ports) => {
                for &port in ports {
                    b.append(Inbound, vec![tcp(), dport(port)], Target::Jump(InRedirect));
                }
            }
        }
    }

    // Outbound.
    b.append(Output, vec![], Target::Jump(IstioOutput));
    for &port in &spec.outbound_exclude_ports {
        b.append(IstioOutput, vec![tcp(), dport(port)], Target::Return);
        b.append(
            IstioOutput,
            vec![Match::Protocol(Protocol::Udp), dport(port)],
            Target::Return,
        );
    }
    b.append_versioned(
        IstioOutput,
        |v6| vec![lo(), Match::Source(inbound_passthrough_source(v6))],
        Target::Return,
    );
    let owners = spec
        .proxy_uids
        .iter()
        .map(|&id| Match::Uid { id, negate: false })
        .chain(
            spec.proxy_gids
                .iter()
                .map(|&id| Match::Gid { id, negate: false }),
        );
    for owner in owners {
        let negated = match &owner {
            Match::Uid { id, .. } => Match::Uid {
                id: *id,
                negate: true,
            },
            Match::Gid { id, .. } => Match::Gid {
                id: *id,
                negate: true,
            },
            other => other.clone(),
        };
        // The pod calling itself through a service VIP: app → outbound → inbound → app.
        b.append_versioned(
            IstioOutput,
            |v6| {
                vec![
                    lo(),
                    Match::Destination {
                        cidr: loopback(v6),
                        negate: true,
                    },
                    tcp(),
                    Match::DstPort {
                        port: spec.inbound_tunnel_port,
                        negate: true,
                    },
                    owner.clone(),
                ]
            },
            Target::Jump(InRedirect),
        );
        // The application's own loopback traffic is left alone, unless loopback was included.
        if !spec.includes_loopback() {
            b.append(IstioOutput, vec![lo(), negated], Target::Return);
        }
        // The proxy's own traffic is never captured: no loop.
        b.append(IstioOutput, vec![owner.clone()], Target::Return);
    }
    // Envoy-aware applications and container-to-container traffic use localhost.
    b.append_versioned(
        IstioOutput,
        |v6| {
            vec![Match::Destination {
                cidr: loopback(v6),
                negate: false,
            }]
        },
        Target::Return,
    );
    for &cidr in &spec.outbound_exclude_ranges {
        b.for_cidr(
            cidr,
            Position::Append,
            IstioOutput,
            vec![Match::Destination {
                cidr,
                negate: false,
            }],
            Target::Return,
        );
    }
    for &port in &spec.outbound_include_ports {
        b.append(
            IstioOutput,
            vec![tcp(), dport(port)],
            Target::Jump(Redirect),
        );
    }
    // handleOutboundIncludeRules. `*` is the same for both families: one rule each.
    match &spec.outbound_include_ranges {
        OutboundRanges::All => {
            b.append(IstioOutput, vec![], Target::Jump(Redirect));
            b.insert_from_interfaces(&spec.reroute_interfaces, Target::Jump(Redirect));
        }
        OutboundRanges::Only(cidrs) => {
            // IPv4 ranges first, then IPv6, as istio-iptables.
            let ordered = cidrs
                .iter()
                .filter(|c| !c.is_ipv6())
                .chain(cidrs.iter().filter(|c| c.is_ipv6()));
            for &cidr in ordered {
                let to = Match::Destination {
                    cidr,
                    negate: false,
                };
                for nic in &spec.reroute_interfaces {
                    b.for_cidr(
                        cidr,
                        Position::Insert,
                        Prerouting,
                        vec![Match::InInterface(nic.clone()), to.clone()],
                        Target::Jump(Redirect),
                    );
                }
                b.for_cidr(
                    cidr,
                    Position::Append,
                    IstioOutput,
                    vec![to],
                    Target::Jump(Redirect),
                );
            }
        }
    }
    RuleSet {
        rules: b.rules,
        ipv6: spec.ipv6,
    }
}
