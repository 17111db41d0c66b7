"""The turn engine's clock: the running event loop's, so tests can run it on virtual time."""

from __future__ import annotations

import asyncio


def now() -> float:
    """Seconds on the running loop's monotonic clock (time.monotonic() in production)."""
    return asyncio.get_running_loop().time()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
