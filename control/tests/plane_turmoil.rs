//! The push transport under a simulated network (issue 13, "Transport testing"): the real
//! server (`plane::net::serve`) and three real clients (`plane::net::run_client`) on
//! turmoil's TCP, with links cut and repaired, latency added, messages lost (turmoil's TCP does
//! not retransmit: a lost segment stalls its connection until the keepalive timeout ends it),
//! the control plane and a sidecar restarted, and configs changed during partitions.
//!
//! The convergence bound after a link heals, with the release made before:
//! `ClientConfig::reconnect_bound()` = max(keepalive timeout + first backoff delay, connect
//! timeout + longest backoff delay) = max(15 + 0.5, 5 + 5) s = 15.5 s, plus a hello, a push and
//! its answer at the worst one-way latency (`Mesh::heal_bound`). A change made while every
//! link is up converges within the debounce's quiet period plus one push's latency.
//!
//! The channel runs over TLS, as in production (a mesh CA made once per process; the heal
//! bound counts the handshake's round trip), except in the replay check (`eventful_run` says
//! why).
//!
//! Every scenario runs from a fixed seed; `the_same_seed_replays_the_same_run` checks that a
//! seed is a replay (same trace, line for line). The convergence times measured are printed
//! (`cargo test -p trellis-control --test plane_turmoil -- --nocapture`) and quoted in
//! RESEARCH.md ("Push transport on tokio, tested with turmoil").

mod turmoil_mesh;

use std::time::Duration;

use turmoil_mesh::{node, Mesh, BAD, CONTROL, NAMESPACES, WORST_LATENCY};
const DEBOUNCE_AFTER: Duration = Duration::from_millis(100);

/// A mesh that has converged on snapshot 0.
fn converged_mesh(seed: u64) -> Mesh<'static> {
    let mut mesh = Mesh::new(seed);
    mesh.publish(0);
    // The sidecars may try before the control plane listens: one backoff delay more.
    let took = mesh
        .converge_within(Duration::from_secs(2))
        .expect("first push");
    eprintln!("seed {seed}: first push everywhere after {took:?}");
    mesh
}

#[test]
fn partitioned_sidecars_converge_within_the_bound_after_the_links_heal() {
    let mut mesh = converged_mesh(1);
    mesh.partition(0);
    mesh.partition(1);
    // Two changes while they are cut off; the connected sidecar follows each.
    mesh.publish(1);
    mesh.run_for(Duration::from_secs(2));
    mesh.publish(3);
    mesh.run_for(Duration::from_secs(1));
    assert!(
        mesh.converged().is_err(),
        "the cut-off sidecars cannot have it"
    );
    let connected = mesh.held(2).expect("sidecar-2 holds a document");
    mesh.run_for(Duration::from_secs(30));
    assert_eq!(mesh.held(2), Some(connected), "nothing more to push");
    mesh.repair(0);
    mesh.repair(1);
    let took = mesh.converge_after_heal();
    eprintln!(
        "partition of 33 s: converged {took:?} after the heal (bound {:?})",
        mesh.heal_bound()
    );
}

#[test]
fn a_short_partition_that_loses_a_push_heals_within_the_bound() {
    let mut mesh = converged_mesh(2);
    mesh.partition(0);
    mesh.publish(2);
    mesh.run_for(Duration::from_millis(500));
    mesh.repair(0);
    // The push was lost on a connection both ends still think alive: the keepalive timeout
    // ends it, and the reconnect's hello gets the push again.
    let took = mesh.converge_after_heal();
    assert!(
        took > Duration::from_secs(5),
        "recovered in {took:?}: by the keepalive, not by luck"
    );
    eprintln!("partition of 0.5 s losing a push: converged {took:?} after the heal");
}

#[test]
fn added_latency_delays_convergence_by_one_push_only() {
    let mut mesh = converged_mesh(3);
    let latency = Duration::from_millis(300);
    for i in 0..NAMESPACES.len() {
        mesh.sim.set_link_latency(CONTROL, node(i), latency);
    }
    let answered = mesh.answered();
    mesh.publish(1);
    let bound = DEBOUNCE_AFTER + latency + Duration::from_millis(10);
    let took = mesh.converge_within(bound).unwrap();
    eprintln!("300 ms links: a change converged in {took:?} (bound {bound:?})");
    for (n, count) in mesh.answered() {
        assert_eq!(count, answered[&n] + 1, "{n} got one push");
    }
}

#[test]
fn lossy_links_with_config_churn_converge_once_the_loss_stops() {
    let mut mesh = converged_mesh(4);
    mesh.sim.set_fail_rate(0.05);
    for round in 0..30 {
        mesh.publish(round % BAD);
        mesh.run_for(Duration::from_millis(700));
    }
    mesh.sim.set_fail_rate(0.0);
    let accepted = mesh.trace.lock().unwrap().accepted;
    assert!(accepted > NAMESPACES.len(), "the losses broke connections");
    let took = mesh.converge_after_heal();
    eprintln!("{accepted} connections under 5% loss; converged {took:?} after it stopped");
}

#[test]
fn a_restarted_control_plane_resends_nothing_held_and_pushes_what_changed_meanwhile() {
    let mut mesh = converged_mesh(5);
    mesh.publish(1);
    mesh.converge_within(Duration::from_secs(1)).unwrap();
    let answered = mesh.answered();
    let accepted = mesh.trace.lock().unwrap().accepted;

    mesh.sim.bounce(CONTROL);
    // Every sidecar finds the old connection dead (reset on its next keepalive at the latest)
    // and reconnects, announcing what it holds.
    let reconnected = |mesh: &Mesh| mesh.trace.lock().unwrap().accepted >= accepted + 3;
    while !reconnected(&mesh) {
        assert!(
            mesh.now() < Duration::from_secs(60),
            "sidecars did not reconnect"
        );
        mesh.run_for(Duration::from_millis(10));
    }
    mesh.run_for(Duration::from_secs(2));
    mesh.converged().unwrap();
    assert_eq!(mesh.answered(), answered, "a restart resends nothing held");

    // A change while the control plane is down reaches every sidecar once it is back.
    mesh.sim.crash(CONTROL);
    mesh.publish(2);
    mesh.run_for(Duration::from_secs(3));
    mesh.sim.bounce(CONTROL);
    let bound = mesh.client.reconnect_bound() + DEBOUNCE_AFTER + WORST_LATENCY * 6;
    let took = mesh.converge_within(bound).unwrap();
    eprintln!("control plane down 3 s during a change: converged {took:?} after its restart");
}

#[test]
fn a_restarted_sidecar_gets_its_document_again() {
    let mut mesh = converged_mesh(6);
    let answered = mesh.answered();
    mesh.sim.bounce(node(1));
    mesh.sim.step().unwrap();
    assert_eq!(mesh.held(1), None, "it starts with nothing");
    let took = mesh.converge_within(Duration::from_secs(1)).unwrap();
    eprintln!("a restarted sidecar converged in {took:?}");
    let now = mesh.answered();
    assert_eq!(now[&node(1)], answered[&node(1)] + 1);
    assert_eq!(now[&node(0)], answered[&node(0)]);
}

#[test]
fn a_nacked_config_is_reported_the_last_good_kept_even_across_a_partition() {
    let mut mesh = converged_mesh(7);
    mesh.publish(2);
    mesh.converge_within(Duration::from_secs(1)).unwrap();
    let good: Vec<_> = (0..NAMESPACES.len()).map(|i| mesh.held(i)).collect();
    mesh.publish(BAD);
    mesh.converge_within(Duration::from_secs(1)).unwrap();
    let nacks = |mesh: &Mesh, i: usize| {
        let trace = mesh.trace.lock().unwrap();
        let mine: Vec<_> = trace.nacks.iter().filter(|(n, ..)| *n == node(i)).collect();
        assert!(mine
            .iter()
            .all(|(_, _, reason)| reason.contains("shop/bad")));
        mine.len()
    };
    for (i, held) in good.iter().enumerate() {
        assert_eq!(
            mesh.held(i),
            *held,
            "{} keeps its last good config",
            node(i)
        );
        assert_eq!(nacks(&mesh, i), 1);
    }
    // Cut off long enough to reconnect: the refused document is offered once more (the
    // restarted connection knows nothing of the refusal) and refused again.
    mesh.partition(0);
    mesh.run_for(Duration::from_secs(20));
    mesh.repair(0);
    mesh.run_for(mesh.heal_bound());
    assert_eq!(nacks(&mesh, 0), 2);
    assert_eq!(mesh.held(0), good[0]);
    // A good change reaches everyone again.
    mesh.publish(1);
    mesh.converge_within(DEBOUNCE_AFTER + WORST_LATENCY * 4)
        .unwrap();
}

/// A partition, a restart and config churn: the trace every host wrote, with its times.
///
/// Over plain TCP: over TLS, about one full-suite run in three diverged by 3 ms right after
/// the control plane's restart (which sidecar learns first that its connection is gone),
/// while each scenario alone always replayed. The suspect is the order in which turmoil drops
/// the crashed host's TLS streams (tokio's task ids run on across the two runs of one
/// process), which decides the order of their closing segments and so which latency each
/// draws from the seed; not proven. Every other scenario here runs over TLS.
fn eventful_run(seed: u64) -> Vec<String> {
    let mut mesh = Mesh::with_channel(seed, false);
    mesh.publish(0);
    mesh.converge_within(Duration::from_secs(2))
        .expect("first push");
    mesh.sim.set_fail_rate(0.01);
    mesh.partition(2);
    for k in 1..5 {
        mesh.publish(k);
        mesh.run_for(Duration::from_millis(900));
    }
    mesh.sim.bounce(CONTROL);
    mesh.sim.set_fail_rate(0.0);
    mesh.repair(2);
    mesh.converge_within(Duration::from_secs(40)).unwrap();
    let lines = mesh.trace.lock().unwrap().lines.clone();
    lines
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let first = eventful_run(8);
    assert!(first.len() > 20, "an eventful run: {first:#?}");
    assert_eq!(first, eventful_run(8));
}
