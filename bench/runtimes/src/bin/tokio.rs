//! The responder on plain `tokio` with a current-thread runtime (epoll, readiness-based), the
//! default choice in the Rust ecosystem, for reference.

use runtime_compare::{listen_addr, parse, RECV_BUF, RESPONSE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen_addr()).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(serve(stream));
        }
    })
}

async fn serve(mut stream: TcpStream) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return; // a request head over 16 KiB
        }
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let (count, used) = parse(&buf[..len]);
        buf.copy_within(used..len, 0);
        len -= used;
        let res = match count {
            0 => Ok(()),
            1 => stream.write_all(RESPONSE).await,
            n => stream.write_all(&RESPONSE.repeat(n)).await,
        };
        if res.is_err() {
            return;
        }
    }
}
