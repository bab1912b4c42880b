//! xxHash64, the hash Envoy's consistent-hash balancers use for everything they hash: request
//! keys (`HashUtil::xxHash64`, source/common/common/hash.h) and the ring and Maglev positions
//! of hosts. Using the same function means a key and a host set land where they land in Envoy.
//! Written from the xxHash specification (XXH64, seed, little-endian lanes).

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn lane64(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

fn lane32(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(bytes);
    u64::from(u32::from_le_bytes(w))
}

/// XXH64 of `data` with `seed`.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let mut stripes = data.chunks_exact(32);
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        for stripe in &mut stripes {
            for (acc, lane) in v.iter_mut().zip(stripe.chunks_exact(8)) {
                *acc = round(*acc, lane64(lane));
            }
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for acc in v {
            h = merge(h, acc);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u64);
    let rest = stripes.remainder();
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        h ^= round(0, lane64(w));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
    }
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        let (four, tail) = rest.split_at(4);
        h ^= lane32(four).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = tail;
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from libxxhash 0.8.3 (`XXH64`), one per code path: empty, under 4
    /// bytes, a 4-byte lane, 8-byte lanes, and 32-byte stripes; and a non-zero seed.
    #[test]
    fn matches_the_reference_implementation() {
        let long: Vec<u8> = (0u8..100).collect();
        let cases: [(&[u8], u64, u64); 7] = [
            (b"", 0, REF[0]),
            (b"a", 0, REF[1]),
            (b"abc", 0, REF[2]),
            (b"abcdefg", 0, REF[3]),
            (b"10.0.0.1:9080_17", 0, REF[4]),
            (&long, 0, REF[5]),
            (b"10.0.0.1:9080", 1, REF[6]),
        ];
        for (data, seed, want) in cases {
            assert_eq!(xxh64(data, seed), want, "{:?} seed {seed}", data);
        }
    }

    const REF: [u64; 7] = [
        0xEF46_DB37_51D8_E999,
        0xD24E_C4F1_A98C_6E5B,
        0x44BC_2CF5_AD77_0999,
        0x1860_940E_2902_822D,
        0x70A6_6FC3_8E87_9125,
        0x6AC1_E580_3216_6597,
        0x6D8D_B434_77BE_F1B6,
    ];
}
