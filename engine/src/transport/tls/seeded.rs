//! A rustls crypto provider whose every random choice comes from a seed, for the simulator.
//!
//! The same seed and the same inputs must give the same run, handshakes included. rustls draws
//! randomness in two places: its [`SecureRandom`] (client and server randoms, the legacy session
//! id) and each key-exchange group's `start()`, which makes its own ephemeral key. So this
//! provider replaces both: randomness and the X25519 ephemeral secret are drawn from the
//! connection's seeded RNG (the secret through x25519-dalek's `StaticSecret`, built from those
//! bytes). Signatures must be deterministic too: use Ed25519 certificates (RFC 8032 signing
//! has no randomness); ECDSA in ring draws its nonce from the system. AES-GCM nonces are
//! derived from the record sequence, so records are deterministic already.
//!
//! rustls holds `&'static` references to both, so the RNG cannot live inside them. Each
//! connection owns its RNG (seeded by its factory); [`with_rng`] lends it to a thread-local
//! slot for the duration of one rustls call, and the provider draws from that slot. A draw with
//! no RNG lent fails the handshake (`GetRandomFailed`) rather than fall back to anything else.
//!
//! **Never use this provider in production**: its keys are predictable from the seed.

use std::cell::RefCell;

use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::{Error, NamedGroup, PeerMisbehaved};
use x25519_dalek::{PublicKey, StaticSecret};

thread_local! {
    /// The RNG of the connection whose rustls call is in progress on this thread.
    static LENT: RefCell<Option<fastrand::Rng>> = const { RefCell::new(None) };
}

/// Run `f` (one rustls call) with `rng` lent to the seeded provider; with `None` (a production
/// connection), just run it.
pub fn with_rng<R>(rng: &mut Option<fastrand::Rng>, f: impl FnOnce() -> R) -> R {
    let Some(mine) = rng.take() else {
        return f();
    };
    let before = LENT.with(|slot| slot.borrow_mut().replace(mine));
    debug_assert!(before.is_none(), "rustls calls do not nest");
    let out = f();
    *rng = LENT.with(|slot| slot.borrow_mut().take());
    debug_assert!(rng.is_some(), "the lent RNG comes back");
    out
}

fn draw(buf: &mut [u8]) -> Result<(), GetRandomFailed> {
    LENT.with(|slot| match slot.borrow_mut().as_mut() {
        Some(rng) => {
            rng.fill(buf);
            Ok(())
        }
        None => Err(GetRandomFailed),
    })
}

/// Randomness from the lent RNG.
#[derive(Debug)]
struct SeededRandom;

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        draw(buf)
    }
}

/// X25519 whose ephemeral secret comes from the lent RNG.
#[derive(Debug)]
struct SeededX25519;

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut bytes = [0u8; 32];
        draw(&mut bytes)?;
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Ok(Box::new(SeededExchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

struct SeededExchange {
    secret: StaticSecret,
    public: PublicKey,
}

impl ActiveKeyExchange for SeededExchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        // A low-order peer point gives an all-zero secret (RFC 7748 section 6.1).
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

static SEEDED_RANDOM: SeededRandom = SeededRandom;
static SEEDED_X25519: SeededX25519 = SeededX25519;

/// ring's provider (cipher suites, signature verification, key loading) with randomness and
/// key exchange drawn from the RNG lent by [`with_rng`].
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: vec![&SEEDED_X25519],
        secure_random: &SEEDED_RANDOM,
        ..rustls::crypto::ring::default_provider()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_lent_rng_and_fail_without_one() {
        let p = provider();
        let mut a = [0u8; 8];
        assert!(p.secure_random.fill(&mut a).is_err(), "no RNG lent");
        let draw_with = |seed| {
            let mut rng = Some(fastrand::Rng::with_seed(seed));
            let mut out = [0u8; 16];
            with_rng(&mut rng, || p.secure_random.fill(&mut out)).unwrap();
            assert!(rng.is_some());
            out
        };
        assert_eq!(draw_with(1), draw_with(1));
        assert_ne!(draw_with(1), draw_with(2));
    }

    #[test]
    fn key_exchange_agrees_and_refuses_a_low_order_point() {
        let mut rng = Some(fastrand::Rng::with_seed(7));
        let (a, b) = with_rng(&mut rng, || {
            (
                SEEDED_X25519.start().unwrap(),
                SEEDED_X25519.start().unwrap(),
            )
        });
        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        let s1 = a.complete(&b_pub).unwrap();
        let s2 = b.complete(&a_pub).unwrap();
        assert_eq!(s1.secret_bytes(), s2.secret_bytes());
        let c = with_rng(&mut rng, || SEEDED_X25519.start().unwrap());
        assert!(c.complete(&[0u8; 32]).is_err());
        let d = with_rng(&mut rng, || SEEDED_X25519.start().unwrap());
        assert!(d.complete(&[1u8; 5]).is_err());
    }
}
