"""Accounts: no enumeration, brute force blocked by the shared rate limit, links work once.

- Login, sign-up and password reset answer a known and an unknown address identically: status,
  redirect, the page (with the address itself masked), the cookies set, and who gets an email
  (the unknown address gets a note without a link, or nothing; the page does not tell).
- Failed logins from rotating, spoofed `X-Forwarded-For` values are blocked at the limit
  (ACCOUNT_RATE_LIMITS["login_failed"], 10 a minute per address), with 0 trusted proxies (the
  header is ignored) and with 1 (only the address the proxy appended counts).
- The limit lives in the default cache, Redis in production: failures counted by another
  process block this one.
- The password-reset, email-verification and invitation links work once, and not after expiry
  (the clock is moved past each lifetime).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from allauth.account import app_settings as allauth_settings
from allauth.account.models import EmailAddress
from django.core import mail, signing
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from community import services
from community.models import Organization, User
from tests.factories import PASSWORD, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
KNOWN = "ana@trabajo.example"
UNKNOWN = "nadie@trabajo.example"
WRONG = "not-the-password-1"
NEW_PASSWORD = "lantern-harbour-quartz-41"
IP_LIMIT = 10  # ACCOUNT_RATE_LIMITS["login_failed"] = "10/m/ip,5/5m/key"
# Headers whose presence or value could tell one answer from the other.
TELLING_HEADERS = ("Location", "Content-Type", "Cache-Control", "Vary", "X-Frame-Options")

# What the tests below proved, each entry written after its assertions passed; printed as the
# family's figure line when the module ends (a test that did not run or failed is left out).
PROVED: dict[str, set[str]] = {"identical": set(), "once": set(), "expires": set()}
BLOCKED: dict[int, str] = {}
SHARED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _figure_line(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    blocked = ", ".join(f"{n} trusted proxies: {BLOCKED[n]}" for n in sorted(BLOCKED)) or "n/a"
    figure = (
        f"known vs unknown address identical in {len(PROVED['identical'])}/3 flows "
        f"({', '.join(sorted(PROVED['identical']))}); "
        f"{IP_LIMIT + 5} failed logins with rotating spoofed X-Forwarded-For: {blocked}; "
        f"limit shared across processes: {SHARED[0] if SHARED else 'n/a'}; "
        f"links single-use {len(PROVED['once'])}/3, refused after expiry "
        f"{len(PROVED['expires'])}/3 (reset, verification, invitation)"
    )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nACCOUNTS: {figure}")


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """allauth keeps rate-limit counters in the cache: every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


def _masked(response: HttpResponse, email: str) -> str:
    """The page with the address and the per-request tokens masked."""
    text = response.content.decode()
    text = text.replace(email, "EMAIL")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", text)


def _shape(response: HttpResponse, email: str) -> dict[str, Any]:
    """Everything a client could compare between two answers."""
    return {
        "status": response.status_code,
        "headers": {h: response.headers.get(h) for h in TELLING_HEADERS},
        "cookies": sorted(response.cookies),
        "body": _masked(response, email),
    }


def _follow(client: Client, response: HttpResponse) -> HttpResponse:
    """The page the redirect leads to (status 200 expected)."""
    assert response.status_code == 302, response.status_code
    return client.get(response["Location"])


def _links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+", text)


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def _login(client: Client, email: str, password: str, **extra: str) -> HttpResponse:
    return client.post(reverse("account_login"), {"login": email, "password": password}, **extra)


def _form_errors(response: HttpResponse) -> list[str]:
    return list(response.context["form"].non_field_errors())


# --- No enumeration ---------------------------------------------------------------------------


def test_login_known_and_unknown_address_answer_identically(member: User) -> None:
    unverified = UserFactory(email="nuevo@trabajo.example", verified=False)

    answers = {
        email: _shape(_login(Client(), email, WRONG), email)
        for email in (KNOWN, unverified.email, UNKNOWN)
    }

    assert answers[KNOWN] == answers[UNKNOWN]
    assert answers[unverified.email] == answers[UNKNOWN]
    assert answers[UNKNOWN]["status"] == 200
    assert mail.outbox == []
    PROVED["identical"].add("login")


def test_signup_known_and_unknown_address_answer_identically(member: User, settings: Any) -> None:
    settings.MINGA_SIGNUP_DOMAINS = ["trabajo.example"]
    answers = {}
    for email in (KNOWN, UNKNOWN):
        client = Client()
        posted = client.post(
            reverse("account_signup"),
            {
                "email": email,
                "name": "Rosa Díaz",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        )
        answers[email] = (_shape(posted, email), _shape(_follow(client, posted), email))

    assert answers[KNOWN] == answers[UNKNOWN]
    # Each address hears from us: the new one a verification link, the taken one a note that
    # it already has an account. Only the mailbox's owner learns which.
    assert [m.to for m in mail.outbox] == [[KNOWN], [UNKNOWN]]
    assert "/confirm-email/" not in mail.outbox[0].body
    assert "/confirm-email/" in mail.outbox[1].body
    assert User.objects.filter(email=KNOWN).count() == 1
    member.refresh_from_db()
    assert member.check_password(PASSWORD) is True
    PROVED["identical"].add("sign-up")


def test_password_reset_known_and_unknown_address_answer_identically(member: User) -> None:
    answers = {}
    for email in (KNOWN, UNKNOWN):
        client = Client()
        posted = client.post(reverse("account_reset_password"), {"email": email})
        answers[email] = (_shape(posted, email), _shape(_follow(client, posted), email))

    assert answers[KNOWN] == answers[UNKNOWN]
    assert [m.to for m in mail.outbox] == [[KNOWN], [UNKNOWN]]
    assert "/password/reset/key/" in mail.outbox[0].body
    assert "/password/reset/key/" not in mail.outbox[1].body
    PROVED["identical"].add("reset")


# --- Brute force and X-Forwarded-For ----------------------------------------------------------


def _spoofed_failures(
    behind_proxy: bool, real_client: str = "198.51.100.7"
) -> list[tuple[int, list[str]]]:
    """IP_LIMIT + 5 failed logins, each with a new address, password and spoofed X-F-F."""
    outcomes = []
    for n in range(IP_LIMIT + 5):
        spoof = f"203.0.113.{n + 1}"
        extra = (
            # The proxy appends the address it saw to whatever the client sent.
            {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"{spoof}, {real_client}"}
            if behind_proxy
            else {"REMOTE_ADDR": real_client, "HTTP_X_FORWARDED_FOR": spoof}
        )
        response = _login(Client(), f"guess{n}@trabajo.example", f"{WRONG}-{n}", **extra)
        outcomes.append((response.status_code, _form_errors(response)))
    return outcomes


INCORRECT = ["The email address and/or password you specified are not correct."]
TOO_MANY = ["Too many failed login attempts. Try again later."]


@pytest.mark.parametrize("trusted_proxies", [0, 1])
def test_rotating_spoofed_forwarded_for_is_blocked_at_the_limit(
    member: User, settings: Any, trusted_proxies: int
) -> None:
    settings.TRUSTED_PROXY_COUNT = trusted_proxies
    behind_proxy = trusted_proxies == 1

    outcomes = _spoofed_failures(behind_proxy)
    extra = (
        {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.99, 198.51.100.7"}
        if behind_proxy
        else {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "203.0.113.99"}
    )
    right_password = _login(Client(), KNOWN, PASSWORD, **extra)

    assert outcomes == [(200, INCORRECT)] * IP_LIMIT + [(200, TOO_MANY)] * 5
    # Blocked means blocked: the right password from that address is refused too.
    assert _form_errors(right_password) == TOO_MANY
    BLOCKED[trusted_proxies] = f"blocked from attempt {IP_LIMIT + 1}"


def test_behind_one_proxy_another_client_keeps_its_own_budget(member: User, settings: Any) -> None:
    """The proxy count is honoured: the budget is the client's, not the proxy's."""
    settings.TRUSTED_PROXY_COUNT = 1
    _spoofed_failures(behind_proxy=True, real_client="198.51.100.7")

    client = Client()
    response = _login(
        client, KNOWN, PASSWORD, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.8"
    )

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)


SHARED_PROCESS = textwrap.dedent(
    """
    import json, os, sys
    import django
    django.setup()
    from django.test import RequestFactory, override_settings
    from allauth.core import ratelimit

    caches = json.loads(os.environ["ACCOUNTS_CACHES"])
    with override_settings(CACHES=caches):
        allowed = 0
        for n in range(int(sys.argv[1])):
            request = RequestFactory().post("/accounts/login/", REMOTE_ADDR=sys.argv[2])
            if ratelimit.consume(request, action="login_failed", key=f"other{n}@example.org"):
                allowed += 1
    print(allowed)
    """
)


@pytest.mark.redis
def test_failures_counted_by_another_process_block_this_one(
    member: User, settings: Any, redis_url: str
) -> None:
    """Production's cache is Redis, so every web process draws on one budget per address."""
    caches = {
        "default": {
            "BACKEND": "minga.cache.ResilientRedisCache",
            "LOCATION": redis_url,
            # Our own prefix on the shared Redis: nothing of another test run is touched.
            "KEY_PREFIX": f"accounts-test-{uuid.uuid4().hex}",
        }
    }
    settings.CACHES = caches
    address = "192.0.2.77"
    env = {**os.environ, "ACCOUNTS_CACHES": json.dumps(caches), "PYTHONPATH": str(ROOT)}
    other = subprocess.run(
        [sys.executable, "-c", SHARED_PROCESS, str(IP_LIMIT), address],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert other.returncode == 0, other.stderr

    try:
        here = _login(Client(), KNOWN, PASSWORD, REMOTE_ADDR=address)
        elsewhere = _login(Client(), KNOWN, PASSWORD, REMOTE_ADDR="192.0.2.78")
    finally:
        cache.clear()

    assert int(other.stdout.split()[-1]) == IP_LIMIT
    assert _form_errors(here) == TOO_MANY
    assert elsewhere.status_code == 302
    SHARED.append(f"yes ({IP_LIMIT} failures in another process block this one, Redis)")


# --- Links: once, and not after expiry --------------------------------------------------------


def _reset_link(client: Client) -> str:
    client.post(reverse("account_reset_password"), {"email": KNOWN})
    return _path(next(u for u in _links(mail.outbox[-1].body) if "/password/reset/key/" in u))


def _reset_with(link: str, password: str) -> tuple[Client, HttpResponse]:
    """Open the link and set `password`; returns the client and the final answer."""
    client = Client()
    opened = client.get(link, follow=True)
    form_url = opened.redirect_chain[-1][0] if opened.redirect_chain else link
    return client, client.post(form_url, {"password1": password, "password2": password})


def test_password_reset_link_works_once(member: User) -> None:
    link = _reset_link(Client())

    _client, first = _reset_with(link, NEW_PASSWORD)
    _client, second = _reset_with(link, "another-password-77")

    assert first.status_code == 302
    assert first["Location"] == reverse("account_reset_password_from_key_done")
    assert second.status_code == 200
    assert second.context["token_fail"] is True
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD) is True
    PROVED["once"].add("reset")


def test_password_reset_link_expires(member: User, settings: Any) -> None:
    link = _reset_link(Client())
    later = timezone.now().replace(tzinfo=None) + timedelta(
        seconds=settings.PASSWORD_RESET_TIMEOUT + 60
    )

    with mock.patch(
        "django.contrib.auth.tokens.PasswordResetTokenGenerator._now", return_value=later
    ):
        _client, late = _reset_with(link, NEW_PASSWORD)

    member.refresh_from_db()
    unchanged_after_late = member.check_password(PASSWORD)
    _client, in_time = _reset_with(link, NEW_PASSWORD)

    assert late.status_code == 200
    assert late.context["token_fail"] is True
    assert unchanged_after_late is True
    assert in_time.status_code == 302  # the same link, in its lifetime, works
    PROVED["expires"].add("reset")


def _verification_link(client: Client, email: str) -> str:
    _login(client, email, PASSWORD)
    return _path(next(u for u in _links(mail.outbox[-1].body) if "/confirm-email/" in u))


def test_verification_link_works_once(db: None) -> None:
    user = UserFactory(email="nuevo@trabajo.example", verified=False)
    link = _verification_link(Client(), user.email)

    first = Client().post(link)
    second = Client().post(link)

    assert first.status_code == 302
    assert first["Location"] == reverse("account_login")
    assert EmailAddress.objects.get(user=user).verified is True
    # The link names an unverified address; once verified it names nothing.
    assert second.status_code == 404
    PROVED["once"].add("verification")


def test_verification_link_expires(db: None) -> None:
    user = UserFactory(email="nuevo@trabajo.example", verified=False)
    link = _verification_link(Client(), user.email)
    lifetime = timedelta(days=allauth_settings.EMAIL_CONFIRMATION_EXPIRE_DAYS)
    later = timezone.now().timestamp() + (lifetime + timedelta(minutes=1)).total_seconds()

    # allauth signs the link with a timestamp (django.core.signing): move that clock.
    with mock.patch.object(signing, "time", mock.Mock(time=lambda: later)):
        late = Client().post(link)
    unverified_after_late = EmailAddress.objects.get(user=user).verified is False
    in_time = Client().post(link)

    assert late.status_code == 404
    assert unverified_after_late is True
    assert in_time.status_code == 302  # the same link, in its lifetime, works
    PROVED["expires"].add("verification")


@pytest.fixture
def ministry(db: None) -> Organization:
    return OrganizationFactory(name="Ministerio de Trabajo")


def _invite(secretariat: User, ministry: Organization) -> str:
    _invitation, raw = services.invitation_create(
        email="invitada@trabajo.example",
        name="Lucía Gómez",
        organization=ministry,
        memberships=[],
        invited_by=secretariat,
        base_url="http://testserver/",
    )
    return reverse("invitation_accept", args=[raw])


def _accept(link: str, handle: str) -> HttpResponse:
    return Client().post(
        link,
        {
            "name": "Lucía Gómez",
            "handle": handle,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "language": "es",
            "timezone": "America/Bogota",
        },
    )


def test_invitation_link_works_once(secretariat: User, ministry: Organization) -> None:
    link = _invite(secretariat, ministry)

    first = _accept(link, "lucia")
    second = _accept(link, "lucia2")

    assert first.status_code == 302
    assert second.status_code == 404
    assert User.objects.filter(email="invitada@trabajo.example").count() == 1
    PROVED["once"].add("invitation")


def test_invitation_link_expires(secretariat: User, ministry: Organization, settings: Any) -> None:
    link = _invite(secretariat, ministry)
    later = timezone.now() + timedelta(days=settings.MINGA_INVITATION_DAYS, minutes=1)

    with mock.patch("django.utils.timezone.now", return_value=later):
        late = _accept(link, "lucia")
    created_after_late = User.objects.filter(email="invitada@trabajo.example").exists()
    in_time = _accept(link, "lucia")

    assert late.status_code == 404
    assert created_after_late is False
    assert in_time.status_code == 302  # the same link, in its lifetime, works
    PROVED["expires"].add("invitation")


def test_login_while_the_cache_is_unreachable_fails_open(member: User, settings: Any) -> None:
    """Redis away (nothing listens on the port): a delegate still signs in (docs/operations.md)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "minga.cache.ResilientRedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
    client = Client()

    response = _login(client, KNOWN, PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)
