"""API endpoints of the notifications app, mounted under /api/v1/ by minga/api.py.

GET  /notifications/          ?unread=true&kind=mention&before=ID&limit=N
POST /notifications/read/     {"ids": [..]} or {"all": true} -> {"unread_count": N}
GET  /me/preferences/         {KIND: {"in_app": bool, "email": "immediate"|"daily"|"weekly"|"off"}}
PUT  /me/preferences/         replaces them; kinds left out return to their defaults
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Body, Query, Router, Schema
from pydantic import Field

from . import selectors, services

router = Router(tags=["notifications"])

MAX_LIMIT = 200


class NotificationOut(Schema):
    id: int
    kind: str
    title: str
    snippet: str
    url: str
    created_at: str
    read: bool


class NotificationList(Schema):
    unread_count: int
    results: list[NotificationOut]


class ListFilters(Schema):
    unread: bool = False
    kind: list[str] = Field(default_factory=list)
    before: int | None = None
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


class ReadIn(Schema):
    ids: list[int] | None = None
    all: bool = False


class UnreadOut(Schema):
    unread_count: int


class PreferenceOut(Schema):
    in_app: bool
    email: str


@router.get("/notifications/", response=NotificationList, summary="My notifications")
def notification_list(request: HttpRequest, filters: Query[ListFilters]) -> dict[str, Any]:
    qs = selectors.inbox(member=request.user, unread=filters.unread, kinds=filters.kind)
    if filters.before is not None:
        qs = qs.filter(pk__lt=filters.before)
    rows = list(qs[: filters.limit])
    return {
        "unread_count": selectors.unread_count(member_id=request.user.pk),
        "results": [selectors.notification_payload(r) for r in rows],
    }


@router.post("/notifications/read/", response=UnreadOut, summary="Mark notifications read")
def notification_read(request: HttpRequest, payload: ReadIn) -> dict[str, int]:
    if not payload.all and not payload.ids:
        raise ValidationError(
            {"ids": ['Send {"ids": [...]} with at least one id, or {"all": true}.']},
            code="invalid",
        )
    count = services.notifications_mark_read(
        member=request.user, ids=payload.ids or [], all_unread=payload.all
    )
    return {"unread_count": count}


@router.get(
    "/me/preferences/", response=dict[str, PreferenceOut], summary="My notification preferences"
)
def preferences_get(request: HttpRequest) -> dict[str, Any]:
    return selectors.preferences_of(member=request.user)


@router.put("/me/preferences/", response=dict[str, PreferenceOut], summary="Replace my preferences")
def preferences_put(request: HttpRequest, payload: Body[dict[str, Any]]) -> dict[str, Any]:
    return services.preferences_replace(member=request.user, preferences=payload)
