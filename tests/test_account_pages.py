"""The account settings pages: profile, language and time zone, password, the settings menu."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from community.models import User
from tests.factories import PASSWORD

NEW_PASSWORD = "lantern-harbour-quartz-41"


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _profile_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Ana María Pérez",
        "handle": "ana-maria",
        "language": "en",
        "timezone": "America/Lima",
    }
    data.update(overrides)
    return data


def _profile(user: User) -> tuple[str, str, str, str]:
    user.refresh_from_db()
    return (user.name, user.handle, user.language, user.timezone)


def test_settings_page_shows_profile(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.get(reverse("account_settings"))

    assert response.status_code == 200
    assert response.context["form"].initial == {
        "name": "Ana Pérez",
        "handle": "ana",
        "language": "en",
        "timezone": "UTC",
    }


def test_settings_page_has_minga_shell_and_account_menu(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.get(reverse("account_settings"))

    body = response.content.decode()
    assert '<html lang="en">' in body
    assert [
        f'href="{reverse(name)}"' in body
        for name in ("account_change_password", "mfa_index", "api_tokens", "account_email")
    ] == [True, True, True, True]


def test_login_page_has_minga_shell(client: Client, plan: None) -> None:
    response = client.get(reverse("account_login"))

    assert '<html lang="en">' in response.content.decode()


def test_settings_page_for_anonymous_redirects_to_login(client: Client, plan: None) -> None:
    response = client.get(reverse("account_settings"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_settings_valid_profile_is_saved(client: Client, member: User) -> None:
    client.force_login(member)

    response = client.post(reverse("account_settings"), _profile_form())

    assert response.status_code == 302
    assert response["Location"] == reverse("account_settings")
    assert _profile(member) == ("Ana María Pérez", "ana-maria", "en", "America/Lima")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"handle": "joao"}, "handle"),
        ({"handle": "JOAO"}, "handle"),
        ({"handle": "no spaces allowed"}, "handle"),
        ({"language": "de"}, "language"),
        ({"name": ""}, "name"),
    ],
)
def test_settings_invalid_input_is_a_field_error_and_saves_nothing(
    client: Client, member: User, chair: User, overrides: dict[str, str], field: str
) -> None:
    client.force_login(member)

    response = client.post(reverse("account_settings"), _profile_form(**overrides))

    assert response.status_code == 200
    assert list(response.context["form"].errors) == [field]
    assert _profile(member) == ("Ana Pérez", "ana", "en", "UTC")


def test_settings_duplicate_handle_says_it_is_taken(
    client: Client, member: User, chair: User
) -> None:
    client.force_login(member)

    response = client.post(reverse("account_settings"), _profile_form(handle="joao"))

    assert response.context["form"].errors == {"handle": ["That handle is taken; choose another."]}


def test_settings_language_applies_to_the_next_page(client: Client, member: User) -> None:
    client.force_login(member)

    client.post(reverse("account_settings"), _profile_form(language="es"))
    response = client.get(reverse("dashboard"))

    assert response["Content-Language"] == "es"
    assert '<html lang="es">' in response.content.decode()


def test_settings_language_follows_the_member_on_another_device(
    client: Client, member: User
) -> None:
    client.force_login(member)
    client.post(reverse("account_settings"), _profile_form(language="pt"))

    other_device = Client()
    other_device.force_login(member)
    response = other_device.get(reverse("dashboard"))

    assert response["Content-Language"] == "pt"


def test_settings_time_zone_is_active_on_the_next_page(client: Client, member: User) -> None:
    client.force_login(member)

    client.post(reverse("account_settings"), _profile_form(timezone="America/Lima"))
    response = client.get(reverse("account_settings"))

    assert response.context["TIME_ZONE"] == "America/Lima"


def test_password_change_through_settings(client: Client, member: User) -> None:
    client.post(reverse("account_login"), {"login": "ana@trabajo.example", "password": PASSWORD})

    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD) is True


def test_password_change_with_wrong_current_password_changes_nothing(
    client: Client, member: User
) -> None:
    client.post(reverse("account_login"), {"login": "ana@trabajo.example", "password": PASSWORD})

    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": "not-it-at-all-1", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["oldpassword"]
    member.refresh_from_db()
    assert member.check_password(PASSWORD) is True
