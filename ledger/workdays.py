"""China working-day arithmetic for statutory deadlines.

The Regulations on Open Government Information (政府信息公开条例, 2019 revision)
count their limits in working days (工作日), not calendar days:

- Art. 33: a disclosure request is answered within 20 working days of receipt;
  one extension of at most 20 further working days is allowed. The time spent
  consulting third parties or other bodies is not counted (a *pause*, see
  :meth:`WorkCalendar.add_working_days_with_pauses`).
- Art. 30: when the applicant is asked to complete an unclear request (补正), the
  period runs from receipt of the completed request. Gongkai, as its product
  decision (issue 5), stops the clock while the supplement is awaited and lets it
  run on when it arrives (a pause, see ``ledger.opinions``); a restart would be a
  new ``start`` instead.
- Art. 26: information subject to proactive disclosure is published within 20
  working days of being created or changed.

A working day is Monday–Friday, except statutory holidays, plus the weekend
days the State Council declares working days to make up for bridged holidays
(调休上班). Each year's schedule is published by the General Office of the State
Council late in the preceding year. Where a year's schedule comes from, in order
of precedence:

1. ``loaded``: a schedule an admin loaded (``gongkai calendar load FILE``), parsed
   by :func:`parse_schedule`. It wins over the package, so a correction or a
   newly published year never waits for a package release.
2. ``chinese_calendar``: the ``chinese-calendar`` package's data (2004–2026 in
   version 1.11).
3. ``weekends_only``: neither knows the year, so Monday–Friday count as working
   days. Deadlines touching such a year are marked ``estimated`` with a note
   saying so, because the real date may differ by the holidays and make-up
   days not yet known.

Counting convention: the day a request is received is day 0; a request received
on day ``D`` is due on ``add_working_days(D, 20)``, the 20th working day strictly
after ``D``. An extension of 20 more working days gives
``add_working_days(D, 40)``, which equals ``add_working_days(due, 20)``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar

__all__ = [
    "EXTENSION_MAX_WORKING_DAYS",
    "PROACTIVE_DISCLOSURE_WORKING_DAYS",
    "REPLY_WORKING_DAYS",
    "Deadline",
    "Source",
    "WorkCalendar",
    "YearSchedule",
    "china_today",
    "parse_schedule",
]

#: Art. 33: reply to a disclosure request within this many working days of receipt.
REPLY_WORKING_DAYS = 20
#: Art. 33: the single extension may add at most this many working days.
EXTENSION_MAX_WORKING_DAYS = 20
#: Art. 26: proactively disclosed information is published within this many working days.
PROACTIVE_DISCLOSURE_WORKING_DAYS = 20

Source = Literal["loaded", "chinese_calendar", "weekends_only"]

#: The command the "estimated" note points the admin to.
LOAD_COMMAND = "gongkai calendar load FILE"


@dataclass(frozen=True)
class YearSchedule:
    """One year's official holiday arrangement.

    ``holidays``: days off. Listing weekend days of a festival too (as the
    State Council notices do, "2月15日至23日放假") is fine: any listed holiday is
    a day off. ``workdays``: days that are working days although they fall on a
    weekend (调休上班). Any listed workday is a working day; every other day
    follows the Monday–Friday rule. ``source`` names the notice, for display.
    """

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Checked here as well as in parse_schedule so that a schedule built in
        # code cannot silently disagree with the year it is filed under.
        for kind, days in (("holiday", self.holidays), ("workday", self.workdays)):
            outside = sorted(d for d in days if d.year != self.year)
            if outside:
                raise ValueError(
                    f"{kind} {outside[0].isoformat()} is not in the schedule's year {self.year}"
                )
        both = sorted(self.holidays & self.workdays)
        if both:
            raise ValueError(f"{both[0].isoformat()} is listed both as a holiday and as a workday")


@dataclass(frozen=True)
class Deadline:
    """A computed due date.

    ``estimated`` is True when a counted day lies in a year whose holidays are
    unknown (source ``weekends_only``); ``note`` then says which years and how
    to fix it. For an exact deadline ``note`` is None.
    """

    due_on: date
    estimated: bool
    note: str | None


# -- parsing -----------------------------------------------------------------

# date.fromisoformat also accepts "20270101" and week dates; an official schedule
# file should use one unambiguous spelling, so insist on YYYY-MM-DD.
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOP_KEYS = frozenset({"year", "source", "holidays", "workdays"})
_HOLIDAY_KEYS = frozenset({"name", "days"})


def _parse_day(value: object, where: str, year: int) -> date:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError(f"{where}: expected a date as 'YYYY-MM-DD', got {value!r}")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a valid date") from None
    if day.year != year:
        raise ValueError(f"{where}: {value} is not in the schedule's year {year}")
    return day


def _string_list(value: object, where: str) -> list[object]:
    # A bare string is iterable too; accepting it would split it into characters.
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def parse_schedule(data: Mapping[str, object]) -> YearSchedule:
    """Build a :class:`YearSchedule` from a State Council schedule file's JSON.

    Shape::

        {"year": 2027,
         "source": "国务院办公厅关于2027年部分节假日安排的通知 (…)",
         "holidays": [{"name": "元旦", "days": ["2027-01-01", …]}, …],
         "workdays": ["2027-02-20", …]}

    ``holidays`` may also be a plain list of date strings; ``source`` and
    ``workdays`` are optional. Unknown keys are rejected, since a misspelt
    ``"workday"`` would otherwise be ignored and shift legal deadlines.

    Raises ValueError naming the offending item when a date is malformed, lies
    outside ``year``, or is listed both as a holiday and as a workday.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"schedule: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"schedule: unknown key {unknown[0]!r} (allowed: {sorted(_TOP_KEYS)})")

    year = data.get("year")
    # bool is an int subclass; "year": true is a mistake, not the year 1.
    if not isinstance(year, int) or isinstance(year, bool):
        raise ValueError(f"schedule: 'year' must be an integer, got {year!r}")
    if not 1 <= year <= 9999:
        raise ValueError(f"schedule: 'year' {year} is out of range")

    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"schedule: 'source' must be a string, got {source!r}")

    if "holidays" not in data:
        raise ValueError("schedule: 'holidays' is missing")
    holidays: dict[date, str] = {}
    for i, item in enumerate(_string_list(data["holidays"], "holidays")):
        if isinstance(item, str):
            where = f"holidays[{i}]"
            holidays.setdefault(_parse_day(item, where, year), where)
            continue
        if not isinstance(item, Mapping):
            raise ValueError(
                f"holidays[{i}]: expected a date string or an object with 'days', got {item!r}"
            )
        bad = sorted(set(item) - _HOLIDAY_KEYS)
        if bad:
            raise ValueError(f"holidays[{i}]: unknown key {bad[0]!r} (allowed: name, days)")
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"holidays[{i}]: 'name' must be a string, got {name!r}")
        label = f"holidays[{i}] ({name})" if name else f"holidays[{i}]"
        if "days" not in item:
            raise ValueError(f"{label}: 'days' is missing")
        days = _string_list(item["days"], f"{label}.days")
        if not days:
            raise ValueError(f"{label}: 'days' is empty")
        for j, value in enumerate(days):
            where = f"{label}.days[{j}]"
            holidays.setdefault(_parse_day(value, where, year), where)

    workdays: dict[date, str] = {}
    for i, value in enumerate(_string_list(data.get("workdays", []), "workdays")):
        where = f"workdays[{i}]"
        workdays.setdefault(_parse_day(value, where, year), where)

    both = sorted(holidays.keys() & workdays.keys())
    if both:
        day = both[0]
        raise ValueError(
            f"{workdays[day]}: {day.isoformat()} is also listed as a holiday at {holidays[day]}"
        )

    return YearSchedule(
        year=year,
        holidays=frozenset(holidays),
        workdays=frozenset(workdays),
        source=source,
    )


# -- the package's data ------------------------------------------------------


def _package_years() -> tuple[int, int]:
    # The same bounds chinese_calendar itself enforces (it raises
    # NotImplementedError outside them); read once so lookups never need a
    # try/except per day.
    years = [d.year for d in chinese_calendar.holidays]
    return min(years), max(years)


_PACKAGE_FIRST_YEAR, _PACKAGE_LAST_YEAR = _package_years()


def _package_schedule(year: int) -> YearSchedule:
    # Read the package's tables directly instead of calling is_workday() per
    # day: it is the same rule (listed workday, or weekday not listed as a
    # holiday) without the per-call validation.
    holidays: Iterable[date] = chinese_calendar.holidays
    workdays: Iterable[date] = chinese_calendar.workdays
    return YearSchedule(
        year=year,
        holidays=frozenset(d for d in holidays if d.year == year),
        workdays=frozenset(d for d in workdays if d.year == year),
        source="chinese_calendar",
    )


# -- the calendar ------------------------------------------------------------


@dataclass(frozen=True)
class _YearTable:
    """One year resolved to lookup structures, built once per year."""

    source: Source
    first_ordinal: int  # ordinal of 1 January
    flags: bytes  # flags[i] == 1 when 1 January + i is a working day
    ordinals: tuple[int, ...]  # ordinals of the working days, ascending


def _build_table(year: int, source: Source, schedule: YearSchedule | None) -> _YearTable:
    first = date(year, 1, 1).toordinal()
    length = date(year, 12, 31).toordinal() - first + 1
    holidays = {d.toordinal() for d in schedule.holidays} if schedule else set()
    workdays = {d.toordinal() for d in schedule.workdays} if schedule else set()
    # date.weekday() of ordinal o is (o + 6) % 7 (ordinal 1 = Monday, 1 Jan 0001).
    flags = bytes(
        1 if o in workdays or ((o + 6) % 7 < 5 and o not in holidays) else 0
        for o in range(first, first + length)
    )
    ordinals = tuple(first + i for i, f in enumerate(flags) if f)
    return _YearTable(source=source, first_ordinal=first, flags=flags, ordinals=ordinals)


_LAST_YEAR = date.max.year


class WorkCalendar:
    """Working days in mainland China, with admin-loaded schedules taking precedence.

    Per-year lookup tables are built on first use and cached, so counting 40
    working days is a couple of binary searches, not a loop over days.
    A calendar is immutable after construction; build a new one to load a schedule.
    """

    def __init__(self, schedules: Mapping[int, YearSchedule] | None = None) -> None:
        loaded = dict(schedules or {})
        for key, schedule in loaded.items():
            # A 2027 schedule filed under 2028 would otherwise apply to the wrong year.
            if key != schedule.year:
                raise ValueError(f"schedule for {schedule.year} filed under year {key}")
        self._schedules: dict[int, YearSchedule] = loaded
        self._tables: dict[int, _YearTable] = {}

    @property
    def schedules(self) -> Mapping[int, YearSchedule]:
        """The loaded schedules, by year."""
        return dict(self._schedules)

    def source_for(self, year: int) -> Source:
        """Where ``year``'s holidays come from."""
        if year in self._schedules:
            return "loaded"
        if _PACKAGE_FIRST_YEAR <= year <= _PACKAGE_LAST_YEAR:
            return "chinese_calendar"
        return "weekends_only"

    def _table(self, year: int) -> _YearTable:
        table = self._tables.get(year)
        if table is None:
            source = self.source_for(year)
            if source == "loaded":
                schedule: YearSchedule | None = self._schedules[year]
            elif source == "chinese_calendar":
                schedule = _package_schedule(year)
            else:
                schedule = None
            table = _build_table(year, source, schedule)
            # Racing threads build identical tables; last write wins harmlessly.
            self._tables[year] = table
        return table

    def is_working_day(self, d: date) -> bool:
        """True when ``d`` is a working day."""
        table = self._table(d.year)
        return table.flags[d.toordinal() - table.first_ordinal] == 1

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day strictly after ``start``; ``start`` itself when n == 0.

        ``start`` need not be a working day (a request may arrive on a Sunday).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            return start
        remaining = n
        year = start.year
        after = start.toordinal()
        while True:
            ordinals = self._table(year).ordinals
            i = bisect_right(ordinals, after)
            available = len(ordinals) - i
            if remaining <= available:
                return date.fromordinal(ordinals[i + remaining - 1])
            remaining -= available
            if year >= _LAST_YEAR:
                raise OverflowError("deadline falls after the year 9999")
            year += 1

    def working_days_between(self, start: date, end: date) -> int:
        """Number of working days ``d`` with ``start < d <= end``; 0 if ``end <= start``."""
        if end <= start:
            return 0
        lo, hi = start.toordinal(), end.toordinal()
        count = 0
        for year in range(start.year, end.year + 1):
            ordinals = self._table(year).ordinals
            count += bisect_right(ordinals, hi) - bisect_right(ordinals, lo)
        return count

    def _estimate(self, start: date, due: date) -> tuple[bool, str | None]:
        # Counted days are those in (start, due]; their years decide.
        if due <= start:
            return False, None
        first = (start + timedelta(days=1)).year
        unknown = [y for y in range(first, due.year + 1) if self.source_for(y) == "weekends_only"]
        if not unknown:
            return False, None
        years = ", ".join(str(y) for y in unknown)
        return True, (
            f"{years} holidays unknown: counted Monday–Friday only; "
            f"load the State Council schedule with `{LOAD_COMMAND}`"
        )

    def deadline(self, start: date, n: int) -> Deadline:
        """:meth:`add_working_days` with a flag saying whether the result is exact."""
        due = self.add_working_days(start, n)
        estimated, note = self._estimate(start, due)
        return Deadline(due_on=due, estimated=estimated, note=note)

    def add_working_days_with_pauses(
        self, start: date, n: int, pauses: Sequence[tuple[date, date | None]]
    ) -> date:
        """Like :meth:`add_working_days`, for a clock that stops during ``pauses``.

        Each pause ``(pause_start, pause_end)`` is the half-open interval
        ``[pause_start, pause_end)``: working days ``d`` with
        ``pause_start <= d < pause_end`` are not counted. So the day the clock
        stops (e.g. a third party is consulted) does not count, and the day it
        resumes (the reply arrives) counts again, like a receipt day's successor.
        Pauses may overlap, touch, lie before ``start`` or be given in any order;
        parts before ``start`` have no effect.

        ``pause_end`` None means the clock is still stopped. If the ``n``-th
        counted working day falls before such an open pause starts, that day is
        returned (the deadline was reached before the pause). Otherwise the due
        date depends on when the pause will end, which is not knowable, and
        ``ValueError("clock is paused")`` is raised.

        Raises ValueError for n < 0 or a pause ending before it starts.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        for pause_start, pause_end in pauses:
            if pause_end is not None and pause_end < pause_start:
                raise ValueError(
                    f"pause ends ({pause_end.isoformat()}) before it starts "
                    f"({pause_start.isoformat()})"
                )
        if n == 0:
            return start
        remaining = n
        # Invariant: days <= cursor are used up (counted, paused or before start).
        cursor = start
        for pause_start, pause_end in sorted(pauses, key=lambda p: p[0]):
            if pause_start > cursor:
                # Working days after the cursor and before the pause still count.
                run = self.working_days_between(cursor, pause_start - timedelta(days=1))
                if remaining <= run:
                    return self.add_working_days(cursor, remaining)
                remaining -= run
            if pause_end is None:
                raise ValueError("clock is paused")
            if pause_end > cursor:
                cursor = pause_end - timedelta(days=1)
        return self.add_working_days(cursor, remaining)

    def deadline_with_pauses(
        self, start: date, n: int, pauses: Sequence[tuple[date, date | None]]
    ) -> Deadline:
        """:meth:`add_working_days_with_pauses` with the ``estimated`` flag and note.

        Conservative: the result is marked estimated when any year in
        ``(start, due_on]`` has unknown holidays, even one covered by a pause.
        """
        due = self.add_working_days_with_pauses(start, n, pauses)
        estimated, note = self._estimate(start, due)
        return Deadline(due_on=due, estimated=estimated, note=note)


# -- today -------------------------------------------------------------------


def _china_zone() -> tzinfo:
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        # Slim containers may lack tz data. China has kept UTC+8 without
        # daylight saving since 1991, so a fixed offset gives the same date.
        return timezone(timedelta(hours=8), "CST")


_CHINA = _china_zone()


def china_today(now: datetime | None = None) -> date:
    """Today's date in Asia/Shanghai: the date deadlines are counted from.

    ``now`` (timezone-aware) is for tests; the default is the current time.
    A server running in UTC would otherwise date a request received at
    07:30 Beijing time to the previous day.
    """
    if now is None:
        return datetime.now(_CHINA).date()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(_CHINA).date()
