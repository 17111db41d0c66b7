"""faster-whisper (CTranslate2, CPU int8): streaming partials by re-decoding the growing utterance."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from echo.v1 import audio_pb2, stt_pb2
from services.common import models
from services.common.audio import PcmConverter, decode_to_mono16k
from services.common.capabilities import BackendCapabilities
from services.common.config import load_settings
from services.common.errors import InvalidArgument
from services.stt.config import STTSettings

log = logging.getLogger("echo.stt.whisper")


@dataclass
class WhisperSettings:
    """ECHO_STT_MODEL, ECHO_STT_BEAM_SIZE, ...: the names these had before backends owned their settings."""

    model: str = field(default="whisper-tiny.en", metadata={"help": "model name or path"})
    beam_size: int = field(default=5, metadata={"help": "beam size for final transcripts"})
    threads: int = field(default=2, metadata={"help": "CPU threads for decoding"})
    partial_interval_s: float = field(default=0.5, metadata={"help": "new audio between partials"})


def load_whisper_settings() -> WhisperSettings:
    return load_settings(WhisperSettings, prefix="ECHO_STT_", section="stt")


RATE = 16000
# "Quiet" for the early final decode: a chunk well below the utterance's peak and near silence.
QUIET_BELOW_PEAK_DB = 25.0
QUIET_FLOOR_DB = -50.0
QUIET_TAIL_S = 0.15
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


class WhisperBackend:
    name = "whisper"
    # Stable partials: the full-beam decode on a quiet tail. No word timings (segments only).
    capabilities = BackendCapabilities(streaming=True, stable_partials=True, word_timings=False)

    requires = ("faster_whisper",)

    def __init__(self, service: STTSettings, settings: WhisperSettings | None = None) -> None:
        self.service = service
        self.settings = settings or load_whisper_settings()
        self.model: Any = None  # faster_whisper.WhisperModel once started
        self.multilingual = False
        # One decode at a time: CTranslate2 already uses every configured thread for one.
        self._decode_slot = asyncio.Semaphore(1)

    async def start(self) -> None:
        from faster_whisper import WhisperModel

        path = await models.resolve_async(self.settings.model)
        log.info("loading Whisper model from %s", path)
        started = time.monotonic()
        self.model = await asyncio.to_thread(
            WhisperModel, str(path), device="cpu", compute_type="int8", cpu_threads=self.settings.threads
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        # A first decode pays one-off allocation costs; pay them before reporting SERVING.
        await self._decode(np.zeros(RATE, dtype=np.float32), "en" if not self.multilingual else None, 1)
        log.info("Whisper ready in %.1f s (multilingual=%s)", time.monotonic() - started, self.multilingual)

    async def close(self) -> None:
        self.model = None

    def _language(self, requested: str) -> str | None:
        lang = (requested or self.service.language or "").split("-")[0].lower() or None
        if not self.multilingual:
            if lang not in (None, "en"):
                raise InvalidArgument(f"model {self.settings.model} is English-only; language {requested!r}")
            return "en"
        return lang

    def _decode_sync(self, samples: np.ndarray, language: str | None, beam: int) -> tuple[list, str]:
        assert self.model is not None
        segments, info = self.model.transcribe(
            samples,
            language=language,
            beam_size=beam,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return list(segments), info.language

    async def _decode(self, samples: np.ndarray, language: str | None, beam: int) -> tuple[list, str, float]:
        async with self._decode_slot:
            started = time.perf_counter()
            segments, lang = await asyncio.to_thread(self._decode_sync, samples, language, beam)
            return segments, lang, (time.perf_counter() - started) * 1000

    def _event(
        self, kind: stt_pb2.TranscriptEvent.Kind, segments: list, lang: str, ms: float, audio_s: float
    ) -> stt_pb2.TranscriptEvent:
        text = " ".join(s.text.strip() for s in segments).strip()
        return stt_pb2.TranscriptEvent(
            kind=kind,
            text=text,
            start_s=segments[0].start if segments else 0.0,
            end_s=segments[-1].end if segments else 0.0,
            language=lang,
            decode_ms=ms,
            audio_s=audio_s,
        )

    async def stream(
        self, config: stt_pb2.RecognitionConfig, audio: AsyncIterator[bytes]
    ) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        """Partials re-decode the growing utterance (greedy). As soon as the tail turns quiet, a
        full-beam decode starts; if only silence follows before the stream ends, that decode is the
        final transcript, so the final is ready almost as soon as the caller says speech is over."""
        check_stream_format(config.audio)
        language = self._language(config.language)
        rate, channels = config.audio.sample_rate, config.audio.channels or 1
        chunks: list[np.ndarray] = []
        total = 0
        decoded_upto = 0
        voiced_upto = 0  # samples up to the end of the last loud chunk
        peak_db = -120.0
        running: asyncio.Task | None = None
        running_upto, running_is_final = 0, False
        candidate: tuple[int, tuple[list, str, float]] | None = None  # full-beam decode of audio[:n]
        interval = int(self.settings.partial_interval_s * RATE)
        converter = PcmConverter(rate, channels, RATE)

        def take(task: asyncio.Task) -> stt_pb2.TranscriptEvent:
            nonlocal candidate
            segments, lang, ms = task.result()
            event = self._event(stt_pb2.TranscriptEvent.PARTIAL, segments, lang, ms, running_upto / RATE)
            if running_is_final:
                candidate = (running_upto, (segments, lang, ms))
                event.stable = True
            return event

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
                if running is not None and running.done():
                    event = take(running)
                    running = None
                    if config.interim_results and event.text:
                        yield event
                if running is not None:
                    continue
                quiet_tail = voiced_upto > 0 and total - voiced_upto >= QUIET_TAIL_S * RATE
                if quiet_tail and (candidate is None or candidate[0] < voiced_upto):
                    decoded_upto = running_upto = total
                    running_is_final = True
                    running = asyncio.create_task(
                        self._decode(np.concatenate(chunks), language, self.settings.beam_size)
                    )
                elif (
                    config.interim_results and total - decoded_upto >= interval and voiced_upto > decoded_upto
                ):
                    # Only when there is new speech: re-decoding trailing silence would just compete
                    # with the reply's LLM for the CPU.
                    # Partials use greedy decoding: they are replaced anyway, and speed matters more.
                    decoded_upto = running_upto = total
                    running_is_final = False
                    running = asyncio.create_task(self._decode(np.concatenate(chunks), language, 1))
            if running is not None:
                await running
                take(running)
                running = None
            chunks.append(converter.flush())
            samples = np.concatenate(chunks)
            if len(samples) < RATE // 10:
                yield stt_pb2.TranscriptEvent(kind=stt_pb2.TranscriptEvent.FINAL, audio_s=len(samples) / RATE)
                return
            if candidate is not None and candidate[0] >= voiced_upto:
                # Only quiet audio came after the full-beam decode: it already is the final.
                segments, lang, _ = candidate[1]
                log.debug("final transcript reused from the decode at %.2f s", candidate[0] / RATE)
                yield self._event(stt_pb2.TranscriptEvent.FINAL, segments, lang, 0.0, len(samples) / RATE)
                return
            segments, lang, ms = await self._decode(samples, language, self.settings.beam_size)
            yield self._event(stt_pb2.TranscriptEvent.FINAL, segments, lang, ms, len(samples) / RATE)
        finally:
            if running is not None:
                running.cancel()

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
        segments, lang, ms = await self._decode(samples, language, self.settings.beam_size)
        return stt_pb2.RecognizeResponse(
            text=" ".join(s.text.strip() for s in segments).strip(),
            segments=[stt_pb2.Segment(text=s.text.strip(), start_s=s.start, end_s=s.end) for s in segments],
            language=lang,
            duration_s=len(samples) / RATE,
            processing_ms=ms,
        )
