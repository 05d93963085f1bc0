"""Reads of the events calendar. Pages, API, feeds and tasks go through these.

Signatures (for the calendar pages):

    events_visible_to(*, member, start=None, end=None, working_group=None, kind=None) -> QuerySet[Event]
        Events `member` may see (None/anonymous: public-visibility events only) whose series
        overlaps [start, end); working_group is a slug; related rows the list needs are
        select_related/prefetched (working_group, room, topics, overrides, and the member's own
        registration as `my_registrations`). Cancelled events are included.
    occurrences_visible_to(*, member, start, end, working_group=None, kind=None,
                           include_cancelled=True) -> list[Occurrence]
        The same, expanded into occurrences (events.recurrence.Occurrence: event,
        original_start, starts_at, ends_at, cancelled, moved) overlapping [start, end), in order.
    event_for_member(*, event_id, member) -> Event
        Access function: the event if visible to `member`, else Http404 (a hidden event and a
        missing one look the same).
    event_for_organizer(*, event_id, member) -> Event
        Access function: Http404 if not visible, PermissionDenied if not an organizer of it
        (policy.can_manage_event: co-organizers included). `organizers` come prefetched.
    can_see_event(member, event) -> bool;  can_organize(member, event) -> bool
        can_organize: every organizer action on this event (community.policy.can_manage_event:
        the group's chairs and vice-chairs, the secretariat, and the event's listed organizers).
    my_registration(*, event, member) -> Registration | None   (withdrawn ones included)
    registration_state(*, event, member, now=None) -> RegistrationState
        For the registration button: state in "registered" | "waitlisted" | "full" (will be
        waitlisted) | "open" | "closed" | "not_allowed" | "cancelled", plus position.
    registrations_for_organizer(*, event) -> QuerySet[Registration]
        Not withdrawn, ordered by constituency, organization, name (the list "by delegation").
    registrations_csv(*, event) -> str
    agenda_for(*, event) -> QuerySet[AgendaItem]   (speakers and linked documents prefetched)
    documents_for(*, event) -> QuerySet[EventDocument]
    document_for_member(*, event_id, document_id, member) -> EventDocument
        Access function: Http404 unless the document's event is visible to `member`.
    reminder_offsets(*, member) -> list[int]   minutes before, defaults [1440, 60]
    calendar_feed_url(*, member, base_url) -> str | None   the member's private feed URL
    feed_member_for_token(raw) -> User | None
    working_group_feed_events(*, working_group) -> QuerySet[Event]
    member_feed_events(*, member) -> QuerySet[Event]
        Events of the member's groups, network-wide public ones, those they registered for and
        those they organize.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from community import policy
from community.models import Role, User, WorkingGroup

from . import recurrence
from .models import (
    DEFAULT_REMINDER_OFFSETS_MINUTES,
    AgendaItem,
    CalendarFeedToken,
    Event,
    EventDocument,
    Registration,
    ReminderPreference,
)
from .recurrence import Occurrence


def _organized_q(member_id: int | None) -> Q:
    """Events listing the member among their organizers: a subquery, so the list stays one
    query and no row is repeated."""
    through = Event.organizers.through.objects.filter(user_id=member_id)
    return Q(pk__in=through.values("event_id"))


def _visibility_q(member: object) -> Q | None:
    """None = everything; a Q otherwise. An event's organizers always see it."""
    if policy.is_secretariat(member):
        return None
    public = Q(visibility=Event.Visibility.PUBLIC)
    if not policy.is_participant(member):
        return public
    group_ids = list(policy.roles_of(member).keys())
    return public | Q(working_group_id__in=group_ids) | _organized_q(getattr(member, "pk", None))


def can_see_event(member: object, event: Event) -> bool:
    if event.visibility == Event.Visibility.PUBLIC or policy.is_secretariat(member):
        return True
    if not policy.is_participant(member):
        return False
    return policy.role_in(member, event.working_group_id) is not None or (
        policy.is_event_organizer(member, event)
    )


def can_organize(member: object, event: Event) -> bool:
    """Every organizer action on this event (policy.can_manage_event)."""
    return policy.can_manage_event(member, event)


def events_visible_to(
    *,
    member: User | None,
    start: datetime | None = None,
    end: datetime | None = None,
    working_group: str | None = None,
    kind: str | None = None,
) -> QuerySet[Event]:
    qs = Event.objects.all()
    visibility = _visibility_q(member)
    if visibility is not None:
        qs = qs.filter(visibility)
    if working_group:
        qs = qs.filter(working_group__slug=working_group)
    if kind:
        qs = qs.filter(kind=kind)
    if end is not None:
        # Moved occurrences may start before the series: keep events with an override there.
        qs = qs.filter(Q(starts_at__lt=end) | Q(overrides__starts_at__lt=end))
    if start is not None:
        # One-off events must end after `start`; series are expanded by the caller (their end
        # depends on the rule), so every series that started before `end` stays.
        qs = qs.filter(Q(ends_at__gt=start) | ~Q(recurrence="") | Q(overrides__ends_at__gt=start))
    qs = qs.distinct().select_related("working_group", "room")
    prefetches: list[str | Prefetch] = ["overrides", "topics"]
    if member is not None and member.is_authenticated:
        prefetches.append(
            Prefetch(
                "registrations",
                queryset=Registration.objects.filter(member=member),
                to_attr="my_registrations",
            )
        )
    return qs.prefetch_related(*prefetches)


def occurrences_visible_to(
    *,
    member: User | None,
    start: datetime,
    end: datetime,
    working_group: str | None = None,
    kind: str | None = None,
    include_cancelled: bool = True,
) -> list[Occurrence]:
    found: list[Occurrence] = []
    for event in events_visible_to(
        member=member, start=start, end=end, working_group=working_group, kind=kind
    ):
        found.extend(
            recurrence.expand(
                event,
                start,
                end,
                overrides=event.overrides.all(),
                include_cancelled=include_cancelled,
            )
        )
    found.sort(key=lambda o: (o.starts_at, o.event.pk))
    return found


def event_for_member(*, event_id: int, member: User | None) -> Event:
    event = (
        Event.objects.select_related("working_group", "room")
        .prefetch_related("overrides", "topics", "organizers")
        .filter(pk=event_id)
        .first()
    )
    if event is None or not can_see_event(member, event):
        raise Http404
    return event


def event_for_organizer(*, event_id: int, member: User) -> Event:
    event = event_for_member(event_id=event_id, member=member)
    if not can_organize(member, event):
        raise PermissionDenied(_("Only the organizers of this event may do this."))
    return event


def my_registration(*, event: Event, member: User | None) -> Registration | None:
    if member is None or not member.is_authenticated:
        return None
    cached = getattr(event, "my_registrations", None)
    if cached is not None:
        return cached[0] if cached else None
    return Registration.objects.filter(event=event, member=member).first()


def is_observer_for(member: object, event: Event) -> bool:
    """Observers register only where the organizer allows (see policy: observers read only)."""
    if policy.is_secretariat(member):
        return False
    roles = policy.roles_of(member)
    if event.working_group_id is not None and event.working_group_id in roles:
        return roles[event.working_group_id] == Role.OBSERVER
    # Network-wide events, or a public event of a group the member is not in: a member who
    # participates nowhere with more than an observer's role is an observer here too.
    return not any(r != Role.OBSERVER for r in roles.values())


@dataclass(frozen=True)
class RegistrationState:
    state: str
    position: int | None = None


def registration_state(  # noqa: PLR0911 - one answer per state, in order of precedence
    *, event: Event, member: User | None, now: datetime | None = None
) -> RegistrationState:
    now = now or timezone.now()
    if event.is_cancelled:
        return RegistrationState("cancelled")
    mine = my_registration(event=event, member=member)
    if mine is not None and mine.status == Registration.Status.REGISTERED:
        return RegistrationState("registered")
    if mine is not None and mine.status == Registration.Status.WAITLISTED:
        return RegistrationState("waitlisted", mine.position)
    if not policy.is_participant(member) or (
        is_observer_for(member, event) and not event.allow_observers
    ):
        return RegistrationState("not_allowed")
    if not registration_open(event=event, now=now):
        return RegistrationState("closed")
    if event.capacity is not None:
        taken = event.registrations.filter(status=Registration.Status.REGISTERED).count()
        if taken >= event.capacity:
            return RegistrationState("full")
    return RegistrationState("open")


def registration_open(*, event: Event, now: datetime) -> bool:
    opens = event.registration_opens_at
    closes = event.registration_closes_at
    if closes is None:
        # Without an explicit close, registration closes when the (last) occurrence ends.
        closes = recurrence.series_end(event) if event.is_recurring else event.ends_at
    return (opens is None or now >= opens) and (closes is None or now < closes)


def registrations_for_organizer(*, event: Event) -> QuerySet[Registration]:
    return (
        Registration.objects.filter(event=event)
        .exclude(status=Registration.Status.WITHDRAWN)
        .select_related("member__organization")
        .order_by(
            "member__organization__kind",
            "member__organization__name",
            "member__name",
            "pk",
        )
    )


def registrations_csv(*, event: Event) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            _("Name"),
            _("Email"),
            _("Organization"),
            _("Constituency"),
            _("Country"),
            _("Status"),
            _("Waitlist position"),
            _("Attended"),
        ]
    )
    for reg in registrations_for_organizer(event=event):
        org = reg.member.organization
        attended = {True: _("yes"), False: _("no"), None: ""}[reg.attended]
        writer.writerow(
            [
                _csv_safe(reg.member.name),
                reg.member.email,
                _csv_safe(org.name) if org else "",
                org.get_constituency_display() if org else "",
                org.country.code if org and org.country else "",
                reg.get_status_display(),
                reg.position or "",
                attended,
            ]
        )
    return out.getvalue()


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ runs as a formula in spreadsheets: neutralise it.
    return "'" + value if value[:1] in {"=", "+", "-", "@", "\t", "\r"} else value


def agenda_for(*, event: Event) -> QuerySet[AgendaItem]:
    return event.agenda_items.prefetch_related("speaker_members", "documents").order_by(
        "position", "starts_at"
    )


def documents_for(*, event: Event) -> QuerySet[EventDocument]:
    return event.documents.order_by("position", "pk")


def document_for_member(*, event_id: int, document_id: int, member: User | None) -> EventDocument:
    """Access function: the document if its event is visible to `member`, else Http404."""
    event = event_for_member(event_id=event_id, member=member)
    document = EventDocument.objects.filter(pk=document_id, event=event).first()
    if document is None:
        raise Http404
    document.event = event
    return document


def reminder_offsets(*, member: User) -> list[int]:
    pref = ReminderPreference.objects.filter(member=member).first()
    if pref is None:
        return list(DEFAULT_REMINDER_OFFSETS_MINUTES)
    return list(pref.offsets_minutes)


def calendar_feed_url(*, member: User, base_url: str) -> str | None:
    """The member's private feed URL, or None before the first one was made."""
    token = CalendarFeedToken.objects.filter(member=member).first()
    if token is None:
        return None
    return f"{base_url.rstrip('/')}/events/feeds/{token.raw_token}.ics"


def feed_member_for_token(raw: str) -> User | None:
    if not raw or len(raw) > 128:
        return None
    token = (
        CalendarFeedToken.objects.select_related("member")
        .filter(token_hash=CalendarFeedToken.hash_token(raw))
        .first()
    )
    if token is None or not policy.is_participant(token.member):
        return None
    return token.member


def _feed_queryset() -> QuerySet[Event]:
    return (
        Event.objects.select_related("working_group", "room")
        .prefetch_related("overrides", "topics", "organizers")
        .order_by("starts_at", "pk")
    )


def working_group_feed_events(*, working_group: WorkingGroup) -> QuerySet[Event]:
    return _feed_queryset().filter(working_group=working_group)


def member_feed_events(*, member: User) -> QuerySet[Event]:
    registered = Registration.objects.filter(
        event=OuterRef("pk"), member=member, status=Registration.Status.REGISTERED
    )
    group_ids = list(policy.roles_of(member).keys())
    return (
        _feed_queryset()
        .filter(
            Q(working_group_id__in=group_ids)
            | Q(working_group__isnull=True, visibility=Event.Visibility.PUBLIC)
            | Exists(registered)
            | _organized_q(member.pk)
        )
        .prefetch_related(
            Prefetch(
                "registrations",
                queryset=Registration.objects.filter(member=member),
                to_attr="my_registrations",
            )
        )
    )
