"""API endpoints of the forums, mounted under /api/v1/ by minga/api.py (docs/api.md).

Thin: parse, call one access function or service, shape the answer. Service errors become JSON
`{"code", "detail"}` through minga/api.py's HttpError handler, with the service's own code:

| code | status |
| --- | --- |
| invalid, too_long | 400 |
| forbidden, room_locked, thread_locked | 403 |
| not_found | 404 |
| too_large | 413 |
| unsupported_type | 415 |
| rate_limited | 429 |
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from ninja import Field, File, Query, Router, Schema, Status, UploadedFile
from ninja.decorators import decorate_view
from ninja.errors import HttpError

from community import policy

from . import attachments, selectors, services
from .models import REACTION_EMOJI

router = Router(tags=["forums"])


STATUS_OF_CODE = {
    "invalid": 400,
    "too_long": 400,
    "forbidden": 403,
    "room_locked": 403,
    "thread_locked": 403,
    "not_found": 404,
    "too_large": 413,
    "unsupported_type": 415,
    "rate_limited": 429,
}


class ForumApiError(HttpError):
    """An HttpError that carries the contract's error code (read by minga/api.py's handler)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(STATUS_OF_CODE.get(code, 400), detail)
        self.code = code


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn a service's ValidationError / PermissionDenied into the API's coded error."""
    try:
        yield
    except (ValidationError, PermissionDenied) as exc:
        raise ForumApiError(services.error_code(exc), services.error_detail(exc)) from exc


def _call[T](fn: Callable[..., T], **kwargs: Any) -> T:
    with service_errors():
        return fn(**kwargs)


# --- Schemas ----------------------------------------------------------------------------------


class AuthorOut(Schema):
    id: int
    name: str
    organization: str | None
    handle: str


class RoomOut(Schema):
    slug: str
    title: str
    description: str
    working_group: str | None
    topic: str | None = Field(None, description="The topic's letter in its working group.")
    state: str = Field(description="open | locked | archived")
    visibility: str = Field(
        description="network (every participant reads it) | working_group (its group's "
        "members and the secretariat)"
    )
    slow_mode_seconds: int
    last_seq: int = Field(description="The room's newest message sequence number.")
    unread_count: int
    can_post: bool
    can_moderate: bool


class ThreadOut(Schema):
    id: int
    room: str
    title: str
    author: AuthorOut
    created: str
    pinned: bool
    locked: bool
    last_activity_at: str
    message_count: int
    unread_count: int | None = None


class ThreadIn(Schema):
    title: str = Field(max_length=1000)
    body: str
    client_id: uuid.UUID | None = Field(
        None, description="Idempotency key: the same key twice opens one thread."
    )


class AttachmentOut(Schema):
    id: int
    name: str = Field(description="The file's name as uploaded, made safe for display.")
    content_type: str = Field(description="The type sniffed from the content.")
    size: int = Field(description="Bytes.")
    url: str = Field(description="Downloads the file (members who may read the room).")


class MessageOut(Schema):
    id: int
    seq: int
    room: str
    thread: int
    author: AuthorOut
    body: str
    body_html: str
    created_at: str
    edited_at: str | None
    deleted: bool
    hidden: bool
    reply_to: int | None
    client_id: str
    reactions: dict[str, int]
    mentions: list[int]
    attachments: list[AttachmentOut]


class MessageIn(Schema):
    body: str
    reply_to: int | None = None
    attachments: list[int] = Field(
        default_factory=list,
        description="Ids of files I uploaded to this room (POST /rooms/{slug}/attachments/) "
        "and have not posted yet.",
        max_length=attachments.MAX_PER_MESSAGE,
    )
    client_id: uuid.UUID | None = Field(
        None,
        description="Idempotency key (send one per message, keep it on retries): the same key "
        "twice makes one message and gets the same answer. Generated when absent.",
    )


class MessagePatch(Schema):
    body: str


class MessagePage(Schema):
    after: int | None = Field(None, description="Messages after this message id (by seq).")
    before: int | None = Field(None, description="Messages before this message id (by seq).")
    limit: int = Field(selectors.DEFAULT_PAGE, ge=1, le=selectors.MAX_PAGE)


class ReactionIn(Schema):
    emoji: str = Field(description=" ".join(REACTION_EMOJI))


class ReactionsOut(Schema):
    message_id: int
    reactions: dict[str, int]


class ReadIn(Schema):
    message_id: int


class ReadOut(Schema):
    thread: int
    message_id: int | None
    seq: int


def room_out(room: Any, member: Any) -> dict[str, Any]:
    return {
        "slug": room.slug,
        "title": room.title,
        "description": room.description,
        "working_group": room.working_group.slug if room.working_group_id else None,
        "topic": room.topic.letter if room.topic_id else None,
        "state": room.state,
        "visibility": room.visibility,
        "slow_mode_seconds": room.slow_mode_seconds,
        "last_seq": room.last_seq,
        "unread_count": getattr(room, "unread_count", 0),
        "can_post": policy.can_post_in_room(member, room),
        "can_moderate": policy.can_moderate_room(member, room),
    }


# --- Endpoints --------------------------------------------------------------------------------


@router.get("/rooms/", response=list[RoomOut], summary="Rooms I may read, with unread counts")
def rooms(request: HttpRequest) -> list[dict[str, Any]]:
    return [room_out(r, request.user) for r in selectors.rooms_readable(member=request.user)]  # type: ignore[arg-type]


@router.get(
    "/rooms/{slug}/threads/",
    response=list[ThreadOut],
    summary="A room's threads, pinned first, then newest activity",
)
def threads(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    room = selectors.room_for_member(slug=slug, member=request.user)
    return [
        selectors.thread_payload(t)
        for t in selectors.threads_for_room(room=room, member=request.user)  # type: ignore[arg-type]
    ]


@router.post(
    "/rooms/{slug}/threads/",
    response={201: ThreadOut},
    summary="Open a thread: its title and first message",
)
def thread_create(request: HttpRequest, slug: str, data: ThreadIn) -> Status[dict[str, Any]]:
    room = selectors.room_for_member(slug=slug, member=request.user)
    thread = _call(
        services.thread_create,
        room=room,
        author=request.user,
        title=data.title,
        body=data.body,
        client_id=data.client_id,
    )
    return Status(201, selectors.thread_payload(thread))


@router.get(
    "/threads/{thread_id}/messages/",
    response=list[MessageOut],
    summary="A page of a thread's messages in order (?after=ID, ?before=ID, ?limit=N)",
)
def messages(
    request: HttpRequest, thread_id: int, page: Query[MessagePage]
) -> list[dict[str, Any]]:
    thread = selectors.thread_for_member(thread_id=thread_id, member=request.user)
    found = _call(
        selectors.thread_messages,
        thread=thread,
        after=page.after,
        before=page.before,
        limit=page.limit,
    )
    return [selectors.message_payload(m) for m in found]


@router.post(
    "/threads/{thread_id}/messages/",
    response={201: MessageOut},
    summary="Post a message (the same client_id twice makes one message, same answer)",
)
def message_post(request: HttpRequest, thread_id: int, data: MessageIn) -> Status[dict[str, Any]]:
    thread = selectors.thread_for_member(thread_id=thread_id, member=request.user)
    message, _created = _call(
        services.message_post,
        thread=thread,
        author=request.user,
        body=data.body,
        client_id=data.client_id or uuid.uuid4(),
        reply_to_id=data.reply_to,
        attachment_ids=data.attachments,
    )
    return Status(201, selectors.message_payload(message))


def _upload_refused(request: HttpRequest, limits: attachments.UploadLimits) -> HttpResponse:
    detail = _("The upload is too large: at most %(size)s.") % {
        "size": filesizeformat(limits.max_bytes)
    }
    return JsonResponse({"code": "too_large", "detail": detail}, status=413)


@router.post(
    "/rooms/{slug}/attachments/",
    response={201: AttachmentOut},
    summary="Upload a file (multipart field `file`); post it with a message's `attachments`",
)
@decorate_view(attachments.limit_uploads(1, refuse=_upload_refused))
def attachment_upload(
    request: HttpRequest, slug: str, file: File[UploadedFile | None] = None
) -> Status[dict[str, Any]]:
    limits: attachments.UploadLimits = request.upload_limits  # type: ignore[attr-defined]
    room = selectors.room_for_member(slug=slug, member=request.user)
    if limits.too_large:
        # The handler dropped the file while it streamed in: nothing of it was kept.
        raise ForumApiError("too_large", _upload_refused_detail(limits))
    if limits.too_many:
        raise ForumApiError("invalid", _("Send one file per request."))
    if file is None:
        raise ForumApiError("invalid", _("Send the file in the multipart field “file”."))
    attachment = _call(
        services.attachment_upload, room=room, uploader=request.user, uploaded_file=file
    )
    return Status(201, selectors.attachment_payload(attachment))


def _upload_refused_detail(limits: attachments.UploadLimits) -> str:
    return _("The file is too large: at most %(size)s.") % {
        "size": filesizeformat(limits.max_bytes)
    }


@router.patch(
    "/messages/{message_id}/", response=MessageOut, summary="Edit my message (history is kept)"
)
def message_edit(request: HttpRequest, message_id: int, data: MessagePatch) -> dict[str, Any]:
    message = selectors.message_for_member(message_id=message_id, member=request.user)
    _call(services.message_edit, message=message, editor=request.user, body=data.body)
    return selectors.message_payload(
        selectors.message_for_member(message_id=message_id, member=request.user)
    )


@router.delete(
    "/messages/{message_id}/",
    response=MessageOut,
    summary="Delete my message (moderators: anyone's); a tombstone stays",
)
def message_delete(request: HttpRequest, message_id: int) -> dict[str, Any]:
    message = selectors.message_for_member(message_id=message_id, member=request.user)
    _call(services.message_delete, message=message, actor=request.user)
    return selectors.message_payload(
        selectors.message_for_member(message_id=message_id, member=request.user)
    )


@router.post(
    "/messages/{message_id}/reactions/",
    response=ReactionsOut,
    summary="Toggle my reaction with one of the fixed emoji",
)
def reaction_toggle(request: HttpRequest, message_id: int, data: ReactionIn) -> dict[str, Any]:
    message = selectors.message_for_member(message_id=message_id, member=request.user)
    counts = _call(services.reaction_toggle, message=message, member=request.user, emoji=data.emoji)
    return {"message_id": message.pk, "reactions": counts}


@router.post(
    "/threads/{thread_id}/read/",
    response=ReadOut,
    summary="Mark the thread read up to a message (the mark never moves back)",
)
def read_mark(request: HttpRequest, thread_id: int, data: ReadIn) -> dict[str, Any]:
    thread = selectors.thread_for_member(thread_id=thread_id, member=request.user)
    state = _call(
        services.read_mark, member=request.user, thread=thread, message_id=data.message_id
    )
    return {
        "thread": thread.pk,
        "message_id": state.last_read_message_id,
        "seq": state.last_read_seq,
    }


class FollowIn(Schema):
    level: str = Field(description="follow | mute")


class FollowOut(Schema):
    room: str | None
    thread: int | None
    level: str | None = Field(description="follow | mute | null (the default: no choice made)")


@router.put("/rooms/{slug}/follow/", response=FollowOut, summary="Follow or mute a room")
def room_follow(request: HttpRequest, slug: str, data: FollowIn) -> dict[str, Any]:
    room = selectors.room_for_member(slug=slug, member=request.user)
    _call(services.follow_set, member=request.user, room=room, level=data.level)
    return {"room": room.slug, "thread": None, "level": data.level}


@router.delete("/rooms/{slug}/follow/", response=FollowOut, summary="Forget my room choice")
def room_unfollow(request: HttpRequest, slug: str) -> dict[str, Any]:
    room = selectors.room_for_member(slug=slug, member=request.user)
    _call(services.follow_set, member=request.user, room=room, level=None)
    return {"room": room.slug, "thread": None, "level": None}


@router.put("/threads/{thread_id}/follow/", response=FollowOut, summary="Follow or mute a thread")
def thread_follow(request: HttpRequest, thread_id: int, data: FollowIn) -> dict[str, Any]:
    thread = selectors.thread_for_member(thread_id=thread_id, member=request.user)
    _call(services.follow_set, member=request.user, thread=thread, level=data.level)
    return {"room": None, "thread": thread.pk, "level": data.level}


@router.delete(
    "/threads/{thread_id}/follow/", response=FollowOut, summary="Forget my thread choice"
)
def thread_unfollow(request: HttpRequest, thread_id: int) -> dict[str, Any]:
    thread = selectors.thread_for_member(thread_id=thread_id, member=request.user)
    _call(services.follow_set, member=request.user, thread=thread, level=None)
    return {"room": None, "thread": thread.pk, "level": None}
