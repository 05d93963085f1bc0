"""iCalendar output parsed back: properties, series, cancellations, injection, feeds, tokens."""

# ruff: noqa: DTZ001 - naive datetimes here are local wall-clock times in an event's zone, on purpose

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import recurring_ical_events
from django.test import Client
from icalendar import Calendar

from community.models import Role, User, WorkingGroup
from events import ical, recurrence, services
from events.models import Event
from tests.events.conftest import FUTURE
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def parse(body: bytes) -> Calendar:
    return Calendar.from_ical(body)


def vevents(cal: Calendar) -> list[Any]:
    return [c for c in cal.walk() if c.name == "VEVENT"]


def test_calendar_for_single_event_has_stable_uid_sequence_tzid_and_vtimezone(
    make_event: Callable[..., Event], chair: User
) -> None:
    event = make_event(timezone="America/Santiago", venue="Ministerio", city="Santiago")

    cal = parse(ical.calendar_for([event], name="One"))
    (vevent,) = vevents(cal)

    assert str(vevent["UID"]) == f"event-{event.pk}@minga.calendar"
    assert int(vevent["SEQUENCE"]) == 0
    assert vevent["DTSTART"].params["TZID"] == "America/Santiago"
    assert vevent.decoded("DTSTART") == FUTURE
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["America/Santiago"]
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert str(vevent["ORGANIZER"]) == f"mailto:{chair.email}"
    assert [str(c) for c in vevent["CATEGORIES"].cats] == ["workshop", "wg1"]
    assert str(vevent["URL"]).endswith(f"/events/{event.pk}/")
    assert "LAST-MODIFIED" in vevent


def test_calendar_for_cancelled_event_kept_with_status_and_grown_sequence(
    workshop: Event, chair: User
) -> None:
    services.event_cancel(event=workshop, actor=chair)

    (vevent,) = vevents(parse(ical.calendar_for([workshop], name="x")))

    assert (str(vevent["STATUS"]), int(vevent["SEQUENCE"])) == ("CANCELLED", 1)


def test_calendar_for_series_expands_like_the_app_across_dst(
    make_event: Callable[..., Event], chair: User
) -> None:
    # Weekly on Wednesdays at 18:00 in New York, from February into April (DST starts 8 March).
    start = datetime(2030, 2, 6, 18, 0)
    event = make_event(
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        timezone="America/New_York",
        recurrence="FREQ=WEEKLY;UNTIL=20300430",
    )
    services.event_update(
        event=event,
        actor=chair,
        changes={"exdates": [datetime(2030, 2, 20, 18, 0)]},
    )
    moved_original = recurrence.to_instant(datetime(2030, 3, 13, 18, 0), "America/New_York")
    services.occurrence_reschedule(
        event=event,
        actor=chair,
        original_start=moved_original,
        starts_at=datetime(2030, 3, 14, 9, 0),
        ends_at=datetime(2030, 3, 14, 10, 0),
    )
    services.occurrence_cancel(
        event=event,
        actor=chair,
        original_start=recurrence.to_instant(datetime(2030, 4, 3, 18, 0), "America/New_York"),
    )
    event.refresh_from_db()
    window = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 6, 1, tzinfo=UTC))
    app = [(o.starts_at, o.ends_at, o.cancelled) for o in recurrence.expand(event, *window)]

    cal = parse(ical.calendar_for([event], name="series"))
    feed = sorted(
        (
            c.decoded("DTSTART").astimezone(UTC),
            c.decoded("DTEND").astimezone(UTC),
            str(c.get("STATUS")) == "CANCELLED",
        )
        for c in recurring_ical_events.of(cal).between(*window)
    )

    assert feed == app
    assert len(app) == 11  # 12 Wednesdays minus the excluded one
    assert app[0][0] == datetime(2030, 2, 6, 23, 0, tzinfo=UTC)
    assert app[-1][0] == datetime(2030, 4, 24, 22, 0, tzinfo=UTC)  # EDT


INJECTIONS = [
    "Workshop\r\nBEGIN:VALARM\r\nACTION:AUDIO\r\nEND:VALARM",
    "Line one\nATTENDEE:mailto:evil@example.org",
    "Title;X-INJECTED=1:value\rDTSTART:19700101T000000Z",
    "😀" * 60 + "\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:evil",
    "a" * 5000,
    "é" * 74 + "😀" + "\x00\x07\x1b control",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_calendar_for_hostile_text_adds_no_component_or_property(
    make_event: Callable[..., Event], member: User, payload: str
) -> None:
    event = make_event(
        title=payload[:200], description=payload, venue=payload[:200], city=payload[:100]
    )
    services.registration_create(event=event, member=member)

    body = ical.calendar_for([event], name=payload, member=member, reminder_offsets=[60])
    cal = parse(body)
    (vevent,) = vevents(cal)

    assert [c.name for c in cal.walk()] == [
        "VCALENDAR",
        "VTIMEZONE",
        "STANDARD",
        "VEVENT",
        "VALARM",
    ]
    assert sorted(vevent.keys()) == sorted(
        [
            "UID",
            "DTSTAMP",
            "SEQUENCE",
            "LAST-MODIFIED",
            "CREATED",
            "SUMMARY",
            "DESCRIPTION",
            "LOCATION",
            "URL",
            "CATEGORIES",
            "STATUS",
            "CLASS",
            "ORGANIZER",
            "DTSTART",
            "DTEND",
            "ATTENDEE",
        ]
    )
    assert str(vevent["DESCRIPTION"]) == ical.clean_text(payload)
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))
    body.decode("utf-8")  # folding never splits a multi-byte character


def test_member_feed_by_token_has_attendee_alarms_and_old_token_404(
    make_event: Callable[..., Event], member: User, client: Client
) -> None:
    event = make_event()
    services.registration_create(event=event, member=member)
    services.reminder_preference_set(member=member, offsets_minutes=[30, 24 * 60])
    _token, old = services.feed_token_regenerate(member=member)
    _token, new = services.feed_token_regenerate(member=member)

    stale = client.get(f"/events/feeds/{old}.ics")
    response = client.get(f"/events/feeds/{new}.ics")

    assert stale.status_code == 404
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    (vevent,) = vevents(parse(response.content))
    assert str(vevent["ATTENDEE"]) == f"mailto:{member.email}"
    assert vevent["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"
    assert sorted(a.decoded("TRIGGER") for a in vevent.walk("VALARM")) == [
        timedelta(days=-1),
        timedelta(minutes=-30),
    ]


def test_member_feed_lists_groups_and_registrations_not_other_groups_private(
    make_event: Callable[..., Event], member: User, secretariat: User, client: Client
) -> None:
    own = make_event(title="Own group", visibility="working_group")
    wg2 = WorkingGroup.objects.get(slug="wg2")
    other_private = services.event_create(
        actor=secretariat,
        title="WG2 private",
        working_group=wg2,
        visibility="working_group",
        starts_at=FUTURE,
        ends_at=FUTURE + timedelta(hours=1),
        timezone="UTC",
    )
    _token, raw = services.feed_token_regenerate(member=member)

    response = client.get(f"/events/feeds/{raw}.ics")

    titles = [str(v["SUMMARY"]) for v in vevents(parse(response.content))]
    assert titles == [own.title]
    assert other_private.title not in titles


def test_event_ics_public_needs_no_sign_in_group_only_needs_membership(
    make_event: Callable[..., Event], client: Client, member: User
) -> None:
    public = make_event()
    private = make_event(visibility="working_group")

    anonymous_public = client.get(f"/events/{public.pk}.ics")
    anonymous_private = client.get(f"/events/{private.pk}.ics")
    client.force_login(member)
    member_private = client.get(f"/events/{private.pk}.ics")

    assert (anonymous_public.status_code, anonymous_private.status_code) == (200, 404)
    assert member_private.status_code == 200
    assert anonymous_public["Content-Type"] == "text/calendar; charset=utf-8"


def test_event_ics_token_auth_for_group_only_event(
    make_event: Callable[..., Event], client: Client, member: User
) -> None:
    from community.services import api_token_create

    private = make_event(visibility="working_group")
    _token, key = api_token_create(member=member, name="calendar")

    response = client.get(f"/events/{private.pk}.ics", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 200


def test_working_group_feed_members_only(
    make_event: Callable[..., Event], client: Client, member: User
) -> None:
    make_event(title="WG1 meeting", kind="meeting")
    outsider = UserFactory(email="wg2only@labor.example", handle="wg2only")
    MembershipFactory(
        member=outsider, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.MEMBER
    )

    anonymous = client.get("/events/feeds/wg/wg1.ics")
    client.force_login(outsider)
    other = client.get("/events/feeds/wg/wg1.ics")
    client.force_login(member)
    mine = client.get("/events/feeds/wg/wg1.ics")

    assert (anonymous.status_code, other.status_code, mine.status_code) == (404, 404, 200)
    assert [str(v["SUMMARY"]) for v in vevents(parse(mine.content))] == ["WG1 meeting"]


def test_invitation_for_cancel_has_method_cancel_and_attendee(
    workshop: Event, chair: User, member: User
) -> None:
    services.registration_create(event=workshop, member=member)
    services.event_cancel(event=workshop, actor=chair)

    cal = parse(ical.invitation_for(workshop, member=member, method="CANCEL"))
    (vevent,) = vevents(cal)

    assert (str(cal["METHOD"]), str(vevent["STATUS"]), int(vevent["SEQUENCE"])) == (
        "CANCEL",
        "CANCELLED",
        1,
    )
    assert str(vevent["ATTENDEE"]) == f"mailto:{member.email}"


def test_member_feed_alarms_only_on_registered_events(
    make_event: Callable[..., Event], member: User
) -> None:
    registered = make_event(title="Registered")
    make_event(title="Group event")
    services.registration_create(event=registered, member=member)
    from events import selectors

    body = ical.calendar_for(
        selectors.member_feed_events(member=member),
        name="feed",
        member=member,
        reminder_offsets=[60],
    )

    alarms = {str(v["SUMMARY"]): len(v.walk("VALARM")) for v in vevents(parse(body))}
    assert alarms == {"Registered": 1, "Group event": 0}


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("America/Santiago", datetime(2030, 9, 5, 0, 30)),  # 00:30 does not exist on 8 Sep
        ("America/New_York", datetime(2030, 3, 7, 2, 30)),  # 02:30 does not exist on 10 Mar
        ("America/New_York", datetime(2030, 10, 31, 1, 30)),  # 01:30 twice on 3 Nov
        ("America/Port_of_Spain", datetime(2030, 3, 7, 2, 30)),
    ],
)
def test_calendar_for_daily_series_over_dst_change_client_agrees_with_app(
    make_event: Callable[..., Event], zone: str, start: datetime
) -> None:
    event = make_event(
        starts_at=start,
        ends_at=start + timedelta(hours=1),
        timezone=zone,
        recurrence="FREQ=DAILY;COUNT=7",
    )
    window = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC))
    app = [(o.starts_at, o.ends_at) for o in recurrence.expand(event, *window)]

    cal = parse(ical.calendar_for([event], name="dst"))
    feed = sorted(
        (c.decoded("DTSTART").astimezone(UTC), c.decoded("DTEND").astimezone(UTC))
        for c in recurring_ical_events.of(cal).between(*window)
    )

    # Starts agree everywhere (both follow RFC 5545 3.3.5 for gap and repeated times).
    assert [s for s, _e in feed] == [s for s, _e in app]
    assert len(app) == 7
    # Ends: the app keeps the exact duration (RFC 5545 3.8.5.3); recurring-ical-events adds it
    # to the wall clock, so on the change day alone its end differs (docs/calendar.md).
    assert all(e - s == timedelta(hours=1) for s, e in app)
    change_days = {s.date() for s, e in feed if e - s != timedelta(hours=1)}
    assert len(change_days) == (0 if zone == "America/Port_of_Spain" else 1)


@pytest.mark.parametrize("count", [1, 3])
def test_working_group_feed_query_count_constant(
    make_event: Callable[..., Event],
    client: Client,
    member: User,
    count: int,
    django_assert_num_queries: Any,
) -> None:
    for n in range(count):
        make_event(title=f"Meeting {n}", recurrence="FREQ=WEEKLY;COUNT=2" if n else "")
    client.force_login(member)

    # session, member, verified e-mail, roles, group, events, overrides, topics, organizers
    with django_assert_num_queries(9):
        response = client.get("/events/feeds/wg/wg1.ics")

    assert len(vevents(parse(response.content))) == count
