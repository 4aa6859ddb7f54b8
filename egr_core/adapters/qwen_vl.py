"""Adapter for the Qwen-VL family: ``qwen2_vl``, ``qwen2_5_vl`` and ``qwen3_vl``.

Geometry: the image processor "smart-resizes" each image, as a whole, to multiples of
``patch * merge`` pixels inside a pixel budget (no crop, no pad), then patchifies it. Merged token
``k`` of image ``i`` is cell ``(k // cols, k % cols)`` of a ``(grid_h / merge) x (grid_w / merge)``
grid from ``image_grid_thw``, row-major, and that grid spans the *whole* original image (the resize
changes the aspect ratio slightly, never the extent). So every span's box is ``Box.full()``.

Positions: the decoder gets real M-RoPE position ids from ``model.model.get_rope_index`` (t, h, w
per image token; text continues at ``max + 1``), never 1-D positions.

Qwen3-VL adds DeepStack: features from early ViT layers are added to the decoder's hidden states at
the image positions after its first layers. ``encode_image`` therefore returns the main features
and the DeepStack features side by side along the channel axis, ``(N_i, D * (1 + L))``; ``embed``
scatters the first ``D`` channels and keeps the rest in ``prepared.extra`` for the decoder calls.
The gradient of EGG is still taken w.r.t. the decoder input embeddings (method.md section 1.2).
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch
from PIL import Image

from egr_core.adapters import _hf_common as hf
from egr_core.adapters import register
from egr_core.adapters._mrope import MRopeDecoder
from egr_core.adapters.base import ImageCache, PreparedInputs, legible_defaults
from egr_core.errors import InputError, TokenLayoutMismatchError
from egr_core.types import Box, GridSpan, TokenLayout

_MAX_ASPECT = 200  # the Qwen image processor refuses more extreme aspect ratios


@register
class QwenVLAdapter(MRopeDecoder):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL behind the :class:`VLMAdapter` protocol."""

    model_types: ClassVar[tuple[str, ...]] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
    config_defaults: ClassVar[dict[str, Any]] = {
        "sigma": 2.5,
        "threshold": "fraction",
        "threshold_fraction": 0.5,
        **legible_defaults(patch_px=14),
    }

    # ------------------------------------------------------------------ inputs and layout
    def prepare(
        self,
        processor: Any,
        images: list[Image.Image],
        question: str,
        cache: ImageCache | None = None,
    ) -> PreparedInputs:
        """Chat template (images first, then the question, generation prompt on) + processor.

        Args:
            processor: a Qwen2/2.5/3-VL processor (``AutoProcessor.from_pretrained``).
            images: the page view first, then crops; PIL images of any size.
            question: the question text.
            cache: per-image preprocessing cache of the current explainer call (optional); the
                page view is then resized and patchified once per call, not once per prompt.

        Returns:
            PreparedInputs with ``model_inputs`` from the processor (input_ids (1, T),
            attention_mask (1, T), mm_token_type_ids (1, T), pixel_values (P, C*t*p*p),
            image_grid_thw (n, 3)), image positions (N,) and one full-image span per image.

        Raises:
            InputError: no images, empty question, an image token inside the question, or an
                image with an aspect ratio the processor refuses.
            TokenLayoutMismatchError: placeholders in the prompt differ from the grid cells.
        """
        if not images:
            raise InputError("Qwen-VL prepare needs at least one image (the page view)")
        if not question or not question.strip():
            raise InputError("Qwen-VL prepare got an empty question")
        for tok in (processor.image_token, getattr(processor, "video_token", None)):
            if tok and tok in question:
                raise InputError(
                    f"question contains the reserved image token {tok!r}: {question!r}"
                )
        for i, im in enumerate(images):
            w, h = im.size
            if min(w, h) < 1 or max(w, h) / min(w, h) > _MAX_ASPECT:
                raise InputError(
                    f"image {i} is {w}x{h} px; Qwen-VL needs an aspect ratio <= {_MAX_ASPECT}"
                )
        content: list[dict[str, Any]] = [{"type": "image"} for _ in images]
        content.append({"type": "text", "text": question})
        messages = [{"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        batch = hf.processor_call(processor, images, text, cache)
        model_inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        sizes = tuple((int(im.size[0]), int(im.size[1])) for im in images)
        model_type = _processor_model_type(processor)
        # Keyed by the image pixels (+ its grid, i.e. the processor's resize) rather than a hash of
        # pixel_values: hashing ~1k patches x 1176 floats cost ~50 ms per prompt.
        keys = tuple(
            (*hf.image_cache_key(model_type, im, cache), tuple(int(x) for x in g))
            for im, g in zip(images, model_inputs["image_grid_thw"], strict=True)
        )
        return self.prepared_from_inputs(processor, model_inputs, sizes, keys)

    def prepared_from_inputs(
        self,
        processor: Any,
        model_inputs: dict[str, torch.Tensor],
        image_sizes: tuple[tuple[int, int], ...],
        cache_keys: tuple[Any, ...] | None = None,
    ) -> PreparedInputs:
        """Build :class:`PreparedInputs` from processor outputs (the part after the processor).

        ``cache_keys`` default to a hash of each image's ``pixel_values`` rows and grid.

        Raises:
            TokenLayoutMismatchError: placeholder tokens in ``input_ids`` differ from grid cells.
        """
        input_ids = model_inputs["input_ids"]  # (1, T)
        if input_ids.shape[0] != 1:
            raise InputError(f"Qwen-VL adapter handles batch size 1, got {input_ids.shape[0]}")
        if "mm_token_type_ids" not in model_inputs:  # older processors: derive it (image = 1)
            model_inputs["mm_token_type_ids"] = (input_ids == processor.image_token_id).int()
        positions = (input_ids[0] == processor.image_token_id).nonzero().squeeze(-1)  # (N,)
        merge = int(processor.image_processor.merge_size)
        layout = self.token_layout(model_inputs["image_grid_thw"], merge, len(image_sizes))
        model_type = _processor_model_type(processor)
        if positions.numel() != layout.n_tokens:
            raise TokenLayoutMismatchError(
                expected=layout.n_tokens, got=int(positions.numel()), model_type=model_type
            )
        grid = model_inputs["image_grid_thw"]  # (n, 3) = (t, h, w) in patches
        counts = tuple(int(g.prod()) // merge**2 for g in grid)
        patch_rows = [int(g.prod()) for g in grid]
        pv = model_inputs["pixel_values"]  # (sum_i t_i*h_i*w_i, C*tp*p*p)
        if cache_keys is None:
            keys, offset = [], 0
            for i, n in enumerate(patch_rows):
                digest = hashlib.sha1(pv[offset : offset + n].detach().cpu().numpy().tobytes())
                digest.update(str(tuple(int(x) for x in grid[i])).encode())
                keys.append((model_type, digest.hexdigest()))
                offset += n
            cache_keys = tuple(keys)
        if len(cache_keys) != len(image_sizes):
            raise ValueError(f"{len(cache_keys)} cache keys for {len(image_sizes)} images")
        patch = int(processor.image_processor.patch_size)
        return PreparedInputs(
            model_inputs=model_inputs,
            image_positions=positions,
            layout=layout,
            image_token_counts=counts,
            image_sizes=image_sizes,
            cache_keys=cache_keys,
            extra={
                "model_type": model_type,
                "image_token_id": int(processor.image_token_id),
                "patch_offsets": tuple(sum(patch_rows[:i]) for i in range(len(patch_rows) + 1)),
                # (height_px, width_px) each image was resized to before patchifying
                "resized_hw": tuple((int(g[1]) * patch, int(g[2]) * patch) for g in grid),
            },
        )

    @staticmethod
    def token_layout(image_grid_thw: torch.Tensor, merge: int, n_images: int) -> TokenLayout:
        """One row-major ``(h / merge) x (w / merge)`` span per image, covering the full image.

        Args:
            image_grid_thw: (n, 3) temporal, height, width of each image in patches.
            merge: the spatial merge size (2 for every released Qwen-VL).
            n_images: the number of images handed to the processor.

        Raises:
            TokenLayoutMismatchError: the grid has a row count other than ``n_images``.
            ValueError: a grid side is not a multiple of ``merge`` or ``t != 1``.
        """
        if image_grid_thw.shape[0] != n_images:
            raise TokenLayoutMismatchError(
                expected=n_images, got=int(image_grid_thw.shape[0]), model_type="qwen-vl",
                what="image_grid_thw rows vs images",
            )  # fmt: skip
        spans, start = [], 0
        for i, (t, h, w) in enumerate(image_grid_thw.tolist()):
            if t != 1 or h % merge or w % merge:
                raise ValueError(f"image {i}: grid (t={t}, h={h}, w={w}) is not t=1, h,w % {merge}")
            rows, cols = h // merge, w // merge
            spans.append(GridSpan(start, rows, cols, Box.full(), image_index=i, kind="view"))
            start += rows * cols
        return TokenLayout(tuple(spans))

    # ------------------------------------------------------------------ vision and embeddings
    def encode_image(self, model: Any, prepared: PreparedInputs, index: int) -> torch.Tensor:
        """Vision tower + merger for image ``index`` alone, under no_grad.

        Returns:
            (N_i, D) merged features in placeholder (raster) order; Qwen3-VL: (N_i, D * (1 + L))
            with the L DeepStack feature sets appended along the channels.

        Raises:
            TokenLayoutMismatchError: the tower returned a different number of rows than the
                image has placeholder tokens.
        """
        mi = prepared.model_inputs
        lo, hi = prepared.extra["patch_offsets"][index : index + 2]
        device = model.model.visual.device
        pixels = mi["pixel_values"][lo:hi].to(device)  # (P_i, C*tp*p*p)
        grid = mi["image_grid_thw"][index : index + 1].to(device)  # (1, 3)
        with torch.no_grad():
            out = model.model.get_image_features(pixels, grid, return_dict=True)
            feats = out.pooler_output[0]  # (N_i, D), already reordered from window order
            deep = getattr(out, "deepstack_features", None)
            if deep:
                feats = torch.cat([feats, *(d[0] for d in deep)], dim=-1)  # (N_i, D*(1+L))
        expected = prepared.image_token_counts[index]
        if feats.shape[0] != expected:
            raise TokenLayoutMismatchError(
                expected=expected, got=int(feats.shape[0]), model_type=prepared.extra["model_type"],
                what=f"vision features of image {index}",
            )  # fmt: skip
        return feats.detach()

    def embed(
        self, model: Any, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Token embeddings with the image features written into the placeholders.

        Returns:
            (1, T, D) in the embedding dtype; the same values the model's own forward builds.
        """
        if len(features) != len(prepared.image_sizes):
            raise ValueError(
                f"got {len(features)} feature sets for {len(prepared.image_sizes)} images"
            )
        table = model.get_input_embeddings()
        input_ids = prepared.model_inputs["input_ids"].to(table.weight.device)  # (1, T)
        dim = table.weight.shape[-1]
        feats = torch.cat(list(features), dim=0)  # (N, D * (1 + L))
        if feats.shape[0] != prepared.image_positions.numel():
            raise TokenLayoutMismatchError(
                expected=int(prepared.image_positions.numel()), got=int(feats.shape[0]),
                model_type=prepared.extra["model_type"], what="feature rows vs placeholders",
            )  # fmt: skip
        with torch.no_grad():
            embeds = table(input_ids)  # (1, T, D)
        embeds = embeds.clone()
        positions = prepared.image_positions.to(embeds.device)  # (N,)
        embeds[0, positions] = feats[:, :dim].to(embeds.device, embeds.dtype)
        n_deep = feats.shape[1] // dim - 1
        if n_deep:  # Qwen3-VL DeepStack: kept for the decoder calls on this prompt
            prepared.extra["deepstack"] = [
                feats[:, dim * (k + 1) : dim * (k + 2)].to(embeds.device, embeds.dtype)
                for k in range(n_deep)
            ]  # L x (N, D)
        return embeds


def _processor_model_type(processor: Any) -> str:
    name = type(processor).__name__
    if name.startswith("Qwen3VL"):
        return "qwen3_vl"
    if name.startswith("Qwen2_5_VL"):
        return "qwen2_5_vl"
    return "qwen2_vl"
