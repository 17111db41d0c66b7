"""The Polly TTS backend with the real SDK against moto. moto's audio is 8 placeholder bytes, so these
check what is sent to Polly, the plumbing back, the cache, and the errors."""

from __future__ import annotations

import json

import grpc
import pytest

from echo.v1 import audio_pb2, tts_pb2, tts_pb2_grpc
from services.common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from services.tts import config as tts_config
from services.tts.backends.polly import PhraseCache, PollyBackend, PollySettings
from services.tts.config import TTSSettings
from tests.aws.conftest import isolated_aws_env
from tests.aws.standins import Reply, sdk_response
from tests.servicetools import grpc_channel, start_grpc_service


class Recorder:
    """A before-send hook: records each SynthesizeSpeech request; can answer it itself, the way Polly
    does (an AWS error, or audio with Polly's x-amzn-RequestCharacters count), instead of moto."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.fail_with: tuple[int, str] | None = None
        self.answer: Reply | None = None

    def __call__(self, request, **_):  # type: ignore[no-untyped-def]
        self.bodies.append(json.loads(request.body))
        if self.fail_with:
            status, code = self.fail_with
            headers = {"content-type": "application/json", "x-amzn-errortype": f"{code}:"}
            body = json.dumps({"__type": code, "message": f"{code} from the test"}).encode()
            return sdk_response(request.url, Reply(status, headers, [body]))
        if self.answer:
            return sdk_response(request.url, self.answer)
        return None


@pytest.fixture
async def polly(aws_env):
    backend = PollyBackend(TTSSettings(backend="polly"))
    await backend.start()
    recorder = Recorder()
    backend.client.meta.events.register("before-send.polly.SynthesizeSpeech", recorder)
    yield backend, recorder
    await backend.close()


async def speak(backend, **fields) -> list[tts_pb2.SynthesizeResponse]:
    return [r async for r in backend.synthesize(tts_pb2.SynthesizeRequest(**fields))]


async def test_plain_text_request_and_reply(polly):
    backend, recorder = polly
    replies = await speak(backend, text="Hello there.")
    (body,) = recorder.bodies
    assert body == {
        "Text": "Hello there.",
        "TextType": "text",
        "VoiceId": "Joanna",
        "Engine": "neural",
        "OutputFormat": "pcm",
        "SampleRate": "16000",
    }
    assert replies[0].format.encoding == audio_pb2.PCM_S16LE and replies[0].format.sample_rate == 16000
    assert b"".join(r.audio for r in replies) == b"\0" * 8  # moto's placeholder audio, passed through
    assert replies[-1].usage.characters == 12
    assert replies[-1].usage.cost_usd == pytest.approx(12 * 16e-6)


async def test_repeated_phrases_come_from_the_cache(polly):
    backend, recorder = polly
    await speak(backend, text="One moment, please.")
    again = await speak(backend, text="One moment, please.")
    assert len(recorder.bodies) == 1 and backend.cache.hits == 1
    assert again[-1].usage.characters == 0 and again[-1].usage.cost_usd == 0
    await speak(backend, text="One moment, please.", voice="Matthew")  # another voice is another entry
    assert len(recorder.bodies) == 2


async def test_ssml_is_validated_before_sending(polly):
    backend, recorder = polly
    with pytest.raises(InvalidArgument, match="invalid SSML"):
        await speak(backend, text="<speak>Hello <break time='1s'></speak>", ssml=True)
    with pytest.raises(InvalidArgument, match="root element must be <speak>"):
        await speak(backend, text="<voice>Hi</voice>", ssml=True)
    assert recorder.bodies == []
    await speak(backend, text="<speak>Hello <break time='300ms'/> there.</speak>", ssml=True)
    assert recorder.bodies[-1]["TextType"] == "ssml"


async def test_rate_and_pitch_become_prosody(polly):
    backend, recorder = polly
    await speak(backend, text="Tom & Jerry", rate=1.2, pitch=10)
    assert (
        recorder.bodies[-1]["Text"]
        == '<speak><prosody rate="120%" pitch="+10%">Tom &amp; Jerry</prosody></speak>'
    )
    assert recorder.bodies[-1]["TextType"] == "ssml"
    with pytest.raises(InvalidArgument, match="rate"):
        await speak(backend, text="x", rate=9)


def polly_audio(data: bytes, content_type: str, characters: int) -> Reply:
    """A SynthesizeSpeech reply as Polly sends it: the audio, and its billed character count."""
    return Reply(200, {"content-type": content_type, "x-amzn-requestcharacters": str(characters)}, [data])


async def test_formats(polly):
    backend, recorder = polly
    # moto refuses "Lea" in SynthesizeSpeech (its list holds the display name "Léa"); Polly itself
    # answers here, so the test does not depend on moto's voice list.
    recorder.answer = polly_audio(b"ID3-not-really-mp3", "audio/mpeg", 8)
    replies = await speak(
        backend, text="Bonjour.", language="fr-FR", format=audio_pb2.AudioFormat(encoding=audio_pb2.MP3)
    )
    assert (recorder.bodies[-1]["VoiceId"], recorder.bodies[-1]["OutputFormat"]) == ("Lea", "mp3")
    # Polly's own default for a neural voice (moto's validation stops at 22050, so Polly answers here).
    assert recorder.bodies[-1]["SampleRate"] == "24000"
    assert replies[0].format.encoding == audio_pb2.MP3 and replies[0].format.sample_rate == 24000
    assert b"".join(r.audio for r in replies) == b"ID3-not-really-mp3"
    recorder.answer = None  # moto again
    await speak(
        backend,
        text="Hola.",
        language="es-ES",
        format=audio_pb2.AudioFormat(encoding=audio_pb2.OGG_VORBIS, sample_rate=22050),
    )
    assert (recorder.bodies[-1]["VoiceId"], recorder.bodies[-1]["OutputFormat"]) == ("Lucia", "ogg_vorbis")
    with pytest.raises(InvalidArgument, match="pcm comes at"):
        await speak(backend, text="x", format=audio_pb2.AudioFormat(sample_rate=22050))
    with pytest.raises(InvalidArgument, match="WEBM_OPUS"):
        await speak(backend, text="x", format=audio_pb2.AudioFormat(encoding=audio_pb2.WEBM_OPUS))
    with pytest.raises(NotFound, match="unknown voice 'Nobody'"):
        await speak(backend, text="x", voice="Nobody")


async def started_with_engine(monkeypatch: pytest.MonkeyPatch, engine: str) -> tuple[PollyBackend, Recorder]:
    monkeypatch.setenv("POLLY_ENGINE", engine)  # as a service start reads it
    backend = PollyBackend(tts_config.load())
    await backend.start()
    recorder = Recorder()
    backend.client.meta.events.register("before-send.polly.SynthesizeSpeech", recorder)
    return backend, recorder


@pytest.mark.parametrize("engine", ["standard", "neural"])
async def test_each_voice_reports_the_rate_it_is_synthesised_at(engine, aws_env, monkeypatch):
    """The gateway takes a voice's VoiceInfo.sample_rate as its output rate and asks for pcm_s16le at
    that rate: the rate must be one Polly produces pcm at, and what an unspecified rate gives."""
    backend, recorder = await started_with_engine(monkeypatch, engine)
    try:
        voices = await backend.voices("en-")
        assert len(voices) > 3
        for info in voices:
            asked = await speak(
                backend,
                text="Hello.",
                voice=info.name,
                format=audio_pb2.AudioFormat(encoding=audio_pb2.PCM_S16LE, sample_rate=info.sample_rate),
            )
            assert recorder.bodies[-1]["VoiceId"] == info.name
            assert recorder.bodies[-1]["SampleRate"] == str(info.sample_rate), info
            unspecified = await speak(backend, text="Hi.", voice=info.name)
            assert recorder.bodies[-1]["SampleRate"] == str(info.sample_rate), info
            assert asked[0].format.sample_rate == unspecified[0].format.sample_rate == info.sample_rate
            assert asked[0].format.encoding == unspecified[0].format.encoding == audio_pb2.PCM_S16LE
    finally:
        await backend.close()


@pytest.mark.parametrize(("engine", "default", "top"), [("standard", 22050, 22050), ("neural", 24000, 24000)])
async def test_compressed_formats_follow_the_engine(engine, default, top, aws_env, monkeypatch):
    backend, recorder = await started_with_engine(monkeypatch, engine)
    recorder.answer = polly_audio(b"ID3-not-really-mp3", "audio/mpeg", 6)
    try:
        for encoding in (audio_pb2.MP3, audio_pb2.OGG_VORBIS):
            replies = await speak(backend, text="Hello.", format=audio_pb2.AudioFormat(encoding=encoding))
            assert recorder.bodies[-1]["SampleRate"] == str(default)
            assert replies[0].format.sample_rate == default
            replies = await speak(
                backend, text="Hello!", format=audio_pb2.AudioFormat(encoding=encoding, sample_rate=top)
            )
            assert recorder.bodies[-1]["SampleRate"] == str(top)
        if engine == "standard":  # standard voices stop at 22050 Hz
            with pytest.raises(InvalidArgument, match="with the standard engine, not 24000"):
                await speak(
                    backend, text="x", format=audio_pb2.AudioFormat(encoding=audio_pb2.MP3, sample_rate=24000)
                )
        with pytest.raises(InvalidArgument, match=f"pcm comes at \\(8000, 16000\\) Hz with the {engine}"):
            await speak(backend, text="x", format=audio_pb2.AudioFormat(sample_rate=default))
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("language", "voice"),
    [
        ("", "Joanna"),
        ("en", "Joanna"),
        ("en-US", "Joanna"),
        ("en-GB", "Amy"),
        ("en_gb", "Amy"),
        ("es", "Lucia"),
        ("es-ES", "Lucia"),
        ("fr", "Lea"),
        ("FR-fr", "Lea"),
    ],
)
async def test_voice_per_language(polly, language, voice):
    backend, recorder = polly
    recorder.answer = polly_audio(b"\0\0", "audio/pcm", 6)
    await speak(backend, text="Words.", language=language)
    assert recorder.bodies[-1]["VoiceId"] == voice


async def test_languages_outside_the_table_use_polly_s_own_voices(polly):
    backend, recorder = polly
    recorder.answer = polly_audio(b"\0\0", "audio/pcm", 6)
    await speak(backend, text="Hallo.", language="de")
    german = recorder.bodies[-1]["VoiceId"]
    assert backend.known_voices[german].startswith("de-")  # a German voice DescribeVoices listed
    with pytest.raises(NotFound, match="no voice for language 'xx'"):
        await speak(backend, text="x", language="xx")


async def test_ssml_tags_are_not_billed(polly):
    backend, recorder = polly
    replies = await speak(backend, text="<speak>Hello <break time='300ms'/> there.</speak>", ssml=True)
    assert replies[-1].usage.characters == len("Hello  there.")  # moto sends no count: Echo's own
    replies = await speak(backend, text="Tom & Jerry", rate=1.5)
    assert replies[-1].usage.characters == len("Tom & Jerry")  # not the prosody wrapper around it
    # When Polly sends its count (x-amzn-RequestCharacters), that is what is billed.
    recorder.answer = polly_audio(b"\0\0", "audio/pcm", 5)
    replies = await speak(backend, text="<speak>Ahoy <break time='1s'/> there!</speak>", ssml=True)
    assert replies[-1].usage.characters == 5
    assert replies[-1].usage.cost_usd == pytest.approx(5 * 16e-6)


def test_phrase_cache_evicts_the_least_recently_used_within_both_bounds():
    cache = PhraseCache(max_entries=2, max_bytes=100)
    cache.put(("a",), (b"a" * 10, 1))
    cache.put(("b",), (b"b" * 10, 1))
    assert cache.get(("a",)) is not None  # "a" is now the most recent
    cache.put(("c",), (b"c" * 10, 1))  # over the entry bound: "b" goes
    assert list(cache.items) == [("a",), ("c",)] and cache.size == 20
    cache.put(("d",), (b"d" * 91, 1))  # 111 bytes: "a" goes for the entry bound, "c" for the bytes
    assert list(cache.items) == [("d",)] and cache.size == 91
    cache.put(("huge",), (b"h" * 101, 1))  # larger than the whole cache: never stored, nothing evicted
    assert list(cache.items) == [("d",)] and cache.size == 91
    cache.put(("d",), (b"D" * 40, 1))  # replacing an entry accounts its old size
    assert cache.size == 40 and cache.get(("d",)) == (b"D" * 40, 1)
    assert (cache.hits, cache.misses) == (2, 0)


async def test_the_backend_cache_is_bounded(aws_env):
    # moto's audio is 8 bytes: room for two phrases in 20 bytes, though four entries are allowed.
    backend = PollyBackend(
        TTSSettings(backend="polly"), PollySettings(polly_cache_entries=4, polly_cache_bytes=20)
    )
    await backend.start()
    recorder = Recorder()
    backend.client.meta.events.register("before-send.polly.SynthesizeSpeech", recorder)
    try:
        for text in ("One.", "Two.", "Three."):
            await speak(backend, text=text)
        assert len(backend.cache.items) == 2 and backend.cache.size == 16
        again = await speak(backend, text="One.")  # evicted: asked (and billed) again
        assert len(recorder.bodies) == 4 and again[-1].usage.characters == 4
        again = await speak(backend, text="Three.")  # still cached
        assert len(recorder.bodies) == 4 and again[-1].usage.characters == 0
    finally:
        await backend.close()


async def test_speech_marks(polly):
    backend, recorder = polly
    replies = await speak(backend, text="Hello there.", speech_marks=["word", "viseme"])
    marks_request = recorder.bodies[-1]
    assert marks_request["OutputFormat"] == "json" and marks_request["SpeechMarkTypes"] == ["word", "viseme"]
    assert marks_request["Text"] == "<speak>Hello there.</speak>"
    assert replies[-1].speech_marks_json  # moto's placeholder, passed through
    with pytest.raises(InvalidArgument, match="speech mark"):
        await speak(backend, text="x", speech_marks=["emotion"])


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(400, "ThrottlingException", ResourceExhausted), (403, "AccessDeniedException", PermissionDenied)],
)
async def test_aws_errors_are_specific(polly, status, code, error):
    backend, recorder = polly
    recorder.fail_with = (status, code)
    with pytest.raises(error) as err:
        await speak(backend, text="Fail please.")
    assert "Polly SynthesizeSpeech (Joanna, neural)" in str(err.value)


async def test_missing_credentials(monkeypatch, aws_env):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    backend = PollyBackend(TTSSettings(backend="polly"))
    with pytest.raises(Unauthenticated, match="credentials"):
        await backend.start()
    await backend.close()


async def test_through_the_tts_service(moto_url, log_dir):
    proc, address = start_grpc_service(
        "tts", {"ECHO_TTS_SERVICE": "polly", **isolated_aws_env(moto_url)}, log_dir
    )
    try:
        async with grpc_channel(address) as channel:
            stub = tts_pb2_grpc.TextToSpeechStub(channel)
            voices = await stub.ListVoices(tts_pb2.ListVoicesRequest(language="en-US"), timeout=10)
            assert "Joanna" in [v.name for v in voices.voices]
            replies = [r async for r in stub.Synthesize(tts_pb2.SynthesizeRequest(text="Hi."), timeout=30)]
            assert replies[0].format.sample_rate == 16000 and replies[-1].usage.characters == 3
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.Synthesize(
                    tts_pb2.SynthesizeRequest(text="Hi.", voice="Nobody"), timeout=30
                ):
                    pass
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        proc.stop()
