"""Origin and session: hostile handshakes are refused, revoked credentials close open sockets.

Origins are checked before the gateway runs (minga.realtime.OriginPolicy over ALLOWED_HOSTS);
revocation goes through the bus frame `session.revoked` that forums.apps publishes on logout,
deactivation, password change and token revocation (docs/realtime-protocol.md §10); a membership
change goes through `access.changed`, and every frame is checked against the database.
"""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from community.models import ApiToken, User
from community.services import api_token_create
from forums.models import Message, Room, Thread
from tests.factories import PASSWORD
from tests.forums.factories import ThreadFactory, member_in
from tests.reliability.support import (
    close_code,
    member_socket,
    open_socket,
    recv,
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
NEW_PASSWORD = "a-new-and-long-passphrase-7"


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


def _private_thread(author: User) -> Thread:
    """A thread in wg1-private, a room of wg1 readable by its working group only."""
    room = Room.objects.create(
        slug="wg1-private",
        title="Private room of wg1",
        working_group=author.memberships.get().working_group,
        visibility=Room.Visibility.WORKING_GROUP,
    )
    return ThreadFactory(room=room, author=author)


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


def _change_password(client: Client) -> int:
    """The real password-change page (allauth): the old password, the new one twice."""
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    return response.status_code


def _revoke_token_on_page(client: Client, token_id: int) -> int:
    return client.post(reverse("api_token_revoke", args=[token_id])).status_code


def _leave_group(client: Client) -> int:
    return client.post(reverse("working_group_leave", args=["wg1"])).status_code


def _token(member: User) -> tuple[int, tuple[bytes, bytes]]:
    token, key = api_token_create(member=member, name="revocation test")
    return token.pk, (b"authorization", f"Token {key}".encode())


def _password_is(member: User, password: str) -> bool:
    member.refresh_from_db()
    return member.check_password(password)


def _token_revoked(token_id: int) -> bool:
    return ApiToken.objects.get(pk=token_id).revoked_at is not None


async def _quiet(ws: WebsocketCommunicator) -> None:
    """Drain presence frames until the socket has been silent for a moment."""
    while not await ws.receive_nothing(timeout=0.3):
        await ws.receive_output(timeout=1)


@pytest.mark.parametrize(
    "revocation", ["logout", "deactivation", "password_change", "token_revocation"]
)
async def test_revocation_closes_socket_and_later_posts_do_not_reach_it(
    member: User, revocation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The credential that opened the socket stops counting: the socket is closed with 4403
    within 5 s (a bounded wait on the close, not a measurement), and a message posted after
    that reaches a bystander in the room but never the closed socket."""
    bystander = await database_sync_to_async(member_in)("wg1")
    thread = await database_sync_to_async(_thread)(bystander)
    client, cookie = await database_sync_to_async(_cookie)(member)
    headers = [(b"origin", b"http://localhost"), cookie]
    token_id = 0
    if revocation == "token_revocation":
        token_id, authorization = await database_sync_to_async(_token)(member)
        headers = [authorization]  # a program: no Origin, the token alone speaks
    victim, connected = await open_socket(headers)
    assert connected
    async with member_socket(bystander) as other:
        await send(victim, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(victim, "subscribed")
        await send(other, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(other, "subscribed")
        await _quiet(victim)

        if revocation == "logout":
            done = await database_sync_to_async(_logout)(client) == 302
        elif revocation == "deactivation":
            await database_sync_to_async(_deactivate)(member)
            done = True
        elif revocation == "password_change":
            await database_sync_to_async(_change_password)(client)
            done = await database_sync_to_async(_password_is)(member, NEW_PASSWORD)
        else:
            await database_sync_to_async(_revoke_token_on_page)(client, token_id)
            done = await database_sync_to_async(_token_revoked)(token_id)
        code = await close_code(victim, seconds=5)
        status = await database_sync_to_async(_post_over_api)(bystander, thread, "after revocation")
        bystander_got = (await recv_until(other, "message.created"))["message"]["body"]
        victim_silent = await victim.receive_nothing(timeout=0.5)
    await victim.disconnect()

    report(
        capsys,
        f"REVOCATION ({revocation})",
        f"revoked: {done}; socket closed with {code} (waited at most 5 s); post after "
        f"revocation {status}, reached bystander: {bystander_got == 'after revocation'}, "
        f"reached revoked socket: {not victim_silent}",
    )
    assert (done, code, status, bystander_got, victim_silent) == (
        True,
        4403,
        201,
        "after revocation",
        True,
    )
    assert await database_sync_to_async(_count)("after revocation") == 1


async def test_removal_from_the_group_revokes_posting_on_the_open_socket(
    plan: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Leaving wg1 (the real page) takes posting in wg1-a away at once on the open socket: the
    next `message.send` is refused `forbidden` and stores nothing. Reading wg1-a stays: topic
    rooms are network rooms, readable by every participant (docs/permissions.md), so the
    server's re-check after the membership change (`access.changed`) keeps that subscription
    and the bystander's later message there still reaches both. wg1-private, a room of wg1
    readable by its working group only, is taken away: `unsubscribed` (reason `forbidden`)
    within 5 s, and the bystander's later post there never reaches the removed member."""
    removed = await database_sync_to_async(member_in)("wg1")
    bystander = await database_sync_to_async(member_in)("wg1")
    thread = await database_sync_to_async(_thread)(bystander)
    private_thread = await database_sync_to_async(_private_thread)(bystander)
    client, cookie = await database_sync_to_async(_cookie)(removed)
    victim, connected = await open_socket([(b"origin", b"http://localhost"), cookie])
    assert connected
    async with member_socket(bystander) as other:
        for ws in (victim, other):
            for slug in ("wg1-a", "wg1-private"):
                await send(ws, {"type": "subscribe", "room": slug, "after": None})
                await recv_until(ws, "subscribed")
        await _quiet(victim)

        left = await database_sync_to_async(_leave_group)(client)
        gone = await recv_until(victim, "unsubscribed", seconds=5)
        client_id = str(uuid.uuid4())
        send_frame = {
            "type": "message.send",
            "room": "wg1-a",
            "thread": thread.pk,
            "body": "after removal",
            "client_id": client_id,
        }
        await send(victim, send_frame)
        refused = await recv_until(victim, "error", seconds=5)
        private_status = await database_sync_to_async(_post_over_api)(
            bystander, private_thread, "private after leaving"
        )
        status = await database_sync_to_async(_post_over_api)(bystander, thread, "after leaving")
        bystander_got = [
            (await recv_until(other, "message.created"))["message"]["body"] for _ in range(2)
        ]
        frames: list[tuple[str, str | None]] = []
        while True:
            frame = await recv(victim, 5)
            frames.append((frame["type"], frame.get("room")))
            if frame["type"] == "message.created":
                break
        while not await victim.receive_nothing(timeout=0.5):
            frame = await recv(victim, 1)
            frames.append((frame["type"], frame.get("room")))
    await victim.disconnect()

    stored = await database_sync_to_async(_count)("after removal")
    private_frames = [f for f in frames if f[1] == "wg1-private"]
    report(
        capsys,
        "REVOCATION (removal from the group)",
        f"left wg1: {left}; wg1-private (working group only) unsubscribed with reason "
        f"{gone.get('reason')!r} within 5 s, its later frames reaching the removed member: "
        f"{len(private_frames)}; next message.send answered {refused['code']!r} within 5 s, "
        f"stored {stored}; wg1-a (a network room) stays subscribed, the bystander's later post "
        f"reached the removed member: {('message.created', 'wg1-a') in frames}",
    )
    assert (left, gone) == (
        302,
        {"type": "unsubscribed", "room": "wg1-private", "reason": "forbidden"},
    )
    assert (refused["client_id"], refused["code"], stored) == (client_id, "forbidden", 0)
    assert (private_status, status) == (201, 201)
    assert bystander_got == ["private after leaving", "after leaving"]
    assert private_frames == []
    assert ("message.created", "wg1-a") in frames
    assert [f for f in frames if f[0] == "unsubscribed"] == []


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
