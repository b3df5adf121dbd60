"""The daemon's in-memory copy of every suppression in force, for checks in microseconds.

Global and per-campaign sets for each channel (phone numbers, e-mail addresses, company domains), as
``KeySet``s. Loaded from PostgreSQL with COPY (keys computed and sorted by the server), then kept current by
the change events every write NOTIFYs (``suppressions.NOTIFY_CHANNEL``); see ``listener``.
"""

from __future__ import annotations

import time
from array import array
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from crm.compliance.compact_sets import NEVER, PHONE_KEY_SQL, TEXT_KEY_SQL, KeySet, phone_key, text_key

log = structlog.get_logger(__name__)
CHANNELS = ("phone", "email", "domain")


def key_of(channel: str, value: str) -> int:
    return phone_key(value) if channel == "phone" else text_key(value)


def _key_sql(channel: str) -> str:
    return (PHONE_KEY_SQL if channel == "phone" else TEXT_KEY_SQL).format("value")


@dataclass
class SuppressionIndex:
    """Everything in force, by channel: one global set and one set per campaign with entries."""

    global_sets: dict[str, KeySet] = field(default_factory=lambda: {channel: KeySet() for channel in CHANNELS})
    campaign_sets: dict[str, dict[int, KeySet]] = field(default_factory=lambda: {c: {} for c in CHANNELS})
    loaded_at: float = 0.0

    def scopes(self, channel: str, key: int, campaign_id: int | None, now: float) -> list[str]:
        """Where the value is suppressed: "global", "campaign", both or neither."""
        found = []
        if self.global_sets[channel].contains(key, now):
            found.append("global")
        if campaign_id is not None:
            per_campaign = self.campaign_sets[channel].get(campaign_id)
            if per_campaign is not None and per_campaign.contains(key, now):
                found.append("campaign")
        return found

    def blocked(self, channel: str, key: int, campaign_id: int | None, now: float) -> bool:
        if self.global_sets[channel].contains(key, now):
            return True
        per_campaign = self.campaign_sets[channel].get(campaign_id) if campaign_id is not None else None
        return per_campaign is not None and per_campaign.contains(key, now)

    def apply(self, change: Mapping[str, Any]) -> None:
        """One change event: ``{"op": "add" | "lift", "channel", "campaign_id", "value", "expires": epoch|0}``."""
        channel, campaign_id = change["channel"], change.get("campaign_id")
        target = self._set_for(channel, campaign_id)
        key = key_of(channel, change["value"])
        if change["op"] == "add":
            target.add(key, int(change.get("expires") or NEVER))
        else:
            target.remove(key)

    def _set_for(self, channel: str, campaign_id: int | None) -> KeySet:
        if campaign_id is None:
            return self.global_sets[channel]
        sets = self.campaign_sets[channel]
        found = sets.get(campaign_id)
        if found is None:
            found = sets[campaign_id] = KeySet()
        return found

    def _every_set(self) -> list[KeySet]:
        return [*self.global_sets.values(), *(s for sets in self.campaign_sets.values() for s in sets.values())]

    @property
    def changes(self) -> int:
        return sum(keys.changes for keys in self._every_set())

    def sizes(self) -> dict[str, int]:
        return {channel: len(keys) for channel, keys in self.global_sets.items()} | {
            f"{channel}_campaign": sum(len(keys) for keys in sets.values())
            for channel, sets in self.campaign_sets.items()
        }

    @property
    def nbytes(self) -> int:
        return sum(keys.nbytes for keys in self._every_set())


class _KeyReader:
    """COPY output of "key<TAB>expiry" lines straight into a KeySet, chunk by chunk (never all rows at once)."""

    def __init__(self, size_hint: int) -> None:
        self.keys = KeySet(size_hint=size_hint)
        self._rest = b""

    async def __call__(self, chunk: bytes) -> None:
        data = self._rest + chunk
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        numbers = array("q", map(int, data[:cut].replace(b"\t", b"\n").split()))
        self.keys.insert_many(numbers[0::2], numbers[1::2])


_IN_FORCE = "lifted_at IS NULL AND (expires_at IS NULL OR expires_at > now())"


async def load_index(conn: asyncpg.Connection) -> SuppressionIndex:
    """Read every suppression in force, in one snapshot (10 million phone numbers: see bench/compliance.py)."""
    started = time.perf_counter()
    index = SuppressionIndex()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL statement_timeout = 0")
        for channel in CHANNELS:
            key = _key_sql(channel)
            scope = f"channel = '{channel}' AND scope = 'global' AND {_IN_FORCE}"
            count = await conn.fetchval(f"SELECT count(*) FROM suppressions WHERE {scope}")
            reader = _KeyReader(count)
            await conn.copy_from_query(
                f"""SELECT {key}, coalesce(extract(epoch FROM expires_at)::bigint, 0)
                      FROM suppressions WHERE {scope}""",
                output=reader,
            )
            index.global_sets[channel] = reader.keys
            rows = await conn.fetch(
                f"""SELECT campaign_id, {key} AS key, coalesce(extract(epoch FROM expires_at)::bigint, 0) AS expires
                      FROM suppressions WHERE channel = $1 AND scope = 'campaign' AND {_IN_FORCE}""",
                channel,
            )
            by_campaign: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
            for row in rows:
                by_campaign[row["campaign_id"]].append((row["key"], row["expires"]))
            index.campaign_sets[channel] = {cid: KeySet.from_entries(entries) for cid, entries in by_campaign.items()}
    index.loaded_at = time.time()
    log.info(
        "suppressions_loaded",
        seconds=round(time.perf_counter() - started, 2),
        megabytes=round(index.nbytes / 1e6, 1),
        **index.sizes(),
    )
    return index
