"""Idefics3 and SmolVLM (HF ``model_type`` "idefics3" and "smolvlm"): tiles plus a global view.

Read for transformers 5.23 (``idefics3/image_processing_idefics3.py``, ``processing_idefics3.py``,
``smolvlm/processing_smolvlm.py``, ``modeling_idefics3.py``). The image processor

1. resizes the image so its long side is ``size["longest_edge"]`` (aspect kept, short side
   ``int``-rounded and bumped to even), capped at 4096;
2. with splitting on, stretches that to whole tiles: the long side to ``ceil(long / M) * M``, the
   short side to ``ceil(int(long' / aspect) / M) * M`` (``M = max_image_size["longest_edge"]``);
3. if either side exceeds ``M``, cuts ``rows x cols`` tiles row-major and appends the whole image
   stretched to ``M x M`` (the global view); otherwise the single ``M x M`` image is the global
   view.

No step crops or pads the image content, so tile ``(r, c)`` covers exactly the image fraction
``[c/cols, (c+1)/cols] x [r/rows, (r+1)/rows]`` and the global view covers all of it. The prompt is
``<fake><row_r_col_c><image>*L`` per tile, a newline per tile row, then
``<fake><global-img><image>*L<fake>``; only ``<image>`` tokens are image positions (fake, row/col
and global markers are not). Each tile's ``L = s*s`` tokens are row-major over an ``s x s`` grid
(the connector's pixel shuffle keeps raster order).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from PIL import Image

from egr_core.adapters import _hf_common as hf
from egr_core.adapters import register
from egr_core.adapters.base import ImageCache, PreparedInputs, legible_defaults
from egr_core.adapters.llava import size_get
from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box, GridSpan, TokenLayout

_MAX_IMAGE_SIZE = 4096  # the processor's absolute cap on the resized long side


def _even_long_side_resize(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Step 1: long side to ``long_side``, short side int-rounded and bumped to even."""
    aspect = width / height
    if width >= height:
        w, h = long_side, int(long_side / aspect)
        h += h % 2
    else:
        h, w = long_side, int(long_side * aspect)
        w += w % 2
    w, h = max(w, 1), max(h, 1)
    aspect = w / h
    if w >= h and w > _MAX_IMAGE_SIZE:
        w, h = _MAX_IMAGE_SIZE, max(int(_MAX_IMAGE_SIZE / aspect), 1)
    elif h > w and h > _MAX_IMAGE_SIZE:
        h, w = _MAX_IMAGE_SIZE, max(int(_MAX_IMAGE_SIZE * aspect), 1)
    return w, h


def split_grid(image_processor: Any, width: int, height: int) -> tuple[int, int]:
    """(rows, cols) of tiles the processor cuts a ``width x height`` image into; (0, 0) = none."""
    if not getattr(image_processor, "do_image_splitting", False):
        return 0, 0
    if getattr(image_processor, "do_resize", True):
        long_side = size_get(image_processor.size, "longest_edge")
        if long_side is None:
            raise ValueError("Idefics3 image processor size has no 'longest_edge'")
        width, height = _even_long_side_resize(width, height, long_side)
    m = size_get(image_processor.max_image_size, "longest_edge")
    assert m is not None
    aspect = width / height
    if width >= height:
        w = math.ceil(width / m) * m
        h = math.ceil(int(w / aspect) / m) * m
    else:
        h = math.ceil(height / m) * m
        w = math.ceil(int(h * aspect) / m) * m
    if h > m or w > m:
        return math.ceil(h / m), math.ceil(w / m)
    return 0, 0


def idefics3_spans(start: int, image_index: int, rows: int, cols: int, side: int) -> list[GridSpan]:
    """Spans of one image: tiles row-major, then the global view."""
    n = side * side
    spans = []
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        box = Box(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows)
        spans.append(GridSpan(start + k * n, side, side, box, image_index, kind="tile"))
    kind = "global" if rows * cols else "view"
    spans.append(GridSpan(start + rows * cols * n, side, side, Box.full(), image_index, kind))
    return spans


@register
class Idefics3Adapter(hf.DecoderMixin):
    """Adapter for ``Idefics3ForConditionalGeneration`` and ``SmolVLMForConditionalGeneration``."""

    model_types: ClassVar[tuple[str, ...]] = ("idefics3", "smolvlm")
    # Tiles of 364 px give only 13x13 (Idefics3) or 8x8 (SmolVLM 512 px / 16 / 4) cells, coarser
    # than LLaVA's 24x24, so smoothing is narrower (1.0 cell) to keep small fields separable; the
    # global view is its own block and often duplicates a tile's peak, hence K = 3.
    config_defaults: ClassVar[dict[str, Any]] = {
        "sigma": 1.0,
        "threshold": "elbow",
        "top_k": 3,
        "se_variant": "smoothed",
        **legible_defaults(patch_px=16),
    }

    def prepare(
        self,
        processor: Any,
        images: list[Image.Image],
        question: str,
        cache: ImageCache | None = None,
    ) -> PreparedInputs:
        """Chat template + processor; tile spans plus a global span per image."""
        inputs = hf.chat_inputs(processor, images, question, cache)
        model_type = "smolvlm" if "SmolVLM" in type(processor).__name__ else "idefics3"
        positions = hf.placeholder_positions(inputs["input_ids"], int(processor.image_token_id))
        per_tile = int(processor.image_seq_len)
        side = math.isqrt(per_tile)
        if side * side != per_tile:
            raise ValueError(f"{model_type} image_seq_len {per_tile} is not a square grid")
        spans: list[GridSpan] = []
        counts, frames = [], []
        start = 0
        for i, im in enumerate(images):
            rows, cols = split_grid(processor.image_processor, im.width, im.height)
            spans.extend(idefics3_spans(start, i, rows, cols, side))
            n_frames = rows * cols + 1
            counts.append(n_frames * per_tile)
            frames.append(n_frames)
            start += n_frames * per_tile
        if positions.numel() != start:
            raise TokenLayoutMismatchError(start, positions.numel(), model_type)
        if inputs["pixel_values"].shape[1] != sum(frames):
            raise TokenLayoutMismatchError(
                sum(frames), int(inputs["pixel_values"].shape[1]), model_type, "frames vs tiles"
            )
        return PreparedInputs(
            model_inputs=inputs,
            image_positions=positions,
            layout=TokenLayout(tuple(spans)),
            image_token_counts=tuple(counts),
            image_sizes=hf.image_sizes_of(images),
            cache_keys=tuple(hf.image_cache_key(model_type, im, cache) for im in images),
            extra={"frames_per_image": tuple(frames), "model_type": model_type},
        )

    def encode_image(self, model: Any, prepared: PreparedInputs, index: int) -> torch.Tensor:
        """Vision encoder + connector over image ``index``'s tiles and global view: (N_i, D)."""
        frames = prepared.extra["frames_per_image"]
        first = sum(frames[:index])
        sl = slice(first, first + frames[index])
        pixels = prepared.model_inputs["pixel_values"][:, sl]  # (1, F, 3, M, M)
        mask = prepared.model_inputs.get("pixel_attention_mask")
        with torch.no_grad():
            out = model.model.get_image_features(
                pixel_values=pixels.to(model.device, model.dtype),
                pixel_attention_mask=None if mask is None else mask[:, sl].to(model.device),
                return_dict=True,
            )
        feats = torch.cat(list(out.pooler_output), dim=0)  # (F*L, D)
        hf.check_rows(
            feats, prepared.image_token_counts[index], prepared.extra["model_type"], index
        )
        return feats

    def embed(
        self, model: Any, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Token embeddings (1, T, D) with the features at the ``<image>`` placeholders."""
        ids = prepared.model_inputs["input_ids"].to(model.device)  # (1, T)
        mt = prepared.extra["model_type"]
        return hf.scatter_features(model, ids, prepared.image_positions, features, mt)
