//! The responder on `tokio-uring`: io_uring operations with owned buffers, driven from a
//! tokio current-thread runtime that learns about completions through epoll on the ring's fd.
//!
//! Pass `tuned` as the second argument to build the ring `SINGLE_ISSUER | COOP_TASKRUN |
//! SUBMIT_ALL` instead of tokio-uring's plain ring. Not DEFER_TASKRUN, as the raw loop and
//! `monoio tuned` use: deferred completions are only posted when the issuing thread enters the
//! ring to wait, and tokio-uring waits in epoll instead, so with that flag it never sees a
//! completion (tried: wrk completes 0 requests).

use runtime_compare::{drain_front, listen_addr, parse, RECV_BUF, RESPONSE};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut urb = io_uring_06::IoUring::builder();
    if std::env::args().nth(2).as_deref() == Some("tuned") {
        urb.setup_single_issuer()
            .setup_coop_taskrun()
            .setup_submit_all();
    }
    tokio_uring::builder()
        .entries(256)
        .uring_builder(&urb)
        .start(async {
            let listener = TcpListener::bind(listen_addr())?;
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio_uring::spawn(serve(stream));
            }
        })
}

async fn serve(stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        let len = buf.len();
        if len == buf.capacity() {
            return; // a request head over 16 KiB
        }
        // Receive into the spare capacity after any partial request already held.
        let (res, slice) = stream.read(buf.slice(len..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (count, used) = parse(&buf);
        drain_front(&mut buf, used);
        let res = if count == 1 {
            stream.write_all(RESPONSE).await.0
        } else if count > 1 {
            stream.write_all(RESPONSE.repeat(count)).await.0
        } else {
            Ok(())
        };
        if res.is_err() {
            return;
        }
    }
}
