"""frontend/static/minga/realtime.js and change numbers: the change mark, `changes_after` on
resubscribe, stale change frames dropped, attachments in `message.send` (Node, fake WebSocket)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.forums.test_realtime_client import HARNESS, MODULE, NODE

pytestmark = pytest.mark.skipif(
    NODE is None, reason="Node.js not installed (apt-get install nodejs)"
)

SCENARIOS = {
    "marks": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const got = [];
  for (const kind of ["message.edited", "reaction.changed", "thread.updated", "caught_up"]) {
    gw.addEventListener(kind, (e) => got.push([kind, e.detail.change ?? e.detail.last_change]));
  }
  const first = sockets.at(-1); first.open();
  gw.subscribe("wg1-a", { after: 5, changesAfter: 3 });
  first.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 5, last_change: 6 });
  first.frame({ type: "message.edited", room: "wg1-a", seq: 5, change: 6, message: { id: 9 } });
  first.frame({ type: "caught_up", room: "wg1-a", last_seq: 5, last_change: 6 });
  const afterCatchUp = gw.lastChange("wg1-a");
  // Live: 7 moves the mark; 9 arrives before 8 (held); an old state of message 9 is dropped.
  first.frame({ type: "reaction.changed", room: "wg1-a", seq: 5, change: 7, message_id: 9, reactions: {} });
  first.frame({ type: "thread.updated", room: "wg1-a", seq: 5, change: 9, thread: { id: 2 } });
  first.frame({ type: "message.edited", room: "wg1-a", seq: 5, change: 6, message: { id: 9 } });
  const held = gw.lastChange("wg1-a");
  first.end(1006);
  await sleep(700);
  const second = sockets.at(-1); second.open();
  return { got, afterCatchUp, held, resent: second.sent };
""",
    "fill": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const ws = sockets.at(-1); ws.open();
  gw.subscribe("wg1-a", { after: 2, changesAfter: 4 });
  ws.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 2, last_change: 4 });
  ws.frame({ type: "caught_up", room: "wg1-a", last_seq: 2, last_change: 4 });
  ws.frame({ type: "reaction.changed", room: "wg1-a", seq: 2, change: 6, message_id: 1, reactions: {} });
  await sleep(1700);
  return { asked: ws.sent.at(-1) };
""",
    "legacy": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const ws = sockets.at(-1); ws.open();
  gw.subscribe("wg1-a", { after: null });
  ws.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 8, last_change: 3 });
  gw.send({ room: "wg1-a", thread: 7, body: "files", attachments: [4, 5], clientId: "c-1" });
  return { sent: ws.sent, lastChange: gw.lastChange("wg1-a") };
""",
}


def run(name: str, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / f"{name}.mjs"
    script.write_text(
        HARNESS
        + f"const result = await (async () => {{{SCENARIOS[name]}}})();\n"
        + "console.log(JSON.stringify(result));\nprocess.exit(0);\n"
    )
    done = subprocess.run(
        [NODE or "node", str(script), MODULE.as_uri()],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_realtime_client_keeps_a_contiguous_change_mark_and_resubscribes_with_it(
    tmp_path: Path,
) -> None:
    result = run("marks", tmp_path)

    assert result == {
        "got": [
            ["message.edited", 6],
            ["caught_up", 6],
            ["reaction.changed", 7],
            ["thread.updated", 9],
        ],
        "afterCatchUp": 6,
        "held": 7,
        "resent": [{"type": "subscribe", "room": "wg1-a", "after": 5, "changes_after": 7}],
    }


def test_realtime_client_asks_for_a_skipped_change(tmp_path: Path) -> None:
    result = run("fill", tmp_path)

    assert result == {
        "asked": {"type": "subscribe", "room": "wg1-a", "after": 2, "changes_after": 4}
    }


def test_realtime_client_takes_the_change_mark_from_subscribed_and_sends_attachments(
    tmp_path: Path,
) -> None:
    result = run("legacy", tmp_path)

    assert result == {
        "sent": [
            {"type": "subscribe", "room": "wg1-a", "after": None},
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": 7,
                "body": "files",
                "client_id": "c-1",
                "reply_to": None,
                "attachments": [4, 5],
            },
        ],
        "lastChange": 3,
    }
