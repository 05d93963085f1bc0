"""tracemalloc on demand in a benchmark server (a development tool: docs/performance.md, "H3:
where a connection's bytes go").

On a PYTHONPATH with MEMTRACE_DIR set, every Python process started from it answers SIGUSR1:
the first signal starts tracemalloc (MEMTRACE_FRAMES frames per trace, default 25), each later
one dumps a snapshot of what was allocated since and is still alive to
$MEMTRACE_DIR/<pid>-<n>.snap. `bench.connect_probe` sends both signals to its servers (after
the warm-up, then with every client held); `bench.memtrace_report` reads the snapshots.
"""

import os

if os.environ.get("MEMTRACE_DIR"):
    import signal

    _signals = [0]

    def _on_signal(signum: int, frame: object) -> None:
        import tracemalloc

        _signals[0] += 1
        if _signals[0] == 1:
            tracemalloc.start(int(os.environ.get("MEMTRACE_FRAMES", "25")))
            return
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(os.path.join(os.environ["MEMTRACE_DIR"], f"{os.getpid()}-{_signals[0]}.snap"))

    signal.signal(signal.SIGUSR1, _on_signal)
