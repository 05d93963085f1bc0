"""Model constraints and small derived values of the events app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from community.models import User
from events.models import CalendarFeedToken, Event, Registration, ReminderPreference
from tests.events.conftest import FUTURE

pytestmark = pytest.mark.django_db


def test_event_ends_after_start_enforced_by_database(workshop: Event) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.filter(pk=workshop.pk).update(ends_at=FUTURE - timedelta(hours=1))


def test_registration_unique_per_event_and_member(workshop: Event, member: User) -> None:
    Registration.objects.create(event=workshop, member=member, status="registered")
    with pytest.raises(IntegrityError), transaction.atomic():
        Registration.objects.create(event=workshop, member=member, status="waitlisted", position=1)


def test_registration_position_only_when_waitlisted(workshop: Event, member: User) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Registration.objects.create(event=workshop, member=member, status="registered", position=3)


def test_event_location_joins_venue_city_country_and_online(
    make_event: Callable[..., Event],
) -> None:
    event = make_event(venue="Ministry of Labour", city="Port of Spain", country="TT", online=True)
    assert event.location == "Ministry of Labour, Port of Spain, Trinidad and Tobago (online)"


def test_event_location_online_only(make_event: Callable[..., Event]) -> None:
    assert make_event(online=True).location == "Online"


def test_calendar_feed_token_renew_256_bits_only_hash_and_salt_stored(member: User) -> None:
    token = CalendarFeedToken(member=member)
    raw = token.renew()
    token.save()

    stored = CalendarFeedToken.objects.get(member=member)
    assert (len(raw), stored.raw_token, stored.token_hash) == (
        64,
        raw,
        CalendarFeedToken.hash_token(raw),
    )
    assert raw not in {stored.salt, stored.token_hash}


def test_reminder_preference_clean_sorts_and_dedupes(member: User) -> None:
    pref = ReminderPreference(member=member, offsets_minutes=[60, 1440, 60])
    pref.full_clean()
    assert pref.offsets_minutes == [1440, 60]
