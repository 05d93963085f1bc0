"""Flood: a member sends ten times the posting limit over the socket and over the API.

Everything past the limit is refused with `rate_limited` (an `error` frame / HTTP 429) and not
stored, and another member of the room keeps receiving. Only the first refusal takes the room's
row lock: the service's cooldown (forums.services, FLOOD_COOLDOWN_MAX_SECONDS) answers the rest,
over both transports, before it. The window is widened to an hour (and the cooldown's bound with
it) so the figure does not depend on how fast a loaded machine runs the loop.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from community.models import Role, User
from forums import services
from forums.models import Message, Room, Thread
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import ThreadFactory
from tests.reliability.support import member_socket, recv_until, report, send
from tests.spies import record_calls

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 10
OFFERED = 10 * LIMIT


def _setup() -> tuple[User, User, User, Thread]:
    flooder, bystander, poster = (UserFactory() for _ in range(3))
    for user in (flooder, bystander, poster):
        MembershipFactory(member=user, role=Role.MEMBER)
    return flooder, bystander, poster, ThreadFactory(room=Room.objects.get(slug="wg1-a"))


def _api_flood(flooder: User, thread: Thread) -> Counter[tuple[int, str]]:
    client = Client()
    client.force_login(flooder)
    answers: Counter[tuple[int, str]] = Counter()
    for n in range(OFFERED):
        response = client.post(
            f"/api/v1/threads/{thread.pk}/messages/",
            {"body": f"api flood {n}", "client_id": str(uuid.uuid4())},
            content_type="application/json",
        )
        answers[(response.status_code, response.json().get("code", "created"))] += 1
    return answers


def _stored(prefix: str) -> int:
    return Message.objects.filter(body__startswith=prefix).count()


def _post(poster: User, thread: Thread, body: str) -> None:
    services.message_post(thread=thread, author=poster, body=body, client_id=uuid.uuid4())


async def _socket_flood(ws: Any, thread: Thread) -> Counter[str]:
    for n in range(OFFERED):
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": f"socket flood {n}",
                "client_id": str(uuid.uuid4()),
            },
        )
    answers: Counter[str] = Counter()
    while sum(answers.values()) < OFFERED:
        frame = json.loads(await ws.receive_from(timeout=30))
        if frame["type"] == "ack":
            answers["ack"] += 1
        elif frame["type"] == "error":
            answers[frame["code"]] += 1
    return answers


async def _bystander_bodies(ws: Any, until: str) -> list[str]:
    bodies = []
    while True:
        frame = await recv_until(ws, "message.created", seconds=30)
        bodies.append(frame["message"]["body"])
        if frame["message"]["body"] == until:
            return bodies


def _count_locks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every room row lock the services take, from any thread."""
    return record_calls(monkeypatch, services, "_take_seq")


async def test_flood_over_socket_and_api_is_refused_and_not_stored(
    plan: None, settings: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FORUMS_FLOOD_LIMIT = (LIMIT, 3600)
    monkeypatch.setattr(services, "FLOOD_COOLDOWN_MAX_SECONDS", 3600.0)
    flooder, bystander, poster, thread = await database_sync_to_async(_setup)()
    locks = _count_locks(monkeypatch)
    async with member_socket(flooder) as ws, member_socket(bystander) as other:
        await send(ws, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(ws, "subscribed")
        await send(other, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(other, "subscribed")

        socket_answers = await _socket_flood(ws, thread)
        api_answers = await database_sync_to_async(_api_flood)(flooder, thread)
        flood_locks = len(locks)
        await database_sync_to_async(_post)(poster, thread, "bystander still hears")
        bodies = await _bystander_bodies(other, "bystander still hears")
    socket_stored = await database_sync_to_async(_stored)("socket flood")
    api_stored = await database_sync_to_async(_stored)("api flood")

    report(
        capsys,
        "FLOOD",
        f"limit {LIMIT}; socket offered {OFFERED}: accepted {socket_answers['ack']}, "
        f"rate_limited {socket_answers['rate_limited']}, stored {socket_stored}; API offered "
        f"{OFFERED}: accepted {api_answers[(201, 'created')]}, 429 rate_limited "
        f"{api_answers[(429, 'rate_limited')]}, stored {api_stored}; bystander delivery "
        f"{len(bodies)}/{socket_stored + api_stored + 1}; room locks taken by the flood "
        f"{flood_locks} for {2 * OFFERED} posts (p95 latency: FLOOD-LATENCY in soak/)",
    )
    # The socket's accepted messages fill the limit; the API then refuses everything.
    assert socket_answers == Counter({"ack": LIMIT, "rate_limited": OFFERED - LIMIT})
    assert api_answers == Counter({(429, "rate_limited"): OFFERED})
    assert (socket_stored, api_stored) == (LIMIT, 0)
    # The accepted posts and the first refusal; every later refusal came before the lock.
    assert flood_locks == LIMIT + 1
    assert bodies[-1] == "bystander still hears"
    assert len(bodies) == LIMIT + 1


async def test_flood_over_api_alone_is_refused_past_the_limit(plan: None, settings: Any) -> None:
    settings.FORUMS_FLOOD_LIMIT = (LIMIT, 3600)
    flooder, _bystander, _poster, thread = await database_sync_to_async(_setup)()

    answers = await database_sync_to_async(_api_flood)(flooder, thread)

    assert answers == Counter({(201, "created"): LIMIT, (429, "rate_limited"): OFFERED - LIMIT})
    assert await database_sync_to_async(_stored)("api flood") == LIMIT
