"""Suppression sets that hold millions of entries without a Python object per entry.

Every suppressed value becomes a 64-bit integer key: a phone number is its E.164 digits (at most 15, so it
fits), an e-mail address or domain the first 8 bytes of its MD5 (the same key PostgreSQL computes when
loading). A set is an open-addressing hash table in an ``array('q')`` (linear probing, at most 60% full) with a
parallel ``array('I')`` of expiry times: 12 bytes a slot, ~20 bytes an entry, and a lookup costs one or two
array reads (~0.4 us in CPython, where a binary search over ten million sorted keys costs ~2 us). Changes
after the load go to two small overlays, additions (with expiry) and removals, so the table never deletes.
A hash key can collide only towards blocking, never towards calling: two addresses sharing a key (odds ~10^-12
at ten million entries) would both be suppressed.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Sized

NEVER = 0  # expiry of a permanent entry
EMPTY = 0  # a free slot; no key is 0 (phone numbers have digits, text keys map 0 to 1)
MAX_LOAD = 0.6
_MULTIPLIER = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads runs of consecutive numbers over the table
_MASK64 = (1 << 64) - 1
_MAX_EXPIRY = (1 << 32) - 1  # array('I'): seconds since 1970 up to the year 2106


def phone_key(e164: str) -> int:
    """'+14155550100' -> 14155550100. The caller passes a normalised number."""
    return int(e164[1:])


def text_key(value: str) -> int:
    """A normalised e-mail address or domain -> signed 64-bit key (first 8 bytes of MD5; see module doc)."""
    key = int.from_bytes(hashlib.md5(value.encode(), usedforsecurity=False).digest()[:8], "big", signed=True)
    return key or 1


#: The same key in SQL, for loading: keys are computed and sorted by PostgreSQL.
TEXT_KEY_SQL = "coalesce(nullif(('x' || substr(md5({}), 1, 16))::bit(64)::bigint, 0), 1)"
PHONE_KEY_SQL = "ltrim({}, '+')::bigint"


class KeySet:
    """A hash table of keys with their expiry epochs, and overlays of later changes."""

    __slots__ = ("_table", "_expiries", "_mask", "_shift", "_count", "_added", "_removed")

    def __init__(self, keys: Iterable[int] = (), expiries: Iterable[int] | None = None, *, size_hint: int = 0) -> None:
        """``expiries`` run alongside ``keys`` (NEVER: permanent; default all permanent). A key given twice keeps
        the later of its expiries (a permanent one wins)."""
        bits = 10
        while (1 << bits) * MAX_LOAD < size_hint:
            bits += 1
        self._allocate(bits)
        self._added: dict[int, int] = {}  # key -> expiry epoch (NEVER)
        self._removed: set[int] = set()
        self.insert_many(keys, expiries if expiries is not None else _nevers())

    def _allocate(self, bits: int) -> None:
        self._table = array("q", bytes(8 << bits))
        self._expiries = array("I", bytes(4 << bits))
        self._mask = (1 << bits) - 1
        self._shift = 64 - bits
        self._count = 0

    def _slot(self, key: int) -> int:
        return ((key * _MULTIPLIER) & _MASK64) >> self._shift

    def _insert(self, key: int, expiry: int) -> None:
        if (self._count + 1) > (self._mask + 1) * MAX_LOAD:
            self._grow()
        table, mask = self._table, self._mask
        index = self._slot(key)
        while True:
            found = table[index]
            if found == EMPTY:
                table[index] = key
                self._expiries[index] = min(expiry, _MAX_EXPIRY)
                self._count += 1
                return
            if found == key:
                previous = self._expiries[index]
                if previous != NEVER:
                    self._expiries[index] = NEVER if expiry == NEVER else max(previous, min(expiry, _MAX_EXPIRY))
                return
            index = (index + 1) & mask

    def insert_many(self, keys: Iterable[int], expiries: Iterable[int]) -> None:
        """Load entries into the table itself (the loader's path; later changes go through add/remove)."""
        if not isinstance(keys, Sized):
            keys = list(keys)
        while self._count + len(keys) > (self._mask + 1) * MAX_LOAD:
            self._grow()
        # The hot loop of a load (ten million keys): _insert inlined, locals only.
        table, stored, mask, shift = self._table, self._expiries, self._mask, self._shift
        added = 0
        for key, expiry in zip(keys, expiries, strict=False):
            index = ((key * _MULTIPLIER) & _MASK64) >> shift
            while True:
                found = table[index]
                if found == EMPTY:
                    table[index] = key
                    stored[index] = expiry if expiry <= _MAX_EXPIRY else _MAX_EXPIRY
                    added += 1
                    break
                if found == key:
                    previous = stored[index]
                    if previous != NEVER:
                        stored[index] = NEVER if expiry == NEVER else max(previous, min(expiry, _MAX_EXPIRY))
                    break
                index = (index + 1) & mask
        self._count += added

    def _grow(self) -> None:
        table, expiries = self._table, self._expiries
        self._allocate(self._shift_bits() + 1)
        for key, expiry in zip(table, expiries, strict=True):
            if key != EMPTY:
                self._insert(key, expiry)

    def _shift_bits(self) -> int:
        return 64 - self._shift

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[int, int]]) -> KeySet:
        pairs = list(entries)
        return cls((key for key, _ in pairs), (expiry for _, expiry in pairs), size_hint=len(pairs))

    def contains(self, key: int, now: float) -> bool:
        """In force at ``now`` (epoch seconds)."""
        if self._added:
            added = self._added.get(key)
            if added is not None:
                return added == NEVER or added > now
        if self._removed and key in self._removed:
            return False
        table, mask = self._table, self._mask
        index = ((key * _MULTIPLIER) & _MASK64) >> self._shift
        while True:
            found = table[index]
            if found == key:
                expiry = self._expiries[index]
                return expiry == NEVER or expiry > now
            if found == EMPTY:
                return False
            index = (index + 1) & mask

    def add(self, key: int, expiry: int = NEVER) -> None:
        self._removed.discard(key)
        self._added[key] = expiry

    def remove(self, key: int) -> None:
        self._added.pop(key, None)
        self._removed.add(key)

    @property
    def changes(self) -> int:
        """Entries in the overlays: when large, a reload folds them into the table."""
        return len(self._added) + len(self._removed)

    def __len__(self) -> int:
        """Entries loaded plus added (approximate: removals and expiries are not subtracted)."""
        return self._count + len(self._added)

    @property
    def nbytes(self) -> int:
        """Bytes held by the table (the overlays are small and not counted)."""
        return self._table.itemsize * len(self._table) + self._expiries.itemsize * len(self._expiries)


def _nevers() -> Iterable[int]:
    while True:
        yield NEVER
