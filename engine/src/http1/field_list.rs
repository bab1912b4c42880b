//! A message head's fields as an ordered flat list: what the engine reads, edits and forwards.
//!
//! `http::HeaderMap` cost the request path a hash per field, a `HeaderName` and a
//! `HeaderValue` built and validated per field (after the parser had already validated the
//! bytes), and a swap-remove scan per hop-by-hop field. Heads hold a dozen fields, so a list
//! scanned by name is cheaper than any map. Received fields are offsets into the head's own
//! bytes (one shared `Bytes`, no reference count per field); fields the proxy adds hold their
//! own `Bytes` (static for the proxy's own names and values).
//!
//! The list keeps arrival order, duplicates included (several `set-cookie`), and removal keeps
//! the order of what remains. Names are lower-case: the parser lower-cases them in the
//! received buffer, and [`FieldName`] does for names the engine adds. Lookups take a name in
//! any case. Values are trusted to be valid field values (HTAB, SP, VCHAR, obs-text): the
//! parser checked received ones, configuration checks configured ones once, and the engine
//! checks what it builds at run time with [`valid_value`].

use std::fmt;

use bytes::Bytes;

use super::syntax::is_token;

/// The longest field name accepted (what `http::HeaderName` accepted).
pub(crate) const MAX_NAME_LEN: usize = (1 << 16) - 1;

/// A lower-case field name (a token).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldName(Bytes);

impl FieldName {
    /// `name` must be a lower-case token (checked in tests of the constants that use it).
    pub const fn from_static(name: &'static str) -> FieldName {
        FieldName(Bytes::from_static(name.as_bytes()))
    }

    /// A name from text: `None` unless it is a token; lower-cased.
    pub fn new(name: &str) -> Option<FieldName> {
        let raw = name.as_bytes();
        if !is_token(raw) || raw.len() > MAX_NAME_LEN {
            return None;
        }
        Some(FieldName(Bytes::from(raw.to_ascii_lowercase())))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl AsRef<[u8]> for FieldName {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `value` may be a field value: no CTL but HTAB, no DEL (what `HeaderValue` required).
/// Branch-free, so it vectorises over a whole value.
pub fn valid_value(value: &[u8]) -> bool {
    value.iter().fold(true, |ok, &b| {
        ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t'))
    })
}

/// A value as text when it is visible ASCII, HTAB or SP (what `HeaderValue::to_str` allowed).
pub fn value_str(value: &[u8]) -> Option<&str> {
    let ascii = value.iter().fold(true, |ok, &b| {
        ok & ((0x20..0x7f).contains(&b) | (b == b'\t'))
    });
    if ascii {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Where a name or value lies.
#[derive(Clone)]
enum Text {
    /// `at..at + len` of the received head.
    Head {
        at: usize,
        len: usize,
    },
    Own(Bytes),
}

#[derive(Clone)]
struct Field {
    name: Text,
    value: Text,
}

impl Text {
    /// The length of the text, read without looking the bytes up (received spans always lie
    /// inside the head: see [`Fields::set_head`]).
    fn len(&self) -> usize {
        match self {
            Text::Head { len, .. } => *len,
            Text::Own(b) => b.len(),
        }
    }
}

fn text<'a>(head: &'a Bytes, t: &'a Text) -> &'a [u8] {
    match t {
        Text::Head { at, len } => head.get(*at..*at + *len).unwrap_or_default(),
        Text::Own(b) => b,
    }
}

/// Whether `f` is named `asked` (any case). The lengths first, from the span: most fields of
/// a search differ in length, and they are turned away without their bytes looked up.
fn named(head: &Bytes, f: &Field, asked: &[u8]) -> bool {
    f.name.len() == asked.len() && text(head, &f.name).eq_ignore_ascii_case(asked)
}

/// A head's fields in order; see the module documentation.
#[derive(Clone, Default)]
pub struct Fields {
    /// The received head that `Text::Head` spans point into (empty for built lists).
    head: Bytes,
    list: Vec<Field>,
}

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    pub fn with_capacity(n: usize) -> Fields {
        Fields {
            head: Bytes::new(),
            list: Vec::with_capacity(n),
        }
    }

    /// Makes `head` the buffer that received fields ([`Fields::push_received`]) point into.
    /// The parsers push the fields while the head is still mutable (they lower-case names as
    /// they validate them) and set it once it is frozen, so the spans may come first.
    pub(crate) fn set_head(&mut self, head: Bytes) {
        debug_assert!(self.head.is_empty(), "spans would point into the old head");
        debug_assert!(
            self.list
                .iter()
                .all(|f| [&f.name, &f.value].into_iter().all(|t| match t {
                    Text::Head { at, len } => at + len <= head.len(),
                    Text::Own(_) => true,
                })),
            "a received span lies outside the head"
        );
        self.head = head;
    }

    /// Appends a received field: `name` and `value` are ranges of the head given (before or
    /// after) to [`Fields::set_head`], the name already lower-case and both already validated.
    pub(crate) fn push_received(&mut self, name: (usize, usize), value: (usize, usize)) {
        debug_assert!(
            self.head.is_empty()
                || (name.0 + name.1 <= self.head.len() && value.0 + value.1 <= self.head.len())
        );
        self.list.push(Field {
            name: Text::Head {
                at: name.0,
                len: name.1,
            },
            value: Text::Head {
                at: value.0,
                len: value.1,
            },
        });
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The bytes the fields take as `name: value\r\n` lines, from the lengths alone (a
    /// reserve hint for the encoder, which wrote it by looking every name and value up).
    pub(crate) fn lines_len(&self) -> usize {
        self.list
            .iter()
            .map(|f| f.name.len() + f.value.len() + 4)
            .sum()
    }

    pub fn capacity(&self) -> usize {
        self.list.capacity()
    }

    pub fn reserve(&mut self, n: usize) {
        self.list.reserve(n);
    }

    /// Forgets every field and the received head.
    pub fn clear(&mut self) {
        self.list.clear();
        self.head = Bytes::new();
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + '_ {
        self.list
            .iter()
            .map(|f| (text(&self.head, &f.name), text(&self.head, &f.value)))
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &(impl AsRef<[u8]> + ?Sized)) -> Option<&[u8]> {
        let name = name.as_ref();
        let f = self.list.iter().find(|f| named(&self.head, f, name))?;
        Some(text(&self.head, &f.value))
    }

    /// The first value of `name` as a `Bytes` that shares the received head.
    pub fn get_shared(&self, name: &(impl AsRef<[u8]> + ?Sized)) -> Option<Bytes> {
        let name = name.as_ref();
        let f = self.list.iter().find(|f| named(&self.head, f, name))?;
        Some(match &f.value {
            Text::Head { at, len } => self.head.slice(*at..*at + *len),
            Text::Own(b) => b.clone(),
        })
    }

    /// Every value of `name` (any case), in order.
    pub fn get_all<'a, 'n, N: AsRef<[u8]> + ?Sized>(
        &'a self,
        name: &'n N,
    ) -> impl DoubleEndedIterator<Item = &'a [u8]> + use<'a, 'n, N> {
        let head = &self.head;
        let name = name.as_ref();
        self.list
            .iter()
            .filter(move |f| named(head, f, name))
            .map(move |f| text(head, &f.value))
    }

    pub fn contains(&self, name: &(impl AsRef<[u8]> + ?Sized)) -> bool {
        let name = name.as_ref();
        self.list.iter().any(|f| named(&self.head, f, name))
    }

    /// Whether a field is named `a`, and whether one is named `b` (any case), in one pass
    /// over the list: a field whose name has neither length is turned away without its name
    /// looked up (comparing every name from [`Fields::iter`] looked each one up).
    #[inline]
    pub fn contains_each(&self, a: &[u8], b: &[u8]) -> (bool, bool) {
        let (mut has_a, mut has_b) = (false, false);
        for f in &self.list {
            has_a |= named(&self.head, f, a);
            has_b |= named(&self.head, f, b);
        }
        (has_a, has_b)
    }

    /// Adds a field after the others (a value checked by the caller: see the module docs).
    pub fn append(&mut self, name: FieldName, value: Bytes) {
        debug_assert!(valid_value(&value), "{value:?}");
        self.list.push(Field {
            name: Text::Own(name.0),
            value: Text::Own(value),
        });
    }

    /// Sets `name` to `value`: the first field of that name takes the value where it stands
    /// and later ones go; without one, the field is appended (as `HeaderMap::insert` did).
    pub fn insert(&mut self, name: FieldName, value: Bytes) {
        debug_assert!(valid_value(&value), "{value:?}");
        let head = &self.head;
        let first = self.list.iter().position(|f| named(head, f, &name.0));
        let Some(first) = first else {
            self.append(name, value);
            return;
        };
        if let Some(f) = self.list.get_mut(first) {
            f.value = Text::Own(value);
        }
        let mut index = 0;
        let head = &self.head;
        self.list.retain(|f| {
            index += 1;
            index - 1 <= first || !named(head, f, &name.0)
        });
    }

    /// Removes every field named `name` (any case), keeping the others' order. Returns whether
    /// there was one.
    pub fn remove(&mut self, name: &(impl AsRef<[u8]> + ?Sized)) -> bool {
        let name = name.as_ref();
        let head = &self.head;
        // Most removals find nothing (every request is cleared of x-forwarded-client-cert,
        // which few clients send): a search answers those without `retain`'s pass, and when
        // there is one, the fields before it are kept without being looked at again.
        let Some(first) = self.list.iter().position(|f| named(head, f, name)) else {
            return false;
        };
        let mut index = 0;
        self.list.retain(|f| {
            index += 1;
            index <= first || !named(head, f, name)
        });
        true
    }

    /// Keeps the fields for which `keep(name, value)` holds, in order.
    ///
    /// A loop of its own, inlined, rather than `Vec::retain`: the hop-by-hop pass runs it on
    /// every head, and through `Vec::retain` (whose per-field closure was not inlined) it cost
    /// ~80 instructions a field; here a value `keep` does not read is never looked up. Kept
    /// fields are swapped forward in order, and the removed ones, gathered behind them, are
    /// dropped by the truncation.
    #[inline]
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let head = &self.head;
        let mut kept = 0;
        for at in 0..self.list.len() {
            let Some(f) = self.list.get(at) else {
                break;
            };
            if keep(text(head, &f.name), text(head, &f.value)) {
                if kept != at {
                    self.list.swap(kept, at);
                }
                kept += 1;
            }
        }
        self.list.truncate(kept);
    }
}

/// A stretch of a field list ready to be written: received lines that are already exactly
/// what the encoder would write, or one field to serialise.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Consecutive received lines, each exactly `name: value\r\n`, copied as they arrived.
    Lines(&'a [u8]),
    /// A field to write as `name: value\r\n`.
    Field(&'a [u8], &'a [u8]),
}

impl Field {
    /// The received line `name: value\r\n` this field spans, when the head holds it in exactly
    /// that form (one SP after the colon, no trailing OWS): then the line is its encoding.
    fn canonical_line(&self, head: &Bytes) -> Option<(usize, usize)> {
        let (Text::Head { at: n, len: nl }, Text::Head { at: v, len: vl }) =
            (&self.name, &self.value)
        else {
            return None;
        };
        let (name_end, value_end) = (n + nl, v + vl);
        let framed = name_end + 2 == *v
            && head.get(name_end..*v) == Some(&b": "[..])
            && head.get(value_end..value_end + 2) == Some(&b"\r\n"[..]);
        framed.then_some((*n, value_end + 2))
    }
}

impl Fields {
    /// The fields in order as [`Piece`]s: a received field whose line is already canonical
    /// joins the run of canonical lines before it when it directly follows it in the head, so
    /// an unedited head is written with one copy per run instead of four per field.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = Piece<'_>> + '_ {
        let head = &self.head;
        let mut rest = self.list.as_slice();
        std::iter::from_fn(move || {
            let (first, tail) = rest.split_first()?;
            rest = tail;
            let Some((start, mut end)) = first.canonical_line(head) else {
                return Some(Piece::Field(
                    text(head, &first.name),
                    text(head, &first.value),
                ));
            };
            while let Some((next, tail)) = rest.split_first() {
                match next.canonical_line(head) {
                    Some((s, e)) if s == end => {
                        end = e;
                        rest = tail;
                    }
                    _ => break,
                }
            }
            Some(Piece::Lines(head.get(start..end).unwrap_or_default()))
        })
    }
}

/// Equal when they hold the same fields in the same order (wherever the bytes live).
impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}

impl Fields {
    /// Appends a field given as text (copied), for tests and tools: `false`, and nothing
    /// added, when the name is not a token or the value not a valid field value.
    pub fn append_text(&mut self, name: &str, value: &str) -> bool {
        let Some(name) = FieldName::new(name) else {
            return false;
        };
        if !valid_value(value.as_bytes()) {
            return false;
        }
        self.append(name, Bytes::copy_from_slice(value.as_bytes()));
        true
    }
}

/// Fields from `(name, value)` text, for tests and tools: names that are not tokens and
/// values that are not valid field values are skipped.
impl<'a> FromIterator<(&'a str, &'a str)> for Fields {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Fields {
        let mut fields = Fields::new();
        for (name, value) in iter {
            fields.append_text(name, value);
        }
        fields
    }
}

#[cfg(test)]
#[path = "field_list_tests.rs"]
mod tests;
