"""Prefill: keep the LLM's context warm with the turn so far while the user is still speaking, so when
the turn ends only its last few words are left to evaluate (llama.cpp; HTTP and Bedrock backends answer
zeros, and a stable prompt prefix is what lets their own caches apply)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from echo.v1 import llm_pb2, llm_pb2_grpc

log = logging.getLogger("echo.gateway.prefill")


def stable_words(partial: str) -> str:
    """The part of a partial transcript that will not change: all but its last word, which the next
    decode may still correct or extend."""
    words = partial.split()
    return " ".join(words[:-1])


class Prefiller:
    def __init__(self, llm: llm_pb2_grpc.LanguageModelStub, model: str, timeout_s: float) -> None:
        self.llm = llm
        self.model = model
        self.timeout_s = timeout_s
        self.sent = ""  # the user text last prefilled
        self.pending: list[llm_pb2.ChatMessage] | None = None
        self.task: asyncio.Task[None] | None = None
        self.unsupported = False

    def update(self, text: str, messages: list[llm_pb2.ChatMessage]) -> None:
        """Prefill ``messages`` (ending with the user's ``text`` so far); one call at a time, the newest
        text wins."""
        if self.unsupported or not text or text == self.sent:
            return
        self.sent, self.pending = text, messages
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self.pending is not None:
            messages, self.pending = self.pending, None
            request = llm_pb2.PrefillRequest(messages=messages, model=self.model)
            try:
                await self.llm.Prefill(request, timeout=self.timeout_s)
            except grpc.aio.AioRpcError as e:
                # Best effort: the reply works without it. An llm service from before Prefill says so once.
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self.unsupported = True
                    return
                log.debug("prefill failed: %s", e.details())

    def warm(self, messages: list[llm_pb2.ChatMessage]) -> None:
        """Between turns (session start, after each reply): the system prompt and the history, with an
        empty user message the next turn will extend. On a session's first turn that is most of it."""
        if self.unsupported:
            return
        self.sent, self.pending = "", messages
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
