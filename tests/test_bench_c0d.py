"""bench.c0d_poster, C0d's writer: each message is stored in Minga's table, then sent to C0.

The end-to-end test runs the poster and a C0 server as the benchmark does, against this test
run's PostgreSQL database (committed rows: the poster is another process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from websockets.sync.client import connect

from bench import c0d_poster
from bench.servers import c0_argv, free_ports, port_open
from forums.models import Message, Room, Thread
from tests.factories import UserFactory
from tests.forums.factories import MessageFactory, ThreadFactory

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgresql://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def c0_port() -> Iterator[int]:
    port = free_ports(1, 8191)[0]
    server = subprocess.Popen(c0_argv(port), cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert time.monotonic() < deadline and server.poll() is None, "C0 did not listen"
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def _poster(port: int, rooms: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.c0d_poster",
            "--ports",
            str(port),
            "--rooms",
            rooms,
            *extra,
        ],
        cwd=ROOT,
        env={"DATABASE_URL": _database_url(), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _order(
    port: int, poster: subprocess.Popen[str], order: dict[str, Any]
) -> tuple[Any, list[str]]:
    """Give `poster` one order for room r0 while a member of r0 listens on C0; the poster's
    answer and the frames the member received (as many as the order's messages). The poster
    is stopped (its stdin closed) afterwards."""
    try:
        with connect(f"ws://127.0.0.1:{port}/room/r0", compression=None) as member:
            assert poster.stdin is not None and poster.stdout is not None
            poster.stdin.write(json.dumps(order) + "\n")
            poster.stdin.flush()
            answer = json.loads(poster.stdout.readline())
            frames = [str(member.recv(timeout=10)) for _ in range(order["count"])]
    finally:
        poster.communicate(timeout=20)  # its stdin closed: it stops
    return answer, frames


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_each_message_is_stored_then_sent_to_its_c0_room(plan: None, c0_port: int) -> None:
    authors = [UserFactory(email=f"bench{i}@example.org") for i in range(2)]
    thread = ThreadFactory(
        room=Room.objects.get(slug="wg1-a"), title="Benchmark", author=authors[0]
    )
    earlier = MessageFactory(thread=thread, author=authors[0])  # the seqs go on after it
    poster = _poster(c0_port, "wg1-a")
    order = {"step": 3, "rate": 50, "count": 4, "rooms": ["r0"], "senders": 2}

    answer, frames = _order(c0_port, poster, order)

    stored = list(
        Message.objects.filter(thread=thread, seq__gt=earlier.seq)
        .order_by("seq")
        .values_list("seq", "author__email", "body", "body_html")
    )
    assert (answer["posted"], answer["failures"]) == (4, 0), answer
    assert [s[0] for s in stored] == [earlier.seq + n for n in (1, 2, 3, 4)]
    assert sorted(s[1] for s in stored) == sorted([a.email for a in authors] * 2)
    # What the room received is what was stored, every payload of step 3, in full.
    assert sorted(frames) == sorted(s[2] for s in stored)
    assert all(f.startswith("bench|3|0|") for f in frames)
    assert all(html.startswith("<p>bench|3|0|") for *_, html in stored)
    assert poster.returncode == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_c0t_stores_each_message_in_a_posts_transaction_then_sends_it(
    plan: None, c0_port: int
) -> None:
    # Arrange: a room whose stored seqs went past its row's last_seq (C0d's own counter does
    # that): C0t brings the row up first, then takes each seq from it, as a post does.
    author = UserFactory(email="bench0@example.org")
    room = Room.objects.get(slug="wg1-a")
    thread = ThreadFactory(room=room, title="Benchmark", author=author)
    MessageFactory(thread=thread, author=author)
    Message.objects.filter(thread=thread).update(seq=7)
    Room.objects.filter(pk=room.pk).update(last_seq=3)
    Thread.objects.filter(pk=thread.pk).update(message_count=1)
    poster = _poster(c0_port, "wg1-a", "--transaction")
    order = {"step": 4, "rate": 50, "count": 3, "rooms": ["r0"], "senders": 1}

    answer, frames = _order(c0_port, poster, order)

    # Assert: the seqs went on from the last stored one, the room's row and the thread's count
    # moved with them, and what the room received is what was stored.
    stored = list(
        Message.objects.filter(thread=thread, seq__gt=7).order_by("seq").values_list("seq", "body")
    )
    thread.refresh_from_db()
    assert (answer["posted"], answer["failures"]) == (3, 0), answer
    assert [seq for seq, _body in stored] == [8, 9, 10]
    assert Room.objects.get(pk=room.pk).last_seq == 10
    assert thread.message_count == 4
    assert sorted(frames) == sorted(body for _seq, body in stored)
    assert poster.returncode == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_order_for_more_rooms_than_it_was_given_stops_it_with_why(
    plan: None, c0_port: int
) -> None:
    author = UserFactory(email="bench0@example.org")
    ThreadFactory(room=Room.objects.get(slug="wg1-a"), title="Benchmark", author=author)
    poster = _poster(c0_port, "wg1-a")
    order = {"step": 1, "rate": 10, "count": 1, "rooms": ["r0", "r1"], "senders": 1}

    _out, err = poster.communicate(json.dumps(order) + "\n", timeout=30)

    assert poster.returncode == 1
    assert "an order for 2 rooms, but --rooms named 1" in err
    assert not Message.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_room_without_a_benchmark_thread_is_named(plan: None, c0_port: int) -> None:
    author = UserFactory(email="bench0@example.org")
    ThreadFactory(room=Room.objects.get(slug="wg1-a"), title="Benchmark", author=author)
    poster = _poster(c0_port, "wg1-a,wg1-b")

    _out, err = poster.communicate("", timeout=30)

    assert poster.returncode == 1
    assert "no benchmark thread in the rooms wg1-b" in err
    assert Thread.objects.filter(title="Benchmark").count() == 1


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--ports", "81o1", "--rooms", "a"], {"DATABASE_URL": "x"}, "--ports takes port numbers"),
        (["--ports", "8101", "--rooms", ","], {"DATABASE_URL": "x"}, "at least one value"),
        (
            ["--ports", "8101", "--rooms", "a", "--connections", "0"],
            {"DATABASE_URL": "x"},
            "--connections must be between 1 and 64",
        ),
        (["--ports", "8101", "--rooms", "a"], {}, "DATABASE_URL must name"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_wrong(
    argv: list[str],
    env: dict[str, str],
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(SystemExit):
        c0d_poster._arguments(argv)

    assert says in capsys.readouterr().err
