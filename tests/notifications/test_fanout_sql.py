"""The PostgreSQL fan-out (one INSERT ... SELECT per batch), its background sender and the
batched immediate emails."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer  # noqa: TID251 - tests listen on the layer
from django.core import mail
from django.db import connections, transaction
from django.utils import translation

from community.models import User
from notifications import services
from notifications.models import (
    EmailState,
    Notification,
    NotificationPreference,
    NotificationSettings,
)
from notifications.tasks import send_emails_task
from tests.factories import UserFactory

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # 10:00 in Lima, 11:00 in Montreal
CONTEXT = {"actor": "Ana", "thread": "Inspection data", "body": "What do you think?"}


def _write(ids: list[int] | None, *, key: str, kind: str = "mention", **extra: Any) -> int:
    kwargs: dict[str, Any] = {
        "kind": kind,
        "actor_id": None,
        "target_type": "forums.message",
        "target_id": 7,
        "url": "/rooms/wg1-a/threads/1/#message-7",
        "occurrence_key": key,
        "recipient_ids": ids,
        "context": {**CONTEXT, "group_label": "WG1", "note": "  Bring the data.  "},
        "now": NOW,
    }
    kwargs.update(extra)
    return services.write_notifications(**kwargs)


def _varied_members() -> list[int]:
    """Members in every position the fan-out distinguishes."""
    plain = UserFactory(language="es", timezone="America/Lima")
    quiet = UserFactory(language="fr", timezone="America/Montreal")
    NotificationSettings.objects.create(
        member=quiet, quiet_start=dt.time(9, 0), quiet_end=dt.time(12, 0)
    )
    email_only = UserFactory(language="pt")
    NotificationPreference.objects.create(
        member=email_only, kind="mention", in_app=False, email="immediate"
    )
    app_only = UserFactory()
    NotificationPreference.objects.create(member=app_only, kind="mention", email="off")
    nothing = UserFactory()
    NotificationPreference.objects.create(member=nothing, kind="mention", in_app=False, email="off")
    return [plain.pk, quiet.pk, email_only.pk, app_only.pk, nothing.pk, 10**9]  # + no member


def _write_in_thread(ids: list[int] | None, **kwargs: Any) -> int:
    """`_write` outside any transaction (as a worker runs it), closing its thread's connection."""
    try:
        return _write(ids, **kwargs)
    finally:
        connections.close_all()


def _columns(key: str) -> list[dict[str, Any]]:
    rows = Notification.objects.filter(occurrence_key=key).order_by("recipient_id").values()
    return [{k: v for k, v in r.items() if k not in {"id", "occurrence_key"}} for r in rows]


@pytest.mark.postgres
@pytest.mark.django_db
def test_fanout_sql_writes_the_rows_the_orm_path_writes(plan: None) -> None:
    # Arrange
    from django.db import connection

    assert connection.vendor == "postgresql"
    ids = _varied_members()
    common = {
        "kind": "mention",
        "actor_id": None,
        "target_type": "forums.message",
        "target_id": 7,
        "url": "/rooms/wg1-a/threads/1/#message-7",
        "context": {**CONTEXT, "group_label": "WG1", "note": "  Bring the data.  "},
        "now": NOW,
    }

    # Act
    by_sql = services._insert_batch_sql(
        services.Occurrence(occurrence_key="message:7:sql", **common), ids
    )
    by_orm = services._insert_batch_orm(
        services.Occurrence(occurrence_key="message:7:orm", **common), ids
    )

    # Assert: the same columns, row for row, and the same rows reported back (the ORM's
    # unread counts include the row the SQL path wrote first).
    assert _columns("message:7:sql") == _columns("message:7:orm")
    assert [r._replace(pk=0) for r in by_sql] == [
        r._replace(pk=0, unread=r.unread - 1 if r.in_app else 0) for r in by_orm
    ]
    quiet = Notification.objects.get(occurrence_key="message:7:sql", recipient_id=ids[1])
    with translation.override("fr"):
        title, _snippet = services.render("mention", CONTEXT, tz_name="America/Montreal")
    assert (quiet.title, quiet.email_due_at) == (
        title,
        dt.datetime(2026, 3, 2, 17, 0, tzinfo=dt.UTC),  # 12:00 in Montreal
    )
    assert [(r.recipient_id, r.in_app, r.email_mode, r.unread) for r in by_sql] == [
        (ids[0], True, "immediate", 1),
        (ids[1], True, "immediate", 1),
        (ids[2], False, "immediate", 0),
        (ids[3], True, "off", 1),
    ]


@pytest.mark.postgres
@pytest.mark.django_db
def test_fanout_sql_unread_count_includes_earlier_unread_rows(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: two earlier rows, one of them read.
    member = UserFactory()
    _write([member.pk], key="message:1")
    _write([member.pk], key="message:2")
    Notification.objects.filter(occurrence_key="message:1").update(read_at=NOW)

    # Act
    rows = services._insert_batch_sql(
        services.Occurrence(
            kind="mention",
            actor_id=None,
            target_type="forums.message",
            target_id=3,
            url="/",
            occurrence_key="message:3",
            context=CONTEXT,
            now=NOW,
        ),
        [member.pk],
    )

    # Assert
    assert [(r.recipient_id, r.unread) for r in rows] == [(member.pk, 2)]


@pytest.mark.postgres
@pytest.mark.django_db
def test_fanout_sql_rerun_conflicts_write_nothing(plan: None) -> None:
    ids = _varied_members()

    first = _write(ids, key="message:9")
    before = _columns("message:9")
    second = _write(ids, key="message:9")

    assert (first, second, _columns("message:9")) == (4, 0, before)


# --- The background sender, on the real Redis pub/sub layer -----------------------------------


@pytest.fixture
def private_redis_layer(settings: Any, redis_url: str) -> Any:
    """channels_redis' pub/sub layer under a prefix of this test's own: helpers running in
    parallel on the same Redis publish to `user.<small id>` too."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"h4test{uuid.uuid4().hex[:8]}"},
        }
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
async def close_db_thread() -> Any:
    """Close the connection `sync_to_async` opened in its thread (the test database is dropped
    at the end of the session and must have no session left)."""
    yield
    await sync_to_async(connections.close_all)()


async def _listen(ids: list[int]) -> tuple[Any, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for pk in ids:
        await layer.group_add(f"user.{pk}", channel)
    return layer, channel


async def _frames(layer: Any, channel: str, *, expect: int) -> list[dict[str, Any]]:
    """`expect` frames, then proof that nothing else arrives."""
    got: list[dict[str, Any]] = []
    while len(got) < expect:
        got.append(json.loads((await asyncio.wait_for(layer.receive(channel), 10))["text"]))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.5)
    return got


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_fanout_sender_pushes_each_committed_row_once_across_reruns(
    plan: None,
    private_redis_layer: None,
    close_db_thread: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: three batches of two, the fan-out in its own transactions (as in a worker).
    from notifications import fanout

    monkeypatch.setattr(services, "BATCH_SIZE", 2)
    monkeypatch.setattr(services, "INLINE_FANOUT_MAX", 1)
    handed: list[int] = []
    real_submit = fanout.Sender.submit

    def submit(self: fanout.Sender, items: Any) -> None:
        handed.append(len(items))
        real_submit(self, items)

    monkeypatch.setattr(fanout.Sender, "submit", submit)
    members = await sync_to_async(lambda: [UserFactory().pk for _ in range(5)])()
    layer, channel = await _listen(members)

    # Act
    first = await asyncio.to_thread(_write_in_thread, members, key="message:5", kind="announcement")
    frames = await _frames(layer, channel, expect=5)
    second = await asyncio.to_thread(
        _write_in_thread, members, key="message:5", kind="announcement"
    )

    # Assert: one frame per row, each after its row committed; a rerun pushes nothing.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.5)
    rows = await sync_to_async(
        lambda: dict(
            Notification.objects.filter(occurrence_key="message:5").values_list(
                "recipient_id", "pk"
            )
        )
    )()
    assert (first, second, handed) == (5, 0, [2, 2, 1])
    assert sorted((f["notification"]["id"], f["unread_count"]) for f in frames) == sorted(
        (rows[pk], 1) for pk in members
    )
    assert {f["notification"]["created_at"] for f in frames} == {NOW.isoformat()}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_fanout_sender_pushes_nothing_for_a_rolled_back_batch(
    plan: None,
    private_redis_layer: None,
    close_db_thread: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: batches of two; the second batch fails after its INSERT, inside its transaction.
    monkeypatch.setattr(services, "BATCH_SIZE", 2)
    monkeypatch.setattr(services, "INLINE_FANOUT_MAX", 1)
    members = await sync_to_async(lambda: [UserFactory().pk for _ in range(4)])()
    layer, channel = await _listen(members)
    real = services._announce_batch
    calls: list[int] = []

    def failing(rows: Any, what: Any, **kwargs: Any) -> None:
        real(rows, what, **kwargs)  # the batch's hooks are registered, then it rolls back
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("the worker died mid-batch")

    monkeypatch.setattr(services, "_announce_batch", failing)

    # Act
    with pytest.raises(RuntimeError):
        await asyncio.to_thread(_write_in_thread, members, key="message:6", kind="announcement")
    frames = await _frames(layer, channel, expect=2)

    # Assert: the first batch's rows and frames only.
    written = await sync_to_async(
        lambda: sorted(
            Notification.objects.filter(occurrence_key="message:6").values_list(
                "recipient_id", flat=True
            )
        )
    )()
    assert written == members[:2]
    assert (
        sorted(f["notification"]["id"] for f in frames)
        == await sync_to_async(
            lambda: sorted(
                Notification.objects.filter(occurrence_key="message:6").values_list("pk", flat=True)
            )
        )()
    )


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_fanout_by_rule_sender_counts_unread_after_commit(
    plan: None,
    private_redis_layer: None,
    close_db_thread: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: a group of three, each with two earlier unread rows and one read; the rule's
    # batches of two, written as a worker writes them (the background sender).
    from community.models import WorkingGroup
    from notifications import recipients
    from tests.factories import MembershipFactory

    monkeypatch.setattr(services, "RULE_BATCH_SIZE", 2)

    def arrange() -> tuple[list[int], int]:
        group = WorkingGroup.objects.exclude(memberships__isnull=False).first()
        assert group is not None
        ids = sorted(MembershipFactory(working_group=group).member_id for _ in range(3))
        for key in ("message:1", "message:2", "message:3"):
            _write(ids, key=key)
        Notification.objects.filter(occurrence_key="message:1").update(read_at=NOW)
        return ids, group.pk

    members, group_id = await sync_to_async(arrange)()
    layer, channel = await _listen(members)
    rule = recipients.working_group_members_rule(working_group_id=group_id)

    # Act
    written = await asyncio.to_thread(
        _write_in_thread, None, key="announcement:9", kind="announcement", rule=rule
    )
    frames = await _frames(layer, channel, expect=3)

    # Assert: each frame counts the two earlier unread rows and its own.
    assert written == 3
    assert (
        sorted(
            (f["notification"]["title"].startswith("Announcement"), f["unread_count"])
            for f in frames
        )
        == [(True, 3)] * 3
    )


# --- Immediate emails, one task per EMAIL_TASK_SIZE rows ----------------------------------------


@pytest.mark.django_db
def test_send_emails_task_twice_sends_each_email_once(
    plan: None, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: three members, email tasks of two rows; Celery runs tasks eagerly here.
    monkeypatch.setattr(services, "EMAIL_TASK_SIZE", 2)
    members = [UserFactory(email=f"m{i}@example.org") for i in range(3)]

    # Act: the fan-out (its tasks run on commit), then a redelivered task.
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        _write([m.pk for m in members], key="message:8", now=None)
    ids = sorted(Notification.objects.values_list("pk", flat=True))
    again = send_emails_task.apply(args=[ids]).get()

    # Assert
    assert sorted(m.to[0] for m in mail.outbox) == [m.email for m in members]
    assert set(Notification.objects.values_list("email_state", flat=True)) == {EmailState.SENT}
    assert again == {"skipped": 3}


@pytest.mark.django_db
def test_send_emails_task_quiet_hours_hold_the_row(plan: None) -> None:
    member: User = UserFactory(timezone="America/Lima")
    NotificationSettings.objects.create(
        member=member, quiet_start=dt.time(0, 0), quiet_end=dt.time(23, 59)
    )
    _write([member.pk], key="message:10", now=None)
    row = Notification.objects.get()

    outcome = send_emails_task.apply(args=[[row.pk]]).get()

    assert (outcome, len(mail.outbox), row.email_state) == ({"held": 1}, 0, EmailState.PENDING)
