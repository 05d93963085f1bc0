"""GET and PATCH /api/v1/me/: the contract's shape, bad input refused with a code, CSRF, queries."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from community.models import Membership, Role, User, WorkingGroup
from community.services import api_token_create
from events.models import CalendarFeedToken
from tests.factories import MembershipFactory, UserFactory

AssertNumQueries = Callable[[int], AbstractContextManager[Any]]
CONTRACT_FIELDS = {
    "id",
    "email",
    "name",
    "handle",
    "organization",
    "language",
    "timezone",
    "memberships",
    "calendar_feed_url",
}


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def token(member: User) -> str:
    return api_token_create(member=member, name="tests")[1]


def _get(key: str) -> Any:
    return Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {key}")


def _patch(key: str, body: dict[str, object]) -> Any:
    return Client().patch(
        "/api/v1/me/",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {key}",
    )


def _profile(user: User) -> tuple[str, str, str, str]:
    user.refresh_from_db()
    return (user.name, user.handle, user.language, user.timezone)


def test_me_has_the_contract_shape(member: User, token: str) -> None:
    response = _get(token)

    body = response.json()
    assert response.status_code == 200
    assert set(body) >= CONTRACT_FIELDS
    assert {k: body[k] for k in CONTRACT_FIELDS} == {
        "id": member.pk,
        "email": "ana@trabajo.example",
        "name": "Ana Pérez",
        "handle": "ana",
        "organization": member.organization.name,
        "language": "en",
        "timezone": "UTC",
        "memberships": [{"working_group": "wg1", "role": "member"}],
        # No private feed until the member asks for one (below): a GET writes nothing.
        "calendar_feed_url": None,
    }


def test_me_get_writes_nothing(member: User, token: str) -> None:
    _get(token)  # the token's first use records last_used_at; measure a steady request

    with CaptureQueriesContext(connection) as queries:
        response = _get(token)

    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert (response.status_code, writes) == (200, [])
    assert not CalendarFeedToken.objects.filter(member=member).exists()


def test_me_calendar_feed_made_by_post_then_shown_by_get(member: User, token: str) -> None:
    # Act
    made = Client().post("/api/v1/me/calendar-feed/", HTTP_AUTHORIZATION=f"Token {token}")
    shown = _get(token).json()["calendar_feed_url"]
    again = Client().post("/api/v1/me/calendar-feed/", HTTP_AUTHORIZATION=f"Token {token}")

    # Assert: a 256-bit token in the URL; asking again makes a new address, the old one dies.
    url = made.json()["calendar_feed_url"]
    assert made.status_code == 201
    assert re.fullmatch(r"http://testserver/events/feeds/[0-9a-f]{64}\.ics", url)
    assert shown == url
    assert again.status_code == 201
    assert again.json()["calendar_feed_url"] != url
    assert _get(token).json()["calendar_feed_url"] == again.json()["calendar_feed_url"]


def test_me_calendar_feed_post_with_session_requires_csrf(member: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)

    response = browser.post("/api/v1/me/calendar-feed/")

    assert response.status_code == 403
    assert not CalendarFeedToken.objects.filter(member=member).exists()


def test_me_memberships_in_group_order(member: User, token: str) -> None:
    MembershipFactory(
        member=member, working_group=WorkingGroup.objects.get(slug="wg2"), role=Role.OBSERVER
    )

    memberships = _get(token).json()["memberships"]

    assert memberships == [
        {"working_group": "wg1", "role": "member"},
        {"working_group": "wg2", "role": "observer"},
    ]


def test_me_with_session_works(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.get("/api/v1/me/")

    assert (response.status_code, response.json()["handle"]) == (200, "ana")


def test_me_anonymous_is_401_json(client: Client, plan: None) -> None:
    response = client.get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_me_session_of_unverified_member_is_401(client: Client, db: None) -> None:
    client.force_login(UserFactory(verified=False))

    assert client.get("/api/v1/me/").status_code == 401


def test_me_patch_changes_profile(member: User, token: str) -> None:
    response = _patch(
        token,
        {
            "name": " Ana  María Pérez ",
            "handle": "Ana-Maria",
            "language": "pt",
            "timezone": "America/Sao_Paulo",
        },
    )

    assert response.status_code == 200
    assert response.json()["handle"] == "ana-maria"
    assert _profile(member) == ("Ana María Pérez", "ana-maria", "pt", "America/Sao_Paulo")


def test_me_patch_partial_keeps_other_fields(member: User, token: str) -> None:
    response = _patch(token, {"timezone": "America/Lima"})

    assert response.status_code == 200
    assert _profile(member) == ("Ana Pérez", "ana", "en", "America/Lima")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"language": "de"}, "language"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"handle": "Not A Handle!"}, "handle"),
        ({"handle": ""}, "handle"),
        ({"name": ""}, "name"),
        ({"language": "es", "timezone": "Nowhere/Land"}, "timezone"),
    ],
)
def test_me_patch_invalid_is_400_and_changes_nothing(
    member: User, token: str, body: dict[str, object], field: str
) -> None:
    response = _patch(token, body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["detail"]) == [field]
    assert _profile(member) == ("Ana Pérez", "ana", "en", "UTC")


def test_me_patch_wrong_type_is_422(member: User, token: str) -> None:
    response = _patch(token, {"language": ["es"]})

    assert (response.status_code, response.json()["code"]) == (422, "invalid")
    assert _profile(member) == ("Ana Pérez", "ana", "en", "UTC")


def test_me_patch_duplicate_handle_says_it_is_taken(member: User, chair: User, token: str) -> None:
    response = _patch(token, {"handle": "JOAO"})

    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "detail": {"handle": ["That handle is taken; choose another."]},
        "errors": [
            {
                "field": "handle",
                "code": "invalid",
                "message": "That handle is taken; choose another.",
            }
        ],
    }
    assert _profile(member) == ("Ana Pérez", "ana", "en", "UTC")


def test_me_patch_with_session_requires_csrf(member: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)

    refused = browser.patch(
        "/api/v1/me/", data=json.dumps({"language": "es"}), content_type="application/json"
    )
    browser.get("/account/settings/")  # sets the CSRF cookie, as a page would
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.patch(
        "/api/v1/me/",
        data=json.dumps({"language": "es"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf,
    )

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert _profile(member)[2] == "es"


def test_me_patch_with_token_needs_no_csrf(member: User, token: str) -> None:
    response = Client(enforce_csrf_checks=True).patch(
        "/api/v1/me/",
        data=json.dumps({"language": "fr"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )

    assert response.status_code == 200
    assert _profile(member)[2] == "fr"


@pytest.mark.parametrize("groups", [1, 3])
def test_me_query_count_does_not_grow_with_memberships(
    plan: None, django_assert_num_queries: AssertNumQueries, groups: int
) -> None:
    user = UserFactory()
    extra = WorkingGroup.objects.create(slug="wg3", number=3, title="Three", mandate="-")
    extra2 = WorkingGroup.objects.create(slug="wg4", number=4, title="Four", mandate="-")
    for wg in [*WorkingGroup.objects.filter(slug="wg1"), extra, extra2][:groups]:
        Membership.objects.create(member=user, working_group=wg, role=Role.MEMBER)
    _token, key = api_token_create(member=user, name="tests")
    _get(key)  # the first use records last_used_at; measure a steady request

    # token + member + organization + verified email, memberships with their groups, feed token
    with django_assert_num_queries(3):
        response = _get(key)

    assert len(response.json()["memberships"]) == groups


@pytest.mark.parametrize("groups", [1, 3])
def test_me_query_count_with_session_does_not_grow(
    plan: None, django_assert_num_queries: AssertNumQueries, groups: int
) -> None:
    user = UserFactory()
    extra = WorkingGroup.objects.create(slug="wg3", number=3, title="Three", mandate="-")
    extra2 = WorkingGroup.objects.create(slug="wg4", number=4, title="Four", mandate="-")
    for wg in [*WorkingGroup.objects.filter(slug="wg1"), extra, extra2][:groups]:
        Membership.objects.create(member=user, working_group=wg, role=Role.MEMBER)
    browser = Client()
    browser.force_login(user)
    browser.get("/api/v1/me/")  # the first request of a session may write; measure the next

    # session, member, verified email, organization, memberships with their groups, feed token
    # (read only: none is made here)
    with django_assert_num_queries(6):
        response = browser.get("/api/v1/me/")

    assert len(response.json()["memberships"]) == groups
