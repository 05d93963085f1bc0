"""Forum factories and fixtures: rooms from the seeded plan, threads, messages, captured frames.

Import with `from tests.forums.factories import *` (fixtures are found by name in the module).
Messages made here take their room's next seq exactly as the service does; tests of the rules
themselves post through forums.services.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import factory
import pytest
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.db.models import F

from community.models import Membership, Role, User
from forums import signals
from forums.models import Message, Room, Thread
from forums.rendering import render_markdown
from tests.factories import MembershipFactory, UserFactory


def room_of(slug: str = "wg1-a") -> Room:
    return Room.objects.get(slug=slug)


class ThreadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Thread

    room = factory.LazyFunction(room_of)
    title = factory.Sequence(lambda n: f"Thread {n}")
    author = factory.SubFactory(UserFactory)


class MessageFactory(factory.django.DjangoModelFactory):
    """A message stored directly (no rules, no broadcast), with the room's next seq."""

    class Meta:
        model = Message

    thread = factory.SubFactory(ThreadFactory)
    room = factory.SelfAttribute("thread.room")
    author = factory.SelfAttribute("thread.author")
    body = factory.Sequence(lambda n: f"Message number {n}")
    body_html = factory.LazyAttribute(lambda o: render_markdown(o.body))
    client_id = factory.LazyFunction(uuid.uuid4)

    @classmethod
    def _create(cls, model_class: type[Message], *args: Any, **kwargs: Any) -> Message:
        room: Room = kwargs["room"]
        Room.objects.filter(pk=room.pk).update(last_seq=F("last_seq") + 1)
        room.refresh_from_db(fields=["last_seq"])
        kwargs["seq"] = room.last_seq
        message = super()._create(model_class, *args, **kwargs)
        Thread.objects.filter(pk=message.thread_id).update(
            message_count=F("message_count") + 1, last_activity_at=message.created_at
        )
        return message


def member_in(slug: str = "wg1", *, role: str = Role.MEMBER, **fields: Any) -> User:
    """A verified member with `role` in working group `slug`."""
    from community.models import WorkingGroup

    user = UserFactory(**fields)
    Membership.objects.create(
        member=user, working_group=WorkingGroup.objects.get(slug=slug), role=role
    )
    return user


@pytest.fixture
def room(plan: None) -> Room:
    """wg1-a, open."""
    return room_of("wg1-a")


@pytest.fixture
def observer(plan: None) -> User:
    user = UserFactory(email="obs@ilo.example", name="Olga Observer", handle="olga")
    MembershipFactory(member=user, role=Role.OBSERVER)
    return user


@pytest.fixture
def thread(room: Room, member: User) -> Thread:
    return ThreadFactory(room=room, author=member, title="Labor inspection")


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every (group, frame) the in-memory channel layer is asked to send, decoded from JSON."""
    sent: list[tuple[str, dict[str, Any]]] = []
    layer = channel_layers[DEFAULT_CHANNEL_LAYER]

    async def group_send(group: str, message: dict[str, Any]) -> None:
        sent.append((group, json.loads(message["text"])))

    monkeypatch.setattr(layer, "group_send", group_send)
    return sent


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every forums signal sent, as (signal name, kwargs without `signal`)."""
    got: list[tuple[str, dict[str, Any]]] = []
    names = [
        "thread_created",
        "message_posted",
        "message_edited",
        "message_deleted",
        "reaction_changed",
        "thread_read",
    ]
    receivers: list[tuple[Any, Callable[..., None]]] = []
    for name in names:
        signal = getattr(signals, name)

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            got.append((_name, {"sender": sender, **kwargs}))

        signal.connect(receiver, weak=False)
        receivers.append((signal, receiver))
    yield got
    for signal, receiver in receivers:
        signal.disconnect(receiver)
