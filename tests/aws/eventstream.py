"""AWS event-stream frames (application/vnd.amazon.eventstream), encoded and decoded for stand-ins.

Encoding uses amazon-transcribe's serializer and decoding botocore's parser: both are the SDKs' own
wire code, so a frame that round-trips here is a frame the real clients accept.
"""

from __future__ import annotations

import json
from typing import Any

from amazon_transcribe.eventstream import EventStreamMessageSerializer
from botocore.eventstream import EventStreamBuffer, EventStreamMessage

_serializer = EventStreamMessageSerializer()


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":message-type": "event", ":event-type": event_type, ":content-type": "application/json"}
    return _serializer.serialize(headers, json.dumps(payload).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {
        ":message-type": "exception",
        ":exception-type": exception_type,
        ":content-type": "application/json",
    }
    return _serializer.serialize(headers, json.dumps({"message": message, "Message": message}).encode())


class FrameReader:
    """Feed bytes as they arrive; iterate complete messages."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        self._buffer.add_data(data)
        return list(self._buffer)
