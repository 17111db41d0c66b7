"""The user's Echo API key for the CLI and the benches: ECHO_API_KEY, else the credentials file that
`echo-voice run` writes on first start ($XDG_CONFIG_HOME/echo/credentials.json, mode 0600)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from services.common.service_auth import token_path


def config_dir() -> Path:
    """Where Echo keeps the user's secrets (the service token sits beside this file)."""
    return token_path().parent


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def read_credentials() -> dict[str, Any]:
    try:
        data = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_api_key() -> str:
    """The key to send, or "" when there is none (the gateway then answers 401 unauthorized)."""
    return os.environ.get("ECHO_API_KEY", "").strip() or str(read_credentials().get("api_key", ""))


def save_credentials(**fields: str) -> Path:
    """Write the file atomically, readable by its owner only (it holds a secret)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp made it 0600
            json.dump(fields, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
