"""What a room's sockets missed, read back from the database: the replay a `subscribe` with
`after` (and `changes_after`) gets (forums.consumers), and the hub's recovery of a room group's
frames after this process's Redis subscriptions were lost (`recover_rooms`,
notifications.bus.recover_with; registered by ForumsConfig.ready).

Both read the same rows and send the same frames the live path sent: `message.created` in seq
order (a thread's first message with `new_thread`), then the changes to messages the client
already had, in change order; `resync` when the gap is over RESYNC_GAP.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Min
from minga.realtime import db_hop

from notifications import bus

from . import selectors
from .frames import REPLAY_BATCH, RESYNC_GAP, dumps
from .models import ContentChange, Message, Room, Thread


def replay_batch(room_id: int, slug: str, after: int, upto: int) -> tuple[list[str], int]:
    """Up to REPLAY_BATCH `message.created` texts for seq in (after, upto], and the last seq."""
    room = Room.objects.get(pk=room_id)
    messages = [
        m
        for m in selectors.messages_after(room=room, after_seq=after, limit=REPLAY_BATCH)
        if m.seq <= upto
    ]
    if not messages:
        return [], upto
    # A thread's first message carries the thread (`new_thread`), as the live frame does.
    firsts = dict(
        Message.objects.filter(thread_id__in={m.thread_id for m in messages})
        .values("thread_id")
        .annotate(first=Min("seq"))
        .values_list("thread_id", "first")
    )
    texts = []
    for m in messages:
        frame: dict[str, Any] = {
            "type": "message.created",
            "room": slug,
            "seq": m.seq,
            "message": selectors.message_payload(m),
        }
        if firsts.get(m.thread_id) == m.seq:
            frame["new_thread"] = selectors.thread_payload(m.thread)
        texts.append(dumps(frame))
    return texts, messages[-1].seq


def _change_frame(row: Message | Thread, slug: str, seq: int, changes_after: int) -> dict[str, Any]:
    """The frame the live path sent for `row`'s newest change, with its current state.

    A message whose content (body, deletion, hiding) changed after `changes_after` is sent whole,
    as the frame of its present state; one whose reactions alone changed, as `reaction.changed`.
    Hidden messages carry no body, to anyone, as live (selectors.message_payload).
    """
    base: dict[str, Any] = {"room": slug, "seq": seq, "change": row.change}
    if isinstance(row, Thread):
        return {"type": "thread.updated", **base, "thread": selectors.thread_payload(row)}
    if row.content_change <= changes_after:
        return {
            "type": "reaction.changed",
            **base,
            "message_id": row.pk,
            "reactions": selectors.reaction_counts(row),
        }
    if row.deleted_at is not None:
        kind = "message.deleted"
    elif row.hidden_at is not None:
        kind = "message.hidden"
    elif row.content_kind == ContentChange.UNHIDDEN:
        kind = "message.unhidden"
    else:
        kind = "message.edited"
    return {"type": kind, **base, "message": selectors.message_payload(row)}


def replay_changes(
    room_id: int, slug: str, after: int, changes_after: int, marks: tuple[int, int]
) -> list[str]:
    """The change frames for messages with seq <= after (and threads opened by then) whose change
    is in (changes_after, last_change], in change order; `marks` = (last_seq, last_change) read
    when the socket had joined the room's group. A fixed number of queries."""
    last_seq, last_change = marks
    rows = selectors.changed_since(
        room_id=room_id, upto_seq=after, changes_after=changes_after, upto_change=last_change
    )
    return [dumps(_change_frame(row, slug, last_seq, changes_after)) for row in rows]


def missed_frames(rooms: dict[int, tuple[int, int]]) -> list[dict[str, Any]]:
    """What the sockets of each room missed past its marks (seq, change), as bus messages to
    deliver to the room's group: the messages committed since, in seq order, then the changes
    to those they had, in change order, as a subscribe with `after` and `changes_after`
    replays them; `resync` past RESYNC_GAP. The last of a room's carries its new marks. A
    query for the rooms, then a fixed number per room that missed something."""
    missed: list[dict[str, Any]] = []
    current = Room.objects.filter(pk__in=list(rooms)).values_list(
        "pk", "slug", "last_seq", "last_change"
    )
    for room_id, slug, last_seq, last_change in current:
        seq, change = rooms[room_id]
        if last_seq <= seq and last_change <= change:
            continue
        group, marks = bus.room_group(room_id), (last_seq, last_change)
        if beyond_replay(seq, last_seq, change, last_change):
            frame = {
                "type": "resync",
                "room": slug,
                "last_seq": last_seq,
                "last_change": last_change,
            }
            texts = [dumps(frame)]
        else:
            texts, cursor = [], seq
            while cursor < last_seq:
                batch, cursor = replay_batch(room_id, slug, cursor, last_seq)
                texts.extend(batch)
                if not batch:
                    break
            if change < last_change:
                texts.extend(replay_changes(room_id, slug, seq, change, marks))
        frames = [{"group": group, "text": text} for text in texts]
        if frames:
            frames[-1].update(seq=last_seq, change=last_change)
        missed.extend(frames)
    return missed


async def recover_rooms(lost_at: dict[str, bus.Marks]) -> list[dict[str, Any]]:
    """The hub's recoverer for rooms (notifications.bus.recover_with): the frames each room
    group's sockets missed while this process's subscriptions were lost, from the database."""
    rooms = {}
    for group, marks in lost_at.items():
        room_id = bus.room_of(group)
        if room_id is not None:
            rooms[room_id] = (marks.seq, marks.change)
    if not rooms:
        return []
    return await db_hop(missed_frames)(rooms)


def beyond_replay(after: int, last_seq: int, changes_after: int | None, last_change: int) -> bool:
    """Marks (`after`, `changes_after`: None for a client that asks no change replay) that a
    replay cannot bring up to the room's (`last_seq`, `last_change`): ahead of them (from
    another database), or more than RESYNC_GAP messages or changes behind. The answer is
    `resync`."""
    if after > last_seq or last_seq - after > RESYNC_GAP:
        return True
    if changes_after is None:
        return False
    return changes_after > last_change or last_change - changes_after > RESYNC_GAP
