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
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse

from echo.v1 import storage_pb2
from gateway import cloudwatch_metrics, config, smart_turn
from gateway.clients import Services, rpc_error
from gateway.config import GatewaySettings
from gateway.events import protocol_schema
from gateway.session import VoiceSession
from gateway.vad import SileroModel
from services.common.config import ConfigError

log = logging.getLogger("echo.gateway")
HERE = Path(__file__).parent


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
        await app.state.services.close()

    app = FastAPI(title="Echo gateway", version="1", lifespan=lifespan)

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
        await ws.accept()
        session = VoiceSession(
            ws, app.state.services, settings, app.state.vad, system_prompt, app.state.turn_model
        )
        sessions.add(session)
        try:
            await session.run()
        finally:
            sessions.discard(session)

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
    async def list_conversations(limit: int = Query(50, ge=1, le=500), session_id: str = "") -> JSONResponse:
        try:
            reply = await app.state.services.storage.ListConversations(
                storage_pb2.ListConversationsRequest(limit=limit, session_id=session_id),
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
                ]
            }
        )

    async def get_conversation(conversation_id: str) -> storage_pb2.Conversation:
        return await app.state.services.storage.GetConversation(
            storage_pb2.GetConversationRequest(conversation_id=conversation_id),
            timeout=settings.storage_timeout_s,
        )

    @app.get("/v1/conversations/{conversation_id}")
    async def conversation(conversation_id: str) -> JSONResponse:
        try:
            found = await get_conversation(conversation_id)
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        return JSONResponse(
            {
                "conversation_id": found.conversation_id,
                "summary": found.summary,
                "turns": [_turn_json(t) for t in found.turns],
            }
        )

    @app.get("/v1/conversations/{conversation_id}/audio/{key:path}", response_model=None)
    async def audio(conversation_id: str, key: str) -> StreamingResponse | JSONResponse | RedirectResponse:
        try:
            found = await get_conversation(conversation_id)
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
                storage_pb2.GetAudioRequest(key=key), timeout=settings.storage_timeout_s
            )
        except grpc.aio.AioRpcError as e:
            return _storage_failure(e)
        if presigned.url:  # an object store serves the bytes itself (S3 presigned URL)
            return RedirectResponse(presigned.url, status_code=307)
        call = app.state.services.storage.GetAudio(
            storage_pb2.GetAudioRequest(key=key), timeout=settings.storage_timeout_s * 6
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

        return StreamingResponse(body(), media_type=first.content_type or "application/octet-stream")

    if settings.web_client:

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(HERE / "static/index.html")

    return app
