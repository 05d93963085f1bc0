"""Recurrence expansion in the event's zone across DST, and the rule for gap/ambiguous times."""

# ruff: noqa: DTZ001 - naive datetimes here are local wall-clock times in an event's zone, on purpose

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.core.exceptions import ValidationError

from events import recurrence
from events.models import Event


def series(zone: str, start: datetime, rule: str, hours: int = 2) -> Event:
    """An unsaved event whose first occurrence starts at the naive local `start` in `zone`."""
    event = Event(
        title="Series",
        timezone=zone,
        local_start_date=start.date(),
        local_start_time=start.time(),
        duration=timedelta(hours=hours),
        recurrence=recurrence.validate_rrule(rule, start, zone),
        exdates=[],
    )
    event.starts_at = recurrence.to_instant(start, zone)
    event.ends_at = event.starts_at + event.duration
    return event


def utc_starts(event: Event, start: datetime, end: datetime) -> list[datetime]:
    return [o.starts_at for o in recurrence.expand(event, start, end, overrides=[])]


def test_to_instant_nonexistent_time_new_york_uses_offset_before_gap() -> None:
    assert recurrence.to_instant(datetime(2026, 3, 8, 2, 30), "America/New_York") == datetime(
        2026, 3, 8, 7, 30, tzinfo=UTC
    )


def test_to_instant_ambiguous_time_new_york_is_first_occurrence() -> None:
    assert recurrence.to_instant(datetime(2026, 11, 1, 1, 30), "America/New_York") == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


def test_to_instant_nonexistent_midnight_santiago_lands_after_gap() -> None:
    # Chile moves from 00:00 to 01:00 on 2026-09-06: 00:30 does not exist.
    instant = recurrence.to_instant(datetime(2026, 9, 6, 0, 30), "America/Santiago")
    assert instant == datetime(2026, 9, 6, 4, 30, tzinfo=UTC)
    assert recurrence.to_local(instant, "America/Santiago") == datetime(2026, 9, 6, 1, 30)


def test_to_instant_ambiguous_santiago_is_first_occurrence() -> None:
    # Chile goes back from 00:00 to 23:00 on 2026-04-05: 23:30 on the 4th happens twice.
    instant = recurrence.to_instant(datetime(2026, 4, 4, 23, 30), "America/Santiago")
    assert instant == datetime(2026, 4, 5, 2, 30, tzinfo=UTC)


def test_expand_weekly_new_york_keeps_local_time_across_spring_forward() -> None:
    event = series("America/New_York", datetime(2026, 3, 1, 10, 0), "FREQ=WEEKLY;COUNT=3")
    starts = utc_starts(event, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert starts == [
        datetime(2026, 3, 1, 15, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 14, 0, tzinfo=UTC),
        datetime(2026, 3, 15, 14, 0, tzinfo=UTC),
    ]


def test_expand_weekly_port_of_spain_constant_utc_all_year() -> None:
    event = series("America/Port_of_Spain", datetime(2026, 1, 7, 9, 0), "FREQ=MONTHLY;COUNT=12")
    starts = utc_starts(event, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert {s.time() for s in starts} == {time(13, 0)}
    assert len(starts) == 12


def test_expand_santiago_daily_at_half_past_midnight_across_gap() -> None:
    event = series("America/Santiago", datetime(2026, 9, 5, 0, 30), "FREQ=DAILY;COUNT=3", hours=1)
    starts = utc_starts(event, datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 10, tzinfo=UTC))
    assert starts == [
        datetime(2026, 9, 5, 4, 30, tzinfo=UTC),  # -04
        datetime(2026, 9, 6, 4, 30, tzinfo=UTC),  # nonexistent 00:30 read at -04 = 01:30 -03
        datetime(2026, 9, 7, 3, 30, tzinfo=UTC),  # -03
    ]


def test_expand_sao_paulo_history_dst_until_2019() -> None:
    # Brazil: DST from 2018-11-04 to 2019-02-17, then abolished (no change in November 2019).
    weekly = series(
        "America/Sao_Paulo", datetime(2018, 10, 31, 10, 0), "FREQ=WEEKLY;UNTIL=20191231"
    )
    found = {
        s.date(): s.hour
        for s in utc_starts(
            weekly, datetime(2018, 10, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)
        )
    }
    assert found[date(2018, 10, 31)] == 13  # -03
    assert found[date(2018, 11, 7)] == 12  # -02 (DST)
    assert found[date(2019, 2, 13)] == 12  # still DST
    assert found[date(2019, 2, 20)] == 13  # back to -03
    assert found[date(2019, 11, 6)] == 13  # 2019: no DST any more


def test_expand_exdate_and_override_moved_and_cancelled() -> None:
    event = series("America/New_York", datetime(2026, 5, 6, 10, 0), "FREQ=WEEKLY;COUNT=4")
    second = datetime(2026, 5, 13, 14, 0, tzinfo=UTC)
    third = datetime(2026, 5, 20, 14, 0, tzinfo=UTC)
    fourth = datetime(2026, 5, 27, 14, 0, tzinfo=UTC)
    event.exdates = [recurrence.exdate_key(second)]
    from events.models import EventOccurrenceOverride

    moved = EventOccurrenceOverride(
        event=event,
        original_start=third,
        starts_at=third + timedelta(days=1),
        ends_at=third + timedelta(days=1, hours=2),
    )
    cancelled = EventOccurrenceOverride(event=event, original_start=fourth, cancelled=True)

    found = recurrence.expand(
        event,
        datetime(2026, 5, 1, tzinfo=UTC),
        datetime(2026, 6, 1, tzinfo=UTC),
        overrides=[moved, cancelled],
    )

    assert [(o.starts_at, o.cancelled, o.moved) for o in found] == [
        (datetime(2026, 5, 6, 14, 0, tzinfo=UTC), False, False),
        (third + timedelta(days=1), False, True),
        (fourth, True, False),
    ]


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ("FREQ=SOMETIMES", "invalid_rrule"),
        ("not a rule", "invalid_rrule"),
        ("FREQ=HOURLY", "rrule_frequency"),
        ("FREQ=WEEKLY;BYDAY=TH", "rrule_start_mismatch"),
        ("FREQ=WEEKLY\r\nBEGIN:VALARM", "invalid_rrule"),
        ("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "invalid_rrule"),
        ("FREQ=DAILY;UNTIL=yesterday", "invalid_rrule"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20270101", "invalid_rrule"),
    ],
)
def test_validate_rrule_invalid_raises_with_code(rule: str, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        recurrence.validate_rrule(rule, datetime(2026, 5, 6, 10, 0), "America/Lima")  # Wednesday

    assert [e.code for e in caught.value.error_dict["recurrence"]] == [code]


def test_validate_rrule_until_date_stored_in_utc() -> None:
    rule = recurrence.validate_rrule(
        "rrule:freq=monthly;byday=3we;until=20270630", datetime(2026, 5, 20, 10, 0), "America/Lima"
    )
    assert rule == "FREQ=MONTHLY;BYDAY=3WE;UNTIL=20270701T045959Z"


def test_series_end_counted_series_is_last_occurrence_end() -> None:
    event = series(
        "America/Santiago", datetime(2026, 5, 20, 10, 0), "FREQ=MONTHLY;BYDAY=3WE;COUNT=3"
    )
    assert recurrence.series_end(event) == datetime(2026, 7, 15, 16, 0, tzinfo=UTC)


def test_series_end_endless_is_none() -> None:
    event = series("America/Santiago", datetime(2026, 5, 20, 10, 0), "FREQ=WEEKLY")
    assert recurrence.series_end(event) is None
