"""Seed the benchmark database under bench.minga_settings, as an operator would.

- `python -m bench.minga_seed plan`: `seed_plan_of_action` (working groups, topics, rooms).
- `python -m bench.minga_seed members START STOP`: `add_member` and `issue_token` for members
  START..STOP-1 (all in wg1); prints their tokens as a JSON list. Several slices run at once.
- `python -m bench.minga_seed sessions COUNT`: a signed-in session for each of the first COUNT
  members, as a browser holds after logging in; prints their session keys as a JSON list.
- `python -m bench.minga_seed threads`: one thread per wg1 room through
  `forums.services.thread_create`; prints {room slug: thread id} as JSON.
- `python -m bench.minga_seed messages THREAD COUNT`: COUNT more messages in thread THREAD,
  posted by the first member through `forums.services.message_post` (H5's busy thread page).

Passwords are hashed with MD5 here only because hashing a thousand passwords is not what is
measured (the clients authenticate with their tokens).
"""

from __future__ import annotations

import io
import json
import os
import sys


def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.minga_settings")
    django.setup()


def plan() -> None:
    from django.core.management import call_command

    call_command("seed_plan_of_action", stdout=io.StringIO())


def members(start: int, stop: int) -> list[str]:
    from django.core.management import call_command
    from django.db import transaction
    from django.test import override_settings

    tokens: list[str] = []
    hashers = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with override_settings(PASSWORD_HASHERS=hashers), transaction.atomic():
        for index in range(start, stop):
            email = f"bench{index}@example.org"
            call_command(
                "add_member",
                email,
                "--name",
                f"Bench Member {index}",
                "--password",
                "bench-password-not-secret",
                "--handle",
                f"bench{index}",
                "--wg",
                "wg1",
                stdout=io.StringIO(),
            )
            out = io.StringIO()
            call_command("issue_token", email, "--name", "bench", stdout=out)
            tokens.append(out.getvalue().strip())
    return tokens


def sessions(count: int) -> list[str]:
    """Django's login, without a request: the session's user id, backend and auth hash."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from community.models import User

    backend = settings.AUTHENTICATION_BACKENDS[0]
    keys: list[str] = []
    for member in User.objects.filter(email__endswith="@example.org").order_by("pk")[:count]:
        session = SessionStore()
        session[SESSION_KEY] = member._meta.pk.value_to_string(member)
        session[BACKEND_SESSION_KEY] = backend
        session[HASH_SESSION_KEY] = member.get_session_auth_hash()
        session.create()
        assert session.session_key is not None  # create() sets it
        keys.append(session.session_key)
    return keys


def threads() -> dict[str, int]:
    from community.models import User
    from forums.models import Room
    from forums.services import thread_create

    author = User.objects.get(email="bench0@example.org")
    made: dict[str, int] = {}
    for room in Room.objects.filter(working_group__slug="wg1").order_by("slug"):
        thread = thread_create(
            room=room, author=author, title="Benchmark", body="Benchmark thread."
        )
        made[room.slug] = thread.pk
    return made


def messages(thread_id: int, count: int) -> None:
    """`count` more messages in the thread, by the first member, through the service: Markdown
    with a link and emphasis, as a meeting's messages are."""
    import uuid

    from community.models import User
    from forums.models import Thread
    from forums.services import message_post

    author = User.objects.get(email="bench0@example.org")
    thread = Thread.objects.get(pk=thread_id)
    for i in range(count):
        body = f"Message {i}: the **agenda** for the next workshop, and a [link](https://example.org/{i})."
        message_post(thread=thread, author=author, body=body, client_id=uuid.uuid4())


USAGE = "plan, members START STOP, sessions COUNT, threads, or messages THREAD COUNT"


def main(argv: list[str]) -> None:
    command, *args = argv or [""]
    arity = {"plan": 0, "members": 2, "sessions": 1, "threads": 0, "messages": 2}
    if command not in arity:
        raise SystemExit(f"unknown command {command!r}: {USAGE}")
    try:
        if len(args) != arity[command]:
            raise ValueError
        numbers = [int(arg) for arg in args]
    except ValueError:
        raise SystemExit(f"{command} takes {arity[command]} whole number(s): {USAGE}") from None
    _setup()
    if command == "plan":
        plan()
    elif command == "members":
        print(json.dumps(members(*numbers)))
    elif command == "sessions":
        print(json.dumps(sessions(*numbers)))
    elif command == "threads":
        print(json.dumps(threads()))
    else:
        messages(*numbers)


if __name__ == "__main__":
    main(sys.argv[1:])
