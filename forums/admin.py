from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from notifications import bus

from .models import (
    Attachment,
    Follow,
    Mention,
    Message,
    MessageRevision,
    Reaction,
    ReadState,
    Report,
    Room,
    RoomMute,
    Thread,
)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = [
        "slug",
        "title",
        "working_group",
        "visibility",
        "state",
        "slow_mode_seconds",
        "last_seq",
    ]
    list_filter = ["working_group", "visibility", "state"]
    search_fields = ["slug", "title"]
    readonly_fields = ["last_seq"]

    def save_model(self, request: HttpRequest, obj: Room, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and {"visibility", "working_group"} & set(form.changed_data):
            # Subscribed sockets re-check their rooms after commit, as with
            # forums.services.room_visibility_set: one that may no longer read it leaves.
            bus.publish_on_commit(bus.room_group(obj.pk), {"type": "access.changed"})


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "room",
        "author",
        "pinned",
        "locked",
        "message_count",
        "last_activity_at",
    ]
    list_filter = ["pinned", "locked", "room__working_group"]
    search_fields = ["title", "room__slug", "author__email"]
    list_select_related = ["room", "author"]
    raw_id_fields = ["author"]


class RevisionInline(admin.TabularInline):
    model = MessageRevision
    extra = 0
    readonly_fields = ["body", "edited_at", "editor"]
    can_delete = False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are written through forums.services only (seq, broadcast): here they are read."""

    list_display = [
        "id",
        "room",
        "seq",
        "thread",
        "author",
        "created_at",
        "deleted_at",
        "hidden_at",
    ]
    list_filter = ["room__working_group"]
    search_fields = ["body", "author__email", "room__slug"]
    list_select_related = ["room", "thread", "author"]
    readonly_fields = [
        "thread",
        "room",
        "seq",
        "author",
        "body",
        "body_html",
        "reply_to",
        "client_id",
        "created_at",
        "edited_at",
        "deleted_at",
        "hidden_at",
        "hidden_reason",
    ]
    inlines = [RevisionInline]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Reaction)
class ReactionAdmin(admin.ModelAdmin):
    list_display = ["message", "member", "emoji", "created_at"]
    raw_id_fields = ["message", "member"]


@admin.register(Mention)
class MentionAdmin(admin.ModelAdmin):
    list_display = ["message", "member"]
    raw_id_fields = ["message", "member"]


@admin.register(ReadState)
class ReadStateAdmin(admin.ModelAdmin):
    list_display = ["member", "thread", "last_read_seq", "updated_at"]
    raw_id_fields = ["member", "thread", "last_read_message"]


@admin.register(Follow)
class FollowAdmin(admin.ModelAdmin):
    list_display = ["member", "room", "thread", "level"]
    list_filter = ["level"]
    raw_id_fields = ["member", "room", "thread"]


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    """Uploads are checked by content in forums.services: here they are read, or removed."""

    list_display = ["id", "original_name", "room", "uploader", "content_type", "size", "created"]
    list_filter = ["content_type", "room__working_group"]
    search_fields = ["original_name", "sha256", "uploader__email", "room__slug"]
    list_select_related = ["room", "uploader"]
    raw_id_fields = ["message"]
    readonly_fields = [
        "message",
        "room",
        "uploader",
        "file",
        "original_name",
        "content_type",
        "size",
        "sha256",
        "created",
    ]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """The moderation queue page resolves reports (and tells the reporter); here they are read."""

    list_display = ["message", "reporter", "reason", "created", "resolved_at", "outcome"]
    list_filter = ["outcome", "message__room__working_group"]
    search_fields = ["reason", "reporter__email"]
    list_select_related = ["message", "reporter"]
    readonly_fields = [
        "message",
        "reporter",
        "reason",
        "created",
        "resolved_at",
        "resolved_by",
        "outcome",
    ]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(RoomMute)
class RoomMuteAdmin(admin.ModelAdmin):
    list_display = ["member", "room", "until", "by", "reason", "created"]
    list_filter = ["room__working_group"]
    search_fields = ["member__email", "room__slug", "reason"]
    raw_id_fields = ["member", "by"]
