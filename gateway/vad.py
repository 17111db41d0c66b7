"""Streaming voice activity detection with the Silero model that faster-whisper ships."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

RATE = 16000
FRAME = 512  # samples per Silero step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees


def _model_path() -> str:
    import faster_whisper

    return os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")


class SileroModel:
    """One ONNX session shared by all sessions; the recurrent state lives in each StreamingVAD."""

    def __init__(self) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(
            _model_path(), providers=["CPUExecutionProvider"], sess_options=opts
        )

    def step(self, frame: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        prob, h, c = self.session.run(None, {"input": frame[None, :], "h": h, "c": c})
        return float(prob.ravel()[0]), h, c


@dataclass
class VadEvent:
    kind: str  # "start" or "end"
    # Offset in the session's input audio, seconds, of where speech began or last had voice.
    at_s: float


class StreamingVAD:
    """Feed 16 kHz float32 audio in any chunking; get speech start/end events.

    Hysteresis: speech starts after ``min_speech_ms`` above ``threshold`` and ends after
    ``end_silence_ms`` below ``threshold - 0.15``, so a brief pause inside a sentence does not end it.
    """

    def __init__(self, model: SileroModel, threshold: float, min_speech_ms: int, end_silence_ms: int) -> None:
        self.model = model
        self.threshold = threshold
        self.neg_threshold = max(0.05, threshold - 0.15)
        self.min_speech_frames = max(1, round(min_speech_ms / 32))
        self.end_silence_frames = max(1, round(end_silence_ms / 32))
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)
        self.frames = 0
        self.speaking = False
        self.voiced_run = 0
        self.silent_run = 0
        self.last_voice_frame = 0

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        events: list[VadEvent] = []
        audio = np.concatenate([self.pending, samples]) if self.pending.size else samples
        usable = len(audio) - len(audio) % FRAME
        self.pending = audio[usable:]
        for start in range(0, usable, FRAME):
            frame = audio[start : start + FRAME]
            prob, self.h, self.c = self.model.step(np.concatenate([self.context, frame]), self.h, self.c)
            self.context = frame[-CONTEXT:]
            self.frames += 1
            if prob >= self.threshold:
                self.voiced_run += 1
                self.silent_run = 0
                self.last_voice_frame = self.frames
                if not self.speaking and self.voiced_run >= self.min_speech_frames:
                    self.speaking = True
                    events.append(VadEvent("start", (self.frames - self.voiced_run) * FRAME / RATE))
            elif prob < self.neg_threshold or not self.speaking:
                self.voiced_run = 0
                self.silent_run += 1
                if self.speaking and self.silent_run >= self.end_silence_frames:
                    self.speaking = False
                    events.append(VadEvent("end", self.last_voice_frame * FRAME / RATE))
        return events
