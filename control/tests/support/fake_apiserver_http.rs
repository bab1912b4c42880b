//! The fake API server's HTTP/1.1 answers: a whole JSON body, a Kubernetes `404` Status, and
//! one event of a chunked watch stream.

use std::io::Write;
use std::net::TcpStream;

use serde_json::{json, Value};

pub fn respond(mut stream: TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub fn not_found(stream: TcpStream) {
    respond(
        stream,
        "404 Not Found",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound", "details": {}, "code": 404}),
    );
}

pub fn chunk(stream: &mut TcpStream, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
    stream.flush()
}
