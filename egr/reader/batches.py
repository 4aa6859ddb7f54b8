"""From examples to tensors: the chat text of an example, a collated batch (the processor's inputs
and the answer labels), and the training-only targets (per-slot character labels, the token of
each answer character, the focus mask of the answer crop's tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .data import (
    Example,
)

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
