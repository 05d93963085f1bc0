from django.contrib import admin

from .models import Notification, NotificationPreference, NotificationSettings


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created", "recipient", "kind", "title", "read_at", "email_mode", "email_state"]
    list_filter = ["kind", "email_mode", "email_state"]
    search_fields = ["title", "recipient__email", "occurrence_key"]
    raw_id_fields = ["recipient", "actor"]
    date_hierarchy = "created"
    list_select_related = ["recipient"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["member", "kind", "in_app", "email"]
    list_filter = ["kind", "email"]
    raw_id_fields = ["member"]


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ["member", "quiet_start", "quiet_end", "digest_weekday"]
    raw_id_fields = ["member"]
