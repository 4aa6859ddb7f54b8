"""Pieces the LLaVA / LLaVA-NeXT / InternVL / Idefics3 adapters share.

All four models scatter projected image features into the placeholder positions of the token
embeddings (``masked_scatter``) and run a standard 1-D-RoPE language model, so the chat prompt,
the scatter, the logits forward and greedy generation are the same; only the vision call and the
token geometry differ (those live in each adapter module).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import BatchFeature

from egr_core.adapters.base import Decoded, ImageCache
from egr_core.errors import InputError, TokenLayoutMismatchError


def image_cache_key(
    model_type: str, image: Image.Image, cache: ImageCache | None = None
) -> tuple[str, int, int, str]:
    """A key stable for identical pixels: (model_type, width, height, hash of the RGB bytes)."""
    if cache is not None:
        return (model_type, *cache.digest(image))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.blake2b(rgb.tobytes(), digest_size=20).hexdigest()
    return (model_type, rgb.width, rgb.height, digest)


def _pad_cat(values: list[torch.Tensor], dim: int) -> torch.Tensor:
    """Concatenate along ``dim``, zero-padding every other axis to the largest size first.

    This is what HF image processors do when they batch images of different tile counts
    (LLaVA-NeXT's ``_pad_for_batching``); for equal shapes it is a plain ``torch.cat``.
    """
    if len(values) == 1:
        return values[0]
    shape = [max(int(v.shape[a]) for v in values) for a in range(values[0].ndim)]
    padded = []
    for v in values:
        pad: list[int] = []
        for a in reversed(range(v.ndim)):  # F.pad lists the last axis first
            pad += [0, 0 if a == dim else shape[a] - int(v.shape[a])]
        padded.append(torch.nn.functional.pad(v, pad) if any(pad) else v)
    return torch.cat(padded, dim=dim)


def merge_image_outputs(outputs: list[dict[str, Any]], nested: bool) -> dict[str, Any]:
    """One image processor output for several images, from the outputs for each image alone.

    Args:
        outputs: per-image outputs of ``image_processor(images=[im])`` (or ``[[im]]``).
        nested: the images were one sample's list (Idefics3/SmolVLM ``[[im, ...]]``): tensors are
            joined along axis 1 and list values inside their single sample; otherwise along axis
            0 (Qwen patches, LLaVA views, InternVL tiles, LLaVA-NeXT images).

    Returns:
        The merged mapping; ``test_contract`` checks it equals the processor's own output.
    """
    merged: dict[str, Any] = {}
    for key in outputs[0]:
        vals = [o[key] for o in outputs]
        first = vals[0]
        if isinstance(first, torch.Tensor):
            merged[key] = _pad_cat(vals, 1 if nested else 0)
        elif isinstance(first, list):
            if nested:  # [[a]], [[b]] -> [[a, b]]
                merged[key] = [[x for v in vals for x in v[0]]]
            else:
                merged[key] = [x for v in vals for x in v]
        else:
            merged[key] = first
    return merged


class _CachingImageProcessor:
    """Stands in for ``processor.image_processor`` for one call: each image goes through the real
    image processor alone (cached in an :class:`ImageCache`), and the per-image outputs are merged
    into what the real one returns for the whole list. Other attributes are forwarded."""

    def __init__(self, real: Any, cache: ImageCache, tag: str) -> None:
        self._real = real
        self._cache = cache
        self._tag = tag

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        nested = isinstance(images, (list, tuple)) and bool(images)
        nested = nested and isinstance(images[0], (list, tuple))
        if nested and len(images) != 1:
            raise ValueError(f"cached preprocessing handles one sample, got {len(images)}")
        flat = list(images[0]) if nested else list(images)
        kw = repr(sorted(kwargs.items()))
        outs = []
        for im in flat:
            key = ("preprocess", self._tag, *self._cache.digest(im), kw)
            one: list[Any] = [[im]] if nested else [im]

            def compute(one: list[Any] = one) -> dict[str, Any]:
                return dict(self._real(one, **kwargs))

            outs.append(self._cache.get_or_compute(key, compute))
        return BatchFeature(merge_image_outputs(outs, nested))


def processor_call(
    processor: Any,
    images: Sequence[Image.Image],
    text: str,
    cache: ImageCache | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """``processor(images=images, text=[text], return_tensors="pt")``, per-image preprocessing
    served from ``cache`` when one is given (the text side is tokenised as usual).

    The processor itself is not modified: a shallow copy whose ``image_processor`` is a caching
    stand-in runs the processor's own ``__call__`` (placeholder expansion, tokenisation,
    ``mm_token_type_ids``), so every family keeps its exact prompt layout.
    """
    target = processor
    if cache is not None and hasattr(processor, "image_processor"):
        target = copy.copy(processor)
        target.image_processor = _CachingImageProcessor(
            processor.image_processor, cache, type(processor).__name__
        )
    return dict(target(images=list(images), text=[text], return_tensors="pt", **kwargs))


def chat_inputs(
    processor: Any,
    images: Sequence[Image.Image],
    question: str,
    cache: ImageCache | None = None,
) -> dict[str, Any]:
    """Apply the chat template (images first, then the question) and run the processor.

    Args:
        cache: per-image preprocessing cache of the current explainer call (optional).

    Returns:
        The processor's tensors (batch size 1), as a plain dict.

    Raises:
        InputError: no image, or an empty question.
    """
    if not images:
        raise InputError("at least one image (the page view) is required")
    if not question or not question.strip():
        raise InputError("the question is empty")
    rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
    content: list[dict[str, Any]] = [{"type": "image"} for _ in rgb]
    content.append({"type": "text", "text": question})
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor_call(processor, rgb, text, cache)


def placeholder_positions(input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """(P,) sequence indices of ``token_id`` in ``input_ids`` (1, T), in prompt order."""
    return (input_ids[0] == token_id).nonzero(as_tuple=True)[0]


def check_rows(features: torch.Tensor, expected: int, model_type: str, index: int) -> None:
    """Raise TokenLayoutMismatchError unless ``features`` (N_i, D) has ``expected`` rows."""
    if features.ndim != 2 or features.shape[0] != expected:
        raise TokenLayoutMismatchError(
            expected=expected,
            got=int(features.shape[0]) if features.ndim else 0,
            model_type=model_type,
            what=f"vision features of image {index} vs its placeholder tokens",
        )


def scatter_features(
    model: Any,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    features: list[torch.Tensor],
    model_type: str,
) -> torch.Tensor:
    """Token embeddings (1, T, D) with the image features written at ``positions``.

    Mirrors the models' own ``inputs_embeds.masked_scatter(image_mask, features)``.
    """
    embeds = model.get_input_embeddings()(input_ids)  # (1, T, D)
    feats = torch.cat(features, dim=0) if features else embeds.new_zeros(0, embeds.shape[-1])
    if feats.shape[0] != positions.numel():
        raise TokenLayoutMismatchError(
            expected=positions.numel(),
            got=int(feats.shape[0]),
            model_type=model_type,
            what="feature rows vs image positions",
        )
    mask = torch.zeros(input_ids.shape, dtype=torch.bool, device=embeds.device)  # (1, T)
    mask[0, positions.to(embeds.device)] = True
    feats = feats.to(embeds.device, embeds.dtype)  # (N, D)
    return embeds.masked_scatter(mask.unsqueeze(-1), feats)  # (1, T, D)


def last_logits(model: Any, prepared_inputs: dict[str, Any], inputs_embeds: torch.Tensor) -> Any:
    """Decoder forward on ``inputs_embeds`` (no pixels); logits (1, V) float32 at the last position.

    Positions are the plain 0..T-1 the model derives itself (batch 1, no padding), which is what
    these 1-D RoPE language models use in their own forward.
    """
    attention_mask = prepared_inputs["attention_mask"].to(inputs_embeds.device)  # (1, T)
    out = model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, logits_to_keep=1)
    return out.logits[:, -1, :].float()  # (1, V)


def greedy_generate(
    model: Any,
    processor: Any,
    prepared_inputs: dict[str, Any],
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
) -> str:
    """Greedy decoding from precomputed ``inputs_embeds`` (the vision tower is not run again).

    ``input_ids`` are passed alongside so the returned sequence has the prompt prefix, and no
    pixel inputs are passed, so the model's forward skips its vision branch.
    """
    return greedy_generate_with_logits(
        model, processor, prepared_inputs, inputs_embeds, max_new_tokens
    )[0]


def greedy_generate_with_logits(
    model: Any,
    processor: Any,
    prepared_inputs: dict[str, Any],
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
) -> tuple[str, torch.Tensor]:
    """:func:`greedy_generate` plus the raw logits (1, V) float32 of the first generated token,
    i.e. of the prefill (the same values :func:`last_logits` gives for these embeddings)."""
    text, first, _ = _greedy(model, processor, prepared_inputs, inputs_embeds, max_new_tokens)
    return text, first


def greedy_generate_scored(
    model: Any,
    processor: Any,
    prepared_inputs: dict[str, Any],
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
) -> Decoded:
    """:func:`greedy_generate` with the generated ids and their summed log-probability under the
    raw logits of each step (what teacher forcing those ids would give)."""
    text, _, (ids, logprob) = _greedy(
        model, processor, prepared_inputs, inputs_embeds, max_new_tokens, scored=True
    )
    return Decoded(text, ids, logprob)


def _greedy(
    model: Any,
    processor: Any,
    prepared_inputs: dict[str, Any],
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
    scored: bool = False,
) -> tuple[str, torch.Tensor, tuple[tuple[int, ...], float]]:
    """The model's own greedy ``generate`` from ``inputs_embeds``: the text, the prefill's logits
    (1, V) float32, and the generated ids with (``scored``; else 0.0) their summed
    log-probability."""
    input_ids = prepared_inputs["input_ids"].to(inputs_embeds.device)  # (1, T)
    attention_mask = prepared_inputs["attention_mask"].to(inputs_embeds.device)  # (1, T)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds.detach(),
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            output_logits=True,
            return_dict_in_generate=True,
        )
    new_tokens = out.sequences[:, input_ids.shape[1] :]  # (1, new)
    text = str(processor.batch_decode(new_tokens, skip_special_tokens=True)[0]).strip()
    ids = tuple(int(t) for t in new_tokens[0])
    logprob = 0.0
    if scored:  # the raw logits of each generated token
        steps = zip(out.logits, ids, strict=True)
        logprob = sum(float(step.float().log_softmax(-1)[0, tok]) for step, tok in steps)
    return text, out.logits[0].float(), (ids, logprob)  # (1, V)


def image_sizes_of(images: Sequence[Image.Image]) -> tuple[tuple[int, int], ...]:
    """(width_px, height_px) of each image."""
    return tuple((int(im.width), int(im.height)) for im in images)


class DecoderMixin:
    """Decoding shared by the adapters whose language model takes plain 1-D positions
    (LLaVA, LLaVA-NeXT, InternVL, Idefics3/SmolVLM): the model-specific part of those adapters is
    only how images become placeholder features; what happens after the scatter is the same."""

    def next_token_logits(
        self, model: Any, prepared: Any, inputs_embeds: torch.Tensor
    ) -> torch.Tensor:
        """Language-model forward on ``inputs_embeds``; logits (1, V) float32, last position."""
        return last_logits(model, prepared.model_inputs, inputs_embeds)

    def generate(
        self,
        model: Any,
        processor: Any,
        prepared: Any,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
    ) -> str:
        """Greedy answer from the precomputed embeddings."""
        return greedy_generate(
            model, processor, prepared.model_inputs, inputs_embeds, max_new_tokens
        )

    def generate_with_logits(
        self,
        model: Any,
        processor: Any,
        prepared: Any,
        inputs_embeds: torch.Tensor,
        max_new_tokens: int,
    ) -> tuple[str, torch.Tensor]:
        """Greedy answer and the prefill's first-token logits (1, V): one prefill for both."""
        return greedy_generate_with_logits(
            model, processor, prepared.model_inputs, inputs_embeds, max_new_tokens
        )

    def batch_generate_scored(
        self,
        model: Any,
        processor: Any,
        preps: Sequence[Any],
        embeds: Sequence[torch.Tensor],
        max_new_tokens: int,
    ) -> list[Decoded]:
        """Greedy answers with their ids and summed log-probability, one prompt at a time."""
        return [
            greedy_generate_scored(model, processor, p.model_inputs, e, max_new_tokens)
            for p, e in zip(preps, embeds, strict=True)
        ]

    def answer_logprob(
        self, model: Any, prepared: Any, inputs_embeds: torch.Tensor, ids: torch.Tensor
    ) -> float:
        """Log-probability of the answer tokens ``ids`` (n,) after the prompt (teacher forcing)."""
        with torch.no_grad():
            device = inputs_embeds.device
            ids = ids.to(device)
            n = int(ids.numel())
            fed = model.get_input_embeddings()(ids[:-1].view(1, -1)).to(inputs_embeds.dtype)
            x = torch.cat([inputs_embeds.detach(), fed], dim=1)  # (1, T + n - 1, D)
            mask = prepared.model_inputs["attention_mask"].to(device)  # (1, T)
            mask = torch.cat([mask, mask.new_ones((1, n - 1))], dim=1)
            out = model(inputs_embeds=x, attention_mask=mask, logits_to_keep=n)
            logp = out.logits[0, -n:].float().log_softmax(-1)  # (n, V): predicts ids[0..n-1]
            return float(logp[torch.arange(n, device=device), ids].sum())
