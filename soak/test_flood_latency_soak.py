"""Flood, the latency half, in-process: a bystander's delivery p95 with and without a flood.

In-process (WebsocketCommunicator, the in-memory channel layer, PostgreSQL): it measures what the
gateway and the services add under a flood, not the network or Redis; the same measure against
real daphne processes and Redis is soak/test_flood_latency_servers_soak.py (FLOOD-LATENCY). A
figure, not an assertion on time: the assertions are on delivery and on what was stored.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from community.models import Role, User
from forums import services
from forums.models import Message, Room, Thread
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import ThreadFactory
from tests.reliability.support import member_socket, recv_until, report, send

pytestmark = [pytest.mark.soak, pytest.mark.django_db(transaction=True)]

POSTERS = 3
PER_POSTER = 10  # the default posting limit: each poster stays within it
FLOOD_RATE = 10.0  # frames per second: ten times the limit of 10 per 10 s


REFUSED = asyncio.Event()  # set by the flood at its first `rate_limited`


def _setup() -> tuple[User, User, list[User], Thread]:
    flooder, bystander = UserFactory(), UserFactory()
    posters = [UserFactory() for _ in range(3 * POSTERS)]
    for user in (flooder, bystander, *posters):
        MembershipFactory(member=user, role=Role.MEMBER)
    return flooder, bystander, posters, ThreadFactory(room=Room.objects.get(slug="wg1-a"))


def _post(author: User, thread: Thread, body: str) -> None:
    services.message_post(thread=thread, author=author, body=body, client_id=uuid.uuid4())


async def _latencies(ws: Any, posters: list[User], thread: Thread, tag: str) -> list[float]:
    """Seconds from the start of each post to the bystander's `message.created`."""
    out = []
    for n in range(POSTERS * PER_POSTER):
        body = f"{tag} {n}"
        started = time.perf_counter()
        await database_sync_to_async(_post)(posters[n % len(posters)], thread, body)
        while True:
            frame = await recv_until(ws, "message.created", seconds=30)
            if frame["message"]["body"] == body:
                break
        out.append(time.perf_counter() - started)
    return out


async def _flood(ws: Any, thread: Thread, stop: asyncio.Event, answers: dict[str, int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": f"flood-frame {n}",
                "client_id": str(uuid.uuid4()),
            },
        )
        while not await ws.receive_nothing(timeout=0.01):
            frame = json.loads(await ws.receive_from(timeout=5))
            if frame["type"] in {"ack", "error"}:
                key = frame["type"] if frame["type"] == "ack" else frame["code"]
                answers[key] = answers.get(key, 0) + 1
                if key == "rate_limited":
                    REFUSED.set()
        await asyncio.sleep(1 / FLOOD_RATE)
    while sum(answers.values()) < n:  # every frame sent gets its ack or error
        frame = json.loads(await ws.receive_from(timeout=30))
        if frame["type"] in {"ack", "error"}:
            key = frame["type"] if frame["type"] == "ack" else frame["code"]
            answers[key] = answers.get(key, 0) + 1


def _stored() -> int:
    return Message.objects.filter(body__startswith="flood-frame").count()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] * 1000


async def test_soak_flood_bystander_latency(plan: None, capsys: pytest.CaptureFixture[str]) -> None:
    flooder, bystander, posters, thread = await database_sync_to_async(_setup)()
    async with member_socket(flooder) as ws, member_socket(bystander) as other:
        for sock in (ws, other):
            await send(sock, {"type": "subscribe", "room": "wg1-a", "after": None})
            await recv_until(sock, "subscribed")
        await _latencies(other, posters[2 * POSTERS :], thread, "warm-up")  # caches, connections
        baseline = await _latencies(other, posters[:POSTERS], thread, "baseline")
        REFUSED.clear()
        stop, answers = asyncio.Event(), {}
        flooding = asyncio.create_task(_flood(ws, thread, stop, answers))
        await asyncio.wait_for(REFUSED.wait(), 60)  # measure once the flood is being refused
        under_flood = await _latencies(other, posters[POSTERS : 2 * POSTERS], thread, "flooded")
        stop.set()
        await flooding
    stored = await database_sync_to_async(_stored)()

    before, during = _p95(baseline), _p95(under_flood)
    report(
        capsys,
        "FLOOD-LATENCY (in-process)",
        f"bystander p95 {before:.1f} ms without flood, {during:.1f} ms with a flood of "
        f"{FLOOD_RATE:.0f} frames/s ({(during - before) / before:+.0%}); flood answers "
        f"{dict(sorted(answers.items()))}, flood messages stored {stored} (limit 10 per 10 s); "
        f"bystander delivery {len(baseline) + len(under_flood)}/{2 * POSTERS * PER_POSTER}",
    )
    delivered = len(baseline) + len(under_flood)
    assert (delivered, stored) == (2 * POSTERS * PER_POSTER, answers.get("ack", 0))  # noqa: S101
