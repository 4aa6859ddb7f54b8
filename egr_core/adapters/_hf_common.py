"""Pieces the LLaVA / LLaVA-NeXT / InternVL / Idefics3 adapters share.

All four models scatter projected image features into the placeholder positions of the token
embeddings (``masked_scatter``) and run a standard 1-D-RoPE language model, so the chat prompt,
the scatter, the logits forward and greedy generation are the same; only the vision call and the
token geometry differ (those live in each adapter module).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from egr_core.errors import InputError, TokenLayoutMismatchError


def image_cache_key(model_type: str, image: Image.Image) -> tuple[str, int, int, str]:
    """A key stable for identical pixels: (model_type, width, height, sha256 of RGB bytes)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    digest = hashlib.sha256(rgb.tobytes()).hexdigest()
    return (model_type, rgb.width, rgb.height, digest)


def chat_inputs(processor: Any, images: Sequence[Image.Image], question: str) -> dict[str, Any]:
    """Apply the chat template (images first, then the question) and run the processor.

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
    out = processor(images=rgb, text=text, return_tensors="pt")
    return dict(out)


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
        )
    new_tokens = out[:, input_ids.shape[1] :]  # (1, new)
    return str(processor.batch_decode(new_tokens, skip_special_tokens=True)[0]).strip()


def image_sizes_of(images: Sequence[Image.Image]) -> tuple[tuple[int, int], ...]:
    """(width_px, height_px) of each image."""
    return tuple((int(im.width), int(im.height)) for im in images)
