//! The deterministic bodies of requests and responses, generated, written and compared without
//! materialising them: a client's body is written straight into its request, a server's
//! response straight into the reply, and what arrives is compared piece by piece as it comes.
//!
//! Request or response `id` with `len` bytes is the first `len` letters of an xorshift stream
//! seeded from the id and a salt that tells the two directions apart, eight letters (each byte
//! of the state folded into `a..p`) per step.

/// A position in the pattern of one body.
#[derive(Clone, Copy, Debug)]
pub struct Pattern {
    x: u64,
    /// The current eight letters, and how many of them are used up.
    block: [u8; 8],
    used: usize,
}

pub const REQUEST_SALT: u8 = 1;
pub const RESPONSE_SALT: u8 = 2;

impl Pattern {
    /// The start of body `id` in the direction `salt`.
    pub fn new(id: u64, salt: u8) -> Self {
        Pattern {
            x: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(salt) ^ 0x2545_f491_4f6c_dd1d,
            block: [0; 8],
            used: 8,
        }
    }

    /// The next eight letters as one little-endian word (each byte's low nibble plus `a`, with
    /// no carry between bytes).
    fn word(&mut self) -> u64 {
        let mut x = self.x;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.x = x;
        (x & 0x0f0f_0f0f_0f0f_0f0f) + 0x6161_6161_6161_6161
    }

    fn refill(&mut self) {
        self.block = self.word().to_le_bytes();
        self.used = 0;
    }

    /// Append the next `len` letters to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, len: usize) {
        let start = out.len();
        out.resize(start + len, 0);
        let mut buf = &mut out[start..];
        // The rest of the current block, then whole words, then the start of a new block.
        let head = (8 - self.used).min(buf.len());
        buf[..head].copy_from_slice(&self.block[self.used..self.used + head]);
        self.used += head;
        buf = &mut buf[head..];
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.word().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            self.refill();
            let n = tail.len();
            tail.copy_from_slice(&self.block[..n]);
            self.used = n;
        }
    }

    /// Whether `data` is the next `data.len()` letters (advancing past them either way, as
    /// far as they match).
    pub fn matches(&mut self, data: &[u8]) -> bool {
        let head = (8 - self.used).min(data.len());
        if data[..head] != self.block[self.used..self.used + head] {
            return false;
        }
        self.used += head;
        let mut words = data[head..].chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
            if w != self.word() {
                return false;
            }
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            self.refill();
            self.used = tail.len();
            return tail == &self.block[..tail.len()];
        }
        true
    }
}

/// Whether `data` is exactly body `id` of direction `salt` with `len` bytes.
pub fn is_body(id: u64, salt: u8, len: usize, data: &[u8]) -> bool {
    data.len() == len && Pattern::new(id, salt).matches(data)
}

/// Body `id` of direction `salt` with `len` bytes, whole.
#[cfg(test)]
pub fn body_pattern(id: u64, salt: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Pattern::new(id, salt).write(&mut out, len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original definition, one step at a time: every faster path must agree with it.
    fn reference(id: u64, salt: u8, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        let mut x =
            id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(salt) ^ 0x2545_f491_4f6c_dd1d;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend(x.to_le_bytes().iter().map(|b| b'a' + (b & 0x0f)));
        }
        out.truncate(len);
        out
    }

    #[test]
    fn patterns_differ_by_id_and_direction() {
        assert_eq!(body_pattern(1, 1, 50), body_pattern(1, 1, 50));
        assert_ne!(body_pattern(1, 1, 50), body_pattern(2, 1, 50));
        assert_ne!(body_pattern(1, 1, 50), body_pattern(1, 2, 50));
        assert_eq!(body_pattern(9, 2, 0).len(), 0);
    }

    #[test]
    fn written_and_compared_in_pieces_as_the_reference() {
        let mut rng = fastrand::Rng::with_seed(11);
        for id in 0..200u64 {
            let len = rng.usize(0..300);
            let want = reference(id, 2, len);
            assert_eq!(body_pattern(id, 2, len), want);
            // Written in random pieces.
            let (mut p, mut out, mut at) = (Pattern::new(id, 2), Vec::new(), 0);
            while at < len {
                let n = rng.usize(1..=(len - at).min(20));
                p.write(&mut out, n);
                at += n;
            }
            assert_eq!(out, want);
            // Compared in random pieces.
            let (mut p, mut at) = (Pattern::new(id, 2), 0);
            while at < len {
                let n = rng.usize(1..=(len - at).min(20));
                assert!(p.matches(&want[at..at + n]));
                at += n;
            }
            assert!(is_body(id, 2, len, &want));
            assert!(!is_body(id, 2, len + 1, &want));
            if len > 0 {
                let mut bad = want.clone();
                let i = rng.usize(0..len);
                bad[i] = b'z';
                assert!(!is_body(id, 2, len, &bad));
                assert!(!is_body(id, 1, len, &want));
            }
        }
    }
}
