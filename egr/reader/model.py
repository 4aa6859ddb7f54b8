"""The reference reader's architecture: a tiny stock ``Qwen2VLForConditionalGeneration``.

Sizes (recipe 2, about 4 M parameters): ViT depth 4, width 192, 4 heads; language model 4
layers, hidden 192, 4 heads (head_dim 48); the character tokenizer of :mod:`egr.tiny.tokenizer`.

Config choices that make a model this small learn to read (``transformers-notes.md``):
- M-RoPE with ``rope_theta=5.0`` and ``mrope_section=[4, 8, 12]`` (sums to head_dim / 2 = 24): with
  the stock theta the width band rotates by under 0.07 rad across a crop and columns blur together;
- image mean 1 / std 0.5, so white paper is 0 and ink is negative;
- the merger's last layer initialised x0.25 (smaller image features at the start).

Everything is a stock transformers class, so ``save_pretrained`` output loads through
``egr_core.loading.load_vlm`` like any hub checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    GenerationConfig,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from egr.tiny.qwen import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, _tokenizer

#: Side of one merged visual token in pixels (patch 14 x merge 2).
TOKEN_PX = 28
#: Largest image the processor accepts without downscaling, in merged tokens. A US-letter page
#: view becomes about 15 x 19 tokens: small print (6-7.5 pt) is unreadable there, by design.
MAX_TOKENS_PER_IMAGE = 288
MIN_TOKENS_PER_IMAGE = 4

TEXT = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}
VISION = {"depth": 4, "embed_dim": 192, "num_heads": 4, "mlp_ratio": 2}


def build_processor() -> Qwen2VLProcessor:
    """The reader's processor: char tokenizer, ChatML template, a small pixel budget."""
    tok = _tokenizer()
    budget = {
        "shortest_edge": MIN_TOKENS_PER_IMAGE * TOKEN_PX * TOKEN_PX,
        "longest_edge": MAX_TOKENS_PER_IMAGE * TOKEN_PX * TOKEN_PX,
    }
    common = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    image_proc = Qwen2VLImageProcessor(
        size=budget, image_mean=[1.0] * 3, image_std=[0.5] * 3, **common
    )
    video_proc = Qwen2VLVideoProcessor(size=budget, **common)
    return Qwen2VLProcessor(image_proc, tok, video_proc, chat_template=tok.chat_template)


def build_model(processor: Any, seed: int) -> Any:
    """A freshly initialised reader (deterministic given ``seed``)."""
    tok = processor.tokenizer
    vocab = ((len(tok) + 31) // 32) * 32
    text = dict(TEXT)
    text.update(
        vocab_size=vocab,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 5.0, "mrope_section": [4, 8, 12]},
    )
    vision = dict(VISION, hidden_size=TEXT["hidden_size"])
    config = AutoConfig.for_model(
        "qwen2_vl",
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=False,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_PAD),
        video_token_id=tok.convert_tokens_to_ids(VIDEO_PAD),
        vision_start_token_id=tok.convert_tokens_to_ids(VISION_START),
        vision_end_token_id=tok.convert_tokens_to_ids(VISION_END),
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    with torch.no_grad():
        model.model.visual.merger.mlp[2].weight.mul_(0.25)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False
    )
    return model
