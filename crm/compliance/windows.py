"""Calling windows: when a contact may be called, in the contact's local time. Pure; the clock is passed in.

A window is a list of intervals per weekday in local wall-clock time (start inclusive, end exclusive, "24:00"
allowed as an end) and a set of holiday dates on which nothing is open. A contact whose local time is
uncertain (a number that spans zones, a country with several) is called only when the window is open in
every candidate zone, so no one is ever called outside the window wherever they really are.

JSON form, as stored in ``campaigns.calling_window``::

    {"mon": [["08:00", "21:00"]], ..., "sun": [], "holidays": ["2026-12-25"]}

``{}`` is the default (08:00-21:00, Monday to Friday); once any weekday is given, the days not given are
closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
#: How far ahead next_open() looks: two weeks covers any weekly window plus a run of holidays.
LOOKAHEAD_DAYS = 14
MAX_HOLIDAYS = 1000
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")

Interval = tuple[int, int]  # minutes after local midnight: [start, end)


class WindowError(ValueError):
    """The window JSON is invalid; the message names the offending part."""


def _minutes(text: object, where: str) -> int:
    if not isinstance(text, str) or not _CLOCK.fullmatch(text):
        raise WindowError(f"{where}: expected a time of day as HH:MM (00:00 to 24:00), got {text!r}")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class CallingWindow:
    """Open intervals per weekday (Monday first) and closed dates, in the callee's local time."""

    days: tuple[tuple[Interval, ...], ...]
    holidays: frozenset[date] = frozenset()

    @classmethod
    def default(cls) -> CallingWindow:
        weekday = ((8 * 60, 21 * 60),)
        return cls((weekday,) * 5 + ((), ()))

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CallingWindow:
        """Parse and validate; raise WindowError naming the part that is wrong."""
        if not isinstance(data, Mapping):
            raise WindowError("calling_window: expected an object")
        unknown = set(data) - set(WEEKDAYS) - {"holidays"}
        if unknown:
            raise WindowError(f"calling_window: unknown keys {sorted(unknown)}; use {', '.join(WEEKDAYS)}, holidays")
        holidays = cls._holidays(data.get("holidays", []))
        if not set(data) & set(WEEKDAYS):
            return cls(cls.default().days, holidays)
        days = []
        for name in WEEKDAYS:
            days.append(cls._intervals(data.get(name, []), f"calling_window.{name}"))
        return cls(tuple(days), holidays)

    @staticmethod
    def _intervals(raw: object, where: str) -> tuple[Interval, ...]:
        if not isinstance(raw, list):
            raise WindowError(f"{where}: expected a list of [start, end] pairs")
        intervals = []
        for index, pair in enumerate(raw):
            at = f"{where}[{index}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise WindowError(f"{at}: expected [start, end]")
            start, end = _minutes(pair[0], f"{at}[0]"), _minutes(pair[1], f"{at}[1]")
            if start == DAY_MINUTES:
                raise WindowError(f"{at}[0]: a window cannot start at 24:00")
            if end <= start:
                raise WindowError(f"{at}: ends ({_clock(end)}) before it starts ({_clock(start)})")
            intervals.append((start, end))
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
            if start < end:
                raise WindowError(f"{where}: intervals overlap")
        return tuple(intervals)

    @staticmethod
    def _holidays(raw: object) -> frozenset[date]:
        if not isinstance(raw, list):
            raise WindowError("calling_window.holidays: expected a list of YYYY-MM-DD dates")
        if len(raw) > MAX_HOLIDAYS:
            raise WindowError(f"calling_window.holidays: at most {MAX_HOLIDAYS} dates")
        dates = set()
        for index, text in enumerate(raw):
            try:
                if not isinstance(text, str) or len(text) != 10:
                    raise ValueError
                dates.add(date.fromisoformat(text))
            except ValueError:
                raise WindowError(f"calling_window.holidays[{index}]: expected YYYY-MM-DD, got {text!r}") from None
        return frozenset(dates)

    def to_json(self) -> dict[str, object]:
        result: dict[str, object] = {
            name: [[_clock(start), _clock(end)] for start, end in intervals]
            for name, intervals in zip(WEEKDAYS, self.days, strict=True)
        }
        result["holidays"] = sorted(day.isoformat() for day in self.holidays)
        return result

    def is_open(self, local: datetime) -> bool:
        """Whether the window is open at this local wall-clock time."""
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.days[local.weekday()])

    def next_open_in(self, zone: ZoneInfo, now: datetime) -> datetime | None:
        """The first instant at or after ``now`` when the window is open in ``zone`` (None within two weeks)."""
        local = now.astimezone(zone)
        if self.is_open(local):
            return now
        minute = local.hour * 60 + local.minute
        for offset in range(LOOKAHEAD_DAYS + 1):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            for start, _ in self.days[day.weekday()]:
                if offset == 0 and start <= minute:
                    continue
                opening = datetime.combine(day, time(start // 60, start % 60), tzinfo=zone)
                if opening > now:
                    return opening
        return None


@dataclass(frozen=True)
class WindowCheck:
    """The outcome for a set of candidate zones: open in all, or which are closed and when all open next."""

    allowed: bool
    closed_in: tuple[str, ...] = ()
    next_open: datetime | None = None


_ZONES: dict[str, ZoneInfo] = {}


def zone(name: str) -> ZoneInfo:
    """ZoneInfo by name, memoised (ZoneInfo's own cache is keyed the same, this skips its lock)."""
    found = _ZONES.get(name)
    if found is None:
        found = _ZONES[name] = ZoneInfo(name)
    return found


def check_window(window: CallingWindow, zones: Sequence[str], now: datetime) -> WindowCheck:
    """Open only when open in every zone; ``zones`` must not be empty (unknown local time is the caller's call)."""
    closed = tuple(name for name in zones if not window.is_open(now.astimezone(zone(name))))
    if not closed:
        return WindowCheck(True)
    return WindowCheck(False, closed, next_open_everywhere(window, zones, now))


def next_open_everywhere(window: CallingWindow, zones: Iterable[str], now: datetime) -> datetime | None:
    """The first instant when the window is open in all zones at once, or None within the lookahead."""
    infos = [zone(name) for name in zones]
    limit = now + timedelta(days=LOOKAHEAD_DAYS)
    candidate = now
    while candidate <= limit:
        moved = False
        for info in infos:
            opening = window.next_open_in(info, candidate)
            if opening is None:
                return None
            if opening > candidate:
                candidate, moved = opening, True
        if not moved:
            return candidate
    return None
