"""`add_member`: creates or updates a verified account; bad input is a clear error that changes nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from allauth.account.models import EmailAddress
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from community.models import Membership, Organization, User

PASSWORD = "lantern-harbour-quartz-41"


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _add(*args: str) -> str:
    out = io.StringIO()
    call_command("add_member", *args, stdout=out)
    return out.getvalue()


def _counts() -> tuple[int, int, int, int]:
    return (
        User.objects.count(),
        Membership.objects.count(),
        Organization.objects.count(),
        EmailAddress.objects.count(),
    )


def _roles(email: str) -> list[tuple[str, str]]:
    return sorted(
        Membership.objects.filter(member__email=email).values_list("working_group__slug", "role")
    )


def test_add_member_creates_verified_account_that_can_log_in(client: Client, plan: None) -> None:
    output = _add("Rosa@Trabajo.example", "--name", "Rosa Díaz", "--password", PASSWORD)

    user = User.objects.get()
    assert (user.email, user.name, user.handle, user.is_staff) == (
        "rosa@trabajo.example",
        "Rosa Díaz",
        "rosa",
        False,
    )
    assert output == "Created rosa@trabajo.example (@rosa, no working groups).\n"
    assert list(EmailAddress.objects.values_list("email", "verified", "primary")) == [
        ("rosa@trabajo.example", True, True)
    ]
    response = client.post(
        reverse("account_login"), {"login": "rosa@trabajo.example", "password": PASSWORD}
    )
    assert response["Location"] == reverse("dashboard")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_add_member_roles_follow_their_working_groups(plan: None) -> None:
    output = _add(
        "rosa@trabajo.example",
        "--name",
        "Rosa",
        "--password",
        PASSWORD,
        "--wg",
        "wg1",
        "--role",
        "chair",
        "--wg",
        "wg2",
    )

    assert _roles("rosa@trabajo.example") == [("wg1", "chair"), ("wg2", "member")]
    assert output == "Created rosa@trabajo.example (@rosa, wg1:chair, wg2:member).\n"


def test_add_member_organizer_is_chair(plan: None) -> None:
    _add(
        "rosa@trabajo.example",
        "--name",
        "Rosa",
        "--password",
        PASSWORD,
        "--organizer",
        "--wg",
        "wg2",
    )

    assert _roles("rosa@trabajo.example") == [("wg2", "chair")]


def test_add_member_with_organization_staff_and_preferences(plan: None) -> None:
    _add(
        "rosa@trabajo.example",
        "--name",
        "Rosa",
        "--password",
        PASSWORD,
        "--handle",
        "RosaD",
        "--org",
        "Ministerio de Trabajo del Perú",
        "--country",
        "pe",
        "--staff",
        "--language",
        "es",
        "--timezone",
        "America/Lima",
    )

    user = User.objects.select_related("organization").get()
    assert (user.handle, user.is_staff, user.language, user.timezone) == (
        "rosad",
        True,
        "es",
        "America/Lima",
    )
    assert (user.organization.name, user.organization.kind, user.organization.country.code) == (
        "Ministerio de Trabajo del Perú",
        Organization.Kind.MINISTRY,
        "PE",
    )


def test_add_member_rerun_updates_instead_of_duplicating(plan: None) -> None:
    _add("rosa@trabajo.example", "--name", "Rosa", "--password", PASSWORD, "--wg", "wg1")

    output = _add(
        "ROSA@trabajo.example",
        "--name",
        "Rosa Díaz",
        "--password",
        "another-long-pass-77",
        "--wg",
        "wg1",
        "--role",
        "vice_chair",
    )

    user = User.objects.get()
    assert user.name == "Rosa Díaz"
    assert user.check_password("another-long-pass-77") is True
    assert _roles("rosa@trabajo.example") == [("wg1", "vice_chair")]
    assert EmailAddress.objects.count() == 1
    assert output == "Updated rosa@trabajo.example (@rosa, wg1:vice_chair).\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--wg", "wg9"],
            "memberships: Unknown working group “wg9”; known: wg1, wg2.",
        ),
        (
            ["--wg", "wg1", "--role", "boss"],
            "memberships: Unknown role “boss”; use one of: chair, vice_chair, member, observer.",
        ),
        (
            ["--handle", "ana"],
            "handle: That handle is taken; choose another.",
        ),
        (
            ["--handle", "Not A Handle!"],
            "handle: A handle has 1 to 30 lowercase letters, digits, '-' or '_', and starts and "
            "ends with a letter or digit.",
        ),
        (
            ["--org", "Ministerio de Trabajo del Perú", "--country", "XX"],
            "Unknown country code 'XX'; use ISO 3166 alpha-2, e.g. BR.",
        ),
        (
            ["--country", "PE"],
            "--country is the organization's country: give --org NAME too.",
        ),
        (
            ["--role", "chair"],
            "--role must follow the --wg it applies to, e.g. --wg wg1 --role chair.",
        ),
        (
            ["--wg", "wg1", "--role", "chair", "--role", "member"],
            "--role must follow the --wg it applies to, e.g. --wg wg1 --role chair.",
        ),
        (
            ["--organizer"],
            "--organizer needs at least one --wg to organize.",
        ),
        (
            ["--timezone", "Mars/Olympus"],
            "timezone: Mars/Olympus is not a known time zone; use an IANA name such as "
            "America/Lima.",
        ),
        (
            # A good group first: its membership must not survive the bad one.
            ["--org", "Brand New Ministry", "--wg", "wg1", "--wg", "wg3"],
            "memberships: Unknown working group “wg3”; known: wg1, wg2.",
        ),
    ],
)
def test_add_member_bad_input_is_a_clear_error_and_changes_nothing(
    member: User, args: list[str], message: str
) -> None:
    before = _counts()

    with pytest.raises(CommandError) as error:
        _add("rosa@trabajo.example", "--name", "Rosa", "--password", PASSWORD, *args)

    assert str(error.value) == message
    assert _counts() == before


def test_add_member_duplicate_handle_on_update_changes_nothing(member: User) -> None:
    _add("rosa@trabajo.example", "--name", "Rosa", "--password", PASSWORD, "--wg", "wg1")
    before = _counts()

    with pytest.raises(CommandError):
        _add(
            "rosa@trabajo.example",
            "--name",
            "Rosa Changed",
            "--password",
            PASSWORD,
            "--handle",
            "ana",
            "--wg",
            "wg2",
            "--org",
            "Another Ministry",
        )

    assert _counts() == before
    assert User.objects.get(email="rosa@trabajo.example").name == "Rosa"
    assert _roles("rosa@trabajo.example") == [("wg1", "member")]


def test_add_member_invalid_email_is_a_clear_error(plan: None) -> None:
    with pytest.raises(CommandError) as error:
        _add("not-an-email", "--name", "Rosa", "--password", PASSWORD)

    assert str(error.value) == "email: Enter a valid email address."
    assert User.objects.count() == 0
