"""Semantic end-of-turn detection with Smart Turn v3.2 (pipecat-ai, BSD-2).

The model is a Whisper-tiny encoder with a classifier head: from the sound of the turn's last 8 s
(words, intonation, how the voice trails off) it gives the probability that the speaker has finished.
It reads 80-bin Whisper log-mel features of exactly 8 s at 16 kHz: a shorter turn is padded with
silence at the *start*, the way the model was trained, so the turn's end always sits at the window's
end; a longer one keeps only its last 8 s. The waveform is normalised to zero mean and unit variance
over the whole window (padding included) before the features, as in training.

What to give it (as Pipecat does): the turn from a little before speech began up to now, including the
short silence that prompted the question (~0.2 s). Its answer depends on that silence: the longer the
quiet tail, the more "complete" it says, so ask once at the short pause, not again and again as the
pause grows. Audio with no speech at all reads as complete (about 0.99): ask only after speech.

One inference takes 60-120 ms of one core (2-core machine, idle to busy): callers run ``probability``
off the event loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.common import models

MODEL_NAME = "smart-turn-v3.2"
SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // 160  # Whisper's 10 ms hop: 800 frames
# What the training pipeline (transformers' WhisperFeatureExtractor) adds to the variance.
_NORM_EPS = 1e-7


def window(audio: np.ndarray) -> np.ndarray:
    """The model's 8 s input: the turn's last 8 s, left-padded with zeros when shorter (float32)."""
    if audio.ndim != 1:
        raise ValueError(f"Smart Turn needs mono audio as a 1-D array; got shape {audio.shape}")
    samples = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
    if len(samples) < WINDOW_SAMPLES:
        samples = np.concatenate([np.zeros(WINDOW_SAMPLES - len(samples), dtype=np.float32), samples])
    return samples


class SmartTurn:
    """Smart Turn v3.2: is the user's turn complete, from the sound of its last 8 s?

    One instance can serve every session: it holds no per-turn state, and onnxruntime's ``run`` is
    safe to call from several threads at once.
    """

    def __init__(self, model_path: str | Path) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = onnxruntime.SessionOptions()
        # One thread: the gateway runs beside STT, LLM and TTS on few cores; more threads would take
        # them from the decode that answers the user, for little gain on a model this small.
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.session = onnxruntime.InferenceSession(
            str(model_path), providers=["CPUExecutionProvider"], sess_options=opts
        )
        # faster-whisper's extractor computes Whisper's log-mel (n_fft 400, hop 160, Slaney mel,
        # log10, clamp to max - 8, (x + 4) / 4) in numpy, without torch or transformers.
        self.extractor = FeatureExtractor(
            feature_size=N_MELS, sampling_rate=SAMPLE_RATE, chunk_length=WINDOW_S
        )

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The model's input for a turn: shape (1, 80, 800), float32."""
        samples = window(audio)
        samples = (samples - samples.mean()) / np.sqrt(samples.var() + _NORM_EPS)
        # padding=0: the window is already exactly 8 s (the extractor's default appends 10 ms).
        mel = self.extractor(samples, padding=0)
        if mel.shape != (N_MELS, N_FRAMES):  # a faster-whisper change must not feed the model garbage
            raise RuntimeError(f"Whisper features have shape {mel.shape}, expected {(N_MELS, N_FRAMES)}")
        return mel[None, :, :].astype(np.float32)

    def probability(self, audio: np.ndarray) -> float:
        """Probability in [0, 1] that the turn is complete; ``audio`` is float32 mono 16 kHz, the turn
        so far. Blocking (60-120 ms of one core): run it off the event loop."""
        (output,) = self.session.run(None, {"input_features": self.features(audio)})
        return float(output.ravel()[0])  # the graph ends in a sigmoid: already a probability


def load() -> SmartTurn:
    """The pinned Smart Turn model from the model cache (blocking: it may re-hash the file)."""
    try:
        path = models.resolve(MODEL_NAME)
    except models.ModelError as e:
        raise models.ModelError(f"semantic end-of-turn detection needs Smart Turn: {e}") from e
    return SmartTurn(path)
