"""Template context every page needs: navigation and what the member may do."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from community import policy


def shell(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "minga_languages": settings.LANGUAGES,
        "can_invite": user is not None and user.is_authenticated and policy.can_invite(user),
        "is_secretariat": user is not None
        and user.is_authenticated
        and policy.is_secretariat(user),
    }
