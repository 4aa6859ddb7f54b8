"""The claim-form layout: boxed fields in sections, checkboxes, an office-use box."""

from __future__ import annotations

import random

from egr.synth.canvas import GREY, INK, PAGE_SIZES, PALETTE, WHITE, Canvas, TextSpan
from egr.synth.content import (
    CITIES,
    DATE_FORMATS,
    NAME_A,
    address,
    code,
    date,
    money,
    person,
    prose,
    small_size,
    value_size,
)


def _boxed_field(
    c: Canvas,
    x0: float,
    y0: float,
    x1: float,
    h: float,
    label: str,
    value: str,
    size: float,
    font: str = "cour",
) -> TextSpan:
    """A form cell: small Helvetica caption at the top, Courier value on the bottom line."""
    c.rect((x0, y0, x1, y0 + h), stroke=GREY, width=0.5)
    c.text(x0 + 3, y0 + 8, label, "helv", 6.5, color=GREY, role="label")
    return c.text(x0 + 4, y0 + h - 5, value, font, size, role="value")


def draw_form(c: Canvas, rng: random.Random) -> dict[str, TextSpan]:
    w, h = rng.choice(PAGE_SIZES)
    c.new_page(w, h)
    m = rng.uniform(40.0, 54.0)
    accent = rng.choice(PALETTE)
    fmt = rng.choice(DATE_FORMATS)
    vs = value_size(rng)
    out: dict[str, TextSpan] = {}
    insurer = f"{rng.choice(NAME_A)} {rng.choice(('Mutual', 'Insurance', 'Assurance'))}"

    c.text(m, m + 14, insurer, rng.choice(("hebo", "tibo")), 14, color=accent, role="heading")
    title = rng.choice(("PROPERTY CLAIM FORM", "LOSS NOTICE", "CLAIM FOR DAMAGES"))
    c.text(m, m + 36, title, "hebo", rng.choice((16.0, 18.0)), role="heading")
    out["form_claim_number"] = c.key_value(
        w - m - 0.6 * vs * 24, w - m, m + 14, "Claim No.", code(rng, "CLM", 7), vs
    )
    y = c.paragraph(
        m,
        m + 54,
        w - 2 * m,
        "Complete all sections in block capitals. Incomplete "
        "forms delay the handling of your claim. Attach receipts and photographs "
        "where available.",
        rng.choice(("tiit", "heit")),
        8.0,
        color=GREY,
    )

    def section(y: float, text: str) -> float:
        c.rect((m, y, w - m, y + 15), stroke=None, fill=accent)
        c.text(m + 5, y + 10.5, text, "hebo", 8.5, color=WHITE, role="heading")
        return y + 19

    fh = vs + 17  # field box height
    gap = 6.0
    third = (w - 2 * m - 2 * gap) / 3
    half = (w - 2 * m - gap) / 2
    born = date(rng, 1940, 2000)
    lost = date(rng, 2020, 2026)

    y = section(y + 4, "SECTION A - POLICYHOLDER")
    _boxed_field(c, m, y, m + half, fh, "Full name", person(rng).upper(), vs)
    _boxed_field(c, m + half + gap, y, w - m, fh, "Date of birth", born.strftime(fmt), vs)
    y += fh + gap
    out["form_policy_number"] = _boxed_field(
        c, m, y, m + half, fh, "Policy number", code(rng, "POL", 2, 6), vs
    )
    phone = f"+1-{rng.randint(200, 989)}-{rng.randint(200, 989)}-{rng.randint(1000, 9999)}"
    _boxed_field(c, m + half + gap, y, w - m, fh, "Phone", phone, vs)
    y += fh + gap
    street, city = address(rng)
    _boxed_field(c, m, y, w - m, fh, "Address", f"{street}, {city}".upper(), vs)
    y += fh + 12

    y = section(y, "SECTION B - INCIDENT")
    out["form_date_of_loss"] = _boxed_field(
        c, m, y, m + third, fh, "Date of loss", lost.strftime(fmt), vs
    )
    _boxed_field(
        c,
        m + third + gap,
        y,
        m + 2 * third + gap,
        fh,
        "Time",
        f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}",
        vs,
    )
    _boxed_field(c, m + 2 * (third + gap), y, w - m, fh, "Location", rng.choice(CITIES).upper(), vs)
    y += fh + gap
    desc_h = 58.0
    c.rect((m, y, w - m, y + desc_h), stroke=GREY, width=0.5)
    c.text(m + 3, y + 8, "Description of the incident", "helv", 6.5, color=GREY, role="label")
    c.paragraph(m + 5, y + 20, w - 2 * m - 10, prose(rng, 2), rng.choice(("tiro", "helv")), 9.0)
    y += desc_h + 12

    y = section(y, "SECTION C - CLAIM")
    c.text(m, y + 9, "Type of loss:", "helv", 8.5, role="label")
    x = m + 70
    chosen = rng.randrange(4)
    for i, kind in enumerate(("Water", "Fire", "Theft", "Other")):
        c.rect((x, y + 1, x + 9, y + 10), stroke=INK, width=0.6)
        if i == chosen:
            c.line(x + 1.5, y + 2.5, x + 7.5, y + 8.5, color=INK, width=1.0)
            c.line(x + 1.5, y + 8.5, x + 7.5, y + 2.5, color=INK, width=1.0)
        c.text(x + 13, y + 9, kind, "helv", 8.5)
        x += 62
    y += 18
    claimed = rng.randint(20000, 9_000_000)
    out["form_claimed_amount"] = _boxed_field(
        c, m, y, m + half, fh, "Amount claimed", money(claimed), vs
    )
    _boxed_field(
        c,
        m + half + gap,
        y,
        w - m,
        fh,
        "Deductible",
        money(rng.choice((25000, 50000, 100000))),
        vs,
    )
    y += fh + 12

    y = section(y, "SECTION D - PAYMENT DETAILS")
    _boxed_field(c, m, y, m + half, fh, "Account holder", person(rng).upper(), vs)
    _boxed_field(c, m + half + gap, y, w - m, fh, "Bank", rng.choice(NAME_A).upper() + " BANK", vs)
    y += fh + gap
    _boxed_field(c, m, y, m + half, fh, "Account number", str(rng.randint(10**9, 10**10 - 1)), vs)
    _boxed_field(
        c, m + half + gap, y, w - m, fh, "Routing number", str(rng.randint(10**8, 10**9 - 1)), vs
    )
    y += fh + 14

    y = (
        c.paragraph(
            m,
            y,
            w - 2 * m,
            "I declare that the information given is true and complete "
            "to the best of my knowledge and that I have not withheld any material fact.",
            "tiro",
            8.0,
        )
        + 18
    )
    c.line(m, y, m + 200, y, color=INK)
    c.text(m, y + 9, "Signature of policyholder", "helv", 7, color=GREY)
    c.line(m + 260, y, m + 380, y, color=INK)
    c.text(m + 260, y + 9, "Date", "helv", 7, color=GREY)

    # Office-use box with the small-print agent code.
    sp = small_size(rng)
    by = max(y + 26, h - m - 70)
    c.rect((m, by, m + 250, by + 48), stroke=GREY, width=0.6, dashes="[2 2] 0")
    c.text(m + 5, by + 10, "FOR OFFICE USE ONLY", "hebo", 7, color=GREY, role="heading")
    c.key_value(
        m + 5,
        m + 5 + 0.6 * sp * 24,
        by + 10 + sp * 1.6,
        "Received:",
        date(rng, 2020, 2026).strftime(fmt),
        sp,
    )
    out["form_agent_code"] = c.key_value(
        m + 5, m + 5 + 0.6 * sp * 24, by + 10 + sp * 3.2, "Agent code:", code(rng, "AG", 4), sp
    )
    c.text(
        w - m,
        h - m + 10,
        f"Form {rng.choice(('CL', 'PC', 'LN'))}{rng.randint(1, 9)} "
        f"rev. {rng.randint(1, 12):02d}/{rng.randint(2015, 2023)}",
        "helv",
        6,
        color=GREY,
        align="right",
        role="small",
    )
    return out
