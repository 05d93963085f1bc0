"""The realtime bus: the one module that talks to the channel layer.

Every live frame, room traffic included, goes through here. Group names are built here and
only here, from ids, never from user input. There is one channel-layer message type,
`bus.event`, with the frame inside, so a new kind never crashes a socket for lack of a handler.

This is a leaf module: it imports only Django and Channels (ARCHITECTURE.md, dependency rule).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer  # noqa: TID251 - the bus is the one allowed place
from django.db import transaction
from minga import loops

logger = logging.getLogger("notifications.bus")

MESSAGE_TYPE = "bus.event"


def room_group(room_id: int) -> str:
    return f"room.{int(room_id)}"


def user_group(user_id: int) -> str:
    return f"user.{int(user_id)}"


def room_of(group: str) -> int | None:
    """The room id of a `room_group` name; None for any other group."""
    kind, _, number = group.partition(".")
    return int(number) if kind == "room" and number.isdigit() else None


def member_of(group: str) -> int | None:
    """The member id of a `user_group` name; None for any other group."""
    kind, _, number = group.partition(".")
    return int(number) if kind == "user" and number.isdigit() else None


class Marks(NamedTuple):
    """How far a group's sockets on this process got: for a room, the newest `message.created`
    seq and change number; for a member, the newest `notification` id (`seq`). `since`: when
    the process joined the group (epoch seconds), before which its sockets had nothing."""

    seq: int
    change: int
    since: float


def _envelope(group: str, frame: Mapping[str, Any]) -> dict[str, Any]:
    # Serialise now: the frame must be JSON-safe before it is queued (a datetime fails here,
    # in tests, and not later inside a socket). The text is sent as is to every recipient; the
    # group tells each process's hub which of its sockets those are. A frame's marks go beside
    # the text, so the hub knows how far its sockets got without decoding it (Hub.marks).
    text = json.dumps(frame, separators=(",", ":"))
    envelope = {"type": MESSAGE_TYPE, "group": group, "text": text}
    change = frame.get("change")
    if isinstance(change, int):
        envelope["change"] = change
    kind = frame.get("type")
    if kind == "message.created" and isinstance(frame.get("seq"), int):
        envelope["seq"] = frame["seq"]
    elif kind == "notification" and isinstance(frame.get("notification"), Mapping):
        number = frame["notification"].get("id")
        if isinstance(number, int):
            envelope["seq"] = number
    return envelope


async def apublish(group: str, frame: Mapping[str, Any]) -> None:
    """Send `frame` to every socket in `group` now. Not for use after a write: see below."""
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, _envelope(group, frame))


def publish_rollback_unsafe(group: str, frame: Mapping[str, Any]) -> None:
    """Send now, whatever happens to the current transaction: only where nothing was written."""
    envelope = _envelope(group, frame)
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _send_sync(layer, [(group, envelope)])
    except Exception:
        logger.warning("publish failed", extra={"group": group}, exc_info=True)


def publish_on_commit(group: str, frame: Mapping[str, Any]) -> None:
    """Send `frame` to `group` once the current transaction commits; never if it rolls back."""
    envelope = _envelope(group, frame)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            _send_sync(layer, [(group, envelope)])
        except Exception:
            logger.warning("publish failed", extra={"group": group}, exc_info=True)

    transaction.on_commit(send, robust=True)


# --- Publishing from synchronous code --------------------------------------------------------------


def _send_sync(layer: Any, envelopes: list[tuple[str, dict[str, Any]]]) -> None:
    """`group_send` each `(group, envelope)` in order, from synchronous code.

    A layer that can publish on the calling thread does (minga.channels_redis_bounded's
    `publish_sync`, the production layer): handing the publish to an event loop and waiting for
    it cost 310-430 us of CPU against 90-110 (docs/performance.md, "A publish from synchronous
    code, on the calling thread"). It sends them all or raises. Any other layer gets one
    `run_sync` hop for them all, where a failing send is logged and the others still go.
    Never call it on an event loop's thread: it blocks for Redis's answer (on-commit hooks run
    in the thread of the synchronous code that committed)."""
    publish = getattr(layer, "publish_sync", None)
    if publish is not None:
        publish(envelopes)
        return

    async def send_all() -> None:
        for group, envelope in envelopes:
            try:
                await layer.group_send(group, envelope)
            except Exception:
                logger.warning("publish failed", extra={"group": group}, exc_info=True)

    run_sync(layer, send_all)


# How long synchronous code waits for a publish on the publisher loop (the bounded layer gives up
# after 2 s itself; this only guards against a loop that stopped answering).
PUBLISH_WAIT_SECONDS = 5.0
_publisher: tuple[int, asyncio.AbstractEventLoop, Any] | None = None
_publisher_lock = threading.Lock()


def run_sync(layer: Any, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run `await fn(*args)` to completion from synchronous code.

    In a request or a gateway hop asgiref knows the server's event loop, and the call runs there,
    as `async_to_sync` does. Elsewhere (a Celery worker, the benchmark's poster, a script)
    `async_to_sync` would make a new event loop per call, and channels_redis a new layer and a
    new Redis connection with it: for channels_redis' layers the call runs on this process's
    publisher loop instead, one thread and one connection for every publish (docs/performance.md,
    "Posting"). Channels' in-memory layer keeps `async_to_sync`: its queues belong to one loop.
    """
    if _in_server_context() or not _is_redis_layer(layer):
        async_to_sync(fn)(*args)
        return
    future = asyncio.run_coroutine_threadsafe(fn(*args), _publisher_loop(layer))
    future.result(timeout=PUBLISH_WAIT_SECONDS)


def publish_many_soon(items: list[tuple[str, Mapping[str, Any]]]) -> Future[None] | None:
    """Start publishing `(group, frame)` pairs of committed rows, for synchronous code that goes
    on with other work meanwhile (the fan-out's next batch): on the publisher loop, returning its
    future, where `run_sync` would use it; else published now (returns None)."""
    layer = get_channel_layer()
    if layer is None or not items:
        return None
    if _in_server_context() or not _is_redis_layer(layer):
        run_sync(layer, apublish_many, items)
        return None
    return asyncio.run_coroutine_threadsafe(apublish_many(items), _publisher_loop(layer))


def _in_server_context() -> bool:
    from asgiref.sync import SyncToAsync

    return getattr(SyncToAsync.threadlocal, "main_event_loop", None) is not None


def _is_redis_layer(layer: Any) -> bool:
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # pragma: no cover - channels_redis is a dependency
        return False
    return isinstance(layer, RedisPubSubChannelLayer | RedisChannelLayer)


def _publisher_loop(layer: Any) -> asyncio.AbstractEventLoop:
    """This process's publisher loop, started on first use (and again in a forked child).

    When the channel layer is replaced (settings changed: tests), the old layer's connections on
    this loop are closed."""
    global _publisher  # noqa: PLW0603 - one per process
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="bus-publisher", daemon=True)
            thread.start()
            _publisher = (os.getpid(), loop, layer)
        pid, loop, last = _publisher
        if last is not layer:
            asyncio.run_coroutine_threadsafe(last.flush(), loop)
            _publisher = (pid, loop, layer)
        return loop


# --- Local fan-out: one subscription per group per process ---------------------------------------


def is_control(text: str) -> bool:
    """Whether a bus frame may be one a socket acts upon (`session.revoked`, `access.changed`)
    instead of relaying it."""
    return '"session.revoked"' in text or '"access.changed"' in text


class Socket(Protocol):
    """What the hub delivers to: a websocket of this process (forums.consumers.GatewayConsumer)."""

    def relay_at_once(self, text: str, control: bool) -> bool:
        """Take the frame now, without awaiting anything, where the socket can: True when it
        is done with it; False, and the hub awaits `relay`."""
        ...

    async def relay(self, text: str, control: bool | None = None) -> None: ...


class Sockets:
    """A group's local sockets, in join order, held weakly: a socket whose consumer died
    without leaving drops out. What `weakref.WeakKeyDictionary` did, without its per-instance
    removal callback, pending list and iteration set: ~300 bytes for a group of one socket (every
    member's own `user.<id>` group) instead of ~950 (docs/performance.md, "H3: where a
    connection's bytes go"). A dead socket's entry goes at the next look at the group."""

    __slots__ = ("refs",)

    def __init__(self, socket: Socket) -> None:
        self.refs: dict[weakref.ref[Socket], None] = {weakref.ref(socket): None}

    def add(self, socket: Socket) -> None:
        self.refs[weakref.ref(socket)] = None

    def discard(self, socket: Socket) -> None:
        self.refs.pop(weakref.ref(socket), None)

    def __contains__(self, socket: object) -> bool:
        try:
            return weakref.ref(socket) in self.refs
        except TypeError:  # not weakly referenceable: never in a group
            return False

    def alive(self) -> tuple[Socket, ...]:
        """The live sockets, in join order; the dead ones' entries are dropped."""
        sockets = []
        for ref in list(self.refs):
            socket = ref()
            if socket is None:
                del self.refs[ref]
            else:
                sockets.append(socket)
        return tuple(sockets)

    def __iter__(self) -> Iterator[Socket]:
        return iter(self.alive())

    def __bool__(self) -> bool:
        return any(ref() is not None for ref in self.refs)  # stops at the first live one


class Hub:
    """This process's one subscription to each group that has a local socket in it.

    A frame published to a group reaches each process once, on the hub's one channel, and the hub
    hands the same text to every local socket in the group, one call each. Per-socket channels
    cost every recipient a queue, a task wake-up and a decode of its own (Channels' dispatch
    loop), and every connect a Redis SUBSCRIBE: bench/ measured that path at ~340 us of server CPU
    per delivered frame (docs/performance.md, "Local fan-out").

    `join` returns once the process is subscribed to the group, so a frame published after it
    returns reaches the socket (the gateway reads a room's last seq only then).

    What a lost subscription missed is replayed. Each group keeps its marks (`Marks`: for a
    room the newest `message.created` seq and change number the hub delivered or a subscribe
    read, for a member the newest notification's id, and when the hub joined the group). When
    the layer reports its subscriptions lost (Redis went away), the hub keeps the marks it had
    then; when they are back, it asks the recoverers (`recover_with`: forums.replay's for rooms,
    the inbox's for members) for the frames committed past those marks and delivers them to
    the groups' sockets, as if live. Clients drop what they already have by `seq` and `change`.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        # group -> its local sockets, in join order; weak, so a socket whose consumer died without
        # leaving (a crash before `disconnect`) does not stay in the group.
        self.groups: dict[str, Sockets] = {}
        self.changing: dict[str, asyncio.Future[None]] = {}  # group -> its (un)subscribe, while on
        self.opening = asyncio.Lock()
        self.tasks: list[asyncio.Task[None]] = []
        self.marks: dict[str, tuple[int, int]] = {}  # group -> (seq, change) its sockets have
        self.since: dict[str, float] = {}  # group -> when this hub joined it (epoch seconds)
        self.lost_at: dict[str, Marks] | None = None  # the marks when Redis went
        self.recovering: set[asyncio.Task[None]] = set()
        # While a recovery replays, the live frames arriving meanwhile wait here, so each
        # socket gets the replayed frames first and the newer ones after, in order.
        self.held: list[Mapping[str, Any]] | None = None

    async def join(self, group: str, socket: Socket) -> None:
        while True:
            pending = self.changing.get(group)
            if pending is not None:
                await asyncio.shield(pending)
                continue  # subscribed, or failed, or unsubscribed meanwhile: look again
            sockets = self.groups.get(group)
            if sockets is not None:
                sockets.add(socket)
                return
            done = self.changing[group] = asyncio.get_running_loop().create_future()
            try:
                await self.layer.group_add(group, await self._channel())
                self.groups[group] = Sockets(socket)
                self.since[group] = time.time()
            finally:
                del self.changing[group]
                done.set_result(None)
            return

    async def leave(self, group: str, socket: Socket) -> None:
        sockets = self.groups.get(group)
        if sockets is None or socket not in sockets:
            return
        sockets.discard(socket)
        if sockets or self.channel is None:
            return
        del self.groups[group]
        self.marks.pop(group, None)
        self.since.pop(group, None)
        # A join meanwhile waits for this, then subscribes again (after it, on the same connection).
        done = self.changing[group] = asyncio.get_running_loop().create_future()
        try:
            await self.layer.group_discard(group, self.channel)
        finally:
            del self.changing[group]
            done.set_result(None)

    def mark(self, group: str, seq: int | None = None, change: int | None = None) -> None:
        """Raise the group's marks to `seq` and `change` (either may be None)."""
        old_seq, old_change = self.marks.get(group, (0, 0))
        self.marks[group] = (max(old_seq, seq or 0), max(old_change, change or 0))

    async def deliver(self, message: Mapping[str, Any]) -> None:
        """Hand a bus message to every local socket of its group; one failing socket is logged."""
        group = message.get("group", "")
        sockets = self.groups.get(group)
        text = message.get("text")
        if not sockets or not isinstance(text, str):
            return
        if "seq" in message or "change" in message:
            self.mark(group, message.get("seq"), message.get("change"))
        # Whether the gateway must act on the frame, asked once per frame, not once per socket.
        control = is_control(text)
        for socket in sockets.alive():
            try:
                # Most sockets take the frame at once; only the others cost a coroutine.
                if not socket.relay_at_once(text, control):
                    await socket.relay(text, control)
            except Exception:
                logger.warning("relay to a socket failed", exc_info=True)

    async def _channel(self) -> str:
        async with self.opening:
            if self.channel is None:
                self.channel = await self.layer.new_channel(prefix="hub.")
                loop = asyncio.get_running_loop()
                self.tasks = [loop.create_task(self._receive()), loop.create_task(self._refresh())]
                watch = getattr(self.layer, "watch_subscriptions", None)
                if watch is not None:  # minga.channels_redis_bounded
                    watch(self._lost, self._back)
            return self.channel

    def _lost(self) -> None:
        if self.lost_at is None:
            now = time.time()
            self.lost_at = {
                group: Marks(*self.marks.get(group, (0, 0)), self.since.get(group, now))
                for group in self.groups
            }

    def _back(self) -> None:
        lost_at, self.lost_at = self.lost_at, None
        if lost_at and _recoverers:
            if self.held is None:
                self.held = []
            task = asyncio.get_running_loop().create_task(self._recover(list(_recoverers), lost_at))
            self.recovering.add(task)
            task.add_done_callback(self.recovering.discard)

    async def _recover(self, recoverers: list[Recoverer], lost_at: dict[str, Marks]) -> None:
        """Deliver what the groups' sockets missed while the subscriptions were lost, then the
        live frames that arrived meanwhile (RECOVERY_SECONDS at most, then those anyway)."""
        delivered = 0
        try:
            async with asyncio.timeout(RECOVERY_SECONDS):
                for recoverer in recoverers:
                    try:
                        missed = await recoverer(lost_at)
                    except Exception:
                        logger.warning("recovery after Redis came back failed", exc_info=True)
                        continue
                    for message in missed:
                        await self.deliver(message)
                    delivered += len(missed)
            logger.info("recovered after Redis came back", extra={"frames": delivered})
        except TimeoutError:
            logger.warning(
                "recovery after Redis came back took too long", extra={"frames": delivered}
            )
        finally:
            # The last recovery running lets the held frames go (a second loss may have
            # started another meanwhile).
            if self.recovering <= {asyncio.current_task()}:
                held, self.held = self.held or [], None
                for message in held:
                    await self.deliver(message)

    async def _receive(self) -> None:
        assert self.channel is not None  # noqa: S101 - set before this task starts
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("hub receive failed", exc_info=True)
                await asyncio.sleep(HUB_RETRY_SECONDS)
                continue
            if self.held is not None:
                self.held.append(message)
                continue
            await self.deliver(message)

    async def _refresh(self) -> None:
        """Renew the memberships: layers may expire them (Channels' in-memory layer: after a day)."""
        while True:
            await asyncio.sleep(HUB_REFRESH_SECONDS)
            for group in list(self.groups):
                try:
                    if self.channel is not None and group in self.groups:
                        await self.layer.group_add(group, self.channel)
                except Exception:
                    logger.warning("hub refresh failed", extra={"group": group}, exc_info=True)

    def stop(self) -> None:
        for task in [*self.tasks, *self.recovering]:
            task.cancel()
        self.groups.clear()
        self.marks.clear()
        self.since.clear()
        self.held = None
        unwatch = getattr(self.layer, "unwatch_subscriptions", None)
        if unwatch is not None:
            unwatch(self._lost)

    async def aclose(self) -> None:
        self.stop()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []


HUB_RETRY_SECONDS = 0.5
RECOVERY_SECONDS = 10.0  # a recovery's bound; the live frames it holds go out after it anyway
HUB_REFRESH_SECONDS = 3600.0

# The frames committed past the marks each group had when the subscriptions were lost, as bus
# messages ({"group", "text"} and the frame's marks), in the order to deliver them; each
# recoverer answers for its own kind of group and leaves the others.
Recoverer = Callable[[dict[str, Marks]], Awaitable[list[dict[str, Any]]]]
_recoverers: list[Recoverer] = []


def recover_with(recoverer: Recoverer) -> None:
    """Add what the hubs ask, once their subscriptions are back after Redis went away, for the
    frames their groups missed (rooms: forums.replay; members: notifications.recovery)."""
    if recoverer not in _recoverers:
        _recoverers.append(recoverer)


def mark(group: str, seq: int, change: int) -> None:
    """The group's sockets have every frame up to `seq` and `change` (a subscribe read them
    after joining): the floor of what a recovery replays."""
    local = _hubs.get(asyncio.get_running_loop())
    if local is not None:
        local.mark(group, seq, change)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub | None:
    """This event loop's hub for the current channel layer (None without one), made on first use."""
    layer = get_channel_layer()
    if layer is None:
        return None
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None or current.layer is not layer:
        # A new layer (tests switch layers between tests): the old hub's subscriptions are gone.
        if current is None:
            loops.close_with(loop, lambda: _forget(loop))
        else:
            current.stop()
        current = _hubs[loop] = Hub(layer)
    return current


async def _forget(loop: asyncio.AbstractEventLoop) -> None:
    current = _hubs.pop(loop, None)
    if current is not None:
        await current.aclose()


async def join(group: str, socket: Socket) -> None:
    """Deliver `group`'s frames to `socket` from now on (once this returns)."""
    local = hub()
    if local is not None:
        await local.join(group, socket)


async def leave(group: str, socket: Socket) -> None:
    local = hub()
    if local is not None:
        await local.leave(group, socket)


async def ping() -> None:
    """Raise unless the channel layer accepts a message (used by /healthz)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    await layer.group_send(f"healthz.{uuid.uuid4().hex}", {"type": MESSAGE_TYPE, "text": "{}"})


def publish_many_on_commit(items: list[tuple[str, Mapping[str, Any]]]) -> None:
    """Send each `(group, frame)` once the transaction commits, in one callback.

    For fan-out: one on-commit callback for a whole batch instead of one per recipient, and
    one round trip (`_send_sync`: pipelined on the production layer; one event-loop hop on
    another, where a failing send is logged and does not stop the others).
    """
    envelopes = [(group, _envelope(group, frame)) for group, frame in items]
    if not envelopes:
        return

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            _send_sync(layer, envelopes)
        except Exception:
            logger.warning("batch publish failed", exc_info=True)

    transaction.on_commit(send, robust=True)


async def apublish_many(items: list[tuple[str, Mapping[str, Any]]]) -> None:
    """Send each `(group, frame)` now: on channels_redis' pub/sub layer in one pipelined round
    trip per Redis shard (one PUBLISH per group, as `group_send` does), elsewhere one
    `group_send` each. Only for frames of committed rows (notifications.fanout's sender, which
    is handed them on commit). A failure is logged, never raised.
    """
    layer = get_channel_layer()
    if layer is None or not items:
        return
    breaker = getattr(layer, "breaker", None)  # minga.channels_redis_bounded: Redis failed lately
    if breaker is not None and breaker.open:
        logger.warning("publish skipped: Redis did not answer a moment ago")
        return
    envelopes = [(group, _envelope(group, frame)) for group, frame in items]
    try:
        if await _pipelined(layer, envelopes):
            return
    except Exception:
        if breaker is not None:
            breaker.trip()
        logger.warning("pipelined publish failed", exc_info=True)
        return
    for group, envelope in envelopes:
        try:
            await layer.group_send(group, envelope)
        except Exception:
            logger.warning("publish failed", extra={"group": group}, exc_info=True)


async def _pipelined(layer: Any, envelopes: list[tuple[str, dict[str, Any]]]) -> bool:
    """PUBLISH every envelope through channels_redis' own group names, serializer and
    connections, pipelined; False when the layer is not its pub/sub layer (or its internals,
    pinned at 4.3, are not there), so the caller sends one by one."""
    try:
        from channels_redis.pubsub import RedisPubSubChannelLayer
    except ImportError:  # pragma: no cover - channels_redis is a dependency
        return False
    if not isinstance(layer, RedisPubSubChannelLayer):
        return False
    loop_layer = layer._get_layer()
    if not all(hasattr(loop_layer, n) for n in ("_get_group_channel_name", "_get_shard")):
        return False
    by_shard: dict[Any, list[tuple[str, bytes]]] = {}
    for group, envelope in envelopes:
        name = loop_layer._get_group_channel_name(group)
        by_shard.setdefault(loop_layer._get_shard(name), []).append(
            (name, layer.serialize(envelope))
        )
    for shard, messages in by_shard.items():
        shard._ensure_redis()
        async with shard._redis.pipeline(transaction=False) as pipe:
            for name, data in messages:
                pipe.publish(name, data)
            await pipe.execute()
    return True
