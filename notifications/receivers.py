"""Receivers of the forums' and events' domain signals: signal -> recipients -> `notify`.

Connected in `NotificationsConfig.ready()`. The signals arrive after commit; each receiver
resolves recipients in bulk (notifications/recipients.py) and calls `services.notify`, whose
unique (recipient, occurrence_key) makes a repeated signal harmless.

One message, one row per member: every kind a message can cause shares the occurrence key
`message:<id>`, and the kinds are resolved in priority order (mention, reply, new thread, thread
message), so a member mentioned in a thread they follow gets the mention and nothing else.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.urls import NoReverseMatch, reverse
from django.utils.html import strip_tags
from minga import breaker
from minga.breaker import Breaker

from . import recipients, services
from .models import Kind

logger = logging.getLogger("notifications.receivers")


def _broker() -> Breaker:
    """The broker's breaker: a paused broker (or the cache or channel layer on the same Redis)
    costs one post its timeout; the posts of the next second notify inline at once."""
    return breaker.for_server(str(message_posted_task.app.conf.broker_url or "memory://"))


def guarded(receiver: Callable[..., None]) -> Callable[..., None]:
    """Log a receiver's failure instead of raising: the events app sends with `send()` after
    commit, where an exception would turn a committed request into an error page."""

    @functools.wraps(receiver)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            receiver(*args, **kwargs)
        except Exception:
            logger.exception("notification receiver failed", extra={"receiver": receiver.__name__})

    return run


def _url(name: str, fallback: str, **kwargs: Any) -> str:
    try:
        return reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        return fallback


def _thread_url(thread_id: int, message_id: int | None = None) -> str:
    """The thread page, at the message (the forums' anchor is `#m-<id>`)."""
    path = _url("thread_detail", f"/threads/{thread_id}/", thread_id=thread_id)
    return f"{path}#m-{message_id}" if message_id else path


def _event_url(event_id: int) -> str:
    # The contract path /events/<id>/ is the fallback should the page's route name change.
    return _url("event_detail", f"/events/{event_id}/", event_id=event_id)


def _text(body_html: str) -> str:
    return " ".join(html.unescape(strip_tags(body_html or "")).split())


# --- Forums -------------------------------------------------------------------------------------


def _message_context(message: Any) -> dict[str, Any]:
    room = message.room
    thread = message.thread
    group = services.group_name(room.working_group) if room.working_group_id else ""
    return {
        "actor": message.author.name or message.author.handle,
        "thread": thread.title,
        "room": room.title,
        "body": _text(message.body_html),
        "group_label": f"{group} · {room.title}" if group else room.title,
    }


def on_message_posted(
    sender: Any, *, message: Any, mentioned_ids: list[int], followed: bool = True, **_: Any
) -> None:
    """Hand the message's notifications to a worker (`message_posted_task`).

    Nothing is queued when there is nobody to tell: no mention, no reply, and nobody but the
    author following the thread (for a new thread, the room) when it was posted (`followed`,
    read with the post's checks at no extra query). Most messages in a busy room are of that
    kind, and each task would cost the poster an enqueue and a worker a few queries.

    The signal arrives after commit on the poster's thread; for a socket post that is the
    gateway process's one database thread, where the recipient queries and inbox writes would
    delay every other post, subscribe and delivery of the process (docs/performance.md, item 4).
    Runs in-process where tasks are eager (no broker: development, tests); when the broker
    cannot take the task (Redis away, failing fast), the work runs here instead: nothing lost.
    """
    if message.deleted_at is not None or message.hidden_at is not None:
        return
    if not mentioned_ids and message.reply_to_id is None and not followed:
        return
    work = {"message_id": int(message.pk), "mentioned_ids": [int(i) for i in mentioned_ids]}
    if message_posted_task.app.conf.task_always_eager:
        message_posted_notify(**work)
        return
    broker = _broker()
    if broker.open:  # the broker failed a moment ago: do not wait for another timeout
        message_posted_notify(**work)
        return
    try:
        message_posted_task.delay(**work)
    except Exception:
        broker.trip()
        logger.warning("message_posted_task not queued; notifying inline", exc_info=True)
        message_posted_notify(**work)


@shared_task(name="notifications.message_posted_task", acks_late=True)
def message_posted_task(*, message_id: int, mentioned_ids: list[int]) -> None:
    """`message_posted_notify` in a worker; safe to run twice (one row per member and message)."""
    message_posted_notify(message_id=message_id, mentioned_ids=mentioned_ids)


def message_posted_notify(*, message_id: int, mentioned_ids: list[int]) -> None:
    """Mentions, the replied-to author, room followers (a new thread), thread followers.

    The message is read again (one query, with everything the notification shows): a task runs
    later, and a message deleted or hidden meanwhile notifies no one."""
    from forums.models import Message

    message = (
        Message.objects.select_related(
            "thread", "room", "room__working_group", "author", "author__organization"
        )
        .filter(pk=message_id)
        .first()
    )
    if message is None or message.deleted_at is not None or message.hidden_at is not None:
        return
    author_id = message.author_id
    first = (
        Message.objects.filter(thread_id=message.thread_id)
        .order_by("seq")
        .values_list("pk", flat=True)
        .first()
    )
    is_new_thread = first == message.pk
    told: set[int] = set()
    plan: list[tuple[str, list[int]]] = [
        (
            Kind.MENTION,
            recipients.mentioned(
                member_ids=mentioned_ids, author_id=author_id, thread_id=message.thread_id
            )
            if mentioned_ids
            else [],
        ),
        (
            Kind.REPLY,
            recipients.replied_to(
                reply_to_id=message.reply_to_id,
                author_id=author_id,
                room_id=message.room_id,
                thread_id=message.thread_id,
            )
            if message.reply_to_id
            else [],
        ),
        (
            Kind.NEW_THREAD,
            recipients.room_followers(room_id=message.room_id, author_id=author_id)
            if is_new_thread
            else [],
        ),
        (
            Kind.THREAD_MESSAGE,
            []
            if is_new_thread
            else recipients.thread_followers(thread_id=message.thread_id, author_id=author_id),
        ),
    ]
    context = _message_context(message)
    url = _thread_url(message.thread_id, message.pk)
    for kind, ids in plan:
        fresh = [i for i in ids if i not in told]
        told.update(fresh)
        if fresh:
            services.notify(
                kind=kind,
                actor=message.author,
                target_type="forums.message",
                target_id=message.pk,
                url=url,
                occurrence_key=f"message:{message.pk}",
                recipient_ids=fresh,
                context=context,
            )


def on_message_edited(
    sender: Any, *, message: Any, editor: Any, added_mention_ids: list[int], **_: Any
) -> None:
    """Members newly @mentioned by an edit (once per message: the same occurrence key)."""
    if not added_mention_ids or message.deleted_at is not None:
        return
    ids = recipients.mentioned(
        member_ids=added_mention_ids, author_id=message.author_id, thread_id=message.thread_id
    )
    if ids:
        services.notify(
            kind=Kind.MENTION,
            actor=message.author,
            target_type="forums.message",
            target_id=message.pk,
            url=_thread_url(message.thread_id, message.pk),
            occurrence_key=f"message:{message.pk}",
            recipient_ids=ids,
            context=_message_context(message),
        )


def on_reports_resolved(
    sender: Any,
    *,
    message: Any,
    actor_id: int,
    outcome: str,
    reporter_ids: list[int],
    resolved_at: dt.datetime,
    **_: Any,
) -> None:
    """The members whose reports a moderator closed: the outcome and where, nothing more.

    Neither the moderator's name nor a reason: a hidden message's reason is for moderators, and
    when several members reported it, it may be another reporter's words.
    """
    from forums.models import Message

    ids = recipients.filter_participants(
        list(reporter_ids), exclude=actor_id, room_id=message.room_id
    )
    if not ids:
        return
    fresh = Message.objects.select_related("room__working_group", "thread").get(pk=message.pk)
    room = fresh.room
    group = services.group_name(room.working_group) if room.working_group_id else ""
    services.notify(
        kind=Kind.MODERATION,
        # No actor: the reporter learns the outcome; who moderated is the moderators' business.
        actor=None,
        target_type="forums.message",
        target_id=fresh.pk,
        url=_thread_url(fresh.thread_id, fresh.pk),
        occurrence_key=f"report:{fresh.pk}:{outcome}:{_stamp(resolved_at)}",
        recipient_ids=ids,
        context={
            "outcome": outcome,
            "thread": fresh.thread.title,
            "room": room.title,
            "group_label": f"{group} · {room.title}" if group else room.title,
        },
    )


# --- Events -------------------------------------------------------------------------------------


def _event_context(event: Any, *, starts_at: dt.datetime | None = None, **extra: Any) -> dict:
    start = starts_at or event.starts_at
    return {
        "event": event.title,
        "starts_at": start.isoformat() if start else None,
        "location": event.location,
        "group_label": services.group_name(event.working_group) if event.working_group_id else "",
        **extra,
    }


def _stamp(value: dt.datetime | None) -> str:
    return str(int(value.timestamp() * 1_000_000)) if value else "0"


def _actor(actor_id: int | None) -> Any:
    if actor_id is None:
        return None
    from community.models import User

    return User.objects.filter(pk=actor_id).first()


def on_event_scheduled(
    sender: Any, *, event: Any, event_id: int, actor_id: int | None, **_: Any
) -> None:
    """Every participant of the event's working group (the whole network for network events),
    as a rule: a big group's fan-out resolves it inside its INSERT (ADR 0010)."""
    rule = recipients.working_group_members_rule(
        working_group_id=event.working_group_id, exclude=actor_id
    )
    services.notify(
        kind=Kind.EVENT_SCHEDULED,
        actor=_actor(actor_id),
        target_type="events.event",
        target_id=event_id,
        url=_event_url(event_id),
        occurrence_key=f"event:{event_id}:scheduled",
        rule=rule,
        context=_event_context(event),
    )


def on_event_changed(
    sender: Any, *, event: Any, event_id: int, actor_id: int | None, **kwargs: Any
) -> None:
    """Registrants (registered and waitlisted) of a changed event."""
    services.notify(
        kind=Kind.EVENT_CHANGED,
        actor=_actor(actor_id),
        target_type="events.event",
        target_id=event_id,
        url=_event_url(event_id),
        occurrence_key=f"event:{event_id}:changed:{event.sequence}:{_stamp(event.updated)}",
        recipient_ids=recipients.registrants(event_id=event_id, exclude=actor_id),
        # A moved date of a series carries its new start; a change to the series has none.
        context=_event_context(
            event, starts_at=kwargs.get("starts_at"), note=kwargs.get("message") or ""
        ),
    )


def on_event_cancelled(
    sender: Any,
    *,
    event: Any,
    event_id: int,
    actor_id: int | None,
    original_start: dt.datetime | None = None,
    **kwargs: Any,
) -> None:
    """Registrants of a cancelled event (or of one cancelled occurrence of a series)."""
    services.notify(
        kind=Kind.EVENT_CANCELLED,
        actor=_actor(actor_id),
        target_type="events.event",
        target_id=event_id,
        url=_event_url(event_id),
        occurrence_key=f"event:{event_id}:cancelled:{_stamp(original_start)}",
        recipient_ids=recipients.registrants(event_id=event_id, exclude=actor_id),
        context=_event_context(event, starts_at=original_start, note=kwargs.get("message") or ""),
    )


def _registration_notify(
    *, registration: Any, event_id: int, member_id: int, status: str, position: int | None
) -> None:
    event = registration.event
    ids = recipients.filter_participants([member_id])
    services.notify(
        kind=Kind.REGISTRATION,
        actor=None,
        target_type="events.event",
        target_id=event_id,
        url=_event_url(event_id),
        occurrence_key=f"registration:{registration.pk}:{status}:{_stamp(registration.updated)}",
        recipient_ids=ids,
        context=_event_context(event, status=status, position=position),
    )


def on_registration_created(
    sender: Any,
    *,
    registration: Any,
    event_id: int,
    member_id: int,
    status: str,
    position: int | None = None,
    **_: Any,
) -> None:
    """The member themself: registered, or waitlisted with their position."""
    _registration_notify(
        registration=registration,
        event_id=event_id,
        member_id=member_id,
        status=status,
        position=position,
    )


def on_registration_promoted(
    sender: Any, *, registration: Any, event_id: int, member_id: int, **_: Any
) -> None:
    """The member moved from the waitlist to a place."""
    _registration_notify(
        registration=registration,
        event_id=event_id,
        member_id=member_id,
        status="promoted",
        position=None,
    )


def on_event_reminder_due(
    sender: Any,
    *,
    delivery_id: int,
    event_id: int,
    member_id: int,
    occurrence_start: dt.datetime,
    **_: Any,
) -> None:
    """The registrant's reminder; the delivery id is the occurrence key (sent at least once)."""
    from events.models import Event

    event = Event.objects.select_related("working_group").filter(pk=event_id).first()
    if event is None:
        return
    services.notify(
        kind=Kind.EVENT_REMINDER,
        actor=None,
        target_type="events.event",
        target_id=event_id,
        url=_event_url(event_id),
        occurrence_key=f"reminder:{delivery_id}",
        recipient_ids=recipients.filter_participants([member_id]),
        context=_event_context(event, starts_at=occurrence_start),
    )


def connect() -> list[str]:
    """Connect every receiver whose signal module exists; returns what was connected."""
    connected: list[str] = []
    try:
        from forums import signals as forum_signals
    except ImportError:
        forum_signals = None
    if forum_signals is not None:
        for name, receiver in (
            ("message_posted", on_message_posted),
            ("message_edited", on_message_edited),
            ("reports_resolved", on_reports_resolved),
        ):
            signal = getattr(forum_signals, name, None)
            if signal is not None:
                signal.connect(receiver, dispatch_uid=f"notifications.{name}")
                connected.append(f"forums.{name}")
    try:
        from events import signals as event_signals
    except ImportError:
        event_signals = None
    if event_signals is not None:
        for name, receiver in (
            ("event_scheduled", guarded(on_event_scheduled)),
            ("event_changed", guarded(on_event_changed)),
            ("event_cancelled", guarded(on_event_cancelled)),
            ("registration_created", guarded(on_registration_created)),
            ("registration_promoted", guarded(on_registration_promoted)),
            ("event_reminder_due", guarded(on_event_reminder_due)),
        ):
            signal = getattr(event_signals, name, None)
            if signal is not None:
                # weak=False: the guarded wrapper has no other reference to keep it alive.
                signal.connect(receiver, weak=False, dispatch_uid=f"notifications.{name}")
                connected.append(f"events.{name}")
    return connected
