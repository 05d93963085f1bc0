"""Personal API tokens: made in account settings or by `issue_token`, shown once, stored hashed,
revocable; they authenticate the API and the live socket."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from minga.asgi import application

from community.models import ApiToken, User
from community.services import api_token_create
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _me(key: str) -> tuple[int, dict[str, object]]:
    response = Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {key}")
    return response.status_code, response.json()


# --- Account settings page --------------------------------------------------------------------


def test_token_created_on_settings_page_is_shown_once_and_stored_hashed(
    client: Client, member: User
) -> None:
    client.force_login(member)

    created = client.post(reverse("api_tokens"), {"name": "reporting script"})
    later = client.get(reverse("api_tokens"))

    key = created.context["new_key"]
    assert key.startswith("mga_")
    assert key in created.content.decode()
    assert created["Cache-Control"] == "no-store"
    assert later.context["new_key"] is None
    assert key not in later.content.decode()
    token = ApiToken.objects.get()
    assert (token.member, token.name, token.hint) == (member, "reporting script", key[:8])
    assert token.key_hash == ApiToken.hash_key(key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM community_apitoken")
        stored = cursor.fetchall()
    assert [key in str(value) for row in stored for value in row] == [False] * len(stored[0])


def test_token_list_shows_name_and_hint(client: Client, member: User) -> None:
    token, _key = api_token_create(member=member, name="nightly export")
    client.force_login(member)

    response = client.get(reverse("api_tokens"))

    assert list(response.context["tokens"]) == [token]
    assert "nightly export" in response.content.decode()
    assert f"{token.hint}…" in response.content.decode()


def test_token_list_shows_only_my_tokens(client: Client, member: User, chair: User) -> None:
    api_token_create(member=chair, name="chair's script")
    client.force_login(member)

    response = client.get(reverse("api_tokens"))

    assert list(response.context["tokens"]) == []


def test_token_without_name_is_a_field_error(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.post(reverse("api_tokens"), {"name": ""})

    assert list(response.context["form"].errors) == ["name"]
    assert ApiToken.objects.count() == 0


def test_token_authenticates_the_api(member: User) -> None:
    _token, key = api_token_create(member=member, name="script")

    status, body = _me(key)

    assert (status, body["email"]) == (200, "ana@trabajo.example")


def test_token_revoked_gets_401(client: Client, member: User) -> None:
    token, key = api_token_create(member=member, name="script")
    client.force_login(member)

    response = client.post(reverse("api_token_revoke", args=[token.pk]))

    assert response.status_code == 302
    assert _me(key) == (
        401,
        {"code": "unauthenticated", "detail": "Sign in, or send Authorization: Token <key>."},
    )
    assert list(client.get(reverse("api_tokens")).context["tokens"]) == []


def test_token_of_someone_else_cannot_be_revoked(client: Client, member: User, chair: User) -> None:
    token, key = api_token_create(member=chair, name="chair's script")
    client.force_login(member)

    client.post(reverse("api_token_revoke", args=[token.pk]))

    token.refresh_from_db()
    assert token.revoked_at is None
    assert _me(key)[0] == 200


def test_token_of_unverified_member_is_refused(db: None) -> None:
    user = UserFactory(verified=False)
    _token, key = api_token_create(member=user, name="script")

    assert _me(key)[0] == 401


def test_token_wrong_key_gets_401_json(member: User) -> None:
    api_token_create(member=member, name="script")

    assert _me("mga_not-a-real-key") == (
        401,
        {"code": "unauthenticated", "detail": "Sign in, or send Authorization: Token <key>."},
    )


# --- issue_token ------------------------------------------------------------------------------


def test_issue_token_prints_a_working_key(member: User) -> None:
    out = io.StringIO()

    call_command("issue_token", "ANA@trabajo.example", stdout=out)

    key = out.getvalue().strip()
    assert _me(key)[0] == 200
    assert ApiToken.objects.get().key_hash == ApiToken.hash_key(key)


def test_issue_token_unknown_email_is_a_command_error(plan: None) -> None:
    with pytest.raises(CommandError) as error:
        call_command("issue_token", "nobody@example.org", stdout=io.StringIO())

    assert str(error.value) == "No member with email 'nobody@example.org'."
    assert ApiToken.objects.count() == 0


# --- The live socket --------------------------------------------------------------------------


def _socket(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/", headers=list(headers))


@pytest.mark.django_db(transaction=True)
async def test_socket_with_token_authenticates() -> None:
    await database_sync_to_async(call_command)("seed_plan_of_action", stdout=io.StringIO())
    user = await database_sync_to_async(UserFactory)()
    _token, key = await database_sync_to_async(api_token_create)(member=user, name="bot")
    socket = _socket((b"origin", b"http://localhost"), (b"authorization", f"Token {key}".encode()))

    connected, _ = await socket.connect()
    await socket.send_to(text_data=json.dumps({"type": "ping"}))
    reply = await socket.receive_json_from()
    await socket.disconnect()

    assert connected is True
    assert reply == {"type": "pong"}


@pytest.mark.django_db(transaction=True)
async def test_socket_without_credentials_closes_4401() -> None:
    socket = _socket((b"origin", b"http://localhost"))

    connected, _ = await socket.connect()
    closed = await socket.receive_output()
    await socket.disconnect()

    assert connected is True
    assert closed == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_socket_with_revoked_token_closes_4401() -> None:
    user = await database_sync_to_async(UserFactory)()
    token, key = await database_sync_to_async(api_token_create)(member=user, name="bot")
    await ApiToken.objects.filter(pk=token.pk).aupdate(revoked_at=token.created)
    socket = _socket((b"origin", b"http://localhost"), (b"authorization", f"Token {key}".encode()))

    await socket.connect()
    closed = await socket.receive_output()
    await socket.disconnect()

    assert closed == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_socket_from_hostile_origin_is_refused() -> None:
    user = await database_sync_to_async(UserFactory)()
    _token, key = await database_sync_to_async(api_token_create)(member=user, name="bot")
    socket = _socket(
        (b"origin", b"https://evil.example"), (b"authorization", f"Token {key}".encode())
    )

    connected, code = await socket.connect()
    await socket.disconnect()

    # Refused before the handshake completes (channels' WebsocketDenier: a plain close).
    assert (connected, code) == (False, 1000)


def test_issue_token_deactivated_member_is_a_command_error(db: None) -> None:
    UserFactory(email="gone@example.org", is_active=False)

    with pytest.raises(CommandError) as error:
        call_command("issue_token", "gone@example.org", stdout=io.StringIO())

    assert str(error.value) == "gone@example.org is deactivated; reactivate the account first."
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db(transaction=True)
async def test_program_without_origin_connects_with_its_token() -> None:
    """No Origin means no browser, so no cross-site risk: a token alone authenticates a program."""
    user = await database_sync_to_async(UserFactory)()
    _token, key = await database_sync_to_async(api_token_create)(member=user, name="bot")
    socket = _socket((b"authorization", f"Token {key}".encode()))

    connected, _ = await socket.connect()
    await socket.send_json_to({"type": "ping"})
    answer = await socket.receive_json_from()
    await socket.disconnect()

    assert connected is True
    assert answer == {"type": "pong"}


@pytest.mark.django_db(transaction=True)
async def test_socket_without_origin_and_only_a_cookie_is_refused() -> None:
    client = Client()
    user = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = _socket((b"cookie", cookie))

    connected, code = await socket.connect()
    await socket.disconnect()

    assert (connected, code) == (False, 1000)


@pytest.mark.django_db(transaction=True)
async def test_program_without_origin_is_not_authenticated_by_a_cookie() -> None:
    # Without an Origin, cookies are ignored: only the token speaks, and a bad token is refused.
    client = Client()
    user = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = _socket((b"cookie", cookie), (b"authorization", b"Token mga_not-a-real-key"))

    await socket.connect()
    closed = await socket.receive_output()
    await socket.disconnect()

    assert closed == {"type": "websocket.close", "code": 4401}
