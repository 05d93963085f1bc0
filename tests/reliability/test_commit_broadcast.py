"""Commit versus broadcast: the database is the source of truth, the socket a fast path over it.

- A write that rolls back broadcasts nothing and takes no seq and no change number.
- A web process killed between the commit and the broadcast loses nothing: a real Python process
  (against this test's PostgreSQL database and the real Redis channel layer) posts a message and
  dies with `os._exit(9)` in an on_commit hook registered before the service's broadcast hook. The
  message is stored, no frame reached the room's subscriber, and a client that reconnects with
  `after` gets it exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from minga.pytest_plugin import POSTGRES_URL

from community.models import Role, User, WorkingGroup
from forums import services
from forums.models import Message, Room, Thread
from tests.factories import MembershipFactory, UserFactory
from tests.reliability.support import member_socket, recv, report, send

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent

# Runs in a child process: posts, and dies after the commit, before the broadcast.
KILLED_POSTER = textwrap.dedent(
    """
    import os, sys, uuid
    import django

    django.setup()
    from django.db import transaction
    from community.models import User
    from forums import services
    from forums.models import Thread

    thread = Thread.objects.get(pk=int(sys.argv[1]))
    author = User.objects.get(pk=int(sys.argv[2]))

    def die() -> None:
        # Registered before message_post's hooks, so it runs first: the commit is done, the
        # frame is not published yet.
        sys.stdout.flush()
        os._exit(9)

    with transaction.atomic():
        transaction.on_commit(die)
        services.message_post(
            thread=thread, author=author, body="Committed, never announced",
            client_id=uuid.UUID(sys.argv[3]),
        )
    print("survived the commit", flush=True)
    """
)


class RollbackError(Exception):
    pass


def _arrange() -> tuple[User, User, Thread]:
    room = Room.objects.create(
        slug=f"cb-{uuid.uuid4().hex[:10]}",
        title="Commit and broadcast",
        working_group=WorkingGroup.objects.get(slug="wg1"),
    )
    author, reader = UserFactory(), UserFactory()
    for user in (author, reader):
        MembershipFactory(member=user, role=Role.MEMBER)
    thread = services.thread_create(room=room, author=author, title="Minutes", body="Opening")
    return author, reader, thread


def _marks(room_id: int) -> tuple[int, int, int]:
    room = Room.objects.get(pk=room_id)
    return room.last_seq, room.last_change, Message.objects.filter(room=room).count()


def _rolled_back_post_and_edit(author: User, thread: Thread) -> int:
    """A post and an edit inside a transaction that rolls back; returns how many raised."""
    first = Message.objects.get(thread=thread)
    rolled = 0
    for write in (
        lambda: services.message_post(
            thread=thread, author=author, body="Rolled back", client_id=uuid.uuid4()
        ),
        lambda: services.message_edit(message=first, editor=author, body="Rolled back edit"),
    ):
        try:
            with transaction.atomic():
                write()
                raise RollbackError
        except RollbackError:
            rolled += 1
    return rolled


async def _settled(ws: WebsocketCommunicator, slug: str) -> list[dict[str, Any]]:
    """Frames of room `slug` that arrive before two ping round trips complete."""
    got = []
    for _ in range(2):
        await send(ws, {"type": "ping"})
        while (frame := await recv(ws)) != {"type": "pong"}:
            if frame.get("room") == slug:
                got.append(frame)
    return got


async def test_rolled_back_writes_broadcast_nothing(
    plan: None, capsys: pytest.CaptureFixture[str]
) -> None:
    author, reader, thread = await database_sync_to_async(_arrange)()
    slug = thread.room.slug
    before = await database_sync_to_async(_marks)(thread.room_id)
    async with member_socket(reader) as ws:
        await send(ws, {"type": "subscribe", "room": slug, "after": 1, "changes_after": 0})
        while (await recv(ws))["type"] != "caught_up":
            pass
        rolled = await database_sync_to_async(_rolled_back_post_and_edit)(author, thread)
        frames = [f for f in await _settled(ws, slug) if f["type"] != "presence"]
    after = await database_sync_to_async(_marks)(thread.room_id)

    report(
        capsys,
        "COMMIT-BROADCAST (rollback)",
        f"{rolled} writes rolled back, frames broadcast {len(frames)}, "
        f"seq/change/messages before {before} after {after}",
    )
    assert (rolled, frames, after) == (2, [], before)


@pytest.mark.redis
@pytest.mark.postgres
async def test_process_killed_between_commit_and_broadcast_loses_nothing(
    plan: None, settings: Any, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: the child process reads the test database")
    prefix = f"cb{uuid.uuid4().hex[:10]}"
    # The real channel layer, scoped by a prefix of this test's own (one Redis is shared).
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        }
    }
    channel_layers.backends.clear()
    author, reader, thread = await database_sync_to_async(_arrange)()
    slug = thread.room.slug
    client_id = uuid.uuid4()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "minga.settings",
        "DATABASE_URL": urlunsplit(
            urlsplit(POSTGRES_URL)._replace(path=f"/{connection.settings_dict['NAME']}")
        ),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "HTTPS": "0",
    }
    try:
        async with member_socket(reader) as live:
            await send(live, {"type": "subscribe", "room": slug, "after": 1})
            assert (await recv(live))["type"] == "subscribed"
            started = time.monotonic()
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                KILLED_POSTER,
                str(thread.pk),
                str(author.pk),
                str(client_id),
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(child.communicate(), timeout=120)
            # Anything the child had published would be here by now: Redis pub/sub delivers
            # within milliseconds, and the child has exited.
            live_frames = [
                f for f in await _settled(live, slug) if f["type"] not in {"presence", "typing"}
            ]
            elapsed = time.monotonic() - started
        stored = await database_sync_to_async(
            lambda: list(Message.objects.filter(client_id=client_id).values_list("pk", "seq"))
        )()
        async with member_socket(reader) as back:
            await send(back, {"type": "subscribe", "room": slug, "after": 1, "changes_after": 0})
            replay = []
            while (frame := await recv(back))["type"] != "caught_up":
                replay.append(frame)
            replay += [f for f in await _settled(back, slug) if f["type"] != "presence"]
    finally:
        channel_layers.backends.clear()

    created = [f for f in replay if f["type"] == "message.created"]
    report(
        capsys,
        "COMMIT-BROADCAST",
        f"child exit {child.returncode} after commit ({elapsed:.1f} s), stored {len(stored)}, "
        f"live frames {len(live_frames)}, replayed on reconnect {len(created)} "
        f"(lost {len(stored) - len({f['message']['id'] for f in created})})",
    )
    assert (child.returncode, out) == (9, b""), err.decode(errors="replace")
    assert len(stored) == 1
    assert live_frames == []
    assert [
        (f["seq"], f["message"]["id"], f["message"]["body"]) for f in replay if f.get("message")
    ] == [(stored[0][1], stored[0][0], "Committed, never announced")]
    assert json.dumps(replay).count('"message.created"') == 1
