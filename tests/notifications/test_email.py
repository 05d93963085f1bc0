"""Immediate email: exactly once, headers, suppression, quiet hours, the sweep, a real SMTP server."""

from __future__ import annotations

import datetime as dt
import email as email_lib
import socket
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.utils import timezone

from community.models import User
from notifications import email, services
from notifications.models import EmailState, Notification, NotificationSettings
from notifications.tasks import email_sweep_task, send_email_task
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # 10:00 in Lima


def _mention(member: User, *, key: str = "message:1", now: dt.datetime | None = None) -> int:
    return services.notify(
        kind="mention",
        actor=None,
        target_type="forums.message",
        target_id=1,
        url="/rooms/wg1-a/threads/1/#message-1",
        occurrence_key=key,
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": "Inspection data", "body": "What do you think?"},
        now=now,
    )


def test_immediate_email_sent_once_after_commit(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    member = UserFactory(email="rosa@example.org", language="en")

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        _mention(member)
    row = Notification.objects.get()
    again = send_email_task.apply(args=[row.pk]).get()

    # Assert
    row.refresh_from_db()
    assert (len(mail.outbox), row.email_state, row.email_attempts, again) == (
        1,
        EmailState.SENT,
        1,
        "skipped",
    )


def test_immediate_email_headers_and_parts(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    member = UserFactory(email="rosa@example.org")

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        _mention(member)

    # Assert
    row = Notification.objects.get()
    message = mail.outbox[0]
    unsubscribe = message.extra_headers["List-Unsubscribe"]
    token = unsubscribe.rsplit("/unsubscribe/", 1)[1].rstrip("/>")
    assert (
        message.to,
        message.subject,
        message.extra_headers["Message-ID"],
        message.extra_headers["List-Unsubscribe-Post"],
        email.unsubscribe_read(token),
        [mimetype for _content, mimetype in message.alternatives],
    ) == (
        ["rosa@example.org"],
        "[Minga] Ana mentioned you in “Inspection data”",
        f"<notification.{row.pk}@localhost>",
        "List-Unsubscribe=One-Click",
        (member.pk, "mention"),
        ["text/html"],
    )
    assert "/notifications/preferences/" in message.body


def test_email_of_row_read_before_sending_is_suppressed(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: the task is lost or late; the member reads the notification in the app.
    member = UserFactory()
    with django_capture_on_commit_callbacks(execute=False):
        _mention(member)
    row = Notification.objects.get()
    services.notifications_mark_read(member=member, ids=[row.pk])

    # Act
    outcome = send_email_task.apply(args=[row.pk]).get()

    # Assert
    row.refresh_from_db()
    assert (outcome, row.email_state, mail.outbox) == ("suppressed", EmailState.SUPPRESSED, [])


def test_sweep_sends_row_whose_task_was_lost(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: the row commits but its task never runs (callbacks dropped).
    member = UserFactory()
    with django_capture_on_commit_callbacks(execute=False):
        _mention(member, now=NOW)

    # Act
    early = email_sweep_task.apply(args=[NOW.isoformat()]).get()
    late = email_sweep_task.apply(args=[(NOW + dt.timedelta(minutes=3)).isoformat()]).get()
    again = email_sweep_task.apply(args=[(NOW + dt.timedelta(minutes=10)).isoformat()]).get()

    # Assert
    assert (early, late, again, len(mail.outbox)) == ({}, {"sent": 1}, {}, 1)


def test_quiet_hours_hold_immediate_email_until_they_end(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: quiet 22:00-07:00 in Lima (UTC-5); the mention comes at 03:00 Lima.
    member = UserFactory(timezone="America/Lima")
    NotificationSettings.objects.create(
        member=member, quiet_start=dt.time(22), quiet_end=dt.time(7)
    )
    at_night = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        _mention(member, now=at_night)
    before_end = email.sweep(now=dt.datetime(2026, 3, 2, 11, 59, tzinfo=dt.UTC))
    after_end = email.sweep(now=dt.datetime(2026, 3, 2, 12, 5, tzinfo=dt.UTC))

    # Assert
    row = Notification.objects.get()
    assert (row.email_due_at, before_end, after_end, len(mail.outbox)) == (
        dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC),
        {},
        {"sent": 1},
        1,
    )


@pytest.mark.parametrize(
    ("local_time", "expected"),
    [
        (dt.time(23, 30), dt.datetime(2026, 3, 3, 12, 0, tzinfo=dt.UTC)),
        (dt.time(6, 59), dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)),
        (dt.time(7, 0), None),
        (dt.time(21, 59), None),
    ],
)
def test_quiet_until_across_midnight(local_time: dt.time, expected: dt.datetime | None) -> None:
    lima = dt.timezone(dt.timedelta(hours=-5))
    now = dt.datetime.combine(dt.date(2026, 3, 2), local_time, tzinfo=lima)

    result = services.quiet_until(
        now=now, tz_name="America/Lima", start=dt.time(22), end=dt.time(7)
    )

    assert result == expected


# --- A real SMTP server on loopback -------------------------------------------------------------


class FlakySMTP:
    """451 for each recipient's first `transient` attempts; 550 for `refused`, always."""

    def __init__(self, *, transient: int, refused: str) -> None:
        self.transient = transient
        self.refused = refused
        self.attempts: dict[str, int] = {}
        self.delivered: list[tuple[str, email_lib.message.Message]] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address == self.refused:
            return "550 5.1.1 No such mailbox"
        self.attempts[address] = self.attempts.get(address, 0) + 1
        if self.attempts[address] <= self.transient:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        parsed = email_lib.message_from_bytes(envelope.original_content)
        for rcpt in envelope.rcpt_tos:
            self.delivered.append((rcpt, parsed))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server(settings: Any) -> Any:
    handler = FlakySMTP(transient=2, refused="gone@example.org")
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    yield handler
    controller.stop()


def test_smtp_transient_errors_retry_and_refused_recipient_is_recorded(
    plan: None, smtp_server: FlakySMTP, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    ok_one = UserFactory(email="one@example.org")
    ok_two = UserFactory(email="two@example.org")
    gone = UserFactory(email="gone@example.org")
    start = timezone.now()

    # Act: the first attempts run after commit; then the sweep, hour after hour, as beat would.
    with django_capture_on_commit_callbacks(execute=True):
        services.notify(
            kind="mention",
            actor=None,
            target_type="forums.message",
            target_id=5,
            url="/rooms/wg1-a/threads/1/#message-5",
            occurrence_key="message:5",
            recipient_ids=[ok_one.pk, ok_two.pk, gone.pk],
            context={"actor": "Ana", "thread": "Data", "body": "See @one"},
        )
    for hour in range(1, 6):
        email.sweep(now=start + dt.timedelta(hours=hour))

    # Assert
    rows = {
        r.recipient.email: (r.email_state, r.email_attempts)
        for r in Notification.objects.select_related("recipient")
    }
    delivered = sorted((rcpt, msg["Message-ID"]) for rcpt, msg in smtp_server.delivered)
    ids = {r.recipient.email: r.pk for r in Notification.objects.select_related("recipient")}
    assert rows == {
        "one@example.org": (EmailState.SENT, 3),
        "two@example.org": (EmailState.SENT, 3),
        "gone@example.org": (EmailState.FAILED, 1),
    }
    assert delivered == [
        ("one@example.org", f"<notification.{ids['one@example.org']}@localhost>"),
        ("two@example.org", f"<notification.{ids['two@example.org']}@localhost>"),
    ]


def test_smtp_attempts_stop_at_the_cap(plan: None, settings: Any) -> None:
    # Arrange: a server that never accepts.
    handler = FlakySMTP(transient=100, refused="")
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    member = UserFactory(email="late@example.org")
    start = timezone.now()
    try:
        _mention(member, now=start)
        row = Notification.objects.get()

        # Act
        outcomes = [email.deliver(row.pk, now=start + dt.timedelta(hours=h)) for h in range(0, 8)]
    finally:
        controller.stop()

    # Assert
    row.refresh_from_db()
    assert outcomes == ["retry"] * 4 + ["failed"] + ["skipped"] * 3
    assert (row.email_state, row.email_attempts) == (EmailState.FAILED, email.MAX_ATTEMPTS)


def test_connection_refused_is_transient(plan: None, settings: Any) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": _free_port(), "timeout": 2},
        }
    }
    member = UserFactory()
    _mention(member, now=NOW)
    row = Notification.objects.get()

    outcome = email.deliver(row.pk, now=NOW)

    row.refresh_from_db()
    assert (outcome, row.email_state, row.email_due_at) == (
        "retry",
        EmailState.PENDING,
        NOW + dt.timedelta(seconds=60),
    )


def test_unsubscribed_after_row_written_sends_nothing(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: the row is written, then the member clicks "unsubscribe" before the task runs.
    member = UserFactory()
    with django_capture_on_commit_callbacks(execute=False):
        _mention(member)
    services.preference_set_email(member=member, kind="mention", email="off")
    row = Notification.objects.get()

    # Act
    outcome = send_email_task.apply(args=[row.pk]).get()

    # Assert
    row.refresh_from_db()
    assert (outcome, row.email_state, mail.outbox) == ("skipped", EmailState.SKIPPED, [])


def test_switched_to_daily_after_row_written_waits_for_digest(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    member = UserFactory()
    with django_capture_on_commit_callbacks(execute=False):
        _mention(member, now=NOW)
    services.preference_set_email(member=member, kind="mention", email="daily")
    row = Notification.objects.get()

    outcome = email.deliver(row.pk, now=NOW)
    digest = email.digests_due(now=NOW + dt.timedelta(days=1))

    row.refresh_from_db()
    assert (outcome, digest, row.email_mode, row.email_state, len(mail.outbox)) == (
        "digest",
        {"sent": 1},
        "daily",
        EmailState.SENT,
        1,
    )


def test_one_click_unsubscribe_from_the_header_as_a_mail_client_posts_it(
    plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    """RFC 8058: the client POSTs `List-Unsubscribe=One-Click` to the header's URL, with no
    cookie and no CSRF token; the kind's email is off, and the next mention sends nothing."""
    from django.test import Client

    from notifications.models import NotificationPreference

    # Arrange
    member = UserFactory(email="rosa@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        _mention(member, key="message:1")
    header = mail.outbox[0].extra_headers["List-Unsubscribe"]
    path = header.strip("<>").removeprefix(email.base_url())
    mail_client = Client(enforce_csrf_checks=True)

    # Act
    response = mail_client.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    with django_capture_on_commit_callbacks(execute=True):
        _mention(member, key="message:2")

    # Assert
    pref = NotificationPreference.objects.get(member=member, kind="mention")
    second = Notification.objects.get(recipient=member, occurrence_key="message:2")
    assert (response.status_code, pref.email, pref.in_app, len(mail.outbox)) == (
        200,
        "off",
        True,
        1,
    )
    assert (second.email_state, second.in_app) == (EmailState.SKIPPED, True)
