"""forums.selectors: access functions, pages in seq order, unread counts, query counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from community.models import User
from forums import selectors, services
from forums.models import (
    Attachment,
    Mention,
    Message,
    MessageRevision,
    Reaction,
    ReadState,
    Room,
    Thread,
)
from tests.factories import UserFactory
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db


# --- Access functions -------------------------------------------------------------------------


def test_room_for_member_returns_room(member: User) -> None:
    room = selectors.room_for_member(slug="wg2-c", member=member)

    assert room.slug == "wg2-c"


def test_room_for_member_unknown_slug_is_404(member: User) -> None:
    with pytest.raises(Http404):
        selectors.room_for_member(slug="wg9-z", member=member)


def test_room_for_member_unverified_sees_no_room(plan: None) -> None:
    unverified = UserFactory(verified=False)

    with pytest.raises(Http404):
        selectors.room_for_member(slug="wg1-a", member=unverified)


def test_thread_for_member_returns_thread(thread: Thread, member: User) -> None:
    assert selectors.thread_for_member(thread_id=thread.pk, member=member) == thread


def test_thread_for_member_unknown_is_404(member: User) -> None:
    with pytest.raises(Http404):
        selectors.thread_for_member(thread_id=987654, member=member)


def test_thread_for_member_inactive_sees_no_thread(thread: Thread) -> None:
    inactive = UserFactory(is_active=False)

    with pytest.raises(Http404):
        selectors.thread_for_member(thread_id=thread.pk, member=inactive)


def test_message_for_member_unknown_is_404(member: User) -> None:
    with pytest.raises(Http404):
        selectors.message_for_member(message_id=987654, member=member)


# --- Pages ------------------------------------------------------------------------------------


def test_messages_after_returns_room_messages_in_seq_order(thread: Thread, room: Room) -> None:
    other_thread = ThreadFactory(room=room, author=thread.author)
    made = [MessageFactory(thread=t) for t in (thread, other_thread, thread, other_thread)]

    found = selectors.messages_after(room=room, after_seq=1, limit=2)

    assert [m.pk for m in found] == [made[1].pk, made[2].pk]


def test_a_list_builds_each_author_room_and_thread_once(thread: Thread, room: Room) -> None:
    other_thread = ThreadFactory(room=room, author=UserFactory(organization=None))
    for t in (thread, other_thread, thread, other_thread, thread):
        MessageFactory(thread=t)

    found = selectors.messages_after(room=room, after_seq=0, limit=10)

    # Shared, as prefetch_related shares them; their values are held to the ORM's below
    # (test_message_lists_answer_as_the_orm_read).
    one_each = {
        "authors": {id(m.author) for m in found},
        "organizations": {id(m.author.organization) for m in found if m.author.organization},
        "rooms": {id(m.room) for m in found},
        "threads": {id(m.thread) for m in found},
    }
    assert {name: len(ids) for name, ids in one_each.items()} == {
        "authors": 2,
        "organizations": 1,
        "rooms": 1,
        "threads": 2,
    }
    assert [m.thread.pk for m in found] == [
        t.pk for t in (thread, other_thread, thread, other_thread, thread)
    ]


def test_primed_rows_are_each_messages_own_and_their_shared_query_never_changes(
    thread: Thread, django_assert_num_queries: Any
) -> None:
    first, second = MessageFactory(thread=thread), MessageFactory(thread=thread)
    liked = Reaction.objects.create(message=first, member=thread.author, emoji="👍")
    selectors.prime(first, "reactions", [liked], Reaction)
    selectors.prime(second, "reactions", [], Reaction)

    with django_assert_num_queries(0):
        read = [list(first.reactions.all()), list(second.reactions.all())]
        counted = [first.reactions.count(), second.reactions.exists()]
        first.reactions.all().filter(emoji="👍").order_by("-id")  # chained: a clone of the query

    pattern = selectors._empty(Reaction)
    assert (read, counted) == ([[liked], []], [1, False])
    assert (first.reactions.all() is not second.reactions.all(), pattern._result_cache) == (
        True,
        None,
    )
    assert (pattern.query.is_empty(), pattern.query.order_by) == (True, ())


def test_messages_after_skips_other_rooms(thread: Thread, room: Room) -> None:
    MessageFactory(thread=ThreadFactory(room=Room.objects.get(slug="wg2-a")))
    mine = MessageFactory(thread=thread)

    assert selectors.messages_after(room=room, after_seq=0, limit=10) == [mine]


def test_thread_messages_default_is_newest_page(thread: Thread) -> None:
    made = [MessageFactory(thread=thread) for _ in range(4)]

    found = selectors.thread_messages(thread=thread, limit=3)

    assert found == made[1:]


def test_thread_messages_after_and_before(thread: Thread) -> None:
    made = [MessageFactory(thread=thread) for _ in range(5)]

    after = selectors.thread_messages(thread=thread, after=made[1].pk, limit=2)
    before = selectors.thread_messages(thread=thread, before=made[3].pk, limit=2)
    between = selectors.thread_messages(thread=thread, after=made[0].pk, before=made[4].pk)

    assert (after, before, between) == (made[2:4], made[1:3], made[1:4])


def test_thread_messages_unknown_anchor_is_not_found(thread: Thread, room: Room) -> None:
    elsewhere = MessageFactory(thread=ThreadFactory(room=room))

    with pytest.raises(ValidationError) as excinfo:
        selectors.thread_messages(thread=thread, after=elsewhere.pk)

    assert services.error_code(excinfo.value) == "not_found"


def test_thread_messages_limit_below_one_is_invalid(thread: Thread) -> None:
    with pytest.raises(ValidationError):
        selectors.thread_messages(thread=thread, limit=0)


def test_room_last_seq_follows_posts(thread: Thread) -> None:
    MessageFactory(thread=thread)
    MessageFactory(thread=thread)

    assert selectors.room_last_seq(room_id=thread.room_id) == 2


def test_room_last_seq_unknown_room_is_404(plan: None) -> None:
    with pytest.raises(Http404):
        selectors.room_last_seq(room_id=987654)


def test_threads_for_room_pinned_first_then_newest(room: Room, member: User) -> None:
    old = ThreadFactory(room=room, title="old")
    new = ThreadFactory(room=room, title="new")
    pinned = ThreadFactory(room=room, title="pinned", pinned=True)
    MessageFactory(thread=old)
    MessageFactory(thread=new)

    titles = [t.title for t in selectors.threads_for_room(room=room, member=member)]

    assert titles == [pinned.title, new.title, old.title]


def test_threads_for_room_unread_counts(room: Room, member: User, chair: User) -> None:
    thread = ThreadFactory(room=room, author=chair)
    first = MessageFactory(thread=thread, author=chair)
    MessageFactory(thread=thread, author=chair)
    MessageFactory(thread=thread, author=member)  # my own: never unread
    services.read_mark(member=member, thread=thread, message_id=first.pk)

    (listed,) = selectors.threads_for_room(room=room, member=member)

    assert (listed.unread_count, listed.last_read_seq) == (1, 1)


def test_rooms_readable_counts_unread_per_room(room: Room, member: User, chair: User) -> None:
    thread = ThreadFactory(room=room, author=chair)
    read = MessageFactory(thread=thread, author=chair)
    MessageFactory(thread=thread, author=chair)
    MessageFactory(thread=ThreadFactory(room=room, author=chair), author=chair)
    deleted = MessageFactory(thread=thread, author=chair)
    services.message_delete(message=deleted, actor=chair)
    services.read_mark(member=member, thread=thread, message_id=read.pk)

    counts = {r.slug: r.unread_count for r in selectors.rooms_readable(member=member)}

    assert (len(counts), counts["wg1-a"], counts["wg2-a"]) == (25, 2, 0)


def test_rooms_readable_unverified_sees_none(plan: None) -> None:
    assert selectors.rooms_readable(member=UserFactory(verified=False)) == []


# --- Payload ----------------------------------------------------------------------------------


def test_message_payload_is_json_safe_with_reactions_and_mentions(
    thread: Thread, member: User, chair: User
) -> None:
    message = MessageFactory(thread=thread, author=member, body="hi")
    Reaction.objects.create(message=message, member=chair, emoji="🎉")
    Reaction.objects.create(message=message, member=member, emoji="👍")
    Reaction.objects.create(message=message, member=chair, emoji="👍")
    Mention.objects.create(message=message, member=chair)
    (loaded,) = selectors.messages_after(room=thread.room, after_seq=0, limit=5)

    payload = json.loads(json.dumps(selectors.message_payload(loaded)))

    assert (payload["reactions"], payload["mentions"], payload["seq"]) == (
        {"👍": 2, "🎉": 1},
        [chair.pk],
        1,
    )


def test_message_payload_hidden_message_has_no_body(thread: Thread) -> None:
    from django.utils import timezone

    message = MessageFactory(thread=thread, hidden_at=timezone.now(), hidden_reason="spam")

    payload = selectors.message_payload(message)

    assert (payload["body"], payload["body_html"], payload["hidden"]) == ("", "", True)


# --- Query counts: the same number at 1 and at 3 items ---------------------------------------


def _with_reactions_and_mentions(thread: Thread, count: int) -> None:
    for _ in range(count):
        message = MessageFactory(thread=thread)
        reactor = member_in("wg1")
        Reaction.objects.create(message=message, member=reactor, emoji="👍")
        Mention.objects.create(message=message, member=reactor)
        Attachment.objects.create(
            message=message,
            room=thread.room,
            uploader=message.author,
            file="attachments/2026/11/0123456789abcdef",
            original_name="plan.pdf",
            content_type="application/pdf",
            size=10,
            sha256="0" * 64,
        )


@pytest.mark.parametrize("model", [Reaction, Mention, MessageRevision])
def test_rows_of_a_message_are_ordered_without_joining_message_and_room(model: Any) -> None:
    # Ordering by "message" would take Message's ordering (room, seq), then Room's (slug):
    # two joins and a sort by slug in every read of these rows, the prefetches included.
    sql = str(model.objects.filter(message_id=1).query)

    assert "JOIN" not in sql
    assert sql.index("ORDER BY") > 0


def test_thread_messages_prefetches_join_nothing(thread: Thread) -> None:
    _with_reactions_and_mentions(thread, 2)

    with CaptureQueriesContext(connection) as queries:
        selectors.thread_messages(thread=thread)

    prefetches = [q["sql"] for q in queries if 'FROM "forums_message"' not in q["sql"]]
    assert len(prefetches) == 3
    assert not [sql for sql in prefetches if "JOIN" in sql]


@pytest.mark.parametrize("count", [1, 3])
def test_messages_after_query_count(
    thread: Thread, count: int, django_assert_num_queries: Any
) -> None:
    _with_reactions_and_mentions(thread, count)

    # messages with author, organization, room and thread + reactions + mentions + attachments
    with django_assert_num_queries(4):
        payloads = [
            selectors.message_payload(m)
            for m in selectors.messages_after(room=thread.room, after_seq=0, limit=50)
        ]

    assert len(payloads) == count


@pytest.mark.parametrize("count", [1, 3])
def test_thread_messages_query_count(
    thread: Thread, count: int, django_assert_num_queries: Any
) -> None:
    anchor = MessageFactory(thread=thread)
    _with_reactions_and_mentions(thread, count)

    # anchor's seq + messages with author, organization, room and thread + reactions + mentions
    # + attachments
    with django_assert_num_queries(5):
        found = selectors.thread_messages(thread=thread, after=anchor.pk)
        payloads = [selectors.message_payload(m) for m in found]

    assert len(payloads) == count


@pytest.mark.parametrize("count", [1, 3])
def test_threads_for_room_query_count(
    room: Room, member: User, count: int, django_assert_num_queries: Any
) -> None:
    for _ in range(count):
        MessageFactory(thread=ThreadFactory(room=room))

    # threads with author, organization, room and the unread count in one statement
    with django_assert_num_queries(1):
        payloads = [
            selectors.thread_payload(t)
            for t in selectors.threads_for_room(room=room, member=member)
        ]

    assert len(payloads) == count


@pytest.mark.parametrize("count", [1, 3])
def test_rooms_readable_query_count(
    room: Room, member: User, count: int, django_assert_num_queries: Any
) -> None:
    for slug in ["wg1-a", "wg1-b", "wg2-a"][:count]:
        MessageFactory(thread=ThreadFactory(room=Room.objects.get(slug=slug)))
    member.is_verified  # noqa: B018 - cached once per request by authentication

    # rooms with working group and topic + one grouped unread count
    with django_assert_num_queries(2):
        rooms = selectors.rooms_readable(member=member)

    assert sum(r.unread_count for r in rooms) == count


def test_read_state_of_returns_mark(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread)
    services.read_mark(member=member, thread=thread, message_id=message.pk)

    state = selectors.read_state_of(member=member, thread=thread)

    assert state == ReadState.objects.get(member=member, thread=thread)


# --- The message lists, written out (ADR 0011), against the ORM read they replace -------------


def _orm_messages() -> QuerySet[Message]:
    """The queryset the message lists compiled before they were written out: the reference
    their answers are held to."""
    return Message.objects.select_related(
        "author", "author__organization", "room", "thread"
    ).prefetch_related(
        Prefetch(
            "reactions", queryset=Reaction.objects.only("id", "message_id", "member_id", "emoji")
        ),
        Prefetch("mentions", queryset=Mention.objects.only("id", "message_id", "member_id")),
        Prefetch(
            "attachments",
            queryset=Attachment.objects.only(
                "id", "message_id", "original_name", "content_type", "size"
            ).order_by("id"),
        ),
    )


def _whole(obj: Any) -> Any:
    """Every loaded field of `obj` (None stays None) and which fields are deferred."""
    if obj is None:
        return None
    deferred = obj.get_deferred_fields()
    loaded = {
        f.attname: getattr(obj, f.attname)
        for f in obj._meta.concrete_fields
        if f.attname not in deferred
    }
    return (type(obj).__name__, loaded, sorted(deferred))


def _everything(messages: list[Message]) -> list[Any]:
    """What a list gives its readers, read without a query: the message, its cached author,
    organization, room and thread, its prefetched rows (with their message cached), and the
    contract's message object."""
    seen = []
    for m in messages:
        rows_of = {
            name: [(_whole(r), r.message is m) for r in getattr(m, name).all()]
            for name in ("reactions", "mentions", "attachments")
        }
        seen.append(
            (
                _whole(m),
                _whole(m.author),
                _whole(m.author.organization),
                _whole(m.room),
                _whole(m.thread),
                rows_of,
                selectors.message_payload(m),
            )
        )
    return seen


def test_message_lists_answer_as_the_orm_read(room: Room, plan: None) -> None:
    # Arrange: two threads of one room and one of another; messages with reactions from two
    # members, a mention, attachments, a reply, an edit, a deletion, a hiding, and an author
    # without an organization; change numbers on some of them.
    other_room = Room.objects.exclude(pk=room.pk).filter(working_group=room.working_group)[0]
    loner = UserFactory(organization=None)
    first, second = ThreadFactory(room=room), ThreadFactory(room=room, author=loner)
    elsewhere = ThreadFactory(room=other_room)
    made = [
        MessageFactory(thread=thread)
        for thread in (first, second, first, elsewhere, first, second, first, first)
    ]
    _with_reactions_and_mentions(first, 2)
    made += list(Message.objects.filter(thread=first).order_by("-seq")[:2])
    Reaction.objects.create(message=made[0], member=loner, emoji="🎉")
    Reaction.objects.create(message=made[0], member=made[0].author, emoji="👍")
    now = timezone.now()
    Message.objects.filter(pk=made[2].pk).update(reply_to=made[0], edited_at=now, change=3)
    Message.objects.filter(pk=made[4].pk).update(deleted_at=now, change=5)
    Message.objects.filter(pk=made[6].pk).update(hidden_at=now, change=4)
    Message.objects.filter(pk=made[5].pk).update(change=9)
    ids = [m.pk for m in Message.objects.all()]

    def orm_thread(thread: Thread, after: int | None, before: int | None, size: int) -> Any:
        page = _orm_messages().filter(thread=thread)
        if after is not None:
            return list(
                page.filter(seq__gt=Message.objects.get(pk=after).seq).order_by("seq")[:size]
            )
        if before is not None:
            page = page.filter(seq__lt=Message.objects.get(pk=before).seq)
        return list(reversed(page.order_by("-seq")[:size]))

    cases: list[tuple[Any, Any]] = []
    for thread in (first, second, elsewhere):
        for after, before, size in ((None, None, 50), (None, None, 2), (made[0].pk, None, 2)):
            if after is not None and after not in [m.pk for m in thread.messages.all()]:
                continue
            cases.append(
                (
                    lambda t=thread, a=after, b=before, s=size: selectors.thread_messages(
                        thread=t, after=a, before=b, limit=s
                    ),
                    lambda t=thread, a=after, b=before, s=size: orm_thread(t, a, b, s),
                )
            )
    newest = Message.objects.filter(thread=first).order_by("-seq")[0].pk
    cases.append(
        (
            lambda: selectors.thread_messages(thread=first, before=newest, limit=3),
            lambda: orm_thread(first, None, newest, 3),
        )
    )
    for after_seq, size in ((0, 50), (2, 3), (10**6, 5)):
        cases.append(
            (
                lambda a=after_seq, s=size: selectors.messages_after(
                    room=room, after_seq=a, limit=s
                ),
                lambda a=after_seq, s=size: list(
                    _orm_messages().filter(room=room, seq__gt=a).order_by("seq")[:s]
                ),
            )
        )
    for pk in ids:
        cases.append(
            (
                lambda pk=pk: [selectors.message_for_member(message_id=pk, member=made[0].author)],
                lambda pk=pk: [_orm_messages().get(pk=pk)],
            )
        )
    for changes_after, upto_change, upto_seq in ((0, 10, 100), (3, 9, 100), (0, 10, 3)):
        cases.append(
            (
                lambda a=changes_after, u=upto_change, s=upto_seq: [
                    row
                    for row in selectors.changed_since(
                        room_id=room.pk, upto_seq=s, changes_after=a, upto_change=u
                    )
                    if isinstance(row, Message)
                ],
                lambda a=changes_after, u=upto_change, s=upto_seq: sorted(
                    _orm_messages().filter(
                        room_id=room.pk, seq__lte=s, change__gt=a, change__lte=u
                    ),
                    key=lambda m: m.change,
                ),
            )
        )

    # Act and assert: the same answers, all of it read without a further query; and the cases
    # are not all empty.
    sizes = []
    for written, orm in cases:
        found = written()
        with CaptureQueriesContext(connection) as lazy:
            seen = _everything(found)
        assert (seen, len(lazy)) == (_everything(orm()), 0)
        sizes.append(len(found))
    assert min(sizes) == 0 and max(sizes) >= 8


def test_reactions_of_a_member_come_from_the_prefetched_reactions(
    member: User, thread: Thread, django_assert_num_queries: Any
) -> None:
    other = member_in("wg1")
    first, second, untouched = MessageFactory.create_batch(3, thread=thread)
    for who, message, emoji in (
        (member, first, "👍"),
        (member, first, "🎉"),
        (other, first, "❤️"),
        (other, second, "👍"),
        (member, second, "👀"),
    ):
        Reaction.objects.create(message=message, member=who, emoji=emoji)
    page = selectors.thread_messages(thread=thread, limit=50)

    with django_assert_num_queries(0):
        mine = selectors.reactions_of(page, member.pk)

    assert mine == {(first.pk, "👍"), (first.pk, "🎉"), (second.pk, "👀")}
    assert untouched.pk in {m.pk for m in page}
