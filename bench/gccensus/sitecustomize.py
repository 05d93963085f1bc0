"""What each full collection of a benchmark server frees (a development tool: docs/performance.md,
"Pauses").

On a PYTHONPATH with GCCENSUS_DIR set, every daphne process started from it logs each full
collection (generation 2) to $GCCENSUS_DIR/<pid>.log: its wall time, what it collected and,
once GCCENSUS_AFTER seconds have passed (default 12: after start-up and the warm-up),
`gc.DEBUG_SAVEALL` is on and the collected objects are counted by type, then dropped.
Example: `GCCENSUS_DIR=/tmp/gc PYTHONPATH=bench/gccensus python -m bench.connect_probe
--members 4000`.

With GCCENSUS_LIVE=<seconds> as well, the process also counts, once that many seconds have
passed (while the clients are held), the objects a full collection walks (tracked, not frozen)
by type, then times one full collection (wall and CPU): divided by the sockets held, what each
open socket adds to every full collection's pause (docs/performance.md, "H3: the handshake's
frames").
"""

import os
import sys

if os.environ.get("GCCENSUS_DIR") and "daphne" in " ".join(sys.orig_argv):
    import collections
    import gc
    import threading
    import time

    _log = open(  # noqa: SIM115 - open for the process's life
        os.path.join(os.environ["GCCENSUS_DIR"], f"{os.getpid()}.log"), "a", buffering=1
    )
    _started: list[float] = [0.0]

    def _seconds(name: str, default: str) -> float | None:
        """The environment's `name` in seconds, or None (said in the log) when it is no
        number of seconds: the census then skips that part instead of failing in a thread."""
        raw = os.environ.get(name, default)
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value < 0:
            _log.write(f"{name}={raw!r} is not a number of seconds: that part is skipped\n")
            return None
        return value

    _after = _seconds("GCCENSUS_AFTER", "12")
    _live = _seconds("GCCENSUS_LIVE", "") if os.environ.get("GCCENSUS_LIVE") else None

    def _on_collection(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        pause = (time.perf_counter() - _started[0]) * 1000
        _log.write(
            f"{time.time():.1f} full collection {pause:.1f} ms, {info['collected']} collected\n"
        )
        if gc.garbage:
            kinds = collections.Counter(
                f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
            )
            for kind, count in kinds.most_common(30):
                _log.write(f"  {count:8d} {kind}\n")
            gc.garbage.clear()

    def _save_all_later(after: float) -> None:
        time.sleep(after)
        gc.set_debug(gc.DEBUG_SAVEALL)
        _log.write(f"{time.time():.1f} counting what full collections free\n")

    def _live_later(after: float) -> None:
        time.sleep(after)
        walked = gc.get_objects()
        kinds = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in walked)
        _log.write(f"{time.time():.1f} live: {len(walked)} objects walked by a full collection\n")
        for kind, count in kinds.most_common(40):
            _log.write(f"  {count:8d} {kind}\n")
        del walked
        wall, cpu = time.perf_counter(), time.process_time()
        gc.collect()
        _log.write(
            f"{time.time():.1f} live: one full collection took "
            f"{(time.perf_counter() - wall) * 1000:.1f} ms, "
            f"{(time.process_time() - cpu) * 1000:.1f} ms of CPU\n"
        )

    gc.callbacks.append(_on_collection)
    if _after is not None:
        threading.Thread(target=_save_all_later, args=(_after,), daemon=True).start()
    if _live is not None:
        threading.Thread(target=_live_later, args=(_live,), daemon=True).start()
