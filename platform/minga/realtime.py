"""Realtime wiring of the gateway: its ASGI routing, the Origin check, who a handshake names,
and the database hops."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from typing import Any, NamedTuple
from urllib.parse import urlparse, urlsplit

from asgiref.sync import sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db import close_old_connections
from django.http import parse_cookie

from community.services import api_token_member_row

_executor: ThreadPoolExecutor | None = None
_hops: dict[tuple[Callable[..., Any], int], Callable[..., Awaitable[Any]]] = {}


def db_hop[**P, T](fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`fn` run in a thread, as `database_sync_to_async` does, for the gateway's database hops.

    Channels runs every hop of a process on one thread, so a connect's token check waited for
    every subscribe replay and post queued before it: the connect rate was the database's round
    trips end to end (docs/performance.md, "Gateway database threads"). With
    settings.GATEWAY_DB_THREADS > 0 (PostgreSQL) the hops run on that many threads instead,
    each borrowing a connection from Django's pool; a socket's own hops still run one after
    the other (the gateway awaits each).

    Old connections are closed inside the hop, before and after `fn`. Django keeps its
    connections in asgiref Locals, which follow the context: `fn` runs in a copy of the
    socket's context, and the connection it opened can go back with that context, where
    `database_sync_to_async`'s own closing (run in the thread's context) does not always see
    it (a session socket's `get_user` left one checked out). Channels (4.2 and later) closed it
    on the socket's next frame, with a thread hop per frame; the gateway makes no such hop
    (forums.consumers.GatewayConsumer.dispatch), so each hop hands its connection back to the
    pool when it ends.
    """
    global _executor  # noqa: PLW0603 - one pool per process, made on first use
    threads = int(getattr(settings, "GATEWAY_DB_THREADS", 0) or 0)
    made = _hops.get((fn, threads))
    if made is not None:
        return made

    @functools.wraps(fn)
    def hop(*args: P.args, **kwargs: P.kwargs) -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    if threads <= 0:
        made = sync_to_async(hop)
    else:
        if _executor is None:
            _executor = ThreadPoolExecutor(threads, thread_name_prefix="gateway-db")
        made = sync_to_async(hop, thread_sensitive=False, executor=_executor)
    _hops[(fn, threads)] = made
    return made


def token_identity(raw: str) -> tuple[Any, tuple[int, str] | None, str]:
    """Everything a socket needs of its token, in one database hop (one statement written once,
    two when the token's last use is recorded: community.services.api_token_member_row): (the
    member or None, (member id, language) when the member is a participant now else None, the
    credential fingerprint `session.revoked` is matched on)."""
    from django.contrib.auth.models import AnonymousUser

    from community import policy
    from community.models import ApiToken
    from forums.frames import credential_fingerprint

    member = api_token_member_row(raw)
    identity = (
        (int(member.pk), str(member.language or ""))
        if member is not None and policy.is_participant(member)
        else None
    )
    return member or AnonymousUser(), identity, credential_fingerprint(ApiToken.hash_key(raw))


class Handshake(NamedTuple):
    """Who a websocket's handshake names (`authenticate`)."""

    user: Any  # the member, or AnonymousUser: the scope's "user", as Channels' auth sets it
    identity: tuple[int, str] | None  # (member id, language) of a participant now, else None
    credential: str | None  # the fingerprint `session.revoked` is matched on
    auth: str  # "token" (a program) or "session" (a browser)
    session: SessionBase | None  # a browser's session, as Channels' SessionMiddleware gives it


def authenticate(headers: list[tuple[bytes, bytes]]) -> Handshake:
    """Everything the gateway asks of a handshake, in the one database hop its connect makes.

    `Authorization: Token <key>` authenticates a program (not a query string: URLs end up in
    logs); a present but wrong token leaves it anonymous, and the gateway closes with 4401 as
    for no credentials at all. Without a token, the session cookie authenticates a browser with
    Channels' answers (`session_user`). A program has no session, so its handshake resolves none.

    The gateway calls this from its connect (forums.consumers), not from middleware: Channels'
    token, cookie, session and auth middleware each kept a coroutine frame and a scope copy
    alive for as long as a socket was open, in every socket of the process, and a browser's
    SessionMiddleware wrapped every message the gateway sent in a coroutine of its own
    (docs/performance.md, "H3: the handshake's frames").
    """
    from forums.frames import credential_fingerprint

    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token":
                user, identity, credential = token_identity(key.strip())
                return Handshake(user, identity, credential, "token", None)
            break
    session = handshake_session(headers)
    user, identity = session_identity(session)
    key = session.session_key
    return Handshake(
        user, identity, credential_fingerprint(key) if key else None, "session", session
    )


def handshake_session(headers: list[tuple[bytes, bytes]]) -> SessionBase:
    """The session a handshake's cookie names, as Channels' CookieMiddleware and SessionMiddleware
    find it: the first Cookie header, SESSION_COOKIE_NAME in it, a SESSION_ENGINE store (which
    reads nothing until asked)."""
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name == b"cookie":
            cookies = parse_cookie(value.decode("latin1"))
            break
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store(cookies.get(settings.SESSION_COOKIE_NAME))


def session_identity(session: SessionBase) -> tuple[Any, tuple[int, str] | None]:
    """A browser's session user and the gateway's question about them, together: (the user, as
    Channels' `get_user` answers it, session hash check included; (member id, language) when the
    user is a participant now, else None)."""
    from community import policy

    user = session_user(session)
    identity = (int(user.pk), str(user.language or "")) if policy.is_participant(user) else None
    return user, identity


def session_user(session: Any) -> Any:
    """Channels' `get_user` (channels.auth) for the session, with the same answers: the user
    the session names through one of AUTHENTICATION_BACKENDS, if that backend still lets them
    in and the session's hash matches theirs (else the session is flushed), or AnonymousUser.
    Where the backend's `get_user` is ModelBackend's, the user and the verified-email check are
    one statement written once (community.services.member_row), not two compiled querysets."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
        load_backend,
    )
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.models import AnonymousUser
    from django.utils.crypto import constant_time_compare

    from community.services import member_row

    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    backend = load_backend(backend_path)
    if type(backend).get_user is ModelBackend.get_user:
        user = member_row(user_id)
        if user is not None and not backend.user_can_authenticate(user):
            user = None
    else:
        user = backend.get_user(user_id)
    if hasattr(user, "get_session_auth_hash"):
        session_hash = session.get(HASH_SESSION_KEY)
        if not (session_hash and constant_time_compare(session_hash, user.get_session_auth_hash())):
            session.flush()
            user = None
    return user or AnonymousUser()


class ProtocolRouter:
    """Channels' ProtocolTypeRouter, without a frame of its own for each connection: `__call__`
    returns the chosen application's coroutine (as OriginPolicy does), so nothing of the router
    stays alive while a socket is open."""

    _asgi_single_callable = True

    def __init__(self, applications: dict[str, Any]) -> None:
        self.applications = applications

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        application = self.applications.get(scope["type"])
        if application is None:
            return _fail(ValueError(f"No application configured for scope type {scope['type']!r}"))
        return application(scope, receive, send)


class WebsocketRoute:
    """The one websocket URL (`path` under the root path): a new `consumer` for each connection,
    given the handshake's scope as it is; a handshake for any other path is refused (403).

    In place of Channels' URLRouter and `as_asgi`, whose coroutines each kept a frame and a scope
    copy (with `url_route`, which the gateway does not read) for as long as a socket was open.
    URLRouter also came after the authentication: a wrong path cost a database hop before its
    error; here it costs none.
    """

    _asgi_single_callable = True

    def __init__(self, path: str, consumer: Callable[[], Any]) -> None:
        self.path = path.lstrip("/")
        self.consumer = consumer

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if path.startswith(root) and path[len(root) :].lstrip("/") == self.path:
            return self.consumer()(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)


async def _fail(error: Exception) -> None:
    raise error


class OriginPolicy:
    """Browsers must come from our own hosts (ALLOWED_HOSTS); programs may send no Origin at all.

    A browser always sends Origin on a websocket handshake, so a missing Origin means a program:
    it is let through only with an `Authorization: Token` header, and its cookies are dropped so
    the token alone authenticates it (no ambient credential, no cross-site risk).
    """

    # Not a coroutine function: `__call__` returns the next application's coroutine, so no frame
    # of this one (its scope, its header set) stays alive for as long as each socket is open
    # (docs/performance.md, "H3: where a connection's bytes go"). The hint tells asgiref it is
    # an ASGI 3 application all the same.
    _asgi_single_callable = True

    def __init__(self, app: Any) -> None:
        self.app = app
        self.browsers = AllowedHostsOriginValidator(app)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        headers = scope.get("headers", [])
        origin = any(name == b"origin" for name, _ in headers)
        token = any(
            name == b"authorization" and value[:6].lower() == b"token " for name, value in headers
        )
        if not origin and token:
            scope = dict(scope, headers=[(n, v) for n, v in headers if n != b"cookie"])
            return self.app(scope, receive, send)
        if not _same_scheme_and_port(headers):
            return WebsocketDenier()(scope, receive, send)
        if scope["type"] != "websocket":
            return self.browsers(scope, receive, send)  # which refuses it
        # Channels' OriginValidator (self.browsers) decides, as its `__call__` would, without the
        # frame that call keeps alive (the parsed Origin among its locals) for each open socket.
        parsed_origin = None
        for name, value in headers:
            if name == b"origin":
                with contextlib.suppress(UnicodeDecodeError):
                    parsed_origin = urlparse(value.decode("latin1"))
        if self.browsers.valid_origin(parsed_origin):
            return self.app(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)


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
