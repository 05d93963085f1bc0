"""Invitations: who may send them, the email and its link, and accepting it exactly once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from community import services
from community.models import Invitation, Membership, Organization, User, WorkingGroup
from tests.factories import OrganizationFactory

PASSWORD = "lantern-harbour-quartz-41"
CaptureOnCommit = Callable[..., AbstractContextManager[list[Callable[[], None]]]]


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def ministry(db: None) -> Organization:
    return OrganizationFactory(name="Ministerio de Trabajo del Perú", country="PE")


def _invite_form(
    organization: Organization | None, working_group: str = "wg1", role: str = "member"
) -> dict[str, str]:
    return {
        "email": "Rosa@Trabajo.example",
        "name": "Rosa Díaz",
        "organization": str(organization.pk) if organization else "",
        "working_group": working_group,
        "role": role,
    }


def _invitation_link(message: mail.EmailMessage) -> str:
    (url,) = re.findall(r"https?://\S+/invite/\S+/", message.body)
    return re.sub(r"^https?://[^/]+", "", url)


def _invite(
    inviter: User, organization: Organization | None, *, memberships: list[tuple[str, str]]
) -> str:
    """An invitation made through the service; returns the path of its link."""
    groups = [(WorkingGroup.objects.get(slug=slug), role) for slug, role in memberships]
    _invitation, raw = services.invitation_create(
        email="rosa@trabajo.example",
        name="Rosa Díaz",
        organization=organization,
        memberships=groups,
        invited_by=inviter,
        base_url="http://testserver/",
    )
    return f"/invite/{raw}/"


def _accept_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Rosa Díaz",
        "handle": "rosa",
        "language": "es",
        "timezone": "America/Lima",
        "password1": PASSWORD,
        "password2": PASSWORD,
    }
    data.update(overrides)
    return data


# --- Sending ----------------------------------------------------------------------------------


def test_invitation_by_secretariat_sends_email_with_link(
    client: Client,
    secretariat: User,
    ministry: Organization,
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    client.force_login(secretariat)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("invitation_create"), _invite_form(ministry, "wg2", "chair"))

    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.name, invitation.organization) == (
        "rosa@trabajo.example",
        "Rosa Díaz",
        ministry,
    )
    assert invitation.memberships == [{"working_group": "wg2", "role": "chair"}]
    assert invitation.invited_by == secretariat
    assert [m.to for m in mail.outbox] == [["rosa@trabajo.example"]]
    link = _invitation_link(mail.outbox[0])
    assert Invitation.hash_token(link.split("/")[2]) == invitation.token_hash


def test_invitation_by_chair_to_own_group_is_sent(
    client: Client,
    chair: User,
    ministry: Organization,
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    client.force_login(chair)

    page = client.get(reverse("invitation_create"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("invitation_create"), _invite_form(ministry, "wg1"))

    assert page.status_code == 200
    assert response.status_code == 302
    assert Invitation.objects.get().memberships == [{"working_group": "wg1", "role": "member"}]
    assert [m.to for m in mail.outbox] == [["rosa@trabajo.example"]]


def test_invitation_by_chair_to_other_group_is_refused(
    client: Client,
    chair: User,
    ministry: Organization,
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    client.force_login(chair)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("invitation_create"), _invite_form(ministry, "wg2"))

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["working_group"]
    assert Invitation.objects.count() == 0
    assert mail.outbox == []


def test_invitation_page_for_plain_member_is_forbidden(
    client: Client, member: User, ministry: Organization
) -> None:
    client.force_login(member)

    page = client.get(reverse("invitation_create"))
    posted = client.post(reverse("invitation_create"), _invite_form(ministry))

    assert (page.status_code, posted.status_code) == (403, 403)
    assert Invitation.objects.count() == 0


def test_invitation_page_for_anonymous_redirects_to_login(client: Client, plan: None) -> None:
    response = client.get(reverse("invitation_create"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_invitation_invalid_email_is_a_field_error(
    client: Client, secretariat: User, ministry: Organization
) -> None:
    client.force_login(secretariat)

    response = client.post(
        reverse("invitation_create"), {**_invite_form(ministry), "email": "not-an-email"}
    )

    assert list(response.context["form"].errors) == ["email"]
    assert Invitation.objects.count() == 0


# --- Accepting --------------------------------------------------------------------------------


def test_accept_creates_verified_account_in_organization_and_groups(
    client: Client, secretariat: User, ministry: Organization
) -> None:
    link = _invite(secretariat, ministry, memberships=[("wg1", "vice_chair"), ("wg2", "member")])

    page = client.get(link)
    response = client.post(link, _accept_form())

    assert page.status_code == 200
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    user = User.objects.get(email="rosa@trabajo.example")
    assert (user.name, user.handle, user.language, user.timezone, user.organization) == (
        "Rosa Díaz",
        "rosa",
        "es",
        "America/Lima",
        ministry,
    )
    assert user.check_password(PASSWORD) is True
    assert list(EmailAddress.objects.filter(user=user).values_list("verified", "primary")) == [
        (True, True)
    ]
    assert sorted(
        Membership.objects.filter(member=user).values_list("working_group__slug", "role")
    ) == [("wg1", "vice_chair"), ("wg2", "member")]
    assert client.session["_auth_user_id"] == str(user.pk)
    invitation = Invitation.objects.get()
    assert invitation.accepted_by == user


def test_accept_without_handle_derives_it_from_email(
    client: Client, secretariat: User, ministry: Organization
) -> None:
    link = _invite(secretariat, ministry, memberships=[])

    client.post(link, _accept_form(handle=""))

    assert User.objects.get(email="rosa@trabajo.example").handle == "rosa"


def test_accept_link_works_once(client: Client, secretariat: User, ministry: Organization) -> None:
    link = _invite(secretariat, ministry, memberships=[("wg1", "member")])
    client.post(link, _accept_form())

    again = Client().get(link)
    again_post = Client().post(link, _accept_form(handle="rosa2"))

    assert again.status_code == 404
    assert again.templates[0].name == "community/invitation_invalid.html"
    assert again_post.status_code == 404
    assert User.objects.filter(email="rosa@trabajo.example").count() == 1


def test_accept_expired_link_is_not_found(
    client: Client, secretariat: User, ministry: Organization
) -> None:
    link = _invite(secretariat, ministry, memberships=[])
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.post(link, _accept_form())

    assert response.status_code == 404
    assert User.objects.filter(email="rosa@trabajo.example").exists() is False


def test_accept_unknown_token_is_not_found(client: Client, plan: None) -> None:
    response = client.get("/invite/not-a-real-token/")

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password1": "short", "password2": "short"}, "password1"),
        ({"password1": "12345678901", "password2": "12345678901"}, "password1"),
        ({"password2": "something-else-entirely-7"}, "password2"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"handle": "Not A Handle!"}, "handle"),
        ({"language": "de"}, "language"),
        ({"name": ""}, "name"),
    ],
)
def test_accept_bad_input_is_a_field_error_and_creates_nothing(
    client: Client,
    secretariat: User,
    ministry: Organization,
    overrides: dict[str, str],
    field: str,
) -> None:
    link = _invite(secretariat, ministry, memberships=[("wg1", "member")])
    users_before = User.objects.count()

    response = client.post(link, _accept_form(**overrides))

    assert response.status_code == 200
    assert list(response.context["form"].errors) == [field]
    assert User.objects.count() == users_before
    assert Invitation.objects.get().accepted_at is None
    assert "_auth_user_id" not in client.session


def test_accept_taken_handle_is_a_field_error(
    client: Client, secretariat: User, member: User, ministry: Organization
) -> None:
    link = _invite(secretariat, ministry, memberships=[])
    users_before = User.objects.count()

    response = client.post(link, _accept_form(handle="ana"))

    assert list(response.context["form"].errors) == ["handle"]
    assert User.objects.count() == users_before
    assert Invitation.objects.get().accepted_at is None


def test_accept_for_existing_account_is_refused(
    client: Client, secretariat: User, ministry: Organization
) -> None:
    link = _invite(secretariat, ministry, memberships=[("wg1", "member")])
    User.objects.create_user("rosa@trabajo.example", PASSWORD, name="Rosa")  # after the invite

    response = client.post(link, _accept_form(handle="rosa-d"))

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "An account with this email already exists; sign in instead."
    ]
    assert Membership.objects.filter(member__email="rosa@trabajo.example").count() == 0
    assert Invitation.objects.get().accepted_at is None


def test_invitation_to_existing_member_is_a_field_error(
    client: Client,
    secretariat: User,
    member: User,
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    client.force_login(secretariat)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("invitation_create"), {**_invite_form(None), "email": "ANA@trabajo.example"}
        )

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "email": ["ana@trabajo.example already has an account."]
    }
    assert Invitation.objects.count() == 0
    assert mail.outbox == []


def test_invitation_sent_again_replaces_the_earlier_link(
    client: Client, secretariat: User, ministry: Organization
) -> None:
    first = _invite(secretariat, ministry, memberships=[("wg1", "member")])
    second = _invite(secretariat, ministry, memberships=[("wg2", "member")])

    stale = client.get(first)
    response = client.post(second, _accept_form())

    assert stale.status_code == 404
    assert response.status_code == 302
    assert sorted(
        Membership.objects.filter(member__email="rosa@trabajo.example").values_list(
            "working_group__slug", flat=True
        )
    ) == ["wg2"]
