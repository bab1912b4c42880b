//! The responder on `monoio` with its io_uring driver: a thread-per-core async runtime with
//! owned-buffer ("rent") I/O, one task per connection. This is what Monolake builds on.
//!
//! monoio builds a plain ring by default. Pass `tuned` as the second argument to give it the
//! raw loop's `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` instead, which separates what the
//! runtime costs from what the ring flags are worth.

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use runtime_compare::{drain_front, listen_addr, parse, RECV_BUF, RESPONSE};

fn main() -> std::io::Result<()> {
    let mut builder = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(256);
    if std::env::args().nth(2).as_deref() == Some("tuned") {
        let mut urb = io_uring_06::IoUring::builder();
        urb.setup_single_issuer()
            .setup_defer_taskrun()
            .setup_submit_all();
        builder = builder.uring_builder(urb);
    }
    let mut rt = builder.build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen_addr())?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            monoio::spawn(serve(stream));
        }
    })
}

async fn serve(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        let len = buf.len();
        if len == buf.capacity() {
            return; // a request head over 16 KiB
        }
        // Receive into the spare capacity after any partial request already held.
        let (res, slice) = stream.read(buf.slice_mut(len..)).await;
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
            Ok(0)
        };
        if res.is_err() {
            return;
        }
    }
}
