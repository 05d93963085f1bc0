"""The notifications API: list, mark read (with the cross-tab frame), preferences."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer  # noqa: TID251 - tests listen on the layer
from django.test import Client

from community.models import User
from notifications import services
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def _notify(member: User, key: str, kind: str = "mention") -> Notification:
    services.notify(
        kind=kind,
        actor=None,
        target_type="forums.message",
        target_id=1,
        url=f"/rooms/wg1-a/threads/1/#{key}",
        occurrence_key=key,
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": "Data", "body": key},
    )
    return Notification.objects.get(recipient=member, occurrence_key=key)


@pytest.fixture
def api(client: Client, member: User) -> Client:
    client.force_login(member)
    return client


def test_list_unread_only(api: Client, member: User) -> None:
    # Arrange
    read = _notify(member, "m1")
    unread = _notify(member, "m2")
    services.notifications_mark_read(member=member, ids=[read.pk])

    # Act
    response = api.get("/api/v1/notifications/?unread=true")

    # Assert
    assert response.status_code == 200
    assert response.json() == {
        "unread_count": 1,
        "results": [
            {
                "id": unread.pk,
                "kind": "mention",
                "title": "Ana mentioned you in “Data”",
                "snippet": "m2",
                "url": "/rooms/wg1-a/threads/1/#m2",
                "created_at": unread.created.isoformat(),
                "read": False,
            }
        ],
    }


def test_list_shows_only_my_notifications(api: Client, member: User, chair: User) -> None:
    _notify(chair, "theirs")

    response = api.get("/api/v1/notifications/")

    assert response.json() == {"unread_count": 0, "results": []}


@pytest.mark.parametrize("count", [1, 3])
def test_list_query_count_does_not_grow(
    count: int, api: Client, member: User, django_assert_num_queries: Any
) -> None:
    for i in range(count):
        _notify(member, f"q{i}")

    # session (1), member (1), verified address (1), rows (1), unread count (1)
    with django_assert_num_queries(5):
        response = api.get("/api/v1/notifications/")

    assert len(response.json()["results"]) == count


def test_read_by_ids_publishes_count_to_my_tabs(
    api: Client, member: User, django_capture_on_commit_callbacks: Any
) -> None:
    # Arrange
    first = _notify(member, "r1")
    _notify(member, "r2")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"user.{member.pk}", channel)

    # Act
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/notifications/read/", {"ids": [first.pk]}, content_type="application/json"
        )

    # Assert
    frame = json.loads(async_to_sync(layer.receive)(channel)["text"])
    assert (response.status_code, response.json()) == (200, {"unread_count": 1})
    assert frame == {"type": "notification.read", "ids": [first.pk], "unread_count": 1}


def test_read_all(api: Client, member: User) -> None:
    _notify(member, "a1")
    _notify(member, "a2")

    response = api.post(
        "/api/v1/notifications/read/", {"all": True}, content_type="application/json"
    )

    assert (response.json(), Notification.objects.filter(read_at__isnull=True).count()) == (
        {"unread_count": 0},
        0,
    )


def test_read_ignores_other_members_ids(api: Client, member: User, chair: User) -> None:
    theirs = _notify(chair, "x")

    api.post("/api/v1/notifications/read/", {"ids": [theirs.pk]}, content_type="application/json")

    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_read_without_ids_or_all_is_invalid(api: Client) -> None:
    response = api.post("/api/v1/notifications/read/", {}, content_type="application/json")

    assert (response.status_code, response.json()["code"], list(response.json()["detail"])) == (
        400,
        "invalid",
        ["ids"],
    )


def test_list_requires_authentication(client: Client, plan: None) -> None:
    response = client.get("/api/v1/notifications/")

    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


def test_preferences_get_defaults(api: Client) -> None:
    response = api.get("/api/v1/me/preferences/")

    body = response.json()
    contract = {
        k: body[k]
        for k in (
            "mention",
            "reply",
            "new_thread",
            "event_scheduled",
            "event_changed",
            "event_reminder",
            "registration",
        )
    }
    assert contract == {
        "mention": {"in_app": True, "email": "immediate"},
        "reply": {"in_app": True, "email": "immediate"},
        "new_thread": {"in_app": True, "email": "daily"},
        "event_scheduled": {"in_app": True, "email": "daily"},
        "event_changed": {"in_app": True, "email": "immediate"},
        "event_reminder": {"in_app": True, "email": "immediate"},
        "registration": {"in_app": True, "email": "immediate"},
    }


def test_preferences_put_replaces(api: Client) -> None:
    api.put(
        "/api/v1/me/preferences/",
        {"reply": {"in_app": False, "email": "weekly"}},
        content_type="application/json",
    )

    response = api.put(
        "/api/v1/me/preferences/",
        {"mention": {"in_app": True, "email": "off"}},
        content_type="application/json",
    )

    body = response.json()
    assert (response.status_code, body["mention"], body["reply"]) == (
        200,
        {"in_app": True, "email": "off"},
        {"in_app": True, "email": "immediate"},
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"mention": {"in_app": True, "email": "hourly"}}, "mention.email"),
        ({"mention": {"in_app": "yes", "email": "off"}}, "mention.in_app"),
        ({"gossip": {"in_app": True, "email": "off"}}, "gossip"),
        ({"reply": "off"}, "reply"),
    ],
)
def test_preferences_put_invalid_names_the_field(
    api: Client, member: User, payload: dict[str, Any], field: str
) -> None:
    response = api.put("/api/v1/me/preferences/", payload, content_type="application/json")

    assert (response.status_code, list(response.json()["detail"])) == (400, [field])
    assert member.notification_preferences.count() == 0
