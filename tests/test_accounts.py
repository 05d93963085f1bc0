"""allauth flows through the real URLs: login, verification, password reset, sign-up, rate limits, MFA."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from community.models import User
from tests.factories import PASSWORD, UserFactory

NEW_PASSWORD = "lantern-harbour-quartz-41"


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """allauth keeps rate-limit counters in the cache: every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


def _links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+", text)


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def _login(client: Client, email: str, password: str) -> object:
    return client.post(reverse("account_login"), {"login": email, "password": password})


# --- Login and verification -------------------------------------------------------------------


def test_login_verified_member_by_email_signs_in(client: Client, member: User) -> None:
    response = _login(client, "ana@trabajo.example", PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.session["_auth_user_id"] == str(member.pk)


def test_login_email_is_case_insensitive(client: Client, member: User) -> None:
    response = _login(client, "Ana@Trabajo.Example", PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)


def test_login_wrong_password_is_refused(client: Client, member: User) -> None:
    response = _login(client, "ana@trabajo.example", "not-the-password-1")

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert list(response.context["form"].non_field_errors()) == [
        "The email address and/or password you specified are not correct."
    ]


def test_login_unverified_member_gets_verification_sent_page(client: Client, db: None) -> None:
    UserFactory(email="new@trabajo.example", verified=False)

    response = _login(client, "new@trabajo.example", PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session
    assert [m.to for m in mail.outbox] == [["new@trabajo.example"]]


def test_verification_link_verifies_then_login_works(client: Client, db: None) -> None:
    user = UserFactory(email="new@trabajo.example", verified=False)
    _login(client, "new@trabajo.example", PASSWORD)
    confirm = next(u for u in _links(mail.outbox[0].body) if "/confirm-email/" in u)

    client.post(_path(confirm))
    response = _login(client, "new@trabajo.example", PASSWORD)

    assert EmailAddress.objects.get(user=user).verified is True
    assert response["Location"] == reverse("dashboard")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_inactive_member_is_refused(client: Client, db: None) -> None:
    UserFactory(email="gone@trabajo.example", is_active=False)

    _login(client, "gone@trabajo.example", PASSWORD)

    assert "_auth_user_id" not in client.session


# --- Password reset ---------------------------------------------------------------------------


def test_password_reset_link_sets_password_once(client: Client, member: User) -> None:
    client.post(reverse("account_reset_password"), {"email": "ana@trabajo.example"})
    assert [m.to for m in mail.outbox] == [["ana@trabajo.example"]]
    link = _path(next(u for u in _links(mail.outbox[0].body) if "/password/reset/key/" in u))

    form_page = client.get(link, follow=True)
    done = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else link,
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    again = client.get(link, follow=True)

    assert done.status_code == 302
    assert done["Location"] == reverse("account_reset_password_from_key_done")
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD) is True
    assert again.context["token_fail"] is True


def test_password_reset_unknown_email_answers_like_a_known_one(
    client: Client, member: User
) -> None:
    known = client.post(reverse("account_reset_password"), {"email": "ana@trabajo.example"})
    unknown = client.post(reverse("account_reset_password"), {"email": "nobody@trabajo.example"})

    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert known["Location"] == reverse("account_reset_password_done")
    # Nobody learns anything from the response; the unknown address gets a note, no link.
    assert [m.to for m in mail.outbox] == [["ana@trabajo.example"], ["nobody@trabajo.example"]]
    assert "/password/reset/key/" not in mail.outbox[1].body


# --- Sign-up ----------------------------------------------------------------------------------


def _signup(client: Client, email: str) -> object:
    return client.post(
        reverse("account_signup"),
        {"email": email, "name": "Rosa Díaz", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )


def test_signup_without_domains_is_closed(client: Client, db: None, settings: object) -> None:
    settings.MINGA_SIGNUP_DOMAINS = []

    page = client.get(reverse("account_signup"))
    posted = _signup(client, "rosa@trabajo.example")

    assert page.templates[0].name == "account/signup_closed.html"
    assert posted.templates[0].name == "account/signup_closed.html"
    assert User.objects.filter(email="rosa@trabajo.example").exists() is False


@pytest.mark.parametrize(("domains", "offers_signup"), [([], False), (["trabajo.example"], True)])
def test_landing_page_tells_the_sign_up_rule_in_force(
    client: Client, db: None, settings: object, domains: list[str], offers_signup: bool
) -> None:
    settings.MINGA_SIGNUP_DOMAINS = domains

    page = client.get("/").content.decode()

    assert (reverse("account_signup") in page) is offers_signup
    assert ("Sign-up is open to addresses of the member institutions" in page) is offers_signup
    assert ("Sign-up is by invitation" in page) is not offers_signup


def test_signup_listed_domain_creates_unverified_account(
    client: Client, db: None, settings: object
) -> None:
    settings.MINGA_SIGNUP_DOMAINS = ["trabajo.example"]

    response = _signup(client, "rosa@trabajo.example")

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    user = User.objects.get(email="rosa@trabajo.example")
    assert (user.name, user.handle) == ("Rosa Díaz", "rosa")
    assert EmailAddress.objects.get(user=user).verified is False
    assert "_auth_user_id" not in client.session


def test_signup_unlisted_domain_is_refused(client: Client, db: None, settings: object) -> None:
    settings.MINGA_SIGNUP_DOMAINS = ["trabajo.example"]

    response = _signup(client, "rosa@elsewhere.example")

    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["email"]
    assert User.objects.filter(email="rosa@elsewhere.example").exists() is False


def test_signup_existing_email_does_not_reveal_it(
    client: Client, member: User, settings: object
) -> None:
    settings.MINGA_SIGNUP_DOMAINS = ["trabajo.example"]
    fresh = _signup(client, "rosa@trabajo.example")
    client.logout()
    cache.clear()

    taken = _signup(Client(), "ana@trabajo.example")

    assert (taken.status_code, taken["Location"]) == (fresh.status_code, fresh["Location"])
    assert User.objects.filter(email="ana@trabajo.example").count() == 1
    member.refresh_from_db()
    assert member.check_password(PASSWORD) is True


# --- Rate limits ------------------------------------------------------------------------------


def test_login_after_failures_is_refused_even_with_right_password(
    client: Client, member: User
) -> None:
    for _attempt in range(5):  # ACCOUNT_RATE_LIMITS["login_failed"]: 5/5m per key
        _login(client, "ana@trabajo.example", "not-the-password-1")

    response = _login(client, "ana@trabajo.example", PASSWORD)

    assert "_auth_user_id" not in client.session
    assert response.status_code == 200
    assert list(response.context["form"].non_field_errors()) == [
        "Too many failed login attempts. Try again later."
    ]


def test_login_after_fewer_failures_still_works(client: Client, member: User) -> None:
    for _attempt in range(4):
        _login(client, "ana@trabajo.example", "not-the-password-1")

    _login(client, "ana@trabajo.example", PASSWORD)

    assert client.session["_auth_user_id"] == str(member.pk)


# --- MFA --------------------------------------------------------------------------------------


def _sign_in_recently(client: Client) -> None:
    """Sign in, then confirm the password again: allauth asks for that before MFA changes."""
    _login(client, "ana@trabajo.example", PASSWORD)
    response = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert response.status_code == 302


def _activate_totp(client: Client) -> str:
    """Activate TOTP as a person does: read the secret allauth offers, answer with a code."""
    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = page.context["form"].secret
    response = client.post(reverse("mfa_activate_totp"), {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302
    return secret


def test_totp_activation_then_login_requires_the_code(member: User) -> None:
    browser = Client()
    _sign_in_recently(browser)
    secret = _activate_totp(browser)
    assert Authenticator.objects.filter(user=member).count() == 2  # totp + recovery codes

    fresh = Client()
    first = _login(fresh, "ana@trabajo.example", PASSWORD)
    assert first["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in fresh.session
    wrong = fresh.post(reverse("mfa_authenticate"), {"code": "000000"})
    assert "_auth_user_id" not in fresh.session
    right = fresh.post(reverse("mfa_authenticate"), {"code": pyotp.TOTP(secret).now()})

    assert wrong.status_code == 200
    assert right.status_code == 302
    assert fresh.session["_auth_user_id"] == str(member.pk)


def test_recovery_code_works_once(member: User) -> None:
    browser = Client()
    _sign_in_recently(browser)
    _activate_totp(browser)
    codes = browser.get(reverse("mfa_view_recovery_codes")).context["unused_codes"]
    assert len(codes) == 10

    first = Client()
    _login(first, "ana@trabajo.example", PASSWORD)
    first.post(reverse("mfa_authenticate"), {"code": codes[0]})
    cache.clear()
    second = Client()
    _login(second, "ana@trabajo.example", PASSWORD)
    second.post(reverse("mfa_authenticate"), {"code": codes[0]})

    assert first.session["_auth_user_id"] == str(member.pk)
    assert "_auth_user_id" not in second.session


def test_webauthn_add_page_is_reachable(client: Client, member: User) -> None:
    _sign_in_recently(client)

    response = client.get(reverse("mfa_add_webauthn"))

    assert response.status_code == 200
