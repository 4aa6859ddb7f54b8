"""Helpers shared by the model-specific adapter tests (LLaVA, LLaVA-NeXT, InternVL, Idefics3)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from egr_core import layout as lay
from egr_core.types import Box

QUESTION = "What is the total amount?"


def one_hot_box(prep: Any, token: int) -> Box | None:
    """Map a one-hot score on image token ``token`` through the core layout to an image box.

    Returns None when the token's span is not used for regions (a thumbnail).
    """
    scores = np.zeros(prep.layout.n_tokens, dtype=np.float32)
    scores[token] = 1.0
    sources = [Box.full()] * len(prep.image_sizes)
    grids = lay.scores_to_grids(scores, prep.layout, sources)
    hit = [b for b in lay.blocks(grids) if b.scores.max() > 0]
    if not hit:
        return None
    (blk,) = hit
    r, c = np.unravel_index(int(blk.scores.argmax()), blk.scores.shape)
    return blk.cell_box(int(r), int(c), int(r), int(c))


def assert_box_equals(got: Box, want: tuple[float, float, float, float], tol: float = 1e-6) -> None:
    assert np.allclose(got.as_tuple(), want, atol=tol), (got.as_tuple(), want)


def generate_pair(
    t: Any, images: list[Any], max_new_tokens: int = 6, question: str = QUESTION
) -> tuple[str, str]:
    """(adapter.generate from precomputed embeddings, model.generate(**processor inputs))."""
    prep = t.adapter.prepare(t.processor, images, question)
    feats = [t.adapter.encode_image(t.model, prep, i) for i in range(len(images))]
    embeds = t.adapter.embed(t.model, prep, feats)
    ours = t.adapter.generate(t.model, t.processor, prep, embeds, max_new_tokens)
    with torch.no_grad():
        out = t.model.generate(**prep.model_inputs, max_new_tokens=max_new_tokens, do_sample=False)
    n = prep.model_inputs["input_ids"].shape[1]
    ref = t.processor.batch_decode(out[:, n:], skip_special_tokens=True)[0].strip()
    return ours, ref
