"""Minga's production settings (minga.settings, environment-driven) with one benchmark change.

Flood control allows 10 messages per member per room every 10 seconds; the load generator's
senders post far faster than a person. The limit is raised, not removed: the same count query
still runs for every message, so its cost stays in the figures.
"""

import os
from pathlib import Path

from minga.settings import *  # noqa: F403

FORUMS_FLOOD_LIMIT = (1_000_000, 10)

# H5 requests pages, whose templates need the static files' manifest: bench/h5.py collects them
# once per run into a directory of its own (the tree's staticfiles/ is left alone).
if _static_root := os.environ.get("BENCH_STATIC_ROOT"):
    STATIC_ROOT = Path(_static_root)
    if os.environ.get("BENCH_COLLECT_PLAIN") == "1":
        # The same manifest without compressing every file (47 s on the bench machine): the
        # probe requests pages, never the static files themselves.
        STORAGES = {
            **STORAGES,  # noqa: F405
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
            },
        }
