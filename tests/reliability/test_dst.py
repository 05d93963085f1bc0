"""DST: series, feeds, pages, reminders and typed times across clock changes, zone by zone.

Seven zones Minga's members live in (and a visitor's): Santiago (changes at midnight), Asunción
(permanent -03 since October 2024), Havana (midnight changes), New York, Mexico City (no DST
since October 2022), São Paulo (no DST since 2019) and Madrid. Zones that no longer change are
tested on their last real changes, and a 2027 series checks that they now stay put.

The oracle is independent of the app: a hand-written table of each change (the local
wall-clock moment it happens, the UTC offset before and after) and the documented rule
(docs/calendar.md "The DST rule"): a local time that does not exist is read with the offset
from before the gap; a local time that happens twice is the first (earlier) one. Each case
compares what Minga does with the instant the oracle gives:

1-2. a weekly 10:00 series across the spring and the autumn change keeps 10:00 local;
3-4. a daily series at a time in the gap / in the repeated hour;
5. the series' .ics: DTSTART with TZID and local 10:00, one VTIMEZONE of the zone, whose own
   rules (not the zone database) give the same instants;
6. the gap and repeated-hour series' .ics expanded by `recurring-ical-events` (a client);
7-8. the month page of a member in another zone (Madrid; New York for Madrid's events): the
   link of each occurrence, its `<time datetime>`, the event's time and the viewer's time;
9. the 24-hour reminder of the date after the spring change (24 elapsed hours before it);
10. the 1-hour reminder of the date in the gap;
11-12. the event form (the HTML page) with a start in the gap / in the repeated hour;
13. a weekly series typed on the form with its first date in the gap: the later dates keep the
    wall-clock time typed ("An event keeps what the organizer typed", docs/calendar.md);
14. a weekly series through 2027 under today's rules (52 dates).
"""

# ruff: noqa: DTZ001 - naive datetimes here are local wall-clock times in a zone, on purpose

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from django.test import Client

from community.models import Role, User, WorkingGroup
from events import recurrence, services
from events.models import Event, Registration, ReminderDelivery
from tests.factories import MembershipFactory, UserFactory
from tests.reliability.support import report

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)


@dataclass(frozen=True)
class Change:
    """A clock change: at local wall-clock `at` (on the old offset) the offset becomes `after`."""

    at: datetime
    before: int  # UTC offset in hours
    after: int
    probe: datetime  # a local time in the gap (forward) or the repeated hour (back)


@dataclass(frozen=True)
class Zone:
    name: str
    viewer: str
    spring: Change  # clocks go forward: a gap
    autumn: Change  # clocks go back: a repeated hour
    offset_2027: int  # the offset on 2027-01-01
    changes_2027: tuple[tuple[datetime, int], ...]  # (local moment, new offset)


def _c(at: str, before: int, after: int, probe: str) -> Change:
    return Change(datetime.fromisoformat(at), before, after, datetime.fromisoformat(probe))


def _d(at: str) -> datetime:
    return datetime.fromisoformat(at)


ZONES: tuple[Zone, ...] = (
    Zone(
        "America/Santiago",
        "Europe/Madrid",
        _c("2027-09-05 00:00", -4, -3, "2027-09-05 00:30"),
        _c("2027-04-04 00:00", -3, -4, "2027-04-03 23:30"),
        -3,
        ((_d("2027-04-04 00:00"), -4), (_d("2027-09-05 00:00"), -3)),
    ),
    Zone(
        "America/Asuncion",
        "Europe/Madrid",
        _c("2024-10-06 00:00", -4, -3, "2024-10-06 00:30"),
        _c("2024-03-24 00:00", -3, -4, "2024-03-23 23:30"),
        -3,
        (),
    ),
    Zone(
        "America/Havana",
        "Europe/Madrid",
        _c("2027-03-14 00:00", -5, -4, "2027-03-14 00:30"),
        _c("2027-11-07 01:00", -4, -5, "2027-11-07 00:30"),
        -5,
        ((_d("2027-03-14 00:00"), -4), (_d("2027-11-07 01:00"), -5)),
    ),
    Zone(
        "America/New_York",
        "Europe/Madrid",
        _c("2027-03-14 02:00", -5, -4, "2027-03-14 02:30"),
        _c("2027-11-07 02:00", -4, -5, "2027-11-07 01:30"),
        -5,
        ((_d("2027-03-14 02:00"), -4), (_d("2027-11-07 02:00"), -5)),
    ),
    Zone(
        "America/Mexico_City",
        "Europe/Madrid",
        _c("2022-04-03 02:00", -6, -5, "2022-04-03 02:30"),
        _c("2022-10-30 02:00", -5, -6, "2022-10-30 01:30"),
        -6,
        (),
    ),
    Zone(
        "America/Sao_Paulo",
        "Europe/Madrid",
        _c("2018-11-04 00:00", -3, -2, "2018-11-04 00:30"),
        _c("2019-02-17 00:00", -2, -3, "2019-02-16 23:30"),
        -3,
        (),
    ),
    Zone(
        "Europe/Madrid",
        "America/New_York",
        _c("2027-03-28 02:00", 1, 2, "2027-03-28 02:30"),
        _c("2027-10-31 03:00", 2, 1, "2027-10-31 02:30"),
        1,
        ((_d("2027-03-28 02:00"), 2), (_d("2027-10-31 03:00"), 1)),
    ),
)


def oracle(
    local: datetime, start_offset: int, changes: tuple[tuple[datetime, int], ...]
) -> datetime:
    """The documented instant of a local wall-clock time: a change takes effect at the end of
    its gap (a gap time keeps the old offset) and at its moment when clocks go back (a
    repeated time is the first, on the old offset)."""
    offset = start_offset
    for at, new in changes:
        if local >= at + max(timedelta(hours=new - offset), timedelta(0)):
            offset = new
    return (local - timedelta(hours=offset)).replace(tzinfo=UTC)


def across(change: Change) -> Callable[[datetime], datetime]:
    return lambda local: oracle(local, change.before, ((change.at, change.after),))


def utc(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


Checks = list[tuple[str, Any, Any]]  # (what, got, expected)


class World:
    """The people and clients of one run."""

    def __init__(self, chair: User) -> None:
        self.chair = chair
        self.wg1 = WorkingGroup.objects.get(slug="wg1")
        self.chairs = Client()
        self.chairs.force_login(chair)
        self.viewers: dict[str, Client] = {}

    def viewer(self, zone: str) -> Client:
        if zone not in self.viewers:
            user = UserFactory(handle=f"viewer{len(self.viewers)}", timezone=zone)
            MembershipFactory(member=user, role=Role.MEMBER)
            client = Client()
            client.force_login(user)
            self.viewers[zone] = client
        return self.viewers[zone]

    def series(self, zone: str, local: datetime, rule: str, hours: int = 2) -> Event:
        return services.event_create(
            actor=self.chair,
            title=f"Series {zone} {local:%Y-%m-%d %H:%M} {rule}",
            starts_at=local,
            ends_at=local + timedelta(hours=hours),
            timezone=zone,
            working_group=self.wg1,
            recurrence=rule,
        )


def starts(event: Event, first: datetime, last: datetime) -> list[datetime]:
    event = Event.objects.get(pk=event.pk)
    return [
        o.starts_at
        for o in recurrence.expand(event, first - timedelta(days=2), last + timedelta(days=2))
    ]


def weekly_case(world: World, zone: Zone, change: Change) -> Checks:
    first = datetime.combine(change.at.date() - timedelta(days=7), time(10))
    event = world.series(zone.name, first, "FREQ=WEEKLY;COUNT=3")
    locals_ = [first + timedelta(weeks=n) for n in range(3)]
    expected = [across(change)(x) for x in locals_]
    return [("weekly 10:00 series", starts(event, expected[0], expected[-1]), expected)]


def daily_case(world: World, zone: Zone, change: Change) -> tuple[Event, Checks]:
    first = change.probe - timedelta(days=1)
    event = world.series(zone.name, first, "FREQ=DAILY;COUNT=3", hours=1)
    expected = [across(change)(first + timedelta(days=n)) for n in range(3)]
    return event, [
        (f"daily {change.probe:%H:%M} series", starts(event, expected[0], expected[-1]), expected)
    ]


def ics_vtimezone_case(world: World, zone: Zone) -> Checks:
    change = zone.spring
    first = datetime.combine(change.at.date() - timedelta(days=7), time(10))
    event = world.series(zone.name, first, "FREQ=WEEKLY;COUNT=3")
    calendar = icalendar.Calendar.from_ical(world.chairs.get(f"/events/{event.pk}.ics").content)
    (vevent,) = calendar.walk("VEVENT")
    zones = calendar.walk("VTIMEZONE")
    dtstart = vevent["DTSTART"]
    checks: Checks = [
        ("DTSTART TZID", dtstart.params.get("TZID"), zone.name),
        ("DTSTART local", dtstart.dt.replace(tzinfo=None), first),
        ("VTIMEZONE TZIDs", [str(z["TZID"]) for z in zones], [zone.name]),
    ]
    own_rules = zones[0].to_tz(lookup_tzid=False)
    got = [(first + timedelta(weeks=n)).replace(tzinfo=own_rules).astimezone(UTC) for n in range(3)]
    checks.append(
        (
            "instants by the VTIMEZONE's rules",
            got,
            [across(change)(first + timedelta(weeks=n)) for n in range(3)],
        )
    )
    return checks


def ics_client_case(world: World, events_and_changes: list[tuple[Event, Change]]) -> Checks:
    checks: Checks = []
    for event, change in events_and_changes:
        calendar = icalendar.Calendar.from_ical(world.chairs.get(f"/events/{event.pk}.ics").content)
        first = change.probe - timedelta(days=1)
        expected = [across(change)(first + timedelta(days=n)) for n in range(3)]
        window = (expected[0] - timedelta(days=1), expected[-1] + timedelta(days=1))
        got = sorted(
            c["DTSTART"].dt.astimezone(UTC)
            for c in recurring_ical_events.of(calendar).between(*window)
        )
        checks.append((f".ics {change.probe:%H:%M} series in a client", got, expected))
    return checks


_TIME = re.compile(
    r'<time datetime="([^"]+)">(?:<span class="time-event-zone">([^<]*)</span>'
    r'.*?<span class="time-viewer-zone">([^<]*)</span>|([^<]*))</time>',
    re.S,
)


def month_case(world: World, zone: Zone, change: Change) -> Checks:
    first = datetime.combine(change.at.date() - timedelta(days=7), time(10))
    event = world.series(zone.name, first, "FREQ=WEEKLY;COUNT=3")
    checks: Checks = []
    viewer_zone = ZoneInfo(zone.viewer)
    pages: dict[str, str] = {}
    for n in range(3):
        local = first + timedelta(weeks=n)
        instant = across(change)(local)
        month = f"{local:%Y-%m}"
        if month not in pages:
            page = world.viewer(zone.viewer).get("/calendar/", {"month": month})
            pages[month] = html.unescape(page.content.decode())
        body = pages[month]
        href = f'href="/events/{event.pk}/?occurrence={recurrence.occurrence_key(instant)}"'
        at = body.find(href)
        match = _TIME.search(body, at) if at >= 0 else None
        seen = ("link not found", "", "")
        if match:
            seen = (match[1], (match[2] or match[4]).strip(), (match[3] or "").strip()[:5])
        label = zone.name.rsplit("/", 1)[-1].replace("_", " ")
        expected = (
            utc(instant),
            f"{local:%H:%M}\N{EN DASH}{local + 2 * H:%H:%M} {label}",
            f"{instant.astimezone(viewer_zone):%H:%M}",
        )
        checks.append((f"month page, {local:%Y-%m-%d}, viewer in {zone.viewer}", seen, expected))
    return checks


def reminder_case(event: Event, *, instant: datetime, offset: int, label: str) -> Checks:
    member = UserFactory(handle=f"r{event.pk}x{offset}")
    MembershipFactory(member=member, role=Role.MEMBER)
    early = event.starts_at - timedelta(days=10)
    registration = services.registration_create(event=event, member=member, now=early)
    Registration.objects.filter(pk=registration.pk).update(created=early)
    due = instant - timedelta(minutes=offset)

    def rows() -> list[tuple[int, str, str, bool]]:
        return [
            (d.offset_minutes, utc(d.occurrence_start), utc(d.due_at), d.sent_at is not None)
            for d in ReminderDelivery.objects.filter(
                registration=registration, occurrence_start=instant, offset_minutes=offset
            )
        ]

    services.reminders_send_due(now=due - timedelta(minutes=1))
    before = rows()
    services.reminders_send_due(now=due)
    after = rows()
    return [
        (f"{label}: nothing a minute before {utc(due)}", before, []),
        (f"{label}: sent at {utc(due)}", after, [(offset, utc(instant), utc(due), True)]),
    ]


def form_case(world: World, zone: Zone, change: Change, rule: str = "") -> Checks:
    start, end = change.probe, change.probe + 2 * H
    title = f"Typed {zone.name} {start:%Y-%m-%d %H:%M}{' weekly' if rule else ''}"
    response = world.chairs.post(
        "/events/new/",
        {
            "title": title,
            "kind": "meeting",
            "working_group": "wg1",
            "starts_at": f"{start:%Y-%m-%dT%H:%M}",
            "ends_at": f"{end:%Y-%m-%dT%H:%M}",
            "timezone": zone.name,
            "recurrence": rule,
            "visibility": "public",
        },
    )
    event = Event.objects.filter(title=title).first()
    if response.status_code != 302 or event is None:
        errors = re.findall(
            r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S
        )
        return [(f"form {start:%H:%M} accepted", (response.status_code, errors), 302)]
    oracle_of = across(change)
    checks: Checks = [
        (
            f"form {start:%Y-%m-%d %H:%M}: stored start and end",
            (utc(event.starts_at), utc(event.ends_at)),
            (utc(oracle_of(start)), utc(oracle_of(end))),
        )
    ]
    page = world.chairs.get(f"/events/{event.pk}/").content.decode()
    checks.append(
        (
            f"form {start:%H:%M}: event page <time>",
            f'datetime="{utc(oracle_of(start))}"' in page,
            True,
        )
    )
    if rule:
        later = start + timedelta(weeks=1)
        got = starts(event, oracle_of(start), oracle_of(later))
        checks.append(
            (
                f"series typed at {start:%H:%M}: dates keep the typed time",
                got,
                [oracle_of(start), oracle_of(later)],
            )
        )
    return checks


def this_year_case(world: World, zone: Zone) -> Checks:
    first = datetime(2027, 1, 6, 10, 0)  # a Wednesday
    event = world.series(zone.name, first, "FREQ=WEEKLY;COUNT=52")
    expected = [
        oracle(first + timedelta(weeks=n), zone.offset_2027, zone.changes_2027) for n in range(52)
    ]
    return [
        (
            "2027 weekly series under today's rules",
            starts(event, expected[0], expected[-1]),
            expected,
        )
    ]


def zone_cases(world: World, zone: Zone) -> dict[str, Checks]:
    gap_series, gap_checks = daily_case(world, zone, zone.spring)
    repeated_series, repeated_checks = daily_case(world, zone, zone.autumn)
    after_spring = datetime.combine(zone.spring.at.date(), time(10))
    spring_series = world.series(
        zone.name, after_spring - timedelta(weeks=1), "FREQ=WEEKLY;COUNT=3"
    )
    return {
        "weekly across the spring change": weekly_case(world, zone, zone.spring),
        "weekly across the autumn change": weekly_case(world, zone, zone.autumn),
        "daily in the gap": gap_checks,
        "daily in the repeated hour": repeated_checks,
        ".ics TZID and VTIMEZONE": ics_vtimezone_case(world, zone),
        ".ics read by a client": ics_client_case(
            world, [(gap_series, zone.spring), (repeated_series, zone.autumn)]
        ),
        "month page, spring": month_case(world, zone, zone.spring),
        "month page, autumn": month_case(world, zone, zone.autumn),
        "24-hour reminder across the change": reminder_case(
            spring_series, instant=across(zone.spring)(after_spring), offset=1440, label="24 h"
        ),
        "1-hour reminder of a gap date": reminder_case(
            gap_series, instant=across(zone.spring)(zone.spring.probe), offset=60, label="1 h"
        ),
        "form, start in the gap": form_case(world, zone, zone.spring),
        "form, start in the repeated hour": form_case(world, zone, zone.autumn),
        "form, weekly series from a gap time": form_case(
            world, zone, zone.spring, "FREQ=WEEKLY;COUNT=2"
        ),
        "2027 under today's rules": this_year_case(world, zone),
    }


def test_dst_series_feeds_pages_reminders_and_forms_in_seven_zones(
    plan: None, chair: User, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(chair)
    wrong: dict[str, list[tuple[str, Any, Any]]] = {}
    cases = 0
    instants = 0
    for zone in ZONES:
        for case, checks in zone_cases(world, zone).items():
            cases += 1
            instants += len(checks)
            bad = [(what, got, want) for what, got, want in checks if got != want]
            if bad:
                wrong[f"{zone.name}: {case}"] = bad
    per_zone = cases // len(ZONES)
    report(
        capsys,
        "DST",
        f"{len(ZONES)} zones x {per_zone} cases ({instants} checks), {len(wrong)} cases with "
        "wrong instants",
    )
    assert wrong == {}
