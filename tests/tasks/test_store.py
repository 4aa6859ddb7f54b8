"""The evidence store on a local root: schemas, atomicity, idempotency, cheap done-keys."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from store_fixtures import PAGE_H, PAGE_W, QUESTIONS, Fixture, build, grounded

from egr_core.types import Box, Status
from egr_pipeline import records, schemas
from egr_pipeline.answer_rows import answer_rows
from egr_pipeline.store import CorruptPartError, Store, StoreError, done_keys, row_group_slices


@pytest.fixture()
def fx(tmp_path: Path) -> Fixture:
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    return build(str(tmp_path / "out"), pdfs)


def _one_answer(ctx: records.RunContext, doc_id: str, qi: int = 0) -> dict:
    q = QUESTIONS[qi]
    g = grounded(q.question_id, q.text, "x", [Box(0.1, 0.1, 0.3, 0.2)])
    return answer_rows(ctx, doc_id, 0, records.PageSize(PAGE_W, PAGE_H), g)


def test_parts_follow_the_layout_and_the_explicit_schemas(fx: Fixture) -> None:
    root = Path(fx.root)
    for table, schema in schemas.GROUP_TABLES.items():
        parts = sorted((root / table).glob("run_id=*/part-*.parquet"))
        # run A: two groups (invoice, locked); run B: one group.
        assert len(parts) == 3, (table, parts)
        for p in parts:
            assert pq.read_schema(p).remove_metadata().equals(schema.remove_metadata()), p
    assert {p.name for p in (root / "runs").glob("run_id=*/*.parquet")} == {
        "part-begin.parquet",
        "part-end.parquet",
    }
    maps = pq.read_table(next((root / "maps").glob("run_id=*/part-*.parquet")))
    assert pa.types.is_float16(maps.schema.field("scores").type.value_type)


def test_rows_carry_provenance_and_boxes_in_points(fx: Fixture) -> None:
    for table in schemas.GROUP_TABLES:
        t = fx.store.read(table)
        assert t.num_rows > 0, table
        for col in ("run_id", "group_id", "egr_version", "written_at"):
            assert t[col].null_count == 0, (table, col)
    ev = fx.store.read("evidence").to_pylist()
    g = fx.answers[(fx.run_a.run_id, fx.docs["invoice.pdf"], "q_total")]
    mine = sorted(
        (r for r in ev if r["run_id"] == fx.run_a.run_id and r["question_id"] == "q_total"),
        key=lambda r: r["rank"],
    )
    assert [r["rank"] for r in mine] == [1, 2]
    for r, region in zip(mine, g.evidence, strict=True):
        assert (r["x0_n"], r["y0_n"], r["x1_n"], r["y1_n"]) == region.box.as_tuple()
        assert r["x0_pt"] == pytest.approx(region.box.x0 * PAGE_W)
        assert r["y1_pt"] == pytest.approx(region.box.y1 * PAGE_H)
        assert r["model_id"] == fx.run_a.model_id and r["config_hash"] == "cfgA"
        assert r["spatial_entropy"] == pytest.approx(0.7)  # SE of round 1
    assert "Invoice total" in mine[0]["evidence_text"]
    crop = Image.open(io.BytesIO(mine[0]["crop_png"]))
    assert max(crop.size) == 160


def test_maps_round_trip_through_float16_with_a_scale(fx: Fixture) -> None:
    maps = fx.store.read("maps").to_pylist()
    g = fx.answers[(fx.run_b.run_id, fx.docs["invoice.pdf"], "q_total")]
    mine = [r for r in maps if r["run_id"] == fx.run_b.run_id and r["question_id"] == "q_total"]
    assert len(mine) == sum(len(r.grids) for r in g.rounds) == 3
    for r in mine:
        zr = next(z for z in g.rounds if z.round == r["round"])
        grid = zr.grids[r["span"]]
        raw = np.asarray(r["scores"], dtype=np.float32).reshape(r["rows"], r["cols"]) * r["scale"]
        # raw magnitudes ~3e-4 sit in float16's subnormal range: without the scale they would
        # lose most digits.
        np.testing.assert_allclose(raw, grid.scores, rtol=2e-3)
        page_box = grid.source_box.sub(grid.span.box)
        assert (r["x0_n"], r["y0_n"], r["x1_n"], r["y1_n"]) == pytest.approx(page_box.as_tuple())


def test_writing_the_same_work_key_twice_never_duplicates(fx: Fixture) -> None:
    ctx, doc = fx.run_a, fx.docs["invoice.pdf"]
    before = {t: fx.store.read(t).num_rows for t in schemas.GROUP_TABLES}
    again = records.merge(*(_one_answer(ctx, doc, i) for i in range(3)))
    # Every key is already committed in run A (the text differs, the key does not).
    assert fx.store.write_group(ctx, again) is None
    assert {t: fx.store.read(t).num_rows for t in schemas.GROUP_TABLES} == before
    # A group mixing a done key and a new one writes only the new one.
    newq = records.Question("q_new", "Anything new?")
    g = grounded(newq.question_id, newq.text, "y", [Box(0.2, 0.2, 0.4, 0.4)])
    mixed = records.merge(
        _one_answer(ctx, doc, 0),
        answer_rows(ctx, doc, 0, records.PageSize(PAGE_W, PAGE_H), g),
    )
    commit = fx.store.write_group(ctx, mixed)
    assert commit is not None and len(commit.keys) == 1
    after = fx.store.read("answers")
    assert after.num_rows == before["answers"] + 1
    keys = after.filter(after["run_id"].to_numpy(zero_copy_only=False) == ctx.run_id)["work_key"]
    assert len(keys) == len(set(keys.to_pylist()))


def test_a_crash_before_the_commit_leaves_nothing_visible(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = records.RunContext("20260103T000000Z-cccccc", "m", "c", "0.1.0")
    rows = _one_answer(ctx, fx.docs["invoice.pdf"])
    real = Store._write_parquet

    def crash_on_commit(self: Store, path: str, table: object) -> None:
        if "/_commits/" in path:
            raise OSError("disk full (simulated)")
        real(self, path, table)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "_write_parquet", crash_on_commit)
    with pytest.raises(OSError, match="simulated"):
        fx.store.write_group(ctx, rows)
    monkeypatch.undo()
    # The parts are on disk, but not committed: readers and done_keys ignore them.
    assert list(Path(fx.root, "answers", f"run_id={ctx.run_id}").glob("part-*.parquet"))
    assert ctx.run_id not in set(fx.store.read("answers")["run_id"].to_pylist())
    key = rows["answers"][0]["work_key"]
    assert key not in fx.store.done_keys(ctx.run_id)
    # Retrying the same group commits it exactly once.
    assert fx.store.write_group(ctx, rows) is not None
    answers = fx.store.read("answers", run_id=ctx.run_id)
    assert answers["work_key"].to_pylist() == [key]
    assert not list(Path(fx.root).rglob("*.tmp"))


def test_done_keys_reads_only_the_commit_markers(fx: Fixture) -> None:
    expected = {
        records.work_key(
            doc,
            qid,
            next(q.text for q in QUESTIONS if q.question_id == qid),
            "tiny/qwen",
            "cfgA" if run == fx.run_a.run_id else "cfgB",
        )
        for (run, doc, qid) in [*fx.answers, *fx.failed]
    }
    # Remove every data part: done_keys must not need them.
    for table in schemas.GROUP_TABLES:
        for p in Path(fx.root, table).rglob("*.parquet"):
            p.unlink()
    assert done_keys(fx.root) == expected
    run_a = fx.store.done_keys(fx.run_a.run_id)
    assert len(run_a) == 6
    not_failed = fx.store.done_keys(fx.run_a.run_id, exclude_status=["encrypted"])
    assert len(not_failed) == 3
    assert done_keys(str(Path(fx.root) / "nope")) == set()


def test_work_key_depends_on_every_field() -> None:
    base = ("d" * 64, "q1", "What?", "model", "cfg")
    k = records.work_key(*base)
    assert len(k) == 64 and k == records.work_key(*base)
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + "x"
        assert records.work_key(*changed) != k
    # No separator trick: moving text between fields changes the key.
    assert records.work_key("a", "b|c", "d", "m", "c") != records.work_key(
        "a|b", "c", "d", "m", "c"
    )


def test_runs_rows_and_counts(fx: Fixture) -> None:
    runs = fx.store.run_rows()
    assert set(runs) == {fx.run_a.run_id, fx.run_b.run_id}
    a = runs[fx.run_a.run_id]
    assert a["phase"] == "end" and a["finished_at"] is not None
    counts = json.loads(a["counts"])
    assert counts["items"] == 6 and counts["status:encrypted"] == 3 and counts["groups"] == 2
    assert a["status"] == "partial"
    assert [q["id"] for q in json.loads(a["question_set"])] == [q.question_id for q in QUESTIONS]
    assert json.loads(a["config"])["tag"] == "cfgA"


def test_row_groups_are_sized_by_bytes(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "out"), row_group_bytes=200_000)
    ctx = records.RunContext("r1", "m", "c", "0.1.0")
    rng = np.random.default_rng(0)
    crops = []

    def noisy_crop(_: Box) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(buf, "PNG")
        crops.append(len(buf.getvalue()))
        return buf.getvalue()

    parts = []
    for i in range(6):
        q = records.Question(f"q{i}", f"question {i}?")
        g = grounded(q.question_id, q.text, "a", [Box(0.1, 0.1, 0.3, 0.3), Box(0.5, 0.5, 0.7, 0.7)])
        parts.append(
            answer_rows(ctx, "d" * 64, 0, records.PageSize(PAGE_W, PAGE_H), g, crop_fn=noisy_crop)
        )
    commit = store.write_group(ctx, records.merge(*parts))
    assert commit is not None
    meta = pq.read_metadata(commit.paths["evidence"])
    per_row = int(np.mean(crops))
    assert per_row > 50_000  # noise does not compress: the crops dominate
    assert meta.num_rows == 12
    assert meta.num_row_groups >= 12 * per_row // 200_000
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        assert rg.num_rows == 1 or rg.total_byte_size <= 200_000 + per_row, i
    # A table of small rows is one row group.
    assert pq.read_metadata(commit.paths["answers"]).num_row_groups == 1


def test_row_group_slices_cover_every_row_once() -> None:
    t = pa.table({"b": [b"x" * n for n in (10, 500, 20, 20, 900, 5)]})
    # Per-row size = payload + 4 bytes of offset: 14, 504, 24, 24, 904, 9.
    assert row_group_slices(t, 515) == [(0, 1), (1, 1), (2, 2), (4, 1), (5, 1)]
    assert row_group_slices(t, 10_000) == [(0, 6)]


def test_a_corrupt_part_is_reported_with_its_path(fx: Fixture) -> None:
    part = next(Path(fx.root, "evidence").glob(f"run_id={fx.run_b.run_id}/part-*.parquet"))
    part.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorruptPartError) as err:
        fx.store.read("evidence")
    assert str(part) in str(err.value)
    assert [p for p, _ in fx.store.verify()] == [str(part)]


def test_failure_rows_and_status_values() -> None:
    ctx = records.RunContext("r", "m", "c", "0.1.0")
    rows = records.failure_rows(ctx, "d", QUESTIONS[0], "corrupt", "x.pdf: bad xref")
    (row,) = rows["answers"]
    assert row["status"] == "corrupt" and row["answer"] is None and row["error"].startswith("x.pdf")
    g = grounded("q", "Q?", "a", [], status=Status.NO_EVIDENCE)
    out = answer_rows(ctx, "d", 0, records.PageSize(10, 10), g)
    assert out["answers"][0]["status"] == "no_evidence" and out["evidence"] == []


def test_bad_groups_are_refused(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "o"))
    ctx = records.RunContext("r", "m", "c", "0.1.0")
    with pytest.raises(ValueError, match="unknown tables"):
        store.write_group(ctx, {"answerz": []})
    with pytest.raises(ValueError, match="at least one answers row"):
        store.write_group(ctx, {"answers": []})
    other = records.RunContext("r2", "m", "c", "0.1.0")
    with pytest.raises(ValueError, match="run_id"):
        store.write_group(ctx, _one_answer(other, "d"))
    with pytest.raises(ValueError, match="run_id"):
        records.RunContext("a/b", "m", "c", "0")


def test_check_readable_explains_missing_and_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(str(tmp_path / "missing")).check_readable()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="holds no egr runs"):
        Store(str(tmp_path / "empty")).check_readable()
    store = Store(str(tmp_path / "begun"))
    store.begin_run(records.RunContext("r0", "m", "c", "0.1.0"))
    with pytest.raises(StoreError, match="no committed results"):
        store.check_readable()


def test_latency_is_the_cores_total_not_the_sum_of_its_parts(fx: Fixture) -> None:
    from dataclasses import replace

    ctx = records.RunContext("r-lat", "m", "h", "0")
    q = QUESTIONS[0]
    g = grounded(q.question_id, q.text, "x", [Box(0.1, 0.1, 0.3, 0.2)])
    timed = replace(g, timings_ms={"forward_ms": 30.0, "generate_ms": 10.0, "total_ms": 40.0})
    (row,) = answer_rows(ctx, "d" * 64, 0, records.PageSize(PAGE_W, PAGE_H), timed)["answers"]
    assert row["latency_ms"] == 40.0
    parts = replace(g, timings_ms={"forward_ms": 30.0, "generate_ms": 10.0})
    (row,) = answer_rows(ctx, "d" * 64, 0, records.PageSize(PAGE_W, PAGE_H), parts)["answers"]
    assert row["latency_ms"] == 40.0


def test_the_answer_steps_views_round_trip_as_json(fx: Fixture) -> None:
    """answers.reads: the views an answer was read through (scale, page view or not, answer,
    summed log-likelihood), as the method reported them; null when it read once."""
    import dataclasses

    ctx = records.RunContext("r-reads", "m", "c", "0.1.0")
    q = QUESTIONS[0]
    views = [
        {"scale": 1.0, "page": False, "answer": "$1,204.50", "logprob": -0.25},
        {"scale": 0.9, "page": False, "answer": "$1,284.50", "logprob": -3.5},
    ]
    g = grounded(q.question_id, q.text, "$1,204.50", [Box(0.1, 0.1, 0.3, 0.2)])
    g = dataclasses.replace(g, extra={**g.extra, "read_views": views})
    page = records.PageSize(PAGE_W, PAGE_H)
    assert fx.store.write_group(ctx, answer_rows(ctx, "d" * 64, 0, page, g)) is not None
    rows = fx.store.read("answers").to_pylist()
    (mine,) = [r for r in rows if r["run_id"] == "r-reads"]
    assert json.loads(mine["reads"]) == views
    assert mine["answer_logprob"] == pytest.approx(-0.25 / 2)  # the kept answer's, per view
    once = [r for r in rows if r["run_id"] != "r-reads" and r["question_id"] == "q_due"]
    assert once and all(r["reads"] is None and r["answer_logprob"] is None for r in once)
