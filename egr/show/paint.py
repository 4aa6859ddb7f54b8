"""Drawing the picture: the page with the relevance heatmap (an inferno-like ramp computed with
NumPy), the numbered evidence boxes (crop thick, region thin), the crops beside it, and the
question, answer, entropies and evidence text.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from egr.show.data import EvidenceItem, GridItem, ShowData, log
from egr_core.types import Box

#: Outline colours of evidence boxes by rank (1, 2, 3, ...; cycles). None occurs in the heatmap.
BOX_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 170, 255),
    (40, 200, 70),
    (230, 0, 200),
    (255, 140, 0),
    (120, 90, 255),
)
BOX_WIDTH = 3
PAGE_HEIGHT_PX = 1000
SIDE_WIDTH = 470
MARGIN = 24
INK = (30, 30, 36)
MUTED = (105, 105, 115)

# An inferno-like ramp: (position, RGB) anchors, interpolated linearly.
_RAMP = (
    (0.00, (20, 11, 52)),
    (0.25, (101, 21, 110)),
    (0.50, (188, 55, 84)),
    (0.75, (237, 105, 37)),
    (1.00, (250, 220, 90)),
)


@dataclass(frozen=True, slots=True)
class ShowLayout:
    """Where the page sits in the picture, to map page boxes to picture pixels."""

    page_x: int
    page_y: int
    page_w: int
    page_h: int

    def to_canvas(self, box: Box) -> tuple[int, int, int, int]:
        """Picture pixel rectangle ``(x0, y0, x1, y1)`` (inclusive) of a normalised page box."""
        return (
            self.page_x + round(box.x0 * self.page_w),
            self.page_y + round(box.y0 * self.page_h),
            self.page_x + round(box.x1 * self.page_w) - 1,
            self.page_y + round(box.y1 * self.page_h) - 1,
        )


def box_color(rank: int) -> tuple[int, int, int]:
    return BOX_COLORS[(rank - 1) % len(BOX_COLORS)]


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for path in (name, f"/usr/share/fonts/truetype/dejavu/{name}"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def colorize(v: np.ndarray) -> np.ndarray:
    """Map values in [0, 1], shape (H, W), to RGB uint8 (H, W, 3) along the heat ramp."""
    pos = np.array([p for p, _ in _RAMP])
    rgb = np.array([c for _, c in _RAMP], dtype=np.float32)  # (K, 3)
    v = np.clip(v, 0.0, 1.0)
    out = np.stack([np.interp(v, pos, rgb[:, c]) for c in range(3)], axis=-1)  # (H, W, 3)
    return out.astype(np.uint8)


def heat_overlay(page: Image.Image, grids: tuple[GridItem, ...]) -> Image.Image:
    """Blend the grids' scores (normalised by their common max) over ``page``.

    Grids are painted coarse to fine: thumbnails/global views, then page views and tiles, then
    crops, each resized (bilinear) into its box on the page.
    """
    if not grids:
        return page
    w, h = page.size
    heat = np.zeros((h, w), dtype=np.float32)  # (H, W)
    covered = np.zeros((h, w), dtype=bool)
    vmax = max(float(np.nanmax(g.values)) for g in grids)
    if not vmax > 0:
        return page
    order = sorted(
        grids, key=lambda g: (g.block > 0, g.kind not in ("thumbnail", "global"), g.span)
    )
    for g in order:
        x0, y0 = round(g.box.x0 * w), round(g.box.y0 * h)
        x1, y1 = max(x0 + 1, round(g.box.x1 * w)), max(y0 + 1, round(g.box.y1 * h))
        vals = np.nan_to_num(np.clip(g.values / vmax, 0.0, 1.0)).astype(np.float32)  # (R, C)
        patch = Image.fromarray(vals, mode="F").resize(
            (x1 - x0, y1 - y0), Image.Resampling.BILINEAR
        )
        heat[y0:y1, x0:x1] = np.asarray(patch)
        covered[y0:y1, x0:x1] = True
    # Low relevance stays transparent; the colour multiplies the page, so dark text stays dark.
    strength = np.clip((heat - 0.05) / 0.95, 0.0, 1.0) ** 0.7
    alpha = np.where(covered, 0.75 * strength, 0.0)[..., None]  # (H, W, 1)
    base = np.asarray(page.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    tint = colorize(heat).astype(np.float32) / 255.0
    out = base * (1 - alpha + alpha * tint)
    return Image.fromarray(out.round().astype(np.uint8), "RGB")


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        words, cur = para.split(), ""
        for word in words:
            trial = f"{cur} {word}".strip()
            if draw.textlength(trial, font=font) <= width or not cur:
                cur = trial
            else:
                lines.append(cur)
                cur = word
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = textwrap.shorten(
            lines[-1] + " …", width=max(8, len(lines[-1])), placeholder="…"
        )
    return lines


def _sig(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if math.isfinite(x) else str(x)


def prepare_page(
    data: ShowData, page: Image.Image | None, *, note: str | None = None, height: int | None = None
) -> Image.Image:
    """The page scaled to ``height`` (default ``PAGE_HEIGHT_PX``) with the relevance heatmap;
    ``None`` gives a blank page of the recorded aspect with ``note`` written on it."""
    aspect = (data.width_pt / data.height_pt) if data.width_pt and data.height_pt else 0.7727
    if page is not None:
        aspect = page.width / page.height
    ph = height or PAGE_HEIGHT_PX
    pw = max(1, round(ph * aspect))
    blank = page is None
    if page is None:
        page = Image.new("RGB", (pw, ph), (236, 236, 240))
    page = heat_overlay(page.convert("RGB").resize((pw, ph), Image.Resampling.LANCZOS), data.grids)
    if note and blank:
        draw, f_body = ImageDraw.Draw(page), _font(16)
        for i, line in enumerate(_wrap(draw, note, f_body, pw - 40, 6)):
            draw.text((20, 20 + 22 * i), line, font=f_body, fill=MUTED)
    return page


def draw_boxes(
    draw: ImageDraw.ImageDraw, evidence: tuple[EvidenceItem, ...], layout: ShowLayout
) -> None:
    """Outline the evidence in rank colours, each with its numbered badge: the crop the answer
    was read through (thick) and the region it was cut for (thin), or the region alone."""
    f_head = _font(17, True)
    for ev in sorted(evidence, key=lambda e: -e.rank):  # rank 1 drawn last, on top
        color = box_color(ev.rank)
        if ev.crop is not None:  # the region the crop was cut for, thin
            draw.rectangle(layout.to_canvas(ev.box), outline=color, width=1)
        x0, y0, x1, y1 = layout.to_canvas(ev.shown)  # what the model read
        draw.rectangle((x0, y0, x1, y1), outline=color, width=BOX_WIDTH)
        bw, bh = 24, 22
        by = y0 - bh if y0 - bh >= layout.page_y else y0 + BOX_WIDTH
        draw.rectangle((x0, by, x0 + bw, by + bh), fill=color)
        draw.text((x0 + bw / 2, by + bh / 2), str(ev.rank), font=f_head, fill="white", anchor="mm")


def draw_page(
    data: ShowData, page: Image.Image | None, *, note: str | None = None, height: int | None = None
) -> Image.Image:
    """The page alone as ``egr show`` draws it: heatmap and numbered evidence boxes."""
    out = prepare_page(data, page, note=note, height=height)
    draw_boxes(ImageDraw.Draw(out), data.evidence, ShowLayout(0, 0, out.width, out.height))
    return out


def render_show(
    data: ShowData, page: Image.Image | None, *, note: str | None = None
) -> tuple[Image.Image, ShowLayout]:
    """Draw the picture. ``page`` is the rendered page (any size; it is scaled to
    ``PAGE_HEIGHT_PX`` tall); ``None`` draws a blank page of the recorded aspect with ``note``."""
    page = prepare_page(data, page, note=note)
    pw, ph = page.size

    f_title, f_head, f_body, f_small = _font(22, True), _font(17, True), _font(16), _font(13)
    f_answer = _font(20, True)
    header_h = 74
    layout = ShowLayout(MARGIN, MARGIN + header_h, pw, ph)

    # Right column first, on a tall scratch canvas; its height decides the picture's.
    col = Image.new("RGB", (SIDE_WIDTH, 8000), "white")
    cd = ImageDraw.Draw(col)
    y = 0
    tw = SIDE_WIDTH - 8

    def para(text: str, font: Any, fill: tuple[int, int, int], max_lines: int, gap: int) -> None:
        nonlocal y
        for line in _wrap(cd, text, font, tw, max_lines):
            cd.text((0, y), line, font=font, fill=fill)
            y += int(font.size * 1.3) if hasattr(font, "size") else 16
        y += gap

    para("QUESTION", f_small, MUTED, 1, 2)
    para(data.question, f_head, INK, 6, 12)
    para("ANSWER", f_small, MUTED, 1, 2)
    para(data.answer if data.answer is not None else "(no answer)", f_answer, INK, 8, 8)
    status = f"status {data.status}"
    if data.stop_reason:
        status += f" · stop {data.stop_reason}"
    para(status, f_small, MUTED, 2, 0)
    para(
        f"first-token entropy {_fmt(data.entropy_before)} → {_fmt(data.entropy_after)} nats"
        f" · {data.n_rounds or 0} round(s)",
        f_small,
        MUTED,
        2,
        0,
    )
    if data.round_entropies:
        per_round = " · ".join(
            f"{'▶' if i == data.answer_round else ''}r{i} {_fmt(h)}"
            for i, h in enumerate(data.round_entropies)
        )
        para(f"entropy per round: {per_round} (▶ answered)", f_small, MUTED, 2, 0)
    if data.reads:
        kept = max(range(len(data.reads)), key=lambda i: data.reads[i][3] or float("-inf"))
        views = " · ".join(
            f"{'▶' if i == kept else ''}{scale:g}x{'' if page else ' alone'} {answer!r}"
            f" ({_fmt(lp)})"
            for i, (scale, page, answer, lp) in enumerate(data.reads)
        )
        para(f"read at: {views} (log-likelihood; ▶ kept)", f_small, MUTED, 3, 0)
    if data.error:
        para(f"error: {data.error}", f_small, (180, 30, 30), 4, 0)
    y += 14
    para(f"EVIDENCE ({len(data.evidence)})", f_small, MUTED, 1, 4)
    if not data.evidence:
        failed = data.status not in ("ok", "no_evidence")
        para(
            "none: the item failed" if failed else "no evidence region was found",
            f_body,
            MUTED,
            2,
            0,
        )
    for ev in data.evidence:
        color = box_color(ev.rank)
        cd.rectangle((0, y, 26, y + 26), fill=color)
        cd.text((13, y + 13), str(ev.rank), font=f_head, fill="white", anchor="mm")
        meta = f"score {_sig(ev.score)} · region of round {ev.round} · pt " + ", ".join(
            f"{v:.0f}" for v in (ev.crop_pt or ev.box_pt)
        )
        if ev.crop is not None:
            meta = "read through this crop · " + meta
        lines = _wrap(cd, meta, f_small, tw - 34, 2)  # beside the rank badge, never past it
        for k, line in enumerate(lines):
            cd.text((34, y + 5 + 15 * k), line, font=f_small, fill=MUTED)
        y += 32 + 15 * (len(lines) - 1)
        crop = _crop_image(ev, page, layout)
        if crop is not None:
            fit = min((tw - 4) / crop.width, 170 / crop.height, 3.0)
            size = (max(1, round(crop.width * fit)), max(1, round(crop.height * fit)))
            crop = crop.resize(size, Image.Resampling.LANCZOS)
            col.paste(crop, (2, y))
            cd.rectangle((1, y - 1, crop.width + 2, y + crop.height), outline=color, width=2)
            y += crop.height + 6
        para(f"“{ev.text}”" if ev.text else "(no text under the box)", f_body, INK, 4, 14)
    col_h = y

    legend_h = 40
    width = MARGIN + pw + MARGIN + SIDE_WIDTH + MARGIN
    height = max(MARGIN + header_h + ph + legend_h, MARGIN + header_h + col_h) + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)

    name = (data.uri or data.doc_id).rstrip("/").rsplit("/", 1)[-1]
    page_txt = f"page {data.page}" if data.page is not None else "no page"  # 0-based everywhere
    draw.text((MARGIN, MARGIN), f"{name} · {page_txt}", font=f_title, fill=INK)
    draw.text(
        (MARGIN, MARGIN + 32),
        f"doc {data.doc_id[:12]} · question {data.question_id} · run {data.run_id} · "
        f"model {data.model_id or '–'} · config {data.config_hash or '–'}",
        font=f_small,
        fill=MUTED,
    )

    canvas.paste(page, (layout.page_x, layout.page_y))
    draw.rectangle(
        (layout.page_x - 1, layout.page_y - 1, layout.page_x + pw, layout.page_y + ph),
        outline=(200, 200, 205),
    )
    draw_boxes(draw, data.evidence, layout)

    ly = layout.page_y + ph + 12
    if data.grids:
        bar = colorize(np.tile(np.linspace(0, 1, 200, dtype=np.float32), (12, 1)))  # (12, 200, 3)
        canvas.paste(Image.fromarray(bar, "RGB"), (layout.page_x, ly))
        draw.text(
            (layout.page_x + 210, ly - 2),
            f"relevance |dH/dE| of round {data.heat_round}, low → high",
            font=f_small,
            fill=MUTED,
        )
    canvas.paste(col.crop((0, 0, SIDE_WIDTH, max(col_h, 1))), (MARGIN + pw + MARGIN, layout.page_y))
    return canvas, layout


def _crop_image(ev: EvidenceItem, page: Image.Image, layout: ShowLayout) -> Image.Image | None:
    if ev.crop_png:
        try:
            return Image.open(io.BytesIO(ev.crop_png)).convert("RGB")
        except OSError:
            log.warning("evidence %d: stored crop is not a readable PNG", ev.rank)
    w, h = page.size
    b = ev.shown
    return page.crop((round(b.x0 * w), round(b.y0 * h), round(b.x1 * w), round(b.y1 * h)))
