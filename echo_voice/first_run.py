"""`echo-voice run` on first start: a key for the local user, saved in the credentials file, and the web
client's link with it (as Jupyter prints its token). Later starts reuse the key while storage knows it."""

from __future__ import annotations

import grpc

from echo.v1 import storage_pb2, storage_pb2_grpc
from echo_voice.credentials import read_credentials, save_credentials
from services.common import apikeys

LOCAL_USER = "local"


async def local_key(storage: storage_pb2_grpc.StorageStub) -> tuple[str, bool]:
    """(the local user's API key, whether it was created now)."""
    saved = str(read_credentials().get("api_key", ""))
    if saved:
        try:
            known = await storage.LookupApiKey(
                storage_pb2.LookupApiKeyRequest(key_sha256=apikeys.sha256_of(saved)), timeout=10
            )
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            if not known.revoked_at:
                return saved, False
    key, key_id, digest = apikeys.generate(LOCAL_USER)
    await storage.CreateApiKey(
        storage_pb2.ApiKey(key_id=key_id, user_id=LOCAL_USER, key_sha256=digest, label="echo-voice run"),
        timeout=10,
    )
    save_credentials(api_key=key, key_id=key_id, user_id=LOCAL_USER)
    return key, True
