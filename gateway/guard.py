"""The gate every HTTP request and WebSocket upgrade passes: Host (DNS rebinding), Origin (cross-site
WebSockets), bearer token, and the REST rate limit; then the security headers on every response.

One ASGI middleware, so no route can be added without it: the public paths are listed here and
everything else needs a token. A refusal is answered before the upgrade, in the REST error shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.auth import Authenticator, Refusal, bearer_token
from gateway.config import GatewaySettings
from gateway.events import ErrorCode, ProtocolError
from gateway.quotas import Quotas

log = logging.getLogger("echo.gateway.guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Reachable without a token: the web page (it holds no data; it asks for a token), the protocol's
# schema, health probes and the API docs.
PUBLIC_PATHS = frozenset(
    {"/", "/favicon.ico", "/healthz", "/readyz", "/v1/protocol.schema.json", "/docs", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/static/",)
# Load balancer probes name the task by its IP address: no Host check there (they return no data).
HOST_EXEMPT = frozenset({"/healthz", "/readyz"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # The web client's URL may carry ?token=: never send it on to another site.
    (b"referrer-policy", b"no-referrer"),
]


def host_name(host: str) -> str:
    """The name in a Host header or an origin's netloc, without port: "[::1]:8080" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        settings: GatewaySettings,
        authenticator: Callable[[], Authenticator],
        quotas: Callable[[], Quotas],
    ) -> None:
        self.app = app
        self.authenticator = authenticator  # made with the app's gRPC channels, at startup
        self.quotas = quotas
        self.hosts = LOOPBACK_HOSTS | {h.lower() for h in settings.allowed_hosts}
        if settings.host not in ("", "0.0.0.0", "::"):
            self.hosts |= {host_name(settings.host)}
        self.origins = {o.rstrip("/").lower() for o in settings.allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self.check(scope)
        except Refusal as refusal:
            if refusal.status >= 500 or refusal.status == 429:
                log.info("%s %s refused: %s", scope["type"], scope["path"], refusal.message)
            await deny(scope, receive, send, refusal)
            return
        await self.app(scope, receive, self.with_headers(send) if scope["type"] == "http" else send)

    async def check(self, scope: Scope) -> None:
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path not in HOST_EXEMPT and host_name(headers.get("host", "")) not in self.hosts:
            raise Refusal(
                400, ErrorCode.INVALID_HOST, f"this gateway does not serve host {headers.get('host', '')!r}"
            )
        if scope["type"] == "websocket":
            origin = headers.get("origin")
            if origin is not None and not self.origin_allowed(origin):
                raise Refusal(403, ErrorCode.FORBIDDEN_ORIGIN, f"WebSocket origin {origin!r} is not allowed")
        if public(path):
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        principal = await self.authenticator().authenticate(bearer_token(headers, query))
        scope.setdefault("state", {})["principal"] = principal
        if scope["type"] == "http":
            try:
                self.quotas().admit_request(principal.user_id)
            except ProtocolError as e:
                raise Refusal(429, e.code, e.message, e.retry_after_s) from None

    def origin_allowed(self, origin: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and host_name(parts.netloc) in self.hosts

    @staticmethod
    def with_headers(send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        return sending


async def deny(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    body = json.dumps(refusal.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    headers += SECURITY_HEADERS
    if refusal.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, round(refusal.retry_after_s))).encode()))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        # The WebSocket Denial Response extension: a real HTTP answer instead of the upgrade.
        await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without it answers the refused handshake with 403
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})
