"""The calendar in a real browser: an organizer schedules a workshop, a delegate registers."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from .conftest import DELEGATE, Account, PageProblems

pytestmark = pytest.mark.browser


def sign_in(page: Any, account: Account) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", account.email)
    page.fill("input[name=password]", account.password)
    with page.expect_navigation():
        page.locator("form:has(input[name=password]) button[type=submit]").click()
    # The session-scoped server's accounts keep the language other tests chose (the dashboard
    # test switches the delegate to Spanish): this test reads the English labels.
    if page.locator("html").get_attribute("lang") != "en":
        with page.expect_navigation():
            page.select_option("#language-select", "en")


def test_workshop_created_by_organizer_registered_by_member_shows_in_month(
    page: Any, organizer_account: Account, problems: PageProblems
) -> None:
    # Arrange: the chair schedules a workshop next January (New York is UTC-5 then, Port of
    # Spain UTC-4 all year), 10:00-12:00 New York time.
    day = date(date.today().year + 1, 1, 20)  # noqa: DTZ011 - only the year matters
    sign_in(page, organizer_account)
    page.goto("/events/new/")
    page.fill("#id_title", "Browser workshop on labor inspection")
    page.select_option("#id_kind", "workshop")
    page.fill("#id_starts_at", f"{day.isoformat()}T10:00")
    page.fill("#id_ends_at", f"{day.isoformat()}T12:00")
    page.fill("#id_capacity", "10")
    assert page.locator("#id_timezone").input_value() == "America/New_York"
    with page.expect_navigation():
        page.get_by_role("button", name="Schedule the event").click()
    event_path = re.sub(r"^https?://[^/]+", "", page.url)
    assert re.fullmatch(r"/events/\d+/", event_path)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()

    # Act: the delegate opens the event page and registers.
    sign_in(page, DELEGATE)
    page.goto(event_path)
    with page.expect_navigation():
        page.get_by_role("button", name="Register").click()
    state = page.locator(".registration-state").inner_text()
    with page.expect_navigation():
        page.get_by_role("link", name="Calendar", exact=True).first.click()
    page.goto(f"/calendar/?month={day:%Y-%m}")

    # Assert: registered, and the workshop is in the month grid on its day, in both zones.
    assert state == "You are registered."
    cell = page.locator("table.calendar-month td", has=page.locator(f'a[href="{event_path}"]'))
    assert cell.count() == 1
    assert cell.locator(".day-number").inner_text() == str(day.day)
    occurrence = cell.locator(f'a[href="{event_path}"]')
    assert occurrence.locator(".occurrence-title").inner_text() == (
        "Browser workshop on labor inspection"
    )
    assert occurrence.locator(".occurrence-meta").inner_text() == "Workshop · WG1 · Registered"
    assert occurrence.locator(".occurrence-time").inner_text() == (
        "10:00\N{EN DASH}12:00 New York / 11:00\N{EN DASH}13:00 your time"
    )
    assert problems.console_errors == []
    assert problems.csp_violations == []
