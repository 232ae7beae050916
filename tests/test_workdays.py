"""Working-day arithmetic for statutory deadlines (ledger.workdays); no database.

Expected dates below were counted by hand from the 2026 schedule shipped in
chinese-calendar 1.11:
- Spring Festival: off 15–23 February (Sun–Mon); make-up workdays Sat 14 Feb and Sat 28 Feb.
- Mid-Autumn: off 25–27 September (Fri–Sun); National Day: off 1–7 October (Thu–Wed);
  make-up workdays Sun 20 September and Sat 10 October.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.workdays import (
    REPLY_WORKING_DAYS,
    Deadline,
    WorkCalendar,
    YearSchedule,
    china_today,
    parse_schedule,
)

NOTE_2027 = (
    "2027 holidays unknown: counted Monday–Friday only; "
    "load the State Council schedule with `gongkai calendar load FILE`"
)

# TEST DATA ONLY, not the official 2027 arrangement (unpublished when this was
# written): a plausible shape so the "loaded" path can be exercised. 1 January
# 2027 is a Friday; Spring Festival (6 February) is a Saturday.
SCHEDULE_2027: dict[str, Any] = {
    "year": 2027,
    "source": "TEST FIXTURE — not the State Council notice",
    "holidays": [
        {"name": "元旦", "days": ["2027-01-01", "2027-01-02", "2027-01-03"]},
        {
            "name": "春节",
            "days": [
                "2027-02-06",
                "2027-02-07",
                "2027-02-08",
                "2027-02-09",
                "2027-02-10",
                "2027-02-11",
                "2027-02-12",
            ],
        },
    ],
    "workdays": ["2027-02-20"],  # a Saturday
}


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar()


@pytest.fixture(scope="module")
def cal2027() -> WorkCalendar:
    return WorkCalendar({2027: parse_schedule(SCHEDULE_2027)})


def brute_force(cal: WorkCalendar, start: date, n: int, pauses: list[tuple[date, date]]) -> date:
    """Reference: walk day by day, skipping non-working and paused days."""
    d = start
    while n > 0:
        d += timedelta(days=1)
        if cal.is_working_day(d) and not any(ps <= d < pe for ps, pe in pauses):
            n -= 1
    return d


# -- sources and single days -------------------------------------------------


def test_sources(cal: WorkCalendar, cal2027: WorkCalendar) -> None:
    assert cal.source_for(2026) == "chinese_calendar"
    assert cal.source_for(2004) == "chinese_calendar"
    assert cal.source_for(2003) == "weekends_only"
    assert cal.source_for(2027) == "weekends_only"
    assert cal2027.source_for(2027) == "loaded"
    assert cal2027.source_for(2026) == "chinese_calendar"


def test_national_day_2026_days(cal: WorkCalendar) -> None:
    for day in range(1, 8):
        assert not cal.is_working_day(date(2026, 10, day))
    assert cal.is_working_day(date(2026, 9, 30))
    assert cal.is_working_day(date(2026, 10, 8))
    # 调休: Saturday 10 October and Sunday 20 September are working days.
    assert date(2026, 10, 10).weekday() == 5
    assert cal.is_working_day(date(2026, 10, 10))
    assert date(2026, 9, 20).weekday() == 6
    assert cal.is_working_day(date(2026, 9, 20))
    # An ordinary weekend stays off.
    assert not cal.is_working_day(date(2026, 10, 11))
    assert not cal.is_working_day(date(2026, 9, 25))  # Mid-Autumn, a Friday


def test_spring_festival_2026_days(cal: WorkCalendar) -> None:
    for day in range(15, 24):
        assert not cal.is_working_day(date(2026, 2, day))
    assert cal.is_working_day(date(2026, 2, 14))  # Saturday, 调休
    assert cal.is_working_day(date(2026, 2, 28))  # Saturday, 调休
    assert cal.is_working_day(date(2026, 2, 24))


# -- deadlines ---------------------------------------------------------------


def test_reply_deadline_across_national_day_2026(cal: WorkCalendar) -> None:
    # Received Wed 30 Sep: Oct 8, 9, 10 (Sat, 调休) are days 1–3, Oct 12–16 4–8,
    # 19–23 9–13, 26–30 14–18, Nov 2 19, Nov 3 20.
    received = date(2026, 9, 30)
    assert cal.deadline(received, REPLY_WORKING_DAYS) == Deadline(date(2026, 11, 3), False, None)
    # Received on the holiday itself: same count, the holiday days never count.
    assert cal.add_working_days(date(2026, 10, 3), 20) == date(2026, 11, 3)
    # One working day after Friday 9 October is the 调休 Saturday.
    assert cal.add_working_days(date(2026, 10, 9), 1) == date(2026, 10, 10)
    # Across the 调休 Sunday before Mid-Autumn: Fri 18 Sep -> Sun 20 Sep.
    assert cal.add_working_days(date(2026, 9, 18), 1) == date(2026, 9, 20)


def test_reply_deadline_across_spring_festival_2026(cal: WorkCalendar) -> None:
    # Received Tue 10 Feb: Feb 11–13 1–3, Sat 14 (调休) 4, Feb 24–27 5–8,
    # Sat 28 (调休) 9, Mar 2–6 10–14, Mar 9–13 15–19, Mar 16 20.
    assert cal.deadline(date(2026, 2, 10), 20) == Deadline(date(2026, 3, 16), False, None)
    assert cal.working_days_between(date(2026, 2, 13), date(2026, 2, 24)) == 2  # 14th, 24th


def test_tiaoxiu_saturday_counts(cal: WorkCalendar) -> None:
    # Fri 27 Feb -> next working day is Sat 28 Feb, not Mon 2 Mar.
    assert cal.add_working_days(date(2026, 2, 27), 1) == date(2026, 2, 28)
    assert cal.working_days_between(date(2026, 2, 27), date(2026, 3, 2)) == 2


def test_zero_and_negative(cal: WorkCalendar) -> None:
    assert cal.add_working_days(date(2026, 10, 3), 0) == date(2026, 10, 3)
    assert cal.deadline(date(2026, 12, 31), 0) == Deadline(date(2026, 12, 31), False, None)
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 1, 5), -1)
    assert cal.working_days_between(date(2026, 3, 2), date(2026, 3, 2)) == 0
    assert cal.working_days_between(date(2026, 3, 9), date(2026, 3, 2)) == 0


def test_deadline_into_unknown_2027_is_estimated(cal: WorkCalendar) -> None:
    # Received Thu 10 Dec 2026: Dec 11 1, 14–18 2–6, 21–25 7–11, 28–31 12–15,
    # Fri 1 Jan 2027 counted as a weekday 16, Jan 4–7 17–20.
    got = cal.deadline(date(2026, 12, 10), 20)
    assert got == Deadline(date(2027, 1, 7), True, NOTE_2027)
    # 20 working days from late November end in December 2026: still exact.
    assert cal.deadline(date(2026, 11, 30), 20) == Deadline(date(2026, 12, 28), False, None)
    # With the one extension (20 + 20) a late-November request runs into 2027:
    # Dec 29–31 21–23, Jan 1 24, Jan 4–8 25–29, 11–15 30–34, 18–22 35–39, Jan 25 40.
    extended = cal.deadline(date(2026, 11, 30), 40)
    assert extended == Deadline(date(2027, 1, 25), True, NOTE_2027)
    assert extended.due_on == cal.add_working_days(date(2026, 12, 28), 20)


def test_loaded_2027_schedule_makes_it_exact(cal: WorkCalendar, cal2027: WorkCalendar) -> None:
    # 1 January 2027 (Friday) is now a holiday, so each deadline moves one day.
    assert cal2027.deadline(date(2026, 12, 10), 20) == Deadline(date(2027, 1, 8), False, None)
    assert cal2027.deadline(date(2026, 11, 30), 40) == Deadline(date(2027, 1, 26), False, None)
    # Across the test Spring Festival: received Mon 1 Feb 2027: Feb 2–5 1–4,
    # Feb 8–12 off, Feb 15–19 5–9, Sat 20 (test 调休) 10, Feb 22–26 11–15, Mar 1–5 16–20.
    assert cal2027.deadline(date(2027, 2, 1), 20) == Deadline(date(2027, 3, 5), False, None)
    # Without the schedule: Feb 2–5, 8–12, 15–19, 22–26, Mar 1.
    assert cal.deadline(date(2027, 2, 1), 20) == Deadline(date(2027, 3, 1), True, NOTE_2027)
    assert cal2027.is_working_day(date(2027, 2, 20))
    assert not cal.is_working_day(date(2027, 2, 20))


def test_loaded_schedule_overrides_package() -> None:
    # A (fictional) 2026 schedule with National Day moved: the package is ignored for 2026.
    override = WorkCalendar(
        {2026: YearSchedule(2026, frozenset({date(2026, 10, 9)}), frozenset({date(2026, 10, 11)}))}
    )
    assert override.source_for(2026) == "loaded"
    assert override.is_working_day(date(2026, 10, 1))
    assert not override.is_working_day(date(2026, 10, 9))
    assert override.is_working_day(date(2026, 10, 11))
    assert not override.is_working_day(date(2026, 10, 10))


def test_estimated_note_names_every_unknown_year(cal: WorkCalendar) -> None:
    got = cal.deadline(date(2026, 12, 30), 300)
    assert got.estimated
    assert got.note is not None
    assert got.note.startswith("2027, 2028 holidays unknown")


def test_schedule_filed_under_wrong_year() -> None:
    with pytest.raises(ValueError, match="filed under year 2028"):
        WorkCalendar({2028: parse_schedule(SCHEDULE_2027)})


# -- parse_schedule ----------------------------------------------------------


def test_parse_schedule() -> None:
    s = parse_schedule(SCHEDULE_2027)
    assert s.year == 2027
    assert len(s.holidays) == 10
    assert s.workdays == frozenset({date(2027, 2, 20)})
    assert s.source == "TEST FIXTURE — not the State Council notice"


def test_parse_schedule_plain_holiday_list() -> None:
    s = parse_schedule({"year": 2027, "holidays": ["2027-01-01", "2027-01-01", "2027-02-08"]})
    assert s.holidays == frozenset({date(2027, 1, 1), date(2027, 2, 8)})
    assert s.workdays == frozenset()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"holidays": []}, "'year' must be an integer"),
        ({"year": "2027", "holidays": []}, "'year' must be an integer"),
        ({"year": True, "holidays": []}, "'year' must be an integer"),
        ({"year": 2027}, "'holidays' is missing"),
        ({"year": 2027, "holidays": "2027-01-01"}, "holidays: expected a list"),
        ({"year": 2027, "holidays": ["2026-12-31"]}, r"holidays\[0\]: 2026-12-31 is not in"),
        (
            {"year": 2027, "holidays": [{"name": "元旦", "days": ["2027-01-01", "2028-01-01"]}]},
            r"holidays\[0\] \(元旦\)\.days\[1\]: 2028-01-01 is not in the schedule's year 2027",
        ),
        ({"year": 2027, "holidays": ["2027-02-30"]}, r"holidays\[0\]: '2027-02-30' is not a valid"),
        ({"year": 2027, "holidays": ["20270101"]}, "expected a date as 'YYYY-MM-DD'"),
        ({"year": 2027, "holidays": [20270101]}, "expected a date string or an object"),
        ({"year": 2027, "holidays": [], "workdays": [20270220]}, "expected a date as"),
        ({"year": 2027, "holidays": [{"name": "春节"}]}, r"\(春节\): 'days' is missing"),
        ({"year": 2027, "holidays": [{"name": "春节", "days": []}]}, "'days' is empty"),
        ({"year": 2027, "holidays": [{"days": [], "date": 1}]}, "unknown key 'date'"),
        ({"year": 2027, "holidays": [], "workday": []}, "unknown key 'workday'"),
        ({"year": 2027, "holidays": [], "workdays": ["2026-12-27"]}, r"workdays\[0\]: 2026-12-27"),
        (
            {
                "year": 2027,
                "holidays": [{"name": "春节", "days": ["2027-02-06", "2027-02-07"]}],
                "workdays": ["2027-02-20", "2027-02-07"],
            },
            r"workdays\[1\]: 2027-02-07 is also listed as a holiday at holidays\[0\] \(春节\)",
        ),
    ],
)
def test_parse_schedule_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(data)


def test_year_schedule_checks_itself() -> None:
    with pytest.raises(ValueError, match="not in the schedule's year"):
        YearSchedule(2027, frozenset({date(2026, 1, 1)}), frozenset())
    with pytest.raises(ValueError, match="both as a holiday and as a workday"):
        YearSchedule(2027, frozenset({date(2027, 1, 2)}), frozenset({date(2027, 1, 2)}))


# -- properties --------------------------------------------------------------

starts = st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 12, 31))


@settings(max_examples=300)
@given(start=starts, n=st.integers(min_value=0, max_value=60))
def test_between_inverts_add(start: date, n: int) -> None:
    cal = WorkCalendar()
    due = cal.add_working_days(start, n)
    assert cal.working_days_between(start, due) == n
    assert n == 0 or cal.is_working_day(due)
    assert due == brute_force(cal, start, n, [])


@given(start=starts, a=st.integers(0, 30), b=st.integers(0, 30))
def test_extension_composes(start: date, a: int, b: int) -> None:
    # Extending a deadline by b working days == counting a + b from receipt.
    cal = WorkCalendar()
    assert cal.add_working_days(cal.add_working_days(start, a), b) == cal.add_working_days(
        start, a + b
    )


# -- pauses ------------------------------------------------------------------


def test_pause_excludes_working_days(cal: WorkCalendar) -> None:
    received = date(2026, 9, 30)  # due 3 Nov without pauses
    # Consulting a third party Mon 12 – Mon 19 Oct: 12–16 Oct (5 working days) not counted.
    pauses: list[tuple[date, date | None]] = [(date(2026, 10, 12), date(2026, 10, 19))]
    assert cal.add_working_days_with_pauses(received, 20, pauses) == date(2026, 11, 10)
    # The pause's end day counts again: [12 Oct, 13 Oct) removes only the 12th.
    one_day: list[tuple[date, date | None]] = [(date(2026, 10, 12), date(2026, 10, 13))]
    assert cal.add_working_days_with_pauses(received, 20, one_day) == date(2026, 11, 4)
    # An empty pause and one covering only holidays/weekends change nothing.
    for p in [(date(2026, 10, 12), date(2026, 10, 12)), (date(2026, 10, 1), date(2026, 10, 8))]:
        assert cal.add_working_days_with_pauses(received, 20, [p]) == date(2026, 11, 3)
    assert cal.add_working_days_with_pauses(received, 20, []) == date(2026, 11, 3)


def test_pause_overlapping_unordered_and_before_start(cal: WorkCalendar) -> None:
    received = date(2026, 9, 30)
    pauses: list[tuple[date, date | None]] = [
        (date(2026, 10, 14), date(2026, 10, 19)),
        (date(2026, 10, 12), date(2026, 10, 16)),  # overlaps; together 12–16 Oct
        (date(2026, 9, 1), date(2026, 10, 9)),  # starts before receipt: only Oct 8 removed
    ]
    # 5 + 1 working days removed: 3 Nov + 6 working days = 11 Nov.
    assert cal.add_working_days_with_pauses(received, 20, pauses) == date(2026, 11, 11)
    closed = [(s, e) for s, e in pauses if e is not None]
    assert brute_force(cal, received, 20, closed) == date(2026, 11, 11)


def test_open_pause(cal: WorkCalendar) -> None:
    received = date(2026, 9, 30)
    with pytest.raises(ValueError, match="clock is paused"):
        cal.add_working_days_with_pauses(received, 20, [(date(2026, 10, 20), None)])
    with pytest.raises(ValueError, match="clock is paused"):
        cal.add_working_days_with_pauses(received, 20, [(date(2026, 9, 1), None)])
    # Paused after the deadline was already reached: the deadline stands.
    late: list[tuple[date, date | None]] = [(date(2026, 11, 4), None)]
    assert cal.add_working_days_with_pauses(received, 20, late) == date(2026, 11, 3)
    # ...but pausing on the due day itself means day 20 is never counted.
    with pytest.raises(ValueError, match="clock is paused"):
        cal.add_working_days_with_pauses(received, 20, [(date(2026, 11, 3), None)])


def test_pause_validation(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="before it starts"):
        cal.add_working_days_with_pauses(
            date(2026, 9, 30), 20, [(date(2026, 10, 19), date(2026, 10, 12))]
        )
    with pytest.raises(ValueError):
        cal.add_working_days_with_pauses(date(2026, 9, 30), -1, [])


def test_deadline_with_pauses_flags_unknown_year(cal: WorkCalendar) -> None:
    got = cal.deadline_with_pauses(
        date(2026, 11, 30), 20, [(date(2026, 12, 14), date(2026, 12, 21))]
    )
    # Dec 28 + 5 working days (Dec 29–31, Jan 1, Jan 4) under the weekday rule.
    assert got == Deadline(date(2027, 1, 4), True, NOTE_2027)


pause_strategy = st.tuples(starts, st.integers(0, 40)).map(
    lambda t: (t[0], t[0] + timedelta(days=t[1]))
)


@settings(max_examples=300)
@given(
    start=starts,
    n=st.integers(0, 60),
    pauses=st.lists(pause_strategy, max_size=4),
)
def test_pauses_match_brute_force(start: date, n: int, pauses: list[tuple[date, date]]) -> None:
    cal = WorkCalendar()
    typed: list[tuple[date, date | None]] = list(pauses)
    assert cal.add_working_days_with_pauses(start, n, typed) == brute_force(cal, start, n, pauses)


# -- today -------------------------------------------------------------------


def test_china_today() -> None:
    # 17:00 UTC on 31 Dec is 01:00 on 1 Jan in Beijing.
    assert china_today(datetime(2026, 12, 31, 17, 0, tzinfo=UTC)) == date(2027, 1, 1)
    assert china_today(datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) == date(2026, 12, 31)
    eastern = timezone(timedelta(hours=-5))
    assert china_today(datetime(2026, 6, 1, 12, 0, tzinfo=eastern)) == date(2026, 6, 2)
    with pytest.raises(ValueError, match="timezone-aware"):
        china_today(datetime(2026, 6, 1, 12, 0))
    today = china_today()
    assert isinstance(today, date)
    assert abs((today - datetime.now(UTC).date()).days) <= 1
