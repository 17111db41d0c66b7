"""The typed backend registry: names, Protocol checks at start, missing SDK extras."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from services.common.config import ConfigError
from services.common.registry import Registry
from services.llm import backends as llm_backends
from services.llm.config import LLMSettings
from services.storage import backends as storage_backends
from services.storage.config import StorageSettings
from services.stt import backends as stt_backends
from services.stt.config import STTSettings


class Greeter(Protocol):
    name: str

    async def start(self) -> None: ...

    def stream(self, text: str) -> AsyncIterator[str]: ...


class Complete:
    name = "complete"

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def start(self) -> None:
        pass

    async def stream(self, text: str) -> AsyncIterator[str]:
        yield text


class NoStream(Complete):
    stream = None  # type: ignore[assignment]


class SyncStart(Complete):
    def start(self) -> None:  # type: ignore[override]
        pass


class CoroutineStream(Complete):
    async def stream(self, text: str) -> list[str]:  # type: ignore[override]
        return [text]


class WrongArity(Complete):
    async def stream(self) -> AsyncIterator[str]:  # type: ignore[override]
        yield ""


class Nameless:
    def __init__(self, settings: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    def stream(self, text: str) -> AsyncIterator[str]:
        raise NotImplementedError


class Holder(Protocol):
    name: str
    greeter: Greeter


class HoldsAGreeter:
    name = "holder"

    def __init__(self, settings: Any) -> None:
        self.greeter = Complete(settings)


class HoldsABadGreeter:
    name = "bad-holder"

    def __init__(self, settings: Any) -> None:
        self.greeter = SyncStart(settings)


def registry(protocol: Any = Greeter) -> Registry[Any]:
    names = ["Complete", "NoStream", "SyncStart", "CoroutineStream", "WrongArity", "Nameless"]
    names += ["HoldsAGreeter", "HoldsABadGreeter"]
    providers = {name.lower(): f"tests.test_registry:{name}" for name in names}
    return Registry("ECHO_TEST_SERVICE", protocol, providers | {"ghost": "tests.test_registry:Ghost"})


def test_a_complete_backend_is_created_with_the_service_settings() -> None:
    backend = registry().create("complete", {"port": 1})
    assert isinstance(backend, Complete) and backend.settings == {"port": 1}
    assert isinstance(registry(Holder).create("holdsagreeter", None), HoldsAGreeter)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nostream", "does not implement Greeter: method stream() is missing"),
        ("syncstart", "start() must be 'async def' (a coroutine function)"),
        ("coroutinestream", "stream() must not be a coroutine function"),
        ("wrongarity", "stream(self) does not take the Protocol's arguments (self, text)"),
        ("nameless", "attribute 'name' is missing"),
        ("ghost", "tests.test_registry:Ghost names no class"),
    ],
)
def test_what_a_backend_lacks_is_named_at_start(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"backend '{name}'") as error:
        registry().create(name, None)
    assert message in str(error.value)


def test_attributes_typed_as_a_protocol_are_checked_too() -> None:
    with pytest.raises(ConfigError) as error:
        registry(Holder).create("holdsabadgreeter", None)
    assert "greeter: start() must be 'async def'" in str(error.value)


def test_names_parse_in_order_and_unknown_names_are_refused() -> None:
    assert stt_backends.REGISTRY.parse("transcribe, whisper") == ["transcribe", "whisper"]
    with pytest.raises(ConfigError) as error:
        stt_backends.REGISTRY.parse("whisper,vosk")
    assert str(error.value) == (
        "ECHO_STT_SERVICE='whisper,vosk': 'vosk' is not a backend; "
        "choose one of ['fake', 'transcribe', 'whisper']"
    )
    with pytest.raises(ConfigError, match="names whisper more than once"):
        stt_backends.REGISTRY.parse("whisper,transcribe,whisper")
    with pytest.raises(ConfigError, match="ECHO_STT_SERVICE is empty"):
        stt_backends.REGISTRY.parse(" , ")


def test_several_names_are_a_fallback_chain_in_that_order() -> None:
    from services.stt.fallback import FallbackSTT

    backend = stt_backends.create(STTSettings(backend="fake,whisper"))
    assert isinstance(backend, FallbackSTT)
    assert [b.name for b in backend.backends] == ["fake", "whisper"] and backend.name == "fake"
    # The older ECHO_STT_FALLBACK=whisper is the same list.
    alias = stt_backends.create(STTSettings(backend="fake", fallback="whisper"))
    assert isinstance(alias, FallbackSTT) and alias.names == ["fake", "whisper"]
    assert stt_backends.configured(STTSettings(backend="whisper", fallback="whisper")) == "whisper"
    with pytest.raises(ConfigError, match="ECHO_STT_FALLBACK='vosk': only 'whisper'"):
        stt_backends.create(STTSettings(backend="transcribe", fallback="vosk"))
    # Storage has no fallback: two stores would split a conversation between them.
    with pytest.raises(ConfigError, match="ECHO_STORAGE_SERVICE='local,fake': this service has no fallback"):
        storage_backends.create(StorageSettings(backend="local,fake"))


def test_a_missing_sdk_names_the_extra_that_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "aioboto3", None)
    with pytest.raises(ConfigError) as error:
        stt_backends.REGISTRY.create("transcribe", STTSettings())
    assert str(error.value) == (
        "backend 'transcribe' needs the 'aws' extra (aioboto3 is not installed): "
        ".venv/bin/pip install -e '.[aws]'"
    )


def test_an_import_error_of_an_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    monkeypatch.delitem(sys.modules, "services.llm.backends.openai_compat", raising=False)
    with pytest.raises(
        ConfigError, match=r"backend 'openai' needs the 'llm' extra \(httpx is not installed\)"
    ):
        llm_backends.create(LLMSettings(backend="openai"))


def test_every_registered_backend_fits_its_protocol() -> None:
    from services.tts import backends as tts_backends
    from services.tts.config import TTSSettings

    for module, settings in [
        (stt_backends, STTSettings()),
        (llm_backends, LLMSettings()),
        (tts_backends, TTSSettings()),
        (storage_backends, StorageSettings()),
    ]:
        for name in module.REGISTRY.names:
            assert module.REGISTRY.create(name, settings).name == name
