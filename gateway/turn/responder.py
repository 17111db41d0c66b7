"""The responder: one reply's LLM stream, cut into sentences, each synthesised and sent as audio.

The LLM feeds a sentence queue; a synthesiser drains each TTS stream as fast as the service produces
it (so the next sentence is synthesised while this one is still being sent, and a TTS call is only "in
flight" while the service really works on it); the speaker sends the audio in sentence order.
Cancelling the reply's task cancels its gRPC calls, so no orphaned inference keeps running downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from echo.v1 import audio_pb2, llm_pb2, llm_pb2_grpc, tts_pb2, tts_pb2_grpc
from gateway import events as ev
from gateway.clients import rpc_error
from gateway.sentences import SentenceSplitter
from gateway.turn.clock import ms, now
from gateway.turn.output import ReplyChannel
from gateway.turn.reply import Reply, ReplyDone

OUTPUT_FRAME_S = 0.1  # reply audio is sent in frames this long


@dataclass
class Voice:
    name: str = ""  # what TTS requests name: empty lets the TTS service choose
    language: str = ""
    sample_rate: int = 22050


@dataclass
class Generation:
    model: str
    max_tokens: int
    temperature: float
    llm_timeout_s: float
    tts_timeout_s: float


class Responder:
    def __init__(
        self,
        llm: llm_pb2_grpc.LanguageModelStub,
        tts: tts_pb2_grpc.TextToSpeechStub,
        generation: Generation,
        voice: Voice,
        signal: Callable[[Any], None],
    ) -> None:
        self.llm = llm
        self.tts = tts
        self.generation = generation
        self.voice = voice
        self.signal = signal

    async def run(self, reply: Reply, channel: ReplyChannel, messages: list[llm_pb2.ChatMessage]) -> None:
        """The reply from first token to last audio frame, then (once released, for a speculative
        reply) until the client has played it; then the engine hears ReplyDone."""
        started = now()
        sentences: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        speaker = asyncio.create_task(self._speak(reply, channel, sentences))
        g = self.generation
        call = self.llm.Generate(
            llm_pb2.GenerateRequest(
                messages=messages,
                model=g.model,
                sampling=llm_pb2.SamplingParams(max_tokens=g.max_tokens, temperature=g.temperature),
                purpose="quick",
            ),
            timeout=g.llm_timeout_s,
        )
        splitter = SentenceSplitter()
        reply.in_flight.add("llm")
        try:
            async for event in call:
                if event.delta:
                    if not reply.text:
                        reply.timings["llm_first_token"] = ms(now() - started)
                    reply.text += event.delta
                    await channel.send(ev.ResponseTextDelta(turn_id=reply.turn_id, delta=event.delta))
                    for sentence in splitter.push(event.delta):
                        reply.timings.setdefault("llm_first_sentence", ms(now() - started))
                        sentences.put_nowait((sentence, now()))
                if event.done:
                    reply.model = event.model
                    reply.usage = {
                        "input_tokens": event.usage.input_tokens,
                        "output_tokens": event.usage.output_tokens,
                        "cost_usd": event.usage.cost_usd,
                        # Of the input, evaluated for this reply versus already in the model's context
                        # (prefilled while the user spoke, or the provider's prompt cache).
                        "prompt_eval_tokens": event.timing.prompt_eval_tokens,
                        "prompt_cached_tokens": event.timing.prompt_cached_tokens,
                    }
                    reply.timings["llm_total"] = ms(now() - started)
                    # The service's own view, without the gRPC hop: the difference is transport.
                    reply.timings["llm_first_token_service"] = round(event.timing.first_token_ms, 1)
            reply.in_flight.discard("llm")
            for sentence in splitter.flush():
                reply.timings.setdefault("llm_first_sentence", ms(now() - started))
                sentences.put_nowait((sentence, now()))
            sentences.put_nowait(None)
            await speaker
            await channel.end_audio()
            # A speculative reply that finished early waits here until its turn is confirmed (or it is
            # discarded, which cancels this task); then the reply lasts until the user has heard it.
            await channel.released.wait()
            await reply.playout.played()
        except asyncio.CancelledError:
            reply.cancelled_calls = sorted(reply.in_flight)
            raise
        except grpc.aio.AioRpcError as e:
            reply.in_flight.discard("llm")
            error = rpc_error("llm", e)
            reply.error = error.code
            await channel.error(error.code, error.message)
        finally:
            call.cancel()
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker
            reply.timings["total"] = ms(now() - started)
        self.signal(ReplyDone(reply))

    async def _speak(
        self, reply: Reply, channel: ReplyChannel, sentences: asyncio.Queue[tuple[str, float] | None]
    ) -> None:
        audio: asyncio.Queue[tuple[str, bytes | None] | None] = asyncio.Queue()
        synthesizer = asyncio.create_task(self._synthesize(reply, channel, sentences, audio))
        rate = self.voice.sample_rate
        frame_bytes = int(rate * OUTPUT_FRAME_S) * 2
        segment_start, queued_bytes = 0.0, 0
        try:
            while (item := await audio.get()) is not None:
                sentence, pcm = item
                if pcm is None:  # the sentence is complete; the next one starts where it ended
                    segment_start = queued_bytes / 2 / rate * 1000
                    continue
                # The sentence's span grows with each chunk, before it is sent, so a sentence cut off
                # mid-way still knows its length.
                queued_bytes += len(pcm)
                end_ms = queued_bytes / 2 / rate * 1000
                if reply.segments and reply.segments[-1][1] == segment_start:
                    reply.segments[-1] = (sentence, segment_start, end_ms)
                else:
                    reply.segments.append((sentence, segment_start, end_ms))
                await channel.start_audio(rate)
                for i in range(0, len(pcm), frame_bytes):
                    frame = pcm[i : i + frame_bytes]
                    reply.audio += frame
                    await channel.send(frame)
        finally:
            if not synthesizer.done():
                synthesizer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await synthesizer

    async def _synthesize(
        self,
        reply: Reply,
        channel: ReplyChannel,
        sentences: asyncio.Queue[tuple[str, float] | None],
        audio: asyncio.Queue[tuple[str, bytes | None] | None],
    ) -> None:
        voice = self.voice
        try:
            while (item := await sentences.get()) is not None:
                sentence, queued_at = item
                if reply.error:
                    continue  # TTS already failed this turn; the text still reaches the client
                call = self.tts.Synthesize(
                    tts_pb2.SynthesizeRequest(
                        text=sentence,
                        voice=voice.name,
                        language=voice.language,
                        format=audio_pb2.AudioFormat(
                            encoding=audio_pb2.PCM_S16LE, sample_rate=voice.sample_rate
                        ),
                    ),
                    timeout=self.generation.tts_timeout_s,
                )
                reply.in_flight.add("tts")
                try:
                    async for response in call:
                        if response.audio:
                            reply.timings.setdefault("tts_first_audio", ms(now() - queued_at))
                            audio.put_nowait((sentence, response.audio))
                        if response.HasField("usage"):
                            reply.in_flight.discard("tts")  # the service's last message: its work is done
                            reply.tts_characters += response.usage.characters
                            reply.tts_cost_usd += response.usage.cost_usd
                except grpc.aio.AioRpcError as e:
                    reply.in_flight.discard("tts")
                    error = rpc_error("tts", e)
                    reply.error = error.code
                    await channel.error(error.code, error.message)
                else:
                    reply.in_flight.discard("tts")
                finally:
                    # A no-op unless this task was cancelled mid-call; "tts" then stays in flight, so
                    # the interrupted reply reports it among its cancelled calls.
                    call.cancel()
                audio.put_nowait((sentence, None))
        finally:
            audio.put_nowait(None)
