from django.contrib import admin

from .models import Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "working_group", "state", "slow_mode_seconds"]
    list_filter = ["working_group", "state"]
    search_fields = ["slug", "title"]
