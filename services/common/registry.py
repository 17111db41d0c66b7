"""Backends are registered by import string so a service imports only the SDKs it uses."""

from __future__ import annotations

import importlib
from typing import Any

from services.common.config import ConfigError


def load_backend(registry: dict[str, str], name: str, variable: str, settings: Any) -> Any:
    try:
        target = registry[name]
    except KeyError:
        raise ConfigError(f"{variable}={name!r} is not a backend; choose one of {sorted(registry)}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"backend {name!r} needs a package that is not installed: {e}") from e
    return getattr(module, class_name)(settings)
