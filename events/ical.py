"""iCalendar (RFC 5545) for events: one event, a working group's feed, a member's private feed,
and invitation attachments (METHOD:REQUEST / METHOD:CANCEL).

Built with the `icalendar` library, never by string concatenation: every text value goes
through the library's escaping and 75-octet folding, so CR, LF, ";" or "BEGIN:VALARM" in a
title or description stay inside their property. Control characters other than tab, CR and LF
are dropped first (they are not allowed in iCalendar text at all).

Times are written as the organizer meant them: DTSTART with TZID and the event's own zone,
local wall-clock (so an RRULE expands in that zone across DST, as the app does), with the
matching VTIMEZONE. A series carries RRULE and EXDATE; a moved or cancelled occurrence is a
second VEVENT with the same UID and RECURRENCE-ID.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone as dj_timezone
from django.views.decorators.http import require_GET
from icalendar import Alarm, Calendar, vCalAddress, vRecur, vText
from icalendar import Event as VEvent

from community.models import User

from . import recurrence
from .models import Event, EventOccurrenceOverride, Registration

PRODID = "-//Minga//Events calendar//EN"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def uid_for(event: Event) -> str:
    return f"event-{event.pk}@{uid_domain()}"


def uid_domain() -> str:
    # Stable across deploys: the UID is how calendars recognise an event they already have.
    return getattr(settings, "MINGA_CALENDAR_DOMAIN", "minga.calendar")


def site_url() -> str:
    """The public address (settings.MINGA_SITE_URL), for links made outside a request."""
    return str(settings.MINGA_SITE_URL).rstrip("/")


class Text(vText):
    """TEXT escaped exactly as RFC 5545 (3.3.11) says. icalendar's own escaping first turns a
    literal backslash-N into a line break, so "C:\\Nuevos" would lose its backslash."""

    def to_ical(self) -> bytes:
        escaped = str(self).replace("\\", "\\\\").replace(";", r"\;").replace(",", r"\,")
        return escaped.replace("\n", r"\n").encode(self.encoding)


def clean_text(value: str) -> Text:
    """Drop control characters; CR LF and lone CR become LF (escaped as \\n by Text)."""
    return Text(_CONTROL.sub("", (value or "").replace("\r\n", "\n").replace("\r", "\n")))


def _zone(event: Event) -> ZoneInfo:
    return ZoneInfo(event.timezone)


def _local_aware(local: datetime, event: Event) -> datetime:
    """A local wall-clock time carrying the event's zone (written as TZID=zone:local)."""
    return local.replace(tzinfo=_zone(event), fold=0)


def _rule_local_for(event: Event, instant: datetime) -> datetime:
    """The local time the rule generated for an original start (a gap time keeps its name)."""
    local = recurrence.to_local(instant, event.timezone)
    if event.recurrence:
        rule = recurrence.build_rule(
            event.recurrence, recurrence.local_start(event), event.timezone
        )
        for candidate in rule.between(
            local - timedelta(hours=3), local + timedelta(hours=3), inc=True
        ):
            if recurrence.to_instant(candidate, event.timezone) == instant.astimezone(UTC):
                return candidate
    return local


def _mailto(user: User) -> vCalAddress:
    address = vCalAddress(f"mailto:{user.email}")
    address.params["CN"] = vText(clean_text(user.name or user.email))
    return address


def _base_vevent(event: Event, *, stamp: datetime) -> VEvent:
    vevent = VEvent()
    vevent.add("uid", uid_for(event))
    vevent.add("dtstamp", stamp)
    vevent.add("sequence", event.sequence)
    vevent.add("last-modified", event.updated.astimezone(UTC))
    vevent.add("created", event.created.astimezone(UTC))
    vevent.add("summary", clean_text(event.title))
    if event.description:
        vevent.add("description", clean_text(event.description))
    location = clean_text(event.location)
    if location:
        vevent.add("location", location)
    vevent.add("url", f"{site_url()}/events/{event.pk}/")
    categories = [event.kind]
    if event.working_group_id is not None:
        categories.append(event.working_group.slug)
    vevent.add("categories", categories)
    vevent.add("status", "CANCELLED" if event.status == Event.Status.CANCELLED else "CONFIRMED")
    vevent.add("class", "PUBLIC" if event.visibility == Event.Visibility.PUBLIC else "PRIVATE")
    organizers = list(event.organizers.all())
    if organizers:
        vevent.add("organizer", _mailto(organizers[0]))
    return vevent


def _add_attendee(vevent: VEvent, registration: Registration | None, member: User) -> None:
    if registration is None or registration.status == Registration.Status.WITHDRAWN:
        return
    attendee = _mailto(member)
    attendee.params["ROLE"] = vText("REQ-PARTICIPANT")
    attendee.params["PARTSTAT"] = vText(
        "ACCEPTED" if registration.status == Registration.Status.REGISTERED else "TENTATIVE"
    )
    attendee.params["RSVP"] = vText("FALSE")
    vevent.add("attendee", attendee)


def _add_alarms(vevent: VEvent, offsets: Sequence[int], title: str) -> None:
    for minutes in offsets:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", clean_text(title))
        alarm.add("trigger", timedelta(minutes=-minutes))
        vevent.add_component(alarm)


def vevents_for(
    event: Event,
    *,
    stamp: datetime | None = None,
    attendee: User | None = None,
    registration: Registration | None = None,
    reminder_offsets: Sequence[int] = (),
) -> list[VEvent]:
    """The master VEVENT (with RRULE/EXDATE for a series) and one per changed occurrence."""
    stamp = (stamp or dj_timezone.now()).astimezone(UTC)
    start_local = recurrence.local_start(event)
    master = _base_vevent(event, stamp=stamp)
    master.add("dtstart", _local_aware(start_local, event))
    master.add(
        "dtend",
        _local_aware(recurrence.to_local(event.ends_at, event.timezone), event),
    )
    overrides: list[EventOccurrenceOverride] = list(event.overrides.all())
    if event.recurrence:
        master.add("rrule", vRecur.from_ical(event.recurrence))
        excluded = sorted(recurrence.parse_exdate(x) for x in event.exdates or [])
        if excluded:
            master.add("exdate", [_local_aware(_rule_local_for(event, x), event) for x in excluded])
    with_people = attendee is not None
    if with_people:
        _add_attendee(master, registration, attendee)
    # Alarms only where the member is registered: their reminders, not every group event's.
    alarms = bool(
        reminder_offsets
        and event.status == Event.Status.SCHEDULED
        and (attendee is None or (registration is not None and _counts(registration)))
    )
    if alarms:
        _add_alarms(master, reminder_offsets, event.title)
    result = [master]
    for override in overrides if event.recurrence else []:
        vevent = _base_vevent(event, stamp=stamp)
        original_local = _rule_local_for(event, override.original_start)
        vevent.add("recurrence-id", _local_aware(original_local, event))
        if override.cancelled:
            vevent.add("dtstart", _local_aware(original_local, event))
            vevent.add(
                "dtend",
                _local_aware(
                    recurrence.to_local(override.original_start + event.duration, event.timezone),
                    event,
                ),
            )
            vevent["status"] = vText("CANCELLED")
        else:
            assert override.starts_at is not None and override.ends_at is not None  # noqa: S101
            vevent.add(
                "dtstart",
                _local_aware(recurrence.to_local(override.starts_at, event.timezone), event),
            )
            vevent.add(
                "dtend",
                _local_aware(recurrence.to_local(override.ends_at, event.timezone), event),
            )
        if with_people:
            _add_attendee(vevent, registration, attendee)
        if alarms and not override.cancelled:
            _add_alarms(vevent, reminder_offsets, event.title)
        result.append(vevent)
    return result


def _counts(registration: Registration) -> bool:
    return registration.status == Registration.Status.REGISTERED


def _calendar(name: str, method: str | None = None) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    if method:
        cal.add("method", method)
    # An X- property has no known type: give it one, or its text would not be escaped.
    cal.add("x-wr-calname", Text(" ".join(clean_text(name).split())))
    return cal


def _finish(cal: Calendar, events: Sequence[Event]) -> bytes:
    if events:
        first = min(e.starts_at for e in events).date()
        last = date(2038, 1, 1)
        for e in events:
            end = recurrence.series_end(e) if e.recurrence else e.ends_at
            if end is not None and end.date() >= last:
                last = end.date() + timedelta(days=366)
        cal.add_missing_timezones(first_date=first - timedelta(days=366), last_date=last)
    return cal.to_ical()


def calendar_for(
    events: Iterable[Event],
    *,
    name: str,
    member: User | None = None,
    reminder_offsets: Sequence[int] = (),
    method: str | None = None,
) -> bytes:
    """A VCALENDAR with `events`. With `member`: their ATTENDEE line and alarms per event.

    For the member's feed, pass events with `my_registrations` prefetched
    (selectors.member_feed_events does that).
    """
    cal = _calendar(name, method)
    stamp = dj_timezone.now()
    listed = list(events)
    for event in listed:
        registration = None
        if member is not None:
            mine = getattr(event, "my_registrations", None)
            if mine is None:
                mine = list(Registration.objects.filter(event=event, member=member))
            registration = mine[0] if mine else None
        for vevent in vevents_for(
            event,
            stamp=stamp,
            attendee=member,
            registration=registration,
            reminder_offsets=reminder_offsets if member is not None else (),
        ):
            cal.add_component(vevent)
    return _finish(cal, listed)


def invitation_for(event: Event, *, member: User, method: str) -> bytes:
    """The attachment of an invitation e-mail: METHOD:REQUEST, or METHOD:CANCEL.

    Called by notifications/email.py for the e-mails of event kinds (events sends none).

    For METHOD:CANCEL the master VEVENT says STATUS:CANCELLED with the grown SEQUENCE, which
    Outlook and Google both take as the cancellation of the UID they stored.
    """
    registration = Registration.objects.filter(event=event, member=member).first()
    cal = _calendar(event.title, method)
    vevents = vevents_for(event, attendee=member, registration=registration)
    if method == "CANCEL":
        vevents[0]["status"] = vText("CANCELLED")
        vevents = [vevents[0]]
    for vevent in vevents:
        cal.add_component(vevent)
    return _finish(cal, [event])


# --- HTTP endpoints (events/urls.py) ----------------------------------------------------------


def _request_member(request: HttpRequest) -> User | None:
    """The session member, or the owner of an `Authorization: Token <key>` header."""
    from community import policy
    from community.services import api_token_member

    header = request.headers.get("Authorization", "")
    scheme, _sep, raw = header.partition(" ")
    if scheme.lower() == "token" and raw.strip():
        member = api_token_member(raw.strip())
        return member if member is not None and policy.is_participant(member) else None
    user = request.user
    return user if policy.is_participant(user) else None  # type: ignore[return-value]


def _ics_response(body: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    response["Cache-Control"] = "private, no-cache"
    return response


@require_GET
def event_ics(request: HttpRequest, event_id: int) -> HttpResponse:
    """One event. Public-visibility events need no sign-in; others the session or a token."""
    from . import selectors

    member = _request_member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    offsets = selectors.reminder_offsets(member=member) if member is not None else ()
    body = calendar_for([event], name=event.title, member=member, reminder_offsets=offsets)
    return _ics_response(body, f"event-{event.pk}.ics")


@require_GET
def working_group_feed(request: HttpRequest, slug: str) -> HttpResponse:
    """Every event of a working group, for its members and the secretariat (session or token)."""
    from community import policy
    from community.models import WorkingGroup

    from . import selectors

    member = _request_member(request)
    group = WorkingGroup.objects.filter(slug=slug).first()
    if (
        member is None
        or group is None
        or not (policy.is_secretariat(member) or policy.role_in(member, group.pk) is not None)
    ):
        raise Http404
    events = selectors.working_group_feed_events(working_group=group)
    body = calendar_for(events, name=f"Minga {group}")
    return _ics_response(body, f"{group.slug}.ics")


@require_GET
def member_feed(request: HttpRequest, token: str) -> HttpResponse:
    """The private feed: the member's groups, network-wide events and registrations."""
    from . import selectors

    member = selectors.feed_member_for_token(token)
    if member is None:
        raise Http404
    events = selectors.member_feed_events(member=member)
    body = calendar_for(
        events,
        name=f"Minga ({member.name})",
        member=member,
        reminder_offsets=selectors.reminder_offsets(member=member),
    )
    return _ics_response(body, "minga.ics")
