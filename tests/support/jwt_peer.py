"""The JWT end-to-end test's peer (tests/e2e_jwt.rs), written against PyJWT, not Trellis:

- makes an RSA key, mints RS256 tokens with PyJWT for issuer ISSUER (one valid, one expired an
  hour ago) and publishes the public key as a JWKS (PyJWT's RSAAlgorithm.to_jwk);
- serves HTTP on 127.0.0.1: GET /jwks.json is the JWKS (what a RequestAuthentication jwksUri
  points at; each fetch is counted), GET /fetches says how many fetches there were, and any
  other request is answered 200 with the request's headers as a JSON object (it is the
  workload behind the sidecar, so the test sees what reached it);
- prints one JSON line with the port and the tokens, then serves until killed.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError as e:  # the Rust test turns this into a failure naming what is missing
    print(json.dumps({"error": f"missing Python module: {e.name} (pip install pyjwt cryptography)"}), flush=True)
    sys.exit(3)

ISSUER = "https://trellis-e2e.example"

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
jwk["kid"] = "e2e-1"
JWKS = json.dumps({"keys": [jwk]}).encode()
now = int(time.time())


def mint(sub, exp, **extra):
    claims = {"iss": ISSUER, "sub": sub, "iat": now, "exp": exp, **extra}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "e2e-1"})


fetches = 0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        global fetches
        if self.path == "/jwks.json":
            fetches += 1
            body, kind = JWKS, "application/json"
        elif self.path == "/fetches":
            body, kind = str(fetches).encode(), "text/plain"
        else:
            seen = {k.lower(): v for k, v in self.headers.items()}
            seen[":path"] = self.path
            body = json.dumps(seen).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(
    json.dumps(
        {
            "port": server.server_address[1],
            "issuer": ISSUER,
            "valid": mint("alice", now + 3600, groups=["dev"]),
            "expired": mint("alice", now - 3600),
        }
    ),
    flush=True,
)
server.serve_forever()
