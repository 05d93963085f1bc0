"""allauth hooks: sign-up by invitation only, or open to listed email domains."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest
from minga.middleware import client_ip

from .models import User


def signup_domain_allowed(email: str) -> bool:
    domain = email.rsplit("@", 1)[-1].lower()
    return domain in settings.MINGA_SIGNUP_DOMAINS


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.MINGA_SIGNUP_DOMAINS)

    def populate_username(self, request: HttpRequest, user: Any) -> None:
        # No usernames: a handle derived from the email stands in for @mentions.
        if not user.handle:
            user.handle = User.objects.available_handle(user.email)
        if not user.name:
            user.name = user.email.split("@", 1)[0]

    def get_client_ip(self, request: HttpRequest) -> str:
        return client_ip(request)
