"""One WebSocket voice session: a thin adapter between the socket and the turn engine.

Text frames are parsed into the protocol's typed messages (gateway/events.py) here, so a malformed
frame is answered at once; everything else is the engine's (gateway/turn/engine.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket

from gateway import events as ev
from gateway.clients import Services
from gateway.config import GatewaySettings
from gateway.quotas import Quotas
from gateway.turn.endpointing import TurnModel
from gateway.turn.engine import Disconnected, TurnEngine
from gateway.vad import SileroModel

log = logging.getLogger("echo.gateway.session")


class WebSocketSink:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_text(self, text: str) -> None:
        await self.ws.send_text(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)


class VoiceSession:
    def __init__(
        self,
        ws: WebSocket,
        services: Services,
        settings: GatewaySettings,
        vad_model: SileroModel,
        system_prompt: str,
        turn_model: TurnModel | None = None,
        user_id: str = "local",
        quotas: Quotas | None = None,
    ) -> None:
        self.ws = ws
        self.settings = settings
        self.engine = TurnEngine(
            services,
            settings,
            vad_model,
            system_prompt,
            WebSocketSink(ws),
            turn_model=turn_model,
            user_id=user_id,
            quotas=quotas,
        )

    async def run(self) -> None:
        engine = asyncio.create_task(self.engine.run())
        try:
            while not engine.done():
                receive = asyncio.ensure_future(self.ws.receive())
                await asyncio.wait({receive, engine}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():  # the engine ended the session (session.end)
                    receive.cancel()
                    break
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    self.engine.signal(message["bytes"])
                elif message.get("text") is not None:
                    await self.on_text(message["text"])
        finally:
            if not engine.done():
                self.engine.signal(Disconnected())
            with contextlib.suppress(asyncio.CancelledError):
                await engine
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def on_text(self, text: str) -> None:
        try:
            message = ev.parse_client_message(text, self.settings.max_message_bytes)
        except ev.ProtocolError as e:
            await self.engine.output.error(e.code, e.message)
            return
        self.engine.signal(message)
