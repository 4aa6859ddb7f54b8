"""InternVL, HF-native (``model_type`` "internvl", e.g. ``OpenGVLab/InternVL3-*-hf``).

Read for transformers 5.23 (``processing_internvl.py``, ``got_ocr2/image_processing_got_ocr2.py``,
``modeling_internvl.py``). With ``crop_to_patches`` the image processor picks a ``cols x rows`` tile
arrangement (``get_optimal_tiled_canvas``), stretches the whole image to ``(cols*T, rows*T)`` and
cuts it row-major into ``T x T`` tiles, so tile ``k`` covers exactly the image fraction
``[c/cols, (c+1)/cols] x [r/rows, (r+1)/rows]`` with ``r, c = divmod(k, cols)``. If there is more
than one tile a thumbnail (the whole image stretched to ``T x T``) follows. The prompt holds
``<img>`` + ``image_seq_length`` context tokens per tile + ``</img>``; the start/end tokens are not
image positions. Each tile's tokens are row-major over an ``s x s`` grid (``s = T / patch *
downsample_ratio``; the model's pixel shuffle keeps raster order). The thumbnail is kept in the
layout as ``kind="thumbnail"`` (box = full image), so every placeholder is accounted for; the core
leaves it out of region finding (method.md 1.6). A single-tile image is one ``kind="view"`` span.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from PIL import Image
from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

from egr_core.adapters import _hf_common as hf
from egr_core.adapters import register
from egr_core.adapters.base import ImageCache, PreparedInputs, legible_defaults
from egr_core.adapters.llava import size_get
from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box, GridSpan, TokenLayout


def tile_grid(
    width: int, height: int, tile: int, min_tiles: int, max_tiles: int
) -> tuple[int, int]:
    """(rows, cols) of the tile arrangement the GotOcr2 processor picks for an image."""
    cols, rows = get_optimal_tiled_canvas((height, width), (tile, tile), min_tiles, max_tiles)
    return rows, cols


def internvl_spans(start: int, image_index: int, rows: int, cols: int, side: int) -> list[GridSpan]:
    """Spans of one image: tiles row-major, then the thumbnail (when there is more than 1 tile)."""
    n = side * side
    if rows * cols == 1:
        return [GridSpan(start, side, side, Box.full(), image_index, kind="view")]
    spans = []
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        box = Box(c / cols, r / rows, (c + 1) / cols, (r + 1) / rows)
        spans.append(GridSpan(start + k * n, side, side, box, image_index, kind="tile"))
    spans.append(
        GridSpan(start + rows * cols * n, side, side, Box.full(), image_index, "thumbnail")
    )
    return spans


@register
class InternVLAdapter(hf.DecoderMixin):
    """Adapter for ``InternVLForConditionalGeneration``."""

    model_types: ClassVar[tuple[str, ...]] = ("internvl",)
    # A 448 px tile gives a 16x16 grid, finer than LLaVA's 24x24-per-page once a page is tiled
    # into several tiles, so a slightly wider smoothing (2.0 cells) suppresses single-token
    # speckle; elbow threshold and K = 3 (general defaults); SE on the smoothed map.
    config_defaults: ClassVar[dict[str, Any]] = {
        "sigma": 2.0,
        "threshold": "elbow",
        "top_k": 3,
        "se_variant": "smoothed",
        **legible_defaults(patch_px=14),
    }

    def prepare(
        self,
        processor: Any,
        images: list[Image.Image],
        question: str,
        cache: ImageCache | None = None,
    ) -> PreparedInputs:
        """Chat template + processor; tile spans (+ thumbnail) per image."""
        inputs = hf.chat_inputs(processor, images, question, cache)
        positions = hf.placeholder_positions(inputs["input_ids"], int(processor.image_token_id))
        ip = processor.image_processor
        per_tile = int(processor.image_seq_length)
        side = math.isqrt(per_tile)
        if side * side != per_tile:
            raise ValueError(f"InternVL image_seq_length {per_tile} is not a square grid")
        tile = size_get(ip.size, "height")
        assert tile is not None
        # The processor class turns crop_to_patches on for its image processor by default.
        proc_kwargs = getattr(processor, "images_kwargs", None) or {}
        crop = bool(proc_kwargs.get("crop_to_patches", getattr(ip, "crop_to_patches", False)))
        spans: list[GridSpan] = []
        counts, n_views = [], []
        start = 0
        for i, im in enumerate(images):
            rows, cols = (1, 1)
            if crop and ip.max_patches > 1:
                rows, cols = tile_grid(im.width, im.height, tile, ip.min_patches, ip.max_patches)
            views = rows * cols + (1 if rows * cols > 1 else 0)
            spans.extend(internvl_spans(start, i, rows, cols, side))
            counts.append(views * per_tile)
            n_views.append(views)
            start += views * per_tile
        if positions.numel() != start:
            raise TokenLayoutMismatchError(start, positions.numel(), "internvl")
        if inputs["pixel_values"].shape[0] != sum(n_views):
            raise TokenLayoutMismatchError(
                sum(n_views),
                int(inputs["pixel_values"].shape[0]),
                "internvl",
                "tiles vs pixel tiles",
            )
        return PreparedInputs(
            model_inputs=inputs,
            image_positions=positions,
            layout=TokenLayout(tuple(spans)),
            image_token_counts=tuple(counts),
            image_sizes=hf.image_sizes_of(images),
            cache_keys=tuple(hf.image_cache_key("internvl", im, cache) for im in images),
            extra={"tiles_per_image": tuple(n_views)},
        )

    def encode_image(self, model: Any, prepared: PreparedInputs, index: int) -> torch.Tensor:
        """InternViT + pixel shuffle + projector over image ``index``'s tiles: (N_i, D)."""
        n_views = prepared.extra["tiles_per_image"]
        first = sum(n_views[:index])
        pixels = prepared.model_inputs["pixel_values"][first : first + n_views[index]]  # (V,3,T,T)
        with torch.no_grad():
            out = model.model.get_image_features(
                pixel_values=pixels.to(model.device, model.dtype),
                vision_feature_layer=model.config.vision_feature_layer,
                vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                return_dict=True,
            )
        feats = out.pooler_output.reshape(-1, out.pooler_output.shape[-1])  # (V*s*s, D)
        hf.check_rows(feats, prepared.image_token_counts[index], "internvl", index)
        return feats

    def embed(
        self, model: Any, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Token embeddings (1, T, D) with the features at the context-token placeholders."""
        ids = prepared.model_inputs["input_ids"].to(model.device)  # (1, T)
        return hf.scatter_features(model, ids, prepared.image_positions, features, "internvl")
