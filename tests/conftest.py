"""Fixtures shared across the suite. Model-backed fixtures are session-scoped: loading is slow."""

from __future__ import annotations

import pytest

from services.common import models


def require_model(name: str) -> None:
    """Fail (not skip) when a model is missing: `make test` pulls them, so absence is a real defect."""
    if not models.is_pulled(name):
        pytest.fail(f"model {name} is not pulled; run `echo-voice models pull {name}` (make test does)")


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("service-logs")
