"""Account settings for the calendar: the private feed URL (regenerable) and reminder offsets."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from community.models import User
from events.models import ReminderPreference

pytestmark = pytest.mark.django_db

FEED = re.compile(r"http://testserver/events/feeds/([0-9a-f]{64})\.ics")


def feed_url(client: Client) -> str:
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
