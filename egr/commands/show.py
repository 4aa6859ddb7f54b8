"""``egr show``: the picture of one answer's evidence (heatmap + numbered boxes + crops)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from egr.commands._options import EndpointUrlArg, ProfileArg
from egr.commands.query import open_store


def command(
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output root: a folder or s3://bucket/prefix.")
    ],
    doc: Annotated[
        str, typer.Option("--doc", "-d", help="Document: doc_id, a doc_id prefix, uri or name.")
    ],
    question: Annotated[str, typer.Option("--question", "-q", help="Question id.")],
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Where to write the PNG (default egr-show-<doc>-<qid>.png)."),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Show this run's answer (default: the latest).")
    ] = None,
    round_: Annotated[
        int | None,
        typer.Option("--round", help="Zoom round whose maps to paint (default: the evidence's)."),
    ] = None,
    endpoint_url: EndpointUrlArg = None,
    profile: ProfileArg = None,
) -> None:
    """Draw a question's answer on its page: relevance heatmap, ranked boxes, crops, text."""
    from rich.console import Console
    from rich.table import Table

    from egr.errors import OutputError
    from egr.show import load_show_data, page_image, render_show
    from egr.storage import storage_options
    from egr_pipeline.duck import connect

    store = open_store(out, storage_options(endpoint_url, profile))
    con = connect(store)  # StoreError (empty root, corrupt part): one line, exit 2
    try:
        data = load_show_data(con, doc, question, run_id=run, heat_round=round_)
    finally:
        con.close()

    image, note = page_image(data, store)
    if note:
        typer.secho(
            f"warning: page image unavailable ({note}); drawing a blank page",
            err=True,
            fg=typer.colors.YELLOW,
        )
    picture, _ = render_show(data, image, note=f"page image unavailable: {note}" if note else None)
    if png is None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", question)
        png = Path(f"egr-show-{data.doc_id[:12]}-{safe}.png")
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        picture.save(png, format="PNG")
    except OSError as exc:
        raise OutputError(f"--png {png}: cannot write: {exc.strerror or exc}") from exc

    console = Console()
    console.print(f"[bold]{data.question}[/bold]  ({data.question_id}, run {data.run_id})")
    console.print(f"answer: [bold]{data.answer}[/bold]   status: {data.status}")
    table = Table("#", "page", "round", "score", "box (pt)", "text")
    for ev in data.evidence:
        table.add_row(
            str(ev.rank),
            "" if data.page is None else str(data.page),  # 0-based, as in every table
            str(ev.round),
            f"{ev.score:.3g}" if ev.score is not None else "",
            ", ".join(f"{v:.0f}" for v in ev.box_pt),
            ev.text or "",
        )
    console.print(table)
    console.print(f"wrote {png} ({picture.width}x{picture.height})")
