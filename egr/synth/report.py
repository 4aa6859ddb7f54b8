"""The multi-page report layout: cover, sections of prose, budget and approval blocks."""

from __future__ import annotations

import datetime as dt
import random

from egr.synth.canvas import GREY, PAGE_SIZES, PALETTE, Canvas, TextSpan, tint
from egr.synth.content import (
    DATE_FORMATS,
    code,
    company,
    date,
    money,
    person,
    prose,
    small_size,
    value_size,
)

_HEADINGS = (
    "Background", "Scope and method", "Findings", "Site observations", "Cost analysis", "Risks",
    "Staffing", "Energy use", "Maintenance", "Outlook", "Recommendations", "Procurement",
    "Health and safety", "Contracts", "Capital works", "Lessons learned", "Stakeholders",
    "Performance", "Compliance", "Next steps",
)  # fmt: skip
_INDICATORS = (
    "Open work orders", "Sites inspected", "Incidents reported", "Contracts renewed",
    "Staff trained", "Audits closed", "Energy use (MWh)", "Vendors onboarded",
)  # fmt: skip


def _indicator_table(
    c: Canvas, rng: random.Random, x: float, y: float, width: float, accent
) -> float:
    """A small 3-column Helvetica table of key indicators; returns the y below it."""
    year = rng.randint(2019, 2025)
    row_h = 15.0
    cols = (x + 4, x + width * 0.7, x + width - 4)
    c.rect((x, y, x + width, y + row_h), stroke=None, fill=tint(accent, 0.85))
    c.text(cols[0], y + 10.5, "Indicator", "hebo", 8.5, role="heading")
    c.text(cols[1], y + 10.5, str(year - 1), "hebo", 8.5, align="right", role="heading")
    c.text(cols[2], y + 10.5, str(year), "hebo", 8.5, align="right", role="heading")
    y += row_h
    for name in rng.sample(_INDICATORS, rng.randint(3, 5)):
        c.text(cols[0], y + 10.5, name, "helv", 8.5, role="cell")
        for col in cols[1:]:
            c.text(col, y + 10.5, str(rng.randint(3, 900)), "helv", 8.5, align="right", role="cell")
        y += row_h
        c.line(x, y, x + width, y)
    return y + 8


def draw_report(c: Canvas, rng: random.Random) -> dict[str, TextSpan]:
    w, h = rng.choice(PAGE_SIZES)
    n_pages = rng.randint(3, 5)
    m = rng.uniform(54.0, 70.0)
    accent = rng.choice(PALETTE)
    body, head = rng.choice((("tiro", "hebo"), ("helv", "hebo"), ("tiro", "tibo")))
    bs = rng.choice((9.5, 10.0, 10.5, 11.0))
    fmt = rng.choice(DATE_FORMATS)
    vs = value_size(rng)
    org = company(rng)
    title = rng.choice(
        (
            "Annual Facilities Review",
            "Operations Audit Report",
            "Programme Status Report",
            "Capital Planning Review",
        )
    )
    issued = date(rng, 2019, 2025)
    out: dict[str, TextSpan] = {}

    # Where each answer goes (pages are 0-based; never on the cover).
    budget_page = rng.randint(1, n_pages - 1)
    filing_page = rng.randint(1, n_pages - 1)
    last = n_pages - 1

    # Cover page.
    c.new_page(w, h)
    c.rect((0, 0, w, 14), stroke=None, fill=accent)
    c.text(m, h * 0.3, org, "helv", 12, color=GREY)
    c.text(
        m, h * 0.3 + 34, title, head, rng.choice((22.0, 24.0, 26.0)), color=accent, role="heading"
    )
    c.text(m, h * 0.3 + 58, f"Prepared by {person(rng)}", body, 11)
    c.text(m, h * 0.3 + 74, f"Issued {issued.strftime('%B %Y')}", body, 11)
    y = h * 0.5
    c.text(m, y, "Contents", head, 12, role="heading")
    sections = ["Summary", "Scope and method", "Findings", "Budget", "Risks", "Approval"]
    for i, s in enumerate(sections):
        y += 16
        c.text(m + 10, y, f"{i + 1}. {s}", body, 10)
    c.paragraph(m, y + 36, w - 2 * m, prose(rng, 5), body, bs)

    headings = iter(rng.sample(_HEADINGS, len(_HEADINGS)))
    budget = rng.randint(5_000_000, 900_000_000)  # cents
    for p in range(1, n_pages):
        c.new_page(w, h)
        c.text(m, m - 18, f"{title} - {org}", "helv", 7.5, color=GREY)
        c.line(m, m - 12, w - m, m - 12)
        c.text(
            w / 2, h - m + 26, f"Page {p + 1} of {n_pages}", "helv", 8, color=GREY, align="center"
        )
        y = m + 10
        # Room kept free at the bottom for the blocks this page carries.
        reserve = (
            30.0 + (vs * 6 + 40 if p == budget_page else 0.0) + (vs * 4 + 70 if p == last else 0.0)
        )
        bottom = h - m - reserve
        n_sections = 0
        while y < bottom - 6 * bs and n_sections < 4:  # at most 16 sections: headings never repeat
            n_sections += 1
            c.text(
                m,
                y,
                next(headings, "Notes"),
                head,
                rng.choice((12.0, 13.0)),
                color=accent,
                role="heading",
            )
            y += 18
            if rng.random() < 0.3 and y < bottom - 90:
                y = _indicator_table(c, rng, m, y, w - 2 * m, accent) + 10
            y = c.paragraph(m, y, w - 2 * m, prose(rng, rng.randint(4, 8)), body, bs, max_y=bottom)
            y += 12
        if p == budget_page:
            c.text(m, y, "Budget summary", head, 12, color=accent, role="heading")
            y += 20
            xr = m + 0.6 * vs * 40
            c.key_value(
                m, xr, y, "Prior-year spend:", money(budget - rng.randint(10**5, 10**7)), vs
            )
            y += vs * 1.8
            out["report_approved_budget"] = c.key_value(
                m, xr, y, "Approved budget:", money(budget), vs
            )
            y += vs * 1.8
            c.key_value(m, xr, y, "Contingency:", f"{rng.randint(3, 15)}.{rng.randint(0, 9)}%", vs)
            y += vs * 1.8 + 14
        if p == last:
            c.text(m, y, "Approval", head, 12, color=accent, role="heading")
            y += 20
            xr = m + 0.6 * vs * 40
            out["report_reference_code"] = c.key_value(
                m, xr, y, "Reference code:", code(rng, "RC", 4, 2, letters=True), vs
            )
            y += vs * 1.8
            approved = issued + dt.timedelta(days=rng.randint(3, 40))
            out["report_approval_date"] = c.key_value(
                m, xr, y, "Approval date:", approved.strftime(fmt), vs
            )
            y += vs * 1.8
            c.text(
                m,
                y,
                f"Approved by {person(rng)}, {rng.choice(('Director', 'CFO', 'COO'))}",
                body,
                bs,
            )
            y += 30
        if p == filing_page:
            sp = small_size(rng)
            yf = h - m - sp * 2.0
            c.line(m, yf - sp * 1.8, m + 120, yf - sp * 1.8, color=GREY, width=0.4)
            filing = code(rng, "FC", 3, 3, letters=True)
            out["report_filing_code"] = c.key_value(
                m, m + 0.6 * sp * (14 + len(filing)), yf, "Filing code:", filing, sp
            )
            c.text(
                m,
                yf + sp * 1.4,
                "Retain this report for seven years after approval.",
                "helv",
                sp,
                color=GREY,
                role="small",
            )
    return out
