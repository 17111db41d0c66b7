"""faster-whisper (CTranslate2, CPU int8): streaming partials by re-decoding the growing utterance, and a
speculative final decode the moment the audio turns quiet."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from echo.v1 import audio_pb2, stt_pb2
from services.common import models
from services.common.audio import PcmConverter, decode_to_mono16k
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import InvalidArgument
from services.stt.backends.decode_slot import FINAL, PARTIAL, DecodeSlot
from services.stt.backends.whisper_decode import (
    FULL_WINDOW_S,
    MIN_FINAL_CONTEXT_S,
    PARTIAL_WINDOW_S,
    Decoded,
    WhisperDecoder,
)
from services.stt.config import STTSettings

log = logging.getLogger("echo.stt.whisper")


@dataclass
class WhisperSettings:
    """ECHO_STT_MODEL, ECHO_STT_BEAM_SIZE, ...: the names these had before backends owned their settings."""

    model: str = field(default="whisper-tiny.en", metadata={"help": "model name or path"})
    beam_size: int = field(default=5, metadata={"help": "beam size for final transcripts"})
    final_context_s: float = field(
        default=30.0,
        metadata={
            "help": "encoder window of final transcripts, 10-30 s: shorter is faster (whisper_decode.py)"
        },
    )
    threads: int = field(default=2, metadata={"help": "CPU threads for decoding"})
    partial_interval_s: float = field(default=0.4, metadata={"help": "new speech between partials"})


def load_whisper_settings() -> WhisperSettings:
    return load_settings(WhisperSettings, prefix="ECHO_STT_", section="stt")


RATE = 16000
# "Quiet" for the early final decode: a chunk well below the utterance's peak and near silence.
QUIET_BELOW_PEAK_DB = 25.0
QUIET_FLOOR_DB = -50.0
QUIET_TAIL_S = 0.15
PARTIAL_QUIET_S = 0.05  # no new partial once the tail has been quiet this long: the final may be next
SUPPORTED_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
FILE_ENCODINGS = {
    audio_pb2.WAV: "wav",
    audio_pb2.MP3: "mp3",
    audio_pb2.OGG_VORBIS: "ogg",
    audio_pb2.WEBM_OPUS: "webm",
    audio_pb2.PCM_S16LE: "pcm_s16le",
}


def _db(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
    return 20 * np.log10(rms) if rms > 0 else -120.0


def check_stream_format(fmt: audio_pb2.AudioFormat) -> None:
    if fmt.encoding != audio_pb2.PCM_S16LE:
        raise InvalidArgument(
            f"streaming recognition takes pcm_s16le audio, not {audio_pb2.AudioEncoding.Name(fmt.encoding)}"
        )
    if fmt.sample_rate not in SUPPORTED_RATES:
        raise InvalidArgument(f"sample rate {fmt.sample_rate} is not supported; use one of {SUPPORTED_RATES}")
    if fmt.channels not in (0, 1, 2):
        raise InvalidArgument(f"{fmt.channels} channels are not supported; send mono or stereo")


@dataclass
class _Job:
    """One decode of the audio up to sample ``upto``; ``prefix``: the text of what came before the part
    decoded (a partial of a long utterance)."""

    upto: int
    task: asyncio.Task[Decoded] = field(init=False)
    prefix: str = ""
    started: bool = False
    done_at: float = 0.0  # perf_counter when it finished

    def mark_started(self) -> None:
        self.started = True


class WhisperBackend:
    name = "whisper"
    # Stable partials: the full-beam decode on a quiet tail. No word timings (segments only).
    capabilities = BackendCapabilities(streaming=True, stable_partials=True, word_timings=False)

    requires = ("faster_whisper",)

    def __init__(self, service: STTSettings, settings: WhisperSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_whisper_settings()
        if not MIN_FINAL_CONTEXT_S <= self.settings.final_context_s <= FULL_WINDOW_S:
            # Shorter windows make Whisper repeat itself (whisper_decode.py).
            raise ConfigError(
                f"ECHO_STT_FINAL_CONTEXT_S={self.settings.final_context_s}: "
                f"choose {MIN_FINAL_CONTEXT_S:.0f} to {FULL_WINDOW_S:.0f} seconds"
            )
        self.model: Any = None  # faster_whisper.WhisperModel once started
        self.decoder: WhisperDecoder | None = None
        self.multilingual = False
        # One decode at a time (CTranslate2 already uses every configured thread for one), finals first.
        self.slot = DecodeSlot()

    async def start(self) -> None:
        from faster_whisper import WhisperModel

        path = await models.resolve_async(self.settings.model)
        log.info("loading Whisper model from %s", path)
        started = time.monotonic()
        self.model = await asyncio.to_thread(
            WhisperModel, str(path), device="cpu", compute_type="int8", cpu_threads=self.settings.threads
        )
        self.decoder = WhisperDecoder(self.model, self.settings.beam_size, self.settings.final_context_s)
        self.multilingual = self.decoder.multilingual
        # A first decode of each kind pays one-off allocation costs; pay them before reporting SERVING.
        language = "en" if not self.multilingual else None
        await self.slot.run(FINAL, self.decoder.final, np.zeros(RATE, dtype=np.float32), language)
        await self.slot.run(PARTIAL, self.decoder.partial, np.zeros(RATE, dtype=np.float32), language)
        log.info("Whisper ready in %.1f s (multilingual=%s)", time.monotonic() - started, self.multilingual)

    async def close(self) -> None:
        self.model = self.decoder = None

    def _language(self, requested: str) -> str | None:
        lang = (requested or self.service.language or "").split("-")[0].lower() or None
        if not self.multilingual:
            if lang not in (None, "en"):
                raise InvalidArgument(f"model {self.settings.model} is English-only; language {requested!r}")
            return "en"
        return lang

    def _job(self, priority: int, decode: Callable[..., Decoded], samples: np.ndarray, *args: Any) -> _Job:
        job = _Job(upto=0)
        job.task = asyncio.create_task(
            self.slot.run(priority, decode, samples, *args, on_start=job.mark_started)
        )

        def finished(_: asyncio.Task[Decoded]) -> None:
            job.done_at = time.perf_counter()

        job.task.add_done_callback(finished)
        return job

    @staticmethod
    def _event(
        kind: stt_pb2.TranscriptEvent.Kind, text: str, decoded: Decoded, ms: float, audio_s: float
    ) -> stt_pb2.TranscriptEvent:
        return stt_pb2.TranscriptEvent(
            kind=kind,
            text=text,
            start_s=decoded.segments[0][1] if decoded.segments else 0.0,
            end_s=decoded.segments[-1][2] if decoded.segments else 0.0,
            language=decoded.language,
            decode_ms=ms,
            audio_s=audio_s,
        )

    async def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        """Partials: quick greedy decodes of the utterance so far (whisper_decode.py), one at a time, each
        once ``partial_interval_s`` of new speech came. The moment the tail turns quiet, the final decode
        (full beam) starts, speculatively: a partial still waiting for the decode slot is dropped, one
        running is left to finish (CTranslate2 cannot be interrupted; partials are short so this is
        brief) and its result thrown away, and the slot takes finals before partials. If only quiet
        audio follows before the stream ends, that decode is the final transcript, ready about when the
        caller decides speech is over; if the user goes on, it is a stable partial and the next quiet
        tail starts another."""
        check_stream_format(config.audio)
        language = self._language(config.language)
        decoder = self.decoder
        assert decoder is not None, "start() first"
        converter = PcmConverter(config.audio.sample_rate, config.audio.channels or 1, RATE)
        chunks: list[np.ndarray] = []
        total = voiced_upto = partial_from = 0  # samples; voiced_upto: the end of the last loud chunk
        peak_db = -120.0
        interval = int(self.settings.partial_interval_s * RATE)
        partial: _Job | None = None
        final: _Job | None = None  # the latest full decode (speculative until the stream ends)
        anchor: _Job | None = None  # the latest finished full decode: partials may go on from its end

        def drop_partial() -> None:
            nonlocal partial
            if partial is not None:
                partial.task.cancel()  # never runs if still waiting; a running one finishes unseen
                partial = None

        try:
            async for data in audio:
                samples = converter.convert(data)
                if not len(samples):
                    continue
                chunks.append(samples)
                total += len(samples)
                level = _db(samples)
                peak_db = max(peak_db, level)
                if level > max(QUIET_FLOOR_DB, peak_db - QUIET_BELOW_PEAK_DB):
                    voiced_upto = total
                if partial is not None and partial.task.done():
                    job, partial = partial, None
                    decoded = job.task.result()
                    text = " ".join(t for t in (job.prefix, decoded.text) if t)
                    if decoded.text:
                        yield self._event(
                            stt_pb2.TranscriptEvent.PARTIAL, text, decoded, decoded.ms, job.upto / RATE
                        )
                if final is not None and final.task.done() and anchor is not final:
                    anchor = final
                    decoded = final.task.result()
                    if config.interim_results and decoded.text:
                        event = self._event(
                            stt_pb2.TranscriptEvent.PARTIAL,
                            decoded.text,
                            decoded,
                            decoded.ms,
                            final.upto / RATE,
                        )
                        event.stable = True
                        yield event
                quiet_for = total - voiced_upto
                if (
                    voiced_upto
                    and quiet_for >= QUIET_TAIL_S * RATE
                    and (final is None or final.upto < voiced_upto)
                ):
                    drop_partial()
                    final = self._job(FINAL, decoder.final, np.concatenate(chunks), language)
                    final.upto = total
                elif (
                    config.interim_results
                    and (partial is None or not partial.started)
                    and total - partial_from >= interval
                    and voiced_upto > partial_from
                    # A quiet tail may be the end: leave the CPU to the final decode about to start.
                    and quiet_for <= PARTIAL_QUIET_S * RATE
                ):
                    drop_partial()  # one still waiting would decode older audio than this one
                    start, prefix = 0, ""
                    if anchor is not None and total > PARTIAL_WINDOW_S * RATE:
                        # Long: go on from the full decode that ended at a pause, and stitch to its text.
                        start, prefix = anchor.upto, anchor.task.result().text
                    partial = self._job(PARTIAL, decoder.partial, np.concatenate(chunks)[start:], language)
                    partial.upto, partial.prefix, partial_from = total, prefix, total
            drop_partial()
            chunks.append(converter.flush())
            samples = np.concatenate(chunks)
            if len(samples) < RATE // 10:
                yield stt_pb2.TranscriptEvent(kind=stt_pb2.TranscriptEvent.FINAL, audio_s=len(samples) / RATE)
                return
            ended = time.perf_counter()
            if final is not None and final.upto >= voiced_upto:
                # Only quiet audio came after the speculative final: it is the final. Its decode time
                # is what was left of it when the stream ended.
                decoded = await final.task
                left_ms = max(0.0, (final.done_at - ended) * 1000)
                log.debug(
                    "final transcript from the decode at %.2f s (%.0f ms left)", final.upto / RATE, left_ms
                )
                yield self._event(
                    stt_pb2.TranscriptEvent.FINAL, decoded.text, decoded, left_ms, len(samples) / RATE
                )
                return
            final = self._job(FINAL, decoder.final, samples, language)
            decoded = await final.task
            yield self._event(
                stt_pb2.TranscriptEvent.FINAL, decoded.text, decoded, decoded.ms, len(samples) / RATE
            )
        finally:
            for leftover in (partial, final):
                if leftover is not None:
                    leftover.task.cancel()

    async def recognize(self, request: stt_pb2.RecognizeRequest) -> stt_pb2.RecognizeResponse:
        if request.uri:
            raise InvalidArgument("the whisper backend takes audio bytes, not a uri")
        if not request.audio:
            raise InvalidArgument("no audio in the request")
        fmt = request.config.audio
        encoding = FILE_ENCODINGS.get(fmt.encoding)
        if encoding is None:
            encoding = "wav" if request.audio[:4] == b"RIFF" else ""
        if not encoding:
            raise InvalidArgument("say the audio encoding in config.audio.encoding")
        if encoding == "pcm_s16le":
            check_stream_format(fmt)
        samples = await asyncio.to_thread(
            decode_to_mono16k, request.audio, encoding, fmt.sample_rate, fmt.channels or 1
        )
        language = self._language(request.config.language)
        assert self.decoder is not None, "start() first"
        decoded = await self.slot.run(FINAL, self.decoder.file, samples, language)
        return stt_pb2.RecognizeResponse(
            text=decoded.text,
            segments=[
                stt_pb2.Segment(text=t, start_s=start, end_s=end) for t, start, end in decoded.segments
            ],
            language=decoded.language,
            duration_s=len(samples) / RATE,
            processing_ms=decoded.ms,
        )
