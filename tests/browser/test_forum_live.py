"""Two delegates in two Chromium pages: one posts, the other sees it arrive without a reload."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import DELEGATE, Account, PageProblems
from .test_events_browser import sign_in

pytestmark = pytest.mark.browser


def test_message_posted_in_one_page_arrives_live_in_the_other(
    page: Any, browser: Any, minga_server: Any, organizer_account: Account, problems: PageProblems
) -> None:
    # Arrange: the chair starts a thread in wg1-a; the delegate opens it in another browser.
    sign_in(page, organizer_account)
    page.goto("/rooms/wg1-a/")
    page.fill("form[data-compose] input[name=title]", "Live test of labor inspection")
    page.fill("form[data-compose] textarea[name=body]", "Opening message")
    with page.expect_navigation():
        page.locator("form[data-compose] button[type=submit]").click()
    thread_path = re.sub(r"^https?://[^/]+", "", page.url).split("#")[0].split("?")[0]
    assert re.fullmatch(r"/threads/\d+/", thread_path), page.url

    other = browser.new_context(base_url=minga_server.url, locale="en-US")
    other.set_default_timeout(15_000)
    reader = other.new_page()
    try:
        sign_in(reader, DELEGATE)
        reader.goto(thread_path)
        reader.wait_for_function("document.querySelector('[data-live-status]') !== null")
        reader.wait_for_timeout(500)  # let the socket subscribe before the post

        # Act: the chair posts Markdown with a link and a script tag.
        page.goto(thread_path)
        page.fill(
            "form[data-compose] textarea[name=body]",
            "See [the ILO report](https://www.ilo.org/) <script>alert(1)</script>",
        )
        page.locator("form[data-compose] button[type=submit]").click()

        # Assert: it appears in the reader's page without a reload, link live, script as text.
        message = reader.locator("[data-messages] li.msg", has_text="See the ILO report")
        message.wait_for()
        link = message.locator("a[href='https://www.ilo.org/']")
        assert link.inner_text() == "the ILO report"
        assert "<script>alert(1)</script>" in message.inner_text()
        assert message.locator("script").count() == 0
        assert reader.locator("[data-messages] li.msg", has_text="See the ILO report").count() == 1
    finally:
        other.close()

    assert problems.console_errors == []
    assert problems.csp_violations == []
