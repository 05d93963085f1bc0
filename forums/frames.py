"""The frames of the realtime protocol: limits, error codes and the schema of every client frame.

docs/realtime-protocol.md is this module in prose. `parse(text)` turns one text frame into a
`ClientFrame` with typed values, or raises `FrameError` with the protocol's error code; the
gateway (forums.consumers) answers the error and keeps the socket open.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

# --- Limits -----------------------------------------------------------------------------------

MAX_FRAME_BYTES = 64 * 1024  # a bigger frame closes the socket with 1009
MAX_ROOMS_PER_SOCKET = 100  # subscriptions one socket may hold at once
RESYNC_GAP = 500  # subscribe with a bigger gap than this gets `resync` instead of a replay
# (the same bound applies to `last_change - changes_after`)
REPLAY_BATCH = 100  # messages read from the database per query during a replay
TYPING_INTERVAL_SECONDS = 3  # at most one `typing` broadcast per member per thread per interval
FRAME_BURST = 30  # token bucket per socket: burst size ...
FRAME_RATE = 10.0  # ... and sustained frames per second; excess gets `rate_limited`
MAX_ID = 2**63 - 1
MAX_ATTACHMENT_IDS = 10  # `message.send` attachments (forums.attachments.MAX_PER_MESSAGE)

# --- Close codes ------------------------------------------------------------------------------

CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHENTICATED = 4401
CLOSE_REVOKED = 4403

# --- Frame types ------------------------------------------------------------------------------

# Server -> client frames the gateway itself writes.
GATEWAY_FRAMES = frozenset(
    {
        "subscribed",
        "unsubscribed",
        "resync",
        "caught_up",
        "presence",
        "typing",
        "ack",
        "error",
        "pong",
    }
)
# Bus kinds addressed to the gateway itself (user.<id> group): acted upon, never relayed.
CONTROL_FRAMES = frozenset({"session.revoked", "access.changed"})

# --- Error codes ------------------------------------------------------------------------------

ERROR_CODES: dict[str, Any] = {
    "binary_frame": _("Frames are JSON text, not binary."),
    "invalid_json": _("The frame is not valid JSON."),
    "bad_frame": _("A frame must be a JSON object with a string “type”."),
    "unknown_type": _("Unknown frame type."),
    "missing_field": _("A required field is missing."),
    "wrong_type": _("A field has the wrong JSON type."),
    "invalid": _("A field has an invalid value."),
    "invalid_utf8": _("A string contains an invalid Unicode code point (a lone surrogate)."),
    "forbidden": _("You may not do this, or it does not exist."),
    "not_found": _("Not found."),
    "rate_limited": _("Too many frames: slow down."),
    "room_locked": _("This room is locked."),
    "thread_locked": _("This thread is locked."),
    "too_long": _("Too long."),
    "too_many_rooms": _("Too many rooms on one socket: unsubscribe from some first."),
    "server_error": _("Something went wrong on our side; the frame was not processed."),
}


class FrameError(Exception):
    """A client frame the gateway refuses; becomes an `error` frame, the socket stays open."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        frame_type: str | None = None,
        client_id: str | None = None,
        room: str | None = None,
    ) -> None:
        assert code in ERROR_CODES, code  # noqa: S101 - a programming error, not input
        super().__init__(code)
        self.code = code
        self.detail = detail
        self.frame_type = frame_type
        self.client_id = client_id
        self.room = room
        # For `rate_limited`: seconds until the limit frees the member (the gateway then refuses
        # that socket's sends to the room by itself meanwhile), when the service said.
        self.retry_in: float | None = None

    def frame(self) -> dict[str, Any]:
        """The `error` frame: type, code, detail, and what it answers when known."""
        out: dict[str, Any] = {
            "type": "error",
            "code": self.code,
            "detail": str(self.detail or ERROR_CODES[self.code]),
        }
        if self.frame_type is not None:
            out["frame"] = self.frame_type
        if self.client_id is not None:
            out["client_id"] = self.client_id
        if self.room is not None:
            out["room"] = self.room
        return out


# --- Field kinds ------------------------------------------------------------------------------

_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")


class _FieldError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _FieldError("wrong_type", _("“%(name)s” must be a string.") % {"name": name})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Only a JSON escape of a lone surrogate ("\ud800") gets here: the transport already
        # refuses text frames that are not UTF-8 (close 1007).
        raise _FieldError(
            "invalid_utf8", _("“%(name)s” contains a lone surrogate.") % {"name": name}
        ) from None
    return value


def _slug(value: Any, name: str) -> str:
    text = _check_text(value, name)
    if not _SLUG.match(text):
        raise _FieldError(
            "invalid",
            _("“%(name)s” must be a room slug (letters, digits, - and _).") % {"name": name},
        )
    return text


def _integer(value: Any, name: str, *, minimum: int) -> int:
    # bool is an int subclass in Python but not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError("wrong_type", _("“%(name)s” must be an integer.") % {"name": name})
    if not minimum <= value <= MAX_ID:
        raise _FieldError(
            "invalid",
            _("“%(name)s” must be between %(low)s and %(high)s.")
            % {"name": name, "low": minimum, "high": MAX_ID},
        )
    return value


def _id(value: Any, name: str) -> int:
    return _integer(value, name, minimum=1)


def _id_or_null(value: Any, name: str) -> int | None:
    return None if value is None else _integer(value, name, minimum=1)


def _seq_or_null(value: Any, name: str) -> int | None:
    return None if value is None else _integer(value, name, minimum=0)


def _ids(value: Any, name: str) -> list[int]:
    """A list of ids (null or absent: none); duplicates are kept for the service to fold."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _FieldError("wrong_type", _("“%(name)s” must be a list of ids.") % {"name": name})
    if len(value) > MAX_ATTACHMENT_IDS:
        raise _FieldError(
            "invalid",
            ngettext(
                "“%(name)s” holds at most %(count)s id.",
                "“%(name)s” holds at most %(count)s ids.",
                MAX_ATTACHMENT_IDS,
            )
            % {"name": name, "count": MAX_ATTACHMENT_IDS},
        )
    return [_id(item, name) for item in value]


def _uuid(value: Any, name: str) -> str:
    text = _check_text(value, name)
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise _FieldError("invalid", _("“%(name)s” must be a UUID.") % {"name": name}) from None
    return str(parsed)


@dataclass(frozen=True)
class Field:
    check: Callable[[Any, str], Any]
    required: bool = True


SLUG = Field(_slug)
ID = Field(_id)

# The schema of every client frame: field -> kind. Fields not listed are ignored (a client may
# send newer fields to an older server); absent optional fields are null.
SCHEMAS: dict[str, dict[str, Field]] = {
    "ping": {},
    "subscribe": {
        "room": SLUG,
        "after": Field(_seq_or_null, required=False),
        # Extension: the last change number the client applied (replay of changes, §4).
        "changes_after": Field(_seq_or_null, required=False),
    },
    "unsubscribe": {"room": SLUG},
    "message.send": {
        "room": SLUG,
        "thread": ID,
        "body": Field(_check_text),
        "client_id": Field(_uuid),
        "reply_to": Field(_id_or_null, required=False),
        # Ids from the upload endpoint (POST /api/v1/rooms/{slug}/attachments/).
        "attachments": Field(_ids, required=False),
    },
    "typing": {"room": SLUG, "thread": ID},
    "read": {"room": SLUG, "thread": ID, "message_id": ID},
}


@dataclass(frozen=True)
class ClientFrame:
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.data[name]


def _echo_client_id(frame: dict[str, Any]) -> str | None:
    value = frame.get("client_id")
    if isinstance(value, str) and len(value) <= 100:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    return None


def parse(text: str) -> ClientFrame:
    """One text frame -> ClientFrame, or FrameError. The caller has checked the size."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: a deeply nested array fits in 64 KiB and exhausts the decoder's stack.
        raise FrameError("invalid_json") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise FrameError("bad_frame")
    frame_type: str = raw["type"]
    schema = SCHEMAS.get(frame_type)
    if schema is None:
        shown = frame_type[:40].encode("utf-8", "replace").decode("utf-8")
        raise FrameError("unknown_type", _("Unknown frame type “%(type)s”.") % {"type": shown})
    client_id = _echo_client_id(raw) if "client_id" in schema else None
    room = raw.get("room") if isinstance(raw.get("room"), str) else None
    room = room if room is not None and _SLUG.match(room) else None
    data: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in raw:
            if spec.required:
                raise FrameError(
                    "missing_field",
                    _("“%(type)s” needs “%(name)s”.") % {"type": frame_type, "name": name},
                    frame_type=frame_type,
                    client_id=client_id,
                    room=room,
                )
            data[name] = None
            continue
        try:
            data[name] = spec.check(raw[name], name)
        except _FieldError as bad:
            raise FrameError(
                bad.code, bad.detail, frame_type=frame_type, client_id=client_id, room=room
            ) from None
    return ClientFrame(frame_type, data)


def dumps(frame: dict[str, Any]) -> str:
    """Serialise a frame the way the bus does (compact separators)."""
    return json.dumps(frame, separators=(",", ":"))


def credential_fingerprint(secret: str) -> str:
    """A one-way tag of a session key or token hash: names a credential on the bus without
    carrying it (`session.revoked` frames travel through Redis)."""
    return hashlib.sha256(b"minga-credential\0" + secret.encode()).hexdigest()[:32]
