"""Train the reference reader: deterministic given its seed, resumable, logged.

``train_reader(out_dir, minutes=..., seed=...)`` runs the curriculum of :mod:`egr.reader.data`
and writes

- ``OUT/state.pt``: model + optimiser state and the step (written every ``ckpt_every`` steps,
  atomically); a rerun with the same ``OUT`` resumes from it;
- ``OUT/model/``: the checkpoint in ``save_pretrained`` layout (model + processor), loadable with
  ``egr_core.loading.load_vlm``;
- ``OUT/train.log``: one line per ``log_every`` steps (step, task, loss, examples/s) and the
  held-out evaluations.

The batch of step ``k`` depends only on ``(seed, k)``, so a resumed run sees the same data as an
uninterrupted one.

Batches and labels are :mod:`egr.reader.batches`, the loss :mod:`egr.reader.loss`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from egr.reader.batches import collate
from egr.reader.loss import loss_of

from .curve import plot_log
from .data import (
    EXTENDS,
    PHASES,
    RECIPE,
    RECIPE_3_FROM,
    DocPool,
    Example,
    make_example,
    step_batch,
)
from .model import build_model, build_processor

log = logging.getLogger(__name__)


def generate_answers(
    model: Any, processor: Any, batch: Sequence[Example], max_new_tokens: int = 28
) -> list[str]:
    """Greedy answers for a batch of examples (processor inputs, ``model.generate``)."""
    enc = collate(processor, batch, with_targets=False)
    n = enc["input_ids"].shape[1]
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    texts = processor.batch_decode(out[:, n:], skip_special_tokens=True)
    return [t.strip() for t in texts]


def heldout(seed: int, task: str, n: int, step_for_phase: int) -> list[Example]:
    """``n`` fixed examples of ``task`` from documents of a separate training-side namespace."""
    from .data import phase_at

    pool = DocPool(seed + 1_000_003, size=10_000, cache=64)
    rng = random.Random(f"egr-reader-heldout:{seed}:{task}")
    phase = phase_at(step_for_phase)
    return [make_example(rng, task, *pool.get(rng.randrange(pool.size)), phase) for _ in range(n)]


def evaluate(
    model: Any, processor: Any, examples: Sequence[Example], bs: int = 16
) -> tuple[float, float]:
    """Exact match and character accuracy (1 - edit distance / length) of greedy answers."""
    from .evaluate import char_accuracy

    was = model.training
    model.eval()
    hits, chars = 0, 0.0
    for i in range(0, len(examples), bs):
        chunk = examples[i : i + bs]
        for ex, ans in zip(chunk, generate_answers(model, processor, chunk), strict=True):
            hits += ans == ex.target
            chars += char_accuracy(ans, ex.target)
    model.train(was)
    n = max(len(examples), 1)
    return hits / n, chars / n


#: Processes building batches (the DataLoader returns their batches in step order).
DATA_WORKERS = 2


class _Batches(torch.utils.data.IterableDataset):
    """Collated batches of steps ``start, start+1, ...`` (built in a worker process)."""

    def __init__(self, processor: Any, seed: int, start: int, batch_scale: float) -> None:
        self.processor, self.seed, self.start = processor, seed, start
        self.batch_scale = batch_scale

    def __iter__(self) -> Any:
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info is not None else (0, 1)
        pool = DocPool(self.seed)
        step = self.start + k  # worker k builds steps start+k, start+k+n, ... (round robin)
        while True:
            batch = step_batch(self.seed, step, pool, self.batch_scale)
            yield step, batch[0].task, len(batch), collate(self.processor, batch)
            step += n


def _batch_stream(processor: Any, seed: int, start: int, batch_scale: float = 1.0) -> Any:
    loader = torch.utils.data.DataLoader(
        _Batches(processor, seed, start, batch_scale),
        batch_size=None,
        num_workers=DATA_WORKERS,
        prefetch_factor=4,
        multiprocessing_context="fork",
    )
    return iter(loader)


def _save_state(
    path: Path, model: Any, char_head: Any, opt: Any, step: int, total_steps: int, seed: int
) -> None:
    """Write the resumable training state atomically (temp file, then rename)."""
    tmp = path.with_suffix(".tmp")
    state = {
        "model": model.state_dict(),
        "char_head": char_head.state_dict(),
        "opt": opt.state_dict(),
        "step": step,
        "recipe": RECIPE,
        "total_steps": total_steps,
        "seed": seed,
    }
    torch.save(state, tmp)
    os.replace(tmp, path)


def _check_recipe(
    state: dict[str, Any], path: Path | str, steps: int | None = None, seed: int | None = None
) -> None:
    found = state.get("recipe", 1)
    shared = EXTENDS.get(found)
    if found != RECIPE and (shared is None or state.get("step", 0) > shared):
        until = f" (it shares steps 0-{shared} with it)" if shared is not None else ""
        raise RecipeMismatchError(
            f"{path}: training state of reader recipe {found} at step {state.get('step', 0)}, "
            f"this code trains recipe {RECIPE}{until}; "
            "start a new output folder (a run never changes recipe midway)"
        )
    if steps is not None and state.get("total_steps", steps) != steps:
        raise RecipeMismatchError(
            f"{path}: this run was started with --steps {state['total_steps']} (the learning-rate "
            f"schedule's length), not {steps}; resume it with --steps {state['total_steps']}"
        )
    if seed is not None and state.get("seed", seed) != seed:
        raise RecipeMismatchError(
            f"{path}: this run was started with --seed {state['seed']} (its weights and data "
            f"stream), not {seed}; resume it with --seed {state['seed']}"
        )


def _lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min((step - warmup) / max(total - warmup, 1), 1.0)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


#: Length of recipe 3's run (its learning-rate schedule); the shipped weights are its last step.
RECIPE_STEPS = 20_000

#: Written next to the weights: the recipe version (and seed, step) that made them.
RECIPE_FILE = "reader_recipe.json"


class RecipeMismatchError(RuntimeError):
    """A training state made by another recipe version than this code's."""


def save_checkpoint(
    model: Any, processor: Any, out: Path, meta: dict[str, Any] | None = None
) -> None:
    """``save_pretrained`` layout (model + processor + ``egr_config.json`` +
    ``reader_recipe.json``) into ``out``."""
    from egr.reader import READER_EGG_KNOBS
    from egr_core.loading import EGG_DEFAULTS_FILE

    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / EGG_DEFAULTS_FILE).write_text(json.dumps(READER_EGG_KNOBS, indent=2) + "\n")
    (tmp / RECIPE_FILE).write_text(json.dumps({"recipe": RECIPE, **(meta or {})}, indent=2) + "\n")
    if out.exists():
        old = out.with_name(out.name + ".old")
        out.rename(old)
        tmp.rename(out)
        for p in sorted(old.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        old.rmdir()
    else:
        tmp.rename(out)


def export_state(state_path: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Write the ``save_pretrained`` checkpoint of a training state file (e.g. mid-run).

    ``seed`` is recorded in ``reader_recipe.json`` when the state does not name its own (states
    written before the seed was kept in them)."""
    state = torch.load(state_path, weights_only=False)
    _check_recipe(state, state_path)
    seed = state.get("seed", seed)
    processor = build_processor()
    model = build_model(processor, seed)
    model.load_state_dict(state["model"])
    model.eval()
    save_checkpoint(model, processor, Path(out), {"seed": seed, "step": state["step"]})
    return Path(out)


def train_reader(
    out_dir: str | Path,
    *,
    minutes: float,
    seed: int = 0,
    steps: int = RECIPE_STEPS,
    lr: float = 1.5e-3,
    ckpt_every: int = 100,
    log_every: int = 20,
    eval_every: int = 300,
    n_eval: int = 48,
    threads: int = 2,
    batch_scale: float = 1.0,
    until: int | None = None,
) -> Path:
    """Train (or resume) for at most ``minutes`` of wall clock or until ``steps``.

    Args:
        out_dir: output folder (``state.pt``, ``model/``, ``train.log``); resumed if present.
        minutes: wall-clock budget of this call.
        seed: seed of the initial weights and of the data stream.
        steps: total steps; also the length of the learning-rate schedule.
        lr: peak learning rate (linear warm-up, cosine decay to 10%).
        ckpt_every: steps between ``state.pt`` writes.
        log_every: steps between log lines.
        eval_every: steps between held-out evaluations (transcription and crop QA exact match).
        n_eval: held-out examples per evaluated task (0: no evaluation).
        threads: torch threads of the training process (the data worker uses one more).
        batch_scale: multiplies every task's batch size (tests use a small value).
        until: stop this call at this step (a chunk of the run; the schedule stays ``steps``).

    Returns:
        The ``save_pretrained`` directory ``out_dir/model``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    processor = build_processor()
    model = build_model(processor, seed)
    # training-only head: the character under each merged visual token (not saved in model/)
    char_head = torch.nn.Linear(  # two slots (patch columns) per merged token
        model.config.text_config.hidden_size, 2 * model.config.text_config.vocab_size
    )
    params = [*model.parameters(), *char_head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    state_path = out / "state.pt"
    step = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        _check_recipe(state, state_path, steps, seed)
        model.load_state_dict(state["model"])
        step = state["step"]
        head = state.get("char_head", {})
        if head and head["weight"].shape == char_head.weight.shape:
            char_head.load_state_dict(head)
            opt.load_state_dict(state["opt"])
        else:  # a state from an earlier character head: keep the model, fresh optimiser
            log.info("state has no matching char_head: new head and optimiser")
        log.info("resumed from %s at step %d", state_path, step)
        if state.get("recipe", 1) != RECIPE:
            log.info(
                "the state is recipe %d's; recipe %d shares its steps 0-%d",
                state["recipe"], RECIPE, EXTENDS[state["recipe"]],
            )  # fmt: skip
    model.train()
    batches = _batch_stream(processor, seed, step, batch_scale)
    evals: dict[str, list[Example]] = {}
    if n_eval:  # recipe 2's evaluations, and its crop questions cut around EGG's peak error
        evals = {t: heldout(seed, t, n_eval, RECIPE_3_FROM - 1) for t in ("transcribe", "crop_qa")}
        evals["crop_qa_egg"] = heldout(seed, "crop_qa", n_eval, 10**9)
    t_end = time.monotonic() + minutes * 60
    t0, n_ex, run_loss = time.monotonic(), 0, 0.0
    log.info("training from step %d to %d, %d params", step, steps, model.num_parameters())
    stop = min(steps, until) if until is not None else steps
    while step < stop and time.monotonic() < t_end:
        batch_step, task, n_batch, enc = next(batches)
        assert batch_step == step, (batch_step, step)
        for g in opt.param_groups:
            g["lr"] = _lr(step, steps, lr)
        torch.manual_seed(seed * 1_000_003 + step)
        loss, parts = loss_of(model, enc, char_head)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        n_ex += n_batch
        run_loss += loss.item()
        if step % log_every == 0:
            dt = time.monotonic() - t0
            log.info(
                "step %d task %s loss %.4f (mean %.4f) answer %.3f chars %.3f focus %.3f copy %.3f "
                "lens %.3f %.1f ex/s",
                step, task, loss.item(), run_loss / log_every, parts["answer"], parts["chars"],
                parts["focus"], parts["copy"], parts["lens"], n_ex / dt,
            )  # fmt: skip
            t0, n_ex, run_loss = time.monotonic(), 0, 0.0
        if step % ckpt_every == 0:
            _save_state(state_path, model, char_head, opt, step, steps, seed)
        if evals and step % eval_every == 0:
            accs = {t: evaluate(model, processor, ex) for t, ex in evals.items()}
            log.info(
                "eval step %d %s", step,
                " ".join(f"{k}={em:.3f} {k}_chars={ch:.3f}" for k, (em, ch) in accs.items()),
            )  # fmt: skip
            plot_log(out / "train.log", out / "curve.png")
            t0 = time.monotonic()
    _save_state(state_path, model, char_head, opt, step, steps, seed)
    model.eval()
    save_checkpoint(model, processor, out / "model", {"seed": seed, "step": step})
    log.info(
        "saved %s at step %d (phases start at %s)", out / "model", step, [p.start for p in PHASES]
    )
    return out / "model"
