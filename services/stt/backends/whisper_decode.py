"""Whisper decodes for the streaming backend: full-quality finals, and quick partials.

Whisper's encoder always reads a 30 s window, mostly padding for a spoken turn; on tiny.en that window
is most of a decode's time (about 290 of 500 ms on a busy 2-core machine). CTranslate2 accepts a shorter
window, so a partial encodes only ``PARTIAL_CONTEXT_S`` (about a fifth of the work). Too little padding
after the speech makes the model repeat itself (measured on Piper and eSpeak NG speech: 5 or 8 s
windows, or the audio plus 1-5 s, gave WER above 1), 10 s gave partials that agree with full-window
ones as well as two full-window decodes of slightly different audio do; so a partial's audio is held to
``PARTIAL_WINDOW_S`` inside that window, its length is capped, and output that still repeats itself is
dropped. Finals keep the whole 30 s window and faster-whisper's own decoding (beam search, temperature
fallback), without timestamp tokens: on 128 utterances from four voices that took the WER from 0.141 to
0.120 (timestamp tokens let it split a short turn into segments and re-read or skip words at the seam).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("echo.stt.whisper")

RATE = 16000
PARTIAL_CONTEXT_S = 10.0  # encoder window of a partial decode
PARTIAL_WINDOW_S = 8.0  # most audio a partial decodes in that window: at least 2 s stay padding
TOKENS_PER_S = 8  # cap on a partial's tokens per second of audio (speech is 3-4): stops a loop early
MAX_COMPRESSION_RATIO = 2.4  # above this, text repeats itself (faster-whisper's own threshold)


@dataclass
class Decoded:
    text: str
    segments: list[tuple[str, float, float]]  # text, start s, end s
    language: str
    ms: float  # decode time


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


class WhisperDecoder:
    """Blocking decodes of one faster_whisper.WhisperModel: call from one worker thread at a time."""

    def __init__(self, model: Any, beam_size: int) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model
        self.beam_size = beam_size
        self.multilingual = bool(model.model.is_multilingual)
        self._tokenizer = Tokenizer
        english = Tokenizer(model.hf_tokenizer, self.multilingual, task="transcribe", language="en")
        self.suppress = get_suppressed_tokens(english, [-1])

    def _transcribe(self, samples: np.ndarray, language: str | None, **options: Any) -> Decoded:
        started = time.perf_counter()
        segments, info = self.model.transcribe(
            samples, language=language, vad_filter=False, condition_on_previous_text=False, **options
        )
        parts = [(s.text.strip(), s.start, s.end) for s in segments]
        text = " ".join(t for t, _, _ in parts if t).strip()
        return Decoded(text, parts, info.language, (time.perf_counter() - started) * 1000)

    def final(self, samples: np.ndarray, language: str | None) -> Decoded:
        """The best transcript of a whole utterance."""
        return self._transcribe(samples, language, beam_size=self.beam_size, without_timestamps=True)

    def file(self, samples: np.ndarray, language: str | None) -> Decoded:
        """A recording (Recognize): with segment timings."""
        return self._transcribe(samples, language, beam_size=self.beam_size)

    def partial(self, samples: np.ndarray, language: str | None) -> Decoded:
        """A quick greedy transcript of the audio so far; audio longer than PARTIAL_WINDOW_S takes the
        full window (slower, still right)."""
        if len(samples) > PARTIAL_WINDOW_S * RATE:
            return self._transcribe(samples, language, beam_size=1, without_timestamps=True)
        import ctranslate2

        started = time.perf_counter()
        features = self.model.feature_extractor(samples)
        window = np.zeros((1, features.shape[0], int(PARTIAL_CONTEXT_S * 100)), dtype=np.float32)
        frames = min(features.shape[1], window.shape[2])
        window[0, :, :frames] = features[:, :frames]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        if language is None and self.multilingual:
            token, _ = self.model.model.detect_language(encoded)[0][0]
            language = token[2:-2]
        tokenizer = self._tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language or "en"
        )
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self.model.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + 8 + int(TOKENS_PER_S * len(samples) / RATE),
            suppress_blank=True,
            suppress_tokens=self.suppress,
        )[0]
        text = tokenizer.decode(result.sequences_ids[0]).strip()  # special tokens are left out
        if compression_ratio(text) > MAX_COMPRESSION_RATIO:
            log.debug("partial dropped, it repeats itself: %r", text)
            text = ""
        ms = (time.perf_counter() - started) * 1000
        return Decoded(text, [(text, 0.0, len(samples) / RATE)], language or "en", ms)
