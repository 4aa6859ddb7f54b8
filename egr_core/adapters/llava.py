"""LLaVA-1.5 (HF ``model_type`` "llava"): one fixed square CLIP grid per input image.

Geometry (``transformers.models.llava.image_processing_llava``, read for transformers 5.23):
resize so the shortest edge is ``size["shortest_edge"]`` (long edge ``int(S * long / short)``), or
to ``(height, width)`` if given; then centre-crop ``crop_size`` at ``top = int((H - ch) / 2)``,
``left = int((W - cw) / 2)``. The grid (``crop / patch`` cells a side) therefore covers the part of
the original image that survives the crop, and that part is the span's box. With
``vision_feature_select_strategy == "default"`` the CLS token is dropped, so placeholders are
``(crop_h / patch) * (crop_w / patch)`` exactly.

A checkpoint whose image processor letterboxes (``do_pad=True``) or whose crop is larger than the
resized image would put grid cells outside the image; a ``GridSpan`` box cannot say that, so the
adapter refuses such a processor with a ValueError instead of mapping boxes wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

from egr_core.adapters import _hf_common as hf
from egr_core.adapters import register
from egr_core.adapters.base import ImageCache, PreparedInputs, legible_defaults
from egr_core.errors import TokenLayoutMismatchError
from egr_core.types import Box, GridSpan, TokenLayout


def size_get(size: Any, key: str) -> int | None:
    """``size[key]`` for a dict or a SizeDict (None when absent)."""
    val = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(val) if val is not None else None


@dataclass(frozen=True, slots=True)
class ClipView:
    """Where a CLIP-style resize + centre crop puts an image: the surviving box and its grid."""

    box: Box
    rows: int
    cols: int


def clip_view(image_processor: Any, width: int, height: int, patch: int) -> ClipView:
    """The part of a ``width x height`` image the processor keeps, and the token grid over it.

    Raises:
        ValueError: the processor pads (letterbox) or crops beyond the resized image.
    """
    if getattr(image_processor, "do_pad", False):
        raise ValueError(
            "LLaVA image processor has do_pad=True (letterbox): grid cells would fall outside the "
            "image, which a GridSpan box cannot express; use a processor with do_pad=False"
        )
    rw, rh = width, height
    if getattr(image_processor, "do_resize", True):
        size = image_processor.size
        short = size_get(size, "shortest_edge")
        if short is not None:
            if width <= height:
                rw, rh = short, int(short * height / width)
            else:
                rw, rh = int(short * width / height), short
        else:
            rh, rw = size_get(size, "height") or height, size_get(size, "width") or width
    if getattr(image_processor, "do_center_crop", False):
        crop = image_processor.crop_size
        ch, cw = size_get(crop, "height") or rh, size_get(crop, "width") or rw
    else:
        ch, cw = rh, rw
    if ch > rh or cw > rw:
        raise ValueError(
            f"LLaVA centre crop {cw}x{ch} is larger than the resized image {rw}x{rh}: the "
            "processor pads, and grid cells would fall outside the image"
        )
    top, left = int((rh - ch) / 2.0), int((rw - cw) / 2.0)
    box = Box(left / rw, top / rh, (left + cw) / rw, (top + ch) / rh)
    return ClipView(box=box, rows=ch // patch, cols=cw // patch)


@register
class LlavaAdapter(hf.DecoderMixin):
    """Adapter for ``LlavaForConditionalGeneration`` (LLaVA-1.5 and its HF ports)."""

    model_types: ClassVar[tuple[str, ...]] = ("llava",)
    # method.md: LLaVA sigma 1.5, elbow threshold, top-K 2, LLaVA spatial-entropy variant.
    config_defaults: ClassVar[dict[str, Any]] = {
        "sigma": 1.5,
        "threshold": "elbow",
        "top_k": 2,
        "se_variant": "llava",
        **legible_defaults(patch_px=14, crop_px=336),
    }

    def prepare(
        self,
        processor: Any,
        images: list[Image.Image],
        question: str,
        cache: ImageCache | None = None,
    ) -> PreparedInputs:
        """Chat template + processor; one CLIP grid span per image."""
        inputs = hf.chat_inputs(processor, images, question, cache)
        token_id = int(processor.image_token_id)
        positions = hf.placeholder_positions(inputs["input_ids"], token_id)  # (N,)
        patch = int(processor.patch_size)
        if processor.vision_feature_select_strategy != "default":
            raise ValueError(
                "LLaVA adapter expects vision_feature_select_strategy='default' (CLS dropped), "
                f"got {processor.vision_feature_select_strategy!r}"
            )
        spans, counts, start = [], [], 0
        for i, im in enumerate(images):
            view = clip_view(processor.image_processor, im.width, im.height, patch)
            spans.append(GridSpan(start, view.rows, view.cols, view.box, image_index=i))
            counts.append(view.rows * view.cols)
            start += view.rows * view.cols
        layout = TokenLayout(tuple(spans))
        if positions.numel() != layout.n_tokens:
            raise TokenLayoutMismatchError(layout.n_tokens, positions.numel(), "llava")
        return PreparedInputs(
            model_inputs=inputs,
            image_positions=positions,
            layout=layout,
            image_token_counts=tuple(counts),
            image_sizes=hf.image_sizes_of(images),
            cache_keys=tuple(hf.image_cache_key("llava", im, cache) for im in images),
        )

    def encode_image(self, model: Any, prepared: PreparedInputs, index: int) -> torch.Tensor:
        """CLIP tower + projector for image ``index``: (N_i, D), CLS dropped."""
        pixels = prepared.model_inputs["pixel_values"][index : index + 1]  # (1, 3, H, W)
        with torch.no_grad():
            out = model.model.get_image_features(
                pixel_values=pixels.to(model.device, model.dtype),
                vision_feature_layer=model.config.vision_feature_layer,
                vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                return_dict=True,
            )
        feats = out.pooler_output[0]  # (N_i, D)
        hf.check_rows(feats, prepared.image_token_counts[index], "llava", index)
        return feats

    def embed(
        self, model: Any, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Token embeddings (1, T, D) with the features at the ``<image>`` placeholders."""
        ids = prepared.model_inputs["input_ids"].to(model.device)  # (1, T)
        return hf.scatter_features(model, ids, prepared.image_positions, features, "llava")
