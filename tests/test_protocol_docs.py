"""docs/protocol.md and gateway/events.py describe the same protocol: the same client messages, server
events (with the same fields, optional ones marked `?`) and error codes, and the doc's examples parse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway import events

DOC = (Path(__file__).parent.parent / "docs/protocol.md").read_text()


def section(title: str) -> str:
    """The text under ``## title``, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/protocol.md has no '## {title}' section"
    return match[1]


def first_table(text: str) -> list[list[str]]:
    """The cells of each body row of the first markdown table in ``text``."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("|"):
            break
    next(lines)  # the |---| line under the header
    rows = []
    for row in lines:
        if not row.startswith("|"):
            break
        rows.append([cell.strip() for cell in row.strip("|").split("|")])
    return rows


def client_headings() -> list[str]:
    return re.findall(r"^### `([^`]+)`$", section("Client messages"), re.M)


def server_rows() -> dict[str, str]:
    rows = first_table(section("Server messages"))
    return {row[0].strip("`"): row[1] for row in rows if row[0].startswith("`")}


def documented_fields(cell: str) -> dict[str, tuple[bool, set[str]]]:
    """``name: (optional, nested names)`` for each backticked field in a table cell, e.g.
    "`audio_ms {sent, heard}`, `error`?"."""
    fields = {}
    for token, mark in re.findall(r"`([^`]+)`(\??)", cell):
        name, _, nested = token.partition(" ")
        fields[name] = (mark == "?", set(re.findall(r"\w+", nested)))
    return fields


def class_fields(cls: type[BaseModel]) -> dict[str, tuple[bool, set[str]]]:
    fields = {}
    for name, info in cls.model_fields.items():
        if name == "type":
            continue
        nested = info.annotation
        inner = (
            set(nested.model_fields) if isinstance(nested, type) and issubclass(nested, BaseModel) else set()
        )
        fields[name] = (not info.is_required(), inner)
    return fields


def test_the_client_messages_are_the_ones_documented():
    assert client_headings() == list(events.CLIENT_TYPES)


def test_the_server_events_are_the_ones_documented():
    assert list(server_rows()) == list(events.SERVER_TYPES)


def test_the_error_codes_are_the_ones_documented():
    codes = [code for row in first_table(section("Errors")) for code in re.findall(r"`(\w+)`", row[0])]
    assert len(codes) == len(set(codes)), "a code is documented twice"
    assert set(codes) == {code.value for code in events.ErrorCode}


@pytest.mark.parametrize("kind", events.SERVER_TYPES)
def test_each_server_event_has_the_documented_fields(kind):
    documented = documented_fields(server_rows()[kind])
    assert documented == class_fields(events.SERVER_EVENTS[kind]), (
        f"docs/protocol.md's row for {kind} (name: (optional, nested fields)) differs from the class"
    )


def test_the_client_examples_parse_as_their_message():
    text = section("Client messages")
    parts = re.split(r"^### `([^`]+)`$", text, flags=re.M)
    examples = 0
    for kind, body in zip(parts[1::2], parts[2::2], strict=True):
        blocks = re.findall(r"```json\n(.*?)```", body, re.S) + re.findall(r"`(\{\"type\".*?\})`", body)
        for example in blocks:
            message = events.parse_client_message(example, 16384)
            assert message.type == kind, example
            examples += 1
        assert blocks, f"{kind} has no example"
    assert examples >= len(events.CLIENT_TYPES)


def test_the_session_start_example_is_the_schemas_session_start():
    """Every field the doc's session.start example sets is a field of the class (none ignored)."""
    body = section("Client messages").split("### `input.text`")[0]
    example = json.loads(re.findall(r"```json\n(.*?)```", body, re.S)[0])
    assert set(example) <= set(events.SessionStart.model_fields)
    assert set(example["audio"]) <= set(events.InputAudio.model_fields)
    assert set(example["output_audio"]) <= set(events.OutputAudio.model_fields)


def test_the_schema_endpoint_is_documented():
    assert "/v1/protocol.schema.json" in section("REST")
