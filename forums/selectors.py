"""Reads for the forums: access functions (fetch *and* check), lists and the message payload.

Lists return querysets or lists with explicit select_related / prefetch_related so their query
count does not grow with their length (tests pin the counts at 1 and 3 items).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    FilteredRelation,
    IntegerField,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _
from minga import rows

from community import policy
from community.models import Membership, Organization, User, WorkingGroup
from community.services import verified_sql

from .models import (
    REACTION_EMOJI,
    Attachment,
    Mention,
    Message,
    Reaction,
    ReadState,
    Room,
    Thread,
)

DEFAULT_PAGE = 50
MAX_PAGE = 200


def rooms_of(*, member: User) -> QuerySet[Room]:
    """The topic rooms of the member's working groups, in slug order."""
    return (
        Room.objects.filter(working_group_id__in=list(policy.roles_of(member)))
        .select_related("working_group", "topic")
        .order_by("working_group__number", "slug")
    )


# --- Access functions -------------------------------------------------------------------------


def room_for_member(*, slug: str, member: Any) -> Room:
    """The room `slug` if `member` may read it: Http404 otherwise,
    the same whether it does not exist or may not be read (denial reveals no existence)."""
    room = Room.objects.select_related("working_group", "topic").filter(slug=slug).first()
    if room is None:
        raise Http404(_("No room “%(slug)s”.") % {"slug": slug})
    if not policy.can_read_room(member, room):
        raise Http404(_("No room “%(slug)s”.") % {"slug": slug})
    return room


def _whole(model: type[Any], alias: str) -> rows.Columns[Any]:
    """Every column of `model`: the whole row, as the ORM reads it."""
    return rows.Columns(model, alias, [f.attname for f in model._meta.concrete_fields])


@functools.cache
def _room_and_member_read() -> tuple[str, rows.Columns[Room], rows.Columns[User]]:
    room = rows.Columns(
        Room, "r", ["id", "slug", "working_group_id", "visibility", "last_seq", "last_change"]
    )
    member = rows.Columns(User, "u", ["id", "language", "is_active", "is_staff"])
    sql = (
        # Names from the models' _meta, values as parameters.
        f"SELECT {room.sql}, {member.sql}, {verified_sql('u')} "  # noqa: S608
        f"FROM {rows.table(Room)} r, {rows.table(User)} u "
        f"WHERE r.{rows.column(Room, 'slug')} = %s AND u.{rows.column(User, 'id')} = %s"
    )
    return sql, room, member


def _member_of(
    found: Sequence[Sequence[Any]],
    member_columns: rows.Columns[User],
    org_columns: rows.Columns[Organization],
) -> User:
    """The member of `_member_and_thread_read`'s rows (one per membership, at least one),
    whole, with their organization (as `select_related("organization")` gives it), the
    verified-email check and their roles (policy.roles_of) filled in."""
    row, orgs_at = found[0], len(member_columns)
    rest_at = orgs_at + len(org_columns)  # then: verified, one membership's group and role
    member = member_columns.instance(row[:orgs_at])
    org_values = row[orgs_at:rest_at]
    org = None if org_values[0] is None else org_columns.instance(org_values)
    User._meta.get_field("organization").set_cached_value(member, org)
    member.__dict__["is_verified"] = bool(row[rest_at])  # the cached_property, filled
    roles = [(r[rest_at + 1], r[rest_at + 2]) for r in found if r[rest_at + 1] is not None]
    policy.remember_roles(member, roles)
    return member


def room_for_member_id(*, slug: str, member_id: int) -> Room:
    """`room_for_member` for the gateway's subscribe, by member id: the room `slug` (its marks,
    last_seq and last_change, included) if the member, as the database has them now, may read
    it; Http404 otherwise, for an unknown member too. One statement written once, not two
    querysets compiled on every subscribe (minga.rows); the room and the member are partial
    rows, the same policy decides."""
    sql, room_columns, member_columns = _room_and_member_read()
    with connection.cursor() as cursor:
        cursor.execute(sql, [slug, member_id])
        row = cursor.fetchone()
    if row is None:
        raise Http404(_("No room “%(slug)s”.") % {"slug": slug})
    room = room_columns.instance(row[: len(room_columns)])
    member = member_columns.instance(row[len(room_columns) : -1])
    member.__dict__["is_verified"] = bool(row[-1])  # the cached_property, filled
    if not policy.can_read_room(member, room):
        raise Http404(_("No room “%(slug)s”.") % {"slug": slug})
    return room


@functools.cache
def _thread_part() -> tuple[str, list[rows.Columns[Any]]]:
    """The thread `t` with its room `r`, the room's working group `w` and its author `a`, as
    `select_related` gives them: the joined tables and each one's columns, shared by the
    thread's read and the member-and-thread read."""
    thread, room, group, author = (
        _whole(Thread, "t"),
        _whole(Room, "r"),
        _whole(WorkingGroup, "w"),
        _whole(User, "a"),
    )
    joins = (
        f"{rows.table(Thread)} t "
        f"JOIN {rows.table(Room)} r ON r.{rows.column(Room, 'id')} = t.{rows.column(Thread, 'room_id')} "
        f"LEFT JOIN {rows.table(WorkingGroup)} w "
        f"ON w.{rows.column(WorkingGroup, 'id')} = r.{rows.column(Room, 'working_group_id')} "
        f"JOIN {rows.table(User)} a ON a.{rows.column(User, 'id')} = t.{rows.column(Thread, 'author_id')}"
    )
    return joins, [thread, room, group, author]


@functools.cache
def _thread_read() -> tuple[str, list[rows.Columns[Any]]]:
    joins, columns = _thread_part()
    select = ", ".join(part.sql for part in columns)
    # Names from the models' _meta, values as parameters.
    sql = f"SELECT {select} FROM {joins} WHERE t.{rows.column(Thread, 'id')} = %s"  # noqa: S608
    return sql, columns


def _thread_of(values: Sequence[Any], columns: list[rows.Columns[Any]]) -> Thread:
    """The thread of `_thread_part`'s columns, with its room, group and author cached."""
    thread_columns, room_columns, group_columns, author_columns = columns
    parts = rows.split(values, columns)
    thread = thread_columns.instance(parts[0])
    room = room_columns.instance(parts[1])
    group = None if parts[2][0] is None else group_columns.instance(parts[2])
    Room._meta.get_field("working_group").set_cached_value(room, group)
    Thread._meta.get_field("room").set_cached_value(thread, room)
    Thread._meta.get_field("author").set_cached_value(thread, author_columns.instance(parts[3]))
    return thread


def thread_for_member(*, thread_id: int, member: Any) -> Thread:
    """The thread if `member` may read its room: Http404 otherwise, the same whether it does
    not exist or may not be read (denial reveals no existence).

    The thread comes with its room, the room's working group and its author, as
    `select_related` would give them, from one statement written once (minga.rows): the
    thread page reads it on every view, and compiling the four-table queryset each time was
    most of the read's CPU (docs/performance.md, "The thread page's reads")."""
    sql, columns = _thread_read()
    with connection.cursor() as cursor:
        cursor.execute(sql, [thread_id])
        row = cursor.fetchone()
    if row is None:
        raise Http404(_("No thread %(id)s.") % {"id": thread_id})
    thread = _thread_of(row, columns)
    if not policy.can_read_room(member, thread.room):
        raise Http404(_("No thread %(id)s.") % {"id": thread_id})
    return thread


@functools.cache
def _member_and_thread_read() -> tuple[
    str, rows.Columns[User], rows.Columns[Organization], list[rows.Columns[Any]]
]:
    """The member `u` with their organization `o`, one membership `ms` per row, and on each
    row the thread of `_thread_part` (NULLs where there is none: its tables are joined in
    parentheses, so no thread leaves the member's rows whole)."""
    member, org = _whole(User, "u"), _whole(Organization, "o")
    thread_joins, thread_columns = _thread_part()
    ms, group_id = rows.table(Membership), rows.column(Membership, "working_group_id")
    user_id = rows.column(User, "id")
    sql = (
        f"SELECT {member.sql}, {org.sql}, {verified_sql('u')}, "  # noqa: S608 - names from the models, values as parameters
        f"ms.{group_id}, ms.{rows.column(Membership, 'role')}, "
        f"{', '.join(part.sql for part in thread_columns)} "
        f"FROM {rows.table(User)} u LEFT JOIN {rows.table(Organization)} o "
        f"ON o.{rows.column(Organization, 'id')} = u.{rows.column(User, 'organization_id')} "
        f"LEFT JOIN {ms} ms ON ms.{rows.column(Membership, 'member_id')} = u.{user_id} "
        f"LEFT JOIN ({thread_joins}) ON t.{rows.column(Thread, 'id')} = %s "
        f"WHERE u.{user_id} = %s ORDER BY ms.{group_id}"
    )
    return sql, member, org, thread_columns


def member_and_thread(*, member_id: int, thread_id: int) -> tuple[User | None, Thread | None]:
    """The member as the database has them now and the thread, in one statement written once
    (minga.rows): the member whole, with their organization, the verified-email check and
    their roles (policy.roles_of) filled in; the thread as `thread_for_member` gives it.
    (None, None) for no such member; (member, None) for a thread that does not exist or that
    they may not read, alike, as thread_for_member's 404. The gateway reads both afresh on
    every post, typing and read mark: two statements were two round trips on the process's
    one database thread (docs/performance.md, "The gateway's post: the member and the thread
    in one statement"; before it, "The roles read")."""
    sql, member_columns, org_columns, thread_columns = _member_and_thread_read()
    with connection.cursor() as cursor:
        cursor.execute(sql, [thread_id, member_id])
        found = cursor.fetchall()
    if not found:
        return None, None
    member = _member_of(found, member_columns, org_columns)
    thread_at = len(member_columns) + len(org_columns) + 3  # verified, group, role
    values = found[0][thread_at:]
    if values[0] is None:
        return member, None
    thread = _thread_of(values, thread_columns)
    return member, thread if policy.can_read_room(member, thread.room) else None


def message_for_member(*, message_id: int, member: Any) -> Message:
    """The message if `member` may read its room: Http404 otherwise,
    the same whether it does not exist or may not be read (denial reveals no existence)."""
    message = next(iter(_message_list(f"{_m('id')} = %s", [message_id])), None)
    if message is None:
        raise Http404(_("No message %(id)s.") % {"id": message_id})
    if not policy.can_read_room(member, message.room):
        raise Http404(_("No message %(id)s.") % {"id": message_id})
    return message


# --- Lists ------------------------------------------------------------------------------------


def _unread_filter(member: User) -> Q:
    # A message is unread by `member` when it is someone else's, not deleted, and above the
    # member's read mark in its thread (the join `rs` below; no mark means nothing read).
    return (
        Q(messages__deleted_at__isnull=True)
        & ~Q(messages__author_id=member.pk)
        & Q(messages__seq__gt=Coalesce(F("rs__last_read_seq"), Value(0)))
    )


def rooms_readable(*, member: User) -> list[Room]:
    """Every room `member` may read, each with `unread_count` (messages above their read marks).

    Two queries: the rooms, and one grouped count of unread messages over all of them.
    """
    rooms = [
        room
        for room in Room.objects.select_related("working_group", "topic").order_by(
            F("working_group__number").asc(nulls_last=True), "slug"
        )
        if policy.can_read_room(member, room)
    ]
    counts = unread_counts_by_room(member=member, room_ids=[room.pk for room in rooms])
    for room in rooms:
        room.unread_count = counts.get(room.pk, 0)  # type: ignore[attr-defined]
    return rooms


def unread_counts_by_room(*, member: User, room_ids: Iterable[int]) -> dict[int, int]:
    """{room_id: unread messages} for `member`, rooms with none left out. One query."""
    read_seq = Coalesce(
        Subquery(
            ReadState.objects.filter(member_id=member.pk, thread_id=OuterRef("thread_id")).values(
                "last_read_seq"
            )[:1],
            output_field=IntegerField(),
        ),
        Value(0),
    )
    rows = (
        Message.objects.filter(room_id__in=list(room_ids), deleted_at__isnull=True)
        .exclude(author_id=member.pk)
        .annotate(read_seq=read_seq)
        .filter(seq__gt=F("read_seq"))
        .values("room_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["room_id"]: row["n"] for row in rows}


def threads_for_room(*, room: Room, member: User) -> QuerySet[Thread]:
    """The room's threads, pinned first then newest activity, each with `unread_count`."""
    return (
        Thread.objects.filter(room=room)
        .select_related("author", "author__organization", "room")
        .annotate(
            rs=FilteredRelation("read_states", condition=Q(read_states__member_id=member.pk)),
        )
        .annotate(
            unread_count=Count("messages", filter=_unread_filter(member), distinct=True),
            last_read_seq=Coalesce(F("rs__last_read_seq"), Value(0)),
        )
        .order_by("-pinned", "-last_activity_at", "-id")
    )


@functools.cache
def _message_read() -> tuple[str, tuple[rows.Columns[Any], ...]]:
    """The message lists' statement up to its WHERE: every message with its author, the
    author's organization, its room and its thread, whole rows as `select_related` reads them
    (ADR 0011), and the columns of each in the row's order."""
    parts = (
        _whole(Message, "m"),
        _whole(User, "a"),
        _whole(Organization, "o"),
        _whole(Room, "r"),
        _whole(Thread, "t"),
    )
    message, author, organization, room, thread = parts
    col = rows.column
    # Names from the models, values as parameters (S608).
    sql = (
        f"SELECT {message.sql}, {author.sql}, {organization.sql}, {room.sql}, {thread.sql} "  # noqa: S608
        f"FROM {rows.table(Message)} m "
        f"JOIN {rows.table(User)} a ON a.{col(User, 'id')} = m.{col(Message, 'author_id')} "
        f"LEFT JOIN {rows.table(Organization)} o "
        f"ON o.{col(Organization, 'id')} = a.{col(User, 'organization_id')} "
        f"JOIN {rows.table(Room)} r ON r.{col(Room, 'id')} = m.{col(Message, 'room_id')} "
        f"JOIN {rows.table(Thread)} t ON t.{col(Thread, 'id')} = m.{col(Message, 'thread_id')} "
    )
    return sql, parts


def _m(attname: str) -> str:
    """A message column in the message lists' statement."""
    return f"m.{rows.column(Message, attname)}"


@functools.cache
def _message_rows() -> tuple[tuple[str, type[Any], rows.Columns[Any], str], ...]:
    """(the prefetch's name, its model, its columns, its statement up to the ids) of each of a
    message's rows that the contract's message object carries, in the models' order."""
    found = []
    for name, model, names in (
        # member_id: the thread page marks the viewer's own reactions (reactions_of).
        ("reactions", Reaction, ["id", "message_id", "member_id", "emoji"]),
        ("mentions", Mention, ["id", "message_id", "member_id"]),
        ("attachments", Attachment, ["id", "message_id", "original_name", "content_type", "size"]),
    ):
        columns = rows.Columns(model, "x", names)
        order = ", ".join(f"x.{rows.column(model, n)}" for n in model._meta.ordering)
        sql = (
            f"SELECT {columns.sql} FROM {rows.table(model)} x "  # noqa: S608 - names from the models, values as parameters
            f"WHERE x.{rows.column(model, 'message_id')} IN ({{ids}}) ORDER BY {order}"
        )
        found.append((name, model, columns, sql))
    return tuple(found)


@functools.cache
def _empty(model: type[Model]) -> QuerySet[Any]:
    """`model.objects.none()`, made once: the pattern of every queryset `prime` gives out."""
    return model._default_manager.none()


def prime(instance: Any, name: str, objects: list[Any], model: type[Model]) -> None:
    """Fill the prefetch cache `name` of `instance` with `objects` (rows of `model`), as
    `prefetch_related` does, so that `instance.<name>.all()` reads no rows.

    The queryset holding them is `model.objects.none()`, copied from one made once: every copy
    shares its empty query, which nothing changes (a queryset chained from it clones the query
    first). Making `none()` for each instance cloned a query each time: 150 clones and a tenth
    of a thread page's Python calls (docs/performance.md, "H5's pages: what was left (stop
    20)")."""
    empty = _empty(model)
    queryset = object.__new__(type(empty))
    queryset.__dict__.update(empty.__dict__)
    queryset._result_cache = objects
    queryset._prefetch_done = True
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    cache[name] = queryset


def _message_list(
    where: str, params: Sequence[Any], *, order: str = "", limit: int | None = None
) -> list[Message]:
    """The messages `where` (SQL over the columns `_m` names; values as `params`) selects, in
    `order`, at most `limit`: each with its author (and the author's organization), room and
    thread cached, and its reactions, mentions and attachments prefetched, as
    `Message.objects.select_related(...).prefetch_related(...)` would give them, from four
    statements written once instead of four querysets compiled on every list (ADR 0011)."""
    sql, parts = _message_read()
    message_cols, author_cols, organization_cols, room_cols, thread_cols = parts
    statement = f"{sql}WHERE {where}" + (f" ORDER BY {order}" if order else "")
    values = list(params)
    if limit is not None:
        statement += " LIMIT %s"
        values.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        found = cursor.fetchall()
    to_author, to_room, to_thread = (
        Message._meta.get_field(name) for name in ("author", "room", "thread")
    )
    to_organization = User._meta.get_field("organization")
    # One instance per author, room and thread of the list, shared by their messages, as
    # prefetch_related shares them: a page's fifty messages are in one room and one thread,
    # by a few authors, and building an instance per message was a tenth of the page's CPU.
    authors: dict[int, User] = {}
    rooms: dict[int, Room] = {}
    threads: dict[int, Thread] = {}
    messages: list[Message] = []
    for row in found:
        m, a, o, r, t = rows.split(row, parts)
        message = message_cols.instance(m)
        author = authors.get(message.author_id)
        if author is None:
            author = authors[message.author_id] = author_cols.instance(a)
            to_organization.set_cached_value(
                author, None if o[0] is None else organization_cols.instance(o)
            )
        room = rooms.get(message.room_id)
        if room is None:
            room = rooms[message.room_id] = room_cols.instance(r)
        thread = threads.get(message.thread_id)
        if thread is None:
            thread = threads[message.thread_id] = thread_cols.instance(t)
        to_author.set_cached_value(message, author)
        to_room.set_cached_value(message, room)
        to_thread.set_cached_value(message, thread)
        messages.append(message)
    _prefetch_message_rows(messages)
    return messages


def _prefetch_message_rows(messages: list[Message]) -> None:
    """Each message's reactions, mentions and attachments, one statement each (none for no
    messages), in each model's order, their `message` set to the message, as a prefetch does."""
    if not messages:
        return
    by_id = {message.pk: message for message in messages}
    placeholders = ", ".join(["%s"] * len(by_id))
    for name, model, columns, sql in _message_rows():
        grouped: dict[int, list[Any]] = {pk: [] for pk in by_id}
        field = model._meta.get_field("message")
        with connection.cursor() as cursor:
            cursor.execute(sql.format(ids=placeholders), list(by_id))
            for row in cursor.fetchall():
                found = columns.instance(row)
                field.set_cached_value(found, by_id[found.message_id])
                grouped[found.message_id].append(found)
        for pk, message in by_id.items():
            prime(message, name, grouped[pk], model)


def attachment_for_member(*, attachment_id: int, member: Any) -> Attachment:
    """The attachment if `member` may download it, else Http404 (never a hint that it exists).

    Posted files: readers of the room, unless the message was deleted (or hidden: then only the
    room's moderators). A file not posted yet: only its uploader, while they may still read.
    """
    attachment = (
        Attachment.objects.select_related("room", "message").filter(pk=attachment_id).first()
    )
    missing = Http404(_("No attachment %(id)s.") % {"id": attachment_id})
    if attachment is None or not policy.can_read_room(member, attachment.room):
        raise missing
    message = attachment.message
    if message is None:
        if attachment.uploader_id != member.pk:
            raise missing
    elif message.deleted_at is not None or (
        message.hidden_at is not None and not policy.can_moderate_room(member, attachment.room)
    ):
        raise missing
    return attachment


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if limit < 1:
        raise ValidationError(_("limit must be at least 1."), code="invalid")
    return min(limit, MAX_PAGE)


def messages_after(*, room: Room, after_seq: int, limit: int) -> list[Message]:
    """The room's messages with seq above `after_seq`, in seq order, at most `limit` (catch-up)."""
    return _message_list(
        f"{_m('room_id')} = %s AND {_m('seq')} > %s",
        [room.pk, after_seq],
        order=_m("seq"),
        limit=clamp_limit(limit),
    )


def thread_messages(
    *, thread: Thread, after: int | None = None, before: int | None = None, limit: int | None = None
) -> list[Message]:
    """A page of the thread's messages in seq order.

    `after` / `before` are message ids of this thread (the page starts after / ends before that
    message, by seq); with `before` alone the page is the newest `limit` messages before it, with
    neither the newest `limit` of the thread. Unknown anchors raise ValidationError("not_found").
    """
    size = clamp_limit(limit)
    where, params = [f"{_m('thread_id')} = %s"], [thread.pk]
    anchors = _anchor_seqs(thread, [a for a in (after, before) if a is not None])
    if after is not None:
        where.append(f"{_m('seq')} > %s")
        params.append(anchors[after])
    if before is not None:
        where.append(f"{_m('seq')} < %s")
        params.append(anchors[before])
    if after is not None:
        return _message_list(" AND ".join(where), params, order=_m("seq"), limit=size)
    newest = _message_list(" AND ".join(where), params, order=f"{_m('seq')} DESC", limit=size)
    return list(reversed(newest))


def _anchor_seqs(thread: Thread, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    seqs = dict(Message.objects.filter(thread=thread, pk__in=ids).values_list("pk", "seq"))
    missing = [i for i in ids if i not in seqs]
    if missing:
        raise ValidationError(
            _("No message %(id)s in this thread.") % {"id": missing[0]}, code="not_found"
        )
    return seqs


def room_last_seq(*, room_id: int) -> int:
    """The room's newest seq (0 for an empty room); raises Http404 for an unknown room."""
    value = Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first()
    if value is None:
        raise Http404(_("No room %(id)s.") % {"id": room_id})
    return int(value)


def room_marks(*, room_id: int) -> tuple[int, int]:
    """(last_seq, last_change) of the room, read together; Http404 for an unknown room."""
    row = Room.objects.filter(pk=room_id).values_list("last_seq", "last_change").first()
    if row is None:
        raise Http404(_("No room %(id)s.") % {"id": room_id})
    return int(row[0]), int(row[1])


def changed_since(
    *, room_id: int, upto_seq: int, changes_after: int, upto_change: int
) -> list[Message | Thread]:
    """What changed in the room with a change number in (changes_after, upto_change], among the
    messages with seq <= upto_seq and the threads opened at or before it, in change order.

    Each row once, in its current state (a message edited twice is one row). Rows changed again
    after `upto_change` are left out: their newer change has its own live frame. Five queries
    (messages with reactions, mentions and attachments; threads), whatever the number of rows.
    """
    messages = _message_list(
        f"{_m('room_id')} = %s AND {_m('seq')} <= %s AND {_m('change')} > %s "
        f"AND {_m('change')} <= %s",
        [room_id, upto_seq, changes_after, upto_change],
    )
    opened = Message.objects.filter(thread_id=OuterRef("pk"), seq__lte=upto_seq)
    threads = list(
        Thread.objects.filter(
            Exists(opened),
            room_id=room_id,
            change__gt=changes_after,
            change__lte=upto_change,
        ).select_related("author", "author__organization", "room")
    )
    rows: list[Message | Thread] = [*messages, *threads]
    rows.sort(key=lambda row: row.change)
    return rows


def read_state_of(*, member: User, thread: Thread) -> ReadState | None:
    return ReadState.objects.filter(member=member, thread=thread).first()


# --- The message object of the contract -------------------------------------------------------


def reaction_counts(message: Message) -> dict[str, int]:
    """{emoji: count} in the fixed emoji order, emoji without reactions left out.

    Uses prefetched reactions when the message came through a list selector, else one query.
    """
    counts = dict.fromkeys(REACTION_EMOJI, 0)
    for emoji in (r.emoji for r in message.reactions.all()):
        if emoji in counts:
            counts[emoji] += 1
    return {emoji: n for emoji, n in counts.items() if n}


def reactions_of(messages: Iterable[Message], member_id: int) -> set[tuple[int, str]]:
    """(message id, emoji) of each reaction `member_id` made to `messages`. Reads the reactions
    a list selector prefetched: no query then (one per message otherwise)."""
    return {
        (reaction.message_id, reaction.emoji)
        for message in messages
        for reaction in message.reactions.all()
        if reaction.member_id == member_id
    }


def message_payload(message: Message) -> dict[str, Any]:
    """The contract's message object, JSON-safe (ids, strings, ISO 8601 timestamps).

    A deleted message is a tombstone (body "", body_html "", deleted true); a hidden one is
    sent without its body too (`hidden` true), moderators read it in the admin.
    """
    gone = message.deleted_at is not None or message.hidden_at is not None
    return {
        "id": message.pk,
        "seq": message.seq,
        "room": message.room.slug,
        "thread": message.thread_id,
        "author": member_payload(message.author),
        "body": "" if gone else message.body,
        "body_html": "" if gone else message.body_html,
        "created_at": message.created_at.isoformat(),
        "edited_at": message.edited_at.isoformat() if message.edited_at else None,
        "deleted": message.deleted_at is not None,
        "hidden": message.hidden_at is not None,
        "reply_to": message.reply_to_id,
        "client_id": str(message.client_id),
        "reactions": reaction_counts(message),
        "mentions": sorted(m.member_id for m in message.mentions.all()),
        "attachments": [] if gone else [attachment_payload(a) for a in message.attachments.all()],
    }


def attachment_payload(attachment: Attachment) -> dict[str, Any]:
    """{id, name, content_type, size, url}: `url` downloads it (readers of the room only)."""
    return {
        "id": attachment.pk,
        "name": attachment.original_name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": reverse("attachment_download", args=[attachment.pk]),
    }


def member_payload(member: User) -> dict[str, Any]:
    org = member.organization
    return _member_summary(
        member.pk, member.name, org.name if org is not None else None, member.handle
    )


def _member_summary(pk: int, name: str, organization: str | None, handle: str) -> dict[str, Any]:
    """The MEMBER object of the protocol and the API."""
    return {"id": pk, "name": name, "organization": organization, "handle": handle}


@functools.cache
def _summaries_read() -> str:
    """member_summaries' statement up to its `IN (...)` list, built once."""
    user, org = rows.table(User), rows.table(Organization)
    uid, oid = rows.column(User, "id"), rows.column(Organization, "id")
    return (
        f"SELECT u.{uid}, u.{rows.column(User, 'name')}, o.{rows.column(Organization, 'name')}, "  # noqa: S608 - names from the models, values as parameters
        f"u.{rows.column(User, 'handle')} FROM {user} u LEFT JOIN {org} o "
        f"ON o.{oid} = u.{rows.column(User, 'organization_id')} "
        f"WHERE u.{rows.column(User, 'is_active')} AND u.{uid}"
    )


def member_summaries(member_ids: Sequence[int]) -> list[dict[str, Any]]:
    """MEMBER objects of the active members among `member_ids`, sorted by name (then id): the
    gateway's presence lists and `subscribed`, read on every join into a room of up to
    presence.FULL_LIST_MAX. One statement written out (minga.rows), not a queryset of users and
    their organizations compiled and instantiated each time (docs/performance.md, "H3: the
    connect's CPU")."""
    ids = [int(pk) for pk in dict.fromkeys(member_ids)]
    if not ids:
        return []
    statement = f"{_summaries_read()} IN ({', '.join(['%s'] * len(ids))})"
    with connection.cursor() as cursor:
        cursor.execute(statement, ids)
        found = cursor.fetchall()
    found.sort(key=lambda row: (row[1].lower(), row[0]))
    return [_member_summary(*row) for row in found]


def thread_payload(thread: Thread) -> dict[str, Any]:
    """A thread as the API and the frames show it; `unread_count` when the list annotated it."""
    payload: dict[str, Any] = {
        "id": thread.pk,
        "room": thread.room.slug,
        "title": thread.title,
        "author": member_payload(thread.author),
        "created": thread.created.isoformat(),
        "pinned": thread.pinned,
        "locked": thread.locked,
        "last_activity_at": thread.last_activity_at.isoformat(),
        "message_count": thread.message_count,
    }
    unread = getattr(thread, "unread_count", None)
    if unread is not None:
        payload["unread_count"] = unread
    return payload
