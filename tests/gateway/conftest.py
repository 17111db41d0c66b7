"""Gateway tests: the turn engine in process on the fake backends, on virtual time (harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.turn.engine import TurnEngine

# Every (from, trigger, to) move any test made, for test_states.py's coverage check.
VISITED: set[tuple[str, str, str]] = set()


@pytest.fixture(autouse=True)
def record_moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    move = TurnEngine.move

    def recording(self: TurnEngine, trigger, target):  # type: ignore[no-untyped-def]
        before = self.state
        move(self, trigger, target)
        VISITED.add((before.value, trigger.value, target.value))

    monkeypatch.setattr(TurnEngine, "move", recording)
    yield
