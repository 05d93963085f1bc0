"""The realtime gateway at /ws/: one socket per tab, JSON frames (docs/realtime-protocol.md).

This foundation version authenticates, joins the member's own group (`user.<id>`) and answers
`ping`; rooms, messages and presence arrive with the forums issue.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from community import policy
from notifications import bus

logger = logging.getLogger("forums.gateway")

MAX_FRAME_BYTES = 64 * 1024
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_BIG = 1009


def _is_participant(user: Any) -> bool:
    return policy.is_participant(user)


class GatewayConsumer(AsyncWebsocketConsumer):
    groups: list[str] = []

    async def connect(self) -> None:
        self.member = self.scope.get("user")
        self.member_id: int | None = None
        self.opened = time.monotonic()
        await self.accept()
        # Accept first: only an accepted socket can carry the 4401 close code to the client.
        if self.member is None or not await database_sync_to_async(_is_participant)(self.member):
            logger.info("socket refused", extra={"reason": "unauthenticated"})
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.member_id = self.member.pk
        self.user_group = bus.user_group(self.member_id)
        await bus.join(self.user_group, self.channel_name)
        logger.info("socket connected", extra={"member": self.member_id})

    async def disconnect(self, code: int) -> None:
        if self.member_id is None:
            return
        await bus.leave(self.user_group, self.channel_name)
        logger.info(
            "socket closed",
            extra={
                "member": self.member_id,
                "code": code,
                "seconds": round(time.monotonic() - self.opened, 1),
            },
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.member_id is None:
            return
        if bytes_data is not None:
            await self.send_error("bad_frame", "Frames are JSON text, not binary.")
            return
        text = text_data or ""
        if len(text.encode()) > MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        try:
            frame = json.loads(text)
        except ValueError:
            await self.send_error("bad_frame", "A frame must be a JSON object.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error("bad_frame", 'A frame must be a JSON object with a "type".')
            return
        if frame["type"] == "ping":
            await self.send_frame({"type": "pong"})
            return
        await self.send_error("unknown_type", f"Unknown frame type {frame['type'][:40]!r}.")

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def send_error(self, code: str, detail: str, **extra: Any) -> None:
        await self.send_frame({"type": "error", "code": code, "detail": detail, **extra})

    async def bus_event(self, message: dict[str, Any]) -> None:
        """Relay a bus frame: already serialised once by the publisher, sent as is."""
        await self.send(text_data=message["text"])
