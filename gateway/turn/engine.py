"""The turn engine: one state machine per voice session (gateway/turn/states.py).

Client messages and the collaborators' signals go through one queue and are handled one at a time,
so the state only changes in ``move`` and no two handlers race. The collaborators do the work: the
listener (audio, VAD, STT), the responder (LLM, sentences, TTS), playout (sent versus heard), memory
(context and saves) and output (the client, with the hold-back speculation needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway import events as ev
from gateway.clients import Services
from gateway.config import GatewaySettings
from gateway.quotas import Quotas
from gateway.turn import setup
from gateway.turn.clock import ms, now
from gateway.turn.endpointing import Endpointer, TurnModel, Verdict
from gateway.turn.listener import Listener, Offload, new_turn_id
from gateway.turn.memory import INPUT_RATE, Memory
from gateway.turn.output import Output, ReplyChannel, Sink
from gateway.turn.playout import Playout
from gateway.turn.prefill import Prefiller, stable_words
from gateway.turn.reply import CONTINUED, AudioOut, Carried, Final, Partial, Reply, ReplyDone
from gateway.turn.responder import Responder
from gateway.turn.setup import Disconnected, Session, Speculation
from gateway.turn.states import TRANSITIONS, State, Trigger
from gateway.vad import SileroModel

log = logging.getLogger("echo.gateway.engine")

REPLYING = (State.THINKING, State.SPEAKING)
INPUT_BYTES_PER_S = 2 * INPUT_RATE  # 16-bit mono input audio


class TurnEngine:
    def __init__(
        self,
        services: Services,
        settings: GatewaySettings,
        vad_model: SileroModel,
        system_prompt: str,
        sink: Sink,
        offload: Offload = asyncio.to_thread,
        turn_model: TurnModel | None = None,
        user_id: str = "local",
        quotas: Quotas | None = None,
    ) -> None:
        self.services, self.settings, self.system_prompt = services, settings, system_prompt
        self.user_id, self.quotas = user_id, quotas  # the authenticated caller: owns what is stored
        self.vad_model, self.offload = vad_model, offload
        self.output = Output(sink)
        self.state = State.NEW
        self.session = Session()
        self.session.info.user_id = user_id
        self.speculation = Speculation()
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.reply: Reply | None = None  # the reply the user hears
        self.speculative: Reply | None = None  # held back until its turn is confirmed
        self.carried = Carried()  # earlier parts of the turn the user is still speaking
        self.pending_finals: set[str] = set()  # ended utterances whose final transcript is awaited
        self.vad_ended_turn = False  # then an input.commit of only silence does nothing
        self.memory = Memory(
            services.storage,
            self.session.info,
            self.output.error,
            settings.storage_timeout_s,
            settings.history_turns,
        )
        smart = settings.turn_detection == "smart"
        self.endpointer = Endpointer(
            turn_model if smart else None, settings.turn_threshold, self.signal, offload
        )
        self.paused_at_frame = 0  # the VAD's last voiced frame when the user went quiet
        self.prefiller = Prefiller(services.llm, settings.llm_model, settings.llm_timeout_s)
        self.listener: Listener | None = None  # made by session.start
        self.responder: Responder | None = None

    # ----- the state machine ------------------------------------------------------------------

    def move(self, trigger: Trigger, target: State) -> None:
        """The only place the state changes; a move the table does not list is a bug."""
        if target not in TRANSITIONS.get((self.state, trigger), ()):
            raise RuntimeError(f"no move {self.state} --{trigger}--> {target}")
        log.debug("session %s: %s --%s--> %s", self.session.info.session_id, self.state, trigger, target)
        self.state = target

    def listening_state(self) -> State:
        """Where the session is when no reply runs: the user may have a turn of their own going."""
        if self.listener is not None and self.listener.utterance is not None:
            return State.USER_SPEAKING
        return State.TRANSCRIBING if self.pending_finals else State.IDLE

    # ----- the loop -----------------------------------------------------------------------------

    def signal(self, item: Any) -> None:
        self.inbox.put_nowait(item)

    async def run(self) -> None:
        """Handle messages and signals one at a time until the session ends."""
        while self.state is not State.ENDED:
            item = await self.inbox.get()
            try:
                await self.handle(item)
            except ev.ProtocolError as e:
                await self.output.error(e.code, e.message, e.turn_id, e.retry_after_s)
            except Exception as e:  # a gateway bug must not take the session down with it
                log.exception("unexpected error in the turn engine")
                await self.output.error(ev.ErrorCode.INTERNAL, f"{type(e).__name__}: {e}")

    async def handle(self, item: Any) -> None:
        if isinstance(item, Disconnected):
            await self.end("disconnect")
            return
        if self.state is State.NEW and not isinstance(item, ev.SessionStart):
            kind = "audio" if isinstance(item, bytes) else getattr(item, "type", "this")
            raise ev.ProtocolError(ev.ErrorCode.SESSION_NOT_STARTED, f"send session.start before {kind}")
        match item:
            case bytes():
                await self.on_audio(item)
            case Partial():
                await self.on_partial(item)
            case Final():
                await self.on_final(item)
            case Verdict():
                self.endpointer.verdict = item
                await self.end_if_complete()
            case AudioOut(reply=reply) if reply is self.reply and self.state is State.THINKING:
                self.move(Trigger.AUDIO_OUT, State.SPEAKING)
            case ReplyDone(reply=reply) if reply is self.reply and self.state in REPLYING:
                await self.finish(reply)
                self.move(Trigger.REPLY_DONE, self.listening_state())
            case ev.SessionStart() if self.state is not State.NEW:
                raise ev.ProtocolError(
                    ev.ErrorCode.SESSION_ALREADY_STARTED, "this session has already started"
                )
            case ev.SessionStart():
                await setup.start_session(self, item)
                self.move(Trigger.START, State.IDLE)
            case ev.InputText():
                await self.on_text(item.text)
            case ev.InputCommit():
                await self.on_commit()
            case ev.ResponseCancel() if self.state in REPLYING:
                await self.interrupt("client_cancel")
                self.move(Trigger.CANCEL, self.listening_state())
            case ev.PlaybackPosition() if self.reply is not None and self.reply.turn_id == item.turn_id:
                self.reply.playout.report(item.ms)
            case ev.SessionEnd():
                await self.end("session_end")

    # ----- the user's turn --------------------------------------------------------------------

    async def on_audio(self, data: bytes) -> None:
        limit = self.settings.max_frame_bytes
        if len(data) > limit:
            raise ev.ProtocolError(
                ev.ErrorCode.FRAME_TOO_LARGE, f"audio frame of {len(data)} bytes; the limit is {limit}"
            )
        listener = self.listener
        assert listener is not None
        heard = await listener.hear(data)
        spec = self.speculative
        if spec is not None and listener.voice_frame > (spec.speculated_at_frame or 0):
            self.discard_speculation()  # the user was only pausing
        if self.state is State.END_PENDING and listener.voice_frame > self.paused_at_frame:
            self.move(Trigger.RESUME, State.USER_SPEAKING)
        if heard.speech_started_at_s is not None:
            await self.on_speech_start(heard.speech_started_at_s)
        if heard.speech_ended_at_s is not None:
            await self.output.send(ev.SpeechStopped(at_ms=ms(heard.speech_ended_at_s)))
            self.end_utterance(heard.speech_end_time)
        elif heard.too_long:
            self.end_utterance(now())
        elif listener.utterance is not None and listener.quiet_ms >= self.settings.turn_pause_ms:
            self.on_pause()

    def on_pause(self) -> None:
        """A short silence in the user's speech: ask the turn model, and without stable partials
        speculate on the last partial."""
        listener = self.listener
        assert listener is not None and listener.utterance is not None
        if self.state not in (State.USER_SPEAKING, State.END_PENDING):
            return  # a reply plays on (barge-in off)
        self.endpointer.ask(listener.utterance, listener.voice_frame)
        if not self.session.stable_partials and listener.last_partial:
            self.speculate(listener.utterance.turn_id, listener.last_partial)
        self.pause()

    def pause(self) -> None:
        if self.state is State.USER_SPEAKING:
            assert self.listener is not None
            self.paused_at_frame = self.listener.voice_frame
            self.move(Trigger.PAUSE, State.END_PENDING)

    async def end_if_complete(self) -> None:
        """At a pause (on the model's verdict, or on newer words): end the turn if it is complete;
        else listen on, up to max_end_silence_ms."""
        listener = self.listener
        assert listener is not None
        if self.state is not State.END_PENDING:
            return
        if self.endpointer.complete(listener.utterance, listener.voice_frame, listener.last_partial):
            await self.output.send(ev.SpeechStopped(at_ms=ms(listener.voice_ended_at_s)))
            self.end_utterance(listener.voice_end_time())

    async def on_speech_start(self, at_s: float) -> None:
        await self.output.send(ev.SpeechStarted(at_ms=ms(at_s)))
        assert self.listener is not None
        if self.listener.utterance is None:
            self.listener.open()
        self.vad_ended_turn = False
        if self.state in REPLYING and not self.settings.barge_in:
            return  # the reply goes on while the user speaks
        reply = self.reply
        if reply is not None and reply.continued_by(at_s, self.settings.continue_window_ms / 1000):
            # A pause the end-of-turn decision took for the end: the turn goes on. Its reply stops
            # (interrupt_reason "continued", not stored); its words open the turn now being spoken.
            await self.interrupt(CONTINUED)
            self.carried.add(reply.user_text, reply.input_audio)
            self.move(Trigger.CONTINUE, State.USER_SPEAKING)
            return
        await self.interrupt("barge_in")
        self.move(Trigger.SPEECH_START, State.USER_SPEAKING)

    def end_utterance(self, speech_end: float) -> None:
        assert self.listener is not None
        utterance = self.listener.finish(speech_end)
        if utterance is None:
            return
        self.vad_ended_turn = True
        self.pending_finals.add(utterance.turn_id)
        if self.reply is None or self.state not in REPLYING:
            self.move(Trigger.SPEECH_END, State.TRANSCRIBING)  # else a reply plays on (barge-in off)

    async def on_commit(self) -> None:
        """input.commit: end the user's turn now, VAD or not."""
        listener = self.listener
        assert listener is not None
        if listener.utterance is None:
            if listener.pending_is_quiet():
                if self.vad_ended_turn:
                    self.vad_ended_turn = False
                    return  # the VAD already ended this turn; its reply is on the way
                raise ev.ProtocolError(ev.ErrorCode.EMPTY_INPUT, "input.commit: no audio since the last turn")
            await self.interrupt("new_input")
            listener.open(with_pending=True)
        self.end_utterance(now())

    async def on_partial(self, partial: Partial) -> None:
        listener = self.listener
        utterance = listener.utterance if listener is not None else None
        if utterance is None or utterance.turn_id != partial.utterance_id:
            return  # the utterance is over: its final is what counts
        await self.output.send(ev.TranscriptPartial(turn_id=partial.utterance_id, text=partial.text))
        if self.settings.prefill and self.state in (State.USER_SPEAKING, State.END_PENDING):
            text = self.carried.join(partial.text if partial.stable else stable_words(partial.text))
            self.prefiller.update(text, self.memory.messages(self.system_prompt, text))
        if partial.stable:
            self.speculate(partial.utterance_id, partial.text)
        await self.end_if_complete()  # newer words may finish the turn the model heard as complete

    def speculate(self, turn_id: str, text: str) -> None:
        """Start replying to a stable transcript while the end-of-turn silence still runs, held back."""
        if not self.settings.speculate or self.state not in (State.USER_SPEAKING, State.END_PENDING):
            return
        if self.quotas is not None and self.quotas.spent(self.user_id, spoken=True):
            return  # the turn will be refused: no model work on it, not even speculative
        assert self.listener is not None
        text = self.carried.join(text)
        if self.speculative is not None and self.speculative.user_text == text:
            return
        self.discard_speculation()
        self.speculative = self.new_reply(turn_id, text, now(), speculated_at=self.listener.voice_frame)
        self.speculation.started += 1
        self.pause()

    async def on_final(self, final: Final) -> None:
        utterance = final.utterance
        self.pending_finals.discard(utterance.turn_id)
        got = now()
        if final.error is not None:  # no transcript: the error says why (documented)
            await self.output.error(final.error[0], final.error[1], utterance.turn_id)
        else:
            await self.output.send(ev.TranscriptFinal(turn_id=utterance.turn_id, text=final.text))
        listener = self.listener
        assert listener is not None
        if self.state in (State.USER_SPEAKING, State.END_PENDING):
            if listener.utterance is utterance:  # STT failed while the user was still speaking
                listener.cancel()
                self.discard_speculation()
                self.move(Trigger.FINAL_EMPTY, State.IDLE)
            elif final.text:  # an earlier part: carried into the turn still being spoken
                self.carried.add(final.text, utterance.audio)
            return
        text, audio = self.carried.take(final.text, utterance.audio)
        spec, self.speculative = self.speculative, None
        refusal = None
        if text and self.quotas is not None:
            try:
                await self.quotas.admit_turn(self.user_id, spoken=True, turn_id=utterance.turn_id)
            except ev.ProtocolError as e:
                refusal = e
        if not text or refusal is not None:
            if spec is not None:
                self.discard(spec)
            if self.state is State.TRANSCRIBING and self.listening_state() is State.IDLE:
                self.move(Trigger.FINAL_EMPTY, State.IDLE)
            if refusal is not None:  # heard, not answered: the error says why and when to try again
                await self.output.error(refusal.code, refusal.message, refusal.turn_id, refusal.retry_after_s)
            return  # nothing intelligible: no reply (documented)
        timings = {
            "endpointing": ms(utterance.finished_at - utterance.speech_end),
            "stt": ms(got - utterance.finished_at),
            "stt_decode": final.decode_ms,
        }
        await self.interrupt("new_input")
        if spec is not None and spec.user_text == text:
            # The speculative reply was for exactly this turn: it becomes the reply, output released.
            self.speculation.used += 1
            spec.input_audio, spec.speech_end = audio, utterance.speech_end
            spec.voice_ended_at_s = utterance.voice_ended_at_s
            spec.timings.update(timings)
            self.reply = spec
            self.move(Trigger.FINAL, State.THINKING)
            assert spec.channel is not None
            await spec.channel.release()
            return
        if spec is not None:
            self.discard(spec)
        self.reply = self.new_reply(utterance.turn_id, text, utterance.speech_end, audio)
        self.reply.voice_ended_at_s = utterance.voice_ended_at_s
        self.reply.timings.update(timings)
        self.move(Trigger.FINAL, State.THINKING)

    async def on_text(self, text: str) -> None:
        if not text.strip():
            raise ev.ProtocolError(ev.ErrorCode.EMPTY_INPUT, "input.text: 'text' is empty")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise ev.ProtocolError(
                ev.ErrorCode.TEXT_TOO_LONG, f"input.text is {len(text)} characters; the limit is {limit}"
            )
        turn_id = new_turn_id()
        if self.quotas is not None:  # a refused turn leaves the reply in progress alone
            await self.quotas.admit_turn(self.user_id, spoken=False, turn_id=turn_id)
        await self.interrupt("new_input")
        self.reply = self.new_reply(turn_id, text.strip(), now())
        self.move(Trigger.TEXT, State.THINKING)

    # ----- replies ------------------------------------------------------------------------------

    def new_reply(
        self, turn_id: str, text: str, speech_end: float, audio: bytes = b"", speculated_at: int | None = None
    ) -> Reply:
        session = self.session
        playout = Playout(session.voice.sample_rate, session.realtime_playback)
        reply = Reply(turn_id, text, audio, speech_end, playout, speculated_at_frame=speculated_at)
        reply.channel = ReplyChannel(self.output, reply, held=reply.speculative, on_audio_out=self.audio_out)
        assert self.responder is not None
        messages = self.memory.messages(self.system_prompt, text)
        reply.task = asyncio.create_task(self.responder.run(reply, reply.channel, messages))
        return reply

    def audio_out(self, reply: Reply) -> None:
        self.signal(AudioOut(reply))

    async def interrupt(self, reason: str) -> None:
        """Stop the reply in progress, if any, wait until it has wound down, and finish it."""
        reply = self.reply
        if reply is None or reply.task is None:
            return
        if not reply.task.done():
            reply.interrupt_reason = reason
            reply.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reply.task
        await self.finish(reply)

    async def finish(self, reply: Reply) -> None:
        """response.done, and the turn into memory: only what the user heard."""
        if self.reply is not reply:
            return
        self.reply = None
        assert reply.channel is not None
        await reply.channel.end_audio()
        await reply.channel.send(reply.done_event())
        if not reply.taken_back:  # its words go into the next turn instead
            self.memory.remember(reply)
            if self.quotas is not None:
                cost = float(reply.usage_summary().get("total_cost_usd", 0.0))
                self.quotas.record_turn(self.user_id, len(reply.input_audio) / INPUT_BYTES_PER_S, cost)
        self.warm_llm()

    def warm_llm(self) -> None:
        if self.settings.prefill:
            self.prefiller.warm(self.memory.messages(self.system_prompt, ""))

    def discard_speculation(self) -> None:
        spec, self.speculative = self.speculative, None
        if spec is not None:
            self.discard(spec)

    def discard(self, spec: Reply) -> None:
        """A speculation nobody heard: cancelled, no events, no memory."""
        assert spec.channel is not None
        spec.channel.discard()
        self.speculation.discarded += 1
        if spec.task is not None:
            spec.task.cancel()

    # ----- the end ----------------------------------------------------------------------------

    async def end(self, reason: str) -> None:
        """session.end (answered with session.ended) or a disconnect: no turn is lost."""
        await self.endpointer.close()
        await self.prefiller.close()
        if self.listener is not None:
            await self.listener.close()
        self.discard_speculation()
        await self.interrupt(reason)
        await self.memory.flush()
        if reason == "session_end":
            s = self.speculation
            await self.output.send(
                ev.SessionEnded(
                    session_id=self.session.info.session_id,
                    unsaved_turns=len(self.memory.unsaved),
                    speculation=ev.Speculation(started=s.started, used=s.used, discarded=s.discarded),
                )
            )
        self.move(Trigger.END, State.ENDED)
