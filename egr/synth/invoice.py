"""The invoice layout: letterhead, meta block, line items, totals, small-print footer."""

from __future__ import annotations

import datetime as dt
import random

from egr.synth.canvas import (
    GREY,
    INK,
    PAGE_SIZES,
    PALETTE,
    WHITE,
    Canvas,
    Color,
    TextSpan,
    tint,
)
from egr.synth.content import (
    DATE_FORMATS,
    ITEMS,
    address,
    code,
    company,
    date,
    money,
    person,
    small_size,
    value_size,
)


def _letterhead(c: Canvas, rng: random.Random, m: float, accent: Color, name: str) -> None:
    """Logo square with initials, company name and address, top-left."""
    side = rng.choice((30.0, 34.0, 38.0))
    c.rect((m, m, m + side, m + side), stroke=None, fill=accent)
    initials = "".join(w[0] for w in name.split()[:2])
    c.text(
        m + side / 2,
        m + side * 0.66,
        initials,
        "hebo",
        side * 0.4,
        color=WHITE,
        align="center",
        role="decor",
    )
    head_font = rng.choice(("hebo", "tibo"))
    c.text(m + side + 10, m + 13, name, head_font, rng.choice((14.0, 15.0, 16.0)), role="heading")
    street, city = address(rng)
    c.text(m + side + 10, m + 25, street, "helv", 8, color=GREY)
    c.text(m + side + 10, m + 35, city, "helv", 8, color=GREY)


def draw_invoice(c: Canvas, rng: random.Random) -> dict[str, TextSpan]:
    w, h = rng.choice(PAGE_SIZES)
    c.new_page(w, h)
    m = rng.uniform(44.0, 60.0)
    accent = rng.choice(PALETTE)
    body = rng.choice(("helv", "tiro"))
    fmt = rng.choice(DATE_FORMATS)
    out: dict[str, TextSpan] = {}

    _letterhead(c, rng, m, accent, company(rng))
    c.text(
        w - m,
        m + 22,
        "INVOICE",
        "hebo",
        rng.choice((22.0, 24.0, 26.0)),
        color=accent,
        align="right",
        role="heading",
    )

    # Meta block: Courier labels at the value size, values right-aligned.
    vs = value_size(rng)
    issued = date(rng)
    due = issued + dt.timedelta(days=rng.choice((14, 30, 45, 60)))
    meta = [
        ("Invoice No.", code(rng, "INV", rng.choice((5, 6))), "invoice_number"),
        ("Invoice date", issued.strftime(fmt), "invoice_date"),
        ("Due date", due.strftime(fmt), "invoice_due_date"),
        ("Customer ID", code(rng, "C", 5), ""),
    ]
    if rng.random() < 0.5:
        meta.append(("PO number", code(rng, "PO", 4, 2, letters=True), ""))
    x_label = w - m - 25 * 0.6 * vs
    y = m + 48
    for label, value, qid in c.arrange(meta):
        span = c.key_value(x_label, w - m, y, label, value, vs)
        if qid:
            out[qid] = span
        y += vs * 1.7

    # Bill-to block.
    y_bill = max(y, m + 70) + 14
    c.text(m, y_bill, "BILL TO", "hebo", 8, color=accent, role="heading")
    street, city = address(rng)
    for i, line in enumerate((person(rng), company(rng), street, city)):
        c.text(m, y_bill + 14 + i * 12, line, body, 9.5 if i < 2 else 9.0)

    # Line items.
    cols = (m + 6, w - m - 190, w - m - 100, w - m - 6)  # desc (left), qty, unit, amount (right)
    y = y_bill + 70
    row_h = rng.choice((17.0, 18.0, 20.0))
    c.rect((m, y, w - m, y + row_h), stroke=None, fill=tint(accent, 0.85))
    for x, label, al in zip(
        cols,
        ("Description", "Qty", "Unit price", "Amount"),
        ("left", "right", "right", "right"),
        strict=True,
    ):
        c.text(x, y + row_h * 0.68, label, "hebo", 8.5, align=al, role="heading")
    y += row_h
    subtotal = 0
    cell = rng.choice((8.5, 9.0))
    for _ in range(rng.randint(3, 8)):
        qty = rng.randint(1, 24)
        unit = rng.randint(500, 250000)
        amount = qty * unit
        subtotal += amount
        base = y + row_h * 0.68
        c.text(cols[0], base, rng.choice(ITEMS), body, 9.0, role="cell")
        c.text(cols[1], base, str(qty), "cour", cell, align="right", role="cell")
        c.text(cols[2], base, money(unit), "cour", cell, align="right", role="cell")
        c.text(cols[3], base, money(amount), "cour", cell, align="right", role="cell")
        y += row_h
        c.line(m, y, w - m, y)

    # Totals.
    rate = rng.choice((500, 625, 725, 825, 1000, 1900, 2000))  # basis points
    tax = round(subtotal * rate / 10000)
    shipping = rng.choice((0, 0, rng.randint(1000, 9000)))
    total = subtotal + tax + shipping
    y += 22
    xl = w - m - 190
    c.key_value(xl, w - m, y, "Subtotal", money(subtotal), vs)
    y += vs * 1.7
    c.key_value(xl, w - m, y, f"Tax {rate / 100:g}%", money(tax), vs)
    if shipping:
        y += vs * 1.7
        c.key_value(xl, w - m, y, "Shipping", money(shipping), vs)
    ts = rng.choice((11.0, 12.0))
    c.line(xl, y + 8, w - m, y + 8, color=INK, width=0.8)
    y += ts * 2.0
    c.rect((xl - 6, y - ts * 1.25, w - m + 4, y + ts * 0.6), stroke=None, fill=tint(accent, 0.88))
    label = rng.choice(("Total due", "Total", "Amount due"))
    out["invoice_total"] = c.key_value(
        xl, w - m, y, label, money(total), ts, value_font="cobo", label_font="cobo"
    )

    # Notes and small print footer.
    y += 40
    c.text(m, y, "Thank you for your business.", rng.choice(("tiit", "heit")), 10)
    c.paragraph(
        m,
        y + 16,
        w * 0.55,
        f"Payment terms: net {(due - issued).days} days. "
        "Late payments may incur interest as permitted by law.",
        body,
        8.5,
        color=GREY,
    )
    sp = small_size(rng)
    yf = h - m - 3 * sp * 1.4
    c.line(m, yf - sp * 2, w - m, yf - sp * 2)
    c.paragraph(
        m,
        yf,
        w - 2 * m,
        "Please quote the payment reference with every transfer. "
        "Goods remain our property until paid in full. Disputes must be raised within "
        "10 days of receipt.",
        "helv",
        sp,
        color=GREY,
        role="small",
    )
    y_ref = yf + 2 * sp * 1.35
    ref = code(rng, "RF", 2, 4, 4)
    out["invoice_payment_reference"] = c.key_value(
        m, m + 0.6 * sp * (20 + len(ref)), y_ref, "Payment reference:", ref, sp
    )
    return out
