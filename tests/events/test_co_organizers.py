"""Co-organizers: named by handle or e-mail on the event form and in the API, checked, listed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from community.models import User
from community.services import api_token_create
from events import services
from events.models import Event
from tests.factories import UserFactory

from .test_pages import create_form_data, logged_in

pytestmark = pytest.mark.django_db


def _api(member: User) -> Client:
    _token, key = api_token_create(member=member, name="tests")
    return Client(headers={"Authorization": f"Token {key}"})


def _send(client: Client, method: str, url: str, body: Any) -> Any:
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def _organizers(event: Event) -> list[str]:
    return sorted(u.handle for u in Event.objects.get(pk=event.pk).organizers.all())


def test_organizers_named_by_handle_or_email_in_one_query(
    plan: None, django_assert_num_queries: Any
) -> None:
    # Arrange
    bea = UserFactory(handle="bea", email="bea@example.org")
    carl = UserFactory(handle="carl", email="carl@example.org")

    # Act: one query, whatever the number of names (repeats and "@" are folded).
    with django_assert_num_queries(1):
        found = services.organizers_named(["@bea", "CARL@example.org", "bea"])

    # Assert
    assert found == [bea, carl]


@pytest.mark.parametrize(
    "make",
    [
        lambda: UserFactory(handle="gone", is_active=False),
        lambda: UserFactory(handle="gone", verified=False),
        lambda: None,
    ],
    ids=["inactive", "unverified", "unknown"],
)
def test_organizers_named_refuses_who_is_not_an_active_participant(
    plan: None, make: Callable[[], object]
) -> None:
    make()

    with pytest.raises(ValidationError) as caught:
        services.organizers_named(["gone"])

    assert [e.code for e in caught.value.error_dict["organizers"]] == ["unknown_member"]
    assert "gone" in caught.value.message_dict["organizers"][0]


def test_organizers_named_refuses_too_many(plan: None) -> None:
    names = [f"m{i}" for i in range(services.MAX_ORGANIZERS + 1)]

    with pytest.raises(ValidationError) as caught:
        services.organizers_named(names)

    assert [e.code for e in caught.value.error_dict["organizers"]] == ["too_many_organizers"]


def test_event_create_page_adds_co_organizers_and_keeps_creator(
    client: Client, chair: User
) -> None:
    # Arrange
    UserFactory(handle="bea", email="bea@example.org")
    UserFactory(handle="carl", email="carl@example.org")

    # Act
    response = logged_in(client, chair).post(
        "/events/new/", create_form_data(organizers="@bea, carl@example.org")
    )

    # Assert
    event = Event.objects.get()
    assert response.status_code == 302
    assert _organizers(event) == ["bea", "carl", chair.handle]


def test_event_create_page_unknown_co_organizer_shows_field_error(
    client: Client, chair: User
) -> None:
    response = logged_in(client, chair).post("/events/new/", create_form_data(organizers="@nobody"))

    assert response.status_code == 200
    assert response.context["form"].errors["organizers"] == [
        "No active member has the handle or e-mail address: nobody."
    ]
    assert Event.objects.count() == 0


def test_event_edit_page_replaces_co_organizers_creator_stays(
    client: Client, chair: User, workshop: Event
) -> None:
    # Arrange
    bea = UserFactory(handle="bea")
    UserFactory(handle="carl")
    workshop.organizers.add(bea)
    page = logged_in(client, chair).get(f"/events/{workshop.pk}/edit/")
    data = {
        k: v for k, v in page.context["form"].initial.items() if k not in ("topics", "organizers")
    }

    # Act: the creator is not typed, bea is dropped, carl added.
    response = client.post(
        f"/events/{workshop.pk}/edit/",
        create_form_data(
            title=workshop.title,
            kind=workshop.kind,
            starts_at=data["starts_at"].strftime("%Y-%m-%dT%H:%M"),
            ends_at=data["ends_at"].strftime("%Y-%m-%dT%H:%M"),
            timezone=workshop.timezone,
            organizers="carl",
        ),
    )

    # Assert
    assert page.context["form"].initial["organizers"] == "@bea"
    assert response.status_code == 302
    assert _organizers(workshop) == ["carl", chair.handle]


def test_event_api_create_and_patch_co_organizers(chair: User) -> None:
    # Arrange
    UserFactory(handle="bea", name="Beatriz Alves")
    UserFactory(handle="carl", name="Carl Zimmer", email="carl@example.org")
    body = {
        "title": "Focus session",
        "working_group": "wg1",
        "starts_at": "2030-05-06T10:00:00",
        "ends_at": "2030-05-06T12:00:00",
        "timezone": "America/Lima",
        "organizers": ["bea"],
    }
    client = _api(chair)

    # Act
    created = _send(client, "post", "/api/v1/events/", body)
    url = f"/api/v1/events/{created.json()['id']}/"
    patched = _send(client, "patch", url, {"organizers": ["carl@example.org"]})
    refused = _send(client, "patch", url, {"organizers": ["nobody"]})
    detail = client.get(url)

    # Assert: by name (Beatriz, Carl, João: the chair).
    assert (created.status_code, created.json()["organizers"]) == (201, ["bea", chair.handle])
    assert (patched.status_code, patched.json()["organizers"]) == (200, ["carl", chair.handle])
    assert (refused.status_code, refused.json()["errors"][0]["code"]) == (400, "unknown_member")
    assert detail.json()["organizers"] == ["carl", chair.handle]
