"""minga.sessions (Django's db sessions, read by a written statement) and the gateway's
session user (minga.realtime.session_user), each against what it replaces."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from channels.auth import get_user
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.utils import timezone
from minga import sessions
from minga.realtime import session_identity, session_user

from community.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MODEL = "django.contrib.auth.backends.ModelBackend"
ALLAUTH = "allauth.account.auth_backends.AuthenticationBackend"


def _signed_in(member: User | None, backend: str = MODEL, **changes: Any) -> str:
    """A session as Django's login leaves it (`changes` replace or, as None, drop its keys)."""
    store = sessions.SessionStore()
    if member is not None:
        store[SESSION_KEY] = member._meta.pk.value_to_string(member)
        store[BACKEND_SESSION_KEY] = backend
        store[HASH_SESSION_KEY] = member.get_session_auth_hash()
    for key, value in changes.items():
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    store.create()
    assert store.session_key is not None
    return store.session_key


# --- The engine ----------------------------------------------------------------------------


def test_a_session_loads_as_with_djangos_engine() -> None:
    store = db.SessionStore()
    store["cart"] = {"a": 1, "when": "2026-11-26"}
    store.create()

    ours, django = sessions.SessionStore(store.session_key), db.SessionStore(store.session_key)

    assert ours.load() == django.load() == {"cart": {"a": 1, "when": "2026-11-26"}}
    assert ours.session_key == store.session_key


def test_a_session_load_is_one_query(django_assert_num_queries: Callable[..., Any]) -> None:
    key = _signed_in(UserFactory())

    with django_assert_num_queries(1):
        assert sessions.SessionStore(key).load()[SESSION_KEY]


@pytest.mark.parametrize("key", ["expired", "unknown-key-0123456789abcdef", "short", None])
def test_an_expired_unknown_or_malformed_session_loads_empty_and_drops_its_key(
    key: str | None,
) -> None:
    if key == "expired":
        key = _signed_in(UserFactory())
        Session.objects.filter(session_key=key).update(
            expire_date=timezone.now() - timedelta(seconds=1)
        )
    ours, django = sessions.SessionStore(key), db.SessionStore(key)

    assert ours.load() == django.load() == {}
    assert ours.session_key is None and django.session_key is None


# --- The gateway's session user ------------------------------------------------------------


def _case(name: str) -> tuple[str, str]:
    """Two sessions alike for `name` (one for each reader: a failed check flushes its session)
    and what the member is."""
    if name == "deleted member":
        gone = UserFactory()
        keys = (_signed_in(gone), _signed_in(gone))
        gone.delete()
        return keys
    member = {
        "inactive member": lambda: UserFactory(is_active=False),
        "unverified member": lambda: UserFactory(verified=False),
    }.get(name, UserFactory)()
    changes: dict[str, Any] = {
        "allauth's backend": {"backend": ALLAUTH},
        "a backend no longer configured": {"backend": "some.removed.Backend"},
        "a hash from before a password change": {HASH_SESSION_KEY: "0" * 64},
        "no hash": {HASH_SESSION_KEY: None},
        "no backend": {BACKEND_SESSION_KEY: None},
    }.get(name, {})
    backend = changes.pop("backend", MODEL)
    return _signed_in(member, backend, **changes), _signed_in(member, backend, **changes)


def _answer(user: Any, store: db.SessionStore) -> tuple[Any, ...]:
    if not user.is_authenticated:
        return ("anonymous", store.session_key is None)
    return (user.pk, user.language, user.is_active, user.is_verified, store.session_key)


@pytest.mark.parametrize(
    "name",
    [
        "a verified member",
        "unverified member",
        "inactive member",
        "deleted member",
        "allauth's backend",
        "a backend no longer configured",
        "a hash from before a password change",
        "no hash",
        "no backend",
    ],
)
def test_session_user_answers_as_channels_get_user(name: str) -> None:
    ours_key, theirs_key = _case(name)
    ours, theirs = sessions.SessionStore(ours_key), sessions.SessionStore(theirs_key)

    mine = _answer(session_user(ours), ours)
    channels = _answer(get_user.func({"session": theirs}), theirs)

    if channels[0] == "anonymous":
        assert mine == channels
    else:  # the same member, each with their own session key
        assert mine[:4] == channels[:4]
        assert mine[4] == ours_key and channels[4] == theirs_key


def test_session_user_of_an_empty_session_is_anonymous() -> None:
    assert not session_user(sessions.SessionStore(_signed_in(None))).is_authenticated


def test_session_identity_is_two_queries_the_session_and_the_member(
    django_assert_num_queries: Callable[..., Any],
) -> None:
    member = UserFactory()
    store = sessions.SessionStore(_signed_in(member))

    with django_assert_num_queries(2):
        user, identity = session_identity(store)

    assert user.pk == member.pk
    assert identity == (member.pk, member.language)
