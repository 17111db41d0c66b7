"""Whisper decodes for the streaming backend: quick partials over a short encoder window, finals over
the full one (or, if configured, a shorter one).

Whisper's encoder always reads a 30 s window, mostly padding for a spoken turn; on tiny.en that window
is most of a decode's time (about 290 of 500 ms on a busy 2-core machine). CTranslate2 accepts a shorter
window. Too short a one makes the model repeat itself (measured on Piper and eSpeak NG speech: windows
of 5 to 8 s gave WER above 1); from 10 s up it transcribes about as well as the full window. Partials
(greedy) use ``PARTIAL_CONTEXT_S``: a fifth of the encoder's work, and they agree with full-window
partials as well as two full-window decodes of slightly different audio do. Finals (beam search) use
``final_context_s``, 30 s by default (ECHO_STT_FINAL_CONTEXT_S, 10-30): over 224 utterances in four
voices, 20 s had the same mean WER (0.132 against 0.134) in 55-75 % of the time, and through the whole
stack with Smart Turn it makes the final ready when the turn ends (bench/latency.py: 14 ms against 169
ms after the turn ended, docs/performance.md); but it changes single words both ways, and one of them
is Piper's "capital of France", heard as "friends" (which failed four end-to-end tests), so it is a
setting, not the default. A short window always leaves ``MIN_PADDING_S`` empty after the audio and caps the
output length; a final that still repeats itself or reaches the cap, or longer audio, is decoded again
by faster-whisper over the full window (with its temperature fallback); such a partial is dropped.
Neither emits timestamp tokens: they let the model split a short turn into segments and re-read or
skip words at the seam (faster-whisper with them: WER 0.154; without: 0.134).
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
FULL_WINDOW_S = 30.0  # Whisper's own window
PARTIAL_CONTEXT_S = 10.0  # encoder window of a partial decode
MIN_FINAL_CONTEXT_S = 10.0  # shorter windows make the model repeat itself
MIN_PADDING_S = 2.0  # of a short window left after the audio
PARTIAL_WINDOW_S = PARTIAL_CONTEXT_S - MIN_PADDING_S  # most audio a partial decodes
TOKENS_PER_S = 8  # output cap per second of audio (speech is 3-4 tokens/s): stops a loop early
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

    def __init__(self, model: Any, beam_size: int, final_context_s: float = FULL_WINDOW_S) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model
        self.beam_size = beam_size
        self.final_context_s = min(final_context_s, FULL_WINDOW_S)
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

    def _windowed(
        self, samples: np.ndarray, language: str | None, window_s: float, beam: int
    ) -> Decoded | None:
        """One decode with the encoder over ``window_s``; None if the output repeats itself or reaches
        the length cap."""
        import ctranslate2

        started = time.perf_counter()
        features = self.model.feature_extractor(samples)
        window = np.zeros((1, features.shape[0], int(window_s * 100)), dtype=np.float32)
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
        cap = 8 + int(TOKENS_PER_S * len(samples) / RATE)
        result = self.model.model.generate(
            encoded,
            [prompt],
            beam_size=beam,
            max_length=len(prompt) + cap,
            suppress_blank=True,
            suppress_tokens=self.suppress,
        )[0]
        tokens = result.sequences_ids[0]  # the prompt left out
        text = tokenizer.decode(tokens).strip()  # special tokens too
        if len(tokens) >= cap - 1 or compression_ratio(text) > MAX_COMPRESSION_RATIO:
            log.debug("decode over %.0f s repeats itself: %r", window_s, text)
            return None
        ms = (time.perf_counter() - started) * 1000
        return Decoded(text, [(text, 0.0, len(samples) / RATE)], language or "en", ms)

    def final(self, samples: np.ndarray, language: str | None) -> Decoded:
        """The best transcript of a whole utterance."""
        if (
            len(samples) <= (self.final_context_s - MIN_PADDING_S) * RATE
            and self.final_context_s < FULL_WINDOW_S
        ):
            decoded = self._windowed(samples, language, self.final_context_s, self.beam_size)
            if decoded is not None:
                return decoded
        return self._transcribe(samples, language, beam_size=self.beam_size, without_timestamps=True)

    def file(self, samples: np.ndarray, language: str | None) -> Decoded:
        """A recording (Recognize): faster-whisper over the full window, with segment timings."""
        return self._transcribe(samples, language, beam_size=self.beam_size)

    def partial(self, samples: np.ndarray, language: str | None) -> Decoded:
        """A quick greedy transcript of the audio so far (empty if the decode went wrong); audio longer
        than PARTIAL_WINDOW_S takes the full window (slower, still right)."""
        if len(samples) > PARTIAL_WINDOW_S * RATE:
            return self._transcribe(samples, language, beam_size=1, without_timestamps=True)
        decoded = self._windowed(samples, language, PARTIAL_CONTEXT_S, 1)
        return decoded or Decoded("", [], language or "en", 0.0)
