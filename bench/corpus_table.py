"""Open and render every PDF of a folder in the sandbox; print counts per status, max RSS and time.

Usage:
    .venv/bin/python bench/corpus_table.py [FOLDER] [--pages 1] [--max-pixels 1000000]
        [--max-side 1600] [--timeout 60] [--memory-mb 1536] [--workers 2] [--passwords]
        [--per-file]

FOLDER defaults to ../shared/corpus/pdfs. ``--passwords`` uses the user passwords listed in the
folder's ../manifest.json (when there is one) for encrypted files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from egr_pipeline.sandbox import DocumentResult, RenderJob, run_jobs
from egr_pipeline.sources import list_pdfs

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "pdfs"


def _passwords(folder: Path) -> dict[str, str]:
    manifest = folder.parent / "manifest.json"
    if not manifest.is_file():
        return {}
    out = {}
    for e in json.loads(manifest.read_text())["files"]:
        pws = e.get("passwords") or {}
        pw = pws.get("user_unnormalised") or pws.get("user")
        if isinstance(pw, str) and not pw.startswith("("):
            out[Path(e["file"]).name] = pw
    return out


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        print(title)
        for r in [header, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        return
    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h in ("status", "file", "error") else "right")
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--pages", type=int, default=1, help="render the first N pages (0 = all)")
    ap.add_argument("--max-pixels", type=int, default=1_000_000)
    ap.add_argument("--max-side", type=int, default=1600)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--memory-mb", type=int, default=1536)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--passwords", action="store_true", help="use manifest passwords")
    ap.add_argument("--per-file", action="store_true", help="also print one row per file")
    args = ap.parse_args()

    files = list_pdfs(args.folder)
    if not files:
        print(f"no PDFs under {args.folder}")
        return 1
    pws = _passwords(Path(args.folder)) if args.passwords else {}
    jobs = [
        RenderJob(
            f,
            password=pws.get(Path(f).name),
            first_pages=args.pages or None,
            max_pixels=args.max_pixels,
            max_side=args.max_side,
            image_format="png",
        )
        for f in files
    ]
    t0 = time.perf_counter()
    results = run_jobs(jobs, workers=args.workers, timeout_s=args.timeout, memory_mb=args.memory_mb)
    wall = time.perf_counter() - t0

    def rss(r: DocumentResult) -> float:
        return r.max_rss_mb or 0.0

    if args.per_file:
        rows = [
            [
                Path(r.source).name,
                r.status,
                str(r.n_pages if r.n_pages is not None else "-"),
                str(sum(p.status == "ok" for p in r.pages)),
                f"{r.elapsed_s:.2f}",
                f"{rss(r):.0f}",
                (r.error or "")[-70:],
            ]
            for r in results
        ]
        _table("per file", ["file", "status", "pages", "rendered", "s", "RSS MB", "error"], rows)

    counts = Counter(r.status for r in results)
    rows = []
    for status, n in counts.most_common():
        group = [r for r in results if r.status == status]
        worst_t = max(group, key=lambda r: r.elapsed_s)
        worst_m = max(group, key=rss)
        rows.append(
            [
                status,
                str(n),
                f"{worst_t.elapsed_s:.2f} ({Path(worst_t.source).name[:40]})",
                f"{rss(worst_m):.0f} ({Path(worst_m.source).name[:40]})",
            ]
        )
    slowest = max(results, key=lambda r: r.elapsed_s)
    fattest = max(results, key=rss)
    rows.append(
        [
            "TOTAL",
            str(len(results)),
            f"{slowest.elapsed_s:.2f} ({Path(slowest.source).name[:40]})",
            f"{rss(fattest):.0f} ({Path(fattest.source).name[:40]})",
        ]
    )
    pages = sum(p.status == "ok" for r in results for p in r.pages)
    title = (
        f"{len(results)} PDFs, {pages} pages rendered (first {args.pages or 'all'} per file, "
        f"<= {args.max_pixels} px), wall {wall:.1f} s on {args.workers} workers, "
        f"limits {args.memory_mb} MB / {args.timeout:g} s per file"
    )
    _table(title, ["status", "files", "max time s (file)", "max RSS MB (file)"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
