"""frontend/static/minga/realtime.js under Node with a fake WebSocket: ordering, de-duplication,
gap filling, resync, acks, reconnect with catch-up, and the close codes that end reconnecting.

Skipped with a clear reason where Node is not installed; the browser test drives the same module
in Chromium against a real server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
MODULE = ROOT / "frontend" / "static" / "minga" / "realtime.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="Node.js not installed (apt-get install nodejs)"
)

HARNESS = """
const sockets = [];
class FakeSocket extends EventTarget {
  static OPEN = 1;
  constructor(url) { super(); this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code = 1000) { this.end(code); }
  open() { this.readyState = 1; this.dispatchEvent(new Event("open")); }
  end(code) { this.readyState = 3; this.dispatchEvent(Object.assign(new Event("close"), { code })); }
  frame(f) { this.dispatchEvent(Object.assign(new Event("message"), { data: JSON.stringify(f) })); }
}
globalThis.WebSocket = FakeSocket;
globalThis.window = { location: { protocol: "https:", host: "minga.example" }, crypto: globalThis.crypto, addEventListener() {} };
globalThis.document = { addEventListener() {}, visibilityState: "visible" };
const { Gateway } = await import(process.argv[2]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const created = (room, seq, id = seq) => ({ type: "message.created", room, seq, message: { id } });
const scenarios = {};
"""

SCENARIOS = {
    "order": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const got = [];
  gw.addEventListener("message.created", (e) => got.push(e.detail.seq));
  const ws = sockets.at(-1); ws.open();
  gw.subscribe("wg1-a", { after: 0 });
  ws.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 3 });
  for (const seq of [1, 3, 2, 2, 1]) ws.frame(created("wg1-a", seq));
  return { got, url: ws.url, sent: ws.sent, lastSeq: gw.lastSeq("wg1-a") };
""",
    "gap": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const got = [];
  gw.addEventListener("message.created", (e) => got.push(e.detail.seq));
  const ws = sockets.at(-1); ws.open();
  gw.subscribe("wg1-a", { after: null });
  ws.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 10 });
  ws.frame(created("wg1-a", 12));
  await sleep(1700);
  const asked = ws.sent.at(-1);
  ws.frame(created("wg1-a", 11));
  return { got, asked };
""",
    "resync": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const events = [];
  gw.addEventListener("resync", (e) => events.push(e.detail));
  gw.addEventListener("message.created", (e) => events.push(e.detail.seq));
  const ws = sockets.at(-1); ws.open();
  gw.subscribe("wg1-a", { after: 2 });
  ws.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 900 });
  ws.frame({ type: "resync", room: "wg1-a", last_seq: 900 });
  ws.frame(created("wg1-a", 901));
  return { events };
""",
    "ack": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const ws = sockets.at(-1); ws.open();
  const ok = gw.send({ room: "wg1-a", thread: 7, body: "Hola", clientId: "c-1" });
  const bad = gw.send({ room: "wg1-a", thread: 7, body: "", clientId: "c-2" });
  ws.frame({ type: "ack", client_id: "c-1", message_id: 5, seq: 9 });
  ws.frame({ type: "error", client_id: "c-2", code: "invalid", detail: "Empty" });
  const ack = await ok;
  const error = await bad.catch((e) => ({ code: e.code, detail: e.detail }));
  return { ack, error, sent: ws.sent };
""",
    "reconnect": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const states = [];
  gw.addEventListener("status", (e) => states.push(e.detail.state));
  const first = sockets.at(-1); first.open();
  gw.subscribe("wg1-a", { after: 0 });
  first.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 1 });
  first.frame(created("wg1-a", 1));
  gw.send({ room: "wg1-a", thread: 7, body: "pending", clientId: "c-9" });
  first.end(1006);
  await sleep(700);
  const second = sockets.at(-1);
  second.open();
  return { sockets: sockets.length, states, resent: second.sent };
""",
    "unauthenticated": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const ws = sockets.at(-1); ws.open();
  ws.end(4401);
  await sleep(700);
  return { sockets: sockets.length, state: gw.state };
""",
    "revoked": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const ws = sockets.at(-1); ws.open();
  const pending = gw.send({ room: "wg1-a", thread: 7, body: "x", clientId: "c-3" }).catch((e) => e.code);
  ws.end(4403);
  await sleep(700);
  return { sockets: sockets.length, state: gw.state, pending: await pending };
""",
    "subscribe_retry": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const errors = [];
  gw.addEventListener("error", (e) => errors.push([e.detail.room, e.detail.code, e.detail.retrying === true]));
  const ws = sockets.at(-1); ws.open();
  const refused = (room, code) => ({ type: "error", code, detail: "-", frame: "subscribe", room });
  gw.subscribe("wg1-a", { after: 4 });
  gw.subscribe("wg1-b", { after: 2 });
  gw.subscribe("wg9-z", { after: null });
  ws.frame(refused("wg1-a", "server_error"));
  ws.frame(refused("wg1-b", "rate_limited"));
  ws.frame(refused("wg9-z", "forbidden"));
  gw.unsubscribe("wg1-b");  // a retry still waiting is dropped with the room
  await sleep(700);  // the first retry comes after 0.25-0.5 s
  ws.frame({ type: "subscribed", room: "wg1-a", online: [], last_seq: 6 });
  ws.frame(created("wg1-a", 5));
  await sleep(700);
  return { errors, sent: ws.sent, lastSeq: gw.lastSeq("wg1-a"), rooms: [...gw.rooms.keys()] };
""",
    "subscribe_retry_reconnect": """
  const gw = new Gateway({ pingSeconds: 1000 });
  const ws = sockets.at(-1); ws.open();
  const refused = { type: "error", code: "server_error", detail: "-", frame: "subscribe", room: "wg1-a" };
  gw.subscribe("wg1-a", { after: 4 });
  ws.frame(refused);
  await sleep(600);  // asked again after 0.25-0.5 s ...
  ws.frame(refused);  // ... and refused again: the next ask would wait 0.5-1 s
  ws.end(1006);
  await sleep(600);  // reconnected after 0.25-0.5 s
  const again = sockets.at(-1); again.open();
  again.frame(refused);
  await sleep(650);  // on the new connection the backoff starts afresh: 0.25-0.5 s
  return { first: ws.sent.length, second: again.sent.map((f) => f.type) };
""",
    "typing": """
  const gw = new Gateway({ pingSeconds: 1000, memberId: 4 });
  const seen = [];
  gw.addEventListener("typing", (e) => seen.push(e.detail.member.id));
  const ws = sockets.at(-1); ws.open();
  gw.typing("wg1-a", 7); gw.typing("wg1-a", 7); gw.typing("wg1-a", 8);
  ws.frame({ type: "typing", room: "wg1-a", thread: 7, member: { id: 4 } });
  ws.frame({ type: "typing", room: "wg1-a", thread: 7, member: { id: 5 } });
  return { seen, sent: ws.sent };
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


def test_realtime_client_delivers_each_seq_once_in_order(tmp_path: Path) -> None:
    result = run("order", tmp_path)

    assert result == {
        "got": [1, 2, 3],
        "url": "wss://minga.example/ws/",
        "sent": [{"type": "subscribe", "room": "wg1-a", "after": 0}],
        "lastSeq": 3,
    }


def test_realtime_client_fills_a_gap_by_subscribing_with_after(tmp_path: Path) -> None:
    result = run("gap", tmp_path)

    assert result == {
        "got": [11, 12],
        "asked": {"type": "subscribe", "room": "wg1-a", "after": 10},
    }


def test_realtime_client_resync_emits_and_orders_from_last_seq(tmp_path: Path) -> None:
    result = run("resync", tmp_path)

    assert result == {"events": [{"type": "resync", "room": "wg1-a", "last_seq": 900}, 901]}


def test_realtime_client_send_resolves_on_ack_and_rejects_on_error(tmp_path: Path) -> None:
    result = run("ack", tmp_path)

    assert (result["ack"], result["error"], [f["client_id"] for f in result["sent"]]) == (
        {"type": "ack", "client_id": "c-1", "message_id": 5, "seq": 9},
        {"code": "invalid", "detail": "Empty"},
        ["c-1", "c-2"],
    )


def test_realtime_client_reconnects_resubscribes_after_last_seq_and_resends(
    tmp_path: Path,
) -> None:
    result = run("reconnect", tmp_path)

    assert result == {
        "sockets": 2,
        "states": ["open", "closed", "connecting", "open"],
        "resent": [
            {"type": "subscribe", "room": "wg1-a", "after": 1},
            {
                "type": "message.send",
                "room": "wg1-a",
                "thread": 7,
                "body": "pending",
                "client_id": "c-9",
                "reply_to": None,
            },
        ],
    }


def test_realtime_client_stops_on_4401(tmp_path: Path) -> None:
    assert run("unauthenticated", tmp_path) == {"sockets": 1, "state": "unauthenticated"}


def test_realtime_client_stops_on_4403_and_rejects_pending_sends(tmp_path: Path) -> None:
    assert run("revoked", tmp_path) == {"sockets": 1, "state": "revoked", "pending": "revoked"}


def test_realtime_client_asks_again_for_a_room_refused_for_a_passing_reason(
    tmp_path: Path,
) -> None:
    result = run("subscribe_retry", tmp_path)

    assert result == {
        "errors": [
            ["wg1-a", "server_error", True],
            ["wg1-b", "rate_limited", True],
            ["wg9-z", "forbidden", False],
        ],
        "sent": [
            {"type": "subscribe", "room": "wg1-a", "after": 4},
            {"type": "subscribe", "room": "wg1-b", "after": 2},
            {"type": "subscribe", "room": "wg9-z", "after": None},
            {"type": "unsubscribe", "room": "wg1-b"},
            {"type": "subscribe", "room": "wg1-a", "after": 4},  # once: answered, then no more
        ],
        "lastSeq": 5,
        "rooms": ["wg1-a"],
    }


def test_realtime_client_starts_the_subscribe_backoff_afresh_on_a_new_connection(
    tmp_path: Path,
) -> None:
    result = run("subscribe_retry_reconnect", tmp_path)

    assert result == {"first": 2, "second": ["subscribe", "subscribe"]}


def test_realtime_client_throttles_typing_and_drops_own(tmp_path: Path) -> None:
    result = run("typing", tmp_path)

    assert (result["seen"], result["sent"]) == (
        [5],
        [
            {"type": "typing", "room": "wg1-a", "thread": 7},
            {"type": "typing", "room": "wg1-a", "thread": 8},
        ],
    )
