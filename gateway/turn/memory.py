"""Memory: the conversation the LLM sees, and the save outbox to the storage service with retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

from echo.v1 import llm_pb2, storage_pb2, storage_pb2_grpc
from gateway.clients import rpc_error
from gateway.turn.reply import Reply
from services.common.audio import wav_bytes

log = logging.getLogger("echo.gateway.memory")

SAVE_RETRIES = (0.5, 1.0, 2.0)  # seconds between tries of a save the storage service could not take
RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)
INPUT_RATE = 16000


@dataclass
class SessionInfo:
    user_id: str = ""  # the authenticated caller, who owns everything this session stores
    session_id: str = ""
    conversation_id: str = ""
    output_rate: int = 22050
    voice_name: str = ""
    language: str = ""
    input_audio: dict[str, Any] = field(default_factory=dict)


ErrorReporter = Callable[[str, str, str | None], Awaitable[None]]


class Memory:
    def __init__(
        self,
        storage: storage_pb2_grpc.StorageStub,
        info: SessionInfo,
        report: ErrorReporter,
        timeout_s: float,
        history_turns: int,
    ) -> None:
        self.storage = storage
        self.info = info
        self.report = report
        self.timeout_s = timeout_s
        self.history_turns = history_turns
        self.history: list[tuple[str, str]] = []
        self.history_start = 0  # first turn of the history still sent to the LLM
        self.unsaved: list[Reply] = []
        self.outbox: asyncio.Queue[Reply | None] = asyncio.Queue()
        self.saver: asyncio.Task[None] | None = None
        self.session_record: asyncio.Task[None] | None = None

    # ----- what the LLM sees ------------------------------------------------------------------

    def messages(self, system_prompt: str, user_text: str) -> list[llm_pb2.ChatMessage]:
        prompt = system_prompt.replace("{date}", datetime.now(UTC).strftime("%A %d %B %Y"))
        messages = [llm_pb2.ChatMessage(role="system", content=prompt)]
        # Trim the context in blocks, not one turn at a time: a window that slides every turn changes
        # the prompt's prefix each time and defeats the LLM's prefix (KV) cache.
        limit = self.history_turns
        if len(self.history) - self.history_start > limit:
            self.history_start = len(self.history) - max(1, limit // 2)
        for user, assistant in self.history[self.history_start :]:
            messages.append(llm_pb2.ChatMessage(role="user", content=user))
            if assistant:
                messages.append(llm_pb2.ChatMessage(role="assistant", content=assistant))
        messages.append(llm_pb2.ChatMessage(role="user", content=user_text))
        return messages

    def remember(self, reply: Reply) -> None:
        """The next turn's context holds only what the user actually heard; the turn is saved."""
        spoken = reply.spoken
        self.history.append((reply.user_text, spoken + ("…" if reply.interrupted and spoken else "")))
        if self.saver is None:
            self.saver = asyncio.create_task(self._save_loop())
        self.outbox.put_nowait(reply)

    # ----- storage ----------------------------------------------------------------------------

    async def load(self, conversation_id: str) -> list[tuple[str, str]]:
        conversation = await self.storage.GetConversation(
            storage_pb2.GetConversationRequest(conversation_id=conversation_id, user_id=self.info.user_id),
            timeout=self.timeout_s,
        )
        return [(t.client_input, t.agent_response) for t in conversation.turns]

    def save_session(self) -> None:
        """Index the session under its conversation, in the background (flush waits for it)."""
        self.session_record = asyncio.create_task(self._save_session())

    async def _save_session(self) -> None:
        stamp = datetime.now(UTC).isoformat()
        record = storage_pb2.Session(
            user_id=self.info.user_id,
            session_id=self.info.session_id,
            conversation_id=self.info.conversation_id,
            created_at=stamp,
            updated_at=stamp,
            metadata_json=json.dumps(
                {
                    "voice": self.info.voice_name,
                    "language": self.info.language,
                    "input": self.info.input_audio,
                }
            ),
        )
        try:
            await self._retrying(lambda: self.storage.SaveSession(record, timeout=self.timeout_s))
        except grpc.aio.AioRpcError as e:
            # The session record only indexes the conversation: its turns are still saved.
            error = rpc_error("storage", e)
            await self.report(error.code, f"{error.message}; the session record was not saved", None)

    async def _save_loop(self) -> None:
        while (reply := await self.outbox.get()) is not None:
            try:
                await self._retrying(lambda r=reply: self._save(r))  # type: ignore[misc]
            except grpc.aio.AioRpcError as e:
                self.unsaved.append(reply)
                error = rpc_error("storage", e)
                await self.report(
                    error.code, f"{error.message}; the turn is kept and will be saved later", reply.turn_id
                )
            else:
                await self._retry_unsaved()

    @staticmethod
    async def _retrying(call: Callable[[], Awaitable[Any]]) -> None:
        for delay in (*SAVE_RETRIES, None):
            try:
                await call()
                return
            except grpc.aio.AioRpcError as e:
                if delay is None or e.code() not in RETRYABLE:
                    raise
                await asyncio.sleep(delay)

    async def _retry_unsaved(self) -> None:
        retry, self.unsaved = self.unsaved, []
        for reply in retry:
            try:
                await self._save(reply)
            except grpc.aio.AioRpcError:
                self.unsaved.append(reply)

    async def flush(self) -> None:
        """Wait for queued saves, then give earlier failures one more try."""
        if self.session_record is not None:
            await self.session_record
        if self.saver is not None and not self.saver.done():
            self.outbox.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self.saver
        self.saver = None
        await self._retry_unsaved()
        for reply in self.unsaved:
            log.error(
                "turn %s of conversation %s could not be saved", reply.turn_id, self.info.conversation_id
            )

    async def _save(self, reply: Reply) -> None:
        info = self.info
        timestamp = reply.stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
        key_stamp = reply.stamp.strftime("%Y%m%dT%H%M%S%fZ")
        input_key = output_key = ""
        if reply.input_audio:
            input_key = f"{info.session_id}/{key_stamp}_input.wav"
            await self._put_audio(input_key, wav_bytes(reply.input_audio, INPUT_RATE))
        if reply.audio:
            output_key = f"{info.session_id}/{key_stamp}_output.wav"
            await self._put_audio(output_key, wav_bytes(bytes(reply.audio), info.output_rate))
        metadata = {
            "models": {"llm": reply.model, "tts": info.voice_name},
            "voice": info.voice_name,
            "latency_ms": reply.timings,
            "usage": reply.usage_summary(),
            "interrupted": reply.interrupted,
            "interrupt_reason": reply.interrupt_reason,
            "generated_text": reply.text if reply.interrupted else "",
            "error": reply.error,
        }
        await self.storage.SaveTurn(
            storage_pb2.Turn(
                user_id=info.user_id,
                conversation_id=info.conversation_id,
                timestamp=timestamp,
                session_id=info.session_id,
                turn_id=reply.turn_id,
                client_input=reply.user_text,
                agent_response=reply.spoken,
                metadata_json=json.dumps(metadata),
                input_audio_key=input_key,
                output_audio_key=output_key,
                interrupted=reply.interrupted,
            ),
            timeout=self.timeout_s,
        )

    async def _put_audio(self, key: str, data: bytes) -> None:
        async def chunks() -> AsyncIterator[storage_pb2.PutAudioRequest]:
            yield storage_pb2.PutAudioRequest(key=key, content_type="audio/wav", user_id=self.info.user_id)
            for i in range(0, len(data), 256 * 1024):
                yield storage_pb2.PutAudioRequest(data=data[i : i + 256 * 1024])

        await self.storage.PutAudio(chunks(), timeout=self.timeout_s)
