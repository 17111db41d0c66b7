"""Typed settings from ECHO_* environment variables, optionally a config.yaml.

Each service declares one dataclass. A field's environment variable is ``{prefix}{FIELD_NAME}``
unless its metadata names one (``field(metadata={"env": "ECHO_STT_SERVICE"})``). Precedence:
environment, then the service's section of the YAML file (``ECHO_CONFIG``, default ./config.yaml),
then the dataclass default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value Echo cannot use."""


def load_yaml_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The parsed config.yaml, or {} when there is none."""
    path = Path(path or os.environ.get("ECHO_CONFIG", "config.yaml"))
    if not path.is_file():
        if os.environ.get("ECHO_CONFIG"):
            raise ConfigError(f"ECHO_CONFIG points at {path}, which does not exist")
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _coerce(name: str, raw: Any, target: Any) -> Any:
    origin = typing.get_origin(target)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(target) if a is not type(None)]
        if raw is None or raw == "":
            return None
        target = options[0]
    if target is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{name}: expected true/false, got {raw!r}")
    if target in (int, float):
        try:
            return target(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if target is str:
        return str(raw)
    if origin in (list, tuple):
        items = raw if isinstance(raw, list | tuple) else [p for p in str(raw).split(",") if p.strip()]
        return type(items)(s.strip() if isinstance(s, str) else s for s in items)
    return raw


def load_settings(cls: type[T], prefix: str, section: str, yaml_config: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from the environment and the YAML section named ``section``."""
    if yaml_config is None:
        yaml_config = load_yaml_config()
    from_yaml = yaml_config.get(section) or {}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env_name = f.metadata.get("env", f"{prefix}{f.name.upper()}")
        if env_name in os.environ:
            values[f.name] = _coerce(env_name, os.environ[env_name], hints[f.name])
        elif f.name in from_yaml:
            values[f.name] = _coerce(f"{section}.{f.name}", from_yaml[f.name], hints[f.name])
    return cls(**values)


def env_help(cls: type, prefix: str) -> list[tuple[str, str, str]]:
    """(variable, default, help) rows for --help output and the README."""
    rows = []
    for f in dataclasses.fields(cls):
        env_name = f.metadata.get("env", f"{prefix}{f.name.upper()}")
        default = f.default if f.default is not dataclasses.MISSING else "(computed)"
        rows.append((env_name, str(default), f.metadata.get("help", "")))
    return rows
