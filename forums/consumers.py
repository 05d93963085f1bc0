"""The realtime gateway at /ws/: one socket per tab, JSON frames (docs/realtime-protocol.md).

The consumer is thin: it validates each frame against its schema (forums.frames), checks access
and calls one selector or service through `minga.realtime.db_hop` (never the ORM, nor a lazy
relation, in `async def`), and relays bus frames. Every action reloads the member from the
database, so a role changed or an account deactivated a second ago already counts.

Room traffic arrives as pre-serialised JSON text and is sent as is: one encode per message, not
per recipient. The socket has no channel of its own: the process's hub (notifications.bus.Hub)
holds one subscription per group and calls `relay` on each local socket of the group. The
gateway looks inside a bus frame only to act on the control kinds addressed to it (`session.revoked`, `access.changed`) and, for a few seconds after a
subscribe, to drop live `message.created` frames the replay already carried (and, after a
`subscribe` with `changes_after`, live change frames the change replay already carried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone, translation
from minga import realtime
from minga.realtime import db_hop

from community import policy
from community.models import User
from notifications import bus

from . import moderation, presence, replay, selectors, services, transport
from .frames import (
    CLOSE_REVOKED,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHENTICATED,
    FRAME_BURST,
    FRAME_RATE,
    MAX_FRAME_BYTES,
    MAX_ROOMS_PER_SOCKET,
    TYPING_INTERVAL_SECONDS,
    ClientFrame,
    FrameError,
    dumps,
    parse,
)
from .models import Message, Room, Thread

logger = logging.getLogger("forums.gateway")

# How long after a subscribe live `message.created` frames are checked against the replay. A
# frame committed before the replay read the room reaches the group within milliseconds; this
# bound only keeps the check (a decode per frame, `_decoded`) from running for the socket's
# lifetime.
DEDUPE_WINDOW_SECONDS = 10.0

_last_decoded: tuple[str | None, dict[str, Any]] = (None, {})


def _decoded(text: str) -> dict[str, Any]:
    """A bus frame decoded, once per frame for the process: the hub hands the same text object
    to every socket of the group, and a join wave (every client of a room resubscribing after a
    restart) puts each of them in its dedupe window at once, where each used to decode every
    frame for itself. A one-entry cache, as `transport.frame_bytes`: one event loop per
    process. The dict is shared: read it, never change it. Not an object: an empty dict."""
    global _last_decoded  # noqa: PLW0603 - a one-entry cache, one event loop per process
    last_text, last_frame = _last_decoded
    if text is last_text:
        return last_frame
    frame = json.loads(text)
    if not isinstance(frame, dict):
        frame = {}
    _last_decoded = (text, frame)
    return frame


# Acks this socket gave, by client_id: a repeat is answered with the same ack from here, without
# a database hop (the contract: the same client_id gets the same ack; the service gives it too,
# also while its posting cooldown refuses new posts: forums.services, FLOOD_COOLDOWN_MAX_SECONDS).
ACKS_REMEMBERED = 64

# --- Database side (synchronous; called through database_sync_to_async) -------------------------


def _in_language[T](language: str | None, fn: Callable[..., T], *args: Any) -> T:
    with translation.override(language):
        return fn(*args)


def _open_room(member_id: int, slug: str) -> int:
    """The room's id if the member may read it. An unknown room and a forbidden one answer
    alike, so the socket does not tell which private rooms exist."""
    try:
        room = selectors.room_for_member_id(slug=slug, member_id=member_id)
    except (Http404, PermissionDenied):
        raise FrameError("forbidden") from None
    return int(room.pk)


def _member_and_thread(member_id: int, thread_id: int, room_id: int) -> tuple[User, Thread]:
    """The member as the database has them now, with their organization, the verified-email
    check and their roles, and the thread, with its room, in one statement
    (selectors.member_and_thread); FrameError "forbidden" when they are no participant now,
    or the thread is missing, unreadable for them or in another room (alike)."""
    member, thread = selectors.member_and_thread(member_id=member_id, thread_id=thread_id)
    if member is None or not policy.is_participant(member):
        raise FrameError("forbidden")
    if thread is None or thread.room_id != room_id:
        raise FrameError("forbidden")
    return member, thread


def _presence_frame(
    slug: str, online: presence.Online, joined: list[int], left: list[int]
) -> dict[str, Any] | None:
    """The room's `presence` frame: the whole list while the room is small (the contract's
    form), else the changes and the count (docs/realtime-protocol.md); None when nothing
    changed that a big room's frame would carry."""
    if online.count <= presence.FULL_LIST_MAX:
        return {"type": "presence", "room": slug, "online": selectors.member_summaries(online.ids)}
    if not joined and not left:
        return None
    return {
        "type": "presence",
        "room": slug,
        "joined": selectors.member_summaries(joined),
        "left": left,
        "count": online.count,
    }


class _RoomMovedError(Exception):
    """The slug no longer names the room id this process remembered for it."""


# slug -> room id, remembered by this process so that a subscribe joins the room's group
# before its one database hop (_room_state checks the pair, and a stale one is looked up again).
_room_ids: dict[str, int] = {}


# A big room's `subscribed` sample is the same for every subscriber (the lowest ids online) as
# long as none of those members comes or goes: its summaries are kept for SAMPLE_SECONDS, so a
# subscribe into a room of thousands makes two queries, not three (docs/performance.md, H3).
# The hops that read and fill it run on GATEWAY_DB_THREADS threads at once: the lock keeps two
# of them from dropping the same lapsed sample (a KeyError failed a subscribe, 1 in 3,000 under
# bench.connect_probe) or changing the dict while another lists it.
SAMPLE_SECONDS = 2.0
_samples: dict[tuple[int, ...], tuple[float, list[dict[str, Any]]]] = {}
_samples_lock = threading.Lock()


def _sample_summaries(member_ids: list[int]) -> list[dict[str, Any]]:
    key = tuple(member_ids)
    at = time.monotonic()
    kept = _samples.get(key)
    if kept is not None and kept[0] > at:
        return kept[1]
    members = selectors.member_summaries(key)  # the query outside the lock
    with _samples_lock:
        if len(_samples) >= 16:  # a few big rooms per process; drop the lapsed ones
            for old in [k for k, (until, _m) in _samples.items() if until <= at]:
                del _samples[old]
        _samples[key] = (at + SAMPLE_SECONDS, members)
    return members


def _room_state(
    member_id: int, slug: str, room_id: int, online: list[int], big: bool = False
) -> tuple[int, int, list[dict[str, Any]]]:
    """A subscribe's one database hop, made once the socket joined the room's group: access
    (the member now, the room by slug), (last_seq, last_change), the marks the replays run up
    to, read from the room's row after the join so nothing committed in between is missed, and
    the `subscribed` list (at most presence.FULL_LIST_MAX members; in a `big` room a sample
    whose summaries may be a moment old). Two queries, one for a kept sample
    (tests/forums/test_gateway_hops.py)."""
    try:
        room = selectors.room_for_member_id(slug=slug, member_id=member_id)
    except (Http404, PermissionDenied):
        raise FrameError("forbidden") from None
    if room.pk != room_id:
        raise _RoomMovedError
    cut = online[: presence.FULL_LIST_MAX]
    members = _sample_summaries(cut) if big else selectors.member_summaries(cut)
    return int(room.last_seq), int(room.last_change), members


def _post(member_id: int, room_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """Post a `message.send` frame's message; the `ack` frame (the same for a repeat)."""
    member, thread = _member_and_thread(member_id, data["thread"], room_id)
    client_id = data["client_id"]
    try:
        message, _created = services.message_post(
            thread=thread,
            author=member,
            body=data["body"],
            client_id=uuid.UUID(client_id),
            reply_to_id=data["reply_to"],
            attachment_ids=data.get("attachments") or (),
        )
    except services.RateLimitedError as exc:
        error = FrameError(services.error_code(exc), services.error_detail(exc))
        seconds = (exc.free_at - timezone.now()).total_seconds()
        error.retry_in = min(max(seconds, 0.0), services.FLOOD_COOLDOWN_MAX_SECONDS)
        raise error from None
    except (PermissionDenied, ValidationError, Http404) as exc:
        raise FrameError(services.error_code(exc), services.error_detail(exc)) from None
    # A repeat gets the same ack: the stored message's id and seq.
    return {"type": "ack", "client_id": client_id, "message_id": message.pk, "seq": message.seq}


def _stored_ack(member_id: int, client_id: str) -> dict[str, Any] | None:
    """The ack of the member's message with this client_id when one is stored, else None."""
    found = Message.objects.filter(author_id=member_id, client_id=uuid.UUID(client_id))
    for message_id, seq in found.values_list("pk", "seq")[:1]:
        return {"type": "ack", "client_id": client_id, "message_id": message_id, "seq": seq}
    return None


def _typing(member_id: int, room_id: int, thread_id: int) -> dict[str, Any] | None:
    """The member's summary when a `typing` broadcast is due, None while throttled."""
    from django.core.cache import cache

    member, thread = _member_and_thread(member_id, thread_id, room_id)
    # Typing is for those who may post here now (observers, locked threads, muted: no).
    if not policy.can_post_in_room(member, thread.room) or (
        thread.locked and not policy.can_moderate_room(member, thread.room)
    ):
        raise FrameError("forbidden")
    try:
        moderation.check_not_muted(member=member, room=thread.room)
    except PermissionDenied as exc:
        raise FrameError("forbidden", services.error_detail(exc)) from None
    # cache.add is atomic: one broadcast per member per thread per interval, across every tab
    # and process (Redis cache in production).
    if not cache.add(f"forums:typing:{member.pk}:{thread.pk}", 1, TYPING_INTERVAL_SECONDS):
        return None
    return selectors.member_payload(member)


def _read(member_id: int, room_id: int, thread_id: int, message_id: int) -> None:
    member, thread = _member_and_thread(member_id, thread_id, room_id)
    try:
        services.read_mark(member=member, thread=thread, message_id=message_id)
    except (PermissionDenied, ValidationError, Http404) as exc:
        raise FrameError(services.error_code(exc), services.error_detail(exc)) from None


def _readable(member_id: int, room_ids: list[int]) -> set[int] | None:
    """Which of the rooms the member may still read; None when they are no participant now."""
    member = User.objects.filter(pk=member_id).first()
    if member is None or not policy.is_participant(member):
        return None
    return {
        room.pk
        for room in Room.objects.filter(pk__in=room_ids)
        if policy.can_read_room(member, room)
    }


# --- Presence broadcasts ----------------------------------------------------------------------


async def announce_presence(
    room_id: int, slug: str, online: presence.Online, joined: list[int], left: list[int]
) -> None:
    """Publish the room's `presence` frame (idempotent, order-free); forums.presence calls this
    at most once per room per COALESCE_SECONDS, by one of the processes (ADR 0013)."""
    frame = await db_hop(_presence_frame)(slug, online, joined, left)
    if frame is not None:
        await bus.apublish(bus.room_group(room_id), frame)


presence.on_change(announce_presence)
transport.install()  # under daphne: slow sockets closed with 4408, all with 1012 on shutdown


# --- The consumer -----------------------------------------------------------------------------


class Turn:
    """A socket's turn: `async with` it to handle one client frame or relay bus frames, one
    holder at a time, first come first served, as with asyncio.Lock. asyncio.Lock keeps the deque
    of its waiters (760 bytes) for the socket's lifetime once two ever met; this keeps a list
    only while someone waits (docs/performance.md, "H3: where a connection's bytes go")."""

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        self.held = False
        self.waiters: list[asyncio.Future[None]] | None = None  # oldest first

    def locked(self) -> bool:
        return self.held

    async def __aenter__(self) -> None:
        if not self.held:
            self.held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(waiter)
        try:
            await waiter  # the holder hands the turn over: `held` stays True
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed the turn, then cancelled: it passes to the next
            elif self.waiters is not None and waiter in self.waiters:
                self.waiters.remove(waiter)
            raise
        finally:
            if not self.waiters:
                self.waiters = None

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        # Handed to the next waiter, `held` stays True; with nobody waiting, the turn is free.
        if not transport.wake_first(self.waiters):
            self.held = False


class GatewayConsumer(AsyncWebsocketConsumer):
    groups: list[str] = []
    # No channel of its own: this process's hub (notifications.bus.Hub) is subscribed once to
    # each group with a socket here and calls `relay` on each of them. An alias that names no
    # layer makes Channels skip the per-socket channel, and with it a Redis SUBSCRIBE per connect
    # and a queue, a receive task and a decode per delivered frame (docs/performance.md).
    channel_layer_alias = "minga.gateway.no-channel"
    # Rooms an access re-check took away: frames of theirs still in the backlog (below) are
    # dropped, not relayed; a later accepted subscribe clears the slug. Immutable and replaced,
    # never mutated, so the class default is never shared state.
    forbidden_rooms: frozenset[str] = frozenset()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__ for a consumer without a channel: each ASGI message
        is awaited and dispatched in turn, as Channels' `await_many_dispatch` does with one
        source, without its receive task and `asyncio.wait` per message (about 2 KiB held by
        every idle socket: docs/performance.md, "H3: where a connection's bytes go"). The alias
        above names no layer, so Channels would not make a channel either."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' AsyncConsumer.dispatch without its `aclose_old_connections()`: Channels
        (4.2 and later) makes that thread hop before every handler, so every frame a socket
        sent (its connect, each ping, subscribe or post, its close) waited for a turn on the
        process's one thread-sensitive executor thread, shared by every socket, to close
        connections that thread never opens. The gateway touches the database only through
        `minga.realtime.db_hop`, which closes old connections inside each hop, before and
        after it (docs/performance.md, "H3 connects: a thread hop per frame")."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' own, without its `aclose_old_connections()` (see `dispatch`) and its group
        discards (the socket has no channel: `disconnect` leaves the hub's groups)."""
        await self.disconnect(message["code"])
        raise StopConsumer

    HANDLERS = {
        "ping": "on_ping",
        "subscribe": "on_subscribe",
        "unsubscribe": "on_unsubscribe",
        "message.send": "on_message_send",
        "typing": "on_typing",
        "read": "on_read",
    }

    async def connect(self) -> None:
        self.member_id: int | None = None
        self.language: str | None = None
        self.closing = False
        self.opened = time.monotonic()
        self.rooms: dict[str, int] = {}  # slug -> room id
        self.replayed: dict[str, tuple[int, float]] = {}  # slug -> (last replayed seq, until)
        self.changes_replayed: dict[str, tuple[int, float]] = {}  # slug -> (last_change, until)
        self.tokens = float(FRAME_BURST)
        self.refilled = time.monotonic()
        self.acks: dict[str, dict[str, Any]] = {}  # client_id -> ack, oldest first
        self.post_refused: dict[int, tuple[float, FrameError]] = {}  # room id -> (until, error)
        # The socket's name in presence entries (unique per process and connection).
        self.socket_id = uuid.uuid4().hex
        # Client frames and bus frames are handled one at a time, in arrival order, as Channels'
        # dispatch loop did: a bus frame arriving while a client frame is handled (a subscribe's
        # replay, a post) waits in the backlog, and so do the frames behind it.
        self.turn = Turn()
        # Made on first use and dropped once drained: most sockets never need one (760 bytes).
        self.backlog: deque[str] | None = None
        self.drainer: asyncio.Task[None] | None = None
        # Under daphne: room frames are written to the socket's transport (forums.transport).
        self.write_direct = transport.direct_sender(self.base_send)
        await self.accept()
        # Accept first: only an accepted socket can carry the 4401 close code to the client.
        # One database hop answers who the handshake names: the token's or the session's member,
        # whether they are a participant now, in which language, and the credential a
        # `session.revoked` names (minga.realtime.authenticate).
        handshake = await db_hop(realtime.authenticate)(self.scope.get("headers", []))
        # The scope keeps what Channels' auth middleware put in it. It is this socket's own:
        # daphne makes one per connection, and the routing hands it over as it is.
        self.scope["user"], self.scope["auth"] = handshake.user, handshake.auth
        if handshake.session is not None:
            self.scope["session"] = handshake.session
        if handshake.identity is None:
            logger.info("socket refused", extra={"reason": "unauthenticated"})
            self.closing = True
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.member_id, self.language = handshake.identity
        self.credential = handshake.credential
        self.user_group = bus.user_group(self.member_id)
        await bus.join(self.user_group, self)
        logger.info("socket connected", extra={"member": self.member_id})

    async def disconnect(self, code: int) -> None:
        if self.member_id is None:
            return
        self.closing = True  # frames still in the backlog or on their way are not sent
        for slug, room_id in list(self.rooms.items()):
            await self._leave_room(slug, room_id)
        self.rooms.clear()
        try:
            await bus.leave(self.user_group, self)
        except Exception:
            logger.warning("leaving the user group failed", exc_info=True)
        logger.info(
            "socket closed",
            extra={
                "member": self.member_id,
                "code": code,
                "seconds": round(time.monotonic() - self.opened, 1),
            },
        )

    # --- Client frames ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.member_id is None or self.closing:
            return
        if bytes_data is not None:
            if len(bytes_data) > MAX_FRAME_BYTES:
                await self._close(CLOSE_TOO_BIG)
                return
            await self.send_error(FrameError("binary_frame"))
            return
        text = text_data or ""
        if len(text) > MAX_FRAME_BYTES or (
            len(text) * 4 > MAX_FRAME_BYTES
            and len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES
        ):
            await self._close(CLOSE_TOO_BIG)
            return
        if not self._take_token():
            await self.send_error(FrameError("rate_limited"))
            return
        async with self.turn:
            try:
                with translation.override(self.language):
                    frame = parse(text)
                await getattr(self, self.HANDLERS[frame.type])(frame)
            except FrameError as error:
                await self.send_error(error)
            except Exception:
                logger.exception("frame failed", extra={"member": self.member_id})
                await self.send_error(FrameError("server_error"))
        if self.backlog:
            self._drain_soon()

    async def send_error(self, error: FrameError) -> None:
        with translation.override(self.language):
            frame = error.frame()
        await self.send_frame(frame)

    def _take_token(self) -> bool:
        moment = time.monotonic()
        self.tokens = min(FRAME_BURST, self.tokens + (moment - self.refilled) * FRAME_RATE)
        self.refilled = moment
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def _db[T](self, frame: ClientFrame, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` in a thread in the member's language; a FrameError gets the frame's context."""
        try:
            return await db_hop(_in_language)(self.language, fn, *args)
        except FrameError as error:
            error.frame_type = error.frame_type or frame.type
            error.client_id = error.client_id or frame.data.get("client_id")
            error.room = error.room or frame.data.get("room")
            raise

    def _subscribed(self, frame: ClientFrame) -> int:
        room_id = self.rooms.get(frame["room"])
        if room_id is None:
            with translation.override(self.language):
                detail = translation.gettext("Subscribe to the room first.")
            raise FrameError(
                "forbidden",
                detail,
                frame_type=frame.type,
                client_id=frame.data.get("client_id"),
                room=frame["room"],
            )
        return room_id

    async def on_ping(self, frame: ClientFrame) -> None:
        await self.send_frame({"type": "pong"})

    async def on_subscribe(self, frame: ClientFrame) -> None:
        slug, after = frame["room"], frame["after"]
        if slug not in self.rooms and len(self.rooms) >= MAX_ROOMS_PER_SOCKET:
            raise FrameError("too_many_rooms", frame_type=frame.type, room=slug)
        room_id, online, arrived, state = await self._enter_room(frame, slug)
        last_seq, last_change, members = state
        subscribed: dict[str, Any] = {
            "type": "subscribed",
            "room": slug,
            "online": members,
            "last_seq": last_seq,
            "last_change": last_change,
        }
        if online.count > presence.FULL_LIST_MAX:
            subscribed["online_count"] = online.count  # `online` is cut: the lowest ids, by name
        await self.send_frame(subscribed)
        if arrived:
            assert self.member_id is not None  # noqa: S101 - set in connect
            presence.get().changed(room_id, slug, joined=[self.member_id])
        self.replayed[slug] = (last_seq, time.monotonic() + DEDUPE_WINDOW_SECONDS)
        self.changes_replayed.pop(slug, None)
        # What this socket has once the replay below is sent: the floor of a recovery's replay.
        bus.mark(bus.room_group(room_id), last_seq, last_change)
        if after is None:
            return
        changes_after = frame.data.get("changes_after")
        if replay.beyond_replay(after, last_seq, changes_after, last_change):
            await self.send_frame(
                {"type": "resync", "room": slug, "last_seq": last_seq, "last_change": last_change}
            )
            return
        cursor = after
        while cursor < last_seq:
            texts, cursor = await self._db(
                frame, replay.replay_batch, room_id, slug, cursor, last_seq
            )
            for text in texts:
                await self.send(text_data=text)
            if not texts:
                break
        if changes_after is not None:
            marks = (last_seq, last_change)
            await self._catch_up_changes(
                frame, room_id, after=after, changes_after=changes_after, marks=marks
            )

    async def _catch_up_changes(
        self,
        frame: ClientFrame,
        room_id: int,
        *,
        after: int,
        changes_after: int,
        marks: tuple[int, int],
    ) -> None:
        """Replay the changes the client missed to what it already shows, then `caught_up`.

        Live change frames up to `last_change` are dropped for a while from now on: the replay
        (or the `message.created` replay, for newer messages) carries their state, so none is
        delivered twice; newer ones pass. Old clients (no `changes_after`) are not affected.
        """
        slug = frame["room"]
        last_seq, last_change = marks
        self.changes_replayed[slug] = (last_change, time.monotonic() + DEDUPE_WINDOW_SECONDS)
        if changes_after < last_change:
            texts = await self._db(
                frame, replay.replay_changes, room_id, slug, after, changes_after, marks
            )
            for text in texts:
                await self.send(text_data=text)
        await self.send_frame(
            {"type": "caught_up", "room": slug, "last_seq": last_seq, "last_change": last_change}
        )

    async def _enter_room(
        self, frame: ClientFrame, slug: str
    ) -> tuple[int, presence.Online, bool, tuple[int, int, list[dict[str, Any]]]]:
        """Join the room's group and presence, then make the subscribe's one database hop;
        (room id, the members online, whether the member arrived, _room_state's answer)."""
        fresh = False
        while True:
            room_id = None if fresh else _room_ids.get(slug)
            if room_id is None:  # the first subscribe to this slug in this process: one more hop
                room_id = await self._db(frame, _open_room, self.member_id, slug)
                _room_ids[slug] = room_id
            known = self.rooms.get(slug) == room_id
            # Join the group before reading the room's last seq: a message committed after that
            # read is then published to a group this socket is already in. Nothing falls between.
            await bus.join(bus.room_group(room_id), self)
            online, arrived = await self._presence_join(room_id, slug)
            try:
                big = online.count > presence.FULL_LIST_MAX
                state = await self._db(
                    frame, _room_state, self.member_id, slug, room_id, online.ids, big
                )
            except Exception as error:
                # Forbidden, moved, or the database failed: undo the join, silently (the arrival
                # was not announced yet), or the heartbeat would keep a ghost entry alive.
                if not known:
                    await self._undo_join(room_id)
                if isinstance(error, _RoomMovedError) and not fresh:
                    _room_ids.pop(slug, None)
                    fresh = True
                    continue
                if isinstance(error, _RoomMovedError):
                    raise FrameError("forbidden", frame_type=frame.type, room=slug) from None
                raise
            self.rooms[slug] = room_id
            if slug in self.forbidden_rooms:
                self.forbidden_rooms = self.forbidden_rooms - {slug}
            return room_id, online, arrived, state

    async def _undo_join(self, room_id: int) -> None:
        assert self.member_id is not None  # noqa: S101 - set in connect
        try:
            await bus.leave(bus.room_group(room_id), self)
            await presence.get().leave(room_id, self.member_id, self.socket_id)
        except Exception:
            logger.warning("undoing a room join failed", exc_info=True)

    async def _presence_join(self, room_id: int, slug: str) -> tuple[presence.Online, bool]:
        assert self.member_id is not None  # noqa: S101 - set in connect
        try:
            return await presence.get().join(room_id, slug, self.member_id, self.socket_id)
        except Exception:
            # Redis away: the room still works, presence shows only this member meanwhile.
            logger.warning("presence join failed", exc_info=True)
            return presence.Online(1, [self.member_id]), False

    async def _leave_room(self, slug: str, room_id: int) -> None:
        assert self.member_id is not None  # noqa: S101 - set in connect
        self.replayed.pop(slug, None)
        self.changes_replayed.pop(slug, None)
        try:
            await bus.leave(bus.room_group(room_id), self)
            place = presence.get()
            _online, left = await place.leave(room_id, self.member_id, self.socket_id)
            if left:
                place.changed(room_id, slug, left=[self.member_id])
        except Exception:
            logger.warning("leaving a room failed", extra={"room": slug}, exc_info=True)

    async def on_unsubscribe(self, frame: ClientFrame) -> None:
        slug = frame["room"]
        room_id = self.rooms.pop(slug, None)
        if room_id is not None:
            await self._leave_room(slug, room_id)
        await self.send_frame({"type": "unsubscribed", "room": slug})

    async def on_message_send(self, frame: ClientFrame) -> None:
        room_id = self._subscribed(frame)
        client_id = str(frame.data.get("client_id"))
        known = self.acks.get(client_id)
        if known is not None:
            await self.send_frame(known)
            return
        refused = self.post_refused.get(room_id)
        if refused is not None and refused[0] > time.monotonic():
            # Cooling down: only a repeat (posted from another tab or the API) is looked up,
            # in one query; anything else is refused as the service would.
            stored = await self._db(frame, _stored_ack, self.member_id, client_id)
            if stored is not None:
                await self.send_frame(stored)
                return
            raise FrameError(
                refused[1].code,
                refused[1].detail,
                frame_type=frame.type,
                client_id=frame.data.get("client_id"),
                room=frame["room"],
            )
        try:
            ack = await self._db(frame, _post, self.member_id, room_id, frame.data)
        except FrameError as error:
            retry_in = error.retry_in
            if error.code == "rate_limited" and retry_in:
                # The service's window, so a flood over this socket costs no database hop until
                # it frees (the services' cache marker covers other sockets and the API).
                self.post_refused[room_id] = (time.monotonic() + retry_in, error)
            raise
        self.acks[client_id] = ack
        if len(self.acks) > ACKS_REMEMBERED:
            del self.acks[next(iter(self.acks))]
        await self.send_frame(ack)

    async def on_typing(self, frame: ClientFrame) -> None:
        room_id = self._subscribed(frame)
        member = await self._db(frame, _typing, self.member_id, room_id, frame["thread"])
        if member is not None:
            await bus.apublish(
                bus.room_group(room_id),
                {
                    "type": "typing",
                    "room": frame["room"],
                    "thread": frame["thread"],
                    "member": member,
                },
            )

    async def on_read(self, frame: ClientFrame) -> None:
        room_id = self._subscribed(frame)
        # read_mark publishes `read` to the member's own group (every tab, this one included).
        await self._db(frame, _read, self.member_id, room_id, frame["thread"], frame["message_id"])

    # --- Bus frames ---------------------------------------------------------------------------

    def relay_at_once(self, text: str, control: bool) -> bool:
        """The hub's fast path for a frame of one of this socket's groups: handled here and now,
        with no coroutine made for this socket (a room frame goes to every socket of the room:
        docs/performance.md, "The relay's own Python"). True when the frame is done with:
        written to the socket, or dropped as `relay` would drop it. False: the hub awaits
        `relay`, which keeps the order behind a backlog or the client frame in hand, acts on a
        control frame, and sends through ASGI where there is no direct write (or it declined)."""
        if self.closing or self.member_id is None:
            return True
        if control or self.backlog or self.turn.locked():
            return False
        write = self.write_direct
        if write is None:
            return False
        return self._drops(text) or write(text)

    async def relay(self, text: str, control: bool | None = None) -> None:
        """A frame of one of this socket's groups, from the hub: pre-serialised, sent as is.

        The fast path (the socket is idle, the frame is no control frame) sends at once, with no
        task, queue or decode. Otherwise the frame joins the backlog, which is relayed in order
        once the client frame in hand is answered; a control frame (it may need the database)
        is always relayed from the backlog, so the hub never waits for it.
        """
        if self.closing or self.member_id is None:
            return
        if control is None:
            control = bus.is_control(text)
        if self.backlog or self.turn.locked() or control:
            if self.backlog is None:
                self.backlog = deque()
            self.backlog.append(text)
            self._drain_soon()
            return
        await self._relay_now(text, control=False)

    def _drain_soon(self) -> None:
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async with self.turn:
            while self.backlog and not self.closing:
                text = self.backlog.popleft()
                try:
                    await self._relay_now(text)
                except Exception:
                    logger.warning("relay failed", extra={"member": self.member_id}, exc_info=True)
            self.backlog = None  # empty, or left over when the socket is closing
        self.drainer = None  # done (a relay meanwhile appended to the backlog drained here)

    async def _relay_now(self, text: str, control: bool | None = None) -> None:
        """Send a bus frame, or act on it; `control`: the hub's answer of `bus.is_control`,
        asked once per frame for every socket (None: ask it here, for a frame from the
        backlog)."""
        if self.closing:
            return
        if control is None:
            control = bus.is_control(text)
        # Substring tests first: a frame is only decoded when it may be one we act upon.
        if control and await self._control(text):
            return
        if self._drops(text):
            return
        if self.write_direct is None or not self.write_direct(text):
            try:
                await self.send(text_data=text)
            except Disconnected:
                # The peer went and daphne has not delivered the disconnect yet: nothing is
                # lost (a reconnect catches up), and the frames behind this one need no try.
                self.closing = True

    async def _control(self, text: str) -> bool:
        """Act on a control frame; True when it was one (it is never relayed)."""
        frame = _decoded(text)
        kind = frame.get("type")
        if kind == "session.revoked":
            credential = frame.get("credential")
            if credential is None or credential == self.credential:
                logger.info(
                    "socket revoked",
                    extra={"member": self.member_id, "reason": frame.get("reason")},
                )
                await self._close(CLOSE_REVOKED)
            return True
        if kind == "access.changed":
            await self._recheck_access()
            return True
        return False

    def _drops(self, text: str) -> bool:
        """Whether this socket drops a frame it is not to act upon: a frame of a room taken
        away, or one its replay carried already. Substring tests first: a frame is decoded only
        when it may be one it drops, and then once per process (`_decoded`)."""
        if self.forbidden_rooms and self._of_forbidden_room(text):
            return True
        if self.replayed and '"message.created"' in text and self._replayed_already(text):
            return True
        return bool(self.changes_replayed and '"change":' in text and self._change_replayed(text))

    def _of_forbidden_room(self, text: str) -> bool:
        """A room frame of a room the access re-check took away (queued before the group was
        left); a member's own frames (notifications) pass."""
        frame = _decoded(text)
        return frame.get("room") in self.forbidden_rooms and frame.get("type") != "notification"

    def _replayed_already(self, text: str) -> bool:
        moment = time.monotonic()
        for slug in [s for s, (_last, until) in self.replayed.items() if until < moment]:
            del self.replayed[slug]
        if not self.replayed:
            return False
        frame = _decoded(text)
        if frame.get("type") != "message.created":
            return False
        room = frame.get("room")
        seen = self.replayed.get(room) if isinstance(room, str) else None
        seq = frame.get("seq")
        return seen is not None and isinstance(seq, int) and seq <= seen[0]

    def _change_replayed(self, text: str) -> bool:
        """A live change frame the change replay already carried (change <= its last_change)."""
        moment = time.monotonic()
        for slug in [s for s, (_c, until) in self.changes_replayed.items() if until < moment]:
            del self.changes_replayed[slug]
        if not self.changes_replayed:
            return False
        frame = _decoded(text)
        room = frame.get("room")
        seen = self.changes_replayed.get(room) if isinstance(room, str) else None
        change = frame.get("change")
        return seen is not None and isinstance(change, int) and change <= seen[0]

    async def _recheck_access(self) -> None:
        assert self.member_id is not None  # noqa: S101 - set in connect
        readable = await db_hop(_readable)(self.member_id, list(self.rooms.values()))
        if readable is None:
            await self._close(CLOSE_REVOKED)
            return
        for slug, room_id in list(self.rooms.items()):
            if room_id not in readable:
                del self.rooms[slug]
                self.forbidden_rooms = self.forbidden_rooms | {slug}
                await self._leave_room(slug, room_id)
                await self.send_frame({"type": "unsubscribed", "room": slug, "reason": "forbidden"})

    async def _close(self, code: int) -> None:
        self.closing = True
        await self.close(code=code)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=dumps(frame))
