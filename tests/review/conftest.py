"""Fixtures of the `egr review` tests: a small store (tests/store_fixtures.py) with a ground
truth file next to its source, and one headless Chromium for the session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from review_fixtures import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, ReviewFx
from store_fixtures import build

from egr.review.data import ReviewData
from egr_pipeline.store import Store


@pytest.fixture(scope="session")
def review_template(tmp_path_factory: pytest.TempPathFactory) -> ReviewFx:
    base = tmp_path_factory.mktemp("review")
    (base / "pdfs").mkdir()
    fx = build(str(base / "out"), base / "pdfs")
    inv = fx.docs["invoice.pdf"]
    # Ground truth for two of the three questions, where egr synth would put it (the source).
    expected = {(inv, "q_total"): "1,234.56 EUR", (inv, "q_due"): "2026-03-31"}
    lines = [
        json.dumps({"doc_id": d, "question_id": q, "answer": a, "kind": "invoice"})
        for (d, q), a in expected.items()
    ]
    (base / "pdfs" / "ground_truth.jsonl").write_text("\n".join(lines) + "\n")
    return ReviewFx(fx.root, fx, expected)


@pytest.fixture
def review_fx(review_template: ReviewFx, tmp_path: Path) -> ReviewFx:
    """A private copy of the template's output root (tests write verdicts into it)."""
    root = tmp_path / "out"
    shutil.copytree(review_template.root, root)
    return ReviewFx(str(root), review_template.fx, review_template.expected)


@pytest.fixture
def review_data(review_fx: ReviewFx) -> Iterator[ReviewData]:
    data = ReviewData(Store(review_fx.root), reviewer="ada", egr_version="test")
    try:
        yield data
    finally:
        data.close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One headless Chromium for the whole session (selenium + Debian's chromium-driver)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium/chromium-driver not installed (make test installs them with apt-get)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
