//! Which `tcp` rule of a TCP service a connection takes when the service has more than one:
//! rules matching `destinationSubnets` and rules matching `sourceLabels`, next to the
//! service's own rule; their generation (streams of their own) and the reference choice.
//!
//! Pilot evaluates `sourceLabels` per proxy when it builds the listeners (matchTCP in
//! pilot/pkg/networking/core/tls.go: the first rule whose labels the client has) and leaves
//! `destinationSubnets` to Envoy's filter-chain match (prefix ranges; the longest matching
//! prefix wins, `FilterChainManagerImpl::findFilterChainForDestinationIP`). The simulated
//! sidecar serves clients of several label sets at once, as the engine's chains keep their
//! `source_labels` for that.

use serde::{Deserialize, Serialize};

/// A `tcp` rule matching `sourceLabels` ([`LABEL_SETS`]`[labels]`) with its destinations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelRule {
    pub labels: usize,
    pub dests: Vec<(usize, u32)>,
}

/// Label sets: a rule's `sourceLabels` and a client's own labels draw from them; the second
/// holds the first, so a client of the second matches rules of both.
pub const LABEL_SETS: [&[(&str, &str)]; 3] = [
    &[("app", "web")],
    &[("app", "web"), ("version", "v2")],
    &[("app", "batch")],
];

/// Whether a client with label set `client` (`None`: no labels) has every label of set
/// `rule`.
pub fn labels_hold(rule: usize, client: Option<usize>) -> bool {
    let Some(client) = client else {
        return false;
    };
    (LABEL_SETS[rule].iter()).all(|l| LABEL_SETS[client].contains(l))
}

/// The chain a connection to a TCP service's port takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chain {
    /// The service's own `tcp` rule.
    Own,
    /// Its `destinationSubnets` rule `j`.
    Subnet(usize),
    /// Its `sourceLabels` rule `k`.
    Labels(usize),
}

/// The chain among a service's `subnets` and `labels` rules (else its own) a connection from a client with label set `client` to `ip` takes:
/// the `destinationSubnets` rule with the longest prefix holding `ip` ([`subnet_rule_for`]),
/// else the first `sourceLabels` rule the client's labels satisfy, else the service's own.
/// (`sourceLabels` filter first, then the destination IP's longest prefix, then the first of
/// equals: the engine's filter-chain match for a sidecar shared by several clients, each
/// seeing the chains pilot builds for its own labels.)
pub fn chain_for(
    (subnets, labels): (&[SubnetRule], &[LabelRule]),
    ip: [u8; 4],
    client: Option<usize>,
) -> Chain {
    if let Some(j) = subnet_rule_for(subnets, ip) {
        return Chain::Subnet(j);
    }
    (labels.iter())
        .position(|rule| labels_hold(rule.labels, client))
        .map_or(Chain::Own, Chain::Labels)
}

/// A `tcp` rule matching `destinationSubnets` (indices into [`SUBNETS`], each used by at most
/// one rule of its service) with its destinations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubnetRule {
    pub subnets: Vec<usize>,
    pub dests: Vec<(usize, u32)>,
}

/// The `destinationSubnets` rules draw from: nested prefixes, so that the longest match must
/// win whatever the rules' order, and one apart.
pub const SUBNETS: [([u8; 4], u8); 5] = [
    ([10, 0, 0, 0], 8),
    ([10, 1, 0, 0], 16),
    ([10, 1, 2, 0], 24),
    ([10, 1, 2, 3], 32),
    ([192, 168, 0, 0], 16),
];

/// Addresses clients dial a TCP service's port at (iptables keeps each as the original
/// destination); a connection without one dials [`DEFAULT_DST`].
pub const DESTINATIONS: [[u8; 4]; 5] = [
    [10, 1, 2, 3],
    [10, 1, 2, 9],
    [10, 1, 9, 9],
    [10, 9, 9, 9],
    [192, 168, 5, 5],
];

/// The service address a connection dials when it names none of [`DESTINATIONS`].
pub const DEFAULT_DST: [u8; 4] = [240, 0, 0, 1];

/// Whether `ip` lies in subnet `s` of [`SUBNETS`].
fn in_subnet(s: usize, ip: [u8; 4]) -> bool {
    let (net, len) = SUBNETS[s];
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from_be_bytes(net) & mask == u32::from_be_bytes(ip) & mask
}

/// The `destinationSubnets` rule among `rules` a connection to `ip` takes, as Envoy matches
/// `prefix_ranges` (`FilterChainManagerImpl::findFilterChainForDestinationIP`): the longest
/// matching prefix of any chain, whatever the rules' order; `None`: no prefix holds `ip`, and
/// the chain without prefixes (the service's rule) takes it.
pub fn subnet_rule_for(rules: &[SubnetRule], ip: [u8; 4]) -> Option<usize> {
    (rules.iter().enumerate())
        .flat_map(|(j, rule)| rule.subnets.iter().map(move |&s| (j, s)))
        .filter(|&(_, s)| in_subnet(s, ip))
        .max_by_key(|&(_, s)| SUBNETS[s].1)
        .map(|(j, _)| j)
}

/// One service's `destinationSubnets` rules: 1–3 over nested prefixes, each prefix on at most
/// one rule (empty when none took a prefix).
pub fn draw_subnet_rules(r: &mut fastrand::Rng, clusters: usize) -> Vec<SubnetRule> {
    let mut rules: Vec<SubnetRule> = (0..r.usize(1..=3))
        .map(|_| SubnetRule {
            subnets: Vec::new(),
            dests: vec![(r.usize(0..clusters), 1)],
        })
        .collect();
    for s in 0..SUBNETS.len() {
        if r.u8(0..100) < 60 {
            let n = rules.len();
            rules[r.usize(0..n)].subnets.push(s);
        }
    }
    rules.retain(|rule| !rule.subnets.is_empty());
    rules
}

/// One service's `sourceLabels` rules: 1–2 over [`LABEL_SETS`].
pub fn draw_label_rules(r: &mut fastrand::Rng, clusters: usize) -> Vec<LabelRule> {
    (0..r.usize(1..=2))
        .map(|_| LabelRule {
            labels: r.usize(0..LABEL_SETS.len()),
            dests: vec![(r.usize(0..clusters), 1)],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's destination-IP step: the longest prefix that holds the address wins, whatever
    /// the order of the rules that list it; an address no prefix holds falls to the chain
    /// without prefixes.
    #[test]
    fn the_longest_subnet_wins_whatever_the_rule_order() {
        let subnet_rules = [
            SubnetRule {
                subnets: vec![3, 0],
                dests: vec![(1, 1)],
            },
            SubnetRule {
                subnets: vec![2, 4],
                dests: vec![(2, 1)],
            },
            SubnetRule {
                subnets: vec![1],
                dests: vec![(0, 1)],
            },
        ];
        assert_eq!(
            subnet_rule_for(&subnet_rules, [10, 1, 2, 3]),
            Some(0),
            "/32"
        );
        assert_eq!(
            subnet_rule_for(&subnet_rules, [10, 1, 2, 9]),
            Some(1),
            "/24"
        );
        assert_eq!(
            subnet_rule_for(&subnet_rules, [10, 1, 9, 9]),
            Some(2),
            "/16"
        );
        assert_eq!(subnet_rule_for(&subnet_rules, [10, 9, 9, 9]), Some(0), "/8");
        assert_eq!(subnet_rule_for(&subnet_rules, [192, 168, 5, 5]), Some(1));
        assert_eq!(subnet_rule_for(&subnet_rules, DEFAULT_DST), None);
    }

    /// Labels filter first (a client without them takes no labelled rule), the subnets' longest
    /// prefix beats a labelled rule, and the first labelled rule the client satisfies beats a
    /// later one and the service's own.
    #[test]
    fn labelled_rules_take_their_clients_after_the_subnets() {
        let subnets = [SubnetRule {
            subnets: vec![3],
            dests: vec![(1, 1)],
        }];
        let labels = [
            LabelRule {
                labels: 1,
                dests: vec![(2, 1)],
            },
            LabelRule {
                labels: 0,
                dests: vec![(1, 1)],
            },
        ];
        let service = (&subnets[..], &labels[..]);
        let ip = DEFAULT_DST;
        assert_eq!(chain_for(service, ip, Some(1)), Chain::Labels(0));
        assert_eq!(chain_for(service, ip, Some(0)), Chain::Labels(1));
        assert_eq!(chain_for(service, ip, Some(2)), Chain::Own);
        assert_eq!(chain_for(service, ip, None), Chain::Own);
        assert_eq!(chain_for(service, [10, 1, 2, 3], Some(1)), Chain::Subnet(0));
    }
}
