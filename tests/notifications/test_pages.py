"""Pages: the inbox, marking read, the preferences form, the bell, the one-click unsubscribe."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from community.models import User
from notifications import email, services
from notifications.models import Notification, NotificationPreference, NotificationSettings

pytestmark = pytest.mark.django_db


def _notify(member: User, key: str, kind: str = "mention", thread: str = "Data") -> Notification:
    services.notify(
        kind=kind,
        actor=None,
        target_type="forums.message",
        target_id=1,
        url=f"/rooms/wg1-a/threads/1/#{key}",
        occurrence_key=key,
        recipient_ids=[member.pk],
        context={"actor": "Ana", "thread": thread, "body": key, "event": thread},
    )
    return Notification.objects.get(recipient=member, occurrence_key=key)


@pytest.fixture
def signed_in(client: Client, member: User) -> Client:
    client.force_login(member)
    return client


def test_inbox_lists_items_linking_to_targets(signed_in: Client, member: User) -> None:
    _notify(member, "m1", thread="Inspection")

    response = signed_in.get("/notifications/")

    assert response.status_code == 200
    assert list(response.context["page"].object_list.values_list("occurrence_key", flat=True)) == [
        "m1"
    ]
    assert 'href="/rooms/wg1-a/threads/1/#m1"' in response.text


def test_inbox_filters_unread_and_kind(signed_in: Client, member: User) -> None:
    read = _notify(member, "m1")
    _notify(member, "m2")
    _notify(member, "e1", kind="event_cancelled", thread="Workshop")
    services.notifications_mark_read(member=member, ids=[read.pk])

    response = signed_in.get("/notifications/?unread=1&kind=mention")

    keys = [n.occurrence_key for n in response.context["page"].object_list]
    assert keys == ["m2"]


@pytest.mark.parametrize("count", [1, 3])
def test_inbox_query_count_does_not_grow(
    count: int, signed_in: Client, member: User, django_assert_num_queries: Any
) -> None:
    for i in range(count):
        _notify(member, f"q{i}")

    # session, member, page count, rows, unread count (page), unread count (bell), and the
    # base template's own (verified address, roles for the navigation).
    with django_assert_num_queries(8):
        signed_in.get("/notifications/")


def test_mark_several_read(signed_in: Client, member: User) -> None:
    a = _notify(member, "a")
    b = _notify(member, "b")
    c = _notify(member, "c")

    response = signed_in.post("/notifications/read/", {"ids": [a.pk, b.pk]})

    unread = list(Notification.objects.filter(read_at__isnull=True).values_list("pk", flat=True))
    assert (response.status_code, response["Location"], unread) == (302, "/notifications/", [c.pk])


def test_mark_all_read(signed_in: Client, member: User) -> None:
    _notify(member, "a")
    _notify(member, "b")

    signed_in.post("/notifications/read/", {"all": "1"})

    assert Notification.objects.filter(read_at__isnull=True).count() == 0


def test_mark_read_without_choice_shows_error(signed_in: Client, member: User) -> None:
    _notify(member, "a")

    response = signed_in.post("/notifications/read/", {}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Choose at least one notification to mark as read."
    ]
    assert Notification.objects.filter(read_at__isnull=True).count() == 1


def test_open_marks_read_and_follows_link(signed_in: Client, member: User) -> None:
    row = _notify(member, "o")

    response = signed_in.post(f"/notifications/{row.pk}/open/")

    row.refresh_from_db()
    assert (response.status_code, response["Location"], row.read_at is not None) == (
        302,
        "/rooms/wg1-a/threads/1/#o",
        True,
    )


def test_open_someone_elses_notification_is_refused(signed_in: Client, chair: User) -> None:
    theirs = _notify(chair, "t")

    response = signed_in.post(f"/notifications/{theirs.pk}/open/")

    theirs.refresh_from_db()
    assert (response.status_code, response["Location"], theirs.read_at) == (
        302,
        "/notifications/",
        None,
    )


def test_inbox_requires_sign_in(client: Client, plan: None) -> None:
    response = client.get("/notifications/")

    assert (response.status_code, response["Location"].split("?")[0]) == (302, "/accounts/login/")


def test_bell_shows_unread_count_on_every_page(signed_in: Client, member: User) -> None:
    _notify(member, "a")
    _notify(member, "b")

    response = signed_in.get("/dashboard/")

    assert 'data-bell data-unread="2"' in response.text
    assert "minga/bell.js" in response.text


def test_preferences_form_saves(signed_in: Client, member: User) -> None:
    # Arrange
    response = signed_in.get("/notifications/preferences/")
    data = {k: v for k, v in response.context["form"].initial.items() if v is not None}
    data = {k: v for k, v in data.items() if v is not False}
    data.update(
        {
            "mention__email": "off",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "digest_weekday": "4",
        }
    )
    data.pop("reply__in_app")

    # Act
    saved = signed_in.post("/notifications/preferences/", data)

    # Assert
    prefs = sorted(
        NotificationPreference.objects.filter(member=member).values_list("kind", "in_app", "email")
    )
    settings_row = NotificationSettings.objects.get(member=member)
    assert saved.status_code == 302
    assert prefs == [("mention", True, "off"), ("reply", False, "immediate")]
    assert (settings_row.quiet_start, settings_row.quiet_end, settings_row.digest_weekday) == (
        dt.time(22),
        dt.time(7),
        4,
    )


def test_preferences_form_half_quiet_hours_names_the_field(signed_in: Client, member: User) -> None:
    response = signed_in.get("/notifications/preferences/")
    initial = response.context["form"].initial.items()
    data = {k: v for k, v in initial if v is not None and v is not False}
    data["quiet_start"] = "22:00"

    response = signed_in.post("/notifications/preferences/", data)

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "quiet_end": ["Give both the start and the end of quiet hours, or neither."]
    }
    assert NotificationSettings.objects.filter(member=member).count() == 0


# --- One-click unsubscribe ----------------------------------------------------------------------


def test_one_click_unsubscribe_turns_kind_off_without_login(client: Client, member: User) -> None:
    url = email.unsubscribe_url(member_id=member.pk, kind="mention").removeprefix(email.base_url())

    response = client.post(url, {"List-Unsubscribe": "One-Click"})

    pref = NotificationPreference.objects.get(member=member, kind="mention")
    assert (response.status_code, pref.email, pref.in_app) == (200, "off", True)


def test_unsubscribe_get_changes_nothing(client: Client, member: User) -> None:
    url = email.unsubscribe_url(member_id=member.pk, kind="mention").removeprefix(email.base_url())

    response = client.get(url)

    assert (response.status_code, NotificationPreference.objects.count()) == (200, 0)


def test_unsubscribe_forged_token_is_refused(client: Client, member: User) -> None:
    token = email.unsubscribe_token(member_id=member.pk, kind="mention")
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")

    response = client.post(f"/notifications/unsubscribe/{forged}/")

    assert (response.status_code, NotificationPreference.objects.count()) == (400, 0)
