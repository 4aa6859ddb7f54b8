"""The table layout: a quarterly expense table with a totals row, a bar chart, footnotes."""

from __future__ import annotations

import random

from egr.synth.canvas import (
    GREY,
    INK,
    PAGE_SIZES,
    PALETTE,
    WHITE,
    Canvas,
    TextSpan,
    text_width,
    tint,
)
from egr.synth.content import EXPENSES, code, company, small_size


def draw_table(c: Canvas, rng: random.Random) -> dict[str, TextSpan]:
    w, h = rng.choice(PAGE_SIZES)
    if rng.random() < 0.4:
        w, h = h, w  # landscape page (no /Rotate: the displayed frame is the media box)
    c.new_page(w, h)
    m = rng.uniform(40.0, 60.0)
    accent = rng.choice(PALETTE)
    year = rng.randint(2018, 2026)
    out: dict[str, TextSpan] = {}

    c.text(m, m + 10, company(rng), "helv", 9, color=GREY)
    c.text(
        m,
        m + 32,
        rng.choice(
            ("Quarterly Operating Expenses", "Cost Centre Summary", "Departmental Spend by Quarter")
        ),
        rng.choice(("hebo", "tibo")),
        rng.choice((15.0, 16.0, 18.0)),
        role="heading",
    )
    unit = rng.choice(("USD", "USD thousands"))
    c.text(
        m,
        m + 48,
        f"Fiscal year {year} - amounts in {unit}",
        rng.choice(("helv", "tiit")),
        9,
        color=GREY,
    )

    cats = rng.sample(EXPENSES, rng.randint(6, 11))
    data = [[rng.randint(800, 99000) for _ in range(4)] for _ in cats]  # (rows, 4 quarters)
    col_tot = [sum(r[q] for r in data) for q in range(4)]
    grand = sum(col_tot)
    num = rng.choice((9.0, 9.5, 10.0))
    row_h = num * rng.choice((1.8, 2.0, 2.2))
    label_w = max(text_width(s, "helv", num) for s in cats) + 24
    col_w = (w - 2 * m - label_w) / 5
    rights = [m + label_w + (i + 1) * col_w - 6 for i in range(5)]

    y = m + 70
    c.rect((m, y, w - m, y + row_h), stroke=None, fill=accent)
    c.text(m + 6, y + row_h * 0.66, "Category", "hebo", num, color=WHITE, role="heading")
    for x, head in zip(rights, ("Q1", "Q2", "Q3", "Q4", "Total"), strict=True):
        c.text(x, y + row_h * 0.66, head, "hebo", num, color=WHITE, align="right", role="heading")
    y += row_h
    zebra = rng.random() < 0.6
    for i, (cat, row) in enumerate(zip(cats, data, strict=True)):
        if zebra and i % 2:
            c.rect((m, y, w - m, y + row_h), stroke=None, fill=tint(accent, 0.92))
        base = y + row_h * 0.66
        c.text(
            m + 6, base, cat, rng.choice(("helv", "tiro")) if i == 0 else "helv", num, role="cell"
        )
        for x, v in zip(rights, [*row, sum(row)], strict=True):
            c.text(x, base, f"{v:,}", "cour", num, align="right", role="cell")
        y += row_h
        if not zebra:
            c.line(m, y, w - m, y)
    c.line(m, y, w - m, y, color=INK, width=1.0)
    base = y + row_h * 0.66
    c.text(m + 6, base, "Total", "hebo", num, role="label")
    tot_spans = [
        c.text(x, base, f"{v:,}", "cobo", num, align="right", role="value")
        for x, v in zip(rights, [*col_tot, grand], strict=True)
    ]
    out["table_q1_total"], out["table_q3_total"] = tot_spans[0], tot_spans[2]
    out["table_grand_total"] = tot_spans[4]
    y += row_h
    c.line(m, y, w - m, y, color=INK, width=1.0)

    # A bar chart of the quarterly totals (shapes only, no numbers) when there is room.
    chart_h = min(120.0, h - m - y - 110)
    if chart_h > 50:
        y += 30
        c.text(m, y, "Spend by quarter", "hebo", 9, role="heading")
        bar_w = 40.0
        for q, v in enumerate(col_tot):
            bh = chart_h * v / max(col_tot)
            x = m + 20 + q * (bar_w + 24)
            c.rect(
                (x, y + 10 + chart_h - bh, x + bar_w, y + 10 + chart_h),
                stroke=None,
                fill=tint(accent, 0.15 + 0.15 * q),
            )
            c.text(x + bar_w / 2, y + chart_h + 22, f"Q{q + 1}", "helv", 8, align="center")
        y += chart_h + 30

    # Footnotes in small print, one of them the ledger reference.
    sp = small_size(rng)
    y = max(y + 24, h - m - 5 * sp * 1.5)
    c.text(m, y, "Notes", "hebo", sp + 1, role="heading")
    c.text(
        m,
        y + sp * 1.5,
        "1. Figures are unaudited and may be restated.",
        "helv",
        sp,
        color=GREY,
        role="small",
    )
    c.text(
        m,
        y + sp * 3.0,
        "2. Totals may not add up due to rounding of source values.",
        "helv",
        sp,
        color=GREY,
        role="small",
    )
    ref = code(rng, "LX", 4, 1, letters=True)
    out["table_ledger_reference"] = c.key_value(
        m, m + 0.6 * sp * (22 + len(ref)), y + sp * 4.5, "3. Ledger reference:", ref, sp
    )
    return out
