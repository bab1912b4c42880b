"""A TLS client that shows certificate renewal (tests/e2e_mtls.rs, tests/e2e_plane_mtls.rs),
written with Python's ssl module, not Trellis.

Usage: renewal_probe.py ROOT CHAIN KEY PORT. Opens a mutual-TLS connection to 127.0.0.1:PORT and
prints `first <sha256 of the server certificate> <status line>`; after a line on stdin it asks
again on the same connection (`same-connection <status line>`), then on a new one
(`new-connection <sha256> <status line>`), so the test sees whether established connections
survive a renewal and new ones get the new certificate.
"""

import hashlib
import socket
import ssl
import sys

root, chain, key, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(root)
ctx.load_cert_chain(chain, key)


def connect():
    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    return tls, hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def ask(tls):
    tls.sendall(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"reviews\n"):
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0].decode()


old, before = connect()
print("first", before, ask(old), flush=True)
sys.stdin.readline()
print("same-connection", ask(old), flush=True)
new, after = connect()
print("new-connection", after, ask(new), flush=True)
