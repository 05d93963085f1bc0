"""A mention posted on one daphne process reaches the mentioned member's socket on another.

Reuses the forums' two-process cluster (tests/forums/test_multiprocess.py: its own PostgreSQL
database, real Redis, two daphne processes, members ana and bruno with API tokens): the
session-scoped `mp_cluster` of tests/conftest.py, started once for both modules.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from tests.forums.test_multiprocess import WAIT, Cluster, client, post, recv, subscribe

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def _api(cluster: Cluster, *, process: int, email: str, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.ports[process]}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Token {cluster.tokens[email]}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:  # noqa: S310
        return json.loads(response.read())


async def test_multiprocess_mention_reaches_member_socket_on_other_process(
    mp_cluster: Cluster,
) -> None:
    cluster = mp_cluster
    # Arrange: no email for mentions (no Celery worker runs here), then bruno opens a socket
    # on process 1 without subscribing to any room.
    prefs = await asyncio.to_thread(
        _api,
        cluster,
        process=1,
        email="bruno@mp.example",
        method="PUT",
        path="/api/v1/me/preferences/",
        body={"mention": {"in_app": True, "email": "off"}},
    )
    async with (
        client(cluster, 0, "ana@mp.example") as ana,
        client(cluster, 1, "bruno@mp.example") as bruno,
    ):
        await subscribe(ana, None)

        # Act
        ack = await post(ana, cluster, "¿Qué opinas, @bruno?")
        frame = await recv(bruno)

    # Assert
    assert prefs["mention"] == {"in_app": True, "email": "off"}
    assert (frame["type"], frame["notification"]["kind"], frame["unread_count"]) == (
        "notification",
        "mention",
        1,
    )
    assert frame["notification"]["url"] == f"/threads/{cluster.thread_id}/#m-{ack['message_id']}"
