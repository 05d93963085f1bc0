"""Daily and weekly digests: at the member's local morning, grouped, read items skipped."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core import mail

from community.models import User
from notifications import email, services
from notifications.models import EmailState, Notification, NotificationSettings
from notifications.tasks import digest_task
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def _thread_message(
    member: User, *, key: str, group: str, thread: str, now: dt.datetime
) -> Notification:
    services.notify(
        kind="thread_message",  # daily digest by default
        actor=None,
        target_type="forums.message",
        target_id=1,
        url=f"/rooms/x/threads/{key}/",
        occurrence_key=key,
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": thread, "body": "News", "group_label": group},
        now=now,
    )
    return Notification.objects.get(recipient=member, occurrence_key=key)


def test_daily_digest_waits_for_local_morning(plan: None) -> None:
    # Arrange: Lima is UTC-5, so its 08:00 is 13:00 UTC.
    member = UserFactory(timezone="America/Lima")
    _thread_message(
        member,
        key="m1",
        group="WG1 · Room A",
        thread="T1",
        now=dt.datetime(2026, 3, 2, 20, 0, tzinfo=UTC),
    )

    # Act
    night = digest_task.apply(args=["2026-03-03T12:59:00+00:00"]).get()
    morning = digest_task.apply(args=["2026-03-03T13:00:00+00:00"]).get()
    later = digest_task.apply(args=["2026-03-03T14:00:00+00:00"]).get()

    # Assert
    assert (night, morning, later, len(mail.outbox)) == ({"empty": 1}, {"sent": 1}, {}, 1)


def test_daily_digest_groups_by_label_and_skips_read(plan: None) -> None:
    # Arrange
    member = UserFactory(timezone="UTC")
    evening = dt.datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    a = _thread_message(member, key="a", group="WG1 · Room A", thread="Alpha", now=evening)
    b = _thread_message(member, key="b", group="WG2 · Room B", thread="Beta", now=evening)
    read = _thread_message(member, key="c", group="WG1 · Room A", thread="Gamma", now=evening)
    services.notifications_mark_read(member=member, ids=[read.pk])

    # Act
    outcome = email.digests_due(now=dt.datetime(2026, 3, 3, 8, 30, tzinfo=UTC))

    # Assert
    body = mail.outbox[0].body
    states = dict(Notification.objects.values_list("occurrence_key", "email_state"))
    assert outcome == {"sent": 1}
    assert states == {"a": EmailState.SENT, "b": EmailState.SENT, "c": EmailState.SUPPRESSED}
    assert body.index("== WG1 · Room A ==") < body.index("Alpha") < body.index("== WG2 · Room B ==")
    assert "Gamma" not in body
    assert (a.pk, b.pk) == tuple(
        Notification.objects.filter(email_state="sent").order_by("pk").values_list("pk", flat=True)
    )


def test_weekly_digest_on_the_chosen_day(plan: None) -> None:
    # Arrange: weekly email for thread messages, digest on Wednesday (2). 2026-03-02 is a Monday.
    member = UserFactory(timezone="Europe/Madrid")
    services.preferences_replace(
        member=member, preferences={"thread_message": {"in_app": True, "email": "weekly"}}
    )
    NotificationSettings.objects.create(member=member, digest_weekday=2)
    _thread_message(
        member, key="w", group="WG1", thread="Weekly", now=dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    )

    # Act: Tuesday morning, then Wednesday 08:00 in Madrid (07:00 UTC).
    tuesday = email.digests_due(now=dt.datetime(2026, 3, 3, 7, 30, tzinfo=UTC))
    wednesday = email.digests_due(now=dt.datetime(2026, 3, 4, 7, 0, tzinfo=UTC))

    # Assert
    assert (tuesday, wednesday) == ({"empty": 1}, {"sent": 1})
    assert mail.outbox[0].subject == "[Minga] Your weekly digest: 1 notification"


def test_digest_of_only_read_items_sends_nothing(plan: None) -> None:
    member = UserFactory()
    row = _thread_message(
        member, key="r", group="WG1", thread="Read", now=dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    )
    services.notifications_mark_read(member=member, all_unread=True)

    outcome = email.digests_due(now=dt.datetime(2026, 3, 3, 9, tzinfo=UTC))

    row.refresh_from_db()
    assert (outcome, row.email_state, mail.outbox) == (
        {"suppressed": 1},
        EmailState.SUPPRESSED,
        [],
    )


@pytest.mark.parametrize(
    ("now", "mode", "weekday", "expected"),
    [
        (
            dt.datetime(2026, 3, 3, 12, 0, tzinfo=UTC),
            "daily",
            0,
            dt.datetime(2026, 3, 2, 13, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 3, 3, 13, 0, tzinfo=UTC),
            "daily",
            0,
            dt.datetime(2026, 3, 3, 13, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 3, 4, 14, 0, tzinfo=UTC),
            "weekly",
            0,
            dt.datetime(2026, 3, 2, 13, tzinfo=UTC),
        ),
    ],
)
def test_digest_slot_in_member_zone(
    now: dt.datetime, mode: str, weekday: int, expected: dt.datetime
) -> None:
    assert (
        email.digest_slot(now=now, tz_name="America/Lima", mode=mode, weekday=weekday) == expected
    )


def test_digest_headers_allow_one_click_unsubscribe(plan: None, settings: Any) -> None:
    member = UserFactory()
    _thread_message(
        member, key="h", group="WG1", thread="H", now=dt.datetime(2026, 3, 2, tzinfo=UTC)
    )

    email.digests_due(now=dt.datetime(2026, 3, 3, 9, tzinfo=UTC))

    headers = mail.outbox[0].extra_headers
    assert (headers["List-Unsubscribe-Post"], headers["Message-ID"]) == (
        "List-Unsubscribe=One-Click",
        f"<digest.daily.{member.pk}.2026030308@localhost>",
    )


def test_digest_leaves_out_kinds_turned_off_since(plan: None) -> None:
    member = UserFactory()
    row = _thread_message(
        member, key="o", group="WG1", thread="Off", now=dt.datetime(2026, 3, 2, 9, tzinfo=UTC)
    )
    services.preference_set_email(member=member, kind="thread_message", email="off")

    outcome = email.digests_due(now=dt.datetime(2026, 3, 3, 9, tzinfo=UTC))

    row.refresh_from_db()
    assert (outcome, row.email_state, mail.outbox) == ({"skipped": 1}, EmailState.SKIPPED, [])
