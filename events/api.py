"""API endpoints of the events app, mounted under /api/v1/ by minga/api.py (docs/api.md).

Event shape (contract; fields may be added): id, title, kind, working_group (slug|null),
description, starts_at, ends_at (ISO 8601 with the event zone's offset), timezone, location,
room (slug|null), capacity, recurrence (RRULE|null), status, sequence, registration
({status, position}|null: mine). Added: description_html, venue, city, country, online,
visibility, allow_observers, exdates, url, ics_url, occurrences (within ?start&end),
documents (in the detail only: id, title, kind file|link, url, name, content_type, size,
agenda_items), organizers (handles; in the detail and the answers of POST and PATCH, which
take `organizers`: handles or e-mail addresses of co-organizers). Organizer endpoints added: documents (POST multipart, DELETE), live-room
(POST), occurrences/{key} (PUT moves one date of a series, DELETE cancels it): docs/api.md.

Rule errors answer 400 {"code": "invalid", "detail": {field: [messages]},
"errors": [{"field", "code", "message"}]}: the codes are listed in events/services.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from ninja import File, Form, Query, Router, Schema, Status, UploadedFile
from ninja.decorators import decorate_view
from ninja.errors import HttpError
from pydantic import field_validator

from community.models import User, WorkingGroup
from forums import attachments
from forums.models import Room

from . import recurrence, selectors, services
from .ical import site_url
from .models import Event, EventDocument, Registration

router = Router(tags=["events"])

KindLiteral = Literal["workshop", "meeting", "focus_session", "conference", "webinar"]


class RegistrationOut(Schema):
    status: str
    position: int | None


class OccurrenceOut(Schema):
    original_start: str
    starts_at: str
    ends_at: str
    cancelled: bool


class DocumentOut(Schema):
    id: int
    title: str
    kind: Literal["file", "link"]
    url: str
    name: str | None
    content_type: str | None
    size: int | None
    agenda_items: list[int]


class EventOut(Schema):
    id: int
    title: str
    kind: str
    working_group: str | None
    description: str
    description_html: str
    starts_at: str
    ends_at: str
    timezone: str
    location: str
    venue: str
    city: str
    country: str | None
    online: bool
    room: str | None
    capacity: int | None
    registration_opens_at: datetime | None
    registration_closes_at: datetime | None
    visibility: str
    allow_observers: bool
    recurrence: str | None
    exdates: list[str]
    status: str
    sequence: int
    registration: RegistrationOut | None
    url: str
    ics_url: str
    occurrences: list[OccurrenceOut] | None = None
    documents: list[DocumentOut] | None = None
    organizers: list[str] | None = None


class EventIn(Schema):
    title: str
    kind: KindLiteral = "workshop"
    working_group: str | None = None
    description: str = ""
    starts_at: datetime
    ends_at: datetime
    timezone: str
    venue: str = ""
    city: str = ""
    country: str = ""
    online: bool = False
    room: str | None = None
    capacity: int | None = None
    registration_opens_at: datetime | None = None
    registration_closes_at: datetime | None = None
    visibility: Literal["public", "working_group"] = "public"
    allow_observers: bool = False
    recurrence: str | None = None
    exdates: list[datetime] = []
    organizers: list[str] = []


class EventPatch(Schema):
    title: str | None = None
    kind: KindLiteral | None = None
    working_group: str | None = None
    description: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    timezone: str | None = None
    venue: str | None = None
    city: str | None = None
    country: str | None = None
    online: bool | None = None
    room: str | None = None
    capacity: int | None = None
    registration_opens_at: datetime | None = None
    registration_closes_at: datetime | None = None
    visibility: Literal["public", "working_group"] | None = None
    allow_observers: bool | None = None
    recurrence: str | None = None
    exdates: list[datetime] | None = None
    organizers: list[str] | None = None
    message: str = ""


class CancelIn(Schema):
    message: str = ""


class ListFilters(Schema):
    start: datetime | None = None
    end: datetime | None = None
    working_group: str | None = None
    kind: KindLiteral | None = None

    @field_validator("start", "end")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        """The instant in UTC: any offset ISO 8601 allows names one (`-17:34` too, which no
        zone has and PostgreSQL would refuse as text), and every database compares it alike."""
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)


def _iso(value: datetime, zone: str) -> str:
    return value.astimezone(ZoneInfo(zone)).isoformat()


def event_out(
    event: Event, member: User | None, window: tuple[datetime, datetime] | None = None
) -> dict[str, Any]:
    mine = selectors.my_registration(event=event, member=member)
    registration = None
    if mine is not None and mine.status != Registration.Status.WITHDRAWN:
        registration = {"status": mine.status, "position": mine.position}
    occurrences = None
    if window is not None:
        occurrences = [
            {
                "original_start": _iso(o.original_start, event.timezone),
                "starts_at": _iso(o.starts_at, event.timezone),
                "ends_at": _iso(o.ends_at, event.timezone),
                "cancelled": o.cancelled,
            }
            for o in recurrence.expand(event, *window, overrides=event.overrides.all())
        ]
    return {
        "id": event.pk,
        "title": event.title,
        "kind": event.kind,
        "working_group": event.working_group.slug if event.working_group_id else None,
        "description": event.description,
        "description_html": event.description_html,
        "starts_at": _iso(event.starts_at, event.timezone),
        "ends_at": _iso(event.ends_at, event.timezone),
        "timezone": event.timezone,
        "location": event.location,
        "venue": event.venue,
        "city": event.city,
        "country": event.country.code if event.country else None,
        "online": event.online,
        "room": event.room.slug if event.room_id else None,
        "capacity": event.capacity,
        "registration_opens_at": event.registration_opens_at,
        "registration_closes_at": event.registration_closes_at,
        "visibility": event.visibility,
        "allow_observers": event.allow_observers,
        "recurrence": event.recurrence or None,
        "exdates": [_iso(recurrence.parse_exdate(x), event.timezone) for x in event.exdates],
        "status": event.status,
        "sequence": event.sequence,
        "registration": registration,
        "url": f"{site_url()}/events/{event.pk}/",
        "ics_url": f"{site_url()}/events/{event.pk}.ics",
        "occurrences": occurrences,
    }


def documents_out(event: Event) -> list[dict[str, Any]]:
    """The event's documents: files are downloaded from `url` (the same access as the event
    page); links point where the document lives."""
    rows = selectors.documents_for(event=event).prefetch_related("agenda_items")
    base = site_url()
    return [
        {
            "id": d.pk,
            "title": d.title,
            "kind": "link" if d.is_link else "file",
            "url": d.url if d.is_link else f"{base}/events/{event.pk}/documents/{d.pk}/",
            "name": None if d.is_link else d.original_name,
            "content_type": None if d.is_link else d.content_type,
            "size": None if d.is_link else d.size,
            "agenda_items": [item.pk for item in d.agenda_items.all()],
        }
        for d in rows
    ]


def organizers_out(event: Event) -> list[str]:
    """Handles of the event's organizers (its creator and co-organizers), by name."""
    return [u.handle for u in sorted(event.organizers.all(), key=lambda u: (u.name, u.pk))]


def _invalid(exc: ValidationError) -> HttpResponse:
    response = _invalid_body(exc)
    codes = {e["code"] for e in json.loads(response.content)["errors"]}
    # The statuses attachment uploads answer (docs/api.md), for the same refusals of a file.
    for code, status in (("too_large", 413), ("unsupported_type", 415)):
        if code in codes:
            response.status_code = status
    return response


def _invalid_body(exc: ValidationError) -> HttpResponse:
    errors: list[dict[str, str | None]] = []
    if hasattr(exc, "error_dict"):
        for field, items in exc.error_dict.items():
            for item in items:
                message = item.message % item.params if item.params else item.message
                errors.append({"field": field, "code": item.code, "message": str(message)})
        detail: Any = exc.message_dict
    else:
        for item in exc.error_list:
            message = item.message % item.params if item.params else item.message
            errors.append({"field": None, "code": item.code, "message": str(message)})
        detail = exc.messages
    return JsonResponse({"code": "invalid", "detail": detail, "errors": errors}, status=400)


def _group(slug: str | None) -> WorkingGroup | None:
    if slug is None:
        return None
    group = WorkingGroup.objects.filter(slug=slug).first()
    if group is None:
        raise ValidationError(
            {
                "working_group": ValidationError(
                    _("There is no working group %(slug)s.") % {"slug": slug}, code="unknown"
                )
            }
        )
    return group


def _room(slug: str | None) -> Room | None:
    if slug is None:
        return None
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise ValidationError(
            {
                "room": ValidationError(
                    _("There is no room %(slug)s.") % {"slug": slug}, code="unknown"
                )
            }
        )
    return room


def _member(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _reload(event_id: int, member: User) -> Event:
    return selectors.events_visible_to(member=member).get(pk=event_id)


@router.get("/events/", response=list[EventOut], summary="Events I may see")
def event_list(request: HttpRequest, filters: Query[ListFilters]) -> list[dict[str, Any]]:
    member = _member(request)
    if filters.start and filters.end and filters.end <= filters.start:
        raise HttpError(422, "end must be after start")
    qs = selectors.events_visible_to(
        member=member,
        start=filters.start,
        end=filters.end,
        working_group=filters.working_group,
        kind=filters.kind,
    )
    window = (filters.start, filters.end) if filters.start and filters.end else None
    result = []
    for event in qs:
        item = event_out(event, member, window)
        if window is not None and event.recurrence and not item["occurrences"]:
            continue  # a series with nothing in the window
        result.append(item)
    return result


@router.post(
    "/events/",
    response={201: EventOut},
    summary="Schedule an event (organizers)",
)
def event_create(request: HttpRequest, payload: EventIn) -> Any:
    member = _member(request)
    try:
        event = services.event_create(
            actor=member,
            title=payload.title,
            kind=payload.kind,
            working_group=_group(payload.working_group),
            description=payload.description,
            starts_at=payload.starts_at,
            ends_at=payload.ends_at,
            timezone=payload.timezone,
            venue=payload.venue,
            city=payload.city,
            country=payload.country,
            online=payload.online,
            room=_room(payload.room),
            capacity=payload.capacity,
            registration_opens_at=payload.registration_opens_at,
            registration_closes_at=payload.registration_closes_at,
            visibility=payload.visibility,
            allow_observers=payload.allow_observers,
            recurrence=payload.recurrence or "",
            exdates=payload.exdates,
            organizers=services.organizers_named(payload.organizers),
        )
    except ValidationError as exc:
        return _invalid(exc)
    return Status(201, _with_organizers(_reload(event.pk, member), member))


@router.get("/events/{event_id}/", response=EventOut, summary="One event")
def event_detail(request: HttpRequest, event_id: int) -> dict[str, Any]:
    member = _member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    return {
        **event_out(event, member),
        "documents": documents_out(event),
        "organizers": organizers_out(event),
    }


def _with_organizers(event: Event, member: User) -> dict[str, Any]:
    """What POST and PATCH answer: the event and, as they may have changed, its organizers."""
    return {**event_out(event, member), "organizers": organizers_out(event)}


@router.patch("/events/{event_id}/", response=EventOut, summary="Change an event (organizers)")
def event_update(request: HttpRequest, event_id: int, patch: EventPatch) -> Any:
    member = _member(request)
    event = selectors.event_for_organizer(event_id=event_id, member=member)
    changes = patch.model_dump(exclude_unset=True)
    message = changes.pop("message", "")
    try:
        if "working_group" in changes:
            changes["working_group"] = _group(changes["working_group"])
        if "room" in changes:
            changes["room"] = _room(changes["room"])
        if "organizers" in changes:
            changes["organizers"] = services.organizers_named(changes["organizers"] or [])
        for text_field in ("recurrence", "description", "venue", "city", "country"):
            if text_field in changes and changes[text_field] is None:
                changes[text_field] = ""
        services.event_update(event=event, actor=member, changes=changes, message=message)
    except ValidationError as exc:
        return _invalid(exc)
    return _with_organizers(_reload(event.pk, member), member)


@router.delete(
    "/events/{event_id}/",
    response=EventOut,
    summary="Cancel an event (it stays, as cancelled)",
)
def event_cancel(request: HttpRequest, event_id: int, body: CancelIn | None = None) -> Any:
    member = _member(request)
    event = selectors.event_for_organizer(event_id=event_id, member=member)
    try:
        services.event_cancel(event=event, actor=member, message=body.message if body else "")
    except ValidationError as exc:
        return _invalid(exc)
    return event_out(_reload(event.pk, member), member)


@router.put(
    "/events/{event_id}/registration/",
    response=RegistrationOut,
    summary="Register (or join the waitlist)",
)
def registration_put(request: HttpRequest, event_id: int) -> Any:
    member = _member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    try:
        registration = services.registration_create(event=event, member=member)
    except ValidationError as exc:
        return _invalid(exc)
    return {"status": registration.status, "position": registration.position}


@router.delete("/events/{event_id}/registration/", response=RegistrationOut, summary="Withdraw")
def registration_delete(request: HttpRequest, event_id: int) -> Any:
    member = _member(request)
    event = selectors.event_for_member(event_id=event_id, member=member)
    try:
        registration = services.registration_withdraw(event=event, member=member)
    except ValidationError as exc:
        return _invalid(exc)
    return {"status": registration.status, "position": registration.position}


def calendar_feed_extra(request: HttpRequest, member: User) -> dict[str, object]:
    """`calendar_feed_url` of /api/v1/me/: the member's private feed, `null` until one is made
    (POST /api/v1/me/calendar-feed/, or the calendar settings page). Reads only: a GET writes
    nothing."""
    base_url = request.build_absolute_uri("/")
    return {"calendar_feed_url": selectors.calendar_feed_url(member=member, base_url=base_url)}


class CalendarFeedOut(Schema):
    calendar_feed_url: str


@router.post(
    "/me/calendar-feed/",
    response={201: CalendarFeedOut},
    summary="Make a new private calendar feed address (the old one, if any, stops working)",
)
def calendar_feed_create(request: HttpRequest) -> Any:
    member = _member(request)
    services.feed_token_regenerate(member=member)
    url = selectors.calendar_feed_url(member=member, base_url=request.build_absolute_uri("/"))
    return Status(201, {"calendar_feed_url": url})


# --- Documents, the live room, one date of a series -------------------------------------------


def _upload_refused(request: HttpRequest, limits: attachments.UploadLimits) -> HttpResponse:
    detail = _("The upload is too large: at most %(size)s.") % {
        "size": filesizeformat(limits.max_bytes)
    }
    return JsonResponse({"code": "too_large", "detail": detail}, status=413)


@router.post(
    "/events/{event_id}/documents/",
    response={201: DocumentOut},
    summary="Add a document (organizers): multipart `title` and `file`, or `title` and `url`",
)
@decorate_view(attachments.limit_uploads(1, refuse=_upload_refused))
def document_create(
    request: HttpRequest,
    event_id: int,
    title: Form[str],
    url: Form[str] = "",
    file: File[UploadedFile | None] = None,
) -> Any:
    member = _member(request)
    event = selectors.event_for_organizer(event_id=event_id, member=member)
    limits: attachments.UploadLimits = request.upload_limits  # type: ignore[attr-defined]
    try:
        if limits.too_large:
            # The handler dropped the file while it streamed in: nothing of it was kept.
            raise ValidationError(
                {
                    "file": ValidationError(
                        _("The file is too large: at most %(size)s.")
                        % {"size": filesizeformat(limits.max_bytes)},
                        code="too_large",
                    )
                }
            )
        document = services.document_add(
            event=event, actor=member, title=title, uploaded_file=file, url=url
        )
    except ValidationError as exc:
        return _invalid(exc)
    found = [d for d in documents_out(event) if d["id"] == document.pk]
    return Status(201, found[0])


@router.delete(
    "/events/{event_id}/documents/{document_id}/",
    response={204: None},
    summary="Remove a document (organizers)",
)
def document_delete(request: HttpRequest, event_id: int, document_id: int) -> Any:
    member = _member(request)
    event = selectors.event_for_organizer(event_id=event_id, member=member)
    document = get_object_or_404(EventDocument, pk=document_id, event=event)
    services.document_delete(document=document, actor=member)
    return Status(204, None)


@router.post(
    "/events/{event_id}/live-room/",
    response={201: EventOut},
    summary="Create the event's own live room (organizers); `room` then names it",
)
def live_room_create(request: HttpRequest, event_id: int) -> Any:
    member = _member(request)
    event = selectors.event_for_organizer(event_id=event_id, member=member)
    try:
        services.live_room_create(event=event, actor=member)
    except ValidationError as exc:
        return _invalid(exc)
    return Status(201, event_out(_reload(event.pk, member), member))


class OccurrenceMoveIn(Schema):
    starts_at: datetime
    ends_at: datetime


def _occurrence(event: Event, key: str) -> recurrence.Occurrence:
    original = recurrence.parse_occurrence_key(key)
    found = recurrence.occurrence_of(event, original) if original else None
    if found is None:
        raise Http404
    return found


def _occurrence_out(event_id: int, original: datetime) -> dict[str, Any]:
    reloaded = Event.objects.prefetch_related("overrides").get(pk=event_id)
    occ = recurrence.occurrence_of(reloaded, original)
    if occ is None:  # pragma: no cover - the service just changed this very date
        raise Http404
    return {
        "original_start": _iso(occ.original_start, reloaded.timezone),
        "starts_at": _iso(occ.starts_at, reloaded.timezone),
        "ends_at": _iso(occ.ends_at, reloaded.timezone),
        "cancelled": occ.cancelled,
    }


def _occurrence_change(
    request: HttpRequest,
    event_id: int,
    key: str,
    service: Callable[..., object],
    **values: Any,
) -> Any:
    """Moving and cancelling one date share this: the organizer's event, the date its `key`
    names (404 otherwise), `service(event, actor, original_start, **values)`; the date as it
    now is, or the service's rule error as 400 (`_invalid`)."""
    member = _member(request)
    event = selectors.event_for_organizer(event_id=event_id, member=member)
    occ = _occurrence(event, key)
    try:
        service(event=event, actor=member, original_start=occ.original_start, **values)
    except ValidationError as exc:
        return _invalid(exc)
    return _occurrence_out(event.pk, occ.original_start)


@router.put(
    "/events/{event_id}/occurrences/{key}/",
    response=OccurrenceOut,
    summary="Move one date of a series (organizers); key: its original start, 20300312T140000Z",
)
def occurrence_move(request: HttpRequest, event_id: int, key: str, body: OccurrenceMoveIn) -> Any:
    return _occurrence_change(
        request,
        event_id,
        key,
        services.occurrence_reschedule,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
    )


@router.delete(
    "/events/{event_id}/occurrences/{key}/",
    response=OccurrenceOut,
    summary="Cancel one date of a series (organizers); it stays, as cancelled",
)
def occurrence_cancel(
    request: HttpRequest, event_id: int, key: str, body: CancelIn | None = None
) -> Any:
    message = body.message if body else ""
    return _occurrence_change(request, event_id, key, services.occurrence_cancel, message=message)
