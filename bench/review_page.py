"""How fast `egr review`'s answers list loads as the answers table grows.

Builds output roots of 1,000 and 100,000 answers (through the real store), then times the
answers page over HTTP (Starlette's test client, so the network is left out): the first page,
a deep page, and a filtered page. Prints milliseconds (median of --repeat) and the ratio of the
large root to the small one: paging is SQL LIMIT/OFFSET, so the ratio stays far below 100x.

    .venv/bin/python bench/review_page.py [--rows 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "review")]

from review_fixtures import build_many  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from egr.review.app import create_app  # noqa: E402
from egr.review.data import ReviewData  # noqa: E402
from egr_pipeline.store import Store  # noqa: E402

PAGES = {
    "first page": {},
    "page 1000": {"page": "1000"},
    "filtered": {"question": "q007", "status": "ok", "min_entropy": "1.0"},
    "unreviewed": {"verdict": "unreviewed"},
}


def measure(n: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = f"{tmp}/out"
        t0 = time.perf_counter()
        build_many(root, n, n_docs=max(1, n // 50))
        print(f"built {n} answers in {time.perf_counter() - t0:.1f} s", flush=True)
        data = ReviewData(Store(root), reviewer="bench", egr_version="bench")
        out = {}
        with TestClient(create_app(data)) as client:
            for name, params in PAGES.items():
                client.get("/answers", params=params)  # warm
                times = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    res = client.get("/answers", params=params)
                    times.append((time.perf_counter() - t) * 1000)
                    assert res.status_code == 200
                out[name] = statistics.median(times)
        data.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    small = measure(args.small, args.repeat)
    large = measure(args.rows, args.repeat)
    print(f"\n{'page':<12} {args.small:>8} rows {args.rows:>8} rows   ratio")
    for name in PAGES:
        print(
            f"{name:<12} {small[name]:>8.0f} ms {large[name]:>8.0f} ms   "
            f"{large[name] / small[name]:5.1f}x"
        )


if __name__ == "__main__":
    main()
