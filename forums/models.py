"""Forum rooms: one per working-group topic (threads and messages arrive with the forums issue)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from community.models import Topic, WorkingGroup


class Room(models.Model):
    class State(models.TextChoices):
        OPEN = "open", _("Open")
        LOCKED = "locked", _("Locked")
        ARCHIVED = "archived", _("Archived")

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
    slow_mode_seconds = models.PositiveIntegerField(_("slow mode interval (seconds)"), default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = _("room")
        verbose_name_plural = _("rooms")

    def __str__(self) -> str:
        return self.slug
