//! One connection of the push protocol: length-prefixed frames each way, a keepalive frame
//! when this side has been quiet for the keepalive interval, and the connection given up when
//! the peer has been silent for the keepalive timeout or a write does not finish in time.
//!
//! [`Link::next`] only reads and waits, so it is cancel-safe: the server waits on it beside its
//! queue of frames to write. Writes ([`Link::send`]) are awaited to the end (a half-written
//! frame would corrupt the stream), bounded by the write timeout.

use std::io;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{sleep_until, timeout, Duration, Instant};

use super::Keepalive;
use crate::plane::push::wire::{FrameDecoder, FrameError, KEEPALIVE};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("nothing heard for {0:?}")]
    Silent(Duration),
    #[error("a write did not finish within {0:?}")]
    WriteTimeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("unreadable frame: {0}")]
    Frame(#[from] FrameError),
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

/// What [`Link::next`] woke up for.
#[derive(Debug)]
pub enum Wake<M> {
    Message(M),
    /// Nothing was sent for the keepalive interval: send [`Link::send_keepalive`].
    KeepaliveDue,
}

/// A connection's two halves, its decoder and its timers.
pub struct Link<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    decoder: FrameDecoder,
    buffer: Vec<u8>,
    keepalive: Keepalive,
    write_timeout: Duration,
    last_heard: Instant,
    next_keepalive: Instant,
}

impl<S: AsyncRead + AsyncWrite> Link<S> {
    pub fn new(stream: S, keepalive: Keepalive, write_timeout: Duration) -> Self {
        debug_assert!(
            keepalive.interval < keepalive.timeout,
            "a peer would time out between two keepalives"
        );
        let (reader, writer) = tokio::io::split(stream);
        let now = Instant::now();
        Link {
            reader,
            writer,
            decoder: FrameDecoder::default(),
            buffer: vec![0; 64 * 1024],
            keepalive,
            write_timeout,
            last_heard: now,
            next_keepalive: now + keepalive.interval,
        }
    }

    /// The next message, or a keepalive to send; an error when the connection is over.
    pub async fn next<M: for<'de> Deserialize<'de>>(&mut self) -> Result<Wake<M>, LinkError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Wake::Message(message));
            }
            let silent_until = self.last_heard + self.keepalive.timeout;
            tokio::select! {
                // Biased: the same inputs wake the same branch (turmoil runs are replayable).
                biased;
                read = self.reader.read(&mut self.buffer) => match read? {
                    0 => return Err(LinkError::Closed),
                    n => {
                        self.decoder.push(&self.buffer[..n]);
                        self.last_heard = Instant::now();
                    }
                },
                _ = sleep_until(self.next_keepalive) => return Ok(Wake::KeepaliveDue),
                _ = sleep_until(silent_until) => {
                    return Err(LinkError::Silent(self.keepalive.timeout))
                }
            }
        }
    }

    /// Write one frame (an encoded message) whole.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        match timeout(self.write_timeout, self.writer.write_all(frame)).await {
            Ok(written) => written?,
            Err(_) => return Err(LinkError::WriteTimeout(self.write_timeout)),
        }
        self.next_keepalive = Instant::now() + self.keepalive.interval;
        Ok(())
    }

    pub async fn send_keepalive(&mut self) -> Result<(), LinkError> {
        self.send(&KEEPALIVE).await
    }
}
