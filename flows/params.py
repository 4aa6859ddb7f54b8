"""Parameters of the corpus QA flow: one validated pydantic model, embedding the core's EgrConfig.

Prefect validates ``RunParams`` when a flow run starts (from the CLI, a schedule or an event
trigger), so the same defaults and checks apply everywhere. The flow hands explicit values, never
the whole object, to each task.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from egr_core.config import EgrConfig, StopRule
from egr_pipeline.budget import DEFAULT_RETRY_BUDGET
from egr_pipeline.models import default_model
from egr_pipeline.rasterize import RenderSpec
from egr_pipeline.work import WorkSpec

#: Pages processed per document unless ``max_pages`` says otherwise; longer documents are cut.
DEFAULT_MAX_PAGES = 50
#: Name of the model-work slots (one per GPU of a machine; see egr_pipeline/slots.py).
GPU_LIMIT = "egr-gpu"


class RunParams(BaseModel):
    """Everything one corpus QA run needs.

    Attributes:
        source: a local folder, a single PDF, or ``s3://bucket/prefix`` (any fsspec URL).
        questions: a YAML/JSON questions file (``[{id, text, pages?}]``), local or fsspec URL.
        out: output directory of the Parquet tables (local path or fsspec URL).
        model: a Hugging Face hub id or a local checkpoint directory.
        device: "cpu", "cuda", "cuda:N" or "auto".
        dtype: torch dtype name, or "auto".
        egr: the method knobs; None = the adapter's defaults for the model's family.
        max_rounds: override of ``egr.max_rounds`` (0 = plain answer, the baseline).
        top_k: override of ``egr.top_k``.
        stop_rule: override of ``egr.stop_rule`` ("spatial_entropy", "fixed" or "confidence").
        stop_tau: override of ``egr.stop_tau`` (nats; the "confidence" rule's threshold).
        top_pages: pages grounded per question, after ranking by first-token entropy; the
            answer with the lowest first-token entropy after grounding is kept.
        max_pages: documents longer than this are processed on their first pages, and marked.
        max_failure_rate: the run fails when failed items / all items exceeds this.
        gpu_slots: model-work slots of this machine (its GPUs); every run on the machine shares
            them (egr_pipeline/slots.py: a slot is released whenever its process ends, even
            kill -9).
        slot_timeout_s: a document that waited this long for a model slot fails the run with a
            message naming the holder (never a silent hang).
        slot_dir: the slot files' folder (default ``$EGR_SLOT_DIR`` or ``<tmp>/egr-slots-<uid>``).
        batch_size: answers are committed every page, and every ``batch_size`` questions of a
            page; a killed run loses at most the batch in flight.
        retry_budget: tries of a work key that hit a transient limit (timeout, out of memory,
            crash, I/O) before it ends as ``gave_up`` and is not retried.
        storage_options: fsspec options of the source (e.g. ``{"endpoint_url": ...}``).
        render_max_side: page renders are capped at this many pixels on the long side.
        render_max_pixels: ... and at this many pixels in total.
        render_timeout_s: a document whose pages take longer to open and render in the sandbox
            is a "timeout" status row (the sandboxed worker is killed).
        render_memory_mb: memory a sandboxed render worker may add for one document; beyond it
            the document is an "out_of_memory" (or "crashed") status row.
        render_workers: sandboxed render worker processes, kept warm across the documents of a
            run, per flow (or Dask worker) process.
        threads: torch threads of the model work (None: torch's default, one per core; 1 is
            faster when other work shares the CPU).
        documents_in_flight: documents rendering or rendered and waiting for their answer step
            at once; None = 2 per render worker + 2 per model slot. Raise it to keep a Dask
            cluster of many workers busy (``egr run --workers N`` does).
        documents_per_task: documents one rasterize task, and one answer task, handle; None =
            as many as keep two tasks within ``documents_in_flight`` (at most a third of the
            run's documents); 1 on Dask, so documents spread over the workers.
    """

    model_config = ConfigDict(extra="forbid")

    source: str
    questions: str
    out: str = "egr-out"
    model: str = Field(default_factory=default_model)
    device: str = "cpu"
    dtype: str = "auto"
    egr: EgrConfig | None = None
    max_rounds: int | None = Field(default=None, ge=0)
    top_k: int | None = Field(default=None, ge=1)
    stop_rule: StopRule | None = None
    stop_tau: float | None = Field(default=None, ge=0)
    top_pages: int = Field(default=3, ge=1)
    max_pages: int = Field(default=DEFAULT_MAX_PAGES, ge=1)
    max_failure_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    gpu_slots: int = Field(default=1, ge=1)
    slot_timeout_s: float = Field(default=3600.0, gt=0)
    slot_dir: str | None = None
    batch_size: int = Field(default=16, ge=1)
    retry_budget: int = Field(default=DEFAULT_RETRY_BUDGET, ge=1)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    render_max_side: int = Field(default=1536, ge=64)
    render_max_pixels: int = Field(default=2_000_000, ge=4096)
    render_timeout_s: float = Field(default=120.0, gt=0)
    render_memory_mb: int = Field(default=2048, ge=16)
    render_workers: int = Field(default=2, ge=1)
    documents_in_flight: int | None = Field(default=None, ge=1)
    threads: int | None = Field(default=None, ge=1)
    documents_per_task: int | None = Field(default=None, ge=1)

    def overrides(self) -> dict[str, Any]:
        """The explicit EgrConfig overrides (None values mean "keep the default")."""
        return {
            "max_rounds": self.max_rounds, "top_k": self.top_k,
            "stop_rule": self.stop_rule, "stop_tau": self.stop_tau,
        }  # fmt: skip

    def recorded(self, egr: dict[str, Any]) -> dict[str, Any]:
        """What the runs table records as the run's config: the method knobs and the limits."""
        keep = ("model", "device", "dtype", "top_pages", "max_pages", "max_failure_rate",
                "gpu_slots", "batch_size", "retry_budget", "render_max_side",
                "render_max_pixels", "render_timeout_s", "render_memory_mb")  # fmt: skip
        return {"egr": egr, **{k: getattr(self, k) for k in keep}}

    def work_spec(self, config: EgrConfig, prior: dict[str, list[str]]) -> WorkSpec:
        """What the answer step needs: model, batching, retry budget, slots."""
        return WorkSpec(
            self.model, self.device, self.dtype, config, self.top_pages, self.batch_size,
            self.retry_budget, GPU_LIMIT, self.gpu_slots, self.slot_timeout_s, self.slot_dir,
            prior, self.threads,
        )  # fmt: skip

    def in_flight(self) -> tuple[int, int]:
        """(documents rendering at once, documents rendering or waiting for the answer step);
        an explicit ``documents_in_flight`` bounds both (on Dask, renders run on every worker)."""
        if self.documents_in_flight is not None:
            return self.documents_in_flight, self.documents_in_flight
        rendering = 2 * self.render_workers
        return rendering, rendering + 2 * self.gpu_slots

    def per_task(self, n_documents: int) -> int:
        """Documents per task for a run of ``n_documents`` (see ``documents_per_task``)."""
        if self.documents_per_task is not None:
            return self.documents_per_task
        return max(1, min(math.ceil(n_documents / 3), self.in_flight()[1] // 2))

    def tasks_in_flight(self, per_task: int) -> tuple[int, int]:
        """:meth:`in_flight` in tasks of ``per_task`` documents: (rasterize tasks at once, tasks
        rendering or waiting for their answer step), at least one each. The automatic
        ``per_task`` leaves two tasks ahead, so rendering the next chunk overlaps answering this
        one; an explicit one larger than half the bound gets one (its chunk may then exceed it)."""
        rendering, ahead = self.in_flight()
        return max(1, rendering // per_task), max(1, ahead // per_task)

    def render_spec(self) -> RenderSpec:
        """What the rasterize step needs: page budget and sandbox limits."""
        return RenderSpec(
            self.max_pages, self.render_max_side, self.render_max_pixels, self.render_timeout_s,
            self.render_memory_mb, self.render_workers,
        )  # fmt: skip
