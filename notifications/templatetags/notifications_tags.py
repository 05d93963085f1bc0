"""`{% unread_notifications %}`: the signed-in member's unread count, for the bell."""

from __future__ import annotations

from typing import Any

from django import template

from notifications import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notifications(context: dict[str, Any]) -> int:
    user = context.get("user")
    if user is None or not user.is_authenticated:
        return 0
    return selectors.unread_count(member_id=user.pk)
