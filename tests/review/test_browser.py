"""`egr review` in a real browser: Debian's Chromium, headless, driven by selenium. Opens the
list, filters it, opens an answer with the keyboard, marks it with the keyboard, and checks the
row that lands in the reviews table."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from review_fixtures import ReviewFx, query, serve

from egr.review.data import ReviewData
from egr_pipeline import duck
from egr_pipeline.store import Store

pytest.importorskip("selenium")
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait


def reviews(root: str) -> list[dict]:
    return query(
        root,
        "SELECT run_id, work_key, verdict, corrected_answer, reviewer FROM reviews "
        "ORDER BY reviewed_at",
    )


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def press(browser, key: str) -> None:
    ActionChains(browser).send_keys(key).perform()


def body(browser, name: str) -> str | None:
    """A data-* attribute of the current page's body (no element reference to go stale)."""
    return browser.execute_script(f"return document.body && document.body.dataset.{name}")


def on_view(browser, view: str) -> None:
    WebDriverWait(browser, 30).until(
        lambda b: (
            b.execute_script("return document.readyState") == "complete" and body(b, "view") == view
        )
    )


def test_filter_open_and_mark_with_the_keyboard(
    browser, review_fx: ReviewFx, review_data: ReviewData
) -> None:
    n_ok = duck.run_query(
        Store(review_fx.root), "SELECT count(*) FROM answers_latest WHERE status = 'ok'"
    ).rows[0][0]
    with serve(review_data) as url:
        browser.get(url + "/answers")
        on_view(browser, "answers")
        Select(browser.find_element(By.ID, "f-status")).select_by_value("ok")
        browser.find_element(By.ID, "f-apply").click()
        WebDriverWait(browser, 30).until(lambda b: "status=ok" in b.current_url)
        on_view(browser, "answers")
        rows = browser.find_elements(By.CSS_SELECTOR, "#answers tr.row")
        assert len(rows) == n_ok == int(browser.find_element(By.ID, "total").text)
        statuses = [r.find_element(By.CSS_SELECTOR, "td.st").text for r in rows]
        assert set(statuses) == {"ok"}

        # j moves the selection to the second row, Enter opens it.
        second = rows[1].get_attribute("data-key")
        press(browser, "j")
        press(browser, Keys.ENTER)
        on_view(browser, "answer")
        run_id, key = body(browser, "run"), body(browser, "key")
        assert key == second
        img = browser.find_element(By.ID, "page-img")
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return arguments[0].naturalWidth", img) > 0
        )
        assert browser.find_element(By.CSS_SELECTOR, "ol.evidence li .ev-text").text

        # c marks it correct; the row lands in the reviews table.
        press(browser, "c")
        got = wait_for(lambda: reviews(review_fx.root))
        assert got == [
            {
                "run_id": run_id,
                "work_key": key,
                "verdict": "correct",
                "corrected_answer": None,
                "reviewer": "ada",
            }
        ]

        # It was the last answer of the filtered list: the page moves on to the list.
        on_view(browser, "answers")
        assert "status=ok" in browser.current_url

        # The first answer of the filtered list; x, type the right answer, Enter.
        browser.get(url + "/at?status=ok&i=0")
        on_view(browser, "answer")
        first = body(browser, "key")
        assert first != key
        press(browser, "x")
        field = browser.find_element(By.ID, "corrected-text")
        WebDriverWait(browser, 30).until(lambda b: field.is_displayed())
        field.clear()
        field.send_keys("the right answer", Keys.ENTER)
        got = wait_for(lambda: len(reviews(review_fx.root)) == 2 and reviews(review_fx.root))
        assert (got[1]["work_key"], got[1]["verdict"], got[1]["corrected_answer"]) == (
            first,
            "corrected",
            "the right answer",
        )
        # After a verdict the page moves on to the next answer of the list (index 1).
        WebDriverWait(browser, 30).until(lambda b: body(b, "key") != first)
        on_view(browser, "answer")
        assert body(browser, "key") == key
        assert "?" in browser.current_url and "i=1" in urlparse(browser.current_url).query

        # u goes back to the list, which now shows both verdicts.
        press(browser, "u")
        on_view(browser, "answers")
        verdicts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#answers td.verdict")]
        assert "correct" in verdicts and "corrected: the right answer" in verdicts
