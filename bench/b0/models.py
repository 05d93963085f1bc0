"""H4 only: the row a textbook project writes per recipient of a notification."""

from __future__ import annotations

from django.db import models


class Notice(models.Model):
    recipient_id = models.BigIntegerField(db_index=True)
    title = models.CharField(max_length=300)
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "b0"

    def __str__(self) -> str:
        return f"{self.recipient_id}: {self.title}"
