"""The events API per the contract: list with filters, create, detail, PATCH, DELETE, registration."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from community.models import User
from community.services import api_token_create
from events.models import Event
from tests.events.conftest import FUTURE

pytestmark = pytest.mark.django_db

CONTRACT_FIELDS = {
    "id",
    "title",
    "kind",
    "working_group",
    "description",
    "starts_at",
    "ends_at",
    "timezone",
    "location",
    "room",
    "capacity",
    "recurrence",
    "status",
    "sequence",
    "registration",
}


def token_client(member: User) -> Client:
    _token, key = api_token_create(member=member, name="tests")
    return Client(headers={"Authorization": f"Token {key}"})


def send(client: Client, method: str, url: str, body: Any = None) -> Any:
    return getattr(client, method)(
        url, data=json.dumps(body) if body is not None else None, content_type="application/json"
    )


def test_event_list_contract_shape_and_my_registration(
    make_event: Callable[..., Event], member: User
) -> None:
    event = make_event(timezone="America/Santiago", capacity=20, room=None)
    client = token_client(member)
    send(client, "put", f"/api/v1/events/{event.pk}/registration/")

    response = client.get("/api/v1/events/")

    assert response.status_code == 200
    (item,) = response.json()
    assert set(item) >= CONTRACT_FIELDS
    assert (item["id"], item["working_group"], item["timezone"]) == (
        event.pk,
        "wg1",
        "America/Santiago",
    )
    assert item["starts_at"] == "2030-03-12T11:00:00-03:00"
    assert item["registration"] == {"status": "registered", "position": None}
    assert (item["recurrence"], item["room"], item["status"], item["sequence"]) == (
        None,
        None,
        "scheduled",
        0,
    )


@pytest.mark.parametrize("count", [1, 3])
def test_event_list_query_count_constant(
    make_event: Callable[..., Event],
    member: User,
    count: int,
    django_assert_num_queries: Any,
) -> None:
    for n in range(count):
        make_event(title=f"Event {n}", recurrence="FREQ=WEEKLY;COUNT=3" if n % 2 else "")
    client = token_client(member)

    # token lookup with the verified e-mail, token last-used update, roles, events, then prefetches:
    # overrides, topics, my registrations.
    with django_assert_num_queries(7):
        response = client.get("/api/v1/events/?start=2030-01-01T00:00:00Z&end=2031-01-01T00:00:00Z")

    assert len(response.json()) == count


def test_event_list_filters_window_group_and_kind(
    make_event: Callable[..., Event], member: User
) -> None:
    make_event(title="March workshop")
    make_event(
        title="June meeting",
        kind="meeting",
        starts_at=FUTURE + timedelta(days=90),
        ends_at=FUTURE + timedelta(days=90, hours=1),
    )
    client = token_client(member)

    def titles(query: str) -> list[str]:
        return [e["title"] for e in client.get(f"/api/v1/events/?{query}").json()]

    assert titles("start=2030-03-01T00:00:00Z&end=2030-04-01T00:00:00Z") == ["March workshop"]
    assert titles("kind=meeting") == ["June meeting"]
    assert titles("working_group=wg2") == []


def test_event_list_reads_a_window_with_any_offset_as_the_instant_it_names(
    make_event: Callable[..., Event], member: User
) -> None:
    # 2030-03-12T14:00-17:34 is 2030-03-13T07:34Z (an offset no zone has, which PostgreSQL
    # refuses as text): the evening workshop ends before it, the next morning's after it.
    make_event(title="Evening workshop")  # 14:00-16:00 UTC on the 12th
    make_event(
        title="Morning meeting",
        starts_at=FUTURE + timedelta(hours=20),  # 10:00-12:00 UTC on the 13th
        ends_at=FUTURE + timedelta(hours=22),
    )
    client = token_client(member)

    response = client.get("/api/v1/events/?start=2030-03-12T14:00:00-17:34")

    assert response.status_code == 200, response.content
    assert [e["title"] for e in response.json()] == ["Morning meeting"]


def test_event_list_series_occurrences_in_window(
    make_event: Callable[..., Event], member: User
) -> None:
    make_event(recurrence="FREQ=WEEKLY;COUNT=10")
    client = token_client(member)

    (item,) = client.get(
        "/api/v1/events/?start=2030-03-18T00:00:00Z&end=2030-04-01T00:00:00Z"
    ).json()

    assert [o["starts_at"] for o in item["occurrences"]] == [
        "2030-03-19T10:00:00-04:00",
        "2030-03-26T10:00:00-04:00",
    ]


def test_event_create_by_chair_201_and_by_member_403(chair: User, member: User) -> None:
    body = {
        "title": "Focus session on youth employment",
        "kind": "focus_session",
        "working_group": "wg1",
        "starts_at": "2030-05-06T10:00:00",
        "ends_at": "2030-05-06T12:00:00",
        "timezone": "America/Lima",
        "capacity": 30,
        "recurrence": "FREQ=MONTHLY;BYDAY=1MO;COUNT=3",
    }

    created = send(token_client(chair), "post", "/api/v1/events/", body)
    refused = send(token_client(member), "post", "/api/v1/events/", body)

    assert created.status_code == 201
    assert created.json()["starts_at"] == "2030-05-06T10:00:00-05:00"
    assert created.json()["recurrence"] == "FREQ=MONTHLY;BYDAY=1MO;COUNT=3"
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert Event.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"ends_at": "2030-05-06T09:00:00"}, "ends_at", "end_before_start"),
        ({"timezone": "Lima"}, "timezone", "invalid_timezone"),
        ({"recurrence": "FREQ=FORTNIGHTLY"}, "recurrence", "invalid_rrule"),
    ],
)
def test_event_create_bad_input_400_with_field_code(
    chair: User, change: dict[str, str], field: str, code: str
) -> None:
    body = {
        "title": "x",
        "working_group": "wg1",
        "starts_at": "2030-05-06T10:00:00",
        "ends_at": "2030-05-06T12:00:00",
        "timezone": "America/Lima",
        **change,
    }

    response = send(token_client(chair), "post", "/api/v1/events/", body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]
    assert Event.objects.count() == 0


def test_event_patch_capacity_below_registrations_400(
    make_event: Callable[..., Event], chair: User, member: User
) -> None:
    event = make_event(capacity=3)
    send(token_client(member), "put", f"/api/v1/events/{event.pk}/registration/")

    response = send(token_client(chair), "patch", f"/api/v1/events/{event.pk}/", {"capacity": 0})
    # 0 is below the registrations and below the minimum; both are reported on the field.
    codes = {e["code"] for e in response.json()["errors"]}

    assert response.status_code == 400
    assert "capacity_below_registrations" in codes


def test_event_patch_title_bumps_sequence(workshop: Event, chair: User) -> None:
    response = send(
        token_client(chair), "patch", f"/api/v1/events/{workshop.pk}/", {"title": "Renamed"}
    )
    assert (response.status_code, response.json()["title"], response.json()["sequence"]) == (
        200,
        "Renamed",
        1,
    )


def test_event_patch_by_member_403(workshop: Event, member: User) -> None:
    response = send(token_client(member), "patch", f"/api/v1/events/{workshop.pk}/", {"title": "x"})
    assert response.status_code == 403


def test_event_delete_cancels_and_event_stays(workshop: Event, chair: User) -> None:
    client = token_client(chair)

    response = client.delete(f"/api/v1/events/{workshop.pk}/")
    detail = client.get(f"/api/v1/events/{workshop.pk}/")

    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    assert (detail.status_code, detail.json()["status"], detail.json()["sequence"]) == (
        200,
        "cancelled",
        1,
    )


def test_registration_put_waitlisted_when_full_and_delete_withdraws(
    make_event: Callable[..., Event], member: User, chair: User
) -> None:
    event = make_event(capacity=1)
    first = send(token_client(chair), "put", f"/api/v1/events/{event.pk}/registration/")
    client = token_client(member)

    second = send(client, "put", f"/api/v1/events/{event.pk}/registration/")
    again = send(client, "put", f"/api/v1/events/{event.pk}/registration/")
    withdrawn = client.delete(f"/api/v1/events/{event.pk}/registration/")

    assert first.json() == {"status": "registered", "position": None}
    assert second.json() == {"status": "waitlisted", "position": 1}
    assert (again.status_code, again.json()["errors"][0]["code"]) == (400, "already_registered")
    assert withdrawn.json() == {"status": "withdrawn", "position": None}


def test_event_detail_group_only_hidden_404_for_other_group(
    make_event: Callable[..., Event], secretariat: User
) -> None:
    from community.models import Role, WorkingGroup
    from tests.factories import MembershipFactory, UserFactory

    event = make_event(visibility="working_group")
    outsider = UserFactory(email="w2@labor.example", handle="w2")
    MembershipFactory(
        member=outsider, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.MEMBER
    )

    hidden = token_client(outsider).get(f"/api/v1/events/{event.pk}/")
    listed = token_client(outsider).get("/api/v1/events/").json()
    seen = token_client(secretariat).get(f"/api/v1/events/{event.pk}/")

    assert (hidden.status_code, listed, seen.status_code) == (404, [], 200)


def test_event_list_unauthenticated_401(client: Client) -> None:
    assert client.get("/api/v1/events/").status_code == 401


def test_openapi_schema_lists_event_paths(member: User) -> None:
    paths = token_client(member).get("/api/v1/schema/").json()["paths"]
    assert {
        "/api/v1/events/",
        "/api/v1/events/{event_id}/",
        "/api/v1/events/{event_id}/registration/",
    } <= set(paths)
