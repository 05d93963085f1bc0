"""Who is in a room now: one entry per subscribed socket, kept alive by a heartbeat, expiring.

Where the channel layer is Redis (several processes, several hosts), entries live in Redis: one
sorted set per room, member `"<member_id>:<socket>"`, score = the time the entry expires. Each
process refreshes the entries of its own sockets every HEARTBEAT_SECONDS (one pipeline for all of
them), so a process that crashes leaves entries that expire after TTL_SECONDS: no ghosts. Every
read drops expired entries first. With the in-memory layer (one process) the same structure is
kept in a dict.

Presence follows open sockets, not client frames: a delegate who only reads stays present for as
long as the tab is open (daphne's keepalive pings close a dead connection within ~50 s).

A member is online in a room while at least one of their sockets is subscribed to it; `join`
and `leave` say whether that changed, and the gateway then reports the change with `changed`.
When the heartbeat finds expired entries of a member with no live one left (a crashed
process's ghost) it reports them the same way, so rooms learn of it too.

Broadcasts are coalesced per room (docs/decisions/0007-presence-coalesced-with-deltas.md): a
change is announced at once when the room has had no announcement from this process for
COALESCE_SECONDS, otherwise at the end of that interval, together with every other change of
the interval, by one call of the listener set with `on_change` with the room's *current* online
list. Without this, N members arriving in a room cost N^2/2 frames of up to N members each.

Keys are namespaced by the database name: room ids are per database, and two deployments (or a
test run next to a development server) may share one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.db import connection
from minga import loops

logger = logging.getLogger("forums.presence")

TTL_SECONDS = 60.0
HEARTBEAT_SECONDS = 20.0
# At most one presence announcement per room per this many seconds from each process.
COALESCE_SECONDS = 1.0
# Rooms with more members online than this get `presence` deltas (joined, left, count) instead
# of the whole list, and a `subscribed` list cut to this many (docs/realtime-protocol.md).
FULL_LIST_MAX = 50

# listener(room_id, room_slug, online_ids, joined_ids, left_ids): online is the room's current
# list; joined (still online) and left (no longer online) are the changes since the last call.
Listener = Callable[[int, str, list[int], list[int], list[int]], Awaitable[None]]
_listener: Listener | None = None


def on_change(listener: Listener | None) -> None:
    """Set the coroutine that announces a room's presence changes (the gateway publishes the
    `presence` frame); called at most once per room per COALESCE_SECONDS by each process."""
    global _listener  # noqa: PLW0603 - one listener per process, set once at import of the gateway
    _listener = listener


def now() -> float:
    """The clock (wall time: entries are compared across processes). Tests replace it."""
    return time.time()


def _entry(member_id: int, socket: str) -> str:
    return f"{int(member_id)}:{socket}"


def _member_ids(entries: list[str]) -> list[int]:
    return sorted({int(e.split(":", 1)[0]) for e in entries})


class Store(Protocol):
    async def add(self, room_id: int, entry: str, expires: float, at: float) -> list[str]: ...

    async def remove(self, room_id: int, entry: str, at: float) -> list[str]: ...

    async def live(self, room_id: int, at: float) -> list[str]: ...

    async def refresh(
        self, entries: dict[int, list[str]], expires: float, at: float
    ) -> dict[int, tuple[list[str], list[str]]]: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """The in-process store for the in-memory channel layer (a single process)."""

    def __init__(self) -> None:
        self.rooms: dict[int, dict[str, float]] = {}

    def _prune(self, room_id: int, at: float) -> list[str]:
        room = self.rooms.get(room_id, {})
        expired = [e for e, until in room.items() if until <= at]
        for e in expired:
            del room[e]
        return expired

    def _live(self, room_id: int) -> list[str]:
        return sorted(self.rooms.get(room_id, {}))

    async def add(self, room_id: int, entry: str, expires: float, at: float) -> list[str]:
        self.rooms.setdefault(room_id, {})[entry] = expires
        self._prune(room_id, at)
        return self._live(room_id)

    async def remove(self, room_id: int, entry: str, at: float) -> list[str]:
        self.rooms.get(room_id, {}).pop(entry, None)
        self._prune(room_id, at)
        live = self._live(room_id)
        if not live:
            self.rooms.pop(room_id, None)
        return live

    async def live(self, room_id: int, at: float) -> list[str]:
        self._prune(room_id, at)
        return self._live(room_id)

    async def refresh(
        self, entries: dict[int, list[str]], expires: float, at: float
    ) -> dict[int, tuple[list[str], list[str]]]:
        out = {}
        for room_id, mine in entries.items():
            room = self.rooms.setdefault(room_id, {})
            for e in mine:
                room[e] = expires
            out[room_id] = (self._prune(room_id, at), self._live(room_id))
        return out

    async def aclose(self) -> None:
        self.rooms.clear()


class RedisStore:
    """Sorted sets in Redis, one per room; each operation is one MULTI/EXEC round trip."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis import asyncio as aioredis

        self.redis = aioredis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
        )
        self.prefix = prefix

    def key(self, room_id: int) -> str:
        return f"{self.prefix}room:{int(room_id)}"

    async def add(self, room_id: int, entry: str, expires: float, at: float) -> list[str]:
        key = self.key(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {entry: expires})
            pipe.zremrangebyscore(key, "-inf", at)
            pipe.zrange(key, 0, -1)
            # The whole set goes too if every process holding it died.
            pipe.expire(key, int(TTL_SECONDS * 2))
            result = await pipe.execute()
        return sorted(result[2])

    async def remove(self, room_id: int, entry: str, at: float) -> list[str]:
        key = self.key(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, entry)
            pipe.zremrangebyscore(key, "-inf", at)
            pipe.zrange(key, 0, -1)
            result = await pipe.execute()
        return sorted(result[2])

    async def live(self, room_id: int, at: float) -> list[str]:
        return sorted(await self.redis.zrangebyscore(self.key(room_id), f"({at}", "+inf"))

    async def refresh(
        self, entries: dict[int, list[str]], expires: float, at: float
    ) -> dict[int, tuple[list[str], list[str]]]:
        rooms = list(entries)
        async with self.redis.pipeline(transaction=True) as pipe:
            for room_id in rooms:
                key = self.key(room_id)
                # Plain ZADD, not XX: an entry another process pruned while this one stalled
                # comes back, since its socket is still open.
                pipe.zadd(key, dict.fromkeys(entries[room_id], expires))
                pipe.zrangebyscore(key, "-inf", at)
                pipe.zremrangebyscore(key, "-inf", at)
                pipe.zrange(key, 0, -1)
                pipe.expire(key, int(TTL_SECONDS * 2))
            result = await pipe.execute()
        out = {}
        for i, room_id in enumerate(rooms):
            expired, live = result[i * 5 + 1], result[i * 5 + 3]
            out[room_id] = (sorted(expired), sorted(live))
        return out

    async def aclose(self) -> None:
        await self.redis.aclose()


def _is_channels_redis(backend: str) -> bool:
    """Whether the layer class is (a subclass of) one of channels_redis' layers."""
    if not backend:
        return False
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from django.utils.module_loading import import_string

    try:
        layer_class = import_string(backend)
    except ImportError:
        return False
    return issubclass(layer_class, (RedisChannelLayer, RedisPubSubChannelLayer))


def redis_url() -> str | None:
    """The Redis of the channel layer, or None when the layer is not Redis (presence follows
    the layer: it must reach exactly the processes the layer reaches)."""
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if not _is_channels_redis(layer.get("BACKEND", "")):
        return None
    hosts = layer.get("CONFIG", {}).get("hosts") or []
    if hosts:
        first = hosts[0]
        if isinstance(first, str):
            return first
        if isinstance(first, dict) and "address" in first:
            return str(first["address"])
    return settings.REDIS_URL or None


def key_prefix() -> str:
    name = str(connection.settings_dict.get("NAME") or "")
    return f"minga:{hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10]}:presence:"


@dataclass
class _Changes:
    slug: str
    joined: set[int] = field(default_factory=set)
    left: set[int] = field(default_factory=set)


@dataclass
class Presence:
    """The presence of this process's sockets, for one event loop."""

    store: Store
    # (room_id, entry) -> room slug: this process's live entries, refreshed by the heartbeat.
    local: dict[tuple[int, str], str] = field(default_factory=dict)
    heartbeat: asyncio.Task[None] | None = None
    # room_id -> changes not announced yet; room_id -> the task announcing that room's changes.
    pending: dict[int, _Changes] = field(default_factory=dict)
    announcers: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    async def join(
        self, room_id: int, slug: str, member_id: int, socket: str
    ) -> tuple[list[int], bool]:
        """Add a socket to the room; returns (online member ids, whether the member just came)."""
        entry = _entry(member_id, socket)
        again = (room_id, entry) in self.local
        self.local[(room_id, entry)] = slug
        self._ensure_heartbeat()
        at = now()
        live = await self.store.add(room_id, entry, at + TTL_SECONDS, at)
        mine = [e for e in live if e.split(":", 1)[0] == str(member_id)]
        return _member_ids(live), not again and mine == [entry]

    async def leave(self, room_id: int, member_id: int, socket: str) -> tuple[list[int], bool]:
        """Remove a socket; returns (online member ids, whether the member just left)."""
        entry = _entry(member_id, socket)
        self.local.pop((room_id, entry), None)
        live = await self.store.remove(room_id, entry, now())
        online = _member_ids(live)
        return online, member_id not in online

    async def online(self, room_id: int) -> list[int]:
        return _member_ids(await self.store.live(room_id, now()))

    async def beat(self) -> None:
        """Refresh this process's entries, drop expired ones everywhere this process looks, and
        tell the listener about members who vanished (their process died)."""
        if not self.local:
            return
        entries: dict[int, list[str]] = {}
        slugs: dict[int, str] = {}
        for (room_id, entry), slug in self.local.items():
            entries.setdefault(room_id, []).append(entry)
            slugs[room_id] = slug
        at = now()
        result = await self.store.refresh(entries, at + TTL_SECONDS, at)
        for room_id, (expired, live) in result.items():
            online = _member_ids(live)
            gone = [m for m in _member_ids(expired) if m not in online]
            if gone:
                self.changed(room_id, slugs[room_id], left=gone)

    def changed(
        self,
        room_id: int,
        slug: str,
        *,
        joined: Iterable[int] = (),
        left: Iterable[int] = (),
    ) -> None:
        """Note members who arrived in or left the room; the listener hears of it at once when
        the room is quiet, else within COALESCE_SECONDS, merged with the interval's others."""
        changes = self.pending.get(room_id)
        if changes is None:
            changes = self.pending[room_id] = _Changes(slug)
        changes.slug = slug
        changes.joined.update(joined)
        changes.left.update(left)
        if room_id not in self.announcers:
            task = asyncio.get_running_loop().create_task(self._announce(room_id))
            self.announcers[room_id] = task

    async def _announce(self, room_id: int) -> None:
        try:
            while room_id in self.pending:
                changes = self.pending.pop(room_id)
                try:
                    online = await self.online(room_id)
                    current = set(online)
                    # Read now, after the interval: a member who came and went within it is
                    # neither joined nor still online, and the list is the latest one.
                    joined = sorted(changes.joined & current)
                    left = sorted(changes.left - current)
                    if _listener is not None:
                        await _listener(room_id, changes.slug, online, joined, left)
                except Exception:
                    # Redis away: the next change (or the heartbeat) announces the room again.
                    logger.warning("presence announcement failed", exc_info=True)
                await asyncio.sleep(COALESCE_SECONDS)
        finally:
            self.announcers.pop(room_id, None)

    async def settled(self) -> None:
        """Wait until every pending announcement was made (tests; shutting down)."""
        while self.announcers:
            await asyncio.gather(*list(self.announcers.values()), return_exceptions=True)

    def _ensure_heartbeat(self) -> None:
        if self.heartbeat is None or self.heartbeat.done():
            self.heartbeat = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.beat()
            except Exception:
                # Redis away: entries expire meanwhile, the next beat puts them back.
                logger.warning("presence heartbeat failed", exc_info=True)

    async def aclose(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat
            self.heartbeat = None
        for task in list(self.announcers.values()):
            task.cancel()
        await asyncio.gather(*list(self.announcers.values()), return_exceptions=True)
        self.announcers.clear()
        self.pending.clear()
        self.local.clear()
        await self.store.aclose()


_by_loop: dict[asyncio.AbstractEventLoop, Presence] = {}


def get() -> Presence:
    """This event loop's Presence (a Redis client belongs to one loop), made on first use; it is
    closed when the loop closes."""
    loop = asyncio.get_running_loop()
    presence = _by_loop.get(loop)
    if presence is None:
        url = redis_url()
        store: Store = RedisStore(url, key_prefix()) if url else MemoryStore()
        presence = _by_loop[loop] = Presence(store)
        loops.close_with(loop, lambda: _forget(loop))
    return presence


async def _forget(loop: asyncio.AbstractEventLoop) -> None:
    presence = _by_loop.pop(loop, None)
    if presence is not None:
        await presence.aclose()


async def reset() -> None:
    """Close and forget this loop's Presence (tests switch channel layers between tests)."""
    await _forget(asyncio.get_running_loop())
