"""Realtime wiring shared by the gateway: token authentication for programs."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

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
