"""The fan-out service: idempotency, batching, query counts, live frames, heavy work in a task."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer  # noqa: TID251 - tests listen on the layer
from django.core.exceptions import ValidationError
from django.db import connection

from community.models import User
from notifications import services
from notifications.models import EmailState, Notification, NotificationPreference
from notifications.tasks import notify_task
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# Queries per batch of the fan-out, the batch's savepoint pair (2) included. PostgreSQL: the
# recipients' (language, zone, quiet hours) combinations (1) and one INSERT ... SELECT ...
# RETURNING (1). Elsewhere (SQLite): members (1), preferences (1), existing rows (1), INSERT (1),
# rows back (1), unread counts (1).
PER_BATCH = 4 if connection.vendor == "postgresql" else 8


def _members(n: int) -> list[int]:
    """`n` members in one INSERT (the fan-out itself does not check verification)."""
    start = User.objects.count()
    users = User.objects.bulk_create(
        [
            User(email=f"bulk{start + i}@example.org", handle=f"bulk{start + i}", name=f"M {i}")
            for i in range(n)
        ]
    )
    return [u.pk for u in users]


def _notify(recipient_ids: list[int], *, key: str = "announcement:1", **extra: Any) -> int:
    kwargs: dict[str, Any] = {
        "kind": "announcement",
        "actor": None,
        "target_type": "community.workinggroup",
        "target_id": 1,
        "url": "/groups/wg1/",
        "occurrence_key": key,
        "recipient_ids": recipient_ids,
        "context": {"title": "Plenary on Friday", "body": "Agenda attached.", "group_label": "WG1"},
    }
    kwargs.update(extra)
    return services.notify(**kwargs)


def test_notify_run_twice_writes_each_row_once(plan: None) -> None:
    ids = _members(3)

    first = _notify(ids)
    second = _notify(ids)

    assert (first, second, Notification.objects.count()) == (3, 0, 3)


def test_notify_task_retried_writes_same_rows(plan: None) -> None:
    # Arrange: a worker that ran the task, then lost its ack and ran it again.
    ids = _members(4)
    payload = {
        "kind": "announcement",
        "actor_id": None,
        "target_type": "community.workinggroup",
        "target_id": 1,
        "url": "/groups/wg1/",
        "occurrence_key": "announcement:7",
        "recipient_ids": ids,
        "context": {"title": "Plenary"},
    }

    # Act
    notify_task.apply(kwargs=payload)
    before = sorted(Notification.objects.values_list("pk", "recipient_id"))
    notify_task.apply(kwargs=payload)

    # Assert
    assert sorted(Notification.objects.values_list("pk", "recipient_id")) == before
    assert len(before) == 4


def test_notify_unknown_kind_is_refused(plan: None) -> None:
    with pytest.raises(ValidationError) as caught:
        _notify(_members(1), kind="gossip")

    assert caught.value.message_dict == {"kind": ["Unknown notification kind 'gossip'."]}


@pytest.mark.parametrize("count", [1, 10, 1000])
def test_write_notifications_queries_do_not_grow_with_recipients(
    count: int, plan: None, django_assert_num_queries: Any
) -> None:
    # Arrange
    ids = _members(count)

    # Act / Assert: one batch (PER_BATCH above).
    with django_assert_num_queries(PER_BATCH):
        written = services.write_notifications(
            kind="announcement",
            actor_id=None,
            target_type="community.workinggroup",
            target_id=1,
            url="/groups/wg1/",
            occurrence_key="announcement:9",
            recipient_ids=ids,
            context={"title": "Plenary"},
        )
    assert written == count


def test_notify_over_threshold_runs_in_task_after_commit(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    ids = _members(services.INLINE_FANOUT_MAX + 1)

    # Act
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        written_inline = _notify(ids)
    rows_before_commit = Notification.objects.count()
    for callback in callbacks:
        callback()  # the eager Celery task runs here, as a worker would after commit

    # Assert
    assert (written_inline, rows_before_commit, Notification.objects.count()) == (
        0,
        0,
        services.INLINE_FANOUT_MAX + 1,
    )


def test_notify_renders_once_per_language_in_that_language(
    plan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange
    from django.utils import translation

    seen: list[tuple[str | None, str]] = []
    real = services.render

    def spy(kind: str, context: Any, *, tz_name: str) -> tuple[str, str]:
        seen.append((translation.get_language(), tz_name))
        return real(kind, context, tz_name=tz_name)

    monkeypatch.setattr(services, "render", spy)
    UserFactory(language="es", timezone="America/Lima")
    UserFactory(language="es", timezone="America/Lima")
    UserFactory(language="fr", timezone="America/Montreal")

    # Act
    _notify(list(User.objects.values_list("pk", flat=True)))

    # Assert
    assert sorted(seen) == [("es", "America/Lima"), ("fr", "America/Montreal")]


def test_render_event_time_in_recipient_zone(plan: None) -> None:
    title, snippet = services.render(
        "event_reminder",
        {"event": "Taller", "starts_at": "2026-03-02T15:00:00+00:00", "location": "Lima"},
        tz_name="America/Lima",
    )

    assert (title, snippet) == ("Reminder: Taller", "March 2, 2026, 10 a.m. (America/Lima) · Lima")


def test_notify_in_app_off_email_on_keeps_row_out_of_inbox(plan: None) -> None:
    member = UserFactory()
    NotificationPreference.objects.create(
        member=member, kind="announcement", in_app=False, email="immediate"
    )

    _notify([member.pk])

    row = Notification.objects.get(recipient=member)
    assert (row.in_app, row.email_state) == (False, EmailState.PENDING)


def test_notify_in_app_off_email_off_writes_nothing(plan: None) -> None:
    member = UserFactory()
    NotificationPreference.objects.create(
        member=member, kind="announcement", in_app=False, email="off"
    )

    written = _notify([member.pk])

    assert (written, Notification.objects.count()) == (0, 0)


def test_notify_pushes_frame_with_unread_count_to_user_group(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    member: User = UserFactory()
    _notify([member.pk], key="announcement:old")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"user.{member.pk}", channel)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        _notify([member.pk], key="announcement:new")

    # Assert
    message = async_to_sync(layer.receive)(channel)
    frame = json.loads(message["text"])
    row = Notification.objects.get(occurrence_key="announcement:new")
    assert frame == {
        "type": "notification",
        "notification": {
            "id": row.pk,
            "kind": "announcement",
            "title": "Announcement: Plenary on Friday",
            "snippet": "Agenda attached.",
            "url": "/groups/wg1/",
            "created_at": row.created.isoformat(),
            "read": False,
        },
        "unread_count": 2,
    }


def test_notify_rolled_back_pushes_nothing(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import transaction

    member: User = UserFactory()

    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                _notify([member.pk])
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass

    assert (callbacks, Notification.objects.count()) == ([], 0)


def test_announce_tells_whole_group_through_task(
    chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: 201 verified members of wg1 besides the chair (above the inline threshold).
    from community.models import WorkingGroup
    from tests.factories import MembershipFactory

    wg1 = WorkingGroup.objects.get(slug="wg1")
    MembershipFactory.create_batch(services.INLINE_FANOUT_MAX + 1, working_group=wg1)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        inline = services.announce(
            actor=chair, working_group=wg1, title="Plenary", body="Friday.", url="/groups/wg1/"
        )

    # Assert
    assert (inline, Notification.objects.count()) == (0, services.INLINE_FANOUT_MAX + 1)
    assert not Notification.objects.filter(recipient=chair).exists()


def test_announce_by_plain_member_is_refused(member: User) -> None:
    from django.core.exceptions import PermissionDenied

    from community.models import WorkingGroup

    with pytest.raises(PermissionDenied):
        services.announce(
            actor=member,
            working_group=WorkingGroup.objects.get(slug="wg1"),
            title="Hi",
            body="All",
            url="/",
        )

    assert Notification.objects.count() == 0


def test_announce_empty_title_names_the_field(chair: User) -> None:
    from community.models import WorkingGroup

    with pytest.raises(ValidationError) as caught:
        services.announce(
            actor=chair,
            working_group=WorkingGroup.objects.get(slug="wg1"),
            title=" ",
            body="Text",
            url="/",
        )

    assert list(caught.value.message_dict) == ["title"]


def test_write_notifications_in_batches_writes_every_recipient(
    plan: None, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    monkeypatch.setattr(services, "BATCH_SIZE", 2)
    ids = _members(5)

    # three batches of the same queries
    with django_assert_num_queries(3 * PER_BATCH):
        written = services.write_notifications(
            kind="announcement",
            actor_id=None,
            target_type="community.workinggroup",
            target_id=1,
            url="/groups/wg1/",
            occurrence_key="announcement:batches",
            recipient_ids=ids,
            context={"title": "Plenary"},
        )

    assert (written, sorted(Notification.objects.values_list("recipient_id", flat=True))) == (
        5,
        ids,
    )


# --- Query counts for every kind, live frames and email enqueue included ----------------------

KIND_CONTEXTS: dict[str, dict[str, Any]] = {
    "mention": {"actor": "Ana", "thread": "Inspection data", "body": "@all have a look"},
    "reply": {"actor": "Ana", "thread": "Inspection data", "body": "Agreed."},
    "new_thread": {"actor": "Ana", "thread": "Inspection data", "room": "WG1 a"},
    "thread_message": {"actor": "Ana", "thread": "Inspection data", "body": "More figures."},
    "event_scheduled": {"event": "Workshop", "starts_at": "2030-03-12T14:00:00+00:00"},
    "event_changed": {
        "event": "Workshop",
        "starts_at": "2030-03-13T14:00:00+00:00",
        "note": "A day later.",
    },
    "event_cancelled": {
        "event": "Workshop",
        "starts_at": "2030-03-12T14:00:00+00:00",
        "note": "Postponed.",
    },
    "event_reminder": {"event": "Workshop", "starts_at": "2030-03-12T14:00:00+00:00"},
    "registration": {"event": "Workshop", "status": "registered"},
    "moderation": {
        "outcome": "hidden",
        "thread": "Inspection data",
        "room": "WG1 a",
    },
    "announcement": {"title": "Plenary", "body": "On Friday."},
}


@pytest.fixture
def broker_configured() -> Any:
    """Celery as with REDIS_URL: `delay()` publishes to the broker instead of running here."""
    from minga.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = before


def test_fanout_queries_do_not_grow_with_recipients_for_any_kind(
    plan: None,
    broker_configured: None,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from notifications.models import Kind
    from notifications.selectors import IMMEDIATE_BY_DEFAULT
    from notifications.tasks import send_emails_task

    assert sorted(KIND_CONTEXTS) == sorted(Kind.values)
    # 1,000 recipients are pinned for the main path above; here every kind at 1, 10 and 100.
    ids = _members(100)
    monkeypatch.setattr(services, "EMAIL_TASK_SIZE", 30)
    enqueued: list[list[int]] = []
    real_delay = send_emails_task.delay

    def delay(pks: list[int]) -> Any:
        enqueued.append(list(pks))
        return real_delay(pks)  # published to the (in-memory) broker: no query here

    monkeypatch.setattr(send_emails_task, "delay", delay)
    seen: list[tuple[str, int, int, list[int]]] = []
    for kind, context in KIND_CONTEXTS.items():
        for count in (1, 10, 100):
            enqueued.clear()
            # Act: the fan-out as the task runs it, then what runs after its commit (the live
            # frames and the email tasks): one batch (PER_BATCH above).
            with (
                django_assert_num_queries(PER_BATCH),
                django_capture_on_commit_callbacks(execute=True),
            ):
                written = services.write_notifications(
                    kind=kind,
                    actor_id=None,
                    target_type="tests.target",
                    target_id=1,
                    url="/",
                    occurrence_key=f"{kind}:{count}",
                    recipient_ids=ids[:count],
                    context=context,
                )
            seen.append((kind, count, written, [len(task) for task in enqueued]))

    # Assert: every recipient written; immediate kinds enqueue one email task per 30 rows.
    tasks = {1: [1], 10: [10], 100: [30, 30, 30, 10]}
    assert seen == [
        (kind, count, count, tasks[count] if kind in IMMEDIATE_BY_DEFAULT else [])
        for kind in KIND_CONTEXTS
        for count in (1, 10, 100)
    ]
