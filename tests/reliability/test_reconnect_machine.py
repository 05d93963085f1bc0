"""The reconnect state machine: random connects, drops, posts, edits, deletes, reactions, hiding,
pins and reconnects end with every client's view equal to a fresh load from the database.

Three members each hold one socket (Channels' WebsocketCommunicator over the full ASGI
application, on one event loop for the whole run). A client behaves as frontend/realtime.js does:
it keeps `last_seq` (gapless, from `message.created`) and `last_change` (from `caught_up` and
contiguous live change frames), reconnects with `subscribe` `after` + `changes_after`, and applies
change frames by replacing. Each example gets its own room, so seq and change start at 0.

Invariants: during the run no `message.created` arrives twice or out of seq order; at teardown
every client (reconnected if it was dropped) shows exactly what a fresh load shows: per message
(in seq order) body_html, deleted, hidden and reactions, and per thread pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from community.models import Role, User, WorkingGroup
from forums import consumers, moderation, selectors, services
from forums.models import REACTION_EMOJI, Message, Room, Thread
from tests.factories import MembershipFactory, UserFactory
from tests.reliability.support import open_socket, report, session_headers

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 3
EXAMPLES = 12
STEPS = 30
# Markdown and HTML specials, so bodies render to something worth comparing.
TEXT = st.text(alphabet="ab *_`@<>&\"'#", max_size=20)

View = dict[str, Any]


class Client:
    """One member's tab: its socket (None while dropped), what it shows and its two marks."""

    def __init__(self, member: User) -> None:
        self.member = member
        self.ws: WebsocketCommunicator | None = None
        self.last_seq = 0
        self.last_change = 0
        self.held: set[int] = set()  # live change numbers above last_change + 1
        self.messages: dict[int, View] = {}  # id -> projection of the message object
        self.versions: dict[str, int] = {}  # "m<id>" / "t<id>" -> change applied
        self.pinned: dict[int, bool] = {}  # thread id -> pinned
        self.duplicates = 0
        self.reordered = 0

    # --- Applying frames, as realtime.js + forum.js do ----------------------------------------

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message.created":
            self._created(frame)
        elif kind == "caught_up":
            self.last_change = max(self.last_change, frame["last_change"])
            self._advance()
        elif kind == "resync":
            raise AssertionError(f"resync in a room of a few messages: {frame}")
        elif isinstance(frame.get("change"), int):
            self._changed(frame)

    def _created(self, frame: dict[str, Any]) -> None:
        message = frame["message"]
        if frame["seq"] <= self.last_seq or message["id"] in self.messages:
            self.duplicates += 1
            return
        if frame["seq"] != self.last_seq + 1:
            self.reordered += 1
        self.last_seq = frame["seq"]
        self.messages[message["id"]] = project(message)
        if "new_thread" in frame:
            self.pinned[frame["new_thread"]["id"]] = frame["new_thread"]["pinned"]

    def _changed(self, frame: dict[str, Any]) -> None:
        change = frame["change"]
        key = f"t{frame['thread']['id']}" if "thread" in frame else None
        if key is None:
            target = frame["message"]["id"] if "message" in frame else frame["message_id"]
            key = f"m{target}"
        if change >= self.versions.get(key, 0):
            self.versions[key] = change
            if "thread" in frame:
                self.pinned[frame["thread"]["id"]] = frame["thread"]["pinned"]
            elif "message" in frame:
                self.messages[frame["message"]["id"]] = project(frame["message"])
            elif frame["message_id"] in self.messages:
                self.messages[frame["message_id"]]["reactions"] = frame["reactions"]
        if change > self.last_change:
            self.held.add(change)
            self._advance()

    def _advance(self) -> None:
        while self.last_change + 1 in self.held:
            self.last_change += 1
        self.held = {c for c in self.held if c > self.last_change}

    def view(self) -> tuple[list[tuple[int, View]], dict[int, bool]]:
        ordered = sorted(self.messages.items(), key=lambda item: item[1]["seq"])
        return ordered, dict(self.pinned)


def project(message: dict[str, Any]) -> View:
    return {
        "seq": message["seq"],
        "body_html": message["body_html"],
        "deleted": message["deleted"],
        "hidden": message["hidden"],
        "reactions": message["reactions"],
    }


def fresh_load(room: Room) -> tuple[list[tuple[int, View]], dict[int, bool]]:
    """What a page loaded now shows: the room's messages through the selectors, in seq order."""
    messages = selectors.messages_after(room=room, after_seq=0, limit=selectors.MAX_PAGE)
    pinned = dict(Thread.objects.filter(room=room).values_list("pk", "pinned"))
    return [(m.pk, project(selectors.message_payload(m))) for m in messages], pinned


def refused(action: Callable[[], Any]) -> None:
    """Run a write; a refusal (a deleted or hidden message, a locked thread) changes nothing."""
    with contextlib.suppress(PermissionDenied, ValidationError):
        action()


class ReconnectMachine(RuleBasedStateMachine):
    loop: ClassVar[asyncio.AbstractEventLoop]
    members: ClassVar[list[User]]
    chair: ClassVar[User]
    headers: ClassVar[list[list[tuple[bytes, bytes]]]]
    examples = 0
    steps = 0
    divergent = 0
    anomalies = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.clients = [Client(m) for m in self.members]
        self.room = Room.objects.create(
            slug=f"replay-{uuid.uuid4().hex[:12]}",
            title="Reconnect machine",
            working_group=WorkingGroup.objects.get(slug="wg1"),
        )
        self.threads: list[Thread] = []
        self.message_ids: list[int] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def step(self) -> None:
        type(self).steps += 1
        self.run(self.settle())

    # --- Socket plumbing ----------------------------------------------------------------------

    async def settle(self) -> None:
        """Deliver everything published so far to every open socket: two ping round trips (a bus
        frame already queued is dispatched before the second ping at the latest)."""
        for client in self.clients:
            if client.ws is not None:
                for _ in range(2):
                    await client.ws.send_to(text_data='{"type": "ping"}')
                    await self.read_until(client, "pong")

    async def read_until(self, client: Client, kind: str) -> dict[str, Any]:
        assert client.ws is not None
        while True:
            frame = json.loads(await client.ws.receive_from(timeout=10))
            if frame["type"] == kind:
                return frame
            client.apply(frame)

    async def open(self, index: int) -> None:
        client = self.clients[index]
        ws, connected = await open_socket(self.headers[index])
        assert connected
        client.ws = ws
        await ws.send_to(
            text_data=json.dumps(
                {
                    "type": "subscribe",
                    "room": self.room.slug,
                    "after": client.last_seq,
                    "changes_after": client.last_change,
                }
            )
        )
        await self.read_until(client, "caught_up")
        # The socket answers frames once the catch-up is done (the fresh load's seam).

    async def drop(self, index: int) -> None:
        client = self.clients[index]
        assert client.ws is not None
        await client.ws.disconnect()
        client.ws = None

    # --- Rules --------------------------------------------------------------------------------

    @initialize()
    def open_thread(self) -> None:
        thread = services.thread_create(
            room=self.room, author=self.members[0], title="First", body="Opening message"
        )
        self.threads.append(thread)
        self.message_ids.append(Message.objects.get(thread=thread).pk)

    @rule(index=st.integers(0, CLIENTS - 1))
    def connect(self, index: int) -> None:
        if self.clients[index].ws is None:
            self.run(self.open(index))
        self.step()

    @rule(index=st.integers(0, CLIENTS - 1))
    def disconnect(self, index: int) -> None:
        if self.clients[index].ws is not None:
            self.run(self.drop(index))
        self.step()

    @rule(author=st.integers(0, CLIENTS - 1), thread=st.integers(0, 3), text=TEXT)
    def post_via_service(self, author: int, thread: int, text: str) -> None:
        target = self.threads[thread % len(self.threads)]
        message, _created = services.message_post(
            thread=target, author=self.members[author], body=f"post {text}!", client_id=uuid.uuid4()
        )
        self.message_ids.append(message.pk)
        self.step()

    @rule(author=st.integers(0, CLIENTS - 1))
    def post_via_socket(self, author: int) -> None:
        client = self.clients[author]
        if client.ws is not None:
            self.run(self.socket_post(client))
        self.step()

    async def socket_post(self, client: Client) -> None:
        assert client.ws is not None
        await client.ws.send_to(
            text_data=json.dumps(
                {
                    "type": "message.send",
                    "room": self.room.slug,
                    "thread": self.threads[-1].pk,
                    "body": "over the socket",
                    "client_id": str(uuid.uuid4()),
                }
            )
        )
        ack = await self.read_until(client, "ack")
        self.message_ids.append(ack["message_id"])

    @rule(author=st.integers(0, CLIENTS - 1))
    def open_another_thread(self, author: int) -> None:
        thread = services.thread_create(
            room=self.room, author=self.members[author], title="Another", body="A new topic"
        )
        self.threads.append(thread)
        self.message_ids.append(Message.objects.get(thread=thread).pk)
        self.step()

    @rule(pick=st.integers(0, 10**6), text=TEXT)
    def edit(self, pick: int, text: str) -> None:
        message = self.pick(pick)
        refused(lambda: services.message_edit(message=message, editor=message.author, body=text))
        self.step()

    @rule(pick=st.integers(0, 10**6))
    def delete(self, pick: int) -> None:
        message = self.pick(pick)
        refused(lambda: services.message_delete(message=message, actor=message.author))
        self.step()

    @rule(pick=st.integers(0, 10**6), member=st.integers(0, CLIENTS - 1), emoji=st.integers(0, 2))
    def react(self, pick: int, member: int, emoji: int) -> None:
        message = self.pick(pick)
        refused(
            lambda: services.reaction_toggle(
                message=message, member=self.members[member], emoji=REACTION_EMOJI[emoji]
            )
        )
        self.step()

    @rule(pick=st.integers(0, 10**6), hide=st.booleans())
    def moderate(self, pick: int, hide: bool) -> None:
        message = self.pick(pick)
        if hide:
            refused(lambda: moderation.message_hide(message=message, actor=self.chair, reason="x"))
        else:
            refused(lambda: moderation.message_unhide(message=message, actor=self.chair))
        self.step()

    @rule(thread=st.integers(0, 3), pinned=st.booleans())
    def pin(self, thread: int, pinned: bool) -> None:
        target = self.threads[thread % len(self.threads)]
        moderation.thread_pin_set(thread=target, actor=self.chair, pinned=pinned)
        self.step()

    def pick(self, pick: int) -> Message:
        return Message.objects.select_related("room", "author").get(
            pk=self.message_ids[pick % len(self.message_ids)]
        )

    @invariant()
    def delivered_once_in_order(self) -> None:
        assert [(c.duplicates, c.reordered) for c in self.clients] == [(0, 0)] * CLIENTS

    def teardown(self) -> None:
        try:
            for index, client in enumerate(self.clients):
                if client.ws is None and (client.messages or client.last_seq):
                    self.run(self.open(index))
            self.run(self.settle())
            expected = fresh_load(self.room)
            views = [c.view() for c in self.clients if c.ws is not None]
            divergent = [v for v in views if v != expected]
            type(self).divergent += len(divergent)
            type(self).anomalies += sum(c.duplicates + c.reordered for c in self.clients)
            assert divergent == []
        finally:
            for index, client in enumerate(self.clients):
                if client.ws is not None:
                    self.run(self.drop(index))


def _members() -> tuple[list[User], User, list[list[tuple[bytes, bytes]]]]:
    members = []
    for n in range(CLIENTS):
        user = UserFactory(handle=f"machine{n}")
        MembershipFactory(member=user, role=Role.MEMBER)
        members.append(user)
    chair = UserFactory(handle="machinechair")
    MembershipFactory(member=chair, role=Role.CHAIR)
    return members, chair, [session_headers(m) for m in members]


def test_reconnect_machine_views_equal_a_fresh_load(
    plan: None,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (10_000, 1)
    # The machine pings after every step to settle delivery: no per-socket frame budget here.
    monkeypatch.setattr(consumers, "FRAME_BURST", 10**9)
    monkeypatch.setattr(consumers, "FRAME_RATE", 10.0**9)
    members, chair, headers = _members()
    loop = asyncio.new_event_loop()
    ReconnectMachine.loop = loop
    ReconnectMachine.members = members
    ReconnectMachine.chair = chair
    ReconnectMachine.headers = headers
    try:
        run_state_machine_as_test(
            ReconnectMachine,
            settings=settings_for_run(),
        )
    finally:
        # The gateway's database work ran in asgiref's executor thread: close its connection.
        loop.run_until_complete(database_sync_to_async(connections.close_all)())
        loop.close()

    report(
        capsys,
        "RECONNECT-MACHINE",
        f"{ReconnectMachine.examples} examples, {ReconnectMachine.steps} steps, divergent views "
        f"{ReconnectMachine.divergent}",
    )
    assert (ReconnectMachine.divergent, ReconnectMachine.anomalies) == (0, 0)
    assert ReconnectMachine.steps > EXAMPLES


def settings_for_run() -> hypothesis_settings:
    return hypothesis_settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
