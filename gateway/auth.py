"""Who is calling: an Echo API key (checked through the storage service) or an OIDC/JWT bearer token
(verified against the issuer's JWKS). Every failure is a ``Refusal`` with the documented error code."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt

from echo.v1 import storage_pb2, storage_pb2_grpc
from gateway.config import GatewaySettings
from gateway.events import ErrorCode
from services.common import apikeys

log = logging.getLogger("echo.gateway.auth")

_USER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # what storage takes as an id


@dataclass(frozen=True)
class Principal:
    user_id: str
    via: str  # "api_key" or "jwt"
    key_id: str = ""


@dataclass
class Refusal(Exception):
    """An HTTP answer instead of the request: 401 unauthorized, 403 forbidden_origin, 429, ..."""

    status: int
    code: ErrorCode
    message: str
    retry_after_s: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.retry_after_s is not None:
            error["retry_after_s"] = self.retry_after_s
        return {"error": error}


def unauthorized(message: str) -> Refusal:
    # RFC 6750 §3: a 401 names the scheme it wants.
    return Refusal(401, ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": 'Bearer realm="echo"'})


def bearer_token(headers: dict[str, str], query: dict[str, str]) -> str:
    """The token from ``Authorization: Bearer`` or, where a header cannot be set (a browser's WebSocket or
    <audio src>), the ``access_token`` query parameter (RFC 6750 §2.3); "" when there is none."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return query.get("access_token", "").strip()


def jwt_user_id(subject: str) -> str:
    """A JWT's ``sub`` as a storage user id: itself when it fits, else a stable digest of it."""
    if _USER_ID.match(subject):
        return subject
    return "sub-" + hashlib.sha256(subject.encode()).hexdigest()[:32]


class Authenticator:
    def __init__(self, settings: GatewaySettings, storage: storage_pb2_grpc.StorageStub) -> None:
        self.settings = settings
        self.storage = storage
        self.verified: dict[str, tuple[Principal, float]] = {}  # key sha256 -> principal, when confirmed
        self.jwks: jwt.PyJWKClient | None = None
        if settings.jwt_issuer:
            url = settings.jwt_jwks_url or settings.jwt_issuer.rstrip("/") + "/.well-known/jwks.json"
            # Keys are cached (and refetched for an unknown kid), so a token costs no request per call.
            self.jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)

    async def authenticate(self, token: str) -> Principal:
        if not token:
            raise unauthorized("no bearer token: send Authorization: Bearer <token> or ?access_token=")
        if token.startswith(apikeys.PREFIX):
            return await self._api_key(token)
        if self.jwks is not None and token.count(".") == 2:
            return await self._jwt(token)
        raise unauthorized("the bearer token is not an Echo API key" + (" or a JWT" if self.jwks else ""))

    async def _api_key(self, token: str) -> Principal:
        digest = apikeys.sha256_of(token)
        try:
            key = await self.storage.LookupApiKey(
                storage_pb2.LookupApiKeyRequest(key_sha256=digest), timeout=self.settings.storage_timeout_s
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                self.verified.pop(digest, None)
                raise unauthorized("unknown API key") from None
            return self._while_storage_is_down(digest, e)
        if key.revoked_at:
            self.verified.pop(digest, None)
            raise unauthorized(f"API key {key.key_id} was revoked at {key.revoked_at}")
        principal = Principal(key.user_id, "api_key", key.key_id)
        self.verified[digest] = (principal, time.monotonic())
        return principal

    def _while_storage_is_down(self, digest: str, error: grpc.aio.AioRpcError) -> Principal:
        """Stale-if-error: storage is asked every time (a revocation applies at once), but while it is
        down a key it confirmed within ``key_grace_s`` still opens sessions, so a storage outage does
        not lock out the users it does not otherwise stop (their turns are kept and saved later)."""
        known = self.verified.get(digest)
        if known is not None and time.monotonic() - known[1] <= self.settings.key_grace_s:
            log.warning(
                "storage unavailable (%s): API key %s accepted as last confirmed",
                error.code().name,
                known[0].key_id,
            )
            return known[0]
        log.warning("API key lookup failed: %s", error.details())
        raise Refusal(
            503, ErrorCode.STORAGE_UNAVAILABLE, "keys cannot be checked now: storage is unavailable"
        )

    async def _jwt(self, token: str) -> Principal:
        assert self.jwks is not None
        settings = self.settings
        try:
            # The JWKS fetch is blocking HTTP (and RSA verification is CPU): off the event loop.
            claims = await asyncio.to_thread(self._verify, token)
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.PyJWKClientConnectionError as e:
            log.warning("JWKS of %s unreachable: %s", settings.jwt_issuer, e)
            raise Refusal(
                503, ErrorCode.AUTH_UNAVAILABLE, "the token issuer's keys cannot be fetched"
            ) from None
        except jwt.PyJWTError as e:
            raise unauthorized(f"invalid token: {e}") from None
        return Principal(jwt_user_id(str(claims["sub"])), "jwt")

    def _verify(self, token: str) -> dict[str, Any]:
        assert self.jwks is not None
        settings = self.settings
        signing_key = self.jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key.key,
            algorithms=list(settings.jwt_algorithms),
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": ["exp", "iss", "sub"], "verify_aud": False},
        )
        audience = settings.jwt_audience
        if audience:
            # ID tokens carry the client in "aud"; Cognito's access tokens carry it in "client_id".
            aud = claims.get("aud", [])
            auds = [aud] if isinstance(aud, str) else list(aud)
            if audience not in auds and claims.get("client_id") != audience:
                raise jwt.InvalidAudienceError(f"the token is not for audience {audience!r}")
        return claims
