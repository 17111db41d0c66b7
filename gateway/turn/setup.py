"""Session start: the voice, the resumed history and the STT service's capabilities."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from echo.v1 import audio_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc
from gateway import events as ev
from gateway.clients import rpc_error
from gateway.turn.listener import Listener
from gateway.turn.memory import Memory, SessionInfo
from gateway.turn.output import Output
from gateway.turn.responder import Generation, Responder, Voice
from gateway.vad import RATE, StreamingVAD
from services.common.audio import PcmConverter

if TYPE_CHECKING:
    from gateway.turn.engine import TurnEngine

DEFAULT_RATE = 22050


class Disconnected:
    """The client went away."""


@dataclass
class Speculation:
    started: int = 0
    used: int = 0
    discarded: int = 0


@dataclass
class Session:
    """What session.start fixed."""

    info: SessionInfo = field(default_factory=SessionInfo)
    voice: Voice = field(default_factory=Voice)
    realtime_playback: bool = True
    stable_partials: bool = True


@dataclass
class VoiceChoice:
    name: str  # the resolved voice name, shown to the client and stored
    native_rate: int


async def resolve_voice(tts: tts_pb2_grpc.TextToSpeechStub, voice: str, output: Output) -> VoiceChoice:
    """The voice's name (an alias, or no voice, resolved to the TTS service's name for it) and its
    native sample rate; an unknown voice is refused before the session starts."""
    try:
        reply = await tts.ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
    except grpc.aio.AioRpcError as e:
        # No TTS now does not stop a session: replies will report tts errors as they happen.
        error = rpc_error("tts", e)
        await output.error(error.code, error.message)
        return VoiceChoice(voice, DEFAULT_RATE)
    if not voice:
        default = next((v for v in reply.voices if v.is_default), None)
        return VoiceChoice(default.name, default.sample_rate) if default else VoiceChoice("", DEFAULT_RATE)
    for info in reply.voices:
        if voice == info.name or voice in info.aliases:
            return VoiceChoice(info.name, info.sample_rate)
    names = sorted(v.name for v in reply.voices)
    raise ev.ProtocolError(
        ev.ErrorCode.UNKNOWN_VOICE, f"unknown voice {voice!r}; available: {', '.join(names)}"
    )


async def resume(memory: Memory, conversation_id: str) -> list[tuple[str, str]]:
    try:
        return await memory.load(conversation_id)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            raise ev.ProtocolError(
                ev.ErrorCode.CONVERSATION_NOT_FOUND, f"no conversation {conversation_id!r} to resume"
            ) from None
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise ev.ProtocolError(ev.ErrorCode.INVALID_MESSAGE, f"conversation_id: {e.details()}") from None
        raise rpc_error("storage", e) from None


async def stable_partials(stt: stt_pb2_grpc.SpeechToTextStub) -> bool:
    """Whether the STT backend sends stable partials (a full decode when the audio goes quiet). When it
    does not, the engine speculates on the last partial once the VAD hears a short pause instead."""
    get = getattr(stt, "GetCapabilities", None)
    if get is None:
        return True
    try:
        capabilities = await get(audio_pb2.CapabilitiesRequest(), timeout=5)
    except grpc.aio.AioRpcError:
        return True  # unknown (an older service, or down now): assume today's Whisper behaviour
    return bool(capabilities.stable_partials)


async def start_session(engine: TurnEngine, message: ev.SessionStart) -> None:
    """session.start: resolve the voice, resume the conversation, build the collaborators."""
    settings, services = engine.settings, engine.services
    voice = message.voice if message.voice is not None else settings.voice
    choice = await resolve_voice(services.tts, voice, engine.output)
    conversation_id = message.conversation_id
    history = await resume(engine.memory, conversation_id) if conversation_id else []
    out, audio = message.output_audio, message.audio
    session = engine.session
    info = session.info
    info.session_id, info.conversation_id = uuid.uuid4().hex, conversation_id or uuid.uuid4().hex
    info.language, info.voice_name = message.language or "", choice.name
    info.output_rate = out.sample_rate or choice.native_rate
    info.input_audio = {
        "encoding": audio.encoding,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
    }
    # An alias is replaced by the voice's name; no voice stays empty, so a TTS backend that picks a voice
    # per language (Polly) still can.
    session.voice = Voice(choice.name if voice else "", info.language, info.output_rate)
    session.realtime_playback = out.playback == "realtime"
    session.stable_partials = await stable_partials(services.stt)
    engine.output.session_id = info.session_id
    engine.memory.history = history
    # With a turn model the VAD's silence is only the longest wait: the model ends complete turns sooner.
    silence = settings.max_end_silence_ms if engine.endpointer.model is not None else settings.end_silence_ms
    vad = StreamingVAD(engine.vad_model, settings.vad_threshold, settings.min_speech_ms, silence)
    engine.listener = Listener(
        services.stt,
        vad,
        PcmConverter(audio.sample_rate, audio.channels, RATE),
        engine.signal,
        engine.offload,
        info.language,
        settings.stt_timeout_s,
        settings.max_utterance_s,
    )
    generation = Generation(
        settings.llm_model,
        settings.max_tokens,
        settings.temperature,
        settings.llm_timeout_s,
        settings.tts_timeout_s,
    )
    engine.responder = Responder(services.llm, services.tts, generation, session.voice, engine.signal)
    engine.memory.save_session()
    engine.warm_llm()  # the system prompt and any resumed history, before the first word
    await engine.output.send(
        ev.SessionStarted(
            session_id=info.session_id,
            conversation_id=info.conversation_id,
            output_audio=ev.OutputAudioInfo(
                encoding="pcm_s16le", sample_rate=info.output_rate, channels=1, playback=out.playback
            ),
            voice=choice.name,
            resumed_turns=len(history),
            limits=ev.Limits(
                max_frame_bytes=settings.max_frame_bytes,
                max_text_chars=settings.max_text_chars,
                max_utterance_s=settings.max_utterance_s,
            ),
        )
    )
