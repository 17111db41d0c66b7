"""The protocol's typed definition (gateway/events.py): parsing client frames into their classes with
the documented error codes, server events on the wire and back, and the published schema."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gateway import events
from gateway.events import (
    AudioMs,
    ErrorCode,
    InputAudio,
    InputText,
    OutputAudio,
    PlaybackPosition,
    ProtocolError,
    ResponseDone,
    SessionStart,
    parse_client_message,
    parse_server_event,
    to_wire,
)

LIMIT = 16384


def refused(frame: str | dict) -> ProtocolError:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text, LIMIT)
    assert caught.value.message
    return caught.value


def test_a_full_session_start_is_parsed_into_its_classes():
    message = parse_client_message(
        json.dumps(
            {
                "type": "session.start",
                "audio": {"encoding": "pcm_s16le", "sample_rate": 48000, "channels": 2},
                "output_audio": {"sample_rate": 24000, "playback": "none"},
                "voice": "piper-joe",
                "language": "en",
                "conversation_id": "abc",
                "from_the_future": {"ignored": True},
            }
        ),
        LIMIT,
    )
    assert message == SessionStart(
        audio=InputAudio(sample_rate=48000, channels=2),
        output_audio=OutputAudio(sample_rate=24000, playback="none"),
        voice="piper-joe",
        language="en",
        conversation_id="abc",
    )


def test_defaults_and_null_mean_absent():
    assert parse_client_message('{"type": "session.start"}', LIMIT) == SessionStart(
        audio=InputAudio(encoding="pcm_s16le", sample_rate=16000, channels=1),
        output_audio=OutputAudio(encoding="pcm_s16le", sample_rate=0, playback="realtime"),
    )
    start = parse_client_message('{"type": "session.start", "voice": null, "output_audio": null}', LIMIT)
    assert isinstance(start, SessionStart) and start.voice is None and start.output_audio == OutputAudio()
    # Blank or absent text is the turn logic's empty_input, not a type error.
    assert parse_client_message('{"type": "input.text"}', LIMIT) == InputText(text="")
    assert parse_client_message('{"type": "input.text", "text": null}', LIMIT) == InputText(text="")


@pytest.mark.parametrize("kind", events.CLIENT_TYPES)
def test_every_client_type_parses_to_its_own_class(kind):
    fields = {"turn_id": "t1", "ms": 250} if kind == "playback.position" else {}
    message = parse_client_message(json.dumps({"type": kind, **fields}), LIMIT)
    assert type(message) is events.CLIENT_MESSAGES[kind] and message.type == kind


def test_playback_position_takes_ints_and_floats():
    assert parse_client_message('{"type": "playback.position", "turn_id": "t", "ms": 5}', LIMIT) == (
        PlaybackPosition(turn_id="t", ms=5.0)
    )
    position = parse_client_message('{"type": "playback.position", "turn_id": "t", "ms": 0.5}', LIMIT)
    assert isinstance(position, PlaybackPosition) and position.ms == 0.5


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_JSON),
        ('"a string"', ErrorCode.INVALID_JSON),
        ({"no": "type"}, ErrorCode.INVALID_MESSAGE),
        ({"type": 7}, ErrorCode.INVALID_MESSAGE),
        ({"type": "dance"}, ErrorCode.UNKNOWN_TYPE),
        ({"type": "input.text", "text": 42}, ErrorCode.INVALID_MESSAGE),
        ({"type": "input.text", "text": True}, ErrorCode.INVALID_MESSAGE),
        ({"type": "playback.position", "turn_id": "t", "ms": -5}, ErrorCode.INVALID_MESSAGE),
        ({"type": "playback.position", "turn_id": "t", "ms": True}, ErrorCode.INVALID_MESSAGE),
        ({"type": "playback.position", "turn_id": "t", "ms": "12"}, ErrorCode.INVALID_MESSAGE),
        ({"type": "playback.position", "turn_id": "t"}, ErrorCode.INVALID_MESSAGE),
        ({"type": "playback.position", "turn_id": 3, "ms": 1}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "audio": "loud"}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "output_audio": []}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "output_audio": {"playback": "later"}}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "voice": 5}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "language": ["en"]}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "conversation_id": 12}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "audio": {"sample_rate": "16000"}}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "audio": {"sample_rate": True}}, ErrorCode.INVALID_MESSAGE),
        ({"type": "session.start", "audio": {"encoding": "opus"}}, ErrorCode.UNSUPPORTED_AUDIO_FORMAT),
        ({"type": "session.start", "audio": {"sample_rate": 12345}}, ErrorCode.UNSUPPORTED_AUDIO_FORMAT),
        ({"type": "session.start", "audio": {"channels": 6}}, ErrorCode.UNSUPPORTED_AUDIO_FORMAT),
        ({"type": "session.start", "output_audio": {"encoding": "mp3"}}, ErrorCode.UNSUPPORTED_AUDIO_FORMAT),
        ({"type": "session.start", "output_audio": {"sample_rate": 11}}, ErrorCode.UNSUPPORTED_AUDIO_FORMAT),
        ({"type": "input.text", "text": "a" * 20000}, ErrorCode.MESSAGE_TOO_LARGE),
    ],
)
def test_bad_frames_get_their_documented_code(frame, code):
    assert refused(frame).code == code


def test_error_messages_say_what_is_wrong():
    assert "16384 bytes" in refused({"type": "input.text", "text": "a" * 20000}).message
    assert (
        "'dance'" in refused({"type": "dance"}).message and "session.start" in refused({"type": "x"}).message
    )
    assert refused({"type": "session.start", "audio": {"sample_rate": 12345}}).message == (
        "sample rate 12345 is not supported; use one of [8000, 16000, 22050, 24000, 32000, 44100, 48000]"
    )
    # The client's value is quoted as sent, braces and all (it is not a message template).
    assert "'{reason}'" in refused({"type": "session.start", "audio": {"encoding": "{reason}"}}).message
    bad_ms = refused({"type": "playback.position", "turn_id": "t", "ms": -5}).message
    assert bad_ms.startswith("playback.position: 'ms'")
    bad_playback = refused({"type": "session.start", "output_audio": {"playback": "later"}}).message
    assert "output_audio.playback" in bad_playback and "realtime" in bad_playback


def test_input_audio_is_checked_before_output_audio():
    frame = {"type": "session.start", "audio": {"channels": 3}, "output_audio": {"playback": "x"}}
    error = refused(frame)
    assert error.code == ErrorCode.UNSUPPORTED_AUDIO_FORMAT and "channels" in error.message


def test_the_client_classes_refuse_what_the_gateway_would():
    with pytest.raises(ValidationError):
        InputAudio(sample_rate=12345)
    with pytest.raises(ValidationError):
        PlaybackPosition(turn_id="t", ms=-1)


def test_error_code_helpers_return_members_and_refuse_unknown_services():
    for service in events.SERVICES:
        assert ErrorCode.unavailable(service) is ErrorCode(f"{service}_unavailable")
        assert ErrorCode.timeout(service) is ErrorCode(f"{service}_timeout")
        assert ErrorCode.failed(service) is ErrorCode(f"{service}_error")
    with pytest.raises(ValueError):
        ErrorCode.unavailable("printer")
    assert ErrorCode.INTERNAL == "internal_error"


def test_protocol_error_carries_a_documented_code():
    error = ProtocolError("stt_timeout", "slow")
    assert error.code is ErrorCode.STT_TIMEOUT and error.message == "slow" and str(error) == "slow"
    with pytest.raises(ValueError):
        ProtocolError("made_up_code", "no such code")


def test_server_events_leave_absent_optionals_off_the_wire_and_parse_back():
    done = ResponseDone(
        turn_id="t1",
        text="Hi.",
        interrupted=False,
        usage={"output_tokens": 3, "total_cost_usd": 0.0},
        timings_ms={"total": 120.5},
        audio_ms=AudioMs(sent=900, heard=900),
    )
    wire = json.loads(to_wire(done))
    assert wire == {
        "type": "response.done",
        "turn_id": "t1",
        "text": "Hi.",
        "interrupted": False,
        "usage": {"output_tokens": 3, "total_cost_usd": 0.0},
        "timings_ms": {"total": 120.5},
        "audio_ms": {"sent": 900.0, "heard": 900.0},
    }
    assert parse_server_event(to_wire(done)) == done
    cut = done.model_copy(update={"interrupted": True, "interrupt_reason": "barge_in", "cancelled_calls": []})
    assert json.loads(to_wire(cut))["cancelled_calls"] == []  # empty, not absent
    error = json.loads(to_wire(events.Error(code=ErrorCode.LLM_TIMEOUT, message="slow")))
    assert error == {"type": "error", "code": "llm_timeout", "message": "slow"}


def test_every_server_type_round_trips():
    samples = {
        "session.started": {
            "session_id": "s",
            "conversation_id": "c",
            "output_audio": {
                "encoding": "pcm_s16le",
                "sample_rate": 22050,
                "channels": 1,
                "playback": "none",
            },
            "voice": "v",
            "resumed_turns": 0,
            "limits": {"max_frame_bytes": 65536, "max_text_chars": 2000, "max_utterance_s": 30.0},
        },
        "speech.started": {"at_ms": 12.5},
        "speech.stopped": {"at_ms": 900},
        "transcript.partial": {"turn_id": "t", "text": "what"},
        "transcript.final": {"turn_id": "t", "text": ""},
        "response.text.delta": {"turn_id": "t", "delta": "Par"},
        "response.audio.start": {
            "turn_id": "t",
            "encoding": "pcm_s16le",
            "sample_rate": 22050,
            "channels": 1,
        },
        "response.audio.end": {"turn_id": "t"},
        "response.done": {
            "turn_id": "t",
            "text": "",
            "interrupted": True,
            "interrupt_reason": "client_cancel",
            "cancelled_calls": ["llm"],
            "usage": {},
            "timings_ms": {},
            "audio_ms": {"sent": 0, "heard": 0},
            "error": "llm_error",
            "speculative": True,
        },
        "session.ended": {
            "session_id": "s",
            "unsaved_turns": 0,
            "speculation": {"started": 1, "used": 1, "discarded": 0},
        },
        "error": {"code": "empty_input", "message": "m", "turn_id": "t"},
    }
    assert set(samples) == set(events.SERVER_TYPES)
    for kind, fields in samples.items():
        event = parse_server_event(json.dumps({"type": kind, **fields}))
        assert type(event) is events.SERVER_EVENTS[kind]
        assert parse_server_event(to_wire(event)) == event


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "speech.started"},  # a required field missing
        {"type": "speech.started", "at_ms": 1, "extra": 1},  # an undocumented field
        {"type": "error", "code": "not_a_code", "message": "m"},
        {"type": "response.thinking", "turn_id": "t"},
    ],
)
def test_a_malformed_server_event_is_refused(frame):
    with pytest.raises(ValidationError):
        parse_server_event(json.dumps(frame))


def test_the_schema_lists_every_message_and_code():
    schema = json.loads(json.dumps(events.protocol_schema()))  # plain JSON, as served
    assert schema["client_types"] == list(events.CLIENT_TYPES)
    assert schema["server_types"] == list(events.SERVER_TYPES)
    assert schema["error_codes"] == [code.value for code in ErrorCode]
    client = schema["client"]
    assert sorted(client["discriminator"]["mapping"]) == sorted(events.CLIENT_TYPES)
    assert sorted(schema["server"]["discriminator"]["mapping"]) == sorted(events.SERVER_TYPES)
    audio = client["$defs"]["InputAudio"]["properties"]
    assert audio["sample_rate"]["enum"] == list(events.INPUT_SAMPLE_RATES)
    assert client["$defs"]["PlaybackPosition"]["required"] == ["type", "turn_id", "ms"]
    assert schema["server"]["$defs"]["ErrorCode"]["enum"] == schema["error_codes"]


def test_the_gateway_serves_the_schema():
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.config import GatewaySettings

    # Outside `with`, TestClient skips the lifespan (gRPC channels, the VAD model): this route needs neither.
    app = create_app(GatewaySettings())
    reply = TestClient(app, base_url="http://127.0.0.1:8080").get("/v1/protocol.schema.json")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert reply.json() == json.loads(json.dumps(events.protocol_schema()))
