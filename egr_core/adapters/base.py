"""The adapter contract: everything model-specific lives behind this Protocol.

An adapter has no state beyond constants and never loads weights; the model and processor are
handed in. The core (``egr_core.explain``) drives the adapter like this, for one question on a page
view plus zero or more crops::

    prep = adapter.prepare(processor, images, question,       # chat template + processor;
                           cache=image_cache)                 # per-image preprocessing cached
    feats = [cache_or(adapter.encode_image(model, prep, i))   # vision tower, under no_grad,
             for i in range(len(images))]                     # once per distinct image
    embeds = adapter.embed(model, prep, feats)                # (1, T, D) features scattered in
    leaf = embeds.detach().requires_grad_(True)
    logits = adapter.next_token_logits(model, prep, leaf)     # (1, V) at the last prompt position
    H = entropy(logits); dH/dleaf[0, prep.image_positions]    # -> per-token scores (N,)
    scores -> grids via prep.layout                           # spans in raster order
    text = adapter.generate(model, processor, prep, embeds, max_new_tokens)

Optional: ``adapter.answer_logprob(model, prep, embeds, ids)``, the summed log-probability of
answer tokens ``ids`` (n,) after the prompt (teacher forcing), which ``EgrConfig.read_scales``
needs to compare one answer's views (every built-in adapter has it); and
``adapter.batch_generate_scored(model, processor, preps, embeds, n)``, greedy answers with their
ids and summed log-probability (:class:`Decoded`), which spares the answer step the teacher-forced
pass of each view's own answer.

Counts are checked loudly by the core: ``len(prep.image_positions) == prep.layout.n_tokens`` and
``sum(len(f) for f in feats) == len(prep.image_positions)``, else ``TokenLayoutMismatchError``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from PIL import Image

from egr_core.types import TokenLayout


@dataclass(frozen=True)
class PreparedInputs:
    """Processor output for one prompt (batch size 1).

    Attributes:
        model_inputs: what the processor returned (input_ids (1, T), attention_mask (1, T),
            pixel_values, image_grid_thw, mm_token_type_ids, ...).
        image_positions: (N,) indices into the sequence of every image placeholder token, in
            prompt order (BOI/EOI/row/col marker tokens excluded).
        layout: the grids those N tokens form, in the same order.
        image_token_counts: tokens per input image, in order (sums to N).
        image_sizes: (width_px, height_px) of each input image as handed in.
        cache_keys: one hashable key per input image, stable for identical pixels; the core
            caches ``encode_image`` results under it.
        extra: adapter-private values (e.g. rope positions).
    """

    model_inputs: dict[str, torch.Tensor]
    image_positions: torch.Tensor
    layout: TokenLayout
    image_token_counts: tuple[int, ...]
    image_sizes: tuple[tuple[int, int], ...]
    cache_keys: tuple[Any, ...]
    extra: dict[str, Any] = field(default_factory=dict)


class Decoded(NamedTuple):
    """A greedy answer: its text (special tokens dropped, stripped), the generated token ids (up
    to and including end-of-sequence when it came) and their summed log-probability."""

    text: str
    ids: tuple[int, ...]
    logprob: float


def pixel_digest(image: Image.Image) -> tuple[int, int, str]:
    """(width, height, blake2b hex of the RGB bytes): stable for identical pixels."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return image.width, image.height, hashlib.blake2b(rgb.tobytes(), digest_size=20).hexdigest()


class ImageCache:
    """A small LRU of per-image preprocessing results, owned by one explainer call.

    The core creates one per ``ground()`` call and hands it to ``adapter.prepare(..., cache=...)``,
    so each distinct image (the page view, each crop) is run through the HF image processor once
    per call however many questions and rounds see it; only the text side is redone per prompt.
    Entries are keyed by the image's content digest and size (plus whatever the adapter adds,
    e.g. the processor kwargs), never by object identity; :meth:`digest` memoises the hash per
    image object while the cache holds a reference to it, so the id cannot be recycled meanwhile.
    Images must not be mutated in place during the call.

    Args:
        maxsize: entries kept (least recently used dropped first); a page plus K crops per round
            for a few rounds fits the default.
    """

    def __init__(self, maxsize: int = 32) -> None:
        if maxsize < 1:
            raise ValueError(f"ImageCache maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._digests: OrderedDict[int, tuple[Image.Image, str]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def digest(self, image: Image.Image) -> tuple[int, int, str]:
        """:func:`pixel_digest` of ``image``, memoised per image object."""
        memo = self._digests.get(id(image))
        if memo is not None and memo[0] is image:
            self._digests.move_to_end(id(image))
            return image.width, image.height, memo[1]
        return self.remember(image, pixel_digest(image))

    def remember(self, image: Image.Image, digest: tuple[int, int, str]) -> tuple[int, int, str]:
        """Memoise ``image``'s :func:`pixel_digest`, already computed by the caller."""
        self._digests[id(image)] = (image, digest[2])  # holds the image: its id stays unique
        while len(self._digests) > self.maxsize:
            self._digests.popitem(last=False)
        return digest

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The cached value under ``key``, computing (and storing) it on a miss."""
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = compute()
        self._items[key] = value
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


@runtime_checkable
class VLMAdapter(Protocol):
    #: HF ``config.model_type`` strings this adapter serves (registry key).
    model_types: ClassVar[tuple[str, ...]]
    #: Per-adapter overrides of ``EgrConfig`` fields (e.g. ``{"sigma": 2.5}``).
    config_defaults: ClassVar[dict[str, Any]]

    def prepare(
        self,
        processor: Any,
        images: list[Image.Image],
        question: str,
        cache: ImageCache | None = None,
    ) -> PreparedInputs:
        """Apply the chat template (images first, then the question, generation prompt on).

        With ``cache`` the per-image preprocessing is looked up there (and stored on a miss); the
        result must equal the uncached one exactly. Adapters without the parameter still work:
        the core then calls ``prepare`` without it.
        """
        ...

    def encode_image(self, model: Any, prepared: PreparedInputs, index: int) -> torch.Tensor:
        """Vision tower + projector for input image ``index``: (N_i, D) decoder-ready features."""
        ...

    def embed(
        self, model: Any, prepared: PreparedInputs, features: list[torch.Tensor]
    ) -> torch.Tensor:
        """Token embeddings (1, T, D) with ``features`` scattered into the placeholders."""
        ...

    def next_token_logits(
        self, model: Any, prepared: PreparedInputs, inputs_embeds: torch.Tensor
    ) -> torch.Tensor:
        """One decoder forward; logits (1, V) at the last prompt position. Caller owns grad mode.

        Positions must be the model's real ones (Qwen: M-RoPE from ``get_rope_index``).
        """
        ...

    def generate(
        self,
        model: Any,
        processor: Any,
        prepared: PreparedInputs,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
    ) -> str:
        """Greedy answer text from precomputed embeddings (no second vision pass)."""
        ...


#: Pixels per PDF point at which a family's vision tower reads body text, per pixel of patch side:
#: a 14 px patch reads 10 pt text at 2 px/pt (a line of text spans about 1.5 patches).
LEGIBLE_PX_PER_PATCH_PX = 2.0 / 14.0


def legible_defaults(patch_px: int, crop_px: int = 448) -> dict[str, Any]:
    """Per-family crop knobs from the vision tower's patch size and the crop's pixel budget.

    The legible scale (``EgrConfig.legible_scale``, px per point) grows with the patch side; a
    crop is at most ``crop_px`` pixels wide and half as tall. A checkpoint's ``egr_config.json``
    overrides them (the reference reader ships its own).
    """
    scale = round(patch_px * LEGIBLE_PX_PER_PATCH_PX, 3)
    return {
        "legible_scale": scale,
        "crop_pixels": crop_px,
        "crop_window_pt": round(crop_px / scale / 2, 1),
    }
