//! Deterministic bulk content and its SHA-256, streamed: 100 MB bodies are generated on the fly
//! and hashed by `sha256sum` (coreutils, an implementation nobody here wrote, and fast even when
//! the tests are built without optimisation), so no test holds a whole body in memory.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Bytes of one generated block; each block is a fixed pseudo-random pattern stamped with its
/// index, so a lost, repeated or reordered block changes the hash.
const BLOCK: usize = 64 * 1024;

/// `len` deterministic bytes, readable in any chunk size.
pub struct Content {
    pattern: Vec<u8>,
    block: Vec<u8>,
    len: u64,
    pos: u64,
}

impl Content {
    pub fn new(len: u64) -> Self {
        // xorshift64: a cheap, fixed sequence.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut pattern = Vec::with_capacity(BLOCK);
        while pattern.len() < BLOCK {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pattern.extend_from_slice(&x.to_le_bytes());
        }
        Content {
            block: pattern.clone(),
            pattern,
            len,
            pos: 0,
        }
    }

    fn stamp(&mut self, index: u64) {
        self.block.copy_from_slice(&self.pattern);
        self.block[..8].copy_from_slice(&index.to_le_bytes());
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let offset = (self.pos % BLOCK as u64) as usize;
        if offset == 0 {
            self.stamp(self.pos / BLOCK as u64);
        }
        let left = (self.len - self.pos).min((BLOCK - offset) as u64) as usize;
        let n = left.min(buf.len());
        buf[..n].copy_from_slice(&self.block[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// A running `sha256sum` reading standard input.
pub struct Hasher {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Hasher {
    pub fn new() -> Self {
        super::tools::require("sha256sum");
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum starts");
        let stdin = child.stdin.take();
        Hasher {
            child: Some(child),
            stdin,
        }
    }

    /// Close the input and return the hex digest.
    pub fn finish(mut self) -> io::Result<String> {
        drop(self.stdin.take());
        let child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("hasher finished"))?;
        digest_of(&child.wait_with_output()?.stdout)
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::Error::other("hasher finished")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// The first word of `sha256sum`'s output.
pub fn digest_of(stdout: &[u8]) -> io::Result<String> {
    let text = String::from_utf8_lossy(stdout);
    let digest = text.split_whitespace().next().unwrap_or("");
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest.to_string())
    } else {
        Err(io::Error::other(format!("sha256sum printed {text:?}")))
    }
}

/// SHA-256 of `Content::new(len)`.
pub fn content_sha256(len: u64) -> String {
    let mut h = Hasher::new();
    io::copy(&mut Content::new(len), &mut h).expect("hash content");
    h.finish().expect("sha256sum digest")
}
