"""Tokens for the end-to-end tests: API keys created through the real storage service, and RS256 JWTs
from a JWKS endpoint the test serves itself on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from echo.v1 import storage_pb2, storage_pb2_grpc
from services.common import apikeys
from services.common.service_auth import blocking_service_channel
from tests.servicetools import SERVICE_TOKEN


def create_key(storage_address: str, user_id: str, label: str = "tests") -> tuple[str, str]:
    """A new API key of ``user_id``, stored (hashed) by the storage service; returns (key, key_id)."""
    key, key_id, digest = apikeys.generate(user_id)
    with blocking_service_channel(storage_address, SERVICE_TOKEN) as channel:
        storage_pb2_grpc.StorageStub(channel).CreateApiKey(
            storage_pb2.ApiKey(key_id=key_id, user_id=user_id, key_sha256=digest, label=label), timeout=10
        )
    return key, key_id


def revoke_key(storage_address: str, key_id: str) -> None:
    with blocking_service_channel(storage_address, SERVICE_TOKEN) as channel:
        storage_pb2_grpc.StorageStub(channel).RevokeApiKey(
            storage_pb2.RevokeApiKeyRequest(key_id=key_id), timeout=10
        )


def auth_headers(token: str | None = None) -> dict[str, str]:
    """The Authorization header for ``token``, by default the session's key (ECHO_API_KEY)."""
    return {"Authorization": f"Bearer {token if token is not None else os.environ['ECHO_API_KEY']}"}


class Issuer:
    """An OIDC issuer's signing side: an RSA key, its JWKS, and tokens signed with it."""

    def __init__(self, url: str, kid: str = "test-key") -> None:
        self.url = url
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}

    def token(self, sub: str = "oidc-user-1", lifetime_s: float = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "sub": sub, "iat": now, "exp": now + int(lifetime_s), **claims}
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


@contextmanager
def jwks_server(issuer: Issuer) -> Iterator[str]:
    """Serve ``issuer``'s JWKS on a free port; yields its URL."""
    body = json.dumps(issuer.jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
