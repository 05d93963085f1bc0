"""Admin for the secretariat: read and fix events; changes of substance go through the pages."""

from django.contrib import admin

from .models import (
    AgendaItem,
    CalendarFeedToken,
    Event,
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


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "working_group", "starts_at", "timezone", "status", "sequence"]
    list_filter = ["kind", "status", "visibility", "working_group"]
    search_fields = ["title", "description", "city", "venue"]
    date_hierarchy = "starts_at"
    readonly_fields = ["starts_at", "ends_at", "sequence", "description_html", "created", "updated"]
    autocomplete_fields = ["organizers"]
    inlines = [AgendaItemInline, OverrideInline]


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
