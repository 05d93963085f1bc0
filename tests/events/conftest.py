"""Shared set-up for the events tests: a scheduled workshop of wg1 and a helper to make more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from community.models import User, WorkingGroup
from events import services
from events.models import Event

FUTURE = datetime(2030, 3, 12, 14, 0, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def wg1(plan: None) -> WorkingGroup:
    return WorkingGroup.objects.get(slug="wg1")


@pytest.fixture
def make_event(chair: User, wg1: WorkingGroup) -> Callable[..., Event]:
    def make(**fields: Any) -> Event:
        values: dict[str, Any] = {
            "actor": chair,
            "title": "Labor inspection workshop",
            "working_group": wg1,
            "starts_at": FUTURE,
            "ends_at": FUTURE + timedelta(hours=2),
            "timezone": "America/Port_of_Spain",
        }
        values.update(fields)
        return services.event_create(**values)

    return make


@pytest.fixture
def workshop(make_event: Callable[..., Event]) -> Event:
    return make_event()
