"""ASGI entry point: `daphne minga.asgi:application`.

HTTP goes to Django; websockets at /ws/ go through the Origin check (ALLOWED_HOSTS; programs
with a token may send no Origin) to the realtime gateway, which authenticates the handshake (a
token, or without one the session) when it connects.
"""

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minga.settings")
# Django must be set up before anything imports models: get_asgi_application() first.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

# This process serves pages and sockets from one event loop and a few threads: shorter GIL
# slices, so a thread back from a query does not wait 5 ms for the loop (settings, ADR 0012).
sys.setswitchinterval(settings.GIL_SWITCH_INTERVAL_US / 1_000_000)

from forums.consumers import GatewayConsumer  # noqa: E402
from minga.collector import freeze_startup  # noqa: E402
from minga.realtime import OriginPolicy, ProtocolRouter, WebsocketRoute  # noqa: E402

# Each layer returns the next one's coroutine: an open socket keeps the gateway's frames only
# (minga.realtime; the handshake is authenticated in the gateway's connect).
application = ProtocolRouter(
    {
        "http": django_asgi_app,
        "websocket": OriginPolicy(WebsocketRoute("ws/", GatewayConsumer)),
    }
)

# Start-up's objects (Django, the apps, the URL conf) out of the collector's walks: a full
# collection no longer stops the event loop for 80-150 ms (minga.collector).
freeze_startup()
