"""forums.presence: who is in a room, in-process and in Redis, with expiry instead of ghosts.

The clock is forums.presence.now, replaced here: tests move time, they never wait for it.
Announcements are coalesced over COALESCE_SECONDS of asyncio time, shortened here to 10 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from minga.asgi import application

from community.models import User
from forums import presence
from forums.presence import MemoryStore, Online, Presence, RedisStore
from tests.forums.factories import member_in


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(presence, "now", c)
    return c


Announcement = tuple[int, str, Online, list[int], list[int]]


@pytest.fixture(autouse=True)
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.01)


@pytest.fixture
def changes(monkeypatch: pytest.MonkeyPatch) -> list[Announcement]:
    seen: list[Announcement] = []

    async def listener(
        room_id: int, slug: str, online: Online, joined: list[int], left: list[int]
    ) -> None:
        seen.append((room_id, slug, online, joined, left))

    monkeypatch.setattr(presence, "_listener", listener)
    return seen


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The same behaviour from both stores; Redis under a prefix of its own."""
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"minga:test:{uuid.uuid4().hex}:presence:"
    redis_store = RedisStore(url, prefix)
    yield redis_store
    keys = [k async for k in redis_store.redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis_store.redis.delete(*keys)
    await redis_store.aclose()


def process(store: Any) -> Presence:
    """One process's view (its own sockets) over a shared store."""
    return Presence(store)


async def test_join_first_socket_of_member_is_an_arrival(store: Any, clock: Clock) -> None:
    here = process(store)

    first = await here.join(1, "wg1-a", 7, "sock-a")
    second = await here.join(1, "wg1-a", 8, "sock-b")

    assert (first, second) == ((Online(1, [7]), True), (Online(2, [7, 8]), True))


async def test_join_second_socket_of_member_is_no_arrival(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "tab-1")

    again = await here.join(1, "wg1-a", 7, "tab-2")

    assert again == (Online(1, [7]), False)


async def test_join_same_socket_twice_is_no_arrival(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "tab-1")

    again = await here.join(1, "wg1-a", 7, "tab-1")

    assert again == (Online(1, [7]), False)


async def test_leave_last_socket_of_member_is_a_departure(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "tab-1")
    await here.join(1, "wg1-a", 7, "tab-2")
    await here.join(1, "wg1-a", 8, "other")

    one_tab_left = await here.leave(1, 7, "tab-1")
    gone = await here.leave(1, 7, "tab-2")

    assert (one_tab_left, gone) == ((Online(2, [7, 8]), False), (Online(1, [8]), True))


async def test_rooms_are_separate(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "s1")
    await here.join(2, "wg1-b", 8, "s2")

    assert (await here.online(1), await here.online(2)) == (Online(1, [7]), Online(1, [8]))


async def test_crashed_process_entries_expire(store: Any, clock: Clock) -> None:
    alive, crashed = process(store), process(store)
    await alive.join(1, "wg1-a", 7, "s1")
    await crashed.join(1, "wg1-a", 8, "s2")

    # The second process dies without a goodbye; the first keeps beating.
    clock.t += presence.HEARTBEAT_SECONDS
    await alive.beat()
    before = await alive.online(1)
    clock.t += presence.TTL_SECONDS
    await alive.beat()
    after = await alive.online(1)

    assert (before, after) == (Online(2, [7, 8]), Online(1, [7]))


async def test_beat_reports_vanished_member_to_listener(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    alive, crashed = process(store), process(store)
    await alive.join(1, "wg1-a", 7, "s1")
    await crashed.join(1, "wg1-a", 8, "s2")

    clock.t += presence.TTL_SECONDS + 1
    await alive.beat()
    await alive.settled()

    assert changes == [(1, "wg1-a", Online(1, [7]), [], [8])]


# --- Coalesced announcements ------------------------------------------------------------------


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met within ~5 s")


async def _arrive(here: Presence, room_id: int, member_id: int) -> None:
    """What the gateway does on subscribe: join, and report an arrival."""
    _online, arrived = await here.join(room_id, f"room-{room_id}", member_id, f"s{member_id}")
    if arrived:
        here.changed(room_id, f"room-{room_id}", joined=[member_id])


async def _depart(here: Presence, room_id: int, member_id: int) -> None:
    """What the gateway does on unsubscribe: leave, and report a departure."""
    _online, left = await here.leave(room_id, member_id, f"s{member_id}")
    here.changed(room_id, f"room-{room_id}", left=[member_id] if left else [])


async def test_first_change_in_a_quiet_room_is_announced_at_once(
    store: Any, clock: Clock, changes: list[Announcement], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 60.0)  # _until gives up long before
    here = process(store)

    await _arrive(here, 1, 7)
    await _until(lambda: bool(changes))

    assert changes == [(1, "room-1", Online(1, [7]), [7], [])]
    await here.aclose()


async def test_changes_within_the_interval_make_one_announcement_with_the_latest_list(
    store: Any, clock: Clock, changes: list[Announcement], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.5)  # longer than the joins below
    here = process(store)
    await _arrive(here, 1, 7)
    await _until(lambda: bool(changes))

    for member_id in (8, 9, 10):
        await _arrive(here, 1, member_id)
    await here.settled()

    assert changes == [
        (1, "room-1", Online(1, [7]), [7], []),
        (1, "room-1", Online(4, [7, 8, 9, 10]), [8, 9, 10], []),
    ]


async def test_member_who_came_and_went_within_the_interval_is_not_announced_as_joined(
    store: Any, clock: Clock, changes: list[Announcement], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.5)  # longer than the joins below
    here = process(store)
    await _arrive(here, 1, 7)
    await _until(lambda: bool(changes))

    await _arrive(here, 1, 8)
    await _depart(here, 1, 8)
    await here.settled()

    assert changes[1:] == [(1, "room-1", Online(1, [7]), [], [8])]


async def test_rooms_are_announced_separately(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    here = process(store)

    await _arrive(here, 1, 7)
    await _arrive(here, 2, 8)
    await here.settled()

    assert sorted(changes, key=lambda c: c[0]) == [
        (1, "room-1", Online(1, [7]), [7], []),
        (2, "room-2", Online(1, [8]), [8], []),
    ]


async def test_failed_announcement_is_logged_and_the_next_change_announces_again(
    store: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Online] = []

    async def flaky(
        room_id: int, slug: str, online: Online, joined: list[int], left: list[int]
    ) -> None:
        calls.append(online)
        if len(calls) == 1:
            raise ConnectionError("redis away")

    monkeypatch.setattr(presence, "_listener", flaky)
    here = process(store)
    await _arrive(here, 1, 7)
    await here.settled()

    await _arrive(here, 1, 8)
    await here.settled()

    assert calls == [Online(1, [7]), Online(2, [7, 8])]


async def test_beat_keeps_live_entries_past_their_first_ttl(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "s1")

    for _ in range(5):
        clock.t += presence.HEARTBEAT_SECONDS
        await here.beat()

    assert await here.online(1) == Online(1, [7])


async def test_beat_restores_an_entry_pruned_while_the_process_stalled(
    store: Any, clock: Clock
) -> None:
    stalled, other = process(store), process(store)
    await stalled.join(1, "wg1-a", 7, "s1")
    await other.join(1, "wg1-a", 8, "s2")
    clock.t += presence.TTL_SECONDS + 1
    await other.beat()  # prunes 7: its process did not beat in time
    pruned = await other.online(1)

    await stalled.beat()  # the socket is still open: it comes back

    assert (pruned, await other.online(1)) == (Online(1, [8]), Online(2, [7, 8]))


async def test_beat_without_local_sockets_does_nothing(store: Any, clock: Clock) -> None:
    here = process(store)

    await here.beat()

    assert await here.online(1) == Online(0, [])


# --- Counts, expiry and big rooms -------------------------------------------------------------


async def test_member_with_several_sockets_is_counted_once_with_their_sockets(
    store: Any, clock: Clock
) -> None:
    at = presence.now()
    expires = at + presence.TTL_SECONDS
    added = [await store.add(1, f"7:tab-{n}", expires, at) for n in (1, 2, 3)]
    other = await store.add(1, "8:x", expires, at)
    again = await store.add(1, "7:tab-2", expires, at)  # the same socket: no second count
    removed = [await store.remove(1, f"7:tab-{n}", at) for n in (1, 2, 3)]
    unknown = await store.remove(1, "7:tab-1", at)  # already gone: no negative count

    assert (
        [(s.sockets, s.online) for s in added],
        (other.sockets, other.online),
        (again.sockets, again.online),
        [(s.sockets, s.online) for s in removed],
        (unknown.sockets, unknown.online),
    ) == (
        [(1, Online(1, [7])), (2, Online(1, [7])), (3, Online(1, [7]))],
        (1, Online(2, [7, 8])),
        (3, Online(2, [7, 8])),
        [(2, Online(2, [7, 8])), (1, Online(2, [7, 8])), (0, Online(1, [8]))],
        (0, Online(1, [8])),
    )


async def test_dead_process_entries_expire_and_leave_no_ghost_count(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    alive, crashed = process(store), process(store)
    await alive.join(1, "wg1-a", 7, "a1")
    await crashed.join(1, "wg1-a", 7, "c1")  # member 7 also on the process that dies
    await crashed.join(1, "wg1-a", 8, "c2")
    await crashed.join(1, "wg1-a", 8, "c3")

    clock.t += presence.TTL_SECONDS + 1
    await alive.beat()
    await alive.settled()
    after = await alive.online(1)
    # Had member 8's two expired sockets left a count behind, this would be no arrival.
    back = await alive.join(1, "wg1-a", 8, "a2")
    # And member 7 is down to the one live socket: leaving it is a departure.
    _online, seven_left = await alive.leave(1, 7, "a1")

    assert (changes, after, back, seven_left) == (
        [(1, "wg1-a", Online(1, [7]), [], [8])],
        Online(1, [7]),
        (Online(2, [7, 8]), True),
        True,
    )


async def test_ghost_pruned_by_a_join_is_announced_as_left(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    alive, crashed = process(store), process(store)
    await crashed.join(1, "room-1", 8, "c1")
    clock.t += presence.TTL_SECONDS + 1

    await _arrive(alive, 1, 7)  # the join finds 8's expired entry before any heartbeat does
    await alive.settled()

    assert changes == [(1, "room-1", Online(1, [7]), [7], [8])]


async def test_big_room_join_answers_the_count_and_the_lowest_ids_only(
    store: Any, clock: Clock
) -> None:
    here = process(store)
    for member_id in range(100, 100 + presence.FULL_LIST_MAX):
        await here.join(1, "wg1-a", member_id, f"s{member_id}")

    at_max, arrived = await here.join(1, "wg1-a", 5, "s5")  # the 51st, and the lowest id
    more, _ = await here.join(1, "wg1-a", 999, "s999")
    _left, _ = await here.leave(1, 5, "s5")
    looked = await here.online(1)

    lowest = list(range(100, 100 + presence.FULL_LIST_MAX))
    assert (at_max, arrived, at_max.whole, more, looked, looked.whole) == (
        Online(presence.FULL_LIST_MAX + 1, [5, *lowest[:-1]]),
        True,
        False,
        Online(presence.FULL_LIST_MAX + 2, [5, *lowest[:-1]]),
        Online(presence.FULL_LIST_MAX + 1, lowest),
        False,
    )


async def test_big_room_announcement_checks_only_the_members_who_changed(
    store: Any, clock: Clock, changes: list[Announcement], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "FULL_LIST_MAX", 3)
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.5)  # longer than the joins below
    here = process(store)
    for member_id in (1, 2, 3, 4):
        await here.join(1, "room-1", member_id, f"s{member_id}")
    await _arrive(here, 1, 5)
    await _until(lambda: bool(changes))

    await _arrive(here, 1, 20)  # 20 is beyond the sample of ids: still announced
    await _arrive(here, 1, 21)  # came and went within the interval: in neither list
    await _depart(here, 1, 21)
    await _depart(here, 1, 2)
    await here.settled()

    assert changes == [
        (1, "room-1", Online(5, [1, 2, 3]), [5], []),
        (1, "room-1", Online(5, [1, 3, 4]), [20], [2, 21]),
    ]


# --- One announcer per room, across processes (ADR 0013) ----------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def two_processes(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Any]]:
    """Two processes' stores over the same presence: one MemoryStore seen twice (what the
    in-memory layer's single process shares), or two Redis clients under one prefix."""
    if request.param == "memory":
        shared = MemoryStore()
        yield shared, shared
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"minga:test:{uuid.uuid4().hex}:presence:"
    one, two = RedisStore(url, prefix), RedisStore(url, prefix)
    yield one, two
    keys = [k async for k in one.redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await one.redis.delete(*keys)
    await one.aclose()
    await two.aclose()


async def test_changes_noted_by_two_processes_within_the_interval_make_one_announcement(
    two_processes: tuple[Any, Any],
    clock: Clock,
    changes: list[Announcement],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.5)  # longer than the joins below
    one, two = (process(s) for s in two_processes)
    await _arrive(one, 1, 7)
    await _until(lambda: bool(changes))

    # All three join, then each process notes its arrivals before handing them over (a
    # process hands over what it noted when it next asks; what it notes while waiting goes
    # with its next ask, at most one interval later).
    for here, member_id in ((one, 8), (two, 9), (two, 10)):
        await here.join(1, "room-1", member_id, f"s{member_id}")
    one.changed(1, "room-1", joined=[8])
    two.changed(1, "room-1", joined=[9, 10])  # two's first change: it still waits for the turn
    await asyncio.gather(one.settled(), two.settled())

    assert changes == [
        (1, "room-1", Online(1, [7]), [7], []),
        (1, "room-1", Online(4, [7, 8, 9, 10]), [8, 9, 10], []),
    ]


async def test_a_departure_through_another_process_within_the_interval_is_announced_as_left(
    two_processes: tuple[Any, Any],
    clock: Clock,
    changes: list[Announcement],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.5)
    one, two = (process(s) for s in two_processes)
    await _arrive(one, 1, 7)
    await _arrive(one, 1, 8)
    await _until(lambda: len(changes) == 1)

    await _arrive(two, 1, 9)  # 9 arrives through the second process ...
    await _depart(two, 1, 9)  # ... and leaves through it within the interval
    await _depart(one, 1, 8)
    await asyncio.gather(one.settled(), two.settled())

    # Whichever process takes the next turn announces both departures. A change noted after
    # the set was handed over is noted again, so it may be announced once more, the same way.
    again = [(1, "room-1", Online(1, [7]), [], [8]), (1, "room-1", Online(1, [7]), [], [9])]
    assert (changes[1], all(c in again for c in changes[2:])) == (
        (1, "room-1", Online(1, [7]), [], [8, 9]),
        True,
    )


async def test_changes_of_a_process_that_died_waiting_for_the_turn_go_with_a_heartbeat(
    two_processes: tuple[Any, Any],
    clock: Clock,
    changes: list[Announcement],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.05)
    alive, dying = (process(s) for s in two_processes)
    await _arrive(alive, 1, 7)
    await _until(lambda: bool(changes))

    await _arrive(dying, 1, 9)  # noted; the turn is alive's for 50 ms, so it waits ...
    await _until(lambda: not dying.pending)
    for task in dying.announcers.values():  # ... and its process dies meanwhile
        task.cancel()
    await dying.settled()
    await asyncio.sleep(0.1)  # the turn lapses
    quiet = list(changes)
    await alive.beat()  # its heartbeat sees changes nobody announced
    await alive.settled()

    assert (quiet, changes[1:]) == (
        [(1, "room-1", Online(1, [7]), [7], [])],
        [(1, "room-1", Online(2, [7, 9]), [9], [])],
    )


class _Unreachable:
    """A store whose `note` fails while `down` (Redis away); everything else goes through."""

    def __init__(self, store: Any) -> None:
        self.store, self.down = store, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def note(self, *args: Any) -> presence.Turn:
        if self.down:
            raise ConnectionError("redis away")
        return await self.store.note(*args)


async def test_changes_kept_after_a_failed_note_go_with_the_next_heartbeat(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    flaky = _Unreachable(store)
    here = process(flaky)
    await _arrive(here, 1, 7)
    await here.settled()
    during = (list(changes), dict(here.pending))

    flaky.down = False
    await here.beat()
    await here.settled()

    assert (during, changes, here.pending) == (
        ([], {1: {7}}),
        [(1, "room-1", Online(1, [7]), [7], [])],
        {},
    )


async def test_a_process_with_nothing_to_note_does_not_take_the_turn(store: Any) -> None:
    nothing = await store.note(1, [], "a", 60.0)
    first = await store.note(1, [5], "b", 60.0)
    held = await store.note(1, [6], "a", 60.0)
    empty_while_held = await store.note(2, [], "a", 60.0)

    assert (nothing, first, held.ids, 0 < held.wait <= 60.0, empty_while_held) == (
        presence.Turn(),
        presence.Turn(ids=[5]),
        None,
        True,
        presence.Turn(),
    )


async def test_redis_noted_changes_and_the_turn_expire(redis_store: RedisStore) -> None:
    await redis_store.note(4, [1], "a", 0.5)  # takes the turn
    await redis_store.note(4, [2], "b", 0.5)  # waits: 2 stays noted
    changed, turn = redis_store.turn_keys(4)

    ttl, pttl = await redis_store.redis.ttl(changed), await redis_store.redis.pttl(turn)

    assert (0 < ttl <= 2 * presence.TTL_SECONDS, 0 < pttl <= 500) == (True, True)


async def test_memory_and_redis_stores_answer_alike(redis_url: str) -> None:
    """A fixed random run of adds, removes, heartbeats, looks, noted changes and lapsed turns,
    with the clock moving on, against both stores: every answer is the same."""
    rng = random.Random(6)  # a reproducible test sequence
    prefix = f"minga:test:{uuid.uuid4().hex}:presence:"
    memory, redis_store = MemoryStore(), RedisStore(redis_url, prefix)
    at, answers = 1_000_000.0, {"memory": [], "redis": []}
    try:
        for _ in range(400):
            at += rng.choice((0.0, 1.0, 7.0, 30.0))
            room, entry = rng.choice((1, 2)), f"{rng.randrange(1, 9)}:s{rng.randrange(3)}"
            op = rng.choice(("add", "add", "remove", "refresh", "look", "note", "lapse"))
            noted = rng.sample(range(1, 9), rng.choice((0, 1, 2)))
            for name, st in (("memory", memory), ("redis", redis_store)):
                if op == "note":  # a long turn: only "lapse" ends it, on both stores alike
                    turn = await st.note(room, noted, "p", 600.0)
                    answer = (turn.ids, turn.wait > 0)
                elif op == "lapse":
                    if st is memory:
                        answer = memory.turns.pop(room, None) is not None
                    else:
                        answer = await redis_store.redis.delete(redis_store.turn_keys(room)[1]) == 1
                elif op == "add":
                    answer: Any = await st.add(room, entry, at + presence.TTL_SECONDS, at)
                elif op == "remove":
                    answer = await st.remove(room, entry, at)
                elif op == "refresh":
                    answer = await st.refresh({room: [entry]}, at + presence.TTL_SECONDS, at)
                else:
                    answer = await st.look(room, at, [1, 3, 5, 7])
                answers[name].append(answer)
    finally:
        keys = [k async for k in redis_store.redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis_store.redis.delete(*keys)
        await redis_store.aclose()

    gone = sum(len(a.gone) for a in answers["memory"] if isinstance(a, presence.Seen))
    turns = sum(1 for a in answers["memory"] if isinstance(a, tuple) and a[0])
    unannounced = sum(
        len(a.unannounced) for a in answers["memory"] if isinstance(a, presence.Refreshed)
    )
    assert (answers["memory"] == answers["redis"], gone > 0, turns > 1, unannounced > 0) == (
        True,
        True,
        True,
        True,
    )


# --- The Lua path in Redis ----------------------------------------------------------------------


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    prefix = f"minga:test:{uuid.uuid4().hex}:presence:"
    st = RedisStore(redis_url, prefix)
    yield st
    keys = [k async for k in st.redis.scan_iter(match=f"{prefix}*")]
    if keys:
        await st.redis.delete(*keys)
    await st.aclose()


async def test_redis_keeps_entries_counts_and_ids_consistent(
    redis_store: RedisStore, clock: Clock
) -> None:
    here = process(redis_store)
    entries, counts, ids = redis_store.keys(1)
    await here.join(1, "wg1-a", 7, "tab-1")
    await here.join(1, "wg1-a", 7, "tab-2")
    await here.join(1, "wg1-a", 12, "x")
    during = (
        await redis_store.redis.zcard(entries),
        await redis_store.redis.hgetall(counts),
        await redis_store.redis.zrange(ids, 0, -1),
    )
    await here.leave(1, 7, "tab-1")
    await here.leave(1, 7, "tab-2")
    await here.leave(1, 12, "x")
    after = await redis_store.redis.exists(entries, counts, ids)

    # Ids sort as numbers (12 after 7), and an empty room leaves no key behind.
    assert (during, after) == ((3, {"7": "2", "12": "1"}, ["7", "12"]), 0)


async def test_redis_join_answer_stays_the_same_size_as_the_room_grows(
    redis_store: RedisStore, clock: Clock
) -> None:
    """One round trip per join, and an answer that does not grow with the room: before, each
    join read back every entry of the room."""
    at = presence.now()
    expires = at + presence.TTL_SECONDS
    calls: list[tuple[str, int]] = []
    real = redis_store.redis.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        reply = await real(*args, **options)
        calls.append((str(args[0]), len(json.dumps(reply))))
        return reply

    async def fill(upto: int) -> None:
        for member_id in range(await redis_store.redis.zcard(redis_store.keys(1)[0]), upto):
            await redis_store.add(1, f"{1000 + member_id}:s", expires, at)

    await fill(60)
    redis_store.redis.execute_command = counted  # type: ignore[method-assign]
    small = await redis_store.add(1, "5:joiner", expires, at)
    at_60 = calls[:]
    redis_store.redis.execute_command = real  # type: ignore[method-assign]
    await fill(500)
    calls.clear()
    redis_store.redis.execute_command = counted  # type: ignore[method-assign]
    big = await redis_store.add(1, "6:joiner", expires, at)
    at_500 = calls[:]

    # Same shape and size (the count has one more digit), not 500 entries.
    assert (
        [c[0] for c in at_60],
        [c[0] for c in at_500],
        at_500[0][1] - at_60[0][1] <= 2,
        at_500[0][1] < 1024,
        (small.online.count, len(small.online.ids)),
        (big.online.count, len(big.online.ids)),
    ) == (
        ["EVALSHA"],
        ["EVALSHA"],
        True,
        True,
        (61, presence.FULL_LIST_MAX),
        (501, presence.FULL_LIST_MAX),
    )


async def test_redis_store_loads_a_script_the_server_does_not_know(
    redis_store: RedisStore, clock: Clock
) -> None:
    """A script the server forgot (restart, SCRIPT FLUSH) is loaded again, alone or pipelined."""
    here = process(redis_store)
    await here.join(1, "wg1-a", 7, "s1")
    # The same scripts under a comment of their own: scripts this server has never seen.
    unseen = f"\n-- {uuid.uuid4().hex}"
    redis_store._add = redis_store.redis.register_script(presence._LUA_ADD + unseen)
    redis_store._refresh = redis_store.redis.register_script(presence._LUA_REFRESH + unseen)

    online, arrived = await here.join(1, "wg1-a", 8, "s2")
    await here.beat()  # the pipelined refresh loads its script first

    assert (online, arrived, await here.online(1)) == (Online(2, [7, 8]), True, Online(2, [7, 8]))


async def test_redis_entries_are_visible_to_another_process(redis_url: str, clock: Clock) -> None:
    prefix = f"minga:test:{uuid.uuid4().hex}:presence:"
    one, two = RedisStore(redis_url, prefix), RedisStore(redis_url, prefix)
    try:
        await Presence(one).join(3, "wg2-a", 11, "a")

        seen = await Presence(two).online(3)
        ttls = [await one.redis.ttl(key) for key in one.keys(3)]
    finally:
        await one.redis.delete(*one.keys(3))
        await one.aclose()
        await two.aclose()

    # The keys themselves expire too if every process holding entries in them died.
    assert (seen, [0 < ttl <= 2 * presence.TTL_SECONDS for ttl in ttls]) == (
        Online(1, [11]),
        [True, True, True],
    )


def test_redis_url_follows_the_channel_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    in_memory = presence.redis_url()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://example:6379/2"}]},
        }
    }
    on_redis = presence.redis_url()

    assert (in_memory, on_redis) == (None, "redis://example:6379/2")


def test_key_prefix_differs_per_database(settings: Any) -> None:
    from django.db import connection

    original = connection.settings_dict["NAME"]
    try:
        connection.settings_dict["NAME"] = "minga_a"
        a = presence.key_prefix()
        connection.settings_dict["NAME"] = "minga_b"
        b = presence.key_prefix()
    finally:
        connection.settings_dict["NAME"] = original

    assert (a == b, a.startswith("minga:"), a.endswith(":presence:")) == (False, True, True)


async def test_get_uses_memory_store_without_redis_layer() -> None:
    assert isinstance(presence.get().store, MemoryStore)


# --- Through the gateway on the Redis channel layer --------------------------------------------


def _headers(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]


async def _open(user: User) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(
        application, "/ws/", headers=await database_sync_to_async(_headers)(user)
    )
    connected, _ = await ws.connect(timeout=5)
    assert connected
    return ws


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_gateway_presence_lives_in_redis_on_the_redis_layer(
    plan: None, redis_layer: str
) -> None:
    ana, carla = await database_sync_to_async(lambda: (member_in("wg1"), member_in("wg1")))()
    first, second = await _open(ana), await _open(carla)
    try:
        await first.send_to(text_data=json.dumps({"type": "subscribe", "room": "wg1-a"}))
        await first.receive_json_from(timeout=5)
        await first.receive_json_from(timeout=5)  # own arrival
        await second.send_to(text_data=json.dumps({"type": "subscribe", "room": "wg1-a"}))
        subscribed = await second.receive_json_from(timeout=5)
        joined = await first.receive_json_from(timeout=5)
        store = presence.get().store
        in_redis = isinstance(store, RedisStore)
    finally:
        await second.disconnect()
    try:
        left = await first.receive_json_from(timeout=5)
    finally:
        await first.disconnect()

    both = sorted([ana.pk, carla.pk])
    assert (
        in_redis,
        sorted(m["id"] for m in subscribed["online"]),
        sorted(m["id"] for m in joined["online"]),
        [m["id"] for m in left["online"]],
    ) == (True, both, both, [ana.pk])


async def test_a_burst_of_joins_and_leaves_waits_for_a_connection_instead_of_failing(
    redis_store: RedisStore, clock: Clock
) -> None:
    """A meeting's end (or a proxy restart) closes hundreds of sockets of one process at once.
    Each leave is one script call: more of them than the pool has connections wait for one,
    instead of failing and leaving a ghost online until its entry expires."""
    here = process(redis_store)
    burst = 4 * presence.REDIS_MAX_CONNECTIONS

    joined = await asyncio.gather(
        *(here.join(1, "wg1-a", member, f"tab-{member}") for member in range(1, burst + 1))
    )
    assert all(arrived for _online, arrived in joined)
    assert (await here.online(1)).count == burst

    left = await asyncio.gather(
        *(here.leave(1, member, f"tab-{member}") for member in range(1, burst + 1))
    )
    assert all(gone for _online, gone in left)
    assert (await here.online(1)).count == 0


async def test_a_redis_that_does_not_answer_trips_the_breaker_and_the_next_calls_fail_at_once(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """A paused Redis (it accepts, never answers) costs one timeout, not one per socket: the
    first call trips the breaker shared with the cache and the channel layer, and for the next
    second presence calls fail at once, without a connection, and the gateway falls back."""
    from minga import breaker

    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(presence, "REDIS_TIMEOUT_SECONDS", 0.2)
    paused = RedisStore(f"redis://127.0.0.1:{port}/0", "minga:test:paused:")
    here = process(paused)
    try:
        with pytest.raises(Exception, match="Timeout"):
            await here.join(1, "wg1-a", 7, "tab-1")
        assert breaker.for_server(f"redis://127.0.0.1:{port}").open
        assert len(accepted) == 1

        for member in (8, 9):
            with pytest.raises(Exception, match="failed within the last second"):
                await here.join(1, "wg1-a", member, f"tab-{member}")

        assert len(accepted) == 1  # no connection tried while the breaker is open
    finally:
        await here.aclose()
        server.close()
        for writer in accepted:
            writer.close()
