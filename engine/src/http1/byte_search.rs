//! Finding a byte in the short runs a head is made of: its lines (10 to 60 bytes), its target,
//! its Host. `memchr` is built for long haystacks and spends ~50 instructions a call on these
//! (the call through its dispatch, the setup of its 32-byte loop, a scalar tail); one 16-byte
//! compare (`pcmpeqb`/`pmovmskb`, SSE2, which every x86_64 CPU has) finds every LF of a block
//! at once, and the head scan takes the LFs of a block one by one without searching again.
//!
//! On other architectures the same interface is `memchr` (the portable fallback), so only the
//! x86_64 build reads blocks; the tests compare the two.

/// The LFs of a buffer at or after a start, in order: what calling `memchr` from the byte
/// after each LF found would give, one 16-byte block at a time.
pub(crate) struct Lfs<'a> {
    buf: &'a [u8],
    /// Where the current block starts.
    #[cfg(target_arch = "x86_64")]
    block: usize,
    /// The current block's LFs not yet returned (bit `i`: `buf[block + i]`).
    #[cfg(target_arch = "x86_64")]
    mask: u32,
    /// Where the next search starts.
    #[cfg(not(target_arch = "x86_64"))]
    from: usize,
}

impl<'a> Lfs<'a> {
    /// The LFs of `buf` at or after `from`.
    #[inline]
    pub(crate) fn new(buf: &'a [u8], from: usize) -> Lfs<'a> {
        #[cfg(target_arch = "x86_64")]
        {
            let mask = if from < buf.len() {
                block_mask(buf, from, b'\n')
            } else {
                0
            };
            Lfs {
                buf,
                // At most the length, so that stepping a block on cannot overflow.
                block: from.min(buf.len()),
                mask,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Lfs { buf, from }
        }
    }

    /// The buffer searched.
    #[inline]
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// The next LF, or `None` when the buffer has no more.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn next_lf(&mut self) -> Option<usize> {
        loop {
            if self.mask != 0 {
                let lf = self.block + self.mask.trailing_zeros() as usize;
                // The lowest bit cleared: the LFs after this one stay for the next calls.
                self.mask &= self.mask - 1;
                return Some(lf);
            }
            self.block += 16;
            if self.block >= self.buf.len() {
                return None;
            }
            self.mask = block_mask(self.buf, self.block, b'\n');
        }
    }

    /// The next LF, or `None` when the buffer has no more.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub(crate) fn next_lf(&mut self) -> Option<usize> {
        let lf = memchr::memchr(b'\n', self.buf.get(self.from..)?)? + self.from;
        self.from = lf + 1;
        Some(lf)
    }
}

/// The position of the first `byte` in `hay`: `memchr::memchr`, sixteen bytes a compare on
/// x86_64 for the short strings of a head (a target, a Host value), where `memchr`'s setup is
/// most of its cost.
#[inline]
pub(crate) fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut at = 0;
        while at < hay.len() {
            let mask = block_mask(hay, at, byte);
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr(byte, hay)
    }
}

/// Bit `i` set when `hay[at + i] == byte`, for the sixteen bytes from `at` (none set past the
/// end of `hay`). `at < hay.len()`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn block_mask(hay: &[u8], at: usize, byte: u8) -> u32 {
    debug_assert!(at < hay.len(), "block at {at} of {}", hay.len());
    if let Some(block) = hay.get(at..).and_then(<[u8]>::first_chunk::<16>) {
        return mask16(block, byte);
    }
    // Fewer than sixteen bytes from `at`: the last sixteen of `hay` (which start before `at`),
    // shifted so that bit 0 is `at`; the bits shifted in are clear.
    if let Some(last) = hay.len().checked_sub(16) {
        if let Some(block) = hay.get(last..).and_then(<[u8]>::first_chunk::<16>) {
            return mask16(block, byte) >> (at - last);
        }
    }
    short_mask(hay.get(at..).unwrap_or_default(), byte)
}

/// [`block_mask`] of a haystack shorter than sixteen bytes, padded with a byte that is not
/// `byte`. Out of line: a head is rarely that short, and the copy's code would crowd the
/// scan's loop.
#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn short_mask(rest: &[u8], byte: u8) -> u32 {
    let mut block = [!byte; 16];
    if let Some(start) = block.get_mut(..rest.len()) {
        start.copy_from_slice(rest);
    }
    mask16(&block, byte)
}

/// Bit `i` set when `block[i] == byte`: one SSE2 compare (`pcmpeqb`) and its bytes' top
/// bits packed (`pmovmskb`). LLVM makes neither of a portable compare-and-pack loop over the
/// 16 bytes, and the intrinsics can only be called in an `unsafe` block, even where SSE2 is
/// part of the target (rustc asks for `#[target_feature]` on the caller regardless, and a
/// plain function can call one of those only in `unsafe`).
#[cfg(target_arch = "x86_64")]
#[inline]
fn mask16(block: &[u8; 16], byte: u8) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};
    // Two words rather than `_mm_loadu_si128`, which would take a raw pointer: this compiles
    // to the same one unaligned load.
    let v = u128::from_le_bytes(*block);
    let (hi, lo) = ((v >> 64) as u64 as i64, v as u64 as i64);
    // SAFETY: the intrinsics take no pointer and only need SSE2, which every x86_64 CPU has
    // (it is in the x86_64 baseline this crate is compiled for, `target_feature = "sse2"`).
    #[allow(unsafe_code)]
    let bits = unsafe {
        _mm_movemask_epi8(_mm_cmpeq_epi8(
            _mm_set_epi64x(hi, lo),
            _mm_set1_epi8(byte as i8),
        ))
    };
    // `pmovmskb` sets only the low 16 bits.
    bits as u32
}

/// The name of the field line at `start` of `head` when it is plain: 1 to 15 letters, digits
/// and '-' (all `tchar`) directly followed by the colon, within the line's `line_len` bytes.
/// Its letters are lower-cased in place and its length returned, as the table walk of
/// `fields::take_field_line` would (it stops at the colon, the first byte that is not a
/// `tchar`); `None`, with nothing written, for any other line (a longer name, another
/// `tchar`, an error), which that walk then reads. One block of sixteen bytes from `start`
/// is classified at once, so the line must have sixteen bytes of the head from its start
/// (the CRLF and the lines after it count).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn lower_plain_name(head: &mut [u8], start: usize, line_len: usize) -> Option<usize> {
    let block = head.get_mut(start..)?.first_chunk_mut::<16>()?;
    let (plain, upper) = name_classes(block);
    // `plain` has 16 bits, so the count stops at 16 at most.
    let name_len = (!plain).trailing_zeros() as usize;
    if name_len == 0 || name_len >= line_len || block.get(name_len) != Some(&b':') {
        return None;
    }
    let mut upper = upper & ((1 << name_len) - 1);
    while upper != 0 {
        let at = upper.trailing_zeros() as usize;
        if let Some(b) = block.get_mut(at) {
            *b |= 0x20;
        }
        upper &= upper - 1;
    }
    Some(name_len)
}

/// The bytes of `block` that may be in a plain name (ASCII letters, digits, '-') and those
/// that are upper-case letters, as bit masks (bit `i`: `block[i]`).
#[cfg(target_arch = "x86_64")]
#[inline]
fn name_classes(block: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };
    let v = u128::from_le_bytes(*block);
    let (hi, lo) = ((v >> 64) as u64 as i64, v as u64 as i64);
    // SAFETY: as in `mask16`: no pointers, and only SSE2, which every x86_64 CPU has.
    #[allow(unsafe_code)]
    let (plain, upper) = unsafe {
        let v = _mm_set_epi64x(hi, lo);
        // `lo <= b <= hi` as signed bytes: the bytes from 0x80 are negative, so never in.
        let within = |lo: u8, hi: u8| {
            _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8((lo - 1) as i8)),
                _mm_cmplt_epi8(v, _mm_set1_epi8((hi + 1) as i8)),
            )
        };
        let upper = within(b'A', b'Z');
        let plain = _mm_or_si128(
            _mm_or_si128(within(b'a', b'z'), upper),
            _mm_or_si128(
                within(b'0', b'9'),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8)),
            ),
        );
        (_mm_movemask_epi8(plain), _mm_movemask_epi8(upper))
    };
    // `pmovmskb` sets only the low 16 bits.
    (plain as u32, upper as u32)
}

/// The portable fallback of [`lower_plain_name`]: no fast path, every name is walked.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn lower_plain_name(_head: &mut [u8], _start: usize, _line_len: usize) -> Option<usize> {
    None
}

/// Whether the bytes `at..end` of `head` may be a field value, as `field_list::valid_value`
/// judges (no CTL but HTAB, no DEL), sixteen bytes at a compare: whole blocks from `at`, then
/// the sixteen bytes that end at `end`, of which only those from where the blocks stopped
/// count. `None` when `end` is under sixteen, for the fold to judge. The fold spends ~38
/// instructions on a value of these heads (1 to 38 bytes).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn value_ok(head: &[u8], at: usize, end: usize) -> Option<bool> {
    debug_assert!(
        at <= end && end <= head.len(),
        "{at}..{end} of {}",
        head.len()
    );
    let last = head.get(end.checked_sub(16)?..end)?.first_chunk::<16>()?;
    let mut bad = 0;
    let mut from = at;
    while from + 16 < end {
        bad |= ctl_mask(head.get(from..)?.first_chunk::<16>()?);
        from += 16;
    }
    // The last `end - from` bytes of `last` are the ones left (none for an empty value).
    let left = end.saturating_sub(from);
    if left > 0 {
        bad |= ctl_mask(last) >> (16 - left);
    }
    Some(bad == 0)
}

/// The portable fallback of [`value_ok`]: the fold judges every value.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn value_ok(_head: &[u8], _at: usize, _end: usize) -> Option<bool> {
    None
}

/// Bit `i` set when `block[i]` may not be in a field value: a CTL but HTAB, or DEL.
#[cfg(target_arch = "x86_64")]
#[inline]
fn ctl_mask(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };
    let v = u128::from_le_bytes(*block);
    let (hi, lo) = ((v >> 64) as u64 as i64, v as u64 as i64);
    // SAFETY: as in `mask16`: no pointers, and only SSE2, which every x86_64 CPU has.
    #[allow(unsafe_code)]
    let bits = unsafe {
        let v = _mm_set_epi64x(hi, lo);
        // Below 0x20 as signed bytes and not negative (obs-text, from 0x80, is allowed).
        let ctl = _mm_and_si128(
            _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
            _mm_cmpgt_epi8(v, _mm_set1_epi8(-1)),
        );
        let tab = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8));
        let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        _mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(tab, ctl), del))
    };
    // `pmovmskb` sets only the low 16 bits.
    bits as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lfs(buf: &[u8], from: usize) -> Vec<usize> {
        let mut lfs = Lfs::new(buf, from);
        std::iter::from_fn(|| lfs.next_lf()).collect()
    }

    /// What `Lfs` replaces: `memchr` from the byte after each LF found.
    fn by_memchr(buf: &[u8], from: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = from;
        while let Some(p) = buf.get(pos..).and_then(|rest| memchr::memchr(b'\n', rest)) {
            out.push(pos + p);
            pos += p + 1;
        }
        out
    }

    /// Every LF at or after the start, in order, as successive `memchr` calls find them, on
    /// buffers of any length (blocks whole, cut short, shorter than one) and any start.
    #[quickcheck_macros::quickcheck]
    fn lfs_agree_with_memchr(raw: Vec<u8>, from: u8) -> bool {
        let buf: Vec<u8> = raw
            .iter()
            .map(|&b| if b % 4 == 0 { b'\n' } else { b })
            .collect();
        let from = usize::from(from) % (buf.len() + 2);
        all_lfs(&buf, from) == by_memchr(&buf, from)
    }

    /// The first occurrence as `memchr` finds it, for any byte (0 included, which must not
    /// match past the end of a short haystack).
    #[quickcheck_macros::quickcheck]
    fn find_byte_agrees_with_memchr(raw: Vec<u8>, byte: u8) -> bool {
        let hay: Vec<u8> = raw
            .iter()
            .map(|&b| if b % 16 == 0 { byte } else { b ^ byte | 1 })
            .collect();
        find_byte(byte, &hay) == memchr::memchr(byte, &hay)
            && find_byte(0, &hay) == memchr::memchr(0, &hay)
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn plain_names_only() {
        let mut head = b"Content-Type: A\r\n\r\n".to_vec();
        assert_eq!(lower_plain_name(&mut head, 0, 15), Some(12));
        assert_eq!(&head[..], b"content-type: A\r\n\r\n", "the name only");
        for line in [
            &b"x_y: 1\r\n\r\n.........."[..],
            b"X-Sixteen-Bytes-: 1\r\n\r\n",
            b" x: 1\r\n\r\n...........",
            b": 1\r\n\r\n.............",
            b"x : 1\r\n\r\n...........",
            b"Abc\r\n\r\n:............",
            b"x: 1\r\n\r\n",
        ] {
            let mut head = line.to_vec();
            let len = head.iter().position(|&b| b == b'\r').unwrap();
            assert_eq!(lower_plain_name(&mut head, 0, len), None, "{line:?}");
            assert_eq!(head, line, "nothing written");
        }
    }

    /// The block judgement of a value is the fold's, for any span of any head (CTLs, HTAB,
    /// DEL and obs-text drawn often), or it leaves the value to the fold.
    #[quickcheck_macros::quickcheck]
    fn value_blocks_agree_with_the_fold(raw: Vec<u8>, at: u8, len: u8) -> bool {
        const ALPHABET: &[u8] = b"a \t\x00\x1f\x7f\x80\xff\r~";
        let head: Vec<u8> = raw
            .iter()
            .map(|&b| {
                if b % 3 == 0 {
                    ALPHABET[usize::from(b / 3) % ALPHABET.len()]
                } else {
                    b'x'
                }
            })
            .collect();
        let at = usize::from(at) % (head.len() + 1);
        let end = (at + usize::from(len) % 40).min(head.len());
        let fold = crate::http1::valid_value(&head[at..end]);
        match value_ok(&head, at, end) {
            Some(ok) => ok == fold,
            None => end < 16 || !cfg!(target_arch = "x86_64"),
        }
    }

    #[test]
    fn block_edges() {
        for len in 0..70usize {
            for at in [0, 1, 15, 16, 17, 31, 32, 33, len.saturating_sub(1), len] {
                let mut buf = vec![b'a'; len];
                for lf in (at % 5..len).step_by(7) {
                    buf[lf] = b'\n';
                }
                assert_eq!(all_lfs(&buf, at), by_memchr(&buf, at), "{len} from {at}");
                let hay = buf.get(at..).unwrap_or_default();
                assert_eq!(find_byte(b'\n', hay), memchr::memchr(b'\n', hay));
                assert_eq!(find_byte(0, hay), None);
            }
        }
    }
}
