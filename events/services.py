"""Writes of the events calendar: keyword-only, one transaction, full_clean() before save.

Signatures (for the calendar pages; errors are ValidationError with field and code, or
PermissionDenied):

    event_create(*, actor, title, starts_at, ends_at, timezone, kind="workshop",
                 working_group=None, description="", topics=(), organizers=(), venue="",
                 city="", country="", online=False, room=None, capacity=None,
                 registration_opens_at=None, registration_closes_at=None,
                 visibility="public", allow_observers=False, recurrence="", exdates=()) -> Event
        `starts_at`/`ends_at`: aware instants, or naive local wall-clock times in `timezone`
        (what a form's datetime-local gives). Codes: end_before_start (ends_at),
        invalid_timezone (timezone), invalid_rrule / rrule_frequency / rrule_start_mismatch
        (recurrence), window_order (registration_closes_at).
    event_update(*, event, actor, changes: Mapping[str, object], message="") -> Event
        `changes` holds any field of event_create (times as above). Bumps `sequence` when time,
        place, status, title or recurrence change.
        capacity_below_registrations (capacity).
    event_reschedule(*, event, actor, starts_at, ends_at, timezone=None, message="") -> Event
    occurrence_reschedule(*, event, actor, original_start, starts_at, ends_at) -> EventOccurrenceOverride
    occurrence_cancel(*, event, actor, original_start, message="") -> EventOccurrenceOverride
    event_cancel(*, event, actor, message="") -> Event     (stays, status cancelled, in feeds)
        Its own live room (`event-<id>`) is locked: readable, only its moderators post.
    event_duplicate(*, event, actor, starts_at) -> Event  (same everything at a new start)
    agenda_item_create(*, event, actor, title, starts_at, ends_at, speakers="",
                       speaker_members=(), position=None) -> AgendaItem
    agenda_item_delete(*, item, actor) -> None
    agenda_item_documents_set(*, item, actor, documents) -> AgendaItem
    document_add(*, event, actor, title, uploaded_file=None, url="") -> EventDocument
        Codes: file_or_link, too_large, unsupported_type, invalid (file, url).
    document_delete(*, document, actor) -> None
    live_room_create(*, event, actor) -> Room
        Codes: live_room_exists, event_cancelled.
    registration_create(*, event, member, now=None) -> Registration
        Codes: already_registered, registration_closed, event_cancelled, observers_not_allowed
        (PermissionDenied for an event the member may not see).
    registration_withdraw(*, event, member) -> Registration   (promotes the first waitlisted)
    attendance_mark(*, event, actor, member, attended: bool | None) -> Registration
    reminder_preference_set(*, member, offsets_minutes) -> ReminderPreference
    feed_token_regenerate(*, member) -> tuple[CalendarFeedToken, str]   (raw token)
    feed_token_ensure(*, member) -> CalendarFeedToken
    organizers_named(names) -> list[User]   (handles or e-mails of active members; read only)
        Codes: unknown_member, too_many_organizers (organizers).
    reminders_send_due(*, now=None) -> list[ReminderDelivery]

Side effects common to all: signals from events/signals.py after commit. This app sends no
e-mail of its own: notifications turns the signals into inbox rows and e-mails them (with the
.ics built by events/ical.py: invitation_for), one e-mail per member per change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone as dj_timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from minga.signals import send_on_commit

from community import policy
from community.models import Topic, User, WorkingGroup, available_timezones
from forums import attachments
from forums import moderation as forum_moderation
from forums import services as forum_services
from forums.models import Room
from forums.rendering import render_markdown
from notifications import bus

from . import recurrence, selectors, signals
from .models import (
    DEFAULT_REMINDER_OFFSETS_MINUTES,
    AgendaItem,
    CalendarFeedToken,
    Event,
    EventDocument,
    EventOccurrenceOverride,
    Registration,
    ReminderDelivery,
    ReminderPreference,
)

# Changes a calendar client must see: they bump SEQUENCE (RFC 5545 3.8.7.4).
SEQUENCE_FIELDS = frozenset(
    {
        "title",
        "timezone",
        "local_start_date",
        "local_start_time",
        "duration",
        "venue",
        "city",
        "country",
        "online",
        "status",
        "recurrence",
        "exdates",
    }
)
UPDATABLE = frozenset(
    {
        "title",
        "kind",
        "description",
        "working_group",
        "topics",
        "organizers",
        "starts_at",
        "ends_at",
        "timezone",
        "venue",
        "city",
        "country",
        "online",
        "room",
        "capacity",
        "registration_opens_at",
        "registration_closes_at",
        "visibility",
        "allow_observers",
        "recurrence",
        "exdates",
    }
)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
TEXT_FIELDS = ("title", "description", "venue", "city")


def _plain(value: str) -> str:
    """Text as stored: no control characters (PostgreSQL refuses NUL; calendars the rest)."""
    return _CONTROL.sub("", value or "")


def _error(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def _check_timezone(zone: str) -> None:
    if zone not in available_timezones():
        raise _error(
            "timezone",
            _("%(value)s is not a known time zone; use an IANA name such as America/Lima.")
            % {"value": zone},
            "invalid_timezone",
        )


def _require_manager(actor: User, event: Event) -> None:
    """Organizer actions on ONE event: its group's chairs and vice-chairs, the secretariat, and
    the members it lists as organizers (community.policy.can_manage_event)."""
    if not policy.can_manage_event(actor, event):
        raise PermissionDenied(
            _(
                "Only the organizers of this event, the chairs and vice-chairs of its group and "
                "the secretariat may do this."
            )
        )


def _require_organizer(actor: User, working_group_id: int | None) -> None:
    if not policy.can_organize_events(actor, working_group_id):
        raise PermissionDenied(
            _(
                "Only the chairs and vice-chairs of the group, or the secretariat, organize its events."
            )
        )


def _set_times(event: Event, starts_at: datetime, ends_at: datetime, zone: str) -> None:
    """Store the local start and duration the organizer meant, and the derived instants."""
    _check_timezone(zone)
    start_i = starts_at if starts_at.tzinfo else recurrence.to_instant(starts_at, zone)
    end_i = ends_at if ends_at.tzinfo else recurrence.to_instant(ends_at, zone)
    if end_i <= start_i:
        raise _error("ends_at", _("The event must end after it starts."), "end_before_start")
    event.timezone = zone
    # A typed local time is kept as typed, even one in a DST gap: the series' other dates keep
    # that wall-clock time (docs/calendar.md); only this date's instant follows the DST rule.
    typed = starts_at if starts_at.tzinfo is None else start_i
    event.local_start_date, event.local_start_time = recurrence.split_local(typed, zone)
    event.duration = end_i - start_i
    _derive_instants(event)


def _window_aware(event: Event) -> None:
    """Registration window bounds given as naive local times are read in the event's zone."""
    for field in ("registration_opens_at", "registration_closes_at"):
        value = getattr(event, field)
        if value is not None and value.tzinfo is None:
            setattr(event, field, recurrence.to_instant(value, event.timezone))


def _derive_instants(event: Event) -> None:
    event.starts_at = recurrence.to_instant(recurrence.local_start(event), event.timezone)
    event.ends_at = event.starts_at + event.duration


def _normalize_exdates(event: Event, values: Iterable[datetime | str]) -> list[str]:
    keys: list[str] = []
    for value in values:
        instant = recurrence.parse_exdate(value) if isinstance(value, str) else value
        if instant.tzinfo is None:
            instant = recurrence.to_instant(instant, event.timezone)
        if not recurrence.is_occurrence(event, instant):
            raise _error(
                "exdates",
                _("%(when)s is not an occurrence of this event.")
                % {"when": instant.strftime("%Y-%m-%d %H:%M UTC")},
                "not_an_occurrence",
            )
        keys.append(recurrence.exdate_key(instant))
    return sorted(set(keys))


def _validate_recurrence(event: Event) -> None:
    event.recurrence = recurrence.validate_rrule(
        event.recurrence, recurrence.local_start(event), event.timezone
    )
    if not event.recurrence and event.exdates:
        raise _error(
            "exdates", _("Only a repeating event has excluded dates."), "not_an_occurrence"
        )


def _render(event: Event) -> None:
    event.description_html = render_markdown(event.description) if event.description else ""


MAX_ORGANIZERS = 20  # co-organizers of one event, typed by handle or e-mail


def organizers_named(names: Iterable[str]) -> list[User]:
    """The members `names` (handles, with or without "@", or e-mail addresses) name, in the
    order given, without repeats: active participants only (active, e-mail verified), in one
    query. Code (field `organizers`): unknown_member (naming every name not found),
    too_many_organizers."""
    wanted: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        name = name[1:] if name.startswith("@") else name
        if name and name not in wanted:
            wanted.append(name)
    if len(wanted) > MAX_ORGANIZERS:
        raise _error(
            "organizers",
            ngettext(
                "At most %(count)s co-organizer.",
                "At most %(count)s co-organizers.",
                MAX_ORGANIZERS,
            )
            % {"count": MAX_ORGANIZERS},
            "too_many_organizers",
        )
    if not wanted:
        return []
    found = User.objects.filter(
        Q(handle__in=wanted) | Q(email__in=wanted),
        is_active=True,
        emailaddress__verified=True,
    ).distinct()
    by_name: dict[str, User] = {}
    for user in found:
        by_name[user.handle] = by_name[user.email] = user
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise _error(
            "organizers",
            _("No active member has the handle or e-mail address: %(names)s.")
            % {"names": ", ".join(missing)},
            "unknown_member",
        )
    return list({by_name[n].pk: by_name[n] for n in wanted}.values())


def _organizers_change(
    actor: User, event: Event, organizers: Iterable[User] | None
) -> list[User] | None:
    """The new organizers (None: unchanged), once the actor may name them: by role only
    (policy.can_name_co_organizers); naming the same people again is no change, so a
    co-organizer may send the list back as it is."""
    if organizers is None:
        return None
    organizers = list(organizers)
    if policy.can_name_co_organizers(actor, event):
        return organizers
    wanted = set(_organizer_ids(event.created_by_id, organizers))
    if wanted != set(event.organizers.values_list("pk", flat=True)):
        raise PermissionDenied(
            _(
                "Only the chairs and vice-chairs of the event's group and the secretariat "
                "change its co-organizers."
            )
        )
    return organizers


def _organizers_replace(event: Event, organizers: Sequence[User]) -> None:
    """Set the event's organizers. A member taken off the list of an event with its own live
    room may have been reading or moderating it as an organizer only: their sockets re-check
    their rooms after commit (`access.changed` on `user.<id>`, as a membership change does)."""
    before = set(event.organizers.values_list("pk", flat=True))
    wanted = _organizer_ids(event.created_by_id, organizers)
    event.organizers.set(wanted)
    if event.room_id is not None:
        for user_id in sorted(before - set(wanted)):
            bus.publish_on_commit(bus.user_group(user_id), {"type": "access.changed"})


def _organizer_ids(creator_id: int | None, organizers: Iterable[User]) -> list[int]:
    """The creator stays an organizer, whatever a later edit names."""
    ids = [u.pk for u in organizers]
    if creator_id is not None and creator_id not in ids:
        ids.insert(0, creator_id)
    return ids


def _registered_count(event: Event) -> int:
    return event.registrations.filter(status=Registration.Status.REGISTERED).count()


@transaction.atomic
def event_create(
    *,
    actor: User,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    timezone: str,
    kind: str = Event.Kind.WORKSHOP,
    working_group: WorkingGroup | None = None,
    description: str = "",
    topics: Iterable[Topic] = (),
    organizers: Iterable[User] = (),
    venue: str = "",
    city: str = "",
    country: str = "",
    online: bool = False,
    room: Room | None = None,
    capacity: int | None = None,
    registration_opens_at: datetime | None = None,
    registration_closes_at: datetime | None = None,
    visibility: str = Event.Visibility.PUBLIC,
    allow_observers: bool = False,
    recurrence: str = "",
    exdates: Iterable[datetime | str] = (),
) -> Event:
    """Schedule an event; `actor` must organize events of `working_group` (None: secretariat).

    Side effects: the actor becomes an organizer (with `organizers`, the co-organizers: they
    manage this event, see community.policy.can_manage_event and docs/permissions.md); emits
    `event_scheduled` after commit.
    """
    _require_organizer(actor, working_group.pk if working_group else None)
    event = Event(
        kind=kind,
        title=_plain(title),
        description=_plain(description),
        working_group=working_group,
        created_by=actor,
        venue=_plain(venue),
        city=_plain(city),
        country=country,
        online=online,
        room=room,
        capacity=capacity,
        registration_opens_at=registration_opens_at,
        registration_closes_at=registration_closes_at,
        visibility=visibility,
        allow_observers=allow_observers,
        recurrence=recurrence,
    )
    _set_times(event, starts_at, ends_at, timezone)
    _window_aware(event)
    _validate_recurrence(event)
    event.exdates = _normalize_exdates(event, exdates)
    _validate_topics(list(topics), working_group)
    _render(event)
    event.full_clean()
    event.save()
    event.topics.set(list(topics))
    event.organizers.set(_organizer_ids(actor.pk, organizers))
    event_id, actor_id = event.pk, actor.pk
    send_on_commit(
        signals.event_scheduled, sender=Event, event=event, event_id=event_id, actor_id=actor_id
    )
    return event


def _validate_topics(topics: list[Topic], working_group: WorkingGroup | None) -> None:
    if working_group is None:
        return
    stray = [t for t in topics if t.working_group_id != working_group.pk]
    if stray:
        raise _error(
            "topics",
            _("Topics must belong to the event's working group."),
            "topic_outside_group",
        )


@transaction.atomic
def event_update(
    *, event: Event, actor: User, changes: Mapping[str, Any], message: str = ""
) -> Event:
    """Change an event's fields (any of event_create's; times aware or naive-local).

    `organizers` replaces the co-organizers; the event's creator stays one. Who may: every
    organizer of the event (policy.can_manage_event, co-organizers included), except that
    changing the co-organizers (PermissionDenied unless the list is unchanged) and moving the
    event to another working group take the rights of role (policy.can_name_co_organizers;
    can_organize_events over both groups).

    Side effects: locks the event row; bumps `sequence` when time, place, status, title,
    recurrence or exdates change; reminders follow the new times by themselves (the sweep
    reads the event's current occurrences) and unsent reminder rows for starts that no longer
    exist are dropped; emits `event_changed` after commit (notifications e-mails the
    registrants, with an updated invitation).
    """
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValidationError(
            _("These fields cannot be changed: %(fields)s")
            % {"fields": ", ".join(sorted(unknown))},
            code="unknown_field",
        )
    locked = Event.objects.select_for_update().get(pk=event.pk)
    _require_manager(actor, locked)
    if locked.is_cancelled:
        raise ValidationError(_("A cancelled event cannot be changed."), code="event_cancelled")
    before = {f: getattr(locked, f) for f in SEQUENCE_FIELDS}
    data = dict(changes)
    if "working_group" in data:
        _move_to_group(actor, locked, data.pop("working_group"))
    topics = data.pop("topics", None)
    organizers = _organizers_change(actor, locked, data.pop("organizers", None))
    exdates = data.pop("exdates", None)
    if {"starts_at", "ends_at", "timezone"} & set(data):
        _apply_time_changes(locked, data)
    for field, value in data.items():
        setattr(locked, field, _plain(value) if field in TEXT_FIELDS else value)
    _window_aware(locked)
    _validate_recurrence(locked)
    if exdates is not None:
        locked.exdates = _normalize_exdates(locked, exdates)
    if "capacity" in data:
        _check_capacity(locked)
    _validate_topics(list(topics or ()), locked.working_group)
    _render(locked)
    changed = sorted(f for f in SEQUENCE_FIELDS if getattr(locked, f) != before[f])
    bumped = bool(changed)
    if bumped:
        locked.sequence = F("sequence") + 1
    locked.full_clean(exclude=["sequence"])
    locked.save()
    locked.refresh_from_db(fields=["sequence"])
    if topics is not None:
        locked.topics.set(list(topics))
    if organizers is not None:
        _organizers_replace(locked, organizers)
    if {"visibility", "working_group"} & set(changes):
        _sync_own_room(locked)
    if {"local_start_date", "local_start_time", "timezone", "recurrence", "exdates"} & set(changed):
        # Unsent reminders for starts that moved: the next sweep makes them anew.
        ReminderDelivery.objects.filter(registration__event=locked, sent_at__isnull=True).delete()
    _copy_into(event, locked)
    all_changed = sorted(set(changed) | set(changes))
    event_id, actor_id = event.pk, actor.pk
    send_on_commit(
        signals.event_changed,
        sender=Event,
        event=event,
        event_id=event_id,
        actor_id=actor_id,
        changed=all_changed,
        message=message,
        sequence_bumped=bumped,
    )
    return event


def _move_to_group(actor: User, event: Event, group: WorkingGroup | None) -> None:
    """Moving an event takes the rights of role over both groups (a co-organizer manages the
    event where it is); naming its own group again is no move."""
    group_id = group.pk if group else None
    if group_id != event.working_group_id:
        _require_organizer(actor, event.working_group_id)
        _require_organizer(actor, group_id)
    event.working_group = group


def _apply_time_changes(event: Event, data: dict[str, Any]) -> None:
    """Pop starts_at/ends_at/timezone from `data`; a missing one keeps its current meaning."""
    zone = data.pop("timezone", event.timezone)
    _check_timezone(zone)
    new_start = data.pop("starts_at", None)
    new_end = data.pop("ends_at", None)
    if new_start is None:
        # A new zone alone keeps the wall-clock time the organizer typed.
        new_start = recurrence.local_start(event) if zone != event.timezone else event.starts_at
    if new_end is None:
        start_i = new_start if new_start.tzinfo else recurrence.to_instant(new_start, zone)
        new_end = start_i + event.duration
    _set_times(event, new_start, new_end, zone)


def _check_capacity(event: Event) -> None:
    if event.capacity is None:
        return
    taken = _registered_count(event)
    if event.capacity < taken:
        raise _error(
            "capacity",
            ngettext(
                "%(count)s member is already registered; the capacity cannot be lower.",
                "%(count)s members are already registered; the capacity cannot be lower.",
                taken,
            )
            % {"count": taken},
            "capacity_below_registrations",
        )


def _copy_into(target: Event, source: Event) -> None:
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    for attr in ("_prefetched_objects_cache", "my_registrations"):
        if attr in target.__dict__:
            delattr(target, attr)


def event_reschedule(
    *,
    event: Event,
    actor: User,
    starts_at: datetime,
    ends_at: datetime,
    timezone: str | None = None,
    message: str = "",
) -> Event:
    """Move the event (a series: every occurrence) to new times.

    Side effects: those of event_update (sequence bump, reminders moved, `event_changed`
    with `message`).
    """
    changes: dict[str, Any] = {"starts_at": starts_at, "ends_at": ends_at}
    if timezone is not None:
        changes["timezone"] = timezone
    return event_update(event=event, actor=actor, changes=changes, message=message)


@transaction.atomic
def occurrence_reschedule(
    *,
    event: Event,
    actor: User,
    original_start: datetime,
    starts_at: datetime,
    ends_at: datetime,
) -> EventOccurrenceOverride:
    """Move one occurrence of a series (RECURRENCE-ID in feeds).

    Side effects: bumps the event's sequence; emits `event_changed` after commit.
    """
    return _override(
        event=event,
        actor=actor,
        original_start=original_start,
        starts_at=starts_at,
        ends_at=ends_at,
        cancelled=False,
        message="",
    )


@transaction.atomic
def occurrence_cancel(
    *, event: Event, actor: User, original_start: datetime, message: str = ""
) -> EventOccurrenceOverride:
    """Cancel one occurrence of a series (it stays in feeds as STATUS:CANCELLED).

    Side effects: bumps the event's sequence; emits `event_cancelled` with `original_start`
    after commit.
    """
    return _override(
        event=event,
        actor=actor,
        original_start=original_start,
        starts_at=None,
        ends_at=None,
        cancelled=True,
        message=message,
    )


def _override(
    *,
    event: Event,
    actor: User,
    original_start: datetime,
    starts_at: datetime | None,
    ends_at: datetime | None,
    cancelled: bool,
    message: str,
) -> EventOccurrenceOverride:
    locked = Event.objects.select_for_update().get(pk=event.pk)
    _require_manager(actor, locked)
    if locked.is_cancelled:
        raise ValidationError(_("A cancelled event cannot be changed."), code="event_cancelled")
    original = original_start.astimezone(UTC)
    excluded = {recurrence.parse_exdate(x) for x in locked.exdates}
    if (
        not locked.is_recurring
        or original in excluded
        or not recurrence.is_occurrence(locked, original)
    ):
        raise _error(
            "original_start",
            _("%(when)s is not an occurrence of this event.")
            % {"when": original.strftime("%Y-%m-%d %H:%M UTC")},
            "not_an_occurrence",
        )
    if starts_at is not None and starts_at.tzinfo is None:
        starts_at = recurrence.to_instant(starts_at, locked.timezone)
    if ends_at is not None and ends_at.tzinfo is None:
        ends_at = recurrence.to_instant(ends_at, locked.timezone)
    override = EventOccurrenceOverride.objects.filter(
        event=locked, original_start=original
    ).first() or EventOccurrenceOverride(event=locked, original_start=original)
    override.starts_at, override.ends_at, override.cancelled = starts_at, ends_at, cancelled
    override.full_clean()
    override.save()
    Event.objects.filter(pk=locked.pk).update(sequence=F("sequence") + 1, updated=dj_timezone.now())
    deliveries = ReminderDelivery.objects.filter(
        registration__event=locked, occurrence_start=original
    )
    if cancelled:
        deliveries.filter(sent_at__isnull=True).delete()
    else:
        # A moved date is reminded of again at its new time, as a rescheduled one-off event is
        # (its reminders are keyed by the new start): the rows of the old time go.
        deliveries.delete()
    locked.refresh_from_db()
    _copy_into(event, locked)
    event_id, actor_id = event.pk, actor.pk
    if cancelled:
        send_on_commit(
            signals.event_cancelled,
            sender=Event,
            event=event,
            event_id=event_id,
            actor_id=actor_id,
            message=message,
            original_start=original,
        )
    else:
        send_on_commit(
            signals.event_changed,
            sender=Event,
            event=event,
            event_id=event_id,
            actor_id=actor_id,
            changed=["occurrence"],
            message=message,
            sequence_bumped=True,
            original_start=original,
            starts_at=starts_at,
        )
    return override


@transaction.atomic
def event_cancel(*, event: Event, actor: User, message: str = "") -> Event:
    """Cancel the event: it stays (feeds show STATUS:CANCELLED), registrations are kept.

    Side effects: locks the event row; bumps `sequence`; unsent reminders are dropped and no
    new ones are due; the event's own live room is locked (see _lock_own_room: `room.updated`
    after commit); emits `event_cancelled` after commit (notifications e-mails registered and
    waitlisted members the cancellation, with METHOD:CANCEL).
    """
    locked = Event.objects.select_for_update().get(pk=event.pk)
    _require_manager(actor, locked)
    if locked.is_cancelled:
        raise ValidationError(_("The event is already cancelled."), code="already_cancelled")
    locked.status = Event.Status.CANCELLED
    locked.sequence = F("sequence") + 1
    locked.full_clean(exclude=["sequence"])
    locked.save()
    locked.refresh_from_db(fields=["sequence"])
    ReminderDelivery.objects.filter(registration__event=locked, sent_at__isnull=True).delete()
    _lock_own_room(locked, actor)
    _copy_into(event, locked)
    event_id, actor_id = event.pk, actor.pk
    send_on_commit(
        signals.event_cancelled,
        sender=Event,
        event=event,
        event_id=event_id,
        actor_id=actor_id,
        message=message,
        original_start=None,
    )
    return event


def event_duplicate(*, event: Event, actor: User, starts_at: datetime) -> Event:
    """A new event like `event` (no registrations, exdates or overrides) at `starts_at`.

    `starts_at` aware or naive-local in the event's zone; the duration is kept. The
    registration window moves by the same amount. A linked topic room is kept; the event's own
    live room is not (the copy gets its own on request). Side effects: those of event_create.
    """
    start_i = starts_at if starts_at.tzinfo else recurrence.to_instant(starts_at, event.timezone)
    delta = start_i - event.starts_at
    return event_create(
        actor=actor,
        title=event.title,
        kind=event.kind,
        working_group=event.working_group,
        description=event.description,
        topics=list(event.topics.all()),
        organizers=[u for u in event.organizers.all() if u.pk != actor.pk],
        starts_at=start_i,
        ends_at=start_i + event.duration,
        timezone=event.timezone,
        venue=event.venue,
        city=event.city,
        country=str(event.country.code) if event.country else "",
        online=event.online,
        # A topic room is shared; the event's own live room stays with it (the copy may ask
        # for its own).
        room=event.room if event.room and event.room.slug != live_room_slug(event) else None,
        capacity=event.capacity,
        registration_opens_at=(
            event.registration_opens_at + delta if event.registration_opens_at else None
        ),
        registration_closes_at=(
            event.registration_closes_at + delta if event.registration_closes_at else None
        ),
        visibility=event.visibility,
        allow_observers=event.allow_observers,
        recurrence=_recurrence_for_new_start(event, start_i),
    )


def _recurrence_for_new_start(event: Event, start_i: datetime) -> str:
    """Keep the rule when the new start is one of its dates, else make a one-off copy."""
    if not event.recurrence:
        return ""
    try:
        recurrence.build_rule(
            event.recurrence, recurrence.to_local(start_i, event.timezone), event.timezone
        )
    except ValidationError:
        return ""
    return event.recurrence


@transaction.atomic
def agenda_item_create(
    *,
    event: Event,
    actor: User,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    speakers: str = "",
    speaker_members: Iterable[User] = (),
    position: int | None = None,
    documents: Iterable[EventDocument] = (),
) -> AgendaItem:
    """Add an agenda item (times aware or naive-local in the event's zone). No signals.

    `documents`: documents of the same event it links (code document_outside_event).
    """
    _require_manager(actor, event)
    chosen_documents = list(documents)
    _check_documents_of(event.pk, chosen_documents)
    if starts_at.tzinfo is None:
        starts_at = recurrence.to_instant(starts_at, event.timezone)
    if ends_at.tzinfo is None:
        ends_at = recurrence.to_instant(ends_at, event.timezone)
    if position is None:
        position = event.agenda_items.count()
    item = AgendaItem(
        event=event,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        speakers=speakers,
        position=position,
    )
    item.full_clean()
    item.save()
    item.speaker_members.set(list(speaker_members))
    item.documents.set(chosen_documents)
    return item


@transaction.atomic
def agenda_item_delete(*, item: AgendaItem, actor: User) -> None:
    """Remove an agenda item. No signals."""
    _require_manager(actor, item.event)
    item.delete()


@transaction.atomic
def registration_create(*, event: Event, member: User, now: datetime | None = None) -> Registration:
    """Register `member` for `event`, or put them on the waitlist when it is full.

    Side effects: locks the event row (capacity and waitlist position are decided under the
    lock, so simultaneous registrations never overbook); emits `registration_created` after
    commit (notifications e-mails the member, with the invitation when registered).
    A withdrawn registration is reused (unique per event and member).
    """
    now = now or dj_timezone.now()
    if not policy.is_participant(member) or not selectors.can_see_event(member, event):
        raise PermissionDenied(_("You may not register for this event."))
    locked = Event.objects.select_for_update().get(pk=event.pk)
    if locked.is_cancelled:
        raise _error("event", _("This event was cancelled."), "event_cancelled")
    if selectors.is_observer_for(member, locked) and not locked.allow_observers:
        raise _error(
            "member",
            _("Observers may not register for this event."),
            "observers_not_allowed",
        )
    existing = Registration.objects.filter(event=locked, member=member).first()
    if existing is not None and existing.status != Registration.Status.WITHDRAWN:
        raise _error(
            "member", _("You are already registered for this event."), "already_registered"
        )
    if not selectors.registration_open(event=locked, now=now):
        raise _error(
            "event", _("Registration for this event is not open now."), "registration_closed"
        )
    registration = existing or Registration(event=locked, member=member)
    if locked.capacity is None or _registered_count(locked) < locked.capacity:
        registration.status, registration.position = Registration.Status.REGISTERED, None
    else:
        last = (
            Registration.objects.filter(event=locked, status=Registration.Status.WAITLISTED)
            .order_by("-position")
            .values_list("position", flat=True)
            .first()
        )
        registration.status = Registration.Status.WAITLISTED
        registration.position = (last or 0) + 1
    registration.attended = None
    registration.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            registration.save()
    except IntegrityError as exc:  # a double submit racing past the check above
        raise _error(
            "member", _("You are already registered for this event."), "already_registered"
        ) from exc
    reg_id, event_id, member_id = registration.pk, locked.pk, member.pk
    status, position = registration.status, registration.position
    send_on_commit(
        signals.registration_created,
        sender=Registration,
        registration=registration,
        registration_id=reg_id,
        event_id=event_id,
        member_id=member_id,
        status=status,
        position=position,
    )
    return registration


@transaction.atomic
def registration_withdraw(*, event: Event, member: User) -> Registration:
    """Withdraw `member`; a freed place goes to the first waitlisted member, in order.

    Side effects: locks the event row; renumbers the waitlist (1..n); emits
    `registration_promoted` for the promoted member after commit (notifications e-mails them
    the invitation); the withdrawn member's unsent reminders are dropped.
    """
    locked = Event.objects.select_for_update().get(pk=event.pk)
    registration = Registration.objects.filter(event=locked, member=member).first()
    if registration is None or registration.status == Registration.Status.WITHDRAWN:
        raise _error("member", _("You are not registered for this event."), "not_registered")
    was = registration.status
    old_position = registration.position
    registration.status, registration.position = Registration.Status.WITHDRAWN, None
    registration.full_clean(validate_unique=False)
    registration.save()
    registration.reminder_deliveries.filter(sent_at__isnull=True).delete()
    waitlist = Registration.objects.filter(event=locked, status=Registration.Status.WAITLISTED)
    if was == Registration.Status.WAITLISTED and old_position is not None:
        waitlist.filter(position__gt=old_position).update(position=F("position") - 1)
    elif was == Registration.Status.REGISTERED and not locked.is_cancelled:
        free = locked.capacity is None or _registered_count(locked) < locked.capacity
        first = waitlist.order_by("position", "pk").first() if free else None
        if first is not None:
            first.status, first.position = Registration.Status.REGISTERED, None
            first.save(update_fields=["status", "position", "updated"])
            waitlist.update(position=F("position") - 1)
            promoted_id, member_id, event_id = first.pk, first.member_id, locked.pk
            send_on_commit(
                signals.registration_promoted,
                sender=Registration,
                registration=first,
                registration_id=promoted_id,
                event_id=event_id,
                member_id=member_id,
            )
    return registration


@transaction.atomic
def attendance_mark(
    *, event: Event, actor: User, member: User, attended: bool | None
) -> Registration:
    """Record whether a registered member attended (None: unknown). No signals."""
    _require_manager(actor, event)
    registration = Registration.objects.filter(
        event=event, member=member, status=Registration.Status.REGISTERED
    ).first()
    if registration is None:
        raise _error("member", _("This member is not registered."), "not_registered")
    registration.attended = attended
    registration.save(update_fields=["attended", "updated"])
    return registration


@transaction.atomic
def reminder_preference_set(*, member: User, offsets_minutes: Sequence[int]) -> ReminderPreference:
    """Replace the member's reminder offsets ([] = no reminders). No signals."""
    pref = ReminderPreference.objects.filter(member=member).first() or ReminderPreference(
        member=member
    )
    pref.offsets_minutes = list(offsets_minutes)
    pref.full_clean()
    pref.save()
    return pref


@transaction.atomic
def feed_token_regenerate(*, member: User) -> tuple[CalendarFeedToken, str]:
    """Make a new private-feed token; the old URL answers 404 from now on. Returns the raw token."""
    token = CalendarFeedToken.objects.select_for_update().filter(member=member).first()
    token = token or CalendarFeedToken(member=member)
    raw = token.renew()
    token.full_clean()
    token.save()
    return token, raw


@transaction.atomic
def feed_token_ensure(*, member: User) -> CalendarFeedToken:
    """The member's feed token, made on first use. No signals."""
    token = CalendarFeedToken.objects.filter(member=member).first()
    if token is None:
        token, _raw = feed_token_regenerate(member=member)
    return token


REMINDER_LOOKAHEAD = timedelta(days=15)


def reminders_send_due(*, now: datetime | None = None) -> list[ReminderDelivery]:
    """Find every reminder whose time has come and emit `event_reminder_due` once for each.

    For each registered member of a scheduled event with an occurrence still to start, each
    offset of their preference whose due time (start - offset) has passed gets one
    ReminderDelivery row (unique per registration, offset and occurrence start). Rows are
    inserted and committed first, then the signal is sent and `sent_at` set; rows left unsent
    by a crash are sent by the next sweep. A reminder whose occurrence already started is
    skipped. Returns the deliveries sent now.
    """
    now = now or dj_timezone.now()
    prefs = dict(ReminderPreference.objects.values_list("member_id", "offsets_minutes"))
    events = (
        Event.objects.filter(status=Event.Status.SCHEDULED)
        .filter(starts_at__lt=now + REMINDER_LOOKAHEAD)
        # One-off events already under way are done; a series may still have occurrences.
        .filter(Q(starts_at__gt=now) | ~Q(recurrence=""))
        .prefetch_related("overrides")
    )
    with transaction.atomic():
        for event in events:
            occurrences = recurrence.expand(
                event,
                now,
                now + REMINDER_LOOKAHEAD,
                overrides=event.overrides.all(),
                include_cancelled=False,
            )
            upcoming = [o for o in occurrences if o.starts_at > now]
            if not upcoming:
                continue
            registrations = list(
                event.registrations.filter(status=Registration.Status.REGISTERED).only(
                    "pk", "member_id", "created"
                )
            )
            rows = []
            for occ in upcoming:
                for reg in registrations:
                    offsets = prefs.get(reg.member_id, DEFAULT_REMINDER_OFFSETS_MINUTES)
                    due_now = [
                        (occ.starts_at - timedelta(minutes=m), m)
                        for m in offsets
                        if occ.starts_at - timedelta(minutes=m) <= now
                    ]
                    if not due_now:
                        continue
                    # Only the latest reminder that came due: a member who registers 20 hours
                    # before, or a sweep back after an outage, gets one reminder, not a burst
                    # of stale ones. One that came due before the member registered is not
                    # sent (the invitation has just told them).
                    due, offset = max(due_now)
                    if due < reg.created:
                        continue
                    rows.append(
                        ReminderDelivery(
                            registration_id=reg.pk,
                            offset_minutes=offset,
                            occurrence_start=occ.original_start,
                            due_at=due,
                        )
                    )
            ReminderDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    pending = list(
        ReminderDelivery.objects.filter(
            sent_at__isnull=True,
            due_at__gt=now - REMINDER_LOOKAHEAD,
            registration__status=Registration.Status.REGISTERED,
            registration__event__status=Event.Status.SCHEDULED,
        ).select_related("registration")
    )
    # A moved date is announced at its new time; the delivery keeps the original as its key.
    moved = (
        {
            (event_id, original.astimezone(UTC)): start
            for event_id, original, start in EventOccurrenceOverride.objects.filter(
                event_id__in={d.registration.event_id for d in pending}, cancelled=False
            ).values_list("event_id", "original_start", "starts_at")
        }
        if pending
        else {}
    )
    sent: list[ReminderDelivery] = []
    for delivery in pending:
        event_id = delivery.registration.event_id
        original = delivery.occurrence_start.astimezone(UTC)
        signals.event_reminder_due.send(
            sender=ReminderDelivery,
            delivery_id=delivery.pk,
            registration_id=delivery.registration_id,
            event_id=event_id,
            member_id=delivery.registration.member_id,
            occurrence_start=moved.get((event_id, original), delivery.occurrence_start),
            original_start=delivery.occurrence_start,
            offset_minutes=delivery.offset_minutes,
        )
        ReminderDelivery.objects.filter(pk=delivery.pk).update(sent_at=now)
        delivery.sent_at = now
        sent.append(delivery)
    return sent


# --- Documents --------------------------------------------------------------------------------


@transaction.atomic
def document_add(
    *,
    event: Event,
    actor: User,
    title: str,
    uploaded_file: File | None = None,
    url: str = "",
) -> EventDocument:
    """Add a document to `event`: an uploaded file or a link (exactly one of them).

    The file's type is sniffed from its content with the forum attachments' allow-list
    (forums.attachments.sniff), never taken from its name or the client; the size limit is
    FORUMS_ATTACHMENT_MAX_BYTES, checked before anything is read and again while hashing.
    Codes: required (title), file_or_link, too_large, unsupported_type, invalid (empty file),
    invalid (url: only http and https). A refused file is never stored.
    Side effects: writes the file to default storage under a generated name and one row (the
    file is deleted again if the row cannot be written). No signals.
    """
    _require_manager(actor, event)
    url = (url or "").strip()
    if (uploaded_file is None) == (not url):
        raise _error(
            "file",
            _("Give a file or a link: one of the two."),
            "file_or_link",
        )
    document = EventDocument(
        event=event,
        title=_plain(title).strip(),
        url=url,
        uploaded_by=actor,
        position=event.documents.count(),
    )
    if uploaded_file is None:
        document.full_clean(exclude=["file"])
        document.save()
        return document
    content_type, size, digest = _check_document_file(uploaded_file)
    document.original_name = attachments.clean_name(str(uploaded_file.name or ""), content_type)
    document.content_type, document.size, document.sha256 = content_type, size, digest
    document.full_clean(exclude=["file", "url"])
    try:
        with transaction.atomic():
            # The storage write comes first so the row never names a file that is not there.
            document.file.save(document.original_name, uploaded_file, save=False)
            document.save(force_insert=True)
    except BaseException:
        if document.file.name:
            document.file.storage.delete(document.file.name)
        raise
    return document


def _check_document_file(uploaded_file: File) -> tuple[str, int, str]:
    """(sniffed content type, size, SHA-256) of an upload, or the ValidationError refusing it."""
    limit = attachments.max_bytes()
    too_large = _error(
        "file",
        _("The file is too large: at most %(size)s.") % {"size": filesizeformat(limit)},
        "too_large",
    )
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise too_large
    if not uploaded_file.size:
        raise _error("file", _("The file is empty."), "invalid")
    content_type = attachments.sniff(uploaded_file, name=str(uploaded_file.name or ""))
    if content_type is None:
        raise _error(
            "file",
            _(
                "This kind of file cannot be added. Add PDF, PNG, JPEG, GIF or WebP images, "
                "plain text or CSV, or Office / OpenDocument documents (without macros)."
            ),
            "unsupported_type",
        )
    digest = hashlib.sha256()
    size = 0
    for chunk in uploaded_file.chunks():
        size += len(chunk)
        if size > limit:
            raise too_large
        digest.update(chunk)
    uploaded_file.seek(0)
    return content_type, size, digest.hexdigest()


@transaction.atomic
def document_delete(*, document: EventDocument, actor: User) -> None:
    """Remove a document (and its links from agenda items).

    Side effects: deletes the row; the stored file is deleted after commit (a rollback keeps
    both). No signals.
    """
    _require_manager(actor, document.event)
    name = document.file.name if document.file else ""
    storage = document.file.storage
    document.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))


@transaction.atomic
def agenda_item_documents_set(
    *, item: AgendaItem, actor: User, documents: Iterable[EventDocument]
) -> AgendaItem:
    """Replace the documents linked from an agenda item (documents of its own event). No signals."""
    _require_manager(actor, item.event)
    chosen = list(documents)
    _check_documents_of(item.event_id, chosen)
    item.documents.set(chosen)
    return item


def _check_documents_of(event_id: int, documents: Sequence[EventDocument]) -> None:
    if any(d.event_id != event_id for d in documents):
        raise _error(
            "documents",
            _("An agenda item links only documents of its own event."),
            "document_outside_event",
        )


# --- The live room ----------------------------------------------------------------------------


def live_room_slug(event: Event) -> str:
    # The policy knows an event's own room by this name (community.policy.organizes_event_room).
    return f"{policy.EVENT_ROOM_PREFIX}{event.pk}"


def _live_room_visibility(event: Event) -> str:
    """An event visible to its working group only gets a room its group only reads."""
    if event.visibility == Event.Visibility.WORKING_GROUP and event.working_group_id is not None:
        return Room.Visibility.WORKING_GROUP
    return Room.Visibility.NETWORK


def _sync_own_room(event: Event) -> None:
    """Make the event's own live room (`event-<id>`, never a linked topic room) follow the
    event's visibility and working group (forums.services.room_visibility_set: its subscribers
    re-check their access after commit)."""
    if event.room_id is None:
        return
    room = Room.objects.filter(pk=event.room_id, slug=live_room_slug(event)).first()
    if room is None:
        return
    forum_services.room_visibility_set(
        room=room, visibility=_live_room_visibility(event), working_group=event.working_group
    )


def _lock_own_room(event: Event, actor: User) -> None:
    """A cancelled event's own live room (`event-<id>`) becomes read-only for delegates: the
    room is locked (forums.moderation.room_settings_set, slow mode kept), so it stays readable,
    its page says so, only its moderators may still post (to explain) and every subscribed
    socket gets `room.updated` after commit. An archived room stays archived; a linked topic
    room is shared with the rest of the group and is left as it is. The actor organizes the
    event, so moderates its own room (the room follows the event's working group)."""
    if event.room_id is None:
        return
    room = Room.objects.filter(pk=event.room_id, slug=live_room_slug(event)).first()
    if room is None or room.state != Room.State.OPEN:
        return
    forum_moderation.room_settings_set(
        room=room,
        actor=actor,
        state=Room.State.LOCKED,
        slow_mode_seconds=room.slow_mode_seconds,
    )


@transaction.atomic
def live_room_create(*, event: Event, actor: User) -> Room:
    """Create the event's own forum room for its live part and link it (`Event.room`).

    The room (slug `event-<id>`, the event's title, in the event's working group) follows the
    forum rules: members of the group post, its chairs and the secretariat moderate (a
    network-wide event's room: every participant but observers posts). Who reads it follows
    the event: every participant for an event of the whole network, only the group's members
    and the secretariat for an event visible to its working group only (a working-group room);
    event_update keeps it so when the event's visibility changes later. A room `event-<id>`
    left from before is linked again (with the event's visibility), not duplicated.
    Codes: event_cancelled, live_room_exists.
    Side effects: locks the event row; writes the room (forums.services.room_create) and the
    event's `room`; `sequence` is unchanged (the feeds do not carry the room). No signals.
    """
    locked = Event.objects.select_for_update().get(pk=event.pk)
    _require_manager(actor, locked)
    if locked.is_cancelled:
        raise ValidationError(_("A cancelled event cannot be changed."), code="event_cancelled")
    if locked.room_id is not None:
        raise _error("room", _("This event already has a live room."), "live_room_exists")
    room = Room.objects.filter(slug=live_room_slug(locked)).first()
    if room is None:
        room = forum_services.room_create(
            slug=live_room_slug(locked),
            title=locked.title,
            description=_("The live room of the event “%(title)s”.") % {"title": locked.title},
            working_group=locked.working_group,
            visibility=_live_room_visibility(locked),
        )
    else:
        room = forum_services.room_visibility_set(
            room=room,
            visibility=_live_room_visibility(locked),
            working_group=locked.working_group,
        )
    Event.objects.filter(pk=locked.pk).update(room=room, updated=dj_timezone.now())
    locked.refresh_from_db()
    _copy_into(event, locked)
    event.room = room
    return room
