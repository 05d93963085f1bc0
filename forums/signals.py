"""Domain signals of the forums, sent after commit (never for a write that rolled back).

`notifications` listens; forums never imports it. Every signal is sent with `sender` = the model
class and keyword arguments listed here. Receivers run after the response's transaction
committed, through `send_robust`: one failing receiver is logged and does not stop the others.

- thread_created(thread: Thread, message: Message)          a new thread and its first message
- message_posted(message: Message, mentioned_ids: list[int]) a new message (the first of a thread too)
- message_edited(message: Message, editor: User, added_mention_ids: list[int])
- message_deleted(message: Message, actor: User)
- reaction_changed(message: Message, member: User, emoji: str, added: bool)
- thread_read(read_state: ReadState)
- reports_resolved(message: Message, actor_id: int, outcome: str, reporter_ids: list[int],
  resolved_at: datetime)                                     a moderator closed reports of a message
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("forums.signals")

thread_created = Signal()
message_posted = Signal()
message_edited = Signal()
message_deleted = Signal()
reaction_changed = Signal()
thread_read = Signal()
reports_resolved = Signal()


def send_on_commit(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Send `signal` once the current transaction commits; receivers' errors are logged."""

    def send() -> None:
        for receiver, result in signal.send_robust(sender=sender, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "signal receiver failed",
                    extra={"receiver": getattr(receiver, "__qualname__", repr(receiver))},
                    exc_info=result,
                )

    transaction.on_commit(send, robust=True)
