"""The forums' JSON API under /api/v1/: shapes, coded errors, idempotency, query counts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from community.models import User
from community.services import api_token_create
from forums.models import Follow, Message, Reaction, Room, Thread
from tests.forums.factories import *  # noqa: F403 - fixtures
from tests.forums.factories import MessageFactory, ThreadFactory, member_in

pytestmark = pytest.mark.django_db


class Api:
    """A program using the API with `Authorization: Token <key>`."""

    def __init__(self, member: User) -> None:
        _token, key = api_token_create(member=member, name="tests")
        self.client = Client(HTTP_AUTHORIZATION=f"Token {key}")

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", params)

    def post(self, path: str, data: dict[str, Any]) -> Any:
        return self.client.post(f"/api/v1{path}", data, content_type="application/json")

    def patch(self, path: str, data: dict[str, Any]) -> Any:
        return self.client.patch(f"/api/v1{path}", data, content_type="application/json")

    def delete(self, path: str) -> Any:
        return self.client.delete(f"/api/v1{path}")


@pytest.fixture
def api(member: User) -> Api:
    return Api(member)


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# --- Rooms ------------------------------------------------------------------------------------


def test_rooms_list_has_every_room_with_unread_counts(
    api: Api, thread: Thread, chair: User
) -> None:
    MessageFactory(thread=thread, author=chair)

    response = api.get("/rooms/")

    rooms = {r["slug"]: r for r in response.json()}
    assert (response.status_code, len(rooms)) == (200, 25)
    assert rooms["wg1-a"] == {
        "slug": "wg1-a",
        "title": thread.room.title,
        "description": thread.room.description,
        "working_group": "wg1",
        "topic": "a",
        "state": "open",
        "visibility": "network",
        "slow_mode_seconds": 0,
        "last_seq": 1,
        "unread_count": 1,
        "can_post": True,
        "can_moderate": False,
    }
    assert (rooms["wg2-a"]["unread_count"], rooms["wg2-a"]["can_post"]) == (0, False)


def test_rooms_list_unauthenticated_is_401(plan: None) -> None:
    response = Client().get("/api/v1/rooms/")

    assert error(response) == (401, "unauthenticated")


# --- Threads ----------------------------------------------------------------------------------


def test_threads_list_shape(api: Api, thread: Thread, member: User) -> None:
    MessageFactory(thread=thread, author=member)
    thread.refresh_from_db()

    response = api.get("/rooms/wg1-a/threads/")

    assert response.status_code == 200
    assert response.json() == [
        {
            "id": thread.pk,
            "room": "wg1-a",
            "title": "Labor inspection",
            "author": {
                "id": member.pk,
                "name": "Ana Pérez",
                "organization": member.organization.name,
                "handle": "ana",
            },
            "created": thread.created.isoformat(),
            "pinned": False,
            "locked": False,
            "last_activity_at": thread.last_activity_at.isoformat(),
            "message_count": 1,
            "unread_count": 0,
        }
    ]


def test_threads_list_unknown_room_is_404(api: Api) -> None:
    assert error(api.get("/rooms/nope/threads/")) == (404, "not_found")


def test_thread_create_returns_201_and_thread(api: Api, room: Room) -> None:
    response = api.post("/rooms/wg1-a/threads/", {"title": "Youth employment", "body": "Ideas?"})

    thread = Thread.objects.get()
    assert (response.status_code, response.json()["id"], response.json()["message_count"]) == (
        201,
        thread.pk,
        1,
    )
    assert Message.objects.get().body == "Ideas?"


def test_thread_create_same_client_id_twice_is_one_thread(api: Api, room: Room) -> None:
    data = {"title": "Once", "body": "Body", "client_id": str(uuid.uuid4())}

    first = api.post("/rooms/wg1-a/threads/", data)
    again = api.post("/rooms/wg1-a/threads/", data)

    assert (first.json(), Thread.objects.count()) == (again.json(), 1)


def test_thread_create_observer_is_403(observer: User, room: Room) -> None:
    response = Api(observer).post("/rooms/wg1-a/threads/", {"title": "T", "body": "B"})

    assert error(response) == (403, "forbidden")
    assert Thread.objects.count() == 0


def test_thread_create_empty_title_is_400(api: Api, room: Room) -> None:
    assert error(api.post("/rooms/wg1-a/threads/", {"title": " ", "body": "B"})) == (
        400,
        "invalid",
    )


def test_thread_create_missing_body_is_422(api: Api, room: Room) -> None:
    assert error(api.post("/rooms/wg1-a/threads/", {"title": "T"})) == (422, "invalid")


def test_thread_create_archived_room_is_403_room_locked(api: Api, room: Room) -> None:
    Room.objects.filter(pk=room.pk).update(state=Room.State.ARCHIVED)

    assert error(api.post("/rooms/wg1-a/threads/", {"title": "T", "body": "B"})) == (
        403,
        "room_locked",
    )


# --- Messages ---------------------------------------------------------------------------------


def test_messages_list_pages_by_after_before_limit(api: Api, thread: Thread) -> None:
    made = [MessageFactory(thread=thread) for _ in range(5)]
    path = f"/threads/{thread.pk}/messages/"

    newest = api.get(path, limit=2).json()
    after = api.get(path, after=made[0].pk, limit=2).json()
    before = api.get(path, before=made[2].pk).json()

    assert [m["id"] for m in newest] == [made[3].pk, made[4].pk]
    assert [m["id"] for m in after] == [made[1].pk, made[2].pk]
    assert [m["id"] for m in before] == [made[0].pk, made[1].pk]


def test_messages_list_unknown_anchor_is_404(api: Api, thread: Thread) -> None:
    assert error(api.get(f"/threads/{thread.pk}/messages/", after=987654)) == (404, "not_found")


@pytest.mark.parametrize("limit", ["0", "201", "many"])
def test_messages_list_bad_limit_is_422(api: Api, thread: Thread, limit: str) -> None:
    assert error(api.get(f"/threads/{thread.pk}/messages/", limit=limit)) == (422, "invalid")


def test_messages_list_unknown_thread_is_404(api: Api) -> None:
    assert error(api.get("/threads/987654/messages/")) == (404, "not_found")


def test_message_post_returns_201_and_message(api: Api, thread: Thread, member: User) -> None:
    client_id = str(uuid.uuid4())

    response = api.post(
        f"/threads/{thread.pk}/messages/", {"body": "Hello *all*", "client_id": client_id}
    )

    message = Message.objects.get()
    body = response.json()
    assert response.status_code == 201
    assert body == {
        "id": message.pk,
        "seq": 1,
        "room": "wg1-a",
        "thread": thread.pk,
        "author": {
            "id": member.pk,
            "name": "Ana Pérez",
            "organization": member.organization.name,
            "handle": "ana",
        },
        "body": "Hello *all*",
        "body_html": "<p>Hello <em>all</em></p>\n",
        "created_at": message.created_at.isoformat(),
        "edited_at": None,
        "deleted": False,
        "hidden": False,
        "reply_to": None,
        "client_id": client_id,
        "reactions": {},
        "mentions": [],
        "attachments": [],
    }


def test_message_post_same_client_id_twice_same_response(api: Api, thread: Thread) -> None:
    data = {"body": "Only once", "client_id": str(uuid.uuid4())}
    path = f"/threads/{thread.pk}/messages/"

    first = api.post(path, data)
    again = api.post(path, data)

    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert Message.objects.count() == 1


def test_message_post_without_client_id_gets_one(api: Api, thread: Thread) -> None:
    response = api.post(f"/threads/{thread.pk}/messages/", {"body": "No key"})

    assert response.json()["client_id"] == str(Message.objects.get().client_id)


def test_message_post_too_long_is_400(api: Api, thread: Thread) -> None:
    response = api.post(f"/threads/{thread.pk}/messages/", {"body": "x" * 20_001})

    assert error(response) == (400, "too_long")
    assert Message.objects.count() == 0


def test_message_post_empty_is_400(api: Api, thread: Thread) -> None:
    assert error(api.post(f"/threads/{thread.pk}/messages/", {"body": "  "})) == (400, "invalid")


def test_message_post_flood_is_429(api: Api, thread: Thread, settings: Any) -> None:
    settings.FORUMS_FLOOD_LIMIT = (1, 10)
    api.post(f"/threads/{thread.pk}/messages/", {"body": "one"})

    response = api.post(f"/threads/{thread.pk}/messages/", {"body": "two"})

    assert error(response) == (429, "rate_limited")
    assert Message.objects.count() == 1


def test_message_post_locked_thread_is_403(api: Api, thread: Thread) -> None:
    Thread.objects.filter(pk=thread.pk).update(locked=True)

    response = api.post(f"/threads/{thread.pk}/messages/", {"body": "hi"})

    assert error(response) == (403, "thread_locked")


def test_message_post_bad_reply_to_is_400(api: Api, thread: Thread) -> None:
    response = api.post(f"/threads/{thread.pk}/messages/", {"body": "hi", "reply_to": 987654})

    assert error(response) == (400, "invalid")


def test_message_post_bad_client_id_is_422(api: Api, thread: Thread) -> None:
    response = api.post(f"/threads/{thread.pk}/messages/", {"body": "hi", "client_id": "nope"})

    assert error(response) == (422, "invalid")


def test_message_edit_own(api: Api, thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member, body="Frist")

    response = api.patch(f"/messages/{message.pk}/", {"body": "First"})

    body = response.json()
    assert (response.status_code, body["body"], body["edited_at"] is not None) == (
        200,
        "First",
        True,
    )


def test_message_edit_others_is_403(api: Api, thread: Thread, chair: User) -> None:
    message = MessageFactory(thread=thread, author=chair, body="Mine")

    assert error(api.patch(f"/messages/{message.pk}/", {"body": "Yours"})) == (403, "forbidden")


def test_message_delete_own_leaves_tombstone(api: Api, thread: Thread, member: User) -> None:
    message = MessageFactory(thread=thread, author=member, body="Oops")

    response = api.delete(f"/messages/{message.pk}/")

    body = response.json()
    assert (response.status_code, body["deleted"], body["body"], body["seq"]) == (
        200,
        True,
        "",
        1,
    )


def test_message_delete_by_moderator(thread: Thread, member: User, chair: User) -> None:
    message = MessageFactory(thread=thread, author=member)

    response = Api(chair).delete(f"/messages/{message.pk}/")

    assert (response.status_code, response.json()["deleted"]) == (200, True)


def test_message_delete_others_is_403(api: Api, thread: Thread, chair: User) -> None:
    message = MessageFactory(thread=thread, author=chair)

    assert error(api.delete(f"/messages/{message.pk}/")) == (403, "forbidden")


def test_message_delete_unknown_is_404(api: Api) -> None:
    assert error(api.delete("/messages/987654/")) == (404, "not_found")


def test_reaction_toggle_returns_counts(api: Api, thread: Thread) -> None:
    message = MessageFactory(thread=thread)

    added = api.post(f"/messages/{message.pk}/reactions/", {"emoji": "🎉"})
    removed = api.post(f"/messages/{message.pk}/reactions/", {"emoji": "🎉"})

    assert (added.json(), removed.json()) == (
        {"message_id": message.pk, "reactions": {"🎉": 1}},
        {"message_id": message.pk, "reactions": {}},
    )
    assert Reaction.objects.count() == 0


def test_reaction_toggle_unknown_emoji_is_400(api: Api, thread: Thread) -> None:
    message = MessageFactory(thread=thread)

    assert error(api.post(f"/messages/{message.pk}/reactions/", {"emoji": "x"})) == (
        400,
        "invalid",
    )


def test_read_mark_returns_mark(api: Api, thread: Thread, chair: User) -> None:
    MessageFactory(thread=thread, author=chair)
    second = MessageFactory(thread=thread, author=chair)

    response = api.post(f"/threads/{thread.pk}/read/", {"message_id": second.pk})

    assert response.json() == {"thread": thread.pk, "message_id": second.pk, "seq": 2}
    assert api.get("/rooms/").json()[0]["unread_count"] == 0


def test_read_mark_unknown_message_is_404(api: Api, thread: Thread) -> None:
    assert error(api.post(f"/threads/{thread.pk}/read/", {"message_id": 987654})) == (
        404,
        "not_found",
    )


def test_room_follow_put_and_delete(api: Api, room: Room) -> None:
    put = api.client.put(
        "/api/v1/rooms/wg1-a/follow/", {"level": "mute"}, content_type="application/json"
    )
    stored = list(Follow.objects.values_list("level", flat=True))
    deleted = api.delete("/rooms/wg1-a/follow/")

    assert (put.json(), stored, deleted.json()) == (
        {"room": "wg1-a", "thread": None, "level": "mute"},
        ["mute"],
        {"room": "wg1-a", "thread": None, "level": None},
    )
    assert Follow.objects.count() == 0


def test_thread_follow_unknown_level_is_400(api: Api, thread: Thread) -> None:
    response = api.client.put(
        f"/api/v1/threads/{thread.pk}/follow/", {"level": "loud"}, content_type="application/json"
    )

    assert error(response) == (400, "invalid")


def test_schema_lists_forum_paths(plan: None) -> None:
    paths = Client().get("/api/v1/schema/").json()["paths"]

    assert [p for p in sorted(paths) if "/rooms" in p or "/threads" in p or "/messages" in p] == [
        "/api/v1/messages/{message_id}/",
        "/api/v1/messages/{message_id}/reactions/",
        "/api/v1/rooms/",
        "/api/v1/rooms/{slug}/attachments/",
        "/api/v1/rooms/{slug}/follow/",
        "/api/v1/rooms/{slug}/threads/",
        "/api/v1/threads/{thread_id}/follow/",
        "/api/v1/threads/{thread_id}/messages/",
        "/api/v1/threads/{thread_id}/read/",
    ]


# --- Query counts: the same number at 1 and at 3 items ---------------------------------------


@pytest.mark.parametrize("count", [1, 3])
def test_messages_list_query_count(
    api: Api, thread: Thread, count: int, django_assert_num_queries: Any
) -> None:
    for _ in range(count):
        message = MessageFactory(thread=thread)
        Reaction.objects.create(message=message, member=member_in("wg1"), emoji="👍")

    # token + member + verified email, token last use, thread, messages, reactions, mentions,
    # attachments
    with django_assert_num_queries(7):
        response = api.get(f"/threads/{thread.pk}/messages/")

    assert len(response.json()) == count


@pytest.mark.parametrize("count", [1, 3])
def test_threads_list_query_count(
    api: Api, room: Room, count: int, django_assert_num_queries: Any
) -> None:
    for _ in range(count):
        MessageFactory(thread=ThreadFactory(room=room))

    # token + member + verified email, token last use, room, threads with their unread counts
    with django_assert_num_queries(4):
        response = api.get("/rooms/wg1-a/threads/")

    assert len(response.json()) == count


@pytest.mark.parametrize("count", [1, 3])
def test_rooms_list_query_count(api: Api, count: int, django_assert_num_queries: Any) -> None:
    for slug in ["wg1-a", "wg1-b", "wg2-a"][:count]:
        MessageFactory(thread=ThreadFactory(room=Room.objects.get(slug=slug)))

    # token + member + verified email, token last use, rooms, unread counts, the member's roles
    with django_assert_num_queries(5):
        response = api.get("/rooms/")

    assert sum(r["unread_count"] for r in response.json()) == count
