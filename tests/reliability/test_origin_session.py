"""Origin and session: hostile handshakes are refused, revoked credentials close open sockets.

Origins are checked before the gateway runs (minga.realtime.OriginPolicy over ALLOWED_HOSTS);
revocation goes through the bus frame `session.revoked` that forums.apps publishes on logout and
deactivation (docs/realtime-protocol.md §10).
"""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from community.models import User
from forums.models import Message, Room, Thread
from tests.forums.factories import ThreadFactory, member_in
from tests.reliability.support import (
    close_code,
    member_socket,
    open_socket,
    recv_until,
    report,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_ORIGINS = (
    b"http://evil.example",
    b"http://localhost.evil.com",  # look-alike suffix
    b"http://evillocalhost",  # look-alike prefix
    b"http://127.0.0.1.evil.com",
    b"http://testserver.evil.com",
    b"null",  # sandboxed iframes, file: pages
    b"http://xn--lcalhost-9za",  # punycode look-alike
    b"",
)
# Same host, other scheme or port: another origin in the browser's sense.
MISMATCHED_ORIGINS = (b"https://localhost", b"http://localhost:9999", b"ws://localhost")


def _cookie(user: User) -> tuple[Client, tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return client, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def _accepted(origin: bytes | None, cookie: tuple[bytes, bytes]) -> bool:
    headers = [cookie] if origin is None else [(b"origin", origin), cookie]
    ws, connected = await open_socket(headers)
    await ws.disconnect()
    return connected


async def test_hostile_origins_are_refused_with_a_valid_session(
    member: User, capsys: pytest.CaptureFixture[str]
) -> None:
    _client, cookie = await database_sync_to_async(_cookie)(member)
    offered = [*HOSTILE_ORIGINS, None]  # None: no Origin header, only the cookie

    accepted = [o for o in offered if await _accepted(o, cookie)]
    allowed = await _accepted(b"http://localhost", cookie)

    report(
        capsys,
        "ORIGIN",
        f"{len(offered)} hostile origins (incl. null, missing, look-alikes), "
        f"{len(accepted)} accepted; allowed origin accepted: {allowed}",
    )
    assert (accepted, allowed) == ([], True)


async def test_same_host_other_scheme_or_port_is_refused(member: User) -> None:
    _client, cookie = await database_sync_to_async(_cookie)(member)

    accepted = [o for o in MISMATCHED_ORIGINS if await _accepted(o, cookie)]

    assert accepted == []


def _thread(author: User) -> Thread:
    return ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=author)


def _post_over_api(author: User, thread: Thread, body: str) -> int:
    client = Client()
    client.force_login(author)
    response = client.post(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"body": body, "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )
    return response.status_code


def _count(body: str) -> int:
    return Message.objects.filter(body=body).count()


def _logout(client: Client) -> int:
    return client.post("/accounts/logout/").status_code


def _deactivate(user: User) -> None:
    user.is_active = False
    user.save()


@pytest.mark.parametrize("revocation", ["logout", "deactivation"])
async def test_revocation_closes_socket_and_later_posts_do_not_reach_it(
    member: User, revocation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bystander = await database_sync_to_async(member_in)("wg1")
    thread = await database_sync_to_async(_thread)(bystander)
    client, cookie = await database_sync_to_async(_cookie)(member)
    victim, connected = await open_socket([(b"origin", b"http://localhost"), cookie])
    assert connected
    async with member_socket(bystander) as other:
        await send(victim, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(victim, "subscribed")
        await send(other, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(other, "subscribed")
        while not await victim.receive_nothing(timeout=0.3):
            await victim.receive_output(timeout=1)  # presence frames

        if revocation == "logout":
            await database_sync_to_async(_logout)(client)
        else:
            await database_sync_to_async(_deactivate)(member)
        code = await close_code(victim)
        status = await database_sync_to_async(_post_over_api)(bystander, thread, "after revocation")
        bystander_got = (await recv_until(other, "message.created"))["message"]["body"]
        victim_silent = await victim.receive_nothing(timeout=0.5)
    await victim.disconnect()

    report(
        capsys,
        f"REVOCATION ({revocation})",
        f"socket closed with {code}; post after revocation {status}, "
        f"reached bystander: {bystander_got == 'after revocation'}, reached revoked socket: "
        f"{not victim_silent}",
    )
    assert (code, status, bystander_got, victim_silent) == (4403, 201, "after revocation", True)
    assert await database_sync_to_async(_count)("after revocation") == 1


async def test_logout_leaves_the_members_other_session_connected(member: User) -> None:
    client, cookie = await database_sync_to_async(_cookie)(member)
    first, _ = await open_socket([(b"origin", b"http://localhost"), cookie])
    async with member_socket(member) as second:
        await database_sync_to_async(_logout)(client)
        code = await close_code(first)
        await send(second, {"type": "ping"})
        answer = await recv_until(second, "pong")
    await first.disconnect()

    assert (code, answer) == (4403, {"type": "pong"})
