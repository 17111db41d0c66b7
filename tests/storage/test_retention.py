"""The local backend's retention sweep, on a real SQLite database and audio folder, at a chosen "now"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from echo.v1 import storage_pb2
from services.common.errors import NotFound
from services.storage.backends.local import LocalBackend, LocalSettings
from services.storage.config import StorageSettings

DAY = 86400


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_the_sweep_removes_expired_turns_sessions_and_audio(tmp_path) -> None:
    async def scenario() -> None:
        backend = LocalBackend(StorageSettings(retention_days=30), LocalSettings(data_dir=str(tmp_path)))
        await backend.start()
        try:
            store = backend.conversations
            await store.save_session(storage_pb2.Session(user_id="u", session_id="s", conversation_id="c"))
            await backend.audio.put("u", "s/in.wav", chunks(b"RIFF-old"), "audio/wav", 1000)
            old = storage_pb2.Turn(
                user_id="u",
                conversation_id="c",
                session_id="s",
                turn_id="t1",
                timestamp="2026-01-01T10:00:00.000000Z",
                client_input="old",
                input_audio_key="s/in.wav",
            )
            saved = await store.save_turn(old)
            # A turn with a longer life of its own stays when the rest expires.
            kept = storage_pb2.Turn(
                user_id="u",
                conversation_id="c",
                session_id="s",
                turn_id="t2",
                timestamp="2026-01-01T10:01:00.000000Z",
                client_input="kept",
                ttl=int(time.time()) + 90 * DAY,
            )
            await store.save_turn(kept)
            await backend.users.add_usage(storage_pb2.DailyUsage(user_id="u", day="2026-01-01", turns=1))
            assert saved.ttl > time.time() + 29 * DAY

            assert not any((await backend.sweep(now=time.time())).values())  # nothing is due yet
            removed = await backend.sweep(now=time.time() + 31 * DAY)
            assert removed == {"turns": 1, "conversations": 0, "sessions": 1, "usage": 1, "audio": 1}
            conversation = await store.get_conversation("u", "c")
            assert [t.client_input for t in conversation.turns] == ["kept"]
            listed, _ = await store.list_conversations("u", 10)
            assert [(c.turn_count, c.last_client_input) for c in listed] == [(1, "kept")]
            assert not (tmp_path / "audio" / "u" / "s" / "in.wav").exists()
            with pytest.raises(NotFound):
                await store.get_session("u", "s")
            with pytest.raises(NotFound):
                [c async for c in backend.audio.get("u", "s/in.wav")]
            assert (await backend.users.get_usage("u", "2026-01-01")).turns == 0
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_no_retention_keeps_records_forever(tmp_path) -> None:
    async def scenario() -> None:
        backend = LocalBackend(StorageSettings(retention_days=0), LocalSettings(data_dir=str(tmp_path)))
        await backend.start()
        try:
            turn = storage_pb2.Turn(
                user_id="u",
                conversation_id="c",
                session_id="s",
                turn_id="t1",
                timestamp="2026-01-01T10:00:00.000000Z",
            )
            assert (await backend.conversations.save_turn(turn)).ttl == 0
            assert not any((await backend.sweep(now=time.time() + 3650 * DAY)).values())
            assert len((await backend.conversations.get_conversation("u", "c")).turns) == 1
        finally:
            await backend.close()

    asyncio.run(scenario())
