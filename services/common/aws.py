"""AWS plumbing shared by the AWS backends: aioboto3 sessions and one error mapping.

Endpoints come only from the SDK's own variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``),
which botocore reads itself; so the same settings point Echo at AWS or at a local stand-in. The one client
that is not botocore (``amazon-transcribe``) gets the same variables resolved here by ``endpoint_url``.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from services.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
)

DEFAULT_REGION = "us-east-1"
# Network failures under the SDKs: refused or reset connections, timeouts, DNS, TLS. Other OSErrors (a
# missing file, a permission) are not the network's fault.
_TRANSPORT_ERRORS = ConnectionError | TimeoutError | socket.gaierror | ssl.SSLError

# AWS error codes by the Echo error they become. Codes differ per service for the same meaning.
_UNAUTHENTICATED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "AuthFailure",
    "UnauthorizedException",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "Forbidden", "AllAccessDisabled", "AccountProblem"}
_THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "LimitExceededException",
    "ServiceQuotaExceededException",
    "TransactionInProgressException",
}
_NOT_FOUND = {
    "ResourceNotFoundException",
    "NotFoundException",
    "NoSuchKey",
    "NoSuchBucket",
    "NoSuchEntity",
    "NoSuchUpload",
    "LexiconNotFoundException",
    "EngineNotSupportedException",
}
# Bedrock's model errors: the model (not the request) failed, so another model may well answer.
_MODEL_FAILED = {
    "ModelErrorException",
    "ModelStreamErrorException",
    "ModelNotReadyException",
    "ModelTimeoutException",
}
_UNAVAILABLE = _MODEL_FAILED | {
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalServerException",
    "InternalServerError",
    "InternalFailure",
    "InternalFailureException",
    "InternalError",
    "ServiceFailureException",
    "RequestTimeout",
    "RequestTimeoutException",
}


def region(explicit: str | None = None) -> str:
    """The region to use: an explicit one, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else us-east-1."""
    return explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def endpoint_url(service_id: str) -> str | None:
    """The endpoint the SDK would use for ``service_id`` ("Transcribe Streaming", "S3", ...), following
    the SDK's service-specific endpoint variables, or None for AWS's own endpoint."""
    specific = "AWS_ENDPOINT_URL_" + service_id.upper().replace(" ", "_").replace("-", "_")
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get(specific) or os.environ.get("AWS_ENDPOINT_URL") or None


def session(region_name: str | None = None) -> Any:
    """An aioboto3 session; credentials come from the SDK's usual chain (env, profile, role)."""
    import aioboto3

    return aioboto3.Session(region_name=region(region_name))


@asynccontextmanager
async def client(
    service: str, region_name: str | None = None, aws_session: Any = None, **config: Any
) -> AsyncIterator[Any]:
    """``async with client("s3") as s3``: an aiobotocore client. Endpoint variables apply as in the SDK."""
    sess = aws_session or session(region_name)
    with aws_errors(f"{service} client"):
        async with sess.client(service, region_name=region(region_name), config=sdk_config(**config)) as c:
            yield c


def sdk_config(**config: Any) -> Any:
    """Echo's botocore Config: short timeouts and a few quick retries (the SDK's own default for
    DynamoDB is 10 retries, ~25 s of backoff while a voice turn waits). Keyword arguments override."""
    from botocore.config import Config

    return Config(
        connect_timeout=config.pop("connect_timeout", 5),
        read_timeout=config.pop("read_timeout", 60),
        retries=config.pop("retries", {"max_attempts": 2, "mode": "standard"}),
        **config,
    )


async def frozen_credentials(aws_session: Any) -> Any:
    """(access_key, secret_key, token) from the session's chain; Unauthenticated when there are none."""
    creds = await aws_session.get_credentials()
    if creds is None:
        raise Unauthenticated(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role"
        )
    return await creds.get_frozen_credentials()


def error_code(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or "")
    # Event-stream exception frames name errors in camelCase ("throttlingException").
    return code[:1].upper() + code[1:]


def map_error(error: BaseException, operation: str) -> ServiceError:
    """One AWS SDK failure as the Echo error a client can act on; the message names the operation.
    Anything that is not an SDK or transport failure (a TypeError, a KeyError: a bug) is re-raised
    unchanged, so that it ends as INTERNAL instead of looking like an outage that triggers fallback."""
    from botocore import exceptions as bx

    if isinstance(error, ServiceError):
        return error
    if not _is_sdk_error(error):
        raise error
    if isinstance(error, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return Unauthenticated(f"{operation}: no usable AWS credentials ({error})")
    if isinstance(error, bx.NoRegionError):
        return InvalidArgument(f"{operation}: no AWS region; set AWS_REGION")
    if isinstance(error, bx.ParamValidationError):
        return InvalidArgument(f"{operation}: {error}")
    if isinstance(error, bx.EndpointConnectionError | bx.ConnectionError | bx.HTTPClientError):
        return Unavailable(f"{operation}: cannot reach AWS: {error}")
    if isinstance(error, bx.ClientError):
        code = error_code(error)
        response = getattr(error, "response", {}) or {}
        message = (response.get("Error") or {}).get("Message") or str(error)
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        return _by_code(code, status, f"{operation} failed: {code or status}: {message}")
    # amazon-transcribe's own exceptions carry the AWS error name as their class name, except the one
    # it raises for errors it has no class for (AccessDeniedException, UnrecognizedClientException,
    # ...), which carries the AWS error code and HTTP status instead.
    name = type(error).__name__
    module = type(error).__module__ or ""
    if module.startswith("amazon_transcribe"):
        message = getattr(error, "message", "") or str(error)
        code = str(getattr(error, "error_code", "") or name)
        status = int(getattr(error, "status_code", 0) or 0)
        return _by_code(code, status, f"{operation} failed: {code}: {message}")
    if module.startswith(("awscrt", "aiohttp")) or isinstance(error, _TRANSPORT_ERRORS):
        return Unavailable(f"{operation}: cannot reach AWS: {name}: {error}")
    return Unavailable(f"{operation} failed in the AWS SDK: {name}: {error}")


def _by_code(code: str, status: int, message: str) -> ServiceError:
    lowered = message.lower()
    if code in _UNAUTHENTICATED or status == 401:
        return Unauthenticated(message)
    if code in _DENIED or status == 403:
        return PermissionDenied(message)
    if code in _THROTTLED or status == 429:
        return ResourceExhausted(message)
    if code in _NOT_FOUND or status == 404:
        return NotFound(message)
    # Bedrock answers a bad model id with a ValidationException that says so. Like an unknown model of
    # the local backends (and an unknown voice), that is NOT_FOUND: the request was well formed.
    if code == "ValidationException" and ("model identifier" in lowered or "model id" in lowered):
        return NotFound(message)
    # Bedrock's ModelErrorException comes with HTTP 424, which is not a 5xx.
    if code in _UNAVAILABLE or status >= 500:
        return Unavailable(message)
    if status == 0 and not code:
        return Unavailable(message)
    return InvalidArgument(message)


@contextmanager
def aws_errors(operation: str) -> Iterator[None]:
    """Translate any AWS SDK failure inside the block with ``map_error``."""
    try:
        yield
    except ServiceError:
        raise
    except Exception as e:
        if _is_sdk_error(e):
            raise map_error(e, operation) from e
        raise


def _is_sdk_error(error: BaseException) -> bool:
    """botocore's errors, the other AWS clients' own (amazon-transcribe, awscrt, aiohttp), and network
    failures; not the programming errors Python raises everywhere."""
    from botocore.exceptions import BotoCoreError, ClientError

    module = type(error).__module__ or ""
    return isinstance(error, BotoCoreError | ClientError | _TRANSPORT_ERRORS) or module.startswith(
        ("amazon_transcribe", "awscrt", "aiohttp")
    )
