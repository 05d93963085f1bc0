"""Django admin for the secretariat: organizations, members, working groups, topics, memberships."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import (
    ApiToken,
    Coordinator,
    Invitation,
    Membership,
    Organization,
    Topic,
    User,
    WorkingGroup,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["member"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "country"]
    list_filter = ["kind"]
    search_fields = ["name"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["name", "email"]
    list_display = ["email", "name", "handle", "organization", "language", "is_staff", "is_active"]
    list_filter = ["is_staff", "is_active", "language", "organization__kind"]
    search_fields = ["email", "name", "handle", "organization__name"]
    autocomplete_fields = ["organization"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("name", "handle", "organization", "language", "timezone")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "name", "handle", "organization", "password1", "password2"),
            },
        ),
    )
    inlines = [MembershipInline]


class CoordinatorInline(admin.TabularInline):
    model = Coordinator
    extra = 0


class TopicInline(admin.StackedInline):
    model = Topic
    extra = 0


@admin.register(WorkingGroup)
class WorkingGroupAdmin(admin.ModelAdmin):
    list_display = ["slug", "number", "title"]
    inlines = [CoordinatorInline, TopicInline, MembershipInline]


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["__str__", "working_group", "letter"]
    list_filter = ["working_group"]
    search_fields = ["title", "text"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["member", "working_group", "role", "created"]
    list_filter = ["working_group", "role"]
    search_fields = ["member__email", "member__name"]
    autocomplete_fields = ["member"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "invited_by", "created", "expires_at", "accepted_at"]
    readonly_fields = ["token_hash", "accepted_at", "accepted_by"]
    search_fields = ["email"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["member", "name", "hint", "created", "last_used_at", "revoked_at"]
    readonly_fields = ["key_hash", "hint", "last_used_at"]
    search_fields = ["member__email", "name"]
