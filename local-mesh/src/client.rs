//! A blocking keep-alive HTTP/1.1 client for the self-check and the end-to-end tests.
//!
//! One connection, reused across requests; if the server closed it (said `connection: close`,
//! or the connection turned out dead before a byte of the response arrived), the next request
//! opens a fresh one, as any keep-alive client does.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::http::{framing, read_body, read_head, wants_close, Framing};

/// A response as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A keep-alive client bound to one server address.
pub struct HttpClient {
    addr: SocketAddr,
    conn: Option<Connection>,
    timeout: Duration,
    /// Connections opened so far.
    connects: u64,
}

impl HttpClient {
    /// Connect to `addr` (with a 10 s I/O timeout).
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let mut c = HttpClient {
            addr,
            conn: None,
            timeout: Duration::from_secs(10),
            connects: 0,
        };
        c.open()?;
        Ok(c)
    }

    /// Connections opened so far (1 while keep-alive holds).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    fn open(&mut self) -> io::Result<()> {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let writer = stream.try_clone()?;
        self.conn = Some(Connection {
            reader: BufReader::new(stream),
            writer,
        });
        self.connects += 1;
        Ok(())
    }

    /// Send one request and read its response. `body` is sent with `content-length` when
    /// non-empty (or when the method is POST/PUT/PATCH).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        authority: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let reused = self.conn.is_some();
        match self.try_request(method, path, authority, headers, body) {
            Err(e) if reused && is_stale(&e) => {
                // The server closed the idle connection: retry once on a new one.
                self.conn = None;
                self.try_request(method, path, authority, headers, body)
            }
            other => other,
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        authority: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        if self.conn.is_none() {
            self.open()?;
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no connection"))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        conn.writer.write_all(&out)?;

        let raw = read_head(&mut conn.reader)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response")
        })?;
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hs);
        if !resp
            .parse(&raw)
            .map_err(|e| crate::http::invalid(&e.to_string()))?
            .is_complete()
        {
            return Err(crate::http::invalid("incomplete response head"));
        }
        let status = resp.code.unwrap_or(0);
        let close = wants_close(resp.headers, resp.version);
        let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
        let f = if no_body {
            Framing::None
        } else {
            framing(resp.headers, Framing::UntilClose)?
        };
        let headers = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let body = read_body(&mut conn.reader, f)?;
        if close || f == Framing::UntilClose {
            self.conn = None;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}
