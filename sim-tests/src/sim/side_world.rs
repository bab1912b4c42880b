//! The virtual-clock loop every world beside the routing mesh runs (mirroring, security, L4):
//! engine timers before queued events at the same instant, queued events in scheduling order,
//! a hard stop, and an event budget whose breach is a violation (a world that never settles
//! is stuck). One loop, so the worlds cannot drift apart in these rules.

use trellis_engine::Instant;

use super::check::Invariant;

/// What [`drive`] needs of a world.
pub(crate) trait SideWorld {
    /// The earliest queued event.
    fn next_event(&self) -> Option<Instant>;
    /// The earliest engine timer.
    fn next_timer(&self) -> Option<Instant>;
    /// The clock moves to `now` (never back).
    fn advance(&mut self, now: Instant);
    /// Fire the engine timers due now.
    fn fire_timers(&mut self);
    /// Fire the next queued event.
    fn fire_next(&mut self);
    /// Report a violation at the current instant.
    fn report(&mut self, invariant: Invariant, detail: String);
}

/// Run `world` until nothing is left to do before `hard_stop`, or `max_events` have fired
/// (reported as `EndsOnce`, naming the world as `name`).
pub(crate) fn drive(world: &mut impl SideWorld, hard_stop: Instant, max_events: u64, name: &str) {
    let mut events = 0u64;
    loop {
        let queued = world.next_event();
        let timer = world.next_timer();
        let Some(next) = [queued, timer].into_iter().flatten().min() else {
            break;
        };
        if next > hard_stop {
            break;
        }
        events += 1;
        if events > max_events {
            let msg = format!("runaway {name} world: {max_events} events by {next}");
            world.report(Invariant::EndsOnce, msg);
            break;
        }
        world.advance(next);
        if timer == Some(next) {
            world.fire_timers();
        } else {
            world.fire_next();
        }
    }
}
