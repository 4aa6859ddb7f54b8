"""Drawing surface of the synthetic document generator (:mod:`egr.synth`).

A :class:`Canvas` draws vector text and rules with PyMuPDF, one Shape per page, and records every
text run it draws as a :class:`TextSpan` whose box is exactly the box PyMuPDF's text extraction
reports for that run (advance width x font ascender..descender).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import pymupdf

MONOSPACE_FONTS = frozenset({"cour", "cobo", "coit", "cobi"})
_PDF_DATE = "D:20240101000000Z"  # fixed metadata date: byte-identical output per seed

Rect4 = tuple[float, float, float, float]
Color = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class TextSpan:
    """One text run as drawn: a single ``insert_text`` call on one line.

    ``box_pt`` is the run's glyph box (font ascender to descender, origin advance to end), in the
    displayed page frame, origin top-left, in points. It equals the box PyMuPDF's text extraction
    reports for the same run.
    """

    page: int
    text: str
    box_pt: Rect4
    font: str  # PyMuPDF base-14 font name: cour, cobo, helv, hebo, tiro, tibo, ...
    size_pt: float
    role: str  # "value" | "label" | "heading" | "body" | "cell" | "small" | "decor"

    @property
    def monospace(self) -> bool:
        return self.font in MONOSPACE_FONTS

    def char_boxes_pt(self) -> tuple[Rect4, ...]:
        """Per-character cells of a monospace run (pitch = 0.6 * size), one per character.

        Raises:
            ValueError: if the run is not in a monospace font.
        """
        if not self.monospace:
            raise ValueError(f"span {self.text!r} is in {self.font}, not a monospace font")
        x0, y0, _, y1 = self.box_pt
        pitch = 0.6 * self.size_pt
        return tuple((x0 + i * pitch, y0, x0 + (i + 1) * pitch, y1) for i in range(len(self.text)))


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

INK = (0.08, 0.08, 0.1)
GREY = (0.38, 0.38, 0.42)
RULE = (0.72, 0.72, 0.75)
WHITE = (1.0, 1.0, 1.0)
PALETTE = (
    (0.1, 0.2, 0.45),
    (0.0, 0.38, 0.4),
    (0.5, 0.1, 0.15),
    (0.12, 0.35, 0.15),
    (0.3, 0.3, 0.3),
)
PAGE_SIZES = ((612.0, 792.0), (595.0, 842.0))  # US letter, A4


@cache
def font_metrics(name: str) -> pymupdf.Font:
    return pymupdf.Font(name)


@cache
def _advance(font: str, char: str) -> float:
    """Advance of one character at 1 pt (base-14 fonts have no kerning in PyMuPDF's metrics)."""
    return float(font_metrics(font).text_length(char, fontsize=1.0))


def text_width(text: str, font: str, size: float) -> float:
    """Advance width of ``text`` in points (cached per character: ``Font.text_length`` is slow)."""
    return size * sum(_advance(font, ch) for ch in text)


def tint(color: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
    """Mix ``color`` with white (amount 1 = white)."""
    return tuple(c + (1.0 - c) * amount for c in color)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Jitter:
    """A per-document layout distortion, so that no fixed page position answers a question.

    Layouts draw in their own frame; the canvas maps a layout point ``(x, y)`` to
    ``(dx + scale * (x + xgap(x)), dy + scale * (y + ygap(y)))``, where ``ygap(y)`` is the sum of
    the extra vertical gaps opened above ``y`` (``ycuts`` are layout y values, ``ygaps`` their
    heights) and ``xgap`` the same across. A text run moves with its anchor and keeps its width,
    so gaps only ever pull things apart. Font sizes scale with ``scale``.
    """

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    xcuts: tuple[float, ...] = ()
    xgaps: tuple[float, ...] = ()
    ycuts: tuple[float, ...] = ()
    ygaps: tuple[float, ...] = ()
    #: font of Courier labels (``cour`` or ``cobo``), per document
    label_font: str = "cour"
    #: the page's size in points (the layout's frame grown by up to 30% / 40%)
    page_w: float = 0.0
    page_h: float = 0.0

    @classmethod
    def draw(cls, rng: Any, width: float, height: float) -> Jitter:
        """A random jitter for a layout drawn in a ``width`` x ``height`` frame.

        The layout is scaled by 0.94-1.06, the page grows by 0-30% in width and 0-40% in height,
        gaps open between blocks (1-2 across, 1-4 down), and the result lands anywhere on the page.
        """
        scale = rng.uniform(0.94, 1.06)
        page_w = width * max(scale, 1.0) * rng.uniform(1.0, 1.3)
        page_h = height * max(scale, 1.0) * rng.uniform(1.0, 1.4)
        xcuts, xgaps, used_w = _gaps(rng, width, page_w / scale - width, rng.randint(1, 2))
        ycuts, ygaps, used_h = _gaps(rng, height, page_h / scale - height, rng.randint(1, 4))
        return cls(
            scale=scale,
            dx=rng.uniform(0.0, max(page_w - scale * (width + used_w), 0.0)),
            dy=rng.uniform(0.0, max(page_h - scale * (height + used_h), 0.0)),
            xcuts=xcuts,
            xgaps=xgaps,
            ycuts=ycuts,
            ygaps=ygaps,
            label_font=rng.choice(("cour", "cour", "cobo")),
            page_w=round(page_w, 1),
            page_h=round(page_h, 1),
        )

    def x(self, x: float) -> float:
        return self.dx + self.scale * (x + _opened(x, self.xcuts, self.xgaps))

    def y(self, y: float) -> float:
        return self.dy + self.scale * (y + _opened(y, self.ycuts, self.ygaps))


def _gaps(
    rng: Any, side: float, room: float, n: int
) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    """``n`` cut positions in ``(0.08, 0.9) * side`` and gap sizes that share part of ``room``."""
    cuts = tuple(sorted(rng.uniform(0.08, 0.9) * side for _ in range(n)))
    share = [rng.random() + 1e-3 for _ in range(n)]
    total = rng.uniform(0.1, 0.9) * max(room, 0.0)
    return cuts, tuple(total * v / sum(share) for v in share), total


def _opened(v: float, cuts: tuple[float, ...], gaps: tuple[float, ...]) -> float:
    return sum(g for c, g in zip(cuts, gaps, strict=True) if c < v)


NO_JITTER = Jitter()


class Canvas:
    """Draws pages with one Shape per page and records every text run as a TextSpan.

    With a :class:`Jitter` per page (``jitter_fn(width, height)``), every coordinate and font
    size a layout passes is mapped through it; recorded spans are in page coordinates.
    """

    def __init__(self, jitter_fn: Any = None, order_rng: Any = None) -> None:
        self._jitter_fn = jitter_fn
        self._order_rng = order_rng
        self.jitter = NO_JITTER
        self.doc = pymupdf.open()
        self.spans: list[TextSpan] = []
        self.sizes: list[tuple[float, float]] = []
        self._shape: Any = None
        self._page: Any = None
        self._page_fonts: set[str] = set()
        self.w = self.h = 0.0

    def new_page(self, width: float, height: float) -> None:
        """A new page for a layout drawn in a ``width`` x ``height`` frame (the page's size,
        unless jittered: then the page may be larger and the frame is placed on it)."""
        self._commit()
        self.jitter = self._jitter_fn(width, height) if self._jitter_fn else NO_JITTER
        pw, ph = (self.jitter.page_w, self.jitter.page_h) if self._jitter_fn else (width, height)
        self._page = self.doc.new_page(width=pw, height=ph)
        self._page_fonts = set()
        self._shape = self._page.new_shape()
        self.w, self.h = pw, ph
        self.sizes.append((pw, ph))

    def arrange(self, items: list[Any]) -> list[Any]:
        """``items`` (blocks or fields a layout may draw in any order), shuffled when jittered."""
        if self._order_rng is None:
            return items
        out = list(items)
        self._order_rng.shuffle(out)
        return out

    @property
    def page_index(self) -> int:
        return len(self.sizes) - 1

    def text(
        self,
        x: float,
        y: float,
        s: str,
        font: str = "helv",
        size: float = 10.0,
        *,
        color: tuple[float, float, float] = INK,
        align: str = "left",
        role: str = "body",
    ) -> TextSpan:
        """Draw ``s`` with its baseline at ``y``; ``x`` is the left/right/centre per ``align``."""
        j = self.jitter
        if j is not NO_JITTER:
            x, y, size = j.x(x), j.y(y), size * j.scale
        width = text_width(s, font, size)
        if align == "right":
            x -= width
        elif align == "center":
            x -= width / 2
        self._insert_text(x, y, s, font, size, color)
        f = font_metrics(font)
        box = (x, y - f.ascender * size, x + width, y - f.descender * size)
        span = TextSpan(self.page_index, s, box, font, float(size), role)
        self.spans.append(span)
        return span

    def _insert_text(
        self, x: float, y: float, s: str, font: str, size: float, color: Color
    ) -> None:
        """What ``Shape.insert_text`` writes for one ASCII line in a base-14 font, without its
        per-call font lookup (which made text insertion the generator's main cost)."""
        if not s.isascii() or "\n" in s:
            self._shape.insert_text((x, y), s, fontname=font, fontsize=size, color=color)
            return
        if font not in self._page_fonts:
            self._page.insert_font(fontname=font)
            self._page_fonts.add(font)
        rgb = " ".join(f"{v:.4g}" for v in color)
        self._shape.text_cont += (
            f"\nq\nBT\n1 0 0 1 {x:.4f} {self.h - y:.4f} Tm\n/{font} {size:g} Tf "
            f"{rgb} RG {rgb} rg [<{s.encode('ascii').hex()}>]TJ\nET\nQ\n"
        )

    def rect(
        self,
        r: Rect4,
        *,
        stroke: tuple[float, float, float] | None = RULE,
        fill: tuple[float, float, float] | None = None,
        width: float = 0.6,
        dashes: str | None = None,
    ) -> None:
        j = self.jitter
        rect = (j.x(r[0]), j.y(r[1]), j.x(r[2]), j.y(r[3]))
        self._shape.draw_rect(pymupdf.Rect(*rect))
        self._shape.finish(color=stroke, fill=fill, width=width * j.scale, dashes=dashes)

    def line(
        self, x0: float, y0: float, x1: float, y1: float, *, color=RULE, width: float = 0.6
    ) -> None:
        j = self.jitter
        self._shape.draw_line((j.x(x0), j.y(y0)), (j.x(x1), j.y(y1)))
        self._shape.finish(color=color, width=width * j.scale)

    def paragraph(
        self,
        x: float,
        y: float,
        max_width: float,
        text: str,
        font: str,
        size: float,
        *,
        leading: float = 1.35,
        color: tuple[float, float, float] = INK,
        role: str = "body",
        max_y: float = float("inf"),
    ) -> float:
        """Word-wrap ``text`` from baseline ``y``; return the baseline after the last line.

        Lines whose baseline would pass ``max_y`` are dropped (the paragraph is cut short).
        """
        space = text_width(" ", font, size)
        lines: list[list[str]] = [[]]
        used = 0.0  # width of the current line so far
        for word in text.split():
            ww = text_width(word, font, size)
            if lines[-1] and used + space + ww > max_width:
                lines.append([])
                used = 0.0
            used += space + ww if lines[-1] else ww
            lines[-1].append(word)
        for line in lines:
            if not line or y > max_y:
                break
            self.text(x, y, " ".join(line), font, size, color=color, role=role)
            y += size * leading
        return y

    def key_value(
        self,
        x_label: float,
        x_value_right: float,
        y: float,
        label: str,
        value: str,
        size: float,
        *,
        value_font: str = "cour",
        label_font: str = "cour",
    ) -> TextSpan:
        """A Courier label at the value size, value right-aligned; returns the value span."""
        if label_font == "cour":
            label_font = self.jitter.label_font
        self.text(x_label, y, label, label_font, size, role="label")
        return self.text(x_value_right, y, value, value_font, size, align="right", role="value")

    def _commit(self) -> None:
        if self._shape is not None:
            self._shape.commit()
            self._shape = None

    def finish(self, title: str) -> bytes:
        self._commit()
        self.doc.set_metadata(
            {
                "title": title,
                "author": "egr synth",
                "creator": "egr synth",
                "producer": "egr synth",
                "creationDate": _PDF_DATE,
                "modDate": _PDF_DATE,
            }
        )
        data: bytes = self.doc.tobytes(garbage=3, deflate=True, no_new_id=True)
        self.doc.close()
        return data
