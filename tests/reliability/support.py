"""Shared pieces of the reliability families: the figure line, an active-content scanner, sockets.

Each family prints one line `FAMILY: figure` (docs/reliability.md records them). The scanner
parses HTML with the standard library's html.parser and lists what a browser could run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from minga.pytest_plugin import FIGURES

from community.models import User

ORIGIN = (b"origin", b"http://localhost")

# URL-carrying attributes whose value a browser may navigate to or load.
_URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "srcdoc", "background"}
)
_ACTIVE_SCHEMES = ("javascript:", "vbscript:", "data:text/html")


def report(capsys: pytest.CaptureFixture[str], family: str, figure: str) -> None:
    """Print the family's one figure line past pytest's capture, and keep it for the run's
    `figures` summary (minga.pytest_plugin), which shows it also where an xdist worker ran
    the test and its output is not seen."""
    line = f"{family}: {figure}"
    FIGURES.append(line)
    with capsys.disabled():
        print(f"\n{line}")


class ActiveContentScanner(HTMLParser):
    """Collects every piece of active content in a document: script elements, on* attributes,
    script-capable URLs, and elements that load or redirect (iframe, object, embed, base, meta
    refresh)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and not _page_owned_script(values):
            self.found.append("<script>")
        if tag in {"iframe", "object", "embed", "base", "frame", "frameset"}:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            text = (value or "").strip()
            squashed = "".join(text.split()).lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            elif name in _URL_ATTRIBUTES and squashed.startswith(_ACTIVE_SCHEMES):
                self.found.append(f"<{tag} {name}={text[:30]!r}>")
            elif tag == "meta" and name == "http-equiv" and text.lower() == "refresh":
                self.found.append("<meta http-equiv=refresh>")
            elif name == "style" and ("expression(" in squashed or "javascript:" in squashed):
                self.found.append(f"<{tag} style=…>")

    handle_startendtag = handle_starttag


def _page_owned_script(attrs: dict[str, str]) -> bool:
    """The page's own scripts: static files (CSP allows only 'self') and JSON data islands
    written by json_script (which escapes <, > and &)."""
    return attrs.get("src", "").startswith("/static/") or attrs.get("type") == "application/json"


def active_content(html: str) -> list[str]:
    """Every piece of active content in `html` that is not the page's own."""
    scanner = ActiveContentScanner()
    scanner.feed(html)
    scanner.close()
    return scanner.found


def session_headers(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def open_socket(headers: list[tuple[bytes, bytes]]) -> tuple[WebsocketCommunicator, bool]:
    from minga.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _subprotocol = await communicator.connect(timeout=10)
    return communicator, connected


@asynccontextmanager
async def member_socket(user: User) -> AsyncIterator[WebsocketCommunicator]:
    """An open, authenticated socket of `user` that has answered one ping (so it joined its
    personal group)."""
    headers = await database_sync_to_async(session_headers)(user)
    communicator, connected = await open_socket(headers)
    assert connected
    try:
        await send(communicator, {"type": "ping"})
        assert await recv(communicator) == {"type": "pong"}
        yield communicator
    finally:
        await communicator.disconnect()


async def send(ws: WebsocketCommunicator, frame: dict[str, Any]) -> None:
    await ws.send_to(text_data=json.dumps(frame))


async def recv(ws: WebsocketCommunicator, seconds: float = 10) -> dict[str, Any]:
    return await ws.receive_json_from(timeout=seconds)


async def recv_until(ws: WebsocketCommunicator, kind: str, seconds: float = 10) -> dict[str, Any]:
    """The next frame of type `kind`, skipping others (presence, typing)."""
    while True:
        frame = await recv(ws, seconds)
        if frame.get("type") == kind:
            return frame


async def close_code(ws: WebsocketCommunicator, seconds: float = 10) -> int | None:
    """The close code if the next output closes the socket, else None."""
    output = await ws.receive_output(timeout=seconds)
    if output["type"] != "websocket.close":
        return None
    return int(output.get("code", 1000))
