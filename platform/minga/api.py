"""The JSON API at /api/v1/ (docs/api.md). Schema: /api/v1/schema/, browsable docs: /api/v1/docs.

Authentication: the session (with CSRF on writes) or `Authorization: Token <key>`. Errors are
JSON objects with a machine-readable `code` and a human `detail`.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyHeader, SessionAuth

from community import policy
from community.api import router as community_router
from community.services import api_token_member
from events.api import router as events_router
from forums.api import router as forums_router
from notifications.api import router as notifications_router


class TokenAuth(APIKeyHeader):
    """`Authorization: Token <key>`: personal tokens from account settings or `issue_token`."""

    param_name = "Authorization"
    openapi_description = "Authorization: Token <key>"

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        scheme, _, raw = (key or "").partition(" ")
        if scheme.lower() != "token" or not raw.strip():
            return None
        member = api_token_member(raw.strip())
        if member is None or not policy.is_participant(member):
            return None
        request.user = member
        return member


class ParticipantSessionAuth(SessionAuth):
    """The browser session (CSRF checked on writes), for verified, active members only."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        member = super().authenticate(request, key)
        return member if member is not None and policy.is_participant(member) else None


api = NinjaAPI(
    title="Minga API",
    version="1",
    description="Forums, events and notifications of the inter-American labor network.",
    urls_namespace="api",
    openapi_url="/schema/",
    docs_url="/docs/",
    auth=[TokenAuth(), ParticipantSessionAuth()],
)


def _error(request: HttpRequest, status: int, code: str, detail: Any) -> HttpResponse:
    return api.create_response(request, {"code": code, "detail": detail}, status=status)


@api.exception_handler(NinjaValidationError)
def on_invalid_input(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    return _error(request, 422, "invalid", exc.errors)


def validation_errors(exc: DjangoValidationError) -> list[dict[str, str | None]]:
    """[{field, code, message}] for every message of a ValidationError (field None if general)."""
    groups = exc.error_dict.items() if hasattr(exc, "error_dict") else [(None, exc.error_list)]
    return [
        {
            "field": field,
            "code": item.code or "invalid",
            "message": str(item.message % item.params if item.params else item.message),
        }
        for field, items in groups
        for item in items
    ]


@api.exception_handler(DjangoValidationError)
def on_rule_broken(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
    body = {"code": "invalid", "detail": detail, "errors": validation_errors(exc)}
    return api.create_response(request, body, status=400)


@api.exception_handler(DataError)
@api.exception_handler(OverflowError)
def on_data_refused(request: HttpRequest, exc: DataError | OverflowError) -> HttpResponse:
    # PostgreSQL refuses values no schema can rule out cheaply (a NUL byte in a string, a UTC
    # offset beyond +-15:59) with DataError; the embedded SQLite's driver cannot bind an
    # integer beyond 64 bits (OverflowError). The request is wrong, not the server.
    return _error(request, 400, "invalid", "A parameter holds a value the database cannot store.")


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "unauthenticated", "Sign in, or send Authorization: Token <key>.")


@api.exception_handler(PermissionDenied)
def on_forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _error(request, 403, "forbidden", str(exc) or "You may not do this.")


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", "Not found.")


_CODES_BY_STATUS = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    429: "rate_limited",
}


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = getattr(exc, "code", None) or _CODES_BY_STATUS.get(exc.status_code, "error")
    return _error(request, exc.status_code, code, str(exc))


def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Unknown paths under /api/ answer JSON too, never Django's HTML 404 page."""
    return JsonResponse({"code": "not_found", "detail": "No such API endpoint."}, status=404)


api.add_router("/", community_router)
api.add_router("/", forums_router)
api.add_router("/", events_router)
api.add_router("/", notifications_router)
