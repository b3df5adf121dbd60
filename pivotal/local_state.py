"""Secrets the daemon makes for itself and keeps in its data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from config import Settings


def jwt_secret(settings: Settings) -> str:
    """The configured secret, or one generated on first start and kept (mode 0600) for every restart."""
    if settings.auth.jwt_secret is not None:
        return settings.auth.jwt_secret.get_secret_value()
    path = settings.data_dir / "jwt_secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds a secret shorter than 32 characters; delete it to have a new one made")
    return value
