"""Forum rooms (one per working-group topic), threads, messages and what hangs off them.

The database is the source of truth; the socket is a fast path over it. Each room keeps its own
sequence (`Room.last_seq`): a message takes the next number under a row lock on its room in the
transaction that inserts it, so `seq` order is commit order per room and a client that has seen
seq N has seen everything up to N (forums.services.message_post).

Changes to what a client already shows (an edit, a delete, a reaction, hiding, a thread pinned or
locked) take a number from a second per-room counter, `Room.last_change`, under the same row lock
and in the same transaction as the change: `change` order is commit order too, so a client that
reconnects with the last change it applied gets every later one replayed (forums.consumers).
`seq` stays gapless and is taken only by new messages.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from community.models import Topic, WorkingGroup

# Upper bound of a message's Markdown source, in characters (services raise "too_long" above).
MAX_BODY_CHARS = 20_000


class Room(models.Model):
    class State(models.TextChoices):
        OPEN = "open", pgettext_lazy("room state", "Open")
        LOCKED = "locked", pgettext_lazy("room state", "Locked")
        ARCHIVED = "archived", pgettext_lazy("room state", "Archived")

    class Visibility(models.TextChoices):
        # Who reads the room (community.policy.can_read_room): every participant of the network,
        # or the members of the room's working group (any role) and the secretariat.
        NETWORK = "network", pgettext_lazy("room visibility", "Whole network")
        WORKING_GROUP = "working_group", pgettext_lazy("room visibility", "Working group only")

    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    working_group = models.ForeignKey(
        WorkingGroup, on_delete=models.PROTECT, related_name="rooms", null=True, blank=True
    )
    topic = models.OneToOneField(
        Topic, on_delete=models.PROTECT, related_name="room", null=True, blank=True
    )
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.OPEN)
    visibility = models.CharField(
        _("visibility"),
        max_length=20,
        choices=Visibility.choices,
        default=Visibility.NETWORK,
        help_text=_(
            "Who may read the room: every participant of the network, or only the members of "
            "its working group and the secretariat."
        ),
    )
    slow_mode_seconds = models.PositiveIntegerField(_("slow mode interval (seconds)"), default=0)
    created = models.DateTimeField(auto_now_add=True)
    # The room's sequence counter: the seq of its newest message. Only message_post changes it,
    # under select_for_update() of this row.
    last_seq = models.PositiveBigIntegerField(_("last sequence number"), default=0, editable=False)
    # The room's change counter: the number of its newest change to a message or thread. Taken
    # like last_seq, under select_for_update() of this row (next_change below).
    last_change = models.PositiveBigIntegerField(_("last change number"), default=0, editable=False)

    class Meta:
        ordering = ["slug"]
        verbose_name = _("room")
        verbose_name_plural = _("rooms")
        constraints = [
            # clean() says the same to a form; this keeps update(), raw SQL and the admin's bulk
            # actions from storing a working-group room nobody but the secretariat could read.
            models.CheckConstraint(
                condition=~models.Q(visibility="working_group")
                | models.Q(working_group__isnull=False),
                name="room_working_group_visibility_needs_group",
                violation_error_code="visibility_needs_group",
                violation_error_message=_(
                    "A room readable by its working group only needs a working group."
                ),
            )
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        super().clean()
        if self.visibility == self.Visibility.WORKING_GROUP and self.working_group_id is None:
            raise ValidationError(
                {
                    "visibility": ValidationError(
                        _("A room readable by its working group only needs a working group."),
                        code="visibility_needs_group",
                    )
                }
            )


class Thread(models.Model):
    """A conversation in a room; its first message is its body."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="threads")
    title = models.CharField(_("title"), max_length=200)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="forum_threads"
    )
    created = models.DateTimeField(_("created"), default=timezone.now)
    pinned = models.BooleanField(_("pinned"), default=False)
    locked = models.BooleanField(_("locked"), default=False)
    last_activity_at = models.DateTimeField(_("last activity"), default=timezone.now)
    message_count = models.PositiveIntegerField(_("messages"), default=0)
    # The room change number of the newest pin / lock change (0: never changed).
    change = models.PositiveBigIntegerField(_("change number"), default=0, editable=False)

    class Meta:
        ordering = ["-pinned", "-last_activity_at", "-id"]
        verbose_name = _("thread")
        verbose_name_plural = _("threads")
        indexes = [
            models.Index(
                fields=["room", "-pinned", "-last_activity_at"], name="thread_room_activity"
            )
        ]

    def __str__(self) -> str:
        return self.title


class ContentChange(models.TextChoices):
    """What the newest content change of a message was (the frame a replay sends for it)."""

    EDITED = "edited", _("Edited")
    DELETED = "deleted", _("Deleted")
    HIDDEN = "hidden", _("Hidden")
    UNHIDDEN = "unhidden", _("Unhidden")


class Message(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    # Denormalised from the thread: catch-up reads a room's messages by seq without a join.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField(_("sequence number"))
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="forum_messages"
    )
    body = models.TextField(_("body (Markdown)"), max_length=MAX_BODY_CHARS, blank=True)
    body_html = models.TextField(_("body (HTML)"), blank=True)
    reply_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    # The sender's idempotency key: the same (author, client_id) is one message however often
    # it is sent.
    client_id = models.UUIDField(_("client id"), default=uuid.uuid4)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    edited_at = models.DateTimeField(_("edited"), null=True, blank=True)
    # Tombstone: body and body_html emptied, the row stays so replies and seq keep their shape.
    deleted_at = models.DateTimeField(_("deleted"), null=True, blank=True)
    hidden_at = models.DateTimeField(_("hidden"), null=True, blank=True)
    hidden_reason = models.CharField(_("reason for hiding"), max_length=500, blank=True)
    # The room change number of the newest change of any kind (edit, delete, reaction, hide,
    # unhide); 0 for a message never changed since it was posted.
    change = models.PositiveBigIntegerField(_("change number"), default=0, editable=False)
    # The change number and kind of the newest edit, delete, hide or unhide (reactions move only
    # `change`): a replay sends the whole message when this is new to the client, else only
    # the reaction counts.
    content_change = models.PositiveBigIntegerField(
        _("content change number"), default=0, editable=False
    )
    content_kind = models.CharField(
        _("content change kind"),
        max_length=10,
        choices=ContentChange.choices,
        blank=True,
        editable=False,
    )

    class Meta:
        ordering = ["room", "seq"]
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["author", "client_id"], name="message_author_client_id_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["thread", "seq"], name="message_thread_seq"),
            # Flood control and slow mode: a member's recent messages in a room.
            models.Index(fields=["room", "author", "created_at"], name="message_room_author_time"),
            # Change replay: a room's messages changed after a given change number.
            models.Index(fields=["room", "change"], name="message_room_change"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def is_hidden(self) -> bool:
        return self.hidden_at is not None


class MessageRevision(models.Model):
    """The body a message had before an edit: one row per edit."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="revisions")
    body = models.TextField(_("body (Markdown)"))
    edited_at = models.DateTimeField(_("edited"), default=timezone.now)
    editor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["message_id", "edited_at", "id"]
        verbose_name = _("message revision")
        verbose_name_plural = _("message revisions")

    def __str__(self) -> str:
        return f"{self.message_id} @ {self.edited_at:%Y-%m-%d %H:%M}"


class Emoji(models.TextChoices):
    THUMBS_UP = "👍", _("Thumbs up")
    HEART = "❤️", _("Heart")
    SMILE = "😄", _("Smile")
    TADA = "🎉", _("Celebrate")
    THINKING = "🤔", _("Thinking")
    EYES = "👀", _("Looking")


# The fixed set, in display order.
REACTION_EMOJI: tuple[str, ...] = tuple(Emoji.values)


class Reaction(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forum_reactions"
    )
    emoji = models.CharField(_("emoji"), max_length=8, choices=Emoji.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message_id", "created_at", "id"]
        verbose_name = _("reaction")
        verbose_name_plural = _("reactions")
        constraints = [
            models.UniqueConstraint(
                fields=["message", "member", "emoji"], name="reaction_unique_per_member"
            )
        ]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message_id}"


class Mention(models.Model):
    """A member named with @handle in a message, resolved when the message was written."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forum_mentions"
    )

    class Meta:
        ordering = ["message_id", "id"]
        verbose_name = _("mention")
        verbose_name_plural = _("mentions")
        constraints = [models.UniqueConstraint(fields=["message", "member"], name="mention_unique")]

    def __str__(self) -> str:
        return f"@{self.member_id} in {self.message_id}"


class ReadState(models.Model):
    """How far a member has read a thread. Only ever moves forward."""

    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forum_read_states"
    )
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="read_states")
    last_read_message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_read_seq = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("read state")
        verbose_name_plural = _("read states")
        constraints = [
            models.UniqueConstraint(fields=["member", "thread"], name="readstate_unique")
        ]

    def __str__(self) -> str:
        return f"{self.member_id} read {self.thread_id} to {self.last_read_seq}"


class Follow(models.Model):
    """A member follows or mutes a room or a thread (exactly one of them); notifications read it."""

    class Level(models.TextChoices):
        FOLLOW = "follow", pgettext_lazy("follow level", "Follow")
        MUTE = "mute", pgettext_lazy("follow level", "Mute")

    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forum_follows"
    )
    room = models.ForeignKey(
        Room, on_delete=models.CASCADE, null=True, blank=True, related_name="follows"
    )
    thread = models.ForeignKey(
        Thread, on_delete=models.CASCADE, null=True, blank=True, related_name="follows"
    )
    level = models.CharField(_("level"), max_length=10, choices=Level.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("follow")
        verbose_name_plural = _("follows")
        constraints = [
            models.CheckConstraint(
                condition=(Q(room__isnull=False, thread__isnull=True))
                | (Q(room__isnull=True, thread__isnull=False)),
                name="follow_room_xor_thread",
                violation_error_message=_("Follow either a room or a thread."),
            ),
            models.UniqueConstraint(
                fields=["member", "room"],
                condition=Q(room__isnull=False),
                name="follow_unique_room",
            ),
            models.UniqueConstraint(
                fields=["member", "thread"],
                condition=Q(thread__isnull=False),
                name="follow_unique_thread",
            ),
        ]

    def __str__(self) -> str:
        target = f"room {self.room_id}" if self.room_id else f"thread {self.thread_id}"
        return f"{self.member_id} {self.level} {target}"


# --- Moderation ---


class Report(models.Model):
    """A member tells the room's moderators that a message needs their attention."""

    class Outcome(models.TextChoices):
        HIDDEN = "hidden", _("Message hidden")
        DISMISSED = "dismissed", _("Dismissed")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forum_reports"
    )
    reason = models.CharField(_("reason"), max_length=500)
    created = models.DateTimeField(_("reported"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    outcome = models.CharField(_("outcome"), max_length=10, choices=Outcome.choices, blank=True)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("report")
        verbose_name_plural = _("reports")
        constraints = [
            # One open report per member and message: reporting twice adds nothing.
            models.UniqueConstraint(
                fields=["message", "reporter"],
                condition=Q(resolved_at__isnull=True),
                name="report_one_open_per_reporter",
            )
        ]

    def __str__(self) -> str:
        return f"report {self.pk} on {self.message_id}"


class RoomMute(models.Model):
    """A member may not post in a room until `until` (a moderator's decision, with a reason)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="mutes")
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="forum_room_mutes"
    )
    until = models.DateTimeField(_("muted until"))
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(_("reason"), max_length=500)
    created = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["room", "-until", "id"]
        verbose_name = _("room mute")
        verbose_name_plural = _("room mutes")
        indexes = [models.Index(fields=["room", "member", "until"], name="roommute_active")]

    def __str__(self) -> str:
        return f"{self.member_id} muted in {self.room_id} until {self.until:%Y-%m-%d %H:%M}"


# --- Attachments ---


def attachment_storage_name(instance: Attachment, filename: str) -> str:
    """A generated storage name: the member's file name never reaches the file system."""
    return f"attachments/{timezone.now():%Y/%m}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    """A document or image uploaded to a room, then carried by one message.

    `message` is null between the upload and the post that attaches it. The file lives in
    default storage under a generated name; `original_name` (sanitized) is only shown and sent
    in Content-Disposition; `content_type` is what the content was sniffed as
    (forums.attachments), never what the client said.
    """

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="attachments")
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="forum_attachments"
    )
    file = models.FileField(_("file"), upload_to=attachment_storage_name, max_length=255)
    original_name = models.CharField(_("name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    created = models.DateTimeField(_("uploaded"), default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        indexes = [
            # The uploader's pending (not yet posted) files, and a sweep of abandoned ones.
            models.Index(fields=["uploader", "message", "created"], name="attachment_pending"),
        ]

    def __str__(self) -> str:
        return self.original_name


def next_change(room: Room) -> int:
    """Take `room`'s next change number and return it.

    The caller holds the room's row lock (select_for_update in the transaction that makes the
    change), so change numbers follow commit order as seqs do, and a rollback gives the number
    back. One query.
    """
    room.last_change += 1
    Room.objects.filter(pk=room.pk).update(last_change=room.last_change)
    return room.last_change
