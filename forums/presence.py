"""Who is in a room now: one entry per subscribed socket, kept alive by a heartbeat, expiring.

Where the channel layer is Redis (several processes, several hosts), entries live in Redis, three
keys per room: a sorted set of entries `"<member_id>:<socket>"` scored by the time each expires,
a hash member id -> number of live entries, and a sorted set of the member ids online (scored by
id). Lua scripts keep the three consistent and answer each operation in one round trip with data
of bounded size: the member's number of sockets, the number of members online, the ids online
while they are at most FULL_LIST_MAX (else the FULL_LIST_MAX lowest, the `subscribed` sample),
and the members whose last entry expired. Joining or leaving a room of N members costs
O(log N) in Redis and O(1) on the wire, not O(N) (docs/performance.md, H3). Each process
refreshes the entries of its own sockets every HEARTBEAT_SECONDS (one pipeline for all of
them), so a process that crashes leaves entries that expire after TTL_SECONDS: no ghosts. Every
operation drops expired entries first, decrementing their members' counts. With the in-memory
layer (one process) the same structures are kept in dicts, with the same answers.

Presence follows open sockets, not client frames: a delegate who only reads stays present for as
long as the tab is open (daphne's keepalive pings close a dead connection within ~50 s).

A member is online in a room while at least one of their sockets is subscribed to it; `join`
and `leave` say whether that changed, and the gateway then reports the change with `changed`.
When an operation finds expired entries of a member with no live one left (a crashed process's
ghost) it reports them the same way, so rooms learn of it too.

Broadcasts are coalesced per room, across every process (docs/decisions/0007 and 0013): the
members whose presence changed are noted in the store (a Redis set per room), and the process
that takes the room's turn (`SET NX PX COALESCE_SECONDS`) announces all of them, whoever noted
them, by one call of the listener set with `on_change`, with the room's *current* online count
and list (or sample). A change in a quiet room is announced at once; in a busy one when the
last announcement's turn lapses, so a room hears at most one announcement per COALESCE_SECONDS
however many processes serve it. Without coalescing, N members arriving in a room cost N^2/2
frames of up to N members each; coalescing per process still cost every socket one frame per
process per interval.

Keys are namespaced by the database name: room ids are per database, and two deployments (or a
test run next to a development server) may share one Redis.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import heapq
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.db import connection
from minga import breaker, loops, redis_retry

logger = logging.getLogger("forums.presence")

TTL_SECONDS = 60.0
HEARTBEAT_SECONDS = 20.0
REBEAT_AFTER_SECONDS = 1.2  # a failed beat after Redis came back, again: past a breaker's second
REBEATS = 4  # at most, before the heartbeat's own turn
# At most one presence announcement per room per this many seconds, from all processes.
COALESCE_SECONDS = 1.0
# Rooms with more members online than this get `presence` deltas (joined, left, count) instead
# of the whole list, and a `subscribed` list cut to this many (docs/realtime-protocol.md).
FULL_LIST_MAX = 50
# Connections to Redis per process. A burst of operations beyond it (a meeting ending closes
# hundreds of sockets at once) waits for a free one, up to REDIS_TIMEOUT_SECONDS: redis-py's
# default pool refused every operation beyond its 100 connections at once, and a refused leave
# left a ghost online for TTL_SECONDS.
REDIS_MAX_CONNECTIONS = 32
REDIS_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Online:
    """A room's members online: how many, and their ids in ascending order: all of them while
    `count` <= FULL_LIST_MAX, else the FULL_LIST_MAX lowest (a sample of bounded size)."""

    count: int
    ids: list[int]

    @property
    def whole(self) -> bool:
        """Whether `ids` is every member online."""
        return len(self.ids) >= self.count


@dataclass(frozen=True)
class Seen:
    """A store operation's answer: the room's members online after it; the member's number of
    live sockets in the room after an add or remove; the members whose last entry expired (found
    and dropped by this operation); and, for `look`, which of the ids asked about are online."""

    online: Online
    sockets: int = 0
    gone: list[int] = field(default_factory=list)
    present: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Turn:
    """A `note`'s answer. `ids` is set when the caller took the room's turn: every member noted
    as changed since the last announcement, anyone's, for the caller to announce now. Else
    `wait` is how many seconds another holder keeps the turn (0.0: nothing to announce)."""

    ids: list[int] | None = None
    wait: float = 0.0


@dataclass(frozen=True)
class Refreshed:
    """The heartbeat's answer: per room, the members whose last entry expired, and the rooms
    whose noted changes nobody has announced (their noter died waiting for the turn)."""

    gone: dict[int, list[int]]
    unannounced: set[int] = field(default_factory=set)


# listener(room_id, room_slug, online, joined_ids, left_ids): online is the room's current count
# and ids; joined (still online) and left (no longer online) are the changes since the last call.
Listener = Callable[[int, str, Online, list[int], list[int]], Awaitable[None]]
_listener: Listener | None = None


def on_change(listener: Listener | None) -> None:
    """Set the coroutine that announces a room's presence changes (the gateway publishes the
    `presence` frame); called at most once per room per COALESCE_SECONDS, in one process."""
    global _listener  # noqa: PLW0603 - one listener per process, set once at import of the gateway
    _listener = listener


def now() -> float:
    """The clock (wall time: entries are compared across processes). Tests replace it."""
    return time.time()


def _entry(member_id: int, socket: str) -> str:
    return f"{int(member_id)}:{socket}"


def _member(entry: str) -> int:
    return int(entry.split(":", 1)[0])


class Store(Protocol):
    async def add(self, room_id: int, entry: str, expires: float, at: float) -> Seen: ...

    async def remove(self, room_id: int, entry: str, at: float) -> Seen: ...

    async def look(self, room_id: int, at: float, among: Collection[int] = ()) -> Seen: ...

    async def refresh(
        self, entries: dict[int, list[str]], expires: float, at: float
    ) -> Refreshed: ...

    async def note(
        self, room_id: int, ids: Collection[int], holder: str, interval: float
    ) -> Turn: ...

    async def aclose(self) -> None: ...


@dataclass
class _Room:
    sockets: dict[str, float] = field(default_factory=dict)  # entry -> when it expires
    counts: dict[int, int] = field(default_factory=dict)  # member id -> live entries
    ids: list[int] = field(default_factory=list)  # the keys of `counts`, ascending
    # (expires, entry) pushed at each add and refresh; a popped pair whose entry has another
    # expiry since is stale and skipped.
    expiries: list[tuple[float, str]] = field(default_factory=list)


class MemoryStore:
    """The in-process store for the in-memory channel layer (a single process): the Redis
    store's structures and answers, in dicts."""

    def __init__(self) -> None:
        self.rooms: dict[int, _Room] = {}
        # room id -> members noted as changed and not announced yet; room id -> (the turn's
        # holder, when it lapses on the monotonic clock): Redis' `changed` set and `turn` key.
        self.changed: dict[int, set[int]] = {}
        self.turns: dict[int, tuple[str, float]] = {}

    @staticmethod
    def _gain(room: _Room, entry: str, expires: float) -> None:
        if entry not in room.sockets:
            member = _member(entry)
            room.counts[member] = room.counts.get(member, 0) + 1
            if room.counts[member] == 1:
                bisect.insort(room.ids, member)
        room.sockets[entry] = expires
        heapq.heappush(room.expiries, (expires, entry))

    @staticmethod
    def _drop(room: _Room, entry: str) -> int | None:
        """Remove an entry; the member's id if that was their last one."""
        if room.sockets.pop(entry, None) is None:
            return None
        member = _member(entry)
        left = room.counts.get(member, 0) - 1
        if left > 0:
            room.counts[member] = left
            return None
        room.counts.pop(member, None)
        at = bisect.bisect_left(room.ids, member)
        if at < len(room.ids) and room.ids[at] == member:
            del room.ids[at]
        return member

    def _prune(self, room: _Room, at: float) -> list[int]:
        gone = []
        while room.expiries and room.expiries[0][0] <= at:
            until, entry = heapq.heappop(room.expiries)
            if room.sockets.get(entry) == until:
                member = self._drop(room, entry)
                if member is not None:
                    gone.append(member)
        return sorted(gone)

    @staticmethod
    def _online(room: _Room) -> Online:
        return Online(len(room.counts), room.ids[:FULL_LIST_MAX])

    def _seen(self, room_id: int, room: _Room, entry: str, gone: list[int]) -> Seen:
        seen = Seen(self._online(room), room.counts.get(_member(entry), 0), gone)
        if not room.sockets:
            self.rooms.pop(room_id, None)
        return seen

    async def add(self, room_id: int, entry: str, expires: float, at: float) -> Seen:
        room = self.rooms.setdefault(room_id, _Room())
        self._gain(room, entry, expires)
        return self._seen(room_id, room, entry, self._prune(room, at))

    async def remove(self, room_id: int, entry: str, at: float) -> Seen:
        room = self.rooms.get(room_id, _Room())
        self._drop(room, entry)
        return self._seen(room_id, room, entry, self._prune(room, at))

    async def look(self, room_id: int, at: float, among: Collection[int] = ()) -> Seen:
        room = self.rooms.get(room_id, _Room())
        gone = self._prune(room, at)
        present = sorted({m for m in among if m in room.counts})
        if not room.sockets:
            self.rooms.pop(room_id, None)
        return Seen(self._online(room), 0, gone, present)

    async def refresh(self, entries: dict[int, list[str]], expires: float, at: float) -> Refreshed:
        gone = {}
        for room_id, mine in entries.items():
            room = self.rooms.setdefault(room_id, _Room())
            for e in mine:
                self._gain(room, e, expires)
            gone[room_id] = self._prune(room, at)
        return Refreshed(gone, {room_id for room_id in entries if self.changed.get(room_id)})

    async def note(self, room_id: int, ids: Collection[int], holder: str, interval: float) -> Turn:
        changed = self.changed.setdefault(room_id, set())
        changed.update(int(m) for m in ids)
        if not changed:
            self.changed.pop(room_id, None)
            return Turn()
        clock = time.monotonic()
        turn = self.turns.get(room_id)
        if turn is not None and turn[1] > clock:
            return Turn(wait=turn[1] - clock)
        self.turns[room_id] = (holder, clock + interval)
        del self.changed[room_id]
        return Turn(ids=sorted(changed))

    async def aclose(self) -> None:
        self.rooms.clear()
        self.changed.clear()
        self.turns.clear()


# The Redis store's scripts. KEYS: the room's entries (sorted set, score = expiry), counts (hash
# member id -> live entries) and ids (sorted set of the member ids online, score = id).
_LUA_COMMON = """
local function member(entry) return string.match(entry, '^(-?%d+):') end
local function lose(m)
  if redis.call('HINCRBY', KEYS[2], m, -1) <= 0 then
    redis.call('HDEL', KEYS[2], m)
    redis.call('ZREM', KEYS[3], m)
    return true
  end
  return false
end
local function gain(entry, expires)
  if redis.call('ZADD', KEYS[1], expires, entry) == 1 then
    local m = member(entry)
    if redis.call('HINCRBY', KEYS[2], m, 1) == 1 then redis.call('ZADD', KEYS[3], m, m) end
  end
end
local function prune(at)
  local gone = {}
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', at)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at)
    for _, e in ipairs(expired) do
      local m = member(e)
      if m and lose(m) then gone[#gone + 1] = tonumber(m) end
    end
  end
  return gone
end
local function keep(ttl) for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end end
local function sockets(m) return tonumber(redis.call('HGET', KEYS[2], m) or '0') end
local function view(limit)
  return redis.call('HLEN', KEYS[2]), redis.call('ZRANGE', KEYS[3], 0, tonumber(limit) - 1)
end
"""
# ARGV: at, expires, ttl, limit, entry
_LUA_ADD = (
    _LUA_COMMON
    + """
gain(ARGV[5], ARGV[2])
local gone = prune(ARGV[1])
keep(ARGV[3])
local n, ids = view(ARGV[4])
return {sockets(member(ARGV[5])), n, ids, gone}
"""
)
# ARGV: at, limit, entry
_LUA_REMOVE = (
    _LUA_COMMON
    + """
if redis.call('ZREM', KEYS[1], ARGV[3]) == 1 then lose(member(ARGV[3])) end
local gone = prune(ARGV[1])
local n, ids = view(ARGV[2])
return {sockets(member(ARGV[3])), n, ids, gone}
"""
)
# ARGV: at, limit, member ids asked about...
_LUA_LOOK = (
    _LUA_COMMON
    + """
local gone = prune(ARGV[1])
local present = {}
for i = 3, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then present[#present + 1] = tonumber(ARGV[i]) end
end
local n, ids = view(ARGV[2])
return {0, n, ids, gone, present}
"""
)
# ARGV: at, expires, ttl, entries... (plain ZADD, not XX: an entry another process pruned while
# this one stalled comes back, since its socket is still open). KEYS[4]: the room's noted
# changes; the answer says whether any wait to be announced.
_LUA_REFRESH = (
    _LUA_COMMON
    + """
for i = 4, #ARGV do gain(ARGV[i], ARGV[2]) end
local gone = prune(ARGV[1])
keep(ARGV[3])
return {gone, redis.call('SCARD', KEYS[4])}
"""
)
# KEYS: the room's noted changes (a set of member ids), its announcement turn (a string that
# lapses). ARGV: holder, interval in ms, ttl, member ids... Adds the ids; then, if any are noted
# and the turn is free, takes it for the interval and hands over (and clears) the noted ids:
# {1, ids}. Else {2, the turn's ms left}, or {0} when nothing is noted.
_LUA_NOTE = """
for i = 4, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
if #ARGV >= 4 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if redis.call('SCARD', KEYS[1]) == 0 then return {0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local ids = redis.call('SMEMBERS', KEYS[1])
  redis.call('DEL', KEYS[1])
  return {1, ids}
end
return {2, redis.call('PTTL', KEYS[2])}
"""


def _seen(reply: list[Any]) -> Seen:
    sockets, count, ids, gone, *present = reply
    return Seen(
        Online(int(count), sorted(int(i) for i in ids)),
        int(sockets),
        sorted({int(m) for m in gone}),
        sorted(int(m) for m in present[0]) if present else [],
    )


class RedisStore:
    """Three keys per room in Redis (see the module's docstring); each operation is one Lua
    script (EVALSHA), atomic, one round trip, with an answer of bounded size."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis import asyncio as aioredis

        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            # A connection a restarted Redis closed is made again once, not counted a failure.
            retry=redis_retry.for_asyncio(),
            decode_responses=True,
        )
        self.redis = aioredis.Redis.from_pool(pool)  # owned: closed with the client
        # Shared with the cache, the channel layer and the broker on the same Redis.
        self.breaker = breaker.for_server(url)
        self.unavailable = aioredis.ConnectionError
        self.failures = (aioredis.ConnectionError, aioredis.TimeoutError, OSError, TimeoutError)
        self.prefix = prefix
        self._add = self.redis.register_script(_LUA_ADD)
        self._remove = self.redis.register_script(_LUA_REMOVE)
        self._look = self.redis.register_script(_LUA_LOOK)
        self._refresh = self.redis.register_script(_LUA_REFRESH)
        self._note = self.redis.register_script(_LUA_NOTE)

    def keys(self, room_id: int) -> list[str]:
        """The room's entries, counts and ids (names unlike those of the single sorted set of
        earlier versions, so that the two never mix while processes of both run)."""
        base = f"{self.prefix}room:{int(room_id)}:"
        return [base + "entries", base + "counts", base + "ids"]

    def turn_keys(self, room_id: int) -> list[str]:
        """The room's noted changes and its announcement turn (ADR 0013)."""
        base = f"{self.prefix}room:{int(room_id)}:"
        return [base + "changed", base + "turn"]

    @contextlib.asynccontextmanager
    async def _guarded(self) -> AsyncIterator[None]:
        """One call to Redis, unless it failed within the last second (minga.breaker): then a
        ConnectionError at once, and the caller takes its fallback (the gateway: presence
        shows only the member meanwhile) instead of waiting for a timeout of its own. A
        connection error or a timeout trips the breaker for every client of that Redis here."""
        if self.breaker.open:
            raise self.unavailable("presence: Redis failed within the last second")
        try:
            yield
        except self.failures:
            self.breaker.trip()
            raise

    async def add(self, room_id: int, entry: str, expires: float, at: float) -> Seen:
        # The keys go too if every process holding entries in them died.
        args = [repr(at), repr(expires), int(TTL_SECONDS * 2), FULL_LIST_MAX, entry]
        async with self._guarded():
            return _seen(await self._add(keys=self.keys(room_id), args=args))

    async def remove(self, room_id: int, entry: str, at: float) -> Seen:
        args = [repr(at), FULL_LIST_MAX, entry]
        async with self._guarded():
            return _seen(await self._remove(keys=self.keys(room_id), args=args))

    async def look(self, room_id: int, at: float, among: Collection[int] = ()) -> Seen:
        args = [repr(at), FULL_LIST_MAX, *(int(m) for m in among)]
        async with self._guarded():
            return _seen(await self._look(keys=self.keys(room_id), args=args))

    async def refresh(self, entries: dict[int, list[str]], expires: float, at: float) -> Refreshed:
        rooms = list(entries)
        async with self._guarded(), self.redis.pipeline(transaction=False) as pipe:
            for room_id in rooms:
                args = [repr(at), repr(expires), int(TTL_SECONDS * 2), *entries[room_id]]
                keys = [*self.keys(room_id), self.turn_keys(room_id)[0]]
                await self._refresh(keys=keys, args=args, client=pipe)
            result = await pipe.execute()
        return Refreshed(
            {
                room_id: sorted({int(m) for m in gone})
                for room_id, (gone, _noted) in zip(rooms, result, strict=True)
            },
            {room_id for room_id, (_gone, noted) in zip(rooms, result, strict=True) if noted},
        )

    async def note(self, room_id: int, ids: Collection[int], holder: str, interval: float) -> Turn:
        args = [holder, max(1, round(interval * 1000)), int(TTL_SECONDS * 2), *map(int, ids)]
        async with self._guarded():
            reply = await self._note(keys=self.turn_keys(room_id), args=args)
        if reply[0] == 1:
            return Turn(ids=sorted(int(m) for m in reply[1]))
        if reply[0] == 2:
            # -1 (no expiry) cannot happen: the turn is only ever set with one. Be safe anyway.
            left = int(reply[1])
            return Turn(wait=left / 1000 if left > 0 else 0.001 if left == 0 else interval)
        return Turn()

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
class Presence:
    """The presence of this process's sockets, for one event loop."""

    store: Store
    # (room_id, entry) -> room slug: this process's live entries, refreshed by the heartbeat.
    local: dict[tuple[int, str], str] = field(default_factory=dict)
    heartbeat: asyncio.Task[None] | None = None
    # room_id -> members whose presence changed here, not yet handed to the store; room_id ->
    # its slug; room_id -> the task handing them over and announcing when this process has the
    # room's turn.
    pending: dict[int, set[int]] = field(default_factory=dict)
    slugs: dict[int, str] = field(default_factory=dict)
    announcers: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    # This process's name on the turns it takes (only read by people looking at Redis).
    holder: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # A beat out of turn, once Redis came back (`recover`).
    rebeat: asyncio.Task[None] | None = None

    async def join(
        self, room_id: int, slug: str, member_id: int, socket: str
    ) -> tuple[Online, bool]:
        """Add a socket to the room; returns (the members online, whether the member just came)."""
        entry = _entry(member_id, socket)
        again = (room_id, entry) in self.local
        self.local[(room_id, entry)] = slug
        self._ensure_heartbeat()
        at = now()
        seen = await self.store.add(room_id, entry, at + TTL_SECONDS, at)
        if seen.gone:
            self.changed(room_id, slug, left=seen.gone)
        return seen.online, not again and seen.sockets == 1

    async def leave(self, room_id: int, member_id: int, socket: str) -> tuple[Online, bool]:
        """Remove a socket; returns (the members online, whether the member just left)."""
        entry = _entry(member_id, socket)
        slug = self.local.pop((room_id, entry), None)
        seen = await self.store.remove(room_id, entry, now())
        if seen.gone and slug is not None:
            self.changed(room_id, slug, left=seen.gone)
        return seen.online, seen.sockets == 0

    async def online(self, room_id: int) -> Online:
        return (await self.store.look(room_id, now())).online

    async def beat(self) -> None:
        """Refresh this process's entries, drop expired ones everywhere this process looks, tell
        the listener about members who vanished (their process died), and announce changes
        that another process noted and never announced (it died waiting for the turn)."""
        if not self.local:
            return
        entries: dict[int, list[str]] = {}
        slugs: dict[int, str] = {}
        for (room_id, entry), slug in self.local.items():
            entries.setdefault(room_id, []).append(entry)
            slugs[room_id] = slug
        at = now()
        result = await self.store.refresh(entries, at + TTL_SECONDS, at)
        rooms = {r for r, gone in result.gone.items() if gone} | result.unannounced
        # Changes kept here after a failed announcement go now that the store answers again.
        rooms |= {r for r in self.pending if r not in self.announcers}
        for room_id in sorted(rooms):
            self.changed(
                room_id,
                slugs.get(room_id) or self.slugs[room_id],
                left=result.gone.get(room_id, ()),
            )

    def changed(
        self,
        room_id: int,
        slug: str,
        *,
        joined: Iterable[int] = (),
        left: Iterable[int] = (),
    ) -> None:
        """Note members who arrived in or left the room. Whichever process next has the room's
        turn announces them: at once when the room is quiet, else when the turn of the process
        that announced last lapses (COALESCE_SECONDS), merged with every process's changes of
        the interval (ADR 0013). Joined or left is read at that moment: a member online then is
        announced as joined, one who is not as left."""
        self.pending.setdefault(room_id, set()).update(joined, left)
        self.slugs[room_id] = slug
        if room_id not in self.announcers:
            task = asyncio.get_running_loop().create_task(self._announce(room_id))
            self.announcers[room_id] = task

    async def _announce(self, room_id: int) -> None:
        """Hand this process's noted changes to the store until it has none left; announce
        whenever it gets the room's turn; wait for a turn held elsewhere to lapse, then ask
        again (the holder may have died, or announced before these changes were noted)."""
        try:
            while True:
                ids = self.pending.pop(room_id, set())
                try:
                    turn = await self.store.note(room_id, ids, self.holder, COALESCE_SECONDS)
                    if turn.ids is not None:
                        ids = set(turn.ids)
                        await self._tell(room_id, turn.ids)
                except Exception:
                    # Redis away: the ids are kept, and go with the next change or heartbeat.
                    self.pending.setdefault(room_id, set()).update(ids)
                    logger.warning("presence announcement failed", exc_info=True)
                    return
                if turn.wait:
                    await asyncio.sleep(turn.wait)
                elif room_id not in self.pending:
                    return
        finally:
            self.announcers.pop(room_id, None)

    async def _tell(self, room_id: int, ids: list[int]) -> None:
        # Read now, at the turn: a member who came and went since being noted is not online
        # and is announced as left, and the count and list are the latest. Only the members
        # noted are looked up, not the whole room.
        seen = await self.store.look(room_id, now(), ids)
        current = set(seen.present)
        joined = [m for m in ids if m in current]
        left = sorted((set(ids) | set(seen.gone)) - current)
        if _listener is not None:
            await _listener(room_id, self.slugs[room_id], seen.online, joined, left)

    async def settled(self) -> None:
        """Wait until every pending announcement was made (tests; shutting down)."""
        while self.announcers:
            await asyncio.gather(*list(self.announcers.values()), return_exceptions=True)

    def beat_soon(self) -> None:
        """Beat now, out of turn, and again after a breaker's second while that fails, up to
        REBEATS times (Redis came back, maybe empty: `recover`)."""
        if self.rebeat is None or self.rebeat.done():
            self.rebeat = asyncio.get_running_loop().create_task(self._beat_until_it_takes())

    async def _beat_until_it_takes(self) -> None:
        for attempt in range(1, REBEATS + 1):
            try:
                await self.beat()
                return
            except Exception:
                # Redis failed again: the subscriptions' return closed the breaker the outage
                # had tripped (minga.channels_redis_bounded), and a pooled connection a restart
                # closed is made again by the pool's retry (minga.redis_retry), so the first
                # beat takes unless Redis went away anew (or is not the layer's first shard).
                logger.warning("presence beat after Redis came back failed", exc_info=True)
                if attempt < REBEATS:
                    await asyncio.sleep(REBEAT_AFTER_SECONDS)

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
        if self.rebeat is not None:
            self.rebeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.rebeat
            self.rebeat = None
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
        self.slugs.clear()
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


async def recover(lost_at: dict[str, Any]) -> list[dict[str, Any]]:
    """The hub's recoverer for presence (notifications.bus.recover_with): Redis came back,
    maybe empty of every entry, so this process writes its sockets' entries again now, not at
    its next heartbeat (up to HEARTBEAT_SECONDS later), and a subscribe meanwhile sees who is
    online. In a task of its own (`beat_soon`): the hub holds the live frames until its
    recoverers answer, and the first beat may meet the breaker. No frames of its own."""
    presence = _by_loop.get(asyncio.get_running_loop())
    if presence is not None and presence.local:
        presence.beat_soon()
    return []


async def _forget(loop: asyncio.AbstractEventLoop) -> None:
    presence = _by_loop.pop(loop, None)
    if presence is not None:
        await presence.aclose()


async def reset() -> None:
    """Close and forget this loop's Presence (tests switch channel layers between tests)."""
    await _forget(asyncio.get_running_loop())
