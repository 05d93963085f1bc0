"""Realtime wiring shared by the gateway: token authentication for programs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from django.conf import settings

from community.services import api_token_member


def token_identity(raw: str) -> tuple[Any, tuple[int, str] | None, str]:
    """Everything a socket needs of its token, in one database hop (two queries, three when the
    token's last use is recorded): (the member or None, (member id, language) when the member is
    a participant now else None, the credential fingerprint `session.revoked` is matched on)."""
    from django.contrib.auth.models import AnonymousUser

    from community import policy
    from community.models import ApiToken
    from forums.frames import credential_fingerprint

    member = api_token_member(raw)
    identity = (
        (int(member.pk), str(member.language or ""))
        if member is not None and policy.is_participant(member)
        else None
    )
    return member or AnonymousUser(), identity, credential_fingerprint(ApiToken.hash_key(raw))


class TokenAuthMiddleware(BaseMiddleware):
    """`Authorization: Token <key>` on the handshake authenticates a program (not a query string:
    URLs end up in logs). A present but wrong token leaves the scope anonymous: the gateway then
    closes with 4401, the same as no credentials at all.

    The gateway's own questions about the token (is the member a participant, in which
    language, which credential) are answered in the same hop and handed over in the scope
    (forums.consumers.GATEWAY_IDENTITY, GATEWAY_CREDENTIAL): one hop to the process's database
    thread per connect instead of three, each queued behind every other connect and post."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, key = value.decode("latin-1").partition(" ")
                if scheme.lower() == "token":
                    member, identity, credential = await database_sync_to_async(token_identity)(
                        key.strip()
                    )
                    scope = dict(
                        scope,
                        user=member,
                        auth="token",
                        **{IDENTITY_KEY: identity, CREDENTIAL_KEY: credential},
                    )
                break
        return await super().__call__(scope, receive, send)


# The scope keys forums.consumers reads (GATEWAY_IDENTITY, GATEWAY_CREDENTIAL).
IDENTITY_KEY = "minga.identity"
CREDENTIAL_KEY = "minga.credential"


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
        if not _same_scheme_and_port(headers):
            return await WebsocketDenier()(scope, receive, send)
        return await self.browsers(scope, receive, send)


def _same_scheme_and_port(headers: list[tuple[bytes, bytes]]) -> bool:
    """The Origin's scheme is the site's, and its host:port is the handshake's Host.

    Channels' validator compares host names only; a browser's origin also has a scheme and a
    port, so https://host or http://host:9999 is another origin and is refused here.
    """
    values = dict(headers)
    origin = values.get(b"origin")
    if origin is None:
        return True  # the host validator refuses a missing Origin
    try:
        parsed = urlsplit(origin.decode("latin-1"))
        port = parsed.port
    except ValueError:
        return False
    if parsed.scheme != ("https" if settings.HTTPS else "http"):
        return False
    host = values.get(b"host")
    if host is None:
        return port is None
    return parsed.netloc.lower() == host.decode("latin-1").lower()
