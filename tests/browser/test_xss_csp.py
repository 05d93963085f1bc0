"""XSS corpus in Chromium under the real CSP: no dialog, no CSP violation, no console error.

The 25 payloads of tests/reliability/test_xss.py are seeded into the running server's database
through the real services (member_upsert, organization_for, thread_create, message_post,
message_edit, event_create; the mention notifications follow from the receivers): each payload
is at once a member's display name and organization, a thread title, a message and an edited
message, the snippet of a mention notification, and an event's title, description, venue and
city. The delegate then opens every page where they appear, with a `dialog` listener and the
`problems` fixture (console errors and `securitypolicyviolation` reports, collected by an init
script in every document). Last, each payload's author posts it over the API while the
delegate's thread page is open, so forum.js renders every body_html from a live frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import pytest

from tests.reliability.support import report
from tests.reliability.test_xss import PAYLOADS

from .conftest import DELEGATE, ROOT, Account, LiveServer, PageProblems, _server_env
from .test_events_browser import sign_in

pytestmark = pytest.mark.browser

ROOM = "wg2-n"  # a room of its own, so the other browser tests' pages stay as they expect

# Runs in the server's environment (its SQLite file), through the services an operator's
# commands and the web views use. Prints the ids and API tokens the test needs as JSON.
SEED = """
import datetime as dt, json, sys, uuid
from community import services as community
from community.models import Role, User, WorkingGroup
from events import services as events
from events.models import Event
from forums import services as forums
from forums.models import Room

given = json.loads(sys.stdin.read())
payloads, RUN = given["payloads"], given["run"]
room = Room.objects.get(slug=given["room"])
wg1 = WorkingGroup.objects.get(slug="wg1")
chair = User.objects.get(email=given["chair"])
delegate = User.objects.get(email=given["delegate"])
start = dt.datetime(2031, 3, 4, 15, 0, tzinfo=dt.UTC)
out = {"threads": [], "events": [], "tokens": [], "handle": delegate.handle}
for n, payload in enumerate(payloads):
    organization = community.organization_for(name=f"{payload[:180]} org {n}", kind="ministry")
    author, _created = community.member_upsert(
        email=f"xss{n}-{RUN}@minga.test",
        name=payload[:150],
        organization=organization,
        memberships=[(room.working_group, Role.MEMBER)],
    )
    thread = forums.thread_create(
        room=room,
        author=author,
        title=payload,
        body=f"{payload} @{delegate.handle}",
        client_id=uuid.uuid4(),
    )
    reply, _created = forums.message_post(
        thread=thread, author=author, body=payload, client_id=uuid.uuid4()
    )
    forums.message_edit(message=reply, editor=author, body=f"edited {payload}")
    event = events.event_create(
        actor=chair,
        title=payload[:200],
        description=payload,
        venue=payload[:200],
        city=payload[:100],
        starts_at=start + dt.timedelta(days=n),
        ends_at=start + dt.timedelta(days=n, hours=2),
        timezone="America/Lima",
        working_group=wg1,
        visibility=Event.Visibility.PUBLIC,
    )
    _token, raw = community.api_token_create(member=author, name="xss browser test")
    out["threads"].append(thread.pk)
    out["events"].append(event.pk)
    out["tokens"].append(raw)
live = forums.thread_create(
    room=room, author=delegate, title="Live XSS thread " + RUN, body="Opening message",
    client_id=uuid.uuid4(),
)
out["live"] = live.pk
print(json.dumps(out))
"""


def _seed(server: LiveServer, organizer: Account) -> dict[str, Any]:
    given = {
        "payloads": PAYLOADS,
        "run": uuid.uuid4().hex[:8],
        "room": ROOM,
        "chair": organizer.email,
        "delegate": DELEGATE.email,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED],
        cwd=ROOT,
        env=_server_env(server.log.parent / "db.sqlite3"),
        input=json.dumps(given),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"seeding failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _api_post(server: LiveServer, token: str, thread: int, body: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - the loopback test server
        f"{server.url}/api/v1/threads/{thread}/messages/",
        data=json.dumps({"body": body, "client_id": str(uuid.uuid4())}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return int(response.status)


def test_xss_corpus_in_chromium_shows_no_dialog_and_no_csp_violation(
    page: Any,
    minga_server: LiveServer,
    organizer_account: Account,
    problems: PageProblems,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Arrange: every payload in every sink, through the services.
    seeded = _seed(minga_server, organizer_account)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message} at {page.url}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    sign_in(page, DELEGATE)
    paths = [
        f"/rooms/{ROOM}/",
        *(f"/threads/{pk}/" for pk in seeded["threads"]),
        "/notifications/",
        *(f"/events/{pk}/" for pk in seeded["events"]),
        "/calendar/list/?start=2031-03-01",
        "/calendar/?month=2031-03",
        "/calendar/?month=2031-04",
        "/dashboard/",
    ]

    # Act (1): open every page, letting its scripts run.
    statuses = {}
    shown_as_text = {}
    for path in paths:
        response = page.goto(path)
        page.wait_for_load_state("load")
        statuses[path] = response.status if response is not None else None
        shown_as_text[path] = PAYLOADS[0] in page.locator("body").inner_text()

    # Act (2): the delegate keeps the live thread open; each payload's author posts it.
    live_path = f"/threads/{seeded['live']}/"
    page.goto(live_path)
    page.wait_for_function("document.querySelector('[data-live-status]') !== null")
    page.wait_for_timeout(500)  # let the socket subscribe before the posts
    posted = [
        _api_post(minga_server, token, seeded["live"], f"{payload} @{seeded['handle']}")
        for payload, token in zip(PAYLOADS, seeded["tokens"], strict=True)
    ]
    live = page.locator("[data-messages] li.msg")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-messages] li.msg').length >= n",
        arg=len(PAYLOADS) + 1,
    )
    page.wait_for_timeout(500)  # a late error or dialog would show by now
    live_count = live.count()
    scripts_in_messages = page.locator("[data-messages] li.msg script").count()

    pages = len(paths) + 1
    report(
        capsys,
        "XSS-BROWSER",
        f"{len(PAYLOADS)} payloads in Chromium under the real CSP: {pages} pages "
        f"({len(seeded['threads'])} threads, {len(seeded['events'])} events, room, inbox, "
        f"calendar, dashboard) + {live_count - 1} live frames; dialogs {len(dialogs)}, "
        f"CSP violations {len(problems.csp_violations)}, console errors "
        f"{len(problems.console_errors)}",
    )
    assert {path: status for path, status in statuses.items() if status != 200} == {}
    # The payloads are there, as text: the pages were not empty.
    assert shown_as_text[f"/rooms/{ROOM}/"] is True
    assert shown_as_text[f"/threads/{seeded['threads'][0]}/"] is True
    assert shown_as_text[f"/events/{seeded['events'][0]}/"] is True
    assert PAYLOADS[0] in live.nth(1).inner_text()
    assert posted == [201] * len(PAYLOADS)
    assert live_count == len(PAYLOADS) + 1
    assert scripts_in_messages == 0
    assert dialogs == []
    assert problems.csp_violations == []
    assert problems.console_errors == []


def test_csp_listener_reports_an_inline_script(
    page: Any, minga_server: LiveServer, problems: PageProblems
) -> None:
    """The instruments work: an inline script injected into a real page is blocked and reported,
    so an empty list above means no violation, not a deaf listener."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/accounts/login/")

    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'alert(1)'; document.body.append(s); }"
    )
    page.wait_for_function("() => true")
    page.wait_for_timeout(300)

    assert dialogs == []
    assert [v.split(" ")[0] for v in problems.csp_violations] == ["script-src-elem"]
