"""Writes for the forums: rooms, threads, messages, reactions, read state.

Every function is keyword-only, checks permission through `community.policy`, validates before it
writes and writes inside one transaction. Failures raise, and change nothing:

- `PermissionDenied` (a `Refused`, whose `code` is "forbidden", "room_locked" or "thread_locked");
- `ValidationError` with `code` "invalid", "not_found", "too_long" or "rate_limited" (and, for
  attachments, "too_large" or "unsupported_type").

`error_code(exc)` gives the code of either, for the API and the socket. Each write schedules its
live frame with `notifications.bus.publish_on_commit` and its domain signal (forums.signals) after
commit: nothing is announced for a write that rolled back.
"""

from __future__ import annotations

import functools
import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q
from django.http import Http404
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from minga import rows

from community import policy
from community.models import POSTING_ROLES, Topic, User
from notifications import bus

from . import attachments, moderation, signals
from .models import (
    MAX_BODY_CHARS,
    REACTION_EMOJI,
    Attachment,
    ContentChange,
    Follow,
    Mention,
    Message,
    MessageRevision,
    Reaction,
    ReadState,
    Room,
    RoomMute,
    Thread,
    next_change,
)
from .rendering import Rendered, candidate_handles, render
from .selectors import message_payload, prime, thread_payload

MAX_TITLE_CHARS = 200
# (messages, seconds): at most this many messages per member per room in that window.
DEFAULT_FLOOD_LIMIT = (10, 10)

ERROR_CODES = frozenset(
    {
        "forbidden",
        "not_found",
        "invalid",
        "room_locked",
        "thread_locked",
        "rate_limited",
        "too_long",
        "too_large",
        "unsupported_type",
    }
)


class Refused(PermissionDenied):
    """PermissionDenied that says why: "forbidden", "room_locked" or "thread_locked"."""

    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code


def error_code(exc: BaseException) -> str:
    """The contract's error code of an exception raised by a service or an access function."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in ERROR_CODES:
        return code
    if isinstance(exc, PermissionDenied):
        return "forbidden"
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        return "not_found"
    return "invalid"


def error_detail(exc: BaseException) -> str:
    """A human sentence for the error (the first message of a ValidationError)."""
    if isinstance(exc, ValidationError):
        return " ".join(str(m) for m in exc.messages)
    return str(exc) or _("You may not do this.")


# --- Rooms ------------------------------------------------------------------------------------


def room_slug_for(topic: Topic) -> str:
    return f"{topic.working_group.slug}-{topic.letter}"


@transaction.atomic
def rooms_ensure_for_topics() -> int:
    """One room per topic, slug `wg1-a` ... `wg2-n`; returns how many were created."""
    rooms = [
        Room(
            slug=room_slug_for(topic),
            title=topic.title,
            description=topic.text,
            working_group=topic.working_group,
            topic=topic,
        )
        for topic in Topic.objects.select_related("working_group").filter(room__isnull=True)
    ]
    # Field validation per room (its topic and group were just read: no lookup per foreign
    # key), uniqueness in one query for all: the seed runs for most tests.
    for room in rooms:
        room.full_clean(
            exclude=["working_group", "topic"], validate_unique=False, validate_constraints=False
        )
    taken = set(
        Room.objects.filter(slug__in=[r.slug for r in rooms]).values_list("slug", flat=True)
    )
    if taken:
        raise ValidationError(
            {
                "slug": ngettext(
                    "This room slug is already taken: %(slugs)s.",
                    "These room slugs are already taken: %(slugs)s.",
                    len(taken),
                )
                % {"slugs": ", ".join(sorted(taken))}
            }
        )
    Room.objects.bulk_create(rooms)
    return len(rooms)


# --- Rules shared by the writes ---------------------------------------------------------------


def _check_can_post(member: User, room: Room, thread: Thread | None) -> None:
    """Raise Refused unless `member` may post in `room` (and `thread`, when given) now."""
    _check_may_post(member, room, thread)
    # A member a moderator muted here (forums.moderation.Muted, code "forbidden").
    moderation.check_not_muted(member=member, room=room)


def _check_may_post(member: User, room: Room, thread: Thread | None) -> None:
    """_check_can_post without the mute, which a post reads with its other checks."""
    if not policy.is_participant(member):
        raise Refused(_("Sign in with a verified account to post."))
    if room.state == Room.State.ARCHIVED:
        raise Refused(
            _("This room is archived: it can be read, not written to."), code="room_locked"
        )
    if not policy.can_post_in_room(member, room):
        if room.state == Room.State.LOCKED and _may_post_when_open(member, room):
            raise Refused(_("This room is locked: only moderators post."), code="room_locked")
        raise Refused(_("You may read this room but not post in it."))
    if thread is not None and thread.locked and not policy.can_moderate_room(member, room):
        raise Refused(_("This thread is locked: only moderators post."), code="thread_locked")


def _may_post_when_open(member: User, room: Room) -> bool:
    if room.working_group_id is None:
        return any(r in POSTING_ROLES for r in policy.roles_of(member).values())
    return policy.role_in(member, room.working_group_id) in POSTING_ROLES


def flood_limit() -> tuple[int, int]:
    """settings.FORUMS_FLOOD_LIMIT = (messages, seconds); (10, 10) when unset."""
    value = getattr(settings, "FORUMS_FLOOD_LIMIT", DEFAULT_FLOOD_LIMIT)
    count, seconds = value
    return int(count), int(seconds)


class RateLimitedError(ValidationError):
    """The posting limit or slow mode refused a post (code "rate_limited"), with the moment the
    member may post in the room again (`free_at`) and which rule refused (`kind`)."""

    def __init__(self, message: str, *, kind: str, free_at: datetime) -> None:
        super().__init__(message, code="rate_limited")
        self.kind = kind
        self.free_at = free_at


def _flood_refused(count: int, seconds: int, free_at: datetime) -> RateLimitedError:
    return RateLimitedError(
        _("Too many messages: at most %(count)s every %(seconds)s seconds in a room.")
        % {"count": count, "seconds": seconds},
        kind="flood",
        free_at=free_at,
    )


def _slow_mode_refused(wait: int, free_at: datetime) -> RateLimitedError:
    return RateLimitedError(
        _("Slow mode: wait %(wait)s more seconds before your next message here.")
        % {"wait": max(wait, 1)},
        kind="slow",
        free_at=free_at,
    )


# The names of the annotations a post's checks add to the row it reads under the room's lock.
_EXISTING = "post_existing_id"
_MUTED_UNTIL = "post_muted_until"
_NTH_RECENT = "post_nth_recent_at"
_LAST_POST = "post_last_at"
_REPLY_OK = "post_reply_ok"
_FOLLOWED = "post_followed"
_ROLES = "post_author_roles"


@functools.cache
def _names() -> dict[str, str]:
    """Quoted table and column names of the post checks' statement (minga.rows)."""
    return {
        "message": rows.table(Message),
        "mute": rows.table(RoomMute),
        "follow": rows.table(Follow),
        "thread": rows.table(Thread),
        "t.message_count": rows.column(Thread, "message_count"),
        "t.last_activity_at": rows.column(Thread, "last_activity_at"),
        **{f"m.{a}": rows.column(Message, a) for a in _MESSAGE_COLUMNS},
        **{f"x.{a}": rows.column(RoomMute, a) for a in ("room_id", "member_id", "until")},
        **{f"f.{a}": rows.column(Follow, a) for a in _FOLLOW_COLUMNS},
        "t.id": rows.column(Thread, "id"),
    }


_MESSAGE_COLUMNS = ("id", "room_id", "author_id", "client_id", "created_at", "thread_id")
_FOLLOW_COLUMNS = ("level", "member_id", "room_id", "thread_id")


@functools.cache
def _thread_columns() -> rows.Columns[Thread]:
    # Qualified by the table's own name: SQLite takes no alias in an UPDATE's RETURNING.
    return rows.Columns(
        Thread, rows.table(Thread), [f.attname for f in Thread._meta.concrete_fields]
    )


# Every name formatted into the post checks' statement is a quoted table or column name from the
# models (_names); every value is a parameter (S608 below).
def _post_checks(
    *,
    author: User,
    room: Room,
    client_id: uuid.UUID,
    now: datetime,
    thread_id: int | None = None,
    reply_to_id: int | None = None,
) -> tuple[Thread | None, dict[str, Any]]:
    """What a post checks under the room's lock, read in one statement with the thread it goes
    to (None for a new thread), so that the checks cost no round trip of their own: the
    author's message with this client_id (a repeat), the end of a mute in force, the
    created_at of the author's `count`-th newest message in the flood window (None: under the
    limit), the author's last message (only in slow mode), whether `reply_to_id` is a message
    of the thread, and whether anyone else follows the thread (a new thread: the room), which
    tells the notifications whether there is anyone to tell besides mentions and replies.
    Read in a statement of its own after the lock was taken, so they see every post committed
    before it. The statement is written out (minga.rows), not compiled from querysets on every
    post: that compiling was a third of a post's CPU (docs/performance.md, "The write path").

    The same statement counts the post on its thread: it is the thread's `UPDATE` (message
    count + 1, last activity `now`), the checks in its `RETURNING`, and the thread it returns
    is the counted one. A refused post raises inside the post's transaction, which rolls the
    count back with the seq. Where the author's roles are not known yet (`policy.roles_known`:
    a request's member; the gateway reads them with the member), they are read here too and
    cached on `author` for the policy's checks. Both save a round trip under the room's lock
    (docs/performance.md, "A post's round trips").
    """
    n = _names()
    count, seconds = flood_limit()
    author_id = rows.param(Message, "author_id", author.pk)
    mine = f"FROM {n['message']} m WHERE m.{n['m.room_id']} = %s AND m.{n['m.author_id']} = %s"
    newest = f"ORDER BY m.{n['m.created_at']} DESC LIMIT 1"
    parts: list[tuple[str, str, list[Any]]] = [
        (
            _EXISTING,
            f"(SELECT m.{n['m.id']} FROM {n['message']} m WHERE m.{n['m.author_id']} = %s "  # noqa: S608
            f"AND m.{n['m.client_id']} = %s LIMIT 1)",
            [author_id, rows.param(Message, "client_id", client_id)],
        ),
        (
            _MUTED_UNTIL,
            f"(SELECT x.{n['x.until']} FROM {n['mute']} x WHERE x.{n['x.room_id']} = %s "  # noqa: S608
            f"AND x.{n['x.member_id']} = %s AND x.{n['x.until']} > %s "
            f"ORDER BY x.{n['x.until']} DESC LIMIT 1)",
            [room.pk, author_id, rows.param(RoomMute, "until", now)],
        ),
        (
            _NTH_RECENT,
            f"(SELECT m.{n['m.created_at']} {mine} AND m.{n['m.created_at']} > %s {newest} "
            "OFFSET %s)",
            [
                room.pk,
                author_id,
                rows.param(Message, "created_at", now - timedelta(seconds=seconds)),
                count - 1,
            ],
        ),
    ]
    if room.slow_mode_seconds:
        parts.append(
            (_LAST_POST, f"(SELECT m.{n['m.created_at']} {mine} {newest})", [room.pk, author_id])
        )
    followers = (
        f"SELECT 1 FROM {n['follow']} f WHERE f.{n['f.level']} = %s AND f.{n['f.member_id']} <> %s"  # noqa: S608
    )
    following = [Follow.Level.FOLLOW.value, author_id]
    if thread_id is None:
        parts.append(
            (
                _FOLLOWED,
                f"EXISTS ({followers} AND f.{n['f.room_id']} = %s AND f.{n['f.thread_id']} IS NULL)",
                [*following, room.pk],
            )
        )
    else:
        parts.append(
            (
                _FOLLOWED,
                f"EXISTS ({followers} AND f.{n['f.thread_id']} = {n['thread']}.{n['t.id']})",
                following,
            )
        )
    if thread_id is not None and reply_to_id is not None:
        parts.append(
            (
                _REPLY_OK,
                f"EXISTS (SELECT 1 FROM {n['message']} m WHERE m.{n['m.id']} = %s "  # noqa: S608
                f"AND m.{n['m.thread_id']} = {n['thread']}.{n['t.id']})",
                [reply_to_id],
            )
        )
    roles = None if policy.roles_known(author) else policy.roles_subquery(connection.vendor)
    if roles is not None:
        parts.append((_ROLES, roles, [author.pk]))
    checks = ", ".join(sql for _name, sql, _params in parts)
    params = [value for _name, _sql, values in parts for value in values]
    columns = _thread_columns()
    if thread_id is None:
        statement = f"SELECT {checks}"
    else:
        table, counted = n["thread"], n["t.message_count"]
        statement = (
            f"UPDATE {table} SET {counted} = {counted} + 1, {n['t.last_activity_at']} = %s "  # noqa: S608
            f"WHERE {table}.{n['t.id']} = %s RETURNING {columns.sql}, {checks}"
        )
        params[:0] = [rows.param(Thread, "last_activity_at", now), thread_id]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        raise Thread.DoesNotExist(f"No thread {thread_id}.")
    thread = None if thread_id is None else columns.instance(row[: len(columns)])
    names = [name for name, _sql, _params in parts]
    return thread, _answers(author, names, row[len(row) - len(parts) :])


def _answers(author: User, names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """_post_checks' answers by name, each as its checks read it; the author's roles, where
    they were read, are cached on `author` instead."""
    found: dict[str, Any] = {}
    for name, value in zip(names, values, strict=True):
        if name in (_MUTED_UNTIL, _NTH_RECENT, _LAST_POST):
            found[name] = rows.moment(value)
        elif name in (_FOLLOWED, _REPLY_OK):
            found[name] = bool(value)
        elif name == _ROLES:
            policy.remember_roles(author, policy.parse_roles(value))
        else:
            found[name] = value
    return found


def _check_rate(member: User, room: Room, now: datetime, found: Mapping[str, Any]) -> None:
    """Flood control and slow mode, from `found` (_post_checks' answers, read under the room's
    row lock, so counts cannot race).

    Raises RateLimitedError; the caller remembers it (`_remember_refusal`) once the lock is
    released.
    """
    count, seconds = flood_limit()
    # When the author has `count` posts in the window, it frees as the oldest of them leaves it.
    nth_recent = found[_NTH_RECENT]
    if nth_recent is not None:
        raise _flood_refused(count, seconds, nth_recent + timedelta(seconds=seconds))
    if room.slow_mode_seconds and not policy.can_moderate_room(member, room):
        last = found[_LAST_POST]
        if last is not None and now - last < timedelta(seconds=room.slow_mode_seconds):
            wait = room.slow_mode_seconds - int((now - last).total_seconds())
            raise _slow_mode_refused(wait, last + timedelta(seconds=room.slow_mode_seconds))


def _check_post(
    member: User, room: Room, thread: Thread | None, now: datetime, found: Mapping[str, Any]
) -> None:
    """Every refusal of a post (may post here, muted, flood, slow mode) from `found`."""
    _check_may_post(member, room, thread)
    # A member a moderator muted here (forums.moderation.Muted, code "forbidden").
    moderation.refuse_if_muted(member=member, room=room, until=found[_MUTED_UNTIL])
    _check_rate(member, room, now, found)


class _RepeatError(Exception):
    """The author already posted with this client_id: the transaction is rolled back (the seq
    it took is given back) and the stored message answers."""


# After a refusal, the member's next posts in that room are refused before the room's row lock
# (no lock, no count) until the window frees: a member flooding at ten times the limit, over the
# socket or the API, then no longer queues behind the room's lock with the other members' posts
# (issue 7, FLOOD-LATENCY). The marker lives in the cache (Redis in production), so every process
# and both transports see it. It lasts until the window frees, so it refuses nothing the locked
# check would accept, but at most this long: a marker gone stale (a limit raised, slow mode turned
# off, a member made moderator) refuses for at most 5 s, and a flood past it still costs only
# one locked check per 5 s per member and room.
FLOOD_COOLDOWN_MAX_SECONDS = 5.0


def _cooldown_key(member_id: int, room_id: int) -> str:
    return f"forums:flood:{member_id}:{room_id}"


def _remember_refusal(member: User, room_id: int, refused: RateLimitedError) -> None:
    """Keep `refused` for the pre-lock check. Called after the room lock is released: a Redis
    round trip (or, Redis paused, its socket timeout) must not be spent holding the lock."""
    now = timezone.now()
    left = min((refused.free_at - now).total_seconds(), FLOOD_COOLDOWN_MAX_SECONDS)
    if left <= 0:
        return
    marker = {
        "kind": refused.kind,
        "until": now.timestamp() + left,
        "free_at": refused.free_at.timestamp(),
    }
    # Whole seconds for the backend's TTL (Redis truncates; 0 would delete); "until" is exact.
    cache.set(_cooldown_key(member.pk, room_id), marker, math.ceil(left))


def _cooling_down(member: User, room_id: int) -> RateLimitedError | None:
    """The remembered refusal while (member, room) cools down, else None. No database query;
    a cache that cannot answer (minga.cache.ResilientRedisCache) answers "no marker", so the
    locked check decides (fail open)."""
    marker = cache.get(_cooldown_key(member.pk, room_id))
    if not isinstance(marker, dict):
        return None
    now = timezone.now()
    if marker.get("until", 0) <= now.timestamp():
        return None
    free_at = datetime.fromtimestamp(marker["free_at"], tz=UTC)
    if marker.get("kind") == "slow":
        return _slow_mode_refused(math.ceil((free_at - now).total_seconds()), free_at)
    count, seconds = flood_limit()
    return _flood_refused(count, seconds, free_at)


def clean_body(body: Any) -> str:
    """The Markdown source to store: trailing blanks and leading blank lines removed.

    Raises ValidationError "invalid" (empty, not text, NUL) or "too_long" (over 20,000 chars).
    """
    if not isinstance(body, str):
        raise ValidationError(_("The message must be text."), code="invalid")
    text = body.lstrip("\r\n").rstrip()
    if not text.strip():
        raise ValidationError(_("Write something first: the message is empty."), code="invalid")
    if "\x00" in text:
        raise ValidationError(_("The message contains a NUL character."), code="invalid")
    if len(text) > MAX_BODY_CHARS:
        raise ValidationError(
            _("The message is too long: %(length)s characters, at most %(max)s.")
            % {"length": len(text), "max": MAX_BODY_CHARS},
            code="too_long",
        )
    return text


def clean_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ValidationError(_("A thread needs a title."), code="invalid")
    text = " ".join(title.split())
    if "\x00" in text:
        raise ValidationError(_("The title contains a NUL character."), code="invalid")
    if len(text) > MAX_TITLE_CHARS:
        raise ValidationError(
            _("The title is too long: %(length)s characters, at most %(max)s.")
            % {"length": len(text), "max": MAX_TITLE_CHARS},
            code="too_long",
        )
    return text


def _handles_in(body: str) -> dict[str, int]:
    """{handle: member id} for the active members `body` names with @handle (one query, or none)."""
    candidates = candidate_handles(body)
    if not candidates:
        return {}
    return dict(
        User.objects.filter(handle__in=candidates, is_active=True).values_list("handle", "pk")
    )


def _existing_message(author: User, client_id: uuid.UUID) -> Message | None:
    # Not .first(): its ORDER BY id lets PostgreSQL walk the primary key of every message
    # instead of the (author, client_id) unique index; there is at most one row anyway.
    found = Message.objects.select_related(
        "author", "author__organization", "room", "thread"
    ).filter(author=author, client_id=client_id)[:1]
    return next(iter(found), None)


def _stored_message(author: User, client_id: uuid.UUID) -> Message:
    """The message a repeat's check found under the lock (messages are never removed, only
    marked deleted, so it is still there)."""
    existing = _existing_message(author, client_id)
    if existing is None:
        raise ValidationError(_("This message was deleted."), code="not_found")
    return existing


def _lock_room(room_id: int) -> Room:
    # The room row lock orders every change of the room (its change number is taken under it).
    return Room.objects.select_for_update().get(pk=room_id)


def _take_seq(room_id: int) -> Room:
    """Lock the room's row and take its next seq, in one statement; the room, `last_seq` being
    the seq taken. Room.DoesNotExist when there is no such room.

    The row lock orders every insert into the room: the seq is taken, the message inserted and
    the transaction committed while it is held, so seq order is commit order. A post refused
    after this rolls its transaction back, and the seq with it: seqs have no gaps.
    """
    statement, columns = _take_seq_statement()
    with connection.cursor() as cursor:
        cursor.execute(statement, [rows.param(Room, "id", room_id)])
        row = cursor.fetchone()
    if row is None:
        raise Room.DoesNotExist
    return columns.instance(row)


@functools.cache
def _take_seq_statement() -> tuple[str, rows.Columns[Room]]:
    """_take_seq's statement and the whole room it returns, written once (minga.rows): through
    `Room.objects.raw` each post paid for a RawQuerySet's column-to-field matching."""
    table = rows.table(Room)
    # Qualified by the table's own name: SQLite takes no alias in an UPDATE's RETURNING.
    room = rows.Columns(Room, table, [f.attname for f in Room._meta.concrete_fields])
    seq = rows.column(Room, "last_seq")
    return (
        f"UPDATE {table} SET {seq} = {seq} + 1 WHERE {rows.column(Room, 'id')} = %s "  # noqa: S608 - names from the model
        f"RETURNING {room.sql}",
        room,
    )


def _insert_message(
    *,
    room: Room,
    thread: Thread,
    author: User,
    body: str,
    client_id: uuid.UUID,
    reply_to_id: int | None,
    now: datetime,
    rendered: Rendered,
    files: Sequence[Attachment] = (),
) -> Message:
    """Insert the message with the seq the caller took (`_take_seq`, which holds the room lock);
    `files` (checked and locked by the caller) are attached to it. The caller has counted it on
    `thread` already (message_count, last_activity_at): `_post_checks` for a message to an
    existing thread, the new thread's own row for its first message."""
    message = Message(
        thread=thread,
        room=room,
        seq=room.last_seq,
        author=author,
        body=body,
        body_html=rendered.html,
        reply_to_id=reply_to_id,
        client_id=client_id,
        created_at=now,
    )
    # The related rows were just read under the lock: skip full_clean's existence queries.
    message.full_clean(
        exclude=["thread", "room", "author", "reply_to"],
        validate_unique=False,
        validate_constraints=False,
    )
    # Written once, not compiled per post: the insert and the thread's count were a third of a
    # post's CPU (docs/performance.md, "The write path").
    rows.insert(message)
    mentions = Mention.objects.bulk_create(
        [Mention(message=message, member_id=member_id) for member_id in rendered.mentioned_ids]
    )
    if files:
        Attachment.objects.filter(pk__in=[f.pk for f in files]).update(message=message)
        for attached in files:
            attached.message = message
    prime(message, "reactions", [], Reaction)
    prime(message, "mentions", mentions, Mention)
    # In id order, as the list selectors prefetch them.
    prime(message, "attachments", sorted(files, key=lambda f: f.pk), Attachment)
    return message


def _announce_created(
    message: Message, *, followed: bool, new_thread: Thread | None = None
) -> None:
    """After commit: `message.created` to the room's group, then the signals; `followed`: did
    anyone but the author follow the thread (a new thread: the room) (_post_checks)."""
    frame: dict[str, Any] = {
        "type": "message.created",
        "room": message.room.slug,
        "seq": message.seq,
        "message": message_payload(message),
    }
    if new_thread is not None:
        frame["new_thread"] = thread_payload(new_thread)
    bus.publish_on_commit(bus.room_group(message.room_id), frame)
    mentioned = [m.member_id for m in message.mentions.all()]
    if new_thread is not None:
        signals.send_on_commit(signals.thread_created, Thread, thread=new_thread, message=message)
    signals.send_on_commit(
        signals.message_posted,
        Message,
        message=message,
        mentioned_ids=mentioned,
        followed=followed,
    )


# --- Threads and messages ---------------------------------------------------------------------


def thread_create(
    *, room: Room, author: User, title: str, body: str, client_id: uuid.UUID | None = None
) -> Thread:
    """Open a thread in `room` with `body` as its first message; returns the thread.

    The same (author, client_id) returns the thread that message opened, creating nothing.
    Side effects: locks the room row (takes a seq), writes the thread, its first message and its
    mentions; after commit publishes `message.created` (with `new_thread`) to the room's group and
    sends `thread_created` and `message_posted`. Refused by the posting limit or slow mode
    ("rate_limited"): sets the cache's cooldown marker of (author, room); while it is set, new
    posts are refused before the room lock.
    """
    client_id = client_id or uuid.uuid4()
    existing = _existing_message(author, client_id)
    if existing is not None:
        return existing.thread
    # A member cooling down after a refusal is refused here, without the room's lock.
    refused = _cooling_down(author, room.pk)
    if refused is not None:
        raise refused
    clean = clean_body(body)
    clean_t = clean_title(title)
    # Rendered before the room lock is taken: the lock is held only for the insert.
    rendered = render(clean, handles=_handles_in(clean))
    now = timezone.now()
    try:
        with transaction.atomic():
            locked = _take_seq(room.pk)
            _none, found = _post_checks(author=author, room=locked, client_id=client_id, now=now)
            if found[_EXISTING] is not None:
                raise _RepeatError
            _check_post(author, locked, None, now, found)
            # Written with its first message counted: no update of its own.
            thread = Thread(
                room=locked,
                title=clean_t,
                author=author,
                created=now,
                last_activity_at=now,
                message_count=1,
            )
            thread.full_clean()
            thread.save()
            message = _insert_message(
                room=locked,
                thread=thread,
                author=author,
                body=clean,
                client_id=client_id,
                reply_to_id=None,
                now=now,
                rendered=rendered,
            )
            _announce_created(message, followed=found[_FOLLOWED], new_thread=thread)
    except RateLimitedError as refused:
        _remember_refusal(author, room.pk, refused)
        raise
    except _RepeatError:
        return _stored_message(author, client_id).thread
    except IntegrityError:
        # The same client_id committed by a concurrent request of the same author.
        existing = _existing_message(author, client_id)
        if existing is None:
            raise
        return existing.thread
    return thread


def message_post(
    *,
    thread: Thread,
    author: User,
    body: str,
    client_id: uuid.UUID,
    reply_to_id: int | None = None,
    attachment_ids: Sequence[int] = (),
) -> tuple[Message, bool]:
    """Post `body` in `thread`; returns (message, created).

    `attachment_ids` are files `author` uploaded to this room (attachment_upload) and has not
    posted yet; any other id raises ValidationError "invalid" and nothing is written.
    Idempotent on (author, client_id): a repeat returns the stored message and False, and
    announces nothing. Side effects: locks the room row and takes the next seq; writes the
    message and its mentions, attaches the files (their rows locked), bumps the thread's count
    and activity; after commit publishes `message.created` to the room's group and sends
    `message_posted`. Refused by the posting limit or slow mode ("rate_limited"): sets the
    cache's cooldown marker of (author, room); while it is set, a repeat gets its stored message
    and anything else "rate_limited", before the room lock (one query: the repeat check).
    """
    # A member cooling down after a refusal (see FLOOD_COOLDOWN_MAX_SECONDS) is answered here,
    # without the room's lock: a repeat client_id still gets its stored message.
    refused = _cooling_down(author, thread.room_id)
    if refused is not None:
        existing = _existing_message(author, client_id)
        if existing is not None:
            return existing, False
        raise refused
    # Otherwise the idempotency check runs once, under the room lock below (a repeat is rare: a
    # client's retry); checking before the lock as well cost every post a query on the process's
    # database thread (docs/performance.md, item 4).
    wanted = _clean_attachment_ids(attachment_ids)
    clean = clean_body(body)
    # Rendered before the room lock is taken: the lock is held only for the insert.
    rendered = render(clean, handles=_handles_in(clean))
    now = timezone.now()
    try:
        with transaction.atomic():
            room = _take_seq(thread.room_id)
            # The thread read again under the lock (it may have been locked meanwhile), with
            # every check's answer: the post's one query before its writes.
            fresh, found = _post_checks(
                author=author,
                room=room,
                client_id=client_id,
                now=now,
                thread_id=thread.pk,
                reply_to_id=reply_to_id,
            )
            assert fresh is not None  # noqa: S101 - a thread id was given
            if found[_EXISTING] is not None:
                raise _RepeatError
            _check_post(author, room, fresh, now, found)
            files = _pending_attachments(author, room, wanted)
            if reply_to_id is not None and not found[_REPLY_OK]:
                raise ValidationError(
                    _("reply_to: no message %(id)s in this thread.") % {"id": reply_to_id},
                    code="invalid",
                )
            message = _insert_message(
                room=room,
                thread=fresh,
                author=author,
                body=clean,
                client_id=client_id,
                reply_to_id=reply_to_id,
                now=now,
                rendered=rendered,
                files=files,
            )
            _announce_created(message, followed=found[_FOLLOWED])
    except RateLimitedError as refused:
        _remember_refusal(author, thread.room_id, refused)
        raise
    except _RepeatError:
        return _stored_message(author, client_id), False
    except IntegrityError:
        existing = _existing_message(author, client_id)
        if existing is None:
            raise
        return existing, False
    thread.message_count = fresh.message_count
    thread.last_activity_at = fresh.last_activity_at
    return message, True


def _lock_message(message: Message) -> tuple[Room, Message]:
    """Lock the message's room, then the message; returns both.

    Room first, as message_post does: the room row orders every change of the room (its change
    number is taken under this lock), and one lock order everywhere cannot deadlock (a post that
    replies to a message takes a key-share lock on that message after its room lock).
    """
    room = _lock_room(message.room_id)
    locked = (
        Message.objects.select_for_update(of=("self",))
        .select_related("thread", "author", "author__organization")
        .get(pk=message.pk)
    )
    locked.room = room
    return room, locked


def _mark_content_change(message: Message, room: Room, kind: str) -> list[str]:
    """Give `message` the room's next change number as a content change of `kind`; the fields
    to save."""
    change = next_change(room)
    message.change = change
    message.content_change = change
    message.content_kind = kind
    return ["change", "content_change", "content_kind"]


def _gone(message: Message) -> None:
    if message.deleted_at is not None:
        raise ValidationError(_("This message was deleted."), code="not_found")
    if message.hidden_at is not None:
        raise Refused(_("A moderator hid this message."))


@transaction.atomic
def message_edit(*, message: Message, editor: User, body: str) -> Message:
    """Replace the body of the editor's own message, keeping the old body as a revision.

    An unchanged body changes nothing and announces nothing. Side effects: locks the room row
    and the message row and takes the room's next change number; writes a MessageRevision, the
    new body and HTML and the new set of mentions; after commit publishes `message.edited` to
    the room's group and sends `message_edited`.
    """
    clean = clean_body(body)
    room, locked = _lock_message(message)
    _gone(locked)
    if locked.author_id != editor.pk:
        raise Refused(_("Only the author may edit a message."))
    _check_can_post(editor, locked.room, locked.thread)
    if clean == locked.body:
        _copy_state(locked, message)
        return message
    now = timezone.now()
    MessageRevision.objects.create(message=locked, body=locked.body, edited_at=now, editor=editor)
    rendered = render(clean, handles=_handles_in(clean))
    before = set(locked.mentions.values_list("member_id", flat=True))
    after = set(rendered.mentioned_ids)
    locked.mentions.filter(member_id__in=before - after).delete()
    Mention.objects.bulk_create(
        [Mention(message=locked, member_id=m) for m in rendered.mentioned_ids if m not in before]
    )
    locked.body = clean
    locked.body_html = rendered.html
    locked.edited_at = now
    locked.full_clean(validate_unique=False, validate_constraints=False)
    changed = _mark_content_change(locked, room, ContentChange.EDITED)
    locked.save(update_fields=["body", "body_html", "edited_at", *changed])
    _copy_state(locked, message)
    bus.publish_on_commit(
        bus.room_group(locked.room_id),
        {
            "type": "message.edited",
            "room": room.slug,
            "seq": room.last_seq,
            "change": locked.change,
            "message": message_payload(_with_relations(locked)),
        },
    )
    signals.send_on_commit(
        signals.message_edited,
        Message,
        message=locked,
        editor=editor,
        added_mention_ids=[m for m in rendered.mentioned_ids if m not in before],
    )
    return message


@transaction.atomic
def message_delete(*, message: Message, actor: User) -> Message:
    """Delete a message, leaving a tombstone: the row, its seq and its place in replies stay.

    Authors delete their own (not in an archived room); room moderators delete anyone's.
    Deleting a tombstone again changes nothing. Side effects: locks the room row and the message
    row and takes the room's next change number; empties body and HTML, removes its revisions,
    mentions and reactions; after commit publishes `message.deleted` to the room's group and
    sends `message_deleted`.
    """
    room, locked = _lock_message(message)
    if locked.deleted_at is not None:
        _copy_state(locked, message)
        return message
    moderator = policy.can_moderate_room(actor, room)
    if not moderator:
        if not policy.is_participant(actor) or locked.author_id != actor.pk:
            raise Refused(_("Only the author or a moderator may delete a message."))
        if room.state == Room.State.ARCHIVED:
            raise Refused(
                _("This room is archived: it can be read, not written to."), code="room_locked"
            )
    locked.revisions.all().delete()
    locked.mentions.all().delete()
    locked.reactions.all().delete()
    locked.body = ""
    locked.body_html = ""
    locked.deleted_at = timezone.now()
    changed = _mark_content_change(locked, room, ContentChange.DELETED)
    locked.save(update_fields=["body", "body_html", "deleted_at", *changed])
    _copy_state(locked, message)
    prime(locked, "reactions", [], Reaction)
    prime(locked, "mentions", [], Mention)
    bus.publish_on_commit(
        bus.room_group(locked.room_id),
        {
            "type": "message.deleted",
            "room": room.slug,
            "seq": room.last_seq,
            "change": locked.change,
            "message": message_payload(locked),
        },
    )
    signals.send_on_commit(signals.message_deleted, Message, message=locked, actor=actor)
    return message


def _with_relations(message: Message) -> Message:
    prime(message, "reactions", list(message.reactions.all()), Reaction)
    prime(message, "mentions", list(message.mentions.all()), Mention)
    prime(message, "attachments", list(message.attachments.all()), Attachment)
    return message


def _copy_state(source: Message, target: Message) -> None:
    """Bring the caller's instance up to date with what was written through the locked copy."""
    if source is target:
        return
    for field in (
        "body",
        "body_html",
        "edited_at",
        "deleted_at",
        "hidden_at",
        "hidden_reason",
        "change",
        "content_change",
        "content_kind",
    ):
        setattr(target, field, getattr(source, field))
    target.__dict__.pop("_prefetched_objects_cache", None)


@transaction.atomic
def reaction_toggle(*, message: Message, member: User, emoji: str) -> dict[str, int]:
    """Add `member`'s `emoji` reaction to `message`, or take it back; returns the counts after.

    Side effects: locks the room row (takes its next change number) and the message row
    (toggles of one message are serial); writes or deletes one Reaction; after commit publishes `reaction.changed` to the room's group and sends
    `reaction_changed`.
    """
    if emoji not in REACTION_EMOJI:
        raise ValidationError(
            _("Unknown reaction; use one of %(emoji)s.") % {"emoji": " ".join(REACTION_EMOJI)},
            code="invalid",
        )
    room, locked = _lock_message(message)
    _gone(locked)
    _check_can_post(member, room, locked.thread)
    deleted, _rows = Reaction.objects.filter(message=locked, member=member, emoji=emoji).delete()
    added = not deleted
    if added:
        Reaction.objects.create(message=locked, member=member, emoji=emoji)
    grouped = dict(
        Reaction.objects.filter(message=locked)
        .values("emoji")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("emoji", "n")
    )
    counts = {e: grouped[e] for e in REACTION_EMOJI if grouped.get(e)}
    change = next_change(room)
    Message.objects.filter(pk=locked.pk).update(change=change)
    message.change = change
    message.__dict__.pop("_prefetched_objects_cache", None)
    bus.publish_on_commit(
        bus.room_group(locked.room_id),
        {
            "type": "reaction.changed",
            "room": room.slug,
            "seq": room.last_seq,
            "change": change,
            "message_id": locked.pk,
            "reactions": counts,
        },
    )
    signals.send_on_commit(
        signals.reaction_changed, Reaction, message=locked, member=member, emoji=emoji, added=added
    )
    return counts


def _read_mark_upsert(
    member_id: int, thread_id: int, message_id: int, now: datetime
) -> tuple[int, int, int] | None:
    """(id, message id, seq) of the mark when this statement created or moved it, else None
    (the message is not in the thread, or the mark is at or past it already).

    One statement: it reads the message's seq in the thread, inserts the mark or moves it
    forward only (the conflict's WHERE), concurrent marks of the same member serialised by the
    row lock the upsert takes. PostgreSQL and SQLite (3.35+: RETURNING) both run it.
    """
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    marks, messages = quote(ReadState._meta.db_table), quote(Message._meta.db_table)
    sql = f"""
        INSERT INTO {marks} (member_id, thread_id, last_read_message_id, last_read_seq, updated_at)
        SELECT %s, %s, m.id, m.seq, %s FROM {messages} m WHERE m.id = %s AND m.thread_id = %s
        ON CONFLICT (member_id, thread_id) DO UPDATE SET
            last_read_message_id = excluded.last_read_message_id,
            last_read_seq = excluded.last_read_seq,
            updated_at = excluded.updated_at
        WHERE {marks}.last_read_seq < excluded.last_read_seq
        RETURNING id, last_read_message_id, last_read_seq
    """  # noqa: S608 - only quoted table names are formatted in; values are parameters
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(sql, [member_id, thread_id, stamp, message_id, thread_id])
        row = cursor.fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def read_mark(*, member: User, thread: Thread, message_id: int) -> ReadState:
    """Mark `thread` read by `member` up to message `message_id`; the mark never moves back.

    One query when the mark moves (an upsert: _read_mark_upsert), two when it does not (the
    mark is read back to return it) or the message is not in the thread (code not_found).
    The thread's room should be loaded with it (select_related) and the member's roles cached.
    No transaction of its own: the one write is a single statement.
    Side effects: writes the member's ReadState; when it moved forward, after commit publishes
    `read` to the member's own group (their other tabs) and sends `thread_read`.
    """
    if not policy.can_read_room(member, thread.room):
        raise Refused(_("You may not read this room."))
    now = timezone.now()
    moved = _read_mark_upsert(member.pk, thread.pk, message_id, now)
    if moved is None:
        # The message must be in the thread for "not moved" to be the answer.
        state = ReadState.objects.filter(
            member=member, thread_id=thread.pk, thread__messages__pk=message_id
        ).first()
        if state is None:
            raise ValidationError(
                _("No message %(id)s in this thread.") % {"id": message_id}, code="not_found"
            )
        return state
    pk, last_read_message_id, seq = moved
    state = ReadState(
        pk=pk,
        member=member,
        thread=thread,
        last_read_message_id=last_read_message_id,
        last_read_seq=seq,
        updated_at=now,
    )
    bus.publish_on_commit(
        bus.user_group(member.pk),
        {
            "type": "read",
            "room": thread.room.slug,
            "thread": thread.pk,
            "message_id": last_read_message_id,
            "seq": seq,
        },
    )
    signals.send_on_commit(signals.thread_read, ReadState, read_state=state)
    return state


# --- Follow and mute --------------------------------------------------------------------------


@transaction.atomic
def follow_set(
    *,
    member: User,
    level: str | None,
    room: Room | None = None,
    thread: Thread | None = None,
) -> Follow | None:
    """Follow or mute exactly one of `room` / `thread`; `level=None` forgets the choice.

    Notifications read these rows (follow: tell me about new threads / messages; mute: never).
    Side effects: writes or deletes one Follow row; nothing is published.
    """
    if (room is None) == (thread is None):
        raise ValidationError(_("Follow either a room or a thread."), code="invalid")
    target_room = room if room is not None else thread.room  # type: ignore[union-attr]
    if not policy.can_read_room(member, target_room):
        raise Refused(_("You may not read this room."))
    if level is not None and level not in Follow.Level.values:
        raise ValidationError(
            _("Unknown level; use one of %(levels)s.") % {"levels": ", ".join(Follow.Level.values)},
            code="invalid",
        )
    target = {"room": room} if room is not None else {"thread": thread}
    if level is None:
        Follow.objects.filter(member=member, **target).delete()
        return None
    follow, _created = Follow.objects.update_or_create(
        member=member, **target, defaults={"level": level}
    )
    return follow


# --- Attachments ------------------------------------------------------------------------------


def attachment_upload(*, room: Room, uploader: User, uploaded_file: File) -> Attachment:
    """Store `uploaded_file` as an attachment of `room`, waiting for `uploader`'s next post.

    The type is sniffed from the content (forums.attachments.sniff), never taken from the name
    or the client; the size is checked against FORUMS_ATTACHMENT_MAX_BYTES before anything is
    read and again while hashing. Raises Refused (as message_post would), ValidationError
    "too_large", "unsupported_type" or "invalid" (empty); a refused file is never stored.
    Side effects: writes the file to default storage under a generated name and one Attachment
    row (the file is deleted again if the row cannot be written); nothing is published.
    """
    _check_can_post(uploader, room, None)
    limit = attachments.max_bytes()
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise _too_large(limit)
    if not uploaded_file.size:
        raise ValidationError(_("The file is empty."), code="invalid")
    raw_name = str(uploaded_file.name or "")
    content_type = attachments.sniff(uploaded_file, name=raw_name)
    if content_type is None:
        raise ValidationError(
            _(
                "This kind of file cannot be attached. Attach PDF, PNG, JPEG, GIF or WebP images, "
                "plain text or CSV, or Office / OpenDocument documents (without macros)."
            ),
            code="unsupported_type",
        )
    digest = hashlib.sha256()
    size = 0
    for chunk in uploaded_file.chunks():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        digest.update(chunk)
    uploaded_file.seek(0)
    attachment = Attachment(
        room=room,
        uploader=uploader,
        original_name=attachments.clean_name(raw_name, content_type),
        content_type=content_type,
        size=size,
        sha256=digest.hexdigest(),
    )
    attachment.full_clean(exclude=["file", "room", "uploader", "message"])
    try:
        with transaction.atomic():
            # The storage write comes first so the row never names a file that is not there.
            attachment.file.save(attachment.original_name, uploaded_file, save=False)
            attachment.save(force_insert=True)
    except BaseException:
        if attachment.file.name:
            attachment.file.storage.delete(attachment.file.name)
        raise
    return attachment


def _too_large(limit: int) -> ValidationError:
    return ValidationError(
        _("The file is too large: at most %(size)s.") % {"size": filesizeformat(limit)},
        code="too_large",
    )


def _clean_attachment_ids(ids: Sequence[Any]) -> list[int]:
    """The distinct ids in order; ValidationError "invalid" for a non-id or too many."""
    wanted: list[int] = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(_("attachments: a list of attachment ids."), code="invalid")
        if value not in wanted:
            wanted.append(value)
    if len(wanted) > attachments.MAX_PER_MESSAGE:
        raise ValidationError(
            _("At most %(count)s attachments per message.")
            % {"count": attachments.MAX_PER_MESSAGE},
            code="invalid",
        )
    return wanted


def _pending_attachments(author: User, room: Room, wanted: list[int]) -> list[Attachment]:
    """Lock and return `author`'s unposted attachments `wanted` in `room`, in the order asked.

    One refusal for every other case (someone else's, another room's, already posted, unknown),
    so the answer tells nothing about files the author may not see.
    """
    if not wanted:
        return []
    found = {
        a.pk: a
        for a in Attachment.objects.select_for_update().filter(
            pk__in=wanted, uploader=author, room=room, message__isnull=True
        )
    }
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise ValidationError(
            _("Attachment %(id)s is not one of your files waiting to be posted in this room.")
            % {"id": missing[0]},
            code="invalid",
        )
    return [found[pk] for pk in wanted]


def attachments_purge(*, unposted_before: datetime) -> int:
    """Delete the files nobody can download again; returns how many.

    Those are uploads never posted (uploaded before `unposted_before`: an abandoned form, a
    refused post, a repeated submission) and the files of deleted messages. A post racing the
    purge either locks the upload first (the purge then skips it) or finds it gone ("invalid").
    Side effects: locks and deletes those Attachment rows; deletes their files from storage
    after commit (a failed commit keeps both).
    """
    storage = Attachment._meta.get_field("file").storage  # type: ignore[attr-defined]
    with transaction.atomic():
        rows = list(
            Attachment.objects.select_for_update(of=("self",))
            .filter(
                Q(message__isnull=True, created__lt=unposted_before)
                | Q(message__deleted_at__isnull=False)
            )
            .values_list("pk", "file")
        )
        Attachment.objects.filter(pk__in=[pk for pk, _name in rows]).delete()
        names = [name for _pk, name in rows if name]

        def delete_files() -> None:
            for name in names:
                storage.delete(name)

        transaction.on_commit(delete_files)
    return len(rows)


# --- Rooms made on request (an event's live room) ---------------------------------------------


@transaction.atomic
def room_create(
    *,
    slug: str,
    title: str,
    description: str = "",
    working_group: Any = None,
    visibility: str = Room.Visibility.NETWORK,
) -> Room:
    """A new open room outside the topic rooms, e.g. an event's live room (events.services).

    The caller checks who may ask for it. Codes: the model's (slug taken: `unique`; a
    working-group room without a group: `visibility_needs_group`).
    Side effects: writes the room; nothing is published (it has no subscribers yet).
    """
    room = Room(
        slug=slug,
        title=" ".join(str(title).split()),
        description=description,
        working_group=working_group,
        visibility=visibility,
    )
    room.full_clean()
    room.save()
    return room


@transaction.atomic
def room_visibility_set(*, room: Room, visibility: str, working_group: Any = None) -> Room:
    """Set who reads `room` (and its working group, which a working-group room needs).

    The caller checks who may ask for it (the secretariat in the admin, an event's organizers
    for the event's own room). Codes: the model's (`invalid_choice`, `visibility_needs_group`).
    Side effects: locks the room row; after commit, publishes `access.changed` to the room's
    group so every subscribed socket re-checks its rooms and one that may no longer read this
    one gets `unsubscribed` (reason `forbidden`) and nothing more of it.
    """
    locked = Room.objects.select_for_update().get(pk=room.pk)
    if locked.visibility == visibility and locked.working_group_id == getattr(
        working_group, "pk", None
    ):
        return locked
    locked.visibility = visibility
    locked.working_group = working_group
    locked.full_clean()
    locked.save(update_fields=["visibility", "working_group"])
    bus.publish_on_commit(bus.room_group(locked.pk), {"type": "access.changed"})
    room.visibility, room.working_group = locked.visibility, locked.working_group
    return locked
