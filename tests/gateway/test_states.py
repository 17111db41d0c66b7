"""The state machine itself: its table, the diagram in docs/architecture.md, and that the gateway
tests make every move the table lists."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gateway.turn.states import TRANSITIONS, State, Trigger, edges
from tests.gateway import conftest, test_every_state, test_failures, test_interruptions, test_turns

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
# A mermaid stateDiagram edge: "  from --> to: trigger" ([*] is the start state, NEW).
EDGE = re.compile(r"^\s*(\[\*\]|\w+)\s*-->\s*(\w+)\s*:\s*(\w+)\s*$")


def diagram_edges() -> set[tuple[str, str, str]]:
    text = DOC.read_text()
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    found = set()
    for line in block.splitlines():
        if match := EDGE.match(line):
            source, target, trigger = match.groups()
            found.add(("new" if source == "[*]" else source, trigger, target))
    return found


def test_the_diagram_in_docs_architecture_is_the_code_s_table() -> None:
    drawn, coded = diagram_edges(), edges()
    assert drawn == coded, f"only drawn: {sorted(drawn - coded)}; only in code: {sorted(coded - drawn)}"


def test_every_state_is_reachable_and_every_state_can_end() -> None:
    reachable, frontier = {State.NEW}, [State.NEW]
    while frontier:
        state = frontier.pop()
        for (source, _), targets in TRANSITIONS.items():
            if source is state:
                for target in targets:
                    if target not in reachable:
                        reachable.add(target)
                        frontier.append(target)
    assert reachable == set(State)
    assert all((s, Trigger.END) in TRANSITIONS for s in State if s is not State.ENDED)
    assert not any(source is State.ENDED for source, _ in TRANSITIONS)
    assert {t for _, t in TRANSITIONS} == set(Trigger)  # no trigger without a move


def test_the_gateway_tests_make_every_move_in_the_table() -> None:
    for module in (test_turns, test_interruptions, test_failures, test_every_state):
        for name, test in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and not inspect.signature(test).parameters:
                test()
    missing = edges() - conftest.VISITED
    assert not missing, f"moves no test makes: {sorted(missing)}"
