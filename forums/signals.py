"""Domain signals of the forums, sent after commit (never for a write that rolled back).

`notifications` listens; forums never imports it. Every signal is sent with `sender` = the model
class and keyword arguments listed here. Receivers run after the response's transaction
committed, through `send_robust`: one failing receiver is logged and does not stop the others.

- thread_created(thread: Thread, message: Message)          a new thread and its first message
- message_posted(message: Message, mentioned_ids: list[int], followed: bool)
  a new message (the first of a thread too); `followed`: someone other than the author
  followed its thread (for a thread's first message: its room) when it was posted
- message_edited(message: Message, editor: User, added_mention_ids: list[int])
- message_deleted(message: Message, actor: User)
- reaction_changed(message: Message, member: User, emoji: str, added: bool)
- thread_read(read_state: ReadState)
- reports_resolved(message: Message, actor_id: int, outcome: str, reporter_ids: list[int],
  resolved_at: datetime)                                     a moderator closed reports of a message
"""

from __future__ import annotations

from django.dispatch import Signal
from minga.signals import send_on_commit

__all__ = ["send_on_commit"]  # re-exported: forums' services send their signals with it

thread_created = Signal()
message_posted = Signal()
message_edited = Signal()
message_deleted = Signal()
reaction_changed = Signal()
thread_read = Signal()
reports_resolved = Signal()
