"""Admin for the secretariat: read and fix events; changes of substance go through the pages."""

from django.contrib import admin
from django.http import HttpRequest

from .models import (
    AgendaItem,
    CalendarFeedToken,
    Event,
    EventDocument,
    EventOccurrenceOverride,
    Registration,
    ReminderDelivery,
    ReminderPreference,
)


class AgendaItemInline(admin.TabularInline):
    model = AgendaItem
    extra = 0
    autocomplete_fields = ["speaker_members"]


class OverrideInline(admin.TabularInline):
    model = EventOccurrenceOverride
    extra = 0


class DocumentInline(admin.TabularInline):
    """Read and remove here; files are added on the event's documents page, which checks them."""

    model = EventDocument
    extra = 0
    fields = ["title", "url", "original_name", "content_type", "size", "position", "created"]
    readonly_fields = ["url", "original_name", "content_type", "size", "created"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(EventDocument)
class EventDocumentAdmin(admin.ModelAdmin):
    list_display = ["title", "event", "original_name", "url", "content_type", "size", "created"]
    search_fields = ["title", "original_name", "url", "event__title"]
    raw_id_fields = ["event", "uploaded_by"]
    readonly_fields = ["file", "original_name", "content_type", "size", "sha256", "created"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # An upload here would skip the content check of the documents page.
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "working_group", "starts_at", "timezone", "status", "sequence"]
    list_filter = ["kind", "status", "visibility", "working_group"]
    search_fields = ["title", "description", "city", "venue"]
    date_hierarchy = "starts_at"
    readonly_fields = ["starts_at", "ends_at", "sequence", "description_html", "created", "updated"]
    autocomplete_fields = ["organizers"]
    inlines = [AgendaItemInline, OverrideInline, DocumentInline]


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    list_display = ["event", "member", "status", "position", "attended", "created"]
    list_filter = ["status", "attended"]
    search_fields = ["member__name", "member__email", "event__title"]
    raw_id_fields = ["event", "member"]


@admin.register(ReminderPreference)
class ReminderPreferenceAdmin(admin.ModelAdmin):
    list_display = ["member", "offsets_minutes"]
    raw_id_fields = ["member"]


@admin.register(ReminderDelivery)
class ReminderDeliveryAdmin(admin.ModelAdmin):
    list_display = ["registration", "offset_minutes", "occurrence_start", "due_at", "sent_at"]
    raw_id_fields = ["registration"]


@admin.register(CalendarFeedToken)
class CalendarFeedTokenAdmin(admin.ModelAdmin):
    list_display = ["member", "created"]
    readonly_fields = ["salt", "token_hash", "created"]
    raw_id_fields = ["member"]
