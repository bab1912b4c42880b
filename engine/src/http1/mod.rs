//! HTTP/1.1 codec (RFC 9112): parsing and encoding message heads, streaming body framing.
