"""Services of the events calendar: rules, permissions, signals after commit, e-mails."""

# ruff: noqa: DTZ001 - naive datetimes here are local wall-clock times in an event's zone, on purpose

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from community.models import Role, User, WorkingGroup
from events import ical, services, signals
from events.models import Event, Registration
from tests.events.conftest import FUTURE
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


class Recorder:
    def __init__(self, signal: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self.signal = signal
        signal.connect(self.receive, weak=False)

    def receive(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        self.calls.append(kwargs)

    def close(self) -> None:
        self.signal.disconnect(self.receive)


@pytest.fixture
def record() -> Any:
    recorders: list[Recorder] = []

    def make(signal: Any) -> Recorder:
        recorder = Recorder(signal)
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.close()


def error_codes(exc: ValidationError) -> dict[str, list[str]]:
    return {field: [e.code for e in errors] for field, errors in exc.error_dict.items()}


def invitation(message: Any) -> tuple[str, str, icalendar.Calendar]:
    """(filename, mimetype, parsed calendar) of an e-mail's one .ics attachment."""
    [(filename, content, mimetype)] = message.attachments
    raw = content.encode() if isinstance(content, str) else content
    return filename, mimetype, icalendar.Calendar.from_ical(raw)


def summary(cal: icalendar.Calendar) -> tuple[str, str, int, str]:
    """(METHOD, UID, SEQUENCE, STATUS) of the calendar's master VEVENT."""
    vevent = cal.walk("VEVENT")[0]
    return (
        str(cal["METHOD"]),
        str(vevent["UID"]),
        int(vevent["SEQUENCE"]),
        str(vevent["STATUS"]),
    )


def member_of_wg1(n: int, **fields: Any) -> User:
    user = UserFactory(email=f"m{n}@labor.example", handle=f"m{n}", **fields)
    MembershipFactory(member=user, role=Role.MEMBER)
    return user


# --- create --------------------------------------------------------------------------------


def test_event_create_chair_stores_local_start_duration_and_renders_description(
    chair: User, wg1: WorkingGroup, django_capture_on_commit_callbacks: Any, record: Any
) -> None:
    scheduled = record(signals.event_scheduled)
    with django_capture_on_commit_callbacks(execute=True):
        event = services.event_create(
            actor=chair,
            title="Social dialogue",
            working_group=wg1,
            starts_at=datetime(2030, 7, 1, 10, 0),  # naive: local in the event's zone
            ends_at=datetime(2030, 7, 1, 12, 30),
            timezone="America/Santiago",
            description="**Agenda** <script>alert(1)</script>",
        )

    assert (event.local_start_date.isoformat(), event.local_start_time.isoformat()) == (
        "2030-07-01",
        "10:00:00",
    )
    assert event.duration == timedelta(hours=2, minutes=30)
    assert event.starts_at == datetime(2030, 7, 1, 14, 0, tzinfo=UTC)
    assert "<strong>Agenda</strong>" in event.description_html
    assert "<script" not in event.description_html
    assert list(event.organizers.all()) == [chair]
    assert [c["event_id"] for c in scheduled.calls] == [event.pk]


def test_event_create_member_forbidden(member: User, wg1: WorkingGroup) -> None:
    with pytest.raises(PermissionDenied):
        services.event_create(
            actor=member,
            title="x",
            working_group=wg1,
            starts_at=FUTURE,
            ends_at=FUTURE + timedelta(hours=1),
            timezone="UTC",
        )
    assert Event.objects.count() == 0


def test_event_create_network_wide_needs_secretariat(chair: User, secretariat: User) -> None:
    with pytest.raises(PermissionDenied):
        services.event_create(
            actor=chair,
            title="Conference",
            starts_at=FUTURE,
            ends_at=FUTURE + timedelta(hours=1),
            timezone="UTC",
        )
    event = services.event_create(
        actor=secretariat,
        title="Conference",
        kind="conference",
        starts_at=FUTURE,
        ends_at=FUTURE + timedelta(hours=1),
        timezone="UTC",
    )
    assert event.working_group is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"ends_at": FUTURE - timedelta(minutes=1)}, {"ends_at": ["end_before_start"]}),
        ({"ends_at": FUTURE}, {"ends_at": ["end_before_start"]}),
        ({"timezone": "America/Atlantis"}, {"timezone": ["invalid_timezone"]}),
        ({"recurrence": "FREQ=NEVER"}, {"recurrence": ["invalid_rrule"]}),
        (
            {
                "registration_opens_at": FUTURE - timedelta(days=1),
                "registration_closes_at": FUTURE - timedelta(days=2),
            },
            {"registration_closes_at": ["window_order"]},
        ),
    ],
)
def test_event_create_bad_input_raises_and_saves_nothing(
    make_event: Callable[..., Event],
    fields: dict[str, Any],
    expected: dict[str, list[str]],
    django_capture_on_commit_callbacks: Any,
    record: Any,
) -> None:
    scheduled = record(signals.event_scheduled)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as caught:
        make_event(**fields)

    assert error_codes(caught.value) == expected
    assert Event.objects.count() == 0
    assert scheduled.calls == []


def test_event_create_rolled_back_sends_no_signal(
    make_event: Callable[..., Event], django_capture_on_commit_callbacks: Any, record: Any
) -> None:
    scheduled = record(signals.event_scheduled)
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                make_event()
                raise RuntimeError("boom")
        except RuntimeError:
            pass

    assert scheduled.calls == []
    assert Event.objects.count() == 0


# --- update, reschedule, cancel, duplicate ---------------------------------------------------


def test_event_update_title_bumps_sequence_description_does_not(
    workshop: Event, chair: User
) -> None:
    services.event_update(event=workshop, actor=chair, changes={"description": "More"})
    assert workshop.sequence == 0
    services.event_update(event=workshop, actor=chair, changes={"title": "New title"})
    workshop.refresh_from_db()
    assert (workshop.sequence, workshop.title) == (1, "New title")


def test_event_update_capacity_below_registrations_refused(
    make_event: Callable[..., Event], chair: User
) -> None:
    event = make_event(capacity=5)
    for n in range(3):
        services.registration_create(event=event, member=member_of_wg1(n))

    with pytest.raises(ValidationError) as caught:
        services.event_update(event=event, actor=chair, changes={"capacity": 2})

    assert error_codes(caught.value) == {"capacity": ["capacity_below_registrations"]}
    event.refresh_from_db()
    assert event.capacity == 5


def test_event_update_unknown_timezone_changes_nothing(workshop: Event, chair: User) -> None:
    with pytest.raises(ValidationError) as caught:
        services.event_update(event=workshop, actor=chair, changes={"timezone": "Mars/Olympus"})
    assert error_codes(caught.value) == {"timezone": ["invalid_timezone"]}
    workshop.refresh_from_db()
    assert (workshop.timezone, workshop.sequence) == ("America/Port_of_Spain", 0)


def test_event_reschedule_moves_times_bumps_sequence_emails_registrants(
    workshop: Event,
    chair: User,
    member: User,
    django_capture_on_commit_callbacks: Any,
    record: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.registration_create(event=workshop, member=member)
    mail.outbox.clear()
    changed = record(signals.event_changed)
    new_start = FUTURE + timedelta(days=7)

    with django_capture_on_commit_callbacks(execute=True):
        services.event_reschedule(
            event=workshop,
            actor=chair,
            starts_at=new_start,
            ends_at=new_start + timedelta(hours=3),
            message="Room change",
        )

    workshop.refresh_from_db()
    assert (workshop.starts_at, workshop.ends_at, workshop.sequence) == (
        new_start,
        new_start + timedelta(hours=3),
        1,
    )
    assert [(c["event_id"], c["sequence_bumped"], c["message"]) for c in changed.calls] == [
        (workshop.pk, True, "Room change")
    ]
    assert [m.to for m in mail.outbox] == [[member.email]]
    filename, mimetype, cal = invitation(mail.outbox[0])
    assert (filename, mimetype, summary(cal)) == (
        "invite.ics",
        "text/calendar; method=REQUEST; charset=UTF-8",
        ("REQUEST", ical.uid_for(workshop), 1, "CONFIRMED"),
    )


def test_event_cancel_keeps_event_notifies_and_emails_cancel(
    workshop: Event,
    chair: User,
    member: User,
    django_capture_on_commit_callbacks: Any,
    record: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.registration_create(event=workshop, member=member)
    mail.outbox.clear()
    cancelled = record(signals.event_cancelled)

    with django_capture_on_commit_callbacks(execute=True):
        services.event_cancel(event=workshop, actor=chair, message="Postponed")

    workshop.refresh_from_db()
    assert (workshop.status, workshop.sequence) == ("cancelled", 1)
    assert [(c["event_id"], c["message"]) for c in cancelled.calls] == [(workshop.pk, "Postponed")]
    assert [m.to for m in mail.outbox] == [[member.email]]
    filename, mimetype, cal = invitation(mail.outbox[0])
    assert (filename, mimetype, summary(cal)) == (
        "invite.ics",
        "text/calendar; method=CANCEL; charset=UTF-8",
        ("CANCEL", ical.uid_for(workshop), 1, "CANCELLED"),
    )


def test_event_cancel_by_member_forbidden(workshop: Event, member: User) -> None:
    with pytest.raises(PermissionDenied):
        services.event_cancel(event=workshop, actor=member)
    workshop.refresh_from_db()
    assert workshop.status == "scheduled"


def test_event_duplicate_new_date_same_fields_no_registrations(
    make_event: Callable[..., Event], chair: User, member: User
) -> None:
    event = make_event(capacity=10, venue="Ministry", city="Lima", country="PE")
    services.registration_create(event=event, member=member)

    copy = services.event_duplicate(event=event, actor=chair, starts_at=datetime(2030, 9, 1, 10, 0))

    assert (copy.title, copy.capacity, copy.venue, copy.duration) == (
        event.title,
        10,
        "Ministry",
        event.duration,
    )
    assert copy.starts_at == datetime(2030, 9, 1, 14, 0, tzinfo=UTC)
    assert copy.registrations.count() == 0


def test_occurrence_cancel_not_an_occurrence_refused(
    make_event: Callable[..., Event], chair: User
) -> None:
    event = make_event(recurrence="FREQ=WEEKLY;COUNT=4")
    with pytest.raises(ValidationError) as caught:
        services.occurrence_cancel(
            event=event, actor=chair, original_start=FUTURE + timedelta(days=1)
        )
    assert error_codes(caught.value) == {"original_start": ["not_an_occurrence"]}


# --- registration --------------------------------------------------------------------------


def test_registration_create_full_goes_to_waitlist_in_order(
    make_event: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
    record: Any,
) -> None:
    event = make_event(capacity=1)
    created = record(signals.registration_created)
    members = [member_of_wg1(n) for n in range(3)]

    with django_capture_on_commit_callbacks(execute=True):
        regs = [services.registration_create(event=event, member=m) for m in members]

    assert [(r.status, r.position) for r in regs] == [
        ("registered", None),
        ("waitlisted", 1),
        ("waitlisted", 2),
    ]
    assert [(c["member_id"], c["status"]) for c in created.calls] == [
        (members[0].pk, "registered"),
        (members[1].pk, "waitlisted"),
        (members[2].pk, "waitlisted"),
    ]


def test_registration_create_twice_already_registered(workshop: Event, member: User) -> None:
    services.registration_create(event=workshop, member=member)
    with pytest.raises(ValidationError) as caught:
        services.registration_create(event=workshop, member=member)
    assert error_codes(caught.value) == {"member": ["already_registered"]}
    assert Registration.objects.filter(event=workshop).count() == 1


def test_registration_create_outside_window_refused(
    make_event: Callable[..., Event], member: User
) -> None:
    event = make_event(
        registration_opens_at=FUTURE - timedelta(days=10),
        registration_closes_at=FUTURE - timedelta(days=1),
    )
    for now in (FUTURE - timedelta(days=11), FUTURE - timedelta(hours=12)):
        with pytest.raises(ValidationError) as caught:
            services.registration_create(event=event, member=member, now=now)
        assert error_codes(caught.value) == {"event": ["registration_closed"]}
    assert Registration.objects.count() == 0


def test_registration_create_observer_only_when_allowed(
    make_event: Callable[..., Event],
) -> None:
    observer = UserFactory(email="obs@ilo.example", handle="obs")
    MembershipFactory(member=observer, role=Role.OBSERVER)
    closed = make_event()
    open_ = make_event(allow_observers=True)

    with pytest.raises(ValidationError) as caught:
        services.registration_create(event=closed, member=observer)
    registration = services.registration_create(event=open_, member=observer)

    assert error_codes(caught.value) == {"member": ["observers_not_allowed"]}
    assert registration.status == "registered"


def test_registration_create_group_only_event_hidden_from_other_group(
    make_event: Callable[..., Event],
) -> None:
    event = make_event(visibility="working_group")
    outsider = UserFactory(email="wg2@labor.example", handle="wg2m")
    MembershipFactory(
        member=outsider, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.MEMBER
    )
    with pytest.raises(PermissionDenied):
        services.registration_create(event=event, member=outsider)


def test_registration_create_cancelled_event_refused(
    workshop: Event, chair: User, member: User
) -> None:
    services.event_cancel(event=workshop, actor=chair)
    with pytest.raises(ValidationError) as caught:
        services.registration_create(event=workshop, member=member)
    assert error_codes(caught.value) == {"event": ["event_cancelled"]}


def test_registration_withdraw_promotes_first_waitlisted_and_renumbers(
    make_event: Callable[..., Event],
    django_capture_on_commit_callbacks: Any,
    record: Any,
) -> None:
    event = make_event(capacity=1)
    members = [member_of_wg1(n) for n in range(4)]
    for m in members:
        services.registration_create(event=event, member=m)
    promoted = record(signals.registration_promoted)

    with django_capture_on_commit_callbacks(execute=True):
        services.registration_withdraw(event=event, member=members[0])

    rows = list(
        Registration.objects.filter(event=event)
        .order_by("member__email")
        .values_list("member__email", "status", "position")
    )
    assert rows == [
        ("m0@labor.example", "withdrawn", None),
        ("m1@labor.example", "registered", None),
        ("m2@labor.example", "waitlisted", 1),
        ("m3@labor.example", "waitlisted", 2),
    ]
    assert [c["member_id"] for c in promoted.calls] == [members[1].pk]


def test_registration_withdraw_waitlisted_closes_gap(make_event: Callable[..., Event]) -> None:
    event = make_event(capacity=1)
    members = [member_of_wg1(n) for n in range(4)]
    for m in members:
        services.registration_create(event=event, member=m)

    services.registration_withdraw(event=event, member=members[1])

    assert list(
        Registration.objects.filter(event=event, status="waitlisted")
        .order_by("position")
        .values_list("member__email", "position")
    ) == [("m2@labor.example", 1), ("m3@labor.example", 2)]


def test_registration_create_after_withdraw_reuses_row(workshop: Event, member: User) -> None:
    services.registration_create(event=workshop, member=member)
    services.registration_withdraw(event=workshop, member=member)

    again = services.registration_create(event=workshop, member=member)

    assert (again.status, Registration.objects.filter(event=workshop).count()) == (
        "registered",
        1,
    )


def test_registration_create_emails_invitation_in_member_language(
    workshop: Event, django_capture_on_commit_callbacks: Any
) -> None:
    delegate = member_of_wg1(9, language="es", name="Lucía Gómez", timezone="America/Lima")

    with django_capture_on_commit_callbacks(execute=True):
        services.registration_create(event=workshop, member=delegate)

    [message] = mail.outbox
    filename, mimetype, cal = invitation(message)
    assert (message.to, filename, mimetype, summary(cal)) == (
        [delegate.email],
        "invite.ics",
        "text/calendar; method=REQUEST; charset=UTF-8",
        ("REQUEST", ical.uid_for(workshop), 0, "CONFIRMED"),
    )
    assert [mimetype for _html, mimetype in message.alternatives] == ["text/html"]
    # Django's own Spanish date format, in her zone (14:00 UTC is 09:00 in Lima): the e-mail
    # was rendered in her language and time zone.
    assert "12 de marzo de 2030 a las 09:00 (America/Lima)" in message.body


def test_registration_create_waitlisted_email_has_no_invitation(
    make_event: Callable[..., Event],
    member: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    event = make_event(capacity=1)
    services.registration_create(event=event, member=member_of_wg1(1))

    with django_capture_on_commit_callbacks(execute=True):
        services.registration_create(event=event, member=member)

    assert [(m.to, m.attachments) for m in mail.outbox] == [([member.email], [])]


def test_event_reschedule_each_registrant_gets_exactly_one_email(
    workshop: Event, chair: User, django_capture_on_commit_callbacks: Any
) -> None:
    english = member_of_wg1(1, language="en")
    french = member_of_wg1(2, language="fr", timezone="America/Montreal")
    with django_capture_on_commit_callbacks(execute=True):
        services.registration_create(event=workshop, member=english)
        services.registration_create(event=workshop, member=french)
    mail.outbox.clear()
    new_start = FUTURE + timedelta(days=1)

    with django_capture_on_commit_callbacks(execute=True):
        services.event_reschedule(
            event=workshop, actor=chair, starts_at=new_start, ends_at=new_start + timedelta(hours=2)
        )

    by_member = sorted((m.to, summary(invitation(m)[2])) for m in mail.outbox)
    expected = ("REQUEST", ical.uid_for(workshop), 1, "CONFIRMED")
    assert by_member == [([english.email], expected), ([french.email], expected)]
    french_mail = next(m for m in mail.outbox if m.to == [french.email])
    # 14:00 UTC is 10:00 in Montreal (EDT on 13 March 2030); Django's French date format.
    assert "13 mars 2030 10:00 (America/Montreal)" in french_mail.body


def test_occurrence_cancel_emails_request_with_cancelled_occurrence(
    make_event: Callable[..., Event],
    chair: User,
    member: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    series = make_event(recurrence="FREQ=WEEKLY;COUNT=4")
    with django_capture_on_commit_callbacks(execute=True):
        services.registration_create(event=series, member=member)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.occurrence_cancel(
            event=series, actor=chair, original_start=FUTURE + timedelta(days=7)
        )

    [message] = mail.outbox
    cal = invitation(message)[2]
    _master, occurrence = cal.walk("VEVENT")
    assert (summary(cal), str(occurrence["STATUS"]), occurrence["RECURRENCE-ID"].dt.date()) == (
        ("REQUEST", ical.uid_for(series), 1, "CONFIRMED"),
        "CANCELLED",
        (FUTURE + timedelta(days=7)).date(),
    )


def test_attendance_mark_by_organizer(workshop: Event, chair: User, member: User) -> None:
    services.registration_create(event=workshop, member=member)

    registration = services.attendance_mark(
        event=workshop, actor=chair, member=member, attended=True
    )

    assert Registration.objects.get(pk=registration.pk).attended is True


def test_attendance_mark_by_member_forbidden(workshop: Event, member: User) -> None:
    services.registration_create(event=workshop, member=member)
    with pytest.raises(PermissionDenied):
        services.attendance_mark(event=workshop, actor=member, member=member, attended=True)


def test_feed_token_regenerate_replaces_old(member: User) -> None:
    from events import selectors

    _first, old = services.feed_token_regenerate(member=member)
    _second, new = services.feed_token_regenerate(member=member)

    assert (selectors.feed_member_for_token(old), selectors.feed_member_for_token(new)) == (
        None,
        member,
    )
    assert len(new) == 64  # 256 bits, hex


def test_registration_state_open_full_waitlisted_closed(
    make_event: Callable[..., Event], member: User, chair: User
) -> None:
    from events import selectors

    event = make_event(capacity=1, registration_closes_at=FUTURE - timedelta(days=1))
    opened = selectors.registration_state(event=event, member=member)
    services.registration_create(event=event, member=chair)
    full = selectors.registration_state(event=event, member=member)
    services.registration_create(event=event, member=member)
    waitlisted = selectors.registration_state(event=event, member=member)
    closed = selectors.registration_state(
        event=event, member=member_of_wg1(7), now=FUTURE - timedelta(hours=1)
    )

    assert [s.state for s in (opened, full, waitlisted, closed)] == [
        "open",
        "full",
        "waitlisted",
        "closed",
    ]
    assert waitlisted.position == 1


def test_registrations_csv_by_delegation_neutralises_formulas(
    workshop: Event, member: User
) -> None:
    from events import selectors

    attacker = member_of_wg1(5, name='=HYPERLINK("http://evil")')
    services.registration_create(event=workshop, member=member)
    services.registration_create(event=workshop, member=attacker)

    lines = selectors.registrations_csv(event=workshop).splitlines()

    assert lines[0].startswith("Name,Email,Organization,Constituency")
    assert len(lines) == 3
    assert any(line.startswith("\"'=HYPERLINK") for line in lines)


def test_registration_create_rolled_back_sends_nothing(
    workshop: Event,
    member: User,
    django_capture_on_commit_callbacks: Any,
    record: Any,
) -> None:
    created = record(signals.registration_created)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                services.registration_create(event=workshop, member=member)
                raise RuntimeError("boom")
        except RuntimeError:
            pass

    assert (created.calls, mail.outbox, Registration.objects.count()) == ([], [], 0)


def test_event_create_naive_registration_window_read_in_event_zone(
    make_event: Callable[..., Event],
) -> None:
    event = make_event(
        timezone="America/Sao_Paulo",
        registration_closes_at=datetime(2030, 3, 10, 18, 0),
    )
    assert event.registration_closes_at == datetime(2030, 3, 10, 21, 0, tzinfo=UTC)


def test_agenda_item_create_local_times_and_speakers(
    workshop: Event, chair: User, member: User
) -> None:
    from events import selectors

    item = services.agenda_item_create(
        event=workshop,
        actor=chair,
        title="Opening",
        starts_at=datetime(2030, 3, 12, 10, 0),
        ends_at=datetime(2030, 3, 12, 10, 30),
        speakers="Minister of Labour",
        speaker_members=[member],
    )

    assert item.starts_at == FUTURE
    assert [
        (i.title, list(i.speaker_members.all())) for i in selectors.agenda_for(event=workshop)
    ] == [("Opening", [member])]


def test_agenda_item_create_end_before_start_refused(workshop: Event, chair: User) -> None:
    with pytest.raises(ValidationError) as caught:
        services.agenda_item_create(
            event=workshop,
            actor=chair,
            title="Backwards",
            starts_at=FUTURE,
            ends_at=FUTURE - timedelta(minutes=5),
        )
    assert error_codes(caught.value) == {"ends_at": ["end_before_start"]}
