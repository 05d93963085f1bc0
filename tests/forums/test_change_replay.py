"""Lossless catch-up of changes: the room's change counter and `subscribe` with `changes_after`.

A client that reconnects with `after` (the last seq it showed) and `changes_after` (the last change
number it applied) gets, after the `message.created` replay, the current state of every message it
already showed that changed meanwhile, as the live frame of that change, in change order, then
`caught_up`. docs/realtime-protocol.md §4 is the specification these check.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile

from community.models import User
from forums import moderation, replay, services
from forums.frames import RESYNC_GAP
from forums.models import Attachment, ContentChange, Message, Room, Thread
from notifications import bus
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, member_in
from tests.forums.test_gateway import recv, send, socket

pytestmark = pytest.mark.django_db(transaction=True)

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def marks() -> tuple[int, int]:
    room = Room.objects.get(slug="wg1-a")
    return room.last_seq, room.last_change


async def resubscribe(ws: Any, after: int | None, changes_after: int | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "room": "wg1-a", "after": after}
    if changes_after is not None:
        frame["changes_after"] = changes_after
    await send(ws, frame)
    return await recv(ws)


async def frames_until_caught_up(ws: Any) -> list[dict[str, Any]]:
    got = []
    while True:
        frame = await recv(ws)
        got.append(frame)
        if frame["type"] == "caught_up":
            return got


@pytest.fixture
def colleague(plan: None) -> User:
    return member_in("wg1", email="carla@trabajo.example", name="Carla Díaz", handle="carla")


@pytest.fixture
def chair(plan: None) -> User:
    return member_in("wg1", role="chair", email="chair@trabajo.example", handle="chair")


def every_kind_of_change(thread: Thread, author: User, other: User, chair: User) -> list[Message]:
    """Five messages, then one change of each kind to the first five, and a pin."""
    made = [MessageFactory(thread=thread, author=author) for _ in range(6)]
    services.message_edit(message=made[0], editor=author, body="Edited while you were away")
    services.message_delete(message=made[1], actor=author)
    services.reaction_toggle(message=made[2], member=other, emoji="👍")
    moderation.message_hide(message=made[3], actor=chair, reason="Off topic")
    moderation.message_hide(message=made[4], actor=chair, reason="By mistake")
    moderation.message_unhide(message=made[4], actor=chair)
    moderation.thread_pin_set(thread=thread, actor=chair, pinned=True)
    return made


# --- The counter ------------------------------------------------------------------------------


def test_each_change_takes_the_next_room_change_number(
    thread: Thread,
    member: User,
    colleague: User,
    chair: User,
) -> None:
    made = every_kind_of_change(thread, member, colleague, chair)

    changes = dict(Message.objects.filter(thread=thread).values_list("pk", "change"))
    thread.refresh_from_db()
    assert [changes[m.pk] for m in made] == [1, 2, 3, 4, 6, 0]
    assert (thread.change, marks()) == (7, (6, 7))
    assert Message.objects.get(pk=made[4].pk).content_kind == ContentChange.UNHIDDEN


def test_refused_change_takes_no_change_number(
    thread: Thread,
    member: User,
    colleague: User,
) -> None:
    message = MessageFactory(thread=thread, author=member)

    with pytest.raises(PermissionDenied):
        services.message_edit(message=message, editor=colleague, body="Not mine")
    with pytest.raises(PermissionDenied):
        moderation.thread_lock_set(thread=thread, actor=colleague, locked=True)

    message.refresh_from_db()
    assert (message.change, marks()) == (0, (1, 0))


def test_unchanged_edit_takes_no_change_number(thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member, body="Same")

    services.message_edit(message=message, editor=member, body="Same")

    assert marks() == (1, 0)


def test_live_change_frames_carry_their_change_number(
    thread: Thread,
    member: User,
    colleague: User,
    chair: User,
    frames: list[tuple[str, dict[str, Any]]],
) -> None:
    every_kind_of_change(thread, member, colleague, chair)

    assert [(f["type"], f.get("change")) for _group, f in frames] == [
        ("message.edited", 1),
        ("message.deleted", 2),
        ("reaction.changed", 3),
        ("message.hidden", 4),
        ("message.hidden", 5),
        ("message.unhidden", 6),
        ("thread.updated", 7),
    ]


# --- Replay on subscribe ------------------------------------------------------------------------


async def test_subscribe_with_changes_after_replays_each_kind_as_its_live_frame(
    member: User,
    thread: Thread,
    colleague: User,
    chair: User,
    frames: list[tuple[str, dict[str, Any]]],
) -> None:
    # `frames` records what the live path published (and keeps it from the socket).
    await database_sync_to_async(every_kind_of_change)(thread, member, colleague, chair)
    live = [f for _group, f in frames]
    async with socket(member) as ws:
        subscribed = await resubscribe(ws, after=6, changes_after=0)
        replay = await frames_until_caught_up(ws)

    assert (subscribed["last_seq"], subscribed["last_change"]) == (6, 7)
    # The newest change of each message and of the thread, in change order; the first hide of
    # the message unhidden later is superseded by the unhide.
    assert replay == [
        *[f for f in live if f["change"] != 5],
        {"type": "caught_up", "room": "wg1-a", "last_seq": 6, "last_change": 7},
    ]


async def test_replay_sends_only_changes_after_the_clients_mark(
    member: User,
    thread: Thread,
    colleague: User,
    chair: User,
) -> None:
    await database_sync_to_async(every_kind_of_change)(thread, member, colleague, chair)
    async with socket(member) as ws:
        await resubscribe(ws, after=6, changes_after=5)
        replay = await frames_until_caught_up(ws)

    assert [(f["type"], f.get("change")) for f in replay] == [
        ("message.unhidden", 6),
        ("thread.updated", 7),
        ("caught_up", None),
    ]


async def test_reactions_after_an_edit_the_client_has_replay_as_reaction_changed(
    member: User,
    thread: Thread,
    colleague: User,
) -> None:
    @database_sync_to_async
    def arrange() -> Message:
        message = MessageFactory(thread=thread, author=member)
        services.message_edit(message=message, editor=member, body="Better")
        services.reaction_toggle(message=message, member=colleague, emoji="🎉")
        return message

    message = await arrange()
    async with socket(member) as ws:
        await resubscribe(ws, after=1, changes_after=1)
        replay = await frames_until_caught_up(ws)

    assert replay[0] == {
        "type": "reaction.changed",
        "room": "wg1-a",
        "seq": 1,
        "change": 2,
        "message_id": message.pk,
        "reactions": {"🎉": 1},
    }


async def test_subscribe_without_changes_after_replays_no_change(
    member: User,
    thread: Thread,
    colleague: User,
    chair: User,
) -> None:
    await database_sync_to_async(every_kind_of_change)(thread, member, colleague, chair)
    async with socket(member) as ws:
        subscribed = await resubscribe(ws, after=6, changes_after=None)
        presence = await recv(ws)

        assert (subscribed["type"], presence["type"]) == ("subscribed", "presence")
        assert await ws.receive_nothing(timeout=0.3) is True


async def test_changes_of_messages_newer_than_after_come_with_their_replay_only(
    member: User,
    thread: Thread,
) -> None:
    @database_sync_to_async
    def arrange() -> Message:
        MessageFactory(thread=thread, author=member)
        newer = MessageFactory(thread=thread, author=member)
        services.message_edit(message=newer, editor=member, body="Edited")
        return newer

    newer = await arrange()
    async with socket(member) as ws:
        await resubscribe(ws, after=1, changes_after=0)
        replay = await frames_until_caught_up(ws)

    assert [(f["type"], f.get("seq", f.get("last_seq"))) for f in replay] == [
        ("message.created", 2),
        ("caught_up", 2),
    ]
    assert (replay[0]["message"]["id"], replay[0]["message"]["body"]) == (newer.pk, "Edited")


async def test_change_gap_over_limit_sends_resync(
    member: User,
    thread: Thread,
    colleague: User,
    chair: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay, "RESYNC_GAP", 2)
    await database_sync_to_async(every_kind_of_change)(thread, member, colleague, chair)
    async with socket(member) as ws:
        await resubscribe(ws, after=6, changes_after=4)
        frame = await recv(ws)
        await recv(ws)  # own presence

        assert frame == {"type": "resync", "room": "wg1-a", "last_seq": 6, "last_change": 7}
        assert await ws.receive_nothing(timeout=0.3) is True


async def test_changes_after_beyond_last_change_sends_resync(
    member: User,
    thread: Thread,
) -> None:
    await database_sync_to_async(MessageFactory)(thread=thread, author=member)
    async with socket(member) as ws:
        await resubscribe(ws, after=1, changes_after=3)
        frame = await recv(ws)

    assert frame == {"type": "resync", "room": "wg1-a", "last_seq": 1, "last_change": 0}


async def test_live_copy_of_a_replayed_change_is_dropped_and_newer_ones_pass(
    member: User,
    thread: Thread,
) -> None:
    @database_sync_to_async
    def arrange() -> Message:
        message = MessageFactory(thread=thread, author=member)
        services.message_edit(message=message, editor=member, body="Once")
        services.message_edit(message=message, editor=member, body="Twice")
        return message

    message = await arrange()
    room = await database_sync_to_async(Room.objects.get)(slug="wg1-a")
    async with socket(member) as ws:
        await resubscribe(ws, after=1, changes_after=0)
        await frames_until_caught_up(ws)
        await recv(ws)  # own presence
        # A late live copy of change 2 (its publish raced the replay), then change 3.
        for change in (2, 3):
            await bus.apublish(
                bus.room_group(room.pk),
                {
                    "type": "reaction.changed",
                    "room": "wg1-a",
                    "seq": 1,
                    "change": change,
                    "message_id": message.pk,
                    "reactions": {},
                },
            )
        frame = await recv(ws)

        assert frame["change"] == 3
        assert await ws.receive_nothing(timeout=0.2) is True


async def test_old_clients_get_every_live_change_frame(
    member: User,
    thread: Thread,
) -> None:
    room = await database_sync_to_async(Room.objects.get)(slug="wg1-a")
    async with socket(member) as ws:
        await resubscribe(ws, after=0, changes_after=None)
        await recv(ws)  # own presence
        await bus.apublish(
            bus.room_group(room.pk),
            {"type": "thread.updated", "room": "wg1-a", "seq": 0, "change": 0, "thread": {}},
        )
        frame = await recv(ws)

    assert (frame["type"], frame["change"]) == ("thread.updated", 0)


@pytest.mark.parametrize("count", [1, 3])
def test_change_replay_query_count_constant(
    thread: Thread,
    member: User,
    colleague: User,
    count: int,
    django_assert_num_queries: Any,
) -> None:
    for _ in range(count):
        message = MessageFactory(thread=thread, author=member, body="Hi @carla")
        services.reaction_toggle(message=message, member=colleague, emoji="👀")
        services.message_edit(message=message, editor=member, body="Hello @carla")
    room = Room.objects.get(slug="wg1-a")

    # messages + their reactions, mentions and attachments; threads (with author, room).
    with django_assert_num_queries(5):
        texts = replay.replay_changes(
            room.pk, "wg1-a", room.last_seq, 0, (room.last_seq, room.last_change)
        )

    assert len(texts) == count


# --- Attachments over the socket ----------------------------------------------------------------


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def upload(member: User) -> Attachment:
    return services.attachment_upload(
        room=Room.objects.get(slug="wg1-a"),
        uploader=member,
        uploaded_file=ContentFile(PDF, name="minutes.pdf"),
    )


def send_frame(thread: Thread, attachments: Any) -> dict[str, Any]:
    return {
        "type": "message.send",
        "room": "wg1-a",
        "thread": thread.pk,
        "body": "The minutes",
        "client_id": str(uuid.uuid4()),
        "attachments": attachments,
    }


async def test_message_send_with_attachments_posts_them(
    member: User,
    thread: Thread,
    media: Path,
) -> None:
    attachment = await database_sync_to_async(upload)(member)
    async with socket(member) as ws:
        await resubscribe(ws, after=None, changes_after=None)
        await recv(ws)  # own presence
        await send(ws, send_frame(thread, [attachment.pk]))
        got = {f["type"]: f for f in [await recv(ws), await recv(ws)]}

    await database_sync_to_async(attachment.refresh_from_db)()
    assert attachment.message_id == got["ack"]["message_id"]
    assert [a["id"] for a in got["message.created"]["message"]["attachments"]] == [attachment.pk]


@pytest.mark.parametrize(
    ("attachments", "code"),
    [("7", "wrong_type"), ([0], "invalid"), (["7"], "wrong_type"), (list(range(1, 12)), "invalid")],
)
async def test_message_send_with_bad_attachments_is_refused(
    member: User,
    thread: Thread,
    attachments: Any,
    code: str,
) -> None:
    async with socket(member) as ws:
        await resubscribe(ws, after=None, changes_after=None)
        await recv(ws)  # own presence
        await send(ws, send_frame(thread, attachments))
        frame = await recv(ws)

    assert (frame["type"], frame["code"]) == ("error", code)
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_message_send_with_someone_elses_attachment_stores_nothing(
    member: User,
    thread: Thread,
    colleague: User,
    media: Path,
) -> None:
    theirs = await database_sync_to_async(upload)(colleague)
    async with socket(member) as ws:
        await resubscribe(ws, after=None, changes_after=None)
        await recv(ws)  # own presence
        await send(ws, send_frame(thread, [theirs.pk]))
        frame = await recv(ws)

    await database_sync_to_async(theirs.refresh_from_db)()
    assert (frame["type"], frame["code"], theirs.message_id) == ("error", "invalid", None)
    assert await database_sync_to_async(Message.objects.count)() == 0


LAST_SEQ, LAST_CHANGE = RESYNC_GAP + 10, RESYNC_GAP + 7  # a room's marks


@pytest.mark.parametrize(
    ("after", "changes_after", "beyond"),
    [
        (LAST_SEQ, None, False),  # up to date, no change replay asked
        (LAST_SEQ - RESYNC_GAP, None, False),  # exactly RESYNC_GAP messages behind: replayed
        (LAST_SEQ - RESYNC_GAP - 1, None, True),  # one more: resync
        (LAST_SEQ + 1, None, True),  # ahead of the room: another database
        (LAST_SEQ, LAST_CHANGE, False),
        (LAST_SEQ, LAST_CHANGE - RESYNC_GAP, False),
        (LAST_SEQ, LAST_CHANGE - RESYNC_GAP - 1, True),
        (LAST_SEQ, LAST_CHANGE + 1, True),  # a change ahead of the room's
    ],
)
def test_beyond_replay_is_what_a_subscribe_and_the_recovery_answer_with_resync(
    after: int, changes_after: int | None, beyond: bool
) -> None:
    # Both paths (forums.consumers' subscribe, forums.replay.missed_frames) decide by it.
    assert replay.beyond_replay(after, LAST_SEQ, changes_after, LAST_CHANGE) is beyond
