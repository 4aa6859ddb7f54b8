"""An analytic toy VLM, a fake processor and a toy adapter implementing the VLMAdapter Protocol.

The toy reads *colour*: a patch's feature is its chroma ``f_c = relu(m_c - max_{j != c} m_j)`` of
the mean RGB ``m`` (white, grey and black patches give 0). A question selects a colour through the
letters ``R``, ``G``, ``B`` (each adds a unit vector to the selector ``q``). The decoder computes

    s = sum_t (E_t[0:3] . q)^2,        logits = s * u        (u fixed, V entries)

so the first-token entropy H(s u) depends on an image token only through patches of the asked
colour: dH/dE_t[0:3] = H'(s) * 2 (F_t . q) q, and every other token's gradient is exactly 0.
A question without R/G/B gives s = 0, uniform logits, H = log V and an all-zero map.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw

from egr_core.adapters.base import PreparedInputs
from egr_core.imaging import image_key
from egr_core.types import Box, GridSpan, TokenLayout

PATCH = 16
D = 8
V = 64
BOS, IMG, SEP, ASSIST = 0, 1, 2, 3
SELECTORS = {"R": 0, "G": 1, "B": 2}


def char_id(ch: str) -> int:
    return 4 + (ord(ch) % (V - 4))


class FakeProcessor:
    """Resizes images to multiples of PATCH and builds [BOS, (IMG*n, SEP)*, chars..., ASSIST]."""

    patch = PATCH

    def __call__(self, images: list[Image.Image], text: str) -> dict[str, Any]:
        ids = [BOS]
        pixels, grids = [], []
        for im in images:
            w = max(PATCH, round(im.width / PATCH) * PATCH)
            h = max(PATCH, round(im.height / PATCH) * PATCH)
            arr = np.asarray(im.convert("RGB").resize((w, h)), dtype=np.float32) / 255.0
            pixels.append(torch.from_numpy(arr).permute(2, 0, 1).contiguous())  # (3, H, W)
            rows, cols = h // PATCH, w // PATCH
            grids.append((rows, cols))
            ids += [IMG] * (rows * cols) + [SEP]
        ids += [char_id(c) for c in text] + [ASSIST]
        return {"input_ids": torch.tensor([ids]), "pixel_values": pixels, "grids": grids}

    def decode(self, token_id: int) -> str:
        return f"tok{token_id}"


class ToyVLM(torch.nn.Module):
    """The analytic toy model (see module docstring). Parameters exist and start trainable."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"model_type": "egg_toy"})()
        self.vision = torch.nn.Linear(3, D, bias=False)  # chroma -> channels 0..2
        self.embed_tokens = torch.nn.Embedding(V, D)
        self.head = torch.nn.Parameter(torch.linspace(-3.0, 3.0, V))  # u, (V,)
        self.explode = False
        self.encode_grad_modes: list[bool] = []
        with torch.no_grad():
            self.vision.weight.zero_()
            self.vision.weight[:3, :3] = torch.eye(3)
            self.embed_tokens.weight.zero_()
            for ch, k in SELECTORS.items():
                self.embed_tokens.weight[char_id(ch), 4 + k] = 1.0
            for i in range(4, V):
                self.embed_tokens.weight[i, 3] = 1.0  # text flag

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(3, H, W) -> (R*C, D) chroma features, row-major over patches."""
        self.encode_grad_modes.append(torch.is_grad_enabled())
        c, h, w = pixels.shape
        m = pixels.reshape(c, h // PATCH, PATCH, w // PATCH, PATCH).mean(dim=(2, 4))  # (3, R, C)
        m = m.permute(1, 2, 0).reshape(-1, 3)  # (R*C, 3)
        others = torch.stack(
            [torch.maximum(m[:, 1], m[:, 2]), torch.maximum(m[:, 0], m[:, 2]),
             torch.maximum(m[:, 0], m[:, 1])], dim=-1,
        )  # fmt: skip
        return self.vision(torch.relu(m - others))  # (R*C, D)

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        """(1, T, D) -> logits (1, V) of the first answer token."""
        if self.explode:
            raise RuntimeError("toy forward exploded on purpose")
        q = (embeds[0, :, 3:4] * embeds[0, :, 4:7]).sum(dim=0)  # (3,)
        s = ((embeds[0, :, 0:3] @ q) ** 2).sum()  # ()
        return (s * self.head)[None, :]  # (1, V)


class ToyAdapter:
    """A VLMAdapter for ToyVLM; records the cache keys it encoded (a test double)."""

    model_types: ClassVar[tuple[str, ...]] = ("egg_toy",)
    config_defaults: ClassVar[dict[str, Any]] = {}
    min_image_side = PATCH

    def __init__(self) -> None:
        self.encoded_keys: list[Any] = []

    def prepare(self, processor: Any, images: list[Image.Image], question: str) -> PreparedInputs:
        enc = processor(images, question)
        ids = enc["input_ids"]  # (1, T)
        positions = (ids[0] == IMG).nonzero().flatten()  # (N,)
        spans, start = [], 0
        for i, (rows, cols) in enumerate(enc["grids"]):
            spans.append(GridSpan(start, rows, cols, Box.full(), image_index=i))
            start += rows * cols
        return PreparedInputs(
            model_inputs={"input_ids": ids, "pixel_values": enc["pixel_values"]},
            image_positions=positions,
            layout=TokenLayout(tuple(spans)),
            image_token_counts=tuple(r * c for r, c in enc["grids"]),
            image_sizes=tuple(im.size for im in images),
            cache_keys=tuple(image_key(im) for im in images),
        )

    def encode_image(self, model: ToyVLM, prepared: PreparedInputs, index: int) -> torch.Tensor:
        self.encoded_keys.append(prepared.cache_keys[index])
        return model.encode(prepared.model_inputs["pixel_values"][index])

    def embed(
        self, model: ToyVLM, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        e = model.embed_tokens(prepared.model_inputs["input_ids"]).clone()  # (1, T, D)
        e[0, prepared.image_positions] = torch.cat(features).to(e.dtype)
        return e

    def next_token_logits(
        self, model: ToyVLM, prepared: PreparedInputs, inputs_embeds: torch.Tensor
    ) -> torch.Tensor:
        return model.decode(inputs_embeds)

    def generate(
        self,
        model: ToyVLM,
        processor: FakeProcessor,
        prepared: PreparedInputs,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
    ) -> str:
        return processor.decode(int(model.decode(inputs_embeds).argmax(-1)))


def page_with_squares(
    size: int = 256, squares: list[tuple[str, tuple[int, int, int, int]]] | None = None
) -> Image.Image:
    """A white page with coloured squares ``[("R", (x0, y0, x1, y1) px), ...]``, ends exclusive."""
    colors = {"R": (255, 0, 0), "G": (0, 255, 0), "B": (0, 0, 255)}
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    draw.rectangle((20, 200, 100, 204), fill=(0, 0, 0))  # some black "text"
    for color, (x0, y0, x1, y1) in squares or []:
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=colors[color])
    return im
