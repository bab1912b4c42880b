//! Fuzz the peek that tells TLS from plaintext on a PERMISSIVE or STRICT inbound port
//! (`transport::sniff` through `Transport::Sniffing`). Bytes become a connection's first bytes,
//! split into chunks at fuzzer-chosen points, fed to a sniffing transport whose TLS side
//! records what it receives. Checked, for every split:
//! - the decision equals `sniff` of the whole input (chunking never changes it);
//! - nothing is lost or duplicated: plaintext allowed → the codec gets exactly the input; TLS →
//!   the TLS transform gets exactly the input; plaintext under STRICT → an error, and nothing
//!   reaches the codec;
//! - an undecided transport (fewer than 6 bytes, all consistent with TLS) holds them all.
#![no_main]

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use trellis_engine::transport::sniff::{sniff, Sniffed};
use trellis_engine::transport::{ByteTransform, TransformError, Transport};
use trellis_engine::Instant;

/// A TLS side that only records the bytes it was given.
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl ByteTransform for Recorder {
    fn receive(&mut self, _: Instant, wire: &[u8], _: &mut BytesMut) -> Result<(), TransformError> {
        self.0.lock().unwrap().extend_from_slice(wire);
        Ok(())
    }
    fn seal(&mut self, _: &[u8]) {}
    fn poll_wire(&mut self, _: &mut BytesMut) {}
    fn wants_write(&self) -> bool {
        false
    }
    fn held(&self) -> usize {
        0
    }
    fn is_established(&self) -> bool {
        false
    }
    fn is_peer_closed(&self) -> bool {
        false
    }
    fn peer_identity(&self) -> Option<&str> {
        None
    }
    fn close(&mut self) {}
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let plaintext_allowed = control & 1 == 1;
    // The next byte says how many leading bytes become chunk sizes (1..=8 each).
    let (sizes, input) = match rest.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n % 8).min(rest.len())),
        None => (&[][..], rest),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut transport = Transport::Sniffing {
        tls: Box::new(Recorder(seen.clone())),
        seen: BytesMut::new(),
        plaintext_allowed,
    };
    let mut plain = BytesMut::new();
    let mut failed = false;
    let mut at = 0;
    let mut chunk = sizes.iter().map(|s| usize::from(s % 8) + 1).cycle();
    while at < input.len() {
        let n = chunk.next().unwrap_or(input.len()).min(input.len() - at);
        if transport.receive(Instant::ZERO, &input[at..at + n], &mut plain).is_err() {
            failed = true;
            break;
        }
        at += n;
    }
    let verdict = sniff(input);
    let to_tls = seen.lock().unwrap().clone();
    match verdict {
        Sniffed::Tls => {
            assert!(!failed);
            assert!(matches!(transport, Transport::Transformed(_)));
            assert_eq!(to_tls, input, "the TLS side gets every byte once");
            assert!(plain.is_empty());
        }
        Sniffed::Plaintext if plaintext_allowed => {
            assert!(!failed);
            assert!(transport.is_plain());
            assert_eq!(&plain[..], input, "the codec gets every byte once");
            assert!(to_tls.is_empty());
        }
        Sniffed::Plaintext => {
            assert!(failed, "STRICT refuses plaintext");
            assert!(plain.is_empty() && to_tls.is_empty());
        }
        Sniffed::NeedMore => {
            assert!(!failed && plain.is_empty() && to_tls.is_empty());
            assert!(matches!(&transport, Transport::Sniffing { seen, .. } if &seen[..] == input));
        }
    }
});
