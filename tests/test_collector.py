"""Long-running processes keep start-up's objects out of the garbage collector's walks."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import gc
import minga.asgi
print(gc.isenabled(), gc.get_freeze_count())
"""


def test_asgi_process_freezes_its_start_up_objects() -> None:
    # A fresh interpreter, as daphne starts one: importing the ASGI application freezes what
    # start-up made (a full collection then walks only later objects) and leaves the collector on.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "minga.settings", "MINGA_TESTING": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()

    enabled, frozen = out[0], int(out[1])
    assert enabled == "True"
    assert frozen > 50_000  # Django and the apps: ~150,000 on the bench machine


def test_freeze_startup_moves_live_objects_out_of_collections() -> None:
    import gc

    from minga.collector import freeze_startup

    before = gc.get_freeze_count()
    try:
        freeze_startup()
        assert gc.get_freeze_count() > before
        assert gc.isenabled()
    finally:
        gc.unfreeze()
