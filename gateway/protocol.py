"""WebSocket protocol v1: the dict-based parsing the session still uses (events.py defines the messages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Defined once in gateway/events.py; re-exported here for the code that still imports them from here.
from gateway.events import (
    CLIENT_TYPES,
    INPUT_ENCODINGS,
    INPUT_SAMPLE_RATES,
    PLAYBACK_MODES,
    ErrorCode,
    ProtocolError,
    decode_frame,
)

__all__ = [
    "CLIENT_TYPES",
    "INPUT_ENCODINGS",
    "INPUT_SAMPLE_RATES",
    "PLAYBACK_MODES",
    "AudioSpec",
    "ErrorCode",
    "ProtocolError",
    "number_field",
    "parse_input_audio",
    "parse_message",
    "parse_output_audio",
    "string_field",
]


@dataclass
class AudioSpec:
    encoding: str = "pcm_s16le"
    sample_rate: int = 16000
    channels: int = 1


def parse_message(text: str, max_bytes: int) -> dict[str, Any]:
    return decode_frame(text, max_bytes)


def _field(message: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = message.get(name, default)
    if (value is not None and not isinstance(value, kind)) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{message['type']}: '{name}' must be {kind.__name__}")
    return value


def parse_input_audio(message: dict[str, Any]) -> AudioSpec:
    audio = message.get("audio", {})
    if not isinstance(audio, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "session.start: 'audio' must be an object")
    spec = AudioSpec(
        encoding=audio.get("encoding", "pcm_s16le"),
        sample_rate=audio.get("sample_rate", 16000),
        channels=audio.get("channels", 1),
    )
    if spec.encoding not in INPUT_ENCODINGS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
            f"audio encoding {spec.encoding!r} is not supported; use one of {list(INPUT_ENCODINGS)}",
        )
    if spec.sample_rate not in INPUT_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
            f"sample rate {spec.sample_rate!r} is not supported; use one of {list(INPUT_SAMPLE_RATES)}",
        )
    if spec.channels not in (1, 2):
        raise ProtocolError(ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"{spec.channels!r} channels; send 1 or 2")
    return spec


def parse_output_audio(message: dict[str, Any]) -> tuple[int, bool]:
    """The requested output sample rate (0: the voice's own), and whether the client plays the reply's
    audio in real time as it arrives (``playback: "realtime"``, the default) or not at all (``"none"``)."""
    out = message.get("output_audio") or {}
    if not isinstance(out, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "session.start: 'output_audio' must be an object")
    if out.get("encoding", "pcm_s16le") != "pcm_s16le":
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"output encoding {out.get('encoding')!r}; use 'pcm_s16le'"
        )
    rate = out.get("sample_rate", 0)
    if rate and rate not in INPUT_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"output sample rate {rate!r} is not supported"
        )
    playback = out.get("playback", "realtime")
    if playback not in PLAYBACK_MODES:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"session.start: output_audio.playback {playback!r}; use one of {list(PLAYBACK_MODES)}",
        )
    return int(rate), playback == "realtime"


def string_field(message: dict[str, Any], name: str, default: str | None = None) -> str | None:
    return _field(message, name, str, default)


def number_field(message: dict[str, Any], name: str) -> float:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{message['type']}: '{name}' must be a number >= 0")
    return float(value)
