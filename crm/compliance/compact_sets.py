"""Suppression sets that hold millions of entries without a Python object per entry.

Every suppressed value becomes a 64-bit integer key: a phone number is its E.164 digits (at most 15, so it
fits), an e-mail address or domain the first 8 bytes of its MD5 (the same key PostgreSQL computes when
loading, so the sort happens there). A set is a sorted ``array('q')`` searched with bisect (8 bytes an entry)
plus a parallel array of expiry times for entries that expire, and two small overlays for changes since the
load: additions (with expiry) and removals. A hash key can collide only towards blocking, never towards
calling: two addresses sharing a key (odds ~10^-12 at ten million entries) would both be suppressed.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable

NEVER = 0  # expiry of a permanent entry


def phone_key(e164: str) -> int:
    """'+14155550100' -> 14155550100. The caller passes a normalised number."""
    return int(e164[1:])


def text_key(value: str) -> int:
    """A normalised e-mail address or domain -> signed 64-bit key (first 8 bytes of MD5; see module doc)."""
    return int.from_bytes(hashlib.md5(value.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)


#: The same key in SQL, for loading: keys are computed and sorted by PostgreSQL.
TEXT_KEY_SQL = "('x' || substr(md5({}), 1, 16))::bit(64)::bigint"
PHONE_KEY_SQL = "ltrim({}, '+')::bigint"


class KeySet:
    """A sorted array of keys (with expiry epochs for those that expire) and overlays of later changes."""

    __slots__ = ("_keys", "_expiring_keys", "_expiries", "_added", "_removed")

    def __init__(
        self,
        keys: array[int] | None = None,
        expiring_keys: array[int] | None = None,
        expiries: array[int] | None = None,
    ) -> None:
        """``keys``: sorted permanent keys; ``expiring_keys``: sorted, with ``expiries`` (epoch s) alongside."""
        self._keys = keys if keys is not None else array("q")
        self._expiring_keys = expiring_keys if expiring_keys is not None else array("q")
        self._expiries = expiries if expiries is not None else array("q")
        if len(self._expiring_keys) != len(self._expiries):
            raise ValueError("expiring keys and expiries differ in length")
        self._added: dict[int, int] = {}  # key -> expiry epoch (NEVER)
        self._removed: set[int] = set()

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[int, int]]) -> KeySet:
        """Build from (key, expiry) pairs in any order (tests and small per-campaign sets)."""
        permanent: list[tuple[int, int]] = []
        expiring: list[tuple[int, int]] = []
        for key, expiry in entries:
            (permanent if expiry == NEVER else expiring).append((key, expiry))
        permanent.sort()
        expiring.sort()
        return cls(
            array("q", (key for key, _ in permanent)),
            array("q", (key for key, _ in expiring)),
            array("q", (expiry for _, expiry in expiring)),
        )

    def contains(self, key: int, now: float) -> bool:
        """In force at ``now`` (epoch seconds)."""
        added = self._added.get(key)
        if added is not None:
            return added == NEVER or added > now
        if key in self._removed:
            return False
        keys = self._keys
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return True
        expiring = self._expiring_keys
        index = bisect_left(expiring, key)
        return index < len(expiring) and expiring[index] == key and self._expiries[index] > now

    def add(self, key: int, expiry: int = NEVER) -> None:
        self._removed.discard(key)
        self._added[key] = expiry

    def remove(self, key: int) -> None:
        self._added.pop(key, None)
        self._removed.add(key)

    @property
    def changes(self) -> int:
        """Entries in the overlays: when large, a reload folds them into the arrays."""
        return len(self._added) + len(self._removed)

    def __len__(self) -> int:
        """Entries loaded plus added (approximate: removals and expiries are not subtracted)."""
        return len(self._keys) + len(self._expiring_keys) + len(self._added)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the overlays are small and not counted)."""
        return sum(a.itemsize * len(a) for a in (self._keys, self._expiring_keys, self._expiries))
