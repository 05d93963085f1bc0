"""forums.presence: who is in a room, in-process and in Redis, with expiry instead of ghosts.

The clock is forums.presence.now, replaced here: tests move time, they never wait for it.
Announcements are coalesced over COALESCE_SECONDS of asyncio time, shortened here to 10 ms.
"""

from __future__ import annotations

import asyncio
import json
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
from forums.presence import MemoryStore, Presence, RedisStore
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


Announcement = tuple[int, str, list[int], list[int], list[int]]


@pytest.fixture(autouse=True)
def short_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.01)


@pytest.fixture
def changes(monkeypatch: pytest.MonkeyPatch) -> list[Announcement]:
    seen: list[Announcement] = []

    async def listener(
        room_id: int, slug: str, online: list[int], joined: list[int], left: list[int]
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

    assert (first, second) == (([7], True), ([7, 8], True))


async def test_join_second_socket_of_member_is_no_arrival(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "tab-1")

    again = await here.join(1, "wg1-a", 7, "tab-2")

    assert again == ([7], False)


async def test_join_same_socket_twice_is_no_arrival(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "tab-1")

    again = await here.join(1, "wg1-a", 7, "tab-1")

    assert again == ([7], False)


async def test_leave_last_socket_of_member_is_a_departure(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "tab-1")
    await here.join(1, "wg1-a", 7, "tab-2")
    await here.join(1, "wg1-a", 8, "other")

    one_tab_left = await here.leave(1, 7, "tab-1")
    gone = await here.leave(1, 7, "tab-2")

    assert (one_tab_left, gone) == (([7, 8], False), ([8], True))


async def test_rooms_are_separate(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "s1")
    await here.join(2, "wg1-b", 8, "s2")

    assert (await here.online(1), await here.online(2)) == ([7], [8])


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

    assert (before, after) == ([7, 8], [7])


async def test_beat_reports_vanished_member_to_listener(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    alive, crashed = process(store), process(store)
    await alive.join(1, "wg1-a", 7, "s1")
    await crashed.join(1, "wg1-a", 8, "s2")

    clock.t += presence.TTL_SECONDS + 1
    await alive.beat()
    await alive.settled()

    assert changes == [(1, "wg1-a", [7], [], [8])]


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


async def test_first_change_in_a_quiet_room_is_announced_at_once(
    store: Any, clock: Clock, changes: list[Announcement], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 60.0)  # _until gives up long before
    here = process(store)

    await _arrive(here, 1, 7)
    await _until(lambda: bool(changes))

    assert changes == [(1, "room-1", [7], [7], [])]
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
        (1, "room-1", [7], [7], []),
        (1, "room-1", [7, 8, 9, 10], [8, 9, 10], []),
    ]


async def test_member_who_came_and_went_within_the_interval_is_not_announced_as_joined(
    store: Any, clock: Clock, changes: list[Announcement], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "COALESCE_SECONDS", 0.5)  # longer than the joins below
    here = process(store)
    await _arrive(here, 1, 7)
    await _until(lambda: bool(changes))

    await _arrive(here, 1, 8)
    _online, left = await here.leave(1, 8, "s8")
    here.changed(1, "room-1", left=[8] if left else [])
    await here.settled()

    assert changes[1:] == [(1, "room-1", [7], [], [8])]


async def test_rooms_are_announced_separately(
    store: Any, clock: Clock, changes: list[Announcement]
) -> None:
    here = process(store)

    await _arrive(here, 1, 7)
    await _arrive(here, 2, 8)
    await here.settled()

    assert sorted(changes) == [(1, "room-1", [7], [7], []), (2, "room-2", [8], [8], [])]


async def test_failed_announcement_is_logged_and_the_next_change_announces_again(
    store: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[int]] = []

    async def flaky(
        room_id: int, slug: str, online: list[int], joined: list[int], left: list[int]
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

    assert calls == [[7], [7, 8]]


async def test_beat_keeps_live_entries_past_their_first_ttl(store: Any, clock: Clock) -> None:
    here = process(store)
    await here.join(1, "wg1-a", 7, "s1")

    for _ in range(5):
        clock.t += presence.HEARTBEAT_SECONDS
        await here.beat()

    assert await here.online(1) == [7]


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

    assert (pruned, await other.online(1)) == ([8], [7, 8])


async def test_beat_without_local_sockets_does_nothing(store: Any, clock: Clock) -> None:
    here = process(store)

    await here.beat()

    assert await here.online(1) == []


async def test_redis_entries_are_visible_to_another_process(redis_url: str, clock: Clock) -> None:
    prefix = f"minga:test:{uuid.uuid4().hex}:presence:"
    one, two = RedisStore(redis_url, prefix), RedisStore(redis_url, prefix)
    try:
        await Presence(one).join(3, "wg2-a", 11, "a")

        seen = await Presence(two).online(3)
        ttl = await one.redis.ttl(one.key(3))
    finally:
        await one.redis.delete(one.key(3))
        await one.aclose()
        await two.aclose()

    # The set itself expires too if every process holding entries in it died.
    assert (seen, 0 < ttl <= 2 * presence.TTL_SECONDS) == ([11], True)


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
