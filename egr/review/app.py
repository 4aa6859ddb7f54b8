"""The ``egr review`` web application (Starlette, server-rendered HTML, a little JavaScript).

Security model: it binds to loopback by default (see ``egr/commands/review.py``); the browser
only ever sends ids (run ids, work keys, round and rank numbers), each checked against a strict
pattern and used as a SQL parameter, never as a file path. Pictures come from the tables of
``--out`` and from the PDFs its documents table names; static files come from the package.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from egr.review.data import VERDICT_FILTERS, Filters, ReviewData
from egr.show import (
    ShowData,
    ShowError,
    box_color,
    clip_image,
    draw_page,
    load_answer_data,
    page_image,
)
from egr_core.types import Box
from egr_pipeline.reviews import RUN_ID_RE, WORK_KEY_RE, ReviewError

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
PAGE_HEIGHT = 1100  # px of the page picture in the answer view


class _LRU:
    """A small thread-safe cache of rendered pictures (PNG bytes) and answer data."""

    def __init__(self, size: int) -> None:
        self.size, self._d, self._lock = size, OrderedDict[Any, Any](), threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


def _ids(request: Request) -> tuple[str, str]:
    run_id, key = request.path_params["run_id"], request.path_params["work_key"]
    if not RUN_ID_RE.match(run_id) or not WORK_KEY_RE.match(key):
        raise HTTPException(404, "no such answer")
    return run_id, key


def _png(image: Image.Image) -> Response:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _name(uri: str | None, doc_id: str) -> str:
    return (uri or doc_id).rstrip("/").rsplit("/", 1)[-1]


def create_app(data: ReviewData, allowed_hosts: list[str] | None = None) -> Starlette:
    """The web application over one :class:`ReviewData`.

    Args:
        data: the store under review.
        allowed_hosts: the Host headers to answer (e.g. ``["127.0.0.1", "localhost"]``), so a
            web page elsewhere cannot reach the server through DNS rebinding; None = any.
    """
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["fmt"] = _fmt
    templates.env.globals.update(
        name=_name, urlencode=urlencode, reviewer=data.reviewer, box_color=box_color
    )
    shows, pictures = _LRU(64), _LRU(128)

    def show(run_id: str, key: str) -> ShowData:
        def make() -> ShowData:
            with data.cursor() as cur:
                return load_answer_data(cur, run_id, key)

        try:
            return shows.get((run_id, key), make)
        except ShowError as exc:
            raise HTTPException(404, str(exc)) from exc

    def page_picture(run_id: str, key: str) -> Image.Image:
        def make() -> Image.Image:
            d = show(run_id, key)
            image, note = page_image(d, data.store, height_px=PAGE_HEIGHT)
            return draw_page(
                d,
                image,
                note=f"page image unavailable: {note}" if note else None,
                height=PAGE_HEIGHT,
            )

        return pictures.get(("page", run_id, key), make)

    def runs(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        a, b = (a if RUN_ID_RE.match(a) else None), (b if RUN_ID_RE.match(b) else None)
        run_rows = data.runs()
        diff = data.diff(a, b) if len(run_rows) > 1 or (a and b) else []
        return templates.TemplateResponse(
            request,
            "runs.html",
            {
                "runs": run_rows,
                "diff": diff,
                "run_a": a or (diff[0]["run_a"] if diff else ""),
                "run_b": b or (diff[0]["run_b"] if diff else ""),
                "gt_files": data.ground_truth_files,
            },
        )

    def answers(request: Request) -> Response:
        f = Filters.from_params(request.query_params)
        page = data.answers(f)
        return templates.TemplateResponse(
            request,
            "answers.html",
            {
                "page": page,
                "f": page.filters,
                "facets": data.facets(),
                "verdicts": VERDICT_FILTERS,
                "qs": lambda **kw: urlencode(page.filters.params(**kw)),
            },
        )

    def answer_at(request: Request) -> Response:
        """Redirect to the answer at index ``i`` of the filtered list (next/previous)."""
        f = Filters.from_params(request.query_params)
        try:
            i = int(request.query_params.get("i", "0"))
        except ValueError:
            i = 0
        row = data.answer_at(f, i)
        params = f.params(page=1)
        if row is None:
            return RedirectResponse(f"/answers?{urlencode(params)}", status_code=303)
        params["i"] = str(i)
        url = f"/answer/{row['run_id']}/{row['work_key']}?{urlencode(params)}"
        return RedirectResponse(url, status_code=303)

    def answer(request: Request) -> Response:
        run_id, key = _ids(request)
        row = data.answer_row(run_id, key)
        if row is None:
            raise HTTPException(404, f"no answer with run {run_id} and work key {key[:12]}")
        d = show(run_id, key)
        f = Filters.from_params(request.query_params)
        try:
            i = int(request.query_params.get("i", ""))
        except ValueError:
            i = None
        nav = f.params(page=1)
        return templates.TemplateResponse(
            request,
            "answer.html",
            {
                "a": row,
                "d": d,
                "rounds": data.rounds(run_id, key),
                "i": i,
                "list_url": "/answers?" + urlencode(f.params()),
                "nav": urlencode(nav),
                # After a verdict: the next answer. Under the "unreviewed" filter the marked
                # answer leaves the list, so the next one moves up to the same index.
                "after_mark_i": None if i is None else (i if f.verdict == "unreviewed" else i + 1),
            },
        )

    def page_png(request: Request) -> Response:
        run_id, key = _ids(request)
        return _png(page_picture(run_id, key))

    def evidence_png(request: Request) -> Response:
        run_id, key = _ids(request)
        rank = request.path_params["rank"]
        d = show(run_id, key)
        ev = next((e for e in d.evidence if e.rank == rank), None)
        if ev is None:
            raise HTTPException(404, f"no evidence of rank {rank}")
        if ev.crop_png:
            return Response(ev.crop_png, media_type="image/png")
        image, note = clip_image(d, data.store, ev.box)
        if image is None:
            raise HTTPException(404, f"no crop: {note}")
        return _png(image)

    def round_png(request: Request) -> Response:
        run_id, key = _ids(request)
        rnd, block = request.path_params["round"], request.path_params["block"]
        b = data.crop_box(run_id, key, rnd, block)
        if not b:
            raise HTTPException(404, f"round {rnd} has no crop {block}")
        d = show(run_id, key)
        box = Box(b["x0_n"], b["y0_n"], b["x1_n"], b["y1_n"])

        def make() -> Image.Image:
            image, note = clip_image(d, data.store, box)
            if image is None:
                raise HTTPException(404, f"no crop: {note}")
            return image

        return _png(pictures.get(("round", run_id, key, rnd, block), make))

    async def post_review(request: Request) -> Response:
        # A JSON content type makes a cross-site POST a CORS "non-simple" request, which the
        # browser will not send without a preflight this server never approves.
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return JSONResponse({"error": "send JSON (application/json)"}, status_code=415)
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        run_id, key = str(body.get("run_id", "")), str(body.get("work_key", ""))
        if not RUN_ID_RE.match(run_id) or not WORK_KEY_RE.match(key):
            return JSONResponse({"error": "bad run_id or work_key"}, status_code=400)
        corrected = body.get("corrected_answer")
        try:
            row = await run_in_threadpool(
                data.record,
                run_id,
                key,
                str(body.get("verdict", "")),
                str(corrected) if corrected is not None else None,
                str(body["submission"]) if body.get("submission") else None,
            )
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if row is None:
            return JSONResponse({"error": "no such answer"}, status_code=404)
        log.info("review %s: %s %s %s", row["review_id"], row["verdict"], run_id, key[:12])
        return JSONResponse(
            {k: row[k] for k in ("review_id", "verdict", "corrected_answer", "reviewer")}
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "error")
        return templates.TemplateResponse(
            request, "error.html", {"code": code, "detail": detail}, status_code=code
        )

    id_ = "/answer/{run_id}/{work_key}"
    routes = [
        Route("/", runs),
        Route("/answers", answers),
        Route("/at", answer_at),
        Route(id_, answer),
        Route(id_ + "/page.png", page_png),
        Route(id_ + "/evidence/{rank:int}.png", evidence_png),
        Route(id_ + "/round/{round:int}/{block:int}.png", round_png),
        Route("/api/review", post_review, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: not_found}
    )
