"""Realtime wiring shared by the gateway: token authentication for programs."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator

from community.services import api_token_member


class TokenAuthMiddleware(BaseMiddleware):
    """`Authorization: Token <key>` on the handshake authenticates a program (not a query string:
    URLs end up in logs). A present but wrong token leaves the scope anonymous: the gateway then
    closes with 4401, the same as no credentials at all."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, key = value.decode("latin-1").partition(" ")
                if scheme.lower() == "token":
                    from django.contrib.auth.models import AnonymousUser

                    member = await database_sync_to_async(api_token_member)(key.strip())
                    scope = dict(scope, user=member or AnonymousUser(), auth="token")
                break
        return await super().__call__(scope, receive, send)


class OriginPolicy:
    """Browsers must come from our own hosts (ALLOWED_HOSTS); programs may send no Origin at all.

    A browser always sends Origin on a websocket handshake, so a missing Origin means a program:
    it is let through only with an `Authorization: Token` header, and its cookies are dropped so
    the token alone authenticates it (no ambient credential, no cross-site risk).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.browsers = AllowedHostsOriginValidator(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = scope.get("headers", [])
        names = {name for name, _ in headers}
        token = any(
            name == b"authorization" and value[:6].lower() == b"token " for name, value in headers
        )
        if b"origin" not in names and token:
            scope = dict(scope, headers=[(n, v) for n, v in headers if n != b"cookie"])
            return await self.app(scope, receive, send)
        return await self.browsers(scope, receive, send)
