"""Backends by name. Each service has one Registry: name -> "module:Class", imported only when chosen
(so a service imports only the SDKs it uses), and checked against the service's Protocol before use,
so a provider that does not fit fails at start with a message saying what is missing.

A provider is one module under ``services/<svc>/backends/`` with a class constructed as
``Class(service_settings)`` (it loads its own settings), plus one line in its service's registry. A
class may list the optional SDK modules it imports lazily in ``requires``; a missing one is reported
at start, naming the pip extra that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from services.common.config import ConfigError

log = logging.getLogger("echo.registry")

P = TypeVar("P")

# Top-level module of an optional SDK -> the extra of pyproject.toml that installs it.
EXTRAS = {
    "aioboto3": "aws",
    "aiobotocore": "aws",
    "amazon_transcribe": "aws",
    "awscrt": "aws",
    "boto3": "aws",
    "botocore": "aws",
    "faster_whisper": "stt",
    "ctranslate2": "stt",
    "av": "stt",
    "llama_cpp": "llm",
    "httpx": "llm",
    "piper": "tts",
    "onnxruntime": "tts",
}


def missing_extra(backend: str, module: str) -> ConfigError:
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return ConfigError(f"backend {backend!r} needs the Python package {top!r}, which is not installed")
    return ConfigError(
        f"backend {backend!r} needs the {extra!r} extra ({top} is not installed): "
        f".venv/bin/pip install -e '.[{extra}]'"
    )


def protocol_members(protocol: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """(methods, attributes) a Protocol declares: methods by their function, attributes by type hint."""
    methods: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for cls in reversed(protocol.__mro__):
        if cls in (object, typing.Protocol, typing.Generic):
            continue
        for member, value in vars(cls).items():
            if not member.startswith("_") and inspect.isfunction(value):
                methods[member] = value
            elif not member.startswith("_") and isinstance(value, property):
                attributes[member] = value  # a read-only attribute: any class attribute will do
        hints = typing.get_type_hints(cls) if "__annotations__" in vars(cls) else {}
        attributes.update({k: v for k, v in hints.items() if not k.startswith("_")})
    return methods, attributes


def method_problems(cls_or_obj: Any, protocol: type) -> list[str]:
    """What ``cls_or_obj`` lacks of ``protocol``'s methods: missing ones, and async-ness that differs
    (an ``async def`` must be a coroutine function; a plain ``def`` returning an async iterator may be
    an async generator but not a coroutine function)."""
    problems = []
    methods, _ = protocol_members(protocol)
    for member, declared in methods.items():
        found = getattr(cls_or_obj, member, None)
        if found is None or not callable(found):
            problems.append(f"method {member}() is missing")
            continue
        wants_coroutine = inspect.iscoroutinefunction(declared)
        if wants_coroutine and not inspect.iscoroutinefunction(found):
            problems.append(f"{member}() must be 'async def' (a coroutine function)")
        elif not wants_coroutine and inspect.iscoroutinefunction(found):
            problems.append(f"{member}() must not be a coroutine function: it returns an iterator directly")
        problems += _parameter_problems(member, declared, found)
    return problems


def _parameter_problems(member: str, declared: Any, found: Any) -> list[str]:
    """Whether ``found`` accepts the positional arguments ``declared`` takes (names may differ)."""
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to compare
        return []
    # ``declared`` comes from the Protocol class, so it counts self; a bound method does not.
    count = len(inspect.signature(declared).parameters) - (1 if inspect.ismethod(found) else 0)
    try:
        signature.bind(*range(count))
    except TypeError:
        has = ", ".join(signature.parameters)
        wants = ", ".join(inspect.signature(declared).parameters)
        return [f"{member}({has}) does not take the Protocol's arguments ({wants})"]
    return []


def attribute_problems(instance: Any, protocol: type) -> list[str]:
    """Attributes of ``protocol`` that ``instance`` lacks; one typed as another Protocol (the storage
    backend's ``conversations``) is checked against that Protocol's methods too."""
    problems = []
    _, attributes = protocol_members(protocol)
    for member, hint in attributes.items():
        if not hasattr(instance, member):
            problems.append(f"attribute {member!r} is missing")
        elif getattr(hint, "_is_protocol", False):
            problems += [f"{member}: {p}" for p in method_problems(getattr(instance, member), hint)]
    return problems


class Registry(Generic[P]):
    """The backends one service can run, by the names ``variable`` (e.g. ECHO_STT_SERVICE) accepts."""

    # ``protocol`` is a Protocol class, which type[P] would refuse (mypy's type-abstract): annotate the
    # registry's variable as Registry[ThatProtocol] instead.
    def __init__(
        self,
        variable: str,
        protocol: type,
        providers: Mapping[str, str],
        chain: Callable[[list[P]], P] | None = None,
    ) -> None:
        self.variable = variable
        self.protocol = protocol
        self.providers = dict(providers)
        # Builds the fallback chain over several configured backends (services/common/fallback.py);
        # None: the service takes one backend only.
        self.chain = chain

    @property
    def names(self) -> list[str]:
        return sorted(self.providers)

    def parse(self, value: str) -> list[str]:
        """The ordered backend names of a setting such as "transcribe,whisper"."""
        names = [part.strip() for part in value.split(",") if part.strip()]
        if not names:
            raise ConfigError(f"{self.variable} is empty; choose one of {self.names}")
        for name in names:
            if name not in self.providers:
                raise ConfigError(
                    f"{self.variable}={value!r}: {name!r} is not a backend; choose one of {self.names}"
                )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{self.variable}={value!r} names {', '.join(repeated)} more than once")
        return names

    def load_class(self, name: str) -> type:
        """Import the class registered as ``name`` and check it against the Protocol."""
        if name not in self.providers:
            raise ConfigError(f"{self.variable}={name!r} is not a backend; choose one of {self.names}")
        target = self.providers[name]
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise missing_extra(name, e.name or module_name) from e
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise ConfigError(f"backend {name!r}: {target} names no class")
        for required in getattr(cls, "requires", ()):
            if importlib.util.find_spec(required.split(".")[0]) is None:
                raise missing_extra(name, required)
        self._check(name, target, method_problems(cls, self.protocol))
        return cls

    def create(self, name: str, service_settings: Any) -> P:
        """A new, not yet started backend ``name``, given its service's settings."""
        cls = self.load_class(name)
        backend = cls(service_settings)
        self._check(name, cls.__module__ + ":" + cls.__name__, attribute_problems(backend, self.protocol))
        return typing.cast(P, backend)

    def create_configured(self, value: str, service_settings: Any) -> P:
        """The backend a setting such as ECHO_STT_SERVICE names; several names are a fallback chain
        over those backends, tried in that order."""
        names = self.parse(value)
        if len(names) == 1:
            return self.create(names[0], service_settings)
        if self.chain is None:
            raise ConfigError(f"{self.variable}={value!r}: this service has no fallback; name one backend")
        return self.chain([self.create(name, service_settings) for name in names])

    def _check(self, name: str, target: str, problems: list[str]) -> None:
        if problems:
            protocol = self.protocol.__name__
            raise ConfigError(
                f"backend {name!r} ({target}) does not implement {protocol}: {'; '.join(problems)}"
            )
