"""The periodic work: CELERY_BEAT_SCHEDULE and `run_periodic`, its stand-in under `make run`."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone
from minga.celery import app

from community.models import Role
from community.tasks import sessions_clear_task
from forums import services as forum_services
from forums.models import Attachment, Room
from forums.tasks import attachments_purge_task
from notifications import services
from notifications.management.commands.run_periodic import InProcessScheduler
from notifications.models import EmailState, Notification
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _lost_mention(*, minutes_ago: int) -> Notification:
    """A mention whose immediate email task never ran (its on-commit callback was dropped)."""
    member = UserFactory(email="rosa@example.org")
    services.notify(
        kind="mention",
        actor=None,
        target_type="forums.message",
        target_id=1,
        url="/threads/1/#m-1",
        occurrence_key="message:1",
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": "Inspection data", "body": "What do you think?"},
        now=timezone.now() - dt.timedelta(minutes=minutes_ago),
    )
    return Notification.objects.get(recipient=member)


def test_beat_schedule_names_every_periodic_task_and_each_is_registered() -> None:
    app.loader.import_default_modules()

    tasks = {name: entry["task"] for name, entry in django_settings.CELERY_BEAT_SCHEDULE.items()}

    assert tasks == {
        "community-sessions-clear": "community.sessions_clear_task",
        "events-reminders": "events.reminders_due_task",
        "notifications-email-sweep": "notifications.email_sweep_task",
        "notifications-digests": "notifications.digest_task",
        "forums-attachments-purge": "forums.attachments_purge_task",
    }
    assert [name for name in tasks.values() if name not in app.tasks] == []


def test_run_periodic_once_runs_every_task_here(plan: None) -> None:
    # Arrange: an immediate email whose task was lost ten minutes ago.
    row = _lost_mention(minutes_ago=10)
    out = StringIO()

    # Act
    call_command("run_periodic", "--once", stdout=out)

    # Assert: the sweep sent it, and every scheduled task reported what it did.
    row.refresh_from_db()
    assert (row.email_state, [m.to for m in mail.outbox]) == (
        EmailState.SENT,
        [[row.recipient.email]],
    )
    assert [line.split(":")[0] for line in out.getvalue().splitlines()[1:]] == [
        "community-sessions-clear",
        "events-reminders",
        "forums-attachments-purge",
        "notifications-digests",
        "notifications-email-sweep",
    ]
    assert "notifications-email-sweep: {'sent': 1}" in out.getvalue()


@pytest.fixture
def broker_configured() -> Any:
    """Celery configured as with REDIS_URL: `delay()` would publish, not run eagerly."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = before


def test_in_process_scheduler_runs_a_due_task_without_a_broker(
    plan: None, broker_configured: None
) -> None:
    # Arrange: the sweep's last run was an hour ago, the other entries' just now.
    row = _lost_mention(minutes_ago=10)
    scheduler = InProcessScheduler(app=app, max_interval=1)
    sweep = scheduler.schedule["notifications-email-sweep"]
    sweep.last_run_at = timezone.now() - dt.timedelta(hours=1)
    for name, entry in scheduler.schedule.items():
        if name != "notifications-email-sweep":
            entry.last_run_at = timezone.now()

    # Act: one tick runs the one due entry.
    scheduler.tick()

    # Assert: it ran here and then (nothing was published anywhere).
    row.refresh_from_db()
    assert (row.email_state, len(mail.outbox), scheduler.producer) == (EmailState.SENT, 1, None)
    assert scheduler.schedule["notifications-email-sweep"].last_run_at > sweep.last_run_at


def test_in_process_scheduler_waits_for_an_entry_not_due(plan: None) -> None:
    row = _lost_mention(minutes_ago=10)
    scheduler = InProcessScheduler(app=app, max_interval=1)
    for entry in scheduler.schedule.values():
        entry.last_run_at = timezone.now()

    wait = scheduler.tick()

    row.refresh_from_db()
    assert (row.email_state, wait > 0) == (EmailState.PENDING, True)


def test_attachments_purge_task_deletes_uploads_abandoned_over_a_day(
    plan: None, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    settings.MEDIA_ROOT = tmp_path
    member = UserFactory()
    MembershipFactory(member=member, role=Role.MEMBER)
    room = Room.objects.get(slug="wg1-a")

    def upload(name: str) -> Attachment:
        return forum_services.attachment_upload(
            room=room, uploader=member, uploaded_file=ContentFile(PDF, name=name)
        )

    old, recent = upload("old.pdf"), upload("draft.pdf")
    Attachment.objects.filter(pk=old.pk).update(created=timezone.now() - dt.timedelta(hours=25))

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        purged = attachments_purge_task.apply().get()

    # Assert
    assert (purged, list(Attachment.objects.values_list("pk", flat=True))) == (1, [recent.pk])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        Path(recent.file.name).name
    ]


def test_sessions_clear_task_deletes_expired_sessions_only() -> None:
    from django.contrib.sessions.models import Session
    from minga.sessions import SessionStore

    stores = [SessionStore(), SessionStore()]
    for store in stores:
        store["cart"] = 1
        store.create()
    Session.objects.filter(session_key=stores[0].session_key).update(
        expire_date=timezone.now() - dt.timedelta(seconds=1)
    )

    sessions_clear_task()

    assert list(Session.objects.values_list("session_key", flat=True)) == [stores[1].session_key]
