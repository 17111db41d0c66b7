"""The FastAPI app: the /v1/voice WebSocket, the conversations REST API, health, the web client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from fastapi import FastAPI, Query, Request, Response, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from echo.v1 import storage_pb2
from gateway import cloudwatch_metrics, config, smart_turn
from gateway.auth import Authenticator, Principal
from gateway.clients import Services, rpc_error
from gateway.config import GatewaySettings
from gateway.events import ProtocolError, protocol_schema
from gateway.guard import Guard
from gateway.quotas import Quotas
from gateway.session import VoiceSession
from gateway.vad import SileroModel
from services.common.config import ConfigError

log = logging.getLogger("echo.gateway")
HERE = Path(__file__).parent
# Stored audio is served with one of these types only; anything else goes out as a download, so a
# stored object can never be rendered as a page of the gateway's origin.
AUDIO_TYPES = frozenset(
    {
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/mpeg",
        "audio/ogg",
        "audio/webm",
        "audio/opus",
        "audio/flac",
    }
)
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; media-src 'self' blob:; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _turn_json(turn: storage_pb2.Turn) -> dict[str, Any]:
    return {
        "conversation_id": turn.conversation_id,
        "timestamp": turn.timestamp,
        "session_id": turn.session_id,
        "turn_id": turn.turn_id,
        "client_input": turn.client_input,
        "agent_response": turn.agent_response,
        "interrupted": turn.interrupted,
        "metadata": json.loads(turn.metadata_json or "{}"),
        "input_audio_key": turn.input_audio_key,
        "output_audio_key": turn.output_audio_key,
    }


def _storage_failure(e: grpc.aio.AioRpcError) -> JSONResponse:
    if e.code() == grpc.StatusCode.NOT_FOUND:
        return JSONResponse({"error": {"code": "not_found", "message": e.details()}}, status_code=404)
    if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return JSONResponse({"error": {"code": "invalid_request", "message": e.details()}}, status_code=400)
    error = rpc_error("storage", e)
    return JSONResponse({"error": {"code": error.code, "message": error.message}}, status_code=503)


def caller(request: Request) -> str:
    """The authenticated user's id (the guard put it there): the only user id sent to storage."""
    principal: Principal = request.state.principal
    return principal.user_id


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or config.load()
    prompt_file = (
        Path(settings.system_prompt_file) if settings.system_prompt_file else HERE / "prompts/system.txt"
    )
    system_prompt = prompt_file.read_text().strip()
    if settings.turn_detection not in ("smart", "silence"):
        raise ConfigError(
            f"ECHO_GATEWAY_TURN_DETECTION={settings.turn_detection!r}: use 'smart' or 'silence'"
        )
    smart = settings.turn_detection == "smart"
    # The open WebSocket sessions: what the ActiveSessions metric counts.
    sessions: set[VoiceSession] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = Services.connect(settings)
        app.state.authenticator = Authenticator(settings, app.state.services.storage)
        app.state.quotas = Quotas(settings, app.state.services.storage)
        app.state.vad = SileroModel()
        # Semantic end of turn: loaded (and its pinned file checked) off the loop, once for all sessions.
        app.state.turn_model = await asyncio.to_thread(smart_turn.load) if smart else None
        log.info(
            "gateway using stt=%s llm=%s tts=%s storage=%s",
            settings.stt_addr,
            settings.llm_addr,
            settings.tts_addr,
            settings.storage_addr,
        )
        async with cloudwatch_metrics.publishing(settings, lambda: len(sessions)):
            yield
        await app.state.quotas.close()
        await app.state.services.close()

    app = FastAPI(title="Echo gateway", version="1", lifespan=lifespan)
    # Host, Origin, bearer token and REST rate limit on every request (gateway/guard.py).
    app.add_middleware(
        Guard,
        settings=settings,
        authenticator=lambda: app.state.authenticator,
        quotas=lambda: app.state.quotas,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
        # The REST API's one error shape (docs/protocol.md), not FastAPI's 422 {"detail": [...]}.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
            for error in e.errors()
        )
        return JSONResponse({"error": {"code": "invalid_request", "message": problems}}, status_code=400)

    app.state.sessions = sessions

    @app.websocket("/v1/voice")
    async def voice(ws: WebSocket) -> None:
        principal: Principal = ws.state.principal  # the guard let only authenticated upgrades through
        quotas: Quotas = app.state.quotas
        await ws.accept()
        try:
            quotas.open_session(principal.user_id)
        except ProtocolError as e:
            await ws.send_text(
                json.dumps(
                    {"type": "error", "code": e.code, "message": e.message, "retry_after_s": e.retry_after_s}
                )
            )
            await ws.close(1013)  # "try again later"
            return
        session = VoiceSession(
            ws,
            app.state.services,
            settings,
            app.state.vad,
            system_prompt,
            app.state.turn_model,
            user_id=principal.user_id,
            quotas=quotas,
        )
        sessions.add(session)
        try:
            await session.run()
        finally:
            sessions.discard(session)
            quotas.close_session(principal.user_id)

    schema = protocol_schema()

    @app.get("/v1/protocol.schema.json")
    async def protocol_schema_json() -> JSONResponse:
        # Every message, event and error code, generated from gateway/events.py (the web client reads it).
        return JSONResponse(schema)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        statuses = await app.state.services.health()
        ready = all(s == "SERVING" for s in statuses.values())
        return JSONResponse({"ready": ready, "services": statuses}, status_code=200 if ready else 503)

    @app.get("/v1/conversations")
    async def list_conversations(
        request: Request, limit: int = Query(50, ge=1, le=500), session_id: str = "", cursor: str = ""
    ) -> JSONResponse:
        try:
            reply = await app.state.services.storage.ListConversations(
                storage_pb2.ListConversationsRequest(
                    limit=limit, session_id=session_id, cursor=cursor, user_id=caller(request)
                ),
                timeout=settings.storage_timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        return JSONResponse(
            {
                "conversations": [
                    {
                        "conversation_id": c.conversation_id,
                        "first_timestamp": c.first_timestamp,
                        "last_timestamp": c.last_timestamp,
                        "turn_count": c.turn_count,
                        "summary": c.summary,
                        "last_client_input": c.last_client_input,
                    }
                    for c in reply.conversations
                ],
                "next_cursor": reply.next_cursor,
            }
        )

    async def get_conversation(conversation_id: str, user_id: str) -> storage_pb2.Conversation:
        return await app.state.services.storage.GetConversation(
            storage_pb2.GetConversationRequest(conversation_id=conversation_id, user_id=user_id),
            timeout=settings.storage_timeout_s,
        )

    @app.get("/v1/conversations/{conversation_id}")
    async def conversation(request: Request, conversation_id: str) -> JSONResponse:
        try:
            found = await get_conversation(conversation_id, caller(request))
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        return JSONResponse(
            {
                "conversation_id": found.conversation_id,
                "summary": found.summary,
                "turns": [_turn_json(t) for t in found.turns],
            }
        )

    @app.delete("/v1/conversations/{conversation_id}", status_code=204, response_model=None)
    async def delete_conversation(request: Request, conversation_id: str) -> Response | JSONResponse:
        try:
            await app.state.services.storage.DeleteConversation(
                storage_pb2.DeleteConversationRequest(
                    conversation_id=conversation_id, user_id=caller(request)
                ),
                timeout=settings.storage_timeout_s * 6,
            )
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        return Response(status_code=204)

    @app.get("/v1/conversations/{conversation_id}/audio/{key:path}", response_model=None)
    async def audio(
        request: Request, conversation_id: str, key: str
    ) -> StreamingResponse | JSONResponse | RedirectResponse:
        user_id = caller(request)
        try:
            found = await get_conversation(conversation_id, user_id)
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        # Only audio that belongs to this conversation is served through it.
        if key not in {k for t in found.turns for k in (t.input_audio_key, t.output_audio_key) if k}:
            return JSONResponse(
                {"error": {"code": "not_found", "message": f"no audio {key!r} in this conversation"}},
                status_code=404,
            )
        try:
            presigned = await app.state.services.storage.GetAudioUrl(
                storage_pb2.GetAudioRequest(key=key, user_id=user_id), timeout=settings.storage_timeout_s
            )
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        if presigned.url:  # an object store serves the bytes itself (S3 presigned URL)
            return RedirectResponse(presigned.url, status_code=307)
        call = app.state.services.storage.GetAudio(
            storage_pb2.GetAudioRequest(key=key, user_id=user_id), timeout=settings.storage_timeout_s * 6
        )
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        if first is grpc.aio.EOF:
            return JSONResponse({"error": {"code": "not_found", "message": key}}, status_code=404)

        async def body() -> AsyncIterator[bytes]:
            # read() peeked at the first chunk; grpc.aio does not allow switching to iteration.
            chunk = first
            while chunk is not grpc.aio.EOF:
                yield chunk.data
                chunk = await call.read()

        if first.content_type in AUDIO_TYPES:
            return StreamingResponse(body(), media_type=first.content_type)
        name = key.rsplit("/", 1)[-1]
        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    if settings.web_client:
        app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(HERE / "static/index.html", headers={"Content-Security-Policy": WEB_CSP})

    return app
