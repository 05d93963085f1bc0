"""Moderation of the forums: pin and lock threads, lock rooms and slow mode, hide messages, mute
members in a room, and the members' reports that feed a room's moderation queue.

Moderators are who `community.policy.can_moderate_room` says (the working group's chair and
vice-chairs, the secretariat). Every write is keyword-only, checks that permission itself, runs in
one transaction and schedules its live frame with `notifications.bus.publish_on_commit`, so
nothing is announced for a write that rolled back. Frames added here (docs/events.md):

- `thread.updated`   room group: {"type", "room", "seq", "change", "thread": THREAD} (pin / lock)
- `room.updated`     room group: {"type", "room", "seq", "state", "slow_mode_seconds"}
- `message.hidden`   room group: {"type", "room", "seq", "change", "message": MESSAGE} (no body)
- `message.unhidden` room group: {"type", "room", "seq", "change", "message": MESSAGE}
- `member.muted`     the muted member's user group: {"type", "room", "until", "reason"}
- `member.unmuted`   the member's user group: {"type", "room"}

`seq` is the room's current last_seq: these frames do not consume a seq. `change` is the room's
change number the write took (models.next_change, under the room's row lock, taken before the
thread's or message's lock as every forum write does); a reconnecting client gets these
changes replayed from it (docs/realtime-protocol.md §4).

Muting is enforced where messages are written: `check_not_muted(member=..., room=...)` raises
for a member muted in the room, and the posting rules of forums.services call it, so every
transport (forms, API, socket) refuses a muted member alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet, prefetch_related_objects
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from community import policy
from community.models import User
from notifications import bus

from .models import ContentChange, Message, Report, Room, RoomMute, Thread, next_change
from .selectors import message_payload, thread_payload
from .signals import reports_resolved, send_on_commit

MAX_REASON_CHARS = 500
# A mute lasts at least a minute and at most 90 days.
MAX_MUTE_MINUTES = 90 * 24 * 60
MAX_SLOW_MODE_SECONDS = 6 * 60 * 60


class Muted(PermissionDenied):
    """PermissionDenied for a member muted in a room; `code` "forbidden", `until` when it ends."""

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.code = "forbidden"
        self.until = until


def _refuse_unless_moderator(actor: User, room: Room) -> None:
    if not policy.can_moderate_room(actor, room):
        raise PermissionDenied(_("Only the moderators of this room may do this."))


def clean_reason(reason: Any, *, required: bool = True) -> str:
    """A reason as stored: whitespace collapsed; ValidationError "invalid" / "too_long"."""
    text = " ".join(reason.split()) if isinstance(reason, str) else ""
    if required and not text:
        raise ValidationError({"reason": _("Give a reason.")}, code="invalid")
    if "\x00" in text:
        raise ValidationError({"reason": _("The reason contains a NUL character.")}, code="invalid")
    if len(text) > MAX_REASON_CHARS:
        raise ValidationError(
            {
                "reason": _("The reason is too long: %(length)s characters, at most %(max)s.")
                % {"length": len(text), "max": MAX_REASON_CHARS}
            },
            code="too_long",
        )
    return text


def _lock_room(room_id: int) -> Room:
    # The room row first, always (as forums.services): it orders the room's change numbers.
    return Room.objects.select_for_update().get(pk=room_id)


# --- Mutes ------------------------------------------------------------------------------------


def active_mute(*, member: Any, room: Room, now: datetime | None = None) -> RoomMute | None:
    """The mute of `member` in `room` that lasts longest, if one is in force now. One query."""
    if not getattr(member, "is_authenticated", False):
        return None
    return (
        RoomMute.objects.filter(
            room_id=room.pk, member_id=member.pk, until__gt=now or timezone.now()
        )
        .order_by("-until")
        .first()
    )


def check_not_muted(*, member: Any, room: Room, now: datetime | None = None) -> None:
    """Raise `Muted` when `member` is muted in `room` now (moderators are never refused)."""
    mute = active_mute(member=member, room=room, now=now)
    refuse_if_muted(member=member, room=room, until=None if mute is None else mute.until)


def refuse_if_muted(*, member: Any, room: Room, until: datetime | None) -> None:
    """Raise `Muted` for a mute in force `until` (None: not muted), unless `member` moderates
    `room`. For a caller that read the mute's end in a query of its own (a post reads it with
    the rest of its checks)."""
    if until is None or policy.can_moderate_room(member, room):
        return
    raise Muted(
        _("A moderator muted you in this room until %(until)s.")
        % {"until": formats.date_format(timezone.localtime(until), "DATETIME_FORMAT")},
        until=until,
    )


@transaction.atomic
def member_mute(*, room: Room, member: User, actor: User, minutes: int, reason: str) -> RoomMute:
    """Mute `member` in `room` for `minutes` (1 minute to 90 days).

    A moderator cannot be muted in a room they moderate. Side effects: writes a RoomMute; after
    commit publishes `member.muted` to the member's user group.
    """
    _refuse_unless_moderator(actor, room)
    if policy.can_moderate_room(member, room):
        raise ValidationError(
            {"member": _("Moderators of this room cannot be muted in it.")}, code="invalid"
        )
    if not isinstance(minutes, int) or not 1 <= minutes <= MAX_MUTE_MINUTES:
        raise ValidationError(
            {
                "minutes": _("A mute lasts from 1 minute to %(max)s minutes.")
                % {"max": MAX_MUTE_MINUTES}
            },
            code="invalid",
        )
    text = clean_reason(reason)
    now = timezone.now()
    mute = RoomMute(
        room=room, member=member, until=now + timedelta(minutes=minutes), by=actor, reason=text
    )
    mute.full_clean()
    mute.save()
    bus.publish_on_commit(
        bus.user_group(member.pk),
        {
            "type": "member.muted",
            "room": room.slug,
            "until": mute.until.isoformat(),
            "reason": text,
        },
    )
    return mute


@transaction.atomic
def mute_lift(*, mute: RoomMute, actor: User) -> RoomMute:
    """End `mute` now (a mute already over stays as it is).

    Side effects: writes the mute's `until`; after commit publishes `member.unmuted` to the
    member's user group.
    """
    locked = RoomMute.objects.select_for_update().select_related("room").get(pk=mute.pk)
    _refuse_unless_moderator(actor, locked.room)
    now = timezone.now()
    if locked.until <= now:
        return locked
    locked.until = now
    locked.save(update_fields=["until"])
    bus.publish_on_commit(
        bus.user_group(locked.member_id), {"type": "member.unmuted", "room": locked.room.slug}
    )
    return locked


def mutes_in_force(*, room: Room) -> QuerySet[RoomMute]:
    return (
        RoomMute.objects.filter(room=room, until__gt=timezone.now())
        .select_related("member", "member__organization", "by")
        .order_by("until", "id")
    )


# --- Threads and rooms ------------------------------------------------------------------------


def _lock_thread(thread: Thread) -> Thread:
    room = _lock_room(thread.room_id)
    locked = (
        Thread.objects.select_for_update(of=("self",))
        .select_related("author", "author__organization")
        .get(pk=thread.pk)
    )
    locked.room = room
    return locked


def _thread_changed(thread: Thread) -> None:
    """Take the room's next change number for `thread` (saved) and announce it after commit."""
    thread.change = next_change(thread.room)
    thread.save(update_fields=["change"])
    bus.publish_on_commit(
        bus.room_group(thread.room_id),
        {
            "type": "thread.updated",
            "room": thread.room.slug,
            "seq": thread.room.last_seq,
            "change": thread.change,
            "thread": thread_payload(thread),
        },
    )


@transaction.atomic
def thread_pin_set(*, thread: Thread, actor: User, pinned: bool) -> Thread:
    """Pin `thread` on top of its room, or unpin it. Setting the current value changes nothing.

    Side effects: locks the room row, then the thread's; writes `pinned` and takes the room's
    next change number; after commit publishes `thread.updated` to the room's group.
    """
    locked = _lock_thread(thread)
    _refuse_unless_moderator(actor, locked.room)
    if locked.pinned != pinned:
        locked.pinned = pinned
        locked.save(update_fields=["pinned"])
        _thread_changed(locked)
    thread.pinned = pinned
    return thread


@transaction.atomic
def thread_lock_set(*, thread: Thread, actor: User, locked: bool) -> Thread:
    """Lock `thread` (only moderators post in it) or unlock it.

    Side effects: locks the room row, then the thread's; writes `locked` and takes the room's
    next change number; after commit publishes `thread.updated` to the room's group.
    """
    row = _lock_thread(thread)
    _refuse_unless_moderator(actor, row.room)
    if row.locked != locked:
        row.locked = locked
        row.save(update_fields=["locked"])
        _thread_changed(row)
    thread.locked = locked
    return thread


@transaction.atomic
def room_settings_set(*, room: Room, actor: User, state: str, slow_mode_seconds: int) -> Room:
    """Set the room's state (open, locked; archived by the secretariat only) and slow mode.

    Side effects: writes the room; after commit publishes `room.updated` to the room's group
    when something changed.
    """
    locked = Room.objects.select_for_update().get(pk=room.pk)
    _refuse_unless_moderator(actor, locked)
    if state not in Room.State.values:
        raise ValidationError({"state": _("Unknown room state.")}, code="invalid")
    archiving = Room.State.ARCHIVED in (state, locked.state) and state != locked.state
    if archiving and not policy.is_secretariat(actor):
        raise PermissionDenied(_("Only the secretariat archives or reopens archived rooms."))
    if (
        not isinstance(slow_mode_seconds, int)
        or not 0 <= slow_mode_seconds <= MAX_SLOW_MODE_SECONDS
    ):
        raise ValidationError(
            {
                "slow_mode_seconds": _("Slow mode is from 0 (off) to %(max)s seconds.")
                % {"max": MAX_SLOW_MODE_SECONDS}
            },
            code="invalid",
        )
    if (locked.state, locked.slow_mode_seconds) != (state, slow_mode_seconds):
        locked.state = state
        locked.slow_mode_seconds = slow_mode_seconds
        locked.full_clean()
        locked.save(update_fields=["state", "slow_mode_seconds"])
        bus.publish_on_commit(
            bus.room_group(locked.pk),
            {
                "type": "room.updated",
                "room": locked.slug,
                "seq": locked.last_seq,
                "state": state,
                "slow_mode_seconds": slow_mode_seconds,
            },
        )
    room.state = state
    room.slow_mode_seconds = slow_mode_seconds
    return room


# --- Messages ---------------------------------------------------------------------------------


def _lock_message(message: Message) -> Message:
    room = _lock_room(message.room_id)
    locked = (
        Message.objects.select_for_update(of=("self",))
        .select_related("thread", "author", "author__organization")
        .get(pk=message.pk)
    )
    locked.room = room
    prefetch_related_objects([locked], "reactions", "mentions", "attachments")
    return locked


def _message_changed(kind: str, message: Message, content: ContentChange) -> list[str]:
    """Take the room's next change number for `message` and announce `kind` after commit; the
    fields the caller saves."""
    change = next_change(message.room)
    message.change = change
    message.content_change = change
    message.content_kind = content
    bus.publish_on_commit(
        bus.room_group(message.room_id),
        {
            "type": kind,
            "room": message.room.slug,
            "seq": message.room.last_seq,
            "change": change,
            "message": message_payload(message),
        },
    )
    return ["change", "content_change", "content_kind"]


def _resolve_open_reports(message: Message, actor: User, outcome: str, now: datetime) -> int:
    resolved = Report.objects.filter(message=message, resolved_at__isnull=True).update(
        resolved_at=now, resolved_by=actor, outcome=outcome
    )
    if resolved:
        _announce_resolved(message, actor, outcome, now)
    return resolved


def _announce_resolved(message: Message, actor: User, outcome: str, now: datetime) -> None:
    """`reports_resolved` after commit, to the reporters of the reports closed at `now`."""
    # Read back after the UPDATE (same transaction): exactly the rows this resolution closed.
    reporter_ids = sorted(
        Report.objects.filter(
            message=message, resolved_at=now, resolved_by=actor, outcome=outcome
        ).values_list("reporter_id", flat=True)
    )
    send_on_commit(
        reports_resolved,
        Report,
        message=message,
        actor_id=actor.pk,
        outcome=outcome,
        reporter_ids=reporter_ids,
        resolved_at=now,
    )


@transaction.atomic
def message_hide(*, message: Message, actor: User, reason: str) -> Message:
    """Hide `message` from everyone but the room's moderators, with a reason they see.

    Hiding a hidden message changes nothing. Side effects: locks the room row, then the
    message's; writes hidden_at / hidden_reason and takes the room's next change number;
    resolves the message's open reports as "hidden"; after commit publishes `message.hidden`
    (without body) to the room's group and sends `reports_resolved` when reports were open.
    """
    locked = _lock_message(message)
    _refuse_unless_moderator(actor, locked.room)
    text = clean_reason(reason)
    if locked.deleted_at is not None:
        raise ValidationError(_("This message was deleted."), code="not_found")
    now = timezone.now()
    _resolve_open_reports(locked, actor, Report.Outcome.HIDDEN, now)
    if locked.hidden_at is None:
        locked.hidden_at = now
        locked.hidden_reason = text
        changed = _message_changed("message.hidden", locked, ContentChange.HIDDEN)
        locked.save(update_fields=["hidden_at", "hidden_reason", *changed])
    message.hidden_at = locked.hidden_at
    message.hidden_reason = locked.hidden_reason
    return message


@transaction.atomic
def message_unhide(*, message: Message, actor: User) -> Message:
    """Show a hidden message again. Side effects: locks the room row, then the message's; clears
    hidden_at / hidden_reason and takes the room's next change number; after commit publishes
    `message.unhidden` (with body) to the room's group."""
    locked = _lock_message(message)
    _refuse_unless_moderator(actor, locked.room)
    if locked.hidden_at is not None:
        locked.hidden_at = None
        locked.hidden_reason = ""
        changed = _message_changed("message.unhidden", locked, ContentChange.UNHIDDEN)
        locked.save(update_fields=["hidden_at", "hidden_reason", *changed])
    message.hidden_at = None
    message.hidden_reason = ""
    return message


# --- Reports ----------------------------------------------------------------------------------


def report_create(*, message: Message, reporter: User, reason: str) -> Report:
    """Report `message` to the room's moderators; a second open report by the same member
    returns the first.

    Any participant who may read the room may report (not their own message, not a deleted one).
    Side effects: writes a Report. No frame: reports are for moderators, who see the queue page.
    """
    room = message.room
    if not policy.is_participant(reporter) or not policy.can_read_room(reporter, room):
        raise PermissionDenied(_("You may not read this room."))
    if message.author_id == reporter.pk:
        raise ValidationError(_("You cannot report your own message."), code="invalid")
    if message.deleted_at is not None:
        raise ValidationError(_("This message was deleted."), code="not_found")
    text = clean_reason(reason)
    existing = Report.objects.filter(
        message=message, reporter=reporter, resolved_at__isnull=True
    ).first()
    if existing is not None:
        return existing
    report = Report(message=message, reporter=reporter, reason=text)
    report.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            report.save()
    except IntegrityError:
        # The same member's concurrent report won the race: theirs is the open one.
        return Report.objects.get(message=message, reporter=reporter, resolved_at__isnull=True)
    return report


@transaction.atomic
def report_resolve(*, report: Report, actor: User, outcome: str) -> Report:
    """Close `report` as "dismissed", or as "hidden" by hiding its message (with the report's
    reason), which closes every open report of that message.

    Side effects: writes the report(s); hiding publishes `message.hidden` (see message_hide);
    after commit sends `reports_resolved` (the reporters are notified).
    """
    # One lock order everywhere (room, then message or report): message_hide locks the room
    # and the message and then closes the reports, so taking the report first could deadlock.
    room_id = Report.objects.filter(pk=report.pk).values_list("message__room_id", flat=True).get()
    _lock_room(room_id)
    locked = (
        Report.objects.select_for_update(of=("self",))
        .select_related("message__room")
        .get(pk=report.pk)
    )
    _refuse_unless_moderator(actor, locked.message.room)
    if outcome not in Report.Outcome.values:
        raise ValidationError({"outcome": _("Unknown outcome.")}, code="invalid")
    if locked.resolved_at is not None:
        return locked
    if outcome == Report.Outcome.HIDDEN:
        message_hide(message=locked.message, actor=actor, reason=locked.reason)
    else:
        locked.resolved_at = timezone.now()
        locked.resolved_by = actor
        locked.outcome = Report.Outcome.DISMISSED
        locked.save(update_fields=["resolved_at", "resolved_by", "outcome"])
        _announce_resolved(locked.message, actor, Report.Outcome.DISMISSED, locked.resolved_at)
    locked.refresh_from_db()
    return locked


def open_reports(*, room: Room) -> list[Report]:
    """The room's open reports, oldest first, with message, thread, author and reporter, and
    `open_on_message` (how many open reports the same message has). Two queries."""
    reports = list(
        Report.objects.filter(message__room=room, resolved_at__isnull=True)
        .select_related(
            "reporter",
            "reporter__organization",
            "message",
            "message__thread",
            "message__author",
            "message__author__organization",
        )
        .order_by("created", "id")
    )
    counts = dict(
        Report.objects.filter(message__room=room, resolved_at__isnull=True)
        .values("message_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("message_id", "n")
    )
    for report in reports:
        report.open_on_message = counts.get(report.message_id, 1)  # type: ignore[attr-defined]
    return reports


def open_report_counts(*, room_ids: list[int]) -> dict[int, int]:
    """{room_id: open reports} for the rooms given, rooms without any left out. One query."""
    return dict(
        Report.objects.filter(message__room_id__in=room_ids, resolved_at__isnull=True)
        .values("message__room_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("message__room_id", "n")
    )


__all__ = [
    "Muted",
    "active_mute",
    "check_not_muted",
    "member_mute",
    "message_hide",
    "message_unhide",
    "mute_lift",
    "mutes_in_force",
    "open_report_counts",
    "open_reports",
    "refuse_if_muted",
    "report_create",
    "report_resolve",
    "room_settings_set",
    "thread_lock_set",
    "thread_pin_set",
]
