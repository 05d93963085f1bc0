"""docs/events.md catalogues every frame kind the code emits.

In a module that publishes through the bus (it imports `notifications.bus`) or in the gateway
itself, a kind is "emitted" when it appears as a literal `"type": "<kind>"`, or as any dotted
string literal shaped like a kind (`"<entity>.<verb>"`, e.g. passed to a helper that builds the
frame) other than module paths and client frame types. A new kind without its row in the
catalogue fails here, naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from forums import frames

ROOT = Path(__file__).resolve().parent.parent.parent
APPS = ("community", "forums", "events", "notifications", "platform", "frontend")
GATEWAY = {ROOT / "forums" / "consumers.py", ROOT / "forums" / "frames.py"}

TYPE_LITERAL = re.compile(r"""["']type["']\s*:\s*["']([A-Za-z0-9_.]+)["']""")
USES_BUS = re.compile(
    r"from notifications import bus|import notifications\.bus|from notifications\.bus import"
    r"|from \. import bus|from \.bus import"
)
DOTTED_LITERAL = re.compile(r"""["']([a-z]+\.[a-z_]+)["']""")
# Dotted strings that are no frame kinds: logger names, dispatch uids, app labels, and the
# columns of a one-letter SQL alias ("r.member_id" in notifications' fan-out statement).
NOT_KINDS = re.compile(r"^((community|forums|events|notifications|minga|frontend|django)|[a-z])\.")
CATALOGUE_ROW = re.compile(r"^\|\s*`([A-Za-z0-9_.]+)`\s*\|", re.MULTILINE)


def publishing_modules() -> list[Path]:
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            if path in GATEWAY or USES_BUS.search(path.read_text(encoding="utf-8")):
                found.append(path)
    return found


def emitted() -> dict[str, str]:
    """{kind: first file emitting it}."""
    kinds: dict[str, str] = {}
    for path in publishing_modules():
        text = path.read_text(encoding="utf-8")
        dotted = [
            k
            for k in DOTTED_LITERAL.findall(text)
            if not NOT_KINDS.match(k) and k not in frames.SCHEMAS
        ]
        for kind in [*TYPE_LITERAL.findall(text), *dotted]:
            kinds.setdefault(kind, str(path.relative_to(ROOT)))
    return kinds


def catalogued() -> set[str]:
    return set(CATALOGUE_ROW.findall((ROOT / "docs" / "events.md").read_text(encoding="utf-8")))


def test_events_catalogue_lists_every_emitted_kind() -> None:
    missing = {kind: path for kind, path in emitted().items() if kind not in catalogued()}

    assert missing == {}


def test_events_catalogue_lists_every_gateway_and_control_frame() -> None:
    missing = sorted((frames.GATEWAY_FRAMES | frames.CONTROL_FRAMES) - catalogued())

    assert missing == []


def test_events_catalogue_scan_finds_the_known_publishers() -> None:
    # Guards the scan itself: were the patterns to stop matching, the tests above would pass
    # on nothing.
    kinds = emitted()

    assert {
        kind: kinds.get(kind)
        for kind in ("message.created", "session.revoked", "subscribed", "ack", "message.send")
    } == {
        "message.created": "forums/consumers.py",
        "session.revoked": "forums/apps.py",
        "subscribed": "forums/consumers.py",
        "ack": "forums/consumers.py",
        # A client frame type, not something the server emits.
        "message.send": None,
    }
