"""What a person does in a real browser: sign in, switch to Spanish, move around by keyboard."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import DELEGATE, PageProblems

pytestmark = pytest.mark.browser


def sign_in(page: Any) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", DELEGATE.email)
    page.fill("input[name=password]", DELEGATE.password)
    with page.expect_navigation():
        page.locator("form:has(input[name=password]) button[type=submit]").click()


def my_group_badges(page: Any) -> list[str]:
    return page.locator("section[aria-labelledby=my-groups] li strong").all_inner_texts()


def test_dashboard_after_login_switches_to_spanish(page: Any, problems: PageProblems) -> None:
    # Arrange: a delegate of both working groups signs in through the real login page.
    sign_in(page)
    assert page.url.endswith("/dashboard/")
    assert page.locator("h2#my-groups").inner_text() == "My working groups"

    # Act: the language selector in the header submits itself on change.
    with page.expect_navigation():
        page.select_option("header #language-select", "es")

    # Assert: the same dashboard, in Spanish, still listing both groups.
    assert page.url.endswith("/dashboard/")
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator("h2#my-groups").inner_text() == "Mis grupos de trabajo"
    assert my_group_badges(page) == ["GT1", "GT2"]  # "Grupo de Trabajo"
    assert page.locator("header #language-select").input_value() == "es"
    assert problems.console_errors == []
    assert problems.csp_violations == []


def test_working_group_page_tab_reaches_skip_link_first(page: Any, problems: PageProblems) -> None:
    # Arrange
    sign_in(page)
    page.goto("/groups/wg1/")

    # Act: the first Tab from the top of the page, then Enter on what it reached.
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => ({cls: document.activeElement.className,"
        " href: document.activeElement.getAttribute('href')})"
    )
    skip_link_box = page.locator("a.skip-link").bounding_box()
    page.keyboard.press("Enter")

    # Assert: the skip link comes first, shows itself on focus and lands on the main content.
    assert focused == {"cls": "skip-link", "href": "#main"}
    assert skip_link_box is not None
    assert skip_link_box["x"] >= 0
    assert page.evaluate("() => document.activeElement.id") == "main"
    assert problems.console_errors == []
    assert problems.csp_violations == []


def test_language_selector_by_keyboard_waits_for_enter(page: Any, problems: PageProblems) -> None:
    # Arrange
    sign_in(page)
    select = page.locator("header #language-select")
    before = select.input_value()  # the delegate's saved language (another test may change it)
    select.focus()

    # Act: an arrow key moves the choice (Chromium fires "change" at once on a closed select).
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(300)  # a navigation would have begun by now; none must
    moved_to = select.input_value()
    lang_after_arrow = page.locator("html").get_attribute("lang")
    button_shown = page.locator("header .language-form button[type=submit]").is_visible()
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # Assert: nothing reloaded on the arrow; Enter applied the language the arrow reached.
    assert (moved_to != before, lang_after_arrow, button_shown) == (True, before, True)
    assert page.locator("html").get_attribute("lang") == moved_to
    assert problems.console_errors == []
