"""The reminder sweep: due reminders once each, moved with a reschedule, none when cancelled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from community.models import User
from events import services, signals, tasks
from events.models import Event, Registration, ReminderDelivery
from tests.events.conftest import FUTURE

pytestmark = pytest.mark.django_db


@pytest.fixture
def due() -> Any:
    calls: list[dict[str, Any]] = []

    def receive(sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        calls.append(kwargs)

    signals.event_reminder_due.connect(receive, weak=False)
    yield calls
    signals.event_reminder_due.disconnect(receive)


def register_early(event: Event, member: User) -> Registration:
    registration = services.registration_create(
        event=event, member=member, now=FUTURE - timedelta(days=10)
    )
    Registration.objects.filter(pk=registration.pk).update(created=FUTURE - timedelta(days=10))
    return registration


def test_reminders_send_due_default_offsets_each_once(
    workshop: Event, member: User, due: list[dict[str, Any]]
) -> None:
    register_early(workshop, member)

    before = services.reminders_send_due(now=FUTURE - timedelta(hours=25))
    day = services.reminders_send_due(now=FUTURE - timedelta(hours=24))
    day_again = services.reminders_send_due(now=FUTURE - timedelta(hours=23))
    hour = services.reminders_send_due(now=FUTURE - timedelta(minutes=59))
    after_start = services.reminders_send_due(now=FUTURE + timedelta(minutes=1))

    assert (len(before), len(day), len(day_again), len(hour), len(after_start)) == (0, 1, 0, 1, 0)
    assert [(c["member_id"], c["offset_minutes"], c["occurrence_start"]) for c in due] == [
        (member.pk, 1440, FUTURE),
        (member.pk, 60, FUTURE),
    ]


def test_reminders_send_due_member_preference(workshop: Event, member: User) -> None:
    register_early(workshop, member)
    services.reminder_preference_set(member=member, offsets_minutes=[15])

    early = services.reminders_send_due(now=FUTURE - timedelta(hours=1))
    sent = services.reminders_send_due(now=FUTURE - timedelta(minutes=15))

    assert (early, [d.offset_minutes for d in sent]) == ([], [15])


def test_reminder_preference_invalid_refused(member: User) -> None:
    with pytest.raises(ValidationError) as caught:
        services.reminder_preference_set(member=member, offsets_minutes=[0, -5])
    assert [e.code for e in caught.value.error_dict["offsets_minutes"]] == ["invalid_offsets"]


def test_reminders_send_due_crash_after_insert_sends_on_next_sweep_once(
    workshop: Event, member: User, due: list[dict[str, Any]]
) -> None:
    registration = register_early(workshop, member)
    now = FUTURE - timedelta(hours=24)
    # A sweep that inserted its row and died before sending: the row exists, unsent.
    ReminderDelivery.objects.create(
        registration=registration,
        offset_minutes=1440,
        occurrence_start=FUTURE,
        due_at=FUTURE - timedelta(hours=24),
    )

    first = services.reminders_send_due(now=now)
    second = services.reminders_send_due(now=now + timedelta(minutes=1))

    assert (len(first), len(second)) == (1, 0)
    assert ReminderDelivery.objects.count() == 1
    assert len(due) == 1


def test_reminders_rescheduled_event_moves_reminders(
    workshop: Event, member: User, chair: User
) -> None:
    register_early(workshop, member)
    later = FUTURE + timedelta(days=2)
    services.event_reschedule(
        event=workshop, actor=chair, starts_at=later, ends_at=later + timedelta(hours=2)
    )

    old_time = services.reminders_send_due(now=FUTURE - timedelta(hours=24))
    new_time = services.reminders_send_due(now=later - timedelta(hours=24))

    assert old_time == []
    assert [(d.occurrence_start, d.offset_minutes) for d in new_time] == [(later, 1440)]


def test_reminders_cancelled_event_none(workshop: Event, member: User, chair: User) -> None:
    register_early(workshop, member)
    services.event_cancel(event=workshop, actor=chair)

    assert services.reminders_send_due(now=FUTURE - timedelta(hours=1)) == []


def test_reminders_series_each_occurrence_and_not_waitlisted(
    make_event: Callable[..., Event], member: User, chair: User
) -> None:
    event = make_event(recurrence="FREQ=WEEKLY;COUNT=3", capacity=1)
    register_early(event, chair)
    register_early(event, member)  # waitlisted

    week2 = FUTURE + timedelta(days=7)
    sent = services.reminders_send_due(now=week2 - timedelta(minutes=30))

    assert [(d.registration.member_id, d.occurrence_start, d.offset_minutes) for d in sent] == [
        (chair.pk, week2, 60)
    ]


def test_reminders_due_task_runs_sweep(workshop: Event, member: User) -> None:
    register_early(workshop, member)
    # The task sweeps at the real "now": in 2026 nothing of a 2030 event is due yet.
    assert tasks.reminders_due_task.delay().get() == 0


def test_reminders_moved_date_due_and_announced_at_new_time(
    make_event: Callable[..., Event], chair: User, member: User, due: list[dict[str, Any]]
) -> None:
    # Arrange: the second date of a weekly series moves one day later.
    series = make_event(recurrence="FREQ=WEEKLY;COUNT=3")
    register_early(series, member)
    second = FUTURE + timedelta(weeks=1)
    moved = second + timedelta(days=1)
    services.occurrence_reschedule(
        event=series,
        actor=chair,
        original_start=second,
        starts_at=moved,
        ends_at=moved + timedelta(hours=2),
    )

    # Act: the old time's reminder hour passes, then the new time's day and hour.
    at_old = services.reminders_send_due(now=second - timedelta(minutes=59))
    day = services.reminders_send_due(now=moved - timedelta(hours=23))
    hour = services.reminders_send_due(now=moved - timedelta(minutes=59))

    # Assert
    assert (len(at_old), len(day), len(hour)) == (0, 1, 1)
    assert [(c["occurrence_start"], c["original_start"], c["offset_minutes"]) for c in due] == [
        (moved, second, 1440),
        (moved, second, 60),
    ]


def test_reminders_cancelled_date_has_none(
    make_event: Callable[..., Event], chair: User, member: User, due: list[dict[str, Any]]
) -> None:
    series = make_event(recurrence="FREQ=WEEKLY;COUNT=3")
    register_early(series, member)
    second = FUTURE + timedelta(weeks=1)
    services.occurrence_cancel(event=series, actor=chair, original_start=second)

    sent = services.reminders_send_due(now=second - timedelta(minutes=59))

    assert (sent, due) == ([], [])


def test_reminders_moved_date_reminded_again_after_a_sent_one(
    make_event: Callable[..., Event], chair: User, member: User, due: list[dict[str, Any]]
) -> None:
    # Arrange: the 24-hour reminder of the second date went out, then the date moved a week.
    series = make_event(recurrence="FREQ=WEEKLY;COUNT=3")
    register_early(series, member)
    second = FUTURE + timedelta(weeks=1)
    services.reminders_send_due(now=second - timedelta(hours=23))
    moved = second + timedelta(days=3)
    services.occurrence_reschedule(
        event=series,
        actor=chair,
        original_start=second,
        starts_at=moved,
        ends_at=moved + timedelta(hours=2),
    )

    # Act
    again = services.reminders_send_due(now=moved - timedelta(hours=23))

    # Assert
    assert len(again) == 1
    assert [c["occurrence_start"] for c in due] == [second, moved]
