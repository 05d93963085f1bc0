"""Fixtures for the notifications tests: a room, a thread, members in every position."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from community.models import Role, User
from forums import services as forum_services
from forums.models import Follow, Message, Room, Thread
from notifications.models import Notification
from tests.factories import MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _no_flood_limit(settings: Any) -> None:
    settings.FORUMS_FLOOD_LIMIT = (10_000, 1)


@pytest.fixture
def room(plan: None) -> Room:
    return Room.objects.get(slug="wg1-a")


@pytest.fixture
def make_member(plan: None) -> Callable[..., User]:
    def make(handle: str, *, role: str | None = Role.MEMBER, **kwargs: Any) -> User:
        user = UserFactory(handle=handle, email=f"{handle}@example.org", **kwargs)
        if role is not None:
            MembershipFactory(member=user, role=role)
        return user

    return make


@pytest.fixture
def author(make_member: Callable[..., User]) -> User:
    return make_member("author", name="Ana Autora")


@pytest.fixture
def post(django_capture_on_commit_callbacks: Any) -> Callable[..., Message]:
    """Post a message (or open a thread) through the forums' services, running on-commit work."""

    def do(
        *,
        author: User,
        body: str,
        thread: Thread | None = None,
        room: Room | None = None,
        title: str = "Labour inspection",
        reply_to: Message | None = None,
    ) -> Message:
        with django_capture_on_commit_callbacks(execute=True):
            if thread is None:
                assert room is not None
                new = forum_services.thread_create(room=room, author=author, title=title, body=body)
                return new.messages.get()
            message, _created = forum_services.message_post(
                thread=thread,
                author=author,
                body=body,
                client_id=uuid.uuid4(),
                reply_to_id=reply_to.pk if reply_to else None,
            )
            return message

    return do


def follow(member: User, *, room: Room | None = None, thread: Thread | None = None) -> Follow:
    return Follow.objects.create(member=member, room=room, thread=thread, level="follow")


def mute(member: User, *, room: Room | None = None, thread: Thread | None = None) -> Follow:
    return Follow.objects.create(member=member, room=room, thread=thread, level="mute")


def inbox_of(member: User) -> list[tuple[str, str]]:
    return list(
        Notification.objects.filter(recipient=member)
        .order_by("pk")
        .values_list("kind", "occurrence_key")
    )
