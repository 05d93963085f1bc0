"""The gateway's database work per connect and per subscribe, and presence in big rooms.

Every database call of a daphne process queues on its one database thread (docs/performance.md),
so a connect makes one hop and a subscribe one hop (two the first time a process meets a room),
with the query counts pinned here. Big rooms get presence deltas and a capped `subscribed` list
(docs/realtime-protocol.md, "Presence").
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.http import Http404
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from minga.asgi import application
from minga.realtime import token_identity

from community import policy
from community.models import ApiToken, Membership, Role, User, WorkingGroup
from community.services import (
    LAST_USE_STEP,
    api_token_create,
    api_token_member,
    api_token_member_row,
    api_token_revoke,
)
from events import services as event_services
from forums import consumers, presence, selectors
from forums.frames import credential_fingerprint
from forums.models import Room, Thread
from tests.factories import UserFactory
from tests.forums.factories import ThreadFactory, member_in

ORIGIN = (b"origin", b"http://localhost")
# A post through the gateway's hop: the member (with roles) and the thread, the room's seq, the
# thread's count with the checks, the message, and the savepoint around them.
GATEWAY_POST_QUERIES = 6


def me(user: User) -> dict[str, Any]:
    return {
        "id": user.pk,
        "name": user.name,
        "organization": user.organization.name if user.organization else None,
        "handle": user.handle,
    }


@pytest.fixture
def colleague(plan: None) -> User:
    return member_in("wg1", email="carla@trabajo.example", name="Carla Díaz", handle="carla")


@pytest.fixture(autouse=True)
def forget_room_ids() -> None:
    consumers._room_ids.clear()  # room ids differ per test database
    consumers._samples.clear()  # and so do member ids


# --- Query counts of the hops -----------------------------------------------------------------


@pytest.mark.django_db
def test_member_and_thread_is_one_query(member: User) -> None:
    room = Room.objects.get(slug="wg1-a")
    thread = ThreadFactory(room=room, author=member)

    with CaptureQueriesContext(connection) as queries:
        fresh, found = consumers._member_and_thread(member.pk, thread.pk, room.pk)
        seen = (fresh.pk, fresh.is_verified, found.pk, found.room.slug, found.author.pk)

    # The member with their organization, roles and the verified-email check, and the thread
    # with its room, group and author: one statement, and nothing read after it.
    assert (len(queries), seen) == (1, (member.pk, True, thread.pk, "wg1-a", member.pk))


@pytest.mark.django_db
def test_member_and_thread_forbids_alike_whoever_or_wherever_is_wrong(member: User) -> None:
    # Arrange: an unverified member, a thread of another room, and an id naming no thread.
    unverified = UserFactory(verified=False)
    room = Room.objects.get(slug="wg1-a")
    here = ThreadFactory(room=room, author=member).pk
    elsewhere = ThreadFactory(room=Room.objects.get(slug="wg1-b"), author=member).pk
    asks = {
        "unverified": (unverified.pk, here),
        "unknown member": (10**9, here),
        "another room": (member.pk, elsewhere),
        "no thread": (member.pk, 10**9),
    }

    # Act
    codes = {}
    for name, (member_id, thread_id) in asks.items():
        with pytest.raises(consumers.FrameError) as raised:
            consumers._member_and_thread(member_id, thread_id, room.pk)
        codes[name] = raised.value.code

    # Assert: one answer for each, and the right pair passes.
    assert set(codes.values()) == {"forbidden"}
    assert consumers._member_and_thread(member.pk, here, room.pk)[1].pk == here


@pytest.mark.django_db
def test_room_state_is_three_queries_with_marks_and_members(member: User, colleague: User) -> None:
    room = Room.objects.get(slug="wg1-a")
    Room.objects.filter(pk=room.pk).update(last_seq=7, last_change=3)

    with CaptureQueriesContext(connection) as queries:
        state = consumers._room_state(member.pk, "wg1-a", room.pk, [member.pk, colleague.pk])

    # the room by slug (+ its marks) with the member (+ verified), the online members' summaries
    together = sorted([me(member), me(colleague)], key=lambda m: m["name"].lower())
    assert (len(queries), state) == (2, (7, 3, together))


@pytest.mark.django_db
def test_room_state_caps_the_list_at_full_list_max(
    member: User, colleague: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "FULL_LIST_MAX", 1)
    room = Room.objects.get(slug="wg1-a")

    _seq, _change, members = consumers._room_state(
        member.pk, "wg1-a", room.pk, [member.pk, colleague.pk]
    )

    assert members == [me(member)]  # Ana before Carla


@pytest.mark.django_db
def test_room_state_of_a_big_room_keeps_the_samples_summaries_for_a_while(
    member: User, colleague: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "FULL_LIST_MAX", 1)
    room = Room.objects.get(slug="wg1-a")
    sample = [member.pk]

    counts = []
    for ids in (sample, sample, [colleague.pk]):  # the same sample twice, then another
        with CaptureQueriesContext(connection) as queries:
            *_marks, members = consumers._room_state(member.pk, "wg1-a", room.pk, ids, True)
        counts.append((len(queries), members))
    monkeypatch.setattr(consumers, "SAMPLE_SECONDS", 0.0)  # kept for no time: read each time
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            consumers._room_state(member.pk, "wg1-a", room.pk, [colleague.pk + 1], True)
        counts.append((len(queries), None))

    assert counts == [
        (2, [me(member)]),
        (1, [me(member)]),
        (2, [me(colleague)]),
        (2, None),
        (2, None),
    ]


class _ListingWaits(dict[tuple[int, ...], tuple[float, list[dict[str, Any]]]]):
    """The samples, where the first thread to list them waits there until another thread has
    dropped the lapsed ones: the interleaving of two hops that found the cache full at once."""

    def __init__(self, entries: dict[tuple[int, ...], tuple[float, list[dict[str, Any]]]]) -> None:
        super().__init__(entries)
        self.listed, self.dropped = threading.Event(), threading.Event()

    def items(self) -> Any:
        listing = list(super().items())
        if not self.listed.is_set():
            self.listed.set()
            self.dropped.wait(timeout=0.5)  # the lock (if any) keeps the other thread out
        return listing


def test_two_hops_that_find_the_samples_full_at_once_both_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lapsed = {(n,): (0.0, []) for n in range(100, 116)}  # 16 samples, long lapsed
    samples = _ListingWaits(lapsed)
    monkeypatch.setattr(consumers, "_samples", samples)
    monkeypatch.setattr(selectors, "member_summaries", lambda ids: [{"id": i} for i in ids])
    answers: dict[str, Any] = {}

    def hop(name: str, ids: list[int]) -> None:
        try:
            answers[name] = consumers._sample_summaries(ids)
        except Exception as error:  # what the gateway would answer with `server_error`
            answers[name] = error

    first = threading.Thread(target=hop, args=("first", [1]))
    first.start()
    assert samples.listed.wait(timeout=5)
    second = threading.Thread(target=hop, args=("second", [2]))
    second.start()
    second.join(timeout=5)
    samples.dropped.set()
    first.join(timeout=5)

    assert answers == {"first": [{"id": 1}], "second": [{"id": 2}]}
    assert sorted(samples) == [(1,), (2,)]


@pytest.mark.django_db
def test_room_state_of_a_small_room_reads_the_list_every_time(
    member: User, colleague: User
) -> None:
    room = Room.objects.get(slug="wg1-a")

    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            consumers._room_state(member.pk, "wg1-a", room.pk, [member.pk, colleague.pk])
        counts.append(len(queries))

    assert counts == [2, 2]


def _readers() -> dict[str, User]:
    """One of each kind the policy tells apart (community.policy.can_read_room)."""
    group = WorkingGroup.objects.get(slug="wg1")
    chair = member_in("wg1", email="chair@trabajo.example", role=Role.CHAIR)
    return {
        "chair": chair,
        "observer": member_in("wg1", email="obs@trabajo.example", role=Role.OBSERVER),
        "outsider": UserFactory(),
        "other group": member_in("wg2", email="wg2@trabajo.example"),
        "secretariat": UserFactory(is_staff=True),
        "unverified": UserFactory(verified=False),
        "inactive": member_in("wg1", email="gone@trabajo.example", is_active=False),
        "co-organizer": _co_organizer_of_a_live_room(group, chair),
    }


def _matrix[K](
    readers: dict[str, User], keys: list[K], answer: Callable[[User, K], Any]
) -> dict[tuple[str, K], Any]:
    """{(reader, key): answer} for every reader and key."""
    return {(who, key): answer(member, key) for who, member in readers.items() for key in keys}


def _group_only_rooms() -> None:
    """wg1-private, readable by wg1 only; wg2-a made readable by wg2 only."""
    Room(
        slug="wg1-private",
        title="Private room",
        working_group=WorkingGroup.objects.get(slug="wg1"),
        visibility=Room.Visibility.WORKING_GROUP,
    ).save()
    Room.objects.filter(slug="wg2-a").update(visibility=Room.Visibility.WORKING_GROUP)


def _or_404[T](read: Callable[[], T], seen: Callable[[T], Any]) -> Any:
    """What `seen` shows of `read()`'s answer, or "404" when it raises Http404."""
    try:
        return seen(read())
    except Http404:
        return "404"


def _co_organizer_of_a_live_room(group: WorkingGroup, chair: User) -> User:
    co_organizer = UserFactory(email="bea@trabajo.example")
    starts = timezone.now() + timedelta(days=30)
    event = event_services.event_create(
        actor=chair,
        title="Closed meeting",
        working_group=group,
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        timezone="America/Lima",
        visibility="working_group",
        organizers=[co_organizer],
    )
    event_services.live_room_create(event=event, actor=chair)
    return co_organizer


@pytest.mark.django_db
def test_room_for_member_id_answers_as_room_for_member_for_every_reader_and_room(
    plan: None,
) -> None:
    # Arrange: every kind of reader; a network room, a group room, an event's own live room,
    # another group's room and a slug that names no room.
    readers = _readers()
    _group_only_rooms()
    live = Room.objects.get(slug__startswith="event-")
    slugs = ["wg1-a", "wg1-private", live.slug, "wg2-a", "no-such-room"]

    def seen(room: Room) -> tuple[int, int, int]:
        return (room.pk, room.last_seq, room.last_change)

    # Act
    by_object = _matrix(
        readers,
        slugs,
        lambda m, slug: _or_404(
            lambda: selectors.room_for_member(slug=slug, member=User.objects.get(pk=m.pk)), seen
        ),
    )
    by_id = _matrix(
        readers,
        slugs,
        lambda m, slug: _or_404(
            lambda: selectors.room_for_member_id(slug=slug, member_id=m.pk), seen
        ),
    )

    # Assert: the same answers, and the matrix is not trivially all-404 or all-readable.
    readable = sorted(key for key, value in by_id.items() if value != "404")
    assert by_id == by_object
    assert readable == sorted(
        [(who, "wg1-a") for who in readers if who not in ("unverified", "inactive")]
        + [("chair", "wg1-private"), ("observer", "wg1-private"), ("secretariat", "wg1-private")]
        + [("chair", live.slug), ("observer", live.slug), ("secretariat", live.slug)]
        + [("co-organizer", live.slug), ("other group", "wg2-a"), ("secretariat", "wg2-a")]
    )


def _thread_by_queryset(*, thread_id: int, member: Any) -> Thread:
    """The ORM read that `selectors.thread_for_member` writes out (ADR 0011): the reference its
    answers are held to."""
    thread = (
        Thread.objects.select_related("room", "room__working_group", "author")
        .filter(pk=thread_id)
        .first()
    )
    if thread is None or not policy.can_read_room(member, thread.room):
        raise Http404
    return thread


def _thread_with_the_member(*, thread_id: int, member: Any) -> Thread:
    """The thread of `selectors.member_and_thread`, which reads the member too, as
    thread_for_member answers: Http404 for none."""
    _member, thread = selectors.member_and_thread(member_id=member.pk, thread_id=thread_id)
    if thread is None:
        raise Http404
    return thread


@pytest.mark.django_db
def test_thread_for_member_answers_as_the_orm_read_with_the_same_related_rows(
    plan: None,
) -> None:
    # Arrange: every kind of reader; a thread in a network room, one in wg1's group-only room,
    # one in another group's group-only room, and an id that names no thread.
    readers = _readers()
    author = readers["chair"]
    _group_only_rooms()
    threads = [
        ThreadFactory(room=Room.objects.get(slug=slug), author=author).pk
        for slug in ("wg1-a", "wg1-private", "wg2-a")
    ] + [10**9]

    def seen(thread: Any) -> tuple[Any, ...]:
        room = thread.room
        group = room.working_group
        return (thread.pk, thread.title, room.slug, group and group.slug, thread.author.name)

    # Act
    def answers(read: Any) -> dict[Any, Any]:
        return _matrix(
            readers,
            threads,
            lambda m, pk: _or_404(
                lambda: read(thread_id=pk, member=User.objects.get(pk=m.pk)), seen
            ),
        )

    by_queryset = answers(_thread_by_queryset)
    by_row = answers(selectors.thread_for_member)
    by_pair = answers(_thread_with_the_member)

    # Assert: the same answers, and some of each.
    assert by_row == by_queryset
    assert by_pair == by_queryset
    assert {value == "404" for value in by_row.values()} == {True, False}


@pytest.mark.django_db
def test_thread_for_member_is_one_query_with_its_room_group_and_author(member: User) -> None:
    pk = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=member).pk
    reader, _thread = selectors.member_and_thread(member_id=member.pk, thread_id=pk)

    with CaptureQueriesContext(connection) as queries:
        thread = selectors.thread_for_member(thread_id=pk, member=reader)
        seen = (thread.room.slug, thread.room.working_group.slug, thread.author.name)

    assert (len(queries), seen) == (1, ("wg1-a", "wg1", member.name))


@pytest.mark.django_db
def test_member_and_thread_reads_the_whole_member_in_one_query(plan: None) -> None:
    # Arrange: a member with an organization, one without and unverified, and a thread.
    with_org = member_in("wg1", name="Ana Lima")
    without = UserFactory(name="Bea Souza", organization=None, verified=False)
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=with_org).pk

    # Act: each with the thread, and with no thread.
    with CaptureQueriesContext(connection) as queries:
        found = [
            selectors.member_and_thread(member_id=m.pk, thread_id=pk)[0]
            for m in (with_org, without)
            for pk in (thread, 10**9)
        ]
        missing = selectors.member_and_thread(member_id=10**9, thread_id=thread)

    # Assert: one statement each; the member as the ORM reads them, either way.
    seen = [(m.organization and m.organization.name, m.is_verified) for m in found if m]
    assert (len(queries), seen, missing) == (
        5,
        [(with_org.organization.name, True)] * 2 + [(None, False)] * 2,
        (None, None),
    )
    fields = [f.attname for f in User._meta.concrete_fields]
    assert [[getattr(m, f) for f in fields] for m in found if m] == [
        [getattr(User.objects.get(pk=m.pk), f) for f in fields]
        for m in (with_org, with_org, without, without)
    ]


@pytest.mark.django_db
def test_member_and_thread_carries_the_roles_the_policy_would_read(plan: None) -> None:
    # Arrange: a chair of wg1 who observes wg2 (two rows of memberships, the thread on each),
    # and a participant of no group.
    chair = member_in("wg1", role=Role.CHAIR, name="Ana Lima")
    Membership.objects.create(
        member=chair, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.OBSERVER
    )
    loner = UserFactory(name="Bea Souza")
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=chair).pk
    pairs = [selectors.member_and_thread(member_id=m.pk, thread_id=thread) for m in (chair, loner)]

    # Act: the policy's questions about them, after the read.
    with CaptureQueriesContext(connection) as queries:
        roles = [policy.roles_of(m) for m, _thread in pairs]

    # Assert: the policy's own read's answers, no query asked for them, and the thread with
    # each (wg1-a is open to the network).
    assert (len(queries), roles) == (
        0,
        [policy.roles_of(User.objects.get(pk=m.pk)) for m in (chair, loner)],
    )
    assert roles[0] == {
        WorkingGroup.objects.get(slug="wg1").pk: Role.CHAIR,
        WorkingGroup.objects.get(slug="wg2").pk: Role.OBSERVER,
    }
    assert roles[1] == {}
    assert [t and t.pk for _m, t in pairs] == [thread, thread]


@pytest.mark.django_db
def test_a_gateway_post_reads_no_roles_of_its_own(member: User) -> None:
    # Arrange: a member of wg1 posting in wg1-a (posting asks the member's role in wg1), through
    # the hop's function, as the gateway calls it.
    room = Room.objects.get(slug="wg1-a")
    thread = ThreadFactory(room=room, author=member)
    data = {"thread": thread.pk, "body": "Hola", "client_id": str(uuid.uuid4()), "reply_to": None}
    memberships = Membership._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        ack = consumers._post(member.pk, room.pk, data)

    # Assert: posted, and the roles came with the member's read: no query of the memberships
    # alone, and the post's statements counted.
    froms = [q["sql"].split(" FROM ", 1)[-1].lstrip() for q in queries]
    assert (ack["type"], ack["seq"]) == ("ack", 1)
    assert [sql for sql in froms if sql.startswith(f'"{memberships}"')] == []
    assert len(queries) == GATEWAY_POST_QUERIES


@pytest.mark.django_db
def test_room_for_member_id_of_an_unknown_member_is_missing(plan: None) -> None:
    with pytest.raises(Http404):
        selectors.room_for_member_id(slug="wg1-a", member_id=10**9)


@pytest.mark.django_db
def test_room_for_member_id_is_one_query_and_reads_no_deferred_field(member: User) -> None:
    with CaptureQueriesContext(connection) as queries:
        room = selectors.room_for_member_id(slug="wg1-a", member_id=member.pk)

    assert (len(queries), room.slug, room.get_deferred_fields() >= {"title"}) == (1, "wg1-a", True)


@pytest.mark.django_db
def test_room_state_for_a_remembered_id_the_slug_no_longer_names_raises_moved(
    member: User,
) -> None:
    other = Room.objects.get(slug="wg1-b")

    with pytest.raises(consumers._RoomMovedError):
        consumers._room_state(member.pk, "wg1-a", other.pk, [member.pk])


@pytest.mark.django_db
def test_token_identity_answers_member_identity_and_credential_in_one_query(
    member: User,
) -> None:
    _token, key = api_token_create(member=member, name="bot")
    token_identity(key)  # the first use records last_used_at (one more query)

    with CaptureQueriesContext(connection) as queries:
        user, identity, credential = token_identity(key)

    assert (len(queries), user.pk, identity, credential) == (
        1,
        member.pk,
        (member.pk, member.language or ""),
        credential_fingerprint(ApiToken.hash_key(key)),
    )


@pytest.mark.django_db
def test_api_token_member_row_answers_as_api_token_member_for_every_token(plan: None) -> None:
    # Arrange: a good token, a revoked one, an inactive and an unverified member's, a made-up
    # key and a malformed one.
    keys = {}
    for who, member in {
        "good": UserFactory(language="es"),
        "revoked": UserFactory(),
        "inactive": UserFactory(is_active=False),
        "unverified": UserFactory(verified=False),
        "staff": UserFactory(is_staff=True),
    }.items():
        token, keys[who] = api_token_create(member=member, name="bot")
        if who == "revoked":
            api_token_revoke(member=member, token_id=token.pk)
    keys["made up"] = ApiToken.PREFIX + "not-a-token"
    keys["malformed"] = "x" * 200

    def seen(member: User | None) -> tuple[Any, ...] | None:
        if member is None:
            return None
        return (member.pk, member.language, member.is_active, member.is_staff, member.is_verified)

    # Act
    by_row = {who: seen(api_token_member_row(key)) for who, key in keys.items()}
    by_object = {who: seen(api_token_member(key)) for who, key in keys.items()}

    # Assert
    assert by_row == by_object
    assert [who for who, found in by_row.items() if found] == ["good", "unverified", "staff"]
    assert by_row["good"][1:] == ("es", True, False, True)  # type: ignore[index]


@pytest.mark.django_db
def test_api_token_member_row_records_the_last_use_once_per_step(member: User) -> None:
    token, key = api_token_create(member=member, name="bot")
    counts, uses = [], []
    for back in (None, timedelta(minutes=1), LAST_USE_STEP + timedelta(seconds=1)):
        if back is not None:  # as if the last recorded use was `back` ago
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - back)
        before = ApiToken.objects.get(pk=token.pk).last_used_at
        with CaptureQueriesContext(connection) as queries:
            api_token_member_row(key)
        counts.append(len(queries))
        uses.append(ApiToken.objects.get(pk=token.pk).last_used_at != before)

    # never used: recorded; used a minute ago: left; used a step and a second ago: recorded
    assert (counts, uses) == ([2, 1, 2], [True, False, True])


@pytest.mark.django_db
def test_token_identity_wrong_token_is_anonymous_without_identity(plan: None) -> None:
    user, identity, _credential = token_identity(ApiToken.PREFIX + "not-a-token")

    assert (user.is_authenticated, identity) == (False, None)


# --- Presence frames ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_member_summaries_are_the_active_members_by_name_in_one_query(plan: None) -> None:
    # Arrange: names whose case would mis-sort them, one member of no organization, one
    # deactivated, an id given twice and one that names nobody.
    bea = UserFactory(name="bea Souza")
    ana = UserFactory(name="Ana Lima", organization=None)
    carla = UserFactory(name="Carla Díaz")
    gone = UserFactory(name="Aaron Gone", is_active=False)

    with CaptureQueriesContext(connection) as queries:
        found = selectors.member_summaries([carla.pk, gone.pk, bea.pk, ana.pk, bea.pk, 10**9])

    assert (len(queries), found) == (1, [me(ana), me(bea), me(carla)])
    assert found[0]["organization"] is None and found[1]["organization"] is not None


@pytest.mark.django_db
def test_member_summaries_of_no_one_ask_nothing(plan: None) -> None:
    with CaptureQueriesContext(connection) as queries:
        found = selectors.member_summaries([])

    assert (len(queries), found) == (0, [])


@pytest.mark.django_db
def test_presence_frame_of_a_small_room_is_the_whole_list(member: User, colleague: User) -> None:
    online = presence.Online(2, [member.pk, colleague.pk])

    frame = consumers._presence_frame("wg1-a", online, [colleague.pk], [])

    together = sorted([me(member), me(colleague)], key=lambda m: m["name"].lower())
    assert frame == {"type": "presence", "room": "wg1-a", "online": together}


@pytest.mark.django_db
def test_presence_frame_of_a_big_room_is_the_changes_and_the_count(
    member: User, colleague: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "FULL_LIST_MAX", 1)

    with CaptureQueriesContext(connection) as queries:
        frame = consumers._presence_frame(
            "wg1-a", presence.Online(2, [member.pk]), [colleague.pk], [99]
        )

    assert (len(queries), frame) == (
        1,
        {
            "type": "presence",
            "room": "wg1-a",
            "joined": [me(colleague)],
            "left": [99],
            "count": 2,
        },
    )


@pytest.mark.django_db
def test_presence_frame_of_a_big_room_without_changes_is_none(
    member: User, colleague: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "FULL_LIST_MAX", 1)

    online = presence.Online(2, [member.pk])

    assert consumers._presence_frame("wg1-a", online, [], []) is None


# --- Through the gateway ------------------------------------------------------------------------


def _session_headers(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@asynccontextmanager
async def socket(headers: list[tuple[bytes, bytes]]) -> AsyncIterator[WebsocketCommunicator]:
    ws = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    try:
        await ws.send_to(text_data='{"type": "ping"}')
        assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
        yield ws
    finally:
        await ws.disconnect()


async def _subscribe(ws: WebsocketCommunicator, room: str = "wg1-a") -> dict[str, Any]:
    await ws.send_to(text_data=json.dumps({"type": "subscribe", "room": room, "after": None}))
    return await ws.receive_json_from(timeout=5)


@pytest.mark.django_db(transaction=True)
async def test_token_socket_takes_its_identity_and_credential_from_the_handshake_hop(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    _token, key = await database_sync_to_async(api_token_create)(member=member, name="bot")
    seen: dict[str, Any] = {}
    real = consumers.GatewayConsumer.connect

    async def spy(self: consumers.GatewayConsumer) -> None:
        await real(self)
        seen.update(member=self.member_id, language=self.language, credential=self.credential)

    monkeypatch.setattr(consumers.GatewayConsumer, "connect", spy)

    async with socket([ORIGIN, (b"authorization", f"Token {key}".encode())]) as ws:
        subscribed = await _subscribe(ws)

    assert (subscribed["type"], seen) == (
        "subscribed",
        {
            "member": member.pk,
            "language": member.language or "",
            "credential": credential_fingerprint(ApiToken.hash_key(key)),
        },
    )


@pytest.mark.django_db(transaction=True)
async def test_big_room_subscribed_is_capped_and_presence_comes_as_deltas(
    member: User, colleague: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "FULL_LIST_MAX", 1)
    alice_headers = await database_sync_to_async(_session_headers)(member)
    carla_headers = await database_sync_to_async(_session_headers)(colleague)
    async with socket(alice_headers) as alice:
        await _subscribe(alice)
        own = await alice.receive_json_from(timeout=5)
        async with socket(carla_headers) as carla:
            subscribed = await _subscribe(carla)
            joined = await alice.receive_json_from(timeout=5)
        left = await alice.receive_json_from(timeout=5)

    assert (own, subscribed["online"], subscribed["online_count"], joined, left) == (
        {"type": "presence", "room": "wg1-a", "online": [me(member)]},
        [me(member)],
        2,
        {"type": "presence", "room": "wg1-a", "joined": [me(colleague)], "left": [], "count": 2},
        {"type": "presence", "room": "wg1-a", "online": [me(member)]},  # small again: the list
    )


@pytest.mark.django_db(transaction=True)
async def test_subscribe_while_presence_store_is_away_shows_only_the_member(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def away(*args: Any) -> None:
        raise ConnectionError("redis away")

    headers = await database_sync_to_async(_session_headers)(member)
    async with socket(headers) as ws:
        monkeypatch.setattr(presence.get().store, "add", away)
        subscribed = await _subscribe(ws)

    # The room works; presence shows only this member, and no count (docs: Redis away).
    assert (subscribed["type"], subscribed["online"], "online_count" in subscribed) == (
        "subscribed",
        [me(member)],
        False,
    )


@pytest.mark.django_db(transaction=True)
async def test_subscribe_with_a_stale_remembered_room_id_finds_the_room_again(
    member: User,
) -> None:
    right = await database_sync_to_async(lambda: Room.objects.get(slug="wg1-a").pk)()
    wrong = await database_sync_to_async(lambda: Room.objects.get(slug="wg1-b").pk)()
    consumers._room_ids["wg1-a"] = wrong
    headers = await database_sync_to_async(_session_headers)(member)

    async with socket(headers) as ws:
        subscribed = await _subscribe(ws)

    assert (subscribed["type"], subscribed["room"], consumers._room_ids["wg1-a"]) == (
        "subscribed",
        "wg1-a",
        right,
    )


@pytest.mark.django_db(transaction=True)
async def test_subscribe_whose_database_hop_fails_leaves_no_presence_behind(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("database away")

    monkeypatch.setattr(consumers, "_room_state", broken)
    headers = await database_sync_to_async(_session_headers)(member)

    async with socket(headers) as ws:
        error = await _subscribe(ws)
        room_id = consumers._room_ids["wg1-a"]
        online = await presence.get().online(room_id)
        local = list(presence.get().local)

    # Without the undo, the heartbeat would keep this socket's entry alive after it closed.
    assert (error["code"], online, local) == ("server_error", presence.Online(0, []), [])
