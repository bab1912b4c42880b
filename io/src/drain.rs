//! When a draining driver may stop: one policy for both drivers (epoll and io_uring).

use std::time::Instant as StdInstant;

/// What the drain decision needs to know about one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnState {
    pub downstream: bool,
    pub lingering: bool,
    pub unsent: bool,
}

/// Shutdown was requested (`deadline` set), and either time is up, every downstream
/// connection is gone, or nothing is in flight (no request, no queued input, no unwritten byte,
/// no lingering close) so only idle keep-alive connections remain, which are closed on exit.
pub(crate) fn drain_complete(
    deadline: Option<StdInstant>,
    conns: impl Iterator<Item = ConnState>,
    requests_in_flight: Option<usize>,
    inputs_queued: bool,
) -> bool {
    let Some(deadline) = deadline else {
        return false;
    };
    if StdInstant::now() >= deadline {
        tracing::info!("shutdown grace period over");
        return true;
    }
    let (mut downstreams, mut busy) = (false, false);
    for c in conns {
        downstreams |= c.downstream || c.lingering;
        busy |= c.unsent || c.lingering;
    }
    let idle = requests_in_flight == Some(0) && !inputs_queued && !busy;
    !downstreams || idle
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn conn(downstream: bool, lingering: bool, unsent: bool) -> ConnState {
        ConnState {
            downstream,
            lingering,
            unsent,
        }
    }

    #[test]
    fn drain_policy() {
        let later = StdInstant::now() + Duration::from_secs(60);
        assert!(!drain_complete(None, std::iter::empty(), Some(0), false));
        assert!(drain_complete(
            Some(StdInstant::now()),
            std::iter::empty(),
            None,
            true
        ));
        // Only upstream connections left: done.
        assert!(drain_complete(
            Some(later),
            [conn(false, false, true)].into_iter(),
            None,
            true
        ));
        // An idle keep-alive downstream and nothing in flight: done.
        assert!(drain_complete(
            Some(later),
            [conn(true, false, false)].into_iter(),
            Some(0),
            false
        ));
        // A request in flight, unsent bytes, queued input or a lingering close: keep going.
        assert!(!drain_complete(
            Some(later),
            [conn(true, false, false)].into_iter(),
            Some(1),
            false
        ));
        assert!(!drain_complete(
            Some(later),
            [conn(true, false, true)].into_iter(),
            Some(0),
            false
        ));
        assert!(!drain_complete(
            Some(later),
            [conn(true, false, false)].into_iter(),
            Some(0),
            true
        ));
        assert!(!drain_complete(
            Some(later),
            [conn(false, true, false)].into_iter(),
            Some(0),
            false
        ));
        // An engine that doesn't know its requests waits for the downstreams to go.
        assert!(!drain_complete(
            Some(later),
            [conn(true, false, false)].into_iter(),
            None,
            false
        ));
    }
}
