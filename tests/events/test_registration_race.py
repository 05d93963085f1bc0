"""Simultaneous registrations against PostgreSQL: the event row lock prevents overbooking."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from community.models import Role, User
from events import services
from events.models import Event, Registration
from tests.factories import MembershipFactory, UserFactory


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_registration_create_ten_threads_capacity_five_exactly_five_registered(
    make_event: Callable[..., Event],
) -> None:
    assert connection.vendor == "postgresql"
    event = make_event(capacity=5)
    members: list[User] = []
    for n in range(10):
        user = UserFactory(email=f"race{n}@labor.example", handle=f"race{n}")
        MembershipFactory(member=user, role=Role.MEMBER)
        members.append(user)
    barrier = threading.Barrier(len(members))
    errors: list[BaseException] = []

    def register(member: User) -> None:
        try:
            barrier.wait()  # all threads hit the service at once
            services.registration_create(event=Event.objects.get(pk=event.pk), member=member)
        except Exception as exc:  # reported below, whatever it is
            errors.append(exc)
        finally:
            connection.close()  # each thread had its own connection

    threads = [threading.Thread(target=register, args=(m,)) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    rows = list(
        Registration.objects.filter(event=event).values_list("member_id", "status", "position")
    )
    assert errors == []
    assert len(rows) == 10
    assert len({member_id for member_id, _s, _p in rows}) == 10
    assert sorted(s for _m, s, _p in rows) == ["registered"] * 5 + ["waitlisted"] * 5
    assert sorted(p for _m, s, p in rows if s == "waitlisted") == [1, 2, 3, 4, 5]
