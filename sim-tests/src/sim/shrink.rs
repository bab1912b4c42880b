//! Shrinking: quickcheck's `Arbitrary` for [`Scenario`] and a greedy minimizer.
//!
//! Candidates remove or simplify one thing at a time, biggest first (a client, a service, a
//! fault, a version, a rule, then single features and rates), and each is re-normalized so
//! that references stay valid. [`minimize`] keeps the first candidate that still fails and
//! starts over, within a budget of runs; the result is a local minimum: removing any single
//! part makes the failure go away.
//!
//! Config churn shrinks the same way: a push goes whole, or loses a delivery, a rule or a
//! rule's policy; removing a client, service or version re-indexes the pushes that name it.

use quickcheck::{Arbitrary, Gen};

use super::scenario::{Load, Rule, Scenario};

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Self {
        Scenario::from_seed(u64::arbitrary(g))
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(candidates(self).into_iter())
    }
}

/// Every one-step simplification of `scn` that is still a runnable scenario.
pub fn candidates(scn: &Scenario) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    let mut push = |mut s: Scenario| {
        if s.normalize() && s != *scn {
            out.push(s);
        }
    };
    if scn.duration_ms > 50 {
        let mut s = scn.clone();
        s.duration_ms /= 2;
        push(s);
    }
    for i in 0..scn.clients.len() {
        let mut s = scn.clone();
        s.clients.remove(i);
        for p in &mut s.config_pushes {
            p.deliveries.retain(|(sc, _)| *sc != i);
            for d in &mut p.deliveries {
                if d.0 > i {
                    d.0 -= 1;
                }
            }
        }
        push(s);
    }
    for i in 0..scn.services.len() {
        let mut s = scn.clone();
        s.services.remove(i);
        for svc in &mut s.services {
            svc.calls.retain(|t| *t != i);
            for t in &mut svc.calls {
                if *t > i {
                    *t -= 1;
                }
            }
        }
        for c in &mut s.clients {
            c.targets.retain(|t| *t != i);
            for t in &mut c.targets {
                if *t > i {
                    *t -= 1;
                }
            }
        }
        if let Some(v) = &mut s.requests {
            v.wildcards.retain(|(_, w)| *w != i);
            for (_, w) in &mut v.wildcards {
                if *w > i {
                    *w -= 1;
                }
            }
        }
        s.config_pushes.retain(|p| p.service != i);
        for p in &mut s.config_pushes {
            if p.service > i {
                p.service -= 1;
            }
        }
        push(s);
    }
    for i in 0..scn.faults.len() {
        let mut s = scn.clone();
        s.faults.remove(i);
        push(s);
    }
    for i in 0..scn.config_pushes.len() {
        let mut s = scn.clone();
        s.config_pushes.remove(i);
        push(s);
    }
    for (si, svc) in scn.services.iter().enumerate() {
        for v in 0..svc.versions.len() {
            if svc.versions.len() > 1 {
                let mut s = scn.clone();
                s.services[si].versions.remove(v);
                let pushed = (s.config_pushes.iter_mut())
                    .filter(|p| p.service == si)
                    .flat_map(|p| p.rules.iter_mut());
                for rule in s.services[si].rules.iter_mut().chain(pushed) {
                    rule.dests.retain(|(x, _)| *x != v);
                    for d in &mut rule.dests {
                        if d.0 > v {
                            d.0 -= 1;
                        }
                    }
                }
                push(s);
            }
            let n = svc.versions[v].endpoints.len();
            if n > 1 {
                let mut s = scn.clone();
                s.services[si].versions[v].endpoints.truncate(n / 2);
                push(s);
                let mut s = scn.clone();
                s.services[si].versions[v].endpoints.pop();
                push(s);
            }
        }
        for c in 0..svc.calls.len() {
            let mut s = scn.clone();
            s.services[si].calls.remove(c);
            push(s);
        }
        for r in 0..svc.rules.len() {
            if svc.rules.len() > 1 {
                let mut s = scn.clone();
                s.services[si].rules.remove(r);
                push(s);
            }
        }
    }
    for c in 0..scn.clients.len() {
        let mut s = scn.clone();
        match &mut s.clients[c].load {
            Load::Open { rate } if *rate > 1 => *rate /= 2,
            Load::Closed { concurrency, .. } if *concurrency > 1 => *concurrency /= 2,
            _ => {}
        }
        push(s);
        let mut s = scn.clone();
        s.clients[c].post_percent = 0;
        s.clients[c].max_response = s.clients[c].max_response.min(16);
        push(s);
    }
    for (si, svc) in scn.services.iter().enumerate() {
        for (v, ver) in svc.versions.iter().enumerate() {
            if let Some(o) = &ver.outlier {
                let mut s = scn.clone();
                s.services[si].versions[v].outlier = None;
                push(s);
                // Back to the 5xx detector alone with Envoy's default cap on ejection time.
                let extras = o.max_ejection_ms.is_some()
                    || o.consecutive_gateway_errors > 0
                    || o.split_local_origin.is_some();
                if extras && o.consecutive_5xx > 0 {
                    let mut s = scn.clone();
                    if let Some(o) = s.services[si].versions[v].outlier.as_mut() {
                        o.max_ejection_ms = None;
                        o.consecutive_gateway_errors = 0;
                        o.split_local_origin = None;
                    }
                    push(s);
                }
            }
            if ver.pool.is_some() {
                let mut s = scn.clone();
                s.services[si].versions[v].pool = None;
                push(s);
            }
            for (i, e) in ver.endpoints.iter().enumerate() {
                if e.error_percent
                    + e.garbage_percent
                    + e.hang_percent
                    + e.trickle_percent
                    + e.tail_percent
                    > 0
                    || e.latency_jitter_ms > 0
                {
                    let mut s = scn.clone();
                    let ep = &mut s.services[si].versions[v].endpoints[i];
                    ep.error_percent = 0;
                    ep.garbage_percent = 0;
                    ep.hang_percent = 0;
                    ep.trickle_percent = 0;
                    ep.tail_percent = 0;
                    ep.latency_jitter_ms = 0;
                    push(s);
                }
            }
        }
        for (r, rule) in svc.rules.iter().enumerate() {
            for simpler in simpler_rules(rule) {
                let mut s = scn.clone();
                s.services[si].rules[r] = simpler;
                push(s);
            }
        }
    }
    for (pi, p) in scn.config_pushes.iter().enumerate() {
        if p.deliveries.len() > 1 {
            for d in 0..p.deliveries.len() {
                let mut s = scn.clone();
                s.config_pushes[pi].deliveries.remove(d);
                push(s);
            }
        }
        if p.deliveries.iter().any(|(_, delay)| *delay > 0) {
            let mut s = scn.clone();
            for d in &mut s.config_pushes[pi].deliveries {
                d.1 = 0;
            }
            push(s);
        }
        for r in 0..p.rules.len() {
            if p.rules.len() > 1 {
                let mut s = scn.clone();
                s.config_pushes[pi].rules.remove(r);
                push(s);
            }
            for simpler in simpler_rules(&p.rules[r]) {
                let mut s = scn.clone();
                s.config_pushes[pi].rules[r] = simpler;
                push(s);
            }
        }
    }
    let n = &scn.net;
    if n.jitter_us > 0 || n.loss_percent > 0 || n.reset_permille > 0 {
        let mut s = scn.clone();
        s.net.jitter_us = 0;
        s.net.loss_percent = 0;
        s.net.reset_permille = 0;
        push(s);
    }
    if n.client_read_bpms > 0 || n.buffer_bytes > 0 {
        let mut s = scn.clone();
        s.net.client_read_bpms = 0;
        s.net.buffer_bytes = 0;
        push(s);
    }
    // Whole message streams off: framing, HEAD and closes, client connection use.
    if scn.framing.is_some() {
        push(Scenario {
            framing: None,
            ..scn.clone()
        });
    }
    if scn.messages.is_some() {
        push(Scenario {
            messages: None,
            ..scn.clone()
        });
    }
    if scn.interim.is_some() {
        push(Scenario {
            interim: None,
            ..scn.clone()
        });
    }
    if scn.connections.is_some() {
        push(Scenario {
            connections: None,
            ..scn.clone()
        });
    }
    out
}

/// One-step simplifications of a rule: without its retries, timeout, fault or match.
fn simpler_rules(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    if rule.retries.is_some() {
        out.push(Rule {
            retries: None,
            ..rule.clone()
        });
    }
    if rule.timeout_ms.is_some() {
        out.push(Rule {
            timeout_ms: None,
            ..rule.clone()
        });
    }
    if rule.fault.is_some() {
        out.push(Rule {
            fault: None,
            ..rule.clone()
        });
    }
    if rule.user.is_some() {
        out.push(Rule {
            user: None,
            ..rule.clone()
        });
    }
    out
}

/// Greedily shrink `scn` while `fails` holds, spending at most `budget` calls of `fails`.
/// Returns the smallest failing scenario found and the number of calls spent.
pub fn minimize(
    scn: &Scenario,
    budget: usize,
    mut fails: impl FnMut(&Scenario) -> bool,
) -> (Scenario, usize) {
    let mut best = scn.clone();
    let mut spent = 0;
    'outer: while spent < budget {
        for cand in candidates(&best) {
            if spent >= budget {
                break 'outer;
            }
            spent += 1;
            if fails(&cand) {
                best = cand;
                continue 'outer;
            }
        }
        break;
    }
    (best, spent)
}

/// A rough size, to show that shrinking made progress.
pub fn size(scn: &Scenario) -> usize {
    scn.clients.len()
        + scn.faults.len()
        + scn
            .config_pushes
            .iter()
            .map(|p| 1 + p.rules.len())
            .sum::<usize>()
        + scn
            .services
            .iter()
            .map(|s| {
                s.rules.len()
                    + s.versions
                        .iter()
                        .map(|v| v.endpoints.len() + 1)
                        .sum::<usize>()
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_valid_and_smaller_or_simpler() {
        for seed in 0..30 {
            let scn = Scenario::from_seed(seed);
            for c in candidates(&scn) {
                let mut n = c.clone();
                assert!(n.normalize());
                assert_eq!(n, c, "candidates come normalized");
                assert!(size(&c) <= size(&scn));
            }
        }
    }

    #[test]
    fn minimize_finds_a_local_minimum() {
        // "Fails" while some service has at least two versions: shrinks to one such service.
        let scn = (0..100)
            .map(Scenario::from_seed)
            .find(|s| s.services.iter().any(|x| x.versions.len() >= 2) && s.services.len() > 2)
            .expect("a seed with a multi-version service");
        let fails = |s: &Scenario| s.services.iter().any(|x| x.versions.len() >= 2);
        let (small, _) = minimize(&scn, 10_000, fails);
        assert!(fails(&small));
        assert_eq!(small.services.len(), 1, "{small:#?}");
        assert_eq!(small.faults.len(), 0);
        assert_eq!(small.clients.len(), 1);
    }
}
