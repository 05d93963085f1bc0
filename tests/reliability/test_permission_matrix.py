"""Permission matrix: every role x every action x every transport, from ONE table.

`POLICY` below is the table of docs/permissions.md (read room, post in room, moderate room) plus
the message rules of forums.services (only the author edits a message; the author or a room
moderator deletes one). Each cell is asked three ways where the transport offers the action (the
HTML pages, the JSON API, the websocket) and must match the table, and policy.py must agree with
the table too. Denials must not reveal existence: a forbidden thing and a missing one get the
same answer.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from community import policy
from community.models import Role, User
from forums.models import Message, Room, Thread
from tests.factories import MembershipFactory, UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory
from tests.reliability.support import (
    ORIGIN,
    open_socket,
    recv,
    recv_until,
    report,
    send,
    session_headers,
)

ROLES = (
    "anonymous",
    "unverified",
    "observer",
    "member",
    "room_moderator",  # chair of the room's working group
    "secretariat",
    "deactivated",
)

# The one table: action -> roles allowed, for the open room wg1-a and a message by someone else.
POLICY: dict[str, frozenset[str]] = {
    "read": frozenset({"observer", "member", "room_moderator", "secretariat"}),
    "post": frozenset({"member", "room_moderator", "secretariat"}),
    "edit_other": frozenset(),
    "delete_other": frozenset({"room_moderator", "secretariat"}),
    "moderate": frozenset({"room_moderator", "secretariat"}),
}
POLICY_FUNCTION = {
    "read": policy.can_read_room,
    "post": policy.can_post_in_room,
    "moderate": policy.can_moderate_room,
}


def make_role(role: str) -> User | None:
    """A user in `role` for wg1 (None for anonymous). `deactivated` was a wg1 member."""
    if role == "anonymous":
        return None
    if role == "unverified":
        user = UserFactory(verified=False)
        MembershipFactory(member=user, role=Role.MEMBER)
        return user
    if role == "secretariat":
        return UserFactory(is_staff=True)
    user = UserFactory()
    wg_role = {"observer": Role.OBSERVER, "room_moderator": Role.CHAIR}.get(role, Role.MEMBER)
    MembershipFactory(member=user, role=wg_role)
    return user


def logged_in(user: User | None, role: str) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
        if role == "deactivated":
            # Deactivated after signing in: the session must stop counting at once.
            user.is_active = False
            user.save()
    return client


def fresh_message(thread: Thread, author: User) -> Message:
    return MessageFactory(thread=thread, author=author)


def html_cells(client: Client, thread: Thread, author: User) -> dict[str, bool]:
    """What the pages let this client do (True = done)."""
    cells: dict[str, bool] = {}
    cells["read"] = client.get("/rooms/wg1-a/").status_code == 200
    before = Message.objects.filter(thread=thread).count()
    client.post(f"/threads/{thread.pk}/", {"body": "form post", "client_id": str(uuid.uuid4())})
    cells["post"] = Message.objects.filter(thread=thread).count() == before + 1
    target = fresh_message(thread, author)
    client.post(f"/messages/{target.pk}/edit/", {"body": "edited by someone else"})
    target.refresh_from_db()
    cells["edit_other"] = target.body == "edited by someone else"
    target = fresh_message(thread, author)
    client.post(f"/messages/{target.pk}/delete/")
    target.refresh_from_db()
    cells["delete_other"] = target.deleted_at is not None
    target = fresh_message(thread, author)
    client.post(f"/messages/{target.pk}/hide/", {"reason": "off topic"})
    target.refresh_from_db()
    cells["moderate"] = target.hidden_at is not None
    return cells


def api_cells(client: Client, thread: Thread, author: User) -> dict[str, bool]:
    cells: dict[str, bool] = {}
    rooms = client.get("/api/v1/rooms/")
    listed = rooms.status_code == 200 and "wg1-a" in {r["slug"] for r in rooms.json()}
    history = client.get(f"/api/v1/threads/{thread.pk}/messages/")
    cells["read"] = listed and history.status_code == 200
    posted = client.post(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"body": "api post", "client_id": str(uuid.uuid4())},
        content_type="application/json",
    )
    cells["post"] = posted.status_code == 201
    target = fresh_message(thread, author)
    client.patch(
        f"/api/v1/messages/{target.pk}/", {"body": "edited"}, content_type="application/json"
    )
    target.refresh_from_db()
    cells["edit_other"] = target.body == "edited"
    target = fresh_message(thread, author)
    client.delete(f"/api/v1/messages/{target.pk}/")
    target.refresh_from_db()
    cells["delete_other"] = target.deleted_at is not None
    return cells


def mismatches(
    role: str, transport: str, cells: dict[str, bool]
) -> list[tuple[str, str, str, bool]]:
    return [
        (role, transport, action, done)
        for action, done in cells.items()
        if done != (role in POLICY[action])
    ]


@pytest.mark.django_db
def test_permission_matrix_html_and_api_match_policy_table(
    plan: None, capsys: pytest.CaptureFixture[str]
) -> None:
    author = UserFactory()
    MembershipFactory(member=author, role=Role.MEMBER)
    room = Room.objects.get(slug="wg1-a")
    thread = ThreadFactory(room=room, author=author)
    MessageFactory(thread=thread, author=author)
    wrong: list[tuple[str, str, str, bool]] = []
    cells = 0
    for role in ROLES:
        user = make_role(role)
        for action, check in POLICY_FUNCTION.items():
            allowed = check(user if user is not None else _anonymous(), room)
            if role == "deactivated":
                user.is_active = False  # type: ignore[union-attr]
                allowed = check(user, room)
                user.is_active = True  # type: ignore[union-attr]
            if allowed != (role in POLICY[action]):
                wrong.append((role, "policy.py", action, allowed))
            cells += 1
        client = logged_in(user, role)
        for transport, cells_of in (("html", html_cells), ("api", api_cells)):
            found = cells_of(client, thread, author)
            cells += len(found)
            wrong.extend(mismatches(role, transport, found))

    report(
        capsys,
        "PERMISSION-MATRIX (policy.py+HTML+API)",
        f"{len(ROLES)} roles, {cells} cells, {cells - len(wrong)}/{cells} match docs/permissions.md",
    )
    assert wrong == []


def _anonymous() -> Any:
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()


@pytest.mark.django_db
def test_api_denial_same_for_missing_and_forbidden_things(plan: None) -> None:
    author = UserFactory()
    MembershipFactory(member=author, role=Role.MEMBER)
    thread = ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=author)
    message = MessageFactory(thread=thread, author=author)
    answers: dict[str, set[tuple[int, str]]] = {}
    for role in ("anonymous", "unverified", "deactivated"):
        client = logged_in(make_role(role), role)
        pairs = [
            ("/api/v1/rooms/wg1-a/threads/", "/api/v1/rooms/wg9-z/threads/"),
            (f"/api/v1/threads/{thread.pk}/messages/", "/api/v1/threads/999999/messages/"),
            (f"/api/v1/messages/{message.pk}/", "/api/v1/messages/999999/"),
        ]
        for existing, missing in pairs:
            for url in (existing, missing):
                method = client.delete if url.startswith("/api/v1/messages/") else client.get
                response = method(url)
                answers.setdefault(f"{role} {existing}", set()).add(
                    (response.status_code, response.json()["code"])
                )

    assert {key: len(value) for key, value in answers.items()} == dict.fromkeys(answers, 1)


@pytest.mark.django_db
def test_html_denial_same_for_missing_and_forbidden_room(plan: None) -> None:
    unverified = make_role("unverified")
    client = logged_in(unverified, "unverified")

    existing = client.get("/rooms/wg1-a/").status_code
    missing = client.get("/rooms/wg9-z/").status_code

    assert existing == missing


# --- The socket ---------------------------------------------------------------------------------


async def socket_cells(user: User | None, role: str, thread: Thread) -> dict[str, bool]:
    """Subscribe and message.send over the gateway (the protocol has no edit, delete or
    moderation frame: those are HTML and API only)."""
    if user is None:
        headers = [ORIGIN]
    else:
        headers = await database_sync_to_async(session_headers)(user)
        if role == "deactivated":
            await database_sync_to_async(_deactivate)(user)
    ws, connected = await open_socket(headers)
    cells = {"read": False, "post": False}
    try:
        if not connected:
            return cells
        await send(ws, {"type": "subscribe", "room": "wg1-a", "after": None})
        first = await ws.receive_output(timeout=10)
        if first["type"] == "websocket.close":
            return cells
        cells["read"] = '"subscribed"' in first.get("text", "")
        client_id = str(uuid.uuid4())
        await send(
            ws,
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": thread.pk,
                "body": "socket post",
                "client_id": client_id,
            },
        )
        while True:
            frame = await recv(ws)
            if frame.get("client_id") == client_id and frame["type"] in {"ack", "error"}:
                cells["post"] = frame["type"] == "ack"
                break
        return cells
    finally:
        await ws.disconnect()


def _deactivate(user: User) -> None:
    user.is_active = False
    user.save()


@pytest.mark.django_db(transaction=True)
async def test_permission_matrix_socket_matches_policy_table(
    plan: None, capsys: pytest.CaptureFixture[str]
) -> None:
    author = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(MembershipFactory)(member=author, role=Role.MEMBER)
    room = await database_sync_to_async(Room.objects.get)(slug="wg1-a")
    thread = await database_sync_to_async(ThreadFactory)(room=room, author=author)
    wrong: list[tuple[str, str, str, bool]] = []
    cells = 0
    for role in ROLES:
        user = await database_sync_to_async(make_role)(role)
        found = await socket_cells(user, role, thread)
        cells += len(found)
        wrong.extend(mismatches(role, "socket", found))

    report(
        capsys,
        "PERMISSION-MATRIX (socket)",
        f"{len(ROLES)} roles x 2 actions = {cells} cells, {cells - len(wrong)}/{cells} match",
    )
    assert wrong == []


@pytest.mark.django_db(transaction=True)
async def test_socket_denial_same_for_missing_and_existing_thread(member: User) -> None:
    """An observer posting to a thread they may read and to one that does not exist gets the same
    code; a subscribe to a missing room answers like a forbidden one (`forbidden`)."""
    from tests.reliability.support import member_socket

    observer = await database_sync_to_async(make_role)("observer")
    room = await database_sync_to_async(Room.objects.get)(slug="wg1-a")
    thread = await database_sync_to_async(ThreadFactory)(room=room, author=member)
    codes: list[str] = []
    async with member_socket(observer) as ws:
        await send(ws, {"type": "subscribe", "room": "wg1-a", "after": None})
        await recv_until(ws, "subscribed")
        for thread_id in (thread.pk, 999_999):
            await send(
                ws,
                {
                    "type": "message.send",
                    "room": "wg1-a",
                    "thread": thread_id,
                    "body": "hello",
                    "client_id": str(uuid.uuid4()),
                },
            )
            codes.append((await recv_until(ws, "error"))["code"])
        await send(ws, {"type": "subscribe", "room": "wg9-z", "after": None})
        codes.append((await recv_until(ws, "error"))["code"])

    assert codes == ["forbidden", "forbidden", "forbidden"]
