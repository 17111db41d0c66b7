"""API keys: made here, stored only as their sha256 (storage never sees a key)."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "ek_"


def sha256_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate(user_id: str) -> tuple[str, str, str]:
    """(key, key_id, key_sha256) for a new key of ``user_id``. The key embeds its public id, so a
    leaked key can be named and revoked: "ek_<12 hex>_<secret>", id "k_<12 hex>"."""
    del user_id  # the owner is recorded with the key, not encoded in it
    public = secrets.token_hex(6)
    key = f"{PREFIX}{public}_{secrets.token_urlsafe(32)}"
    return key, f"k_{public}", sha256_of(key)
