"""API fuzzing (bounded) with schemathesis, as a member (token) and as anonymous."""

from __future__ import annotations

import pytest

from community.models import Role, User
from community.services import api_token_create
from tests.factories import MembershipFactory, UserFactory
from tests.reliability import api_fuzz
from tests.reliability.support import report

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = 10


def _token_headers(plan: None) -> dict[str, str]:
    member: User = UserFactory()
    MembershipFactory(member=member, role=Role.MEMBER)
    _token, key = api_token_create(member=member, name="fuzz")
    return {"Authorization": f"Token {key}"}


@pytest.mark.parametrize("who", ["member", "anonymous"])
def test_api_fuzz_no_server_error_and_responses_match_schema(
    plan: None, who: str, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = _token_headers(plan) if who == "member" else {}

    result = api_fuzz.run(headers=headers, max_examples=MAX_EXAMPLES)

    report(capsys, "API-FUZZ", api_fuzz.figure(who, result))
    assert result.failures == []


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/notifications/?kind=%00x",
        "/api/v1/events/?working_group=%00z",
        "/api/v1/rooms/%00/threads/",
    ],
)
@pytest.mark.postgres  # PostgreSQL's DataError; SQLite stores NUL and finds nothing (200)
def test_api_nul_byte_in_parameter_is_a_client_error(plan: None, url: str) -> None:
    from django.test import Client

    client = Client(headers=_token_headers(plan), raise_request_exception=False)

    status = client.get(url).status_code

    assert status in {400, 404, 422}


def test_api_events_start_with_an_offset_no_zone_has_is_the_instant_it_names(plan: None) -> None:
    """A fuzzed offset beyond PostgreSQL's +-15:59 was a server error, then a 400 from the
    database's DataError, and with server-side binding (settings: prepared statements) an
    answer: the API now reads it as the instant it names, in UTC, on every database."""
    from django.test import Client

    client = Client(headers=_token_headers(plan), raise_request_exception=False)

    odd = client.get("/api/v1/events/?start=2026-05-06T07:08:20-17:34")
    same = client.get("/api/v1/events/?start=2026-05-07T00:42:20Z")

    assert (odd.status_code, odd.json()) == (200, same.json())


def test_api_id_beyond_64_bits_is_never_a_server_error(plan: None) -> None:
    """PostgreSQL compares a 70-bit id and finds nothing (200); the embedded SQLite's driver
    cannot bind it and raised OverflowError, a 500, until minga.api answered it with 400."""
    from django.db import connection
    from django.test import Client

    client = Client(headers=_token_headers(plan), raise_request_exception=False)

    response = client.post(
        "/api/v1/notifications/read/", {"ids": [2**70]}, content_type="application/json"
    )

    expected = (400, "invalid") if connection.vendor == "sqlite" else (200, None)
    assert (response.status_code, response.json().get("code")) == expected, response.content
