#!/usr/bin/env python3
"""A small Docker token service for kiln's registry tests.

Issues RS256 JWTs, signed with `openssl` and carrying the signing
certificate in `x5c`, the way distribution's `auth.token` expects. Accepts
one user (Basic auth); anonymous requests get a token with no access.

usage: token_server.py PORT KEY_PEM CERT_PEM USER PASSWORD ISSUER SERVICE
"""
import base64
import http.server
import json
import subprocess
import sys
import time
import urllib.parse

PORT, KEY, CERT, USER, PASSWORD, ISSUER, SERVICE = sys.argv[1:8]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der() -> str:
    pem = open(CERT).read()
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    return body


def sign(message: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", KEY],
        input=message, capture_output=True, check=True,
    ).stdout


def token(subject: str, scopes: list) -> str:
    access = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "repository":
            actions = parts[2].split(",") if subject else []
            access.append({"type": "repository", "name": parts[1], "actions": actions})
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [cert_der()]}
    claims = {
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 10, "iat": now,
        "jti": str(time.time_ns()), "access": access,
    }
    signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    return signing_input.decode() + "." + b64url(sign(signing_input))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        subject = ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (USER, PASSWORD):
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"details":"wrong username or password"}')
                return
            subject = user
        body = json.dumps({"token": token(subject, query.get("scope", [])), "expires_in": 600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("token-server: " + (fmt % args) + "\n")


http.server.ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
