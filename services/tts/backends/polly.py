"""Amazon Polly: SynthesizeSpeech with a voice per language, SSML (validated before it is sent), rate
and pitch through SSML prosody, pcm/mp3/ogg_vorbis output, speech marks, and a bounded cache of
repeated phrases (greetings and fillers are asked for again and again)."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from echo.v1 import audio_pb2, tts_pb2
from services.common import aws
from services.common.capabilities import BackendCapabilities
from services.common.config import ConfigError, load_settings
from services.common.errors import InvalidArgument, NotFound
from services.tts.config import TTSSettings

log = logging.getLogger("echo.tts.polly")


@dataclass
class PollySettings:
    """Roadmap names (POLLY_VOICE_ID, POLLY_ENGINE); endpoints come from the SDK's own variables."""

    region: str = field(default="", metadata={"env": "AWS_REGION", "help": "AWS region"})
    polly_voice_id: str = field(
        default="", metadata={"env": "POLLY_VOICE_ID", "help": "voice (default: by language)"}
    )
    polly_engine: str = field(
        default="neural",
        metadata={"env": "POLLY_ENGINE", "help": "standard, neural, generative or long-form"},
    )
    polly_cache_entries: int = field(default=256, metadata={"help": "repeated phrases kept in memory"})
    polly_cache_bytes: int = field(default=32 * 1024 * 1024, metadata={"help": "cache size limit"})


def load_polly_settings() -> PollySettings:
    return load_settings(PollySettings, prefix="ECHO_TTS_", section="tts")


# The roadmap's voice per language, and the region a bare language code ("es") stands for.
VOICES = {"en-US": "Joanna", "en-GB": "Amy", "es-ES": "Lucia", "fr-FR": "Lea"}
PRIMARY_REGION = {"en": "en-US", "es": "es-ES", "fr": "fr-FR"}
ENGINES = ("standard", "neural", "generative", "long-form")
# USD per character, on-demand list prices (check the current price list).
PRICE_PER_CHAR = {"standard": 4e-6, "neural": 16e-6, "generative": 30e-6, "long-form": 100e-6}
# Echo's encodings as Polly's OutputFormat; no encoding is pcm_s16le, what the gateway asks for.
FORMATS = {
    audio_pb2.PCM_S16LE: "pcm",
    audio_pb2.AUDIO_ENCODING_UNSPECIFIED: "pcm",
    audio_pb2.MP3: "mp3",
    audio_pb2.OGG_VORBIS: "ogg_vorbis",
}
MARK_TYPES = ("word", "sentence", "viseme", "ssml")
CHUNK = 32 * 1024


def sample_rates(output: str, engine: str) -> tuple[tuple[int, ...], int]:
    """(the rates Polly produces ``output`` at with ``engine``, the one it uses when none is asked for).
    PCM is 8 or 16 kHz (16 kHz by default) on every engine; mp3 and ogg_vorbis reach 22050 Hz with the
    standard engine, which is also its default, and 24000 Hz, the default, with the others."""
    if output == "pcm":
        return (8000, 16000), 16000
    if engine == "standard":
        return (8000, 16000, 22050), 22050
    return (8000, 16000, 22050, 24000), 24000


def check_ssml(text: str) -> None:
    """Polly's own SSML errors arrive late and vague; say exactly what is wrong before sending."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise InvalidArgument(f"invalid SSML: {e}") from None
    if root.tag != "speak":
        raise InvalidArgument(f"invalid SSML: the root element must be <speak>, not <{root.tag}>")


def billed_characters(text: str, text_type: str) -> int:
    """What Polly bills for: the characters of the text. "SSML tags are not counted as billed
    characters" (SynthesizeSpeech's TextLengthExceededException documentation)."""
    if text_type != "ssml":
        return len(text)
    return len("".join(ET.fromstring(text).itertext()))


def voice_for_language(language: str, known_voices: dict[str, str]) -> str:
    """The roadmap's voice for ``language`` ("en", "es", "en-GB", "fr_fr"); for a language the table
    lacks, a voice Polly lists for it (DescribeVoices of the configured engine)."""
    primary, _, region = language.strip().replace("_", "-").partition("-")
    primary = primary.lower()
    if not primary:
        return VOICES["en-US"]
    code = f"{primary}-{region.upper()}" if region else PRIMARY_REGION.get(primary, primary)
    by_language = sorted((lang, voice) for voice, lang in known_voices.items())
    candidates = [
        VOICES.get(code),
        next((v for lang, v in by_language if lang == code), None),
        VOICES.get(PRIMARY_REGION.get(primary, "")),  # es-MX without a listed voice: Spain's Lucia
        next((v for lang, v in by_language if lang.split("-")[0].lower() == primary), None),
    ]
    voice = next((v for v in candidates if v), None)
    if voice is None:
        raise NotFound(f"Polly has no voice for language {language!r}; choose a voice or set POLLY_VOICE_ID")
    return voice


def to_ssml(request: tts_pb2.SynthesizeRequest) -> tuple[str, str]:
    """(text, TextType): plain text stays plain unless rate or pitch need SSML prosody."""
    if request.ssml:
        check_ssml(request.text)
        if not (request.rate or request.pitch):
            return request.text, "ssml"
        inner = request.text.strip().removeprefix("<speak>").removesuffix("</speak>")
    elif request.rate or request.pitch:
        inner = escape(request.text)
    else:
        return request.text, "text"
    attrs = []
    if request.rate:
        if not 0.2 <= request.rate <= 4.0:
            raise InvalidArgument(f"rate {request.rate} is outside 0.2-4.0")
        attrs.append(f'rate="{round(request.rate * 100)}%"')
    if request.pitch:
        if not -33 <= request.pitch <= 50:
            raise InvalidArgument(f"pitch {request.pitch}% is outside -33..+50")
        attrs.append(f'pitch="{request.pitch:+.0f}%"')
    return f"<speak><prosody {' '.join(attrs)}>{inner}</prosody></speak>", "ssml"


class PhraseCache:
    """LRU of synthesised audio, bounded by entries and bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.items: OrderedDict[tuple[Any, ...], tuple[bytes, int]] = OrderedDict()
        self.size = self.hits = self.misses = 0

    def get(self, key: tuple[Any, ...]) -> tuple[bytes, int] | None:
        found = self.items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.items.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: tuple[Any, ...], value: tuple[bytes, int]) -> None:
        if len(value[0]) > self.max_bytes or self.max_entries <= 0:
            return
        if key in self.items:
            self.size -= len(self.items.pop(key)[0])
        self.items[key] = value
        self.size += len(value[0])
        while len(self.items) > self.max_entries or self.size > self.max_bytes:
            _, (audio, _) = self.items.popitem(last=False)
            self.size -= len(audio)


class PollyBackend:
    name = "polly"
    # Each request is synthesised whole before its audio is sent; speech marks give word timings.
    capabilities = BackendCapabilities(streaming=False, word_timings=True)

    requires = ("aioboto3",)

    def __init__(self, service: TTSSettings, settings: PollySettings | None = None) -> None:
        self.service = service
        settings = settings or load_polly_settings()
        if settings.polly_engine not in ENGINES:
            raise ConfigError(f"POLLY_ENGINE={settings.polly_engine!r}: choose one of {ENGINES}")
        self.settings = settings
        self.cache = PhraseCache(settings.polly_cache_entries, settings.polly_cache_bytes)
        self.client: Any = None
        self.known_voices: dict[str, str] = {}  # voice id -> language code
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        self.client = await self._stack.enter_async_context(aws.client("polly", self.settings.region or None))
        with aws.aws_errors("Polly DescribeVoices"):
            found = await self.client.describe_voices(Engine=self.settings.polly_engine)
        self.known_voices = {v["Id"]: v.get("LanguageCode", "") for v in found.get("Voices", [])}
        log.info("Polly %s engine: %d voices", self.settings.polly_engine, len(self.known_voices))

    async def close(self) -> None:
        await self._stack.aclose()

    def _voice(self, request: tts_pb2.SynthesizeRequest) -> str:
        voice = request.voice or self.settings.polly_voice_id
        voice = voice or voice_for_language(request.language, self.known_voices)
        if self.known_voices and voice not in self.known_voices:
            raise NotFound(
                f"unknown voice {voice!r} for the {self.settings.polly_engine} engine; "
                f"for example: {', '.join(sorted(self.known_voices)[:8])}"
            )
        return voice

    async def voices(self, language: str = "") -> list[tts_pb2.VoiceInfo]:
        default = self.settings.polly_voice_id or VOICES["en-US"]
        # The rate of the format callers ask for (pcm_s16le, as the gateway does) when they name none:
        # what synthesize() returns then, and a rate it accepts when asked for explicitly.
        _, rate = sample_rates(FORMATS[audio_pb2.PCM_S16LE], self.settings.polly_engine)
        return [
            tts_pb2.VoiceInfo(
                name=v, language=lang, sample_rate=rate, backend=self.name, is_default=v == default
            )
            for v, lang in sorted(self.known_voices.items())
            if not language or lang.lower().startswith(language.lower())
        ]

    async def _call(self, **kwargs: Any) -> tuple[bytes, int]:
        """(audio or marks, characters billed): Polly's own count when it sends one."""
        with aws.aws_errors(f"Polly SynthesizeSpeech ({kwargs['VoiceId']}, {kwargs['Engine']})"):
            response = await self.client.synthesize_speech(**kwargs)
            async with response["AudioStream"] as stream:
                data = await stream.read()
        billed = response.get("RequestCharacters") or billed_characters(kwargs["Text"], kwargs["TextType"])
        return data, int(billed)

    async def synthesize(
        self, request: tts_pb2.SynthesizeRequest
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        output = FORMATS.get(request.format.encoding)
        if output is None:
            raise InvalidArgument(
                f"Polly produces pcm_s16le, mp3 or ogg_vorbis, not "
                f"{audio_pb2.AudioEncoding.Name(request.format.encoding)}"
            )
        rates, default_rate = sample_rates(output, self.settings.polly_engine)
        rate = request.format.sample_rate or default_rate
        if rate not in rates:
            engine = self.settings.polly_engine
            raise InvalidArgument(f"Polly {output} comes at {rates} Hz with the {engine} engine, not {rate}")
        bad_marks = [m for m in request.speech_marks if m not in MARK_TYPES]
        if bad_marks:
            raise InvalidArgument(f"unknown speech mark types {bad_marks}; use {MARK_TYPES}")
        text, text_type = to_ssml(request)
        voice, engine = self._voice(request), self.settings.polly_engine
        params = {"Text": text, "TextType": text_type, "VoiceId": voice, "Engine": engine}
        key = (text, text_type, voice, engine, output, rate)
        cached = self.cache.get(key)
        characters = 0  # a cache hit costs nothing
        if cached is None:
            cached = await self._call(**params, OutputFormat=output, SampleRate=str(rate))
            self.cache.put(key, cached)
            characters = cached[1]
        audio = cached[0]
        encoding = request.format.encoding or audio_pb2.PCM_S16LE
        yield tts_pb2.SynthesizeResponse(
            format=audio_pb2.AudioFormat(encoding=encoding, sample_rate=rate, channels=1)
        )
        for i in range(0, len(audio), CHUNK):
            yield tts_pb2.SynthesizeResponse(audio=audio[i : i + CHUNK], sentence_index=0)
        marks = ""
        if request.speech_marks:
            marks_params = dict(params)
            if text_type == "text":  # "ssml" marks need SSML input; wrapping plain text is equivalent
                marks_params.update(Text=f"<speak>{escape(text)}</speak>", TextType="ssml")
            data, marks_characters = await self._call(
                **marks_params, OutputFormat="json", SpeechMarkTypes=list(request.speech_marks)
            )
            marks = data.decode("utf-8", errors="replace")
            characters += marks_characters  # speech marks are a billed request of their own
        yield tts_pb2.SynthesizeResponse(
            usage=audio_pb2.Usage(characters=characters, cost_usd=characters * PRICE_PER_CHAR[engine]),
            speech_marks_json=marks,
        )
