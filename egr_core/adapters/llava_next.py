"""LLaVA-NeXT (HF ``model_type`` "llava_next"): base view plus the full any-res canvas.

Read for transformers 5.23 (``image_processing_llava_next.py``, ``processing_llava_next.py``,
``modeling_llava_next.py: pack_image_features / unpad_image``). Per input image the processor emits,
in this order:

1. the base view: the whole image squashed to ``crop x crop`` -> ``g x g`` tokens (``g = crop /
   patch``, CLS dropped), box = the full image, ``kind="global"``;
2. the any-res canvas: the image resized (aspect kept, ``ceil``) into the best pinpoint resolution,
   centre-padded, cut into ``crop``-sized tiles whose ``g x g`` grids are stitched into one
   ``(nph*g) x (npw*g)`` canvas; the model then *unpads* whole rows (or columns) of cells,
   ``pad = (canvas - round(image_extent)) // 2`` on each side, and appends one ``image_newline``
   token after every remaining row. Box = the kept cells' extent in the image, ``kind="tile"``.

``image_positions`` holds the base and canvas cells only; the newline placeholders are *excluded*
(their embedding is the learned ``image_newline`` vector, not image content) and are filled by
``embed``. Every placeholder is accounted for: ``g*g + rows*cols`` image positions + ``rows``
newline positions per image, checked against the prompt.

Known imprecision: HF's unpadding rounds to whole cells, so the kept canvas can overhang the
image by less than one cell along the padded axis; the box is clipped to the image there, and
cells on that axis are placed with an error below one cell (the base view is exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image
from transformers.image_processing_utils import select_best_resolution

from egr_core.adapters import _hf_common as hf
from egr_core.adapters import register
from egr_core.adapters.base import ImageCache, PreparedInputs, legible_defaults
from egr_core.adapters.llava import size_get
from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box, GridSpan, TokenLayout


@dataclass(frozen=True, slots=True)
class AnyResGeometry:
    """Token geometry of one image: base ``g x g`` view, then a ``rows x cols`` canvas."""

    g: int
    rows: int
    cols: int
    canvas_box: Box

    @property
    def n_image(self) -> int:
        return self.g * self.g + self.rows * self.cols

    @property
    def n_placeholders(self) -> int:
        return self.n_image + self.rows  # one newline token per canvas row


def anyres_geometry(
    width: int, height: int, pinpoints: list[list[int]], tile: int, patch: int
) -> AnyResGeometry:
    """Base grid, unpadded canvas grid and its box for a ``width x height`` image."""
    g = tile // patch
    best_h, best_w = select_best_resolution((height, width), pinpoints)
    rows, cols = (best_h // tile) * g, (best_w // tile) * g  # full canvas in cells
    # The processor's aspect-keeping resize into (best_h, best_w) and its centred paste.
    if best_w / width < best_h / height:
        new_w, new_h = best_w, min(math.ceil(height * best_w / width), best_h)
    else:
        new_h, new_w = best_h, min(math.ceil(width * best_h / height), best_w)
    paste_x, paste_y = (best_w - new_w) // 2, (best_h - new_h) // 2
    # The model's unpadding, in cells (unpad_image / _get_unpadded_features).
    r0, r1, c0, c1 = 0, rows, 0, cols
    if width / height > cols / rows:
        kept = int(round(height * (cols / width), 7))
        pad = (rows - kept) // 2
        r0, r1 = pad, rows - pad
    else:
        kept = int(round(width * (rows / height), 7))
        pad = (cols - kept) // 2
        c0, c1 = pad, cols - pad
    cell = tile / g  # canvas pixels per cell
    x0 = max((c0 * cell - paste_x) / new_w, 0.0)
    x1 = min((c1 * cell - paste_x) / new_w, 1.0)
    y0 = max((r0 * cell - paste_y) / new_h, 0.0)
    y1 = min((r1 * cell - paste_y) / new_h, 1.0)
    return AnyResGeometry(g=g, rows=r1 - r0, cols=c1 - c0, canvas_box=Box(x0, y0, x1, y1))


@register
class LlavaNextAdapter(hf.DecoderMixin):
    """Adapter for ``LlavaNextForConditionalGeneration`` (LLaVA-1.6 and its HF ports)."""

    model_types: ClassVar[tuple[str, ...]] = ("llava_next",)
    # Same CLIP-grid family as LLaVA-1.5: sigma 1.5 cells, elbow, LLaVA SE variant. Two blocks per
    # image (base view + canvas) give more candidate regions, so K = 3 (the general default).
    config_defaults: ClassVar[dict[str, Any]] = {
        "sigma": 1.5,
        "threshold": "elbow",
        "top_k": 3,
        "se_variant": "llava",
        **legible_defaults(patch_px=14),
    }

    def prepare(
        self,
        processor: Any,
        images: list[Image.Image],
        question: str,
        cache: ImageCache | None = None,
    ) -> PreparedInputs:
        """Chat template + processor; base and canvas spans per image, newlines excluded."""
        inputs = hf.chat_inputs(processor, images, question, cache)
        if processor.vision_feature_select_strategy != "default":
            raise ValueError(
                "LLaVA-NeXT adapter expects vision_feature_select_strategy='default', got "
                f"{processor.vision_feature_select_strategy!r}"
            )
        placeholders = hf.placeholder_positions(inputs["input_ids"], int(processor.image_token_id))
        ip = processor.image_processor
        tile = size_get(ip.crop_size, "height") or size_get(ip.size, "shortest_edge")
        assert tile is not None
        patch = int(processor.patch_size)
        spans, counts, keep, newline = [], [], [], []
        start = offset = 0  # start: image-token index; offset: placeholder index
        for i, im in enumerate(images):
            h_px, w_px = (int(v) for v in inputs["image_sizes"][i].tolist())
            if (w_px, h_px) != (im.width, im.height):
                raise ValueError(f"processor saw image {i} as {w_px}x{h_px}, not {im.size}")
            geo = anyres_geometry(im.width, im.height, list(ip.image_grid_pinpoints), tile, patch)
            spans.append(GridSpan(start, geo.g, geo.g, Box.full(), image_index=i, kind="global"))
            spans.append(
                GridSpan(start + geo.g**2, geo.rows, geo.cols, geo.canvas_box, i, kind="tile")
            )
            is_image = torch.ones(geo.n_placeholders, dtype=torch.bool)  # this image's placeholders
            is_image[geo.g**2 + geo.cols :: geo.cols + 1] = False  # newline after each canvas row
            keep.append(is_image)
            newline.append(offset + (~is_image).nonzero(as_tuple=True)[0])
            counts.append(geo.n_image)
            start += geo.n_image
            offset += geo.n_placeholders
        if placeholders.numel() != offset:
            raise TokenLayoutMismatchError(offset, placeholders.numel(), "llava_next")
        keep_all = torch.cat(keep)  # (P,)
        return PreparedInputs(
            model_inputs=inputs,
            image_positions=placeholders[keep_all],
            layout=TokenLayout(tuple(spans)),
            image_token_counts=tuple(counts),
            image_sizes=hf.image_sizes_of(images),
            cache_keys=tuple(hf.image_cache_key("llava_next", im, cache) for im in images),
            extra={"newline_positions": placeholders[torch.cat(newline)], "keep_masks": keep},
        )

    def encode_image(self, model: Any, prepared: PreparedInputs, index: int) -> torch.Tensor:
        """CLIP tower + projector + any-res packing for image ``index``, newlines removed."""
        pixels = prepared.model_inputs["pixel_values"][index : index + 1]  # (1, P, 3, H, W)
        sizes = prepared.model_inputs["image_sizes"][index : index + 1]  # (1, 2) = (H, W)
        with torch.no_grad():
            out = model.model.get_image_features(
                pixels.to(model.device, model.dtype),
                sizes.to(model.device),
                vision_feature_layer=model.config.vision_feature_layer,
                vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                return_dict=True,
            )
        packed = out.pooler_output[0]  # (P_i, D), newlines included
        keep = prepared.extra["keep_masks"][index]
        if packed.shape[0] != keep.numel():
            raise TokenLayoutMismatchError(
                keep.numel(),
                int(packed.shape[0]),
                "llava_next",
                f"packed features of image {index}",
            )
        feats = packed[keep.to(packed.device)]  # (N_i, D)
        hf.check_rows(feats, prepared.image_token_counts[index], "llava_next", index)
        return feats

    def embed(
        self, model: Any, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Embeddings (1, T, D): image features at image positions, ``image_newline`` after rows."""
        ids = prepared.model_inputs["input_ids"].to(model.device)  # (1, T)
        embeds = hf.scatter_features(model, ids, prepared.image_positions, features, "llava_next")
        nl = prepared.extra["newline_positions"].to(embeds.device)  # (R_total,)
        newline = model.model.image_newline.to(embeds.dtype)  # (D,)
        mask = torch.zeros(ids.shape, dtype=torch.bool, device=embeds.device)  # (1, T)
        mask[0, nl] = True
        return embeds.masked_scatter(mask.unsqueeze(-1), newline.expand(nl.numel(), -1))
