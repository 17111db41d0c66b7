"""The turn engine's states and the one table of the moves between them.

A session is in exactly one state. ``TurnEngine.move`` is the only code that changes it, and it
refuses any move this table does not list. docs/architecture.md draws the same table (a test checks).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    NEW = "new"  # connected; no session.start yet
    IDLE = "idle"  # nobody speaking, no reply
    USER_SPEAKING = "user_speaking"  # the VAD hears speech; the utterance streams into STT
    END_PENDING = "end_pending"  # the user went quiet; a speculative reply may run, held back
    TRANSCRIBING = "transcribing"  # the turn is over; waiting for the final transcript
    THINKING = "thinking"  # a reply runs; none of its audio has reached the client yet
    SPEAKING = "speaking"  # the reply's audio is being sent and played
    ENDED = "ended"  # session.end or the client went away


class Trigger(StrEnum):
    START = "start"  # session.start accepted
    SPEECH_START = "speech_start"  # the VAD heard speech begin
    CONTINUE = "continue"  # speech again soon after the turn's end: the reply is taken back
    PAUSE = "pause"  # a stable transcript during a pause: speculate on it
    RESUME = "resume"  # voice again after the pause: the speculation is discarded
    SPEECH_END = "speech_end"  # the VAD's end-of-turn silence, input.commit, or the utterance cap
    FINAL = "final"  # a non-empty final transcript
    FINAL_EMPTY = "final_empty"  # nothing intelligible, or STT failed: no reply
    TEXT = "text"  # input.text
    AUDIO_OUT = "audio_out"  # the reply's first audio reached the client
    REPLY_DONE = "reply_done"  # the reply was played to the end, or failed
    CANCEL = "cancel"  # response.cancel
    END = "end"  # session.end or disconnect


S, T = State, Trigger
_REPLYING = (S.THINKING, S.SPEAKING)
_LISTENING = (S.USER_SPEAKING, S.END_PENDING)

# (state, trigger) -> the states that move may lead to (more than one where a guard decides). Events
# that change nothing (a stable partial while one is already speculated on, the final of an earlier
# part of a turn still being spoken, speech over a reply with barge-in off) make no move.
TRANSITIONS: dict[tuple[State, Trigger], tuple[State, ...]] = {
    (S.NEW, T.START): (S.IDLE,),
    (S.IDLE, T.SPEECH_START): (S.USER_SPEAKING,),
    (S.TRANSCRIBING, T.SPEECH_START): (S.USER_SPEAKING,),  # the pending final is carried into this turn
    (S.USER_SPEAKING, T.PAUSE): (S.END_PENDING,),
    (S.END_PENDING, T.RESUME): (S.USER_SPEAKING,),
    **{(s, T.SPEECH_END): (S.TRANSCRIBING,) for s in (S.IDLE, *_LISTENING, *_REPLYING)},
    **{(s, T.FINAL_EMPTY): (S.IDLE,) for s in _LISTENING},  # STT failed while the user was speaking
    (S.TRANSCRIBING, T.FINAL): (S.THINKING,),
    (S.TRANSCRIBING, T.FINAL_EMPTY): (S.IDLE,),  # nothing intelligible: no reply
    **{(s, T.TEXT): (S.THINKING,) for s in (S.IDLE, *_LISTENING, S.TRANSCRIBING, *_REPLYING)},
    **{(s, T.SPEECH_START): (S.USER_SPEAKING,) for s in _REPLYING},  # barge-in
    **{(s, T.CONTINUE): (S.USER_SPEAKING,) for s in _REPLYING},  # the turn goes on: one answer for all
    **{(s, T.FINAL): (S.THINKING,) for s in _REPLYING},  # barge-in off: the new turn replaces the reply
    (S.THINKING, T.AUDIO_OUT): (S.SPEAKING,),
    **{(s, T.REPLY_DONE): (S.IDLE, S.USER_SPEAKING, S.TRANSCRIBING) for s in _REPLYING},
    **{(s, T.CANCEL): (S.IDLE, S.USER_SPEAKING, S.TRANSCRIBING) for s in _REPLYING},
    **{(s, T.END): (S.ENDED,) for s in State if s is not S.ENDED},
}


def edges() -> set[tuple[str, str, str]]:
    """Every (from, trigger, to) move, for the diagram check."""
    return {(a.value, t.value, b.value) for (a, t), targets in TRANSITIONS.items() for b in targets}
