"""``egr ask PDF "QUESTION"``: answer one question about one PDF and show where it came from.

Without ``--page`` every page is scored by the first-answer-token entropy of [page] + question
(one forward each, no backward) and the page with the *lowest* entropy (the model is most
confident it can answer there) is grounded. With ``--page N`` only that page is used. Pages are
0-based here as everywhere in egr (page 0 is the first page).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from egr.commands._options import StopRuleArg, StopTauArg


def _num(x: float) -> float | str:
    """JSON-safe float (inf/nan as strings)."""
    return x if math.isfinite(x) else str(x)


def ask(
    pdf: Path,
    question: str,
    *,
    page: int | None,
    model: str,
    device: str,
    max_rounds: int | None = None,
    stop_rule: str | None = None,
    stop_tau: float | None = None,
    page_pixels: int = 1_600_000,
) -> dict[str, Any]:
    """Load the model, pick the page, ground the question; everything as one JSON-able dict."""
    from egr_core.documents import open_pdf
    from egr_core.errors import InputError
    from egr_core.explain import EntropyGradientGrounding
    from egr_core.loading import default_config, load_vlm

    vlm = load_vlm(model, device=device)
    with open_pdf(pdf) as doc:
        if page is not None and not 0 <= page < doc.n_pages:
            raise InputError(f"{pdf}: --page {page} is out of range (the PDF has {doc.n_pages})")
        cfg = default_config(
            vlm, model, max_rounds=max_rounds, stop_rule=stop_rule, stop_tau=stop_tau
        )
        egg = EntropyGradientGrounding(vlm.model, vlm.processor, vlm.adapter, cfg)

        def render(i: int):
            return doc.render_page(i, max_pixels=page_pixels, max_side=4096).image

        ranking: list[dict[str, Any]] = []
        if page is None:
            for i in range(doc.n_pages):
                ranking.append({"page": i, "entropy": egg.first_token_entropy(render(i), question)})
            ranking.sort(key=lambda r: r["entropy"])
            page = int(ranking[0]["page"])
        image = render(page)
        geom = doc.page_geometry(page)
        (ans,) = egg.ground(
            image,
            [question],
            lambda box, px: doc.render_clip(page, box, long_side_px=px),
            page_size_pt=(float(geom.width_pt), float(geom.height_pt)),
        )

        def region(rank: int, r: Any) -> dict[str, Any]:
            return {
                "rank": rank,
                "page": page,
                "round": r.round,
                "block": r.block,
                "box_pt": [round(v, 2) for v in geom.box_to_points(r.box)],
                "box": [round(v, 5) for v in r.box.as_tuple()],
                "score": r.score,
                "crop_pt": ([round(v, 2) for v in geom.box_to_points(r.crop)] if r.crop else None),
                "text": doc.text_in_box(page, r.crop or r.box),
            }

        return {
            "pdf": str(pdf),
            "doc_id": doc.doc_id,
            "question": question,
            "page": page,
            "page_ranking": ranking,
            "answer": ans.answer,
            "status": ans.status.value,
            "stop_reason": ans.stop_reason,
            "entropy_before": ans.entropy_before,
            "entropy_after": ans.entropy_after,
            "evidence": [region(k + 1, r) for k, r in enumerate(ans.evidence)],
            "rounds": [
                {
                    "round": z.round,
                    "crops_pt": [[round(v, 2) for v in geom.box_to_points(b)] for b in z.crops],
                    "spatial_entropy": _num(z.spatial_entropy),
                    "entropy": z.entropy,
                    "regions": [region(k + 1, r) for k, r in enumerate(z.regions)],
                    "timings_ms": {k: round(v, 1) for k, v in z.timings_ms.items()},
                }
                for z in ans.rounds
            ],
            "accepted_round": ans.extra.get("accepted_round"),
            "answer_round": ans.extra.get("answer_round"),
            "reads": ans.extra.get("read_views", []),
            "answer_logprob": ans.answer_logprob,
            "model_id": model,
            "model_type": vlm.model_type,
            "config": cfg.to_dict(),
            "config_hash": egg.config_hash,
            "timings_ms": {k: round(v, 1) for k, v in ans.timings_ms.items()},
        }


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if result["page_ranking"]:
        ranks = ", ".join(
            f"page {r['page']}: {r['entropy']:.3f}" for r in result["page_ranking"][:5]
        )
        con.print(f"pages by first-token entropy (lowest first): {ranks}")
    con.print(f"[bold]page {result['page']}[/bold]  Q: {result['question']}")
    con.print(f"[bold green]A:[/bold green] {result['answer']}")
    con.print(
        f"status {result['status']}; entropy {result['entropy_before']:.3f} -> "
        f"{result['entropy_after']:.3f}; stop reason: {result['stop_reason']}"
    )
    if result.get("reads"):
        views = "; ".join(
            f"{v['scale']:g}x{'' if v['page'] else ' alone'}: {v['answer']}"
            + (f" ({v['logprob']:.2f})" if v["logprob"] is not None else "")
            for v in result["reads"]
        )
        con.print(f"read at {views} (summed log-likelihood; the likeliest is the answer)")
    if result.get("answer_logprob") is not None:
        con.print(f"log-likelihood per view {result['answer_logprob']:.2f} nats")
    ev = Table(title="evidence (box in PDF points, displayed page, origin top-left)")
    for col in ("rank", "page", "round", "box (pt)", "score", "text"):
        ev.add_column(col)
    for e in result["evidence"]:
        box = ", ".join(f"{v:.1f}" for v in e["box_pt"])
        ev.add_row(str(e["rank"]), str(e["page"]), str(e["round"]), box, f"{e['score']:.4g}",
                   e["text"][:80])  # fmt: skip
    con.print(ev)
    rt = Table(title="rounds")
    for col in ("round", "crops", "spatial entropy", "entropy", "regions", "ms"):
        rt.add_column(col)
    for z in result["rounds"]:
        se = z["spatial_entropy"]
        se_text = se if isinstance(se, str) else f"{se:.4f}"
        rt.add_row(str(z["round"]), str(len(z["crops_pt"])), se_text,
                   f"{z['entropy']:.3f}", str(len(z["regions"])),
                   f"{sum(z['timings_ms'].values()):.0f}")  # fmt: skip
    con.print(rt)


def command(
    pdf: Annotated[Path, typer.Argument(help="The PDF file.")],
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    page: Annotated[
        int | None,
        typer.Option(
            "--page", help="Page (0 = the first); default: the page with the lowest entropy.", min=0
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Hub id or checkpoint dir (default: the shipped reader)."
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N.")] = "cpu",
    max_rounds: Annotated[
        int | None, typer.Option("--max-rounds", help="Zoom rounds (0 = plain answer).", min=0)
    ] = None,
    stop_rule: StopRuleArg = None,
    stop_tau: StopTauArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Emit one JSON object.")] = False,
) -> None:
    """Answer QUESTION about PDF: ranked evidence boxes, every zoom round, the stop reason."""
    from egr.errors import UsageError
    from egr.preflight import check_model

    if model is None:
        from egr.reader import default_model_path

        try:
            model = default_model_path()
        except FileNotFoundError as exc:
            raise UsageError(f"--model: {exc}") from exc
    if not question.strip():
        raise UsageError("QUESTION: the question is empty")
    if not pdf.is_file():
        raise UsageError(f"PDF {pdf}: {'is a folder' if pdf.is_dir() else 'no such file'}")
    check_model(model)  # unknown or unsupported model: one line, exit 2 (as egr run)
    try:
        result = ask(
            pdf, question, page=page, model=model, device=device, max_rounds=max_rounds,
            stop_rule=stop_rule.value if stop_rule else None, stop_tau=stop_tau,
        )  # fmt: skip
    except OSError as exc:
        raise UsageError(f"PDF {pdf}: cannot read: {exc}") from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(result)
