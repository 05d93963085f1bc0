"""Event emails: one pipeline (notifications), with the event's invite.ics where it belongs."""

from __future__ import annotations

import datetime as dt
import email as email_lib
from email.message import EmailMessage
from typing import Any

import icalendar
import pytest
from django.core import mail

from community.models import Role, User, WorkingGroup
from events import ical
from events import services as event_services
from events.models import Event
from notifications import email, services
from notifications.models import EmailState, Kind, Notification
from notifications.tasks import send_email_task
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

START = dt.datetime(2030, 3, 12, 14, 0, tzinfo=dt.UTC)


@pytest.fixture
def workshop(chair: User, plan: None) -> Event:
    return event_services.event_create(
        actor=chair,
        title="Labor inspection workshop",
        working_group=WorkingGroup.objects.get(slug="wg1"),
        starts_at=START,
        ends_at=START + dt.timedelta(hours=2),
        timezone="America/Port_of_Spain",
    )


def delegate(handle: str, **fields: Any) -> User:
    user = UserFactory(handle=handle, email=f"{handle}@labor.example", **fields)
    MembershipFactory(member=user, role=Role.MEMBER)
    return user


def calendar_part(message: Any) -> EmailMessage:
    """The text/calendar MIME part of the message as it goes over the wire."""
    parsed = email_lib.message_from_bytes(
        message.message().as_bytes(), _class=EmailMessage, policy=email_lib.policy.default
    )
    [part] = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    return part


def test_registration_email_carries_invite_ics_mime_part(
    workshop: Event, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    member = delegate("rosa")

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.registration_create(event=workshop, member=member)

    # Assert
    [message] = mail.outbox
    part = calendar_part(message)
    cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    vevent = cal.walk("VEVENT")[0]
    row = Notification.objects.get(recipient=member)
    assert (
        part.get_param("method"),
        part.get_content_charset(),
        part.get_filename(),
        str(cal["METHOD"]),
        str(vevent["UID"]),
        int(vevent["SEQUENCE"]),
        str(vevent["ATTENDEE"]),
        message.extra_headers["Message-ID"],
        row.email_state,
    ) == (
        "REQUEST",
        "utf-8",
        "invite.ics",
        "REQUEST",
        ical.uid_for(workshop),
        0,
        f"mailto:{member.email}",
        f"<notification.{row.pk}@localhost>",
        EmailState.SENT,
    )


def test_change_row_sent_after_cancellation_carries_cancel(
    workshop: Event, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: a change's email is late (quiet hours, a retry); the event is cancelled since.
    member = delegate("rosa")
    event_services.registration_create(event=workshop, member=member)
    services.notify(
        kind=Kind.EVENT_CHANGED,
        actor=None,
        target_type="events.event",
        target_id=workshop.pk,
        url=f"/events/{workshop.pk}/",
        occurrence_key=f"event:{workshop.pk}:changed:late",
        recipient_ids=[member.pk],
        context={"event": workshop.title, "starts_at": START.isoformat()},
    )
    with django_capture_on_commit_callbacks(execute=False):
        event_services.event_cancel(event=workshop, actor=chair)
    row = Notification.objects.get(recipient=member, kind=Kind.EVENT_CHANGED)

    # Act
    outcome = send_email_task.apply(args=[row.pk]).get()

    # Assert: the calendar follows the event as it is now, never back to an older state.
    cal = icalendar.Calendar.from_ical(calendar_part(mail.outbox[0]).get_payload(decode=True))
    vevent = cal.walk("VEVENT")[0]
    assert (outcome, str(cal["METHOD"]), int(vevent["SEQUENCE"]), str(vevent["STATUS"])) == (
        "sent",
        "CANCEL",
        1,
        "CANCELLED",
    )


def test_event_cancel_emails_waitlisted_cancel_and_withdrawn_nothing(
    workshop: Event, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    event_services.event_update(event=workshop, actor=chair, changes={"capacity": 1})
    registered, waitlisted, withdrawn = delegate("ana"), delegate("ben"), delegate("eva")
    for member in (registered, waitlisted, withdrawn):
        event_services.registration_create(event=workshop, member=member)
    event_services.registration_withdraw(event=workshop, member=withdrawn)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_cancel(event=workshop, actor=chair, message="Postponed")

    # Assert
    methods = sorted(
        (
            m.to[0],
            str(icalendar.Calendar.from_ical(calendar_part(m).get_payload(decode=True))["METHOD"]),
        )
        for m in mail.outbox
    )
    assert methods == [(registered.email, "CANCEL"), (waitlisted.email, "CANCEL")]


def test_event_scheduled_email_has_no_invitation(
    chair: User, plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: a group member who wants new events at once has not registered for them.
    member = delegate("rosa")
    services.preference_set_email(member=member, kind=Kind.EVENT_SCHEDULED, email="immediate")

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_create(
            actor=chair,
            title="Focus session",
            working_group=WorkingGroup.objects.get(slug="wg1"),
            starts_at=START,
            ends_at=START + dt.timedelta(hours=1),
            timezone="America/Lima",
        )

    # Assert
    assert [(m.to, m.attachments) for m in mail.outbox if m.to == [member.email]] == [
        ([member.email], [])
    ]


def test_registration_row_read_in_app_first_still_emails_invitation(
    workshop: Event, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: the task is late and the member opens the notification in the app first.
    member = delegate("rosa")
    with django_capture_on_commit_callbacks(execute=False):
        event_services.registration_create(event=workshop, member=member)
    from notifications import receivers

    registration = workshop.registrations.get(member=member)
    receivers.on_registration_created(
        None,
        registration=registration,
        event_id=workshop.pk,
        member_id=member.pk,
        status="registered",
    )
    row = Notification.objects.get(recipient=member)
    services.notifications_mark_read(member=member, ids=[row.pk])

    # Act
    outcome = send_email_task.apply(args=[row.pk]).get()

    # Assert
    assert (outcome, [m.attachments[0][0] for m in mail.outbox]) == ("sent", ["invite.ics"])


def test_email_links_use_minga_site_url(
    workshop: Event, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    settings.MINGA_SITE_URL = "https://minga.example.org"
    member = delegate("rosa")

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.registration_create(event=workshop, member=member)

    # Assert
    [message] = mail.outbox
    cal = icalendar.Calendar.from_ical(calendar_part(message).get_payload(decode=True))
    assert (
        f"https://minga.example.org/events/{workshop.pk}/" in message.body,
        message.extra_headers["List-Unsubscribe"].startswith("<https://minga.example.org/"),
        str(cal.walk("VEVENT")[0]["URL"]),
        email.base_url(),
    ) == (
        True,
        True,
        f"https://minga.example.org/events/{workshop.pk}/",
        "https://minga.example.org",
    )


# --- The organizer's message with a change or a cancellation ----------------------------------

NOTE = "Moved to May <b>because</b> of the\nministers' summit & elections."


def test_cancel_message_reaches_inbox_and_both_email_parts_escaped(
    workshop: Event, chair: User, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    member = delegate("rosa")
    event_services.registration_create(event=workshop, member=member)
    mail.outbox.clear()
    client.force_login(chair)

    # Act: the organizer cancels through the page, with a message to registrants.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/events/{workshop.pk}/cancel/", {"message": NOTE})

    # Assert: in full on the row and in the email, the start in the inbox's preview.
    row = Notification.objects.get(recipient=member, kind=Kind.EVENT_CANCELLED)
    [message] = mail.outbox
    [(html, _mime)] = message.alternatives
    assert response.status_code == 302
    assert row.note == NOTE
    assert row.preview.endswith(
        "· Moved to May <b>because</b> of the ministers' summit & elections."
    )
    assert row.preview.startswith(row.snippet)
    assert "Message from the organizer:\n" + NOTE in message.body
    assert (
        "<blockquote>Moved to May &lt;b&gt;because&lt;/b&gt; of the<br>"
        "ministers&#x27; summit &amp; elections.</blockquote>"
    ) in html
    assert "<b>because</b>" not in html


def test_reschedule_message_in_frame_api_and_email(
    workshop: Event, chair: User, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from notifications import selectors

    # Arrange
    member = delegate("rosa")
    event_services.registration_create(event=workshop, member=member)
    mail.outbox.clear()

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_reschedule(
            event=workshop,
            actor=chair,
            starts_at=START + dt.timedelta(days=1),
            ends_at=START + dt.timedelta(days=1, hours=2),
            message="Same room, one day later.",
        )

    # Assert
    row = Notification.objects.get(recipient=member, kind=Kind.EVENT_CHANGED)
    client.force_login(member)
    listed = client.get("/api/v1/notifications/").json()["results"]
    [message] = mail.outbox
    assert selectors.notification_payload(row)["snippet"] == (
        f"{row.snippet} · Same room, one day later."
    )
    assert [r["snippet"] for r in listed if r["id"] == row.pk] == [row.preview]
    assert "Same room, one day later." in message.body
    assert "Same room, one day later." in message.alternatives[0][0]


def test_cancel_without_message_has_no_organizer_block(
    workshop: Event, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    member = delegate("rosa")
    event_services.registration_create(event=workshop, member=member)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_cancel(event=workshop, actor=chair)

    row = Notification.objects.get(recipient=member, kind=Kind.EVENT_CANCELLED)
    [message] = mail.outbox
    assert (row.note, row.preview == row.snippet) == ("", True)
    assert "Message from the organizer" not in message.body
    assert "blockquote" not in message.alternatives[0][0]


def test_long_cancel_message_is_cut_in_the_preview_kept_whole_in_the_email(
    workshop: Event, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    member = delegate("rosa")
    event_services.registration_create(event=workshop, member=member)
    mail.outbox.clear()
    long_note = " ".join(f"word{i}" for i in range(300))

    with django_capture_on_commit_callbacks(execute=True):
        event_services.event_cancel(event=workshop, actor=chair, message=long_note)

    row = Notification.objects.get(recipient=member, kind=Kind.EVENT_CANCELLED)
    assert (len(row.preview), row.preview.endswith("…"), long_note in mail.outbox[0].body) == (
        240,
        True,
        True,
    )


def test_moved_date_of_a_series_tells_registrants_the_new_time(
    chair: User, plan: None, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange: a weekly series; its second date moves a day later, to 10:00 in Port of Spain.
    series = event_services.event_create(
        actor=chair,
        title="Weekly focus session",
        working_group=WorkingGroup.objects.get(slug="wg1"),
        starts_at=START,
        ends_at=START + dt.timedelta(hours=2),
        timezone="America/Port_of_Spain",
        recurrence="FREQ=WEEKLY;COUNT=3",
    )
    member = delegate("rosa")
    event_services.registration_create(event=series, member=member)
    second = START + dt.timedelta(weeks=1)
    moved = second + dt.timedelta(days=1)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        event_services.occurrence_reschedule(
            event=series,
            actor=chair,
            original_start=second,
            starts_at=moved,
            ends_at=moved + dt.timedelta(hours=2),
        )

    # Assert: the change row names the moved date, not the series' first one.
    row = Notification.objects.get(recipient=member, kind=Kind.EVENT_CHANGED)
    assert "March 20, 2030" in row.snippet
    assert "March 12" not in row.snippet
