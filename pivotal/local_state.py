"""Secrets the daemon makes for itself and keeps in its data directory."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from config import Settings


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or one generated on first start and kept (mode 0600) for every restart."""
    if settings.auth.jwt_secret is not None:
        return settings.auth.jwt_secret.get_secret_value()
    return _kept(settings, "jwt_secret", lambda: secrets.token_urlsafe(48))


def secrets_key(settings: Settings) -> bytes:
    """The 32-byte key that encrypts carrier secrets at rest: configured, or generated once and kept."""
    configured = settings.telephony.secrets_key
    text = configured.get_secret_value() if configured is not None else None
    if text is None:
        text = _kept(settings, "secrets_key", lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    return base64.b64decode(text)


def _kept(settings: Settings, name: str, make: Callable[[], str]) -> str:
    path = settings.data_dir / name
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(make())
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds a secret shorter than 32 characters; delete it to have a new one made")
    return value
