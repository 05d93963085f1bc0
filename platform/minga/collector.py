"""Garbage collector settings for the long-running processes (daphne, Celery workers).

A full collection walks every object the process has. After start-up that is ~150,000 objects
of Django, the apps and their templates, none of which ever become garbage; a daphne process
holding 500 sockets walked up to 250,000, and each full collection stopped its event loop for
80-150 ms on the bench machine: every frame and page in flight waited (docs/performance.md,
"Pauses"). `freeze_startup()` collects once and moves what start-up made out of the collector's
reach (`gc.freeze`), so later full collections walk only what came after: 46-81 ms in the same
run. The collector stays on: cycles made later are still found.
"""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Collect what start-up left, then keep every object alive now out of later collections.
    Call once, when the process is ready to serve (after its imports and set-up)."""
    gc.collect()
    gc.freeze()
