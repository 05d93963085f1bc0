"""The bell: a member mentioned in a room they are not looking at sees the count rise live, and
marking read in one tab brings the count down in the other, neither tab reloading."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import Account, LiveServer, PageProblems, _manage, _server_env
from .test_events_browser import sign_in

pytestmark = pytest.mark.browser

# Her own account: the count starts from what this test does, whatever other tests left.
MENTIONED = Account(email="bell.delegate@minga.test", password="campana-viva-2026", name="Inés Paz")
HANDLE = "ines_paz"


@pytest.fixture(scope="module")
def mentioned_account(minga_server: LiveServer) -> Account:
    env = _server_env(minga_server.log.parent / "db.sqlite3")
    _manage(
        env,
        "add_member",
        MENTIONED.email,
        "--name",
        MENTIONED.name,
        "--password",
        MENTIONED.password,
        "--handle",
        HANDLE,
        "--org",
        "Ministerio de Trabajo de Uruguay",
        "--org-kind",
        "ministry",
        "--country",
        "UY",
        "--language",
        "en",
        "--timezone",
        "America/Montevideo",
        "--wg",
        "wg1",
        "--wg",
        "wg2",
    )
    return MENTIONED


def _unread(page: Any) -> int:
    return int(page.locator("[data-bell]").get_attribute("data-unread"))


def _open_with_live_bell(page: Any, path: str) -> None:
    """Open `path` and wait until the bell's socket is open: on open it re-reads the count."""
    with page.expect_response(lambda r: "/api/v1/notifications/" in r.url):
        page.goto(path)
    # A reload would drop this marker: the assertions below prove no tab reloaded.
    page.evaluate("window.mingaBellTestMarker = 'same page'")


def test_mention_raises_bell_live_and_mark_read_in_one_tab_clears_the_other(
    *,
    page: Any,
    browser: Any,
    minga_server: LiveServer,
    organizer_account: Account,
    mentioned_account: Account,
    problems: PageProblems,
) -> None:
    # Arrange: the member reads room wg2-a in one tab and the dashboard in another; the chair
    # of wg1 is in room wg1-a in another browser.
    sign_in(page, mentioned_account)
    _open_with_live_bell(page, "/rooms/wg2-a/")
    second_tab = page.context.new_page()
    _open_with_live_bell(second_tab, "/")
    before = _unread(page)
    assert _unread(second_tab) == before

    chair_context = browser.new_context(base_url=minga_server.url, locale="en-US")
    chair_context.set_default_timeout(15_000)
    chair = chair_context.new_page()
    try:
        sign_in(chair, organizer_account)
        chair.goto("/rooms/wg1-a/")

        # Act: the chair opens a thread in wg1-a that mentions the member.
        chair.fill("form[data-compose] input[name=title]", "Inspection data for the bell")
        chair.fill(
            "form[data-compose] textarea[name=body]", f"@{HANDLE} could you share the figures?"
        )
        with chair.expect_navigation():
            chair.locator("form[data-compose] button[type=submit]").click()
        assert re.search(r"/threads/\d+/", chair.url), chair.url
    finally:
        chair_context.close()

    # Assert: both tabs count one more, without a reload; the badge shows it.
    for tab in (page, second_tab):
        tab.wait_for_function(
            "n => document.querySelector('[data-bell]').dataset.unread === String(n)",
            arg=before + 1,
        )
        badge = tab.locator("[data-bell-count]")
        assert (badge.is_visible(), badge.inner_text()) == (True, str(before + 1))
        assert tab.evaluate("window.mingaBellTestMarker") == "same page"

    # Act: the member opens the inbox in the second tab and marks everything read.
    second_tab.goto("/notifications/")
    item = second_tab.locator(
        "li.unread", has_text="mentioned you in “Inspection data for the bell”"
    )
    assert item.count() == 1
    with second_tab.expect_navigation():
        second_tab.get_by_role("button", name="Mark all as read").click()

    # Assert: the first tab's bell drops to zero and hides its badge, still without a reload.
    page.wait_for_function("document.querySelector('[data-bell]').dataset.unread === '0'")
    assert page.locator("[data-bell-count]").is_hidden()
    assert page.evaluate("window.mingaBellTestMarker") == "same page"
    assert second_tab.locator("[data-bell]").get_attribute("data-unread") == "0"

    assert problems.console_errors == []
    assert problems.csp_violations == []
