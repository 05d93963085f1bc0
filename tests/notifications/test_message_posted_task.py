"""A posted message's notifications leave the poster's thread: queued as `message_posted_task`.

With a broker (REDIS_URL) the receiver only queues the task, so a socket post costs the gateway's
database thread no recipient query and no inbox write (docs/performance.md, item 4); eager where
no broker is set; inline when the broker cannot take the task, so nothing is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from community.models import User
from forums import services as forum_services
from forums.models import Room, Thread
from notifications import receivers
from notifications.models import Notification
from tests.forums.factories import ThreadFactory, member_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_configured() -> Iterator[None]:
    """Celery as with REDIS_URL: `delay()` publishes to the broker instead of running here."""
    from minga.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def thread(member: User) -> Thread:
    return ThreadFactory(room=Room.objects.get(slug="wg1-a"), author=member, title="Inspection")


@pytest.fixture
def carla(plan: None) -> User:
    return member_in("wg1", email="carla@trabajo.example", name="Carla Díaz", handle="carla")


@pytest.fixture
def queued(broker_configured: None, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the receiver queues (the broker itself is not reached)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(receivers.message_posted_task, "delay", lambda **kw: seen.append(kw))
    return seen


def _post(thread: Thread, author: User, body: str, capture: Any) -> Any:
    """Post, then run what runs after the commit (the test's transaction never commits)."""
    with capture(execute=True):
        message, _created = forum_services.message_post(
            thread=thread, author=author, body=body, client_id=uuid.uuid4()
        )
    return message


def _mentions_of(member: User) -> list[str]:
    return list(
        Notification.objects.filter(recipient=member, kind="mention").values_list(
            "occurrence_key", flat=True
        )
    )


def test_posted_message_with_a_broker_queues_the_task_and_writes_nothing_here(
    thread: Thread,
    member: User,
    carla: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message, _created = forum_services.message_post(
            thread=thread, author=member, body="Hola @carla", client_id=uuid.uuid4()
        )
    with CaptureQueriesContext(connection) as queries:
        for callback in callbacks:
            callback()

    # After commit: the live frame is published and the task queued, with no query at all.
    assert (queued, len(queries), _mentions_of(carla)) == (
        [{"message_id": message.pk, "mentioned_ids": [carla.pk]}],
        0,
        [],
    )


def test_queued_task_writes_the_mention(
    thread: Thread,
    member: User,
    carla: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _post(thread, member, "Hola @carla", django_capture_on_commit_callbacks)

    receivers.message_posted_task(**queued[0])  # what the worker runs

    assert _mentions_of(carla) == [f"message:{message.pk}"]


@pytest.fixture
def broker_away(broker_configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(**_: Any) -> None:
        raise ConnectionError("Redis away")

    monkeypatch.setattr(receivers.message_posted_task, "delay", refused)


def test_broker_away_notifies_inline(
    thread: Thread,
    member: User,
    carla: User,
    broker_away: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _post(thread, member, "Hola @carla", django_capture_on_commit_callbacks)

    assert _mentions_of(carla) == [f"message:{message.pk}"]


def test_task_for_a_message_deleted_meanwhile_notifies_no_one(
    thread: Thread,
    member: User,
    carla: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _post(thread, member, "Hola @carla", django_capture_on_commit_callbacks)
    type(message).objects.filter(pk=message.pk).update(deleted_at=message.created_at)

    receivers.message_posted_task(**queued[0])

    assert _mentions_of(carla) == []


def test_task_reads_the_message_in_one_query_before_resolving_recipients(
    thread: Thread,
    member: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    message = _post(thread, member, "No mention", django_capture_on_commit_callbacks)

    with CaptureQueriesContext(connection) as queries:
        # Queued only when someone follows (below); the task still runs for one that was not.
        receivers.message_posted_task(message_id=message.pk, mentioned_ids=[])

    # the message with thread, room, working group and author (1), the thread's first message
    # (1), thread followers (1); nobody follows: nothing written
    assert len(queries) == 3


# --- Nobody to tell: no task ---------------------------------------------------------------------


def test_message_nobody_follows_queues_nothing(
    thread: Thread,
    member: User,
    carla: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # No mention, no reply, and only the author follows the thread: no one to tell.
    forum_services.follow_set(member=member, thread=thread, level="follow")
    first = _post(thread, carla, "First", django_capture_on_commit_callbacks)

    _post(thread, member, "Second", django_capture_on_commit_callbacks)

    # carla's message is queued (member follows); member's is not (only they follow).
    assert queued == [{"message_id": first.pk, "mentioned_ids": []}]


@pytest.mark.parametrize("why", ["thread follower", "mention", "reply"])
def test_message_someone_may_be_told_of_is_queued(  # noqa: PLR0917 - fixtures
    why: str,
    thread: Thread,
    member: User,
    carla: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    earlier = _post(thread, carla, "Earlier", django_capture_on_commit_callbacks)
    queued.clear()
    if why == "thread follower":
        forum_services.follow_set(member=carla, thread=thread, level="follow")
    body = "Hola @carla" if why == "mention" else "Hola"
    with django_capture_on_commit_callbacks(execute=True):
        message, _created = forum_services.message_post(
            thread=thread,
            author=member,
            body=body,
            client_id=uuid.uuid4(),
            reply_to_id=earlier.pk if why == "reply" else None,
        )

    assert [q["message_id"] for q in queued] == [message.pk]


def test_new_thread_is_queued_only_when_someone_follows_the_room(
    member: User,
    carla: User,
    queued: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    room = Room.objects.get(slug="wg1-a")
    with django_capture_on_commit_callbacks(execute=True):
        quiet = forum_services.thread_create(room=room, author=member, title="Quiet", body="x")
    forum_services.follow_set(member=carla, room=room, level="follow")
    with django_capture_on_commit_callbacks(execute=True):
        told = forum_services.thread_create(room=room, author=member, title="Told", body="y")

    assert [q["message_id"] for q in queued] == [told.messages.get().pk]
    assert quiet.messages.count() == 1
