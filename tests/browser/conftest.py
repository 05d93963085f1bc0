"""Browser tests: Debian's Chromium, driven by Playwright, against a real daphne process.

The server runs in its own process, so it cannot see pytest-django's test database (that one
lives inside a transaction of this process). It gets a SQLite file of its own instead,
prepared with `migrate`, `seed_plan_of_action` and `add_member` in subprocesses, exactly as an
operator would. No Chromium at /usr/bin/chromium: the tests are skipped with the reason, except
under CI=true, where that is a failure. A failing test leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_READY_SECONDS = 60  # generous: a cold start imports Django, allauth and channels


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    name: str


# A delegate of Trinidad and Tobago in both working groups; English until they switch.
DELEGATE = Account(
    email="browser.delegate@minga.test", password="tabla-de-trabajo-2026", name="Carmen Rojas"
)


@dataclass
class LiveServer:
    url: str
    log: Path


@dataclass
class PageProblems:
    """What the browser complained about while a test ran: console errors and CSP reports."""

    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(sqlite_path: Path) -> dict[str, str]:
    """The embedded default on a private SQLite file: no PostgreSQL, no Redis, plain HTTP."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL", "HTTPS", "ALLOWED_HOSTS"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "minga.settings",
            "MINGA_TESTING": "1",
            "DEBUG": "1",
            "SECRET_KEY": "browser-tests-only-" + "x" * 40,
            "SQLITE_PATH": str(sqlite_path),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args[:1])} failed:\n{result.stdout}\n{result.stderr}")


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(
        f"daphne did not answer {url}/healthz in {SERVER_READY_SECONDS}s:\n{log.read_text()}"
    )


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (install it: apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def minga_server(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: Path
) -> Iterator[LiveServer]:
    """daphne serving Minga on a free loopback port, with the Plan of Action and one delegate."""
    workdir = tmp_path_factory.mktemp("browser-server")
    env = _server_env(workdir / "db.sqlite3")
    _manage(env, "migrate", "--noinput", "-v", "0")
    # daphne starts while the operator's commands seed (it reads the database per request).
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "daphne.log"
    daphne = str(Path(sys.executable).with_name("daphne"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [daphne, "-b", "127.0.0.1", "-p", str(port), "minga.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _seed_server(env)
        _wait_until_ready(process, url, log)
        yield LiveServer(url=url, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _seed_server(env: dict[str, str]) -> None:
    """The Plan of Action and DELEGATE, with the commands an operator runs."""
    _manage(env, "seed_plan_of_action")
    _manage(
        env,
        "add_member",
        DELEGATE.email,
        "--name",
        DELEGATE.name,
        "--password",
        DELEGATE.password,
        "--org",
        "Ministry of Labour of Trinidad and Tobago",
        "--org-kind",
        "ministry",
        "--country",
        "TT",
        "--language",
        "en",
        "--timezone",
        "America/Port_of_Spain",
        "--wg",
        "wg1",
        "--wg",
        "wg2",
    )


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # The page fixture reads this at teardown to decide whether to keep a screenshot.
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(
    browser: Any, minga_server: LiveServer, problems: PageProblems, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A fresh browser context (no cookies) whose console errors and CSP reports are collected."""
    context = browser.new_context(
        base_url=minga_server.url,
        locale="en-US",
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            problems.console_errors.append(f"{message.text} ({message.location.get('url')})")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.console_errors.append(str(error)))

    def report_csp_violation(text: str) -> None:
        problems.csp_violations.append(text)

    # A Python function, not a bound builtin such as list.append: Playwright tags what it exposes.
    page.expose_function("mingaReportCspViolation", report_csp_violation)
    # The listener is added before any page script runs, in every document the page loads.
    page.add_init_script(
        'document.addEventListener("securitypolicyviolation", (e) => {'
        ' window.mingaReportCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}'
        " at ${e.sourceFile}:${e.lineNumber}`); });"
    )
    yield page
    call_report = getattr(request.node, "report_call", None)
    if call_report is not None and call_report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


# The chair of WG1 who schedules events in the calendar tests; in New York, so the delegate in
# Port of Spain reads every time in both zones.
ORGANIZER = Account(
    email="browser.chair@minga.test", password="mesa-directiva-2026", name="Laura Bennett"
)


@pytest.fixture(scope="session")
def organizer_account(minga_server: LiveServer) -> Account:
    """ORGANIZER, added to the running server's database as chair of wg1 (once per session)."""
    env = _server_env(minga_server.log.parent / "db.sqlite3")
    _manage(
        env,
        "add_member",
        ORGANIZER.email,
        "--name",
        ORGANIZER.name,
        "--password",
        ORGANIZER.password,
        "--org",
        "U.S. Department of Labor",
        "--org-kind",
        "ministry",
        "--country",
        "US",
        "--language",
        "en",
        "--timezone",
        "America/New_York",
        "--wg",
        "wg1",
        "--role",
        "chair",
    )
    return ORGANIZER
