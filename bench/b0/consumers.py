"""The Channels tutorial's ChatConsumer (docs/tutorial/part_3.rst), unchanged."""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Join room group
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)

        await self.accept()

    async def disconnect(self, close_code: int) -> None:
        # Leave room group
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    # Receive message from WebSocket
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        text_data_json = json.loads(text_data or "")
        message = text_data_json["message"]

        # Send message to room group
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    # Receive message from room group
    async def chat_message(self, event: dict[str, Any]) -> None:
        message = event["message"]

        # Send message to WebSocket
        await self.send(text_data=json.dumps({"message": message}))


class NotifyConsumer(AsyncWebsocketConsumer):
    """H4 only: the tutorial's pattern for per-user notifications. One socket joins the group of
    its user (`user_<id>`, from the URL: the peer has no authentication of its own)."""

    async def connect(self) -> None:
        self.user_group_name = f"user_{self.scope['url_route']['kwargs']['user_id']}"
        await self.channel_layer.group_add(self.user_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code: int) -> None:
        await self.channel_layer.group_discard(self.user_group_name, self.channel_name)

    async def notify_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"notification": event["notification"]}))
