"""The realtime bus: the one module that talks to the channel layer.

Every live frame, room traffic included, goes through here. Group names are built here and
only here, from ids, never from user input. There is one channel-layer message type,
`bus.event`, with the frame inside, so a new kind never crashes a socket for lack of a handler.

This is a leaf module: it imports only Django and Channels (ARCHITECTURE.md, dependency rule).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer  # noqa: TID251 - the bus is the one allowed place
from django.db import transaction

logger = logging.getLogger("notifications.bus")

MESSAGE_TYPE = "bus.event"


def room_group(room_id: int) -> str:
    return f"room.{int(room_id)}"


def user_group(user_id: int) -> str:
    return f"user.{int(user_id)}"


def _envelope(frame: Mapping[str, Any]) -> dict[str, Any]:
    # Serialise now: the frame must be JSON-safe before it is queued (a datetime fails here,
    # in tests, and not later inside a socket). The text is sent as is to every recipient.
    return {"type": MESSAGE_TYPE, "text": json.dumps(frame, separators=(",", ":"))}


async def apublish(group: str, frame: Mapping[str, Any]) -> None:
    """Send `frame` to every socket in `group` now. Not for use after a write: see below."""
    layer = get_channel_layer()
    if layer is None:
        return
    await layer.group_send(group, _envelope(frame))


def publish_rollback_unsafe(group: str, frame: Mapping[str, Any]) -> None:
    """Send now, whatever happens to the current transaction: only where nothing was written."""
    envelope = _envelope(frame)
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, envelope)
    except Exception:
        logger.warning("publish failed", extra={"group": group}, exc_info=True)


def publish_on_commit(group: str, frame: Mapping[str, Any]) -> None:
    """Send `frame` to `group` once the current transaction commits; never if it rolls back."""
    envelope = _envelope(frame)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, envelope)
        except Exception:
            logger.warning("publish failed", extra={"group": group}, exc_info=True)

    transaction.on_commit(send, robust=True)


async def join(group: str, channel_name: str) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_add(group, channel_name)


async def leave(group: str, channel_name: str) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_discard(group, channel_name)


async def ping() -> None:
    """Raise unless the channel layer accepts a message (used by /healthz)."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    await layer.group_send(f"healthz.{uuid.uuid4().hex}", {"type": MESSAGE_TYPE, "text": "{}"})


def publish_many_on_commit(items: list[tuple[str, Mapping[str, Any]]]) -> None:
    """Send each `(group, frame)` once the transaction commits, in one callback.

    For fan-out: one on-commit callback and one event-loop hop for a whole batch instead of
    one per recipient. A failing send is logged and does not stop the others.
    """
    envelopes = [(group, _envelope(frame)) for group, frame in items]
    if not envelopes:
        return

    async def send_all() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for group, envelope in envelopes:
            try:
                await layer.group_send(group, envelope)
            except Exception:
                logger.warning("publish failed", extra={"group": group}, exc_info=True)

    def send() -> None:
        try:
            async_to_sync(send_all)()
        except Exception:
            logger.warning("batch publish failed", exc_info=True)

    transaction.on_commit(send, robust=True)
