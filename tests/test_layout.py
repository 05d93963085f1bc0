"""The repository's shape: things that break imports or deployments if they drift."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_platform_is_not_a_package() -> None:
    # A top-level package named `platform` shadows the standard library; uuid, then Django, break.
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_module_is_the_real_one() -> None:
    import platform

    assert hasattr(platform, "python_version")
    assert "site-packages" not in (platform.__file__ or "") and "/work" not in (
        platform.__file__ or ""
    )


def test_layout_has_the_architecture_folders() -> None:
    for name in (
        "platform/minga",
        "community",
        "forums",
        "events",
        "notifications",
        "frontend",
        "tests",
        "bench",
        "docs",
        "manage.py",
        "Makefile",
        "pyproject.toml",
        "Procfile",
        ".python-version",
        "README.md",
        ".ci/run",
        "requirements.lock",
    ):
        assert (ROOT / name).exists(), name


def test_python_version_file_selects_313() -> None:
    assert (ROOT / ".python-version").read_text().strip() == "3.13.0"


def test_procfile_has_the_four_processes() -> None:
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert sorted(lines) == ["beat", "release", "web", "worker"]
    assert "daphne" in lines["web"] and "minga.asgi:application" in lines["web"]


def test_no_dependency_installs_forbidden_top_level_modules() -> None:
    import importlib.metadata as md

    forbidden = {"forums", "events", "notifications"}
    for dist in md.distributions():
        if dist.metadata["Name"].lower() == "minga":
            continue
        top = (dist.read_text("top_level.txt") or "").split()
        assert not forbidden & set(top), dist.metadata["Name"]


def test_daphne_pings_only_sockets_silent_past_the_browsers_own_ping() -> None:
    # ADR 0019: every way Minga's daphne is started carries one keepalive interval, above the
    # browser client's own ping, so a live browser is never pinged by the server as well.
    from bench.servers import MINGA_PING_INTERVAL

    (web,) = re.findall(r"^web: .*$", (ROOT / "Procfile").read_text(), flags=re.MULTILINE)
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    (exec_start,) = re.findall(r"^ExecStart=\S+/daphne .*$", deployment, flags=re.MULTILINE)
    client = (ROOT / "frontend" / "static" / "minga" / "realtime.js").read_text()
    (browser_ping,) = re.findall(r"pingSeconds = (\d+)", client)

    intervals = re.findall(r"--ping-interval (\d+)", f"{web}\n{exec_start}")
    assert intervals == [str(MINGA_PING_INTERVAL)] * 2
    assert int(browser_ping) < MINGA_PING_INTERVAL
