"""The reader's learning curve as a picture, from ``train.log`` (no plotting library needed).

``plot_log(OUT/train.log, OUT/curve.png)`` draws the running training loss (left axis, log scale)
and the held-out evaluations (right axis, 0-100%): exact match and character accuracy of
transcription and of crop question answering. ``egr train-reader`` redraws it after every
evaluation, so a long run can be watched as a picture.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_STEP = re.compile(r"step (\d+) task \S+ loss [\d.]+ \(mean ([\d.]+)\)")
_EVAL = re.compile(r"eval step (\d+) (.*)")
_METRIC = re.compile(r"(\w+)=([\d.]+)")
COLORS = {
    "transcribe": (31, 119, 180),
    "transcribe_chars": (158, 202, 225),
    "crop_qa": (214, 39, 40),
    "crop_qa_chars": (252, 146, 114),
    "crop_qa_egg": (44, 160, 44),
    "crop_qa_egg_chars": (161, 217, 155),
}


def parse_log(
    path: str | Path,
) -> tuple[list[tuple[int, float]], dict[str, list[tuple[int, float]]]]:
    """``(loss points, {metric: points})`` of a ``train.log`` (later lines win on a resumed run)."""
    loss: dict[int, float] = {}
    evals: dict[str, dict[int, float]] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if m := _EVAL.search(line):
            step = int(m.group(1))
            for name, value in _METRIC.findall(m.group(2)):
                evals.setdefault(name, {})[step] = float(value)
        elif m := _STEP.search(line):
            loss[int(m.group(1))] = float(m.group(2))
    return sorted(loss.items()), {k: sorted(v.items()) for k, v in evals.items()}


def plot_log(log: str | Path, out: str | Path, title: str = "reference reader") -> Path:
    """Draw the curve of ``log`` into the PNG ``out``; returns ``out``."""
    loss, evals = parse_log(log)
    w, h, left, right, top, bottom = 900, 460, 70, 70, 40, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    pw, ph = w - left - right, h - top - bottom
    last = max([s for s, _ in loss] + [s for pts in evals.values() for s, _ in pts] + [1])
    lo = min((v for _, v in loss if v > 0), default=0.01)
    hi = max((v for _, v in loss), default=1.0)
    lo, hi = math.log10(max(lo, 1e-3)), math.log10(max(hi, lo * 10, 1e-2))

    def x(step: int) -> float:
        return left + pw * step / last

    def y_loss(v: float) -> float:
        return top + ph * (1 - (math.log10(max(v, 1e-3)) - lo) / max(hi - lo, 1e-6))

    def y_pct(v: float) -> float:
        return top + ph * (1 - v)

    d.rectangle((left, top, left + pw, top + ph), outline=(180, 180, 180))
    for f in (0.25, 0.5, 0.75, 1.0):
        d.line((left, y_pct(f), left + pw, y_pct(f)), fill=(235, 235, 235))
        d.text((left + pw + 6, y_pct(f) - 6), f"{f:.0%}", fill=(90, 90, 90), font=font)
    for k in range(6):
        s = round(last * k / 5)
        d.text((x(s) - 10, top + ph + 6), str(s), fill=(90, 90, 90), font=font)
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= e <= hi:
            d.text((8, y_loss(10**e) - 6), f"1e{e}", fill=(90, 90, 90), font=font)
    if len(loss) > 1:
        d.line([(x(s), y_loss(v)) for s, v in loss], fill=(60, 60, 60), width=1)
    for name, pts in evals.items():
        color = COLORS.get(name, (44, 160, 44))
        if len(pts) > 1:
            d.line([(x(s), y_pct(v)) for s, v in pts], fill=color, width=2)
        for s, v in pts:
            d.ellipse((x(s) - 2, y_pct(v) - 2, x(s) + 2, y_pct(v) + 2), fill=color)
    d.text((left, 12), f"{title}: training loss (grey, log) and held-out accuracy", fill="black")
    lx = left + 10
    for name in evals:
        color = COLORS.get(name, (44, 160, 44))
        d.rectangle((lx, top + 8, lx + 12, top + 18), fill=color)
        d.text((lx + 16, top + 6), name.replace("_", " "), fill="black", font=font)
        lx += 24 + 7 * len(name)
    d.text((left + pw / 2 - 20, h - 18), "step", fill=(90, 90, 90), font=font)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(out)
    return out
