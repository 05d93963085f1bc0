"""Account settings for the calendar: the private feed URL (regenerable) and reminder offsets."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from community.models import User
from events.models import CalendarFeedToken, ReminderPreference

pytestmark = pytest.mark.django_db

FEED = re.compile(r"http://testserver/events/feeds/([0-9a-f]{64})\.ics")


def feed_url(client: Client) -> str:
    """The address the page shows, made first with the page's own button (a POST)."""
    client.post("/account/calendar/create/")
    response = client.get("/account/calendar/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    match = FEED.search(response.content.decode())
    assert match is not None
    return match.group(0)


def test_calendar_settings_show_the_private_feed(client: Client, member: User) -> None:
    client.force_login(member)

    url = feed_url(client)

    assert client.get(url.removeprefix("http://testserver")).status_code == 200
    assert client.get("/api/v1/me/").json()["calendar_feed_url"] == url


def test_calendar_settings_get_writes_nothing_and_offers_to_create(
    client: Client, member: User
) -> None:
    # Arrange
    client.force_login(member)
    client.get("/account/calendar/")  # the session and the first-request caches

    # Act
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/account/calendar/")

    # Assert: no address, no token, not one write; the create button posts.
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT")]
    page = response.content.decode()
    assert response.status_code == 200
    assert writes == []
    assert CalendarFeedToken.objects.filter(member=member).count() == 0
    assert FEED.search(page) is None
    assert 'action="/account/calendar/create/"' in page
    assert "Create my calendar address" in page
    assert "Make a new address" not in page
    assert client.get("/api/v1/me/").json()["calendar_feed_url"] is None


def test_calendar_create_makes_the_address_once(client: Client, member: User) -> None:
    # Arrange
    client.force_login(member)

    # Act: a double click posts twice.
    first = client.post("/account/calendar/create/")
    url = feed_url(client)
    second = client.post("/account/calendar/create/")

    # Assert: one token, the same address; the page now offers the rotation, not the creation.
    page = client.get("/account/calendar/").content.decode()
    assert (first.status_code, first["Location"]) == (302, "/account/calendar/")
    assert second.status_code == 302
    assert CalendarFeedToken.objects.filter(member=member).count() == 1
    assert feed_url(client) == url
    assert "Make a new address" in page
    assert "Create my calendar address" not in page
    assert Client().get(url.removeprefix("http://testserver")).status_code == 200


def test_calendar_create_refuses_get_and_anonymous(client: Client, member: User) -> None:
    anonymous = Client().post("/account/calendar/create/")
    client.force_login(member)

    response = client.get("/account/calendar/create/")

    assert response.status_code == 405
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    assert CalendarFeedToken.objects.count() == 0


def test_regenerating_the_feed_kills_the_old_address(client: Client, member: User) -> None:
    client.force_login(member)
    old = feed_url(client)

    response = client.post("/account/calendar/regenerate/")

    new = feed_url(client)
    assert response.status_code == 302
    assert new != old
    assert Client().get(old.removeprefix("http://testserver")).status_code == 404
    assert Client().get(new.removeprefix("http://testserver")).status_code == 200


def test_regenerate_refuses_get(client: Client, member: User) -> None:
    client.force_login(member)
    old = feed_url(client)

    response = client.get("/account/calendar/regenerate/")

    assert response.status_code == 405
    assert feed_url(client) == old


def test_reminder_offsets_are_saved(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.post("/account/calendar/", {"offsets": ["60", "10080"]})

    assert response.status_code == 302
    assert ReminderPreference.objects.get(member=member).offsets_minutes == [10080, 60]


def test_no_offsets_means_no_reminders(client: Client, member: User) -> None:
    client.force_login(member)

    client.post("/account/calendar/", {})

    assert ReminderPreference.objects.get(member=member).offsets_minutes == []


def test_unknown_offset_is_a_field_error_and_changes_nothing(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.post("/account/calendar/", {"offsets": ["7"]})

    assert response.status_code == 200
    assert "offsets" in response.context["form"].errors
    assert not ReminderPreference.objects.filter(member=member).exists()


def test_calendar_settings_need_sign_in(client: Client, plan: None) -> None:
    response = client.get("/account/calendar/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
