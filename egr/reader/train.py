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

from .curve import plot_log
from .data import (
    PHASES,
    RECIPE,
    DocPool,
    Example,
    make_example,
    step_batch,
)
from .model import build_model, build_processor

log = logging.getLogger(__name__)
IM_END = "<|im_end|>"


def chat_text(processor: Any, ex: Example) -> str:
    """The prompt of ``ex`` (images, then the prompt text, generation prompt on)."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in ex.images]
    content.append({"type": "text", "text": ex.prompt})
    msgs = [{"role": "user", "content": content}]
    return processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def collate(processor: Any, batch: Sequence[Example], with_targets: bool = True) -> dict[str, Any]:
    """Processor inputs for a batch (left padded); with targets, ``labels`` on the answer span.

    The label span is counted from the end of each sequence (target characters + ``<|im_end|>``),
    so the first answer token is always supervised.
    """
    texts = [
        chat_text(processor, ex) + (ex.target + IM_END if with_targets else "") for ex in batch
    ]
    images = [im for ex in batch for im in ex.images]
    enc = processor(text=texts, images=images, return_tensors="pt", padding=True)
    enc = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
    if with_targets:
        labels = torch.full_like(enc["input_ids"], -100)  # (B, T)
        query = torch.zeros(len(batch), dtype=torch.long)  # (B,) position predicting answer[0]
        for i, ex in enumerate(batch):
            n = len(processor.tokenizer(ex.target + IM_END)["input_ids"])
            labels[i, -n:] = enc["input_ids"][i, -n:]
            query[i] = enc["input_ids"].shape[1] - n - 1
        enc["labels"] = labels
        if any(ex.slots for ex in batch):
            enc["char_labels"] = char_labels(processor, batch, enc)
            enc["lens_labels"] = token_labels(enc["char_labels"], processor.tokenizer)
        targets = attention_targets(processor, batch, enc, query)
        if targets is not None:
            enc["att_targets"] = targets
    return enc


def attention_targets(
    processor: Any, batch: Sequence[Example], enc: dict[str, Any], query: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Where given decoder queries should attend (training-only losses), or None.

    Returns ``(rows (P,), queries (P,), keys (P, T) bool, copy (P,) bool)``:
    - focus (``copy`` False): the query predicting the first answer token, the tokens of the
      example's focus box;
    - copy (``copy`` True): the query predicting character ``k`` and the image token that holds
      character ``k``'s centre (``Example.cells``).
    """
    fmask = focus_mask(processor, batch, enc) if any(e.focus for e in batch) else None
    ids = enc["input_ids"]  # (B, T)
    merge = int(processor.image_processor.merge_size)
    rows, qs, keys, copy = [], [], [], []
    g = 0
    for i, ex in enumerate(batch):
        if fmask is not None and ex.focus is not None and bool(fmask[i].any()):
            rows.append(i), qs.append(int(query[i])), keys.append(fmask[i]), copy.append(False)
        pos = (ids[i] == processor.image_token_id).nonzero().squeeze(-1)  # (N_i,)
        grids = enc["image_grid_thw"][g : g + len(ex.images)]
        sizes = [int(gg[1]) // merge * (int(gg[2]) // merge) for gg in grids]
        whole = [
            n == (im.width // 28) * (im.height // 28)
            for n, im in zip(sizes, ex.images, strict=True)
        ]
        cells = [] if not ex.cells or not whole[ex.cells[0][0]] else ex.cells
        for k, (img, c) in enumerate(cells):  # the processor kept the grid: cells are known
            key = torch.zeros(ids.shape[1], dtype=torch.bool)
            key[pos[sum(sizes[:img]) + c]] = True
            rows.append(i), qs.append(int(query[i]) + k), keys.append(key), copy.append(True)
        g += len(ex.images)
    if not rows:
        return None
    return torch.tensor(rows), torch.tensor(qs), torch.stack(keys), torch.tensor(copy)


def char_labels(processor: Any, batch: Sequence[Example], enc: dict[str, Any]) -> torch.Tensor:
    """(N_merged, 2) character id in each slot of each merged visual token (-100: not known)."""
    merge = int(processor.image_processor.merge_size)
    grids = enc["image_grid_thw"]  # (n_images, 3)
    sizes = [int(g[1]) // merge * (int(g[2]) // merge) for g in grids]
    out = torch.full((sum(sizes), 2), -100, dtype=torch.long)
    vocab = processor.tokenizer.get_vocab()
    g = start = 0
    for ex in batch:
        for j in range(len(ex.images)):
            labels = ex.slots[j] if ex.slots else None
            if labels is not None and sizes[g] * 2 == len(labels):
                ids = [vocab.get(ch, -100) for ch in labels]  # IGNORE is not in the vocabulary
                out[start : start + sizes[g]] = torch.tensor(ids).view(-1, 2)
            start += sizes[g]
            g += 1
    return out


def token_labels(slots: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """(N_merged,) the one character a merged token shows, from its two slot labels.

    A token with a character centre in one slot and blank or a glyph's remainder in the other is
    labelled with that character; a blank token with a space; anything else is not supervised.
    """
    space = tokenizer.convert_tokens_to_ids(" ")
    a, b = slots[:, 0], slots[:, 1]  # (N,)
    a_char, b_char = (a >= 0) & (a != space), (b >= 0) & (b != space)
    out = torch.full_like(a, -100)
    out[(a == space) & (b == space)] = space
    out[a_char & ~b_char] = a[a_char & ~b_char]
    out[b_char & ~a_char] = b[b_char & ~a_char]
    return out


def focus_mask(processor: Any, batch: Sequence[Example], enc: dict[str, Any]) -> torch.Tensor:
    """(B, T) True at the image tokens that cover each example's focus box (at least one)."""
    merge = int(processor.image_processor.merge_size)
    ids = enc["input_ids"]  # (B, T)
    grids = enc["image_grid_thw"]  # (n_images, 3) in patches, batch order
    mask = torch.zeros_like(ids, dtype=torch.bool)
    g = 0
    for i, ex in enumerate(batch):
        pos = (ids[i] == processor.image_token_id).nonzero().squeeze(-1)  # (N_i,)
        start = 0
        for j in range(len(ex.images)):
            rows, cols = int(grids[g + j][1]) // merge, int(grids[g + j][2]) // merge
            if ex.focus is not None and ex.focus[0] == j:
                x0, y0, x1, y1 = ex.focus[1]
                c0, c1 = int(x0 * cols), max(int(x0 * cols) + 1, math.ceil(x1 * cols))
                r0, r1 = int(y0 * rows), max(int(y0 * rows) + 1, math.ceil(y1 * rows))
                cells = torch.zeros(rows, cols, dtype=torch.bool)
                cells[r0:r1, c0:c1] = True
                mask[i, pos[start : start + rows * cols][cells.flatten()]] = True
            start += rows * cols
        g += len(ex.images)
    return mask


#: Weight of the focus loss and the decoder layers whose attention it shapes (the last two).
FOCUS_WEIGHT = 0.3
COPY_WEIGHT = 0.3
LENS_WEIGHT = 0.5
FOCUS_LAYERS = (-2, -1)


def loss_of(
    model: Any, enc: dict[str, Any], char_head: torch.nn.Module | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the answer span, plus the training-only losses the batch has labels for.

    All of them leave the checkpoint a stock model (see ``docs/reader.md``):

    - ``chars``: a linear head on the merged visual features names the character in each of a
      token's two slots (its patch columns; ``char_labels``);
    - ``lens``: the model's own output at each image token names the character it shows
      (``lens_labels``), so copying is moving a vector ``lm_head`` already reads;
    - ``copy``: some head of the last decoder layers, at the position writing character k, looks
      at the token holding character k's centre;
    - ``focus``: ``-log(attention mass on the focus tokens)`` of the query predicting the first
      answer token, averaged over the heads of the last decoder layers: the reader looks where the
      answer is drawn, which is where EGG's entropy gradient should point.

    Returns:
        The loss to minimise and its parts (each 0.0 when absent from the batch).
    """
    labels = enc.pop("labels")
    targets = enc.pop("att_targets", None)
    chars = enc.pop("char_labels", None)
    lens_labels = enc.pop("lens_labels", None)
    captured: list[torch.Tensor] = []
    merged: list[torch.Tensor] = []
    handles = []
    if chars is not None and char_head is not None:
        handles.append(
            model.model.visual.merger.register_forward_hook(lambda m, a, o: merged.append(o))
        )
    if targets is not None:
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb

        layers = model.model.language_model.layers
        rows, query, keys, copy = targets

        def hook(module: Any, args: Any, kwargs: Any) -> None:
            h = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # (B, T, D)
            cos, sin = kwargs["position_embeddings"]
            b, t, _ = h.shape
            hd = module.head_dim
            q = module.q_proj(h).view(b, t, -1, hd).transpose(1, 2)  # (B, H, T, hd)
            k = module.k_proj(h).view(b, t, -1, hd).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            rep = q.shape[1] // k.shape[1]
            k = k.repeat_interleave(rep, dim=1)
            qq = q[rows, :, query]  # (P, H, hd)
            scores = torch.einsum("phd,phtd->pht", qq, k[rows]) * module.scaling  # (P, H, T)
            keep = enc["attention_mask"][rows].bool() & (
                torch.arange(t)[None, :] <= query[:, None]
            )  # (P, T) causal + padding
            scores = scores.masked_fill(~keep[:, None, :], float("-inf"))
            p = scores.float().softmax(-1)
            captured.append((p * keys[:, None, :]).sum(-1))  # (P, H) mass on the target keys

        for li in FOCUS_LAYERS:
            handles.append(layers[li].self_attn.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        out = model(**enc)
    finally:
        for hd in handles:
            hd.remove()
    logits = out.logits[:, :-1].float()  # (B, T-1, V)
    tgt = labels[:, 1:]  # (B, T-1)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
    parts = {"answer": loss.item(), "chars": 0.0, "lens": 0.0, "focus": 0.0, "copy": 0.0}
    if lens_labels is not None and (lens_labels >= 0).any():
        # the language model's own output at each image token names the character it shows,
        # so that copying a character is moving a vector the output head already reads
        image = enc["input_ids"] == model.config.image_token_id  # (B, T)
        lens = torch.nn.functional.cross_entropy(out.logits[image].float(), lens_labels)
        parts["lens"] = lens.item()
        loss = loss + LENS_WEIGHT * lens
    if merged:  # per-token character loss on the merged visual features (training only)
        slot_logits = char_head(merged[0]).float().view(chars.shape[0] * 2, -1)  # (2N, V)
        char_loss = torch.nn.functional.cross_entropy(slot_logits, chars.view(-1))
        parts["chars"] = char_loss.item()
        loss = loss + char_loss
    if not captured:
        return loss, parts
    mass = torch.stack(captured)  # (L, P, H)
    if (~copy).any():  # focus: every head of the last layers looks at the answer's tokens
        focus = -(mass[:, ~copy].mean(0).mean(-1) + 1e-4).log().mean()
        parts["focus"] = focus.item()
        loss = loss + FOCUS_WEIGHT * focus
    if copy.any():  # copy: some head of the last layers looks at the character being written
        best = mass[:, copy].amax(dim=(0, 2))  # (P',)
        copy_loss = -(best + 1e-4).log().mean()
        parts["copy"] = copy_loss.item()
        loss = loss + COPY_WEIGHT * copy_loss
    return loss, parts


@torch.no_grad()
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
    path: Path, model: Any, char_head: Any, opt: Any, step: int, total_steps: int
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
    }
    torch.save(state, tmp)
    os.replace(tmp, path)


def _check_recipe(state: dict[str, Any], path: Path | str, steps: int | None = None) -> None:
    found = state.get("recipe", 1)
    if found != RECIPE:
        raise RecipeMismatchError(
            f"{path}: training state of reader recipe {found}, this code trains recipe {RECIPE}; "
            "start a new output folder (a run never changes recipe midway)"
        )
    if steps is not None and state.get("total_steps", steps) != steps:
        raise RecipeMismatchError(
            f"{path}: this run was started with --steps {state['total_steps']} (the learning-rate "
            f"schedule's length), not {steps}; resume it with --steps {state['total_steps']}"
        )


def _lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min((step - warmup) / max(total - warmup, 1), 1.0)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


#: Length of recipe 2's run (its learning-rate schedule); the shipped weights are its last step.
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
    """Write the ``save_pretrained`` checkpoint of a training state file (e.g. mid-run)."""
    processor = build_processor()
    model = build_model(processor, seed)
    state = torch.load(state_path, weights_only=False)
    _check_recipe(state, state_path)
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
        _check_recipe(state, state_path, steps)
        model.load_state_dict(state["model"])
        step = state["step"]
        head = state.get("char_head", {})
        if head and head["weight"].shape == char_head.weight.shape:
            char_head.load_state_dict(head)
            opt.load_state_dict(state["opt"])
        else:  # a state from an earlier character head: keep the model, fresh optimiser
            log.info("state has no matching char_head: new head and optimiser")
        log.info("resumed from %s at step %d", state_path, step)
    model.train()
    batches = _batch_stream(processor, seed, step, batch_scale)
    evals = (
        {t: heldout(seed, t, n_eval, 10**9) for t in ("transcribe", "crop_qa")} if n_eval else {}
    )
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
            _save_state(state_path, model, char_head, opt, step, steps)
        if evals and step % eval_every == 0:
            accs = {t: evaluate(model, processor, ex) for t, ex in evals.items()}
            log.info(
                "eval step %d %s", step,
                " ".join(f"{k}={em:.3f} {k}_chars={ch:.3f}" for k, (em, ch) in accs.items()),
            )  # fmt: skip
            plot_log(out / "train.log", out / "curve.png")
            t0 = time.monotonic()
    _save_state(state_path, model, char_head, opt, step, steps)
    model.eval()
    save_checkpoint(model, processor, out / "model", {"seed": seed, "step": step})
    log.info(
        "saved %s at step %d (phases start at %s)", out / "model", step, [p.start for p in PHASES]
    )
    return out / "model"
