"""Keyset pagination: ``limit`` plus an opaque ``cursor`` the previous page returned."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from admin_api.problems import Problem

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class PageQuery(BaseModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page.")
    cursor: str | None = Field(None, max_length=200, description="Opaque cursor from a previous page's next_cursor.")


class Page(BaseModel, Generic[T]):
    # Items are validated from domain objects as one batch: several times faster than one model per item.
    model_config = ConfigDict(from_attributes=True)

    items: list[T]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


def page_of(rows: Sequence[R], limit: int, key: Callable[[R], int]) -> tuple[list[R], str | None]:
    """Cut a ``limit + 1`` fetch to one page and say where the next one starts (None on the last page)."""
    page = list(rows[:limit])
    return page, encode_cursor(key(page[-1])) if len(rows) > limit else None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = data["after"]
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise TypeError
        return after
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise Problem(
            422, "cursor is not one this API issued", errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from None
